"""DCM for one (group, desideratum): learn which of the group's heads carry the desideratum (SPEC section 6).

Each head of the group, at the group's position of the clean run, becomes m * clean + (1 - m) * cf, where cf
is the head's output at the counterfactual's own site. The mask m is trained to raise the desideratum's
target logit with an L1 pull towards 1 (clean); heads whose rounded mask is 0 are the ones selected.

Choices the SPEC leaves open: the mask starts at 1 (the clean model, where the L1 term is 0, so a head moves
only when patching it raises the target logit by more than lambda); a mask rounds to 0 when m < 0.5; the
rounded mask is validated after each epoch (or every `eval_every` steps, and always after the last step),
and the first checkpoint with the highest validation accuracy wins.

When the gradient is flat the mask never leaves 1: downstream attention is saturated, so a small change of
m changes no logit, although patching the head fully (m = 0) moves the answer completely. Training then
proposes only the empty set, and identical heads in two models would get different sets depending on how
sharp the rest of the model is (the planted enhance pair: found in the blurred base, missed in the exact
fine-tuned model, a false IoU 0). So when no mask value ever fell below 1, the rounded masks are searched
directly on validation (greedy forward selection, exact for a one-head group), as later checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmark.accuracy import forward_last
from benchmark.circuit import Circuit, Group, Head
from benchmark.circuit_run import group_positions
from benchmark.data import Desideratum, EncodedPairs
from benchmark.dcm.pairs import DCMData, used_splits
from benchmark.dcm.patching import (
    SplitCaches,
    counterfactual_cache,
    group_heads,
    patch_result,
)
from benchmark.dcm.prefix import PrefixRuns, PrefixStore, RunsBySite, mask_loss, mixing_edit, target_logits
from benchmark.head_cache import site_mask
from benchmark.hooks import edit_head_outputs
from benchmark.kinds import outcome_text
from benchmark.models import ArchitectureAdapter
from benchmark.models.study import ModelUnderStudy, model_device
from benchmark.records import DCMMask
from benchmark.settings import DCMConfig

# Groups read at the same position in every row: trained, validated and tested over one cached prefix
# (`benchmark.dcm.prefix`). Structure readers are read at the query label's occurrence inside the context,
# which moves with the queried box: one prefix from the earliest row's site would end near the start of the
# prompt and recompute almost everything (benchmarks/dcm_speed.py measured 0.97x), so they run over one
# cached prefix per site (`RunsBySite`), a training batch as one small run per site it holds.
PREFIX_GROUPS = frozenset({Group.VALUE_FETCHER, Group.POSITION_TRANSMITTER, Group.POSITION_DETECTOR})


@dataclass(frozen=True)
class Checkpoint:
    """One validation of the rounded mask during training."""

    step: int
    heads: tuple[Head, ...]  # rounded mask 0
    validation_accuracy: float


@dataclass(frozen=True)
class DCMResult:
    """The heads of one group that carry one desideratum, and how well patching them moves the answer."""

    group: Group
    desideratum: Desideratum
    group_heads: tuple[Head, ...]  # the masked heads, sorted by (layer, head); `mask` follows this order
    heads: tuple[Head, ...]  # rounded mask 0 at the best checkpoint: patched from the counterfactual
    mask: tuple[float, ...]  # mask values at the best checkpoint, full precision
    validation_accuracy: float
    test_accuracy: float
    best_step: int
    history: tuple[Checkpoint, ...]
    n_train: int
    n_validation: int
    n_test: int
    seed: int
    searched: bool = False  # the gradient was flat: `heads` comes from the direct search of rounded masks
    test_correct: tuple[bool, ...] = ()  # each test pair's decision with `heads` patched

    def record(self) -> DCMMask:
        mask = tuple(float(value) for value in self.mask)
        return DCMMask(
            self.group,
            self.desideratum,
            self.group_heads,
            mask,
            self.heads,
            self.validation_accuracy,
            self.test_accuracy,
            self.n_test,
            outcome_text(self.test_correct) or None,
        )


@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Turn off gradients of every weight for the block, restoring each flag after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def training_step(model, adapter, heads, group, pairs: EncodedPairs, cf: torch.Tensor, mask, config):
    """Loss -mean(target logit) + lambda * sum(1 - m) of one batch, with gradients reaching only the mask.

    The full pass (every token, every layer), kept as the reference for `PrefixRuns.target_logits`."""
    layers = sorted({layer for layer, _ in heads})
    positions = group_positions(group, pairs.clean)[:, None]  # [batch, 1]
    edit = mixing_edit(heads, layers, mask, cf)
    with edit_head_outputs(adapter, edit, positions, layers):
        logits = forward_last(model, pairs.clean.input_ids.to(model_device(model)))  # [batch, vocab]
    return mask_loss(target_logits(logits, pairs.target_ids[:, None]), mask[None], config.sparsity)


def _rounded(heads: Sequence[Head], mask: torch.Tensor) -> tuple[Head, ...]:
    """Heads whose mask rounds to 0 (m < 0.5: a tie stays clean)."""
    return tuple(h for h, m in zip(heads, mask.tolist(), strict=True) if m < 0.5)


class _Validator:
    """Validation accuracy of rounded masks, each distinct head set scored once; keeps the best.

    Without `runs` every score is a full forward pass (the reference path); with them the clean prompts'
    prefix before the group's site is computed once and each score runs only the suffix (`PrefixRuns`).
    """

    def __init__(self, model, adapter, heads, group, pairs: EncodedPairs, batch_size: int, runs, cache):
        self.model, self.adapter = model, adapter
        self.group, self.pairs, self.batch_size = group, pairs, batch_size
        if cache is None:
            cache = counterfactual_cache(model, adapter, heads, group, pairs, batch_size)
        self.cache = cache
        self.runs = runs  # PrefixRuns or RunsBySite; None: the full pass
        self.scores: dict[tuple[Head, ...], float] = {}
        self.history: list[Checkpoint] = []
        self.best: tuple[Checkpoint, tuple[float, ...]] | None = None

    def score(self, selected: tuple[Head, ...]) -> float:
        if selected not in self.scores:
            args = (self.model, self.adapter, selected, self.group, self.pairs, self.batch_size)
            correct = patched_decisions(*args, self.runs, self.cache)
            self.scores[selected] = int(correct.sum()) / len(correct)
        return self.scores[selected]

    def __call__(self, step: int, selected: tuple[Head, ...], mask: torch.Tensor) -> None:
        checkpoint = Checkpoint(step, selected, self.score(selected))
        self.history.append(checkpoint)
        if self.best is None or checkpoint.validation_accuracy > self.best[0].validation_accuracy:
            self.best = (checkpoint, tuple(float(m) for m in mask.tolist()))


def _schedule(config: DCMConfig) -> Iterator[tuple[int, torch.Tensor, bool]]:
    """(step, training rows, validate after this step?) for every step; the last step always validates."""
    generator = torch.Generator().manual_seed(config.seed)
    n_batches = -(-config.n_train // config.batch_size)
    step, total = 0, config.epochs * n_batches
    for _ in range(config.epochs):
        order = torch.randperm(config.n_train, generator=generator)
        for start in range(0, config.n_train, config.batch_size):
            step += 1
            epoch_end = start + config.batch_size >= config.n_train
            due = step % config.eval_every == 0 if config.eval_every else epoch_end
            yield step, order[start : start + config.batch_size], due or step == total


def prefix_runs(store: PrefixStore, group: Group, pairs: EncodedPairs) -> PrefixRuns | RunsBySite:
    """The cached prefix of `pairs`' clean prompts before the group's site, from `store`: one `PrefixRuns`
    from the earliest site for `PREFIX_GROUPS`, one per site (`RunsBySite`) for structure readers."""
    sites = group_positions(group, pairs.clean)  # [rows]
    return store.get(pairs.clean.input_ids, sites, by_site=group not in PREFIX_GROUPS)


def _prefix_runs(model, adapter, group, splits, config, prefixes) -> dict:
    """The cached prefix of each split's prompts before the group's site, from `prefixes` (a `PrefixStore`
    per split, shared with the other masks)."""
    runs, batch = {}, config.eval_batch_size
    for name in splits:
        store = prefixes[name]
        if store.study.model is not model or store.batch_size != batch:
            raise ValueError("a shared PrefixStore must be of the model trained, at config.eval_batch_size")
        runs[name] = prefix_runs(store, group, splits[name])
    return runs


def _shared_runs(model, adapter, group, splits: Mapping, config, prefixes, full_pass: bool) -> dict:
    """Per split name, the runs every desideratum's mask is trained or scored over: one cached prefix for
    all (their clean prompts must be the same rows: checked), or None for the full pass. Without
    `prefixes`, these masks alone prefill their own."""
    names = tuple(config.sizes())
    if full_pass:
        return dict.fromkeys(names)
    if prefixes is None:
        study = ModelUnderStudy(model, adapter)
        prefixes = {name: PrefixStore(study, config.eval_batch_size) for name in names}
    every = [_prefix_runs(model, adapter, group, pairs, config, prefixes) for pairs in splits.values()]
    if any(runs[name] is not every[0][name] for runs in every for name in names):
        raise ValueError("masks trained together must share their clean prompts: train each alone")
    return every[0]


def _loss_function(model, adapter, heads, group, trains: Sequence[EncodedPairs], config, runs):
    """loss(rows, cf, masks) of a training batch, with cf [batch, k, head, d] and masks [k, head] of k
    desiderata: the full pass (no `runs`; one mask), or the suffix over the cached prefix of `runs`, every
    mask in the same runs."""
    if runs is None:
        (train,) = trains
        return lambda rows, cf, masks: training_step(
            model, adapter, heads, group, train.select(rows), cf[:, 0], masks[0], config
        )
    targets = torch.stack([train.target_ids for train in trains], 1)  # [rows, k]
    return lambda rows, cf, masks: mask_loss(
        runs.target_logits(rows, heads, cf, masks, targets), masks, config.sparsity
    )


def _counterfactual(model, adapter, heads, group, train: EncodedPairs, config, cache) -> torch.Tensor:
    """The training pairs' counterfactual heads [rows, head, d], as a normal tensor (a cache holds
    inference tensors); from `cache` where the caller has it."""
    if cache is None:
        cache = counterfactual_cache(model, adapter, heads, group, train, config.eval_batch_size)
    return cache.values.clone()


def _train(model, adapter, heads, group, trains, validators, config, progress, runs, caches) -> list[bool]:
    """Adam on each desideratum's mask, clamped to [0, 1] after each step; validates each rounded mask on
    schedule. The masks train together, one loss the sum of theirs: each gets the gradient of its own loss
    and an Adam of its own, so each is what training it alone gives. Returns whether each mask ever moved."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError("DCM trains a mask by gradient descent: do not run it under torch.inference_mode")
    args = (model, adapter, heads, group)
    cf = torch.stack([_counterfactual(*args, t, config, c) for t, c in zip(trains, caches, strict=True)], 1)
    loss_of = _loss_function(*args, trains, config, runs)
    device = model_device(model)
    masks = [torch.full((len(heads),), config.mask_init, device=device, requires_grad=True) for _ in trains]
    optimizers = [torch.optim.Adam([mask], lr=config.learning_rate) for mask in masks]
    steps, moved = list(_schedule(config)), [False] * len(masks)
    with frozen(model), torch.enable_grad():
        for step, rows, due in tqdm(steps, desc="dcm", unit="step", disable=not progress, leave=False):
            loss = loss_of(rows, cf[rows], torch.stack(masks))  # cf: [batch, k, head, d]
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss.backward()
            for j, (optimizer, mask) in enumerate(zip(optimizers, masks, strict=True)):
                optimizer.step()
                with torch.no_grad():
                    mask.clamp_(0.0, 1.0)
                    moved[j] = moved[j] or bool((mask < 1.0).any())
            for mask, validate in zip(masks, validators, strict=True) if due else ():
                validate(step, _rounded(heads, mask), mask.detach())
    return moved


