"""Circuit discovery by path patching: four stages, selection and minimality pruning (SPEC section 4)."""

from benchmark.path_patching.sweep import STAGES, Stage, StageEffects, sweep_stage

__all__ = ["STAGES", "Stage", "StageEffects", "sweep_stage"]
