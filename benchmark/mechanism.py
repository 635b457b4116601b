"""Mechanism mix (Gur-Arieh et al. 2025): which retrieval mechanism a model's answer comes from.

A counterfactual rearranges the clean context's own objects and labels (`data.build_mix_pairs`) so that
four answers are four different objects: original (nothing moved), positional (the clean object at the
box position the counterfactual queries), lexical (the clean object under the counterfactual's query
label) and reflexive (the counterfactual's own answer). Patching one piece of the counterfactual run into
the clean run and reading which answer comes out says what that piece carries:
- the query label's residual stream after each layer (early: the label itself, so a model that matches
  labels answers lexically; once a position detector has read it: a position, so positional answers);
- each circuit group's heads at their sites (each head's output at the counterfactual's own site);
- the last token's residual stream after each layer (late: the answer itself, reflexive).
Shares are over the prompts both runs answer correctly; each prompt's answer is kept as one letter (o, p,
l, r, x for another answer; - for a prompt left out), from which the shares and their intervals are
recomputed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmark.accuracy import forward_last, score_accuracy
from benchmark.circuit import GROUP_SITE, GROUPS, Circuit, Group
from benchmark.circuit_run import site_positions
from benchmark.data import MIX_ANSWERS, EncodedPrompts, MixPair, encode_examples
from benchmark.data.counterfactuals import MIX_CODES
from benchmark.data.tokenization import continuation_ids
from benchmark.head_cache import capture_heads, patch_from_cache, site_mask
from benchmark.hooks import capture_residual, patch_residual
from benchmark.models import ModelUnderStudy
from benchmark.models.study import model_device
from benchmark.records import MechanismMix, MixRun

CODES = MIX_CODES  # one letter per answer of MIX_ANSWERS; "x": another answer; "-": left out
SITES = ("query_label", "last")  # the residual-stream patches, one curve over layers each


@dataclass(frozen=True)
class MixPrompts:
    """Clean and counterfactual prompts (one token layout) and the four answers' token ids [rows, 4]."""

    clean: EncodedPrompts
    counterfactual: EncodedPrompts
    answer_ids: torch.Tensor

    def __len__(self) -> int:
        return len(self.clean)


def encode_mix(tokenizer, pairs: Sequence[MixPair]) -> MixPrompts:
    """Encode both prompts of every pair together (one length) and each answer after its clean prompt."""
    both = encode_examples(tokenizer, [p.clean for p in pairs] + [p.counterfactual for p in pairs])
    n = len(pairs)
    answers = [[continuation_ids(tokenizer, p.clean.prompt, a)[0] for a in p.answers] for p in pairs]
    return MixPrompts(both.select(slice(0, n)), both.select(slice(n, 2 * n)), torch.tensor(answers))


def letters(predicted: torch.Tensor, prompts: MixPrompts, kept: torch.Tensor) -> str:
    """One letter per prompt: which answer `predicted` [rows] is, "-" where `kept` [rows] is false."""
    out = []
    for row, token in enumerate(predicted.tolist()):
        answers = prompts.answer_ids[row].tolist()
        code = CODES[answers.index(token)] if token in answers else "x"
        out.append(code if kept[row] else "-")
    return "".join(out)


def mix_run(name: str, answers: str) -> MixRun:
    """The shares of each answer over the prompts kept (null shares when none is kept)."""
    counted = [c for c in answers if c != "-"]
    share = lambda code: counted.count(code) / len(counted) if counted else None  # noqa: E731
    return MixRun(name, answers, *(share(code) for code in CODES), share("x"))


def _predict(model, prompts: EncodedPrompts, batch_size: int, intervention=None) -> torch.Tensor:
    """Argmax token at the last position of every row [rows], optionally under a per-batch intervention."""
    return torch.tensor(score_accuracy(model, prompts, batch_size, intervention=intervention).predicted_ids)


@torch.inference_mode()
def _residual_runs(study: ModelUnderStudy, prompts: MixPrompts, batch_size: int, progress: bool):
    """Predictions [site][layer] -> [rows] with the counterfactual's residual after that layer patched in."""
    model, adapter, n_layers = study.model, study.adapter, study.adapter.shape.n_layers
    device = model_device(model)
    out = {site: [[] for _ in range(n_layers)] for site in SITES}
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="mechanism mix", unit="batch", disable=not progress, leave=False):
        rows = slice(start, start + batch_size)
        clean, cf = prompts.clean.select(rows), prompts.counterfactual.select(rows)
        for site in SITES:
            where = (
                clean.query_label_pos if site == "query_label" else torch.full((len(clean),), clean.last_pos)
            )
            cf_where = cf.query_label_pos if site == "query_label" else where
            with capture_residual(adapter, cf_where) as recorded:
                forward_last(model, cf.input_ids.to(device))
            for layer in range(n_layers):
                with patch_residual(adapter, layer, where, recorded[layer]):
                    logits = forward_last(model, clean.input_ids.to(device))
                out[site][layer].append(logits.argmax(-1).cpu())
    return {site: [torch.cat(parts) for parts in layers] for site, layers in out.items()}


@torch.inference_mode()
def _group_run(study: ModelUnderStudy, circuit: Circuit, group: Group, prompts: MixPrompts, batch_size: int):
    """Predictions with the group's heads at the clean site given their outputs at the counterfactual's."""
    model, adapter = study.model, study.adapter
    mask = site_mask([circuit.heads(group)], adapter.shape)
    cf_sites = site_positions(GROUP_SITE[group], prompts.counterfactual)[:, None]  # [rows, 1]
    cache = capture_heads(model, adapter, prompts.counterfactual.input_ids, cf_sites, mask, batch_size)
    clean_sites = site_positions(GROUP_SITE[group], prompts.clean)[:, None]
    run = patch_from_cache(adapter, cache, clean_sites, prompts.clean.input_ids)
    return _predict(model, prompts.clean, batch_size, run)


def run_mix(
    study: ModelUnderStudy, circuit: Circuit, prompts: MixPrompts, batch_size: int = 32, progress: bool = True
) -> MechanismMix:
    """Every patch's answer per prompt, over the prompts both runs answer correctly."""
    model = study.model
    clean = _predict(model, prompts.clean, batch_size)
    cf = _predict(model, prompts.counterfactual, batch_size)
    kept = (clean == prompts.answer_ids[:, 0]) & (cf == prompts.answer_ids[:, 3])  # [rows]
    residual = _residual_runs(study, prompts, batch_size, progress)
    curves = {
        site: tuple(mix_run(f"{site}.layer{i}", letters(p, prompts, kept)) for i, p in enumerate(predictions))
        for site, predictions in residual.items()
    }
    groups = {
        group: mix_run(
            f"group.{group.value}",
            letters(_group_run(study, circuit, group, prompts, batch_size), prompts, kept),
        )
        if circuit.heads(group)
        else None
        for group in GROUPS
    }
    return MechanismMix(
        len(prompts), int(kept.sum()), curves["query_label"], curves["last"], groups,
        first_layer(curves["query_label"], "positional"),
    )  # fmt: skip


def first_layer(curve: Sequence[MixRun], answer: str) -> int | None:
    """The first layer whose patch gives `answer` to more than half of the kept prompts (None: none)."""
    return next((i for i, run in enumerate(curve) if (getattr(run, answer) or 0) > 0.5), None)


def shares(run: MixRun) -> Iterator[tuple[str, float | None]]:
    """(answer, share) in MIX_ANSWERS order, then "other"."""
    yield from ((answer, getattr(run, answer)) for answer in MIX_ANSWERS)
    yield "other", run.other
