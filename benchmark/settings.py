"""Every setting that decides a run's numbers: each method's config, the run's settings composed of
them, and the named presets. Torch-free: the methods, the pipeline and the result file (its `settings`
block is a `ScoreSettings`) all use these classes, so each knob is defined once.

Which split serves what: circuits are found on validation prompts and judged on test prompts, so a
circuit is never scored on the prompts it was selected with; mean-ablation means come from the train
split's reference prompts; DCM trains, selects and reports on train / validation / test.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from typing import Literal, get_args

from benchmark.kinds import Count, NonNegative, Positive, Rate

# Upper bounds on the sizes a user can ask for (`etbench data`, `accuracy` and `score`, and every split
# the suite generates): 100 times spec-v1's largest split (DCM's 1000 training pairs) and 128 times its
# batch size, small enough that a typo (--prompts 10000000) fails at once instead of filling the memory.
MAX_PROMPTS = 100_000
MAX_BATCH_SIZE = 4096

# The faithfulness curve's default circuit sizes, as shares of all heads (from 1% to 100%).
# The named ablations: what an ablated head outputs instead of its own value. "mean": its mean over the
# reference set at that position; "resample": its output on a counterfactual prompt (another context of
# the same split, queried at another box), at the same position.
ABLATIONS: tuple[str, ...] = ("mean", "resample")

# Discovery's pre-filters (DiscoveryConfig.prefilter; None: every sender patched exactly).
PrefilterName = Literal["atp"]
PREFILTERS: tuple[str, ...] = get_args(PrefilterName)

CURVE_FRACTIONS: tuple[float, ...] = (
    0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
)  # fmt: skip


@dataclass(frozen=True)
class BehaviourConfig:
    """Accuracy through lm-eval: the test split's size and seed."""

    n_prompts: Positive = 500
    seed: int = 0


@dataclass(frozen=True)
class DiscoveryConfig:
    """Path patching: prompts, selection rule (threshold, significance, cap), minimality pruning."""

    n_prompts: Positive = 300  # path-patching prompts (validation split)
    n_minimality_prompts: Positive = 100  # validation split
    effect_threshold: float = -0.01  # a head's mean effect must be at most this
    z_score: float = 2.58  # ... and significant: mean + z * standard error < 0
    max_group_fraction: Rate = 0.15  # at most this share of all heads per group
    minimality_tolerance: NonNegative = 0.01  # drop a head whose removal moves the metric by less (relative)
    seed: int = 0
    rows_per_pass: Positive = 64  # (prompt, sender) rows per forward pass
    batch_size: Positive = 32
    # None: every sender patched exactly; "atp": AtP ranks the senders and only the best ranked and a
    # random sample of the others are patched exactly (`path_patching.prefilter`). Null before schema 4.
    prefilter: PrefilterName | None = None

    def __post_init__(self) -> None:
        if self.prefilter is not None and self.prefilter not in PREFILTERS:
            raise ValueError(
                f"unknown discovery prefilter {self.prefilter!r}; choose None (exact) or {PREFILTERS}"
            )

    def max_heads(self, n_components: int) -> int:
        return max(1, math.floor(self.max_group_fraction * n_components))


@dataclass(frozen=True)
class FaithfulnessConfig:
    """Faithfulness: evaluation prompts (the behaviour split), mean-ablation reference set, random draws,
    and the curve's circuit sizes."""

    n_prompts: Positive = 500  # evaluation prompts: the behaviour (test) split
    n_reference: Positive = 500  # reference set: distinct train contexts, one prompt each (metric v2)
    n_random: Count = 10  # random-circuit draws
    seed: int = 0  # seeds the random circuits and the reference set's letters
    curve_fractions: tuple[Rate, ...] = CURVE_FRACTIONS
    batch_size: Positive = 32
    # The ablations every faithfulness number is reported under, each a name of `ABLATIONS`; the first one
    # fills the result's `faithfulness` block. None in results before metric v2 (mean ablation only).
    ablations: tuple[str, ...] | None = ("mean", "resample")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ablations or ()) - set(ABLATIONS))
        if unknown or self.ablations == ():
            raise ValueError(f"unknown ablations {unknown or '(none)'}; choose from {list(ABLATIONS)}")


@dataclass(frozen=True)
class BootstrapConfig:
    """Intervals: a seeded percentile bootstrap that resamples whole contexts (the n rows that query one
    context's n boxes are not independent), the same resamples for every number of a result, so that a
    difference of two numbers on the same prompts gets a paired interval."""

    n_resamples: Positive = 1000
    seed: int = 0
    level: Rate = 0.95


