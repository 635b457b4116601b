"""`etbench score`: the argument parser and handler (kept apart from cli.py, which stays a short index)."""

from __future__ import annotations

import argparse

from benchmark.models import ModelSpec
from benchmark.pipeline.settings import PRESETS


def add_score_parser(commands) -> None:
    """Register `etbench score` on the CLI's subcommands."""
    parser = commands.add_parser(
        "score",
        help="score a base / fine-tuned pair: every metric, a validated result JSON, a summary row",
        description="Behaviour (through lm-eval), circuits by path patching, faithfulness, DCM and CMAP of "
        "a pair. Each stage is stored in the run directory as it finishes; rerunning resumes.",
    )
    for which in ("base", "finetuned"):
        parser.add_argument(
            f"--{which}", required=True, help=f"{which} model: hub id, directory, .gguf or smollm2"
        )
        parser.add_argument(f"--{which}-revision", help=f"hub revision of the {which} model")
        parser.add_argument(f"--{which}-gguf-file", help=f"GGUF file inside the {which} model's folder")
        parser.add_argument(
            f"--{which}-adapter",
            action="append",
            default=[],
            metavar="DIR",
            help=f"PEFT LoRA adapter merged into the {which} model (repeat for a chain, applied in order)",
        )
    parser.add_argument(
        "--adapter", action="append", default=[], metavar="DIR", help="same as --finetuned-adapter"
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    placement = parser.add_mutually_exclusive_group()
    placement.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available)")
    placement.add_argument(
        "--device-map", default=None, help='accelerate device map, e.g. "auto" (multi-GPU)'
    )
    parser.add_argument(
        "--preset", default="spec-v1", choices=sorted(PRESETS), help="sizes (default: SPEC v1)"
    )
    parser.add_argument(
        "--boxes", type=int, default=None, help="boxes per context (default: the preset's, 7)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of every stage (default 0)")
    parser.add_argument("--batch-size", type=int, default=None, help="prompts per forward pass")
    parser.add_argument("--out", default=None, help="result JSON (default: RUN_DIR/result.json)")
    parser.add_argument("--run-dir", default=None, help="stage cache (default: runs/<base>__<finetuned>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=cmd_score)


def _spec(args: argparse.Namespace, which: str, device: str) -> ModelSpec:
    adapters = getattr(args, f"{which}_adapter") + (args.adapter if which == "finetuned" else [])
    return ModelSpec(
        getattr(args, which),
        revision=getattr(args, f"{which}_revision"),
        gguf_file=getattr(args, f"{which}_gguf_file"),
        adapters=tuple(adapters),
        dtype=args.dtype,
        device=device,
        device_map=args.device_map,
    )


def cmd_score(args: argparse.Namespace) -> int:
    """Score the pair, write the result and print its leaderboard row."""
    import torch

    from benchmark.pipeline import preset_settings, score_pair, summary

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = preset_settings(args.preset, n_boxes=args.boxes, seed=args.seed, batch_size=args.batch_size)
    base, finetuned = _spec(args, "base", device), _spec(args, "finetuned", device)
    scored = score_pair(base, finetuned, settings, args.run_dir, args.out, progress=not args.no_progress)
    print(summary(scored.result, scored.path.name))
    print(f"\nresult: {scored.path} (validated)\nrun directory: {scored.run_dir}")
    print("plots: " + ", ".join(str(path) for path in scored.plots))
    return 0
