"""DCM over a whole circuit (every group x desideratum), and the overlap of two models' DCM heads (SPEC 6).

Overlap compares the base and fine-tuned model per (group, desideratum): the IoU of their selected head
sets, and the accuracy of patching the base model's heads in each model (the semantic check across models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from benchmark.circuit import GROUPS, Circuit, Group, head_iou
from benchmark.data import DCM_DESIDERATA, Desideratum, Split, check_vocabulary
from benchmark.dcm.masking import DCMConfig, DCMResult, patched_decisions, prefix_runs, train_masks
from benchmark.dcm.pairs import DCMData, clean_prompts, dcm_data, dcm_splits, used_splits
from benchmark.dcm.patching import EmptyGroupError, counterfactual_caches
from benchmark.dcm.prefix import PrefixStore
from benchmark.models import ModelUnderStudy
from benchmark.records import DCMMask, DCMOverlap

Key = tuple[Group, Desideratum]


@dataclass(frozen=True)
class DCMRun:
    """DCM results of one model for every (group, desideratum) run; groups without heads are skipped."""

    config: DCMConfig
    results: tuple[DCMResult, ...]
    skipped_groups: tuple[Group, ...]  # groups of the circuit with no heads

    def get(self, group: Group | str, desideratum: Desideratum | str) -> DCMResult:
        key = (Group(group), Desideratum(desideratum))
        for result in self.results:
            if (result.group, result.desideratum) == key:
                return result
        raise KeyError(f"no DCM result for group {key[0].value}, desideratum {key[1].value}")

    def pairs(self) -> tuple[Key, ...]:
        """The (group, desideratum) of every result, in order."""
        return tuple((r.group, r.desideratum) for r in self.results)

    def masks(self) -> tuple[DCMMask, ...]:
        """Every result as the result file records it."""
        return tuple(result.record() for result in self.results)


def resolve_groups(circuit: Circuit, groups: Sequence[Group | str] | None) -> tuple[tuple[Group, ...], tuple]:
    """(groups to run, groups skipped): named groups must have heads; by default every group that has."""
    if groups is not None:
        named = tuple(Group(g) for g in groups)
        empty = [g.value for g in named if not circuit.heads(g)]
        if empty:
            raise EmptyGroupError(f"groups {empty} have no heads in the circuit: there is nothing to patch")
        return named, ()
    chosen = tuple(g for g in GROUPS if circuit.heads(g))
    if not chosen:
        raise EmptyGroupError("the circuit has no heads in any group: there is nothing to patch")
    return chosen, tuple(g for g in GROUPS if not circuit.heads(g))


def build_dcm_data(
    tokenizer,
    config: DCMConfig | None = None,
    desiderata: Sequence[Desideratum] = DCM_DESIDERATA,
    splits: Mapping[str, Split] | None = None,
) -> dict[Desideratum, DCMData]:
    """The DCM pairs of each desideratum; a base and a fine-tuned model share them (same tokenizer). The
    desiderata's clean prompts are the same rows of each split: encoded once (`clean_prompts`)."""
    config = config or DCMConfig()
    if splits is None:
        splits = dcm_splits(check_vocabulary(tokenizer, config.n_boxes), config)
    clean = clean_prompts(tokenizer, splits, config)
    return {Desideratum(d): dcm_data(tokenizer, Desideratum(d), config, splits, clean) for d in desiderata}


def run_dcm(
    study: ModelUnderStudy,
    circuit: Circuit,
    data: Mapping[Desideratum, DCMData],
    config: DCMConfig | None = None,
    groups: Sequence[Group | str] | None = None,
    progress: bool = True,
) -> DCMRun:
    """Train a DCM mask for every (group, desideratum of `data`), with a progress bar over the masks. The
    counterfactual runs of a desideratum are shared by its groups: one pass per split captures every
    group's heads (`counterfactual_caches`). A group's masks of every desideratum train together
    (`train_masks`: one batch runs once for all of them), and the cached clean prefixes are shared by every
    mask of a split that reads the same prompts at the same sites (`PrefixStore`): groups read at one site,
    and desiderata, whose clean prompts are the split's same rows."""
    config = config or DCMConfig()
    chosen, skipped = resolve_groups(circuit, groups)
    model, adapter, batch, results = study.model, study.adapter, config.eval_batch_size, {}
    prefixes = {name: PrefixStore(study, batch) for name in config.sizes()}
    caches = {
        Desideratum(d): {
            name: counterfactual_caches(model, adapter, circuit, pairs, batch)
            for name, pairs in used_splits(data[d], config).items()
        }
        for d in data
    }
    bar = tqdm(total=len(chosen) * len(data), desc="dcm", unit="mask", disable=not progress)
    for group in chosen:
        masks = train_masks(model, adapter, circuit, group, data, config, caches=caches, prefixes=prefixes)
        results.update({(group, desideratum): result for desideratum, result in masks.items()})
        bar.update(len(masks))
    bar.close()
    ordered = tuple(results[group, Desideratum(d)] for group in chosen for d in data)  # group-major
    return DCMRun(config, ordered, skipped)


def transfer_accuracies(
    study: ModelUnderStudy, source: DCMRun, data: Mapping[Desideratum, DCMData], progress=True
) -> dict[Key, float]:
    """Test accuracy of patching `source`'s selected heads in `model` (e.g. base heads in the fine-tuned);
    the counterfactual runs of a desideratum are shared by its groups, and the cached clean prefixes by every
    mask read at the same site, as in `run_dcm`."""
    accuracies, caches = {}, {}
    union = {g: sorted({h for r in source.results if r.group is g for h in r.heads}) for g in GROUPS}
    selected = Circuit.of(union)  # every head some desideratum selected, per group
    model, adapter, batch = study.model, study.adapter, source.config.eval_batch_size
    prefixes = PrefixStore(study, batch)
    for result in tqdm(source.results, desc="dcm transfer", unit="mask", disable=not progress):
        test = data[result.desideratum].test.select(slice(0, result.n_test))
        key = (result.desideratum, result.n_test)
        if result.heads and key not in caches:
            caches[key] = counterfactual_caches(model, adapter, selected, test, batch)
        cache = caches[key][result.group] if result.heads else None
        runs = prefix_runs(prefixes, result.group, test)
        correct = patched_decisions(model, adapter, result.heads, result.group, test, batch, runs, cache)
        accuracies[(result.group, result.desideratum)] = int(correct.sum()) / len(correct)
    return accuracies


def dcm_overlap(
    base: DCMRun, finetuned: DCMRun, base_heads_in_finetuned: Mapping[Key, float] | None = None
) -> tuple[DCMOverlap, ...]:
    """Overlap for every (group, desideratum) both runs have, in the base run's order."""
    transfer = base_heads_in_finetuned or {}
    done = set(finetuned.pairs())
    shared = [key for key in base.pairs() if key in done]
    overlaps = []
    for group, desideratum in shared:
        a, b = base.get(group, desideratum), finetuned.get(group, desideratum)
        overlaps.append(
            DCMOverlap(
                group=group,
                desideratum=desideratum,
                iou=head_iou(a.heads, b.heads),
                base_heads_in_base=a.test_accuracy,
                base_heads_in_finetuned=transfer.get((group, desideratum)),
            )
        )
    return tuple(overlaps)
