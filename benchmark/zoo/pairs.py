"""The zoo's reference pairs: the adapter chains of each base / fine-tuned pair (`etbench score --pair`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.models import ModelSpec
from benchmark.zoo.recipes import ADAPTERS_DIR, RECIPES


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


def shown_path(path: Path) -> str:
    """The path relative to the working directory when inside it (results then name no home folder)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


REFERENCE_PAIRS: dict[str, ReferencePair] = {
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
    )
}


def get_pair(name: str) -> ReferencePair:
    """The named reference pair; a clear error listing the known names."""
    if name not in REFERENCE_PAIRS:
        raise ValueError(f"unknown reference pair {name!r}; choose one of {sorted(REFERENCE_PAIRS)}")
    return REFERENCE_PAIRS[name]
