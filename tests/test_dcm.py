"""DCM on a tiny model built so that exactly one head of its last layer carries the answer."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.accuracy import last_token_logits
from benchmark.circuit import Circuit, Group, Site, head_iou
from benchmark.data import Desideratum, TokenizerError, build_pairs, encode_pairs, generate_split
from benchmark.dcm import (
    DCMConfig,
    DCMData,
    EmptyGroupError,
    build_dcm_data,
    dcm_data,
    dcm_overlap,
    masking,
    patch_result,
    run_dcm,
    train_mask,
    train_masks,
    transfer_accuracies,
)
from benchmark.dcm import prefix as prefix_module
from benchmark.dcm.masking import training_step
from benchmark.dcm.pairs import used_splits
from benchmark.dcm.patching import counterfactual_cache
from benchmark.head_cache import patch_from_cache, site_mask, sites_positions
from benchmark.models import ArchitectureAdapter, ModelUnderStudy
from benchmark.testing import TINY_ARCHITECTURES, build_tiny_model

CARRIER = (2, 2)  # the one head that carries the answer
GROUP = Group.VALUE_FETCHER
CIRCUIT = Circuit.of({GROUP.value: [(2, h) for h in range(4)]})
CONFIG = DCMConfig(n_train=96, n_validation=48, n_test=48, batch_size=16, epochs=2, n_boxes=3)


def _one_head_model(directory):
    """Tiny Llama whose last-position output is (almost) a function of head CARRIER's output alone.

    In the last layer, the other heads' output-projection columns and the MLP are zero, so patching those
    heads cannot change anything; CARRIER's columns are scaled up 1000x so it outweighs the residual stream.
    """
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    layer, head = CARRIER
    d = ArchitectureAdapter(model).shape.head_dim
    with torch.no_grad():
        weight = model.model.layers[layer].self_attn.o_proj.weight  # [hidden, head * d]
        carrier = weight[:, head * d : (head + 1) * d] * 1000
        weight.zero_()
        weight[:, head * d : (head + 1) * d] = carrier
        model.model.layers[layer].mlp.down_proj.weight.zero_()
    return model


def _pairs(model, tokenizer, split: str, n: int, desideratum=Desideratum.OBJECT):
    """Pairs whose target is what the model itself answers on the counterfactual prompt."""
    pairs = encode_pairs(tokenizer, build_pairs(generate_split(3, split, n), desideratum)[:n])
    return dataclasses.replace(pairs, target_ids=last_token_logits(model, pairs.counterfactual).argmax(-1))


def _data(model, tokenizer, desideratum=Desideratum.OBJECT) -> DCMData:
    """96 / 48 / 48 pairs of `desideratum`: every desideratum's clean prompts are the same rows."""
    sizes = (("train", 96), ("validation", 48), ("test", 48))
    return DCMData(*(_pairs(model, tokenizer, s, n, desideratum) for s, n in sizes))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(model, adapter, tokenizer, data) of the one-head model."""
    directory = build_tiny_model("llama", tmp_path_factory.mktemp("dcm-llama"))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = _one_head_model(directory)
    return model, ArchitectureAdapter(model), tokenizer, _data(model, tokenizer)


@pytest.fixture(scope="module")
def result(setup):
    model, adapter, _, data = setup
    return train_mask(model, adapter, CIRCUIT, GROUP, Desideratum.OBJECT, data, CONFIG)


def test_dcm_finds_the_one_head_that_carries_the_answer(setup, result):
    model, adapter, _, data = setup
    assert result.heads == (CARRIER,)
    assert result.group_heads == CIRCUIT.heads(GROUP)
    masks = dict(zip(result.group_heads, result.mask, strict=True))
    assert masks.pop(CARRIER) < 0.5
    assert set(masks.values()) == {1.0}  # inert heads get no task gradient; the L1 term holds them at 1
    unpatched = patch_result(model, adapter, (), GROUP, data.test).accuracy
    assert result.test_accuracy >= 0.9 > 0.2 >= unpatched
    assert result.test_accuracy == patch_result(model, adapter, [CARRIER], GROUP, data.test).accuracy
    assert result.validation_accuracy == max(c.validation_accuracy for c in result.history)
    assert (result.n_train, result.n_validation, result.n_test, result.seed) == (96, 48, 48, 0)


def test_same_seed_same_result_and_other_seed_is_recorded(setup, result):
    model, adapter, _, data = setup
    again = train_mask(model, adapter, CIRCUIT, GROUP, Desideratum.OBJECT, data, CONFIG)
    assert again == result
    other = train_mask(
        model, adapter, CIRCUIT, GROUP, Desideratum.OBJECT, data, dataclasses.replace(CONFIG, seed=7)
    )
    assert other.seed == 7
    assert other.heads == (CARRIER,)


def test_weights_stay_frozen_and_their_flags_are_restored(setup, result):
    model, adapter, _, data = setup
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():  # a caller's no_grad must not stop the mask from training
        again = train_mask(model, adapter, CIRCUIT, GROUP, Desideratum.OBJECT, data, CONFIG)
    assert again == result
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]), name
        assert parameter.requires_grad and parameter.grad is None, name


def test_training_mix_at_zero_equals_the_evaluation_patch(setup):
    model, adapter, _, data = setup
    pairs, heads = data.test.select(slice(0, 16)), CIRCUIT.heads(GROUP)
    cache = counterfactual_cache(model, adapter, heads, GROUP, pairs, 16)
    mask = torch.tensor([0.0 if h == CARRIER else 1.0 for h in heads], requires_grad=True)
    loss = training_step(model, adapter, heads, GROUP, pairs, cache.values, mask, CONFIG)
    loss.backward()
    only = cache.subset(site_mask([[CARRIER]], adapter.shape))
    run = patch_from_cache(adapter, only, sites_positions([Site.LAST], pairs.clean), pairs.clean.input_ids)
    logits = last_token_logits(model, pairs.clean, intervention=run)
    expected = -logits.gather(1, pairs.target_ids[:, None]).mean() + CONFIG.sparsity * 1.0
    torch.testing.assert_close(loss.detach(), expected, atol=1e-3, rtol=1e-5)
    assert mask.grad is not None and mask.grad.abs().sum() > 0


# Groups over the one-head model's layers: the last token (one site), the query label, and the query label's
# earlier occurrence (a site that differs between rows, so the prefix ends at the earliest one).
PREFIX_CASES = {
    GROUP: CIRCUIT,
    Group.POSITION_DETECTOR: Circuit.of({"position_detector": [(1, 0), (1, 3), (2, 2)]}),
    Group.STRUCTURE_READER: Circuit.of({"structure_reader": [(0, 1), (1, 0), (1, 2)]}),
}


def _assert_same_training(full, prefix):
    assert prefix.heads == full.heads and prefix.group_heads == full.group_heads
    assert max(abs(a - b) for a, b in zip(full.mask, prefix.mask, strict=True)) <= 1e-5
    assert prefix.validation_accuracy == full.validation_accuracy
    assert prefix.test_accuracy == full.test_accuracy and prefix.test_correct == full.test_correct
    assert [(c.step, c.heads, c.validation_accuracy) for c in prefix.history] == [
        (c.step, c.heads, c.validation_accuracy) for c in full.history
    ]
    assert (prefix.best_step, prefix.searched) == (full.best_step, full.searched)


@pytest.mark.parametrize("group", list(PREFIX_CASES), ids=lambda g: g.value)
def test_cached_prefix_trains_the_same_masks_as_the_full_pass(setup, group, monkeypatch):
    model, adapter, _, data = setup
    monkeypatch.setattr(masking, "PREFIX_GROUPS", frozenset(Group))  # structure readers too: exact as well
    circuit, config = PREFIX_CASES[group], dataclasses.replace(CONFIG, eval_every=3)
    sites = data.train.clean.query_label_earlier_pos
    assert group is not Group.STRUCTURE_READER or len(set(sites.tolist())) > 1  # rows' sites differ
    full = train_mask(model, adapter, circuit, group, Desideratum.OBJECT, data, config, _full_pass=True)
    prefix = train_mask(model, adapter, circuit, group, Desideratum.OBJECT, data, config)
    _assert_same_training(full, prefix)
    monkeypatch.setattr(prefix_module, "STORE_BYTES", 0)  # too big to keep: each call recomputes its prefix
    _assert_same_training(full, train_mask(model, adapter, circuit, group, Desideratum.OBJECT, data, config))


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_cached_prefix_matches_the_full_pass_on_every_tiny_architecture(tiny_model_dir, arch, monkeypatch):
    """Every group over one prefix from the split's earliest site; then structure readers as a run does
    them: over one prefix per site (`RunsBySite`), with both desiderata's masks trained together (fanned out
    from the lowest reader's layer, above layer 0), each as the full pass trains it alone."""
    default = masking.PREFIX_GROUPS
    monkeypatch.setattr(masking, "PREFIX_GROUPS", frozenset(Group))
    directory = tiny_model_dir(arch)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    config = DCMConfig(n_train=24, n_validation=12, n_test=12, batch_size=8, epochs=1, n_boxes=3)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    data = {d: dcm_data(tokenizer, d, config) for d in (Desideratum.POSITION, Desideratum.OBJECT)}
    adapter = ArchitectureAdapter(model)
    heads = [(layer, head) for layer in range(adapter.shape.n_layers) for head in (0, 1)]
    for group in (Group.VALUE_FETCHER, Group.STRUCTURE_READER):
        circuit = Circuit.of({group.value: heads})
        run = (model, adapter, circuit, group, Desideratum.POSITION, data[Desideratum.POSITION], config)
        _assert_same_training(train_mask(*run, _full_pass=True), train_mask(*run))
    monkeypatch.setattr(masking, "PREFIX_GROUPS", default)
    assert Group.STRUCTURE_READER not in default
    upper = Circuit.of({Group.STRUCTURE_READER.value: [h for h in heads if h[0] >= 1]})
    together = train_masks(model, adapter, upper, Group.STRUCTURE_READER, data, config)
    for desideratum, pairs in data.items():
        alone = train_mask(
            model, adapter, upper, Group.STRUCTURE_READER, desideratum, pairs, config, _full_pass=True
        )
        _assert_same_training(alone, together[desideratum])


