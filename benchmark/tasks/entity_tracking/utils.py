"""lm-eval glue for the boxes task: builds the test split from the suite's own generator (no data files).

lm-eval calls `boxes_test_split(**metadata, **dataset_kwargs)` (its `custom_dataset` hook). The metadata holds
the model arguments (`pretrained`, `tokenizer`, `gguf_file`, `revision`...) and anything passed with
`--metadata`, so `--metadata '{"n_prompts": 100, "seed": 1}'` changes the split. When the tokenizer is
known, the words that are not single tokens for it are removed exactly as `etbench accuracy` removes
them, so both score the same split.
"""

from __future__ import annotations

import logging

import datasets

from benchmark.data import check_vocabulary, generate_split
from benchmark.data.words import LABELS, OBJECTS

# A child of lm-eval's logger, so its messages appear with lm-eval's own.
logger = logging.getLogger("lm_eval.entity_tracking")

DEFAULT_PROMPTS = 500  # SPEC section 9: 500 prompts for accuracy
DEFAULT_SEED = 0
_TOKENIZER_OPTIONS = ("revision", "trust_remote_code", "subfolder")  # model_args that the tokenizer shares


def _words_for(n_boxes: int, metadata: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The objects and labels that are single tokens for the model's tokenizer (all words if unknown)."""
    name = metadata.get("tokenizer") or metadata.get("pretrained")
    if not isinstance(name, str):
        logger.warning("entity_tracking: tokenizer unknown to the task; using the full word list unchecked")
        return OBJECTS, LABELS
    from transformers import AutoTokenizer

    options = {key: metadata[key] for key in _TOKENIZER_OPTIONS if key in metadata}
    if metadata.get("gguf_file") and not metadata.get("tokenizer"):
        options["gguf_file"] = metadata["gguf_file"]
    tokenizer = AutoTokenizer.from_pretrained(name, **options)
    vocabulary = check_vocabulary(tokenizer, n_boxes)
    if vocabulary.removed_objects or vocabulary.removed_labels:
        logger.warning(
            "entity_tracking: removed words that are not single tokens for %s: objects %s, labels %s",
            name,
            list(vocabulary.removed_objects),
            list(vocabulary.removed_labels),
        )
    return vocabulary.objects, vocabulary.labels


def boxes_test_split(
    n_boxes: int, n_prompts: int = DEFAULT_PROMPTS, seed: int = DEFAULT_SEED, **metadata
) -> datasets.DatasetDict:
    """The boxes test split of `n_boxes` boxes as a DatasetDict with one split, "test"."""
    objects, labels = _words_for(n_boxes, metadata)
    split = generate_split(n_boxes, "test", int(n_prompts), int(seed), objects, labels)
    logger.info(
        "entity_tracking: split %s sha256 %s, %d rows", split.split_id, split.sha256, len(split.examples)
    )
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(split.records())})
