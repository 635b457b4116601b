"""`etbench score` end to end: run the cached stages, assemble, validate and write the result, summarise."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tabulate import tabulate

from benchmark.leaderboard.table import COLUMNS, row_values
from benchmark.models import ModelSpec
from benchmark.pipeline.assemble import assemble
from benchmark.pipeline.score import PairOutputs, ScoreRun, default_run_dir
from benchmark.pipeline.settings import ScoreSettings
from benchmark.plots import plot_faithfulness_curves, plot_head_effects
from benchmark.submission import provenance as p
from benchmark.submission import to_json, validate
from benchmark.submission.result import Result


class InvalidResultError(RuntimeError):
    """The assembled result failed validation (a bug: the run directory keeps every stage for a rerun)."""


@dataclass(frozen=True)
class Scored:
    """A finished run: the result, where it was written, and its run directory."""

    result: Result
    path: Path
    run_dir: Path
    plots: tuple[Path, ...]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_plots(outputs: PairOutputs, directory: Path) -> tuple[Path, ...]:
    """Head-effect heatmaps of both models and their faithfulness curves on one chart (PNG)."""
    base, finetuned = outputs.base, outputs.finetuned
    random = {"random circuits (base)": base.faithfulness.random.mean}
    return (
        plot_head_effects(base.discovery, directory / "base_head_effects.png", "base model"),
        plot_head_effects(finetuned.discovery, directory / "finetuned_head_effects.png", "fine-tuned model"),
        plot_faithfulness_curves(
            {"base": base.faithfulness.curve, "fine-tuned": finetuned.faithfulness.curve},
            directory / "faithfulness_curves.png",
            baselines={k: v for k, v in random.items() if not math.isnan(v)},
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
    run_dir = Path(run_dir) if run_dir else default_run_dir(base, finetuned)
    started = _now()
    outputs = ScoreRun(base, finetuned, settings, run_dir, progress).run()
    stages = tuple(p.StageTime(name, seconds) for name, seconds in outputs.stage_seconds.items())
    timing = p.Timing(started, _now(), sum(s.seconds for s in stages), stages)
    device = base.device_map or base.device
    result = assemble(outputs, timing, base.dtype, device, base.device_map)
    text = to_json(result)
    problems = validate(json.loads(text))
    if problems:
        listing = "\n".join(f"  {problem.path}: {problem.message}" for problem in problems)
        raise InvalidResultError(f"the assembled result does not validate:\n{listing}")
    path = Path(out) if out else run_dir / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return Scored(result, path, run_dir, write_plots(outputs, run_dir / "plots"))


def summary(result: Result, file: str = "") -> str:
    """The pair's leaderboard row, one column per line."""
    values = row_values(result, file)
    shown = lambda value: f"{value:.3f}" if isinstance(value, float) else value  # noqa: E731
    rows = [(column.title, shown(values.get(column.key))) for column in COLUMNS if column.key in values]
    return tabulate(rows, tablefmt="github", missingval="-", disable_numparse=True)
