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

Each patch edits one position per row and attention is causal, so every token before a batch's earliest
patched position, in every layer, is the same with or without it; the prompts of a batch share one token
layout (no padding). The clean run of those tokens is therefore computed once per batch and kept as a
key-value cache, and each patch runs only the rest of the prompt over it, with its positions counted from
the cut (the block outputs the hooks edit then hold only those tokens), then crops the cache back. The query
label is a few tokens before the end and the last token is the end, so the 2 * n_layers residual patches
and the groups read there cost a few tokens each instead of a whole prompt; the cache grows from the query
label to the last token between them. Structure readers are read at the query label's occurrence in the
context, early and moving with the queried box (DCM keeps them on the full pass for the same reason), so
their patch runs every token. The results are those of `run_mix(..., _full_pass=True)`, which runs every
token of every patched run, up to the rounding of differently shaped kernels: the tests check that no
prediction moves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmark.accuracy import forward_last
from benchmark.circuit import GROUP_SITE, GROUPS, Circuit, Group, Site
from benchmark.circuit_run import site_positions
from benchmark.data import MIX_ANSWERS, EncodedPrompts, MixPair, encode_examples
from benchmark.data.counterfactuals import MIX_CODES
from benchmark.data.tokenization import continuation_ids
from benchmark.head_cache import HeadCache, cached_patch, group_caches
from benchmark.hooks import capture_residual, patch_residual
from benchmark.models import ModelUnderStudy
from benchmark.records import MechanismMix, MixRun

CODES = MIX_CODES  # one letter per answer of MIX_ANSWERS; "x": another answer; "-": left out
SITES = (Site.QUERY_LABEL, Site.LAST)  # the residual-stream patches, one curve over layers each
# Every site a batch patches, in token order (the prefix before each grows); the query label's earlier
# occurrence, inside the context, is patched with every token run.
_ORDER = (Site.QUERY_LABEL_EARLIER, Site.QUERY_LABEL, Site.LAST)


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


class _CleanPrefix:
    """One batch's clean prompts as a cached prefix and the suffix after it: each prediction runs the suffix
    alone over the cache, then crops the cache back. The prefix only grows, so sites are visited in token
    order; a prefix never grown runs every token (the full pass)."""

    def __init__(self, study: ModelUnderStudy, input_ids: torch.Tensor):
        self.study, self.input_ids = study, input_ids.to(study.device)  # [batch, pos]
        self.cache, self.length = None, 0  # the cache holds the tokens [0, length)

    def grow(self, end: int) -> None:
        """Cache the tokens [0, end) too, unpatched (so never inside a patch's hooks)."""
        if end <= self.length:
            return
        tokens = self.input_ids[:, self.length : end]  # [batch, end - length]
        if self.cache is None:
            self.cache = self.study.prefill(tokens)
        else:
            self.study.extend(tokens, self.cache, last_only=True)
        self.length = end

    def predict(self, patch: AbstractContextManager) -> torch.Tensor:
        """Argmax at the last position [batch] under `patch`, whose positions are token - `length`."""
        suffix = self.input_ids[:, self.length :]  # [batch, pos - length]
        with patch:
            if self.cache is None:
                logits = forward_last(self.study.model, suffix)  # [batch, vocab]
            else:
                logits = self.study.extend(suffix, self.cache, last_only=True)[:, -1]
        if self.cache is not None:
            self.cache.crop(-suffix.shape[1])
        return logits.argmax(-1).cpu()


def _counterfactual_residuals(study: ModelUnderStudy, cf: EncodedPrompts):
    """One forward pass of a counterfactual batch: its argmax [batch], and its residual after every layer at
    each residual site, {site: [layer] -> [batch, d]}."""
    with ExitStack() as stack:
        recorded = {
            site: stack.enter_context(capture_residual(study.adapter, site_positions(site, cf)))
            for site in SITES
        }
        logits = forward_last(study.model, cf.input_ids.to(study.device))  # [batch, vocab]
    return logits.argmax(-1).cpu(), recorded


