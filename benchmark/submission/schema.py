"""JSON Schema (draft 2020-12) of the result file, generated from the dataclasses' type hints.

The committed `schema-v{SCHEMA_VERSION}.json` is this generator's output; a test regenerates it, so the
schema and the dataclasses cannot drift. Earlier versions' files (`schema-v1.json`, `schema-v2.json`) are
kept as they were committed: files of that version are validated against them. Every object is closed
(no unknown keys) and every key is required: a stage that did not run is an explicit null.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from functools import cache
from pathlib import Path

from benchmark.kinds import Bounds, Marker, Pattern
from benchmark.records import Result
from benchmark.submission.hints import Kind, Node, node_of, record_fields
from benchmark.submission.kinds import SCHEMA_VERSION

SCHEMA_PATH = Path(__file__).with_name(f"schema-v{SCHEMA_VERSION}.json")
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
_MARKED = {
    Marker.HEAD: ("Head", "An attention head: [layer, head], both counted from 0."),
    Marker.LAYER_HEAD_MATRIX: ("LayerHeadMatrix", "One number per head: an array of layers of heads."),
}


def _constraints(node: Node) -> dict:
    """Bounds and patterns from `Annotated` metadata."""
    schema: dict = {}
    for meta in node.meta:
        if isinstance(meta, Bounds):
            if meta.minimum is not None:
                schema["minimum"] = meta.minimum
            if meta.maximum is not None:
                schema["maximum"] = meta.maximum
        elif isinstance(meta, Pattern):
            schema["pattern"] = meta.regex
    return schema


def _nullable(schema: dict) -> dict:
    """`schema` or null: a type list for scalars, else anyOf."""
    if isinstance(schema.get("type"), str) and "$ref" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _marked(node: Node, marker: Marker, defs: dict) -> dict:
    """A marked type (a head, a [layer][head] array) is defined once under its own name and referenced."""
    name, description = _MARKED[marker]
    if name not in defs:
        bare = dataclasses.replace(node, meta=tuple(m for m in node.meta if m is not marker))
        defs[name] = {"description": description, **_schema(bare, defs)}
    return {"$ref": f"#/$defs/{name}"}


def _schema(node: Node, defs: dict) -> dict:
    """The schema of one node; records and marked types go to `defs` and are referenced."""
    marker = next((meta for meta in node.meta if isinstance(meta, Marker)), None)
    if marker is not None:
        return _marked(node, marker, defs)
    if node.kind is Kind.SCALAR:
        return {"type": _JSON_TYPES[node.python], **_constraints(node)}
    if node.kind is Kind.NONE:
        return {"type": "null"}
    if node.kind is Kind.LITERAL:
        return {"enum": list(node.values)}
    if node.kind is Kind.OPTIONAL:
        return _nullable(_schema(node.items[0], defs))
    if node.kind is Kind.ARRAY:
        return {"type": "array", "items": _schema(node.items[0], defs)}
    if node.kind is Kind.TUPLE:
        items = [_schema(item, defs) for item in node.items]
        return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items)}
    if node.kind is Kind.MAPPING:
        value = _schema(node.items[0], defs)
        return _object({str(key): value for key in node.values})
    _define(node.python, defs)
    return {"$ref": f"#/$defs/{node.python.__name__}"}


def _object(properties: dict, description: str | None = None) -> dict:
    """A closed object with every property required."""
    schema = {"type": "object"}
    if description:
        schema["description"] = description
    return {**schema, "properties": properties, "required": list(properties), "additionalProperties": False}


def _define(cls: type, defs: dict) -> None:
    """Add the object schema of a dataclass to `defs` (once; a name clash is an error)."""
    name = cls.__name__
    if name in defs:
        if defs[name]["description"] != _description(cls):
            raise TypeError(f"two result classes are named {name}")
        return
    defs[name] = {"description": _description(cls)}  # placeholder: stops recursion
    properties = {field: _schema(node, defs) for field, node in record_fields(cls)}
    defs[name] = _object(properties, _description(cls))


def _description(cls: type) -> str:
    return " ".join(inspect.getdoc(cls).split())


@cache
def schema_for(version: str) -> dict:
    """The schema a file of `version` is validated against: generated for the current one, else the
    committed file."""
    if version == SCHEMA_VERSION:
        return result_schema()
    return json.loads(Path(__file__).with_name(f"schema-v{version}.json").read_text(encoding="ascii"))


@cache
def result_schema() -> dict:
    """The JSON Schema of a `Result` file (draft 2020-12)."""
    defs: dict = {}
    root = _schema(node_of(Result), defs)
    return {
        "$schema": _DIALECT,
        "$id": f"https://entity-tracking-bench/schema/result-v{SCHEMA_VERSION}.json",
        "title": f"entity-tracking-bench result, schema version {SCHEMA_VERSION}",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    """The schema as committed: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(result_schema(), sort_keys=True, indent=2) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Regenerate the committed schema file after changing the result dataclasses:
    `python -c "from benchmark.submission import write_schema; write_schema()"`."""
    path.write_text(schema_text(), encoding="ascii")
    return path
