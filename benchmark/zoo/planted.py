"""Hand-compiled GPT-2 models whose entity-tracking mechanism is known by construction (SPEC 8b).

No training: every weight is set so that named heads implement the four groups of SPEC section 4, or a
lexical mechanism in other heads, beside distractor heads that discovery must reject. The models use the
suite's own local tokenizer and are saved with `save_pretrained` (config.json: `config_fields`), so they are
scored like any other model.

The residual stream is a set of named blocks, each holding one centred one-hot code (e_i - 1/k): every
vector written sums to 0, so LayerNorm never shifts a feature, and a constant anchor pair (+K, -K) in
every position embedding dominates the norm, so LayerNorm only rescales, by an almost fixed factor that
the LayerNorm gains undo. MLPs are zero. Blocks:

    anchor 2 | type 3 (object, label, other) | label 26 | object 100 | pos, ord_d, ord_c, ord_b (10 each)

`pos` is the box ordinal of a token's segment (from the position embedding); the groups copy it along:
D writes it into `ord_d` at each context label, C copies `ord_d` from the earlier occurrence of the
query label into `ord_c` at the query label, B copies `ord_c` into `ord_b` at the last token, and A
fetches the object whose `pos` matches `ord_b`. The lm head reads the `object` block at the last token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from benchmark.data.words import LABELS, OBJECTS
from benchmark.testing import build_tokenizer

CONSTRUCTION_VERSION = "4"  # bump when a weight or config.json changes: cached builds are then rebuilt
SEGMENT = 7  # tokens per box in the boxes template ("the apple is in Box F,")
N_POSITIONS = 64
N_ORDINALS = N_POSITIONS // SEGMENT + 1
N_LAYERS, N_HEADS, HEAD_DIM = 4, 3, 100
N_INNER = 4  # MLP width: the MLPs are zero, so they are kept as small as GPT-2 allows (cheap forwards)
D_MODEL = N_HEADS * HEAD_DIM
ANCHOR = 50.0  # the constant (+K, -K) pair that fixes LayerNorm's scale
GAIN = 30.0  # attention logit margin of every planted pattern
READOUT = 20.0  # answer logit of a unit object code at the last token
NOISE = 0.05  # what a distractor head writes, relative to a planted head
RECENCY = 2.0  # blurred detector: logit bonus per later box among colliding labels
N_CLASSES = 5  # blurred detector: labels read through a rank-5 projection (label index mod 5)
TYPES = ("object", "label", "other")
BLOCKS: dict[str, int] = {
    "anchor": 2,
    "type": len(TYPES),
    "label": len(LABELS),
    "object": len(OBJECTS),
    "pos": N_ORDINALS,
    "ord_d": N_ORDINALS,
    "ord_c": N_ORDINALS,
    "ord_b": N_ORDINALS,
}
# Coordinates of the query / key space of a head (the value space reuses coordinates from 0).
QK_SPACES: dict[str, int] = {"ord": N_ORDINALS, "type": len(TYPES), "label": len(LABELS), "ramp": 1}


def _offsets(sizes: dict[str, int]) -> dict[str, slice]:
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = slice(start, start + size)
        start += size
    return out


BLOCK = _offsets(BLOCKS)
SPACE = _offsets(QK_SPACES)
assert BLOCK["ord_b"].stop <= D_MODEL and SPACE["ramp"].stop <= HEAD_DIM


def centred(index: int, size: int) -> torch.Tensor:
    """The code e_index - 1/size of a block: [size], sums to 0."""
    code = torch.full((size,), -1.0 / size)
    code[index] += 1.0
    return code


def ordinal(position: int) -> int:
    """Box ordinal of a token position: segment i holds positions 7i-1 .. 7i+5 (the query segment is n)."""
    return min((position + 1) // SEGMENT, N_ORDINALS - 1)


def label_classes(n_classes: int) -> torch.Tensor:
    """[label, class] indicator of the low-rank projection: label i falls in class i mod n_classes."""
    return torch.eye(n_classes)[torch.arange(len(LABELS)) % n_classes]


class HeadWeights:
    """q, k, v weights and biases and the output projection of one head, filled by the pattern helpers."""

    def __init__(self) -> None:
        self.wq, self.wk, self.wv = (torch.zeros(D_MODEL, HEAD_DIM) for _ in range(3))  # [d_model, head_dim]
        self.bq, self.bk = torch.zeros(HEAD_DIM), torch.zeros(HEAD_DIM)
        self.wo = torch.zeros(HEAD_DIM, D_MODEL)  # [head_dim, d_model]

    def read(self, which: str, block: str, space: str, gain: float = 1.0, matrix=None) -> None:
        """q or k of `space` += gain * block code (through `matrix` [block, m] if given)."""
        weight = self.wq if which == "q" else self.wk
        matrix = torch.eye(BLOCKS[block]) if matrix is None else matrix
        columns = range(SPACE[space].start, SPACE[space].start + matrix.shape[1])
        weight[BLOCK[block], columns.start : columns.stop] += gain * matrix

    def bias(self, space: str, index: int, value: float) -> None:
        """A constant query coordinate (the key's coordinate then adds to every score)."""
        self.bq[SPACE[space].start + index] += value

    def copy(self, source: str, target: str, gain: float = 1.0) -> None:
        """Value = the `source` code of the attended token; output = gain * it, written into `target`."""
        size = BLOCKS[source]
        self.wv[BLOCK[source], :size] = torch.eye(size)
        self.wo[:size, BLOCK[target]] = gain * (torch.eye(size) - 1.0 / size)  # centring keeps sums at 0


def segment_token(head: HeadWeights, kind: str, ordinal_block: str = "pos") -> None:
    """Attend to the token of type `kind` in the segment whose ordinal is in `ordinal_block` (own: pos)."""
    head.read("q", ordinal_block, "ord", GAIN)
    head.bias("type", TYPES.index(kind), GAIN)  # centred type codes differ by 1 between types
    head.read("k", "pos", "ord")
    head.read("k", "type", "type")


def label_match(head: HeadWeights, gain: float, matrix=None) -> None:
    """Attend to an earlier label equal to the current token's (through `matrix`), never in own segment."""
    head.read("q", "label", "label", gain, matrix)
    head.read("k", "label", "label", 1.0, matrix)
    head.read("q", "pos", "ord", -2 * gain)  # own segment (the query label itself, the last token) loses
    head.read("k", "pos", "ord")


def detector(head: HeadWeights, rank: int | None) -> None:
    """C: the query label's earlier occurrence, exactly (rank None) or through a rank-`rank` projection
    under which labels of one class collide; then the latest colliding box wins (a recency bonus)."""
    label_match(head, 2 * GAIN, None if rank is None else label_classes(rank))
    head.bias("ramp", 0, RECENCY)
    head.read("k", "pos", "ramp", 1.0, torch.arange(N_ORDINALS, dtype=torch.float32)[:, None])
    head.copy("ord_d", "ord_c")


def broad(head: HeadWeights, source: str, kind: str | None) -> None:
    """Distractor: attend to every earlier token (or every one of type `kind`), write NOISE x the mean."""
    if kind is not None:
        head.bias("type", TYPES.index(kind), GAIN)
        head.read("k", "type", "type")
    head.copy(source, source, NOISE)


Builder = Callable[[HeadWeights], None]


def _label_distractor(head: HeadWeights) -> None:
    broad(head, "label", None)


def _with_object_distractors(heads: dict[tuple[int, int], Builder]) -> dict[tuple[int, int], Builder]:
    """Head 2 of every layer: attends to every earlier object and writes NOISE x their mean code."""
    return {**heads, **{(layer, 2): (lambda h: broad(h, "object", "object")) for layer in range(N_LAYERS)}}


# The four groups of SPEC section 4 (positional mechanism, head 0 of each layer).
POSITIONAL: dict[str, tuple[tuple[int, int], str]] = {
    "structure_reader": ((0, 0), "D: at each label, its box ordinal (pos -> ord_d)"),
    "position_detector": ((1, 0), "C: at the query label, the ordinal of its earlier occurrence"),
    "position_transmitter": ((2, 0), "B: at the last token, the query label's ord_c -> ord_b"),
    "value_fetcher": ((3, 0), "A: at the last token, the object whose ordinal is ord_b"),
}
# The lexical mechanism (head 1 of layers 0-2): labels bind their objects, the query label is looked up.
LEXICAL: dict[str, tuple[tuple[int, int], str]] = {
    "binder": ((0, 1), "at each label, the object of its segment (object code copied to the label)"),
    "label_mover": ((1, 1), "at the last token, the query label's identity"),
    "lexical_fetcher": ((2, 1), "at the last token, the object bound to the context label that matches"),
}


def _positional_heads(rank: int | None) -> dict[tuple[int, int], Builder]:
    def fetcher(h: HeadWeights) -> None:
        segment_token(h, "object", "ord_b")
        h.copy("object", "object")

    def reader(h: HeadWeights) -> None:
        segment_token(h, "label")
        h.copy("pos", "ord_d")

    def transmitter(h: HeadWeights) -> None:
        segment_token(h, "label")
        h.copy("ord_c", "ord_b")

    heads = {(layer, 1): _label_distractor for layer in range(N_LAYERS)}
    heads[(0, 0)], heads[(2, 0)], heads[(3, 0)] = reader, transmitter, fetcher
    heads[(1, 0)] = lambda h: detector(h, rank)
    return _with_object_distractors(heads)


def _lexical_heads() -> dict[tuple[int, int], Builder]:
    def binder(h: HeadWeights) -> None:
        segment_token(h, "object")
        h.copy("object", "object")

    def mover(h: HeadWeights) -> None:
        segment_token(h, "label")
        h.copy("label", "label")

    def lexical_fetcher(h: HeadWeights) -> None:
        label_match(h, GAIN)
        h.copy("object", "object")

    heads = {(0, 1): binder, (1, 1): mover, (2, 1): lexical_fetcher}
    heads[(3, 1)] = _label_distractor
    return _with_object_distractors(heads)  # head 0 of every layer stays zero: positional heads off


@dataclass(frozen=True)
class PlantedModel:
    """One hand-compiled model: its heads, and what each planted group should be found to be."""

    name: str
    description: str
    heads: Callable[[], dict[tuple[int, int], Builder]]
    groups: dict[str, tuple[tuple[int, int], ...]]  # SPEC group -> planted heads a discovery must find


_POSITIONAL_GROUPS = {group: (head,) for group, (head, _) in POSITIONAL.items()}
PLANTED_MODELS: dict[str, PlantedModel] = {
    model.name: model
    for model in (
        PlantedModel(
            "positional-blurred",
            f"positional mechanism; the detector reads labels through a rank-{N_CLASSES} projection",
            lambda: _positional_heads(N_CLASSES),
            _POSITIONAL_GROUPS,
        ),
        PlantedModel(
            "positional-exact",
            "positional mechanism, exact detector",
            lambda: _positional_heads(None),
            _POSITIONAL_GROUPS,
        ),  # fmt: skip
        PlantedModel(
            "lexical",
            "lexical mechanism in other heads (labels bind objects); the positional heads are zero",
            _lexical_heads,
            {
                "value_fetcher": (LEXICAL["lexical_fetcher"][0],),
                "position_transmitter": (LEXICAL["label_mover"][0],),
            },
        ),
    )
}
DISTRACTOR_KINDS = ("broad label mean (head 1 where no mechanism)", "object mean (head 2 of every layer)")


def _embeddings(tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token embeddings [vocab, d], position embeddings [positions, d] and the lm head [vocab, d]."""
    vocab = len(tokenizer)
    wte, lm_head = torch.zeros(vocab, D_MODEL), torch.zeros(vocab, D_MODEL)
    wte[:, BLOCK["type"]] = centred(TYPES.index("other"), len(TYPES))
    for kind, words in (("label", LABELS), ("object", OBJECTS)):
        for index, word in enumerate(words):
            token = tokenizer.convert_tokens_to_ids("Ġ" + word)
            wte[token, BLOCK["type"]] = centred(TYPES.index(kind), len(TYPES))
            wte[token, BLOCK[kind]] = centred(index, len(words))
            if kind == "object":
                lm_head[token, BLOCK["object"].start + index] = READOUT
    wpe = torch.zeros(N_POSITIONS, D_MODEL)
    wpe[:, BLOCK["anchor"]] = torch.tensor([ANCHOR, -ANCHOR])
    for position in range(N_POSITIONS):
        wpe[position, BLOCK["pos"]] = centred(ordinal(position), N_ORDINALS)
    return wte, wpe, lm_head


def config_fields(vocab_size: int) -> dict:
    """The planted models' config.json: every GPT-2 setting their weights rely on, stated rather than left
    to the library's defaults, and nothing else. `save_pretrained` would write every default too and the
    transformers release that wrote it, so the file's SHA-256 (each result's config_sha256) would change
    with each release and a committed row would stop verifying; this file's bytes depend on neither."""
    return dict(
        model_type="gpt2", architectures=["GPT2LMHeadModel"], dtype="float32",
        vocab_size=vocab_size, n_positions=N_POSITIONS, n_embd=D_MODEL, n_layer=N_LAYERS, n_head=N_HEADS,
        n_inner=N_INNER, activation_function="gelu_new", layer_norm_epsilon=1e-5,
        scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=False,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip


def _config(vocab_size: int) -> GPT2Config:
    fields = config_fields(vocab_size)
    del fields["model_type"], fields["dtype"]  # the class's own; the loader sets the dtype
    return GPT2Config(**fields)


@torch.no_grad()
def compile_model(name: str) -> tuple[GPT2LMHeadModel, object]:
    """The planted model `name` (see PLANTED_MODELS) and its tokenizer, in memory, in eval mode."""
    if name not in PLANTED_MODELS:
        raise ValueError(f"unknown planted model {name!r}; choose one of {sorted(PLANTED_MODELS)}")
    tokenizer = build_tokenizer()
    model = GPT2LMHeadModel(_config(len(tokenizer))).eval()
    for parameter in model.parameters():
        parameter.zero_()
    wte, wpe, lm_head = _embeddings(tokenizer)
    transformer = model.transformer
    transformer.wte.weight.copy_(wte)
    transformer.wpe.weight.copy_(wpe)
    model.lm_head.weight.copy_(lm_head)
    scale = math.sqrt(2 * ANCHOR**2 / D_MODEL)  # LayerNorm's std of an anchor-dominated residual
    for norm in (*(block.ln_1 for block in transformer.h), *(block.ln_2 for block in transformer.h)):
        norm.weight.fill_(scale)
    transformer.ln_f.weight.fill_(scale)
    for (layer, index), builder in PLANTED_MODELS[name].heads().items():
        _install(transformer.h[layer].attn, index, builder)
    return model, tokenizer


def _install(attention, index: int, builder: Builder) -> None:
    """Write one head's weights into GPT-2's fused c_attn [d, 3d] and c_proj [d, d] (Conv1D: x @ W)."""
    head = HeadWeights()
    builder(head)
    columns = slice(index * HEAD_DIM, (index + 1) * HEAD_DIM)
    root = math.sqrt(HEAD_DIM)  # GPT-2 divides scores by sqrt(head_dim)
    parts = ((head.wq * root, head.bq * root), (head.wk, head.bk), (head.wv, None))
    for part, (weight, bias) in enumerate(parts):
        offset = slice(part * D_MODEL + columns.start, part * D_MODEL + columns.stop)
        attention.c_attn.weight[:, offset] = weight
        if bias is not None:
            attention.c_attn.bias[offset] = bias
    attention.c_proj.weight[columns] = head.wo


def build_planted(name: str, directory: str | Path) -> Path:
    """Compile the planted model `name` and save it (weights, config, tokenizer) into `directory`."""
    model, tokenizer = compile_model(name)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    fields = config_fields(len(tokenizer))
    (directory / "config.json").write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    (directory / "PLANTED").write_text(f"{name} construction {CONSTRUCTION_VERSION}\n")
    return directory


def planted_model_dir(name: str, cache_dir: str | Path) -> Path:
    """`cache_dir/name`, built there unless a build of this construction version is already there."""
    directory = Path(cache_dir) / name
    stamp = directory / "PLANTED"
    if not (stamp.is_file() and stamp.read_text() == f"{name} construction {CONSTRUCTION_VERSION}\n"):
        build_planted(name, directory)
    return directory


def predicted_box(name: str, labels: tuple[str, ...], query_index: int) -> int:
    """The box whose object the planted model `name` answers: the queried one, except that the blurred
    detector finds the latest context box whose label falls in the query label's class."""
    if name != "positional-blurred":
        return query_index
    klass = LABELS.index(labels[query_index]) % N_CLASSES
    return max(j for j, label in enumerate(labels) if LABELS.index(label) % N_CLASSES == klass)


def circuit_recovery(planted: dict[str, tuple], found: dict[str, list]) -> dict[str, tuple[float, float]]:
    """(precision, recall) per group of a discovered circuit against the planted heads (1.0 for 0 / 0)."""
    out = {}
    for group in sorted(set(planted) | set(found)):
        want = {tuple(h) for h in planted.get(group, ())}
        got = {tuple(h) for h in found.get(group, ())}
        hit = len(want & got)
        out[group] = (hit / len(got) if got else 1.0, hit / len(want) if want else 1.0)
    return out
