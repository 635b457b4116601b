"""One job of a sweep: score one pair into its run directory, leaving what `etbench sweep status` reads.

The job is the unit both executors run (a local process or a Slurm array task). It holds
`<run dir>/.sweep-job.lock` while it runs, so status can tell a running pair from a dead one on any
machine that sees the folder, and on failure writes `<run dir>/sweep-failure.json` (the error's last line
and the log), which the next attempt removes. A finished pair (`finished`) is never scored again.
"""

from __future__ import annotations

import fcntl
import json
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from benchmark.pipeline.rundir import write_atomically
from benchmark.sweep.file import SweepPair

JOB_LOCK, FAILURE, RESULT = ".sweep-job.lock", "sweep-failure.json", "result.json"


def expected_settings(pair: SweepPair):
    """The settings block the pair's result file must hold (`score_pair` records the placement)."""
    return replace(pair.settings, dtype=pair.base.dtype, device_map=pair.base.device_map)


def finished(pair: SweepPair) -> bool:
    """Whether the pair's result.json exists, validates and was scored with the sweep's settings."""
    from benchmark.submission import check

    path = pair.run_dir / RESULT
    if not path.is_file():
        return False
    checked = check(path)
    return checked.ok and checked.result.settings == expected_settings(pair)


def placed(pair: SweepPair) -> SweepPair:
    """The pair with its device decided on this machine: CUDA when present, unless the file named one."""
    if pair.device is not None or pair.base.device_map is not None:
        return pair
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return replace(
        pair, base=replace(pair.base, device=device), finetuned=replace(pair.finetuned, device=device)
    )


@contextmanager
def holding(run_dir: Path) -> Iterator[bool]:
    """Hold the job lock of a run directory; yields False (holding nothing) if another job holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / JOB_LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_running(run_dir: Path) -> bool:
    """Whether some job holds the run directory's job lock now."""
    if not (run_dir / JOB_LOCK).is_file():
        return False
    with open(run_dir / JOB_LOCK) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def run_pair(pair: SweepPair, log: str | None = None) -> str:
    """Score the pair unless it is finished or running; the result's path (or why it was skipped).

    Raises the scoring error after recording it, so the executor sees the job fail too.
    """
    with holding(pair.run_dir) as held:
        if not held:
            return f"skipped {pair.name}: another job is scoring it"
        failure = pair.run_dir / FAILURE
        failure.unlink(missing_ok=True)
        if finished(pair):
            return str(pair.run_dir / RESULT)
        try:
            from benchmark.pipeline import score_pair

            job = placed(pair)
            scored = score_pair(job.base, job.finetuned, job.settings, job.run_dir, progress=False)
        except BaseException as error:
            write_atomically(failure, json.dumps({"error": last_line(error), "log": log or _log_path()}))
            traceback.print_exc()
            raise
        return str(scored.path)


def last_line(error: BaseException) -> str:
    """`Type: message`, the message cut to its last line (a suite error's message is one line already)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__


def _log_path() -> str | None:
    """The running Slurm task's stderr file (submitit knows it), or None outside submitit."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    import submitit

    return str(submitit.JobEnvironment().paths.stderr)
