"""`etbench score`: the declared stages, the runner that caches them in a run directory, result assembly.

Names load from their submodules on first use (`benchmark.lazy`).
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "run": ("InvalidResultError", "Scored", "score_pair"),
    "pair": ("Pair", "Side"),
    "score": ("PairOutputs", "ScoreRun", "default_run_dir"),
    "stages": ("SPLITS", "STAGES", "ScoreStage"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
