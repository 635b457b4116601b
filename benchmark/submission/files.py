"""Canonical submission file names, and `submit`: validate a result and copy it into submissions/."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.models.identity import ModelRecord
from benchmark.records import Result
from benchmark.submission.checks import Problem
from benchmark.submission.validate import check
from benchmark.submission.versions import written_text

_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_MAX_SLUG = 60


class SubmissionError(BenchmarkError, ValueError):
    """A result that cannot be submitted, with every problem found."""

    def __init__(self, source: Path, problems: tuple[Problem, ...]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source} is not a valid result ({len(problems)} problems):\n{lines}")


def slug(text: str) -> str:
    """Lower-case letters, digits, '.', '_' and '-' only, at most 60 characters, never empty or dotted."""
    cleaned = _UNSAFE.sub("-", text.lower()).strip("-._")[:_MAX_SLUG].strip("-._")
    return cleaned or "model"


def model_slug(model: ModelRecord) -> str:
    """A model's id, GGUF file and last adapter as one safe slug."""
    parts = [model.id.rsplit("/", 1)[-1] if "/" in model.id else model.id]
    if model.gguf_file:
        parts.append(Path(model.gguf_file).stem)
    if model.adapters:
        parts.append(model.adapters[-1].name)
    return slug("-".join(parts))


def name_digest(result: Result) -> str:
    """The 12 hex digits a canonical file name carries: the content digest's (schema 2), or those of the
    whole canonical JSON's SHA-256 for a schema-1 file (which has no digest)."""
    if result.digest is not None:
        return result.digest[:12]
    return hashlib.sha256(canonical_text(result).encode()).hexdigest()[:12]


def canonical_text(result: Result) -> str:
    """The canonical JSON of a result as a file of its schema version holds it."""
    return written_text(result)


def canonical_name(result: Result) -> str:
    """`{base}__{finetuned}__{name_digest}.json`: safe characters only."""
    return (
        f"{model_slug(result.models.base)}__{model_slug(result.models.finetuned)}__{name_digest(result)}.json"
    )


def check_file_name(name: str, result: Result) -> Iterator[Problem]:
    """A file in a submissions folder has its canonical name, so its digest is that of its content."""
    expected = canonical_name(result)
    if name != expected:
        yield Problem("$", f"file name {name} is not the canonical {expected} (edited, or renamed by hand?)")


@dataclass(frozen=True)
class Submitted:
    """Where a submitted result was written, and whether the same file was already there."""

    path: Path
    already_present: bool


def submit(source: str | Path, submissions_dir: str | Path) -> Submitted:
    """Validate `source` and write it, canonically formatted, into `submissions_dir` under its canonical name.

    Raises SubmissionError listing every problem. Rebuilding the leaderboard is the caller's next step.
    """
    checked = check(source)
    if not checked.ok:
        raise SubmissionError(Path(source), checked.problems)
    text = canonical_text(checked.result)
    target = Path(submissions_dir) / canonical_name(checked.result)
    if target.is_file() and target.read_text(encoding="ascii") == text:
        return Submitted(target, already_present=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="ascii")
    return Submitted(target, already_present=False)
