"""Attribution patching (AtP, Nanda 2023; Kramar et al. 2024): a first-order estimate of every sender's
path-patching effect from one forward and one backward pass. `benchmarks/score_speed.py` measures with it
how well such an estimate would rank the heads exact path patching selects; discovery does not use it.

The estimate differentiates the same two passes the exact sweep runs (`sweep`): pass 1 replays the
sender site's token with every head frozen at its clean output, here a leaf tensor z [prompt, layer, head,
d]; its receivers' q or v (or, for the logits stage, p(answer)) feed pass 2 over the cached clean prefix.
One backward gives dp/dz for every head at once, and each sender's estimate is

    effect(sender) ~ (dp/dz_sender . (z_cf - z_clean)_sender) / p_null,

the first-order term of the exact relative effect (p_patched - p_null) / p_null.

Why it only chooses what to patch exactly (`prefilter`) and never decides: where a sender's path crosses
an attention pattern (a receiver's query, or a value whose change moves a later query), the softmax is
often saturated, so the gradient is near 0, or even of the wrong sign, although the exact patch flips the
pattern (AtP*'s false negatives). On the organism base model plain AtP ranked true position transmitters
and detectors near the bottom of the heads that can reach them; four integrated-gradient steps and a
second order by |estimate| bring them into the candidates (docs/metrics.md, "What the stages cost").
"""

from __future__ import annotations

import torch

from benchmark.circuit import Head
from benchmark.data import EncodedPairs
from benchmark.models import ModelUnderStudy
from benchmark.path_patching.sweep import (
    SiteRuns,
    Stage,
    StageEffects,
    _pass1,
    _SuffixRun,
    check_receivers,
    stage_senders,
)


def attribution_estimates(
    study: ModelUnderStudy,
    site_runs: SiteRuns,
    stage: Stage,
    receivers: tuple[Head, ...] | None,
    batch_size: int = 32,
    steps: int = 1,
) -> tuple[StageEffects, StageEffects]:
    """AtP estimates of every head's effect as a sender in `stage` (heads that cannot reach the receivers:
    0), with their standard errors over prompts: (plain AtP, AtP whose gradient is averaged over `steps`
    points on the way from every head clean to every head counterfactual: integrated gradients, left
    sums). One run gives both: the integrated gradient's first point is the clean run, plain AtP's."""
    check_receivers(stage, receivers)
    pairs: EncodedPairs = site_runs.pairs
    n, shape = len(pairs), study.adapter.shape
    relative = torch.zeros(2, n, shape.n_layers, shape.n_heads)  # [plain or integrated, prompt, layer, head]
    for chunk in torch.arange(n).split(batch_size):
        relative[:, chunk] = _chunk_estimate(study, site_runs, chunk, stage, receivers, steps)
    reach = torch.zeros(shape.n_layers, shape.n_heads, dtype=torch.bool)
    for layer, head in stage_senders(study.adapter, stage, receivers):
        reach[layer, head] = True
    return StageEffects.of(relative[0] * reach), StageEffects.of(relative[1] * reach)


def _chunk_estimate(
    study: ModelUnderStudy, site_runs: SiteRuns, chunk, stage: Stage, receivers, steps: int
) -> torch.Tensor:
    """Per-prompt estimates [plain or integrated, chunk, layer, head] for one chunk of prompts: a forward
    and a backward per step, the first at every head's clean value (whose p(answer) is the null run's)."""
    clean, cf = site_runs.z_clean[chunk], site_runs.z_cf[chunk]  # [chunk, layer, head, d]
    pairs, positions = site_runs.pairs.select(chunk), site_runs.positions[chunk]
    rows = SiteRuns(pairs, positions, clean, cf, site_runs.last_prefix)  # its prefix serves the sweep too
    index = torch.arange(len(chunk))
    with torch.no_grad():  # the clean prefix carries no gradient
        suffix = None if stage.receivers is None else _SuffixRun(study, rows, index, 1, stage, receivers)
    grads = torch.zeros_like(clean)
    for step in range(steps):
        rows.z_clean = (clean + step / steps * (cf - clean)).requires_grad_()  # the frozen heads
        grad, p = _gradient(study, rows, index, stage, suffix)
        grads = grads + grad / steps
        if step == 0:  # every head clean: plain AtP's gradient, and the null run's p(answer)
            first, p_null = grad, p
    change = (torch.stack([first, grads]) * (cf - clean)).sum(-1)  # [2, chunk, layer, head]: dp/dz . dz
    return (change / p_null[:, None, None]).float().cpu()


def _gradient(study: ModelUnderStudy, rows: SiteRuns, index, stage: Stage, suffix):
    """dp(answer)/dz at the frozen heads `rows.z_clean` [chunk, layer, head, d], and p(answer) [chunk]."""
    null = torch.full((len(index), 2), -1)  # every head at its frozen value
    with torch.enable_grad():
        layers = None if suffix is None else suffix.layers
        out = _pass1(study.model, study.adapter, rows, index, null, stage, layers, graph=True)
        p = out if suffix is None else suffix(out)  # [chunk] p(answer)
        (grad,) = torch.autograd.grad(p.sum(), rows.z_clean, allow_unused=True)
    # no head reaches receivers that all sit in layer 0: p does not depend on them
    return torch.zeros_like(rows.z_clean) if grad is None else grad, p.detach()
