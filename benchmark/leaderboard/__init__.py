"""The leaderboard: rows from validated results in submissions/, written as Markdown, CSV and a static page.

The code lives in the installed package (so `etbench leaderboard build` works wherever the suite is
installed); its outputs live in the repository's top-level `leaderboard/` folder.
"""

from benchmark.leaderboard.build import (
    CSV,
    MARKDOWN,
    PAGE,
    BuildReport,
    Invalid,
    SubmissionsError,
    build,
    collect,
    render,
)
from benchmark.leaderboard.table import COLUMNS, Column, Entry, pair_key

__all__ = [
    "COLUMNS",
    "CSV",
    "MARKDOWN",
    "PAGE",
    "BuildReport",
    "Column",
    "Entry",
    "Invalid",
    "SubmissionsError",
    "build",
    "collect",
    "pair_key",
    "render",
]
