"""Model cards of the zoo's adapters: the recipe, how training went and what was measured."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from benchmark.zoo.train import TrainingReport


def render_card(report: TrainingReport) -> str:
    """CARD.md text: recipe, training (steps, rate, wall time, losses) and canonical accuracies."""
    recipe = report.recipe
    chain = " -> ".join([recipe.model, *recipe.base_chain, recipe.name])
    lines = [
        f"# {recipe.name}",
        "",
        recipe.description + ".",
        "",
        f"Model: `{chain}` (LoRA adapters merged in order). Retrain: `etbench zoo train {recipe.name}`.",
        "",
        "## Recipe",
        "",
        "```json",
        json.dumps(recipe.to_dict(), indent=2),
        "```",
        "",
        "## Training",
        "",
        f"- steps: {len(report.losses)} of batch {recipe.batch_size} (constant lr {recipe.lr}, AdamW)",
        f"- wall time of the steps: {report.train_seconds:.1f} s ({report.seconds_per_step:.2f} s per step), "
        f"CPU, {torch.get_num_threads()} thread(s), torch {torch.__version__}, {platform.machine()}",
        f"- wall time of the whole run (load, train, save, evaluate): {report.total_seconds:.1f} s",
        f"- answer loss, first / last step: {report.losses[0]:.4f} / {report.losses[-1]:.4f}",
        f"- adapter size: {report.adapter_bytes / 1e6:.2f} MB",
        "",
        "## Canonical 7-box test accuracy",
        "",
        "Suite's default test split (`generate_split(7, 'test', 500, 0)` with the words `check_vocabulary` "
        "keeps: 504 rows for SmolLM2); fewer rows are its first rows, scored while training (unmerged LoRA).",
        "",
        "| step | rows | accuracy |",
        "|---:|---:|---:|",
        *(f"| {e.step} | {e.n} | {e.accuracy:.3f} |" for e in report.evaluations),
        "",
    ]
    return "\n".join(lines)


def write_card(report: TrainingReport, directory: Path) -> Path:
    """Write CARD.md next to the adapter."""
    path = Path(directory) / "CARD.md"
    path.write_text(render_card(report))
    return path
