"""Known-answer tests of the boxes generator and counterfactual pairs (SPEC sections 2, 4 and 6)."""

from __future__ import annotations

import hashlib

import pytest

from benchmark.data import (
    OBJECTS,
    SPLITS,
    SUPPORTED_BOXES,
    Context,
    DatasetError,
    Desideratum,
    build_pairs,
    generate_split,
    read_jsonl,
    reference_prompts,
    render,
)

# The default 7-box test split (500 prompts, seed 0) is part of the suite's definition: if these change,
# every published accuracy changes meaning, so the task version must change with them.
DEFAULT_TEST_ID = "boxes-v1/n7/test/seed0/contexts72"
DEFAULT_TEST_SHA256 = "3b9183352a20caecc4f7493eb4085d656c758c23ef3401fa83787878cefe0a31"


def test_render_matches_the_spec_example():
    context = Context(
        ("apple", "computer", "document", "file", "map", "stone", "bell"), ("F", "Q", "X", "A", "I", "P", "D")
    )
    expected = (
        "The apple is in Box F, the computer is in Box Q, the document is in Box X, the file is in Box A, "
        "the map is in Box I, the stone is in Box P, the bell is in Box D. Box F contains the"
    )
    assert render(context, 0).text == expected


def test_default_test_split_is_stable():
    split = generate_split()
    assert (split.split_id, split.sha256) == (DEFAULT_TEST_ID, DEFAULT_TEST_SHA256)
    assert len(split.examples) == 504  # 500 prompts rounded up to 72 whole contexts of 7 rows


def test_same_split_twice_is_byte_identical():
    first, second = generate_split(5, "validation", 200, seed=3), generate_split(5, "validation", 200, seed=3)
    assert first.jsonl.encode() == second.jsonl.encode()
    assert first.sha256 == second.sha256 == hashlib.sha256(first.jsonl.encode()).hexdigest()
    assert first.split_id == second.split_id


def test_different_seeds_differ():
    first, second = generate_split(7, "test", 70, seed=0), generate_split(7, "test", 70, seed=1)
    assert first.sha256 != second.sha256
    assert first.split_id != second.split_id
    assert {e.context.key for e in first.examples}.isdisjoint({e.context.key for e in second.examples})


@pytest.mark.parametrize("n_boxes", [3, 7])
def test_train_validation_test_contexts_are_disjoint(n_boxes):
    keys = {}
    for name in SPLITS:
        split = generate_split(n_boxes, name, 1500, seed=0)
        assert all(e.context.split == name for e in split.examples)
        keys[name] = {e.context.key for e in split.examples}
        assert len(keys[name]) == split.n_contexts == len(split.examples) // n_boxes
    assert keys["train"].isdisjoint(keys["validation"])
    assert keys["train"].isdisjoint(keys["test"])
    assert keys["validation"].isdisjoint(keys["test"])


@pytest.mark.parametrize("n_boxes", SUPPORTED_BOXES)
def test_every_context_is_queried_at_each_box_in_a_block(n_boxes):
    split = generate_split(n_boxes, "test", 60, seed=2)
    assert len(split.examples) % n_boxes == 0
    for start in range(0, len(split.examples), n_boxes):
        block = split.examples[start : start + n_boxes]
        assert {e.context for e in block} == {block[0].context}
        assert [e.query_index for e in block] == list(range(n_boxes))


@pytest.mark.parametrize("n_boxes", SUPPORTED_BOXES)
def test_rows_follow_the_template(n_boxes):
    for example in generate_split(n_boxes, "train", 30, seed=5).examples:
        context, prompt = example.context, example.prompt
        assert len(set(context.objects)) == len(set(context.labels)) == n_boxes
        assert all(o in OBJECTS for o in context.objects)
        assert all(len(label) == 1 and label.isupper() for label in context.labels)
        assert prompt.startswith(f"The {context.objects[0]} is in Box {context.labels[0]}, the ")
        assert prompt.count("The ") == 1
        assert prompt.endswith(f". Box {example.query_label} contains the")
        assert example.answer == " " + context.objects[example.query_index]


