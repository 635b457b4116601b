"""The pairs DCM trains, selects and reports on (SPEC section 6): three splits of clean prompts drawn once
per run, and for each desideratum its counterfactual pairs over the same clean rows, encoded once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from benchmark.data import (
    Desideratum,
    EncodedPairs,
    EncodedPrompts,
    Split,
    Vocabulary,
    build_pairs,
    check_vocabulary,
    encode_examples,
    encode_pairs,
    generate_split,
)
from benchmark.settings import DCMConfig


@dataclass(frozen=True)
class DCMData:
    """Encoded counterfactual pairs of one desideratum for training, model selection and the report."""

    train: EncodedPairs
    validation: EncodedPairs
    test: EncodedPairs


def dcm_splits(vocabulary: Vocabulary, config: DCMConfig = DCMConfig()) -> dict[str, Split]:
    """The train / validation / test splits DCM draws its clean prompts from (also recorded in results)."""
    return {
        name: generate_split(
            config.n_boxes, name, size, config.data_seed, vocabulary.objects, vocabulary.labels
        )
        for name, size in config.sizes().items()
    }


def dcm_data(
    tokenizer,
    desideratum: Desideratum,
    config: DCMConfig = DCMConfig(),
    splits: Mapping[str, Split] | None = None,
    clean: Mapping[str, EncodedPrompts] | None = None,
) -> DCMData:
    """Encode the three DCM splits of `desideratum` (default: `dcm_splits` of the words the tokenizer
    keeps; a scoring run passes the splits it already built and records). `clean`: `clean_prompts` of
    these splits, where several desiderata share them (`build_dcm_data`)."""
    if splits is None:
        splits = dcm_splits(check_vocabulary(tokenizer, config.n_boxes), config)
    sizes, clean = config.sizes(), clean or {}
    parts = {
        name: encode_pairs(
            tokenizer, build_pairs(split, desideratum, config.data_seed)[: sizes[name]], clean.get(name)
        )
        for name, split in splits.items()
    }
    return DCMData(**parts)


def clean_prompts(tokenizer, splits: Mapping[str, Split], config: DCMConfig) -> dict[str, EncodedPrompts]:
    """The clean side of every desideratum's pairs of each split, encoded once: `build_pairs` pairs the
    split's rows in order, whatever the desideratum, so only the counterfactuals differ between them."""
    sizes = config.sizes()
    return {name: encode_examples(tokenizer, split.examples[: sizes[name]]) for name, split in splits.items()}


def used_splits(data: DCMData, config: DCMConfig) -> dict[str, EncodedPairs]:
    """The rows of each split a mask is trained, validated and tested on (the first n of each)."""
    check_sizes(data, config)
    return {name: getattr(data, name).select(slice(0, size)) for name, size in config.sizes().items()}


def check_sizes(data: DCMData, config: DCMConfig) -> None:
    """Raise if a split holds fewer pairs than the config asks for (naming what is needed)."""
    have = {name: len(getattr(data, name)) for name in config.sizes()}
    short = [name for name, size in config.sizes().items() if have[name] < size]
    if short:
        raise ValueError(
            f"too few prompts for the DCM splits: need {config.sizes()} pairs (train / validation / test), "
            f"got {have}; build more pairs or lower n_train / n_validation / n_test in DCMConfig"
        )
