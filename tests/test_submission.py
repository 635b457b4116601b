"""The result format: canonical JSON round trip, the generated schema, and every check of `validate`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmark import records, settings
from benchmark.circuit import GROUPS
from benchmark.cli import main
from benchmark.data import DCM_DESIDERATA, Vocabulary
from benchmark.models import identity
from benchmark.submission import (
    SCHEMA_PATH,
    Result,
    SubmissionError,
    canonical_name,
    from_json,
    kinds,
    schema_text,
    submit,
    to_json,
    validate,
)
from benchmark.submission import schema as schema_module
from benchmark.submission.codec import FormatError, to_plain
from benchmark.submission.integrity import reseal
from benchmark.submission.synthetic import SyntheticPair, synthetic_result


@pytest.fixture(scope="module")
def result() -> Result:
    return synthetic_result()


@pytest.fixture
def plain(result) -> dict:
    """A fresh, mutable copy of the valid result as parsed JSON."""
    return json.loads(to_json(result))


def messages(problems) -> str:
    return "\n".join(str(problem) for problem in problems)


def test_json_round_trip_is_exact_and_canonical(result):
    text = to_json(result)
    assert from_json(text) == result
    assert to_json(from_json(text)) == text
    assert text.endswith("}\n") and text.startswith('{\n  "behaviour"')  # sorted keys, 2-space indent


def test_ints_where_floats_are_expected_read_back_as_floats(plain):
    plain["behaviour"]["base"]["accuracy"] = 1
    assert from_json(json.dumps(plain)).behaviour.base.accuracy == 1.0


def test_nan_is_refused_rather_than_written(result):
    broken = dataclasses.replace(result, behaviour=dataclasses.replace(result.behaviour, source="lm-eval"))
    cmap = dataclasses.replace(result.cmap, acc_base=float("nan"))
    with pytest.raises(FormatError, match="null"):
        to_json(dataclasses.replace(broken, cmap=cmap))


def test_the_committed_schema_is_the_generated_one():
    assert SCHEMA_PATH.read_text() == schema_text(), (
        f"{SCHEMA_PATH.name} is stale: regenerate it with "
        '`python -c "from benchmark.submission import write_schema; write_schema()"`'
    )


def test_the_schema_closes_every_object_and_knows_every_result_class():
    schema = json.loads(SCHEMA_PATH.read_text())
    classes = [
        value
        for module in (records, settings, identity)
        for value in vars(module).values()
        if dataclasses.is_dataclass(value) and value.__module__ == module.__name__
    ] + [Vocabulary]
    assert len(classes) > 30 and {cls.__name__ for cls in classes} <= set(schema["$defs"])
    for cls in classes:
        definition = schema["$defs"][cls.__name__]
        assert definition["additionalProperties"] is False
        assert definition["required"] == [field.name for field in dataclasses.fields(cls)]


def test_result_blocks_are_the_methods_records_and_configs():
    """One definition per concept: the result file holds the methods' own configs and records."""
    import typing

    from benchmark.data import Vocabulary
    from benchmark.faithfulness import FaithfulnessCurve
    from benchmark.models import ModelRecord
    from benchmark.records import Models, Result
    from benchmark.settings import ScoreSettings

    hints = typing.get_type_hints(Result)
    assert hints["settings"] is ScoreSettings and hints["vocabulary"] is Vocabulary
    assert typing.get_type_hints(Models)["base"] is ModelRecord
    curve_points = typing.get_type_hints(FaithfulnessCurve)["points"]
    assert typing.get_args(curve_points)[0] is typing.get_type_hints(records.Curve)["points"].__args__[0]
    assert tuple(group.value for group in GROUPS) == kinds.GROUP_NAMES
    assert tuple(d.value for d in DCM_DESIDERATA) == kinds.DESIDERATUM_NAMES


def test_validate_accepts_the_synthetic_result_as_file_and_dict(result, plain, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(to_json(result))
    assert validate(path) == []
    assert validate(plain) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ('{"suite": {"name": "entity-tracking-bench", ', "it is truncated"),
        ('{"suite": 1,}', "not valid JSON (Expecting property name"),
        ("[1, 2]", "$.suite: missing"),
    ],
)
def test_unparsable_files_get_one_clear_problem(tmp_path, text, expected):
    path = tmp_path / "result.json"
    path.write_text(text)
    problems = validate(path)
    assert len(problems) == 1 and expected in str(problems[0])


