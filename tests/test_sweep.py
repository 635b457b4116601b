"""`etbench sweep`: a sweep file of tiny pairs run by the local executor (one pair made to fail), status,
reruns that redo no finished pair, collect into a leaderboard, the sbatch script submitit writes, and a
real single-node Slurm cluster on localhost when this machine can run one."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import cannot_run_here, single_node_cluster, wait_for

from benchmark.cli import main
from benchmark.models import ModelSpec
from benchmark.pipeline import score_pair
from benchmark.settings import preset_settings
from benchmark.sweep import State, SweepFileError, load_sweep, sweep_status
from benchmark.sweep.jobs import holding, run_pair
from benchmark.testing import build_tiny_pair

# Smaller than test_pipeline's SMALL: the sweep tests score several pairs in fresh processes.
TINY = dict(
    n_boxes=3,
    behaviour={"n_prompts": 6},
    discovery={"n_prompts": 6, "n_minimality_prompts": 3},
    faithfulness={"n_prompts": 6, "n_reference": 6, "n_random": 1},
    dcm={"n_train": 6, "n_validation": 3, "n_test": 3, "epochs": 1, "batch_size": 3},
    cmap={"n_prompts": 6},
)


def _toml_defaults() -> str:
    """TINY as the sweep file's [defaults] table."""
    table = lambda fields: "{ " + ", ".join(f"{k} = {v}" for k, v in fields.items()) + " }"  # noqa: E731
    stages = [f"{name} = {table(fields)}" for name, fields in TINY.items() if isinstance(fields, dict)]
    return "\n".join(["[defaults]", 'preset = "cpu-small"', f"boxes = {TINY['n_boxes']}", *stages])


def _pair_table(name: str, base: str, finetuned: str) -> str:
    return f'[[pair]]\nname = "{name}"\nbase = "{base}"\nfinetuned = "{finetuned}"\n'


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """`models/base`, a tiny Llama, and `models/finetuned`, a copy whose output projections were nudged,
    in a folder that also holds the tests' sweep folders (which name them `../models/...`)."""
    root = tmp_path_factory.mktemp("sweeps") / "models"
    build_tiny_pair(root)
    return root


def _write_sweep(models: Path, name: str, pairs: list[tuple[str, str, str]], extra: str = "") -> Path:
    """`<models>/../<name>/sweep.toml` (its runs, logs, submissions and leaderboard beside it)."""
    folder = models.parent / name
    folder.mkdir()
    tables = "\n".join(_pair_table(*pair) for pair in pairs)
    path = folder / "sweep.toml"
    path.write_text(f"{extra}\n{_toml_defaults()}\n\n[local]\njobs = 2\n\n{tables}")
    return path


TWO = [
    ("forward", "../models/base", "../models/finetuned"),
    ("reversed", "../models/finetuned", "../models/base"),
]
# The broken pair (no such model) goes first: it fails at once and frees its process for a real pair.
THREE = [("broken", "../models/base", "../models/missing"), *TWO]


@pytest.fixture(scope="module")
def swept(models, tmp_path_factory):
    """The three-pair sweep run once by the local executor: (sweep file, exit code, stdout)."""
    path = _write_sweep(models, "three", THREE)
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        code = main(["sweep", str(path), "--executor", "local", "--jobs", "2"])
    return path, code, stdout.getvalue()


def _states(path: Path) -> dict[str, State]:
    return {status.pair.name: status.state for status in sweep_status(load_sweep(path))}


def _without_run_blocks(path: Path) -> dict:
    data = json.loads(path.read_text())
    return {key: value for key, value in data.items() if key not in ("timing", "hardware", "digest")}