@dataclass(frozen=True)
class DCMConfig:
    """DCM: 1000 / 500 / 500 pairs, lambda 0.01, Adam 0.1, batches of 32 over 2 epochs by default."""

    sparsity: NonNegative = 0.01  # lambda of the L1 term lambda * sum(1 - m)
    learning_rate: NonNegative = 0.1
    batch_size: Positive = 32  # pairs per mask update
    epochs: Positive = 2
    n_train: Positive = 1000
    n_validation: Positive = 500
    n_test: Positive = 500
    seed: int = 0  # shuffling of the training pairs
    data_seed: int = 0  # splits and counterfactual pairs
    n_boxes: Positive = 7
    mask_init: Rate = 1.0  # every head starts clean: the L1 term is 0 and only useful heads move
    eval_every: Positive | None = None  # validate every N steps; None: after each epoch
    eval_batch_size: Positive = 32

    def __post_init__(self) -> None:
        counts = {**self.sizes(), "batch_size": self.batch_size, "epochs": self.epochs}
        counts["eval_batch_size"] = self.eval_batch_size
        bad = {name: value for name, value in counts.items() if value < 1}
        if bad:
            raise ValueError(f"DCMConfig: these must be at least 1: {bad}")
        if not 0.0 <= self.mask_init <= 1.0:
            raise ValueError(f"DCMConfig: mask_init must lie in [0, 1], got {self.mask_init}")

    def sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "validation": self.n_validation, "test": self.n_test}


@dataclass(frozen=True)
class CMAPConfig:
    """CMAP: 500 test prompts; the gain is undefined when the accuracy gap is under 0.02."""

    n_prompts: Positive = 500
    n_boxes: Positive = 7
    seed: int = 0  # test split seed
    batch_size: Positive = 32
    min_gap: NonNegative = 0.02

    def __post_init__(self) -> None:
        if self.n_prompts < 1 or self.batch_size < 1:
            raise ValueError(f"CMAPConfig: n_prompts and batch_size must be at least 1, got {self}")
        if self.min_gap < 0:
            raise ValueError(f"CMAPConfig: min_gap must be >= 0, got {self.min_gap}")


@dataclass(frozen=True)
class ScoreSettings:
    """The preset and every setting of every stage (seeds and sizes included): everything that decides a
    run's numbers and nothing that does not (such as the output path)."""

    preset: str = "spec-v1"
    n_boxes: Positive = 7
    dtype: str = "float32"
    device_map: str | None = None
    behaviour: BehaviourConfig = BehaviourConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    faithfulness: FaithfulnessConfig = FaithfulnessConfig()
    dcm: DCMConfig = DCMConfig()
    cmap: CMAPConfig = CMAPConfig()
    bootstrap: BootstrapConfig | None = BootstrapConfig()  # None in results before metric v2
    # The noise floor: each circuit found a second time, with the discovery settings on validation prompts
    # of this seed (other contexts, as many prompts), so that an overlap between two models can be read
    # against a model's overlap with itself. None: no second discovery (and null before metric v2).
    floor_seed: int | None = 1

    def __post_init__(self) -> None:
        if self.faithfulness.n_prompts != self.behaviour.n_prompts:
            raise ValueError(
                "faithfulness is measured on the behaviour split: set faithfulness.n_prompts to "
                f"behaviour.n_prompts ({self.behaviour.n_prompts}), got {self.faithfulness.n_prompts}"
            )
        boxes = {"dcm": self.dcm.n_boxes, "cmap": self.cmap.n_boxes}
        if any(n != self.n_boxes for n in boxes.values()):
            raise ValueError(f"every stage must use the run's {self.n_boxes} boxes, got {boxes}")

    @property
    def batch_size(self) -> int:
        """Prompts per forward pass of the whole-model passes (behaviour, means): faithfulness's."""
        return self.faithfulness.batch_size

    def with_common(
        self, n_boxes: int | None = None, seed: int | None = None, batch_size: int | None = None
    ) -> ScoreSettings:
        """The same settings with boxes, seed or batch size changed in every stage that reads them."""
        s = self
        if seed is not None:
            s = replace(
                s,
                behaviour=replace(s.behaviour, seed=seed),
                discovery=replace(s.discovery, seed=seed),
                faithfulness=replace(s.faithfulness, seed=seed),
                dcm=replace(s.dcm, seed=seed, data_seed=seed),
                cmap=replace(s.cmap, seed=seed),
                floor_seed=seed + 1,
            )
        if batch_size is not None:
            s = replace(
                s,
                discovery=replace(s.discovery, batch_size=batch_size),
                faithfulness=replace(s.faithfulness, batch_size=batch_size),
                dcm=replace(s.dcm, eval_batch_size=batch_size),
                cmap=replace(s.cmap, batch_size=batch_size),
            )
        if n_boxes is not None:
            dcm, cmap = replace(s.dcm, n_boxes=n_boxes), replace(s.cmap, n_boxes=n_boxes)
            s = replace(s, n_boxes=n_boxes, dcm=dcm, cmap=cmap)
        return s


