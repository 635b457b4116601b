"""Validate a result file: JSON syntax, known versions, the schema, then the meaning checks.

Every problem is reported with its JSON path; later layers run only when the earlier ones pass (meaning
checks need the structure the schema guarantees).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator, ValidationError

from benchmark.records import Result
from benchmark.submission.checks import MEANING_CHECKS, Problem
from benchmark.submission.codec import FormatError, from_plain
from benchmark.submission.integrity import INTEGRITY_CHECKS
from benchmark.submission.kinds import KNOWN_METRIC_VERSIONS, KNOWN_SCHEMA_VERSIONS, SUITE_NAME
from benchmark.submission.recomputed import RECOMPUTED_CHECKS
from benchmark.submission.schema import schema_for
from benchmark.submission.versions import downgrade, upgrade  # noqa: F401  (re-exported)

CHECKS = (*MEANING_CHECKS, *INTEGRITY_CHECKS, *RECOMPUTED_CHECKS)

SIDES = ("base", "finetuned")
_MAX_SHOWN = 80  # characters of an offending value shown in a message


@dataclass(frozen=True)
class Checked:
    """A validated file: the decoded result (None unless it fits the schema) and every problem found."""

    result: Result | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def json_path(parts) -> str:
    """`$.a.b[3]` from a sequence of keys and indices."""
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse(text: str) -> tuple[object | None, list[Problem]]:
    """Parse JSON text; a syntax error says where, and whether the file simply ends too early."""
    try:
        return json.loads(text), []
    except json.JSONDecodeError as error:
        if not text.strip():
            return None, [Problem("$", "the file is empty")]
        where = f"{error.msg}: line {error.lineno} column {error.colno}"
        if error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string"):
            ends = f"the file ends in the middle of the JSON ({where})"
            return None, [Problem("$", f"{ends}: it is truncated")]
        return None, [Problem("$", f"not valid JSON ({where})")]


def read(source: str | Path) -> tuple[object | None, list[Problem]]:
    """Read and parse a file; unreadable or non-UTF-8 files are problems, not exceptions."""
    try:
        return parse(Path(source).read_bytes().decode("utf-8"))
    except OSError as error:
        return None, [Problem("$", f"cannot read {source}: {error.strerror or error}")]
    except UnicodeDecodeError as error:
        return None, [Problem("$", f"not UTF-8 text (byte {error.start}): a result file is JSON")]


def check_versions(data: object) -> list[Problem]:
    """The suite, schema and metric versions this code can interpret; a wrong schema version stops here."""
    suite = data.get("suite") if isinstance(data, dict) else None
    if not isinstance(suite, dict):
        return [Problem("$.suite", "missing: a result must say which suite and versions produced it")]
    problems = []
    if suite.get("name") != SUITE_NAME:
        problems.append(Problem("$.suite.name", f"is {suite.get('name')!r}, expected {SUITE_NAME!r}"))
    for key, known in (("schema_version", KNOWN_SCHEMA_VERSIONS), ("metric_version", KNOWN_METRIC_VERSIONS)):
        if suite.get(key) not in known:
            problems.append(
                Problem(
                    f"$.suite.{key}",
                    f"unknown {key.replace('_', ' ')} {suite.get(key)!r}; known: {list(known)}",
                )
            )
    return problems


def check_numbers(data: object, path: str = "$") -> list[Problem]:
    """NaN and infinity (which Python's json reads and writes, but JSON does not allow) anywhere."""
    if isinstance(data, float) and not math.isfinite(data):
        return [Problem(path, f"{data} is not a JSON number: write null for an undefined value")]
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in check_numbers(value, f"{path}.{key}")]
    if isinstance(data, list):
        return [p for i, value in enumerate(data) for p in check_numbers(value, f"{path}[{i}]")]
    return []


@cache
def _validator(version: str) -> Draft202012Validator:
    return Draft202012Validator(schema_for(version))


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """The errors under an anyOf (X or null) that say what is wrong with X, not that it is not null."""
    if error.validator == "anyOf" and error.context:
        for sub in error.context:
            if not (sub.validator == "type" and sub.validator_value == "null"):
                yield from _leaves(sub)
    else:
        yield error


def check_schema(data: object) -> list[Problem]:
    """Every schema error (against the schema of the file's version), with the JSON path of the value."""
    problems = []
    for error in _validator(data["suite"]["schema_version"]).iter_errors(data):
        for leaf in _leaves(error):
            message = leaf.message
            if len(message) > 2 * _MAX_SHOWN:
                message = message[: 2 * _MAX_SHOWN] + "..."
            problems.append(Problem(json_path(leaf.absolute_path), message))
    return sorted(set(problems), key=lambda p: (p.path, p.message))


def check(source: str | Path | Mapping) -> Checked:
    """Validate a file (path) or an already-parsed dict, and decode it when it fits the schema."""
    if isinstance(source, Mapping):
        data, problems = dict(source), []
    else:
        data, problems = read(source)
    if problems:
        return Checked(None, tuple(problems))
    problems = check_versions(data)
    if any(p.path == "$.suite" or p.path == "$.suite.schema_version" for p in problems):
        return Checked(None, tuple(problems))
    problems += check_numbers(data) + check_schema(data)
    if problems and any(p.path != "$.suite.metric_version" for p in problems):
        return Checked(None, tuple(problems))
    try:
        result = from_plain(Result, upgrade(data))
    except FormatError as error:  # the schema should have caught it: say so rather than crash
        return Checked(None, (*problems, Problem("$", f"does not decode: {error}")))
    for meaning_check in CHECKS:
        problems += list(meaning_check(result))
    return Checked(result, tuple(problems))


def validate(source: str | Path | Mapping) -> list[Problem]:
    """Every problem of a result file or dict; an empty list means it is valid."""
    return list(check(source).problems)
