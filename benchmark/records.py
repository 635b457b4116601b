"""The records of a result file (one scored pair): each class is one JSON object, each field one key.

Torch-free, below the methods: a method's result turns itself into its record (`.record()`), the result
file is these records composed (`Result`), and the JSON Schema (`submission/schema-v{N}.json`) is generated
from them, with the settings (`benchmark.settings`), the vocabulary (`benchmark.data.words`) and the
model identity (`benchmark.models.identity`) they contain. Value kinds: `benchmark.kinds`. A stage that
did not run is null; numbers that are undefined (a gain with no gap, a ratio over a zero accuracy) are
null, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.circuit import Group
from benchmark.data.counterfactuals import Desideratum
from benchmark.data.words import Vocabulary
from benchmark.kinds import (
    Count,
    Heads,
    LayerHeadMatrix,
    MixAnswers,
    NonNegative,
    Outcomes,
    Positive,
    Rate,
    Sha256,
)
from benchmark.models.identity import ModelRecord
from benchmark.settings import ScoreSettings

# The three DCM desiderata (path patching's counterfactual kind is not one).
DCMDesideratum = Literal[Desideratum.OBJECT, Desideratum.POSITION, Desideratum.LABEL]


@dataclass(frozen=True)
class Suite:
    """What produced the file and which definitions its numbers follow."""

    name: str
    version: str  # the suite's package version
    schema_version: str
    metric_version: str
    task_version: str  # e.g. "boxes-v1"


@dataclass(frozen=True)
class DatasetSplit:
    """One generated split a stage read: its id, the SHA-256 of its canonical JSONL, and its size."""

    role: str  # which stage read it, e.g. "behaviour", "path_patching", "dcm_train"
    split_id: str  # boxes-v1/n{n}/{split}/seed{seed}/contexts{k}[/words-{digest}]
    sha256: Sha256
    n_rows: Positive  # rows of the split (contexts x boxes)
    n_used: Count  # rows the stage used (a prefix of the split)


@dataclass(frozen=True)
class Models:
    """The pair."""

    base: ModelRecord
    finetuned: ModelRecord


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


@dataclass(frozen=True)
class Accuracy:
    """Accuracy of one model on the test split, overall and per queried box (null: no row at that box), and
    each prompt's outcome, from which both are recomputed when the file is checked."""

    accuracy: Rate
    n: Positive
    per_position: tuple[Rate | None, ...]
    n_per_position: tuple[Count, ...]
    outcomes: Outcomes | None  # row i of the split: "1" answered right, "0" wrong; null in schema-1 files


@dataclass(frozen=True)
class Behaviour:
    """Accuracy of both models, as lm-eval scores it."""

    source: Literal["lm-eval"]
    base: Accuracy
    finetuned: Accuracy


@dataclass(frozen=True)
class Prefilter:
    """How a stage found with the attribution pre-filter chose the senders it patched exactly: AtP's best
    ranked (candidates), a seeded random sample of the others, and every sender if the sample held a head
    the selection rule would take (fell_back)."""

    steps: Positive  # integrated-gradient points of the AtP estimate
    n_senders: Count  # heads that can reach the receivers
    n_candidates: Count
    n_sampled: Count
    fell_back: bool
    miss_bound: float | None  # most negative exact effect among the sampled non-candidates (null: none)
    estimated: Heads  # senders never patched exactly: their mean and stderr are AtP's estimate


@dataclass(frozen=True)
class DiscoveryStage:
    """One path-patching stage: every head's mean effect as a sender and its standard error."""

    group: Group
    mean: LayerHeadMatrix | None  # null when the stage was skipped
    stderr: LayerHeadMatrix | None
    selected: Heads  # heads that passed selection at this stage, strongest first
    skipped_because: str | None
    prefilter: Prefilter | None = None  # null: every sender was patched exactly (schema 4 on)


@dataclass(frozen=True)
class Discovery:
    """One model's circuit: heads per group after minimality pruning, before it, and the stages' effects."""

    groups: dict[Group, Heads]
    selected: dict[Group, Heads]
    stages: tuple[DiscoveryStage, ...]
    minimality_metric: float | None


@dataclass(frozen=True)
class CircuitIoU:
    """Intersection over union of the base and fine-tuned circuits' heads, per group and overall."""

    groups: dict[Group, Rate]
    overall: Rate  # over the union of all groups' heads