def with_overrides(settings: ScoreSettings, **stages: dict) -> ScoreSettings:
    """`settings` with fields of named stages replaced: `with_overrides(s, dcm={"n_train": 64})`."""
    names = {f.name for f in dataclasses.fields(ScoreSettings)}
    unknown = sorted(set(stages) - names)
    if unknown:
        raise ValueError(f"unknown settings {unknown}; choose from {sorted(names)}")
    changed = {
        name: replace(getattr(settings, name), **fields) if isinstance(fields, dict) else fields
        for name, fields in stages.items()
    }
    return replace(settings, **changed)


CUSTOM = "custom"  # the preset name of settings that are not a preset's

PRESETS: dict[str, ScoreSettings] = {
    "spec-v1": ScoreSettings(),
    # About 1/7 of SPEC's sizes (DCM 1/16): a 135M model pair end to end on a CPU. With 35
    # path-patching prompts the standard error is sqrt(300/35) = 2.9 times SPEC's, so the significance
    # test uses z = 1.0: an effect must exceed about the same multiple of the per-prompt spread as
    # SPEC's z = 2.58 at 300 prompts demands (2.58 * sqrt(35/300) = 0.88; 1.0 is slightly stricter).
    # DCM keeps SPEC's 2 epochs with batches of 8, so each mask gets 16 Adam steps (SPEC: 63): enough
    # for a mask to move from 1 to 0 at lr 0.1.
    "cpu-small": with_overrides(
        ScoreSettings(preset="cpu-small"),
        behaviour={"n_prompts": 70},
        discovery={"n_prompts": 35, "n_minimality_prompts": 35, "z_score": 1.0, "rows_per_pass": 128},
        faithfulness={"n_prompts": 70, "n_reference": 70, "n_random": 5},
        dcm={"n_train": 64, "n_validation": 32, "n_test": 32, "batch_size": 8},
        cmap={"n_prompts": 70},
    ),
}


def preset_settings(
    name: str,
    n_boxes: int | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
    prefilter: str | None = None,
    **stages: dict,
) -> ScoreSettings:
    """The named preset with the common knobs (None: the preset's) and per-stage field overrides.

    `prefilter` chooses how discovery finds the same circuit (None: exact, as every preset), so like the
    placement it keeps the preset's name. With overrides the settings are no longer the preset's, and the
    result says so: its preset is "custom" (a result that names a preset must have that preset's settings)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    settings = PRESETS[name].with_common(n_boxes, seed, batch_size)
    placement = {k: v for k, v in (("dtype", dtype), ("device_map", device_map)) if v is not None}
    if prefilter is not None:
        placement["discovery"] = replace(settings.discovery, prefilter=prefilter)
    settings = check_sizes(with_overrides(replace(settings, **placement), **stages))
    return replace(settings, preset=CUSTOM) if stages else settings


_SIZE_FIELDS = {"n_prompts", "n_minimality_prompts", "n_reference", "n_train", "n_validation", "n_test"}


def check_sizes(settings: ScoreSettings) -> ScoreSettings:
    """`settings`, if no split is over MAX_PROMPTS and no batch over MAX_BATCH_SIZE; else a ValueError."""
    for stage in dataclasses.fields(settings):
        config = getattr(settings, stage.name)
        for field in dataclasses.fields(config) if dataclasses.is_dataclass(config) else ():
            value = getattr(config, field.name)
            bound = MAX_PROMPTS if field.name in _SIZE_FIELDS else None
            bound = MAX_BATCH_SIZE if field.name.endswith("batch_size") else bound
            if bound is not None and value > bound:
                raise ValueError(f"{stage.name}.{field.name} is {value}, over the suite's bound {bound}")
    return settings