@pytest.mark.slow
def test_the_local_sweep_lands_two_pairs_and_reports_the_failed_one(swept, capsys):
    path, code, stdout = swept
    assert code == 1, stdout
    assert "done forward" in stdout and "done reversed" in stdout
    assert "failed broken: ModelLoadError: " in stdout and "models/missing" in stdout
    assert _states(path) == {"broken": State.FAILED, "forward": State.DONE, "reversed": State.DONE}
    assert main(["sweep", "status", str(path)]) == 1
    out = capsys.readouterr().out
    (broken,) = [line for line in out.splitlines() if line.startswith("broken")]
    log = path.parent / "sweep-logs" / "local" / "broken.log"
    assert "failed" in broken and str(log) in broken and "ModelLoadError: " in broken
    assert "Traceback" in log.read_text()


@pytest.mark.slow
def test_sweep_results_equal_separate_score_runs(swept, models, tmp_path):
    """What `etbench score --base models/X --finetuned models/Y` writes, apart from timing and hardware."""
    path, _, _ = swept
    settings = preset_settings("cpu-small", **TINY)
    for name, base, finetuned in [("forward", "base", "finetuned"), ("reversed", "finetuned", "base")]:
        specs = ModelSpec(str(models / base)), ModelSpec(str(models / finetuned))
        alone = score_pair(*specs, settings, tmp_path / name, progress=False)
        (swept_pair,) = [pair for pair in load_sweep(path).pairs if pair.name == name]
        assert (swept_pair.base, swept_pair.finetuned) == specs
        assert _without_run_blocks(swept_pair.run_dir / "result.json") == _without_run_blocks(alone.path)


def _mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_a_sweep_killed_midway_and_rerun_redoes_no_finished_pair(swept, capsys):
    """forward lost its later stages; a sweep scoring them is killed (SIGKILL to its process group); the
    rerun finishes forward from the stages it has and leaves the finished pair alone."""
    path, _, _ = swept
    _, forward, reversed_ = load_sweep(path).pairs
    (forward.run_dir / "result.json").unlink()
    for stage in [*forward.run_dir.glob("stages/finetuned.*"), *forward.run_dir.glob("stages/cross.*")]:
        stage.unlink()
    kept, done_before = _mtimes(forward.run_dir / "stages"), _mtimes(reversed_.run_dir)
    command = [sys.executable, "-m", "benchmark.cli", "sweep", str(path), "--jobs", "1"]
    sweep = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for(lambda: _states(path)["forward"] == State.RUNNING, 120, "forward to start", [])
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    # the worker dies with its group, a moment after the sweep process: its job lock goes with it
    wait_for(lambda: _states(path)["forward"] != State.RUNNING, 30, "the killed job's lock to go", [])
    (killed,) = [status for status in sweep_status(load_sweep(path)) if status.pair.name == "forward"]
    assert killed.state == State.FAILED and killed.log.endswith("forward.log")

    assert main(["sweep", str(path)]) == 1  # broken fails again
    out = capsys.readouterr().out
    assert "skipped reversed: done" in out and "done forward" in out and "failed broken" in out
    assert _mtimes(reversed_.run_dir) == done_before
    after = _mtimes(forward.run_dir / "stages")
    assert {name: after[name] for name in kept} == kept
    assert _states(path) == {"broken": State.FAILED, "forward": State.DONE, "reversed": State.DONE}


@pytest.mark.slow
def test_collect_submits_the_done_pairs_once_and_twice_changes_nothing(swept, capsys):
    path, _, _ = swept
    folder = path.parent
    assert main(["sweep", "collect", str(path)]) == 1  # broken is not done
    out = capsys.readouterr().out
    assert out.count("\nsubmitted: ") + out.startswith("submitted: ") == 2
    assert "not collected: broken is failed (ModelLoadError: " in out
    csv = (folder / "leaderboard" / "leaderboard.csv").read_text().strip().splitlines()
    assert len(csv) == 3 and len(list((folder / "submissions").glob("*.json"))) == 2
    before = {**_mtimes(folder / "submissions"), **_mtimes(folder / "leaderboard")}
    contents = {
        p: p.read_bytes() for p in [*folder.glob("submissions/*"), *folder.rglob("leaderboard/**/*.*")]
    }

    assert main(["sweep", "collect", str(path)]) == 1
    assert capsys.readouterr().out.count("already submitted: ") == 2
    assert {p: p.read_bytes() for p in contents} == contents
    assert sorted({**_mtimes(folder / "submissions"), **_mtimes(folder / "leaderboard")}) == sorted(before)


