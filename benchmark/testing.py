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
_BYTE_ALPHABET = tuple(pre_tokenizers.ByteLevel.alphabet())


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
