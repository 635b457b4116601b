"""The stages of `etbench score`, declared once: what each computes, what it needs, which settings and
splits decide it, and how it runs. `pipeline.runner` orders them, caches each one in the run directory
under a key of exactly those inputs, prints its progress, and times it.

Adding a stage is one `ScoreStage(...)` entry in `STAGES` (and, if it reads a new split, one `SplitRole`).
A per-model stage runs once for each side of the pair, in the order declared, base side first; pair
stages run last. At most one model is loaded at a time: the base, then the fine-tuned model, then the base
again for CMAP (three loads in all).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmark.cmap import cmap_prompts, cmap_split, run_cmap
from benchmark.data import (
    Split,
    Vocabulary,
    build_mix_pairs,
    build_pairs,
    encode_examples,
    encode_pairs,
    generate_split,
)
from benchmark.dcm import dcm_overlap, run_dcm, transfer_accuracies
from benchmark.dcm.pairs import dcm_splits
from benchmark.diagnostics import run_diagnostics
from benchmark.faithfulness import ablation_means, cross_model_faithfulness
from benchmark.faithfulness_curve import evaluate_faithfulness
from benchmark.mechanism import encode_mix, run_mix
from benchmark.path_patching.discovery import discover_circuit
from benchmark.pipeline.behaviour import measure_behaviour
from benchmark.pipeline.pair import Side
from benchmark.settings import ScoreSettings

if TYPE_CHECKING:
    from benchmark.pipeline.score import ScoreRun


@dataclass(frozen=True)
class SplitRole:
    """A generated split a stage reads, and how many of its rows that stage uses; `make` gives None when
    the settings ask for no such split (no noise floor)."""

    role: str  # as recorded in the result's datasets, e.g. "behaviour", "dcm_train"
    make: Callable[[ScoreSettings, Vocabulary], Split | None]
    used: Callable[[ScoreSettings, Split], int] = lambda settings, split: len(split.examples)


def _dcm_role(name: str) -> SplitRole:
    return SplitRole(
        f"dcm_{name}",
        lambda s, v: dcm_splits(v, s.dcm)[name],
        lambda s, split: s.dcm.sizes()[name],
    )


def _split(settings: ScoreSettings, vocabulary: Vocabulary, split: str, n_prompts: int, seed: int) -> Split:
    return generate_split(settings.n_boxes, split, n_prompts, seed, vocabulary.objects, vocabulary.labels)


# How the discovery stages' headers name the pre-filter (DiscoveryConfig.prefilter).
_PREFILTERED = {None: "", "atp": " (AtP pre-filter, exact verification)"}


def _floor_split(s: ScoreSettings, v: Vocabulary, n_prompts: int) -> Split | None:
    """Validation prompts of the noise floor's seed: the discovery split's size, other contexts."""
    return None if s.floor_seed is None else _split(s, v, "validation", n_prompts, s.floor_seed)


SPLITS: tuple[SplitRole, ...] = (
    SplitRole("behaviour", lambda s, v: _split(s, v, "test", s.behaviour.n_prompts, s.behaviour.seed)),
    SplitRole(
        "path_patching", lambda s, v: _split(s, v, "validation", s.discovery.n_prompts, s.discovery.seed)
    ),
    SplitRole(
        "minimality",
        lambda s, v: _split(s, v, "validation", s.discovery.n_minimality_prompts, s.discovery.seed),
        lambda s, split: s.discovery.n_minimality_prompts,
    ),
    SplitRole(  # one prompt per context (`reference_prompts`): n_reference contexts of n rows each
        "reference",
        lambda s, v: _split(s, v, "train", s.faithfulness.n_reference * s.n_boxes, s.faithfulness.seed),
        lambda s, split: s.faithfulness.n_reference,
    ),
    SplitRole("path_patching_floor", lambda s, v: _floor_split(s, v, s.discovery.n_prompts)),
    SplitRole(
        "minimality_floor",
        lambda s, v: _floor_split(s, v, s.discovery.n_minimality_prompts),
        lambda s, split: s.discovery.n_minimality_prompts,
    ),
    *(_dcm_role(name) for name in ("train", "validation", "test")),
    SplitRole("cmap", lambda s, v: cmap_split(v, s.cmap), lambda s, split: s.cmap.n_prompts),
)


@dataclass(frozen=True)
class ScoreStage:
    """One cached step. `needs` names the stages whose outputs `run` receives (per-model stages: of the
    same side; pair stages: "base.NAME" / "finetuned.NAME"); `reads` gives the settings that decide it."""

    name: str
    per_model: bool
    about: Callable[[ScoreSettings], str]  # what it computes, with its sizes (printed as it starts)
    reads: Callable[[ScoreSettings], tuple]
    run: Callable[[ScoreRun, Side | None, dict[str, Any]], Any]
    needs: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    since: str = "v1"  # the metric version whose definition this stage computes (part of its cache key)

    def id(self, side: Side | None) -> str:
        """The stage's name in the run directory and the timing table: "base.discovery", "cross.cmap"."""
        return f"{side.value}.{self.name}" if self.per_model else f"cross.{self.name}"


