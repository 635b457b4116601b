"""Settings of a scoring run and the named presets (SPEC section 9 defaults, and a reduced CPU preset).

Which split serves what: circuits are found on validation prompts and judged on test prompts, so a
circuit is never scored on the prompts it was selected with; mean-ablation means come from the train
split's reference prompts; DCM trains, selects and reports on train / validation / test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class ScoreSettings:
    """Everything that decides a run's numbers (and nothing that does not, such as the output path)."""

    preset: str = "spec-v1"
    n_boxes: int = 7
    seed: int = 0
    accuracy_prompts: int = 500  # test split: accuracy, faithfulness, curves
    path_patching_prompts: int = 300  # validation split
    minimality_prompts: int = 100  # validation split
    effect_threshold: float = -0.01  # path patching: a head's mean effect must be at most this
    z_score: float = 2.58  # ... and mean + z * standard error < 0
    reference_prompts: int = 500  # train split, for mean ablation
    dcm_train: int = 1000
    dcm_validation: int = 500
    dcm_test: int = 500
    dcm_epochs: int = 2
    dcm_batch_size: int = 32  # pairs per mask update
    cmap_prompts: int = 500  # test split
    random_draws: int = 10
    batch_size: int = 32
    rows_per_pass: int = 64  # (prompt, sender) rows per path-patching forward pass

    def to_dict(self) -> dict:
        return asdict(self)

    def changed_from_preset(self) -> dict:
        """Fields that differ from the named preset (recorded in the result)."""
        base = PRESETS[self.preset]
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        }


PRESETS: dict[str, ScoreSettings] = {
    "spec-v1": ScoreSettings(),
    # About 1/7 of SPEC's sizes (DCM 1/16): a 135M model pair end to end on a CPU. With 35
    # path-patching prompts the standard error is sqrt(300/35) = 2.9 times SPEC's, so the significance
    # test uses z = 1.0: an effect must exceed about the same multiple of the per-prompt spread as
    # SPEC's z = 2.58 at 300 prompts demands (2.58 * sqrt(35/300) = 0.88; 1.0 is slightly stricter).
    # DCM keeps SPEC's 2 epochs with batches of 8, so each mask gets 16 Adam steps (SPEC: 63).
    "cpu-small": ScoreSettings(
        preset="cpu-small",
        accuracy_prompts=70,
        path_patching_prompts=35,
        minimality_prompts=35,
        z_score=1.0,
        reference_prompts=70,
        dcm_train=64,
        dcm_validation=32,
        dcm_test=32,
        dcm_batch_size=8,  # 2 epochs of 8 updates: enough for a mask to move from 1 to 0 at lr 0.1
        cmap_prompts=70,
        random_draws=5,
        rows_per_pass=128,
    ),
}


def preset_settings(name: str, **overrides) -> ScoreSettings:
    """The named preset with explicit overrides (None values are ignored); clear error for unknown names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
