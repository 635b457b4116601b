"""Known-answer rows: results of the zoo's planted pairs, what the suite must say and what it said."""

from __future__ import annotations

from pathlib import PurePath

from benchmark.leaderboard.escape import markdown_text
from benchmark.records import Result
from benchmark.submission.kinds import GROUP_LETTERS
from benchmark.zoo.pairs import PLANTED_PAIRS, PlantedPair


def known_pair(result: Result) -> PlantedPair | None:
    """The planted pair whose two models (by folder name) this result scored, if any."""
    names = tuple(PurePath(m.id).name for m in (result.models.base, result.models.finetuned))
    return next((p for p in PLANTED_PAIRS if (p.base, p.finetuned) == names), None)


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def _cmap_entry(name: str, entry) -> str:
    """`A 1.00`, or the raw change where the gain is undefined (`A change -0.86`)."""
    if entry is None:
        return f"{name} -"
    return f"{name} {entry.gain:.2f}" if entry.gain is not None else f"{name} change {entry.change:+.2f}"


def said(result: Result) -> str:
    """One sentence of the numbers a known answer is judged by."""
    circuits, faith, cmap = result.circuits, result.faithfulness, result.cmap
    parts = [
        f"accuracy {result.behaviour.base.accuracy:.2f} -> {result.behaviour.finetuned.accuracy:.2f}",
        f"circuit IoU {_number(circuits.iou.overall if circuits else None)}",
    ]
    if faith is not None:
        parts.append(
            f"base circuit faithful {faith.base.own.faithfulness:.2f} in base, "
            f"{faith.base_circuit_in_finetuned.faithfulness:.2f} in fine-tuned "
            f"(random {faith.base.random.mean:.2f})"
        )
    if cmap is not None:
        entries = [_cmap_entry("circuit", cmap.circuit)]
        entries += [_cmap_entry(GROUP_LETTERS[g], cmap.groups.get(g)) for g in GROUP_LETTERS]
        parts.append(f"CMAP {', '.join(entries)} (circuit patched acc {cmap.circuit.acc_patched:.2f})")
    return "; ".join(parts) + "."


def section(results: list[tuple[str, Result]]) -> str:
    """The Markdown section of known-answer rows ('' when there is none)."""
    lines = [
        f"- **{pair.name}** ({markdown_text(file)}): must say {pair.expected}. Said: {said(result)}"
        for file, result in results
        if (pair := known_pair(result)) is not None
    ]
    if not lines:
        return ""
    intro = (
        "Hand-compiled pairs whose mechanism is known by construction "
        "([docs/metrics.md](../docs/metrics.md#how-we-know-the-methods-work)): a wrong sentence here is a "
        "bug in a method."
    )
    return "\n## Known-answer pairs\n\n" + intro + "\n\n" + "\n".join(lines) + "\n"
