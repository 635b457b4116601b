"""Prompts, splits, counterfactual pairs and token positions of the boxes task (no model code).

Names load from their submodules on first use (`benchmark.lazy`), so the torch-free parts (words,
splits, counterfactual kinds) import without torch.
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "boxes": (
        "DEFAULT_BOXES", "SPLITS", "SUPPORTED_BOXES", "TASK_VERSION", "Context", "DatasetError", "Example",
        "Split", "generate_split", "read_jsonl", "reference_prompts", "render",
    ),
    "counterfactuals": (
        "DCM_DESIDERATA", "MIX_ANSWERS", "CounterfactualPair", "Desideratum", "MixPair", "build_mix_pairs",
        "build_pairs",
    ),
    "tokenization": (
        "EncodedPairs", "EncodedPrompts", "TokenizerError", "TokenPositions", "answer_token_id",
        "check_vocabulary", "encode_examples", "encode_pairs", "encode_prompts", "find_positions",
    ),
    "words": ("LABELS", "OBJECTS", "Vocabulary"),
}  # fmt: skip
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
