"""Prompts, splits, counterfactual pairs and token positions of the boxes task (no model code).

Names are imported on first use (see `benchmark.lazy`), so importing the package stays cheap.
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "Context": "boxes",
    "DEFAULT_BOXES": "boxes",
    "DatasetError": "boxes",
    "Example": "boxes",
    "SPLITS": "boxes",
    "SUPPORTED_BOXES": "boxes",
    "Split": "boxes",
    "TASK_VERSION": "boxes",
    "generate_split": "boxes",
    "read_jsonl": "boxes",
    "reference_prompts": "boxes",
    "render": "boxes",
    "CounterfactualPair": "counterfactuals",
    "DCM_DESIDERATA": "counterfactuals",
    "Desideratum": "counterfactuals",
    "build_pairs": "counterfactuals",
    "EncodedPairs": "tokenization",
    "EncodedPrompts": "tokenization",
    "TokenPositions": "tokenization",
    "TokenizerError": "tokenization",
    "Vocabulary": "tokenization",
    "answer_token_id": "tokenization",
    "check_vocabulary": "tokenization",
    "encode_examples": "tokenization",
    "encode_pairs": "tokenization",
    "encode_prompts": "tokenization",
    "find_positions": "tokenization",
    "LABELS": "words",
    "OBJECTS": "words",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
