"""CMAP, cross-model activation patching (SPEC section 7): do the fine-tuned model's heads explain its gain?

Both models read the same clean prompts. The fine-tuned model's head outputs (o_proj input) are cached on the
CPU at each group's position; the fine-tuned model is released; then they are written into the base model,
per group and for the whole circuit, and pass through the base model's own output projection.
gain = (acc_patched - acc_base) / (acc_ft - acc_base), undefined when the gap is under `min_gap`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from benchmark.accuracy import AccuracyResult, score_accuracy
from benchmark.circuit import GROUP_SITE, GROUPS, Circuit, Group, Head, Site
from benchmark.data import (
    EncodedPrompts,
    Split,
    Vocabulary,
    check_vocabulary,
    encode_examples,
    generate_split,
)
from benchmark.dcm.overlap import resolve_groups
from benchmark.head_cache import HeadCache, capture_heads, patch_from_cache, site_mask, sites_positions
from benchmark.kinds import defined, outcome_text
from benchmark.measures import cmap_gain
from benchmark.models import (
    ArchitectureAdapter,
    ModelPair,
    ModelUnderStudy,
    Opener,
    PairMismatchError,
    opened,
)
from benchmark.models.loading import load_tokenizer
from benchmark.models.pairs import config_differences
from benchmark.records import CMAP, CMAPEntry
from benchmark.settings import CMAPConfig

CIRCUIT = "circuit"  # the name of the whole-circuit entry


@dataclass(frozen=True)
class CMAPPatch:
    """One patched head set (a group at its position, or the whole circuit) and what it did to the base."""

    name: str  # a group's value, or "circuit"
    heads: tuple[Head, ...]
    acc_patched: float
    change: float  # acc_patched - acc_base
    gain: float | None  # share of the gap closed; None when the gap is under min_gap
    correct: tuple[bool, ...] = ()  # each prompt's decision in the patched run

    def record(self) -> CMAPEntry:
        outcomes = outcome_text(self.correct) or None
        return CMAPEntry(self.heads, self.acc_patched, self.change, defined(self.gain), outcomes)


@dataclass(frozen=True)
class CMAPResult:
    """Raw accuracies of both models, and every patched set's accuracy and gain."""

    config: CMAPConfig
    n_prompts: int
    acc_base: float
    acc_finetuned: float
    gap: float  # acc_finetuned - acc_base
    gain_defined: bool  # |gap| >= min_gap
    groups: tuple[CMAPPatch, ...]
    circuit: CMAPPatch
    skipped_groups: tuple[Group, ...]  # groups of the circuit with no heads
    base_correct: tuple[bool, ...] = ()  # each prompt's decision in the unpatched base model
    finetuned_correct: tuple[bool, ...] = ()

    def entry(self, name: Group | str) -> CMAPPatch:
        """The entry of a group, or of the whole circuit ("circuit")."""
        name = CIRCUIT if name == CIRCUIT else Group(name).value
        for entry in (*self.groups, self.circuit):
            if entry.name == name:
                return entry
        skipped = [g.value for g in self.skipped_groups]
        raise KeyError(f"no CMAP entry for {name!r} (skipped groups: {skipped})")

    def record(self) -> CMAP:
        """Every group's entry (null for a group without heads) and the whole circuit's."""
        groups: dict[Group, CMAPEntry | None] = {group: None for group in GROUPS}
        groups.update({Group(entry.name): entry.record() for entry in self.groups})
        return CMAP(
            self.n_prompts,
            self.acc_base,
            self.acc_finetuned,
            self.gain_defined,
            self.circuit.record(),
            groups,
            outcome_text(self.base_correct) or None,
            outcome_text(self.finetuned_correct) or None,
        )


def cmap_split(vocabulary: Vocabulary, config: CMAPConfig | None = None) -> Split:
    """The test split CMAP's clean prompts come from (also recorded in results)."""
    config = config or CMAPConfig()
    return generate_split(
        config.n_boxes, "test", config.n_prompts, config.seed, vocabulary.objects, vocabulary.labels
    )


def cmap_prompts(tokenizer, config: CMAPConfig | None = None, split: Split | None = None) -> EncodedPrompts:
    """The clean test prompts both models read: `split` (default: `cmap_split` of the words the tokenizer
    keeps; a scoring run passes the split it already built and records)."""
    config = config or CMAPConfig()
    split = split or cmap_split(check_vocabulary(tokenizer, config.n_boxes), config)
    return encode_examples(tokenizer, split.examples[: config.n_prompts])


gain = cmap_gain  # defined in `benchmark.measures` (the bootstrap and the checks recompute it)


@dataclass(frozen=True)
class _Layout:
    """Where the chosen groups are read: distinct sites, their heads, and each group's own mask."""

    sites: tuple[Site, ...]
    mask: torch.Tensor  # [site, layer, head]: every chosen group's heads at its site
    group_masks: dict[Group, torch.Tensor]  # [site, layer, head] of one group


def _layout(circuit: Circuit, groups: Sequence[Group], adapter: ArchitectureAdapter) -> _Layout:
    """Merge groups read at one site (value fetcher and position transmitter share the last token)."""
    sites = tuple(dict.fromkeys(GROUP_SITE[g] for g in groups))
    group_masks = {
        g: site_mask([circuit.heads(g) if s is GROUP_SITE[g] else () for s in sites], adapter.shape)
        for g in groups
    }
    mask = torch.stack(list(group_masks.values())).any(dim=0)
    return _Layout(sites, mask, group_masks)


