"""Tokenizer checks and token positions, always read off the real tokenization (SPEC section 2).

Tokenization follows lm-evaluation-harness exactly: the prompt is encoded with the tokenizer's default
special tokens, and the answer token is the first token of encode(prompt + answer) past the prompt.
Positions are found through the fast tokenizer's character offsets, never hard-coded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from benchmark.data.boxes import LABELS, OBJECTS, DatasetError, Example, check_words
from benchmark.data.counterfactuals import CounterfactualPair
from benchmark.data.words import Vocabulary


class TokenizerError(DatasetError):
    """The tokenizer cannot serve the task as is (too few single-token words, unequal prompt lengths)."""


def _encode(tokenizer, text: str) -> list[int]:
    """Encode as lm-eval's HF model does: the tokenizer's default special tokens."""
    return tokenizer.encode(text)


def continuation_ids(tokenizer, context: str, continuation: str) -> list[int]:
    """Tokens of `continuation` after `context`, split as lm-eval splits them (encode whole, cut context)."""
    whole = _encode(tokenizer, context + continuation)
    return whole[len(_encode(tokenizer, context)) :]


def answer_token_id(tokenizer, example: Example) -> int:
    """The answer token: the first token of the answer (with its leading space) after the prompt."""
    return continuation_ids(tokenizer, example.prompt, example.answer)[0]


def _is_single_token(tokenizer, context: str, word: str) -> bool:
    return len(continuation_ids(tokenizer, context, " " + word)) == 1


def check_vocabulary(
    tokenizer,
    n_boxes: int,
    objects: Sequence[str] = OBJECTS,
    labels: Sequence[str] = LABELS,
) -> Vocabulary:
    """Keep the objects and labels that are single tokens in their prompt context; error if too few remain.

    Two disjoint contexts must still fit (counterfactuals need them), so at least 2 * n_boxes of each.
    """
    kept_objects = [w for w in objects if _is_single_token(tokenizer, "Box A contains the", w)]
    kept_labels = [w for w in labels if _is_single_token(tokenizer, "The apple is in Box", w)]
    vocabulary = Vocabulary(
        objects=tuple(kept_objects),
        labels=tuple(kept_labels),
        removed_objects=tuple(w for w in objects if w not in kept_objects),
        removed_labels=tuple(w for w in labels if w not in kept_labels),
    )
    try:
        check_words(n_boxes, vocabulary.objects, vocabulary.labels, factor=2)
    except DatasetError as error:
        raise TokenizerError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r}: {error}. Removed objects (not single "
            f"tokens): {list(vocabulary.removed_objects)}; removed labels: {list(vocabulary.removed_labels)}"
        ) from error
    return vocabulary


@dataclass(frozen=True)
class TokenPositions:
    """Token indices of one prompt's parts (0-based, counting special tokens the tokenizer adds)."""

    objects: tuple[int, ...]
    labels: tuple[int, ...]
    query_label: int
    query_label_earlier: int  # the occurrence of the query label inside the context
    last: int


