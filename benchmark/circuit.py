"""The entity-tracking circuit: four head groups, each read at its own token position (SPEC section 4).

Path patching produces a `Circuit`; faithfulness, DCM and CMAP consume one. A head is (layer, head).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import torch

from benchmark.data import EncodedPrompts
from benchmark.hooks import mean_ablate
from benchmark.models import ArchitectureAdapter

Head = tuple[int, int]  # (layer, head)


class Group(StrEnum):
    """The four head groups, in the order path patching finds them."""

    VALUE_FETCHER = "value_fetcher"  # A: attends to and copies the right object
    POSITION_TRANSMITTER = "position_transmitter"  # B: carries the box's position to A
    POSITION_DETECTOR = "position_detector"  # C: finds the position of the queried label
    STRUCTURE_READER = "structure_reader"  # D: reads the context structure for C


GROUPS: tuple[Group, ...] = tuple(Group)


class Site(StrEnum):
    """Token positions a group is read at."""

    LAST = "last"
    QUERY_LABEL = "query_label"
    QUERY_LABEL_EARLIER = "query_label_earlier"  # the query label's occurrence inside the context


GROUP_SITE: dict[Group, Site] = {
    Group.VALUE_FETCHER: Site.LAST,
    Group.POSITION_TRANSMITTER: Site.LAST,
    Group.POSITION_DETECTOR: Site.QUERY_LABEL,
    Group.STRUCTURE_READER: Site.QUERY_LABEL_EARLIER,
}


def site_positions(site: Site, encoded: EncodedPrompts) -> torch.Tensor:
    """Token index of `site` in every row: [batch]."""
    if site is Site.LAST:
        return torch.full((len(encoded),), encoded.last_pos, dtype=torch.long)
    if site is Site.QUERY_LABEL:
        return encoded.query_label_pos
    return encoded.query_label_earlier_pos


def group_positions(group: Group, encoded: EncodedPrompts) -> torch.Tensor:
    """Token index at which `group` is read, in every row: [batch]."""
    return site_positions(GROUP_SITE[group], encoded)


@dataclass(frozen=True)
class Circuit:
    """Heads of each group, strongest first; a head may belong to several groups."""

    groups: Mapping[Group, tuple[Head, ...]]

    @classmethod
    def of(cls, groups: Mapping[Group | str, Iterable[Iterable[int]]]) -> Circuit:
        """Build from any mapping of group name to (layer, head) pairs; missing groups are empty."""
        given = {
            Group(name): tuple((int(layer), int(head)) for layer, head in heads)
            for name, heads in groups.items()
        }
        return cls({group: given.get(group, ()) for group in GROUPS})

    def heads(self, group: Group) -> tuple[Head, ...]:
        return tuple(self.groups.get(group, ()))

    @property
    def sizes(self) -> dict[str, int]:
        return {group.value: len(self.heads(group)) for group in GROUPS}

    def all_heads(self) -> tuple[Head, ...]:
        """Every distinct head of the circuit (union over groups), in group order."""
        return tuple(dict.fromkeys(h for group in GROUPS for h in self.heads(group)))

    def mask(self, group: Group, n_layers: int, n_heads: int) -> torch.Tensor:
        """Boolean [layer, head] mask of one group's heads."""
        mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
        for layer, head in self.heads(group):
            mask[layer, head] = True
        return mask

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {group.value: [list(h) for h in self.heads(group)] for group in GROUPS}


def keep_mask(circuit: Circuit, encoded: EncodedPrompts, n_layers: int, n_heads: int) -> torch.Tensor:
    """Components a circuit run leaves alone, each group's heads at its position: [batch, pos, layer, head].

    Everything outside the mask is mean-ablated in a circuit run (SPEC section 5).
    """
    batch, n_pos = encoded.input_ids.shape
    keep = torch.zeros(batch, n_pos, n_layers, n_heads, dtype=torch.bool)
    rows = torch.arange(batch)
    for group in GROUPS:
        if circuit.heads(group):
            positions = group_positions(group, encoded)
            keep[rows, positions] |= circuit.mask(group, n_layers, n_heads)
    return keep


def circuit_intervention(adapter: ArchitectureAdapter, circuit: Circuit, means: torch.Tensor):
    """The circuit run as a per-batch intervention: mean-ablate (to `means` [pos, layer, head, d]) every
    component outside the circuit, for `benchmark.accuracy`'s scoring functions."""
    shape = adapter.shape

    def intervene(batch: EncodedPrompts):
        return mean_ablate(adapter, means, keep=keep_mask(circuit, batch, shape.n_layers, shape.n_heads))

    return intervene
