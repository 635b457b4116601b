"""Does a run reproduce a committed result of the same inputs? Each field is compared as its kind allows.

Head sets, counts, hashes, settings and every accuracy (and what is computed from accuracies only:
faithfulness, IoU, CMAP gains, curve areas) must be equal. The floats of continuous measurements (path-
patching effects and their standard errors, the minimality metric, DCM masks) may move by a few 1e-6
between machines: a CPU with another vector instruction set (AVX2 vs AVX-512) runs other matrix kernels,
which round differently, and learned DCM masks inherit that through training. They are equal within
`FLOAT_TOLERANCE`. `etbench score` uses this to end with a line that says whether it reproduced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RUN_SPECIFIC = (
    "hardware",
    "timing",
    "digest",
)  # what describes the run (the digest covers both), not numbers
FLOAT_TOLERANCE = 1e-4  # absolute; the largest move seen between machines was 1.4e-5


@dataclass(frozen=True)
class Tolerance:
    """Floats whose JSON path (list indices dropped, "*" any key) matches `keys` may differ by `absolute`."""

    keys: tuple[str, ...]
    absolute: float
    what: str

    def matches(self, keys: tuple[str, ...]) -> bool:
        """Whether a float at `keys` (a path's dict keys, outermost first) falls under this tolerance."""
        if len(keys) != len(self.keys):
            return False
        return all(pattern in ("*", key) for pattern, key in zip(self.keys, keys, strict=True))


def _logit_tolerances() -> Iterator[Tolerance]:
    """Logit differences and what is computed from them (f, CPR, CMD), in every faithfulness block."""
    paths = (
        ("*", "own", "logit_diffs"), ("*", "own", "logit_diff"), ("*", "own", "normalized"),
        ("*", "full_logit_diffs"), ("*", "empty_logit_diffs"), ("*", "random", "normalized_draws"),
        ("*", "random", "normalized_mean"), ("*", "curve", "points", "normalized"), ("*", "curve", "cpr"),
        ("*", "curve", "cmd"), ("*", "logit_diffs"), ("*", "logit_diff"), ("*", "normalized"),
        *(("*", "diagnostics", "*", key) for key in ("logit_diffs", "logit_diff", "normalized")),
    )  # fmt: skip
    for block in ("faithfulness", "other_ablations"):
        for path in paths:
            yield Tolerance((block, *path), FLOAT_TOLERANCE, "logit differences and f")


TOLERANCES: tuple[Tolerance, ...] = (
    Tolerance(("circuits", "*", "stages", "mean"), FLOAT_TOLERANCE, "path-patching effects"),
    Tolerance(("circuits", "*", "stages", "stderr"), FLOAT_TOLERANCE, "their standard errors"),
    Tolerance(("circuits", "*", "minimality_metric"), FLOAT_TOLERANCE, "minimality metrics"),
    Tolerance(("dcm", "*", "mask"), FLOAT_TOLERANCE, "DCM masks"),
    *_logit_tolerances(),
    # Intervals of f move with f; those of accuracies cannot (their outcomes must agree exactly).
    *(Tolerance(("uncertainty", end), FLOAT_TOLERANCE, "intervals of f") for end in ("value", "low", "high")),
)


def tolerance_text() -> str:
    """The rule in words, as the reproduction line prints it."""
    tolerant = ", ".join(dict.fromkeys(t.what for t in TOLERANCES))
    return f"{tolerant} within {FLOAT_TOLERANCE:g}, every other value exact"


@dataclass(frozen=True)
class Comparison:
    """What differs between two results beyond the tolerances, and the largest float move inside them."""

    differences: tuple[str, ...]
    largest_tolerated: float

    @property
    def same(self) -> bool:
        """Nothing differs beyond the tolerances."""
        return not self.differences


def comparable(result: dict) -> dict:
    """A plain result without its run-specific blocks, its file format's version (a schema-4 run reproduces
    a schema-3 file: a key one lacks compares as null) and adapter paths (they depend on the checkout; the
    adapters' hashes stay)."""
    plain = {key: value for key, value in result.items() if key not in RUN_SPECIFIC}
    plain["suite"] = {key: value for key, value in result.get("suite", {}).items() if key != "schema_version"}
    plain["models"] = {
        side: {**model, "adapters": [{k: v for k, v in a.items() if k != "path"} for a in model["adapters"]]}
        for side, model in result["models"].items()
    }
    return plain


def compare(a: dict, b: dict) -> Comparison:
    """Compare two plain results field by field (see the module's docstring for the rules)."""
    found: list[str] = []
    tolerated: list[float] = [0.0]
    _walk(comparable(a), comparable(b), "$", (), found, tolerated)
    return Comparison(tuple(found), max(tolerated))


def differences(a: dict, b: dict) -> list[str]:
    """JSON paths (with both values) where two plain results differ beyond the tolerances."""
    return list(compare(a, b).differences)


def _walk(a, b, path: str, keys: tuple[str, ...], found: list[str], tolerated: list[float]) -> None:
    """Append to `found` every difference under `path`; `tolerated` collects the float moves allowed."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _walk(a.get(key), b.get(key), f"{path}.{key}", (*keys, key), found, tolerated)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            found.append(f"{path} (length {len(a)} vs {len(b)})")
            return
        for i, pair in enumerate(zip(a, b, strict=True)):
            _walk(*pair, f"{path}[{i}]", keys, found, tolerated)
    elif _numbers(a, b) and (isinstance(a, float) or isinstance(b, float)):
        move = abs(a - b)  # results hold no NaN (undefined numbers are null)
        limit = next((t.absolute for t in TOLERANCES if t.matches(keys)), 0.0)
        if move > limit:
            found.append(f"{path} ({a} vs {b})")
        else:
            tolerated.append(move)
    elif a != b:
        found.append(f"{path} ({a!r} vs {b!r})")


def _numbers(a, b) -> bool:
    """Both are JSON numbers (a bool is not one, though Python says it is an int)."""
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))


def same_inputs(a: dict, b: dict) -> bool:
    """Same suite version, settings, datasets and weights (adapters included): the numbers should agree.
    Files of two schema versions can: a setting only the later one has must be null (its default) there."""
    found: list[str] = []
    plain_a, plain_b = comparable(a), comparable(b)
    for key in ("suite", "settings", "datasets"):
        _walk(plain_a[key], plain_b[key], key, ("inputs",), found, [])
    return not found and _weights(a) == _weights(b)


def _weights(result: dict) -> list:
    models = result["models"].values()
    return [(m["weights_sha256"], [a["weights_sha256"] for a in m["adapters"]]) for m in models]


def committed_matches(result: dict, submissions_dir: str | Path) -> Iterator[tuple[Path, Comparison]]:
    """Each submission scored from the same inputs as `result`, compared with it."""
    for path in sorted(Path(submissions_dir).glob("*.json")):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(other, dict) and isinstance(other.get("models"), dict) and same_inputs(result, other):
            yield path, compare(result, other)


def reproduction_report(result: dict, submissions_dir: str | Path, shown: int = 10) -> tuple[str, bool]:
    """The lines `etbench score` ends with, and whether every matching submission was reproduced.

    The verdict comes last, so it is the last line the user sees; no matching submission is no failure."""
    lines, ok = [], True
    for path, comparison in committed_matches(result, submissions_dir):
        if comparison.same:
            largest = f"largest float move {comparison.largest_tolerated:.1e}"
            lines.append(f"reproduces {path}: same numbers ({tolerance_text()}; {largest})")
            continue
        ok = False
        n = len(comparison.differences)
        lines += [f"  {line}" for line in comparison.differences[:shown]]
        count = "1 value differs" if n == 1 else f"{n} values differ"
        more = f" ({n - shown} not shown)" if n > shown else ""
        lines.append(f"does not reproduce {path}: {count}{more} (rule: {tolerance_text()})")
    if not lines:
        lines.append(f"nothing to reproduce: no submission in {submissions_dir} has the same inputs")
    return "\n".join(lines), ok
