"""Build the leaderboard (Markdown, CSV, static page) from the result files in submissions/.

Each file is validated; an invalid one is reported and left out, never fatal. Rows come only from the
files, so a rebuild never loses a valid row, and the same files always give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.leaderboard.page import page
from benchmark.leaderboard.table import DUPLICATE, Entry, csv_text, entries, markdown
from benchmark.submission import Checked, Problem, check
from benchmark.submission.files import check_file_name
from benchmark.submission.verified import read_verification

MARKDOWN, CSV, PAGE = "LEADERBOARD.md", "leaderboard.csv", "site/index.html"


@dataclass(frozen=True)
class Invalid:
    """A submission file left out of the leaderboard, and why."""

    file: str
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class BuildReport:
    """What a build read and wrote."""

    rows: tuple[Entry, ...]
    invalid: tuple[Invalid, ...]
    written: tuple[Path, ...]

    @property
    def duplicates(self) -> tuple[str, ...]:
        """Files whose pair of models (ids, revisions) occurs in more than one submission."""
        return tuple(row.file for row in self.rows if row.values["flag"] == DUPLICATE)


def collect(submissions_dir: str | Path) -> tuple[tuple[Entry, ...], tuple[Invalid, ...]]:
    """Validate every `*.json` of the folder (sorted by name), and that each has its canonical name (which
    carries its content digest): rows of the valid ones, problems of the others."""
    valid, invalid = [], []
    for path in sorted(Path(submissions_dir).glob("*.json")):
        checked = check(path)
        if checked.ok:
            checked = Checked(checked.result, tuple(check_file_name(path.name, checked.result)))
        if checked.ok:
            valid.append((path.name, checked.result))
        else:
            invalid.append(Invalid(path.name, checked.problems))
    verifications = {name: read_verification(submissions_dir, name) for name, _ in valid}
    return entries(valid, {name: v for name, v in verifications.items() if v is not None}), tuple(invalid)


def render(rows: tuple[Entry, ...]) -> dict[str, str]:
    """The text of every output file, by path relative to the leaderboard folder."""
    return {MARKDOWN: markdown(rows), CSV: csv_text(rows), PAGE: page(rows)}


def build(submissions_dir: str | Path = "submissions", out_dir: str | Path = "leaderboard") -> BuildReport:
    """Validate the submissions and (re)write LEADERBOARD.md, leaderboard.csv and site/index.html."""
    rows, invalid = collect(submissions_dir)
    written = []
    for relative, text in render(rows).items():
        path = Path(out_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return BuildReport(rows, invalid, tuple(written))
