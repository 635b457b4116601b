"""Turn what `etbench score` measured (`PairOutputs`) into the validated result format (`submission.Result`).

Undefined numbers (NaN in the methods) become null, as the format requires.
"""

from __future__ import annotations

import math
import platform
from importlib.metadata import version

import torch

import benchmark
from benchmark.circuit import GROUPS, Circuit
from benchmark.cmap import cmap_split
from benchmark.data import TASK_VERSION
from benchmark.dcm import head_iou
from benchmark.dcm.masking import dcm_splits
from benchmark.pipeline.score import PairOutputs, method_configs
from benchmark.submission import from_plain, to_plain
from benchmark.submission import provenance as p
from benchmark.submission import result as r
from benchmark.submission.kinds import METRIC_VERSION, SCHEMA_VERSION, SUITE_NAME


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _heads(heads) -> tuple[tuple[int, int], ...]:
    return tuple((int(layer), int(head)) for layer, head in heads)


def _accuracy(behaviour) -> r.Accuracy:
    suite = behaviour.suite
    per_position = tuple(_number(a) for a in suite.per_position)
    return r.Accuracy(behaviour.lm_eval_accuracy, suite.n, per_position, suite.n_per_position)


def _circuit(discovery) -> r.Circuit:
    stages = tuple(
        r.StageEffects(
            stage.group.value,
            None if stage.effects is None else stage.effects.mean.tolist(),
            None if stage.effects is None else stage.effects.stderr.nan_to_num(0.0).tolist(),
            _heads(stage.selected),
            stage.skipped_because,
        )
        for stage in discovery.stages
    )
    groups = {g.value: _heads(discovery.circuit.heads(g)) for g in GROUPS}
    selected = {g.value: _heads(discovery.selected.heads(g)) for g in GROUPS}
    return r.Circuit(groups, selected, stages, _number(discovery.minimality_metric))


def circuit_iou(base: Circuit, finetuned: Circuit) -> r.CircuitIoU:
    """IoU of the two circuits per group, and over the union of all groups' heads."""
    groups = {g.value: head_iou(base.heads(g), finetuned.heads(g)) for g in GROUPS}
    return r.CircuitIoU(groups, head_iou(base.all_heads(), finetuned.all_heads()))


def _score(result) -> r.FaithfulnessScore:
    return r.FaithfulnessScore(
        result.full_accuracy,
        result.circuit_accuracy,
        _number(result.faithfulness),
        result.n_prompts,
        result.undefined_because,
    )


def _model_faithfulness(report) -> r.ModelFaithfulness:
    draws = tuple(_number(f) for f in report.random.faithfulness)
    random = r.RandomBaseline(
        _number(report.random.mean), _number(report.random.std), draws, report.random.seed
    )
    points = tuple(
        r.CurvePoint(pt.fraction, pt.k, pt.accuracy, _number(pt.faithfulness)) for pt in report.curve.points
    )
    return r.ModelFaithfulness(_score(report.circuit), random, r.Curve(points, _number(report.curve.area)))


def _masks(run) -> tuple[r.DCMMask, ...]:
    if run is None:
        return ()
    return tuple(
        r.DCMMask(
            m.group.value,
            m.desideratum.value,
            _heads(m.group_heads),
            tuple(float(v) for v in m.mask),
            _heads(m.heads),
            m.validation_accuracy,
            m.test_accuracy,
            m.n_test,
        )
        for m in run.results
    )


def _dcm(outputs: PairOutputs) -> r.DCM | None:
    base, finetuned = outputs.base.dcm, outputs.finetuned.dcm
    if base is None and finetuned is None:
        return None
    overlap = tuple(
        r.DCMOverlap(
            o.group.value, o.desideratum.value, o.iou, o.base_heads_in_base, o.base_heads_in_finetuned
        )
        for o in outputs.dcm_overlap
    )
    skipped = tuple(g.value for g in base.skipped_groups) if base is not None else ()
    return r.DCM(_masks(base), _masks(finetuned), overlap, skipped)


