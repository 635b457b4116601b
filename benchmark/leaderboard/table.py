"""Leaderboard rows from validated results: the columns (one definition for Markdown, CSV and the page).

Rows come only from submission files, sorted by a stable key; two results of the same pair of models are
both kept and flagged, never merged.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from tabulate import tabulate

from benchmark.leaderboard.escape import markdown_text
from benchmark.leaderboard.known import known_pair, section
from benchmark.models.identity import ModelRecord
from benchmark.records import DCMOverlap, Result
from benchmark.submission.files import name_digest
from benchmark.submission.kinds import GROUP_NAMES
from benchmark.submission.verified import Verification, status
from benchmark.uncertainty import find

MISSING = "–"  # how an absent number shows in Markdown and on the page
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Column:
    """A leaderboard column: its key (the Row field), title, whether it sorts as a number, and whether the
    page shows it by default (`brief`; the others appear with "all columns", Markdown and CSV show all)."""

    key: str
    title: str
    numeric: bool
    description: str
    brief: bool = True
    estimate: str | None = None  # the `uncertainty` estimate that gives this number's interval


def _group_title(group: str) -> str:
    return group.replace("_", " ")


COLUMNS: tuple[Column, ...] = (
    Column("pair", "pair", False, "base model -> fine-tuned model (id@revision)"),
    Column(
        "base_acc", "base acc", True, "accuracy of the base model (lm-eval)", True, "behaviour.base.accuracy"
    ),
    Column(
        "finetuned_acc",
        "fine-tuned acc",
        True,
        "accuracy of the fine-tuned model (lm-eval)",
        True,
        "behaviour.finetuned.accuracy",
    ),
    Column(
        "acc_gain",
        "acc gain",
        True,
        "fine-tuned minus base accuracy (paired interval)",
        False,
        "behaviour.accuracy_gain",
    ),
    Column("base_circuit", "base circuit A/B/C/D", False, "heads per group in the base circuit"),
    Column("finetuned_circuit", "fine-tuned circuit A/B/C/D", False, "heads per group, fine-tuned circuit"),
    Column(
        "faith_base",
        "faith. base circuit in base",
        True,
        "accuracy ratio of the base circuit in base (mean ablation)",
        True,
        "faithfulness.mean.base.ratio",
    ),
    Column(
        "faith_transfer",
        "faith. base circuit in fine-tuned",
        True,
        "accuracy ratio of the base circuit in the fine-tuned model (mean ablation)",
        True,
        "faithfulness.mean.cross.ratio",
    ),
    Column(
        "f_base",
        "f base circuit in base",
        True,
        "normalized faithfulness of the logit difference, base circuit in base (mean ablation)",
        True,
        "faithfulness.mean.base.normalized",
    ),
    Column(
        "f_transfer",
        "f base circuit in fine-tuned",
        True,
        "normalized faithfulness, base circuit in the fine-tuned model (mean ablation)",
        True,
        "faithfulness.mean.cross.normalized",
    ),
    Column(
        "f_base_resample",
        "f base circuit in base (resample)",
        True,
        "normalized faithfulness under resample ablation",
        False,
        "faithfulness.resample.base.normalized",
    ),
    Column(
        "f_transfer_resample",
        "f base circuit in fine-tuned (resample)",
        True,
        "normalized faithfulness in the fine-tuned model under resample ablation",
        False,
        "faithfulness.resample.cross.normalized",
    ),
    Column(
        "random_baseline",
        "random circuit faith.",
        True,
        "mean faithfulness of random base-size circuits",
        brief=False,
    ),
    Column("circuit_iou", "circuit IoU", True, "IoU of the base and fine-tuned circuits' heads"),
    Column(
        "floor_base",
        "floor IoU base",
        True,
        "noise floor: the base model's circuit against itself found on other prompts",
    ),
    Column(
        "floor_finetuned",
        "floor IoU fine-tuned",
        True,
        "noise floor: the fine-tuned model's circuit against itself found on other prompts",
    ),
    Column(
        "dcm_overlap",
        "DCM overlap (mean IoU)",
        True,
        "mean IoU of DCM heads over the (group, desideratum) where either model has some",
    ),
    Column(
        "cmap_circuit",
        "CMAP gain: circuit",
        True,
        "share of the accuracy gap closed by the full circuit",
        True,
        "cmap.circuit.gain",
    ),
    *(
        Column(
            f"cmap_{g}",
            f"CMAP gain: {_group_title(g)}",
            True,
            f"gap closed by the {_group_title(g)} heads",
            brief=False,
            estimate=f"cmap.{g}.gain",
        )
        for g in GROUP_NAMES
    ),
    Column("preset", "preset", False, "sizes of the run: spec-v1 (the full ones) or cpu-small (about 1/7)"),
    Column(
        "checked",
        "checked",
        False,
        "re-run (suite X): `etbench verify` re-ran the pair and got the same numbers; else self-reported",
    ),
    Column(
        "suite_version",
        "suite version",
        False,
        "version of entity-tracking-bench that scored the pair",
        brief=False,
    ),
    Column("date", "date", False, "UTC date the run finished", brief=False),
    Column(
        "known_answer", "known answer", False, "the planted pair whose known answer this row is judged by"
    ),
    Column(
        "flag",
        "flag",
        False,
        "'duplicate' when another submission has the same models and revisions at the same preset",
    ),
    Column("file", "file", False, "the submission file in submissions/", brief=False),
)


def model_label(model: ModelRecord) -> str:
    """`id@revision`, then the GGUF file and the merged adapters' folder names when there are any."""
    label = model.id + (f"@{model.revision}" if model.revision else "")
    if model.gguf_file:
        label += f" [{model.gguf_file}]"
    if model.adapters:
        label += "".join(f" + {adapter.name}" for adapter in model.adapters)
    return label


