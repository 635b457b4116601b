"""Patching a group's heads from a counterfactual run, the step every DCM score and transfer is made of:
the counterfactual's head outputs at the group's own site, cached once per split, put into the clean run at
the group's site; the accuracy against the desideratum's targets says whether those heads carry it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from benchmark.accuracy import AccuracyResult, score_accuracy
from benchmark.circuit import GROUP_SITE, Circuit, Group, Head
from benchmark.data import EncodedPairs
from benchmark.errors import BenchmarkError
from benchmark.head_cache import (
    HeadCache,
    capture_heads,
    group_caches,
    patch_from_cache,
    site_mask,
    sites_positions,
)
from benchmark.models import ArchitectureAdapter


class EmptyGroupError(BenchmarkError, ValueError):
    """A group to mask or patch has no heads."""


def group_heads(circuit: Circuit, group: Group) -> tuple[Head, ...]:
    """The group's heads sorted by (layer, head); an empty group is an error."""
    heads = tuple(sorted(set(circuit.heads(group))))
    if not heads:
        raise EmptyGroupError(f"group {group.value} has no heads in the circuit: there is nothing to patch")
    return heads


def counterfactual_cache(
    model, adapter: ArchitectureAdapter, heads: Sequence[Head], group: Group, pairs: EncodedPairs, batch_size
) -> HeadCache:
    """The heads' outputs in the counterfactual run at the counterfactual's own site of the group."""
    positions = sites_positions([GROUP_SITE[group]], pairs.counterfactual)  # [rows, 1]
    mask = site_mask([heads], adapter.shape)
    return capture_heads(model, adapter, pairs.counterfactual.input_ids, positions, mask, batch_size)


# Per split ("train", "validation", "test"), every group's counterfactual heads (`counterfactual_caches`).
SplitCaches = Mapping[str, Mapping[Group, HeadCache]]


def counterfactual_caches(
    model, adapter: ArchitectureAdapter, circuit: Circuit, pairs: EncodedPairs, batch_size
) -> dict[Group, HeadCache]:
    """Every group's heads at the counterfactual's own site of that group, from one counterfactual run: the
    same values `counterfactual_cache` gives per group, with one forward pass per split and desideratum
    instead of one per group and split."""
    return group_caches(model, adapter, circuit, pairs.counterfactual, batch_size)


def _cached_patch(model, adapter, heads, group, pairs: EncodedPairs, cache: HeadCache, batch_size: int):
    cache = cache.subset(site_mask([heads], adapter.shape))
    positions = sites_positions([GROUP_SITE[group]], pairs.clean)
    run = patch_from_cache(adapter, cache, positions, pairs.clean.input_ids)
    return score_accuracy(model, pairs.clean, batch_size, intervention=run, answer_ids=pairs.target_ids)


def patch_result(
    model,
    adapter: ArchitectureAdapter,
    heads: Sequence[Head],
    group: Group,
    pairs: EncodedPairs,
    batch_size: int = 32,
    cache: HeadCache | None = None,
) -> AccuracyResult:
    """Patching `heads` from the counterfactual at the group's position, in any model: accuracy and each
    pair's decision. Targets are the desideratum's; an empty head set scores the unpatched clean run.
    `cache`: the counterfactual's heads of this model (at least `heads`), when the caller has them."""
    heads = tuple(sorted(set(heads)))
    if cache is None:
        cache = counterfactual_cache(model, adapter, heads, group, pairs, batch_size)
    return _cached_patch(model, adapter, heads, group, pairs, cache, batch_size)
