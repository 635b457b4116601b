"""The model zoo: seeded CPU recipes for LoRA adapters on SmolLM2 that make reference pairs (issue 7).

Names load from their submodules on first use (`benchmark.lazy`), so importing the package stays cheap.
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "pairs": ("REFERENCE_PAIRS", "ReferencePair", "get_pair"),
    "recipes": ("ADAPTERS_DIR", "RECIPES", "Recipe", "get_recipe"),
    "tasks": ("TASKS", "TrainRow", "generate_task"),
    "train": ("Evaluation", "TrainingReport", "canonical_test", "train_recipe"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
