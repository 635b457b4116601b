"""A complete, valid, made-up result on a tiny head shape: for tests, and as a worked example of the format.

Deterministic in its arguments. Its dataset entries are real splits of the suite (ids and hashes as
`benchmark.data` generates them); every number is drawn from a seeded generator, not measured.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import statistics
from dataclasses import dataclass

from benchmark import records as r
from benchmark import settings as c
from benchmark.data.words import Vocabulary
from benchmark.kinds import Heads, outcome_text
from benchmark.measures import curve_area
from benchmark.models.identity import HeadShape, ModelRecord
from benchmark.submission import kinds
from benchmark.submission.integrity import seal
from benchmark.uncertainty import estimate_all

N_BOXES = 3


@dataclass(frozen=True)
class SyntheticPair:
    """What to vary between synthetic results."""

    base_id: str = "example-org/base-model"
    finetuned_id: str = "example-org/finetuned-model"
    base_revision: str | None = "main"
    finetuned_revision: str | None = "main"
    seed: int = 0
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    finished_at: str = "2025-01-31T12:30:00+00:00"


def _sha(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _model(pair: SyntheticPair, model_id: str, revision: str | None) -> ModelRecord:
    return ModelRecord(
        id=model_id,
        revision=revision,
        gguf_file=None,
        adapters=(),
        dtype="float32",
        model_type="llama",
        architecture="LlamaForCausalLM",
        head_shape=HeadShape(pair.n_layers, pair.n_heads, pair.n_kv_heads, head_dim=8),
        tokenizer_class="PreTrainedTokenizerFast",
        vocab_size=512,
        vocab_sha256=_sha("vocab"),
        config_sha256=_sha("config", model_id),
        weight_files=("model.safetensors",),
        weights_sha256=_sha("weights", model_id, revision),
        trust_remote_code=False,
    )


def _settings() -> c.ScoreSettings:
    return c.ScoreSettings(
        preset="tiny",
        n_boxes=N_BOXES,
        dtype="float32",
        device_map=None,
        behaviour=c.BehaviourConfig(n_prompts=30, seed=0),
        discovery=c.DiscoveryConfig(12, 6, -0.01, 2.58, 0.15, 0.01, 0, 64, 32),
        faithfulness=c.FaithfulnessConfig(30, 30, 3, 0, (0.25, 0.5, 1.0), 32),
        dcm=c.DCMConfig(0.01, 0.1, 4, 2, 12, 6, 6, 0, 0, N_BOXES, 1.0, None, 32),
        cmap=c.CMAPConfig(30, N_BOXES, 0, 32, 0.02),
    )


def _datasets(settings: c.ScoreSettings) -> tuple[r.DatasetSplit, ...]:
    """Real splits of the suite's default word list, one per role."""
    from benchmark.data import generate_split

    dcm = settings.dcm
    roles = (
        ("behaviour", "test", settings.behaviour.n_prompts, settings.behaviour.seed),
        ("path_patching", "train", settings.discovery.n_prompts, settings.discovery.seed),
        ("dcm_train", "train", dcm.n_train, dcm.data_seed),
        ("dcm_validation", "validation", dcm.n_validation, dcm.data_seed),
        ("dcm_test", "test", dcm.n_test, dcm.data_seed),
        ("cmap", "test", settings.cmap.n_prompts, settings.cmap.seed),
    )
    datasets = []
    for role, name, size, seed in roles:
        split = generate_split(N_BOXES, name, size, seed)
        datasets.append(r.DatasetSplit(role, split.split_id, split.sha256, len(split.examples), size))
    return tuple(datasets)


def _vocabulary() -> Vocabulary:
    from benchmark.data import LABELS, OBJECTS

    return Vocabulary(OBJECTS, LABELS, removed_objects=(), removed_labels=())


