"""The model under study: a loaded model with its architecture adapter, built once per load.

Methods that hook into heads need both the model and where its heads live; the pipeline hands them this
one object instead of a (model, adapter) pair assembled at each call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.models.adapter import ArchitectureAdapter
from benchmark.models.identity import ModelRecord
from benchmark.models.loading import LoadedModel


@dataclass(frozen=True)
class ModelUnderStudy:
    """A `LoadedModel` and its `ArchitectureAdapter` (where each head's output and q/k/v are)."""

    loaded: LoadedModel
    adapter: ArchitectureAdapter

    @classmethod
    def of(cls, loaded: LoadedModel) -> ModelUnderStudy:
        return cls(loaded, ArchitectureAdapter(loaded.model))

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def record(self) -> ModelRecord:
        return self.loaded.record

    @property
    def device(self) -> torch.device:
        """Where the model's first parameters live (inputs go there; accelerate moves them on)."""
        return next(self.model.parameters()).device
