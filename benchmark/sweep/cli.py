"""`etbench sweep FILE`, `etbench sweep status FILE` and `etbench sweep collect FILE` (kept apart from
cli.py, which stays a short index). Options given here override the sweep file's executor settings."""

from __future__ import annotations

import argparse
from dataclasses import replace

from tabulate import tabulate

from benchmark.cli_score import positive_int
from benchmark.errors import CliError

ACTIONS = ("status", "collect")


def add_sweep_parser(commands) -> None:
    """Register `etbench sweep` on the CLI's subcommands."""
    parser = commands.add_parser(
        "sweep",
        help="score many pairs (a sweep file) locally or as a Slurm job array, then merge the results",
        description="`etbench sweep FILE` scores every pair of the sweep file that is not done yet, one job "
        "and one run directory per pair (a rerun resumes). `etbench sweep status FILE` shows each pair's "
        "state; `etbench sweep collect FILE` submits the finished results and rebuilds the leaderboard.",
    )
    parser.add_argument("action", nargs="?", choices=ACTIONS, help="status or collect (none: run the sweep)")
    parser.add_argument("file", metavar="FILE", help="the sweep file (TOML)")
    parser.add_argument("--executor", choices=("local", "slurm"), help="default: the file's, else local")
    parser.add_argument("--jobs", type=positive_int, help="local: pairs scored at once (default: the file's)")
    slurm = parser.add_argument_group("slurm (override the file's [slurm] table)")
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument("--gpus-per-job", type=int, help="GPUs per array task")
    slurm.add_argument("--cpus-per-job", type=positive_int, help="CPUs per array task")
    slurm.add_argument("--mem-gb", type=positive_int, help="memory per array task (GB)")
    slurm.add_argument("--time-limit", type=positive_int, metavar="MINUTES", help="per array task")
    slurm.add_argument("--array-parallelism", type=positive_int, help="array tasks running at once")
    slurm.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra sbatch option (repeatable), e.g. --sbatch qos=high or --sbatch=--qos=high",
    )
    parser.set_defaults(handler=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep, or show its status, or collect it."""
    from benchmark.sweep.file import load_sweep

    if args.file in ACTIONS and args.action is None:
        raise CliError(f"name the sweep file: etbench sweep {args.file} FILE")
    sweep = load_sweep(args.file)
    return {"status": _status, "collect": _collect, None: _run}[args.action](sweep, args)


def _status_rows(statuses) -> list[tuple]:
    """One row per pair: name, state, job id, and the result or the log and error."""
    rows = []
    for status in statuses:
        where = str(status.result) if status.state == "done" else status.log or ""
        rows.append((status.pair.name, status.state, status.job_id or "", where, status.error or ""))
    return rows


def _status(sweep, args) -> int:
    """Print every pair's state; 1 if any pair failed."""
    from benchmark.sweep.status import State, sweep_status

    statuses = sweep_status(sweep)
    print(tabulate(_status_rows(statuses), headers=("pair", "state", "job", "result / log", "error")))
    counts = {state: sum(s.state is state for s in statuses) for state in State}
    print("\n" + ", ".join(f"{n} {state}" for state, n in counts.items() if n))
    return 1 if counts[State.FAILED] else 0


def _collect(sweep, args) -> int:
    """Submit the done pairs and rebuild the leaderboard; 1 unless every pair is done."""
    from benchmark.sweep.collect import collect

    collected = collect(sweep)
    for status, submitted in collected.submitted:
        state = "already submitted" if submitted.already_present else "submitted"
        print(f"{state}: {status.pair.name} -> {submitted.path}")
    for status in collected.left_out:
        detail = f" ({status.error}; log: {status.log})" if status.error else ""
        print(f"not collected: {status.pair.name} is {status.state}{detail}")
    board = collected.board
    for invalid in board.invalid:
        print(f"warning: {invalid.file} in {sweep.submissions} is invalid and left out of the leaderboard")
    print(f"leaderboard: {len(board.rows)} rows in {sweep.leaderboard} (from {sweep.submissions})")
    return 1 if collected.left_out else 0


def _slurm_options(options, args):
    """The file's Slurm options with the command line's on top."""
    given = {
        "partition": args.partition,
        "gpus_per_job": args.gpus_per_job,
        "cpus_per_job": args.cpus_per_job,
        "mem_gb": args.mem_gb,
        "time_limit": args.time_limit,
        "array_parallelism": args.array_parallelism,
    }
    options = replace(options, **{key: value for key, value in given.items() if value is not None})
    return replace(options, sbatch=options.sbatch + tuple(args.sbatch))


def _run(sweep, args) -> int:
    """Submit every pair that is not done, running or queued; local runs wait, Slurm submissions return."""
    from benchmark.sweep.executors import plan, run_local, submit_slurm

    todo = plan(sweep)
    for pair, state in todo.skipped:
        print(f"skipped {pair.name}: {state}")
    if not todo.todo:
        print("nothing to do: every pair is done, running or queued")
        return 0
    if (args.executor or sweep.executor) == "slurm":
        ids = submit_slurm(sweep, todo.todo, _slurm_options(sweep.slurm, args))
        print(f"submitted {len(ids)} pairs as Slurm array job {ids[0].split('_')[0]}")
        print(f"follow with: etbench sweep status {sweep.path}")
        return 0
    failed = run_local(sweep, todo.todo, args.jobs or sweep.jobs, print)
    print(f"\n{len(todo.todo) - failed} scored, {failed} failed; next: etbench sweep collect {sweep.path}")
    return 1 if failed else 0