def _accuracy(rng: random.Random, settings: c.ScoreSettings) -> r.Accuracy:
    """Made-up outcomes on the real behaviour split, and the accuracies they give."""
    from benchmark.data import generate_split

    behaviour = settings.behaviour
    split = generate_split(N_BOXES, "test", behaviour.n_prompts, behaviour.seed)
    queried = [example.query_index for example in split.examples]
    right = [rng.random() < 0.7 for _ in queried]
    per_box = [[ok for ok, q in zip(right, queried, strict=True) if q == box] for box in range(N_BOXES)]
    n = len(right)
    return r.Accuracy(
        sum(right) / n,
        n,
        tuple(sum(rows) / len(rows) if rows else None for rows in per_box),
        tuple(len(rows) for rows in per_box),
        outcome_text(right),
    )


def _share(rng: random.Random, n: int, low: float, high: float) -> float:
    """A made-up accuracy over n prompts: k/n with k/n roughly in [low, high]."""
    return round(rng.uniform(low, high) * n) / n


def _matrix(rng: random.Random, pair: SyntheticPair, scale: float) -> tuple[tuple[float, ...], ...]:
    return tuple(
        tuple(round(rng.uniform(-scale, scale / 4), 4) for _ in range(pair.n_heads))
        for _ in range(pair.n_layers)
    )


def _circuit(rng: random.Random, pair: SyntheticPair) -> r.Discovery:
    """Each group selects the most negative heads of its stage; pruning drops the last one of a group."""
    stages, selected, groups = [], {}, {}
    for group in kinds.GROUP_NAMES:
        mean, stderr = _matrix(rng, pair, 0.2), _matrix(rng, pair, 0.01)
        cells = [(layer, head) for layer in range(pair.n_layers) for head in range(pair.n_heads)]
        ranked = sorted((mean[layer][head], (layer, head)) for layer, head in cells)
        chosen = tuple(head for effect, head in ranked[:3] if effect <= -0.01)
        selected[group], groups[group] = chosen, chosen[:2]
        stderr = tuple(tuple(abs(v) for v in row) for row in stderr)
        stages.append(r.DiscoveryStage(group, mean, stderr, chosen, skipped_because=None))
    return r.Discovery(groups, selected, tuple(stages), minimality_metric=round(rng.uniform(0.3, 0.6), 4))


