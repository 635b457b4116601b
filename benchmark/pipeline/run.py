"""`etbench score` end to end: run the cached stages, assemble, validate and write the result, summarise."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.models import ModelSpec
from benchmark.pipeline.assemble import assemble
from benchmark.pipeline.pair import Pair
from benchmark.pipeline.rundir import write_atomically
from benchmark.pipeline.score import PairOutputs, ScoreRun, default_run_dir
from benchmark.plots import plot_faithfulness_curves, plot_head_effects
from benchmark.records import Result, StageTime, Timing
from benchmark.settings import ScoreSettings
from benchmark.submission import to_json, validate
from benchmark.submission.integrity import seal


class InvalidResultError(BenchmarkError, RuntimeError):
    """The assembled result failed validation (a bug: the run directory keeps every stage for a rerun)."""


@dataclass(frozen=True)
class Scored:
    """A finished run: the result, where it was written, and its run directory."""

    result: Result
    path: Path
    run_dir: Path
    plots: tuple[Path, ...]
    outputs: PairOutputs  # what the stages measured (and how each stage went)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_plots(result: Result, directory: Path) -> tuple[Path, ...]:
    """Head-effect heatmaps of both models and their faithfulness curves on one chart (PNG), drawn from
    the result's records."""
    circuits, faithfulness = result.circuits, result.faithfulness
    random, found = faithfulness.base.random.mean, faithfulness.base.diagnostics
    baselines = {} if random is None else {"random circuits (base)": random}
    all_sites = found.all_sites.faithfulness if found is not None else None
    if all_sites is not None:
        baselines["all heads at all group sites (base)"] = all_sites
    return (
        plot_head_effects(circuits.base, directory / "base_head_effects.png", "base model"),
        plot_head_effects(circuits.finetuned, directory / "finetuned_head_effects.png", "fine-tuned model"),
        plot_faithfulness_curves(
            {"base": faithfulness.base.curve, "fine-tuned": faithfulness.finetuned.curve},
            directory / "faithfulness_curves.png",
            baselines=baselines,
        ),
    )


def score_pair(
    base: ModelSpec,
    finetuned: ModelSpec,
    settings: ScoreSettings,
    run_dir: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> Scored:
    """Score the pair, write the validated result JSON (default: <run dir>/result.json) and the plots."""
    specs = Pair(base, finetuned)
    run_dir = Path(run_dir) if run_dir else default_run_dir(specs)
    # The models are placed as their specs say; the settings record it.
    settings = replace(settings, dtype=base.dtype, device_map=base.device_map)
    started = _now()
    outputs = ScoreRun(specs, settings, run_dir, progress).run()
    stages = tuple(StageTime(stage.id, stage.seconds) for stage in outputs.stages)
    timing = Timing(started, _now(), sum(s.seconds for s in stages), stages)
    result = seal(assemble(outputs, timing, base.device_map or base.device))
    text = to_json(result)
    problems = validate(json.loads(text))
    if problems:
        listing = "\n".join(f"  {problem.path}: {problem.message}" for problem in problems)
        raise InvalidResultError(f"the assembled result does not validate:\n{listing}")
    path = Path(out) if out else run_dir / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)
    return Scored(result, path, run_dir, write_plots(result, run_dir / "plots"), outputs)
