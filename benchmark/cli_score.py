"""`etbench score`: the argument parser and handler (kept apart from cli.py, which stays a short index)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

from benchmark.data.boxes import SUPPORTED_BOXES, check_boxes
from benchmark.errors import CliError
from benchmark.settings import MAX_BATCH_SIZE, PRESETS
from benchmark.zoo.pairs import REFERENCE_PAIRS, get_pair

if TYPE_CHECKING:
    from benchmark.models import ModelSpec


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def size(maximum: int):
    """argparse type: an integer from 1 to `maximum` (a size: prompts, rows, batch)."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    parse.__name__ = "size"
    return parse


def _add_model_options(parser) -> None:
    """`--pair`, or `--base` / `--finetuned` with their revision, GGUF file and adapter chain."""
    parser.add_argument(
        "--pair",
        choices=sorted(REFERENCE_PAIRS),
        help="a reference pair of the zoo (SmolLM2 + shipped adapters) instead of --base / --finetuned",
    )
    for which in ("base", "finetuned"):
        parser.add_argument(f"--{which}", help=f"{which} model: hub id, directory, .gguf or smollm2")
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


def add_score_parser(commands) -> None:
    """Register `etbench score` on the CLI's subcommands."""
    parser = commands.add_parser(
        "score",
        help="score a base / fine-tuned pair: every metric, a validated result JSON, a summary row",
        description="Behaviour (through lm-eval), circuits by path patching, faithfulness, DCM and CMAP of "
        "a pair. Each stage is stored in the run directory as it finishes; rerunning resumes.",
    )
    _add_model_options(parser)
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="weights and activations of both models (default: float32; bfloat16 halves the memory of a "
        "7B pair on a GPU, its numbers differ from float32's and the result records it)",
    )
    placement = parser.add_mutually_exclusive_group()
    placement.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available)")
    placement.add_argument(
        "--device-map", default=None, help='accelerate device map, e.g. "auto" (multi-GPU)'
    )
    parser.add_argument(
        "--preset",
        default="spec-v1",
        choices=sorted(PRESETS),
        help="sizes: spec-v1 (the full ones, default) or cpu-small (about a seventh, for a CPU); "
        "docs/metrics.md lists both",
    )
    parser.add_argument(
        "--boxes",
        type=int,
        default=None,
        help=f"boxes per context: {', '.join(map(str, SUPPORTED_BOXES))} (default: the preset's, 7)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of every stage (default 0)")
    parser.add_argument(
        "--ablation",
        choices=("mean", "resample", "both"),
        default="both",
        help="what an ablated head outputs in faithfulness runs: its mean over the reference set, its value "
        "on a paired reference prompt, or both side by side (default; one alone makes the preset custom)",
    )
    parser.add_argument(
        "--batch-size",
        type=size(MAX_BATCH_SIZE),
        default=None,
        help="prompts per forward pass in every stage but DCM training (default: the preset's, "
        f"{PRESETS['spec-v1'].batch_size}), 1 to {MAX_BATCH_SIZE}; lower it when memory runs out; recorded "
        "in the result",
    )
    parser.add_argument("--out", default=None, help="result JSON (default: RUN_DIR/result.json)")
    parser.add_argument("--run-dir", default=None, help="stage cache (default: runs/<base>__<finetuned>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--submissions",
        type=Path,
        default=Path("submissions"),
        help="committed results to compare with: a result of the same inputs must hold the same numbers",
    )
    parser.set_defaults(handler=cmd_score)


def _spec(args: argparse.Namespace, which: str, device: str) -> ModelSpec:
    """One model's spec from its `--{which}*` options (and `--adapter` for the fine-tuned one)."""
    from benchmark.models import ModelSpec

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


# The options that name a model; `--pair` replaces all of them.
_MODEL_OPTIONS = tuple(
    f"{which}{suffix}"
    for which in ("base", "finetuned")
    for suffix in ("", "_revision", "_gguf_file", "_adapter")
) + ("adapter",)


