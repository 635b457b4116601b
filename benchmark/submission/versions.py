"""Files of earlier schema versions: read as the current records, written back exactly as they were.

Each schema version only adds fields, and every added field admits null, so both directions are generic:
- `upgrade` fills every record field an older file lacks with null (what "not measured then" means);
- `downgrade` keeps only the keys an older version's committed schema has.
A schema-1 or schema-2 file therefore decodes into today's `Result`, keeps its digest (computed over the
file as that version writes it) and is written back byte for byte. Adding a schema version needs no code
here: freeze the old `schema-v{N}.json` and add fields that admit null.
"""

from __future__ import annotations

from dataclasses import replace

from benchmark.records import Result
from benchmark.submission.codec import to_json, to_plain
from benchmark.submission.hints import Kind, Node, node_of, record_fields
from benchmark.submission.kinds import SCHEMA_VERSION
from benchmark.submission.schema import schema_for


def upgrade(data: dict) -> dict:
    """A parsed file of any known schema version with the fields of later versions present as null."""
    if data.get("suite", {}).get("schema_version") == SCHEMA_VERSION:
        return data
    return _fill(data, node_of(Result))


def _fill(value: object, node: Node) -> object:
    if value is None:
        return None
    if node.kind is Kind.OPTIONAL:
        return _fill(value, node.items[0])
    if node.kind is Kind.ARRAY and isinstance(value, list):
        return [_fill(item, node.items[0]) for item in value]
    if node.kind is Kind.TUPLE and isinstance(value, list):
        return [_fill(item, child) for item, child in zip(value, node.items, strict=False)]
    if node.kind is Kind.MAPPING and isinstance(value, dict):
        return {key: _fill(item, node.items[0]) for key, item in value.items()}
    if node.kind is Kind.RECORD and isinstance(value, dict):
        filled = dict(value)
        for name, child in record_fields(node.python):
            if name in filled:
                filled[name] = _fill(filled[name], child)
            elif child.kind is Kind.OPTIONAL:
                filled[name] = None
        return filled
    return value


def downgrade(plain: dict, version: str = "1") -> dict:
    """`plain` (a result as the current records write it) as a file of schema `version` holds it."""
    schema = schema_for(version)
    return _prune(plain, schema, schema)


def _prune(value: object, schema: dict, root: dict) -> object:
    if value is None:
        return None
    if "anyOf" in schema:
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        return {key: _prune(item, properties[key], root) for key, item in value.items() if key in properties}
    if isinstance(value, list) and "prefixItems" in schema:
        return [_prune(item, s, root) for item, s in zip(value, schema["prefixItems"], strict=False)]
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(item, schema["items"], root) for item in value]
    return value


def as_written(result: Result) -> dict:
    """The plain JSON of `result` as a file of its own schema version holds it."""
    plain = to_plain(result)
    version = result.suite.schema_version
    return plain if version == SCHEMA_VERSION else downgrade(plain, version)


def written_text(result: Result) -> str:
    """The canonical text of `result` as a file of its schema version holds it."""
    return to_json(as_written(result))


def unsealed_text(result: Result) -> str:
    """What a result's digest is the SHA-256 of: its written text with `digest` null."""
    return written_text(replace(result, digest=None))
