"""Meaning checks of a result that already fits the schema: what a schema cannot say.

Heads inside the model's shape, effect arrays of the model's shape, breakdowns that add up, dataset hashes
equal to the suite's own regeneration of each split id, timestamps that parse. Each check yields Problems.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from benchmark.data.words import Vocabulary
from benchmark.kinds import Marker
from benchmark.models.identity import ModelRecord
from benchmark.records import Accuracy, DatasetSplit, Result
from benchmark.submission.codec import walk
from benchmark.submission.hints import node_of
from benchmark.submission.kinds import GROUP_NAMES

if TYPE_CHECKING:
    from benchmark.data import Split

SPLIT_ID = re.compile(
    r"^(?P<task>[^/]+)/n(?P<n_boxes>\d+)/(?P<split>[a-z]+)/seed(?P<seed>-?\d+)"
    r"/contexts(?P<contexts>\d+)(?:/words-(?P<digest>[0-9a-f]+))?$"
)

_FORBIDDEN_IN_NAMES = re.compile(r"[<>&\"'`\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a result file: where (a JSON path such as `$.cmap.acc_base`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_shapes(result: Result) -> Iterator[Problem]:
    """Both models share the head geometry, and GQA groups divide the heads."""
    base, finetuned = result.models.base.head_shape, result.models.finetuned.head_shape
    if base != finetuned:
        yield Problem("$.models.finetuned.head_shape", f"differs from the base model's {base}: not a pair")
    for side, shape in (("base", base), ("finetuned", finetuned)):
        if shape.n_heads % shape.n_kv_heads:
            path = f"$.models.{side}.head_shape.n_kv_heads"
            yield Problem(path, f"{shape.n_kv_heads} key-value heads do not divide {shape.n_heads} heads")
    circuits = result.circuits
    if circuits is not None and circuits.kv_group_size != base.n_heads // base.n_kv_heads:
        expected = base.n_heads // base.n_kv_heads
        yield Problem("$.circuits.kv_group_size", f"is {circuits.kv_group_size}, the model's is {expected}")


def _name_fields(model: ModelRecord, path: str) -> Iterator[tuple[str, str | None]]:
    yield f"{path}.id", model.id
    yield f"{path}.revision", model.revision
    yield f"{path}.gguf_file", model.gguf_file
    for i, adapter in enumerate(model.adapters):
        yield f"{path}.adapters[{i}].path", adapter.path
    for i, name in enumerate(model.weight_files):
        yield f"{path}.weight_files[{i}]", name


def check_names(result: Result) -> Iterator[Problem]:
    """Model ids, revisions and file names hold no markup or control characters (no hub id or path does)."""
    for side in ("base", "finetuned"):
        for path, text in _name_fields(getattr(result.models, side), f"$.models.{side}"):
            bad = sorted(set(_FORBIDDEN_IN_NAMES.findall(text or "")))
            if bad:
                yield Problem(
                    path,
                    f"{text!r:.80} contains {bad}: a model id, revision or file name may not hold "
                    "markup (<, >, &, quotes) or control characters",
                )


def check_heads(result: Result) -> Iterator[Problem]:
    """Every [layer, head] and every [layer][head] array lies inside the (base) model's shape."""
    shape = result.models.base.head_shape
    for path, value, node in walk(result, node_of(Result)):
        if value is None:
            continue
        if node.has(Marker.HEAD):
            layer, head = value
            if layer >= shape.n_layers or head >= shape.n_heads:
                yield Problem(
                    path,
                    f"head [{layer}, {head}] is outside the model's shape "
                    f"({shape.n_layers} layers x {shape.n_heads} heads)",
                )
        elif node.has(Marker.LAYER_HEAD_MATRIX):
            widths = sorted({len(row) for row in value})
            if len(value) != shape.n_layers or widths != [shape.n_heads]:
                yield Problem(
                    path,
                    f"array of {len(value)} layers x {widths} heads, the model has "
                    f"{shape.n_layers} x {shape.n_heads}",
                )


def _check_accuracy(accuracy: Accuracy, n_boxes: int, path: str) -> Iterator[Problem]:
    if len(accuracy.per_position) != n_boxes or len(accuracy.n_per_position) != n_boxes:
        yield Problem(f"{path}.per_position", f"needs one entry per box ({n_boxes})")
    elif sum(accuracy.n_per_position) != accuracy.n:
        yield Problem(
            f"{path}.n_per_position", f"adds up to {sum(accuracy.n_per_position)}, not n={accuracy.n}"
        )


