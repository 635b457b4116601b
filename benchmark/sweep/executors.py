"""Run a sweep's jobs: locally in at most N processes at once, or as one Slurm job array through submitit.

Both executors run `jobs.run_pair` on each pair that is not done, running or queued (so a rerun after a
kill scores only what is left, resuming each unfinished pair from its run directory's stage cache), and
record each submission for `etbench sweep status`.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.sweep.file import SlurmOptions, Sweep, SweepPair
from benchmark.sweep.jobs import last_line, run_pair
from benchmark.sweep.status import State, Submission, record_submission, sweep_status


class SubmissionFailed(BenchmarkError):
    """sbatch is missing or refused the array (the message is its own error line)."""


@dataclass(frozen=True)
class Plan:
    """Which pairs a run of the sweep submits, and which it leaves alone (done, running or queued)."""

    todo: tuple[SweepPair, ...]
    skipped: tuple[tuple[SweepPair, State], ...]


def plan(sweep: Sweep) -> Plan:
    """Pairs to submit: every pair that is not done, running or waiting in a queue (never twice at once)."""
    todo, skipped = [], []
    for status in sweep_status(sweep):
        if status.state in (State.DONE, State.RUNNING, State.QUEUED):
            skipped.append((status.pair, status.state))
        else:
            todo.append(status.pair)
    return Plan(tuple(todo), tuple(skipped))


def _run_logged(pair: SweepPair, log: str) -> str | None:
    """In a worker process: run the job with stdout and stderr (file descriptors too) in its log file;
    None when it succeeded, else the error's last line."""
    with open(log, "a") as handle:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            os.dup2(handle.fileno(), stream.fileno())
        try:
            run_pair(pair, log)
        except Exception as error:
            return last_line(error)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    return None


def run_local(sweep: Sweep, pairs: tuple[SweepPair, ...], jobs: int, report: Callable[[str], None]) -> int:
    """Score the pairs in at most `jobs` fresh processes at once; the number of pairs that failed."""
    logs = sweep.logs / "local"
    logs.mkdir(parents=True, exist_ok=True)
    job_id = f"{socket.gethostname()}:{os.getpid()}"
    for pair in pairs:
        log = logs / f"{pair.name}.log"
        log.unlink(missing_ok=True)
        record_submission(sweep, pair, Submission("local", job_id, str(log)))
    failed = 0
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1)
    try:
        futures = {pool.submit(_run_logged, pair, str(logs / f"{pair.name}.log")): pair for pair in pairs}
        for future in as_completed(futures):
            pair = futures[future]
            try:
                error = future.result()
            except Exception as crash:  # the worker died (killed, out of memory)
                error = f"the worker process died: {last_line(crash)}"
            failed += error is not None
            report(f"done {pair.name}" if error is None else f"failed {pair.name}: {error}")
    finally:  # interrupted: start no queued pair (running ones stop with the same signal)
        pool.shutdown(wait=True, cancel_futures=True)
    return failed


def sbatch_parameters(options: SlurmOptions) -> dict:
    """submitit's SlurmExecutor parameters for the options; extra sbatch lines become #SBATCH flags."""
    extra = {}
    for line in options.sbatch:
        flag = line.removeprefix("#SBATCH").strip().lstrip("-")
        key, equals, value = flag.partition("=")
        if not equals and " " in key:
            key, value = key.split(None, 1)
        extra[key] = value if equals or value else True
    parameters = {
        "job_name": options.job_name,
        "partition": options.partition,
        "time": options.time_limit,
        "array_parallelism": options.array_parallelism,
        "cpus_per_task": options.cpus_per_job,
        "mem": f"{options.mem_gb}GB" if options.mem_gb else None,
        "gpus_per_node": options.gpus_per_job or None,
        "setup": list(options.setup) or None,
        "additional_parameters": extra or None,
    }
    return {key: value for key, value in parameters.items() if value is not None}


def submit_slurm(sweep: Sweep, pairs: tuple[SweepPair, ...], options: SlurmOptions) -> list[str]:
    """Submit the pairs as one Slurm job array (one task per pair); the array tasks' job ids."""
    import submitit

    folder = Path(sweep.logs) / "slurm"
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    executor.update_parameters(**sbatch_parameters(options))
    try:
        jobs = executor.map_array(run_pair, pairs)
    except FileNotFoundError as error:
        hint = "submit from a Slurm login node, or use --executor local"
        raise SubmissionFailed(f"cannot run {error.filename or 'sbatch'}: {hint}") from error
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as error:
        said = str(error).strip().splitlines() or [type(error).__name__]
        raise SubmissionFailed(f"the Slurm submission failed: {said[-1]}") from error
    for pair, job in zip(pairs, jobs, strict=True):
        record_submission(sweep, pair, Submission("slurm", job.job_id, str(job.paths.stderr)))
    return [job.job_id for job in jobs]