def test_cached_patch_refuses_rows_out_of_order(setup):
    model, adapter, _, data = setup
    pairs = data.test.select(slice(0, 8))
    cache = counterfactual_cache(model, adapter, [CARRIER], GROUP, pairs, 8)
    run = patch_from_cache(adapter, cache, sites_positions([Site.LAST], pairs.clean), pairs.clean.input_ids)
    with pytest.raises(RuntimeError, match="row order"):
        run(pairs.clean.select(slice(4, 8)))


def test_run_over_a_circuit_skips_empty_groups_and_overlaps(setup):
    model, adapter, _, data = setup
    run = run_dcm(
        ModelUnderStudy(model, adapter),
        CIRCUIT,
        {Desideratum.OBJECT: data},
        dataclasses.replace(CONFIG, epochs=1),
    )
    assert run.pairs() == ((GROUP, Desideratum.OBJECT),)
    assert set(run.skipped_groups) == {g for g in Group if g is not GROUP}
    transfer = transfer_accuracies(
        ModelUnderStudy(model, adapter), run, {Desideratum.OBJECT: data}, progress=False
    )
    (overlap,) = dcm_overlap(run, run, transfer)
    assert overlap.iou == 1.0
    assert (
        overlap.base_heads_in_finetuned
        == overlap.base_heads_in_base
        == run.get(GROUP, "object").test_accuracy
    )


