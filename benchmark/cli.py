"""`etbench`: the suite's command line. Thin: it parses arguments, calls the library and prints tables."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

from benchmark.cli_score import add_score_parser, add_verify_parser, size
from benchmark.data.boxes import DEFAULT_BOXES, SPLITS, SUPPORTED_BOXES
from benchmark.errors import BenchmarkError, CliError
from benchmark.settings import MAX_BATCH_SIZE, MAX_PROMPTS
from benchmark.sweep.cli import add_sweep_parser
from benchmark.zoo.cli import add_zoo_parser

if TYPE_CHECKING:  # these modules import torch; the CLI imports them only in the commands that need them
    from benchmark.accuracy import AccuracyResult
    from benchmark.data import Split, Vocabulary

DTYPES = ("float32", "bfloat16", "float16")


def _add_data_parser(commands) -> None:
    parser = commands.add_parser(
        "data",
        help="write a split of the boxes task as canonical JSONL",
        description="Generate a split of the boxes task (defined in docs/metrics.md), write its canonical "
        "JSONL and print its id and SHA-256. The same arguments always give byte-identical output.",
    )
    _add_boxes(parser)
    parser.add_argument("--split", choices=SPLITS, default="test", help="which split (disjoint contexts)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument(
        "--prompts",
        type=size(MAX_PROMPTS),
        default=500,
        help=f"rows, 1 to {MAX_PROMPTS}, rounded up to whole contexts",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    parser.set_defaults(handler=cmd_data)


def _add_boxes(parser) -> None:
    parser.add_argument(
        "--boxes",
        type=int,
        default=DEFAULT_BOXES,
        help=f"boxes per context: {', '.join(map(str, SUPPORTED_BOXES))} (default {DEFAULT_BOXES})",
    )


def _add_accuracy_parser(commands) -> None:
    parser = commands.add_parser(
        "accuracy",
        help="score a model's accuracy on the boxes test split",
        description="Accuracy of a causal LM on the boxes test split: argmax over the full vocabulary at "
        "the last position equals the answer token, overall and per queried box. Words that are not "
        "single tokens for the model's tokenizer are removed first and reported.",
    )
    parser.add_argument(
        "--model", required=True, help="hub id, local directory, .gguf file, or built-in 'smollm2'"
    )
    parser.add_argument("--gguf-file", help="GGUF file inside --model (a directory or hub repo)")
    _add_boxes(parser)
    parser.add_argument(
        "--prompts",
        type=size(MAX_PROMPTS),
        default=500,
        help=f"size of the test split (rows, 1 to {MAX_PROMPTS})",
    )
    parser.add_argument("--limit", type=size(MAX_PROMPTS), help="score only the first K rows of the split")
    parser.add_argument("--seed", type=int, default=0, help="test split seed")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights dtype")
    parser.add_argument(
        "--batch-size",
        type=size(MAX_BATCH_SIZE),
        default=32,
        help=f"prompts per forward pass (1 to {MAX_BATCH_SIZE})",
    )
    parser.set_defaults(handler=cmd_accuracy)


def _add_export_parser(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="write a model (GGUF dequantised, adapters merged) as a plain Hugging Face directory",
        description="Load a model as every other command does (a .gguf file is dequantised to float, "
        "--adapter chains are merged in order) and save it with its tokenizer as a plain Hugging Face "
        "directory, e.g. for lm-eval's CLI: lm_eval --model hf --model_args pretrained=DIR ...",
    )
    parser.add_argument("model", help="hub id, local directory, .gguf file, or built-in 'smollm2'")
    parser.add_argument("out", type=Path, metavar="DIR", help="directory to write (new or empty)")
    parser.add_argument("--gguf-file", help="GGUF file inside MODEL (a directory or hub repo)")
    parser.add_argument("--revision", help="hub revision of MODEL")
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="DIR",
        help="PEFT LoRA adapter merged into the model (repeat for a chain, applied in order)",
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights dtype (default: float32)")
    parser.set_defaults(handler=cmd_export)


def _add_submission_parsers(commands) -> None:
    """`validate`, `submit` and `leaderboard build`: the path a result file takes to the leaderboard."""
    parser = commands.add_parser(
        "validate",
        help="check result files against the schema and the suite's definitions",
        description="Check result JSON files: syntax, schema, versions, and meaning (accuracies in [0, 1], "
        "heads inside the model's shape, dataset hashes equal to the suite's regeneration of each split). "
        "Prints every problem with its JSON path; exit code 1 if any file has a problem.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="result JSON files")
    parser.set_defaults(handler=cmd_validate)
    parser = commands.add_parser(
        "submit",
        help="validate a result, copy it into submissions/ and rebuild the leaderboard",
        description="Validate a result, write it (canonically formatted) into the submissions folder under "
        "its canonical name, and rebuild the leaderboard.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="result JSON file")
    _add_leaderboard_dirs(parser)
    parser.set_defaults(handler=cmd_submit)
    board = commands.add_parser("leaderboard", help="build the leaderboard from submissions/")
    actions = board.add_subparsers(dest="action", required=True, metavar="ACTION")
    parser = actions.add_parser(
        "build",
        help="rebuild LEADERBOARD.md, leaderboard.csv and site/index.html",
        description="Validate every submissions/*.json and write the leaderboard (each file atomically); "
        "duplicate pairs are flagged. A missing submissions folder or an invalid file is an error and "
        "leaves the leaderboard as it is, unless --keep-going.",
    )
    _add_leaderboard_dirs(parser)
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="build from the valid files anyway, listing each invalid file skipped on stderr (exit code 0)",
    )
    parser.set_defaults(handler=cmd_leaderboard_build)


def _add_leaderboard_dirs(parser) -> None:
    parser.add_argument("--submissions", type=Path, default=Path("submissions"), help="submissions folder")
    parser.add_argument("--out", type=Path, default=Path("leaderboard"), help="leaderboard folder")


def build_parser() -> argparse.ArgumentParser:
    """The `etbench` argument parser, one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="etbench",
        description="Entity-tracking mechanism benchmark: behaviour, circuits, DCM and CMAP of a base "
        "model and its fine-tuned descendant.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_parser(commands)
    _add_accuracy_parser(commands)
    _add_export_parser(commands)
    _add_submission_parsers(commands)
    add_score_parser(commands)
    add_verify_parser(commands)
    add_zoo_parser(commands)
    add_sweep_parser(commands)
    tasks = commands.add_parser(
        "tasks-path",
        help="print the lm-eval tasks folder (for lm_eval --include_path)",
        description="Print the folder of the suite's lm-evaluation-harness tasks, inside the installed "
        'package: lm_eval --include_path "$(etbench tasks-path)" --tasks entity_tracking',
    )
    tasks.set_defaults(handler=cmd_tasks_path)
    return parser


