"""The sweep file (TOML): the pairs to score, each with the fields of `etbench score`, and how to run them.

    [sweep]                  # folders, relative to this file (these are the defaults)
    runs = "runs"            # each pair's run directory goes here, named as `etbench score` names it
    logs = "<file stem>-logs"
    submissions = "submissions"
    leaderboard = "leaderboard"

    [defaults]               # any pair field, for every pair that does not set it
    preset = "cpu-small"

    [slurm]                  # see `SlurmOptions`; `[local] jobs = N` bounds the local executor
    partition = "gpu"

    [[pair]]
    pair = "organism"        # a zoo pair, or base / finetuned (+ _revision, _gguf_file, _adapters)
    seed = 1
    dcm = { n_train = 64 }   # stage overrides: behaviour, discovery, faithfulness, dcm, cmap

Local paths are relative to the file's folder (a name that is no path there, and does not start with ".",
stays a hub id). Every error
is one line naming the file and the offending key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.models import ModelSpec
from benchmark.pipeline import Pair, default_run_dir
from benchmark.settings import ScoreSettings, preset_settings
from benchmark.zoo.pairs import get_pair, shown_path

SIDES = ("base", "finetuned")
MODEL_FIELDS = tuple(f"{side}{suffix}" for side in SIDES for suffix in ("", "_revision", "_gguf_file"))
ADAPTER_FIELDS = tuple(f"{side}_adapters" for side in SIDES)
STAGE_FIELDS = tuple(f.name for f in dataclasses.fields(ScoreSettings) if dataclasses.is_dataclass(f.default))
COMMON_FIELDS = ("dtype", "device", "device_map", "preset", "boxes", "seed", "batch_size")
PAIR_FIELDS = ("name", "pair", "run_dir", *MODEL_FIELDS, *ADAPTER_FIELDS, *COMMON_FIELDS, *STAGE_FIELDS)


class SweepFileError(BenchmarkError):
    """A sweep file that cannot be read or names something wrong (one line: file, key, what to do)."""


@dataclass(frozen=True)
class SweepPair:
    """One job of the sweep: the two models, the settings and the run directory `etbench score` would use.

    `device` None means: CUDA when the machine that runs the job has it, else the CPU (as `etbench score`);
    the specs then say "cpu" until the job places them (`jobs.placed`).
    """

    name: str
    base: ModelSpec
    finetuned: ModelSpec
    settings: ScoreSettings
    run_dir: Path
    device: str | None = None


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks Slurm for; `sbatch` lines (`--account=lab`) are passed through as given."""

    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    mem_gb: int | None = None
    time_limit: int = 60  # minutes ("HH:MM:SS" in the file)
    array_parallelism: int = 32  # array tasks running at once
    job_name: str = "etbench-sweep"
    sbatch: tuple[str, ...] = ()  # extra sbatch options
    setup: tuple[str, ...] = ()  # shell lines run before each task (module load, source a venv)


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file."""

    path: Path
    pairs: tuple[SweepPair, ...]
    logs: Path
    submissions: Path
    leaderboard: Path
    jobs: int = 1  # local executor: pairs scored at once
    executor: str = "local"
    slurm: SlurmOptions = SlurmOptions()


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; every pair's specs and settings are built (not its models loaded)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise SweepFileError(f"cannot read the sweep file {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise SweepFileError(f"{path}: not valid TOML: {error}") from error
    fail = lambda key, message: SweepFileError(f"{path}: {key}: {message}")  # noqa: E731
    _only(data, ("sweep", "defaults", "local", "slurm", "pair", "executor"), "", fail)
    folders = _table(data, "sweep", fail)
    _only(folders, ("runs", "logs", "submissions", "leaderboard"), "sweep.", fail)
    here = lambda key, default: Path(shown_path(path.parent / folders.get(key, default)))  # noqa: E731
    entries = data.get("pair", [])
    if not isinstance(entries, list) or not entries:
        raise fail("pair", "name at least one pair with a [[pair]] table")
    defaults = _table(data, "defaults", fail)
    _only(defaults, [k for k in PAIR_FIELDS if k not in ("name", "run_dir")], "defaults.", fail)
    runs = here("runs", "runs")
    pairs = tuple(
        _pair(path.parent, runs, {**defaults, **_table(entries, i, fail)}, i, fail)
        for i in range(len(entries))
    )
    _check_unique(pairs, fail)
    executor = data.get("executor", "local")
    if executor not in ("local", "slurm"):
        raise fail("executor", f"{executor!r} is not an executor; choose local or slurm")
    local = _table(data, "local", fail)
    _only(local, ("jobs",), "local.", fail)
    return Sweep(
        path,
        pairs,
        here("logs", f"{path.stem}-logs"),
        here("submissions", "submissions"),
        here("leaderboard", "leaderboard"),
        jobs=_positive(local.get("jobs", 1), "local.jobs", fail),
        executor=executor,
        slurm=_slurm(_table(data, "slurm", fail), fail),
    )


def _table(data, key, fail) -> dict:
    """`data[key]` (a table, or {} when absent)."""
    value = data.get(key, {}) if isinstance(data, dict) else data[key]
    if not isinstance(value, dict):
        raise fail(key if isinstance(key, str) else f"pair[{key}]", "must be a table")
    return value


def _only(table: dict, allowed, prefix: str, fail) -> None:
    """Fail on the first key of `table` that is not `allowed`."""
    for key in table:
        if key not in allowed:
            raise fail(f"{prefix}{key}", f"unknown key; choose from {', '.join(sorted(allowed))}")


def _positive(value, key: str, fail) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail(key, f"must be a whole number of at least 1, got {value!r}")
    return value


def _local(folder: Path, text: str) -> str:
    """A relative path (one that exists in the sweep file's folder, or starts with ".") taken from that
    folder and shown relative to the working directory, as `etbench score` records it; anything else (a
    hub id, an alias, an absolute path) as written."""
    candidate = Path(os.path.normpath(folder / text))  # "../models/a" without the "..", links kept
    relative = not Path(text).is_absolute() and (text.startswith(".") or candidate.exists())
    return shown_path(candidate) if relative else text


def _specs(folder: Path, entry: dict, key: str, fail) -> tuple[ModelSpec, ModelSpec]:
    """The two model specs from `pair = NAME` or from base / finetuned (exactly one way)."""
    placement = {"dtype": entry.get("dtype", "float32"), "device": entry.get("device") or "cpu"}
    placement["device_map"] = entry.get("device_map")
    explicit = [k for k in (*MODEL_FIELDS, *ADAPTER_FIELDS) if entry.get(k)]
    try:
        if "pair" in entry:
            if explicit:
                raise fail(f"{key}.pair", f"a zoo pair names both models; drop {', '.join(explicit)}")
            return get_pair(entry["pair"]).specs(**placement)
        if not (entry.get("base") and entry.get("finetuned")):
            raise fail(key, "name the models with base and finetuned, or a zoo pair with pair")
        return tuple(
            ModelSpec(
                _local(folder, entry[side]),
                revision=entry.get(f"{side}_revision"),
                gguf_file=entry.get(f"{side}_gguf_file"),
                adapters=tuple(_local(folder, a) for a in entry.get(f"{side}_adapters", [])),
                **placement,
            )
            for side in SIDES
        )
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise fail(key, str(error)) from error


def _settings(entry: dict, key: str, fail) -> ScoreSettings:
    """The preset with the pair's boxes, seed, batch size and stage overrides."""
    stages = {name: entry[name] for name in STAGE_FIELDS if name in entry}
    for name, fields in stages.items():
        if not isinstance(fields, dict):
            raise fail(f"{key}.{name}", "must be a table of settings, e.g. { n_prompts = 35 }")
        known = {f.name for f in dataclasses.fields(type(getattr(ScoreSettings(), name)))}
        _only(fields, known, f"{key}.{name}.", fail)
    common = {"n_boxes": entry.get("boxes"), "seed": entry.get("seed"), "batch_size": entry.get("batch_size")}
    try:
        return preset_settings(entry.get("preset", "spec-v1"), **common, **stages)
    except (ValueError, TypeError) as error:
        raise fail(key, str(error)) from error


_WHOLE_NUMBERS = ("boxes", "seed", "batch_size")


def _check_types(entry: dict, key: str, fail) -> None:
    """Adapters are lists of paths, boxes / seed / batch size whole numbers, every other scalar a string."""
    for name, value in entry.items():
        if name in ADAPTER_FIELDS:
            ok, want = isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of paths"
        elif name in _WHOLE_NUMBERS:
            ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif name in STAGE_FIELDS:
            continue  # checked field by field with the settings
        else:
            ok, want = isinstance(value, str), "a string"
        if not ok:
            raise fail(f"{key}.{name}", f"must be {want}, got {value!r}")


def _pair(folder: Path, runs: Path, entry: dict, index: int, fail) -> SweepPair:
    """One [[pair]] table (the defaults merged in) as a job."""
    key = f"pair[{index}]"
    _only(entry, PAIR_FIELDS, f"{key}.", fail)
    _check_types(entry, key, fail)
    base, finetuned = _specs(folder, entry, key, fail)
    default = default_run_dir(Pair(base, finetuned)).name
    name = str(entry.get("name") or entry.get("pair") or default)
    run_dir = Path(shown_path(folder / entry["run_dir"])) if entry.get("run_dir") else runs / default
    settings = _settings(entry, f"{key} ({name})", fail)
    return SweepPair(name, base, finetuned, settings, run_dir, entry.get("device"))


def _check_unique(pairs: tuple[SweepPair, ...], fail) -> None:
    """Two jobs may share neither a name (logs, status) nor a run directory (stage cache, lock)."""
    for attribute in ("name", "run_dir"):
        seen: dict = {}
        for i, pair in enumerate(pairs):
            value = getattr(pair, attribute)
            if value in seen:
                hint = "set name" if attribute == "name" else "set run_dir on one of them"
                raise fail(f"pair[{i}]", f"same {attribute} as pair[{seen[value]}] ({value}); {hint}")
            seen[value] = i


def _minutes(value, fail) -> int:
    """Slurm's time limit in minutes, from a number of minutes or "HH:MM:SS"."""
    if isinstance(value, str):
        try:
            hours, minutes, seconds = (int(part) for part in value.split(":"))
        except ValueError:
            raise fail("slurm.time_limit", f"{value!r}: write HH:MM:SS or a number of minutes") from None
        return max(1, hours * 60 + minutes + (seconds + 59) // 60)
    return _positive(value, "slurm.time_limit", fail)


def _slurm(table: dict[str, Any], fail) -> SlurmOptions:
    """The [slurm] table as options (checked key by key)."""
    known = {f.name for f in dataclasses.fields(SlurmOptions)}
    _only(table, known, "slurm.", fail)
    options = dict(table)
    if "time_limit" in options:
        options["time_limit"] = _minutes(options["time_limit"], fail)
    for key in ("sbatch", "setup"):
        lines = options.get(key, ())
        if not isinstance(lines, list | tuple) or not all(isinstance(line, str) for line in lines):
            raise fail(f"slurm.{key}", 'must be a list of strings, e.g. ["--account=lab"]')
        options[key] = tuple(lines)
    for key in ("cpus_per_job", "mem_gb", "array_parallelism"):
        if key in options:
            _positive(options[key], f"slurm.{key}", fail)
    if not isinstance(options.get("gpus_per_job", 0), int) or options.get("gpus_per_job", 0) < 0:
        raise fail("slurm.gpus_per_job", f"must be a whole number, got {options['gpus_per_job']!r}")
    return SlurmOptions(**options)
