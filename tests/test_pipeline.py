"""`etbench score` on a tiny pair: a valid result, resume after an interruption, determinism, stale stages."""

import json

import pytest

from benchmark.cli import main
from benchmark.models import ModelSpec
from benchmark.pipeline import score_pair
from benchmark.pipeline import stages as score_module
from benchmark.settings import preset_settings
from benchmark.submission import validate
from benchmark.testing import build_tiny_pair

SMALL = dict(
    n_boxes=3,
    behaviour={"n_prompts": 12},
    discovery={"n_prompts": 9, "n_minimality_prompts": 6},
    faithfulness={"n_prompts": 12, "n_reference": 12, "n_random": 2},
    dcm={"n_train": 12, "n_validation": 6, "n_test": 6},
    cmap={"n_prompts": 12},
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny Llama and a copy whose output projections were nudged: (base spec, fine-tuned spec)."""
    base, finetuned = build_tiny_pair(tmp_path_factory.mktemp("pair"))
    return ModelSpec(str(base)), ModelSpec(str(finetuned))


def _score(pair, run_dir, **overrides):
    settings = preset_settings("cpu-small", **{**SMALL, **overrides})
    return score_pair(*pair, settings, run_dir, progress=False)


def _without_timing(path) -> dict:
    data = json.loads(path.read_text())
    data.pop("timing")
    data.pop("digest")  # the content digest covers the timing
    return data


def test_score_writes_a_result_that_validates(pair, tmp_path):
    scored = _score(pair, tmp_path / "run")
    assert scored.path == tmp_path / "run" / "result.json"
    assert validate(scored.path) == []
    assert scored.result.settings.preset == "custom"  # cpu-small with per-stage overrides (SMALL)
    assert {d.role for d in scored.result.datasets} >= {"behaviour", "path_patching", "reference", "cmap"}
    names = {path.name for path in scored.plots}
    assert names == {"base_head_effects.png", "finetuned_head_effects.png", "faithfulness_curves.png"}
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in scored.plots)


def test_an_interrupted_run_resumes_without_redoing_finished_stages(pair, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("killed during DCM")

    monkeypatch.setattr(score_module, "run_dcm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _score(pair, tmp_path / "run")
    finished = sorted(p.name for p in (tmp_path / "run" / "stages").glob("*.pt"))
    assert "base.discovery.pt" in finished and "base.dcm.pt" not in finished
    monkeypatch.undo()

    calls = []
    original = score_module.discover_circuit
    monkeypatch.setattr(
        score_module, "discover_circuit", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    behaviours = []
    original_behaviour = score_module.measure_behaviour
    monkeypatch.setattr(
        score_module, "measure_behaviour", lambda *a, **k: behaviours.append(1) or original_behaviour(*a, **k)
    )
    resumed = _score(pair, tmp_path / "run")
    # Left to run: the fine-tuned model's discovery and both noise-floor discoveries (after DCM).
    assert len(calls) == 3
    assert len(behaviours) == 1, "only the fine-tuned model's behaviour was left to run"
    assert validate(resumed.path) == []


def test_same_inputs_give_the_same_json_except_timing(pair, tmp_path):
    first = _score(pair, tmp_path / "a")
    second = _score(pair, tmp_path / "b")
    assert _without_timing(first.path) == _without_timing(second.path)


def test_a_rerun_reads_every_stage_from_the_run_directory(pair, tmp_path):
    first = _score(pair, tmp_path / "run")
    assert not any(stage.cached for stage in first.outputs.stages)
    again = _score(pair, tmp_path / "run")
    assert [stage.id for stage in again.outputs.stages if not stage.cached] == []
    assert _without_timing(again.path) == _without_timing(first.path)


def test_changing_a_dcm_setting_reruns_dcm_and_not_path_patching(pair, tmp_path):
    _score(pair, tmp_path / "run")
    changed = _score(pair, tmp_path / "run", dcm={**SMALL["dcm"], "epochs": 1})
    rerun = {stage.id for stage in changed.outputs.stages if not stage.cached}
    assert rerun == {"base.dcm", "finetuned.dcm", "cross.dcm_transfer", "cross.dcm_overlap"}


def test_a_stage_whose_settings_changed_reruns(pair, tmp_path, monkeypatch):
    _score(pair, tmp_path / "run")
    calls = []
    original = score_module.discover_circuit
    monkeypatch.setattr(
        score_module, "discover_circuit", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    _score(pair, tmp_path / "run")
    assert calls == []
    _score(pair, tmp_path / "run", seed=1)
    assert len(calls) == 4  # each model's circuit and its noise floor


def test_cli_score_prints_the_row_and_missing_models_are_clear_errors(pair, tmp_path, capsys):
    base, finetuned = pair
    args = [
        "score",
        "--base",
        base.model,
        "--finetuned",
        finetuned.model,
        "--preset",
        "cpu-small",
        "--boxes",
        "3",
    ]
    code = main(
        [*args, "--run-dir", str(tmp_path / "missing"), "--base", str(tmp_path / "nope"), "--no-progress"]
    )
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_default_run_dirs_of_the_zoo_pairs_differ():
    from benchmark.pipeline import Pair, default_run_dir
    from benchmark.zoo import REFERENCE_PAIRS

    dirs = {name: default_run_dir(Pair(*pair.specs())) for name, pair in REFERENCE_PAIRS.items()}
    assert dirs["organism"].name.startswith("smollm2-organism-base__smollm2-organism-finetuned__")
    assert dirs["arithmetic"].name.startswith("smollm2-organism-base__smollm2-arithmetic__")


def test_summary_row_shows_three_decimals_and_dashes():
    from benchmark.cli_score import summary
    from benchmark.submission.synthetic import synthetic_result

    result = synthetic_result()
    text = summary(result, "x.json")
    accuracy = next(line for line in text.splitlines() if line.startswith("| base acc "))
    low, high = next((e.low, e.high) for e in result.uncertainty if e.name == "behaviour.base.accuracy")
    assert accuracy.split("|")[2].strip() == f"{result.behaviour.base.accuracy:.3f} [{low:.3f}, {high:.3f}]"
    assert "| file " in text and "x.json" in text


def test_the_noise_floor_on_the_same_prompts_is_exactly_one(pair, tmp_path):
    """The second discovery given the first one's own prompts (its seed) finds the same circuit."""
    scored = _score(pair, tmp_path / "run", floor_seed=preset_settings("cpu-small").discovery.seed)
    for side in ("base", "finetuned"):
        floor = getattr(scored.result.circuits, f"{side}_floor")
        assert floor.iou.overall == 1.0 and set(floor.iou.groups.values()) == {1.0}
        assert floor.groups == getattr(scored.result.circuits, side).groups
