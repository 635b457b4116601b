"""Where each pair of a sweep stands, read from the files (run directories and the sweep's logs; `squeue`
only for a Slurm job that left no other trace), so `etbench sweep status` works the same for local and
Slurm jobs and from any machine that sees the folders.

Submitting a job records it in `<logs>/jobs/<name>.json` (executor, job id, log file). A pair is then
done (a valid result with the sweep's settings), running (its job lock is held), failed (the job wrote
its error, or its log exists but the job is gone: killed by Slurm, out of memory), queued (recorded, no
log yet, by the executor's account) or missing (never submitted, its sweep process gone before the job
started, or its result scored with settings the file no longer has).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from benchmark.pipeline.rundir import write_atomically
from benchmark.sweep.file import Sweep, SweepPair
from benchmark.sweep.jobs import FAILURE, RESULT, finished, is_running


class State(StrEnum):
    DONE = "done"
    RUNNING = "running"
    FAILED = "failed"
    QUEUED = "queued"
    MISSING = "missing"


@dataclass(frozen=True)
class Submission:
    """How a pair's latest job was submitted: by which executor, its id, and the file its errors go to."""

    executor: str
    job_id: str
    log: str


@dataclass(frozen=True)
class PairStatus:
    """One pair's state; `error` is the last line of its failure, `log` where to read the rest."""

    pair: SweepPair
    state: State
    log: str | None = None
    error: str | None = None
    job_id: str | None = None

    @property
    def result(self) -> Path:
        return self.pair.run_dir / RESULT


def _record_path(sweep: Sweep, pair: SweepPair) -> Path:
    return sweep.logs / "jobs" / f"{pair.name}.json"


def record_submission(sweep: Sweep, pair: SweepPair, submission: Submission) -> None:
    """Remember the pair's new job (replacing an earlier attempt's record and failure)."""
    path = _record_path(sweep, pair)
    path.parent.mkdir(parents=True, exist_ok=True)
    (pair.run_dir / FAILURE).unlink(missing_ok=True)
    write_atomically(path, json.dumps(submission.__dict__, indent=1))


def submission_of(sweep: Sweep, pair: SweepPair) -> Submission | None:
    """The pair's latest recorded job, if any."""
    path = _record_path(sweep, pair)
    try:
        return Submission(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def last_log_line(log: Path) -> str:
    """The log's last non-empty line (where Slurm and Python put the reason a job ended)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def pair_status(sweep: Sweep, pair: SweepPair) -> PairStatus:
    """The pair's state from its run directory and its recorded submission."""
    submission = submission_of(sweep, pair)
    job = {"job_id": submission.job_id, "log": submission.log} if submission else {}
    if finished(pair):
        return PairStatus(pair, State.DONE, **job)
    if is_running(pair.run_dir):
        return PairStatus(pair, State.RUNNING, **job)
    if (pair.run_dir / RESULT).is_file():
        stale = "its result.json has other settings or does not validate: run the sweep again"
        return PairStatus(pair, State.MISSING, error=stale, **job)
    failure = pair.run_dir / FAILURE
    if failure.is_file():
        written = json.loads(failure.read_text())
        log = written.get("log") or job.get("log")
        return PairStatus(pair, State.FAILED, log, written["error"], job.get("job_id"))
    if submission is None:
        return PairStatus(pair, State.MISSING)
    alive = _alive(submission)
    if alive not in (None, _GONE):
        return PairStatus(pair, alive, **job)
    if Path(submission.log).is_file():
        error = last_log_line(Path(submission.log)) or "the job ended without a result"
        return PairStatus(pair, State.FAILED, error=error, **job)
    return PairStatus(pair, State.MISSING if alive is _GONE else State.QUEUED, **job)


_GONE = "gone"  # the executor says the job no longer exists


def _alive(submission: Submission) -> State | str | None:
    """Queued or running by the executor's account, `_GONE`, or None when it cannot be asked.

    A local job waits while the `etbench sweep` process that queued it lives (job id `host:pid`) and its
    worker has not opened its log; once the log exists a job that holds no lock has ended. A Slurm job is
    asked of `squeue` (a task starting up holds no lock yet, but its log already exists).
    """
    if submission.executor == "local":
        host, _, pid = submission.job_id.partition(":")
        if Path(submission.log).is_file():
            return _GONE
        if host != socket.gethostname() or not pid.isdigit():
            return None
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return _GONE
        except PermissionError:
            pass
        return State.QUEUED
    command = ["squeue", "--noheader", "--format=%T", "--jobs", submission.job_id]
    try:
        asked = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    states = asked.stdout.split()
    if states:
        return State.QUEUED if states[0] == "PENDING" else State.RUNNING
    return _GONE if asked.returncode == 0 or "Invalid job id" in asked.stderr else None


def sweep_status(sweep: Sweep) -> list[PairStatus]:
    """Every pair's state, in file order."""
    return [pair_status(sweep, pair) for pair in sweep.pairs]