def _signature(study: ModelUnderStudy) -> dict[str, object]:
    """What must match for head-by-head patching: architecture, head geometry, vocabulary rows, config."""
    return {
        "model_type": study.adapter.model_type,
        "head shape": study.adapter.shape,
        "vocabulary rows": study.model.get_output_embeddings().weight.shape[0],
        "config": study.model.config,
    }


def _check_same(finetuned: dict[str, object], base: dict[str, object]) -> None:
    differences = [
        f"{k}: {base[k]} vs {finetuned[k]}" for k in base if k != "config" and base[k] != finetuned[k]
    ]
    differences += config_differences(base["config"], finetuned["config"])
    if differences:
        raise PairMismatchError(
            "base and fine-tuned model cannot be patched head by head; they differ in "
            + "; ".join(differences)
        )


@dataclass(frozen=True)
class _FinetunedRun:
    """What CMAP keeps of the fine-tuned model once it is released."""

    accuracy: AccuracyResult
    cache: HeadCache
    signature: dict[str, object]


def _finetuned_run(study: ModelUnderStudy, circuit, groups, prompts, config, progress):
    """The fine-tuned model's accuracy and its circuit heads' outputs, cached on the CPU."""
    model, adapter = study.model, study.adapter
    layout = _layout(circuit, groups, adapter)
    positions = sites_positions(layout.sites, prompts)  # [rows, site]
    accuracy = score_accuracy(model, prompts, config.batch_size)
    cache = capture_heads(
        model, adapter, prompts.input_ids, positions, layout.mask, config.batch_size, progress
    )
    return _FinetunedRun(accuracy, cache, _signature(study)), layout


def _base_run(study: ModelUnderStudy, finetuned: _FinetunedRun, layout: _Layout, prompts, config, progress):
    """Base accuracy, then its accuracy with each group's cached heads, then with the whole circuit's."""
    model, adapter = study.model, study.adapter
    _check_same(finetuned.signature, _signature(study))
    positions = sites_positions(layout.sites, prompts)

    def accuracy(cache: HeadCache | None) -> AccuracyResult:
        run = None if cache is None else patch_from_cache(adapter, cache, positions, prompts.input_ids)
        return score_accuracy(model, prompts, config.batch_size, intervention=run)

    acc_base = accuracy(None)
    named = [(g.value, finetuned.cache.subset(m)) for g, m in layout.group_masks.items()]
    named.append((CIRCUIT, finetuned.cache))
    patched = {name: accuracy(cache) for name, cache in tqdm(named, desc="cmap", disable=not progress)}
    return acc_base, patched


def run_cmap(
    base: Opener,
    finetuned: Opener,
    circuit: Circuit,
    prompts: EncodedPrompts,
    config: CMAPConfig | None = None,
    groups: Sequence[Group | str] | None = None,
    progress: bool = True,
) -> CMAPResult:
    """Patch the fine-tuned model's head outputs into the base model per group and for the whole circuit.

    Each model is given as an opener (`benchmark.models.held` for one already loaded): the fine-tuned
    model is opened (and, by a loader, released) before the base model, so at most one model is loaded at
    a time. `groups`: the groups to patch (default: every group with heads).
    """
    config = config or CMAPConfig()
    chosen, skipped = resolve_groups(circuit, groups)
    with finetuned() as study:
        ft, layout = _finetuned_run(study, circuit, chosen, prompts, config, progress)
    with base() as study:
        acc_base, patched = _base_run(study, ft, layout, prompts, config, progress)

    base_acc, ft_acc = acc_base.accuracy, ft.accuracy.accuracy

    def entry(name: str, heads: tuple[Head, ...]) -> CMAPPatch:
        acc, correct = patched[name].accuracy, patched[name].correct
        return CMAPPatch(
            name, heads, acc, acc - base_acc, gain(acc, base_acc, ft_acc, config.min_gap), correct
        )

    return CMAPResult(
        config=config,
        n_prompts=len(prompts),
        acc_base=base_acc,
        acc_finetuned=ft_acc,
        gap=ft_acc - base_acc,
        gain_defined=abs(ft_acc - base_acc) >= config.min_gap,
        groups=tuple(entry(g.value, circuit.heads(g)) for g in chosen),
        circuit=entry(CIRCUIT, tuple(dict.fromkeys(h for g in chosen for h in circuit.heads(g)))),
        skipped_groups=skipped,
        base_correct=acc_base.correct,
        finetuned_correct=ft.accuracy.correct,
    )


def run_cmap_pair(
    pair: ModelPair,
    circuit: Circuit,
    config: CMAPConfig | None = None,
    groups: Sequence[Group | str] | None = None,
    progress: bool = True,
) -> CMAPResult:
    """CMAP of a checked pair, loading one model at a time (fine-tuned first, freed before the base)."""
    config = config or CMAPConfig()
    prompts = cmap_prompts(load_tokenizer(pair.base), config)
    return run_cmap(
        lambda: opened(lambda: pair.loaded("base", progress)),
        lambda: opened(lambda: pair.loaded("finetuned", progress)),
        circuit,
        prompts,
        config,
        groups,
        progress,
    )
