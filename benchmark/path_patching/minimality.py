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

from benchmark.ablated_prefix import AblatedPrefix, Base
from benchmark.ablation import MEAN, AblationSource
from benchmark.circuit import GROUP_SITE, GROUPS, Circuit, Group, Head
from benchmark.circuit_run import keep_mask
from benchmark.data import EncodedPrompts
from benchmark.head_cache import cached_patch, group_caches, site_mask, sites_positions
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


# Groups whose sites come before the others' (the context's box label, then the query label): a base prefix
# for a run that changes only later groups keeps these (`_Prefixes`).
EARLY_LEVELS: tuple[tuple[Group, ...], ...] = (
    (Group.STRUCTURE_READER, Group.POSITION_DETECTOR),
    (Group.STRUCTURE_READER,),
)


def removal_metric(
    study: ModelUnderStudy, selected: Circuit, prompts: EncodedPrompts, means: torch.Tensor, batch_size: int
) -> Callable[[Circuit], float]:
    """metric(circuit): mean p(answer) of the circuit run in which each head of `selected` missing from
    `circuit` takes its donor's output at its group's site (everything else outside is mean-ablated).

    Every candidate runs over a cached prefix (`AblatedPrefix`): the prompts' shared mean-ablated prefix, or,
    once two candidates in a row agree on the early groups (pruning goes group by group), the prefix of
    the run that keeps those groups as the candidates do, so that only the tokens from the first later
    group's site on are recomputed."""
    removal = _Removal(study, selected, prompts, batch_size)
    source = AblationSource(MEAN, means)
    prefixes = _Prefixes(
        selected, lambda base, near=(): AblatedPrefix(study, source, prompts, batch_size, base, near)
    )

    def metric(circuit: Circuit) -> float:
        early, runs = prefixes.get(circuit, lambda groups: removal.base(circuit, groups))
        late = tuple(g for g in GROUPS if g not in early)
        patch, touched = removal.patch(circuit, late), removal.keep(selected, late)
        return float(runs.answer_probabilities(removal.keep(circuit), patch, touched).mean())

    return metric


class _Removal:
    """The parts of a candidate run of pruning `selected`: what it keeps, and its heads' donor patches."""

    def __init__(self, study: ModelUnderStudy, selected: Circuit, prompts: EncodedPrompts, batch_size: int):
        self.adapter, self.selected, shape = study.adapter, selected, study.adapter.shape
        self.n_layers, self.n_heads = shape.n_layers, shape.n_heads
        donors = prompts.select(donor_rows(prompts))
        self.sites = {g: sites_positions([GROUP_SITE[g]], prompts) for g in GROUPS}  # [rows, 1] each
        # every group's donor outputs from one pass over the donors
        self.caches = group_caches(study.model, study.adapter, selected, donors, batch_size)

    def keep(self, circuit: Circuit, groups: tuple[Group, ...] = GROUPS):
        """The keep mask of `circuit`'s heads in `groups`, as a function of the rows."""
        part = Circuit.of({g: circuit.heads(g) for g in groups})
        return lambda rows: keep_mask(part, rows, self.n_layers, self.n_heads)

    def removed(self, circuit: Circuit, groups: tuple[Group, ...]) -> dict[Group, list[Head]]:
        """The heads of `selected` in `groups` missing from `circuit`."""
        return {g: [h for h in self.selected.heads(g) if h not in circuit.heads(g)] for g in groups}

    def patch(self, circuit: Circuit, groups: tuple[Group, ...]):
        """The patch giving each head of `selected` in `groups` missing from `circuit` its donor's output."""
        patches = [
            (self.caches[g].subset(site_mask([h], self.adapter.shape)), self.sites[g])
            for g, h in self.removed(circuit, groups).items()
            if h
        ]

        def patch(index: torch.Tensor, start: int) -> ExitStack:
            stack = ExitStack()
            for cache, positions in patches:
                stack.enter_context(cached_patch(self.adapter, cache, index, positions[index] - start))
            return stack

        return patch

    def base(self, circuit: Circuit, groups: tuple[Group, ...]) -> Base:
        """`circuit`'s part in `groups`, as a prefix's base (its patch writes where its removed heads are)."""
        removed = Circuit.of(self.removed(circuit, groups))
        return Base(self.keep(circuit, groups), self.patch(circuit, groups), self.keep(removed, groups))


class _Prefixes:
    """The cached prefixes of minimality's candidate runs: the all-ablated one, and per level of
    `EARLY_LEVELS` the prefix of the run keeping that level's groups as the last candidate did. A level's
    prefix is built when two candidates in a row agree on its groups (kept heads and removed ones), and
    kept while they do, and at the first run for the level the first candidates share (pruning begins
    with the first group that has heads): each costs about one candidate run and makes the next ones
    recompute the query tokens only. A prefix starts from the tokens where its run leaves the cached ones
    (the all-ablated run's, or another level's): the queried box's label, or the query label."""

    def __init__(self, selected: Circuit, build: Callable[..., AblatedPrefix]):
        self.build = build
        # a level none of whose groups has a head would only copy the all-ablated prefix
        self.levels = [groups for groups in EARLY_LEVELS if any(selected.heads(g) for g in groups)]
        self.ablated = build(None)
        self.built: dict[tuple[Group, ...], tuple[tuple, AblatedPrefix]] = {}
        first = next((g for g in GROUPS if selected.heads(g)), None)
        shared = next((groups for groups in self.levels if first not in groups), None)
        # as if a run of `selected` came before: the first run builds the level its followers share
        self.previous = {shared: tuple(selected.heads(g) for g in shared)} if shared else {}

    def get(self, circuit: Circuit, base: Callable[[tuple[Group, ...]], Base]):
        """(the early groups the prefix holds, the prefix) for a run of `circuit`."""
        found = None
        for groups in self.levels:
            key = tuple(circuit.heads(g) for g in groups)
            if found is None and groups in self.built and self.built[groups][0] == key:
                found = groups, self.built[groups][1]
            elif found is None and self.previous.get(groups) == key:
                near = (self.ablated, *(prefix for _, prefix in self.built.values()))
                self.built[groups] = key, self.build(base(groups), near)
                found = groups, self.built[groups][1]
            self.previous[groups] = key
        return found or ((), self.ablated)


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
