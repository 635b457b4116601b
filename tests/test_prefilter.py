"""Known answers for discovery's attribution pre-filter (`--discovery atp+exact`): it must find the circuit
exact path patching finds, on every tiny architecture and on the planted models, and its random sample
must turn the stage exact when AtP misses a head the selection would take."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.data import build_pairs, encode_pairs, generate_split
from benchmark.models import ArchitectureAdapter, ModelUnderStudy
from benchmark.path_patching import STAGES, discovery, prefilter
from benchmark.path_patching.attribution import attribution_estimates
from benchmark.path_patching.sweep import prepare, senders_of
from benchmark.settings import DiscoveryConfig, preset_settings
from benchmark.testing import TINY_ARCHITECTURES
from benchmark.zoo.planted import PLANTED_MODELS, compile_model

# Random tiny models have small effects (t-values near -1): a permissive rule so that the stages select
# heads, up to three per group (a quarter of the 12 heads), each with an effect under SPEC's threshold.
PERMISSIVE = DiscoveryConfig(effect_threshold=-0.01, z_score=0.0, max_group_fraction=0.25)


def _study_and_pairs(model, tokenizer, n_boxes: int, n: int):
    pairs = build_pairs(generate_split(n_boxes, "test", n, seed=0), "path_patching", seed=0)
    return ModelUnderStudy(model, ArchitectureAdapter(model)), encode_pairs(tokenizer, pairs)


@pytest.fixture(scope="module", params=TINY_ARCHITECTURES)
def tiny(request, tiny_model_dir):
    directory = tiny_model_dir(request.param)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    return _study_and_pairs(model, AutoTokenizer.from_pretrained(directory), 3, 24)


def _selected(stages) -> list:
    return [stage.selected for stage in stages]


def test_atp_candidates_hold_every_head_exact_patching_selects(tiny):
    """Recall of AtP's candidates alone (no sample, no fall-back) is 1 at every stage that selects."""
    study, pairs = tiny
    stages = discovery.run_stages(study, pairs, PERMISSIVE, progress=False)
    answered, receivers, checked = discovery.answered_pairs(study, pairs, 32), None, 0
    for stage, exact in zip(STAGES, stages, strict=False):
        if exact.effects is None:
            break
        runs = prepare(study, answered, stage, 32)
        estimates = attribution_estimates(study, runs, stage, receivers, 32, prefilter.ATP_STEPS)
        senders = senders_of(study.adapter, receivers)
        chosen = prefilter.candidates(estimates, senders, PERMISSIVE.max_heads(12))
        assert set(exact.selected) <= set(chosen), (stage.group, exact.selected, chosen)
        assert len(chosen) < len(senders) or len(senders) <= 8  # it filters wherever there is room
        checked += bool(exact.selected)
        receivers = exact.selected
    assert checked  # at least one stage selected heads, so the recall was tested


def test_atp_exact_discovery_selects_what_exact_discovery_selects(tiny):
    study, pairs = tiny
    exact = discovery.run_stages(study, pairs, PERMISSIVE, progress=False)
    atp = discovery.run_stages(study, pairs, dataclasses.replace(PERMISSIVE, prefilter="atp"), False)
    assert _selected(atp) == _selected(exact)
    for a, b in zip(exact, atp, strict=True):
        if b.effects is None:
            assert b.prefilter is None and a.effects is None
            continue
        record = b.prefilter
        assert record.n_senders - len(record.estimated) >= record.n_candidates + record.n_sampled
        for head in senders_of(study.adapter, None):  # a head patched exactly (or unreachable): exact
            if head not in record.estimated:
                torch.testing.assert_close(b.effects.mean[head], a.effects.mean[head], atol=1e-6, rtol=0)
        assert not set(record.estimated) & set(b.selected)


def test_a_sample_that_finds_a_missed_head_makes_the_stage_exact(tiny, monkeypatch):
    """AtP made blind (no candidates): at the logits stage the seeded sample of half the senders holds a head
    the rule takes, so every sender is patched exactly and the selection is exact patching's all the same."""
    study, pairs = tiny
    monkeypatch.setattr(prefilter, "candidates", lambda estimates, senders, cap: [])
    monkeypatch.setattr(prefilter, "SAMPLE_SHARE", 0.5)
    config = dataclasses.replace(PERMISSIVE, effect_threshold=0.0)  # about half the heads qualify
    exact = discovery.run_stages(study, pairs, config, progress=False)[0]
    atp = discovery.run_stages(study, pairs, dataclasses.replace(config, prefilter="atp"), False)[0]
    assert atp.selected == exact.selected and exact.selected
    first = atp.prefilter
    assert first.fell_back and first.estimated == () and first.n_candidates == 0
    assert first.miss_bound is not None and first.miss_bound < 0


@pytest.mark.parametrize("name", sorted(PLANTED_MODELS))
def test_atp_exact_discovery_finds_each_planted_circuit(name):
    model, tokenizer = compile_model(name)
    study, pairs = _study_and_pairs(model, tokenizer, 7, 28)
    config = preset_settings("cpu-small").discovery
    exact = discovery.run_stages(study, pairs, config, progress=False)
    atp = discovery.run_stages(study, pairs, dataclasses.replace(config, prefilter="atp"), False)
    assert _selected(atp) == _selected(exact)
    assert any(_selected(exact)) and atp[0].prefilter.estimated  # the logits stage left heads out
