"""The model under study: a model with its architecture adapter (built once per load), its tokenizer and
record when known, and the calls into transformers' key-value cache whose spelling changed across
versions. Every method takes one of these instead of a (model, adapter) pair assembled at each call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from benchmark.models.adapter import ArchitectureAdapter
from benchmark.models.identity import ModelRecord
from benchmark.models.loading import LoadedModel, ModelSpec


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (where inputs must go; accelerate moves them on)."""
    return next(model.parameters()).device


@dataclass(frozen=True)
class ModelUnderStudy:
    """A causal LM ready for hooks, where its heads are (`adapter`), and what it was loaded as."""

    model: torch.nn.Module
    adapter: ArchitectureAdapter
    tokenizer: Any = None  # the fast tokenizer, when the caller has it
    record: ModelRecord | None = None  # identity, when loaded by `benchmark.models.load_model`
    spec: ModelSpec | None = None  # what it was loaded from, likewise
    _cache_keyword: str = field(init=False, repr=False, compare=False)
    _last_logits: dict = field(init=False, repr=False, compare=False)  # asks for the last position's only

    def __post_init__(self) -> None:
        parameters = inspect.signature(self.model.forward).parameters
        object.__setattr__(self, "_cache_keyword", "cache" if "cache" in parameters else "past_key_values")
        last = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        object.__setattr__(self, "_last_logits", last)

    @classmethod
    def of(cls, model: torch.nn.Module, tokenizer=None) -> ModelUnderStudy:
        """A model built or loaded by the caller (its adapter is built here, once)."""
        return cls(model, ArchitectureAdapter(model), tokenizer)

    @classmethod
    def loaded(cls, loaded: LoadedModel) -> ModelUnderStudy:
        """A model loaded by `benchmark.models.load_model`, with its tokenizer, record and spec."""
        adapter = ArchitectureAdapter(loaded.model)
        return cls(loaded.model, adapter, loaded.tokenizer, loaded.record, loaded.spec)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def prefill(self, input_ids: torch.Tensor):
        """Run `input_ids` [batch, pos] and return the key-value cache (transformers' old or new name); the
        logits are not needed, so only the last position's are computed where the model allows it."""
        output = self.model(input_ids, use_cache=True, **self._last_logits)
        return getattr(output, "cache", None) or output.past_key_values

    def extend(self, input_ids: torch.Tensor, cache, last_only: bool = False) -> torch.Tensor:
        """Logits [batch, pos, vocab] of `input_ids` continuing after `cache` (which grows by them); with
        `last_only`, where the model allows it, [batch, 1, vocab] of the last position alone."""
        keep = self._last_logits if last_only else {}
        return self.model(input_ids, **{self._cache_keyword: cache, "use_cache": True}, **keep).logits

    @staticmethod
    def cache_entries(cache) -> list[tuple]:
        """Per layer (keys [batch, kv_head, pos, d], values [batch, kv_head, pos, d], ...): the tensors of a
        key-value cache, in the form `cache_of` (DynamicCache's `ddp_cache_data`) takes back."""
        return [tuple(entry) for entry in cache]

    @staticmethod
    def cache_of(entries: list[tuple]):
        """A fresh DynamicCache holding `entries` (from `cache_entries`, rows possibly selected)."""
        return DynamicCache(ddp_cache_data=entries)

    @staticmethod
    def repeat_cached_rows(cache, k: int, from_layer: int) -> None:
        """Repeat every row of the cache k times in place (row i becomes rows i*k .. i*k+k-1), in the
        layers from `from_layer` on only (for `hooks.expand_rows`, whose lower layers run unrepeated)."""
        layers = getattr(cache, "layers", None)
        if layers is not None:
            for layer in layers[from_layer:]:
                layer.batch_repeat_interleave(k)
            return
        for entries in (cache.key_cache, cache.value_cache):
            for layer in range(from_layer, len(entries)):
                entries[layer] = entries[layer].repeat_interleave(k, dim=0)

    @staticmethod
    def cached_values(cache, layer: int) -> torch.Tensor:
        """The cached v of one layer: [batch, kv_head, pos, d] (DynamicCache's old or new layout)."""
        layers = getattr(cache, "layers", None)
        return layers[layer].values if layers is not None else cache.value_cache[layer]

    @staticmethod
    def set_cached_values(cache, layer: int, values: torch.Tensor) -> None:
        """Replace the cached v of one layer by `values` [batch, kv_head, pos, d] (same shape)."""
        layers = getattr(cache, "layers", None)
        if layers is not None:
            layers[layer].values = values
        else:
            cache.value_cache[layer] = values


# Opens a model for a `with` block (and may release it after): how CMAP holds one model at a time.
Opener = Callable[[], AbstractContextManager[ModelUnderStudy]]


def held(study: ModelUnderStudy) -> Opener:
    """An opener for a model that is already loaded (and stays loaded)."""
    return lambda: nullcontext(study)


@contextmanager
def opened(load: Callable[[], AbstractContextManager[LoadedModel]]) -> Iterator[ModelUnderStudy]:
    """The model a loader opens, as a model under study, for the loader's block."""
    with load() as loaded:
        yield ModelUnderStudy.loaded(loaded)