def pair_key(result: Result) -> tuple:
    """What makes two submissions the same measurement: both models' ids, revisions, GGUF files and adapters,
    at the same preset (one pair at two presets is two measurements: rows compare within a preset)."""
    models = result.models.base, result.models.finetuned
    pair = tuple((m.id, m.revision, m.gguf_file, tuple(a.weights_sha256 for a in m.adapters)) for m in models)
    return (*pair, result.settings.preset)


def _circuit_sizes(result: Result, side: str) -> str | None:
    if result.circuits is None:
        return None
    groups = getattr(result.circuits, side).groups
    return "/".join(str(len(groups[g])) for g in GROUP_NAMES)


def _faithfulness_values(result: Result) -> dict[str, float | None]:
    faith = result.faithfulness
    resample = next((b for b in result.other_ablations or () if b.ablation == "resample"), None)
    values = {
        "faith_base": faith.base.own.faithfulness if faith else None,
        "faith_transfer": faith.base_circuit_in_finetuned.faithfulness if faith else None,
        "f_base": faith.base.own.normalized if faith else None,
        "f_transfer": faith.base_circuit_in_finetuned.normalized if faith else None,
        "f_base_resample": resample.base.own.normalized if resample else None,
        "f_transfer_resample": resample.base_circuit_in_finetuned.normalized if resample else None,
    }
    return {**values, "random_baseline": faith.base.random.mean if faith else None}


def _floors(result: Result) -> dict[str, float | None]:
    circuits = result.circuits
    floor = lambda side: getattr(circuits, f"{side}_floor") if circuits else None  # noqa: E731
    return {f"floor_{side}": f.iou.overall if (f := floor(side)) else None for side in ("base", "finetuned")}


def row_intervals(result: Result) -> dict[str, tuple[float, float]]:
    """The interval of every column that has one in this result (schema-3 results; none before)."""
    intervals = {}
    for column in COLUMNS:
        found = find(result, column.estimate) if column.estimate else None
        if found is not None and found.low is not None:
            intervals[column.key] = (found.low, found.high)
    return intervals


def _cmap_values(result: Result) -> dict[str, float | None]:
    cmap = result.cmap
    values = {"cmap_circuit": cmap.circuit.gain if cmap else None}
    for group in GROUP_NAMES:
        entry = cmap.groups[group] if cmap else None
        values[f"cmap_{group}"] = entry.gain if entry else None
    return values


def dcm_iou(result: Result, overlap: DCMOverlap) -> float | None:
    """The IoU of one (group, desideratum)'s DCM heads, or None when neither model has any: two empty sets
    say nothing about overlap. (The result file stores 1.0 there; the leaderboard shows it undefined.)"""

    def heads(masks) -> set:
        return {
            tuple(h)
            for m in masks
            if (m.group, m.desideratum) == (overlap.group, overlap.desideratum)
            for h in m.heads
        }

    dcm = result.dcm
    return overlap.iou if heads(dcm.base) or heads(dcm.finetuned) else None


def _dcm_overlap(result: Result) -> float | None:
    """Mean DCM IoU over the (group, desideratum) where it is defined; None if it is nowhere."""
    if result.dcm is None:
        return None
    defined = [iou for o in result.dcm.overlap if (iou := dcm_iou(result, o)) is not None]
    return sum(defined) / len(defined) if defined else None


