"""Faithfulness, the random-circuit baseline, the curve over circuit size and cross-model evaluation,
on the known-answer tiny Llama (accuracy strictly between 0 and 1, so ratios are not all 0 / 0)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.ablation import MEAN, RESAMPLE, AblationSource, ResamplePrompts, logit_diff, resample_prompts
from benchmark.accuracy import answer_probabilities, score_accuracy
from benchmark.circuit import GROUPS, Circuit, Group
from benchmark.circuit_run import keep_mask
from benchmark.data import encode_examples, generate_split
from benchmark.faithfulness import (
    CurvePoint,
    FaithfulnessConfig,
    FaithfulnessCurve,
    ablation_means,
    cross_model_faithfulness,
    faithfulness,
    faithfulness_ratio,
    intervention_faithfulness,
    mask_faithfulness,
    random_circuit_baseline,
    run_ends,
)
from benchmark.faithfulness_curve import (
    curve_k,
    evaluate_faithfulness,
    faithfulness_curve,
    head_ranking,
    top_k_circuit,
)
from benchmark.hooks import mean_ablate
from benchmark.models import ArchitectureAdapter, ModelUnderStudy
from benchmark.path_patching.discovery import DiscoveryConfig, DiscoveryResult, StageResult
from benchmark.path_patching.sweep import StageEffects

CIRCUIT = Circuit.of(
    {
        Group.VALUE_FETCHER: [(2, 0), (2, 3), (1, 1)],
        Group.POSITION_TRANSMITTER: [(1, 2)],
        Group.POSITION_DETECTOR: [(0, 1), (1, 0)],
        Group.STRUCTURE_READER: [(0, 3)],
    }
)


@pytest.fixture(scope="module")
def setup(known_answer_model):
    """(model, adapter, encoded prompts, means from the model's own reference set, full accuracy)."""
    model = AutoModelForCausalLM.from_pretrained(known_answer_model.directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(known_answer_model.directory)
    adapter = ArchitectureAdapter(model)
    encoded = encode_examples(tokenizer, known_answer_model.examples)
    means = ablation_means(ModelUnderStudy(model, adapter, tokenizer), generate_split(3, "validation", 30))
    assert means.shape == (encoded.input_ids.shape[1], 3, 4, 16)
    return model, adapter, encoded, means, known_answer_model.accuracy


def _fully_ablated_accuracy(model, adapter, encoded, means) -> float:
    return score_accuracy(model, encoded, intervention=lambda rows: mean_ablate(adapter, means)).accuracy


def _discovery(stage_means: dict[Group, torch.Tensor | None]) -> DiscoveryResult:
    """A discovery result with the given mean effect arrays [layer, head] (None: a skipped stage)."""
    stages = tuple(
        StageResult(
            group,
            None if mean is None else StageEffects(mean, torch.zeros_like(mean), 10),
            (),
            None if mean is not None else "skipped in this test",
        )
        for group, mean in stage_means.items()
    )
    empty = Circuit.of({})
    return DiscoveryResult(DiscoveryConfig(), stages, empty, empty)


def test_keeping_every_component_gives_faithfulness_exactly_one(setup):
    model, adapter, encoded, means, accuracy = setup
    everything = torch.ones(1, 1, 3, 4, dtype=torch.bool)
    result = mask_faithfulness(ModelUnderStudy(model, adapter), encoded, means, lambda rows: everything)
    assert result.full_accuracy == result.circuit_accuracy == accuracy
    assert result.faithfulness == 1.0 and result.defined and result.n_prompts == 48


def test_keeping_nothing_equals_the_fully_mean_ablated_model(setup):
    model, adapter, encoded, means, accuracy = setup
    ablated = _fully_ablated_accuracy(model, adapter, encoded, means)
    assert ablated != accuracy  # the ablation matters, so the comparisons below can fail
    nothing = torch.zeros(1, 1, 3, 4, dtype=torch.bool)
    for keep in (lambda rows: None, lambda rows: nothing):
        result = mask_faithfulness(ModelUnderStudy(model, adapter), encoded, means, keep)
        assert result.circuit_accuracy == ablated
        assert result.faithfulness == ablated / accuracy


def test_a_circuit_of_no_heads_equals_the_fully_mean_ablated_model(setup):
    model, adapter, encoded, means, accuracy = setup
    result = faithfulness(ModelUnderStudy(model, adapter), Circuit.of({}), encoded, means)
    assert result.circuit_accuracy == _fully_ablated_accuracy(model, adapter, encoded, means)
    assert result.full_accuracy == accuracy


def test_a_circuit_run_keeps_each_group_at_its_position_only(setup):
    model, adapter, encoded, means, accuracy = setup
    result = faithfulness(
        ModelUnderStudy(model, adapter), CIRCUIT, encoded, means, batch_size=7, full_accuracy=accuracy
    )
    by_mask = mask_faithfulness(
        ModelUnderStudy(model, adapter), encoded, means, lambda rows: keep_mask(CIRCUIT, rows, 3, 4), 7
    )
    everywhere = torch.zeros(1, 1, 3, 4, dtype=torch.bool)
    for layer, head in CIRCUIT.all_heads():
        everywhere[..., layer, head] = True
    assert result == by_mask

    def probabilities(keep):
        return answer_probabilities(
            model, encoded, intervention=lambda rows: mean_ablate(adapter, means, keep(rows))
        )

    at_group_positions = probabilities(lambda rows: keep_mask(CIRCUIT, rows, 3, 4))
    assert not torch.allclose(probabilities(lambda rows: everywhere), at_group_positions, atol=1e-4)


def test_zero_full_accuracy_gives_nan_with_a_reason_not_an_error(setup):
    model, adapter, encoded, means, _ = setup
    result = intervention_faithfulness(
        model, encoded, lambda rows: mean_ablate(adapter, means), full_accuracy=0
    )
    assert math.isnan(result.faithfulness) and not result.defined
    assert "accuracy is 0" in result.undefined_because
    assert faithfulness_ratio(0.5, 0.25, 8).faithfulness == 0.5


def test_mismatched_means_or_heads_are_clear_errors(setup):
    model, adapter, encoded, means, _ = setup
    with pytest.raises(ValueError, match="means have shape"):
        faithfulness(ModelUnderStudy(model, adapter), CIRCUIT, encoded, means[:-1])
    with pytest.raises(ValueError, match="outside this model"):
        faithfulness(ModelUnderStudy(model, adapter), Circuit.of({"value_fetcher": [(3, 0)]}), encoded, means)


def test_random_baseline_is_seeded_and_keeps_group_sizes(setup):
    model, adapter, encoded, means, accuracy = setup
    first = random_circuit_baseline(
        ModelUnderStudy(model, adapter), CIRCUIT, encoded, means, seed=3, progress=False
    )
    again = random_circuit_baseline(
        ModelUnderStudy(model, adapter), CIRCUIT, encoded, means, seed=3, progress=False
    )
    other = random_circuit_baseline(
        ModelUnderStudy(model, adapter), CIRCUIT, encoded, means, n_draws=4, seed=4, progress=False
    )
    assert len(first.draws) == len(first.results) == 10 and len(other.draws) == 4
    assert first.draws == again.draws and first.faithfulness == again.faithfulness
    assert other.draws != first.draws[:4]
    assert len({str(draw.to_dict()) for draw in first.draws}) > 1  # draws differ from each other
    for draw in first.draws + other.draws:
        assert draw.sizes == CIRCUIT.sizes == first.sizes
        assert all(len(set(draw.heads(group))) == len(draw.heads(group)) for group in GROUPS)
    assert first.results[0] == faithfulness(ModelUnderStudy(model, adapter), first.draws[0], encoded, means)
    assert first.mean == statistics.fmean(first.faithfulness)
    assert first.std == statistics.stdev(first.faithfulness)
    assert all(r.full_accuracy == accuracy for r in first.results)


def test_ranking_puts_each_head_in_its_most_negative_stage():
    a = torch.zeros(2, 2)
    a[1, 1], a[0, 0] = -0.5, -0.1
    b = torch.zeros(2, 2)
    b[0, 0], b[1, 0] = -0.9, 0.2
    discovery = _discovery(
        {Group.VALUE_FETCHER: a, Group.POSITION_TRANSMITTER: b, Group.STRUCTURE_READER: None}
    )
    ranking = head_ranking(discovery.stages)
    assert [(r.head, r.group, r.effect) for r in ranking[:2]] == [
        ((0, 0), Group.POSITION_TRANSMITTER, pytest.approx(-0.9)),
        ((1, 1), Group.VALUE_FETCHER, -0.5),
    ]
    # (0, 1) ties at 0 in both stages: the earlier stage wins; (1, 0) is 0 in A and +0.2 in B
    assert [(r.head, r.group) for r in ranking[2:]] == [
        ((0, 1), Group.VALUE_FETCHER),
        ((1, 0), Group.VALUE_FETCHER),
    ]
    assert top_k_circuit(ranking, 2) == Circuit.of(
        {"position_transmitter": [(0, 0)], "value_fetcher": [(1, 1)]}
    )
    with pytest.raises(ValueError, match="no stage"):
        head_ranking(_discovery({Group.VALUE_FETCHER: None}).stages)


def test_curve_is_built_from_the_ranking_and_ends_with_every_head(setup):
    model, adapter, encoded, means, accuracy = setup
    effects = -torch.arange(12, dtype=torch.float32).view(3, 4) / 12  # head (2, 3) strongest
    discovery = _discovery({Group.VALUE_FETCHER: effects, Group.POSITION_DETECTOR: effects.flip(0) * 1.5})
    fractions = (1.0, 0.1, 0.25, 0.5)
    curve = faithfulness_curve(
        ModelUnderStudy(model, adapter), discovery, encoded, means, fractions, progress=False
    )
    assert [p.fraction for p in curve.points] == [0.1, 0.25, 0.5, 1.0]
    assert [p.k for p in curve.points] == [1, 3, 6, 12]
    assert curve.ranking == head_ranking(discovery.stages) and curve.full_accuracy == accuracy
    for point in curve.points:
        expected = faithfulness(
            ModelUnderStudy(model, adapter), top_k_circuit(curve.ranking, point.k), encoded, means
        )
        assert (point.accuracy, point.faithfulness) == (expected.circuit_accuracy, expected.faithfulness)
    assert len(top_k_circuit(curve.ranking, curve.points[-1].k).all_heads()) == 12
    trapezoid = sum(
        (b.fraction - a.fraction) * (a.faithfulness + b.faithfulness) / 2
        for a, b in zip(curve.points, curve.points[1:], strict=False)
    )
    assert curve.area == pytest.approx(trapezoid)
    assert 0 <= curve.area <= 0.9 * max(p.faithfulness for p in curve.points)


def test_curve_area_is_in_fraction_units_and_k_is_bounded():
    flat = FaithfulnessCurve(1.0, (), tuple(CurvePoint(f, 1, 1.0, 1.0) for f in (0.0, 0.5, 1.0)))
    assert flat.area == 1.0
    assert [curve_k(f, 12) for f in (0.01, 0.05, 0.5, 1.0)] == [1, 1, 6, 12]
    assert curve_k(0.1, 30) == 3
    with pytest.raises(ValueError, match="fractions"):
        curve_k(0.0, 12)


def test_cross_model_with_itself_equals_its_own_faithfulness(setup):
    model, adapter, encoded, means, _ = setup
    own = faithfulness(ModelUnderStudy(model, adapter), CIRCUIT, encoded, means)
    cross = cross_model_faithfulness(
        "base", CIRCUIT, "fine-tuned", ModelUnderStudy(model, adapter), encoded, means
    )
    assert (cross.circuit_model, cross.evaluated_model) == ("base", "fine-tuned")
    assert cross.result == own


def test_evaluate_runs_circuit_baseline_and_curve_with_the_config(setup):
    model, adapter, encoded, means, accuracy = setup
    discovery = _discovery(
        {Group.VALUE_FETCHER: -torch.rand(3, 4, generator=torch.Generator().manual_seed(0))}
    )
    config = FaithfulnessConfig(n_random=2, curve_fractions=(0.5, 1.0), batch_size=16)
    report = evaluate_faithfulness(
        ModelUnderStudy(model, adapter), discovery, encoded, means, config, CIRCUIT, progress=False
    )
    assert report.config == config and FaithfulnessConfig().n_random == 10
    study = ModelUnderStudy(model, adapter)
    assert report.circuit == faithfulness(study, CIRCUIT, encoded, means, 16, ends=report.ends)
    assert len(report.random.draws) == 2 and [p.k for p in report.curve.points] == [6, 12]
    assert report.curve.full_accuracy == accuracy


def _sources(setup):
    """(mean source, resample source, the prompts each evaluates): resample pairs each prompt with another
    prompt of the same layout (the rows rotated by one context)."""
    model, adapter, encoded, means, _ = setup
    reference = torch.roll(encoded.input_ids, shifts=3, dims=0)
    resampled = resample_prompts(encoded, reference, seed=0)
    return [(AblationSource(MEAN, means), encoded), (AblationSource(RESAMPLE), resampled)]


@pytest.mark.parametrize("which", [0, 1], ids=["mean", "resample"])
def test_normalized_faithfulness_is_exactly_one_for_the_full_model_and_zero_for_the_empty_one(setup, which):
    model, adapter, _, _, _ = setup
    source, prompts = _sources(setup)[which]
    study = ModelUnderStudy(model, adapter)
    ends = run_ends(study, prompts, source)
    assert ends.full.mean_logit_diff != ends.empty.mean_logit_diff
    everything = torch.ones(1, 1, 3, 4, dtype=torch.bool)
    full = mask_faithfulness(study, prompts, source, lambda rows: everything, ends=ends)
    empty = mask_faithfulness(study, prompts, source, lambda rows: None, ends=ends)
    assert full.normalized == 1.0 and empty.normalized == 0.0
    assert full.run.logit_diffs == ends.full.logit_diffs and empty.run == ends.empty


def test_resampling_each_prompt_from_itself_changes_nothing(setup):
    """A self-patch: every head takes its own value, so the 'empty' run is the full model, bit for bit."""
    model, adapter, encoded, _, _ = setup
    itself = ResamplePrompts(**vars(encoded), counterfactual_ids=encoded.input_ids)
    ends = run_ends(ModelUnderStudy(model, adapter), itself, AblationSource(RESAMPLE))
    assert ends.empty == ends.full


def test_resample_pairs_are_one_to_one_and_seeded(setup):
    _, _, encoded, _, _ = setup
    reference = torch.arange(len(encoded))[:, None].expand_as(encoded.input_ids)
    first, again = (resample_prompts(encoded, reference, seed=3) for _ in range(2))
    rows = first.counterfactual_ids[:, 0].tolist()
    assert sorted(rows) == list(range(len(encoded))) and torch.equal(
        first.counterfactual_ids, again.counterfactual_ids
    )
    assert not torch.equal(
        resample_prompts(encoded, reference, seed=4).counterfactual_ids, first.counterfactual_ids
    )


def test_the_logit_difference_is_the_answer_over_the_other_objects_of_the_context(setup):
    _, _, encoded, _, _ = setup
    logits = torch.zeros(len(encoded), 700)
    rows = torch.arange(len(encoded))
    objects = encoded.input_ids.gather(1, encoded.object_pos)  # [batch, box]
    assert torch.equal(objects[rows, encoded.query_index], encoded.answer_ids)  # the prompt spells the answer
    logits[rows, encoded.answer_ids] = 3.0
    logits[rows[:, None], objects] += 1.0  # every object +1 (the answer too: 4)
    assert torch.allclose(logit_diff(logits, encoded), torch.full((len(encoded),), 3.0))
