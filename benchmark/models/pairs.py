"""Check that a base and a fine-tuned model can be compared head by head, then load them one at a time.

Both must share architecture, head geometry and the token -> id map (SPEC section 2). The check reads
only configs and tokenizers, so two 7B models never have to sit on one device together (issue 5).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from benchmark.errors import BenchmarkError
from benchmark.models.adapter import head_shape
from benchmark.models.fingerprint import vocab_sha256
from benchmark.models.identity import HeadShape
from benchmark.models.loading import (
    LoadedModel,
    ModelSpec,
    adapter_dirs,
    load_config,
    load_model,
    load_tokenizer,
    resolve_source,
)
from benchmark.models.lora import check_adapter

Which = Literal["base", "finetuned"]
N_EXAMPLES = 5


class PairMismatchError(BenchmarkError, ValueError):
    """The two models of a pair differ in something the suite needs to be identical."""


def _text_config(config: PretrainedConfig) -> PretrainedConfig:
    return getattr(config, "text_config", None) or config


def config_differences(base: PretrainedConfig, finetuned: PretrainedConfig) -> list[str]:
    """Each shape property that differs, as 'name: base vs finetuned'."""
    a, b = _text_config(base), _text_config(finetuned)
    shape_a, shape_b = head_shape(base), head_shape(finetuned)
    pairs = {
        "model_type": (a.model_type, b.model_type),
        "layers": (shape_a.n_layers, shape_b.n_layers),
        "heads": (shape_a.n_heads, shape_b.n_heads),
        "kv heads": (shape_a.n_kv_heads, shape_b.n_kv_heads),
        "head_dim": (shape_a.head_dim, shape_b.head_dim),
        "hidden_size": (a.hidden_size, b.hidden_size),
        "embedding rows (config vocab_size)": (a.vocab_size, b.vocab_size),
    }
    arch_a, arch_b = getattr(base, "architectures", None), getattr(finetuned, "architectures", None)
    if arch_a and arch_b:  # GGUF configs leave it empty
        pairs["architecture"] = (arch_a[0], arch_b[0])
    return [f"{name}: {x} vs {y}" for name, (x, y) in pairs.items() if x != y]


def vocab_difference(
    base: dict[str, int], finetuned: dict[str, int], n_examples: int = N_EXAMPLES
) -> str | None:
    """Describe how two token -> id maps differ (count and a few examples), or None when identical."""
    if base == finetuned:
        return None
    only_base = sorted(set(base) - set(finetuned))
    only_ft = sorted(set(finetuned) - set(base))
    moved = sorted(token for token in set(base) & set(finetuned) if base[token] != finetuned[token])
    parts = []
    if only_base:
        parts.append(f"{len(only_base)} tokens only in base, e.g. {only_base[:n_examples]}")
    if only_ft:
        parts.append(f"{len(only_ft)} tokens only in fine-tuned, e.g. {only_ft[:n_examples]}")
    if moved:
        examples = [f"{token!r}: {base[token]} vs {finetuned[token]}" for token in moved[:n_examples]]
        parts.append(f"{len(moved)} tokens with different ids, e.g. {examples}")
    n_differ = len(only_base) + len(only_ft) + len(moved)
    return (
        f"tokenizer vocabulary: {n_differ} tokens differ ({len(base)} vs {len(finetuned)} tokens): "
        + "; ".join(parts)
    )


# A prompt of the task: both tokenizers must split it into the same ids (special tokens included).
_PROBE = "The apple is in Box F, the computer is in Box Q. Box F contains the"


def tokenization_difference(base, finetuned) -> str | None:
    """How two tokenizers encode the same prompt differently (BOS/EOS handling, normalizers), or None."""
    a, b = base.encode(_PROBE), finetuned.encode(_PROBE)
    if a == b:
        return None
    return (
        f"tokenization of one prompt: {len(a)} vs {len(b)} tokens, starting {a[:3]} vs {b[:3]} (special "
        "tokens such as BOS/EOS are added differently; use the same tokenizer files for both models)"
    )


def _raise_if_different(
    base_name: str, ft_name: str, configs: tuple[PretrainedConfig, ...], tokenizers: tuple
) -> HeadShape:
    differences = config_differences(*configs)
    vocab = vocab_difference(*(tokenizer.get_vocab() for tokenizer in tokenizers))
    tokenization = tokenization_difference(*tokenizers)
    differences += [text for text in (vocab, tokenization) if text]
    if differences:
        raise PairMismatchError(
            f"base {base_name!r} and fine-tuned {ft_name!r} cannot be compared head by head; they differ in "
            + "; ".join(differences)
        )
    return head_shape(configs[0])


def check_pair(base: LoadedModel, finetuned: LoadedModel) -> HeadShape:
    """Raise PairMismatchError naming every difference between two loaded models; return their head shape."""
    return _raise_if_different(
        base.spec.model,
        finetuned.spec.model,
        (base.model.config, finetuned.model.config),
        (base.tokenizer, finetuned.tokenizer),
    )


@dataclass(frozen=True)
class ModelPair:
    """A checked pair of specs; each model is loaded only when asked, so one can be released first."""

    base: ModelSpec
    finetuned: ModelSpec
    model_type: str
    head_shape: HeadShape
    vocab_sha256: str

    def spec(self, which: Which) -> ModelSpec:
        if which not in ("base", "finetuned"):
            raise ValueError(f"which must be 'base' or 'finetuned', not {which!r}")
        return self.base if which == "base" else self.finetuned

    def load(self, which: Which, progress: bool | None = None) -> LoadedModel:
        """Load one side of the pair and confirm it matches what the config check promised."""
        loaded = load_model(self.spec(which), progress)
        record = loaded.record
        if record.head_shape != self.head_shape or record.vocab_sha256 != self.vocab_sha256:
            raise PairMismatchError(
                f"{which} model {record.id!r} loaded with head shape {record.head_shape} and vocabulary "
                f"{record.vocab_sha256[:12]}, but the pair was checked for {self.head_shape} and "
                f"{self.vocab_sha256[:12]}"
            )
        return loaded

    @contextmanager
    def loaded(self, which: Which, progress: bool | None = None) -> Iterator[LoadedModel]:
        """Load one side for the duration of a `with` block, then free its weights (see `release`)."""
        loaded = self.load(which, progress)
        try:
            yield loaded
        finally:
            release(loaded)


def release(loaded: LoadedModel) -> None:
    """Free a model's weight memory now, even if references remain: the model is unusable afterwards."""
    for tensor in (*loaded.model.parameters(), *loaded.model.buffers()):
        tensor.data = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _base_key(spec: ModelSpec) -> tuple:
    """What decides a spec's config and tokenizer: adapters change neither."""
    return (spec.model, spec.revision, spec.gguf_file, spec.trust_remote_code)


