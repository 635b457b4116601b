"""Known-answer tests of path patching: batched sweep against the plain loop, zeros, selection, pruning."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.accuracy import answer_probabilities, score_accuracy
from benchmark.circuit import GROUPS, Circuit, Group
from benchmark.circuit_run import site_positions
from benchmark.data import EncodedPairs, build_pairs, encode_pairs, generate_split
from benchmark.hooks import capture_head_outputs, head_output_means, patch_head_outputs
from benchmark.models import ArchitectureAdapter, ModelUnderStudy
from benchmark.path_patching import STAGES, StageEffects, sweep, sweep_stage
from benchmark.path_patching.attribution import attribution_estimates
from benchmark.path_patching.discovery import DiscoveryConfig, discover_circuit, prune_minimal, select_heads
from benchmark.path_patching.reference import reference_stage

RECEIVERS = ((2, 1), (1, 3), (2, 0))  # layer, head: a fixed receiver set for stages B-D


@pytest.fixture(scope="module", params=["llama", "gpt2", "gpt_neox"])
def tiny(request, tiny_model_dir):
    """(model, adapter, path-patching pairs) of a tiny model; Llama has grouped-query attention."""
    directory = tiny_model_dir(request.param)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    pairs = encode_pairs(
        tokenizer, build_pairs(generate_split(3, "test", 12, seed=0), "path_patching", seed=0)
    )
    return model, ArchitectureAdapter(model), pairs


def _receivers(stage):
    return None if stage.receivers is None else RECEIVERS


@pytest.mark.parametrize("rows_per_pass", [10, 40], ids=["k 1 and 5", "k 3"])
@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.group.value)
def test_batched_sweep_equals_the_plain_loop(tiny, stage, rows_per_pass):
    """Chunks of 10 and 2 prompts (1 and 5 senders a prompt per pass), or one of 12 (3 senders): with more
    than one, the rows below the lowest sender's or receiver's layer run once per prompt."""
    model, adapter, pairs = tiny
    assert len(pairs) == 12
    study = ModelUnderStudy(model, adapter)
    fast = sweep_stage(study, pairs, stage, _receivers(stage), rows_per_pass=rows_per_pass, progress=False)
    plain = reference_stage(model, adapter, pairs, stage, _receivers(stage))
    assert fast.mean.abs().max() > 1e-3  # the comparison is not between two zero arrays
    torch.testing.assert_close(fast.mean, plain.mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.stderr, plain.stderr, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.group.value)
def test_counterfactual_equal_to_clean_gives_exactly_zero(tiny, stage):
    model, adapter, pairs = tiny
    same = EncodedPairs(pairs.clean, pairs.clean, pairs.target_ids)
    effects = sweep_stage(
        ModelUnderStudy(model, adapter), same, stage, _receivers(stage), rows_per_pass=7, progress=False
    )
    assert torch.equal(effects.mean, torch.zeros_like(effects.mean))


def test_heads_that_cannot_reach_the_receivers_have_zero_effect(tiny):
    model, adapter, pairs = tiny
    effects = sweep_stage(ModelUnderStudy(model, adapter), pairs, STAGES[1], ((1, 0),), progress=False)
    assert torch.equal(effects.mean[1:], torch.zeros_like(effects.mean[1:]))
    assert effects.mean[0].abs().max() > 0


def test_logits_stage_in_the_last_layer_equals_activation_patching(tiny):
    model, adapter, pairs = tiny
    stage, last = STAGES[0], adapter.shape.n_layers - 1
    effects = sweep_stage(ModelUnderStudy(model, adapter), pairs, stage, progress=False)
    positions = site_positions(stage.site, pairs.clean)[:, None]
    with torch.no_grad(), capture_head_outputs(adapter, positions, layers=[last]) as cf:
        model(pairs.counterfactual.input_ids)
    p_clean = answer_probabilities(model, pairs.clean)
    for head in range(adapter.shape.n_heads):
        mask = torch.zeros(1, 1, adapter.shape.n_heads, dtype=torch.bool)
        mask[..., head] = True
        with patch_head_outputs(adapter, cf.stack(), positions, mask, layers=[last]):
            p = answer_probabilities(model, pairs.clean)
        expected = ((p - p_clean) / p_clean).mean()
        torch.testing.assert_close(effects.mean[last, head], expected, atol=1e-5, rtol=0)


def _effects(mean, stderr):
    return StageEffects(torch.tensor(mean), torch.tensor(stderr), 10)


def test_selection_needs_threshold_and_significance_and_orders_strongest_first():
    effects = _effects(
        [[-0.5, -0.02, -0.005], [-0.3, -0.2, 0.4]],
        [[0.01, 0.001, 0.0], [0.2, 0.01, 0.0]],
    )
    # (1, 0) is strong but not significant; (0, 2) is significant but above the threshold.
    assert select_heads(effects, DiscoveryConfig(max_group_fraction=1.0)) == ((0, 0), (1, 1), (0, 1))
    assert select_heads(effects, DiscoveryConfig(max_group_fraction=0.34)) == ((0, 0), (1, 1))
    assert select_heads(effects, DiscoveryConfig()) == ((0, 0),)  # 15% of 6 heads rounds down; at least 1


def test_minimality_drops_only_heads_that_do_not_move_the_metric():
    circuit = Circuit.of({Group.VALUE_FETCHER: [(0, 0), (0, 1)], Group.POSITION_DETECTOR: [(1, 1)]})
    weights = {(0, 0): 0.5, (0, 1): 0.001, (1, 1): 0.3}

    def metric(c):
        return 0.1 + sum(weights[h] for group in GROUPS for h in c.heads(group))

    pruned, dropped, value = prune_minimal(circuit, metric, tolerance=0.01, progress=False)
    assert pruned.heads(Group.VALUE_FETCHER) == ((0, 0),)
    assert pruned.heads(Group.POSITION_DETECTOR) == ((1, 1),)
    assert dropped[Group.VALUE_FETCHER] == ((0, 1),)
    assert value == pytest.approx(0.9)


def test_discovery_runs_end_to_end_and_keeps_every_stage_effect_array(tiny):
    model, adapter, pairs = tiny
    means = head_output_means(model, adapter, pairs.counterfactual.input_ids)
    config = DiscoveryConfig(effect_threshold=-1e-4, z_score=0.0, rows_per_pass=16)
    result = discover_circuit(
        ModelUnderStudy(model, adapter), pairs, pairs.clean, means, config, progress=False
    )
    assert [s.group for s in result.stages] == list(GROUPS)
    shape = (adapter.shape.n_layers, adapter.shape.n_heads)
    assert all(s.effects is None or tuple(s.effects.mean.shape) == shape for s in result.stages)
    n_correct = sum(score_accuracy(model, pairs.clean).correct)
    # Effects are averaged over the rows the model answers right, or over all when it answers none.
    assert result.stages[0].effects.n_prompts == (n_correct or len(pairs))
    assert result.selected.heads(Group.VALUE_FETCHER), "lenient thresholds select some value fetchers"
    for group in GROUPS:
        kept = set(result.circuit.heads(group)) | set(result.pruned[group])
        assert kept == set(result.selected.heads(group))


def test_a_stage_without_receivers_is_skipped_not_run(tiny):
    model, adapter, pairs = tiny
    means = head_output_means(model, adapter, pairs.counterfactual.input_ids)
    strict = DiscoveryConfig(effect_threshold=-10.0)
    result = discover_circuit(
        ModelUnderStudy(model, adapter), pairs, pairs.clean, means, strict, progress=False
    )
    assert result.stages[0].effects is not None and result.stages[0].selected == ()
    assert all(s.effects is None and s.skipped_because for s in result.stages[1:])


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.group.value)
def test_attribution_is_the_first_order_term_of_the_exact_effect(tiny, stage):
    """With the counterfactual moved only eps of the way from the clean outputs, the exact effect is
    eps * the AtP estimate up to O(eps^2): the gradient through both passes is right, for every stage
    (effects are relative to p_null, so the estimate is compared with exact / eps)."""
    model, _, pairs = tiny
    study, eps = ModelUnderStudy.of(copy.deepcopy(model).double()), 3e-3  # float64: effects are ~1e-5
    runs = sweep.prepare(study, pairs, stage, batch_size=32)
    near = sweep.SiteRuns(
        runs.pairs, runs.positions, runs.z_clean, runs.z_clean + eps * (runs.z_cf - runs.z_clean)
    )
    exact = sweep_stage(study, pairs, stage, _receivers(stage), progress=False, site_runs=near)
    estimate = attribution_estimates(study, near, stage, _receivers(stage))[-1]
    assert estimate.mean.abs().max() > 1e-7  # not two zero arrays
    scale = float(exact.mean.abs().max())
    # within 3% of the largest effect: p(answer) is a float32 softmax, whose rounding is ~1% of effects
    # this small; a wrong gradient (a missed path, a wrong sign) is off by 100%
    torch.testing.assert_close(estimate.mean, exact.mean, atol=0.03 * scale, rtol=0)


def test_attribution_is_zero_for_a_counterfactual_equal_to_the_clean_prompt(tiny):
    model, adapter, pairs = tiny
    same = EncodedPairs(pairs.clean, pairs.clean, pairs.target_ids)
    study = ModelUnderStudy(model, adapter)
    for stage in STAGES:
        runs = sweep.prepare(study, same, stage, batch_size=32)
        estimate = attribution_estimates(study, runs, stage, _receivers(stage))[-1]
        assert torch.equal(estimate.mean, torch.zeros_like(estimate.mean))
