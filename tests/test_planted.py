"""Known answers for the suite itself: hand-compiled models whose mechanism is known by construction.

The construction is checked directly (attention of every planted head, LayerNorm, accuracy row by row),
then the real pipeline must find it: every planted head per group and no distractor, faithful circuits,
random circuits near 0, DCM and CMAP as each pair's known answer says (`benchmark.zoo.pairs`).
"""

from __future__ import annotations

import json
import time

import pytest
import torch
from transformers import AutoModelForCausalLM

from benchmark.accuracy import score_accuracy
from benchmark.data import encode_examples, generate_split
from benchmark.zoo.planted import (
    LEXICAL,
    PLANTED_MODELS,
    POSITIONAL,
    build_planted,
    circuit_recovery,
    compile_model,
    config_fields,
    predicted_box,
)

NAMES = tuple(PLANTED_MODELS)


@pytest.fixture(scope="module")
def compiled():
    """name -> (model, tokenizer), eager attention so the weights are visible."""
    models = {}
    for name in NAMES:
        model, tokenizer = compile_model(name)
        model.set_attn_implementation("eager")
        models[name] = (model, tokenizer)
    return models


@pytest.fixture(scope="module")
def test_split():
    return generate_split(7, "test", 500, 0)


def test_each_planted_model_builds_in_seconds_and_loads_back_unchanged(tmp_path, compiled):
    prompts = encode_examples(compiled["lexical"][1], generate_split(7, "test", 14, 0).examples)
    for name in NAMES:
        start = time.perf_counter()
        directory = build_planted(name, tmp_path / name)
        assert time.perf_counter() - start < 10
        loaded = AutoModelForCausalLM.from_pretrained(directory).eval()
        with torch.no_grad():
            want = compiled[name][0](prompts.input_ids).logits[:, -1]
            got = loaded(prompts.input_ids).logits[:, -1]
        torch.testing.assert_close(got, want)


def test_a_planted_config_json_has_the_same_bytes_whatever_release_writes_it(tmp_path, monkeypatch):
    """config.json's SHA-256 is each result's config_sha256: a new release must not change it (5.25.0 did,
    through the `transformers_version` key that `save_pretrained` writes, and the committed rows failed
    `etbench verify`)."""
    import transformers.configuration_utils as configuration

    first = (build_planted("lexical", tmp_path / "a") / "config.json").read_bytes()
    monkeypatch.setattr(configuration, "__version__", "99.0.0")
    again = (build_planted("lexical", tmp_path / "b") / "config.json").read_bytes()
    assert again == first
    assert json.loads(first) == config_fields(len(compile_model("lexical")[1]))


def _attention(model, encoded):
    with torch.no_grad():
        return model(encoded.input_ids, output_attentions=True).attentions  # layer -> [b, head, q, k]


def _peaks(attentions, head, query_pos, want, floor):
    """Every row's attention of `head` at `query_pos` [rows] peaks at `want` [rows] with weight > floor."""
    layer, index = head
    rows = torch.arange(len(query_pos))
    pattern = attentions[layer][rows, index, query_pos]  # [rows, key]
    assert torch.equal(pattern.argmax(-1), want), f"head {head} attends elsewhere"
    assert pattern[rows, want].min() > floor, f"head {head} peaks at {pattern[rows, want].min():.3f}"


@pytest.mark.parametrize("name", ["positional-blurred", "positional-exact"])
def test_positional_heads_attend_where_the_construction_says(compiled, test_split, name):
    model, tokenizer = compiled[name]
    examples = test_split.examples[:70]
    encoded = encode_examples(tokenizer, examples)
    found = torch.tensor([predicted_box(name, e.context.labels, e.query_index) for e in examples])
    rows, last = torch.arange(len(examples)), torch.full((len(examples),), encoded.last_pos)
    attentions = _attention(model, encoded)
    sharp = 0.5 if name == "positional-blurred" else 0.99  # colliding labels share the detector a little
    heads = {group: head for group, (head, _) in POSITIONAL.items()}
    _peaks(
        attentions,
        heads["structure_reader"],
        encoded.query_label_earlier_pos,
        encoded.query_label_earlier_pos,
        0.99,
    )
    _peaks(
        attentions, heads["position_detector"], encoded.query_label_pos, encoded.label_pos[rows, found], sharp
    )
    _peaks(attentions, heads["position_transmitter"], last, encoded.query_label_pos, 0.99)
    _peaks(attentions, heads["value_fetcher"], last, encoded.object_pos[rows, found], 0.99)


def test_lexical_heads_attend_where_the_construction_says(compiled, test_split):
    model, tokenizer = compiled["lexical"]
    encoded = encode_examples(tokenizer, test_split.examples[:70])
    last = torch.full((len(encoded),), encoded.last_pos)
    attentions = _attention(model, encoded)
    for box in range(7):
        _peaks(attentions, LEXICAL["binder"][0], encoded.label_pos[:, box], encoded.object_pos[:, box], 0.99)
    _peaks(attentions, LEXICAL["label_mover"][0], last, encoded.query_label_pos, 0.99)
    _peaks(attentions, LEXICAL["lexical_fetcher"][0], last, encoded.query_label_earlier_pos, 0.99)


def test_layernorm_only_rescales_the_residual(compiled, test_split):
    """Every residual vector has mean 0 and nearly one norm, so each LayerNorm is a fixed scaling."""
    for name in NAMES:
        model, tokenizer = compiled[name]
        encoded = encode_examples(tokenizer, test_split.examples[:70])
        with torch.no_grad():
            hidden = model(encoded.input_ids, output_hidden_states=True).hidden_states  # [b, pos, d] each
        for state in hidden[:-1]:  # the last one is after ln_f
            assert state.mean(-1).abs().max() < 1e-4
            std = state.std(-1, unbiased=False)
            assert (std.max() / std.min()) < 1.01


def test_accuracies_are_in_their_bands_and_follow_the_construction_row_by_row(compiled, test_split):
    for name, (low, high) in {
        "positional-blurred": (0.5, 0.7),
        "positional-exact": (0.95, 1.0),
        "lexical": (0.95, 1.0),
    }.items():
        model, tokenizer = compiled[name]
        result = score_accuracy(model, encode_examples(tokenizer, test_split.examples), 128)
        assert result.n == 504 and low <= result.accuracy <= high, (name, result.accuracy)
        want = [
            predicted_box(name, e.context.labels, e.query_index) == e.query_index for e in test_split.examples
        ]
        assert list(result.correct) == want


def test_circuit_recovery_counts_precision_and_recall_per_group():
    planted = {"value_fetcher": ((3, 0),), "position_transmitter": ((2, 0),)}
    found = {"value_fetcher": [[3, 0], [3, 2]], "position_transmitter": [], "position_detector": [[1, 1]]}
    assert circuit_recovery(planted, found) == {
        "position_detector": (0.0, 1.0),
        "position_transmitter": (1.0, 0.0),
        "value_fetcher": (0.5, 1.0),
    }
