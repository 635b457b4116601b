"""DCM on a cached prefix: compute what the mask cannot change once, recompute only from the group's site on.

A DCM mask edits the group's heads at one position per row (the group's site: the last token for value
fetchers and position transmitters, the query label for position detectors, the query label's earlier
occurrence for structure readers). Attention is causal, so every token before the earliest site of a set
of rows, in every layer, is the same whatever the mask is. `PrefixRuns` runs that prefix once without
gradients and keeps its key-value cache; each training step or validation then runs only the suffix (the
tokens from the earliest site on) over the cached prefix, with gradients reaching the mask through the
suffix alone. This is exact for every group, since each has exactly one site per row. Where sites differ
between rows (structure readers, read inside the context at the queried box's label) `RunsBySite` keeps
one prefix per site, so that each row recomputes only the tokens from its own site on. The mask itself is
the same site edit as the full pass (`mixing_edit`), a plain hook on the unmodified output projection.

The masks of several desiderata of one group train together (`masking.train_masks`): their clean prompts
and sites are the same rows, only the counterfactual heads and the targets differ. A batch then runs each
prompt once below the group's lowest layer, where nothing differs, and fans out into one row per mask from
there (`hooks.repeat_rows`); each mask's gradient comes from its own rows alone, as if trained by itself.

The cache is kept across calls (training epochs, every validated head set) while it fits `STORE_BYTES`;
above that each call recomputes its rows' prefix, which still saves the backward pass through it. Nothing in
it depends on the group's heads or the desideratum's targets, only on the clean prompts and the sites: a
`PrefixStore` lets every mask of a split that reads the same prompts at the same sites share one (`run_dcm`:
value fetchers and position transmitters, both read at the last token, of every desideratum, whose clean
prompts are the split's same rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch

from benchmark.accuracy import forward_last
from benchmark.circuit import Head
from benchmark.hooks import edit_head_outputs, repeat_rows
from benchmark.models.study import ModelUnderStudy

# Largest prefix cache (keys and values of all layers, all rows) kept across calls, in bytes.
STORE_BYTES = 1 << 30


def mixing_edit(heads: Sequence[Head], layers: Sequence[int], masks: torch.Tensor, cf: torch.Tensor):
    """Site edit m * clean + (1 - m) * cf for the masked heads, of k masks `masks` [k, n] (or one, [n]) at
    once: row i * k + j is prompt i under mask j; cf is [rows, n, d] in `heads` order."""
    slots = {layer: [i for i, (l_, _) in enumerate(heads) if l_ == layer] for layer in layers}
    columns = {layer: [heads[i][1] for i in slots[layer]] for layer in layers}
    masks = masks if masks.dim() == 2 else masks[None]
    k = len(masks)

    def edit(sites: torch.Tensor, index: int) -> torch.Tensor:  # sites [rows, 1, head, d]
        layer = layers[index]
        m = masks[:, slots[layer]].to(sites.dtype)[None, :, None, :, None]  # [1, k, 1, n_layer, 1]
        own = sites[:, :, columns[layer]].unflatten(0, (-1, k))  # [prompt, k, 1, n_layer, d]
        other = cf[:, None, slots[layer]].to(sites.device, sites.dtype).unflatten(0, (-1, k))
        out = sites.clone()
        out[:, :, columns[layer]] = (m * own + (1 - m) * other).flatten(0, 1)
        return out

    return edit


def mask_loss(target_logits: torch.Tensor, masks: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The sum over masks of -mean(target logit) + sparsity * sum(1 - m), from each row's target logit under
    each mask [batch, k] and the masks [k, n]: mask j's gradient is that of its own loss alone."""
    return (-target_logits.mean(0) + sparsity * (1 - masks).sum(1)).sum()


