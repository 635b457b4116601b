"""The model zoo: seeded CPU recipes for LoRA adapters on SmolLM2 that make reference pairs (issue 7).

Names are imported on first use (see `benchmark.lazy`), so importing the package stays cheap.
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "REFERENCE_PAIRS": "pairs",
    "ReferencePair": "pairs",
    "get_pair": "pairs",
    "ADAPTERS_DIR": "recipes",
    "RECIPES": "recipes",
    "Recipe": "recipes",
    "get_recipe": "recipes",
    "TASKS": "tasks",
    "TrainRow": "tasks",
    "generate_task": "tasks",
    "Evaluation": "train",
    "TrainingReport": "train",
    "canonical_test": "train",
    "train_recipe": "train",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