def patched_decisions(model, adapter, heads, group, pairs: EncodedPairs, batch: int, runs, cache):
    """Each pair's decision (argmax == target), a [rows] bool tensor, with `heads` patched from the
    counterfactual (none: the clean run), as validation and the test report score a head set: over the
    cached prefix of `runs`, or by the full pass (`patch_result`) without them. `cache`: the counterfactual
    heads of these pairs (at least `heads`), when the caller has them."""
    heads = tuple(sorted(set(heads)))  # the order of the cache's values
    if runs is None:
        return torch.tensor(patch_result(model, adapter, heads, group, pairs, batch, cache).correct)
    if not heads:
        cf = torch.zeros(len(pairs), 0, adapter.shape.head_dim)  # [rows, 0, d]: nothing to patch
    else:
        if cache is None:
            cache = counterfactual_cache(model, adapter, heads, group, pairs, batch)
        cf = cache.subset(site_mask([heads], adapter.shape)).values  # [rows, n, d]
    return runs.decisions(heads, cf, pairs.target_ids, batch)


def search_rounded(heads: Sequence[Head], validate: _Validator, step: int) -> None:
    """Greedy forward search of rounded masks: add the head that raises validation accuracy most, while one
    does (ties: the lower head). Each candidate is validated as a checkpoint of `step`."""
    chosen: tuple[Head, ...] = ()
    best = validate.score(chosen)
    while len(chosen) < len(heads):
        scores = {h: validate.score(tuple(sorted((*chosen, h)))) for h in heads if h not in chosen}
        head = max(scores, key=lambda h: (scores[h], [-x for x in h]))
        if scores[head] <= best:
            break
        chosen, best = tuple(sorted((*chosen, head))), scores[head]
        validate(step, chosen, torch.tensor([0.0 if h in chosen else 1.0 for h in heads]))


