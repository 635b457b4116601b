"""The boxes task, version 1 (SPEC section 2): contexts, prompts, and seeded splits with disjoint contexts.

A context is n (object, label) pairs; each context is queried at each of its n boxes, so a split is a
sequence of blocks of n rows. The split a context belongs to is a function of the context itself (a hash
bucket), so train, validation and test never share a context, whatever the seeds.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from benchmark.data.words import LABELS, OBJECTS
from benchmark.errors import BenchmarkError
from benchmark.settings import MAX_PROMPTS

TASK_VERSION = "boxes-v1"
SUPPORTED_BOXES: tuple[int, ...] = (3, 5, 7)
DEFAULT_BOXES = 7
SPLITS: tuple[str, ...] = ("train", "validation", "test")
# A context's split is sha256(context key) mod 10, bucketed 6 / 2 / 2.
_SPLIT_BUCKETS = {"train": range(0, 6), "validation": range(6, 8), "test": range(8, 10)}
_MAX_DRAWS_PER_CONTEXT = 1000


class DatasetError(BenchmarkError, ValueError):
    """Bad input to the data layer (unknown box count, unknown split, too few words...)."""


def check_boxes(n_boxes: int) -> int:
    """Return `n_boxes` if the task defines it, else raise a DatasetError that lists the choices."""
    if n_boxes not in SUPPORTED_BOXES:
        raise DatasetError(
            f"unknown number of boxes: {n_boxes}; the boxes task v1 defines {list(SUPPORTED_BOXES)} "
            f"(default {DEFAULT_BOXES})"
        )
    return n_boxes


def check_split(split: str) -> str:
    """Return `split` if it is one of train / validation / test, else raise a DatasetError."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    return split


@dataclass(frozen=True)
class Context:
    """n boxes: `objects[i]` is in box `labels[i]`."""

    objects: tuple[str, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.objects) != len(self.labels):
            raise DatasetError(f"{len(self.objects)} objects but {len(self.labels)} labels")
        if len(set(self.objects)) != len(self.objects) or len(set(self.labels)) != len(self.labels):
            raise DatasetError(f"objects and labels of a context must be distinct: {self}")

    @property
    def n_boxes(self) -> int:
        return len(self.objects)

    @property
    def key(self) -> str:
        """Canonical text of the context, used for hashing and disjointness."""
        return "|".join(f"{o}:{label}" for o, label in zip(self.objects, self.labels, strict=True))

    @property
    def split(self) -> str:
        """The split this context belongs to (a pure function of the context)."""
        bucket = int(hashlib.sha256(self.key.encode()).hexdigest()[:8], 16) % 10
        return next(name for name, buckets in _SPLIT_BUCKETS.items() if bucket in buckets)


@dataclass(frozen=True)
class RenderedPrompt:
    """Prompt text and the character span of every word the position finder needs."""

    text: str
    object_spans: tuple[tuple[int, int], ...]
    label_spans: tuple[tuple[int, int], ...]
    query_label_span: tuple[int, int]


def render(context: Context, query_index: int, query_label: str | None = None) -> RenderedPrompt:
    """Render "The apple is in Box F, the ... in Box D. Box F contains the" with word spans.

    `query_label` overrides the queried label (mean-ablation reference prompts query a label not there).
    """
    text, object_spans, label_spans = "", [], []
    for i, (obj, label) in enumerate(zip(context.objects, context.labels, strict=True)):
        text += "The " if i == 0 else ", the "
        object_spans.append((len(text), len(text) + len(obj)))
        text += obj + " is in Box "
        label_spans.append((len(text), len(text) + len(label)))
        text += label
    text += ". Box "
    query_label = query_label or context.labels[query_index]
    query_label_span = (len(text), len(text) + len(query_label))
    text += query_label + " contains the"
    return RenderedPrompt(text, tuple(object_spans), tuple(label_spans), query_label_span)


@dataclass(frozen=True)
class Example:
    """One row: a context queried at box `query_index`; the answer is the object there."""

    context: Context
    query_index: int

    @property
    def n_boxes(self) -> int:
        return self.context.n_boxes

    @cached_property
    def rendered(self) -> RenderedPrompt:
        return render(self.context, self.query_index)

    @property
    def prompt(self) -> str:
        return self.rendered.text

    @property
    def answer(self) -> str:
        """The continuation scored: the queried object with its leading space."""
        return " " + self.context.objects[self.query_index]

    @property
    def query_label(self) -> str:
        return self.context.labels[self.query_index]

    def to_record(self) -> dict:
        """The canonical JSONL fields of this row."""
        return {
            "n_boxes": self.n_boxes,
            "objects": list(self.context.objects),
            "labels": list(self.context.labels),
            "query_index": self.query_index,
            "query_label": self.query_label,
            "prompt": self.prompt,
            "answer": self.answer,
        }

    @classmethod
    def from_record(cls, record: dict) -> Example:
        context = Context(tuple(record["objects"]), tuple(record["labels"]))
        return cls(context, int(record["query_index"]))


