"""Verification records: a submission re-run from what it records, and what the re-run found.

`etbench verify RESULT --record` writes one `Verification` per verified submission into
`submissions/verified/<submission file name>`; the leaderboard marks a row "re-run" only when such a record
exists, names the row's file, carries the row's content digest (so an edited row loses its mark) and
says the numbers agreed. Anything else is "self-reported". CI re-runs the committed rows it can afford
(`tests/test_verify.py`), so their records cannot claim what a re-run does not give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.kinds import NonNegative
from benchmark.submission.codec import FormatError, from_plain, to_json

VERIFIED_DIR = "verified"  # inside the submissions folder


@dataclass(frozen=True)
class Verification:
    """One re-run of a submission: which file and content, by which suite, where, and the verdict."""

    file: str  # the submission's file name
    digest: str  # the 12 hex digits of its name: its content digest
    suite_version: str  # the suite that re-ran it
    verified_at: str  # ISO 8601 with time zone
    device: str  # e.g. "cpu", "cuda"
    device_name: str
    reproduced: bool
    differences: tuple[str, ...]  # JSON paths (with both values) beyond the tolerances; empty if reproduced
    largest_tolerated: NonNegative  # the largest float move inside the tolerances


def verification_path(submissions_dir: str | Path, file: str) -> Path:
    return Path(submissions_dir) / VERIFIED_DIR / file


def write_verification(submissions_dir: str | Path, verification: Verification) -> Path:
    """Write (replace) the record of a submission."""
    path = verification_path(submissions_dir, verification.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(verification), encoding="ascii")
    return path


def read_verification(submissions_dir: str | Path, file: str) -> Verification | None:
    """The record of a submission file, or None when there is none or it does not decode."""
    path = verification_path(submissions_dir, file)
    try:
        return from_plain(Verification, json.loads(path.read_text(encoding="ascii")))
    except (OSError, ValueError, FormatError):
        return None


def status(verification: Verification | None, file: str, digest: str) -> str:
    """How a row is known: "re-run (suite X)" when a matching record reproduced it, else "self-reported"."""
    if verification is None or verification.file != file or verification.digest != digest:
        return "self-reported"
    if not verification.reproduced:
        return f"re-run differs (suite {verification.suite_version})"
    return f"re-run (suite {verification.suite_version})"
