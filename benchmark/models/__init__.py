"""Load a model or a pair, record what was loaded, and find the attention heads (architecture adapter).

Names are imported on first use (see `benchmark.lazy`), so importing the package stays cheap.
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "ARCHITECTURES": "adapter",
    "ArchitectureAdapter": "adapter",
    "ArchitectureSpec": "adapter",
    "HeadShape": "adapter",
    "QKV": "adapter",
    "UnsupportedArchitectureError": "adapter",
    "head_shape": "adapter",
    "AdapterRecord": "fingerprint",
    "ModelRecord": "fingerprint",
    "sha256_files": "fingerprint",
    "vocab_sha256": "fingerprint",
    "weight_files": "fingerprint",
    "DTYPES": "loading",
    "LoadedModel": "loading",
    "ModelLoadError": "loading",
    "ModelSpec": "loading",
    "UnsupportedModelError": "loading",
    "load_config": "loading",
    "load_model": "loading",
    "load_tokenizer": "loading",
    "spec_fingerprint": "loading",
    "ModelPair": "pairs",
    "PairMismatchError": "pairs",
    "check_pair": "pairs",
    "check_pair_configs": "pairs",
    "load_pair": "pairs",
    "release": "pairs",
    "vocab_difference": "pairs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