def finished_date(result: Result) -> str:
    """The UTC date the run finished (validated results carry an ISO 8601 time with a zone)."""
    return datetime.fromisoformat(result.timing.finished_at).astimezone(UTC).date().isoformat()


def row_values(result: Result, file: str, verification: Verification | None = None) -> dict[str, object]:
    """Every column's value for one result (None where a stage did not run or a number is undefined);
    `verification`: the file's verification record, if it has one."""
    return {
        "pair": f"{model_label(result.models.base)} -> {model_label(result.models.finetuned)}",
        "base_acc": result.behaviour.base.accuracy,
        "finetuned_acc": result.behaviour.finetuned.accuracy,
        "acc_gain": result.behaviour.finetuned.accuracy - result.behaviour.base.accuracy,
        "base_circuit": _circuit_sizes(result, "base"),
        "finetuned_circuit": _circuit_sizes(result, "finetuned"),
        **_faithfulness_values(result),
        "circuit_iou": result.circuits.iou.overall if result.circuits else None,
        **_floors(result),
        "dcm_overlap": _dcm_overlap(result),
        **_cmap_values(result),
        "preset": result.settings.preset,
        "checked": status(verification, file, name_digest(result)),
        "suite_version": result.suite.version,
        "date": finished_date(result),
        "known_answer": known.name if (known := known_pair(result)) else "",
        "flag": "",
        "file": file,
    }


@dataclass(frozen=True)
class Entry:
    """One leaderboard row: the validated result, its file name and its column values."""

    file: str
    result: Result
    values: dict[str, object]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # by column key

    def sort_key(self) -> tuple:
        return (
            str(self.values["pair"]).lower(),
            str(pair_key(self.result)),
            str(self.values["date"]),
            self.file,
        )


def entries(
    results: Sequence[tuple[str, Result]], verifications: Mapping[str, Verification] | None = None
) -> tuple[Entry, ...]:
    """Rows sorted by a stable key, with every row of a pair that occurs more than once flagged;
    `verifications`: verification records by file name."""
    verifications = verifications or {}
    rows = sorted(
        (
            Entry(file, result, row_values(result, file, verifications.get(file)), row_intervals(result))
            for file, result in results
        ),
        key=Entry.sort_key,
    )
    counts = Counter(pair_key(row.result) for row in rows)
    return tuple(
        replace(row, values={**row.values, "flag": DUPLICATE}) if counts[pair_key(row.result)] > 1 else row
        for row in rows
    )


def shown(value: object, interval: tuple[float, float] | None = None) -> str:
    """A number to 3 decimals, with its 95% interval when it has one: "0.586 [0.543, 0.629]"."""
    if value is None:
        return MISSING
    if not isinstance(value, float):
        return str(value)
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _cell(value: object, interval: tuple[float, float] | None = None) -> str:
    """Markdown cell: numbers to 3 decimals with their interval, text made inert (`markdown_text`)."""
    if value is None or isinstance(value, float):
        return shown(value, interval)
    return markdown_text(value)


def markdown(rows: Sequence[Entry]) -> str:
    """The Markdown table (GitHub flavour) of the leaderboard, with a header saying how it was built."""
    table = tabulate(
        [[_cell(row.values[c.key], row.intervals.get(c.key)) for c in COLUMNS] for row in rows],
        headers=[c.title for c in COLUMNS],
        tablefmt="github",
        disable_numparse=True,
    )
    note = (
        "Generated by `etbench leaderboard build` from `submissions/`; do not edit. "
        "The columns are defined in [docs/metrics.md](../docs/metrics.md). A number in brackets is its 95% "
        "bootstrap interval over contexts; results before metric v2 carry none."
    )
    body = table if rows else table + "\n\n_No submissions yet._"
    known = section([(row.file, row.result) for row in rows])
    return f"# Leaderboard\n\n{note}\n\n{body}\n{known}"


def csv_text(rows: Sequence[Entry]) -> str:
    """The CSV of the leaderboard (column keys as header, empty cell for a missing number)."""
    import pandas as pd  # only a build needs it; `etbench --help` should not pay for it

    def keys(c: Column) -> tuple[str, ...]:
        return (c.key, f"{c.key}_low", f"{c.key}_high") if c.estimate else (c.key,)

    def cells(row: Entry) -> list:
        bounds = lambda c: row.intervals.get(c.key, (None, None)) if c.estimate else ()  # noqa: E731
        return [value for c in COLUMNS for value in (row.values[c.key], *bounds(c))]

    header = [key for c in COLUMNS for key in keys(c)]
    frame = pd.DataFrame([cells(row) for row in rows], columns=header)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()
