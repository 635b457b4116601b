"""Prompts, splits, counterfactual pairs and token positions of the boxes task (no model code)."""

from benchmark.data.boxes import (
    DEFAULT_BOXES,
    SPLITS,
    SUPPORTED_BOXES,
    TASK_VERSION,
    Context,
    DatasetError,
    Example,
    Split,
    generate_split,
    read_jsonl,
    render,
)
from benchmark.data.counterfactuals import (
    DCM_DESIDERATA,
    CounterfactualPair,
    Desideratum,
    build_pairs,
)
from benchmark.data.tokenization import (
    EncodedPairs,
    EncodedPrompts,
    TokenizerError,
    TokenPositions,
    Vocabulary,
    answer_token_id,
    check_vocabulary,
    encode_examples,
    encode_pairs,
    find_positions,
)
from benchmark.data.words import LABELS, OBJECTS

__all__ = [
    "DCM_DESIDERATA",
    "DEFAULT_BOXES",
    "LABELS",
    "OBJECTS",
    "SPLITS",
    "SUPPORTED_BOXES",
    "TASK_VERSION",
    "Context",
    "CounterfactualPair",
    "DatasetError",
    "Desideratum",
    "EncodedPairs",
    "EncodedPrompts",
    "Example",
    "Split",
    "TokenPositions",
    "TokenizerError",
    "Vocabulary",
    "answer_token_id",
    "build_pairs",
    "check_vocabulary",
    "encode_examples",
    "encode_pairs",
    "find_positions",
    "generate_split",
    "read_jsonl",
    "render",
]
