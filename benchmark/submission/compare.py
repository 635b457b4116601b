"""Do two results hold the same numbers? Everything but where and when they ran must agree.

`etbench score` uses this to say whether a run reproduces a committed submission of the same pair.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

RUN_SPECIFIC = ("hardware", "timing")  # top-level blocks that describe the run, not its numbers


def comparable(result: dict) -> dict:
    """A plain result without its run-specific blocks and without adapter paths (they depend on the
    checkout; the adapters' hashes stay)."""
    plain = {key: value for key, value in result.items() if key not in RUN_SPECIFIC}
    plain["models"] = {
        side: {**model, "adapters": [{k: v for k, v in a.items() if k != "path"} for a in model["adapters"]]}
        for side, model in result["models"].items()
    }
    return plain


def differences(a: dict, b: dict, rel_tol: float = 1e-6) -> list[str]:
    """JSON paths where two plain results differ in their numbers (floats within `rel_tol` are equal)."""
    return _diff(comparable(a), comparable(b), rel_tol, "$")


def _diff(a, b, rel_tol: float, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for key in sorted(set(a) | set(b))
            for d in _diff(a.get(key), b.get(key), rel_tol, f"{path}.{key}")
        ]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} vs {len(b)})"]
        return [
            d for i, pair in enumerate(zip(a, b, strict=True)) for d in _diff(*pair, rel_tol, f"{path}[{i}]")
        ]
    if isinstance(a, float) or isinstance(b, float):
        same = isinstance(a, int | float) and isinstance(b, int | float) and _close(a, b, rel_tol)
        return [] if same else [f"{path} ({a} vs {b})"]
    return [] if a == b else [f"{path} ({a!r} vs {b!r})"]


def _close(a: float, b: float, rel_tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def same_inputs(a: dict, b: dict) -> bool:
    """Same suite version, settings, datasets and weights (adapters included): the numbers should agree."""
    keys = ("suite", "settings", "datasets")
    return all(a.get(k) == b.get(k) for k in keys) and _weights(a) == _weights(b)


def _weights(result: dict) -> list:
    models = result["models"].values()
    return [(m["weights_sha256"], [a["weights_sha256"] for a in m["adapters"]]) for m in models]


def committed_matches(result: dict, submissions_dir: str | Path) -> Iterator[tuple[Path, list[str]]]:
    """Each submission scored from the same inputs as `result`, with the paths where its numbers differ."""
    for path in sorted(Path(submissions_dir).glob("*.json")):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(other, dict) and isinstance(other.get("models"), dict) and same_inputs(result, other):
            yield path, differences(result, other)