def test_a_refused_submission_is_one_line(models, tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n"
    )
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    path = _write_sweep(models, "refused", TWO, extra=SLURM_TABLE)
    assert main(["sweep", str(path), "--executor", "slurm"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(
        "error: the Slurm submission failed: sbatch: error: invalid partition specified: gpu"
    )


def test_a_pair_whose_job_lock_is_held_is_running_and_not_scored_twice(models):
    path = _write_sweep(models, "locked", TWO[:1])
    (pair,) = load_sweep(path).pairs
    with holding(pair.run_dir) as held:
        assert held
        assert _states(path) == {"forward": State.RUNNING}
        assert run_pair(pair) == "skipped forward: another job is scoring it"
    assert _states(path) == {"forward": State.MISSING}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[pair]]\npair = 'organism'\nbse = 'x'", "pair[0].bse: unknown key"),
        ("[[pair]]\npair = 'organism'\ndcm = { n_trian = 3 }", "pair[0] (organism).dcm.n_trian: unknown key"),
        ("[[pair]]\npair = 'organism'\nbase = 'x'", "pair[0].pair: a zoo pair names both models; drop base"),
        ("[[pair]]\npair = 'nope'", "pair[0]: unknown reference pair 'nope'"),
        ("[[pair]]\nbase = 'x'", "pair[0]: name the models with base and finetuned"),
        (
            "[[pair]]\nbase = 'x'\nfinetuned = 'y'\nfinetuned_adapters = 'a'",
            "pair[0].finetuned_adapters: must be",
        ),
        ("[defaults]\nseed = '1'\n[[pair]]\npair = 'organism'", "pair[0].seed: must be a whole number"),
        ("[[pair]]\npair = 'organism'\npreset = 'huge'", "pair[0] (organism): unknown preset 'huge'"),
        ("[[pair]]\npair = 'organism'\n[[pair]]\npair = 'organism'", "pair[1]: same name as pair[0]"),
        ("[slurm]\ntime_limit = '2h'\n[[pair]]\npair = 'organism'", "slurm.time_limit: '2h': write HH:MM:SS"),
        ("[slurm]\npartiton = 'gpu'\n[[pair]]\npair = 'organism'", "slurm.partiton: unknown key"),
        ("[sweep]\nruns = 'r'", "pair: name at least one pair"),
        ("[[pair]\n", "not valid TOML"),
    ],
)
def test_sweep_file_errors_are_one_line_naming_the_key(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SweepFileError, match="^" + str(path)) as raised:
        load_sweep(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert main(["sweep", "status", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"etbench sweep: error: {raised.value}"


def test_the_readme_sweep_file_names_the_zoo_pair_as_etbench_score_does(tmp_path):
    """The README's example parses; its zoo pair has `etbench score --pair organism`'s specs and run dir."""
    from benchmark.pipeline import Pair, default_run_dir
    from benchmark.zoo import get_pair

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Many pairs on a cluster") :]
    text = section[section.index("```toml\n") + 8 : section.index("```", section.index("```toml\n") + 8)]
    (tmp_path / "sweep.toml").write_text(text)
    sweep = load_sweep(tmp_path / "sweep.toml")
    organism, vicuna = sweep.pairs
    specs = get_pair("organism").specs(dtype="bfloat16", device="cpu", device_map=None)
    assert (organism.base, organism.finetuned) == specs
    assert organism.settings == preset_settings("cpu-small")
    assert organism.run_dir == tmp_path / "runs" / default_run_dir(Pair(*specs)).name
    assert vicuna.finetuned.revision == "main" and vicuna.settings.dcm.n_train == 500
    assert (sweep.executor, sweep.slurm.time_limit, sweep.slurm.sbatch[0]) == ("slurm", 240, "--account=lab")


SLURM_TABLE = """[slurm]
partition = "gpu"
gpus_per_job = 1
time_limit = "01:30:00"
array_parallelism = 1
sbatch = ["--qos=high", "#SBATCH --exclusive"]
setup = ["source .venv/bin/activate"]
"""


def test_the_slurm_executor_submits_one_array_with_the_options(models, tmp_path, monkeypatch, capsys):
    """The sbatch script submitit writes, caught by a stand-in `sbatch` on PATH."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {tmp_path}/script.sh\necho "Submitted batch job 4242"\n'
    )
    (fake / "sbatch").chmod(0o755)
    (fake / "squeue").write_text("#!/bin/sh\necho PENDING\n")
    (fake / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    path = _write_sweep(models, "slurm-script", TWO, extra=SLURM_TABLE)

    assert main(["sweep", str(path), "--executor", "slurm", "--mem-gb", "16", "--sbatch=--account=lab"]) == 0
    assert "submitted 2 pairs as Slurm array job 4242" in capsys.readouterr().out
    script = (tmp_path / "script.sh").read_text().splitlines()
    expected = ["--array=0-1%1", "--partition=gpu", "--gpus-per-node=1", "--time=90", "--mem=16GB"]
    expected += ["--qos=high", "--exclusive", "--account=lab", "--job-name=etbench-sweep"]
    assert {f"#SBATCH {flag}" for flag in expected} <= set(script)
    assert "source .venv/bin/activate" in script
    (command,) = [line for line in script if line.startswith("srun ")]
    assert f"{sys.executable} -u -m submitit.core._submit" in command
    statuses = sweep_status(load_sweep(path))
    assert [(s.state, s.job_id) for s in statuses] == [(State.QUEUED, "4242_0"), (State.QUEUED, "4242_1")]
    assert statuses[1].log.endswith("slurm/4242_1_0_log.err")
    (tmp_path / "script.sh").unlink()
    assert main(["sweep", str(path), "--executor", "slurm"]) == 0  # both still queued: not submitted again
    assert "skipped forward: queued" in capsys.readouterr().out and not (tmp_path / "script.sh").exists()


@pytest.fixture
def slurm_cluster(tmp_path, monkeypatch):
    """A one-node Slurm on localhost for one test (skipped with the reason where none can run here)."""
    reason = cannot_run_here()
    if reason:
        pytest.skip(reason)
    with single_node_cluster(tmp_path / "slurm") as cluster:
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster.logs


@pytest.mark.slow
def test_a_two_pair_sweep_runs_as_a_slurm_array_and_collects(slurm_cluster, models, capsys):
    path = _write_sweep(models, "slurm", TWO, extra="[slurm]\npartition = 'debug'\ncpus_per_job = 1\n")
    assert main(["sweep", str(path), "--executor", "slurm", "--time-limit", "10"]) == 0
    assert "submitted 2 pairs as Slurm array job" in capsys.readouterr().out

    def settled():
        states = _states(path)
        return states if all(s in (State.DONE, State.FAILED) for s in states.values()) else None

    states = wait_for(settled, 540, "the array's two tasks to finish", slurm_cluster)
    assert states == {"forward": State.DONE, "reversed": State.DONE}, main(["sweep", "status", str(path)])
    assert main(["sweep", "collect", str(path)]) == 0
    csv = (path.parent / "leaderboard" / "leaderboard.csv").read_text().strip().splitlines()
    assert len(csv) == 3
    assert main(["sweep", str(path), "--executor", "slurm"]) == 0
    assert "nothing to do: every pair is done, running or queued" in capsys.readouterr().out
