"""Faithfulness of a circuit (SPEC section 5): accuracy with all else ablated, over full accuracy; and
normalized faithfulness f of the logit difference, (m(circuit) - m(empty)) / (m(full) - m(empty)).

Every run takes an ablation (`benchmark.ablation`: mean, or resample; a bare means tensor is mean
ablation). Also the random-circuit baseline (same group sizes, seeded draws), cross-model evaluation (one
model's circuit run inside another model, with that model's own ablation values), and the records of the
curve over circuit size, which `benchmark.faithfulness_curve` runs. No file I/O: tensors and dataclasses
in and out.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from benchmark.ablated_prefix import AblatedPrefix
from benchmark.ablation import MEAN, AblationSource, KeepFn, RunScores, ablated_run, check_source, score_run
from benchmark.accuracy import Intervention, score_accuracy
from benchmark.circuit import GROUPS, Circuit, Group, Head
from benchmark.circuit_run import keep_mask
from benchmark.data import EncodedPrompts, Split, encode_prompts, reference_prompts
from benchmark.hooks import head_output_means
from benchmark.kinds import defined, outcome_text
from benchmark.measures import cmd_value, cpr_value, curve_area, normalized_faithfulness
from benchmark.models import HeadShape, ModelUnderStudy
from benchmark.records import Curve, CurvePoint, FaithfulnessScore, ModelFaithfulness, RandomBaseline
from benchmark.settings import FaithfulnessConfig

# Where ablated heads take their values: a bare tensor is the means of mean ablation; an `AblatedPrefix` (of
# the evaluated model and prompts) runs every circuit over their shared ablated prefix, the same numbers for
# less compute (see `prefixed`).
Source = AblationSource | torch.Tensor | AblatedPrefix


@dataclass(frozen=True)
class Ends:
    """The two runs normalized faithfulness is measured between: the unmodified model and every head
    ablated, on the same prompts under the same ablation."""

    full: RunScores
    empty: RunScores


@dataclass(frozen=True)
class FaithfulnessResult:
    """Accuracy of the full model and of the circuit run on the same prompts, and their ratio."""

    full_accuracy: float
    circuit_accuracy: float
    faithfulness: float  # circuit / full; NaN when full accuracy is 0 (see undefined_because)
    n_prompts: int
    undefined_because: str | None = None
    run: RunScores | None = None  # each prompt's decision and logit difference in the circuit run
    normalized: float | None = None  # f; None without the ends or when they agree

    @property
    def defined(self) -> bool:
        return self.undefined_because is None

    def record(self) -> FaithfulnessScore:
        run = self.run
        return FaithfulnessScore(
            self.full_accuracy,
            self.circuit_accuracy,
            defined(self.faithfulness),
            self.n_prompts,
            self.undefined_because,
            outcome_text(run.correct) if run else None,
            run.logit_diffs if run else None,
            run.mean_logit_diff if run else None,
            defined(self.normalized),
        )


@dataclass(frozen=True)
class CrossModelFaithfulness:
    """One model's circuit evaluated inside a model (possibly the other one of a pair), with its own means."""

    circuit_model: str  # whose circuit
    evaluated_model: str  # which model ran it (and gave the means)
    result: FaithfulnessResult


@dataclass(frozen=True)
class RandomCircuits:
    """Faithfulness of random circuits with the given circuit's group sizes, one result per seeded draw."""

    sizes: dict[str, int]  # heads per group, as in the circuit it stands in for
    seed: int
    draws: tuple[Circuit, ...]
    results: tuple[FaithfulnessResult, ...]

    @property
    def faithfulness(self) -> tuple[float, ...]:
        return tuple(result.faithfulness for result in self.results)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.faithfulness) if self.results else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over the draws (NaN with fewer than two, or with undefined draws)."""
        values = self.faithfulness
        if len(values) < 2 or any(math.isnan(v) for v in values):
            return math.nan
        return statistics.stdev(values)

    def record(self) -> RandomBaseline:
        draws = tuple(defined(f) for f in self.faithfulness)
        normalized = tuple(defined(result.normalized) for result in self.results)
        mean = statistics.fmean(normalized) if normalized and None not in normalized else None
        return RandomBaseline(defined(self.mean), defined(self.std), draws, self.seed, normalized, mean)


@dataclass(frozen=True)
class RankedHead:
    """A head's place in the curve's ranking: its group (the stage where its effect is most negative)."""

    head: Head
    group: Group
    effect: float  # its mean effect in that stage


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Faithfulness over circuit size; `area` integrates it over the fraction of heads (trapezoid)."""

    full_accuracy: float
    ranking: tuple[RankedHead, ...]
    points: tuple[CurvePoint, ...]

    @property
    def area(self) -> float:
        """Trapezoid area over the points' fractions (in [0, 1]); spans [first fraction, last fraction].
        NaN when a point's faithfulness is undefined or there are no points."""
        area = curve_area(self.points)
        return math.nan if area is None else area

    def record(self) -> Curve:
        points = self.points
        return Curve(points, defined(self.area), curve_area(points, cpr_value), curve_area(points, cmd_value))


