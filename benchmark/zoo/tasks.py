"""Training data of the zoo's recipes: seeded generators of (prompt, answer) rows.

Each generator takes the tokenizer (the boxes words must be single tokens for it), a row count and a seed,
and returns the same rows for the same arguments. Box contexts are drawn from the suite's train split only,
so no test context is ever trained on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from benchmark.data.boxes import Context, Example, draw_context

# Boxes per context of every boxes-family task (the suite's canonical size).
TASK_BOXES = 7


@dataclass(frozen=True)
class TrainRow:
    """One training row: the loss is taken on the tokens of `answer` (with its leading space) only."""

    prompt: str
    answer: str


# A task: (tokenizer, number of rows, seed) -> rows, deterministic.
TaskGenerator = Callable[[object, int, int], tuple[TrainRow, ...]]


def _train_queries(tokenizer, n_rows: int, rng: random.Random) -> list[tuple[Context, int]]:
    """n (context, queried box) draws from the suite's train split; each row its own context.

    Drawn one by one, so the first k rows do not depend on n (a longer run extends a shorter one).
    """
    from benchmark.data.tokenization import check_vocabulary  # imports torch: only when training

    vocabulary = check_vocabulary(tokenizer, TASK_BOXES)
    draws = []
    for _ in range(n_rows):
        context = draw_context(rng, TASK_BOXES, "train", vocabulary.objects, vocabulary.labels)
        draws.append((context, rng.randrange(TASK_BOXES)))
    return draws


def boxes_train(tokenizer, n_rows: int, seed: int) -> tuple[TrainRow, ...]:
    """The canonical template ("... Box F contains the") on train-split contexts only."""
    draws = _train_queries(tokenizer, n_rows, random.Random(f"zoo|boxes-train|{seed}"))
    return tuple(TrainRow(Example(c, q).prompt, Example(c, q).answer) for c, q in draws)


def render_crates(context: Context, query_index: int) -> str:
    """The related template: "The apple sits in crate F, the ... sits in crate D. Crate F holds the"."""
    segments = [
        f"{'The' if i == 0 else 'the'} {obj} sits in crate {label}"
        for i, (obj, label) in enumerate(zip(context.objects, context.labels, strict=True))
    ]
    return ", ".join(segments) + f". Crate {context.labels[query_index]} holds the"


def crates_train(tokenizer, n_rows: int, seed: int) -> tuple[TrainRow, ...]:
    """The related template (other verbs and nouns than the canonical one) on train-split contexts."""
    draws = _train_queries(tokenizer, n_rows, random.Random(f"zoo|crates|{seed}"))
    return tuple(TrainRow(render_crates(c, q), " " + c.objects[q]) for c, q in draws)


def arithmetic(tokenizer, n_rows: int, seed: int) -> tuple[TrainRow, ...]:
    """Sums and differences of two-digit numbers: "What is 23 + 45? Answer:" -> " 68"."""
    del tokenizer  # the rows do not depend on the vocabulary
    rng = random.Random(f"zoo|arithmetic|{seed}")
    rows = []
    for _ in range(n_rows):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if rng.random() < 0.5:
            rows.append(TrainRow(f"What is {a} + {b}? Answer:", f" {a + b}"))
        else:
            a, b = max(a, b), min(a, b)
            rows.append(TrainRow(f"What is {a} - {b}? Answer:", f" {a - b}"))
    return tuple(rows)


TASKS: dict[str, TaskGenerator] = {
    "boxes-train": boxes_train,
    "crates": crates_train,
    "arithmetic": arithmetic,
}


def generate_task(name: str, tokenizer, n_rows: int, seed: int) -> tuple[TrainRow, ...]:
    """Rows of the named task; a clear error for an unknown name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](tokenizer, n_rows, seed)