@dataclass(frozen=True)
class NoiseFloor:
    """A model's circuit found a second time, on validation prompts of other contexts (settings.floor_seed),
    and its IoU with the first: how much a circuit moves when only the prompts change."""

    groups: dict[Group, Heads]
    iou: CircuitIoU  # against the model's circuit in `Circuits`


@dataclass(frozen=True)
class Circuits:
    """Both models' circuits, how much they share, and how grouped-query attention was handled."""

    base: Discovery
    finetuned: Discovery
    iou: CircuitIoU
    kv_group_size: Positive  # query heads per key-value head (1 without GQA)
    gqa_note: str  # e.g. "receivers' k/v patched per key-value group, group size 4"
    base_floor: NoiseFloor | None = None  # null before metric v2, or with settings.floor_seed null
    finetuned_floor: NoiseFloor | None = None


@dataclass(frozen=True)
class FaithfulnessScore:
    """Accuracy of the circuit run over that of the full model (null when the full accuracy is 0), and the
    normalized faithfulness f of the logit difference (null when the full and empty runs agree)."""

    full_accuracy: Rate
    circuit_accuracy: Rate
    faithfulness: NonNegative | None
    n_prompts: Positive
    undefined_because: str | None
    # Metric v2 (null before): each prompt's outcome and logit difference in the circuit run, their mean,
    # and f = (m(circuit) - m(empty)) / (m(full) - m(empty)) with the model's full and empty runs.
    outcomes: Outcomes | None = None
    logit_diffs: tuple[float, ...] | None = None
    logit_diff: float | None = None
    normalized: float | None = None


@dataclass(frozen=True)
class RandomBaseline:
    """Faithfulness of random circuits with the circuit's group sizes, over seeded draws."""

    mean: NonNegative | None
    std: NonNegative | None  # sample standard deviation; null with fewer than two draws
    draws: tuple[NonNegative | None, ...]
    seed: int
    normalized_draws: tuple[float | None, ...] | None = None  # each draw's f (metric v2; null before)
    normalized_mean: float | None = None


@dataclass(frozen=True)
class CurvePoint:
    """The circuit of the top-k ranked heads, k = fraction of all heads (rounded, at least 1)."""

    fraction: Rate
    k: Positive
    accuracy: Rate
    faithfulness: NonNegative | None
    normalized: float | None = None  # f of the logit difference (metric v2; null before)


@dataclass(frozen=True)
class Curve:
    """Faithfulness over circuit size, and its trapezoid area over the fractions."""

    points: tuple[CurvePoint, ...]
    area: NonNegative | None
    cpr: float | None = None  # area of f over the fractions (metric v2; null before)
    cmd: NonNegative | None = None  # area of |1 - f|


@dataclass(frozen=True)
class PositionDiagnostics:
    """The circuit run with more kept clean (`benchmark.diagnostics`): every head at every context
    position, or at every query-segment position; and every head at every group site alone (everything a
    four-group circuit could keep)."""

    context_kept: FaithfulnessScore
    query_kept: FaithfulnessScore
    all_sites: FaithfulnessScore


@dataclass(frozen=True)
class ModelFaithfulness:
    """A model's own circuit inside it, random circuits of the same sizes, and the size curve."""

    own: FaithfulnessScore
    random: RandomBaseline
    curve: Curve
    # Metric v2 (null before): the logit difference of each prompt in the unmodified model and with every
    # head ablated, the two ends f is measured between.
    full_logit_diffs: tuple[float, ...] | None = None
    empty_logit_diffs: tuple[float, ...] | None = None
    diagnostics: PositionDiagnostics | None = None  # metric v2; null before


@dataclass(frozen=True)
class Faithfulness:
    """Faithfulness in each model, and the base circuit evaluated inside the fine-tuned model, under one
    ablation (null before metric v2: mean ablation)."""

    base: ModelFaithfulness
    finetuned: ModelFaithfulness
    base_circuit_in_finetuned: FaithfulnessScore
    ablation: str | None = None


@dataclass(frozen=True)
class DCMMask:
    """The heads of one group that carry one desideratum in one model (rounded mask 0)."""

    group: Group
    desideratum: DCMDesideratum
    group_heads: Heads  # the masked heads, sorted; `mask` follows this order
    mask: tuple[Rate, ...]
    heads: Heads
    validation_accuracy: Rate
    test_accuracy: Rate
    n_test: Positive
    test_outcomes: Outcomes | None = None  # each test pair with `heads` patched (metric v2; null before)