def test_a_truncated_result_file_is_called_truncated(result, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(to_json(result)[:5000])
    assert "truncated" in messages(validate(path))


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path):
    assert "cannot read" in messages(validate(tmp_path / "absent.json"))


def test_schema_errors_carry_the_json_path(plain):
    plain["faithfulness"]["base"]["random"]["mean"] = -0.5
    plain["behaviour"]["finetuned"]["accuracy"] = 1.5
    del plain["hardware"]["platform"]
    found = messages(validate(plain))
    assert "$.faithfulness.base.random.mean: -0.5 is less than the minimum of 0.0" in found
    assert "$.behaviour.finetuned.accuracy: 1.5 is greater than the maximum of 1.0" in found
    assert "$.hardware: 'platform' is a required property" in found


def test_nan_in_a_file_is_a_problem(result, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(to_json(result).replace(f'"acc_base": {result.cmap.acc_base}', '"acc_base": NaN'))
    (problem,) = validate(path)
    assert problem.path == "$.cmap.acc_base" and "not a JSON number" in problem.message


def test_faithfulness_may_exceed_one(plain):
    cross = plain["faithfulness"]["base_circuit_in_finetuned"]
    cross.update(circuit_accuracy=1.0, full_accuracy=0.6, faithfulness=1.0 / 0.6)
    assert validate(reseal(plain)) == []


def test_a_null_stage_is_valid_and_a_missing_one_is_not(plain):
    for stage in ("circuits", "faithfulness", "dcm", "cmap"):
        plain[stage] = None
    assert validate(reseal(plain)) == []
    del plain["cmap"]
    assert "'cmap' is a required property" in messages(validate(reseal(plain)))


def test_wrong_dataset_hash_names_the_split_and_the_right_hash(plain):
    plain["datasets"][0]["sha256"] = "0" * 64
    (problem,) = validate(reseal(plain))
    assert problem.path == "$.datasets[0].sha256"
    assert "boxes-v1/n3/test/seed0/contexts10" in problem.message
    assert "as this suite generates it" in problem.message


def test_wrong_row_count_and_unknown_split_ids_are_problems(plain):
    plain["datasets"][1]["n_rows"] += 3
    plain["datasets"][2]["split_id"] = "boxes-v2/n3/train/seed0/contexts4"
    found = messages(validate(plain))
    assert "$.datasets[1].n_rows: is 15, the split has 12 rows" in found
    assert "$.datasets[2].split_id: 'boxes-v2/n3/train/seed0/contexts4' is not a boxes-v1 split id" in found


def _result_on_reduced_words(result: Result) -> Result:
    """The result as if the tokenizer had dropped some words: splits carry a words digest."""
    from benchmark.data import LABELS, OBJECTS, generate_split

    objects, labels = OBJECTS[5:], LABELS[2:]
    datasets = []
    for dataset in result.datasets:
        name, seed = dataset.split_id.split("/")[2], int(dataset.split_id.split("/")[3][4:])
        split = generate_split(3, name, dataset.n_rows, seed, objects, labels)
        datasets.append(dataclasses.replace(dataset, split_id=split.split_id, sha256=split.sha256))
    vocabulary = Vocabulary(objects, labels, OBJECTS[:5], LABELS[:2])
    return dataclasses.replace(result, datasets=tuple(datasets), vocabulary=vocabulary)


def test_split_ids_with_a_word_list_are_regenerated_from_the_recorded_vocabulary(result):
    reduced = _result_on_reduced_words(result)
    assert "/words-" in reduced.datasets[0].split_id
    assert validate(reseal(json.loads(to_json(reduced)))) == []
    tampered = json.loads(to_json(reduced))
    tampered["vocabulary"]["objects"] = tampered["vocabulary"]["objects"][1:]
    assert "is not the recorded vocabulary" in messages(validate(tampered))


def test_head_index_out_of_range_everywhere_heads_appear(plain):
    selected = plain["circuits"]["finetuned"]["selected"]["position_detector"]
    selected.append([4, 0])
    plain["dcm"]["base"][0]["group_heads"].append([0, 4])
    plain["dcm"]["base"][0]["mask"].append(1.0)
    plain["cmap"]["circuit"]["heads"].append([7, 7])
    found = messages(validate(plain))
    where = f"$.circuits.finetuned.selected.position_detector[{len(selected) - 1}]"
    assert f"{where}: head [4, 0] is outside the model's shape (4 layers x 4 heads)" in found
    assert "$.dcm.base[0].group_heads[" in found and "head [0, 4] is outside" in found
    assert "$.cmap.circuit.heads[" in found and "head [7, 7] is outside" in found


def test_effect_arrays_must_have_the_models_shape(plain):
    plain["circuits"]["base"]["stages"][1]["stderr"][2].pop()
    (problem,) = validate(reseal(plain))
    assert problem.path == "$.circuits.base.stages[1].stderr" and "the model has 4 x 4" in problem.message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("metric_version", "v9", "$.suite.metric_version: unknown metric version 'v9'; known: ['v1', 'v2']"),
        (
            "schema_version",
            "9",
            "$.suite.schema_version: unknown schema version '9'; known: ['1', '2', '3', '4']",
        ),
        ("name", "other-bench", "$.suite.name: is 'other-bench', expected 'entity-tracking-bench'"),
    ],
)
def test_unknown_versions_are_named(plain, key, value, expected):
    plain["suite"][key] = value
    assert expected in messages(validate(plain))


