"""Batched path patching of one stage: every sender head's effect on the answer probability (SPEC section 4).

A path patch puts the sender's counterfactual output in the clean run, freezes every other head at its
clean value (MLPs recompute) and lets the change reach only the receivers. Two facts make the sweep cheap:

1. Pass 1 (sender -> receivers, or -> logits): with every head frozen, nothing moves between positions,
   so only the sender's own position changes. It is replayed alone, one token per row, and stops at the
   highest receiver's q or v projection (`hooks.stop_after`): the layers above it are never read.
2. Pass 2 (receivers -> logits): the receivers are read where their group works (A and B at the last
   token, C at the query label). Their q there, or their v at the sender's position, is replaced, and
   only the tokens from that reading position on are recomputed, over a cached clean prefix: heads
   before it keep their clean outputs, so the change reaches the receivers and nothing else.

The batch dimension carries (prompt, sender) rows. Every prompt also runs a null sender (its own clean
value) through the same passes; effects are relative to it, so an unchanged sender has effect exactly 0.

3. A prompt's rows of one pass are equal below the lowest layer where they can differ: in pass 1 the
   lowest sender's layer of the batch (or a lower receiver's, whose q/v is read), in pass 2 the lowest
   receiver's. Those layers run one row per prompt, and the rows fan out from there (`hooks.expand_rows`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial

import torch
from tqdm.auto import tqdm

from benchmark.accuracy import answer_probability
from benchmark.circuit import GROUP_SITE, Group, Head, Site
from benchmark.circuit_run import site_positions
from benchmark.data import EncodedPairs
from benchmark.head_cache import capture_heads
from benchmark.hooks import capture_qkv, edit_head_outputs, patch_qkv, repeat_rows, stop_after
from benchmark.models import QKV, ArchitectureAdapter, ModelUnderStudy
from benchmark.models.study import model_device


@dataclass(frozen=True)
class Stage:
    """One path-patching stage: the group it finds, where, and which receivers the change may reach."""

    group: Group
    site: Site  # sender position; also the receivers' position
    receivers: Group | None  # None: the logits
    receiver_kind: QKV | None = None


STAGES: tuple[Stage, ...] = (
    Stage(Group.VALUE_FETCHER, Site.LAST, None),
    Stage(Group.POSITION_TRANSMITTER, Site.LAST, Group.VALUE_FETCHER, QKV.Q),
    Stage(Group.POSITION_DETECTOR, Site.QUERY_LABEL, Group.POSITION_TRANSMITTER, QKV.V),
    Stage(Group.STRUCTURE_READER, Site.QUERY_LABEL_EARLIER, Group.POSITION_DETECTOR, QKV.V),
)


@dataclass(frozen=True)
class StageEffects:
    """Per-head effects of one stage: mean relative change of p(answer) and its standard error."""

    mean: torch.Tensor  # [layer, head]
    stderr: torch.Tensor  # [layer, head]
    n_prompts: int

    @classmethod
    def of(cls, relative: torch.Tensor) -> StageEffects:
        """Mean and standard error over prompts of per-prompt effects [prompt, layer, head]."""
        n = len(relative)
        stderr = relative.std(0) / n**0.5 if n > 1 else torch.full_like(relative[0], float("nan"))
        return cls(relative.mean(0), stderr, n)


@dataclass
class SiteRuns:
    """The prompts' head outputs at the stage's sender site, clean and counterfactual."""

    pairs: EncodedPairs
    positions: torch.Tensor  # [prompt] sender / receiver position
    z_clean: torch.Tensor  # [prompt, layer, head, d] head outputs at the site, clean run
    z_cf: torch.Tensor  # [prompt, layer, head, d] head outputs at the site, counterfactual run
    last_prefix: dict = field(default_factory=dict, repr=False)  # `_prefix`'s memory, shared by sites


def _prefix(study: ModelUnderStudy, ids: torch.Tensor, last: dict):
    """The key-value cache of `ids` [prompt, pos]: a copy of the last one made if it was of the same ids (a
    stage's AtP run and its sweep prefill the same prompts, and so do stages B and C, both read at the
    last token), else a new prefill, which `last` then keeps (only copies are handed out: runs edit them)."""
    key = (tuple(ids.shape), ids.cpu().numpy().tobytes())
    if last.get("key") != key:
        last.clear()
        last.update(key=key, entries=study.cache_entries(study.prefill(ids)))
    copies = [tuple(t.clone() if torch.is_tensor(t) else t for t in entry) for entry in last["entries"]]
    return study.cache_of(copies)


def _heads_at_sites(model, adapter, ids: torch.Tensor, positions: torch.Tensor, batch_size: int):
    """Head outputs of every layer at each row's sites `positions` [rows, site]: [rows, site, layer, head,
    d] on the CPU, from one pass over the rows."""
    shape, n_sites = adapter.shape, positions.shape[1]
    every_head = torch.ones(n_sites, shape.n_layers, shape.n_heads, dtype=torch.bool)  # [site, layer, head]
    cache = capture_heads(model, adapter, ids, positions, every_head, batch_size)
    return cache.values.view(len(ids), n_sites, shape.n_layers, shape.n_heads, -1)


def check_receivers(stage: Stage, receivers: tuple[Head, ...] | None) -> None:
    """A stage that reads receivers needs at least one."""
    if stage.receivers is not None and not receivers:
        raise ValueError(
            f"stage {stage.group.value} needs receivers, but group {stage.receivers.value} is empty"
        )


def prepare(study: ModelUnderStudy, pairs: EncodedPairs, stage: Stage, batch_size: int) -> SiteRuns:
    """The clean and counterfactual head outputs of every prompt at the stage's sender site."""
    return prepare_sites(study, pairs, [stage.site], batch_size)[stage.site]


