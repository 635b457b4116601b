"""The entity-tracking circuit: four head groups, each read at its own token position.

Path patching produces a `Circuit`; faithfulness, DCM and CMAP consume one. A head is (layer, head).
Torch-free (the result file uses these types); what a circuit does to a model is in `circuit_run`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from benchmark.kinds import Head


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

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {group.value: [list(h) for h in self.heads(group)] for group in GROUPS}


def head_iou(a: Sequence[Head], b: Sequence[Head]) -> float:
    """|a & b| / |a | b|; two empty sets agree completely (1.0), so means over groups stay defined."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0