def _batch_predictions(
    study: ModelUnderStudy,
    clean: EncodedPrompts,
    cf: EncodedPrompts,
    heads: dict[Group, HeadCache],
    rows: slice,
    full_pass: bool,
) -> dict:
    """Every run's argmax [batch] on one batch (`rows` of the prompts): {"clean", "counterfactual",
    (site, layer), group}. Sites come in token order, each patched over the clean prefix before its
    earliest row (`full_pass`, or the structure readers' site: over no prefix)."""
    predicted = {}
    predicted["counterfactual"], residuals = _counterfactual_residuals(study, cf)
    prefix = _CleanPrefix(study, clean.input_ids)
    for site in _ORDER:
        positions = site_positions(site, clean)  # [batch]
        if not full_pass and site is not Site.QUERY_LABEL_EARLIER:
            prefix.grow(int(positions.min()))
        at = positions - prefix.length  # [batch] inside the suffix
        for layer, values in enumerate(residuals.get(site, ())):
            predicted[site, layer] = prefix.predict(patch_residual(study.adapter, layer, at, values))
        for group in (group for group in heads if GROUP_SITE[group] is site):
            predicted[group] = prefix.predict(cached_patch(study.adapter, heads[group], rows, at[:, None]))
    predicted["clean"] = prefix.predict(nullcontext())
    return predicted


@torch.inference_mode()
def _predictions(
    study: ModelUnderStudy,
    circuit: Circuit,
    prompts: MixPrompts,
    batch_size: int,
    progress: bool,
    full_pass: bool,
) -> dict:
    """Every run's argmax over all rows [rows], keyed as `_batch_predictions` keys them."""
    heads = group_caches(study.model, study.adapter, circuit, prompts.counterfactual, batch_size)
    parts = defaultdict(list)
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="mechanism mix", unit="batch", disable=not progress, leave=False):
        rows = slice(start, start + batch_size)
        clean, cf = prompts.clean.select(rows), prompts.counterfactual.select(rows)
        for key, predicted in _batch_predictions(study, clean, cf, heads, rows, full_pass).items():
            parts[key].append(predicted)
    return {key: torch.cat(batches) for key, batches in parts.items()}


def run_mix(
    study: ModelUnderStudy,
    circuit: Circuit,
    prompts: MixPrompts,
    batch_size: int = 32,
    progress: bool = True,
    _full_pass: bool = False,
) -> MechanismMix:
    """Every patch's answer per prompt, over the prompts both runs answer correctly.

    Patches at the query label and the last token run only the tokens from their site on, over the clean
    prompts' cached prefix; `_full_pass` runs every token of every patched run instead, the reference path
    the tests and benchmarks compare with.
    """
    predicted = _predictions(study, circuit, prompts, batch_size, progress, _full_pass)
    answers = prompts.answer_ids  # [rows, 4]
    kept = (predicted["clean"] == answers[:, 0]) & (predicted["counterfactual"] == answers[:, 3])  # [rows]
    layers = range(study.adapter.shape.n_layers)
    curves = {
        site: tuple(mix_run(f"{site}.layer{i}", letters(predicted[site, i], prompts, kept)) for i in layers)
        for site in SITES
    }
    groups = {
        group: mix_run(f"group.{group.value}", letters(predicted[group], prompts, kept))
        if group in predicted
        else None
        for group in GROUPS
    }
    return MechanismMix(
        len(prompts), int(kept.sum()), curves[Site.QUERY_LABEL], curves[Site.LAST], groups,
        first_layer(curves[Site.QUERY_LABEL], "positional"),
    )  # fmt: skip


def first_layer(curve: Sequence[MixRun], answer: str) -> int | None:
    """The first layer whose patch gives `answer` to more than half of the kept prompts (None: none)."""
    return next((i for i, run in enumerate(curve) if (getattr(run, answer) or 0) > 0.5), None)


def shares(run: MixRun) -> Iterator[tuple[str, float | None]]:
    """(answer, share) in MIX_ANSWERS order, then "other"."""
    yield from ((answer, getattr(run, answer)) for answer in MIX_ANSWERS)
    yield "other", run.other
