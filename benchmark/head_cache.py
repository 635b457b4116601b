"""Cached head outputs of chosen heads at chosen per-row positions, and their patching into another run.

Path patching caches every head at its sender site of clean and counterfactual prompts.

DCM caches a counterfactual run and patches it into the clean run of the same model; CMAP caches the
fine-tuned model and patches it into the base model. Both go through the o_proj input (`benchmark.hooks`),
and both keep only the heads they patch, on the CPU, so large models need not stay loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmark.accuracy import Intervention, forward_last
from benchmark.circuit import GROUP_SITE, GROUPS, Circuit, Head, Site
from benchmark.circuit_run import site_positions
from benchmark.data import EncodedPrompts
from benchmark.hooks import capture_head_outputs, patch_head_outputs
from benchmark.models import ArchitectureAdapter, HeadShape
from benchmark.models.study import model_device


@dataclass(frozen=True)
class HeadCache:
    """Outputs of the heads where `mask` is true at each row's sites, in `mask.nonzero()` order."""

    mask: torch.Tensor  # [site, layer, head] bool
    values: torch.Tensor  # [rows, n, d], n = mask.sum()

    def __post_init__(self) -> None:
        if self.values.shape[1] != int(self.mask.sum()):
            raise ValueError(f"{self.values.shape[1]} cached values but {int(self.mask.sum())} masked heads")

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def layers(self) -> tuple[int, ...]:
        """Layers holding at least one cached head, ascending."""
        return mask_layers(self.mask)

    def at_site(self, site: int) -> HeadCache:
        """The heads of one site alone (mask [1, layer, head]): a patch of that site, without the others'."""
        before, n = int(self.mask[:site].sum()), int(self.mask[site].sum())  # values are site-major
        return HeadCache(self.mask[site : site + 1], self.values[:, before : before + n])

    def subset(self, keep: torch.Tensor) -> HeadCache:
        """Only the heads where `keep` [site, layer, head] is true; they must all be cached."""
        keep = keep.bool()
        if (keep & ~self.mask).any():
            raise ValueError("subset asks for heads that are not in the cache")
        return HeadCache(keep, self.values[:, keep[self.mask]])


def mask_layers(mask: torch.Tensor) -> tuple[int, ...]:
    """Layers where a [site, layer, head] mask has a true entry, ascending."""
    return tuple(int(layer) for layer in mask.any(dim=2).any(dim=0).nonzero()[:, 0])


def site_mask(heads_per_site: Sequence[Iterable[Head]], shape: HeadShape) -> torch.Tensor:
    """Boolean [site, layer, head] mask: site i holds the heads `heads_per_site[i]`."""
    mask = torch.zeros(len(heads_per_site), shape.n_layers, shape.n_heads, dtype=torch.bool)
    for site, heads in enumerate(heads_per_site):
        for layer, head in heads:
            if not (0 <= layer < shape.n_layers and 0 <= head < shape.n_heads):
                raise ValueError(
                    f"head {(layer, head)} is outside the model: "
                    f"{shape.n_layers} layers x {shape.n_heads} heads"
                )
            mask[site, layer, head] = True
    return mask


def sites_positions(sites: Sequence[Site], prompts: EncodedPrompts) -> torch.Tensor:
    """Token index of each site in every row: [rows, site]."""
    return torch.stack([site_positions(site, prompts) for site in sites], dim=1)


def _check_positions(positions: torch.Tensor, input_ids: torch.Tensor) -> None:
    if positions.shape[0] != input_ids.shape[0]:
        raise ValueError(f"{positions.shape[0]} rows of positions for {input_ids.shape[0]} prompts")
    ordered = positions.sort(dim=1).values
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise ValueError("two sites share a token position in some row; merge their heads into one site")


