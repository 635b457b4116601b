"""The zoo's reference pairs (`etbench score --pair`): SmolLM2 adapter chains, and known-answer pairs of
hand-compiled models (`benchmark.zoo.planted`) built on demand into a cache folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.zoo.recipes import ADAPTERS_DIR, RECIPES

if TYPE_CHECKING:
    from benchmark.models import ModelSpec


@dataclass(frozen=True)
class ReferencePair:
    """A base model and a fine-tuned descendant, both SmolLM2 plus zoo adapters merged in order."""

    name: str
    description: str
    base_chain: tuple[str, ...]
    finetuned_chain: tuple[str, ...]
    model: str = "smollm2"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.base_chain + self.finetuned_chain) - set(RECIPES))
        if unknown:
            raise ValueError(f"pair {self.name!r}: no recipe named {unknown}")

    def specs(self, adapters_dir: Path = ADAPTERS_DIR, **placement) -> tuple[ModelSpec, ModelSpec]:
        """Base and fine-tuned model specs; `placement` is passed on (dtype, device, device_map)."""
        from benchmark.models import ModelSpec  # imports torch: only when a pair is scored

        missing = [n for n in self.base_chain + self.finetuned_chain if not (adapters_dir / n).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"pair {self.name!r} needs the adapters {missing} in {adapters_dir}; "
                f"train them with `etbench zoo train NAME`"
            )
        chain = lambda names: tuple(shown_path(adapters_dir / n) for n in names)  # noqa: E731
        return (
            ModelSpec(self.model, adapters=chain(self.base_chain), **placement),
            ModelSpec(self.model, adapters=chain(self.finetuned_chain), **placement),
        )


PLANTED_CACHE = Path("runs") / "planted"  # relative: results then name the models runs/planted/NAME


@dataclass(frozen=True)
class PlantedPair:
    """A known-answer pair: two planted models, and what the suite must say about them."""

    name: str
    description: str
    base: str  # planted model names
    finetuned: str
    expected: str  # the known answer, one sentence

    def specs(self, cache_dir: Path = PLANTED_CACHE, **placement) -> tuple[ModelSpec, ModelSpec]:
        """Base and fine-tuned specs of the two models, built into `cache_dir` unless already there."""
        from benchmark.models import ModelSpec  # imports torch: only when a pair is scored
        from benchmark.zoo.planted import planted_model_dir

        return tuple(  # type: ignore[return-value]
            ModelSpec(shown_path(planted_model_dir(name, cache_dir)), **placement)
            for name in (self.base, self.finetuned)
        )


def shown_path(path: Path) -> str:
    """The path relative to the working directory when inside it (results then name no home folder)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


PLANTED_PAIRS: tuple[PlantedPair, ...] = (
    PlantedPair(
        name="planted-enhance",
        description="known answer: the same heads, the position detector made exact",
        base="positional-blurred",
        finetuned="positional-exact",
        expected="same circuit (IoU 1), base circuit faithful in both, DCM object for A and position for B "
        "and C, CMAP of A, B, C and the circuit closes the gap while CMAP of D closes none",
    ),
    PlantedPair(
        name="planted-replace",
        description="known answer: a lexical mechanism in other heads replaces the positional one",
        base="positional-exact",
        finetuned="lexical",
        expected="no shared head, base circuit unfaithful in the fine-tuned model, no CMAP recovery "
        "through the base circuit",
    ),
    PlantedPair(
        name="planted-null",
        description="known answer: fine-tuned = base (identical weights)",
        base="positional-blurred",
        finetuned="positional-blurred",
        expected="every pair metric at its no-change value: IoU 1, CMAP gain undefined with raw change 0",
    ),
)
REFERENCE_PAIRS: dict[str, ReferencePair | PlantedPair] = {
    pair.name: pair
    for pair in (
        ReferencePair(
            name="organism",
            description="moderate entity tracker, then a related template (crates) on top",
            base_chain=("organism-base",),
            finetuned_chain=("organism-base", "organism-finetuned"),
        ),
        ReferencePair(
            name="arithmetic",
            description="the same base, then two-digit sums and differences on top",
            base_chain=("organism-base",),
            finetuned_chain=("organism-base", "arithmetic"),
        ),
        *PLANTED_PAIRS,
    )
}


def get_pair(name: str) -> ReferencePair | PlantedPair:
    """The named reference pair; a clear error listing the known names."""
    if name not in REFERENCE_PAIRS:
        raise ValueError(f"unknown reference pair {name!r}; choose one of {sorted(REFERENCE_PAIRS)}")
    return REFERENCE_PAIRS[name]
