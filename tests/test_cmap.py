"""CMAP known answers on tiny models: an identical pair, the identity patch, a pair differing in one query."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.accuracy import last_token_logits, score_accuracy
from benchmark.circuit import Circuit, Group, Site
from benchmark.cmap import CMAPConfig, gain, run_cmap, run_cmap_pair
from benchmark.data import encode_examples
from benchmark.dcm import EmptyGroupError
from benchmark.head_cache import capture_heads, patch_from_cache, site_mask, sites_positions
from benchmark.models import (
    ArchitectureAdapter,
    LoadedModel,
    ModelSpec,
    ModelUnderStudy,
    PairMismatchError,
    check_pair_configs,
    held,
    load_model,
)

CIRCUIT = Circuit.of(
    {
        "value_fetcher": [(2, 0), (2, 1)],
        "position_transmitter": [(1, 2), (2, 1)],
        "position_detector": [(1, 0), (0, 1)],
        "structure_reader": [(0, 3)],
    }
)
CHANGED = (2, 3)  # the head whose query weights the fine-tuned copy changes


def _load(directory):
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def known(known_answer_model):
    """(directory, model, prompts) of the known-answer tiny Llama (accuracy strictly between 0 and 1)."""
    directory = known_answer_model.directory
    prompts = encode_examples(AutoTokenizer.from_pretrained(directory), known_answer_model.examples)
    return directory, _load(directory), prompts


def _held(model):
    """An opener for a model built in the test (or loaded by the suite)."""
    if isinstance(model, LoadedModel):
        return held(ModelUnderStudy.loaded(model))
    return held(ModelUnderStudy.of(model))


def _with_changed_query(model):
    """A copy whose only difference is the q_proj rows of head CHANGED (last layer)."""
    changed = copy.deepcopy(model)
    layer, head = CHANGED
    q_proj = changed.model.layers[layer].self_attn.q_proj
    d = ArchitectureAdapter(changed).shape.head_dim
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rows = q_proj.weight[head * d : (head + 1) * d]
        rows += torch.randn(rows.shape, generator=generator)
    return changed


def test_identical_models_leave_accuracy_unchanged_and_gain_undefined(known, known_answer_model):
    directory, model, prompts = known
    result = run_cmap(_held(model), _held(_load(directory)), CIRCUIT, prompts, progress=False)
    assert result.acc_base == result.acc_finetuned == known_answer_model.accuracy
    assert 0 < result.acc_base < 1
    assert not result.gain_defined and result.gap == 0
    for entry in (*result.groups, result.circuit):
        assert entry.acc_patched == result.acc_base, entry.name
        assert entry.change == 0 and entry.gain is None
    assert [e.name for e in result.groups] == [g.value for g in Group]
    assert result.entry("circuit").heads == CIRCUIT.all_heads()


def test_every_head_at_every_position_into_itself_is_the_identity(known):
    directory, model, prompts = known
    other = _load(directory)
    adapter = ArchitectureAdapter(model)
    n_rows, n_pos = prompts.input_ids.shape
    positions = torch.arange(n_pos).expand(n_rows, -1)  # [rows, pos]: every position is a site
    mask = torch.ones(n_pos, adapter.shape.n_layers, adapter.shape.n_heads, dtype=torch.bool)
    cache = capture_heads(other, ArchitectureAdapter(other), prompts.input_ids, positions, mask, 16)
    run = patch_from_cache(adapter, cache, positions, prompts.input_ids)
    with torch.no_grad():
        plain = model(prompts.input_ids).logits
        with run(prompts):
            patched = model(prompts.input_ids).logits
    torch.testing.assert_close(patched, plain, rtol=0, atol=0)


def test_patching_the_changed_head_at_the_last_position_gives_the_finetuned_logits(known):
    _, base, prompts = known
    finetuned = _with_changed_query(base)
    target = last_token_logits(finetuned, prompts)
    assert (target - last_token_logits(base, prompts)).abs().max() > 1e-2  # the pair really differs
    positions = sites_positions([Site.LAST], prompts)

    def patched_logits(head):
        mask = site_mask([[head]], ArchitectureAdapter(base).shape)
        cache = capture_heads(finetuned, ArchitectureAdapter(finetuned), prompts.input_ids, positions, mask)
        run = patch_from_cache(ArchitectureAdapter(base), cache, positions, prompts.input_ids)
        return last_token_logits(base, prompts, intervention=run)

    torch.testing.assert_close(patched_logits(CHANGED), target, atol=1e-5, rtol=1e-5)
    assert (patched_logits((2, 0)) - target).abs().max() > 1e-2  # another head does not do it
    circuit = Circuit.of({"value_fetcher": [CHANGED]})
    result = run_cmap(_held(base), _held(finetuned), circuit, prompts, progress=False)
    assert result.entry(Group.VALUE_FETCHER).acc_patched == result.acc_finetuned
    assert result.skipped_groups == tuple(g for g in Group if g is not Group.VALUE_FETCHER)


def test_loaders_hold_one_model_at_a_time(known):
    directory, base, prompts = known
    finetuned = _with_changed_query(base)
    events = []

    def loader(name, model):
        @contextmanager
        def opened():
            events.append(f"open {name}")
            yield ModelUnderStudy.of(model)
            events.append(f"close {name}")

        return opened

    result = run_cmap(loader("base", base), loader("ft", finetuned), CIRCUIT, prompts, progress=False)
    assert events == ["open ft", "close ft", "open base", "close base"]
    assert result == run_cmap(_held(base), _held(finetuned), CIRCUIT, prompts, progress=False)


def test_model_pair_end_to_end_releases_and_patches(known, tmp_path):
    directory, base, _ = known
    finetuned = _with_changed_query(base)
    finetuned.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(directory).save_pretrained(tmp_path)
    pair = check_pair_configs(ModelSpec(str(directory)), ModelSpec(str(tmp_path)))
    config = CMAPConfig(n_prompts=12, n_boxes=3)
    result = run_cmap_pair(pair, Circuit.of({"value_fetcher": [CHANGED]}), config, progress=False)
    assert result.n_prompts == 12
    assert result.entry(Group.VALUE_FETCHER).acc_patched == result.acc_finetuned


def test_gain_arithmetic():
    assert gain(0.75, 0.5, 1.0, 0.02) == 0.5
    assert gain(0.5, 0.5, 0.51, 0.02) is None
    assert gain(0.4, 0.6, 0.2, 0.02) == pytest.approx(0.5)  # a negative gap closes the same way


def test_pairs_differing_in_shape_raise(known, tiny_model_dir):
    directory, base, prompts = known
    gemma = _load(tiny_model_dir("gemma"))  # other head_dim and key-value heads
    with pytest.raises(PairMismatchError, match="head shape"):
        run_cmap(_held(base), _held(gemma), CIRCUIT, prompts, progress=False)
    loaded_gemma = load_model(ModelSpec(str(tiny_model_dir("gemma"))))
    with pytest.raises(PairMismatchError, match="head_dim"):
        run_cmap(
            _held(load_model(ModelSpec(str(directory)))),
            _held(loaded_gemma),
            CIRCUIT,
            prompts,
            progress=False,
        )


def test_empty_groups_raise(known):
    _, base, prompts = known
    with pytest.raises(EmptyGroupError, match="structure_reader"):
        run_cmap(
            _held(base),
            _held(base),
            Circuit.of({"value_fetcher": [(2, 0)]}),
            prompts,
            groups=["structure_reader"],
        )
    with pytest.raises(EmptyGroupError, match="no heads in any group"):
        run_cmap(_held(base), _held(base), Circuit.of({}), prompts)


def test_score_of_the_base_is_the_suite_accuracy(known):
    _, base, prompts = known
    result = run_cmap(_held(base), _held(base), CIRCUIT, prompts, progress=False)
    assert result.acc_base == score_accuracy(base, prompts).accuracy
