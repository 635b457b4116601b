"""The static leaderboard page in headless Chromium: it shows the rows, sorts them, and is screenshotted
into test-artifacts/ (Debian's `chromium`; `.ci/run` installs it, elsewhere these tests skip)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.leaderboard import PAGE, build
from benchmark.submission import canonical_name, to_json
from benchmark.submission.synthetic import SyntheticPair, synthetic_result

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does this)"
)
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with a throwaway profile; its stdout."""
    command = [CHROMIUM, *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A leaderboard of three pairs; returns the page and each row's base accuracy by file name."""
    root = tmp_path_factory.mktemp("browser")
    accuracies = {}
    for seed in (0, 3, 4):
        result = synthetic_result(
            SyntheticPair(base_id=f"org/base-{seed}", finetuned_id=f"org/ft-{seed}", seed=seed)
        )
        name = canonical_name(result)
        (root / "subs").mkdir(exist_ok=True)
        (root / "subs" / name).write_text(to_json(result))
        accuracies[name] = result.behaviour.base.accuracy
    assert len(set(accuracies.values())) == 3, "the test needs distinct accuracies to check an order"
    build(root / "subs", root / "out")
    return root / "out" / PAGE, accuracies


def row_files(dom: str) -> list[str]:
    """The data-file of every table row, in DOM order."""
    body = dom.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<tr data-file="([^"]+)"', body)


def test_the_page_shows_every_row(site, tmp_path):
    page, accuracies = site
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert sorted(row_files(dom)) == sorted(accuracies)
    assert "org/base-4@main -&gt; org/ft-4@main" in dom


@pytest.mark.parametrize("descending", [True, False])
def test_the_page_sorts_by_a_column_on_load(site, tmp_path, descending):
    page, accuracies = site
    order = "desc" if descending else "asc"
    dom = chromium(tmp_path, "--dump-dom", f"{page.as_uri()}#sort=base_acc:{order}")
    expected = sorted(accuracies, key=accuracies.get, reverse=descending)
    assert row_files(dom) == expected
    header = re.search(r'<th [^>]*data-key="base_acc"[^>]*>', dom)[0]
    assert f'aria-sort="{order}ending"' in header


def test_a_screenshot_is_saved_as_a_test_artifact(site, tmp_path):
    page, _ = site
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "leaderboard.png"
    shot.unlink(missing_ok=True)
    url = f"{page.as_uri()}?sort=base_acc:desc"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,900", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
