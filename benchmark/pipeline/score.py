"""`etbench score`: every metric of SPEC for a base / fine-tuned pair, one cached stage at a time.

Order (at most one model in memory, three loads): the base model's behaviour, circuit, faithfulness and
DCM; the fine-tuned model's, plus the base circuit inside it and the base DCM heads patched into it;
then CMAP (fine-tuned activations cached, base model patched). Each stage's output is stored in the run
directory as it finishes, keyed by its settings and both models' weights, so a rerun resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import benchmark
from benchmark.cmap import CMAPConfig, CMAPResult, cmap_prompts, run_cmap
from benchmark.data import (
    EncodedPrompts,
    Split,
    Vocabulary,
    build_pairs,
    check_vocabulary,
    encode_examples,
    encode_pairs,
)
from benchmark.data import generate_split as _generate
from benchmark.dcm import (
    DCMConfig,
    DCMOverlap,
    DCMRun,
    build_dcm_data,
    dcm_overlap,
    run_dcm,
    transfer_accuracies,
)
from benchmark.faithfulness import (
    FaithfulnessConfig,
    FaithfulnessReport,
    FaithfulnessResult,
    ablation_means,
    cross_model_faithfulness,
    evaluate_faithfulness,
)
from benchmark.models import ModelSpec, check_pair_configs, load_tokenizer, spec_fingerprint
from benchmark.path_patching.discovery import DiscoveryConfig, DiscoveryResult, discover_circuit
from benchmark.pipeline.behaviour import Behaviour, measure_behaviour
from benchmark.pipeline.models import OneModelAtATime
from benchmark.pipeline.rundir import RunDirectory, stage_key
from benchmark.pipeline.settings import ScoreSettings


@dataclass(frozen=True)
class ModelOutputs:
    """Everything measured on one model of the pair."""

    behaviour: Behaviour
    discovery: DiscoveryResult
    faithfulness: FaithfulnessReport
    dcm: DCMRun | None  # None when the circuit has no heads to mask


@dataclass(frozen=True)
class PairOutputs:
    """Everything `etbench score` measured, before it becomes a result file."""

    settings: ScoreSettings
    vocabulary: Vocabulary
    splits: dict[str, Split]  # role -> split
    fingerprints: dict[str, str]  # "base" / "finetuned" -> spec fingerprint
    base: ModelOutputs
    finetuned: ModelOutputs
    base_circuit_in_finetuned: FaithfulnessResult
    dcm_overlap: tuple[DCMOverlap, ...]
    cmap: CMAPResult | None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    model_records: dict = field(default_factory=dict)  # "base" / "finetuned" -> ModelRecord


def method_configs(
    settings: ScoreSettings,
) -> tuple[DiscoveryConfig, FaithfulnessConfig, DCMConfig, CMAPConfig]:
    """The per-method configs that a run's settings imply (one place maps settings to methods)."""
    s = settings
    discovery = DiscoveryConfig(
        n_prompts=s.path_patching_prompts,
        n_minimality_prompts=s.minimality_prompts,
        effect_threshold=s.effect_threshold,
        z_score=s.z_score,
        seed=s.seed,
        rows_per_pass=s.rows_per_pass,
        batch_size=s.batch_size,
    )
    faithfulness = FaithfulnessConfig(
        n_prompts=s.accuracy_prompts,
        n_reference=s.reference_prompts,
        n_random=s.random_draws,
        seed=s.seed,
        batch_size=s.batch_size,
    )
    dcm = DCMConfig(
        n_train=s.dcm_train,
        n_validation=s.dcm_validation,
        n_test=s.dcm_test,
        epochs=s.dcm_epochs,
        batch_size=s.dcm_batch_size,
        seed=s.seed,
        data_seed=s.seed,
        n_boxes=s.n_boxes,
        eval_batch_size=s.batch_size,
    )
    cmap = CMAPConfig(n_prompts=s.cmap_prompts, n_boxes=s.n_boxes, seed=s.seed, batch_size=s.batch_size)
    return discovery, faithfulness, dcm, cmap


