"""The run directory: each finished stage's output, keyed by everything it depends on, so a rerun resumes.

A stage's file is written atomically when the stage finishes, so an interrupted run loses at most the
stage in progress. A stage whose key changed (other settings, other weights, other suite version) reruns.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


def stage_key(*parts: Any) -> str:
    """SHA-256 of the canonical JSON of everything a stage's output depends on."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StageRecord:
    """What the run directory keeps for one stage: its key, its output and how long it took."""

    key: str
    output: Any
    seconds: float


class RunDirectory:
    """Per-stage results of one `etbench score` run, in `<root>/stages/<name>.pt`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "stages").mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / "stages" / f"{name}.pt"

    def load(self, name: str, key: str) -> StageRecord | None:
        """The stored record of `name` if its key matches, else None (missing, stale or unreadable)."""
        path = self._path(name)
        if not path.exists():
            return None
        try:
            record = torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # a truncated or foreign file is a cache miss, never a crash
            return None
        return record if isinstance(record, StageRecord) and record.key == key else None

    def save(self, name: str, record: StageRecord) -> None:
        """Write atomically: a temporary file renamed over the old one."""
        path = self._path(name)
        temporary = path.with_suffix(".tmp")
        torch.save(record, temporary)
        os.replace(temporary, path)

    def run(
        self, name: str, key: str, compute: Callable[[], Any], clock: Callable[[], float]
    ) -> tuple[StageRecord, bool]:
        """(the stored record, True) if still valid, else compute it, store it: (record, False)."""
        cached = self.load(name, key)
        if cached is not None:
            return cached, True
        start = clock()
        output = compute()
        record = StageRecord(key, output, clock() - start)
        self.save(name, record)
        return record, False