def prepare_sites(
    study: ModelUnderStudy, pairs: EncodedPairs, sites: list[Site], batch_size: int
) -> dict[Site, SiteRuns]:
    """`prepare` for each of `sites` (the stages' sender sites) from one clean and one counterfactual pass:
    a head's output at one position is the same whichever other positions are read in the same pass."""
    sites = list(dict.fromkeys(sites))
    model, adapter, clean, cf = study.model, study.adapter, pairs.clean, pairs.counterfactual
    at_clean = torch.stack([site_positions(site, clean) for site in sites], dim=1)  # [prompt, site]
    at_cf = torch.stack([site_positions(site, cf) for site in sites], dim=1)
    z_clean = _heads_at_sites(model, adapter, clean.input_ids, at_clean, batch_size)
    z_cf = _heads_at_sites(model, adapter, cf.input_ids, at_cf, batch_size)
    last: dict = {}  # the sites' runs share the last prefix made
    return {
        site: SiteRuns(pairs, at_clean[:, i], z_clean[:, i].contiguous(), z_cf[:, i].contiguous(), last)
        for i, site in enumerate(sites)
    }


def _freeze_and_patch(prompts: SiteRuns, prompt_idx, senders: torch.Tensor, split: int | None = None, k=1):
    """Edit for pass 1: every head at its clean value, the row's sender (layer >= 0) at its counterfactual.
    Below `split` (`_split_layer`) the rows are one per prompt (each prompt's k rows are consecutive),
    and no sender is there."""
    inputs = prompt_idx[::k]

    def edit(sites: torch.Tensor, layer: int) -> torch.Tensor:  # sites [rows, 1, head, d]
        if split is not None and layer < split:
            return prompts.z_clean[inputs, layer][:, None].to(sites.device, sites.dtype)
        new = prompts.z_clean[prompt_idx, layer][:, None].clone()
        rows = (senders[:, 0] == layer).nonzero()[:, 0]
        heads = senders[rows, 1]
        new[rows, 0, heads] = prompts.z_cf[prompt_idx[rows], layer, heads]
        return new.to(sites.device, sites.dtype)

    return edit


def _split_layer(layers: list[int], k: int) -> int | None:
    """Where a prompt's k rows (consecutive) can first differ: the lowest of `layers` (the senders' and
    receivers' of one pass); None where they are not several (k = 1) or never differ."""
    return min(layers) if k > 1 and layers else None