class ScoreRun:
    """One pair, one settings object, one run directory; `run()` gives the `PairOutputs`."""

    def __init__(
        self, base: ModelSpec, finetuned: ModelSpec, settings: ScoreSettings, run_dir, progress=True
    ):
        self.pair = check_pair_configs(base, finetuned)
        self.settings, self.progress = settings, progress
        self.models = OneModelAtATime(self.pair, progress)
        self.run_dir = RunDirectory(run_dir)
        self.tokenizer = load_tokenizer(base)
        self.vocabulary = check_vocabulary(self.tokenizer, settings.n_boxes)
        self.fingerprints = {"base": spec_fingerprint(base), "finetuned": spec_fingerprint(finetuned)}
        self.configs = method_configs(settings)
        self.splits = self._splits()
        self.seconds: dict[str, float] = {}
        self.means: dict[str, object] = {}  # which -> [pos, layer, head, d] mean-ablation means
        self.records: dict[str, object] = {}  # which -> ModelRecord

    def _splits(self) -> dict[str, Split]:
        s, v = self.settings, self.vocabulary
        make = lambda split, n: _generate(s.n_boxes, split, n, s.seed, v.objects, v.labels)  # noqa: E731
        return {
            "behaviour": make("test", s.accuracy_prompts),
            "path_patching": make("validation", s.path_patching_prompts),
            "minimality": make("validation", s.minimality_prompts),
            "reference": make("train", s.reference_prompts),
        }

    @cached_property
    def test_prompts(self) -> EncodedPrompts:
        """The behaviour split, encoded once (faithfulness in both models reads it)."""
        return encode_examples(self.tokenizer, self.splits["behaviour"].examples)

    @cached_property
    def dcm_data(self):
        """DCM pairs of every desideratum, built once (both models share the tokenizer)."""
        return build_dcm_data(self.tokenizer, self.configs[2])

    def stage(self, name: str, models: tuple[str, ...], compute, *depends):
        """Run `compute()` unless the run directory holds this stage for the same inputs."""
        fingerprints = [self.fingerprints[m] for m in models]
        key = stage_key(name, benchmark.__version__, self.settings.to_dict(), fingerprints, *depends)
        record = self.run_dir.run(name, key, compute, time.perf_counter)
        self.seconds[name] = record.seconds
        return record.output

    def _model_stages(self, which: str) -> ModelOutputs:
        discovery_config, faithfulness_config, dcm_config, _ = self.configs
        get = lambda: self.models.get(which)  # noqa: E731
        splits, batch_size = self.splits, self.settings.batch_size
        self.records[which] = self.stage(f"{which}.record", (which,), lambda: get()[0].record)
        behaviour = self.stage(
            f"{which}.behaviour",
            (which,),
            lambda: measure_behaviour(get()[0], splits["behaviour"], batch_size),
        )
        means = self.means[which] = self.stage(f"{which}.means", (which,), lambda: self._means(which))
        discovery = self.stage(f"{which}.discovery", (which,), lambda: self._discover(which, means))
        faithfulness = self.stage(
            f"{which}.faithfulness", (which,), lambda: self._faithfulness(which, discovery, means, behaviour)
        )
        dcm = self.stage(f"{which}.dcm", (which,), lambda: self._dcm(which, discovery))
        return ModelOutputs(behaviour, discovery, faithfulness, dcm)

    def _means(self, which: str):
        loaded, adapter = self.models.get(which)
        return ablation_means(
            loaded.model,
            adapter,
            loaded.tokenizer,
            self.splits["reference"],
            self.settings.seed,
            self.settings.batch_size,
        )

    def _discover(self, which: str, means) -> DiscoveryResult:
        loaded, adapter = self.models.get(which)
        tokenizer, s = loaded.tokenizer, self.settings
        pairs = encode_pairs(tokenizer, build_pairs(self.splits["path_patching"], "path_patching", s.seed))
        minimality = encode_examples(tokenizer, self.splits["minimality"].examples)
        return discover_circuit(
            loaded.model, adapter, pairs, minimality, means, self.configs[0], self.progress
        )

    def _faithfulness(self, which: str, discovery, means, behaviour: Behaviour) -> FaithfulnessReport:
        loaded, adapter = self.models.get(which)
        encoded = self.test_prompts
        return evaluate_faithfulness(
            loaded.model, adapter, discovery, encoded, means, self.configs[1], progress=self.progress
        )

    def _dcm(self, which: str, discovery: DiscoveryResult) -> DCMRun | None:
        if not discovery.circuit.all_heads():
            return None
        loaded, adapter = self.models.get(which)
        data = self.dcm_data
        return run_dcm(
            loaded.model, adapter, discovery.circuit, data, self.configs[2], progress=self.progress
        )

    def _cross(self, base: ModelOutputs, means) -> FaithfulnessResult:
        loaded, adapter = self.models.get("finetuned")
        encoded = self.test_prompts
        return cross_model_faithfulness(
            "base",
            base.discovery.circuit,
            "finetuned",
            loaded.model,
            adapter,
            encoded,
            means,
            self.settings.batch_size,
        ).result

    def _dcm_transfer(self, base: ModelOutputs) -> dict:
        if base.dcm is None:
            return {}
        loaded, adapter = self.models.get("finetuned")
        data = self.dcm_data
        return transfer_accuracies(loaded.model, adapter, base.dcm, data, self.progress)

    def _cmap(self, base: ModelOutputs) -> CMAPResult | None:
        circuit = base.discovery.circuit
        if not circuit.all_heads():
            return None
        prompts = cmap_prompts(self.tokenizer, self.configs[3])
        return run_cmap(
            lambda: self.models.use("base"),
            lambda: self.models.use("finetuned"),
            circuit,
            prompts,
            self.configs[3],
            progress=self.progress,
        )

    def run(self) -> PairOutputs:
        """All stages, in the order that loads each model as few times as possible."""
        base = self._model_stages("base")
        finetuned = self._model_stages("finetuned")
        both = ("base", "finetuned")
        cross = self.stage("cross.faithfulness", both, lambda: self._cross(base, self.means["finetuned"]))
        transfer = self.stage("cross.dcm_transfer", both, lambda: self._dcm_transfer(base))
        overlap = dcm_overlap(base.dcm, finetuned.dcm, transfer) if base.dcm and finetuned.dcm else ()
        cmap = self.stage("cross.cmap", both, lambda: self._cmap(base))
        self.models.release()
        return PairOutputs(
            self.settings,
            self.vocabulary,
            self.splits,
            self.fingerprints,
            base,
            finetuned,
            cross,
            overlap,
            cmap,
            dict(self.seconds),
            dict(self.records),
        )


def default_run_dir(base: ModelSpec, finetuned: ModelSpec) -> Path:
    """runs/<base>__<finetuned>, each model named by its source and last adapter, safe characters only."""
    safe = lambda text: "".join(c if c.isalnum() or c in "-_." else "-" for c in text)  # noqa: E731
    name = lambda spec: "-".join(Path(part).name for part in (spec.model, *spec.adapters[-1:]))  # noqa: E731
    return Path("runs") / "__".join(safe(name(spec)) for spec in (base, finetuned))
