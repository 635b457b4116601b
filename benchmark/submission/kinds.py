"""The value kinds of a result file: versions, group and desideratum names, bounded numbers, hashes, heads.

Bounds, patterns and markers ride on `Annotated`, so the schema generator and the meaning checks read
them from the same type hints as the codec.
"""

from __future__ import annotations

from typing import Annotated, Literal

from benchmark.submission.hints import Bounds, Marker, Pattern

SUITE_NAME = "entity-tracking-bench"
SCHEMA_VERSION = "1"
METRIC_VERSION = "v1"
KNOWN_SCHEMA_VERSIONS: tuple[str, ...] = (SCHEMA_VERSION,)
KNOWN_METRIC_VERSIONS: tuple[str, ...] = (METRIC_VERSION,)

GroupName = Literal["value_fetcher", "position_transmitter", "position_detector", "structure_reader"]
DesideratumName = Literal["object", "position", "label"]
GROUP_NAMES: tuple[str, ...] = GroupName.__args__
DESIDERATUM_NAMES: tuple[str, ...] = DesideratumName.__args__

Rate = Annotated[float, Bounds(0.0, 1.0)]  # an accuracy, a share, a mask value, an IoU
NonNegative = Annotated[float, Bounds(0.0)]  # e.g. faithfulness, a ratio that may exceed 1
Count = Annotated[int, Bounds(0)]
Positive = Annotated[int, Bounds(1)]
Sha256 = Annotated[str, Pattern("^[0-9a-f]{64}$")]
Head = Annotated[tuple[Count, Count], Marker.HEAD]  # [layer, head]
Heads = tuple[Head, ...]
LayerHeadMatrix = Annotated[tuple[tuple[float, ...], ...], Marker.LAYER_HEAD_MATRIX]  # [layer][head]

EFFECT_UNIT = "relative change of p(answer)"  # a head's path-patching effect: (p_patched - p_clean) / p_clean


def group_title(group: str, kept: int | None, selected: int) -> str:
    """A circuit group's heading in plots and on the page: "A: value fetcher, 7 kept of 8 selected".

    It counts the heads that survived minimality pruning (`kept`; None when unknown), not only the
    candidates path patching selected."""
    name = f"{'ABCD'[GROUP_NAMES.index(group)]}: {group.replace('_', ' ')}"
    return f"{name}, {selected} selected" if kept is None else f"{name}, {kept} kept of {selected} selected"
