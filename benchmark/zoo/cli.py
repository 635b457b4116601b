"""`etbench zoo`: list the recipes and train one (kept apart from cli.py, which stays a short index)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tabulate import tabulate

from benchmark.errors import CliError


def add_zoo_parser(commands) -> None:
    """Register `etbench zoo list` and `etbench zoo train` on the CLI's subcommands."""
    parser = commands.add_parser(
        "zoo",
        help="the model zoo: seeded CPU recipes for LoRA adapters on SmolLM2 (reference pairs)",
        description="List the zoo's recipes or train one: a LoRA adapter saved with a model card.",
    )
    actions = parser.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list the recipes and whether their adapters exist")
    listing.set_defaults(handler=cmd_zoo_list)
    train = actions.add_parser(
        "train",
        help="train a recipe's adapter and write its model card",
        description="Train the recipe on CPU (seeded, deterministic), save the adapter and CARD.md, and "
        "measure the canonical 7-box test accuracy of the merged chain.",
    )
    train.add_argument("name", help="recipe name (see `etbench zoo list`)")
    train.add_argument("--out", type=Path, help="adapter directory (default: benchmark/zoo/adapters/NAME)")
    train.add_argument(
        "--adapters-dir", type=Path, help="where the base chain's adapters are (default: the zoo's)"
    )
    train.add_argument("--steps", type=int, help="override the recipe's step count (the card records it)")
    train.add_argument("--eval-every", type=int, default=0, help="score 140 test rows every N steps")
    train.add_argument("--test-rows", type=int, help="rows of the final accuracy (default: all; 0: none)")
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    train.set_defaults(handler=cmd_zoo_train)


def cmd_zoo_list(args: argparse.Namespace) -> int:
    """Print one row per recipe."""
    from benchmark.zoo.recipes import ADAPTERS_DIR, RECIPES

    rows = [
        [
            r.name,
            r.task,
            " -> ".join(r.base_chain) or "-",
            r.rank,
            r.lr,
            r.batch_size,
            r.steps,
            r.seed,
            "yes" if (ADAPTERS_DIR / r.name / "adapter_config.json").is_file() else "no",
        ]
        for r in RECIPES.values()
    ]
    headers = ["recipe", "task", "base chain", "rank", "lr", "batch", "steps", "seed", "trained"]
    print(tabulate(rows, headers=headers))
    return 0


def cmd_zoo_train(args: argparse.Namespace) -> int:
    """Train the recipe, save adapter and card, print where they are."""
    import torch

    from benchmark.zoo.card import write_card
    from benchmark.zoo.recipes import ADAPTERS_DIR, get_recipe
    from benchmark.zoo.train import train_recipe

    torch.set_num_threads(args.threads)
    try:
        recipe = get_recipe(args.name)
    except ValueError as error:
        raise CliError(str(error)) from error
    if args.steps is not None:
        recipe = dataclasses.replace(recipe, steps=args.steps)
    adapters_dir = args.adapters_dir or ADAPTERS_DIR
    out = args.out or ADAPTERS_DIR / recipe.name
    report = train_recipe(
        recipe, out=out, eval_every=args.eval_every, final_rows=args.test_rows, adapters_dir=adapters_dir
    )
    card = write_card(report, out)
    print(f"adapter: {out} ({report.adapter_bytes / 1e6:.2f} MB)\ncard: {card}")
    return 0
