"""The small type grammar a result file is written in, read from the dataclasses' type hints.

The JSON codec, the JSON Schema generator and the meaning checks all walk these nodes, so the file format
has one definition: the dataclasses in `benchmark.records` (and the settings and identity records they hold).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

SCALARS: tuple[type, ...] = (bool, int, float, str)


class Kind(StrEnum):
    """The shapes a type hint can take in a result file."""

    SCALAR = "scalar"
    NONE = "none"
    LITERAL = "literal"
    OPTIONAL = "optional"  # items[0] or null
    ARRAY = "array"  # tuple[T, ...]
    TUPLE = "tuple"  # tuple[A, B]: fixed length
    MAPPING = "mapping"  # dict[Literal[...], T]: exactly one entry per literal key
    RECORD = "record"  # a dataclass


@dataclass(frozen=True)
class Node:
    """One type hint, parsed: its kind, Python type, child nodes, literal values and metadata."""

    kind: Kind
    python: type | None = None  # the scalar type or the dataclass
    items: tuple[Node, ...] = ()
    values: tuple[object, ...] = ()  # literal values, or a mapping's keys
    meta: tuple[object, ...] = ()

    def has(self, marker: object) -> bool:
        return marker in self.meta


@cache
def node_of(hint: object) -> Node:
    """Parse a type hint of the result grammar; anything outside it is a TypeError (caught by the tests)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        inner = node_of(args[0])
        return dataclasses.replace(inner, meta=inner.meta + tuple(args[1:]))
    if hint is type(None):
        return Node(Kind.NONE)
    if hint in SCALARS:
        return Node(Kind.SCALAR, python=hint)
    if origin is typing.Literal:
        return Node(Kind.LITERAL, values=tuple(args))
    if isinstance(hint, type) and issubclass(hint, StrEnum):  # written as its members' values
        return Node(Kind.LITERAL, values=tuple(hint))
    if origin in (types.UnionType, typing.Union):
        present = [arg for arg in args if arg is not type(None)]
        if len(present) != 1 or len(args) != 2:
            raise TypeError(f"only `X | None` unions are supported, got {hint}")
        return Node(Kind.OPTIONAL, items=(node_of(present[0]),))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return Node(Kind.ARRAY, items=(node_of(args[0]),))
        return Node(Kind.TUPLE, items=tuple(node_of(arg) for arg in args))
    if origin is dict:
        keys = node_of(args[0])
        if keys.kind is not Kind.LITERAL:
            raise TypeError(f"mapping keys must be a Literal, got {args[0]}")
        return Node(Kind.MAPPING, items=(node_of(args[1]),), values=keys.values)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return Node(Kind.RECORD, python=hint)
    raise TypeError(f"unsupported type in a result: {hint!r}")


@cache
def record_fields(cls: type) -> tuple[tuple[str, Node], ...]:
    """(name, node) of every field of a dataclass, in definition order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((field.name, node_of(hints[field.name])) for field in dataclasses.fields(cls))
