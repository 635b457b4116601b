"""DCM, desiderata-based component masking (SPEC section 6): which heads of a group carry object, position
or label, per model, and how two models' selections overlap."""

from benchmark.dcm.masking import Checkpoint, DCMConfig, DCMResult, train_mask, train_masks
from benchmark.dcm.overlap import (
    DCMRun,
    build_dcm_data,
    dcm_overlap,
    resolve_groups,
    run_dcm,
    transfer_accuracies,
)
from benchmark.dcm.pairs import DCMData, check_sizes, dcm_data
from benchmark.dcm.patching import EmptyGroupError, group_heads, patch_result

__all__ = [
    "Checkpoint",
    "DCMConfig",
    "DCMData",
    "DCMResult",
    "DCMRun",
    "EmptyGroupError",
    "build_dcm_data",
    "check_sizes",
    "dcm_data",
    "dcm_overlap",
    "group_heads",
    "patch_result",
    "resolve_groups",
    "run_dcm",
    "train_mask",
    "train_masks",
    "transfer_accuracies",
]