@dataclass(frozen=True)
class FaithfulnessReport:
    """Everything SPEC section 5 reports for one model and one circuit, under one ablation."""

    config: FaithfulnessConfig
    circuit: FaithfulnessResult
    random: RandomCircuits
    curve: FaithfulnessCurve
    ablation: str = MEAN
    ends: Ends | None = None

    def record(self) -> ModelFaithfulness:
        full, empty = (self.ends.full.logit_diffs, self.ends.empty.logit_diffs) if self.ends else (None, None)
        return ModelFaithfulness(
            self.circuit.record(), self.random.record(), self.curve.record(), full, empty
        )


def reference_input_ids(tokenizer, split: Split, seed: int = 0) -> torch.Tensor:
    """Token ids [prompt, pos] of the SPEC mean-ablation reference set built from `split`."""
    return encode_prompts(tokenizer, reference_prompts(split, seed))


def ablation_means(study: ModelUnderStudy, split: Split, seed: int = 0, batch_size: int = 32) -> torch.Tensor:
    """The one definition of mean-ablation values: head outputs averaged over the reference set of `split`,
    [pos, layer, head, d]. Always take them from the model being evaluated (also across models)."""
    ids = reference_input_ids(study.tokenizer, split, seed)
    return head_output_means(study.model, study.adapter, ids, batch_size)


def as_source(source: Source) -> AblationSource:
    """An ablation source; a bare tensor is the means of mean ablation."""
    if isinstance(source, AblatedPrefix):
        return source.source
    return source if isinstance(source, AblationSource) else AblationSource(MEAN, source)


def prefixed(study: ModelUnderStudy, source: Source, encoded: EncodedPrompts, batch_size: int = 32):
    """`source` as an `AblatedPrefix` of `study` on `encoded`: what a caller running several circuits on the
    same prompts passes on (one all-ablated pass per batch, then only each run's suffix)."""
    if isinstance(source, AblatedPrefix):
        return _own_prefix(source, study, encoded)
    source = as_source(source)
    _check_source(source, study.adapter.shape, encoded)
    return AblatedPrefix(study, source, encoded, batch_size)


def _own_prefix(runs: AblatedPrefix, study: ModelUnderStudy, encoded: EncodedPrompts) -> AblatedPrefix:
    """`runs`, checked to be of this model and these prompts."""
    if runs.study.model is not study.model or not torch.equal(runs.encoded.input_ids, encoded.input_ids):
        raise ValueError("this AblatedPrefix is of another model or other prompts: build one with prefixed()")
    return runs


def _check_source(source: AblationSource, shape: HeadShape, encoded: EncodedPrompts) -> None:
    if isinstance(source, AblatedPrefix):
        return  # checked when it was built
    check_source(source, encoded)
    if source.means is None:
        return
    expected = (encoded.input_ids.shape[1], shape.n_layers, shape.n_heads, shape.head_dim)
    if tuple(source.means.shape) != expected:
        raise ValueError(
            f"means have shape {tuple(source.means.shape)}, expected [pos, layer, head, d] = {expected}: "
            "take them from the evaluated model on reference prompts of the prompts' length (ablation_means)"
        )


def _check_circuit(circuit: Circuit, shape: HeadShape) -> None:
    for group in GROUPS:
        for layer, head in circuit.heads(group):
            if not (0 <= layer < shape.n_layers and 0 <= head < shape.n_heads):
                raise ValueError(
                    f"head ({layer}, {head}) of {group.value} is outside this model's "
                    f"{shape.n_layers} layers x {shape.n_heads} heads"
                )


def faithfulness_ratio(full_accuracy: float, circuit_accuracy: float, n_prompts: int) -> FaithfulnessResult:
    """circuit / full accuracy; NaN with a reason (not an error) when the full model gets nothing right."""
    if full_accuracy == 0:
        reason = "the full model's accuracy is 0, so faithfulness (circuit / full accuracy) is undefined"
        return FaithfulnessResult(full_accuracy, circuit_accuracy, math.nan, n_prompts, reason)
    return FaithfulnessResult(full_accuracy, circuit_accuracy, circuit_accuracy / full_accuracy, n_prompts)


def intervention_faithfulness(
    model,
    encoded: EncodedPrompts,
    intervention: Intervention,
    batch_size: int = 32,
    full_accuracy: float | None = None,
    ends: Ends | None = None,
) -> FaithfulnessResult:
    """Faithfulness of any per-batch intervention; `full_accuracy` skips re-scoring the unmodified model,
    and with `ends` (the full and empty runs of the same ablation) f is measured too."""
    full = _full_accuracy(model, encoded, batch_size, full_accuracy, ends)
    return run_faithfulness(score_run(model, encoded, batch_size, intervention), full, ends)


