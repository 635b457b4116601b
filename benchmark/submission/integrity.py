"""Integrity of a result: a content digest, and every aggregate recomputed from what it is made of.

A schema says a number has the right type and range; it cannot say the number is the one the run measured.
These checks close the cheap ways to forge or garble a file without re-running it:
- the digest: SHA-256 of the file's canonical JSON with `digest` null. Any edit changes it; the canonical
  file name carries its first 12 hex digits, so a renamed or edited submission no longer matches its name.
- recomputation: each accuracy from its per-prompt outcomes (and the per-box breakdown from the split's
  queried boxes), every rate over n prompts a multiple of 1/n, every ratio, difference, gain, IoU, mean,
  standard deviation and curve area from the numbers it is computed from. An edit that keeps the digest
  honest must still keep all of these consistent.
- the preset: a result that names a preset ran that preset's sizes (else it names itself "custom").
What no check can see (a weight hash of all f's with a recomputed digest) is what `etbench verify` is for:
it re-runs the pair from what the file records.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Iterator
from dataclasses import fields, is_dataclass, replace

from benchmark.circuit import head_iou
from benchmark.measures import curve_area
from benchmark.records import CMAP, Accuracy, Curve, Faithfulness, FaithfulnessScore, Result
from benchmark.settings import PRESETS, ScoreSettings, preset_settings
from benchmark.submission.checks import Problem, regenerated_split
from benchmark.submission.codec import to_json
from benchmark.submission.kinds import GROUP_NAMES, SCHEMA_VERSION
from benchmark.submission.versions import unsealed_text

RATIO_TOLERANCE = 1e-9  # relative: a ratio recomputed from the file's numbers, by the same float operations


def content_digest(result: Result) -> str:
    """SHA-256 (hex) of the result's canonical JSON with `digest` null."""
    return hashlib.sha256(unsealed_text(result).encode("ascii")).hexdigest()


def seal(result: Result) -> Result:
    """The result with its content digest filled in."""
    return replace(result, digest=content_digest(result))


def reseal(plain: dict) -> dict:
    """A parsed result file with its digest recomputed (what `seal` does, on plain JSON values): the
    digest is the SHA-256 of `json.dumps({**plain, "digest": None}, sort_keys=True, indent=2) + "\n"`."""
    text = to_json({**plain, "digest": None})
    return {**plain, "digest": hashlib.sha256(text.encode("ascii")).hexdigest()}


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=RATIO_TOLERANCE, abs_tol=RATIO_TOLERANCE)


def _mismatch(path: str, recorded: object, expected: object, source: str) -> Problem:
    return Problem(path, f"is {recorded}, but {source} gives {expected}")


def check_digest(result: Result) -> Iterator[Problem]:
    """Schema-2 files carry their digest, and it is the digest of what the file holds."""
    if result.suite.schema_version == "1":
        return
    if result.digest is None:
        yield Problem(
            "$.digest", "missing: a schema-2 result carries its content digest (etbench score writes it)"
        )
        return
    expected = content_digest(result)
    if result.digest != expected:
        yield _mismatch("$.digest", result.digest[:12] + "...", expected[:12] + "...", "the file's content")


def _check_outcomes(accuracy: Accuracy, queried: tuple[int, ...] | None, path: str) -> Iterator[Problem]:
    outcomes = accuracy.outcomes
    if outcomes is None:
        yield Problem(f"{path}.outcomes", "missing: a schema-2 result records each prompt's outcome")
        return
    if len(outcomes) != accuracy.n:
        yield Problem(f"{path}.outcomes", f"has {len(outcomes)} outcomes for n={accuracy.n} prompts")
        return
    right = [c == "1" for c in outcomes]
    if not _close(accuracy.accuracy, sum(right) / len(right)):
        yield _mismatch(f"{path}.accuracy", accuracy.accuracy, sum(right) / len(right), "its outcomes")
    if queried is None:
        return
    for box in range(len(accuracy.per_position)):
        rows = [r for r, q in zip(right, queried[: len(right)], strict=False) if q == box]
        share = sum(rows) / len(rows) if rows else None
        if len(rows) != accuracy.n_per_position[box] or not _close(accuracy.per_position[box], share):
            recorded = (accuracy.per_position[box], accuracy.n_per_position[box])
            yield _mismatch(
                f"{path}.per_position[{box}]", recorded, (share, len(rows)), "the outcomes at box"
            )


def _queried_boxes(result: Result) -> tuple[int, ...] | None:
    """The queried box of each row of the behaviour split (None when the split cannot be regenerated)."""
    dataset = next((d for d in result.datasets if d.role == "behaviour"), None)
    split = regenerated_split(dataset.split_id, result.vocabulary) if dataset else None
    return None if split is None or isinstance(split, str) else tuple(e.query_index for e in split.examples)


