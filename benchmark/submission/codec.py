"""Dataclasses to plain JSON values and back, guided by the type hints (see `hints`).

`to_json` is canonical: sorted keys, 2-space indent, ASCII, floats written as Python's shortest repr,
a trailing newline. NaN and infinity are refused: a metric that is undefined is written as null.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from typing import TypeVar

from benchmark.errors import BenchmarkError
from benchmark.submission.hints import SCALARS, Kind, Node, node_of, record_fields

T = TypeVar("T")


class FormatError(BenchmarkError, ValueError):
    """A plain value does not fit the result dataclasses (with the JSON path of the first misfit)."""


def to_plain(value: object) -> object:
    """Dataclasses to dicts, tuples to lists, recursively; scalars and None as they are."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise FormatError(f"{value} cannot be written to JSON: write None (null) for an undefined number")
    return value


def to_json(value: object) -> str:
    """The canonical JSON text of a result (or any dataclass of the format)."""
    return json.dumps(to_plain(value), sort_keys=True, indent=2, allow_nan=False) + "\n"


def from_json(text: str, cls: type[T] | None = None) -> T:
    """Parse canonical (or any) JSON text into `cls` (default: `Result`); no meaning checks (see validate)."""
    if cls is None:
        from benchmark.records import Result

        cls = Result
    return from_plain(cls, json.loads(text))


def from_plain(cls: type[T], data: object) -> T:
    """Build `cls` from plain JSON values; raises FormatError naming the JSON path of a misfit."""
    return _decode(node_of(cls), data, "$")


def _fail(path: str, expected: str, data: object) -> FormatError:
    return FormatError(f"{path}: expected {expected}, got {type(data).__name__} {data!r:.60}")


def _decode_scalar(node: Node, data: object, path: str) -> object:
    if node.python is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if type(data) is not node.python:
        raise _fail(path, node.python.__name__, data)
    return data


def _decode(node: Node, data: object, path: str) -> object:
    """One node of the grammar: check the plain value's shape and build the Python value."""
    if node.kind is Kind.SCALAR:
        return _decode_scalar(node, data, path)
    if node.kind is Kind.NONE or (node.kind is Kind.OPTIONAL and data is None):
        if data is not None:
            raise _fail(path, "null", data)
        return None
    if node.kind is Kind.OPTIONAL:
        return _decode(node.items[0], data, path)
    if node.kind is Kind.LITERAL:
        if data not in node.values or type(data) not in SCALARS:
            raise _fail(path, f"one of {list(node.values)}", data)
        return node.values[node.values.index(data)]  # the literal itself (an enum member stays one)
    if node.kind in (Kind.ARRAY, Kind.TUPLE):
        return _decode_sequence(node, data, path)
    if not isinstance(data, dict):
        raise _fail(path, "an object", data)
    if node.kind is Kind.MAPPING:
        if set(data) != set(node.values):
            raise _fail(path, f"exactly the keys {list(node.values)}", list(data))
        return {key: _decode(node.items[0], data[key], f"{path}.{key}") for key in node.values}
    return _decode_record(node.python, data, path)


def _decode_sequence(node: Node, data: object, path: str) -> tuple:
    if not isinstance(data, list):
        raise _fail(path, "an array", data)
    if node.kind is Kind.TUPLE:
        if len(data) != len(node.items):
            raise _fail(path, f"{len(node.items)} items", data)
        return tuple(
            _decode(item, value, f"{path}[{i}]")
            for i, (item, value) in enumerate(zip(node.items, data, strict=True))
        )
    return tuple(_decode(node.items[0], value, f"{path}[{i}]") for i, value in enumerate(data))


def _decode_record(cls: type, data: dict, path: str) -> object:
    fields = record_fields(cls)
    names = {name for name, _ in fields}
    unknown, missing = sorted(set(data) - names), sorted(names - set(data))
    if unknown or missing:
        raise FormatError(f"{path}: {cls.__name__} has unknown fields {unknown} and missing fields {missing}")
    return cls(**{name: _decode(node, data[name], f"{path}.{name}") for name, node in fields})


def walk(value: object, node: Node, path: str = "$") -> Iterator[tuple[str, object, Node]]:
    """Every (JSON path, value, node) of a decoded value, parents before children."""
    yield path, value, node
    if value is None:
        return
    if node.kind is Kind.OPTIONAL:
        yield from walk(value, node.items[0], path)
    elif node.kind is Kind.ARRAY:
        for i, item in enumerate(value):
            yield from walk(item, node.items[0], f"{path}[{i}]")
    elif node.kind is Kind.TUPLE:
        for i, (item, child) in enumerate(zip(value, node.items, strict=True)):
            yield from walk(item, child, f"{path}[{i}]")
    elif node.kind is Kind.MAPPING:
        for key in node.values:
            yield from walk(value[key], node.items[0], f"{path}.{key}")
    elif node.kind is Kind.RECORD:
        for name, child in record_fields(node.python):
            yield from walk(getattr(value, name), child, f"{path}.{name}")