def _pass1(
    model, adapter, prompts: SiteRuns, prompt_idx, senders, stage: Stage, receiver_layers, graph=False, k=1
):
    """Replay the site's token alone with every head frozen: receivers' q/v, or p(answer) for logits
    (`graph`: the receivers' q/v stay differentiable, for attribution patching). `k` > 1: the rows are
    each prompt's k senders in a row, and the layers below the lowest sender's (or receiver's) run once
    per prompt, their rows being equal there (`hooks.expand_rows`)."""
    sender_layers = senders[:, 0][senders[:, 0] >= 0].tolist()
    split = _split_layer(sender_layers + list(receiver_layers or ()), k)
    inputs = prompt_idx if split is None else prompt_idx[::k]
    ids = prompts.pairs.clean.input_ids
    token = ids[inputs, prompts.positions[inputs]][:, None].to(model_device(model))
    position_ids = prompts.positions[inputs][:, None].to(token.device)
    expand = nullcontext() if split is None else repeat_rows(adapter, split, len(inputs), k)
    with edit_head_outputs(adapter, _freeze_and_patch(prompts, prompt_idx, senders, split, k)), expand:
        if stage.receivers is None:
            logits = model(token, position_ids=position_ids, use_cache=False).logits[:, -1]
            return answer_probability(logits, prompts.pairs.clean.answer_ids[prompt_idx])
        last = adapter.qkv_projection(max(receiver_layers), stage.receiver_kind)
        capture = capture_qkv(adapter, stage.receiver_kind, layers=receiver_layers, keep_graph=graph)
        with capture as recording, stop_after(last):  # nothing above the highest receiver is read
            model(token, position_ids=position_ids, use_cache=False)
    return recording.stack()  # [rows, 1, receiver layer, qkv head, d]


def receiver_mask(adapter: ArchitectureAdapter, receivers: tuple[Head, ...], kind: QKV):
    """Receiver layers and a [layer, qkv head] mask; k and v are patched per key-value group."""
    layers = sorted({layer for layer, _ in receivers})
    mask = torch.zeros(len(layers), adapter.qkv_heads(kind), dtype=torch.bool)
    for layer, head in receivers:
        mask[layers.index(layer), head if kind is QKV.Q else adapter.kv_group(head)] = True
    return layers, mask


def senders_of(adapter: ArchitectureAdapter, receivers: tuple[Head, ...] | None) -> list[Head]:
    """Heads that can reach the receivers: all for logits, else those below the last receiver layer."""
    top = adapter.shape.n_layers if receivers is None else max(layer for layer, _ in receivers)
    return [(layer, head) for layer in range(top) for head in range(adapter.shape.n_heads)]


def stage_senders(
    adapter: ArchitectureAdapter, stage: Stage, receivers: tuple[Head, ...] | None
) -> list[Head]:
    """The senders of `stage`: every head for the logits stage, else those that can reach `receivers`."""
    return senders_of(adapter, receivers if stage.receivers is not None else None)


def _chunks(n_prompts: int, max_prompts: int) -> Iterator[torch.Tensor]:
    """Prompt indices in chunks of at most `max_prompts`."""
    yield from torch.arange(n_prompts).split(max_prompts)


class _SuffixRun:
    """Pass 2 for a prompt chunk repeated k times: a clean prefix up to the receivers' reading position (their
    group's position), then the rest, with the receivers' q (read there) or v (cached, at the senders'
    position) replaced. Heads before the reading position keep their clean outputs. Below the lowest
    receiver layer a prompt's k rows are equal: those layers run, and cache, one row per prompt."""

    def __init__(
        self, study: ModelUnderStudy, prompts: SiteRuns, chunk: torch.Tensor, k: int, stage: Stage, receivers
    ):
        if stage.receiver_kind is QKV.K:
            raise ValueError("path patching into keys is not supported (cached keys carry rotary embeddings)")
        self.study, self.kind, self.k, adapter = study, stage.receiver_kind, k, study.adapter
        self.layers, self.mask = receiver_mask(adapter, receivers, stage.receiver_kind)
        ids = prompts.pairs.clean.input_ids[chunk].to(study.device)
        reader = int(site_positions(GROUP_SITE[stage.receivers], prompts.pairs.clean)[chunk[0]])
        self.cache = _prefix(study, ids[:, :reader], prompts.last_prefix)
        self.split = _split_layer(self.layers, k)
        if self.split is not None:  # k > 1: the prefix's rows k times each from the split on
            study.repeat_cached_rows(self.cache, k, from_layer=self.split)
        self.suffix = ids[:, reader:]  # [chunk, pos]: k rows each from the lowest receiver layer on
        self.n_rows = len(chunk) * k
        self.answers = prompts.pairs.clean.answer_ids[chunk].repeat_interleave(k)
        self.sender_positions = prompts.positions[chunk].repeat_interleave(k)  # [rows]
        self.patch_q = partial(
            patch_qkv, adapter, QKV.Q, positions=torch.zeros(self.n_rows, 1, dtype=torch.long)
        )

    def _write_values(self, receiver_values: torch.Tensor) -> None:
        """Put the receivers' new v [rows, 1, layer, kv head, d] into the cache at the senders' position."""
        rows = torch.arange(self.n_rows)[:, None]
        for index, layer in enumerate(self.layers):
            groups = self.mask[index].nonzero()[:, 0][None]  # [1, group]
            cached = self.study.cached_values(self.cache, layer)
            new = receiver_values[:, 0, index][rows, groups]  # [rows, group, d]
            new = new.to(cached.device, cached.dtype)
            where = (rows.to(cached.device), groups.to(cached.device), self.sender_positions[:, None])
            # out of place, so that attribution patching can differentiate through it
            self.study.set_cached_values(self.cache, layer, cached.index_put(where, new))

    def __call__(self, receiver_values: torch.Tensor) -> torch.Tensor:
        """p(answer) with the receivers' q or v replaced by `receiver_values` (from pass 1)."""
        if self.kind is QKV.Q:
            context = self.patch_q(receiver_values, mask=self.mask[None, None], layers=self.layers)
        else:
            self._write_values(receiver_values)
            context = nullcontext()
        expand = (
            nullcontext()
            if self.split is None
            else repeat_rows(self.study.adapter, self.split, len(self.suffix), self.k)
        )
        with context, expand:
            logits = self.study.extend(self.suffix, self.cache)[:, -1]
        self.cache.crop(-self.suffix.shape[1])
        return answer_probability(logits, self.answers)


