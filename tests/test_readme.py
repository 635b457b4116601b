"""The README's two commands stay runnable as written: CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .*)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command_verbatim():
    main_job, tests = _readme_commands()
    assert main_job.endswith("etbench score --pair organism --preset cpu-small")
    assert tests.endswith("python -m pytest -q")
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_main_command_has_a_committed_submission_to_reproduce():
    import json

    from benchmark.zoo import get_pair

    main_job, _ = _readme_commands()
    pair, preset = re.search(r"--pair (\S+) --preset (\S+)", main_job).groups()
    base, finetuned = get_pair(pair).specs()
    want = [[Path(a).name for a in spec.adapters] for spec in (base, finetuned)]
    names = lambda model: [Path(adapter["path"]).name for adapter in model["adapters"]]  # noqa: E731
    committed = [json.loads(path.read_text()) for path in (ROOT / "submissions").glob("*.json")]
    found = [
        result
        for result in committed
        if result["settings"]["preset"] == preset
        and [names(result["models"]["base"]), names(result["models"]["finetuned"])] == want
    ]
    assert len(found) == 1, f"expected one committed {pair} / {preset} submission, found {len(found)}"


def _help_texts(parser) -> list[str]:
    """The help of a parser and of every subcommand under it."""
    import argparse

    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts += [text for sub in action.choices.values() for text in _help_texts(sub)]
    return texts


def test_docs_and_help_stand_alone_without_files_outside_the_repository():
    """Users get the README, docs/ and `--help`: none may send them to a file they do not have."""
    from benchmark.cli import build_parser

    pages = {path.name: path.read_text() for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    pages |= {f"help {i}": text for i, text in enumerate(_help_texts(build_parser()))}
    assert len(pages) > 10
    assert [name for name, text in pages.items() if "SPEC" in text] == []
    linked = re.findall(r"\]\(([^)#]+)\)", pages["README.md"] + pages["metrics.md"])
    assert all((ROOT / link).exists() or (ROOT / "docs" / link).exists() for link in linked), linked