@torch.inference_mode()
def capture_heads(
    model: torch.nn.Module,
    adapter: ArchitectureAdapter,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor,
    batch_size: int = 32,
    progress: bool = False,
) -> HeadCache:
    """Run `input_ids` [rows, pos] and keep the heads of `mask` [site, layer, head] at `positions`
    [rows, site], on the CPU."""
    _check_positions(positions, input_ids)
    if not mask.any():
        return HeadCache(mask, torch.zeros(len(input_ids), 0, adapter.shape.head_dim))
    layers = mask_layers(mask)
    selected = mask[:, list(layers)]  # [site, layer in `layers`, head]
    device, parts = model_device(model), []
    starts = range(0, len(input_ids), batch_size)
    for start in tqdm(starts, desc="cache heads", unit="batch", disable=not progress, leave=False):
        rows = slice(start, start + batch_size)
        with capture_head_outputs(adapter, positions[rows], layers, to_device="cpu") as recording:
            forward_last(model, input_ids[rows].to(device))  # heads only: no logits past the last token
        parts.append(recording.stack()[:, selected])  # [batch, n, d]
    return HeadCache(mask, torch.cat(parts))


def group_caches(
    model, adapter: ArchitectureAdapter, circuit: Circuit, prompts: EncodedPrompts, batch_size: int = 32
) -> dict:
    """{group: its heads' outputs at its own site of `prompts`} for every non-empty group of `circuit`, from
    one pass over the prompts (groups read at one site, such as A and B at the last token, share it)."""
    groups = [group for group in GROUPS if circuit.heads(group)]
    if not groups:
        return {}
    sites = [site for site in Site if any(GROUP_SITE[group] is site for group in groups)]
    heads_at = [[h for g in groups if GROUP_SITE[g] is site for h in circuit.heads(g)] for site in sites]
    mask = site_mask(heads_at, adapter.shape)  # [site, layer, head]
    positions = sites_positions(sites, prompts)  # [rows, site]
    cache = capture_heads(model, adapter, prompts.input_ids, positions, mask, batch_size)
    return {
        group: cache.at_site(sites.index(GROUP_SITE[group])).subset(
            site_mask([circuit.heads(group)], adapter.shape)
        )
        for group in groups
    }


def patch_from_cache(
    adapter: ArchitectureAdapter, cache: HeadCache, positions: torch.Tensor, input_ids: torch.Tensor
) -> Intervention:
    """An intervention writing the cached heads at `positions` [rows, site] of the rows `input_ids`.

    The accuracy functions batch rows in order; the intervention follows them with a cursor (wrapping
    round for a second pass) and checks each batch's tokens, so a reordered batch fails loudly.
    """
    _check_positions(positions, input_ids)
    if len(cache) != len(input_ids):
        raise ValueError(f"the cache holds {len(cache)} rows but {len(input_ids)} prompts are patched")
    cursor = 0

    def intervene(batch: EncodedPrompts):
        nonlocal cursor
        rows = slice(cursor, cursor + len(batch))
        if cursor + len(batch) > len(input_ids) or not torch.equal(batch.input_ids, input_ids[rows]):
            raise RuntimeError("cached patch: batches must come in row order of the cached prompts")
        cursor = (cursor + len(batch)) % len(input_ids)
        return cached_patch(adapter, cache, rows, positions[rows])

    return intervene


def cached_patch(
    adapter: ArchitectureAdapter, cache: HeadCache, rows: slice | torch.Tensor, positions: torch.Tensor
) -> AbstractContextManager:
    """Hooks writing the cached heads of `rows` at `positions` [batch, site] of the next forward pass (token
    indices of that pass: inside the suffix when it continues a cached prefix)."""
    layers = cache.layers
    if not layers:
        return nullcontext()
    selected = cache.mask[:, list(layers)]  # [site, layer in `layers`, head]
    values = cache.values[rows]  # [batch, n, d]
    n_sites, n_heads, d = selected.shape[0], adapter.shape.n_heads, values.shape[-1]
    dense = values.new_zeros(len(values), n_sites, len(layers), n_heads, d)
    dense[:, selected] = values  # [batch, site, layer in `layers`, head, d]
    return patch_head_outputs(adapter, dense, positions, selected[None], layers)