def _full_accuracy(model, encoded: EncodedPrompts, batch_size: int, known: float | None, ends: Ends | None):
    """The unmodified model's accuracy on `encoded`: `known`, else the full run's, else measured now."""
    if known is not None:
        return known
    return ends.full.accuracy if ends else score_accuracy(model, encoded, batch_size).accuracy


def run_faithfulness(run: RunScores, full_accuracy: float, ends: Ends | None = None) -> FaithfulnessResult:
    """Faithfulness of a scored run: its accuracy over `full_accuracy`, and f between `ends` when given."""
    result = replace(faithfulness_ratio(full_accuracy, run.accuracy, len(run.correct)), run=run)
    if ends is None:
        return result
    f = normalized_faithfulness(run.mean_logit_diff, ends.empty.mean_logit_diff, ends.full.mean_logit_diff)
    return replace(result, normalized=f)


def mask_faithfulness(
    study: ModelUnderStudy,
    encoded: EncodedPrompts,
    source: Source,
    keep: KeepFn,
    batch_size: int = 32,
    full_accuracy: float | None = None,
    ends: Ends | None = None,
) -> FaithfulnessResult:
    """Faithfulness with every component ablated (mean or resample, `source`) except where `keep`."""
    if isinstance(source, AblatedPrefix):
        full = _full_accuracy(study.model, encoded, batch_size, full_accuracy, ends)
        return run_faithfulness(_own_prefix(source, study, encoded).score(keep), full, ends)
    source = as_source(source)
    _check_source(source, study.adapter.shape, encoded)
    run = ablated_run(study, source, keep)
    return intervention_faithfulness(study.model, encoded, run, batch_size, full_accuracy, ends)


def faithfulness(
    study: ModelUnderStudy,
    circuit: Circuit,
    encoded: EncodedPrompts,
    means: Source,
    batch_size: int = 32,
    full_accuracy: float | None = None,
    ends: Ends | None = None,
) -> FaithfulnessResult:
    """SPEC 5 circuit run: keep each group's heads at its position, ablate every other component."""
    _check_circuit(circuit, study.adapter.shape)
    shape = study.adapter.shape
    keep = lambda rows: keep_mask(circuit, rows, shape.n_layers, shape.n_heads)  # noqa: E731
    return mask_faithfulness(study, encoded, means, keep, batch_size, full_accuracy, ends)


def run_ends(study: ModelUnderStudy, encoded: EncodedPrompts, source: Source, batch_size: int = 32) -> Ends:
    """The unmodified model's run and the run with every head ablated under `source`."""
    full = score_run(study.model, encoded, batch_size)
    if isinstance(source, AblatedPrefix):
        return Ends(full, _own_prefix(source, study, encoded).score(lambda rows: None))
    source = as_source(source)
    _check_source(source, study.adapter.shape, encoded)
    empty = score_run(study.model, encoded, batch_size, ablated_run(study, source, lambda rows: None))
    return Ends(full, empty)


def cross_model_faithfulness(
    circuit_model: str,
    circuit: Circuit,
    evaluated_model: str,
    study: ModelUnderStudy,
    encoded: EncodedPrompts,
    means: Source,
    batch_size: int = 32,
    ends: Ends | None = None,
) -> CrossModelFaithfulness:
    """`circuit_model`'s circuit run inside `study` (named `evaluated_model`); `means` and `ends` must be
    its own."""
    result = faithfulness(study, circuit, encoded, means, batch_size, ends=ends)
    return CrossModelFaithfulness(circuit_model, evaluated_model, result)


def random_circuit(sizes: dict[str, int], shape: HeadShape, rng: random.Random) -> Circuit:
    """A circuit with `sizes` heads per group, each group drawn uniformly without replacement from all heads.

    Groups are drawn independently, so (as in a discovered circuit) a head may sit in two groups.
    """
    heads = [(layer, head) for layer in range(shape.n_layers) for head in range(shape.n_heads)]
    for name, size in sizes.items():
        if size > len(heads):
            raise ValueError(f"group {name} has {size} heads, more than the model's {len(heads)}")
    return Circuit.of({name: rng.sample(heads, size) for name, size in sizes.items()})


def random_circuit_baseline(
    study: ModelUnderStudy,
    circuit: Circuit,
    encoded: EncodedPrompts,
    means: Source,
    n_draws: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    full_accuracy: float | None = None,
    progress: bool = True,
    ends: Ends | None = None,
) -> RandomCircuits:
    """Faithfulness of `n_draws` random circuits with `circuit`'s group sizes (draw i seeded by (seed, i))."""
    if full_accuracy is None:
        full_accuracy = score_accuracy(study.model, encoded, batch_size).accuracy
    sizes = circuit.sizes
    draws = tuple(
        random_circuit(sizes, study.adapter.shape, random.Random(f"random-circuit/{seed}/{i}"))
        for i in range(n_draws)
    )
    results = tuple(
        faithfulness(study, draw, encoded, means, batch_size, full_accuracy, ends)
        for draw in tqdm(draws, desc="random circuits", disable=not progress)
    )
    return RandomCircuits(sizes, seed, draws, results)
