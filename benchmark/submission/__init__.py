"""The result file of a scored pair: its dataclasses, JSON codec, generated schema, validation and submission.

Importing this package is cheap (no torch); validating dataset hashes imports `benchmark.data` on first use.
"""

from benchmark.records import Result
from benchmark.submission.checks import Problem
from benchmark.submission.codec import FormatError, from_json, from_plain, to_json, to_plain
from benchmark.submission.files import SubmissionError, Submitted, canonical_name, submit
from benchmark.submission.kinds import (
    KNOWN_METRIC_VERSIONS,
    KNOWN_SCHEMA_VERSIONS,
    METRIC_VERSION,
    SCHEMA_VERSION,
    SUITE_NAME,
)
from benchmark.submission.schema import SCHEMA_PATH, result_schema, schema_text, write_schema
from benchmark.submission.validate import Checked, check, validate

__all__ = [
    "KNOWN_METRIC_VERSIONS",
    "KNOWN_SCHEMA_VERSIONS",
    "METRIC_VERSION",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "SUITE_NAME",
    "Checked",
    "FormatError",
    "Problem",
    "Result",
    "SubmissionError",
    "Submitted",
    "canonical_name",
    "check",
    "from_json",
    "from_plain",
    "result_schema",
    "schema_text",
    "submit",
    "to_json",
    "to_plain",
    "validate",
    "write_schema",
]
