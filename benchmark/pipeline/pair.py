"""The two sides of a scored pair, typed: `Side.BASE` / `Side.FINETUNED` and a `Pair` holding one value each.

Used wherever the pipeline keeps something per model (specs, fingerprints, model records, outputs), so no
stage spells "base" or "finetuned" by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


class Side(StrEnum):
    """Which model of the pair."""

    BASE = "base"
    FINETUNED = "finetuned"


SIDES: tuple[Side, ...] = tuple(Side)


@dataclass(frozen=True)
class Pair(Generic[T]):
    """One value for the base model and one for the fine-tuned model."""

    base: T
    finetuned: T

    def __getitem__(self, side: Side) -> T:
        return self.base if Side(side) is Side.BASE else self.finetuned

    def __iter__(self) -> Iterator[T]:
        return iter((self.base, self.finetuned))

    def map(self, function: Callable[[T], U]) -> Pair[U]:
        return Pair(function(self.base), function(self.finetuned))

    @classmethod
    def build(cls, function: Callable[[Side], T]) -> Pair[T]:
        return cls(function(Side.BASE), function(Side.FINETUNED))
