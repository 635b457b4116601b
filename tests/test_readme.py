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
