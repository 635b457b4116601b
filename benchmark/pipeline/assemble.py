"""Compose the result file (`records.Result`) from what `etbench score` measured (`PairOutputs`).

Each method's result turns itself into its record; this module only puts the records together and adds
what a run knows about itself (versions, datasets, hardware, timing).
"""

from __future__ import annotations

import platform
from dataclasses import replace
from importlib.metadata import version

import torch

import benchmark
from benchmark.circuit import GROUPS, Circuit, head_iou
from benchmark.data import TASK_VERSION
from benchmark.pipeline.score import ModelOutputs, PairOutputs
from benchmark.pipeline.stages import SPLITS
from benchmark.records import (
    DCM,
    Behaviour,
    CircuitIoU,
    Circuits,
    DatasetSplit,
    Faithfulness,
    Hardware,
    Mechanism,
    ModelFaithfulness,
    Models,
    NoiseFloor,
    Result,
    Suite,
    Timing,
)
from benchmark.submission.kinds import METRIC_VERSION, SCHEMA_VERSION, SUITE_NAME
from benchmark.uncertainty import estimate_all


def circuit_iou(base: Circuit, finetuned: Circuit) -> CircuitIoU:
    """IoU of the two circuits per group, and over the union of all groups' heads."""
    groups = {g: head_iou(base.heads(g), finetuned.heads(g)) for g in GROUPS}
    return CircuitIoU(groups, head_iou(base.all_heads(), finetuned.all_heads()))


def noise_floor(model: ModelOutputs) -> NoiseFloor | None:
    """The model's second circuit (other prompts) and its IoU with the first; None without one."""
    if model.floor is None:
        return None
    second = model.floor.circuit
    groups = {group: tuple(second.heads(group)) for group in GROUPS}
    return NoiseFloor(groups, circuit_iou(model.discovery.circuit, second))


def _circuits(outputs: PairOutputs) -> Circuits:
    base, finetuned = outputs.models
    kv_group = base.record.head_shape.group_size
    return Circuits(
        base.discovery.record(),
        finetuned.discovery.record(),
        circuit_iou(base.discovery.circuit, finetuned.discovery.circuit),
        kv_group,
        f"receivers' k/v patched per key-value group, group size {kv_group}",
        noise_floor(base),
        noise_floor(finetuned),
    )


def _faithfulness(outputs: PairOutputs) -> tuple[Faithfulness, ...]:
    """One faithfulness block per ablation, in the settings' order."""
    base, finetuned = outputs.models.map(_model_records)
    reports = zip(
        base, finetuned, outputs.base_circuit_in_finetuned, outputs.models.base.faithfulness, strict=True
    )
    return tuple(Faithfulness(b, f, cross.record(), report.ablation) for b, f, cross, report in reports)


def _model_records(model: ModelOutputs) -> tuple[ModelFaithfulness, ...]:
    """Each ablation's faithfulness record of one model, with its position-scoped diagnostics."""
    pairs = zip(model.faithfulness, model.diagnostics, strict=True)
    return tuple(replace(report.record(), diagnostics=found.record()) for report, found in pairs)


def _mechanism(outputs: PairOutputs) -> Mechanism | None:
    base, finetuned = outputs.models.map(lambda model: model.mechanism)
    return None if base is None or finetuned is None else Mechanism(base, finetuned)


def _dcm(outputs: PairOutputs) -> DCM | None:
    base, finetuned = outputs.models.map(lambda model: model.dcm)
    if base is None and finetuned is None:
        return None
    masks = lambda run: run.masks() if run is not None else ()  # noqa: E731
    overlap = tuple(outputs.dcm_overlap)
    return DCM(masks(base), masks(finetuned), overlap, base.skipped_groups if base is not None else ())


def _datasets(outputs: PairOutputs) -> tuple[DatasetSplit, ...]:
    """Every split a stage read, with how many of its rows that stage used."""
    return tuple(
        DatasetSplit(
            role.role,
            split.split_id,
            split.sha256,
            len(split.examples),
            role.used(outputs.settings, split),
        )
        for role, split in ((role, outputs.splits.get(role.role)) for role in SPLITS)
        if split is not None
    )


def hardware(device: str) -> Hardware:
    """Where the run happened (the device's name on CUDA, the processor otherwise)."""
    on_cuda = device.startswith("cuda") and torch.cuda.is_available()
    name = torch.cuda.get_device_name() if on_cuda else (platform.processor() or platform.machine())
    return Hardware(
        device,
        name,
        torch.__version__,
        version("transformers"),
        version("lm_eval"),
        platform.python_version(),
        platform.platform(),
    )


def assemble(outputs: PairOutputs, timing: Timing, device: str) -> Result:
    """The result file's content for one scored pair."""
    base, finetuned = outputs.models
    first, *others = _faithfulness(outputs)
    result = Result(
        suite=Suite(SUITE_NAME, benchmark.__version__, SCHEMA_VERSION, METRIC_VERSION, TASK_VERSION),
        settings=outputs.settings,
        datasets=_datasets(outputs),
        vocabulary=outputs.vocabulary,
        models=Models(base.record, finetuned.record),
        hardware=hardware(device),
        timing=timing,
        behaviour=Behaviour("lm-eval", base.behaviour.record(), finetuned.behaviour.record()),
        circuits=_circuits(outputs),
        faithfulness=first,
        dcm=_dcm(outputs),
        cmap=outputs.cmap.record() if outputs.cmap is not None else None,
        digest=None,  # sealed when written (`submission.integrity.seal`)
        other_ablations=tuple(others),
        mechanism=_mechanism(outputs),
    )
    return replace(result, uncertainty=estimate_all(result))
