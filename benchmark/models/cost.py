"""The cost of a model's forward passes, from its HF config alone: FLOPs and the memory a batch needs.

A forward token costs 2 * (non-embedding parameters) FLOPs, plus attention over its context (QK and AV:
4 * layers * heads * head_dim per key), plus 2 * d_model * vocab where logits are computed; a backward
pass costs two forwards more. `pipeline.cost` lists each stage's passes in these terms. Nothing here reads
weights: a config.json (or a GGUF file's metadata) is enough, and a tokenizer, where there is one, only
gives the prompts' exact length.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from benchmark.data import encode_examples, generate_split
from benchmark.data.tokenization import check_vocabulary
from benchmark.models.adapter import head_shape
from benchmark.models.identity import HeadShape
from benchmark.models.loading import DTYPES, ModelLoadError, ModelSpec, load_config, load_tokenizer

_UNGATED_MLP = {"gpt2", "gpt_neox"}  # an up and a down projection; the other families also gate (three)


def dtype_bytes(dtype: str) -> int:
    """Bytes per weight or activation of a dtype name ("float32": 4, "bfloat16": 2)."""
    return DTYPES[dtype].itemsize


@dataclass(frozen=True)
class ModelShape:
    """What the cost of a model's pass depends on, read from its HF config."""

    heads: HeadShape
    d_model: int
    d_mlp: int
    vocab: int
    mlp_matrices: int = 3
    experts: int = 1  # MLP experts held in memory (mixture of experts)
    active_experts: int = 1  # experts each token runs through
    tied: bool = True  # input and output embeddings share one matrix

    @classmethod
    def of(cls, config) -> ModelShape:
        """The shape of a `transformers` config (of a multimodal config, its text part)."""
        config = getattr(config, "text_config", None) or config
        d_model = config.hidden_size
        d_mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d_model
        return cls(
            head_shape(config),
            d_model,
            d_mlp,
            config.vocab_size,
            2 if config.model_type in _UNGATED_MLP else 3,
            getattr(config, "num_local_experts", None) or 1,
            getattr(config, "num_experts_per_tok", None) or 1,
            bool(getattr(config, "tie_word_embeddings", True)),
        )

    def layer_params(self, experts: int) -> int:
        """Weights of one decoder block with `experts` MLPs (norms and biases left out)."""
        h, d = self.heads, self.d_model
        attention = 2 * d * h.n_heads * h.head_dim + 2 * d * h.n_kv_heads * h.head_dim
        return attention + experts * self.mlp_matrices * d * self.d_mlp

    @property
    def active_params(self) -> int:
        """Non-embedding weights one token runs through: its FLOPs are twice this."""
        return self.heads.n_layers * self.layer_params(self.active_experts)

    @property
    def params(self) -> int:
        """Every weight: the blocks, the embedding and (untied) the output embedding."""
        embeddings = (1 if self.tied else 2) * self.vocab * self.d_model
        return self.heads.n_layers * self.layer_params(self.experts) + embeddings

    def kv_bytes(self, rows: int, tokens: int, nbytes: int) -> int:
        """A key-value cache of `rows` x `tokens`, every layer."""
        h = self.heads
        return rows * tokens * h.n_layers * 2 * h.n_kv_heads * h.head_dim * nbytes

    def describe(self) -> str:
        """One line: layers, widths, heads, vocabulary and parameters."""
        h = self.heads
        return (
            f"{h.n_layers} layers, d_model {self.d_model}, {h.n_heads} heads ({h.n_kv_heads} key-value) of "
            f"{h.head_dim}, MLP {self.d_mlp}, vocabulary {self.vocab}: {self.params / 1e9:.3g}B parameters "
            f"({self.active_params / 1e9:.3g}B non-embedding per token)"
        )


@dataclass(frozen=True)
class Pass:
    """`rows` forward passes, `batch` rows at a time, of `tokens` new tokens after a cached prefix of
    `prefix` tokens, with logits at `logits` positions per row; a backward pass too when `backward`."""

    rows: int
    tokens: int
    batch: int
    prefix: int = 0
    logits: int = 1
    backward: bool = False
    layers: int | None = None  # decoder layers run (None: all; a pass that stops early runs fewer)
    shared: int = 0  # of those, the lowest `shared` run one row for every `fan` rows (equal there)
    fan: int = 1

    @property
    def token_rows(self) -> int:
        """Tokens computed: rows x new tokens."""
        return self.rows * self.tokens


def pass_flops(shape: ModelShape, p: Pass) -> float:
    """FLOPs of a pass: weights, attention over each token's context, the unembedding; x3 with backward.
    Layers shared by `fan` rows cost a `fan`-th per row."""
    h = shape.heads
    layers = h.n_layers if p.layers is None else p.layers
    share = (layers - p.shared * (1 - 1 / p.fan)) / h.n_layers
    contexts = p.tokens * p.prefix + p.tokens * (p.tokens + 1) / 2  # sum over new tokens of their context
    attention = 4 * h.n_layers * h.n_heads * h.head_dim * contexts
    body = (2 * shape.active_params * p.tokens + attention) * share
    per_row = body + 2 * shape.d_model * shape.vocab * p.logits
    return p.rows * per_row * (3 if p.backward else 1)


def working_set(shape: ModelShape, p: Pass, nbytes: int) -> int:
    """Bytes one batch of the pass needs beside the weights: one layer's activations (every layer's, kept
    for a backward pass), the key-value cache of a cached prefix, and float32 logits."""
    b, context = p.batch, p.prefix + p.tokens
    mlp = shape.mlp_matrices * shape.d_mlp
    layer = b * p.tokens * (4 * shape.d_model + mlp) + b * shape.heads.n_heads * p.tokens * context
    layers = shape.heads.n_layers if p.backward else 1
    cache = shape.kv_bytes(b, context, nbytes) if p.prefix else 0
    return layers * layer * nbytes + cache + b * p.logits * shape.vocab * 4


def prompt_tokens(n_boxes: int, bos: int = 1) -> int:
    """Tokens of a prompt when every object and label is one token (the vocabulary check keeps only such
    words): "The o is in Box L" (6), ", the o is in Box L" (7) per further box, ". Box L contains the" (5),
    and `bos` special tokens in front."""
    return 7 * n_boxes + 4 + bos


def prompt_length(spec: ModelSpec, n_boxes: int) -> tuple[int, str]:
    """Tokens of a prompt and how they were found: encoded by the model's tokenizer, or (no tokenizer, as
    in a folder holding only config.json) `prompt_tokens` with one BOS token."""
    try:
        tokenizer = load_tokenizer(spec)
    except ModelLoadError:
        return prompt_tokens(n_boxes), "counted: single-token words, one BOS token; no tokenizer found"
    vocabulary = check_vocabulary(tokenizer, n_boxes)
    split = generate_split(n_boxes, "test", n_boxes, 0, vocabulary.objects, vocabulary.labels)
    return int(encode_examples(tokenizer, split.examples[:1]).input_ids.shape[1]), "from the tokenizer"


def read_shape(spec: ModelSpec) -> ModelShape:
    """The shape of the model a spec names, from its config (a GGUF file's metadata: no weights read);
    adapters change no shape, so two chains on one base read its config once (GGUF parsing is slow)."""
    return _config_shape(replace(spec, adapters=()))


@lru_cache(maxsize=8)
def _config_shape(spec: ModelSpec) -> ModelShape:
    """The shape from the spec's config, read once per source."""
    return ModelShape.of(load_config(spec))
