"""The plain path-patching loop: one sender per pass, full forward passes, no shortcuts.

It defines what the batched sweep computes, for tests and for the speed benchmark; it is too slow for
real runs (one full forward per sender, two for stages with receivers).
"""

from __future__ import annotations

import torch

from benchmark.accuracy import answer_probability
from benchmark.circuit import GROUP_SITE, Head
from benchmark.circuit_run import site_positions
from benchmark.data import EncodedPairs
from benchmark.hooks import capture_head_outputs, capture_qkv, patch_head_outputs, patch_qkv
from benchmark.models import ArchitectureAdapter
from benchmark.models.study import model_device
from benchmark.path_patching.sweep import (
    Stage,
    StageEffects,
    receiver_mask,
    stage_senders,
)


def _heads(model, adapter, ids, positions=None) -> torch.Tensor:
    with capture_head_outputs(adapter, positions) as recording:
        model(ids, use_cache=False)
    return recording.stack()


@torch.inference_mode()
def reference_stage(
    model,
    adapter: ArchitectureAdapter,
    pairs: EncodedPairs,
    stage: Stage,
    receivers: tuple[Head, ...] | None = None,
) -> StageEffects:
    """Per-head effects of `stage` computed one sender at a time with full forward passes."""
    device = model_device(model)
    clean, answers = pairs.clean.input_ids.to(device), pairs.clean.answer_ids
    rows = torch.arange(len(pairs))
    sites = site_positions(stage.site, pairs.clean).to(device)
    p_clean = answer_probability(model(clean, use_cache=False).logits[:, -1], answers)
    frozen = _heads(model, adapter, clean)  # [batch, pos, layer, head, d]
    cf_sites = site_positions(stage.site, pairs.counterfactual)[:, None].to(device)
    z_cf = _heads(model, adapter, pairs.counterfactual.input_ids.to(device), cf_sites)[:, 0]
    relative = torch.zeros(len(pairs), adapter.shape.n_layers, adapter.shape.n_heads)
    if stage.receivers is not None:  # pass 2 leaves every head before the receivers' reading position clean
        reader = site_positions(GROUP_SITE[stage.receivers], pairs.clean).to(device)
        before_reader = (torch.arange(clean.shape[1], device=device)[None] < reader[:, None])[
            :, :, None, None
        ]
    for layer, head in stage_senders(adapter, stage, receivers):
        values = frozen.clone()
        values[rows, sites, layer, head] = z_cf[:, layer, head]
        with patch_head_outputs(adapter, values):
            if stage.receivers is None:
                p = answer_probability(model(clean, use_cache=False).logits[:, -1], answers)
            else:
                with capture_qkv(adapter, stage.receiver_kind, sites[:, None]) as recording:
                    model(clean, use_cache=False)
        if stage.receivers is not None:
            layers, mask = receiver_mask(adapter, receivers, stage.receiver_kind)
            new_qkv = recording.stack()[:, :, layers]
            with (
                patch_head_outputs(adapter, frozen, mask=before_reader),
                patch_qkv(adapter, stage.receiver_kind, new_qkv, sites[:, None], mask, layers),
            ):
                p = answer_probability(model(clean, use_cache=False).logits[:, -1], answers)
        relative[:, layer, head] = ((p - p_clean) / p_clean).cpu()
    return StageEffects(relative.mean(0), relative.std(0) / len(pairs) ** 0.5, len(pairs))
