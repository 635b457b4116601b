"""Circuit runs on a shared ablated prefix: compute once what no circuit run can change, then only the rest.

In a circuit run every head outside the kept components is ablated (to its mean, or to a resampled prompt's
value). Attention is causal, so the tokens of a batch before its first kept component are the same in every
run under one ablation: all their heads are ablated, whatever the circuit keeps later. `AblatedPrefix` runs
each batch once with every head ablated, keeps the key-value cache of all but its last token, and each run
then recomputes only the tokens from its first kept position on:

- a circuit of value fetchers, position transmitters and position detectors (read at the last token and the
  query label) recomputes the query segment, a handful of tokens; the empty run, the last token alone;
- one with structure readers (read at the queried box's label, inside the context) recomputes from that
  label on. Rows are batched by that earliest site, so no batch mixes two and the saving holds in each.
- resample ablation also keeps each batch's counterfactual head outputs from the earliest site on, so the
  counterfactual prompts run once per prompt set, not once per circuit run.

The prefix may also be that of a fixed part of the runs (`Base`: components every run keeps, and a patch
every run applies, before the sites where the runs differ): minimality pruning keeps the structure readers
of the circuit it prunes in such a prefix while it tries removing later heads, so those runs recompute only
the query tokens. A run that keeps a component before the cached part (the diagnostics' context-kept run)
runs its batches in full, exactly as without a cache; so does every run when the cache would exceed
`store_limit`. Results come back in the prompts' order and equal those of full passes up to float rounding
(tests/test_ablated_prefix.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass

import torch

from benchmark.ablation import MEAN, AblationSource, KeepFn, RunScores, ablate, check_source, run_scores
from benchmark.accuracy import answer_probability, forward_last
from benchmark.data import EncodedPrompts
from benchmark.hooks import capture_head_outputs, mean_ablate, patch_head_outputs
from benchmark.models import ModelUnderStudy

# Largest cache kept for one prompt set (prefix keys and values, resampled head outputs), in bytes, on a CPU;
# on a GPU, half the memory free when the cache is built. 0 turns the cache off everywhere (every run a full
# pass: the reference path benchmarks/score_speed.py times against).
STORE_BYTES = 4 << 30


def store_limit(device: torch.device) -> int:
    """Bytes the cache may take on `device` (see STORE_BYTES)."""
    if STORE_BYTES == 0 or device.type != "cuda":
        return STORE_BYTES
    return torch.cuda.mem_get_info(device)[0] // 2


# A patch on top of the ablation for a batch: (its rows of the prompts [batch], the first token of the pass)
# -> hooks writing at token indices of that pass. Entered after the ablation, so it wins where both write.
Patch = Callable[[torch.Tensor, int], AbstractContextManager]


@dataclass(frozen=True)
class Base:
    """What every run over a prefix shares before the runs differ: the components it keeps (`keep`) and a
    patch on top (`patch`, writing where `touched` marks). The cached prefix is this part's run."""

    keep: KeepFn
    patch: Patch | None = None
    touched: KeepFn | None = None


@dataclass
class _Batch:
    """Rows sharing one earliest site, with what every run over them reuses."""

    index: torch.Tensor  # [batch] row numbers in the prompts
    rows: EncodedPrompts
    low: int  # their earliest site: resampled head outputs are kept from here on
    entries: list[tuple] | None = None  # per layer (k, v, ...) [batch, kv, last, d] of the all-ablated run
    resampled: torch.Tensor | None = None  # resample: [batch, pos - low, layer, head, d]
    base_keep: torch.Tensor | None = None  # [batch, pos, layer, head]: what the prefix's run keeps
    base_touched: torch.Tensor | None = None  # [batch, pos, layer, head]: where its patch writes

    def nbytes(self) -> int:
        tensors = [t for entry in self.entries or () for t in entry[:2]]
        tensors += [self.resampled] if self.resampled is not None else []
        return sum(t.nbytes for t in tensors)


def _batches(encoded: EncodedPrompts, batch_size: int) -> list[_Batch]:
    """Rows sorted (stably) by their earliest site, split where it changes and every `batch_size` rows."""
    earliest = encoded.query_label_earlier_pos  # [rows]: no group site comes earlier
    order = torch.argsort(earliest, stable=True)
    batches = []
    for site in torch.unique_consecutive(earliest[order]).tolist():
        for index in order[earliest[order] == site].split(batch_size):
            batches.append(_Batch(index, encoded.select(index), int(site)))
    return batches


