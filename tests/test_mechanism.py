"""The mechanism mix: its counterfactuals, and known answers on the hand-compiled models.

A positional model (`planted.POSITIONAL`, exact detector) computes the answer from the queried box's
position; the lexical one (`planted.LEXICAL`) from the query label's identity. So patching the query
label's residual after the position detector has read it gives positional answers in the first and
never in the second, and patching it before gives the label, hence lexical answers, in both.

Patches run over a cached clean prefix; every prediction must be the one the full pass (every token run)
gives, on tiny random models of two architectures and on a planted one.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark import mechanism
from benchmark.circuit import Circuit, Group
from benchmark.data import MIX_ANSWERS, build_mix_pairs, generate_split
from benchmark.mechanism import MixPrompts, encode_mix, first_layer, run_mix
from benchmark.models import ArchitectureAdapter, ModelUnderStudy
from benchmark.zoo.planted import LEXICAL, POSITIONAL, compile_model

SPLIT = generate_split(7, "test", 28, 0)


@pytest.fixture(scope="module")
def studies():
    out = {}
    for name in ("positional-exact", "lexical"):
        model, tokenizer = compile_model(name)
        out[name] = ModelUnderStudy(model.eval(), ArchitectureAdapter(model), tokenizer)
    return out


def test_the_four_answers_are_four_objects_of_the_clean_context():
    for pair in build_mix_pairs(SPLIT, seed=0):
        original, positional, lexical, reflexive = pair.answers
        clean, cf = pair.clean.context, pair.counterfactual.context
        assert len(set(pair.answers)) == 4 and set(cf.objects) == set(clean.objects)
        assert (
            set(cf.labels) == set(clean.labels) and pair.counterfactual.query_index != pair.clean.query_index
        )
        assert original == pair.clean.answer and reflexive == pair.counterfactual.answer
        assert positional == " " + clean.objects[pair.counterfactual.query_index]
        assert lexical == " " + clean.objects[clean.labels.index(pair.counterfactual.query_label)]


def test_identical_clean_and_counterfactual_prompts_give_only_original_answers(studies):
    study = studies["positional-exact"]
    prompts = encode_mix(study.tokenizer, build_mix_pairs(SPLIT))
    same = MixPrompts(prompts.clean, prompts.clean, prompts.answer_ids.clone())
    same.answer_ids[:, 3] = same.answer_ids[:, 0]  # the counterfactual's own answer is the clean one
    circuit = Circuit.of({Group(group): [head] for group, (head, _) in POSITIONAL.items()})
    mix = run_mix(study, circuit, same, progress=False)
    assert mix.n_kept == len(SPLIT.examples)
    runs = [*mix.query_label, *mix.last_token, *(r for r in mix.groups.values() if r is not None)]
    assert runs and all(run.original == 1.0 and set(run.answers) == {"o"} for run in runs)


def test_a_positional_model_answers_positionally_and_a_lexical_one_lexically(studies):
    shares = {}
    for name, study in studies.items():
        prompts = encode_mix(study.tokenizer, build_mix_pairs(SPLIT))
        mix = run_mix(study, Circuit.of({}), prompts, progress=False)
        assert mix.n_kept == len(SPLIT.examples)  # both exact: every clean and counterfactual run is right
        shares[name] = mix
    positional, lexical = shares["positional-exact"], shares["lexical"]
    assert first_layer(positional.query_label, "positional") is not None
    assert all((run.lexical or 0) == 0 for run in positional.query_label[positional.positional_layer :])
    assert all((run.positional or 0) == 0 for run in lexical.query_label)
    assert lexical.positional_layer is None and lexical.query_label[0].lexical == 1.0
    assert MIX_ANSWERS == ("original", "positional", "lexical", "reflexive")


def test_group_patches_of_the_positional_circuit_move_position_or_the_fetched_object(studies):
    study = studies["positional-exact"]
    circuit = Circuit.of({Group(group): [head] for group, (head, _) in POSITIONAL.items()})
    mix = run_mix(study, circuit, encode_mix(study.tokenizer, build_mix_pairs(SPLIT)), progress=False)
    assert mix.groups[Group.VALUE_FETCHER].reflexive == 1.0  # A copies the counterfactual's object
    for group in (Group.POSITION_TRANSMITTER, Group.POSITION_DETECTOR, Group.STRUCTURE_READER):
        assert mix.groups[group].positional == 1.0 and mix.groups[group].lexical == 0.0
    lexical = studies["lexical"]
    mover = Circuit.of({Group.POSITION_TRANSMITTER: [LEXICAL["label_mover"][0]]})
    moved = run_mix(lexical, mover, encode_mix(lexical.tokenizer, build_mix_pairs(SPLIT)), progress=False)
    assert moved.groups[Group.POSITION_TRANSMITTER].lexical == 1.0  # it carries the label, not a position


# Heads in every group of a tiny model (3 layers, 4 heads), two at some sites.
EVERY_GROUP = Circuit.of(
    {
        Group.VALUE_FETCHER: [(2, 0)],
        Group.POSITION_TRANSMITTER: [(2, 1), (1, 3)],
        Group.POSITION_DETECTOR: [(1, 0), (0, 2)],
        Group.STRUCTURE_READER: [(0, 0)],
    }
)


def _spread_query_labels(prompts: MixPrompts) -> MixPrompts:
    """The same prompts with the query label site 0, 1 or 2 tokens before the real one, by row: a batch's
    rows then patch different positions of the suffix (what a token is does not matter to the cut)."""

    def spread(encoded):
        offset = torch.arange(len(encoded)) % 3  # [rows]
        return dataclasses.replace(encoded, query_label_pos=encoded.query_label_pos - offset)

    return MixPrompts(spread(prompts.clean), spread(prompts.counterfactual), prompts.answer_ids)


def _assert_prefix_matches_full_pass(study, circuit, prompts, monkeypatch):
    """Every run's prediction per row is the same over the cached prefix as on the full pass."""
    cuts, prefill = [], ModelUnderStudy.prefill  # the prefix lengths cached

    def spy(self, input_ids):
        cuts.append(input_ids.shape[1])
        return prefill(self, input_ids)

    with monkeypatch.context() as patched:
        patched.setattr(ModelUnderStudy, "prefill", spy)
        full = mechanism._predictions(study, circuit, prompts, 8, False, full_pass=True)
        assert not cuts
        prefix = mechanism._predictions(study, circuit, prompts, 8, False, full_pass=False)
    assert cuts and max(cuts) < prompts.clean.last_pos  # a prefix was cached, cut before the query label
    n_groups = sum(bool(circuit.heads(group)) for group in Group)
    assert full.keys() == prefix.keys() and len(full) == 2 + 2 * study.adapter.shape.n_layers + n_groups
    for key, predicted in full.items():
        assert torch.equal(prefix[key], predicted), key
    patched = [key for key in full if key not in ("clean", "counterfactual")]
    assert any(not torch.equal(full[key], full["clean"]) for key in patched)  # the patches move answers


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cached_prefix_predicts_what_the_full_pass_does_on_tiny_models(tiny_model_dir, arch, monkeypatch):
    directory = tiny_model_dir(arch)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    study = ModelUnderStudy(model, ArchitectureAdapter(model), AutoTokenizer.from_pretrained(directory))
    prompts = _spread_query_labels(encode_mix(study.tokenizer, build_mix_pairs(SPLIT)))
    assert len(set(prompts.clean.query_label_pos[:8].tolist())) == 3  # rows of a batch differ
    _assert_prefix_matches_full_pass(study, EVERY_GROUP, prompts, monkeypatch)


def test_cached_prefix_gives_the_full_pass_mix_on_a_planted_model(studies, monkeypatch):
    study = studies["positional-exact"]
    circuit = Circuit.of({Group(group): [head] for group, (head, _) in POSITIONAL.items()})
    prompts = encode_mix(study.tokenizer, build_mix_pairs(SPLIT))
    _assert_prefix_matches_full_pass(study, circuit, prompts, monkeypatch)
    _assert_prefix_matches_full_pass(study, circuit, _spread_query_labels(prompts), monkeypatch)
    full = run_mix(study, circuit, prompts, batch_size=8, progress=False, _full_pass=True)
    assert run_mix(study, circuit, prompts, batch_size=8, progress=False) == full
