"""Attribution pre-filter of a path-patching stage (`prefilter="atp"`; the CLI's `--discovery atp+exact`).

Exact path patching runs two passes per (prompt, sender); attribution patching (`attribution`) estimates
every sender's effect from a few forward and backward passes per prompt chunk. Here AtP only chooses which
senders to patch exactly, and the stage selects among exactly patched heads alone, so every head of the
circuit carries an exact effect:

1. One AtP run gives two estimates: plain AtP (the gradient at the clean run) and AtP with `ATP_STEPS`
   integrated-gradient points (the first of which is the clean run). Each ranks the senders two ways: most
   negative first (as selection orders heads) and largest magnitude first. The candidates are the first
   `ceil(MARGIN * cap)` of each of the four orders, cap being the group's head cap. No one order is
   enough. Where a sender's path crosses a saturated attention pattern, the gradient at the clean run is
   near 0 or of the wrong sign: on the organism base model a selected position detector ranked 193rd of
   198 by plain AtP and 47th with integrated gradients, and a selected position transmitter 260th of 261
   by either signed estimate but 12th by the integrated estimate's magnitude. On random tiny models, where
   moving every head at once along the integrated path is far from any one head's patch, plain AtP ranks
   best.
2. A seeded random sample of the other senders (`SAMPLE_SHARE` of them, at least one) is patched exactly
   too. Its most negative exact effect is the miss bound: what AtP left out, estimated without bias.
3. If a sampled head passes the selection rule (threshold and significance), AtP has missed a head that
   could belong to the circuit: every remaining sender is then patched exactly, and the stage is exact.

Heads that were not patched exactly keep their AtP estimate in the stage's effect arrays (the faithfulness
curve ranks heads by them); the stage's `Prefilter` record lists them.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from benchmark.circuit import Head
from benchmark.data import EncodedPairs
from benchmark.models import ModelUnderStudy
from benchmark.path_patching.attribution import attribution_estimates
from benchmark.path_patching.sweep import SiteRuns, Stage, StageEffects, stage_senders, sweep_stage
from benchmark.records import Prefilter
from benchmark.settings import DiscoveryConfig

ATP_STEPS = 4  # integrated-gradient points of the estimate
MARGIN = 1.25  # candidates per order, as a multiple of the group cap
ORDERS = 4  # plain and integrated estimates, each most negative first and largest magnitude first
SAMPLE_SHARE = 0.1  # share of the non-candidates patched exactly


def candidates(estimates: tuple[StageEffects, ...], senders: list[Head], cap: int) -> list[Head]:
    """The first ceil(MARGIN * cap) senders of each estimate by signed value and by magnitude, in layer
    order."""
    n, chosen = min(len(senders), math.ceil(MARGIN * cap)), set()
    for mean in (estimate.mean for estimate in estimates):
        chosen |= set(sorted(senders, key=lambda h: (float(mean[h]), h))[:n])  # noqa: B023
        chosen |= set(sorted(senders, key=lambda h: (-abs(float(mean[h])), h))[:n])  # noqa: B023
    return sorted(chosen)


def _others(senders: list[Head], chosen: list[Head]) -> list[Head]:
    """The senders not in `chosen`, in their order."""
    excluded = set(chosen)
    return [head for head in senders if head not in excluded]


def sample_others(senders: list[Head], chosen: list[Head], seed: int) -> list[Head]:
    """A seeded random SAMPLE_SHARE (at least one) of the senders not in `chosen`, in layer order."""
    others = _others(senders, chosen)
    n = min(len(others), max(1, math.ceil(SAMPLE_SHARE * len(others))))
    order = torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))
    return sorted(others[int(i)] for i in order[:n])


def eligible(effects: StageEffects, config: DiscoveryConfig) -> torch.Tensor:
    """[layer, head] mask of the heads that pass the selection rule (before the cap)."""
    mean, stderr = effects.mean, effects.stderr
    return (mean <= config.effect_threshold) & (mean + config.z_score * stderr < 0)


def _merged(parts: list[tuple[StageEffects, list[Head]]], estimate: StageEffects) -> StageEffects:
    """Each part's effects on its heads, the estimate's on every other head."""
    mean, stderr = estimate.mean.clone(), estimate.stderr.clone()
    for effects, heads in parts:
        for head in heads:
            mean[head], stderr[head] = effects.mean[head], effects.stderr[head]
    return StageEffects(mean, stderr, estimate.n_prompts)


def prefiltered_stage(
    study: ModelUnderStudy,
    pairs: EncodedPairs,
    stage: Stage,
    receivers: tuple[Head, ...] | None,
    config: DiscoveryConfig,
    site_runs: SiteRuns,
    seed: int,
    progress: bool = True,
) -> tuple[StageEffects, Prefilter]:
    """The stage's effects (exact on the verified heads, AtP's estimate elsewhere) and how it got them."""
    senders = stage_senders(study.adapter, stage, receivers)
    plain, estimate = attribution_estimates(study, site_runs, stage, receivers, config.batch_size, ATP_STEPS)
    chosen = candidates((plain, estimate), senders, config.max_heads(estimate.mean.numel()))
    sample = sample_others(senders, chosen, seed)

    exact = partial(
        sweep_stage,
        study,
        pairs,
        stage,
        receivers,
        config.rows_per_pass,
        config.batch_size,
        progress,
        site_runs,
    )
    first = sorted(chosen + sample)
    parts = [(exact(senders=first), first)]
    passed = eligible(parts[0][0], config)
    fell_back = any(bool(passed[head]) for head in sample)
    if fell_back:
        rest = _others(senders, first)
        parts.append((exact(senders=rest), rest))
    verified = {head for _, heads in parts for head in heads}
    sampled = [float(parts[0][0].mean[head]) for head in sample]
    record = Prefilter(
        steps=ATP_STEPS,
        n_senders=len(senders),
        n_candidates=len(chosen),
        n_sampled=len(sample),
        fell_back=fell_back,
        miss_bound=min(sampled) if sampled else None,
        estimated=tuple(head for head in senders if head not in verified),
    )
    return _merged(parts, estimate), record
