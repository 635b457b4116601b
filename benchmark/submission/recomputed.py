"""Integrity of the metric-v2 numbers: each one recomputed from the per-prompt data the result records.

- every circuit run's (and position-scoped diagnostic run's) accuracy and mean logit difference from its
  per-prompt outcomes and differences, and f from the means of the circuit, empty and full runs
  (`measures.normalized_faithfulness`);
- the unmodified model's logit differences are the same under every ablation (one model, one run);
- CPR and CMD from the curve's points (`measures.curve_area`), the random baseline's mean f from its draws;
- every CMAP accuracy and DCM test accuracy from its outcomes;
- each mechanism-mix share from its per-prompt answers, and the first mostly positional layer;
- each noise floor's IoU from the two circuits' heads;
- every interval, by running the seeded bootstrap again (`benchmark.uncertainty`): the same numbers.
Files before metric v2 hold none of these (null), and these checks pass over them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

from benchmark.circuit import GROUPS, Circuit, head_iou
from benchmark.data.counterfactuals import MIX_ANSWERS, MIX_CODES
from benchmark.measures import cmd_value, cpr_value, curve_area, normalized_faithfulness
from benchmark.records import Faithfulness, FaithfulnessScore, ModelFaithfulness, NoiseFloor, Result
from benchmark.submission.checks import Problem
from benchmark.submission.integrity import _close, _cmap_entries, _mismatch, faithfulness_blocks
from benchmark.uncertainty import bits, estimate_all


def _mean(values) -> float:
    return sum(values) / len(values)


def _check_run(score: FaithfulnessScore, model: ModelFaithfulness, path: str) -> Iterator[Problem]:
    """One circuit run: its accuracy, mean logit difference and f from its rows and the model's ends."""
    if score.outcomes is None:
        return
    rows = (score.outcomes, score.logit_diffs, model.full_logit_diffs, model.empty_logit_diffs)
    if any(row is None or len(row) != score.n_prompts for row in rows):
        yield Problem(path, f"needs outcomes and logit differences of all {score.n_prompts} prompts")
        return
    accuracy = _mean(bits(score.outcomes))
    if not _close(score.circuit_accuracy, accuracy):
        yield _mismatch(f"{path}.circuit_accuracy", score.circuit_accuracy, accuracy, "its outcomes")
    mean = _mean(score.logit_diffs)
    if not _close(score.logit_diff, mean):
        yield _mismatch(f"{path}.logit_diff", score.logit_diff, mean, "its logit differences")
    f = normalized_faithfulness(mean, _mean(model.empty_logit_diffs), _mean(model.full_logit_diffs))
    if not _close(score.normalized, f):
        yield _mismatch(f"{path}.normalized", score.normalized, f, "the circuit, empty and full runs")


def _check_model(model: ModelFaithfulness, path: str) -> Iterator[Problem]:
    yield from _check_run(model.own, model, f"{path}.own")
    for run in ("context_kept", "query_kept", "all_sites") if model.diagnostics is not None else ():
        yield from _check_run(getattr(model.diagnostics, run), model, f"{path}.diagnostics.{run}")
    curve = model.curve
    for name, value, recorded in (("cpr", cpr_value, curve.cpr), ("cmd", cmd_value, curve.cmd)):
        area = curve_area(curve.points, value) if model.own.outcomes is not None else None
        if not _close(recorded, area):
            yield _mismatch(f"{path}.curve.{name}", recorded, area, "the area over the curve's points")
    draws = model.random.normalized_draws
    if draws and None not in draws and not _close(model.random.normalized_mean, statistics.fmean(draws)):
        mean = statistics.fmean(draws)
        yield _mismatch(f"{path}.random.normalized_mean", model.random.normalized_mean, mean, "its draws")


def _check_block(block: Faithfulness, where: str) -> Iterator[Problem]:
    yield from _check_model(block.base, f"{where}.base")
    yield from _check_model(block.finetuned, f"{where}.finetuned")
    cross = block.base_circuit_in_finetuned
    yield from _check_run(cross, block.finetuned, f"{where}.base_circuit_in_finetuned")


def check_logit_runs(result: Result) -> Iterator[Problem]:
    """Accuracies, mean logit differences, f, CPR / CMD and the random mean f from what they are made of;
    and one full run per model across ablations."""
    blocks = list(faithfulness_blocks(result))
    for block, where in blocks:
        yield from _check_block(block, where)
    for side in ("base", "finetuned"):
        fulls = {getattr(block, side).full_logit_diffs for block, _ in blocks} - {None}
        if len(fulls) > 1:
            yield Problem(f"$.*.{side}.full_logit_diffs", "differ between ablations (one unmodified run)")


