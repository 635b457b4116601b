"""Batched path patching of one stage: every sender head's effect on the answer probability (SPEC section 4).

A path patch puts the sender's counterfactual output in the clean run, freezes every other head at its
clean value (MLPs recompute) and lets the change reach only the receivers. Two facts make the sweep cheap:

1. Pass 1 (sender -> receivers, or -> logits): with every head frozen, nothing moves between positions,
   so only the sender's own position changes. It is replayed alone, one token per row.
2. Pass 2 (receivers -> logits): only positions from the receivers' position on can change, so it runs
   that suffix on top of a cached clean prefix.

The batch dimension carries (prompt, sender) rows. Every prompt also runs a null sender (its own clean
value) through the same passes; effects are relative to it, so an unchanged sender has effect exactly 0.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmark.accuracy import answer_probability, model_device
from benchmark.circuit import Group, Head, Site, site_positions
from benchmark.data import EncodedPairs
from benchmark.hooks import capture_head_outputs, capture_qkv, edit_head_outputs, patch_qkv
from benchmark.models import QKV, ArchitectureAdapter


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


@dataclass
class _Prompts:
    """Clean-run facts of the prompts, at the stage's site."""

    pairs: EncodedPairs
    positions: torch.Tensor  # [prompt] sender / receiver position
    z_clean: torch.Tensor  # [prompt, layer, head, d] head outputs at the site, clean run
    z_cf: torch.Tensor  # [prompt, layer, head, d] head outputs at the site, counterfactual run


