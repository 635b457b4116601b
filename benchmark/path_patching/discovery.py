"""Find the four-group circuit of one model: path-patching stages, selection, minimality pruning (SPEC 4).

Stage A's heads are the receivers of stage B, B's of C, C's of D. A group with no selected head ends the
chain: later stages are skipped (recorded) rather than run against nothing.

Effects are averaged over the prompts the model answers correctly (argmax = answer). On a prompt it gets
wrong, p_clean(answer) can be 1e-9 and the relative effect (p_patched - p_clean) / p_clean a ratio of
two negligible numbers: on the planted enhance base (40% confidently wrong rows) one such row made the
position transmitter's mean effect +1.1e7 and hid the whole B, C, D chain. The circuit is how the model
gets the answer, which only its correct rows show; each stage records how many prompts it averaged. A
model that answers none of them (a random one) keeps them all, as SPEC's literal definition has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from benchmark.accuracy import score_accuracy
from benchmark.circuit import GROUPS, Circuit, Group, Head
from benchmark.data import EncodedPairs, EncodedPrompts
from benchmark.kinds import defined
from benchmark.models import ModelUnderStudy
from benchmark.path_patching.minimality import prune_minimal, removal_metric
from benchmark.path_patching.prefilter import eligible, prefiltered_stage
from benchmark.path_patching.sweep import STAGES, StageEffects, prepare_sites, sweep_stage
from benchmark.records import Discovery, DiscoveryStage, Prefilter
from benchmark.settings import DiscoveryConfig

__all__ = ["DiscoveryConfig", "DiscoveryResult", "StageResult", "discover_circuit", "prune_minimal"]


@dataclass(frozen=True)
class StageResult:
    """One stage: the effect of every head as a sender, and the heads selected (strongest first)."""

    group: Group
    effects: StageEffects | None  # None when the stage was skipped
    selected: tuple[Head, ...]
    skipped_because: str | None = None
    prefilter: Prefilter | None = None  # how the attribution pre-filter chose the exact senders

    def record(self) -> DiscoveryStage:
        """Effects as [layer][head] lists; a standard error that is undefined (one prompt) is written 0."""
        effects = self.effects
        mean = None if effects is None else effects.mean.tolist()
        stderr = None if effects is None else effects.stderr.nan_to_num(0.0).tolist()
        return DiscoveryStage(self.group, mean, stderr, self.selected, self.skipped_because, self.prefilter)


@dataclass(frozen=True)
class DiscoveryResult:
    """The circuit before and after minimality pruning, with every stage's full effect array."""

    config: DiscoveryConfig
    stages: tuple[StageResult, ...]
    selected: Circuit
    circuit: Circuit
    pruned: dict[Group, tuple[Head, ...]] = field(default_factory=dict)
    minimality_metric: float = float("nan")  # mean p(answer) of the pruned circuit's run

    def record(self) -> Discovery:
        groups = {group: self.circuit.heads(group) for group in GROUPS}
        selected = {group: self.selected.heads(group) for group in GROUPS}
        stages = tuple(stage.record() for stage in self.stages)
        return Discovery(groups, selected, stages, defined(self.minimality_metric))


def select_heads(
    effects: StageEffects, config: DiscoveryConfig, estimated: tuple[Head, ...] = ()
) -> tuple[Head, ...]:
    """Heads with mean effect <= threshold and mean + z * stderr < 0, most negative first, capped; never
    one whose effect is only `estimated` (not patched exactly)."""
    passed = eligible(effects, config)
    for head in estimated:
        passed[head] = False
    heads = [(int(layer), int(head)) for layer, head in passed.nonzero()]
    mean = effects.mean
    heads.sort(key=lambda h: (float(mean[h]), h))
    return tuple(heads[: config.max_heads(mean.numel())])


def answered_pairs(study: ModelUnderStudy, pairs: EncodedPairs, batch_size: int) -> EncodedPairs:
    """The pairs whose clean prompt the model answers correctly, which the stages average over (all of
    them for a model that answers none, such as a random one: a ranking still exists)."""
    correct = torch.tensor(score_accuracy(study.model, pairs.clean, batch_size).correct)
    return pairs.select(correct.nonzero()[:, 0]) if correct.any() else pairs


def run_stages(study: ModelUnderStudy, pairs: EncodedPairs, config: DiscoveryConfig, progress=True):
    """Run the four stages in order, each stage's receivers being the previous stage's selection, on the
    pairs whose clean prompt the model answers correctly."""
    pairs = answered_pairs(study, pairs, config.batch_size)
    results: list[StageResult] = []
    receivers: tuple[Head, ...] | None = None
    # every stage's sender site from one clean and one counterfactual pass (A and B share the last token)
    site_runs = prepare_sites(study, pairs, [stage.site for stage in STAGES], config.batch_size)
    for stage in STAGES:
        if stage.receivers is not None and not receivers:
            reason = f"no head was selected for {stage.receivers.value}, so this stage has no receivers"
            results.append(StageResult(stage.group, None, (), reason))
            receivers = ()
            continue
        runs, prefilter = site_runs[stage.site], None
        if config.prefilter is None:
            effects = sweep_stage(
                study, pairs, stage, receivers, config.rows_per_pass, config.batch_size, progress, runs
            )
        else:
            seed = config.seed + len(results)  # one sample per stage
            effects, prefilter = prefiltered_stage(
                study, pairs, stage, receivers, config, runs, seed, progress
            )
        receivers = select_heads(effects, config, prefilter.estimated if prefilter else ())
        results.append(StageResult(stage.group, effects, receivers, None, prefilter))
    return tuple(results)


def discover_circuit(
    study: ModelUnderStudy,
    pairs: EncodedPairs,
    minimality_prompts: EncodedPrompts,
    means: torch.Tensor,
    config: DiscoveryConfig = DiscoveryConfig(),
    progress: bool = True,
) -> DiscoveryResult:
    """Path-patch the four stages on `pairs`, select, then prune on `minimality_prompts` (circuit runs
    with every other component mean-ablated to `means` [pos, layer, head, d], a removed head given a
    donor prompt's output at its site: see `minimality`)."""
    stages = run_stages(study, pairs, config, progress)
    selected = Circuit.of({result.group: result.selected for result in stages})
    prompts, batch_size = minimality_prompts, config.batch_size
    metric = removal_metric(study, selected, prompts, means, batch_size)
    circuit, dropped, value = prune_minimal(selected, metric, config.minimality_tolerance, progress)
    return DiscoveryResult(config, stages, selected, circuit, dropped, value)