def check_breakdowns(result: Result) -> Iterator[Problem]:
    """Per-box accuracies, DCM masks, pruning and CMAP gains are internally consistent."""
    for side in ("base", "finetuned"):
        accuracy = getattr(result.behaviour, side)
        yield from _check_accuracy(accuracy, result.settings.n_boxes, f"$.behaviour.{side}")
    if result.circuits is not None:
        for side in ("base", "finetuned"):
            circuit = getattr(result.circuits, side)
            for group in GROUP_NAMES:
                extra = set(circuit.groups[group]) - set(circuit.selected[group])
                if extra:
                    path = f"$.circuits.{side}.groups.{group}"
                    yield Problem(path, f"heads {sorted(extra)} were never selected (pruning only removes)")
    if result.dcm is not None:
        for side in ("base", "finetuned"):
            for i, mask in enumerate(getattr(result.dcm, side)):
                path = f"$.dcm.{side}[{i}]"
                if len(mask.mask) != len(mask.group_heads):
                    yield Problem(
                        f"{path}.mask", f"{len(mask.mask)} values for {len(mask.group_heads)} heads"
                    )
                if not set(mask.heads) <= set(mask.group_heads):
                    yield Problem(f"{path}.heads", "selects heads that are not in group_heads")
    yield from _check_cmap(result)


def _check_cmap(result: Result) -> Iterator[Problem]:
    if result.cmap is None:
        return
    entries = {"circuit": result.cmap.circuit, **{f"groups.{g}": e for g, e in result.cmap.groups.items()}}
    for name, entry in entries.items():
        if entry is not None and (entry.gain is None) == result.cmap.gain_defined:
            state = "defined" if result.cmap.gain_defined else "undefined"
            yield Problem(
                f"$.cmap.{name}.gain", f"gain_defined says the gain is {state}, but it is {entry.gain}"
            )


def check_timing(result: Result) -> Iterator[Problem]:
    """Timestamps are ISO 8601 with a time zone, and the run ends after it starts."""
    stamps = {}
    for name in ("started_at", "finished_at"):
        text = getattr(result.timing, name)
        try:
            stamps[name] = datetime.fromisoformat(text)
        except ValueError:
            yield Problem(f"$.timing.{name}", f"{text!r} is not an ISO 8601 date and time")
            continue
        if stamps[name].tzinfo is None:
            yield Problem(f"$.timing.{name}", f"{text!r} has no time zone (write e.g. +00:00)")
            del stamps[name]
    if len(stamps) == 2 and stamps["finished_at"] < stamps["started_at"]:
        yield Problem("$.timing.finished_at", "is before started_at")


def check_datasets(result: Result) -> Iterator[Problem]:
    """Every split id parses, and the suite's regeneration of it has the recorded SHA-256 and row count."""
    from benchmark.data import TASK_VERSION

    for i, dataset in enumerate(result.datasets):
        path = f"$.datasets[{i}]"
        match = SPLIT_ID.match(dataset.split_id)
        if match is None or match["task"] != TASK_VERSION:
            yield Problem(f"{path}.split_id", f"{dataset.split_id!r} is not a {TASK_VERSION} split id")
            continue
        if match["digest"] is not None and match["digest"] != _words_digest(result.vocabulary):
            yield Problem(
                f"{path}.split_id",
                f"its word list words-{match['digest']} is not the recorded vocabulary "
                f"(words-{_words_digest(result.vocabulary)})",
            )
            continue
        split = regenerated_split(dataset.split_id, result.vocabulary)
        if isinstance(split, str):
            yield Problem(f"{path}.split_id", f"the suite cannot regenerate this split: {split}")
            continue
        yield from _compare_split(dataset, split, path)


def _words_digest(vocabulary: Vocabulary) -> str:
    from benchmark.data.boxes import words_digest

    return words_digest(vocabulary.objects, vocabulary.labels)


@lru_cache(maxsize=32)
def regenerated_split(split_id: str, vocabulary: Vocabulary) -> Split | str | None:
    """The split of an id (from the recorded words if the id names a word list); why not, as text; None
    when the id does not parse. Cached: several checks read the same splits."""
    from benchmark.data import DatasetError, generate_split

    match = SPLIT_ID.match(split_id)
    if match is None:
        return None
    n_boxes, contexts = int(match["n_boxes"]), int(match["contexts"])
    words = (vocabulary.objects, vocabulary.labels) if match["digest"] else ()
    try:
        return generate_split(n_boxes, match["split"], contexts * n_boxes, int(match["seed"]), *words)
    except DatasetError as error:
        return str(error)


def _compare_split(dataset: DatasetSplit, split: Split, path: str) -> Iterator[Problem]:
    if split.sha256 != dataset.sha256:
        yield Problem(
            f"{path}.sha256",
            f"{dataset.sha256} is not the SHA-256 of split {dataset.split_id} "
            f"as this suite generates it ({split.sha256})",
        )
    if dataset.n_rows != len(split.examples):
        yield Problem(f"{path}.n_rows", f"is {dataset.n_rows}, the split has {len(split.examples)} rows")
    if dataset.n_used > dataset.n_rows:
        yield Problem(f"{path}.n_used", f"{dataset.n_used} rows used of a split of {dataset.n_rows}")


MEANING_CHECKS = (check_names, check_shapes, check_heads, check_breakdowns, check_timing, check_datasets)
