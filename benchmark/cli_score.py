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


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


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
        "--discovery",
        choices=("exact", "atp+exact"),
        default="exact",
        help="exact (default): path-patch every sender of every stage; atp+exact: attribution patching "
        "ranks the senders and only its best-ranked ones and a random sample of the rest are path-patched "
        "(the circuit is chosen among exact effects alone; the result records what was verified)",
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
    _add_dry_run_options(parser)
    parser.set_defaults(handler=cmd_score)


def _add_dry_run_options(parser) -> None:
    """`--dry-run` and the throughput its times are projected at."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print each stage's forward passes, FLOPs, peak memory and projected time from the models' "
        "configs alone (no weights load, no run directory), then exit",
    )
    parser.add_argument(
        "--throughput-tflops",
        type=positive_float,
        default=None,
        metavar="X",
        help="with --dry-run: effective TFLOP/s the time is projected at (default: the suite's measured "
        "figure on 2 CPU cores; e.g. 400 for an H100 in bf16, about 40%% of its dense peak)",
    )


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


def _settings(args: argparse.Namespace):
    """The run's settings: the preset with the options' boxes, seed, batch size, discovery and ablation."""
    from benchmark.settings import preset_settings

    if args.boxes is not None:
        check_boxes(args.boxes)  # before any model loads
    only = {} if args.ablation == "both" else {"faithfulness": {"ablations": (args.ablation,)}}
    prefilter = {"exact": None, "atp+exact": "atp"}[args.discovery]
    return preset_settings(
        args.preset,
        n_boxes=args.boxes,
        seed=args.seed,
        batch_size=args.batch_size,
        prefilter=prefilter,
        **only,
    )


def cmd_score(args: argparse.Namespace) -> int:
    """Score the pair, write the result, print its leaderboard row and, last, whether it reproduces the
    committed submission of the same inputs (exit code 1 when it does not); with --dry-run, only the
    projected cost of each stage."""
    if args.dry_run:
        return dry_run(args)
    import torch

    from benchmark.pipeline import score_pair
    from benchmark.pipeline.runner import stage_table
    from benchmark.submission.compare import reproduction_report

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(f"--device {device}: this machine has no CUDA device; use --device cpu")
    settings = _settings(args)
    base, finetuned = _pair_specs(args, device)
    scored = score_pair(base, finetuned, settings, args.run_dir, args.out, progress=not args.no_progress)
    print(summary(scored.result, scored.path.name))
    print("\n" + tabulate(stage_table(scored.outputs.stages), headers=("stage", "", "seconds")))
    print(f"\nresult: {scored.path} (validated)\nrun directory: {scored.run_dir}")
    print("plots: " + ", ".join(str(path) for path in scored.plots))
    report, reproduced = reproduction_report(json.loads(scored.path.read_text()), args.submissions)
    print(report)
    return 0 if reproduced else 1


_COST_HEADERS = (
    "stage", "forward-pass equivalents (token-rows)", "TFLOP", "peak memory GiB", "projected time",
    "largest buffer",
)  # fmt: skip


def dry_run(args: argparse.Namespace) -> int:
    """Print every stage's cost for the pair and settings, read from the models' configs: no weights are
    loaded and no run directory is made. A planner sees, before a 7B or 70B run, what each stage needs."""
    from dataclasses import replace

    from benchmark.models.cost import dtype_bytes, prompt_length, read_shape
    from benchmark.pipeline.cost import CPU_TFLOPS, stage_costs, upper_bound_text
    from benchmark.pipeline.pair import Pair

    settings = _settings(args)
    specs = Pair(*_pair_specs(args, args.device or "cpu"))
    settings = replace(settings, dtype=specs.base.dtype)
    shapes = specs.map(read_shape)
    n_tokens, counted = prompt_length(specs.base, settings.n_boxes)
    tflops = args.throughput_tflops or CPU_TFLOPS
    default = (
        "" if args.throughput_tflops else ", the suite's passes on 2 idle CPU cores (--throughput-tflops)"
    )
    weights = shapes.base.params * dtype_bytes(settings.dtype) / 2**30
    print(f"dry run of preset {settings.preset}: no weights loaded, nothing written")
    for side, shape in zip(("base", "fine-tuned"), shapes, strict=True):
        print(f"{side}: {shape.describe()}")
    print(f"weights: {weights:.2f} GiB at {settings.dtype}; prompts: {n_tokens} tokens ({counted})")
    print(upper_bound_text(settings, shapes.base))
    print(
        f"time: FLOPs at {tflops:g} TFLOP/s effective{default}; model loading, hashing and per-pass "
        "overhead not included\n"
    )
    rows = cost_rows(stage_costs(settings, shapes, n_tokens), tflops)
    print(tabulate(rows, headers=_COST_HEADERS, disable_numparse=True, colalign=("left", *["right"] * 4)))
    return 0


def duration(seconds: float) -> str:
    """A time as 42 s, 12 min 5 s or 3 h 02 min."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def cost_rows(costs, tflops: float) -> list[tuple]:
    """The dry run's rows (`_COST_HEADERS`), then the totals: memory is the largest peak, as stages run one
    after another."""
    costs = list(costs)

    def row(name: str, equivalents: int, flops: float, peak: int, largest: str) -> tuple:
        """One stage's (or the totals') cells."""
        seconds = flops / (tflops * 1e12)
        return (
            name,
            f"{equivalents:,}",
            f"{flops / 1e12:,.1f}",
            f"{peak / 2**30:.2f}",
            duration(seconds),
            largest,
        )

    rows = [row(c.stage, c.forward_equivalents, c.flops, c.peak_bytes, c.peak_from) for c in costs]
    peak = max(costs, key=lambda c: c.peak_bytes)
    total = sum(c.forward_equivalents for c in costs), sum(c.flops for c in costs)
    return [*rows, row("total", *total, peak.peak_bytes, f"peak: {peak.stage}")]


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