def _record(run: ScoreRun, side: Side, inputs: dict):
    return run.models.get(side).record


def _behaviour(run: ScoreRun, side: Side, inputs: dict):
    return measure_behaviour(run.models.get(side), run.splits["behaviour"], run.settings.batch_size)


def _means(run: ScoreRun, side: Side, inputs: dict):
    s = run.settings
    return ablation_means(run.models.get(side), run.splits["reference"], s.faithfulness.seed, s.batch_size)


def _discover(run: ScoreRun, side: Side, inputs: dict, suffix: str, seed: int):
    study, config = run.models.get(side), run.settings.discovery
    pairs = build_pairs(run.splits[f"path_patching{suffix}"], "path_patching", seed)
    encoded = encode_pairs(study.tokenizer, pairs)
    minimality = encode_examples(study.tokenizer, run.splits[f"minimality{suffix}"].examples)
    return discover_circuit(study, encoded, minimality, inputs["means"], config, run.progress)


def _discovery(run: ScoreRun, side: Side, inputs: dict):
    return _discover(run, side, inputs, "", run.settings.discovery.seed)


def _floor(run: ScoreRun, side: Side, inputs: dict):
    seed = run.settings.floor_seed
    return None if seed is None else _discover(run, side, inputs, "_floor", seed)


def _faithfulness(run: ScoreRun, side: Side, inputs: dict):
    """One report per ablation of the settings, each with its own full and empty runs."""
    full = inputs["behaviour"].suite.accuracy  # the unmodified model on the same test prompts
    study, config = run.models.get(side), run.settings.faithfulness
    return tuple(
        evaluate_faithfulness(
            study, inputs["discovery"], run.prompts_for(name), run.source(name, inputs["means"]), config,
            progress=run.progress, full_accuracy=full,
        )
        for name in config.ablations
    )  # fmt: skip


def _diagnostics(run: ScoreRun, side: Side, inputs: dict):
    """Per ablation: the position-scoped runs, between that ablation's full and empty runs."""
    circuit, study = inputs["discovery"].circuit, run.models.get(side)
    return tuple(
        run_diagnostics(
            study, circuit, run.prompts_for(report.ablation), run.source(report.ablation, inputs["means"]),
            report.ends, report.ablation, run.settings.batch_size,
        )
        for report in inputs["faithfulness"]
    )  # fmt: skip


def _mechanism(run: ScoreRun, side: Side, inputs: dict):
    if run.settings.n_boxes < 4:
        return None  # four answers need four boxes
    study = run.models.get(side)
    pairs = build_mix_pairs(run.splits["behaviour"], run.settings.behaviour.seed)
    prompts = encode_mix(study.tokenizer, pairs)
    return run_mix(study, inputs["discovery"].circuit, prompts, run.settings.batch_size, run.progress)


def _dcm(run: ScoreRun, side: Side, inputs: dict):
    circuit = inputs["discovery"].circuit
    if not circuit.all_heads():
        return None  # nothing to mask
    return run_dcm(run.models.get(side), circuit, run.dcm_data, run.settings.dcm, progress=run.progress)


def _cross_faithfulness(run: ScoreRun, side: None, inputs: dict):
    """Per ablation: the base circuit inside the fine-tuned model, f between the fine-tuned model's ends."""
    circuit, study = inputs["base.discovery"].circuit, run.models.get(Side.FINETUNED)
    return tuple(
        cross_model_faithfulness(
            Side.BASE.value, circuit, Side.FINETUNED.value, study, run.prompts_for(report.ablation),
            run.source(report.ablation, inputs["finetuned.means"]), run.settings.batch_size, report.ends,
        ).result
        for report in inputs["finetuned.faithfulness"]
    )  # fmt: skip


def _dcm_transfer(run: ScoreRun, side: None, inputs: dict):
    base_dcm = inputs["base.dcm"]
    if base_dcm is None:
        return {}
    return transfer_accuracies(run.models.get(Side.FINETUNED), base_dcm, run.dcm_data, run.progress)


def _dcm_overlap(run: ScoreRun, side: None, inputs: dict):
    base, finetuned = inputs["base.dcm"], inputs["finetuned.dcm"]
    return dcm_overlap(base, finetuned, inputs["cross.dcm_transfer"]) if base and finetuned else ()