def _check_breakdown(accuracy: Accuracy, path: str) -> Iterator[Problem]:
    """The per-box accuracies, weighted by their row counts, average to the accuracy."""
    pairs = [(a, n) for a, n in zip(accuracy.per_position, accuracy.n_per_position, strict=False) if n]
    if any(a is None for a, _ in pairs):
        yield Problem(f"{path}.per_position", "is null at a box that has rows")
        return
    mean = sum(a * n for a, n in pairs) / accuracy.n
    if not math.isclose(accuracy.accuracy, mean, abs_tol=1e-9):
        yield _mismatch(f"{path}.accuracy", accuracy.accuracy, mean, "its per-box accuracies")


def check_outcomes(result: Result) -> Iterator[Problem]:
    """Each model's accuracy is what its per-box accuracies and (schema 2) its per-prompt outcomes give."""
    queried = None if result.suite.schema_version == "1" else _queried_boxes(result)
    for side in ("base", "finetuned"):
        accuracy, path = getattr(result.behaviour, side), f"$.behaviour.{side}"
        yield from _check_breakdown(accuracy, path)
        if result.suite.schema_version != "1":
            yield from _check_outcomes(accuracy, queried, path)


def _rates(result: Result) -> Iterator[tuple[str, float | None, int]]:
    """(path, rate, n): every accuracy of the file that is a share of n prompts."""
    for side in ("base", "finetuned"):
        accuracy = getattr(result.behaviour, side)
        yield f"$.behaviour.{side}.accuracy", accuracy.accuracy, accuracy.n
    for block, where in faithfulness_blocks(result):
        for path, score in _scores(block, where):
            yield f"{path}.full_accuracy", score.full_accuracy, score.n_prompts
            yield f"{path}.circuit_accuracy", score.circuit_accuracy, score.n_prompts
        for side in ("base", "finetuned"):
            n = getattr(block, side).own.n_prompts
            for i, point in enumerate(getattr(block, side).curve.points):
                yield f"{where}.{side}.curve.points[{i}].accuracy", point.accuracy, n
    if result.cmap is not None:
        cmap, n = result.cmap, result.cmap.n_prompts
        yield "$.cmap.acc_base", cmap.acc_base, n
        yield "$.cmap.acc_finetuned", cmap.acc_finetuned, n
        for name, entry in _cmap_entries(cmap):
            yield f"$.cmap.{name}.acc_patched", entry.acc_patched, n
    if result.dcm is not None:
        for side in ("base", "finetuned"):
            for i, mask in enumerate(getattr(result.dcm, side)):
                yield f"$.dcm.{side}[{i}].test_accuracy", mask.test_accuracy, mask.n_test
                n_validation = result.settings.dcm.n_validation
                yield f"$.dcm.{side}[{i}].validation_accuracy", mask.validation_accuracy, n_validation


def faithfulness_blocks(result: Result) -> Iterator[tuple[Faithfulness, str]]:
    """Every faithfulness block (one per ablation) with its JSON path."""
    if result.faithfulness is not None:
        yield result.faithfulness, "$.faithfulness"
    for i, block in enumerate(result.other_ablations or ()):
        yield block, f"$.other_ablations[{i}]"


def _scores(block: Faithfulness, where: str) -> Iterator[tuple[str, FaithfulnessScore]]:
    yield f"{where}.base.own", block.base.own
    yield f"{where}.finetuned.own", block.finetuned.own
    yield f"{where}.base_circuit_in_finetuned", block.base_circuit_in_finetuned


def _cmap_entries(cmap: CMAP):
    yield "circuit", cmap.circuit
    for group, entry in cmap.groups.items():
        if entry is not None:
            yield f"groups.{group}", entry


def check_rates(result: Result) -> Iterator[Problem]:
    """An accuracy over n prompts is k/n for a whole k."""
    for path, rate, n in _rates(result):
        if rate is not None and abs(rate * n - round(rate * n)) > 1e-6:
            yield Problem(path, f"{rate} is not a share of {n} prompts (k/{n} for a whole k)")


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _check_curve(curve: Curve, full: float, path: str) -> Iterator[Problem]:
    for i, point in enumerate(curve.points):
        if not _close(point.faithfulness, _ratio(point.accuracy, full)):
            expected = _ratio(point.accuracy, full)
            yield _mismatch(
                f"{path}.points[{i}].faithfulness", point.faithfulness, expected, "accuracy / full"
            )
    area = curve_area(curve.points)
    if not _close(curve.area, area):
        yield _mismatch(f"{path}.area", curve.area, area, "the trapezoid over its points")


def check_faithfulness(result: Result) -> Iterator[Problem]:
    """Ratios from their accuracies, the full model's accuracy from behaviour, the random baseline's mean and
    standard deviation from its draws, each curve's points and area."""
    for block, where in faithfulness_blocks(result):
        yield from _check_block(result, block, where)