def words_digest(objects: Sequence[str], labels: Sequence[str]) -> str:
    """Short digest of a word list, part of the split id when it differs from the suite's default."""
    return hashlib.sha256(("|".join(objects) + "#" + "|".join(labels)).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Split:
    """A generated split: blocks of n rows, one block per context, with its stable id and hash."""

    name: str
    n_boxes: int
    seed: int
    examples: tuple[Example, ...]
    objects: tuple[str, ...] = field(default=OBJECTS, repr=False)
    labels: tuple[str, ...] = field(default=LABELS, repr=False)

    @property
    def n_contexts(self) -> int:
        return len(self.examples) // self.n_boxes

    @property
    def split_id(self) -> str:
        """Stable id: task version, boxes, split, seed, size and (if not the default) the word list."""
        split_id = f"{TASK_VERSION}/n{self.n_boxes}/{self.name}/seed{self.seed}/contexts{self.n_contexts}"
        if (self.objects, self.labels) != (OBJECTS, LABELS):
            split_id += f"/words-{words_digest(self.objects, self.labels)}"
        return split_id

    @cached_property
    def jsonl(self) -> str:
        """Canonical JSONL: one row per line, sorted keys, compact separators, ASCII, trailing newline."""
        rows = (json.dumps(e.to_record(), sort_keys=True, separators=(",", ":")) for e in self.examples)
        return "".join(row + "\n" for row in rows)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.jsonl.encode()).hexdigest()

    def records(self) -> list[dict]:
        """Rows as dicts with the split id and a per-row id (what lm-eval and `datasets` consume)."""
        return [{"id": f"{self.split_id}#{i}", **e.to_record()} for i, e in enumerate(self.examples)]


def context_rng(*parts: object) -> random.Random:
    """A random generator seeded from a readable key, stable across Python runs and platforms."""
    return random.Random("|".join(str(p) for p in parts))


def draw_context(
    rng: random.Random,
    n_boxes: int,
    split: str,
    objects: Sequence[str],
    labels: Sequence[str],
) -> Context:
    """Draw a random context of the given split from the given words (rejection on the split bucket)."""
    check_words(n_boxes, objects, labels)
    for _ in range(_MAX_DRAWS_PER_CONTEXT):
        context = Context(tuple(rng.sample(list(objects), n_boxes)), tuple(rng.sample(list(labels), n_boxes)))
        if context.split == split:
            return context
    raise DatasetError(f"could not draw a {split} context in {_MAX_DRAWS_PER_CONTEXT} tries")


def check_words(n_boxes: int, objects: Sequence[str], labels: Sequence[str], factor: int = 1) -> None:
    """Raise a DatasetError if `factor` disjoint contexts of n boxes cannot be drawn from the words."""
    need = factor * n_boxes
    if len(objects) < need or len(labels) < need:
        raise DatasetError(
            f"too few words for {n_boxes} boxes: {len(objects)} objects and {len(labels)} labels, "
            f"need at least {need} of each; use fewer boxes or a tokenizer that keeps more words single-token"
        )


def generate_split(
    n_boxes: int = DEFAULT_BOXES,
    split: str = "test",
    n_prompts: int = 500,
    seed: int = 0,
    objects: Sequence[str] = OBJECTS,
    labels: Sequence[str] = LABELS,
) -> Split:
    """Generate a split of at least `n_prompts` rows (rounded up to whole contexts of n rows)."""
    check_boxes(n_boxes)
    check_split(split)
    if not 1 <= n_prompts <= MAX_PROMPTS:
        raise DatasetError(
            f"a split holds 1 to {MAX_PROMPTS} prompts, got {n_prompts}: ask for fewer (spec-v1's largest "
            "split has 1000)"
        )
    rng = context_rng(TASK_VERSION, n_boxes, split, seed)
    n_contexts = math.ceil(n_prompts / n_boxes)
    contexts: dict[str, Context] = {}
    for _ in range(n_contexts * _MAX_DRAWS_PER_CONTEXT):
        context = draw_context(rng, n_boxes, split, objects, labels)
        contexts.setdefault(context.key, context)
        if len(contexts) == n_contexts:
            break
    else:
        raise DatasetError(f"could not draw {n_contexts} distinct {split} contexts of {n_boxes} boxes")
    examples = tuple(Example(c, q) for c in contexts.values() for q in range(n_boxes))
    return Split(split, n_boxes, seed, examples, tuple(objects), tuple(labels))


def read_jsonl(text: str) -> list[Example]:
    """Parse canonical JSONL back into examples."""
    return [Example.from_record(json.loads(line)) for line in text.splitlines() if line.strip()]


def reference_prompts(split: Split, seed: int = 0) -> list[str]:
    """The mean-ablation reference set (SPEC section 3, metric v2): one prompt per distinct context of
    `split`, in order, its query label replaced by a random letter.

    The letter is one of the split's labels that is not in the context, so the query names no box. (The
    rows of one context differ only in their query label, which the letter replaces: metric v1 took every
    row, n prompts per context, so its means came from n_prompts / n contexts.)
    """
    rng = context_rng(split.split_id, "reference", seed)
    prompts = []
    for context in dict.fromkeys(example.context for example in split.examples):
        letter = rng.choice([label for label in split.labels if label not in context.labels])
        prompts.append(render(context, 0, query_label=letter).text)
    return prompts
