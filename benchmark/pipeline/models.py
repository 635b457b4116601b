"""Keep at most one model of a pair in memory, loading it only when a stage that needs it runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from benchmark.models import LoadedModel, ModelPair
from benchmark.models.adapter import ArchitectureAdapter

WHICH = ("base", "finetuned")


class OneModelAtATime:
    """Loads the base or the fine-tuned model on demand; switching releases the other first."""

    def __init__(self, pair: ModelPair, progress: bool | None = None):
        self.pair, self.progress = pair, progress
        self._which: str | None = None
        self._loaded: LoadedModel | None = None
        self._adapter: ArchitectureAdapter | None = None
        self.loads: list[str] = []  # which model each load was, in order (for tests and timing notes)

    def get(self, which: str) -> tuple[LoadedModel, ArchitectureAdapter]:
        """The loaded `which` model and its adapter, loading it (and releasing the other) if needed."""
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH}, got {which!r}")
        if self._which != which:
            self.release()
            self._loaded = self.pair.load(which, self.progress)
            self._adapter, self._which = ArchitectureAdapter(self._loaded.model), which
            self.loads.append(which)
        return self._loaded, self._adapter

    @contextmanager
    def use(self, which: str) -> Iterator[LoadedModel]:
        """`get` as a context manager (for `run_cmap`'s loaders); the model stays loaded afterwards."""
        yield self.get(which)[0]

    def release(self) -> None:
        """Drop the loaded model and free its memory (also on the GPU)."""
        self._loaded = self._adapter = self._which = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