def test_head_iou():
    assert head_iou([(0, 1), (1, 2)], [(1, 2), (2, 0)]) == pytest.approx(1 / 3)
    assert head_iou([], []) == 1.0
    assert head_iou([], [(0, 0)]) == 0.0


def test_errors_name_the_empty_group_and_the_sizes_needed(setup):
    model, adapter, _, data = setup
    with pytest.raises(EmptyGroupError, match="position_detector"):
        train_mask(model, adapter, CIRCUIT, Group.POSITION_DETECTOR, Desideratum.OBJECT, data, CONFIG)
    with pytest.raises(EmptyGroupError, match="structure_reader"):
        run_dcm(
            ModelUnderStudy(model, adapter),
            CIRCUIT,
            {Desideratum.OBJECT: data},
            CONFIG,
            groups=["structure_reader"],
        )
    too_many = dataclasses.replace(CONFIG, n_train=500)
    with pytest.raises(ValueError, match=r"too few prompts.*'train': 500.*'train': 96"):
        train_mask(model, adapter, CIRCUIT, GROUP, Desideratum.OBJECT, data, too_many)
    with pytest.raises(ValueError, match="at least 1"):
        DCMConfig(batch_size=0)
    other = {"train": prefix_module.PrefixStore(ModelUnderStudy(model, adapter), CONFIG.eval_batch_size + 1)}
    with pytest.raises(ValueError, match="shared PrefixStore"):
        train_mask(model, adapter, CIRCUIT, GROUP, Desideratum.OBJECT, data, CONFIG, prefixes=other)


def test_dcm_data_builds_each_split_at_its_size(setup):
    _, _, tokenizer, _ = setup
    config = DCMConfig(n_train=10, n_validation=5, n_test=4, n_boxes=3)
    data = dcm_data(tokenizer, Desideratum.LABEL, config)
    assert (len(data.train), len(data.validation), len(data.test)) == (10, 5, 4)
    assert not torch.equal(data.test.target_ids, data.test.clean.answer_ids)


class _CountedRuns(prefix_module.PrefixRuns):
    """PrefixRuns that count their constructions (each one prefills its whole split)."""

    built = 0

    def __init__(self, *args, **kwargs):
        type(self).built += 1
        super().__init__(*args, **kwargs)