def check_pair_configs(base: ModelSpec, finetuned: ModelSpec) -> ModelPair:
    """Compare configs and tokenizers only (no weights) and return the pair unloaded.

    Raises PairMismatchError naming each difference; missing paths fail here too, and so does an adapter
    of either model that is corrupt or does not fit its model (AdapterMismatchError, `models.lora`).
    """
    read: dict[tuple, tuple[PretrainedConfig, PreTrainedTokenizerBase]] = {}
    for which, spec in (("base", base), ("fine-tuned", finetuned)):
        dirs = adapter_dirs(spec)
        if _base_key(spec) not in read:  # two adapter chains on one base read it once (GGUF parsing is slow)
            source = resolve_source(spec)
            read[_base_key(spec)] = (load_config(spec, source), load_tokenizer(spec, source))
        for position, directory in enumerate(dirs, start=1):  # in seconds, not after the base model's pass
            check_adapter(directory, read[_base_key(spec)][0], f"{which} adapter {position} of {len(dirs)}")
    (config_a, tokenizer_a), (config_b, tokenizer_b) = read[_base_key(base)], read[_base_key(finetuned)]
    configs, tokenizers = (config_a, config_b), (tokenizer_a, tokenizer_b)
    shape = _raise_if_different(base.model, finetuned.model, configs, tokenizers)
    model_type = _text_config(config_a).model_type
    return ModelPair(base, finetuned, model_type, shape, vocab_sha256(tokenizer_a.get_vocab()))


def load_pair(
    base: ModelSpec, finetuned: ModelSpec, progress: bool | None = None
) -> tuple[LoadedModel, LoadedModel]:
    """Check the pair from configs, then load both models (for pairs that fit on the device together).

    For large models use `check_pair_configs(...).loaded(which)` to hold one model at a time.
    """
    pair = check_pair_configs(base, finetuned)
    return pair.load("base", progress), pair.load("finetuned", progress)
