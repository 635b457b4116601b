"""The circuit run: the components a circuit keeps, each group's heads at its token position (everything
else is ablated: `benchmark.ablation`, `benchmark.ablated_prefix`; faithfulness and minimality read it).
"""

from __future__ import annotations

import torch

from benchmark.circuit import GROUP_SITE, GROUPS, Circuit, Group, Site
from benchmark.data import EncodedPrompts


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


def group_mask(circuit: Circuit, group: Group, n_layers: int, n_heads: int) -> torch.Tensor:
    """Boolean [layer, head] mask of one group's heads."""
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for layer, head in circuit.heads(group):
        mask[layer, head] = True
    return mask


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
            keep[rows, positions] |= group_mask(circuit, group, n_layers, n_heads)
    return keep
