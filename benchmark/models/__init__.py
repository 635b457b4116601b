"""Load a model or a pair, record what was loaded, and find the attention heads (architecture adapter).

Names load from their submodules on first use (`benchmark.lazy`): the identity records import without
torch or transformers.
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "adapter": (
        "ARCHITECTURES", "QKV", "ArchitectureAdapter", "ArchitectureSpec", "UnsupportedArchitectureError",
        "head_shape",
    ),
    "identity": ("AdapterRecord", "HeadShape", "ModelRecord"),
    "fingerprint": ("sha256_files", "vocab_sha256", "weight_files"),
    "loading": (
        "DTYPES", "LoadedModel", "ModelLoadError", "ModelSpec", "UnsupportedModelError", "load_config",
        "load_model", "load_tokenizer", "spec_fingerprint",
    ),
    "lora": ("AdapterMismatchError", "check_adapter", "read_safetensors_header"),
    "pairs": (
        "ModelPair", "PairMismatchError", "check_pair", "check_pair_configs", "load_pair", "release",
        "vocab_difference",
    ),
    "study": ("ModelUnderStudy", "Opener", "held", "model_device", "opened"),
}  # fmt: skip
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