def target_logits(logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """Each row's target logit, [batch, k], from last-position logits [batch * k, vocab] (row i * k + j:
    prompt i under mask j) and the target ids [batch, k]."""
    flat = target_ids.reshape(-1, 1).to(logits.device)  # [batch * k, 1]
    return logits.float().gather(1, flat).view(target_ids.shape)


def _layers(heads: Sequence[Head]) -> list[int]:
    return sorted({layer for layer, _ in heads})


class _Rows:
    """What both kinds of cached runs share: the prompts and sites they read, and per-row decisions."""

    input_ids: torch.Tensor  # [rows, pos]
    positions: torch.Tensor  # [rows] each row's site in the prompt

    def reads(self, input_ids: torch.Tensor, sites: torch.Tensor) -> bool:
        """Whether these runs are those of `input_ids` [rows, pos] edited at `sites` [rows] (equal values)."""
        same_shape = self.input_ids.shape == input_ids.shape and self.positions.shape == sites.shape
        return same_shape and torch.equal(self.positions, sites) and torch.equal(self.input_ids, input_ids)

    def decisions(self, heads, cf: torch.Tensor, targets: torch.Tensor, batch_size: int) -> torch.Tensor:
        raise NotImplementedError


class PrefixRuns(_Rows):
    """Clean prompts cut at the earliest site of their rows: the prefix's key-value cache (kept while it fits
    `limit` bytes, by default `STORE_BYTES`) and last-position logits of any rows under a site edit. Targets
    come with each call, so the masks of several desiderata over the same prompts can share one."""

    def __init__(
        self,
        study: ModelUnderStudy,
        input_ids: torch.Tensor,
        sites: torch.Tensor,
        batch_size: int,
        limit: int | None = None,
    ):
        self.study, self.limit = study, STORE_BYTES if limit is None else limit
        self.input_ids = input_ids  # [rows, pos]
        self.positions = sites  # [rows] each row's site in the prompt
        self.start = int(sites.min())  # the first position an edit at the sites can change
        self.sites = (sites - self.start)[:, None]  # [rows, 1] each row's site inside the suffix
        self.entries = self._store(batch_size) if self.start > 0 else None

    def _prefill(self, rows) -> list[tuple]:
        """Keys and values of the prefix of `rows`: per layer (k, v[, window]), each [rows, kv, start, d]."""
        with torch.no_grad():
            cache = self.study.prefill(self.input_ids[rows, : self.start].to(self.study.device))
        return self.study.cache_entries(cache)

    def _store(self, batch_size: int) -> list[tuple] | None:
        """The whole split's prefix cache, or None (recompute per call) when it would exceed `limit`."""
        parts = []
        for start in range(0, len(self.input_ids), batch_size):
            parts.append(self._prefill(slice(start, start + batch_size)))
            if len(parts) == 1:  # the first chunk tells the size per row
                row_bytes = sum(k.nbytes + v.nbytes for k, v, *_ in parts[0]) / len(parts[0][0][0])
                if row_bytes * len(self.input_ids) > self.limit:
                    return None
        joined = []
        for chunks in zip(*parts, strict=True):  # one layer: every chunk's (k, v[, window])
            keys, values = (torch.cat([chunk[i] for chunk in chunks]) for i in (0, 1))
            joined.append((keys, values, *chunks[0][2:]))  # [rows, kv, start, d] each
        return joined

    def _cache(self, rows: torch.Tensor):
        """A fresh cache of the prefix of `rows` [batch] (from the store, or computed now)."""
        if self.entries is None:
            return self.study.cache_of(self._prefill(rows))
        picked = [(k[rows.to(k.device)], v[rows.to(v.device)], *rest) for k, v, *rest in self.entries]
        return self.study.cache_of(picked)  # per layer [batch, kv, start, d], each on its layer's device

    def logits(self, rows: torch.Tensor, edit, layers: Sequence[int], k: int = 1) -> torch.Tensor:
        """Last-position logits [batch * k, vocab] of `rows` [batch] with `edit` at their sites in `layers`;
        each row fans out into k (row i * k + j) from the lowest of `layers` on: below it they are equal."""
        ids = self.input_ids[rows].to(self.study.device)  # [batch, pos]
        cache = self._cache(rows) if self.start > 0 else None  # before the hooks: the prefix is unedited
        fan = nullcontext()
        if k > 1:
            fan = repeat_rows(self.study.adapter, layers[0], len(rows), k)
            if cache is not None:
                self.study.repeat_cached_rows(cache, k, layers[0])
        sites = self.sites[rows].repeat_interleave(k, 0)  # [batch * k, 1]
        with fan, edit_head_outputs(self.study.adapter, edit, sites, layers):
            if cache is None:  # the site is the first token: nothing to cache
                return forward_last(self.study.model, ids)
            return self.study.extend(ids[:, self.start :], cache, last_only=True)[:, -1]

    def target_logits(self, rows: torch.Tensor, heads, cf: torch.Tensor, masks: torch.Tensor, targets):
        """Target logit [batch, k] of `rows` [batch] under each of k masks `masks` [k, head] (with grad),
        mixing in each mask's counterfactual heads cf [batch, k, head, d]; `targets` [rows, k] are the
        target ids of every row of the split, per mask."""
        layers, k = _layers(heads), len(masks)
        logits = self.logits(rows, mixing_edit(heads, layers, masks, cf.flatten(0, 1)), layers, k)
        return target_logits(logits, targets[rows])

    @torch.inference_mode()
    def decisions(
        self, heads: Sequence[Head], cf: torch.Tensor, targets: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        """Whether each row's argmax is its target (`targets` [rows]) with `heads` replaced by cf
        [rows, len(heads), d]: [rows] bool, on the CPU (no heads: the clean run)."""
        zeros = torch.zeros(len(heads), device=self.study.device)  # m = 0: the counterfactual value
        correct = []
        for rows in torch.arange(len(self.input_ids)).split(batch_size):
            edit = mixing_edit(heads, _layers(heads), zeros, cf[rows])  # one mask: k = 1
            predicted = self.logits(rows, edit, _layers(heads)).argmax(-1).cpu()
            correct.append(predicted == targets[rows])
        return torch.cat(correct)


class RunsBySite(_Rows):
    """Rows whose sites differ (structure readers, read at the query label's earlier occurrence, which moves
    with the queried box): one `PrefixRuns` per distinct site, so that each row recomputes only the tokens
    from its own site on; target logits and decisions come back in row order. The per-site caches share one
    `STORE_BYTES`. A training batch mixes sites, so it runs as one small run per site it holds: alone, one
    mask's batch of 8 split so was no faster (1.06x); with the masks of every desideratum in each run
    (`masking.train_masks`) the runs are as many rows again per mask."""

    def __init__(self, study: ModelUnderStudy, input_ids: torch.Tensor, sites: torch.Tensor, batch_size: int):
        self.input_ids, self.positions = input_ids, sites
        self.parts = []  # (rows [n], their runs)
        self.local = torch.empty(len(sites), dtype=torch.long)  # each row's index among its site's rows
        for site in sites.unique().tolist():
            rows = (sites == site).nonzero()[:, 0]
            limit = STORE_BYTES * len(rows) // len(sites)
            self.parts.append((rows, PrefixRuns(study, input_ids[rows], sites[rows], batch_size, limit)))
            self.local[rows] = torch.arange(len(rows))

    def target_logits(self, rows: torch.Tensor, heads, cf: torch.Tensor, masks: torch.Tensor, targets):
        """`PrefixRuns.target_logits` of the batch `rows` [batch], one run per site among them, [batch, k]
        in the batch's order."""
        picked, values = [], []
        for part, runs in self.parts:
            where = torch.isin(rows, part).nonzero()[:, 0]  # the batch's rows read at this site
            if len(where):
                picked.append(where)
                values.append(
                    runs.target_logits(self.local[rows[where]], heads, cf[where], masks, targets[part])
                )
        return torch.cat(values)[torch.cat(picked).argsort()]

    def decisions(self, heads, cf: torch.Tensor, targets: torch.Tensor, batch_size: int) -> torch.Tensor:
        """`PrefixRuns.decisions` of every site's rows, in row order: [rows] bool."""
        correct = torch.zeros(len(self.input_ids), dtype=torch.bool)
        for rows, runs in self.parts:
            correct[rows] = runs.decisions(heads, cf[rows], targets[rows], batch_size)
        return correct


class PrefixStore:
    """The `PrefixRuns` of one split, shared by every mask trained or validated on it: one per distinct
    (clean prompts, sites), so groups read at the same site and desiderata with the same clean prompts
    prefill the split once. Prompts and sites are compared by value (`PrefixRuns.reads`), never assumed
    equal; each kept cache is capped by `STORE_BYTES` as alone, and lives as long as the store."""

    def __init__(self, study: ModelUnderStudy, batch_size: int):
        self.study, self.batch_size = study, batch_size
        self.runs: list[PrefixRuns | RunsBySite] = []

    def get(self, input_ids: torch.Tensor, sites: torch.Tensor, by_site: bool = False) -> _Rows:
        """The runs of `input_ids` [rows, pos] edited at `sites` [rows]: the stored ones, else new; one
        `PrefixRuns` from the earliest site, or with `by_site` the `RunsBySite` of every site."""
        kind = RunsBySite if by_site else PrefixRuns
        for runs in self.runs:
            if type(runs) is kind and runs.reads(input_ids, sites):
                return runs
        self.runs.append(kind(self.study, input_ids, sites, self.batch_size))
        return self.runs[-1]