def train_mask(
    model,
    adapter: ArchitectureAdapter,
    circuit: Circuit,
    group: Group,
    desideratum: Desideratum,
    data: DCMData,
    config: DCMConfig = DCMConfig(),
    progress: bool = False,
    _full_pass: bool = False,
    caches: SplitCaches | None = None,
    prefixes: Mapping[str, PrefixStore] | None = None,
) -> DCMResult:
    """Train the group's mask on `data.train`, keep the best rounded mask on validation, report on test.

    Shuffling uses a torch generator seeded with `config.seed`, so one seed gives one result. Training,
    validation and the test report recompute only the tokens from the group's site on
    (`benchmark.dcm.prefix`); `_full_pass` runs every token instead, the reference path the tests and
    `benchmarks/dcm_speed.py` compare with. `caches`: `counterfactual_caches` of the used rows of each split
    (`used_splits`), when the caller shares them between groups. `prefixes`: a `PrefixStore` of the model
    per split ("train", "validation", "test"), when the caller shares cached prefixes between masks (by
    default each mask prefills its own).
    """
    shared = None if caches is None else {Desideratum(desideratum): caches}
    run = (model, adapter, circuit, group, {Desideratum(desideratum): data}, config, progress, _full_pass)
    return train_masks(*run, shared, prefixes)[Desideratum(desideratum)]