@dataclass(frozen=True)
class DCMOverlap:
    """Base vs fine-tuned DCM heads of one (group, desideratum), and the base heads patched in each model."""

    group: Group
    desideratum: DCMDesideratum
    iou: Rate
    base_heads_in_base: Rate
    base_heads_in_finetuned: Rate | None


@dataclass(frozen=True)
class DCM:
    """DCM of both models per (group, desideratum), and their overlap; groups without heads are skipped."""

    base: tuple[DCMMask, ...]
    finetuned: tuple[DCMMask, ...]
    overlap: tuple[DCMOverlap, ...]
    skipped_groups: tuple[Group, ...]


@dataclass(frozen=True)
class CMAPEntry:
    """The fine-tuned model's outputs of a head set patched into the base model."""

    heads: Heads
    acc_patched: Rate
    change: float  # acc_patched - acc_base
    gain: float | None  # share of the accuracy gap closed; null when gain_defined is false
    outcomes: Outcomes | None = None  # each prompt in the patched run (metric v2; null before)


@dataclass(frozen=True)
class CMAP:
    """Cross-model activation patching: raw accuracies, and each group's and the full circuit's patch."""

    n_prompts: Positive
    acc_base: Rate
    acc_finetuned: Rate
    gain_defined: bool  # |acc_finetuned - acc_base| >= settings.cmap.min_gap
    circuit: CMAPEntry
    groups: dict[Group, CMAPEntry | None]  # null: the group has no heads
    base_outcomes: Outcomes | None = None  # each prompt, unpatched (metric v2; null before)
    finetuned_outcomes: Outcomes | None = None


@dataclass(frozen=True)
class MixRun:
    """One mechanism-mix patch: each prompt's answer, and the share of each answer over the kept prompts
    (null when no prompt is kept)."""

    name: str  # "query_label.layer12", "last.layer3", "group.value_fetcher"
    answers: MixAnswers
    original: Rate | None
    positional: Rate | None
    lexical: Rate | None
    reflexive: Rate | None
    other: Rate | None


@dataclass(frozen=True)
class MechanismMix:
    """One model's mechanism mix (`benchmark.mechanism`): patches of the query label's and the last token's
    residual after each layer, and of each circuit group's heads (null: no heads)."""

    n_prompts: Positive
    n_kept: Count  # prompts both the clean and the counterfactual run answer correctly
    query_label: tuple[MixRun, ...]  # one per layer
    last_token: tuple[MixRun, ...]
    groups: dict[Group, MixRun | None]
    positional_layer: Count | None  # the first layer whose query-label patch is mostly positional


@dataclass(frozen=True)
class Mechanism:
    """The mechanism mix of both models (null before metric v2, or with fewer than 4 boxes)."""

    base: MechanismMix
    finetuned: MechanismMix


@dataclass(frozen=True)
class Estimate:
    """One reported number with its bootstrap interval (`settings.bootstrap`): `name` says which number
    (see `benchmark.uncertainty`); null bounds when too few resamples define it."""

    name: str
    value: float | None
    low: float | None
    high: float | None
    n: Positive  # prompts the number is measured on
    n_contexts: Positive  # the independent units resampled


@dataclass(frozen=True)
class Result:
    """One scored pair: everything SPEC section 8 lists. Stages that did not run are null."""

    suite: Suite
    settings: ScoreSettings
    datasets: tuple[DatasetSplit, ...]
    vocabulary: Vocabulary
    models: Models
    hardware: Hardware
    timing: Timing
    behaviour: Behaviour
    circuits: Circuits | None
    faithfulness: Faithfulness | None
    dcm: DCM | None
    cmap: CMAP | None
    # SHA-256 of this file's canonical JSON with `digest` itself null (see `submission.integrity`); it
    # changes with any edit. Null in schema-1 files.
    digest: Sha256 | None
    # Schema 3 (null before): faithfulness under the other ablations of settings.faithfulness.ablations
    # (`faithfulness` holds the first), and every number's interval.
    other_ablations: tuple[Faithfulness, ...] | None = None
    uncertainty: tuple[Estimate, ...] | None = None
    mechanism: Mechanism | None = None
