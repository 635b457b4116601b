"""The suite's one accuracy function (SPEC section 2): argmax over the full vocabulary at the last position.

Prompts of a split have equal token length, so batches need no padding and no attention mask: the forward
pass is exactly the one lm-eval runs for a single-token `loglikelihood` continuation, whose `acc`
(is-greedy) is the same decision.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmark.data.tokenization import EncodedPrompts
from benchmark.models.study import model_device

# Show a progress bar only when a run has at least this many batches.
_PROGRESS_MIN_BATCHES = 8


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracy over a set of prompts, its breakdown by queried box, and each row's decision."""

    accuracy: float
    n: int
    per_position: tuple[float, ...]  # accuracy of the rows that query box i (NaN if none)
    n_per_position: tuple[int, ...]
    correct: tuple[bool, ...]  # one per row, in input order
    predicted_ids: tuple[int, ...]  # argmax token per row


def forward_last(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits at the last position for one batch; asks the model for the last position only if it can."""
    kwargs = {"use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    return model(input_ids=input_ids, **kwargs).logits[:, -1, :]


# Builds the hook context for one batch (its rows of the prompts), e.g. a circuit run or a patch.
Intervention = Callable[[EncodedPrompts], AbstractContextManager]


def iter_last_token_logits(
    model: torch.nn.Module,
    prompts: EncodedPrompts | torch.Tensor,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    intervention: Intervention | None = None,
) -> Iterator[torch.Tensor]:
    """Yield last-position logits [batch, vocab] batch by batch (model's device and dtype).

    With `intervention`, each batch runs inside `intervention(rows of prompts)`.
    """
    encoded = prompts if isinstance(prompts, EncodedPrompts) else None
    input_ids = prompts.input_ids if encoded is not None else prompts
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, pos], got shape {tuple(input_ids.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if intervention is not None and encoded is None:
        raise ValueError("an intervention needs EncodedPrompts (it reads positions), not bare input_ids")
    device = torch.device(device) if device is not None else model_device(model)
    starts = range(0, input_ids.shape[0], batch_size)
    show = progress if progress is not None else len(starts) >= _PROGRESS_MIN_BATCHES
    with torch.inference_mode():
        for start in tqdm(starts, desc="forward", unit="batch", disable=not show, leave=False):
            rows = slice(start, start + batch_size)
            context = intervention(encoded.select(rows)) if intervention is not None else nullcontext()
            with context:
                logits = forward_last(model, input_ids[rows].to(device))
            yield logits


def last_token_logits(
    model: torch.nn.Module,
    prompts: EncodedPrompts | torch.Tensor,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    intervention: Intervention | None = None,
) -> torch.Tensor:
    """Last-position logits [batch, vocab] of equal-length prompts, as float32 on the CPU."""
    batches = iter_last_token_logits(model, prompts, batch_size, device, intervention=intervention)
    return torch.cat([logits.float().cpu() for logits in batches])


def answer_probability(logits: torch.Tensor, answer_ids: torch.Tensor) -> torch.Tensor:
    """p(answer) from last-position logits [rows, vocab]: [rows], float32, on the logits' device."""
    return logits.float().softmax(-1).gather(1, answer_ids[:, None].to(logits.device))[:, 0]


def answer_probabilities(
    model: torch.nn.Module,
    encoded: EncodedPrompts,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    intervention: Intervention | None = None,
    answer_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """p(answer) at the last position of every row: [batch] float32 on the CPU (default: rows' answers)."""
    answer_ids = encoded.answer_ids if answer_ids is None else answer_ids
    parts, start = [], 0
    for logits in iter_last_token_logits(model, encoded, batch_size, device, intervention=intervention):
        parts.append(answer_probability(logits, answer_ids[start : start + len(logits)]).cpu())
        start += len(logits)
    return torch.cat(parts)


def _fraction(flags: torch.Tensor) -> float:
    """Share of True flags as an exact Python float (what lm-eval's mean of booleans gives); NaN if empty."""
    return int(flags.sum()) / len(flags) if len(flags) else float("nan")


def score_accuracy(
    model: torch.nn.Module,
    encoded: EncodedPrompts,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    intervention: Intervention | None = None,
    answer_ids: torch.Tensor | None = None,
) -> AccuracyResult:
    """Share of prompts whose argmax next token (full vocabulary) is the answer token, with its breakdown.

    `intervention` runs each batch under hooks; `answer_ids` replaces the rows' answers (DCM targets).
    """
    if len(encoded) == 0:
        raise ValueError("no prompts to score")
    batches = iter_last_token_logits(model, encoded, batch_size, device, intervention=intervention)
    predicted = torch.cat([logits.argmax(dim=-1).cpu() for logits in batches])
    correct = predicted == (encoded.answer_ids if answer_ids is None else answer_ids.cpu())
    n_boxes = int(encoded.object_pos.shape[1])
    per_position, n_per_position = [], []
    for box in range(n_boxes):
        rows = encoded.query_index == box
        n_per_position.append(int(rows.sum()))
        per_position.append(_fraction(correct[rows]))
    return AccuracyResult(
        accuracy=_fraction(correct),
        n=len(encoded),
        per_position=tuple(per_position),
        n_per_position=tuple(n_per_position),
        correct=tuple(bool(c) for c in correct),
        predicted_ids=tuple(int(p) for p in predicted),
    )