def first_kept(keep: torch.Tensor | None, n_pos: int) -> int:
    """The first token any row keeps a component at (n_pos if none); keep is [batch|1, pos|1, layer, head]."""
    if keep is None:
        return n_pos
    kept = keep.expand(keep.shape[0], n_pos, *keep.shape[2:]).flatten(2).any(-1).any(0)  # [pos]
    return int(kept.int().argmax()) if bool(kept.any()) else n_pos


class AblatedPrefix:
    """The circuit runs of one model on one prompt set under one ablation, sharing the all-ablated prefix."""

    def __init__(
        self,
        study: ModelUnderStudy,
        source: AblationSource,
        encoded: EncodedPrompts,
        batch_size: int,
        base: Base | None = None,
        near: tuple[AblatedPrefix, ...] = (),
    ):
        check_source(source, encoded)
        self.study, self.source, self.encoded, self.base = study, source, encoded, base
        self.n_pos = encoded.input_ids.shape[1]
        self.last = self.n_pos - 1  # the cache covers every token before the last
        self.batches, self.size = _batches(encoded, batch_size), batch_size
        self.cached = self._fill([prefix for prefix in near if self._shares_batches(prefix)])

    def _shares_batches(self, other: AblatedPrefix) -> bool:
        """Whether `other` is a filled prefix of the same model, prompts, ablation and batches."""
        if not (other.cached and other.study is self.study and other.source is self.source):
            return False
        if len(other.batches) != len(self.batches):
            return False
        same_rows = (torch.equal(a.index, b.index) for a, b in zip(other.batches, self.batches, strict=True))
        return torch.equal(other.encoded.input_ids, self.encoded.input_ids) and all(same_rows)

    @property
    def name(self) -> str:
        return self.source.name

    @torch.inference_mode()
    def _fill(self, near: list[AblatedPrefix]) -> bool:
        """Run every batch with all heads ablated (but the base) and keep its cache; False (and keep
        nothing) when the whole set would exceed `store_limit`, judged from the first batch (the one with
        most resampled tokens: an overestimate). Where a `near` prefix's run equals this one up to some
        token (same kept components, neither patch writing before it), its cache is reused up to there."""
        limit = store_limit(self.study.device)
        if limit == 0:
            return False
        for i, batch in enumerate(self.batches):
            ids = batch.rows.input_ids.to(self.study.device)
            values = self._resampled_values(batch.rows)  # [batch, pos, layer, head, d] or None
            if self.base is not None:
                batch.base_keep = self._expand(self.base.keep(batch.rows), batch)
                touched = self.base.touched
                batch.base_touched = None if touched is None else self._expand(touched(batch.rows), batch)
            start, shared = self._nearest(batch, [prefix.batches[i] for prefix in near])
            with self._ablated(values, start, batch.base_keep), self._base_patch(batch, start):
                if shared is None or start == 0:
                    batch.entries = self.study.cache_entries(self.study.prefill(ids[:, : self.last]))
                elif start == self.last:  # the same run: its cache, shared (runs never write into it)
                    batch.entries = shared.entries
                else:  # only the tokens from `start` on, after the near run's cache of those before
                    cache = self.study.cache_of(_cut(shared.entries, start))
                    self.study.extend(ids[:, start : self.last], cache, last_only=True)
                    batch.entries = self.study.cache_entries(cache)
            batch.resampled = None if values is None else values[:, batch.low :]
            if i == 0 and batch.nbytes() / len(batch.index) * len(self.encoded) > limit:
                batch.entries = batch.resampled = None
                return False
        return True

    def _resampled_values(self, rows: EncodedPrompts) -> torch.Tensor | None:
        """Resample ablation: the counterfactual rows' head outputs [batch, pos, layer, head, d]."""
        if self.source.name == MEAN:
            return None
        with capture_head_outputs(self.study.adapter, to_device=self.study.device) as recording:
            self.study.model(rows.counterfactual_ids.to(self.study.device), use_cache=False)
        return recording.stack()

    def _nearest(self, batch: _Batch, others: list[_Batch]) -> tuple[int, _Batch | None]:
        """(first token to compute, the batch whose cache holds those before) for filling `batch`: the one
        of `others` whose run agrees with this prefix's longest, or (0, None)."""
        found = [(self._agrees(batch, other), other) for other in others]
        return max(found, key=lambda pair: pair[0], default=(0, None))

    def _agrees(self, batch: _Batch, other: _Batch) -> int:
        """The first token where the runs of this prefix and `other`'s (same rows) may differ: where they
        keep other components, or where either's base patch writes (at most the last cached token)."""
        none = torch.zeros(1, 1, 1, 1, dtype=torch.bool)
        mine, theirs = (none if keep is None else keep for keep in (batch.base_keep, other.base_keep))
        firsts = [first_kept(mine ^ theirs, self.n_pos), first_kept(batch.base_touched, self.n_pos)]
        return min(*firsts, first_kept(other.base_touched, self.n_pos), self.last)

    def _ablated(self, values: torch.Tensor | None, start: int, keep=None) -> AbstractContextManager:
        """Hooks ablating every head of the cached tokens [start, last) but `keep` (a pass over exactly
        those tokens)."""
        end = self.last
        kept = None if keep is None else keep[:, start:end]
        if values is None:
            return mean_ablate(self.study.adapter, self.source.means[start:end], keep=kept)
        mask = None if kept is None else ~kept
        return patch_head_outputs(self.study.adapter, values[:, start:end], mask=mask)

    def _expand(self, keep: torch.Tensor | None, batch: _Batch) -> torch.Tensor | None:
        """A keep mask [batch|1, pos|1, layer, head] at full size [batch, pos, layer, head], bool."""
        if keep is None:
            return None
        return keep.expand(len(batch.index), self.n_pos, *keep.shape[2:]).bool()

    def _base_patch(self, batch: _Batch, start: int) -> AbstractContextManager:
        """The base's patch for a pass from token `start` on, unless it writes only before `start`."""
        patch = None if self.base is None else self.base.patch
        if patch is None or start > first_kept(batch.base_touched, self.n_pos):
            return nullcontext()
        return patch(batch.index, start)

    def _start(self, batch: _Batch, kept: torch.Tensor | None, touched: KeepFn | None) -> int:
        """The first token a run must recompute: where it keeps other components than the prefix's run,
        where its patch writes, and not after a token the base patches if the run recomputes it."""
        differs = kept if batch.base_keep is None else batch.base_keep ^ (False if kept is None else kept)
        start = min(first_kept(differs, self.n_pos), self.last)
        if touched is not None:
            start = min(start, first_kept(touched(batch.rows), self.n_pos))
        based = batch.base_touched
        if based is not None and bool(based[:, start:].any()):
            start = min(start, first_kept(based, self.n_pos))
        return start

    def _suffix_ablation(
        self, batch: _Batch, keep: torch.Tensor | None, start: int
    ) -> AbstractContextManager:
        """Hooks ablating all but `keep` on the tokens from `start` on (a pass over exactly those tokens)."""
        kept = None if keep is None else keep[:, start:]  # [batch, pos - start, layer, head]
        if self.source.name == MEAN:
            return mean_ablate(self.study.adapter, self.source.means[start:], keep=kept)
        ablated = None if kept is None else ~kept.bool()
        return patch_head_outputs(self.study.adapter, batch.resampled[:, start - batch.low :], mask=ablated)

    def _logits(self, batch: _Batch, keep: torch.Tensor | None, start: int, patch: Patch | None):
        """Last-position logits [batch, vocab] of one batch: over its cached prefix when `start` allows."""
        ids = batch.rows.input_ids.to(self.study.device)
        with ExitStack() as stack:
            if not self._over_prefix(batch, start):
                stack.enter_context(ablate(self.study, self.source, batch.rows, keep))
                stack.enter_context(self._base_patch(batch, 0))
                stack.enter_context(patch(batch.index, 0) if patch else nullcontext())
                return forward_last(self.study.model, ids)
            # built before the hooks: the prefix is already ablated
            cache = self.study.cache_of(_cut(batch.entries, start))
            stack.enter_context(self._suffix_ablation(batch, keep, start))
            stack.enter_context(self._base_patch(batch, start))
            stack.enter_context(patch(batch.index, start) if patch else nullcontext())
            return self.study.extend(ids[:, start:], cache, last_only=True)[:, -1]

    @torch.inference_mode()
    def logits(self, keep: KeepFn, patch: Patch | None = None, touched: KeepFn | None = None) -> Iterator:
        """(rows [batch], last-position logits [batch, vocab]) of each batch of the run that ablates all but
        `keep(rows)`, with `patch` on top; `touched(rows)` marks where the patch writes (it must not come
        before the first token the pass computes)."""
        runs = []
        for batch in self.batches:
            kept = self._expand(keep(batch.rows), batch)  # [batch, pos, layer, head] or None
            runs.append((batch, kept, self._start(batch, kept, touched)))
        for batch, kept, start in self._merged(runs):
            yield batch.index, self._logits(batch, kept, start, patch)

    def _merged(self, runs: list[tuple]) -> Iterator[tuple]:
        """The runs' (batch, keep, start), consecutive ones over the cached prefix that start at one token
        joined up to `batch_size` rows: batches are split by earliest site, and when a run recomputes
        only later tokens (the query segment, the last token) one pass over the joined rows does it."""
        group: list[tuple] = []
        for run in runs:
            if group and not self._joins(group, run):
                yield self._joined(group)
                group = []
            group.append(run)
        if group:
            yield self._joined(group)

    def _joins(self, group: list[tuple], run: tuple) -> bool:
        (first, first_kept, start), (batch, kept, run_start) = group[0], run
        rows = sum(len(b.index) for b, *_ in group) + len(batch.index)
        same = run_start == start and (kept is None) == (first_kept is None)
        cached = self._over_prefix(first, start) and self._over_prefix(batch, start)
        return same and cached and rows <= self.size

    def _joined(self, group: list[tuple]) -> tuple:
        """One (batch, keep, start) of the group's rows, its cache and values cut at their common start."""
        if len(group) == 1:
            return group[0]
        batches, start = [b for b, *_ in group], group[0][2]
        index = torch.cat([b.index for b in batches])
        entries = [
            (torch.cat([e[0][:, :, :start] for e in layer]), torch.cat([e[1][:, :, :start] for e in layer]))
            + tuple(layer[0][2:])
            for layer in zip(*(b.entries for b in batches), strict=True)
        ]
        resampled = _cat([None if b.resampled is None else b.resampled[:, start - b.low :] for b in batches])
        joined = _Batch(index, self.encoded.select(index), start, entries, resampled)
        joined.base_keep = _cat([b.base_keep for b in batches])
        joined.base_touched = _cat([b.base_touched for b in batches])
        return joined, _cat([kept for _, kept, _ in group]), start

    def _over_prefix(self, batch: _Batch, start: int) -> bool:
        """Whether a run of `batch` from token `start` on can use the cached prefix."""
        low = 1 if self.source.name == MEAN else max(batch.low, 1)  # resampled values begin at `low`
        return self.cached and start >= low

    def score(self, keep: KeepFn) -> RunScores:
        """Each prompt's decision and logit difference in the run, in the prompts' order."""
        parts = [(index, run_scores(logits, batch)) for index, logits, batch in self._runs(keep)]
        return _in_order(parts, len(self.encoded))

    def answer_probabilities(self, keep: KeepFn, patch: Patch | None = None, touched=None) -> torch.Tensor:
        """p(answer) of every prompt in the run, in the prompts' order: [rows] float32 on the CPU."""
        out = torch.empty(len(self.encoded))
        for index, logits, batch in self._runs(keep, patch, touched):
            out[index] = answer_probability(logits, batch.answer_ids).cpu()
        return out

    def _runs(self, keep, patch=None, touched=None):
        for index, logits in self.logits(keep, patch, touched):
            yield index, logits, self.encoded.select(index)


def _cut(entries: list[tuple], end: int) -> list[tuple]:
    """A cache's per-layer entries cut to the tokens before `end` (views, not copies)."""
    return [(k[:, :, :end], v[:, :, :end], *rest) for k, v, *rest in entries]


def _cat(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The tensors joined along rows, or None where they are None."""
    return None if tensors[0] is None else torch.cat(tensors)


def _in_order(parts: list[tuple[torch.Tensor, RunScores]], n: int) -> RunScores:
    """Per-batch scores put back in row order."""
    correct: list[bool] = [False] * n
    diffs: list[float] = [0.0] * n
    for index, scores in parts:
        for row, ok, diff in zip(index.tolist(), scores.correct, scores.logit_diffs, strict=True):
            correct[row], diffs[row] = ok, diff
    return RunScores(tuple(correct), tuple(diffs))