def cmd_tasks_path(args: argparse.Namespace) -> int:
    """Print the tasks folder."""
    from benchmark.tasks import TASKS_DIR

    print(TASKS_DIR)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Write the split's canonical JSONL and print its id and SHA-256."""
    from benchmark.data import generate_split

    split = generate_split(args.boxes, args.split, args.prompts, args.seed)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(split.jsonl, encoding="ascii")
    except OSError as error:
        raise CliError(f"cannot write {args.out}: {error}") from error
    rows = [("split", split.split_id), ("sha256", split.sha256), ("rows", len(split.examples))]
    print(tabulate([*rows, ("out", str(args.out))], tablefmt="plain"))
    return 0


def _removed_words(vocabulary: Vocabulary) -> str:
    """The words removed for this tokenizer, comma-separated, or "none"."""
    removed = [*vocabulary.removed_objects, *vocabulary.removed_labels]
    return ", ".join(removed) if removed else "none"


def _accuracy_tables(
    split: Split, vocabulary: Vocabulary, result: AccuracyResult, header: list[tuple[str, str]]
) -> str:
    """The run's facts, then accuracy per queried box and overall."""
    facts = [
        *header,
        ("split", split.split_id),
        ("sha256", split.sha256),
        ("rows scored", f"{result.n} of {len(split.examples)}"),
        ("removed words", _removed_words(vocabulary)),
    ]
    rows = [
        (f"box {i + 1}", n, acc)
        for i, (n, acc) in enumerate(zip(result.n_per_position, result.per_position, strict=True))
    ]
    rows.append(("all", result.n, result.accuracy))
    table = tabulate(rows, headers=("queried", "n", "accuracy"), floatfmt=".3f", tablefmt="github")
    return tabulate(facts, tablefmt="plain") + "\n\n" + table


