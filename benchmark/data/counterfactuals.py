"""Counterfactual pairs for path patching (SPEC section 4) and the three DCM desiderata (SPEC section 6).

Every pair keeps the clean (base) example, its counterfactual, and the target the desideratum predicts
when the right components are patched from the counterfactual into the clean run. Counterfactual
contexts are drawn from the clean example's split, so splits stay disjoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from benchmark.data.boxes import (
    Context,
    DatasetError,
    Example,
    Split,
    check_words,
    context_rng,
    draw_context,
)

_MAX_DRAWS = 1000


class Desideratum(StrEnum):
    """What a counterfactual is built to move: the SPEC's three DCM desiderata, plus path patching."""

    PATH_PATCHING = "path_patching"
    OBJECT = "object"
    POSITION = "position"
    LABEL = "label"


DCM_DESIDERATA: tuple[Desideratum, ...] = (Desideratum.OBJECT, Desideratum.POSITION, Desideratum.LABEL)


@dataclass(frozen=True)
class CounterfactualPair:
    """A clean example, its counterfactual, and the expected answer (with leading space) under patching."""

    clean: Example
    counterfactual: Example
    target: str
    desideratum: Desideratum


def _other_index(rng: random.Random, n_boxes: int, exclude: set[int]) -> int:
    return rng.choice([i for i in range(n_boxes) if i not in exclude])


def _disjoint_context(rng: random.Random, clean: Context, split: Split, shared_label: tuple[int, str] | None):
    """A context of the split avoiding the clean objects and labels, except `shared_label` = (pos, label)."""
    objects = [o for o in split.objects if o not in clean.objects]
    labels = [label for label in split.labels if label not in clean.labels]
    if shared_label is None:
        return draw_context(rng, clean.n_boxes, clean.split, objects, labels)
    position, label = shared_label
    for _ in range(_MAX_DRAWS):
        context = draw_context(rng, clean.n_boxes, clean.split, objects, labels)
        new_labels = list(context.labels)
        new_labels[position] = label
        candidate = Context(context.objects, tuple(new_labels))
        if candidate.split == clean.split:
            return candidate
    raise DatasetError(f"could not draw a {clean.split} counterfactual sharing label {label!r}")


def build_pair(
    rng: random.Random, clean: Example, split: Split, desideratum: Desideratum
) -> CounterfactualPair:
    """Build one counterfactual pair for `clean` as SPEC sections 4 and 6 define it."""
    n, i = clean.n_boxes, clean.query_index
    base = clean.context
    if desideratum is Desideratum.LABEL:
        # Query, in the counterfactual, the label of another base box k, placed at a third position j:
        # base answer (i), label target (k) and position target (j) are three different objects.
        k = _other_index(rng, n, {i})
        j = _other_index(rng, n, {i, k})
        context = _disjoint_context(rng, base, split, shared_label=(j, base.labels[k]))
        return CounterfactualPair(clean, Example(context, j), " " + base.objects[k], desideratum)
    context = _disjoint_context(rng, base, split, shared_label=None)
    if desideratum is Desideratum.OBJECT:
        cf = Example(context, rng.randrange(n))
        return CounterfactualPair(clean, cf, cf.answer, desideratum)
    # Path patching and position: another position, really different from the clean one.
    j = _other_index(rng, n, {i})
    target = clean.answer if desideratum is Desideratum.PATH_PATCHING else " " + base.objects[j]
    return CounterfactualPair(clean, Example(context, j), target, desideratum)


def build_pairs(split: Split, desideratum: Desideratum | str, seed: int = 0) -> list[CounterfactualPair]:
    """One counterfactual pair per row of `split`, seeded by (split id, desideratum, seed)."""
    desideratum = Desideratum(desideratum)
    check_words(split.n_boxes, split.objects, split.labels, factor=2)
    if desideratum is Desideratum.LABEL and split.n_boxes < 3:
        raise ValueError("the label desideratum needs at least 3 boxes")
    rng = context_rng(split.split_id, desideratum.value, seed)
    return [build_pair(rng, clean, split, desideratum) for clean in split.examples]


# The four answers a mechanism-mix counterfactual tells apart, in the order results list them.
MIX_ANSWERS: tuple[str, ...] = ("original", "positional", "lexical", "reflexive")
MIX_CODES = "oplr"  # the letter a result writes for each, per prompt ("x": another answer; "-": left out)


@dataclass(frozen=True)
class MixPair:
    """A clean example and a counterfactual that rearranges the clean context's own objects and labels so
    that four answers are four different objects (each with its leading space), in `MIX_ANSWERS` order:
    original (the clean answer), positional (the clean object at the box position the counterfactual
    queries), lexical (the clean object under the counterfactual's query label) and reflexive (the
    counterfactual's own answer)."""

    clean: Example
    counterfactual: Example
    answers: tuple[str, str, str, str]


def build_mix_pair(rng: random.Random, clean: Example) -> MixPair:
    """Query position j != i; its label is the clean label of box k; its object the clean object of box m;
    i, j, k, m all different (so at least 4 boxes); the other boxes get the remaining words, shuffled."""
    n, i = clean.n_boxes, clean.query_index
    if n < 4:
        raise DatasetError(f"the mechanism mix needs at least 4 boxes to tell 4 answers apart, got {n}")
    j = _other_index(rng, n, {i})
    k = _other_index(rng, n, {i, j})
    m = _other_index(rng, n, {i, j, k})
    objects, labels = list(clean.context.objects), list(clean.context.labels)
    rest_objects = [o for p, o in enumerate(objects) if p != m]
    rest_labels = [label for p, label in enumerate(labels) if p != k]
    rng.shuffle(rest_objects)
    rng.shuffle(rest_labels)
    rest_objects.insert(j, objects[m])
    rest_labels.insert(j, labels[k])
    counterfactual = Example(Context(tuple(rest_objects), tuple(rest_labels)), j)
    answers = tuple(" " + objects[p] for p in (i, j, k, m))
    return MixPair(clean, counterfactual, answers)


def build_mix_pairs(split: Split, seed: int = 0) -> list[MixPair]:
    """One mechanism-mix pair per row of `split`, seeded by (split id, "mix", seed)."""
    rng = context_rng(split.split_id, "mix", seed)
    return [build_mix_pair(rng, clean) for clean in split.examples]
