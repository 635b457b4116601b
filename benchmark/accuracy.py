"""The suite's one accuracy function (SPEC section 2): argmax over the full vocabulary at the last position.

Prompts of a split have equal token length, so batches need no padding and no attention mask: the forward
pass is exactly the one lm-eval runs for a single-token `loglikelihood` continuation, whose `acc`
(is-greedy) is the same decision.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmark.data.tokenization import EncodedPrompts

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


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (where inputs must go)."""
    return next(model.parameters()).device


def _forward_last(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits at the last position for one batch; asks the model for the last position only if it can."""
    kwargs = {"use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    return model(input_ids=input_ids, **kwargs).logits[:, -1, :]


def iter_last_token_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> Iterator[torch.Tensor]:
    """Yield last-position logits [batch, vocab] batch by batch (on the model's device, model's dtype)."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, pos], got shape {tuple(input_ids.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else model_device(model)
    starts = range(0, input_ids.shape[0], batch_size)
    show = progress if progress is not None else len(starts) >= _PROGRESS_MIN_BATCHES
    with torch.inference_mode():
        for start in tqdm(starts, desc="forward", unit="batch", disable=not show, leave=False):
            yield _forward_last(model, input_ids[start : start + batch_size].to(device))


def last_token_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Last-position logits [batch, vocab] of equal-length prompts, as float32 on the CPU."""
    batches = iter_last_token_logits(model, input_ids, batch_size, device)
    return torch.cat([logits.float().cpu() for logits in batches])


def _fraction(flags: torch.Tensor) -> float:
    """Share of True flags as an exact Python float (what lm-eval's mean of booleans gives); NaN if empty."""
    return int(flags.sum()) / len(flags) if len(flags) else float("nan")


def score_accuracy(
    model: torch.nn.Module,
    encoded: EncodedPrompts,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> AccuracyResult:
    """Share of prompts whose argmax next token (full vocabulary) is the answer token, with its breakdown."""
    if len(encoded) == 0:
        raise ValueError("no prompts to score")
    batches = iter_last_token_logits(model, encoded.input_ids, batch_size, device)
    predicted = torch.cat([logits.argmax(dim=-1).cpu() for logits in batches])
    correct = predicted == encoded.answer_ids
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
