"""Versions of the result format and the definitions its numbers follow, and the names it keys maps by.

The value kinds (bounded numbers, hashes, heads) are `benchmark.kinds`; group and desideratum names are
the values of the `Group` and `Desideratum` enums, listed here in their order for tables and checks.
"""

from __future__ import annotations

from benchmark.circuit import GROUPS
from benchmark.data.counterfactuals import DCM_DESIDERATA

SUITE_NAME = "entity-tracking-bench"
# 3: metric-v2 numbers (ablations, intervals, floors); 4: discovery's attribution pre-filter (settings and
# stage records). Files of 1, 2 and 3 stay readable.
SCHEMA_VERSION = "4"
METRIC_VERSION = "v2"
KNOWN_SCHEMA_VERSIONS: tuple[str, ...] = ("1", "2", "3", SCHEMA_VERSION)
KNOWN_METRIC_VERSIONS: tuple[str, ...] = ("v1", METRIC_VERSION)

GROUP_NAMES: tuple[str, ...] = tuple(group.value for group in GROUPS)
DESIDERATUM_NAMES: tuple[str, ...] = tuple(desideratum.value for desideratum in DCM_DESIDERATA)
GROUP_LETTERS: dict[str, str] = dict(zip(GROUP_NAMES, "ABCD", strict=True))  # value_fetcher -> A ...

EFFECT_UNIT = "relative change of p(answer)"  # a head's path-patching effect: (p_patched - p_clean) / p_clean


def group_title(group: str, kept: int | None, selected: int) -> str:
    """A circuit group's heading in plots and on the page: "A: value fetcher, 7 kept of 8 selected".

    It counts the heads that survived minimality pruning (`kept`; None when unknown), not only the
    candidates path patching selected."""
    name = f"{GROUP_LETTERS[group]}: {group.replace('_', ' ')}"
    return f"{name}, {selected} selected" if kept is None else f"{name}, {kept} kept of {selected} selected"
