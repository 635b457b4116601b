"""What a result was computed from and with: suite, settings, datasets, words, models, hardware, timing.

Part of the result format (see `benchmark.submission.result`); the blocks that mirror a method's config
or a loader's record say so, and a test checks that their fields stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.submission.kinds import Count, NonNegative, Positive, Rate, Sha256


@dataclass(frozen=True)
class Suite:
    """What produced the file and which definitions its numbers follow."""

    name: str
    version: str  # the suite's package version
    schema_version: str
    metric_version: str
    task_version: str  # e.g. "boxes-v1"


@dataclass(frozen=True)
class BehaviourSettings:
    """Accuracy through lm-eval: the test split's size and seed."""

    n_prompts: Positive
    seed: int


@dataclass(frozen=True)
class DiscoverySettings:
    """Path patching (SPEC 4); mirrors `benchmark.path_patching.discovery.DiscoveryConfig` (a test checks)."""

    n_prompts: Positive
    n_minimality_prompts: Positive
    effect_threshold: float
    z_score: float
    max_group_fraction: Rate
    minimality_tolerance: NonNegative
    seed: int
    rows_per_pass: Positive
    batch_size: Positive


@dataclass(frozen=True)
class FaithfulnessSettings:
    """Faithfulness (SPEC 5); mirrors `benchmark.faithfulness.FaithfulnessConfig` (a test checks)."""

    n_prompts: Positive
    n_reference: Positive
    n_random: Count
    seed: int
    curve_fractions: tuple[Rate, ...]
    batch_size: Positive


@dataclass(frozen=True)
class DCMSettings:
    """DCM (SPEC 6); mirrors `benchmark.dcm.DCMConfig` (a test checks)."""

    sparsity: NonNegative
    learning_rate: NonNegative
    batch_size: Positive
    epochs: Positive
    n_train: Positive
    n_validation: Positive
    n_test: Positive
    seed: int
    data_seed: int
    n_boxes: Positive
    mask_init: Rate
    eval_every: Positive | None
    eval_batch_size: Positive


@dataclass(frozen=True)
class CMAPSettings:
    """CMAP (SPEC 7); mirrors `benchmark.cmap.CMAPConfig` (a test checks)."""

    n_prompts: Positive
    n_boxes: Positive
    seed: int
    batch_size: Positive
    min_gap: NonNegative


@dataclass(frozen=True)
class Settings:
    """The preset and every setting of every stage (seeds and sizes included)."""

    preset: str
    n_boxes: Positive
    dtype: str
    device_map: str | None
    behaviour: BehaviourSettings
    discovery: DiscoverySettings
    faithfulness: FaithfulnessSettings
    dcm: DCMSettings
    cmap: CMAPSettings


@dataclass(frozen=True)
class DatasetSplit:
    """One generated split a stage read: its id, the SHA-256 of its canonical JSONL, and its size."""

    role: str  # which stage read it, e.g. "behaviour", "path_patching", "dcm_train"
    split_id: str  # boxes-v1/n{n}/{split}/seed{seed}/contexts{k}[/words-{digest}]
    sha256: Sha256
    n_rows: Positive  # rows of the split (contexts x boxes)
    n_used: Count  # rows the stage used (a prefix of the split)


@dataclass(frozen=True)
class Vocabulary:
    """The words kept for the pair's tokenizer (every split is generated from them) and those removed."""

    objects: tuple[str, ...]
    labels: tuple[str, ...]
    removed_objects: tuple[str, ...]
    removed_labels: tuple[str, ...]


@dataclass(frozen=True)
class HeadShape:
    """Head geometry; mirrors `benchmark.models.HeadShape`."""

    n_layers: Positive
    n_heads: Positive
    n_kv_heads: Positive
    head_dim: Positive


@dataclass(frozen=True)
class Adapter:
    """One PEFT adapter merged into a model; mirrors `benchmark.models.AdapterRecord`."""

    path: str
    weights_sha256: Sha256
    config_sha256: Sha256
    peft_type: str

    @property
    def name(self) -> str:
        """The adapter's folder (or hub repository) name, without the rest of its path."""
        return Path(self.path).name or self.path


@dataclass(frozen=True)
class Model:
    """Identity of one model; mirrors `benchmark.models.ModelRecord` (a test checks)."""

    id: str
    revision: str | None
    gguf_file: str | None
    adapters: tuple[Adapter, ...]
    dtype: str
    model_type: str
    architecture: str | None
    head_shape: HeadShape
    tokenizer_class: str
    vocab_size: Positive
    vocab_sha256: Sha256
    config_sha256: Sha256 | None
    weight_files: tuple[str, ...]
    weights_sha256: Sha256
    trust_remote_code: bool


@dataclass(frozen=True)
class Models:
    """The pair."""

    base: Model
    finetuned: Model


@dataclass(frozen=True)
class Hardware:
    """Where the numbers were computed, and the library versions that computed them."""

    device: str  # e.g. "cuda", "cpu", "auto" (device map)
    device_name: str  # e.g. "NVIDIA H100 80GB HBM3"
    torch_version: str
    transformers_version: str
    lm_eval_version: str
    python_version: str
    platform: str


@dataclass(frozen=True)
class StageTime:
    """Wall time of one stage of `etbench score`."""

    stage: str
    seconds: NonNegative


@dataclass(frozen=True)
class Timing:
    """When and how long: the only block allowed to differ between two runs with the same inputs."""

    started_at: str  # ISO 8601 with time zone, e.g. 2025-01-31T12:00:00+00:00
    finished_at: str
    total_seconds: NonNegative
    stages: tuple[StageTime, ...]
