"""The named ablations and the logit difference: what an ablated head outputs in a circuit run, and the
continuous metric that normalized faithfulness is measured on.

- mean: an ablated head outputs its mean over the reference set at that position (SPEC section 5).
- resample: it outputs what it outputs, at that position, on one prompt of the same reference set (a
  seeded one-to-one pairing of evaluated and reference prompts; same token layout). Mean ablation feeds
  the model an average it never sees; resampling feeds it a real run of another prompt (Miller et al.
  2024: faithfulness moves with this choice, so both are reported).

The logit difference of a prompt is m = logit(answer) - mean logit of the context's other objects, at the
last position: it rises when the model prefers the right object over the ones it could confuse it with.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from benchmark.accuracy import iter_last_token_logits
from benchmark.data import EncodedPrompts
from benchmark.hooks import capture_head_outputs, mean_ablate, patch_head_outputs
from benchmark.models import ModelUnderStudy
from benchmark.models.study import model_device
from benchmark.settings import ABLATIONS

MEAN, RESAMPLE = ABLATIONS

# Components a run leaves at their own value, for a batch of rows: [batch|1, pos|1, layer, head] bool,
# or None for none (every head ablated).
KeepFn = Callable[[EncodedPrompts], torch.Tensor | None]


@dataclass(frozen=True)
class ResamplePrompts(EncodedPrompts):
    """Prompts with, row for row, the counterfactual prompt whose head outputs replace ablated heads."""

    counterfactual_ids: torch.Tensor  # [batch, pos], the same layout as input_ids


@dataclass(frozen=True)
class AblationSource:
    """Where ablated heads take their values: `means` [pos, layer, head, d] (mean ablation), or, for
    resample ablation, the evaluated prompts' counterfactuals run through the same model."""

    name: str  # one of ABLATIONS
    means: torch.Tensor | None = None


def resample_prompts(encoded: EncodedPrompts, reference_ids: torch.Tensor, seed: int = 0) -> ResamplePrompts:
    """`encoded` with, row for row, a prompt of the reference set (`reference_ids` [prompt, pos]) to
    resample from: a seeded permutation, one-to-one when both sets have the same size (cycling through
    the permutation when the reference set is smaller)."""
    if reference_ids.shape[1] != encoded.input_ids.shape[1]:
        raise ValueError(
            f"reference prompts have {reference_ids.shape[1]} tokens, the evaluated ones "
            f"{encoded.input_ids.shape[1]}: resample from a reference set of the same boxes and words"
        )
    order = torch.randperm(len(reference_ids), generator=torch.Generator().manual_seed(seed))
    rows = order[torch.arange(len(encoded)) % len(order)]
    fields = {name: getattr(encoded, name) for name in EncodedPrompts.__dataclass_fields__}
    return ResamplePrompts(**fields, counterfactual_ids=reference_ids[rows])


def check_source(source: AblationSource, encoded: EncodedPrompts) -> None:
    """A resample ablation needs prompts that carry their counterfactuals; a mean ablation needs means."""
    if source.name == RESAMPLE and not isinstance(encoded, ResamplePrompts):
        raise ValueError("resample ablation needs prompts with counterfactuals: use resample_prompts")
    if source.name == MEAN and source.means is None:
        raise ValueError("mean ablation needs the evaluated model's means (faithfulness.ablation_means)")
    if source.name not in ABLATIONS:
        raise ValueError(f"unknown ablation {source.name!r}; choose from {list(ABLATIONS)}")


def ablate(
    study: ModelUnderStudy, source: AblationSource, rows: EncodedPrompts, keep: torch.Tensor | None
) -> AbstractContextManager:
    """Hooks that ablate every head at every position of `rows` except where `keep`, as `source` says.

    Resample: the counterfactual rows run first (one extra forward pass per batch) and their head outputs,
    [batch, pos, layer, head, d], are patched in where `keep` is false."""
    if source.name == MEAN:
        return mean_ablate(study.adapter, source.means, keep=keep)
    device = model_device(study.model)
    with capture_head_outputs(study.adapter, to_device=device) as recording:
        study.model(rows.counterfactual_ids.to(device), use_cache=False)
    values = recording.stack()  # [batch, pos, layer, head, d]
    mask = None if keep is None else ~keep.bool()
    return patch_head_outputs(study.adapter, values, positions=None, mask=mask)


def ablated_run(study: ModelUnderStudy, source: AblationSource, keep: KeepFn):
    """The run that ablates all but `keep(rows)`, as a per-batch intervention for the scoring functions."""
    return lambda rows: ablate(study, source, rows, keep(rows))


def logit_diff(logits: torch.Tensor, rows: EncodedPrompts) -> torch.Tensor:
    """m per row from last-position logits [batch, vocab]: logit(answer) minus the mean logit of the other
    objects of the row's context (their tokens as the prompt spells them): [batch] float32."""
    logits = logits.float()
    objects = rows.input_ids.gather(1, rows.object_pos).to(logits.device)  # [batch, box]
    other = torch.ones_like(objects, dtype=torch.bool)
    other[torch.arange(len(objects)), rows.query_index.to(logits.device)] = False  # [batch, box]
    object_logits = logits.gather(1, objects)  # [batch, box]
    answer = logits.gather(1, rows.answer_ids[:, None].to(logits.device))[:, 0]  # [batch]
    return answer - (object_logits * other).sum(1) / other.sum(1)


@dataclass(frozen=True)
class RunScores:
    """Each prompt's decision (argmax = answer) and logit difference in one run."""

    correct: tuple[bool, ...]
    logit_diffs: tuple[float, ...]

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct)

    @property
    def mean_logit_diff(self) -> float:
        return sum(self.logit_diffs) / len(self.logit_diffs)


def run_scores(logits: torch.Tensor, rows: EncodedPrompts) -> RunScores:
    """Decisions and logit differences of `rows` from their last-position logits [batch, vocab]."""
    correct = (logits.argmax(-1).cpu() == rows.answer_ids).tolist()
    return RunScores(tuple(correct), tuple(logit_diff(logits, rows).cpu().tolist()))


def score_run(model, encoded: EncodedPrompts, batch_size: int = 32, intervention=None) -> RunScores:
    """Decisions and logit differences of every row, batch by batch (optionally under `intervention`)."""
    correct: list[bool] = []
    diffs: list[float] = []
    start = 0
    for logits in iter_last_token_logits(model, encoded, batch_size, intervention=intervention):
        scores = run_scores(logits, encoded.select(slice(start, start + len(logits))))
        correct += scores.correct
        diffs += scores.logit_diffs
        start += len(logits)
    return RunScores(tuple(correct), tuple(diffs))