@torch.inference_mode()
def _heads_at_site(
    model, adapter, ids: torch.Tensor, positions: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Head outputs of every layer at one position per row: [rows, layer, head, d] on the CPU."""
    device, parts = model_device(model), []
    for start in range(0, len(ids), batch_size):
        rows = slice(start, start + batch_size)
        with capture_head_outputs(adapter, positions[rows, None], to_device="cpu") as recording:
            model(ids[rows].to(device), use_cache=False)
        parts.append(recording.stack()[:, 0])
    return torch.cat(parts)


def _prepare(model, adapter, pairs: EncodedPairs, site: Site, batch_size: int) -> _Prompts:
    positions = site_positions(site, pairs.clean)
    z_clean = _heads_at_site(model, adapter, pairs.clean.input_ids, positions, batch_size)
    z_cf = _heads_at_site(
        model, adapter, pairs.counterfactual.input_ids, site_positions(site, pairs.counterfactual), batch_size
    )
    return _Prompts(pairs, positions, z_clean, z_cf)


def _freeze_and_patch(prompts: _Prompts, prompt_idx, senders: torch.Tensor):
    """Edit for pass 1: every head at its clean value, the row's sender (layer >= 0) at its counterfactual."""

    def edit(sites: torch.Tensor, layer: int) -> torch.Tensor:  # sites [rows, 1, head, d]
        new = prompts.z_clean[prompt_idx, layer][:, None].clone()
        rows = (senders[:, 0] == layer).nonzero()[:, 0]
        heads = senders[rows, 1]
        new[rows, 0, heads] = prompts.z_cf[prompt_idx[rows], layer, heads]
        return new.to(sites.device, sites.dtype)

    return edit


def _pass1(model, adapter, prompts: _Prompts, prompt_idx, senders, stage: Stage, receiver_layers):
    """Replay the site's token alone with every head frozen: receivers' q/v, or p(answer) for logits."""
    ids = prompts.pairs.clean.input_ids
    token = ids[prompt_idx, prompts.positions[prompt_idx]][:, None].to(model_device(model))
    position_ids = prompts.positions[prompt_idx][:, None].to(token.device)
    with edit_head_outputs(adapter, _freeze_and_patch(prompts, prompt_idx, senders)):
        if stage.receivers is None:
            logits = model(token, position_ids=position_ids, use_cache=False).logits[:, -1]
            return answer_probability(logits, prompts.pairs.clean.answer_ids[prompt_idx])
        with capture_qkv(adapter, stage.receiver_kind, layers=receiver_layers) as recording:
            model(token, position_ids=position_ids, use_cache=False)
    return recording.stack()  # [rows, 1, receiver layer, qkv head, d]


def _receiver_mask(adapter: ArchitectureAdapter, receivers: tuple[Head, ...], kind: QKV):
    """Receiver layers and a [layer, qkv head] mask; k and v are patched per key-value group."""
    layers = sorted({layer for layer, _ in receivers})
    mask = torch.zeros(len(layers), adapter.qkv_heads(kind), dtype=torch.bool)
    for layer, head in receivers:
        mask[layers.index(layer), head if kind is QKV.Q else adapter.kv_group(head)] = True
    return layers, mask


def _senders(adapter: ArchitectureAdapter, receivers: tuple[Head, ...] | None) -> list[Head]:
    """Heads that can reach the receivers: all for logits, else those below the last receiver layer."""
    top = adapter.shape.n_layers if receivers is None else max(layer for layer, _ in receivers)
    return [(layer, head) for layer in range(top) for head in range(adapter.shape.n_heads)]


def _chunks(prompts: _Prompts, stage: Stage, max_prompts: int) -> Iterator[torch.Tensor]:
    """Prompt indices in chunks that share one receiver position (so they share a prefix length)."""
    keys = prompts.positions if stage.receivers is not None else torch.zeros_like(prompts.positions)
    for key in keys.unique().tolist():
        members = (keys == key).nonzero()[:, 0]
        yield from members.split(max_prompts)


class _SuffixRun:
    """Pass 2 for a prompt chunk repeated k times: from the receivers' position on, over a cached prefix."""

    def __init__(
        self, model, adapter, prompts: _Prompts, chunk: torch.Tensor, k: int, stage: Stage, receivers
    ):
        self.model, self.adapter, self.kind = model, adapter, stage.receiver_kind
        self.layers, self.mask = _receiver_mask(adapter, receivers, stage.receiver_kind)
        ids = prompts.pairs.clean.input_ids[chunk].to(model_device(model))
        start = int(prompts.positions[chunk[0]])  # chunks share the receivers' position
        prefix = model(ids[:, :start], use_cache=True)
        self.cache = getattr(prefix, "cache", None) or prefix.past_key_values
        self.cache_kwarg = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
        self.cache.batch_repeat_interleave(k)
        self.suffix = ids[:, start:].repeat_interleave(k, 0)
        self.answers = prompts.pairs.clean.answer_ids[chunk].repeat_interleave(k)

    def __call__(self, receiver_values: torch.Tensor) -> torch.Tensor:
        """p(answer) with the receivers' q/v at the suffix's first token set to `receiver_values`."""
        first = torch.zeros(len(self.suffix), 1, dtype=torch.long)
        with patch_qkv(self.adapter, self.kind, receiver_values, first, self.mask[None, None], self.layers):
            kwargs = {self.cache_kwarg: self.cache, "use_cache": True}
            logits = self.model(self.suffix, **kwargs).logits[:, -1]
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
    model,
    adapter: ArchitectureAdapter,
    pairs: EncodedPairs,
    stage: Stage,
    receivers: tuple[Head, ...] | None = None,
    rows_per_pass: int = 64,
    batch_size: int = 32,
    progress: bool = True,
) -> StageEffects:
    """Effect of every head as a sender in `stage`: mean over prompts of (p_patched - p_null) / p_null."""
    if stage.receivers is not None and not receivers:
        raise ValueError(
            f"stage {stage.group.value} needs receivers, but group {stage.receivers.value} is empty"
        )
    prompts = _prepare(model, adapter, pairs, stage.site, batch_size)
    senders = _senders(adapter, receivers if stage.receivers is not None else None)
    n, shape = len(pairs), adapter.shape
    relative = torch.zeros(n, shape.n_layers, shape.n_heads)  # [prompt, layer, head]
    bar = tqdm(total=n * len(senders), desc=f"path patching: {stage.group.value}", disable=not progress)
    for chunk in _chunks(prompts, stage, rows_per_pass):
        k = max(1, rows_per_pass // len(chunk))
        suffix = (
            None
            if stage.receivers is None
            else _SuffixRun(model, adapter, prompts, chunk, k, stage, receivers)
        )
        layers = None if suffix is None else suffix.layers
        probabilities: dict[Head, torch.Tensor] = {}
        for batch in _sender_batches(senders, k):
            prompt_idx = chunk.repeat_interleave(k)
            sender_rows = torch.tensor(batch).repeat(len(chunk), 1)  # [rows, 2]
            out = _pass1(model, adapter, prompts, prompt_idx, sender_rows, stage, layers)
            p = (out if suffix is None else suffix(out)).view(len(chunk), k).cpu()
            probabilities.update({sender: p[:, i] for i, sender in enumerate(batch)})
            bar.update(len(chunk) * sum(s != (-1, -1) for s in batch))
        p_null = probabilities[(-1, -1)]
        for layer, head in senders:
            relative[chunk, layer, head] = (probabilities[(layer, head)] - p_null) / p_null
    bar.close()
    stderr = relative.std(0) / n**0.5 if n > 1 else torch.full_like(relative[0], float("nan"))
    return StageEffects(relative.mean(0), stderr, n)
