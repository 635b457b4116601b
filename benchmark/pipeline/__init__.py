"""The stages of `etbench score`, the run-directory cache that lets a run resume, and the presets."""

from benchmark.pipeline.run import InvalidResultError, Scored, score_pair, summary
from benchmark.pipeline.settings import PRESETS, ScoreSettings, preset_settings

__all__ = [
    "PRESETS",
    "InvalidResultError",
    "ScoreSettings",
    "Scored",
    "preset_settings",
    "score_pair",
    "summary",
]
