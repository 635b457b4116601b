"""Run declared stages in order: each is cached in the run directory under a key of exactly what decides
it (suite version, the metric version that last changed the stage's definition, the settings it reads, the
splits it reads, the weights of the models it uses, and the keys of the stages it needs), so changing a DCM
setting reruns DCM and what needs it, not path patching; and a metric version that redefines faithfulness
reruns faithfulness, not path patching.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import benchmark
from benchmark.pipeline.pair import SIDES, Side
from benchmark.pipeline.rundir import stage_key
from benchmark.pipeline.stages import STAGES, ScoreStage
from benchmark.submission.codec import to_plain

if TYPE_CHECKING:
    from benchmark.pipeline.score import ScoreRun


@dataclass(frozen=True)
class StageRun:
    """How one stage went: its id, its key, whether the run directory already held it, and its time."""

    id: str
    key: str
    cached: bool
    seconds: float  # the time it took when it was computed (also when now read from the cache)


def schedule(stages: Sequence[ScoreStage] = STAGES) -> tuple[tuple[ScoreStage, Side | None], ...]:
    """Every (stage, side) in run order: per-model stages for the base, then the fine-tuned model, then
    the pair stages; a stage whose needs are not met earlier is an error (a wrong declaration)."""
    order = [(stage, side) for side in SIDES for stage in stages if stage.per_model]
    order += [(stage, None) for stage in stages if not stage.per_model]
    done: set[str] = set()
    for stage, side in order:
        missing = [need for need in _need_ids(stage, side) if need not in done]
        if missing:
            raise ValueError(f"stage {stage.id(side)} needs {missing}, which no earlier stage provides")
        done.add(stage.id(side))
    return tuple(order)


def _need_ids(stage: ScoreStage, side: Side | None) -> tuple[str, ...]:
    """Per-model stages name the needs of their own side; pair stages name full ids."""
    return tuple(f"{side.value}.{need}" if stage.per_model else need for need in stage.needs)


def run_stages(run: ScoreRun, stages: Sequence[ScoreStage] = STAGES) -> tuple[dict[str, Any], list[StageRun]]:
    """Outputs of every stage by id, and how each went, computing only what the run directory lacks."""
    outputs: dict[str, Any] = {}
    keys: dict[str, str] = {}
    runs: list[StageRun] = []
    order = schedule(stages)
    for index, (stage, side) in enumerate(order, 1):
        stage_id, needs = stage.id(side), _need_ids(stage, side)
        keys[stage_id] = _key(run, stage, side, [keys[need] for need in needs])
        inputs = {name: outputs[need] for name, need in zip(stage.needs, needs, strict=True)}
        _say(run, f"[{index}/{len(order)}] {stage_id}: {stage.about(run.settings)}")
        compute = partial(stage.run, run, side, inputs)
        record, cached = run.run_dir.run(stage_id, keys[stage_id], compute, time.perf_counter)
        outputs[stage_id] = record.output
        runs.append(StageRun(stage_id, keys[stage_id], cached, record.seconds))
        _say(run, f"    {'cached' if cached else 'done'}: {record.seconds:.1f} s")
    return outputs, runs


def _key(run: ScoreRun, stage: ScoreStage, side: Side | None, needed_keys: list[str]) -> str:
    sides = (side,) if stage.per_model else SIDES
    read = [role for role in stage.splits if role in run.splits]  # a split not asked for is not made
    splits = [(role, run.splits[role].split_id, run.splits[role].sha256) for role in read]
    fingerprints = [run.fingerprints[s] for s in sides]
    settings = to_plain(stage.reads(run.settings))
    versions = (benchmark.__version__, stage.since)
    return stage_key(stage.id(side), versions, settings, splits, fingerprints, needed_keys)


def _say(run: ScoreRun, line: str) -> None:
    if run.progress:
        print(line, file=sys.stderr, flush=True)


def stage_table(runs: Sequence[StageRun]) -> Iterator[tuple[str, str, str]]:
    """(stage, computed or cached, seconds) rows for the closing table."""
    for stage_run in runs:
        yield stage_run.id, "cached" if stage_run.cached else "computed", f"{stage_run.seconds:.1f}"
