"""Tiny random-weight models and a local tokenizer, so tests and benchmarks never need the hub.

`build_tiny_model(arch, directory)` writes a saved Hugging Face model (config, safetensors weights and
tokenizer) that `from_pretrained(directory)` and lm-eval's `pretrained=DIR` load offline.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from benchmark.data.words import LABELS, OBJECTS

TEMPLATE_WORDS = ("The", "Ġthe", "Ġis", "Ġin", "ĠBox", ",", ".", "Ġcontains")
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
_BYTE_ALPHABET = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))  # a set: sorted, so ids never vary


def _prefix_merges(token: str) -> list[tuple[str, str]]:
    """BPE merges that build `token` left to right, one character at a time."""
    return [(token[:i], token[i]) for i in range(1, len(token))]


def build_tokenizer(
    objects: tuple[str, ...] = OBJECTS, labels: tuple[str, ...] = LABELS, add_bos: bool = False
) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE whose merges make each template word, object and label one token.

    Words left out of `objects` / `labels` split into several tokens, as they would in a real tokenizer.
    """
    whole_words = [*TEMPLATE_WORDS, *("Ġ" + w for w in objects), *("Ġ" + w for w in labels)]
    merges = list(dict.fromkeys(m for word in whole_words for m in _prefix_merges(word)))
    tokens = [*SPECIAL_TOKENS, *_BYTE_ALPHABET, *(a + b for a, b in merges)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if add_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


def _tiny_configs(vocab_size: int) -> dict:
    """Small configs of every supported family; Llama, Mistral and Qwen2 use grouped-query attention."""
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    decoder = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=256, tie_word_embeddings=False, **common,
    )  # fmt: skip
    return {
        "llama": LlamaConfig(num_key_value_heads=2, **decoder),
        "mistral": MistralConfig(num_key_value_heads=2, sliding_window=None, **decoder),
        "qwen2": Qwen2Config(num_key_value_heads=2, **decoder),
        "gemma": GemmaConfig(**{**decoder, "num_key_value_heads": 1, "head_dim": 24}),
        "gpt2": GPT2Config(n_embd=64, n_layer=3, n_head=4, n_positions=256, **common),
        "gpt_neox": GPTNeoXConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=256,
            rotary_pct=0.5,
            **common,
        ),  # fmt: skip
    }


TINY_ARCHITECTURES: tuple[str, ...] = ("llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # Llama's


def build_tiny_lora(base: str | Path, out: str | Path, seed: int, use_dora: bool = False) -> Path:
    """A LoRA (or DoRA) adapter on the tiny Llama `base` with nonzero B weights, so merging it changes
    the logits (a fresh LoRA's B is zero)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(LORA_TARGETS), use_dora=use_dora
    )
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base).eval(), config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.save_pretrained(out)
    return Path(out)


def build_tiny_model(
    arch: str, directory: str | Path, seed: int = 0, tokenizer: PreTrainedTokenizerFast | None = None
) -> Path:
    """Save a tiny random-weight model of `arch` with the local tokenizer into `directory`."""
    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {list(TINY_ARCHITECTURES)}")
    tokenizer = tokenizer or build_tokenizer(add_bos=arch in ("llama", "gemma"))
    config = _tiny_configs(len(tokenizer))[arch]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    # Random init with std 0.02 gives near-uniform logits; larger weights make argmax decisions non-trivial.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.2)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_pair(directory: str | Path, arch: str = "llama") -> tuple[Path, Path]:
    """`directory/base`, a tiny model, and `directory/finetuned`, the same model with its attention output
    projections nudged (seeded): a pair whose circuits differ a little. (base, finetuned) directories."""
    directory = Path(directory)
    base = build_tiny_model(arch, directory / "base", seed=0)
    finetuned = build_tiny_model(arch, directory / "finetuned", seed=0)
    model = AutoModelForCausalLM.from_pretrained(finetuned)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "o_proj" in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.save_pretrained(finetuned)
    return base, finetuned


def _last_hidden(model, input_ids: torch.Tensor) -> torch.Tensor:
    """The input of the output embedding (the final hidden state) at the last position, [batch, hidden]."""
    captured = []
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0][:, -1]))
    try:
        with torch.no_grad():
            model(input_ids=input_ids, use_cache=False)
    finally:
        handle.remove()
    return captured[0].double()


def steer_answers(model, input_ids: torch.Tensor, targets: torch.Tensor, margin: float = 10.0) -> None:
    """Rewrite the (untied) output embedding so that row r's argmax is exactly `targets[r]`.

    Every other token's logit becomes 0 and each target's logit `margin` on its rows (an exact
    least-squares fit, so rows must not outnumber the hidden size). Gives models with a known answer per row.
    """
    head = model.get_output_embeddings()
    if head.weight is model.get_input_embeddings().weight:
        raise ValueError("steer_answers needs untied input and output embeddings (not gpt2)")
    hidden = _last_hidden(model, input_ids)
    if hidden.shape[0] > hidden.shape[1]:
        raise ValueError(f"at most {hidden.shape[1]} rows can be steered exactly, got {hidden.shape[0]}")
    tokens = sorted(set(targets.tolist()))
    wanted = torch.zeros(hidden.shape[0], len(tokens), dtype=torch.float64)
    wanted[torch.arange(hidden.shape[0]), [tokens.index(t) for t in targets.tolist()]] = margin
    rows = (torch.linalg.pinv(hidden) @ wanted).T  # [tokens, hidden]
    with torch.no_grad():
        head.weight.zero_()
        head.weight[tokens] = rows.to(head.weight.dtype)
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()


def build_known_answer_model(
    arch: str, directory: str | Path, examples, correct, seed: int = 0, margin: float = 10.0
) -> Path:
    """Save a tiny model that answers `examples[r]` right exactly when `correct[r]` (else another object)."""
    from benchmark.data.tokenization import encode_examples

    if len(examples) != len(correct):
        raise ValueError(f"{len(examples)} examples but {len(correct)} correctness flags")
    build_tiny_model(arch, directory, seed=seed)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    encoded = encode_examples(tokenizer, examples)
    answers = encoded.answer_ids.tolist()
    choices = sorted(set(answers))
    if len(choices) < 2:
        raise ValueError("the examples need at least two different answers")
    wrong = [choices[0] if a != choices[0] else choices[1] for a in answers]
    targets = torch.tensor([a if ok else w for a, ok, w in zip(answers, correct, wrong, strict=True)])
    steer_answers(model, encoded.input_ids, targets, margin)
    model.save_pretrained(directory)
    return Path(directory)
