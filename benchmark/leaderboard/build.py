"""Build the leaderboard (Markdown, CSV, static page) from the result files in submissions/.

Each file is validated. A missing submissions folder or an invalid file stops the build before anything
is written (`SubmissionsError`, naming the file and its first problem with its JSON path), so a typo'd
folder never replaces the board; with `keep_going` invalid files are reported and left out instead. Rows
come only from the files, so a rebuild never loses a valid row, and the same files always give the same
bytes. Each output file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.atomic import write_atomically
from benchmark.errors import BenchmarkError
from benchmark.leaderboard.page import page
from benchmark.leaderboard.table import DUPLICATE, Entry, csv_text, entries, markdown
from benchmark.submission import Checked, Problem, check
from benchmark.submission.files import check_file_name
from benchmark.submission.verified import read_verification

MARKDOWN, CSV, PAGE = "LEADERBOARD.md", "leaderboard.csv", "site/index.html"


class SubmissionsError(BenchmarkError):
    """The submissions folder is missing, or holds an invalid file (and the build was not told to skip it)."""


@dataclass(frozen=True)
class Invalid:
    """A submission file left out of the leaderboard, and why."""

    file: str
    problems: tuple[Problem, ...]

    def first_problem(self) -> str:
        """The first problem (JSON path and reason) on one line, with how many more there are."""
        more = len(self.problems) - 1
        return str(self.problems[0]).replace("\n", " ") + (f" (and {more} more)" if more else "")


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
    folder = Path(submissions_dir)
    if not folder.is_dir():
        raise SubmissionsError(
            f"the submissions folder {folder} does not exist: pass --submissions with the folder of result "
            "files (the leaderboard was left as it is)"
        )
    valid, invalid = [], []
    for path in sorted(folder.glob("*.json")):
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


def build(
    submissions_dir: str | Path = "submissions", out_dir: str | Path = "leaderboard", keep_going: bool = False
) -> BuildReport:
    """Validate the submissions and (re)write LEADERBOARD.md, leaderboard.csv and site/index.html.

    Raises SubmissionsError, writing nothing, when the folder is missing or (unless `keep_going`, which
    leaves invalid files out and reports them) when a file in it is invalid.
    """
    rows, invalid = collect(submissions_dir)
    if invalid and not keep_going:
        others = f" ({len(invalid) - 1} more invalid files)" if len(invalid) > 1 else ""
        raise SubmissionsError(
            f"{Path(submissions_dir) / invalid[0].file} is invalid{others}: {invalid[0].first_problem()}; "
            "fix or remove it (etbench validate lists every problem) or pass --keep-going to build without "
            "it (the leaderboard was left as it is)"
        )
    written = []
    for relative, text in render(rows).items():
        path = Path(out_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
        written.append(path)
    return BuildReport(rows, invalid, tuple(written))
