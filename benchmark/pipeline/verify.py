"""`etbench verify`: re-run a submission from what it records and compare, as `etbench score` does.

The models come from the file's records: a pair of the zoo when the records name one (the planted models
are rebuilt, the zoo adapters found in the installed package), else the recorded id, revision, GGUF file
and adapter paths. The settings are the recorded ones, whole. The re-run starts in its own run
directory (default runs/verify/<file name>), never in a scoring run's cache, so every stage is computed
again; a killed verification resumes there. The comparison is `submission.compare`'s, with the suite
version left out (a newer suite may verify an older row; the record says which one did).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import benchmark
from benchmark.errors import BenchmarkError
from benchmark.models import ModelSpec
from benchmark.models.identity import ModelRecord
from benchmark.pipeline.run import Scored, score_pair
from benchmark.records import Result
from benchmark.submission import check
from benchmark.submission.compare import compare
from benchmark.submission.files import name_digest
from benchmark.submission.kinds import METRIC_VERSION
from benchmark.submission.verified import Verification
from benchmark.zoo.pairs import REFERENCE_PAIRS, PlantedPair, ReferencePair


class VerifyError(BenchmarkError, ValueError):
    """A file that cannot be verified (invalid, or its models cannot be found)."""


@dataclass(frozen=True)
class Verified:
    """The verification record and the re-run it compared."""

    verification: Verification
    rerun: Scored


def _zoo_pair(result: Result) -> ReferencePair | PlantedPair | None:
    """The zoo pair whose models the result records, if any."""
    base, finetuned = result.models.base, result.models.finetuned
    for pair in REFERENCE_PAIRS.values():
        if isinstance(pair, PlantedPair):
            names = (pair.base, pair.finetuned)
            if all(_is_planted(model, name) for model, name in zip((base, finetuned), names, strict=True)):
                return pair
        elif (base.id, finetuned.id) == (pair.model, pair.model) and _chains(result) == (
            pair.base_chain,
            pair.finetuned_chain,
        ):
            return pair
    return None


def _is_planted(model: ModelRecord, name: str) -> bool:
    path = Path(model.id)
    return path.name == name and path.parent.name == "planted" and not model.adapters


def _chains(result: Result) -> tuple[tuple[str, ...], tuple[str, ...]]:
    models = (result.models.base, result.models.finetuned)
    return tuple(tuple(adapter.name for adapter in model.adapters) for model in models)  # type: ignore


def _recorded_spec(model: ModelRecord, device: str, device_map: str | None) -> ModelSpec:
    return ModelSpec(
        model.id,
        revision=model.revision,
        gguf_file=model.gguf_file,
        adapters=tuple(adapter.path for adapter in model.adapters),
        dtype=model.dtype,
        device=device,
        device_map=device_map,
        trust_remote_code=model.trust_remote_code,
    )


def recorded_specs(result: Result, device: str = "cpu") -> tuple[ModelSpec, ModelSpec]:
    """Base and fine-tuned specs from what the result records (a zoo pair's when it names one)."""
    device_map = result.settings.device_map
    placement = {"dtype": result.models.base.dtype, "device": device, "device_map": device_map}
    pair = _zoo_pair(result)
    if pair is not None:
        return pair.specs(**placement)
    models = (result.models.base, result.models.finetuned)
    return tuple(_recorded_spec(m, device, device_map) for m in models)  # type: ignore


def _without_suite_version(plain: dict) -> dict:
    return {**plain, "suite": {k: v for k, v in plain["suite"].items() if k != "version"}}


def verify(
    source: str | Path, run_dir: str | Path | None = None, device: str = "cpu", progress: bool = True
) -> Verified:
    """Re-run the submission at `source` and compare the re-run with it."""
    source = Path(source)
    checked = check(source)
    if not checked.ok:
        raise VerifyError(f"{source} is not a valid result: {checked.problems[0]}; fix it before verifying")
    recorded = checked.result
    if recorded.suite.metric_version != METRIC_VERSION:
        raise VerifyError(
            f"{source} holds metric {recorded.suite.metric_version} numbers and this suite computes "
            f"{METRIC_VERSION}: a re-run cannot reproduce them; rescore the pair (etbench score) instead"
        )
    try:
        base, finetuned = recorded_specs(recorded, device)
    except FileNotFoundError as error:
        raise VerifyError(f"cannot find the models {source} records: {error}") from error
    run_dir = Path(run_dir) if run_dir else Path("runs") / "verify" / source.stem
    settings = replace(recorded.settings, dtype=base.dtype, device_map=base.device_map)
    rerun = score_pair(base, finetuned, settings, run_dir, run_dir / "result.json", progress=progress)
    original = json.loads(source.read_text(encoding="utf-8"))
    again = json.loads(rerun.path.read_text(encoding="utf-8"))
    comparison = compare(_without_suite_version(again), _without_suite_version(original))
    hardware = rerun.result.hardware
    verification = Verification(
        file=source.name,
        digest=name_digest(recorded),
        suite_version=benchmark.__version__,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
        device=hardware.device,
        device_name=hardware.device_name,
        reproduced=comparison.same,
        differences=comparison.differences,
        largest_tolerated=comparison.largest_tolerated,
    )
    return Verified(verification, rerun)
