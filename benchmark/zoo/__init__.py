"""The model zoo: seeded CPU recipes for LoRA adapters on SmolLM2 that make reference pairs (issue 7)."""

from benchmark.zoo.pairs import REFERENCE_PAIRS, ReferencePair, get_pair
from benchmark.zoo.recipes import ADAPTERS_DIR, RECIPES, Recipe, get_recipe
from benchmark.zoo.tasks import TASKS, TrainRow, generate_task
from benchmark.zoo.train import Evaluation, TrainingReport, canonical_test, train_recipe

__all__ = [
    "ADAPTERS_DIR",
    "REFERENCE_PAIRS",
    "RECIPES",
    "TASKS",
    "Evaluation",
    "Recipe",
    "ReferencePair",
    "TrainRow",
    "TrainingReport",
    "canonical_test",
    "generate_task",
    "get_pair",
    "get_recipe",
    "train_recipe",
]
