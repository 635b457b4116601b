"""Minimality pruning (SPEC section 4): drop a head whose removal moves the circuit's metric by under 1%.

What "removing" a head means decides what survives. In a circuit run everything outside the circuit is
mean-ablated (SPEC section 5), but mean ablation removes nothing from a head whose output at a position
is the same in every prompt: a structure reader that writes "this is box 3" at box 3's label has that
value as its mean there. Path patching, which brings the counterfactual's value from another box, finds
such a head essential, and mean-ablation pruning then silently drops it (the planted known-answer models
showed this: their structure reader was selected with effect -1 and pruned). So a removed head gets, at
its group's site, its output on a donor prompt: another row of the minimality prompts with a different
context that queries a different box, the same kind of counterfactual that selected it. Everything else
outside the circuit stays mean-ablated.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

import torch
from tqdm.auto import tqdm

from benchmark.ablated_prefix import AblatedPrefix
from benchmark.ablation import MEAN, AblationSource
from benchmark.circuit import GROUP_SITE, GROUPS, Circuit, Group, Head
from benchmark.circuit_run import keep_mask
from benchmark.data import EncodedPrompts
from benchmark.head_cache import cached_patch, capture_heads, site_mask, sites_positions
from benchmark.models import ModelUnderStudy


def donor_rows(prompts: EncodedPrompts) -> torch.Tensor:
    """Per row, the first later row (cyclically) that queries another box and shares no object; failing
    that (very few prompts), the first that queries another box, else the next row: [rows]."""
    objects = prompts.input_ids.gather(1, prompts.object_pos)  # [rows, box]
    n, donors = len(prompts), []
    for row in range(n):
        others = [(row + step) % n for step in range(1, n)] or [row]
        fit = [
            int(prompts.query_index[o] != prompts.query_index[row])
            * (2 - int(torch.isin(objects[o], objects[row]).any()))
            for o in others
        ]
        donors.append(others[fit.index(max(fit))])
    return torch.tensor(donors)


def removal_metric(
    study: ModelUnderStudy, selected: Circuit, prompts: EncodedPrompts, means: torch.Tensor, batch_size: int
) -> Callable[[Circuit], float]:
    """metric(circuit): mean p(answer) of the circuit run in which each head of `selected` missing from
    `circuit` takes its donor's output at its group's site (everything else outside is mean-ablated).

    Every candidate runs over the prompts' shared mean-ablated prefix (`AblatedPrefix`): what comes before
    the first site any head of `selected` is read at is the same in all of them."""
    model, adapter = study.model, study.adapter
    donors = prompts.select(donor_rows(prompts))
    sites = {group: sites_positions([GROUP_SITE[group]], prompts) for group in GROUPS}  # [rows, 1] each
    caches = {
        group: capture_heads(
            model,
            adapter,
            donors.input_ids,
            sites_positions([GROUP_SITE[group]], donors),
            site_mask([selected.heads(group)], adapter.shape),
            batch_size,
        )
        for group in GROUPS
        if selected.heads(group)
    }
    runs = AblatedPrefix(study, AblationSource(MEAN, means), prompts, batch_size)
    shape = adapter.shape

    def metric(circuit: Circuit) -> float:
        removed = {g: [h for h in selected.heads(g) if h not in circuit.heads(g)] for g in caches}
        patches = [(caches[g].subset(site_mask([h], shape)), sites[g]) for g, h in removed.items() if h]

        def patch(index: torch.Tensor, start: int) -> ExitStack:
            stack = ExitStack()
            for cache, positions in patches:
                stack.enter_context(cached_patch(adapter, cache, index, positions[index] - start))
            return stack

        probabilities = runs.answer_probabilities(
            lambda rows: keep_mask(circuit, rows, shape.n_layers, shape.n_heads),
            patch,
            touched=lambda rows: keep_mask(selected, rows, shape.n_layers, shape.n_heads),
        )
        return float(probabilities.mean())

    return metric


def prune_minimal(circuit: Circuit, metric, tolerance: float, progress: bool = True):
    """Drop, weakest first, each head whose removal moves `metric(circuit)` by under `tolerance` (relative).

    Returns the pruned circuit, the dropped heads per group and the final metric.
    """
    current = metric(circuit)
    groups = {group: list(circuit.heads(group)) for group in GROUPS}
    dropped: dict[Group, tuple[Head, ...]] = {group: () for group in GROUPS}
    bar = tqdm(total=sum(map(len, groups.values())), desc="minimality", disable=not progress)
    for group in GROUPS:
        for head in reversed(circuit.heads(group)):
            candidate = Circuit.of({**groups, group: [h for h in groups[group] if h != head]})
            value = metric(candidate)
            if abs(value - current) <= tolerance * abs(current):
                groups[group].remove(head)
                dropped[group] += (head,)
                current = value
            bar.update()
    bar.close()
    return Circuit.of(groups), dropped, current
