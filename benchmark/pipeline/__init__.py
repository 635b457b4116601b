"""The stages of `etbench score`, the run-directory cache that lets a run resume, and the presets.

Names are imported on first use (see `benchmark.lazy`), so importing the package stays cheap.
"""

from benchmark.lazy import lazy_exports

_EXPORTS = {
    "InvalidResultError": "run",
    "Scored": "run",
    "score_pair": "run",
    "summary": "run",
    "PRESETS": "settings",
    "ScoreSettings": "settings",
    "preset_settings": "settings",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
