"""The run directory: each finished stage's output, keyed by everything it depends on, so a rerun resumes.

A stage's file is written atomically when the stage finishes, so an interrupted run loses at most the
stage in progress. A stage whose key changed (other settings, other weights, other suite version) reruns.
Stage files are read with PyTorch's weights-only unpickler, allowing only the suite's own records.
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import hashlib
import importlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.atomic import write_atomically
from benchmark.errors import BenchmarkError


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


class UnsafeStageFile(ValueError):
    """A stage file names a Python object that is not one of the suite's records."""


def _stage_types(path: Path) -> list[type]:
    """The classes a stage file needs, each checked to be a dataclass or an enum of this package.

    Loading then runs PyTorch's weights-only unpickler with exactly these allowed: no function, no foreign
    class, so a crafted file cannot execute code (it can only fail to load).
    """
    allowed = []
    for name in torch.serialization.get_unsafe_globals_in_checkpoint(path):
        module, _, attribute = name.rpartition(".")
        cls = (
            getattr(importlib.import_module(module), attribute, None)
            if module.startswith("benchmark.")
            else None
        )
        if not (isinstance(cls, type) and (dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum))):
            raise UnsafeStageFile(f"{name} is not a record of the suite")
        allowed.append(cls)
    return allowed


class RunDirectoryError(BenchmarkError):
    """The run directory cannot be written, or another run is using it."""


class RunDirectory:
    """Per-stage results of one `etbench score` run, in `<root>/stages/<name>.pt`.

    Checked writable when opened (before any stage is computed, so no computed stage is lost to a
    read-only folder); `lock()` keeps a second run out while one uses it.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        try:
            (self.root / "stages").mkdir(parents=True, exist_ok=True)
            write_atomically(self.root / ".writable", "")
        except OSError as error:
            raise RunDirectoryError(
                f"cannot write to the run directory {self.root} ({error.strerror}): pass --run-dir with a "
                "writable folder"
            ) from error

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory for one run; a second run refuses at once with the holder's pid."""
        with open(self.root / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunDirectoryError(
                    f"the run directory {self.root} is in use by another etbench score (pid {holder}): "
                    "wait for it to finish, or pass another --run-dir"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _path(self, name: str) -> Path:
        return self.root / "stages" / f"{name}.pt"

    def load(self, name: str, key: str) -> StageRecord | None:
        """The stored record of `name` if its key matches, else None (missing, stale or unreadable)."""
        path = self._path(name)
        if not path.exists():
            return None
        try:
            with torch.serialization.safe_globals(_stage_types(path)):
                record = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated, foreign or unsafe: a cache miss, never a crash
            warnings.warn(f"ignoring stage file {path} ({str(error).splitlines()[0][:120]})", stacklevel=2)
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