def _cmap(result) -> r.CMAP | None:
    if result is None:
        return None

    def entry(e) -> r.CMAPEntry:
        return r.CMAPEntry(_heads(e.heads), e.acc_patched, e.change, _number(e.gain))

    groups: dict[str, r.CMAPEntry | None] = {g.value: None for g in GROUPS}
    groups.update({e.name: entry(e) for e in result.groups})
    return r.CMAP(
        result.n_prompts,
        result.acc_base,
        result.acc_finetuned,
        result.gain_defined,
        entry(result.circuit),
        groups,
    )


def _settings(outputs: PairOutputs, dtype: str, device_map: str | None) -> p.Settings:
    s = outputs.settings
    discovery, faithfulness, dcm, cmap = method_configs(s)
    return p.Settings(
        s.preset,
        s.n_boxes,
        dtype,
        device_map,
        p.BehaviourSettings(s.accuracy_prompts, s.seed),
        from_plain(p.DiscoverySettings, to_plain(discovery)),
        from_plain(p.FaithfulnessSettings, to_plain(faithfulness)),
        from_plain(p.DCMSettings, to_plain(dcm)),
        from_plain(p.CMAPSettings, to_plain(cmap)),
    )


def _datasets(outputs: PairOutputs) -> tuple[p.DatasetSplit, ...]:
    """Every split a stage read: the pipeline's own, and those DCM and CMAP build from the same words."""
    s, v = outputs.settings, outputs.vocabulary
    splits = dict(outputs.splits)
    _, _, dcm, cmap = method_configs(s)
    splits.update({f"dcm_{name}": split for name, split in dcm_splits(v, dcm).items()})
    splits["cmap"] = cmap_split(v, cmap)
    used = {
        "minimality": s.minimality_prompts,
        "cmap": cmap.n_prompts,
        **{f"dcm_{k}": n for k, n in dcm.sizes().items()},
    }
    return tuple(
        p.DatasetSplit(
            role, split.split_id, split.sha256, len(split.examples), used.get(role, len(split.examples))
        )
        for role, split in splits.items()
    )


def hardware(device: str) -> p.Hardware:
    """Where the run happened (the device's name on CUDA, the processor otherwise)."""
    on_cuda = device.startswith("cuda") and torch.cuda.is_available()
    name = torch.cuda.get_device_name() if on_cuda else (platform.processor() or platform.machine())
    return p.Hardware(
        device,
        name,
        torch.__version__,
        version("transformers"),
        version("lm_eval"),
        platform.python_version(),
        platform.platform(),
    )


def assemble(
    outputs: PairOutputs, timing: p.Timing, dtype: str, device: str, device_map: str | None
) -> r.Result:
    """The result file's content for one scored pair."""
    base, finetuned = outputs.base, outputs.finetuned
    shape = outputs.model_records["base"].head_shape
    kv_group = shape.n_heads // shape.n_kv_heads
    circuits = r.Circuits(
        _circuit(base.discovery),
        _circuit(finetuned.discovery),
        circuit_iou(base.discovery.circuit, finetuned.discovery.circuit),
        kv_group,
        f"receivers' k/v patched per key-value group, group size {kv_group}",
    )
    faithfulness = r.Faithfulness(
        _model_faithfulness(base.faithfulness),
        _model_faithfulness(finetuned.faithfulness),
        _score(outputs.base_circuit_in_finetuned),
    )
    models = p.Models(
        *(from_plain(p.Model, outputs.model_records[w].to_dict()) for w in ("base", "finetuned"))
    )
    return r.Result(
        suite=p.Suite(SUITE_NAME, benchmark.__version__, SCHEMA_VERSION, METRIC_VERSION, TASK_VERSION),
        settings=_settings(outputs, dtype, device_map),
        datasets=_datasets(outputs),
        vocabulary=from_plain(p.Vocabulary, to_plain(outputs.vocabulary)),
        models=models,
        hardware=hardware(device),
        timing=timing,
        behaviour=r.Behaviour("lm-eval", _accuracy(base.behaviour), _accuracy(finetuned.behaviour)),
        circuits=circuits,
        faithfulness=faithfulness,
        dcm=_dcm(outputs),
        cmap=_cmap(outputs.cmap),
    )