def cmd_accuracy(args: argparse.Namespace) -> int:
    """Load a model, check its tokenizer, build the test split from the kept words and print accuracy."""
    import torch

    from benchmark.accuracy import score_accuracy
    from benchmark.data import check_vocabulary, encode_examples, generate_split
    from benchmark.data.boxes import check_boxes

    check_boxes(args.boxes)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    from benchmark.models import ModelSpec, load_model

    loaded = load_model(ModelSpec(args.model, gguf_file=args.gguf_file, dtype=args.dtype, device=device))
    vocabulary = check_vocabulary(loaded.tokenizer, args.boxes)
    split = generate_split(args.boxes, "test", args.prompts, args.seed, vocabulary.objects, vocabulary.labels)
    examples = split.examples[: args.limit] if args.limit else split.examples
    encoded = encode_examples(loaded.tokenizer, examples)
    result = score_accuracy(loaded.model, encoded, batch_size=args.batch_size, device=device)
    header = [
        ("model", args.model),
        ("weights sha256", loaded.record.weights_sha256),
        ("device", f"{device}, {args.dtype}"),
        ("time", f"{time.perf_counter() - started:.1f} s"),
    ]
    print(_accuracy_tables(split, vocabulary, result, header))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the plain directory and print what went into it."""
    from benchmark.export import ExportError, export_model
    from benchmark.models import ModelSpec

    spec = ModelSpec(
        args.model, revision=args.revision, gguf_file=args.gguf_file, adapters=tuple(args.adapter),
        dtype=args.dtype, device="cpu",
    )  # fmt: skip
    try:
        record = export_model(spec, args.out)
    except ExportError as error:
        raise CliError(str(error)) from error
    rows = [("model", args.model), ("weights sha256", record.weights_sha256)]
    rows += [(f"adapter {i}", f"{a.path} ({a.weights_sha256})") for i, a in enumerate(record.adapters, 1)]
    rows += [("dtype", record.dtype), ("out", str(args.out))]
    print(tabulate(rows, tablefmt="plain"))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem of every file (or "ok"); 1 if any file has a problem."""
    from benchmark.submission import validate

    failed = 0
    for path in args.files:
        problems = validate(path)
        failed += bool(problems)
        print(f"{path}: ok" if not problems else "\n".join(f"{path}: {problem}" for problem in problems))
    return 1 if failed else 0


def _report_build(report) -> None:
    """The build's row count and files on stdout; invalid and duplicate submissions on stderr."""
    for invalid in report.invalid:
        print(f"warning: skipped {invalid.file}: {invalid.first_problem()}", file=sys.stderr)
    for file in report.duplicates:
        print(f"warning: {file} scores the same pair as another submission (flagged)", file=sys.stderr)
    print(f"{len(report.rows)} rows, {len(report.invalid)} invalid submissions left out")
    print("\n".join(f"wrote {path}" for path in report.written))


def cmd_leaderboard_build(args: argparse.Namespace) -> int:
    """Rebuild the leaderboard from the submissions folder."""
    from benchmark.leaderboard import build

    _report_build(build(args.submissions, args.out, keep_going=args.keep_going))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Validate, copy into the submissions folder, rebuild; 1 (with every problem) if the file is invalid."""
    from benchmark.leaderboard import build
    from benchmark.submission import SubmissionError, submit

    try:
        submitted = submit(args.file, args.submissions)
    except SubmissionError as error:
        print(f"etbench submit: {error}", file=sys.stderr)
        return 1
    state = "already submitted" if submitted.already_present else "submitted"
    print(f"{state}: {submitted.path}")
    _report_build(build(args.submissions, args.out, keep_going=True))  # the others' problems are warnings
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `etbench`; user errors print one line on stderr and return exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BenchmarkError as error:
        print(f"etbench {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