def _iou(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _circuits(rng: random.Random, pair: SyntheticPair) -> r.Circuits:
    base, finetuned = _circuit(rng, pair), _circuit(rng, pair)
    per_group = {g: _iou(set(base.groups[g]), set(finetuned.groups[g])) for g in kinds.GROUP_NAMES}
    union_base = {h for g in kinds.GROUP_NAMES for h in base.groups[g]}
    union_finetuned = {h for g in kinds.GROUP_NAMES for h in finetuned.groups[g]}
    iou = r.CircuitIoU(per_group, _iou(union_base, union_finetuned))
    size = pair.n_heads // pair.n_kv_heads
    note = f"receivers' k/v patched per key-value group, group size {size}"
    return r.Circuits(base, finetuned, iou, size, note)


def _score(rng: random.Random, full: float, n: int) -> r.FaithfulnessScore:
    circuit = _share(rng, n, 0.5 * full, full)
    return r.FaithfulnessScore(full, circuit, circuit / full, n, undefined_because=None)


def _model_faithfulness(rng: random.Random, full: float, settings: c.ScoreSettings) -> r.ModelFaithfulness:
    n = settings.faithfulness.n_prompts
    draws = tuple(_share(rng, n, 0.0, 0.05) / full for _ in range(settings.faithfulness.n_random))
    mean, std = statistics.fmean(draws), statistics.stdev(draws)
    points, level = [], 0.0
    for fraction in settings.faithfulness.curve_fractions:
        level = min(full, level + _share(rng, n, 0.2, 0.5))
        k = max(1, round(fraction * 16))
        points.append(r.CurvePoint(fraction, k, level, level / full))
    area = curve_area(tuple(points))
    return r.ModelFaithfulness(
        _score(rng, full, n), r.RandomBaseline(mean, std, draws, 0), r.Curve(tuple(points), area)
    )


def _masks(rng: random.Random, circuit: r.Discovery, dcm: c.DCMConfig) -> tuple[r.DCMMask, ...]:
    n_validation, n_test = dcm.n_validation, dcm.n_test
    masks = []
    for group in kinds.GROUP_NAMES:
        heads = tuple(sorted(circuit.groups[group]))
        for desideratum in kinds.DESIDERATUM_NAMES:
            values = tuple(float(rng.random() < 0.5) for _ in heads)
            chosen = tuple(h for h, v in zip(heads, values, strict=True) if v == 0.0)
            validation, test = _share(rng, n_validation, 0.2, 0.9), _share(rng, n_test, 0.2, 0.9)
            masks.append(r.DCMMask(group, desideratum, heads, values, chosen, validation, test, n_test))
    return tuple(masks)


def _dcm(rng: random.Random, circuits: r.Circuits, settings: c.ScoreSettings) -> r.DCM:
    base = _masks(rng, circuits.base, settings.dcm)
    finetuned = _masks(rng, circuits.finetuned, settings.dcm)
    overlap = tuple(
        r.DCMOverlap(
            b.group, b.desideratum, _iou(set(b.heads), set(f.heads)), b.test_accuracy, f.test_accuracy
        )
        for b, f in zip(base, finetuned, strict=True)
    )
    return r.DCM(base, finetuned, overlap, skipped_groups=())


def _cmap(rng: random.Random, circuits: r.Circuits, acc_base: float, acc_ft: float) -> r.CMAP:
    defined = abs(acc_ft - acc_base) >= 0.02

    def entry(heads: Heads) -> r.CMAPEntry:
        low, high = sorted((acc_base, acc_ft))
        patched = _share(rng, 30, low, high)
        gain = (patched - acc_base) / (acc_ft - acc_base) + 0.0 if defined else None
        return r.CMAPEntry(heads, patched, patched - acc_base, gain)

    groups = {g: entry(circuits.base.groups[g]) for g in kinds.GROUP_NAMES}
    every = tuple(dict.fromkeys(h for g in kinds.GROUP_NAMES for h in circuits.base.groups[g]))
    return r.CMAP(30, acc_base, acc_ft, defined, entry(every), groups)


def synthetic_result(pair: SyntheticPair = SyntheticPair()) -> r.Result:
    """A full result for `pair`, every stage present, that `validate` accepts."""
    rng = random.Random(pair.seed)
    settings = _settings()
    behaviour = r.Behaviour("lm-eval", _accuracy(rng, settings), _accuracy(rng, settings))
    circuits = _circuits(rng, pair)
    faithfulness = r.Faithfulness(
        _model_faithfulness(rng, behaviour.base.accuracy or 1.0, settings),
        _model_faithfulness(rng, behaviour.finetuned.accuracy or 1.0, settings),
        _score(rng, behaviour.finetuned.accuracy or 1.0, settings.faithfulness.n_prompts),
    )
    stages = tuple(r.StageTime(s, 1.5) for s in ("behaviour", "circuits", "faithfulness", "dcm", "cmap"))
    result = r.Result(
        suite=r.Suite(kinds.SUITE_NAME, "0.1.0", kinds.SCHEMA_VERSION, kinds.METRIC_VERSION, "boxes-v1"),
        settings=settings,
        datasets=_datasets(settings),
        vocabulary=_vocabulary(),
        models=r.Models(
            _model(pair, pair.base_id, pair.base_revision),
            _model(pair, pair.finetuned_id, pair.finetuned_revision),
        ),
        hardware=r.Hardware("cpu", "synthetic", "2.13.0", "5.24.0", "0.4.9", "3.11.0", "Linux-x86_64"),
        timing=r.Timing("2025-01-31T12:00:00+00:00", pair.finished_at, 7.5, stages),
        behaviour=behaviour,
        circuits=circuits,
        faithfulness=faithfulness,
        dcm=_dcm(rng, circuits, settings),
        cmap=_cmap(rng, circuits, behaviour.base.accuracy, behaviour.finetuned.accuracy),
        digest=None,
    )
    return seal(dataclasses.replace(result, uncertainty=estimate_all(result)))
