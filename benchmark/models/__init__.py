"""Load a model or a pair, record what was loaded, and find the attention heads (architecture adapter)."""

from benchmark.models.adapter import (
    ARCHITECTURES,
    QKV,
    ArchitectureAdapter,
    ArchitectureSpec,
    HeadShape,
    UnsupportedArchitectureError,
    head_shape,
)
from benchmark.models.fingerprint import AdapterRecord, ModelRecord, sha256_files, vocab_sha256, weight_files
from benchmark.models.loading import (
    DTYPES,
    LoadedModel,
    ModelLoadError,
    ModelSpec,
    UnsupportedModelError,
    load_config,
    load_model,
    load_tokenizer,
    spec_fingerprint,
)
from benchmark.models.pairs import (
    ModelPair,
    PairMismatchError,
    check_pair,
    check_pair_configs,
    load_pair,
    release,
    vocab_difference,
)

__all__ = [
    "spec_fingerprint",
    "ARCHITECTURES",
    "DTYPES",
    "QKV",
    "AdapterRecord",
    "ArchitectureAdapter",
    "ArchitectureSpec",
    "HeadShape",
    "LoadedModel",
    "ModelLoadError",
    "ModelPair",
    "ModelRecord",
    "ModelSpec",
    "PairMismatchError",
    "UnsupportedArchitectureError",
    "UnsupportedModelError",
    "check_pair",
    "check_pair_configs",
    "head_shape",
    "load_config",
    "load_model",
    "load_pair",
    "load_tokenizer",
    "release",
    "sha256_files",
    "vocab_difference",
    "vocab_sha256",
    "weight_files",
]