def test_split_id_names_everything_that_changes_the_rows():
    assert generate_split(3, "train", 9, seed=4).split_id == "boxes-v1/n3/train/seed4/contexts3"
    few_words = generate_split(3, "train", 9, seed=4, objects=OBJECTS[:20])
    assert few_words.split_id.startswith("boxes-v1/n3/train/seed4/contexts3/words-")


def test_jsonl_round_trips_and_records_carry_ids():
    split = generate_split(5, "test", 20, seed=1)
    assert list(read_jsonl(split.jsonl)) == list(split.examples)
    records = split.records()
    assert records[3]["id"] == f"{split.split_id}#3"
    assert records[3]["prompt"] == split.examples[3].prompt


@pytest.mark.parametrize("n_boxes", [0, 2, 4, 8])
def test_unknown_number_of_boxes_is_a_clear_error(n_boxes):
    with pytest.raises(DatasetError, match=r"unknown number of boxes.*\[3, 5, 7\]"):
        generate_split(n_boxes)


def test_unknown_split_and_too_few_words_are_clear_errors():
    with pytest.raises(DatasetError, match="unknown split"):
        generate_split(7, "dev")
    with pytest.raises(DatasetError, match="too few words"):
        generate_split(7, objects=OBJECTS[:6])


@pytest.fixture(scope="module")
def pair_split():
    return generate_split(7, "validation", 140, seed=0)


def test_path_patching_counterfactual_has_other_words_and_position(pair_split):
    for pair in build_pairs(pair_split, Desideratum.PATH_PATCHING):
        clean, cf = pair.clean.context, pair.counterfactual.context
        assert set(clean.objects).isdisjoint(cf.objects)
        assert set(clean.labels).isdisjoint(cf.labels)
        assert pair.counterfactual.query_index != pair.clean.query_index
        assert pair.target == pair.clean.answer
        assert cf.split == clean.split == "validation"


def test_object_desideratum_targets_an_object_absent_from_the_base(pair_split):
    for pair in build_pairs(pair_split, "object"):
        cf_object = pair.counterfactual.context.objects[pair.counterfactual.query_index]
        assert cf_object not in pair.clean.context.objects
        assert pair.target == " " + cf_object == pair.counterfactual.answer


def test_position_desideratum_targets_the_base_object_at_the_cf_position(pair_split):
    pairs = build_pairs(pair_split, "position")
    for pair in pairs:
        j = pair.counterfactual.query_index
        assert j != pair.clean.query_index
        assert pair.target == " " + pair.clean.context.objects[j]
        assert pair.target != pair.clean.answer
    # The reference bug left j == i for about 1/7 of the pairs; every position must occur as a target.
    assert {p.counterfactual.query_index for p in pairs} == set(range(7))


def test_label_desideratum_targets_the_base_object_under_the_cf_label(pair_split):
    for pair in build_pairs(pair_split, "label"):
        base = pair.clean.context
        k = base.labels.index(pair.counterfactual.query_label)
        assert k != pair.clean.query_index
        assert pair.target == " " + base.objects[k]
        assert pair.target != pair.clean.answer
        assert pair.target != " " + base.objects[pair.counterfactual.query_index]
        assert set(base.objects).isdisjoint(pair.counterfactual.context.objects)


@pytest.mark.parametrize("desideratum", list(Desideratum))
def test_pairs_are_seeded(pair_split, desideratum):
    same = build_pairs(pair_split, desideratum, seed=0) == build_pairs(pair_split, desideratum, seed=0)
    other = build_pairs(pair_split, desideratum, seed=1)
    assert same
    assert other != build_pairs(pair_split, desideratum, seed=0)
    assert [p.clean for p in other] == list(pair_split.examples)


def test_the_reference_set_has_one_prompt_per_distinct_context_with_a_letter_naming_no_box():
    split = generate_split(7, "train", 70)
    prompts = reference_prompts(split)
    contexts = list(dict.fromkeys(example.context for example in split.examples))
    assert len(prompts) == len(contexts) == 10
    for prompt, context in zip(prompts, contexts, strict=True):
        body, query = prompt.rsplit(". ", 1)
        assert body == render(context, 0).text.rsplit(". ", 1)[0]  # each context once, in order
        letter = query.split()[1]
        assert letter not in context.labels