def check_cmap_outcomes(result: Result) -> Iterator[Problem]:
    """Every CMAP accuracy is the share of right answers in its outcomes."""
    cmap = result.cmap
    if cmap is None or cmap.base_outcomes is None:
        return
    runs = [("acc_base", cmap.acc_base, cmap.base_outcomes)]
    runs += [("acc_finetuned", cmap.acc_finetuned, cmap.finetuned_outcomes)]
    runs += [(f"{name}.acc_patched", e.acc_patched, e.outcomes) for name, e in _cmap_entries(cmap)]
    for path, accuracy, outcomes in runs:
        if outcomes is None or len(outcomes) != cmap.n_prompts:
            yield Problem(f"$.cmap.{path}", f"needs the outcomes of all {cmap.n_prompts} prompts")
        elif not _close(accuracy, _mean(bits(outcomes))):
            yield _mismatch(f"$.cmap.{path}", accuracy, _mean(bits(outcomes)), "its outcomes")


def check_dcm_outcomes(result: Result) -> Iterator[Problem]:
    """Every DCM test accuracy is the share of right answers in its test outcomes."""
    for side in ("base", "finetuned") if result.dcm is not None else ():
        for i, mask in enumerate(getattr(result.dcm, side)):
            outcomes, path = mask.test_outcomes, f"$.dcm.{side}[{i}].test_accuracy"
            if outcomes is None:
                continue
            if len(outcomes) != mask.n_test:
                yield Problem(path, f"has {len(outcomes)} test outcomes for n_test={mask.n_test}")
            elif not _close(mask.test_accuracy, _mean(bits(outcomes))):
                yield _mismatch(path, mask.test_accuracy, _mean(bits(outcomes)), "its test outcomes")


def check_mechanism(result: Result) -> Iterator[Problem]:
    """Each mechanism-mix share from its per-prompt answers, the kept count, and the positional layer."""
    mechanism = result.mechanism
    for side in ("base", "finetuned") if mechanism is not None else ():
        mix, path = getattr(mechanism, side), f"$.mechanism.{side}"
        runs = [*mix.query_label, *mix.last_token, *(r for r in mix.groups.values() if r is not None)]
        for run in runs:
            kept = [c for c in run.answers if c != "-"]
            if len(run.answers) != mix.n_prompts or len(kept) != mix.n_kept:
                yield Problem(
                    f"{path}.{run.name}", f"needs {mix.n_prompts} answers, {mix.n_kept} of them kept"
                )
                continue
            for answer, code in (*zip(MIX_ANSWERS, MIX_CODES, strict=True), ("other", "x")):
                share = kept.count(code) / len(kept) if kept else None
                if not _close(getattr(run, answer), share):
                    yield _mismatch(f"{path}.{run.name}.{answer}", getattr(run, answer), share, "its answers")
        first = next((i for i, r in enumerate(mix.query_label) if (r.positional or 0) > 0.5), None)
        if mix.positional_layer != first:
            yield _mismatch(f"{path}.positional_layer", mix.positional_layer, first, "the query-label curve")


def _floor_iou(floor: NoiseFloor, groups: dict) -> dict:
    first, second = Circuit.of(groups), Circuit.of(floor.groups)
    ious = {g.value: head_iou(first.heads(g), second.heads(g)) for g in GROUPS}
    return {**ious, "overall": head_iou(first.all_heads(), second.all_heads())}


def check_floors(result: Result) -> Iterator[Problem]:
    """Each noise floor's IoU from the model's two circuits."""
    circuits = result.circuits
    for side in ("base", "finetuned"):
        floor = getattr(circuits, f"{side}_floor") if circuits is not None else None
        if floor is None:
            continue
        expected = _floor_iou(floor, getattr(circuits, side).groups)
        recorded = {**{g.value: floor.iou.groups[g] for g in GROUPS}, "overall": floor.iou.overall}
        for name, value in recorded.items():
            if not _close(value, expected[name]):
                path = f"$.circuits.{side}_floor.iou.{'overall' if name == 'overall' else 'groups.' + name}"
                yield _mismatch(path, value, expected[name], "the two circuits' heads")


def check_intervals(result: Result) -> Iterator[Problem]:
    """The intervals are the seeded bootstrap's over the file's own per-prompt data."""
    expected = estimate_all(result) if result.suite.metric_version != "v1" else None
    recorded = result.uncertainty
    if expected is None or recorded is None:
        if (expected is None) != (recorded is None):
            state = "null" if recorded is None else "present"
            yield _mismatch("$.uncertainty", state, "the reverse", "the settings' bootstrap")
        return
    names = [e.name for e in expected]
    if [e.name for e in recorded] != names:
        yield _mismatch("$.uncertainty", [e.name for e in recorded][:4], names[:4], "the file's numbers")
        return
    for i, (have, want) in enumerate(zip(recorded, expected, strict=True)):
        for field in ("value", "low", "high"):
            recorded_value, value = getattr(have, field), getattr(want, field)
            if not _close(recorded_value, value):
                yield _mismatch(f"$.uncertainty[{i}].{field}", recorded_value, value, "the bootstrap")
        if (have.n, have.n_contexts) != (want.n, want.n_contexts):
            counts = (want.n, want.n_contexts)
            yield _mismatch(f"$.uncertainty[{i}].n", (have.n, have.n_contexts), counts, "its rows")


RECOMPUTED_CHECKS = (
    check_logit_runs, check_cmap_outcomes, check_dcm_outcomes, check_mechanism, check_floors, check_intervals,
)  # fmt: skip
