"""What a careful tester tried against the run directory and the pair check: each case failed before.

Crafted stage files, stale caches after a config or tokenizer edit, pairs that only differ in BOS handling,
two pairs sharing a default run directory, two runs in one directory, unwritable run directories and
half-written result files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.models import ModelSpec, PairMismatchError, check_pair_configs, spec_fingerprint
from benchmark.pipeline import Pair, default_run_dir
from benchmark.pipeline.rundir import RunDirectory, RunDirectoryError, StageRecord, write_atomically
from benchmark.testing import build_tiny_model, build_tokenizer


class _Payload:
    """Unpickling this runs a shell command (what a crafted stage file would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_stage_file_runs_no_code_and_is_a_cache_miss(tmp_path):
    run_dir = RunDirectory(tmp_path / "run")
    marker = tmp_path / "pwned"
    torch.save(StageRecord("key", _Payload(marker), 1.0), run_dir.root / "stages" / "base.means.pt")
    with pytest.warns(UserWarning, match="ignoring stage file"):
        assert run_dir.load("base.means", "key") is None
    assert not marker.exists()


def test_a_stage_file_of_the_suite_loads_without_pickle_code(tmp_path):
    from benchmark.circuit import Circuit, Group

    run_dir = RunDirectory(tmp_path / "run")
    circuit = Circuit.of({Group.VALUE_FETCHER: [(1, 2)]})
    record, cached = run_dir.run("x", "k", lambda: (circuit, torch.ones(2)), lambda: 0.0)
    assert not cached
    loaded = run_dir.load("x", "k")
    assert loaded.output[0] == circuit and torch.equal(loaded.output[1], torch.ones(2))


@pytest.fixture
def tiny(tmp_path):
    return build_tiny_model("llama", tmp_path / "model")


def test_editing_config_or_tokenizer_changes_the_stage_fingerprint(tiny):
    before = spec_fingerprint(ModelSpec(str(tiny)))
    config = json.loads((tiny / "config.json").read_text())
    (tiny / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    after_config = spec_fingerprint(ModelSpec(str(tiny)))
    tokenizer = tiny / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"<s>"', '"<s>" ', 1))
    after_tokenizer = spec_fingerprint(ModelSpec(str(tiny)))
    assert len({before, after_config, after_tokenizer}) == 3


def test_tokenizers_that_differ_only_in_bos_handling_fail_the_pair_check(tmp_path):
    with_bos = build_tiny_model("llama", tmp_path / "a", tokenizer=build_tokenizer(add_bos=True))
    without = build_tiny_model("llama", tmp_path / "b", tokenizer=build_tokenizer(add_bos=False))
    with pytest.raises(PairMismatchError, match="BOS"):
        check_pair_configs(ModelSpec(str(with_bos)), ModelSpec(str(without)))


def test_pairs_whose_folders_share_names_get_different_run_directories(tmp_path):
    (tmp_path / "a" / "model").mkdir(parents=True)
    (tmp_path / "b" / "model").mkdir(parents=True)
    first = default_run_dir(Pair(ModelSpec(str(tmp_path / "a" / "model")), ModelSpec("x")))
    second = default_run_dir(Pair(ModelSpec(str(tmp_path / "b" / "model")), ModelSpec("x")))
    assert first != second and first.name.startswith("model__x__")


def test_a_second_run_in_the_same_directory_refuses_in_one_line(tmp_path):
    run_dir = RunDirectory(tmp_path / "run")
    with run_dir.lock():
        second = RunDirectory(tmp_path / "run")
        with pytest.raises(RunDirectoryError, match="in use by another etbench score") as error:
            second.lock().__enter__()
        assert "\n" not in str(error.value)
    with run_dir.lock():  # released after the first run
        pass


def test_an_unwritable_run_directory_fails_before_any_stage(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunDirectoryError, match="pass --run-dir") as error:
        RunDirectory(blocker / "run")
    assert isinstance(error.value, BenchmarkError)


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_atomically(path, '{"valid": true}\n')

    def killed(*args):
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, '{"half')
    assert path.read_text() == '{"valid": true}\n'


def test_corrupt_weights_and_a_fake_gguf_are_one_line_errors(tiny, tmp_path):
    from benchmark.models import ModelLoadError, load_model

    weights = tiny / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_model(ModelSpec(str(tiny)))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_model(ModelSpec(str(fake)))


def test_a_zero_batch_size_is_refused_by_the_parser(tiny, capsys):
    from benchmark.cli import main

    with pytest.raises(SystemExit):
        main(["score", "--base", str(tiny), "--finetuned", str(tiny), "--batch-size", "0"])
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_a_one_line_error(tiny, capsys):
    from benchmark.cli import main

    assert main(["score", "--base", str(tiny), "--finetuned", str(tiny), "--device", "cuda"]) == 2
    error = capsys.readouterr().err
    assert "no CUDA device" in error and "Traceback" not in error


# The leaderboard build: a typo'd or broken submissions folder never replaces the board; free text is inert.


def _board(tmp_path: Path) -> tuple[Path, Path]:
    """A submissions folder with one valid result, and a leaderboard built from it."""
    from benchmark.leaderboard import build
    from benchmark.submission import canonical_name, to_json
    from benchmark.submission.synthetic import synthetic_result

    subs, out = tmp_path / "subs", tmp_path / "board"
    subs.mkdir()
    result = synthetic_result()
    (subs / canonical_name(result)).write_text(to_json(result))
    build(subs, out)
    return subs, out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_missing_submissions_folder_is_a_one_line_error_and_keeps_the_board(tmp_path, capsys):
    from benchmark.cli import main

    _, out = _board(tmp_path)
    before = _files(out)
    args = ["leaderboard", "build", "--submissions", str(tmp_path / "typo"), "--out", str(out)]
    for extra in ([], ["--keep-going"]):
        assert main([*args, *extra]) != 0
        error = capsys.readouterr().err
        assert "typo does not exist" in error and error.count("\n") == 1 and "Traceback" not in error
    assert _files(out) == before
    assert b"No submissions yet" not in before["LEADERBOARD.md"]


def test_an_invalid_submission_stops_the_build_unless_keep_going(tmp_path, capsys):
    from benchmark.cli import main

    subs, out = _board(tmp_path)
    valid = next(subs.glob("*.json"))
    broken = json.loads(valid.read_text())
    broken["behaviour"]["base"]["accuracy"] = 1.5
    (subs / "broken.json").write_text(json.dumps(broken))
    before = _files(out)
    args = ["leaderboard", "build", "--submissions", str(subs), "--out", str(out)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "broken.json is invalid" in error and "$.behaviour.base.accuracy" in error
    assert error.count("\n") == 1 and "--keep-going" in error
    assert _files(out) == before
    assert main([*args, "--keep-going"]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped broken.json: $.behaviour.base.accuracy" in captured.err
    assert "1 rows, 1 invalid submissions left out" in captured.out


def test_an_interrupted_leaderboard_build_leaves_every_file_whole(tmp_path, monkeypatch):
    from benchmark.leaderboard import build

    subs, out = _board(tmp_path)
    before = _files(out)
    (out / "LEADERBOARD.md").write_bytes(before["LEADERBOARD.md"] + b"stale\n")  # so a write would show
    before = _files(out)

    def killed(*args):
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        build(subs, out)
    assert _files(out) == before  # no half file, no temporary left behind


def test_markdown_text_leaves_no_syntax():
    from benchmark.leaderboard.escape import markdown_text

    text = markdown_text("[x](http://evil) ![i](y) a|b *b* _u_ `c` <b>h</b>\nnext \\[")
    assert text == (
        r"\[x\]\(http://evil\) \!\[i\]\(y\) a\|b \*b\* \_u\_ \`c\` &lt;b&gt;h&lt;/b&gt; next \\\["
    )


def test_link_and_image_syntax_in_a_submission_never_reaches_the_markdown(tmp_path):
    from benchmark.leaderboard import build
    from benchmark.submission import canonical_name, check, to_json, validate
    from benchmark.submission.integrity import reseal
    from benchmark.submission.synthetic import SyntheticPair, synthetic_result

    result = synthetic_result(
        SyntheticPair(base_id="[x](http://evil)", finetuned_id="org/a|b", finetuned_revision="![i](y)")
    )
    plain = json.loads(to_json(result))
    plain["settings"]["preset"] = "![p](http://evil)\n| injected | row |"
    plain = reseal(plain)
    assert validate(plain) == []
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / canonical_name(check(plain).result)).write_text(json.dumps(plain))
    build(subs, tmp_path / "out")
    board = (tmp_path / "out" / "LEADERBOARD.md").read_text()
    for syntax in ("[x](", "![i](", "![p](", "\n| injected"):
        assert syntax not in board
    assert r"\[x\]\(http://evil\)" in board and r"\!\[i\]\(y\)" in board
    header, rule, row = (line for line in board.splitlines() if line.startswith("|"))
    cells = [line.replace("\\|", "").count("|") for line in (header, rule, row)]
    assert cells[0] == cells[1] == cells[2]


# Sizes: a typo'd size fails at once with its bound, instead of running unbounded.


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "--prompts", "10000000"], "must be at most 100000, got 10000000"),
        (["accuracy", "--model", "smollm2", "--prompts", "10000000"], "must be at most 100000"),
        (["accuracy", "--model", "smollm2", "--batch-size", "1000000"], "must be at most 4096"),
        (["score", "--pair", "organism", "--batch-size", "1000000"], "must be at most 4096"),
    ],
)
def test_sizes_over_their_bound_are_refused_by_the_parser(argv, message, tmp_path, capsys):
    from benchmark.cli import main

    out = ["--out", str(tmp_path / "x.jsonl")] if argv[0] == "data" else []
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *out])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_boxes_out_of_the_task_are_one_line_errors_before_any_model_loads(tmp_path, capsys):
    from benchmark.cli import main

    assert main(["data", "--boxes", "1000000", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "unknown number of boxes: 1000000" in capsys.readouterr().err
    missing = str(tmp_path / "no-model")  # the check comes before the models are looked up
    assert main(["score", "--base", missing, "--finetuned", missing, "--boxes", "1000000"]) == 2
    error = capsys.readouterr().err
    assert "unknown number of boxes: 1000000" in error and error.count("\n") == 1


def test_size_bounds_allow_spec_v1_with_a_margin_and_stop_typos_everywhere(capsys):
    from dataclasses import replace

    from benchmark.cli import build_parser
    from benchmark.data import DatasetError, generate_split
    from benchmark.settings import MAX_BATCH_SIZE, MAX_PROMPTS, PRESETS, check_sizes, preset_settings

    spec = PRESETS["spec-v1"]
    largest = max(spec.dcm.n_train, spec.behaviour.n_prompts, spec.faithfulness.n_reference)
    assert 10 * largest <= MAX_PROMPTS and 10 * spec.batch_size <= MAX_BATCH_SIZE
    check_sizes(replace(spec, dcm=replace(spec.dcm, n_train=10 * spec.dcm.n_train)))
    with pytest.raises(ValueError, match="dcm.n_train is 10000000"):
        preset_settings("spec-v1", dcm={"n_train": 10_000_000})
    with pytest.raises(DatasetError, match=f"1 to {MAX_PROMPTS} prompts"):
        generate_split(7, "test", 10_000_000)
    for command in ("data", "accuracy", "score"):  # each bound is in the --help text
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"1 to {MAX_BATCH_SIZE}" in text if command != "data" else f"1 to {MAX_PROMPTS}" in text


# Adapters: a corrupt or mismatched adapter of either model fails the pair check, before any stage.


@pytest.fixture
def lora(tiny, tmp_path):
    from benchmark.testing import build_tiny_lora

    return build_tiny_lora(tiny, tmp_path / "lora", seed=0)


def _rewrite(adapter: Path, out: Path, change) -> Path:
    """A copy of `adapter` whose tensors are `change(name, tensor)` -> (name, tensor)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, out)
    tensors = load_file(adapter / "adapter_model.safetensors")
    save_file(dict(change(n, t) for n, t in tensors.items()), out / "adapter_model.safetensors")
    return out


def _check_finetuned(tiny: Path, adapter: Path):
    return check_pair_configs(ModelSpec(str(tiny)), ModelSpec(str(tiny), adapters=(str(adapter),)))


def test_a_fitting_adapter_passes_the_pair_check(tiny, lora):
    assert _check_finetuned(tiny, lora).head_shape.n_layers == 3


def test_a_truncated_adapter_fails_the_pair_check_in_one_line(tiny, lora):
    from benchmark.models import AdapterMismatchError

    weights = lora / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(AdapterMismatchError, match="fine-tuned adapter 1 of 1") as error:
        _check_finetuned(tiny, lora)
    message = str(error.value)
    assert str(weights) in message and "truncated" in message and "save the adapter again" in message
    assert "\n" not in message and isinstance(error.value, BenchmarkError)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{not json", "not readable JSON"), ('{"peft_type": "IA3"}', "not a LoRA adapter config")],
)
def test_an_adapter_config_that_is_not_lora_fails_the_pair_check(tiny, lora, text, problem):
    from benchmark.models import AdapterMismatchError

    (lora / "adapter_config.json").write_text(text)
    with pytest.raises(AdapterMismatchError, match=problem) as error:
        _check_finetuned(tiny, lora)
    assert "adapter_config.json" in str(error.value)


def test_an_adapter_for_another_model_shape_fails_the_pair_check(tiny, lora, tmp_path):
    from benchmark.models import AdapterMismatchError

    def wider(name, tensor):
        if "q_proj.lora_A" in name:
            return name, torch.zeros(tensor.shape[0], tensor.shape[1] * 2)
        return name, tensor

    def deeper(name, tensor):
        return name.replace("layers.1.", "layers.7."), tensor

    with pytest.raises(AdapterMismatchError, match=r"q_proj has input size \d+ \(hidden size"):
        _check_finetuned(tiny, _rewrite(lora, tmp_path / "wider", wider))
    with pytest.raises(AdapterMismatchError, match="is for layer 7, the model has 3 layers"):
        _check_finetuned(tiny, _rewrite(lora, tmp_path / "deeper", deeper))
    with pytest.raises(AdapterMismatchError, match="base adapter 1 of 1"):  # the base model's are checked too
        check_pair_configs(ModelSpec(str(tiny), adapters=(str(tmp_path / "wider"),)), ModelSpec(str(tiny)))


def test_a_corrupt_finetuned_adapter_stops_score_before_any_stage(tiny, lora, tmp_path, capsys):
    from benchmark.cli import main

    weights = lora / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    run_dir = tmp_path / "run"
    argv = ["score", "--base", str(tiny), "--finetuned", str(tiny), "--finetuned-adapter", str(lora)]
    assert main([*argv, "--run-dir", str(run_dir), "--device", "cpu", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "fine-tuned adapter 1 of 1" in error and error.count("\n") == 1 and "Traceback" not in error
    assert not list(run_dir.glob("stages/*"))


def test_a_model_without_decoder_blocks_where_its_architecture_keeps_them_is_one_line(tiny):
    """As a multimodal checkpoint (Gemma-3's `Gemma3Model`, blocks under `language_model`) loaded whole."""
    from benchmark.models import ArchitectureAdapter, UnsupportedArchitectureError
    from benchmark.models.loading import load_model

    model = load_model(ModelSpec(str(tiny))).model
    model.model.language_model = model.model.layers
    del model.model.layers
    with pytest.raises(UnsupportedArchitectureError) as raised:
        ArchitectureAdapter(model)
    message = str(raised.value)
    assert "\n" not in message and "has no decoder blocks at 'model.layers'" in message
    assert "load the causal language model (for a multimodal checkpoint, its text model)" in message
