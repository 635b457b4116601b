"""DCM, desiderata-based component masking (SPEC section 6): which heads of a group carry object, position
or label, per model, and how two models' selections overlap."""

from benchmark.dcm.masking import (
    Checkpoint,
    DCMConfig,
    DCMData,
    DCMResult,
    check_sizes,
    dcm_data,
    train_mask,
)
from benchmark.dcm.overlap import (
    DCMRun,
    build_dcm_data,
    dcm_overlap,
    resolve_groups,
    run_dcm,
    transfer_accuracies,
)
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
    "transfer_accuracies",
]
