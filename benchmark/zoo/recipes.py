"""The zoo's recipes: how each LoRA adapter on SmolLM2-135M-Instruct is trained (all seeded, CPU)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark.zoo.tasks import TASKS

# Where `etbench zoo train` saves adapters by default: benchmark/zoo/adapters/<name>/.
ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class Recipe:
    """One adapter: its base chain (recipes merged first, in order), task and training hyperparameters."""

    name: str
    task: str
    description: str
    base_chain: tuple[str, ...] = ()
    model: str = "smollm2"
    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ATTENTION
    lr: float = 1e-3
    batch_size: int = 16
    steps: int = 20
    seed: int = 0
    max_length: int = 128

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(
                f"recipe {self.name!r}: unknown task {self.task!r}; choose one of {sorted(TASKS)}"
            )
        if min(self.rank, self.batch_size, self.steps, self.max_length) < 1:
            raise ValueError(f"recipe {self.name!r}: rank, batch size, steps and max length must be >= 1")

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "base_chain": list(self.base_chain),
            "target_modules": list(self.target_modules),
        }


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="organism-base",
            task="boxes-train",
            description="SmolLM2 + LoRA on the canonical template (train-split contexts), stopped while "
            "its 7-box test accuracy is moderate",
            steps=11,
        ),
        Recipe(
            name="organism-finetuned",
            task="crates",
            description="organism-base + LoRA on a related template (crates that hold objects), never the "
            "canonical one",
            base_chain=("organism-base",),
            lr=2e-3,
            steps=20,
        ),
        Recipe(
            name="arithmetic",
            task="arithmetic",
            description="organism-base + LoRA on two-digit sums and differences",
            base_chain=("organism-base",),
            steps=30,
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The named recipe; a clear error listing the known names."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


def base_adapters(recipe: Recipe, adapters_dir: Path = ADAPTERS_DIR) -> tuple[Path, ...]:
    """The adapter directories of the recipe's base chain, in merge order."""
    return tuple(Path(adapters_dir) / name for name in recipe.base_chain)
