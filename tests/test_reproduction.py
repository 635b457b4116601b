"""`etbench score` ends with the reproduction verdict, and exits 1 when a committed result is not reproduced.

Scoring itself is replaced by a synthetic result written to disk (the pipeline's own tests score tiny
pairs); what runs for real is the CLI, the comparison with `--submissions` and the exit code.
"""

import json
from types import SimpleNamespace

import pytest

import benchmark.pipeline
from benchmark.cli import main
from benchmark.pipeline.run import Scored
from benchmark.submission import to_json
from benchmark.submission.compare import FLOAT_TOLERANCE
from benchmark.submission.synthetic import synthetic_result


@pytest.fixture
def scored(tmp_path, monkeypatch):
    """`etbench score` now "scores" the synthetic result into tmp_path/run; returns its plain form."""
    result = synthetic_result()
    run_dir = tmp_path / "run"

    def fake_score_pair(base, finetuned, settings, run_dir_arg, out, progress):
        run_dir.mkdir(exist_ok=True)
        path = run_dir / "result.json"
        path.write_text(to_json(result))
        return Scored(result, path, run_dir, (), SimpleNamespace(stages=()))  # no stage ran

    monkeypatch.setattr(benchmark.pipeline, "score_pair", fake_score_pair)
    return json.loads(to_json(result))


def _score(tmp_path, capsys) -> tuple[int, list[str]]:
    args = [
        "score",
        "--base",
        "b",
        "--finetuned",
        "f",
        "--device",
        "cpu",
        "--submissions",
        str(tmp_path / "subs"),
    ]
    code = main(args)
    return code, capsys.readouterr().out.splitlines()


def _commit(tmp_path, plain: dict) -> str:
    (tmp_path / "subs").mkdir(exist_ok=True)
    path = tmp_path / "subs" / "committed.json"
    path.write_text(json.dumps(plain))
    return str(path)


def test_no_committed_result_is_said_last_and_is_no_failure(scored, tmp_path, capsys):
    code, lines = _score(tmp_path, capsys)
    assert code == 0
    assert lines[-1] == f"nothing to reproduce: no submission in {tmp_path / 'subs'} has the same inputs"


def test_float_noise_within_the_tolerance_reproduces(scored, tmp_path, capsys):
    scored["circuits"]["finetuned"]["stages"][1]["mean"][2][0] += FLOAT_TOLERANCE / 10
    committed = _commit(tmp_path, scored)
    code, lines = _score(tmp_path, capsys)
    assert code == 0
    assert lines[-1].startswith(f"reproduces {committed}: same numbers (path-patching effects, their")
    assert lines[-1].endswith("within 0.0001, every other value exact; largest float move 1.0e-05)")


def test_a_real_difference_fails_the_command(scored, tmp_path, capsys):
    scored["faithfulness"]["base"]["own"]["circuit_accuracy"] /= 2
    scored["circuits"]["base"]["stages"][0]["mean"][0][1] += 2 * FLOAT_TOLERANCE
    committed = _commit(tmp_path, scored)
    code, lines = _score(tmp_path, capsys)
    assert code == 1
    assert [line.split(" (")[0] for line in lines[-3:-1]] == [
        "  $.circuits.base.stages[0].mean[0][1]",
        "  $.faithfulness.base.own.circuit_accuracy",
    ]
    assert lines[-1].startswith(f"does not reproduce {committed}: 2 values differ (rule: path-patching")