def _check_block(result: Result, block: Faithfulness, where: str) -> Iterator[Problem]:
    for path, score in _scores(block, where):
        expected = _ratio(score.circuit_accuracy, score.full_accuracy)
        if not _close(score.faithfulness, expected):
            yield _mismatch(f"{path}.faithfulness", score.faithfulness, expected, "circuit / full accuracy")
    for side in ("base", "finetuned"):
        model, path = getattr(block, side), f"{where}.{side}"
        behaviour = getattr(result.behaviour, side).accuracy
        if not _close(model.own.full_accuracy, behaviour):
            yield _mismatch(f"{path}.own.full_accuracy", model.own.full_accuracy, behaviour, "behaviour")
        yield from _check_curve(model.curve, model.own.full_accuracy, f"{path}.curve")
        draws = model.random.draws
        if draws and None not in draws:
            mean = statistics.fmean(draws)
            std = statistics.stdev(draws) if len(draws) > 1 else None
            if not (_close(model.random.mean, mean) and _close(model.random.std, std)):
                recorded = (model.random.mean, model.random.std)
                yield _mismatch(f"{path}.random", recorded, (mean, std), "the mean and sd of its draws")


def check_cmap(result: Result) -> Iterator[Problem]:
    """Each entry's change and gain from its accuracy, and whether the gain is defined from the gap."""
    cmap = result.cmap
    if cmap is None:
        return
    gap = cmap.acc_finetuned - cmap.acc_base
    if cmap.gain_defined != (abs(gap) >= result.settings.cmap.min_gap):
        yield _mismatch("$.cmap.gain_defined", cmap.gain_defined, not cmap.gain_defined, "the accuracy gap")
        return
    for name, entry in _cmap_entries(cmap):
        change = entry.acc_patched - cmap.acc_base
        if not _close(entry.change, change):
            yield _mismatch(f"$.cmap.{name}.change", entry.change, change, "acc_patched - acc_base")
        gain = change / gap + 0.0 if cmap.gain_defined else None
        if not _close(entry.gain, gain):
            yield _mismatch(f"$.cmap.{name}.gain", entry.gain, gain, "change / (acc_finetuned - acc_base)")


def check_overlaps(result: Result) -> Iterator[Problem]:
    """Circuit IoUs from both circuits' heads, DCM IoUs from both models' DCM heads."""
    circuits = result.circuits
    if circuits is not None:
        for group in GROUP_NAMES:
            iou = head_iou(circuits.base.groups[group], circuits.finetuned.groups[group])
            if not _close(circuits.iou.groups[group], iou):
                yield _mismatch(
                    f"$.circuits.iou.groups.{group}", circuits.iou.groups[group], iou, "the heads"
                )
        every = [
            sorted({h for g in GROUP_NAMES for h in getattr(circuits, s).groups[g]})
            for s in ("base", "finetuned")
        ]
        iou = head_iou(*every)
        if not _close(circuits.iou.overall, iou):
            yield _mismatch("$.circuits.iou.overall", circuits.iou.overall, iou, "the heads")
    if result.dcm is not None:
        heads = {
            (m.group, m.desideratum, s): m.heads
            for s in ("base", "finetuned")
            for m in getattr(result.dcm, s)
        }
        for i, o in enumerate(result.dcm.overlap):
            pair = [heads.get((o.group, o.desideratum, s)) for s in ("base", "finetuned")]
            if None not in pair and not _close(o.iou, head_iou(*pair)):
                yield _mismatch(f"$.dcm.overlap[{i}].iou", o.iou, head_iou(*pair), "both models' DCM heads")


def _differences(recorded: object, expected: object, path: str) -> Iterator[tuple[str, object, object]]:
    """(path, recorded, expected) of every leaf where two settings records differ."""
    if is_dataclass(recorded):
        for field in fields(recorded):
            name = field.name
            yield from _differences(getattr(recorded, name), getattr(expected, name), f"{path}.{name}")
    elif recorded != expected:
        yield path, recorded, expected


def _preset_of(settings: ScoreSettings) -> ScoreSettings:
    """The named preset with this run's common knobs (boxes, seed, batch size, placement)."""
    return preset_settings(
        settings.preset,
        n_boxes=settings.n_boxes,
        seed=settings.behaviour.seed,
        batch_size=settings.batch_size,
        dtype=settings.dtype,
        device_map=settings.device_map,
        prefilter=settings.discovery.prefilter,
    )


def check_preset(result: Result) -> Iterator[Problem]:
    """A result that names a preset of this suite has that preset's sizes and settings; any other name
    (such as "custom") makes no such claim. Only boxes, seed, batch size, placement and discovery's pre-filter
    may be set freely."""
    settings = result.settings
    if settings.preset not in PRESETS:
        return
    older = result.suite.schema_version != SCHEMA_VERSION
    for path, recorded, expected in _differences(settings, _preset_of(settings), "$.settings"):
        if older and recorded is None:
            continue  # a setting later versions added: that file's run did not have it
        yield Problem(
            path,
            f"is {recorded}, preset {settings.preset} has {expected}: a run with other settings must name "
            'its preset "custom"',
        )


INTEGRITY_CHECKS = (
    check_digest,
    check_outcomes,
    check_rates,
    check_faithfulness,
    check_cmap,
    check_overlaps,
    check_preset,
)