def test_a_run_over_groups_that_shares_counterfactual_runs_gives_each_group_its_own_result(
    setup, monkeypatch
):
    """run_dcm captures every group's counterfactual heads in one pass per split, prefills each split's
    clean prompts once per site for all groups and desiderata, and trains a group's masks of both
    desiderata together; each mask must be what training it alone (its own counterfactual passes and
    prefixes) gives: the same heads, checkpoints and decisions, masks up to float rounding. Four groups with
    overlapping heads: two read at the last token, one at the query label and one at the query label's
    earlier occurrence (one prefix per site), over two desiderata whose counterfactuals differ and whose
    clean prompts are equal (separate tensors)."""
    model, adapter, tokenizer, data = setup
    circuit = Circuit.of(
        {
            GROUP.value: [(2, h) for h in range(4)],
            Group.POSITION_TRANSMITTER.value: [(1, 0), (2, 2)],
            Group.POSITION_DETECTOR.value: [(0, 1), (1, 3)],
            Group.STRUCTURE_READER.value: [(0, 2), (1, 0)],
        }
    )
    config = dataclasses.replace(CONFIG, epochs=1)
    both = {Desideratum.OBJECT: data, Desideratum.POSITION: _data(model, tokenizer, Desideratum.POSITION)}
    assert torch.equal(both["object"].train.clean.input_ids, both["position"].train.clean.input_ids)
    assert both["object"].train.clean.input_ids is not both["position"].train.clean.input_ids
    assert not torch.equal(both["object"].train.target_ids, both["position"].train.target_ids)
    monkeypatch.setattr(_CountedRuns, "built", 0)
    monkeypatch.setattr(prefix_module, "PrefixRuns", _CountedRuns)
    run = run_dcm(ModelUnderStudy(model, adapter), circuit, both, config, progress=False)
    used = used_splits(data, config)
    sites = sum(len(used[name].clean.query_label_earlier_pos.unique()) for name in used)
    assert sites > 3  # the structure readers' rows are trained and scored over one prefix per site
    # (last token, query label) x (train, validation, test), and the structure readers' per-site prefixes
    assert _CountedRuns.built == 2 * 3 + sites
    prefixed = (GROUP, Group.POSITION_TRANSMITTER, Group.POSITION_DETECTOR)
    alone = [
        train_mask(model, adapter, circuit, group, desideratum, both[desideratum], config)
        for group in (*prefixed, Group.STRUCTURE_READER)
        for desideratum in both
    ]
    built = 2 * 3 + sites + (len(prefixed) * 3 + sites) * len(both)  # alone: each mask its own
    assert _CountedRuns.built == built
    assert [(r.group, r.desideratum) for r in run.results] == [(r.group, r.desideratum) for r in alone]
    for together, by_itself in zip(run.results, alone, strict=True):  # trained together: float rounding
        _assert_same_training(by_itself, together)
    assert any(result.heads for result in alone)  # not eight empty selections
    monkeypatch.setattr(prefix_module, "STORE_BYTES", 0)  # shared runs that each recompute their prefix
    assert run_dcm(ModelUnderStudy(model, adapter), circuit, both, config, progress=False) == run
    transfer = transfer_accuracies(ModelUnderStudy(model, adapter), run, both, progress=False)
    for r in alone:  # shared counterfactual runs here too
        test = both[r.desideratum].test.select(slice(0, r.n_test))
        expected = patch_result(model, adapter, r.heads, r.group, test, config.eval_batch_size).accuracy
        assert transfer[r.group, r.desideratum] == expected


def test_dcm_data_of_several_desiderata_encodes_their_shared_clean_prompts_once(setup):
    """build_dcm_data encodes each split's clean prompts once for every desideratum: the same data, tensor
    for tensor, as encoding each desideratum's pairs alone."""
    _, _, tokenizer, _ = setup
    config = DCMConfig(n_train=10, n_validation=5, n_test=4, n_boxes=3)
    shared = build_dcm_data(tokenizer, config)
    for desideratum, data in shared.items():
        alone = dcm_data(tokenizer, desideratum, config)
        for name in ("train", "validation", "test"):
            got, want = getattr(data, name), getattr(alone, name)
            assert torch.equal(got.target_ids, want.target_ids)
            for side in ("clean", "counterfactual"):
                for field in dataclasses.fields(want.clean):
                    a, b = getattr(getattr(got, side), field.name), getattr(getattr(want, side), field.name)
                    assert torch.equal(a, b), (desideratum, name, side, field.name)
    pairs = build_pairs(generate_split(3, "test", 4), Desideratum.OBJECT)[:4]
    with pytest.raises(TokenizerError, match="3 clean prompts"):
        encode_pairs(tokenizer, pairs, shared[Desideratum.OBJECT].test.clean.select(slice(0, 3)))