def train_masks(
    model,
    adapter: ArchitectureAdapter,
    circuit: Circuit,
    group: Group,
    data: Mapping[Desideratum, DCMData],
    config: DCMConfig = DCMConfig(),
    progress: bool = False,
    _full_pass: bool = False,
    caches: Mapping[Desideratum, SplitCaches] | None = None,
    prefixes: Mapping[str, PrefixStore] | None = None,
) -> dict[Desideratum, DCMResult]:
    """`train_mask` of the group for every desideratum of `data`, the masks trained together: the same
    clean prompts, sites and shuffling, so each batch runs once for all of them (below the group's lowest
    layer one row per prompt, `benchmark.dcm.prefix`), and each mask comes out as trained alone. With
    `_full_pass` each mask trains alone. `caches`: per desideratum, as `train_mask` takes them."""
    chosen, caches = [Desideratum(d) for d in data], caches or {}
    if _full_pass and len(chosen) > 1:
        return {
            d: train_mask(model, adapter, circuit, group, d, data[d], config, progress, True) for d in chosen
        }
    heads, batch = group_heads(circuit, group), config.eval_batch_size
    splits = {d: used_splits(data[d], config) for d in chosen}
    own = {d: {name: caches.get(d, {}).get(name, {}).get(group) for name in config.sizes()} for d in chosen}
    runs = _shared_runs(model, adapter, group, splits, config, prefixes, _full_pass)
    validators = [
        _Validator(
            model,
            adapter,
            heads,
            group,
            splits[d]["validation"],
            batch,
            runs["validation"],
            own[d]["validation"],
        )
        for d in chosen
    ]
    trains, train_caches = [splits[d]["train"] for d in chosen], [own[d]["train"] for d in chosen]
    moved = _train(
        model, adapter, heads, group, trains, validators, config, progress, runs["train"], train_caches
    )
    results = {}
    for d, validate, trained in zip(chosen, validators, moved, strict=True):
        if not trained:
            search_rounded(heads, validate, validate.history[-1].step)
        test = (splits[d]["test"], batch, runs["test"], own[d]["test"])
        results[d] = _result(
            group,
            d,
            heads,
            validate,
            not trained,
            config,
            patched_decisions(model, adapter, validate.best[0].heads, group, *test),
        )
    return results


def _result(group, desideratum, heads, validate: _Validator, searched: bool, config, tested) -> DCMResult:
    """The mask's result: its best checkpoint on validation and that head set's test decisions `tested`."""
    best, best_mask = validate.best
    return DCMResult(
        group=group,
        desideratum=Desideratum(desideratum),
        group_heads=heads,
        heads=best.heads,
        mask=best_mask,
        validation_accuracy=best.validation_accuracy,
        test_accuracy=int(tested.sum()) / len(tested),
        best_step=best.step,
        history=tuple(validate.history),
        n_train=config.n_train,
        n_validation=config.n_validation,
        n_test=config.n_test,
        seed=config.seed,
        searched=searched,
        test_correct=tuple(tested.tolist()),
    )
