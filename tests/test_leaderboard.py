"""The leaderboard build: deterministic, only from valid files, never losing a row, flagging duplicates,
escaping every string; and the committed leaderboard is a fresh build of submissions/."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.leaderboard import COLUMNS, CSV, MARKDOWN, PAGE, build
from benchmark.leaderboard.table import row_values
from benchmark.submission import Result, canonical_name, check, to_json, validate
from benchmark.submission.integrity import reseal, seal
from benchmark.submission.synthetic import SyntheticPair, synthetic_result

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = (MARKDOWN, CSV, PAGE)
INJECTION = "<script>alert('x')</script><img src=x onerror=alert(1)>"
# Free-text fields of a result: anything may be written there, so the page must escape them.
_FREE_TEXT = {
    "preset",
    "dtype",
    "device_map",
    "role",
    "stage",
    "tokenizer_class",
    "model_type",
    "architecture",
}
_FREE_TEXT |= {"device", "device_name", "platform", "torch_version", "version", "gqa_note"}
_FREE_TEXT |= {"skipped_because"}


def pair(seed: int, **kwargs) -> Result:
    return synthetic_result(
        SyntheticPair(base_id=f"org/base-{seed}", finetuned_id=f"org/tuned-{seed}", seed=seed, **kwargs)
    )


def write(folder: Path, result: Result) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / canonical_name(result)
    path.write_text(to_json(result))
    return path


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


def csv_files(folder: Path) -> list[str]:
    lines = (folder / CSV).read_text().splitlines()[1:]
    return sorted(line.rsplit(",", 1)[1] for line in lines)


def test_every_column_has_a_value_and_a_definition_in_the_docs():
    assert [c.key for c in COLUMNS] == list(row_values(pair(0), "f.json"))
    docs = (ROOT / "docs" / "metrics.md").read_text()
    missing = [c.title for c in COLUMNS if f"**{c.title}**" not in docs]
    assert not missing, f"docs/metrics.md does not define {missing}"


def test_the_build_is_deterministic_and_independent_of_file_order(tmp_path):
    for seed in (0, 1, 2):
        write(tmp_path / "subs", pair(seed))
    first = build(tmp_path / "subs", tmp_path / "one")
    assert len(first.rows) == 3 and not first.invalid
    shutil.copytree(tmp_path / "subs", tmp_path / "again")
    for path in sorted((tmp_path / "again").iterdir()):  # rewrite in another order (new mtimes)
        path.write_bytes(path.read_bytes())
    build(tmp_path / "again", tmp_path / "two")
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")


def test_invalid_files_are_reported_and_left_out(tmp_path):
    subs = tmp_path / "subs"
    valid = write(subs, pair(0))
    (subs / "truncated.json").write_text(valid.read_text()[:300])
    tampered = json.loads(valid.read_text())
    tampered["datasets"][0]["sha256"] = "0" * 64
    (subs / "tampered.json").write_text(json.dumps(tampered))
    report = build(subs, tmp_path / "out", keep_going=True)
    assert [row.file for row in report.rows] == [valid.name]
    reasons = {invalid.file: str(invalid.problems[0]) for invalid in report.invalid}
    assert "truncated" in reasons["truncated.json"] and "$.datasets[0].sha256" in reasons["tampered.json"]
    assert csv_files(tmp_path / "out") == [valid.name]


def test_a_rebuild_never_drops_a_valid_row(tmp_path):
    subs = tmp_path / "subs"
    names = [write(subs, pair(seed)).name for seed in (0, 1)]
    build(subs, tmp_path / "out")
    assert csv_files(tmp_path / "out") == sorted(names)
    (subs / "broken.json").write_text("{")
    names.append(write(subs, pair(2)).name)
    (tmp_path / "out" / CSV).unlink()  # rows come only from the files, not from the last build
    build(subs, tmp_path / "out", keep_going=True)
    assert csv_files(tmp_path / "out") == sorted(names)


def test_the_same_pair_twice_is_flagged_not_merged(tmp_path, capsys):
    subs = tmp_path / "subs"
    first = write(subs, pair(0))
    second = write(subs, pair(0, finished_at="2025-02-01T09:00:00+00:00"))
    other = write(subs, pair(1))
    report = build(subs, tmp_path / "out")
    assert len(report.rows) == 3
    assert sorted(report.duplicates) == sorted([first.name, second.name])
    flags = {row.file: row.values["flag"] for row in report.rows}
    assert flags == {first.name: "duplicate", second.name: "duplicate", other.name: ""}
    assert main(["leaderboard", "build", "--submissions", str(subs), "--out", str(tmp_path / "cli")]) == 0
    err = capsys.readouterr().err
    assert f"warning: {first.name} scores the same pair" in err


def _inject(value, key: str | None = None):
    """Every free-text string of a plain result replaced by HTML."""
    if isinstance(value, dict):
        return {k: _inject(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_inject(v, key) for v in value]
    return INJECTION if isinstance(value, str) and key in _FREE_TEXT else value


def test_every_string_from_a_submission_is_escaped(tmp_path):
    plain = _inject(json.loads(to_json(pair(0))))
    plain["circuits"]["base"]["stages"][3].update(mean=None, stderr=None)
    plain = reseal(plain)
    assert validate(plain) == []
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / canonical_name(check(plain).result)).write_text(json.dumps(plain))
    report = build(subs, tmp_path / "out")
    assert len(report.rows) == 1
    page = (tmp_path / "out" / PAGE).read_text()
    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script>" not in (tmp_path / "out" / MARKDOWN).read_text()


def test_html_in_a_model_name_never_reaches_the_page(tmp_path):
    subs = tmp_path / "subs"
    write(subs, pair(0))
    evil = json.loads(to_json(pair(1)))
    evil["models"]["base"]["id"] = INJECTION
    (subs / "evil.json").write_text(json.dumps(evil))
    report = build(subs, tmp_path / "out", keep_going=True)
    assert [invalid.file for invalid in report.invalid] == ["evil.json"]
    assert "markup" in report.invalid[0].problems[0].message
    for name in OUTPUTS:
        assert "onerror" not in (tmp_path / "out" / name).read_text()


def test_stages_that_did_not_run_show_as_missing(tmp_path):
    partial = seal(dataclasses.replace(pair(0), circuits=None, faithfulness=None, dcm=None, cmap=None))
    write(tmp_path / "subs", partial)
    (row,) = build(tmp_path / "subs", tmp_path / "out").rows
    assert row.values["circuit_iou"] is None and row.values["cmap_circuit"] is None
    assert "did not run" in (tmp_path / "out" / PAGE).read_text()
    assert "| –" in (tmp_path / "out" / MARKDOWN).read_text()


def test_submit_copies_and_rebuilds(tmp_path, capsys):
    source = tmp_path / "result.json"
    source.write_text(to_json(pair(3)))
    args = ["--submissions", str(tmp_path / "subs"), "--out", str(tmp_path / "board")]
    assert main(["submit", str(source), *args]) == 0
    assert "submitted: " in capsys.readouterr().out
    assert csv_files(tmp_path / "board") == [canonical_name(pair(3))]
    source.write_text(to_json(pair(3))[:-20])
    assert main(["submit", str(source), *args]) == 1
    assert "truncated" in capsys.readouterr().err


@pytest.mark.parametrize("name", OUTPUTS)
def test_the_committed_leaderboard_is_a_fresh_build_of_submissions(tmp_path, name):
    build(ROOT / "submissions", tmp_path)
    committed = ROOT / "leaderboard" / name
    assert committed.read_bytes() == (tmp_path / name).read_bytes(), (
        f"leaderboard/{name} is not a fresh build of submissions/: run `etbench leaderboard build`"
    )


def test_models_with_adapters_are_named_by_their_adapters():
    from benchmark.leaderboard.table import model_label
    from benchmark.models.identity import AdapterRecord as Adapter

    result = synthetic_result()
    chain = tuple(
        Adapter(f"benchmark/zoo/adapters/{name}", "a" * 64, "b" * 64, "LORA")
        for name in ("organism-base", "organism-finetuned")
    )
    model = dataclasses.replace(result.models.finetuned, adapters=chain)
    assert model_label(model).endswith(" + organism-base + organism-finetuned")
    models = dataclasses.replace(result.models, finetuned=model)
    name = canonical_name(dataclasses.replace(result, models=models))
    assert "__finetuned-model-organism-finetuned__" in name


def test_a_row_is_re_run_only_with_a_matching_verification_record(tmp_path):
    from benchmark.submission.files import name_digest
    from benchmark.submission.verified import Verification, write_verification

    subs = tmp_path / "subs"
    verified, other = write(subs, pair(0)), write(subs, pair(1))
    record = Verification(verified.name, name_digest(pair(0)), "0.1.0", "2026-12-01T12:00:00+00:00", "cpu",
                          "x86_64", True, (), 0.0)  # fmt: skip
    write_verification(subs, record)
    write_verification(subs, dataclasses.replace(record, file=other.name))  # a record of another digest
    checked = {row.file: row.values["checked"] for row in build(subs, tmp_path / "out").rows}
    assert checked == {verified.name: "re-run (suite 0.1.0)", other.name: "self-reported"}
    write_verification(subs, dataclasses.replace(record, reproduced=False, differences=("$.x (1 vs 2)",)))
    (row, _) = sorted(build(subs, tmp_path / "out").rows, key=lambda r: r.file != verified.name)
    assert row.values["checked"] == "re-run differs (suite 0.1.0)"