def _pair_specs(args: argparse.Namespace, device: str) -> tuple[ModelSpec, ModelSpec]:
    """Base and fine-tuned specs from `--pair` or from `--base` / `--finetuned` (exactly one way)."""
    explicit = [f"--{name.replace('_', '-')}" for name in _MODEL_OPTIONS if getattr(args, name)]
    if args.pair:
        if explicit:
            raise CliError(f"--pair names both models; drop {', '.join(explicit)}")
        placement = {"dtype": args.dtype, "device": device, "device_map": args.device_map}
        try:
            return get_pair(args.pair).specs(**placement)
        except FileNotFoundError as error:
            raise CliError(str(error)) from error
    if not (args.base and args.finetuned):
        raise CliError("name the models with --base and --finetuned, or a zoo pair with --pair")
    return _spec(args, "base", device), _spec(args, "finetuned", device)


def cmd_score(args: argparse.Namespace) -> int:
    """Score the pair, write the result, print its leaderboard row and, last, whether it reproduces the
    committed submission of the same inputs (exit code 1 when it does not)."""
    import torch

    from benchmark.pipeline import score_pair
    from benchmark.pipeline.runner import stage_table
    from benchmark.settings import preset_settings
    from benchmark.submission.compare import reproduction_report

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(f"--device {device}: this machine has no CUDA device; use --device cpu")
    if args.boxes is not None:
        check_boxes(args.boxes)  # before any model loads
    only = {} if args.ablation == "both" else {"faithfulness": {"ablations": (args.ablation,)}}
    settings = preset_settings(
        args.preset, n_boxes=args.boxes, seed=args.seed, batch_size=args.batch_size, **only
    )
    base, finetuned = _pair_specs(args, device)
    scored = score_pair(base, finetuned, settings, args.run_dir, args.out, progress=not args.no_progress)
    print(summary(scored.result, scored.path.name))
    print("\n" + tabulate(stage_table(scored.outputs.stages), headers=("stage", "", "seconds")))
    print(f"\nresult: {scored.path} (validated)\nrun directory: {scored.run_dir}")
    print("plots: " + ", ".join(str(path) for path in scored.plots))
    report, reproduced = reproduction_report(json.loads(scored.path.read_text()), args.submissions)
    print(report)
    return 0 if reproduced else 1


def summary(result, file: str = "") -> str:
    """The pair's leaderboard row, one column per line, numbers with their 95% intervals."""
    from benchmark.leaderboard.table import COLUMNS, row_intervals, row_values, shown

    values, intervals = row_values(result, file), row_intervals(result)
    rows = [
        (
            column.title,
            None if values[column.key] is None else shown(values[column.key], intervals.get(column.key)),
        )
        for column in COLUMNS
    ]
    return tabulate(rows, tablefmt="github", missingval="-", disable_numparse=True)


def add_verify_parser(commands) -> None:
    """Register `etbench verify` on the CLI's subcommands."""
    parser = commands.add_parser(
        "verify",
        help="re-run a submission from what it records and compare: does it reproduce?",
        description="Re-run the pair a result file records (models, revisions, adapters, settings) in a "
        "fresh run directory and compare the numbers with the file's, under the tolerances of `etbench "
        "score`. Exit code 0 when they agree. --record writes the verdict next to the submission "
        "(<folder>/verified/<file>), which the leaderboard shows.",
    )
    parser.add_argument("result", type=Path, help="the result file to verify, e.g. submissions/x.json")
    parser.add_argument("--device", default=None, help="device of the re-run (default: cuda if present)")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/verify/<file name>")
    parser.add_argument("--record", action="store_true", help="write the verdict for the leaderboard")
    parser.add_argument("--no-progress", action="store_true", help="no stage headers or progress bars")
    parser.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-run, compare, print the differences and (last) the verdict; record it when asked."""
    import torch

    from benchmark.pipeline.verify import verify
    from benchmark.submission.compare import tolerance_text
    from benchmark.submission.verified import write_verification

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(f"--device {device}: this machine has no CUDA device; use --device cpu")
    verified = verify(args.result, args.run_dir, device, progress=not args.no_progress)
    record = verified.verification
    for line in record.differences[:20]:
        print(f"  {line}")
    if args.record:
        print(f"recorded: {write_verification(args.result.parent, record)}")
    if record.reproduced:
        largest = f"largest float move {record.largest_tolerated:.1e}"
        print(f"verified {args.result}: same numbers on re-run ({tolerance_text()}; {largest})")
        return 0
    n = len(record.differences)
    print(f"does not verify {args.result}: {'1 value differs' if n == 1 else f'{n} values differ'} on re-run")
    return 1
