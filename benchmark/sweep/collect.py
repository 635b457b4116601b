"""Merge a sweep into the leaderboard: submit every finished result, then rebuild the leaderboard once.

Idempotent: a result already in submissions/ is left as it is (`submit` compares canonical text), and the
rebuild writes the same bytes from the same files, so collecting twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.leaderboard import BuildReport, build
from benchmark.submission import Submitted, submit
from benchmark.sweep.file import Sweep
from benchmark.sweep.status import PairStatus, State, sweep_status


@dataclass(frozen=True)
class Collected:
    """What a collect submitted, what it could not (every pair that is not done), and the rebuild."""

    submitted: tuple[tuple[PairStatus, Submitted], ...]
    left_out: tuple[PairStatus, ...]
    board: BuildReport


def collect(sweep: Sweep) -> Collected:
    """Validate and submit each done pair's result into the sweep's submissions folder, rebuild once."""
    submitted, left_out = [], []
    for status in sweep_status(sweep):
        if status.state is State.DONE:
            submitted.append((status, submit(status.result, sweep.submissions)))
        else:
            left_out.append(status)
    sweep.submissions.mkdir(parents=True, exist_ok=True)  # the sweep's own folder, even before a pair is done
    board = build(sweep.submissions, sweep.leaderboard, keep_going=True)  # invalid files are warned about
    return Collected(tuple(submitted), tuple(left_out), board)