def _token_at(offsets: Sequence[tuple[int, int]], span: tuple[int, int], word: str) -> int:
    """The single token whose character range covers `span`; error if the word is split or merged."""
    start, end = span
    hits = [t for t, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    if len(hits) != 1 or offsets[hits[0]][1] < end:
        raise TokenizerError(f"{word!r} is not a single token here (tokens {hits}); it must be removed")
    return hits[0]


def find_positions(tokenizer, example: Example) -> TokenPositions:
    """Locate every object, label, the query label, its earlier occurrence and the last token."""
    if not getattr(tokenizer, "is_fast", False):
        raise TokenizerError("the position finder needs a fast tokenizer (character offsets): use_fast=True")
    encoding = tokenizer(example.prompt, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    if encoding["input_ids"] != _encode(tokenizer, example.prompt):
        raise TokenizerError("tokenizer(...) and tokenizer.encode(...) disagree on this prompt")
    rendered, context = example.rendered, example.context
    objects = tuple(
        _token_at(offsets, s, w) for s, w in zip(rendered.object_spans, context.objects, strict=True)
    )
    labels = tuple(
        _token_at(offsets, s, w) for s, w in zip(rendered.label_spans, context.labels, strict=True)
    )
    return TokenPositions(
        objects=objects,
        labels=labels,
        query_label=_token_at(offsets, rendered.query_label_span, example.query_label),
        query_label_earlier=labels[example.query_index],
        last=len(offsets) - 1,
    )


@dataclass(frozen=True)
class EncodedPrompts:
    """A batch of equal-length prompts as tensors, ready for a forward pass without padding."""

    input_ids: torch.Tensor  # [batch, pos]
    answer_ids: torch.Tensor  # [batch]
    query_index: torch.Tensor  # [batch]
    query_label_pos: torch.Tensor  # [batch]
    query_label_earlier_pos: torch.Tensor  # [batch]
    object_pos: torch.Tensor  # [batch, box]
    label_pos: torch.Tensor  # [batch, box]

    @property
    def last_pos(self) -> int:
        return self.input_ids.shape[1] - 1

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: slice | torch.Tensor) -> EncodedPrompts:
        """Rows `index` of every field (for batching)."""
        return type(self)(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def encode_prompts(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids [batch, pos] of prompts that must all have the same token length."""
    if not prompts:
        raise DatasetError("no prompts to encode")
    ids = [_encode(tokenizer, prompt) for prompt in prompts]
    lengths = sorted({len(x) for x in ids})
    if len(lengths) != 1:
        odd = next(p for p, x in zip(prompts, ids, strict=True) if len(x) != len(ids[0]))
        raise TokenizerError(
            f"prompts have unequal token lengths {lengths} (e.g. {odd!r}); some object or label is not a "
            "single token here: build the split from the words that check_vocabulary(tokenizer, n) keeps"
        )
    return torch.tensor(ids, dtype=torch.long)


def encode_examples(tokenizer, examples: Sequence[Example]) -> EncodedPrompts:
    """Tokenize prompts, answers and positions; every prompt must have the same token length."""
    input_ids = encode_prompts(tokenizer, [e.prompt for e in examples])
    positions = [find_positions(tokenizer, e) for e in examples]
    answers = []
    for e in examples:
        answer = continuation_ids(tokenizer, e.prompt, e.answer)
        if len(answer) != 1:
            raise TokenizerError(f"answer {e.answer!r} is {len(answer)} tokens; it must be a single token")
        answers.append(answer[0])

    def column(values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long)

    return EncodedPrompts(
        input_ids=input_ids,
        answer_ids=column(answers),
        query_index=column([e.query_index for e in examples]),
        query_label_pos=column([p.query_label for p in positions]),
        query_label_earlier_pos=column([p.query_label_earlier for p in positions]),
        object_pos=column([p.objects for p in positions]),
        label_pos=column([p.labels for p in positions]),
    )


@dataclass(frozen=True)
class EncodedPairs:
    """Counterfactual pairs as tensors: clean and counterfactual prompts (same length) and target tokens."""

    clean: EncodedPrompts
    counterfactual: EncodedPrompts
    target_ids: torch.Tensor  # [batch]

    def __len__(self) -> int:
        return len(self.clean)

    def select(self, index: slice | torch.Tensor) -> EncodedPairs:
        return EncodedPairs(
            self.clean.select(index), self.counterfactual.select(index), self.target_ids[index]
        )


def encode_pairs(
    tokenizer, pairs: Sequence[CounterfactualPair], clean: EncodedPrompts | None = None
) -> EncodedPairs:
    """Encode clean and counterfactual prompts together (one length), each target after its clean prompt.

    `clean`: the pairs' clean examples already encoded (`encode_examples` of them, in order), where pairs
    of several desiderata share them (DCM): then only the counterfactuals are encoded, to the same length."""
    n = len(pairs)
    if clean is None:
        both = encode_examples(tokenizer, [p.clean for p in pairs] + [p.counterfactual for p in pairs])
        clean, counterfactual = both.select(slice(0, n)), both.select(slice(n, 2 * n))
    else:
        counterfactual = encode_examples(tokenizer, [p.counterfactual for p in pairs])
        if len(clean) != n or counterfactual.input_ids.shape[1] != clean.input_ids.shape[1]:
            raise TokenizerError(
                f"{len(clean)} clean prompts of {clean.input_ids.shape[1]} tokens for {n} counterfactuals "
                f"of {counterfactual.input_ids.shape[1]}: pairs need one clean prompt each, of one length"
            )
    targets = [continuation_ids(tokenizer, p.clean.prompt, p.target)[0] for p in pairs]
    return EncodedPairs(clean, counterfactual, torch.tensor(targets))
