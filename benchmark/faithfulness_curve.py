"""The faithfulness curve over circuit size, and the whole faithfulness report of one model.

The curve ranks every head by its most negative path-patching effect over the four stages and runs the
circuit of the top k heads, each kept at the site of the group where its effect is most negative, for each
fraction k / heads; its areas summarise it (the accuracy ratio's, and CPR / CMD of f). The report puts the
circuit run, the random baseline and the curve of one model under one ablation together, measured between
that ablation's full and empty runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from benchmark.accuracy import score_accuracy
from benchmark.circuit import GROUPS, Circuit, Group, Head
from benchmark.data import EncodedPrompts
from benchmark.faithfulness import (
    Ends,
    FaithfulnessCurve,
    FaithfulnessReport,
    FaithfulnessResult,
    RankedHead,
    Source,
    faithfulness,
    prefixed,
    random_circuit_baseline,
    run_ends,
)
from benchmark.kinds import defined
from benchmark.models import ModelUnderStudy
from benchmark.path_patching.discovery import DiscoveryResult, StageResult
from benchmark.records import CurvePoint
from benchmark.settings import CURVE_FRACTIONS, FaithfulnessConfig


def head_ranking(stages: Sequence[StageResult]) -> tuple[RankedHead, ...]:
    """Every head, most negative effect first, in the stage where its effect is most negative.

    Skipped stages (no effects) take no part; ties go to the earlier stage, then to the lower (layer, head).
    """
    run = [stage for stage in stages if stage.effects is not None]
    if not run:
        raise ValueError("no stage has effects to rank heads by")
    effects = torch.stack([stage.effects.mean.float() for stage in run])  # [stage, layer, head]
    best, where = effects.min(dim=0)  # [layer, head] each; min returns the first stage on ties
    n_layers, n_heads = best.shape
    ranked = [
        RankedHead((layer, head), run[int(where[layer, head])].group, float(best[layer, head]))
        for layer in range(n_layers)
        for head in range(n_heads)
    ]
    ranked.sort(key=lambda r: (r.effect, r.head))
    return tuple(ranked)


def top_k_circuit(ranking: Sequence[RankedHead], k: int) -> Circuit:
    """The circuit of the first k ranked heads, each in its ranked group (so at that group's position)."""
    groups: dict[Group, list[Head]] = {group: [] for group in GROUPS}
    for ranked in ranking[:k]:
        groups[ranked.group].append(ranked.head)
    return Circuit.of(groups)


def curve_k(fraction: float, n_components: int) -> int:
    """Heads in the curve's circuit at `fraction` of all heads: rounded, at least 1, at most all."""
    if not 0 < fraction <= 1:
        raise ValueError(f"curve fractions must be in (0, 1], got {fraction}")
    return min(n_components, max(1, round(fraction * n_components)))


def faithfulness_curve(
    study: ModelUnderStudy,
    discovery: DiscoveryResult,
    encoded: EncodedPrompts,
    means: Source,
    fractions: Sequence[float] = CURVE_FRACTIONS,
    batch_size: int = 32,
    full_accuracy: float | None = None,
    progress: bool = True,
    ends: Ends | None = None,
) -> FaithfulnessCurve:
    """Faithfulness of the top-k circuit of the path-patching ranking for each fraction (sorted) of heads."""
    if full_accuracy is None:
        full_accuracy = score_accuracy(study.model, encoded, batch_size).accuracy
    if all(stage.effects is None for stage in discovery.stages):
        return FaithfulnessCurve(full_accuracy, (), ())  # nothing ranked: every stage was skipped
    ranking = head_ranking(discovery.stages)
    evaluated: dict[int, FaithfulnessResult] = {}  # by k: nearby fractions of a small model share a k
    points = []
    for fraction in tqdm(sorted(fractions), desc="faithfulness curve", disable=not progress):
        k = curve_k(fraction, len(ranking))
        if k not in evaluated:
            circuit = top_k_circuit(ranking, k)
            evaluated[k] = faithfulness(study, circuit, encoded, means, batch_size, full_accuracy, ends)
        r = evaluated[k]
        ratio, f = defined(r.faithfulness), defined(r.normalized)
        points.append(CurvePoint(fraction, k, r.circuit_accuracy, ratio, f))
    return FaithfulnessCurve(full_accuracy, ranking, tuple(points))


def evaluate_faithfulness(
    study: ModelUnderStudy,
    discovery: DiscoveryResult,
    encoded: EncodedPrompts,
    means: Source,
    config: FaithfulnessConfig = FaithfulnessConfig(),
    circuit: Circuit | None = None,
    progress: bool = True,
    full_accuracy: float | None = None,
) -> FaithfulnessReport:
    """Faithfulness of one model under one ablation: `circuit` (default: the discovered one), its random
    baseline and the curve, each with f between the model's full and empty runs. `full_accuracy`: the
    unmodified model's accuracy on `encoded` when already measured (it must equal the full run's)."""
    circuit = discovery.circuit if circuit is None else circuit
    source = prefixed(study, means, encoded, config.batch_size)  # every run below shares the ablated prefix
    ends = run_ends(study, encoded, source, config.batch_size)
    full = ends.full.accuracy if full_accuracy is None else full_accuracy
    own = faithfulness(study, circuit, encoded, source, config.batch_size, full, ends)
    shared = dict(batch_size=config.batch_size, full_accuracy=full, progress=progress, ends=ends)
    draws, seed = config.n_random, config.seed
    baseline = random_circuit_baseline(study, circuit, encoded, source, draws, seed, **shared)
    curve = faithfulness_curve(study, discovery, encoded, source, config.curve_fractions, **shared)
    return FaithfulnessReport(config, own, baseline, curve, source.name, ends)