def test_html_in_a_model_name_is_refused(plain):
    plain["models"]["finetuned"]["id"] = "org/<script>alert(1)</script>"
    (problem,) = validate(reseal(plain))
    assert problem.path == "$.models.finetuned.id" and "markup" in problem.message


def test_internal_inconsistencies_are_problems(plain):
    plain["behaviour"]["base"]["n_per_position"][0] += 1
    plain["cmap"]["circuit"]["gain"] = None
    plain["timing"]["finished_at"] = "2025-01-31T11:00:00+00:00"
    selected = plain["circuits"]["base"]["selected"]["value_fetcher"]
    unselected = next([la, h] for la in range(4) for h in range(4) if [la, h] not in selected)
    plain["circuits"]["base"]["groups"]["value_fetcher"].append(unselected)
    plain["models"]["finetuned"]["head_shape"]["n_kv_heads"] = 3
    plain["circuits"]["kv_group_size"] = 1
    found = messages(validate(plain))
    assert "$.models.finetuned.head_shape: differs from the base model's" in found
    assert "$.models.finetuned.head_shape.n_kv_heads: 3 key-value heads do not divide 4 heads" in found
    assert "$.circuits.kv_group_size: is 1, the model's is 2" in found
    assert "$.behaviour.base.n_per_position: adds up to 31, not n=30" in found
    assert "$.cmap.circuit.gain: gain_defined says the gain is defined, but it is None" in found
    assert "$.timing.finished_at: is before started_at" in found
    assert f"$.circuits.base.groups.value_fetcher: heads [{tuple(unselected)}] were never selected" in found


def test_canonical_names_use_safe_characters_only(result):
    odd = synthetic_result(SyntheticPair(base_id="Org/Llama 7B (v2)", finetuned_id="../../etc/passwd"))
    name = canonical_name(odd)
    assert name.startswith("llama-7b-v2__passwd__") and name.endswith(".json")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-")
    assert canonical_name(result) == canonical_name(from_json(to_json(result)))


def test_submit_writes_canonically_once_and_refuses_invalid_files(result, plain, tmp_path):
    source = tmp_path / "mine.json"
    source.write_text(json.dumps(to_plain(result)))  # not canonical: one line
    first = submit(source, tmp_path / "submissions")
    assert not first.already_present and first.path.read_text() == to_json(result)
    assert submit(source, tmp_path / "submissions").already_present
    plain["datasets"][0]["sha256"] = "f" * 64
    source.write_text(json.dumps(plain))
    with pytest.raises(SubmissionError, match=r"\$\.datasets\[0\]\.sha256"):
        submit(source, tmp_path / "submissions")
    assert len(list((tmp_path / "submissions").iterdir())) == 1