def _cmap(run: ScoreRun, side: None, inputs: dict):
    circuit = inputs["base.discovery"].circuit
    if not circuit.all_heads():
        return None
    config = run.settings.cmap
    prompts = cmap_prompts(run.tokenizer, config, run.splits["cmap"])
    base, finetuned = (lambda: run.models.use(Side.BASE)), (lambda: run.models.use(Side.FINETUNED))
    return run_cmap(base, finetuned, circuit, prompts, config, progress=run.progress)


MODEL, PAIR = True, False  # per_model

STAGES: tuple[ScoreStage, ...] = (
    ScoreStage(
        "record", MODEL, run=_record, reads=lambda s: (),
        about=lambda s: "hash the weights, record the model's identity",
    ),
    ScoreStage(
        "behaviour", MODEL, run=_behaviour, reads=lambda s: (s.behaviour, s.batch_size),
        splits=("behaviour",),
        about=lambda s: f"accuracy through lm-eval and the suite's scorer ({s.behaviour.n_prompts} test "
        "prompts)",
    ),
    ScoreStage(
        "means", MODEL, run=_means, reads=lambda s: (s.faithfulness.seed, s.batch_size),
        splits=("reference",),
        about=lambda s: f"mean head outputs for mean ablation ({s.faithfulness.n_reference} reference "
        "prompts, one per context)",
        since="v2",
    ),
    ScoreStage(
        "discovery", MODEL, run=_discovery, reads=lambda s: (s.discovery,), needs=("means",),
        splits=("path_patching", "minimality"),
        about=lambda s: f"circuit by path patching{_PREFILTERED[s.discovery.prefilter]} on "
        f"{s.discovery.n_prompts} prompts, minimality pruning on {s.discovery.n_minimality_prompts}",
    ),
    ScoreStage(
        "faithfulness", MODEL, run=_faithfulness, reads=lambda s: (s.faithfulness,),
        needs=("behaviour", "means", "discovery"), splits=("behaviour",), since="v2",
        about=lambda s: f"circuit run, {s.faithfulness.n_random} random circuits, size curve "
        f"({s.faithfulness.n_prompts} test prompts; {' and '.join(s.faithfulness.ablations)} ablation)",
    ),
    ScoreStage(
        "dcm", MODEL, run=_dcm, reads=lambda s: (s.dcm,), needs=("discovery",),
        splits=("dcm_train", "dcm_validation", "dcm_test"),
        about=lambda s: f"DCM masks per group and desideratum ({s.dcm.n_train}/{s.dcm.n_validation}/"
        f"{s.dcm.n_test} train/validation/test pairs)",
        since="v2",
    ),
    ScoreStage(
        "diagnostics", MODEL, run=_diagnostics, reads=lambda s: (s.batch_size,),
        needs=("means", "discovery", "faithfulness"), splits=("behaviour",), since="v2",
        about=lambda s: "the circuit run with the context, the query segment, or every group site kept clean",
    ),
    ScoreStage(
        "mechanism", MODEL, run=_mechanism, reads=lambda s: (s.behaviour, s.batch_size), needs=("discovery",),
        splits=("behaviour",), since="v2",
        about=lambda s: f"mechanism mix: counterfactual patches of the query label, the last token and each "
        f"group ({s.behaviour.n_prompts} test prompts)",
    ),
    ScoreStage(
        "discovery_floor", MODEL, run=_floor, reads=lambda s: (s.discovery, s.floor_seed), needs=("means",),
        splits=("path_patching_floor", "minimality_floor"), since="v2",
        about=lambda s: f"noise floor: the circuit again, on {s.discovery.n_prompts} validation prompts of "
        f"other contexts (seed {s.floor_seed})",
    ),
    ScoreStage(
        "faithfulness", PAIR, run=_cross_faithfulness, reads=lambda s: (s.batch_size,),
        needs=("base.discovery", "finetuned.means", "finetuned.faithfulness"), splits=("behaviour",),
        since="v2",
        about=lambda s: "the base model's circuit run inside the fine-tuned model",
    ),
    ScoreStage(
        "dcm_transfer", PAIR, run=_dcm_transfer, reads=lambda s: (), needs=("base.dcm",),
        about=lambda s: "the base model's DCM heads patched in the fine-tuned model",
    ),
    ScoreStage(
        "dcm_overlap", PAIR, run=_dcm_overlap, reads=lambda s: (),
        needs=("base.dcm", "finetuned.dcm", "cross.dcm_transfer"),
        about=lambda s: "overlap of both models' DCM heads",
    ),
    ScoreStage(
        "cmap", PAIR, run=_cmap, reads=lambda s: (s.cmap,), needs=("base.discovery",), splits=("cmap",),
        since="v2",
        about=lambda s: f"fine-tuned head outputs patched into the base model ({s.cmap.n_prompts} prompts)",
    ),
)  # fmt: skip
