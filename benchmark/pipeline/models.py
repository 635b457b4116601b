"""Keep at most one model of a pair in memory, loading it only when a stage that needs it runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from benchmark.models import ModelPair, ModelUnderStudy
from benchmark.pipeline.pair import Side


class OneModelAtATime:
    """Loads the base or the fine-tuned model on demand; switching releases the other first."""

    def __init__(self, pair: ModelPair, progress: bool | None = None):
        self.pair, self.progress = pair, progress
        self._side: Side | None = None
        self._study: ModelUnderStudy | None = None
        self.loads: list[Side] = []  # which model each load was, in order (for tests and timing notes)

    def get(self, side: Side) -> ModelUnderStudy:
        """The loaded `side` model, loading it (and releasing the other) if needed."""
        side = Side(side)
        if self._side is not side:
            self.release()
            self._study = ModelUnderStudy.loaded(self.pair.load(side.value, self.progress))
            self._side = side
            self.loads.append(side)
        return self._study

    @contextmanager
    def use(self, side: Side) -> Iterator[ModelUnderStudy]:
        """`get` as a context manager (an opener for `run_cmap`); the model stays loaded afterwards."""
        yield self.get(side)

    def release(self) -> None:
        """Drop the loaded model and free its memory (also on the GPU)."""
        self._study = self._side = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
