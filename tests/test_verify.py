"""`etbench verify` re-runs the committed planted rows (the ones CI can afford) and gets their numbers; a
forged row is caught; each committed planted row carries a verification record that the leaderboard shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.submission import check
from benchmark.submission.codec import to_json
from benchmark.submission.files import name_digest
from benchmark.submission.integrity import reseal
from benchmark.submission.synthetic import synthetic_result
from benchmark.submission.verified import read_verification
from benchmark.submission.versions import downgrade

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = ROOT / "submissions"
# The planted pairs' cpu-small rows, which CI re-runs (their spec-v1 rows take about 17 minutes each on two
# shared cores: they are validated with every other submission, not re-run here).
PLANTED = sorted(
    path
    for path in SUBMISSIONS.glob("positional-*.json")
    if json.loads(path.read_text())["settings"]["preset"] == "cpu-small"
)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verify")
    return {path.name: root / path.stem for path in PLANTED}


def _verify(path: Path, run_dir: Path, capsys) -> tuple[int, list[str]]:
    code = main(["verify", str(path), "--device", "cpu", "--no-progress", "--run-dir", str(run_dir)])
    return code, capsys.readouterr().out.splitlines()


def test_there_are_planted_rows_to_verify():
    assert len(PLANTED) == 3


@pytest.mark.parametrize("path", PLANTED, ids=lambda p: p.name.split("__")[0] + "__" + p.name.split("__")[1])
def test_a_committed_planted_row_verifies_on_rerun(path, run_dirs, capsys):
    code, lines = _verify(path, run_dirs[path.name], capsys)
    assert code == 0, lines[-12:]
    assert lines[-1].startswith(f"verified {path}: same numbers on re-run")


@pytest.mark.parametrize("path", PLANTED, ids=lambda p: p.name[:40])
def test_each_committed_planted_row_has_a_verification_record(path):
    record = read_verification(SUBMISSIONS, path.name)
    assert record is not None, f"run: etbench verify {path.relative_to(ROOT)} --record"
    assert record.reproduced and record.digest == name_digest(check(path).result)


def test_a_forged_weight_hash_is_caught_by_verify(run_dirs, tmp_path, capsys):
    """The forgery `validate` cannot see (tests/test_integrity.py): the re-run hashes the real weights."""
    path = PLANTED[0]
    forged = json.loads(path.read_text())
    forged["models"]["finetuned"]["weights_sha256"] = "f" * 64
    target = tmp_path / path.name
    target.write_text(json.dumps(reseal(forged)))
    code, lines = _verify(target, run_dirs[path.name], capsys)  # the stages of the real pair's re-run
    assert code == 1 and lines[-1].startswith(f"does not verify {target}: 1 value differs")
    assert any("$.models.finetuned.weights_sha256 (" in line and "f" * 64 in line for line in lines)


def test_a_row_of_an_older_metric_version_is_refused_with_what_to_do(tmp_path, capsys):
    """Its numbers follow other definitions: a re-run under today's cannot reproduce them."""
    plain = downgrade(json.loads(to_json(synthetic_result())), "2")
    plain["suite"].update(schema_version="2", metric_version="v1")
    target = tmp_path / "old.json"
    target.write_text(json.dumps(reseal(plain)))
    assert check(target).ok
    assert main(["verify", str(target), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "metric v1" in error and "rescore the pair" in error