def _sender_batches(senders: list[Head], k: int) -> Iterator[list[Head]]:
    """The null sender (-1, -1) first, then the senders, k per batch (the last padded with null senders)."""
    null = (-1, -1)
    padded = [null, *senders]
    padded += [null] * (-len(padded) % k)
    for start in range(0, len(padded), k):
        yield padded[start : start + k]


@torch.inference_mode()
def sweep_stage(
    study: ModelUnderStudy,
    pairs: EncodedPairs,
    stage: Stage,
    receivers: tuple[Head, ...] | None = None,
    rows_per_pass: int = 64,
    batch_size: int = 32,
    progress: bool = True,
    site_runs: SiteRuns | None = None,
    senders: list[Head] | None = None,
) -> StageEffects:
    """Effect of every head as a sender in `stage`: mean over prompts of (p_patched - p_null) / p_null.
    `site_runs`: `prepare`'s output for these pairs and this stage, when the caller has it (or has moved
    its counterfactual values, as the attribution test does). `senders`: patch only these (the others'
    effect is 0), as the attribution pre-filter's verification does; default every head that can reach
    the receivers."""
    check_receivers(stage, receivers)
    model, adapter = study.model, study.adapter
    prompts = prepare(study, pairs, stage, batch_size) if site_runs is None else site_runs
    if senders is None:
        senders = stage_senders(adapter, stage, receivers)
    n, shape = len(pairs), adapter.shape
    relative = torch.zeros(n, shape.n_layers, shape.n_heads)  # [prompt, layer, head]; 0: cannot reach
    bar = tqdm(total=n * len(senders), desc=f"path patching: {stage.group.value}", disable=not progress)
    for chunk in _chunks(n, rows_per_pass):
        k = max(1, rows_per_pass // len(chunk))
        suffix = None if stage.receivers is None else _SuffixRun(study, prompts, chunk, k, stage, receivers)
        layers = None if suffix is None else suffix.layers
        probabilities: dict[Head, torch.Tensor] = {}
        for batch in _sender_batches(senders, k):
            prompt_idx = chunk.repeat_interleave(k)
            sender_rows = torch.tensor(batch).repeat(len(chunk), 1)  # [rows, 2]
            out = _pass1(model, adapter, prompts, prompt_idx, sender_rows, stage, layers, k=k)
            p = (out if suffix is None else suffix(out)).view(len(chunk), k).cpu()
            probabilities.update({sender: p[:, i] for i, sender in enumerate(batch)})
            bar.update(len(chunk) * sum(s != (-1, -1) for s in batch))
        p_null = probabilities[(-1, -1)]
        for layer, head in senders:
            relative[chunk, layer, head] = (probabilities[(layer, head)] - p_null) / p_null
    bar.close()
    return StageEffects.of(relative)
