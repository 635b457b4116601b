"""The value kinds that configs and result records are written in: bounded numbers, hashes, heads.

Bounds, patterns and markers ride on `Annotated`, so the result file's schema generator, its codec and its
meaning checks read them from the same type hints the methods' configs and records are declared with.
Torch-free and import-free: every layer of the suite may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated


@dataclass(frozen=True)
class Bounds:
    """`Annotated` metadata: a number's inclusive range (None: unbounded on that side)."""

    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Pattern:
    """`Annotated` metadata: a string must match this regular expression."""

    regex: str


class Marker(StrEnum):
    """`Annotated` metadata naming what a value is, for the meaning checks."""

    HEAD = "head"  # a [layer, head] pair, inside the model's shape
    LAYER_HEAD_MATRIX = "layer_head_matrix"  # nested lists [layer][head]


Rate = Annotated[float, Bounds(0.0, 1.0)]  # an accuracy, a share, a mask value, an IoU
NonNegative = Annotated[float, Bounds(0.0)]  # e.g. faithfulness, a ratio that may exceed 1
Count = Annotated[int, Bounds(0)]
Positive = Annotated[int, Bounds(1)]
Sha256 = Annotated[str, Pattern("^[0-9a-f]{64}$")]
Outcomes = Annotated[str, Pattern("^[01]+$")]  # one character per prompt, in order: 1 right, 0 wrong
# One character per prompt of a mechanism-mix patch: o(riginal), p(ositional), l(exical), r(eflexive),
# x (another answer), - (left out: the clean or the counterfactual run answers wrongly).
MixAnswers = Annotated[str, Pattern("^[oplrx-]+$")]
Head = Annotated[tuple[Count, Count], Marker.HEAD]  # [layer, head], both counted from 0
Heads = tuple[Head, ...]
LayerHeadMatrix = Annotated[tuple[tuple[float, ...], ...], Marker.LAYER_HEAD_MATRIX]  # [layer][head]


def defined(value: float | None) -> float | None:
    """A number as a record holds it: None when undefined (None or NaN), else a plain float."""
    return None if value is None or value != value else float(value)


def outcome_text(correct) -> str:
    """Per-prompt decisions as an `Outcomes` string: "1" for a right answer, "0" for a wrong one."""
    return "".join("1" if right else "0" for right in correct)
