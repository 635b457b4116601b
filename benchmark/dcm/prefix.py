"""DCM on a cached prefix: compute what the mask cannot change once, recompute only from the group's site on.

A DCM mask edits the group's heads at one position per row (the group's site: the last token for value
fetchers and position transmitters, the query label for position detectors, the query label's earlier
occurrence for structure readers). Attention is causal, so every token before the earliest site of a set
of rows, in every layer, is the same whatever the mask is. `PrefixRuns` runs that prefix once without
gradients and keeps its key-value cache; each training step or validation then runs only the suffix (the
tokens from the earliest site on) over the cached prefix, with gradients reaching the mask through the
suffix alone. This is exact for every group, since each has exactly one site per row; where sites differ
between rows (structure readers) the prefix ends at the earliest one, so later rows recompute a few tokens
more than they need and the saving is smaller. The mask itself is the same site edit as the full pass
(`mixing_edit`), a plain hook on the unmodified output projection.

The cache is kept across calls (training epochs, every validated head set) while it fits `STORE_BYTES`;
above that each call recomputes its rows' prefix, which still saves the backward pass through it. Nothing in
it depends on the group's heads or the desideratum's targets, only on the clean prompts and the sites: a
`PrefixStore` lets every mask of a split that reads the same prompts at the same sites share one (`run_dcm`:
value fetchers and position transmitters, both read at the last token, of every desideratum, whose clean
prompts are the split's same rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from benchmark.accuracy import forward_last
from benchmark.circuit import Head
from benchmark.hooks import edit_head_outputs
from benchmark.models.study import ModelUnderStudy

# Largest prefix cache (keys and values of all layers, all rows) kept across calls, in bytes.
STORE_BYTES = 1 << 30


def mixing_edit(heads: Sequence[Head], layers: Sequence[int], mask: torch.Tensor, cf: torch.Tensor):
    """Site edit m * clean + (1 - m) * cf for the masked heads; cf is [batch, n, d] in `heads` order."""
    slots = {layer: [i for i, (l_, _) in enumerate(heads) if l_ == layer] for layer in layers}
    columns = {layer: [heads[i][1] for i in slots[layer]] for layer in layers}

    def edit(sites: torch.Tensor, index: int) -> torch.Tensor:  # sites [batch, 1, head, d]
        layer = layers[index]
        m = mask[slots[layer]].to(sites.dtype)[None, None, :, None]  # [1, 1, k, 1]
        other = cf[:, None, slots[layer]].to(sites.device, sites.dtype)  # [batch, 1, k, d]
        out = sites.clone()
        out[:, :, columns[layer]] = m * sites[:, :, columns[layer]] + (1 - m) * other
        return out

    return edit


def mask_loss(logits: torch.Tensor, target_ids: torch.Tensor, mask: torch.Tensor, sparsity: float):
    """-mean(target logit) + sparsity * sum(1 - m), from last-position logits [batch, vocab]."""
    target = logits.float().gather(1, target_ids[:, None].to(logits.device))[:, 0]  # [batch]
    return -target.mean() + sparsity * (1 - mask).sum()


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

    def logits(self, rows: torch.Tensor, edit, layers: Sequence[int]) -> torch.Tensor:
        """Last-position logits [batch, vocab] of `rows` [batch] with `edit` at their sites in `layers`."""
        ids = self.input_ids[rows].to(self.study.device)  # [batch, pos]
        cache = self._cache(rows) if self.start > 0 else None  # before the hooks: the prefix is unedited
        with edit_head_outputs(self.study.adapter, edit, self.sites[rows], layers):
            if cache is None:  # the site is the first token: nothing to cache
                return forward_last(self.study.model, ids)
            return self.study.extend(ids[:, self.start :], cache, last_only=True)[:, -1]

    def loss(self, rows: torch.Tensor, heads, cf: torch.Tensor, mask: torch.Tensor, targets, sparsity: float):
        """The DCM loss of `rows` [batch] with cf [batch, head, d] mixed in by `mask` [head] (with grad), for
        the target ids `targets` [rows] of every row."""
        logits = self.logits(rows, mixing_edit(heads, _layers(heads), mask, cf), _layers(heads))
        return mask_loss(logits, targets[rows], mask, sparsity)

    @torch.inference_mode()
    def decisions(
        self, heads: Sequence[Head], cf: torch.Tensor, targets: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        """Whether each row's argmax is its target (`targets` [rows]) with `heads` replaced by cf
        [rows, len(heads), d]: [rows] bool, on the CPU (no heads: the clean run)."""
        zeros = torch.zeros(len(heads), device=self.study.device)  # m = 0: the counterfactual value
        correct = []
        for rows in torch.arange(len(self.input_ids)).split(batch_size):
            edit = mixing_edit(heads, _layers(heads), zeros, cf[rows])
            predicted = self.logits(rows, edit, _layers(heads)).argmax(-1).cpu()
            correct.append(predicted == targets[rows])
        return torch.cat(correct)


class RunsBySite(_Rows):
    """Rows whose sites differ (structure readers, read at the query label's earlier occurrence, which moves
    with the queried box): one `PrefixRuns` per distinct site, so that each row recomputes only the tokens
    from its own site on, and decisions come back in row order. The per-site caches share one `STORE_BYTES`.
    For scoring (validation, test); training keeps the full pass, since a training batch mixes sites and
    splitting it into a small run per site was no faster (1.06x, see `masking.PREFIX_GROUPS`)."""

    def __init__(self, study: ModelUnderStudy, input_ids: torch.Tensor, sites: torch.Tensor, batch_size: int):
        self.input_ids, self.positions = input_ids, sites
        self.parts = []  # (rows [n], their runs)
        for site in sites.unique().tolist():
            rows = (sites == site).nonzero()[:, 0]
            limit = STORE_BYTES * len(rows) // len(sites)
            self.parts.append((rows, PrefixRuns(study, input_ids[rows], sites[rows], batch_size, limit)))

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
