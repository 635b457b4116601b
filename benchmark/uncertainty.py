"""Intervals for the numbers of a result: a seeded percentile bootstrap over contexts.

Each number a result reports is a statistic of per-prompt columns (an accuracy is the mean of 0/1
outcomes; faithfulness the ratio of two such means; f a ratio of differences of mean logit differences).
The rows of a split come in blocks of n, one block per context (each context queried at each of its n
boxes), and rows of one context are not independent, so a resample draws whole contexts with replacement
and recomputes the statistic from the drawn rows' column means. Every number of one result uses the same
draws, and a difference of two numbers measured on the same prompts (base vs fine-tuned) is one
statistic of both models' columns: its interval is paired, and exactly [0, 0] when the two models agree
on every prompt.

The columns come from the result itself (outcomes and logit differences it records), so `estimate_all`
fills a result's `uncertainty` when it is assembled and recomputes it, bit for bit, when a file is
checked (pure Python floats and `random.Random`: the same numbers on any machine). Torch-free.

Adding a number with an interval is one entry in `MEASURES`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from benchmark.data.counterfactuals import MIX_ANSWERS, MIX_CODES
from benchmark.measures import cmap_gain, normalized_faithfulness
from benchmark.records import Estimate, Faithfulness, FaithfulnessScore, ModelFaithfulness, Result
from benchmark.settings import BootstrapConfig

Column = tuple[float, ...]  # one value per prompt, in the split's row order


@dataclass(frozen=True)
class Measured:
    """A reported number as `statistic(means of columns)` over prompts grouped in contexts of n rows."""

    name: str
    columns: tuple[Column, ...]
    statistic: Callable[[Sequence[float]], float | None]


def bits(outcomes: str) -> Column:
    """An `Outcomes` string as a 0/1 column."""
    return tuple(1.0 if c == "1" else 0.0 for c in outcomes)


def _mean(m: Sequence[float]) -> float:
    return m[0]


def _ratio(m: Sequence[float]) -> float | None:
    return None if m[1] == 0 else m[0] / m[1]


def _difference(m: Sequence[float]) -> float:
    return m[0] - m[1]


def _normalized(m: Sequence[float]) -> float | None:
    return normalized_faithfulness(m[0], m[1], m[2])


def _change(statistic: Callable, width: int) -> Callable[[Sequence[float]], float | None]:
    """statistic(fine-tuned columns) - statistic(base columns), the two sets side by side."""

    def change(m: Sequence[float]) -> float | None:
        finetuned, base = statistic(m[:width]), statistic(m[width:])
        return None if finetuned is None or base is None else finetuned - base

    return change


@lru_cache(maxsize=16)
def resamples(n_contexts: int, n_resamples: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """The bootstrap's draws: `n_resamples` lists of `n_contexts` context indices, with replacement."""
    rng = random.Random(f"bootstrap/{seed}/{n_contexts}")
    return tuple(tuple(rng.randrange(n_contexts) for _ in range(n_contexts)) for _ in range(n_resamples))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted `values`, linear between order statistics (numpy's default)."""
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def estimate(measured: Measured, n_boxes: int, config: BootstrapConfig) -> Estimate:
    """The number, and its interval from resampled contexts (null bounds when fewer than `level` of the
    resamples define it, e.g. a ratio whose denominator a resample makes 0)."""
    n = len(measured.columns[0])
    if any(len(column) != n for column in measured.columns):
        raise ValueError(f"{measured.name}: columns of unequal length")
    n_contexts = math.ceil(n / n_boxes)
    sums = [[0.0] * len(measured.columns) for _ in range(n_contexts)]  # [context][column]
    counts = [0] * n_contexts
    for row in range(n):
        context = row // n_boxes
        counts[context] += 1
        for j, column in enumerate(measured.columns):
            sums[context][j] += column[row]
    value = measured.statistic([sum(column) / n for column in measured.columns])
    values = []
    for draw in resamples(n_contexts, config.n_resamples, config.seed):
        total = sum(counts[c] for c in draw)
        means = [sum(sums[c][j] for c in draw) / total for j in range(len(measured.columns))]
        drawn = measured.statistic(means)
        if drawn is not None:
            values.append(drawn)
    values.sort()
    tail = (1 - config.level) / 2
    if value is None or len(values) < config.level * config.n_resamples:
        return Estimate(measured.name, value, None, None, n, n_contexts)
    low, high = percentile(values, tail), percentile(values, 1 - tail)
    return Estimate(measured.name, value, low, high, n, n_contexts)


def _behaviour(result: Result) -> Iterator[Measured]:
    base, finetuned = result.behaviour.base.outcomes, result.behaviour.finetuned.outcomes
    if base is None or finetuned is None:
        return
    yield Measured("behaviour.base.accuracy", (bits(base),), _mean)
    yield Measured("behaviour.finetuned.accuracy", (bits(finetuned),), _mean)
    yield Measured("behaviour.accuracy_gain", (bits(finetuned), bits(base)), _difference)


def _score_columns(score: FaithfulnessScore, model: ModelFaithfulness, full: str):
    """(ratio columns, f columns) of one circuit run inside a model; None where the result lacks them."""
    if score.outcomes is None or score.logit_diffs is None or model.full_logit_diffs is None:
        return None
    ratio = (bits(score.outcomes), bits(full))
    return ratio, (score.logit_diffs, model.empty_logit_diffs, model.full_logit_diffs)


def _faithfulness_block(result: Result, block: Faithfulness) -> Iterator[Measured]:
    prefix = f"faithfulness.{block.ablation or 'mean'}"
    outcomes = {side: getattr(result.behaviour, side).outcomes for side in ("base", "finetuned")}
    runs = {
        "base": _score_columns(block.base.own, block.base, outcomes["base"]),
        "finetuned": _score_columns(block.finetuned.own, block.finetuned, outcomes["finetuned"]),
        "cross": _score_columns(block.base_circuit_in_finetuned, block.finetuned, outcomes["finetuned"]),
    }
    for side in ("base", "finetuned"):
        model, found = getattr(block, side), getattr(block, side).diagnostics
        for run in ("context_kept", "query_kept", "all_sites") if found is not None else ():
            runs[f"{side}.{run}"] = _score_columns(getattr(found, run), model, outcomes[side])
    for name, columns in runs.items():
        if columns is not None:
            yield Measured(f"{prefix}.{name}.ratio", columns[0], _ratio)
            yield Measured(f"{prefix}.{name}.normalized", columns[1], _normalized)
    if runs["base"] is not None and runs["finetuned"] is not None:
        ft, base = runs["finetuned"], runs["base"]
        yield Measured(f"{prefix}.change.ratio", ft[0] + base[0], _change(_ratio, 2))
        yield Measured(f"{prefix}.change.normalized", ft[1] + base[1], _change(_normalized, 3))


def _faithfulness(result: Result) -> Iterator[Measured]:
    for block in (result.faithfulness, *(result.other_ablations or ())):
        if block is not None:
            yield from _faithfulness_block(result, block)


def _cmap(result: Result) -> Iterator[Measured]:
    cmap = result.cmap
    if cmap is None or cmap.base_outcomes is None:
        return
    base, finetuned = bits(cmap.base_outcomes), bits(cmap.finetuned_outcomes)
    min_gap = result.settings.cmap.min_gap
    entries = [("circuit", cmap.circuit), *((g.value, e) for g, e in cmap.groups.items() if e is not None)]
    for name, entry in entries:
        patched = bits(entry.outcomes)
        yield Measured(f"cmap.{name}.accuracy", (patched,), _mean)
        yield Measured(f"cmap.{name}.gain", (patched, base, finetuned), lambda m: cmap_gain(*m, min_gap))


def _dcm(result: Result) -> Iterator[Measured]:
    dcm = result.dcm
    for side in ("base", "finetuned") if dcm is not None else ():
        for mask in getattr(dcm, side):
            if mask.test_outcomes is not None:
                name = f"dcm.{side}.{mask.group.value}.{mask.desideratum.value}.accuracy"
                yield Measured(name, (bits(mask.test_outcomes),), _mean)


def _mechanism(result: Result) -> Iterator[Measured]:
    """Each group patch's four shares, and the query label's positional and lexical shares per layer."""
    mechanism = result.mechanism
    for side in ("base", "finetuned") if mechanism is not None else ():
        mix = getattr(mechanism, side)
        runs = [(run, MIX_ANSWERS) for run in mix.groups.values() if run is not None]
        runs += [(run, ("positional", "lexical")) for run in mix.query_label]
        for run, answers in runs:
            kept = tuple(0.0 if c == "-" else 1.0 for c in run.answers)
            for answer in answers:
                code = MIX_CODES[MIX_ANSWERS.index(answer)]
                hits = tuple(1.0 if c == code else 0.0 for c in run.answers)
                yield Measured(f"mechanism.{side}.{run.name}.{answer}", (hits, kept), _ratio)


# Every number that carries an interval, by the part of the result it reads.
MEASURES: tuple[Callable[[Result], Iterator[Measured]], ...] = (
    _behaviour,
    _faithfulness,
    _cmap,
    _dcm,
    _mechanism,
)


def estimate_all(result: Result) -> tuple[Estimate, ...] | None:
    """Every number of `result` with its interval (None when the settings ask for no bootstrap)."""
    config = result.settings.bootstrap
    if config is None:
        return None
    n_boxes = result.settings.n_boxes
    return tuple(estimate(m, n_boxes, config) for measures in MEASURES for m in measures(result))


def find(result: Result, name: str) -> Estimate | None:
    """The estimate of that name, if the result has one."""
    return next((e for e in result.uncertainty or () if e.name == name), None)
