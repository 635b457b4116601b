"""Forged and garbled results are refused with the JSON path and the reason (issue: results nobody can forge).

Each case is one a careful tester tried on the committed organism submission: an edit without a new
digest, and the same edit with the digest recomputed (what a forger would do next), which the
recomputation checks must still catch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.leaderboard import build
from benchmark.submission import check, to_json, validate
from benchmark.submission.compare import compare, same_inputs
from benchmark.submission.files import canonical_name, canonical_text
from benchmark.submission.integrity import content_digest, reseal
from benchmark.submission.synthetic import synthetic_result
from benchmark.submission.validate import downgrade
from benchmark.submission.versions import upgrade

ROOT = Path(__file__).resolve().parents[1]
ORGANISM = next((ROOT / "submissions").glob("*organism-finetuned__*.json"))


@pytest.fixture
def organism() -> dict:
    return json.loads(ORGANISM.read_text())


def paths(problems) -> set[str]:
    return {problem.path for problem in problems}


def test_committed_submissions_are_sealed_and_named_by_their_digest():
    for path in sorted((ROOT / "submissions").glob("*.json")):
        checked = check(path)
        assert checked.ok, (path.name, checked.problems[:3])
        assert checked.result.suite.schema_version in ("2", "3") and checked.result.digest is not None
        assert path.name == canonical_name(checked.result)
        assert checked.result.digest == content_digest(checked.result)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["behaviour"]["finetuned"].update(accuracy=0.9571428571428572),
        lambda d: d["models"]["finetuned"].update(weights_sha256="f" * 64),
        lambda d: d["suite"].update(version="9.9.9"),
        lambda d: d["cmap"]["circuit"].update(gain=0.99),
    ],
    ids=["accuracy", "weight hash", "suite version", "cmap gain"],
)
def test_any_edit_without_a_new_digest_is_refused(organism, edit):
    edit(organism)
    (problem,) = [p for p in validate(organism) if p.path == "$.digest"]
    assert "but the file's content gives" in problem.message


def test_a_forged_accuracy_with_a_new_digest_is_refused_by_its_outcomes(organism):
    organism["behaviour"]["finetuned"]["accuracy"] = 0.9571428571428572  # 0.857 -> 0.957
    found = paths(validate(reseal(organism)))
    assert "$.behaviour.finetuned.accuracy" in found  # outcomes, per-box accuracies and k/70 disagree
    assert "$.faithfulness.finetuned.own.full_accuracy" in found


def test_forged_per_box_accuracies_are_refused(organism):
    accuracy = organism["behaviour"]["finetuned"]
    accuracy["per_position"] = [1.0] * len(accuracy["per_position"])
    found = validate(reseal(organism))
    assert "$.behaviour.finetuned.per_position[0]" in paths(
        found
    ) or "$.behaviour.finetuned.accuracy" in paths(found)
    assert any("the outcomes at box" in p.message or "per-box" in p.message for p in found)


def test_forged_outcomes_must_still_give_the_accuracy(organism):
    accuracy = organism["behaviour"]["finetuned"]
    accuracy["outcomes"] = "1" * len(accuracy["outcomes"])
    (problem, *_) = [p for p in validate(reseal(organism)) if p.path == "$.behaviour.finetuned.accuracy"]
    assert "its outcomes gives 1.0" in problem.message


def test_a_forged_cmap_gain_is_refused(organism):
    organism["cmap"]["circuit"]["gain"] = 0.99
    (problem,) = validate(reseal(organism))
    assert problem.path == "$.cmap.circuit.gain" and "change / (acc_finetuned - acc_base)" in problem.message


def test_a_relabelled_preset_is_refused(organism):
    assert organism["settings"]["preset"] == "cpu-small"
    organism["settings"]["preset"] = "spec-v1"
    found = validate(reseal(organism))
    assert "$.settings.behaviour.n_prompts" in paths(found)
    message = next(p.message for p in found if p.path == "$.settings.behaviour.n_prompts")
    assert message == 'is 70, preset spec-v1 has 500: a run with other settings must name its preset "custom"'


def test_a_forged_weight_hash_with_a_new_digest_passes_validate_and_needs_a_rerun(organism):
    """What a file cannot show: `etbench verify` catches it (tests/test_verify.py)."""
    organism["models"]["finetuned"]["weights_sha256"] = "f" * 64
    assert validate(reseal(organism)) == []


def test_a_downgrade_to_schema_1_that_keeps_the_new_fields_is_refused(organism):
    organism["suite"]["schema_version"] = "1"
    found = validate(organism)
    assert found and all("Additional properties" in p.message for p in found)


def test_schema_1_files_stay_readable_and_valid():
    plain = downgrade(json.loads(to_json(synthetic_result())))
    plain["suite"]["schema_version"] = "1"
    assert validate(plain) == []
    result = check(plain).result
    assert result.digest is None and result.behaviour.base.outcomes is None
    assert json.loads(canonical_text(result)) == plain  # a schema-1 file is written back as it was


def test_the_leaderboard_refuses_a_file_whose_name_is_not_its_digest(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    renamed = subs / ORGANISM.name.replace(ORGANISM.stem[-12:], "0" * 12)
    shutil.copy(ORGANISM, renamed)
    report = build(subs, tmp_path / "out", keep_going=True)
    assert report.rows == () and [invalid.file for invalid in report.invalid] == [renamed.name]
    assert f"is not the canonical {ORGANISM.name}" in report.invalid[0].problems[0].message


def test_schema_2_files_stay_readable_valid_and_keep_their_digest():
    """A schema-2 file decodes with the schema-3 fields null, and is written back byte for byte (its
    digest is that of its own version's text)."""
    plain = downgrade(json.loads(to_json(synthetic_result())), "2")
    plain["suite"]["schema_version"] = "2"
    plain = reseal(plain)
    assert validate(plain) == []
    result = check(plain).result
    assert result.uncertainty is None and result.faithfulness.ablation is None
    assert canonical_text(result) == to_json(plain)


def _as_schema_4(organism: dict, prefilter: str | None) -> dict:
    """The organism file as a schema-4 run of the same inputs writes it: the new fields null, the setting
    `discovery.prefilter` as given."""
    plain = upgrade(organism)
    plain["suite"]["schema_version"] = "4"
    plain["settings"]["discovery"]["prefilter"] = prefilter
    return reseal(plain)


def test_schema_3_files_read_the_prefilter_as_null_and_keep_their_bytes():
    result = check(ORGANISM).result
    assert result.settings.discovery.prefilter is None
    assert all(stage.prefilter is None for stage in result.circuits.base.stages)
    assert canonical_text(result) == ORGANISM.read_text()


def test_a_preset_may_choose_the_attribution_prefilter_and_nothing_else_new(organism):
    assert validate(_as_schema_4(organism, "atp")) == []
    (problem,) = validate(_as_schema_4(organism, "sampling"))
    assert problem.path == "$.settings.discovery.prefilter"


def test_a_schema_4_run_of_exact_discovery_reproduces_a_schema_3_file(organism):
    """The file format's version is no input: a key the older file lacks compares as null."""
    exact, atp = _as_schema_4(organism, None), _as_schema_4(organism, "atp")
    assert same_inputs(exact, organism) and compare(exact, organism).same
    assert not same_inputs(atp, organism)