def test_cli_validate_prints_every_problem_and_sets_the_exit_code(result, plain, tmp_path, capsys):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(to_json(result))
    plain["suite"]["metric_version"] = "v0"
    plain["datasets"][0]["sha256"] = "0" * 64
    bad.write_text(json.dumps(reseal(plain)))
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok\n"
    assert main(["validate", str(good), str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{good}: ok"
    assert [line.split(": ")[1] for line in lines[1:]] == ["$.suite.metric_version", "$.datasets[0].sha256"]


def test_schema_file_lives_in_the_package():
    assert Path(schema_module.__file__).with_name("schema-v4.json") == SCHEMA_PATH


def test_compare_ignores_where_and_when_but_not_the_numbers(plain, tmp_path):
    from benchmark.submission.compare import committed_matches, differences

    adapter = {"path": "zoo/lora", "weights_sha256": "a" * 64, "config_sha256": "b" * 64, "peft_type": "LORA"}
    plain["models"]["finetuned"]["adapters"] = [adapter]
    rerun = json.loads(json.dumps(plain))
    rerun["timing"]["total_seconds"] += 100.0
    rerun["hardware"]["device_name"] = "another machine"
    for model in rerun["models"].values():
        for adapter in model["adapters"]:
            adapter["path"] = "/elsewhere/" + adapter["path"]
    assert differences(plain, rerun) == []
    rerun["faithfulness"]["base"]["own"]["faithfulness"] += 0.01
    assert differences(plain, rerun) == [
        f"$.faithfulness.base.own.faithfulness ({plain['faithfulness']['base']['own']['faithfulness']} vs "
        f"{rerun['faithfulness']['base']['own']['faithfulness']})"
    ]
    moved = json.loads(json.dumps(rerun))
    moved["models"]["finetuned"]["adapters"][0]["weights_sha256"] = "c" * 64
    assert any("weights_sha256" in line for line in differences(plain, moved))
    (tmp_path / "same.json").write_text(json.dumps(plain))
    other_seed = json.loads(json.dumps(plain))
    other_seed["settings"]["behaviour"]["seed"] = 1  # other inputs: not a reproduction to check
    (tmp_path / "other.json").write_text(json.dumps(other_seed))
    (tmp_path / "broken.json").write_text("{")
    matches = list(committed_matches(rerun, tmp_path))
    assert [(path.name, len(found.differences)) for path, found in matches] == [("same.json", 1)]


def test_compare_tolerates_float_noise_in_effects_and_masks_only(plain):
    from benchmark.submission.compare import FLOAT_TOLERANCE, compare

    rerun = json.loads(json.dumps(plain))
    stage = rerun["circuits"]["base"]["stages"][0]
    stage["mean"][0][0] += FLOAT_TOLERANCE / 2
    rerun["dcm"]["finetuned"][0]["mask"][0] -= FLOAT_TOLERANCE / 4
    within = compare(plain, rerun)
    assert within.same and within.largest_tolerated == pytest.approx(FLOAT_TOLERANCE / 2)
    stage["mean"][0][0] += FLOAT_TOLERANCE  # now 1.5 x the tolerance away
    assert [d.split(" ")[0] for d in compare(plain, rerun).differences] == [
        "$.circuits.base.stages[0].mean[0][0]"
    ]
    exact = json.loads(json.dumps(plain))
    exact["behaviour"]["base"]["accuracy"] += 1e-9  # accuracies are counts over n: any move is real
    exact["circuits"]["base"]["groups"]["value_fetcher"] = []
    found = [d.split(" ")[0] for d in compare(plain, exact).differences]
    assert found == ["$.behaviour.base.accuracy", "$.circuits.base.groups.value_fetcher"]


def test_reproduction_report_ends_with_the_verdict(plain, tmp_path):
    from benchmark.submission.compare import reproduction_report

    assert reproduction_report(plain, tmp_path) == (
        f"nothing to reproduce: no submission in {tmp_path} has the same inputs",
        True,
    )
    (tmp_path / "committed.json").write_text(json.dumps(plain))
    text, ok = reproduction_report(plain, tmp_path)
    assert ok and text.startswith(
        f"reproduces {tmp_path / 'committed.json'}: same numbers (path-patching effects"
    )
    changed = json.loads(json.dumps(plain))
    changed["cmap"]["acc_base"] = 0.5 if plain["cmap"]["acc_base"] != 0.5 else 0.25
    text, ok = reproduction_report(changed, tmp_path)
    assert not ok
    assert text.splitlines()[0].startswith("  $.cmap.acc_base (")
    assert text.splitlines()[-1].startswith(
        f"does not reproduce {tmp_path / 'committed.json'}: 1 value differs"
    )
