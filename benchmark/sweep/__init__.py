"""`etbench sweep`: many pairs from one sweep file, one job and one run directory per pair, run locally or
as a Slurm job array (submitit), then one merge into the leaderboard.

Names load from their submodules on first use (`benchmark.lazy`): the CLI's parser imports no torch.
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "file": ("SlurmOptions", "Sweep", "SweepFileError", "SweepPair", "load_sweep"),
    "jobs": ("finished", "run_pair"),
    "status": ("PairStatus", "State", "sweep_status"),
    "executors": ("plan", "run_local", "sbatch_parameters", "submit_slurm"),
    "collect": ("Collected", "collect"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
