"""`etbench score`: every metric for a base / fine-tuned pair, one cached stage at a time.

`ScoreRun` holds what the stages share (settings, tokenizer, the generated splits, at most one loaded
model); the stages themselves are declared in `pipeline.stages` and run by `pipeline.runner`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from benchmark.ablation import MEAN, RESAMPLE, AblationSource, ResamplePrompts, resample_prompts
from benchmark.cmap import CMAPResult
from benchmark.data import EncodedPrompts, Split, Vocabulary, check_vocabulary, encode_examples
from benchmark.dcm import DCMRun, build_dcm_data
from benchmark.diagnostics import Diagnostics
from benchmark.faithfulness import FaithfulnessReport, FaithfulnessResult, reference_input_ids
from benchmark.models import ModelRecord, ModelSpec, check_pair_configs, load_tokenizer, spec_fingerprint
from benchmark.path_patching.discovery import DiscoveryResult
from benchmark.pipeline.behaviour import BehaviourRun
from benchmark.pipeline.models import OneModelAtATime
from benchmark.pipeline.pair import Pair, Side
from benchmark.pipeline.rundir import RunDirectory
from benchmark.pipeline.runner import StageRun, run_stages
from benchmark.pipeline.stages import SPLITS
from benchmark.records import DCMOverlap, MechanismMix
from benchmark.settings import ScoreSettings


@dataclass(frozen=True)
class ModelOutputs:
    """Everything measured on one model of the pair."""

    record: ModelRecord
    behaviour: BehaviourRun
    discovery: DiscoveryResult
    faithfulness: tuple[FaithfulnessReport, ...]  # one per ablation, in the settings' order
    dcm: DCMRun | None  # None when the circuit has no heads to mask
    floor: DiscoveryResult | None  # the noise floor's second discovery (None: not asked for)
    diagnostics: tuple[Diagnostics, ...]  # one per ablation, as `faithfulness`
    mechanism: MechanismMix | None  # None with fewer than 4 boxes


@dataclass(frozen=True)
class PairOutputs:
    """Everything `etbench score` measured, before it becomes a result file."""

    settings: ScoreSettings
    vocabulary: Vocabulary
    splits: dict[str, Split]  # role -> split, in `SPLITS` order
    models: Pair[ModelOutputs]
    base_circuit_in_finetuned: tuple[FaithfulnessResult, ...]  # one per ablation
    dcm_overlap: tuple[DCMOverlap, ...]
    cmap: CMAPResult | None
    stages: tuple[StageRun, ...]

    @classmethod
    def of(cls, run: ScoreRun, outputs: dict[str, Any], stages: list[StageRun]) -> PairOutputs:
        """Typed view of the runner's outputs by stage id."""

        def model(side: Side) -> ModelOutputs:
            names = (
                "record", "behaviour", "discovery", "faithfulness", "dcm", "discovery_floor", "diagnostics",
                "mechanism",
            )  # fmt: skip
            return ModelOutputs(*(outputs[f"{side.value}.{name}"] for name in names))

        return cls(
            run.settings,
            run.vocabulary,
            run.splits,
            Pair.build(model),
            outputs["cross.faithfulness"],
            outputs["cross.dcm_overlap"],
            outputs["cross.cmap"],
            tuple(stages),
        )


class ScoreRun:
    """One pair, one settings object, one run directory; `run()` gives the `PairOutputs`."""

    def __init__(self, specs: Pair[ModelSpec], settings: ScoreSettings, run_dir, progress: bool = True):
        self.pair = check_pair_configs(specs.base, specs.finetuned)
        self.settings, self.progress = settings, progress
        self.models = OneModelAtATime(self.pair, progress)
        self.run_dir = RunDirectory(run_dir)
        self.tokenizer = load_tokenizer(specs.base)
        self.vocabulary = check_vocabulary(self.tokenizer, settings.n_boxes)
        self.fingerprints = specs.map(spec_fingerprint)
        made = {role.role: role.make(settings, self.vocabulary) for role in SPLITS}
        self.splits = {role: split for role, split in made.items() if split is not None}

    @cached_property
    def test_prompts(self) -> EncodedPrompts:
        """The behaviour split, encoded once (faithfulness in both models reads it)."""
        return encode_examples(self.tokenizer, self.splits["behaviour"].examples)

    @cached_property
    def resample_prompts(self) -> ResamplePrompts:
        """The test prompts, each paired with the reference prompt it resamples from (faithfulness seed)."""
        seed = self.settings.faithfulness.seed
        reference = reference_input_ids(self.tokenizer, self.splits["reference"], seed)
        return resample_prompts(self.test_prompts, reference, seed)

    def prompts_for(self, ablation: str) -> EncodedPrompts:
        """The test prompts a faithfulness run under `ablation` evaluates (resample: with counterfactuals)."""
        return self.resample_prompts if ablation == RESAMPLE else self.test_prompts

    def source(self, ablation: str, means) -> AblationSource:
        """The ablation's values: the evaluated model's means, or (resample) its counterfactual runs."""
        return AblationSource(ablation, means if ablation == MEAN else None)

    @cached_property
    def dcm_data(self):
        """DCM pairs of every desideratum, built once from the run's DCM splits (both models share them)."""
        splits = {name: self.splits[f"dcm_{name}"] for name in self.settings.dcm.sizes()}
        return build_dcm_data(self.tokenizer, self.settings.dcm, splits=splits)

    def run(self) -> PairOutputs:
        """All stages, in the order that loads each model as few times as possible."""
        with self.run_dir.lock():
            outputs, stages = run_stages(self)
        self.models.release()
        return PairOutputs.of(self, outputs, stages)


def default_run_dir(specs: Pair[ModelSpec]) -> Path:
    """runs/<base>__<finetuned>__<hash>: each model named by its source and last adapter (safe characters
    only), and 10 hex digits of the resolved sources, so two pairs whose folders share names never share
    a run directory."""
    safe = lambda text: "".join(c if c.isalnum() or c in "-_." else "-" for c in text)  # noqa: E731
    name = lambda spec: "-".join(Path(part).name for part in (spec.model, *spec.adapters[-1:]))  # noqa: E731
    sources = [_resolved(spec) for spec in specs]
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:10]
    return Path("runs") / "__".join([*(safe(name(spec)) for spec in specs), digest])


def _resolved(spec: ModelSpec) -> dict:
    """What names a model's source (not where it runs), local paths made absolute; a hub id stays."""
    absolute = lambda path: str(Path(path).resolve()) if Path(path).exists() else path  # noqa: E731
    return {
        "model": absolute(spec.model),
        "revision": spec.revision,
        "gguf_file": spec.gguf_file,
        "adapters": [absolute(adapter) for adapter in spec.adapters],
        "dtype": spec.dtype,
    }
