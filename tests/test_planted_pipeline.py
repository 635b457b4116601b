"""Known answers on the real pipeline output: `score_pair` on the three planted pairs (small sizes).

A regression in any method (discovery, minimality, faithfulness, DCM, CMAP) breaks one of these answers.
"""

from __future__ import annotations

import json

import pytest

from benchmark.pipeline import score_pair
from benchmark.settings import preset_settings
from benchmark.submission import check
from benchmark.zoo.pairs import get_pair
from benchmark.zoo.planted import LEXICAL, PLANTED_MODELS, POSITIONAL, circuit_recovery

# DCM keeps cpu-small's 64 / 32 / 32 pairs: with 16 validation pairs a chance hit can add a head.
SMALL = dict(
    behaviour={"n_prompts": 49},
    discovery={"n_prompts": 28, "n_minimality_prompts": 28},
    faithfulness={"n_prompts": 49, "n_reference": 49, "n_random": 5},
    cmap={"n_prompts": 49},
)
A, B, C, D = "value_fetcher", "position_transmitter", "position_detector", "structure_reader"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """pair name -> result JSON of `score_pair` at SMALL sizes (7 boxes)."""
    root = tmp_path_factory.mktemp("planted")
    settings = preset_settings("cpu-small", **SMALL)
    out = {}
    for name in ("planted-enhance", "planted-replace", "planted-null"):
        base, finetuned = get_pair(name).specs(cache_dir=root / "models", device="cpu")
        result = score_pair(base, finetuned, settings, root / name, progress=False)
        out[name] = json.loads(result.path.read_text())
    return out


def _planted(pair: str, which: str) -> dict:
    planted = get_pair(pair)
    return PLANTED_MODELS[planted.base if which == "base" else planted.finetuned].groups


def _dcm_heads(result, which):
    return {(r["group"], r["desideratum"]): {tuple(h) for h in r["heads"]} for r in result["dcm"][which]}


@pytest.mark.parametrize("pair", ["planted-enhance", "planted-replace", "planted-null"])
def test_discovery_finds_every_planted_head_and_no_distractor(scored, pair):
    for which in ("base", "finetuned"):
        found = scored[pair]["circuits"][which]["groups"]
        recovery = circuit_recovery(_planted(pair, which), found)
        assert all(r == (1.0, 1.0) for r in recovery.values()), (which, recovery)


@pytest.mark.parametrize("pair", ["planted-enhance", "planted-null"])
def test_same_mechanism_pairs_give_the_same_circuit_and_dcm_sets(scored, pair):
    result = scored[pair]
    assert result["circuits"]["iou"]["overall"] == 1.0
    overlap = {(o["group"], o["desideratum"]): o["iou"] for o in result["dcm"]["overlap"]}
    # Identical heads, identical sets for what each group carries (the blurred base may pick up a head
    # by chance on another desideratum; the null pair has identical weights).
    carried = [(A, "object"), (B, "position"), (C, "position"), (D, "position")]
    assert all(overlap[key] == 1.0 for key in (overlap if pair == "planted-null" else carried))
    for which in ("base", "finetuned"):
        faithfulness = result["faithfulness"][which]
        assert faithfulness["own"]["faithfulness"] >= 0.95
        assert faithfulness["random"]["mean"] <= 0.10
        heads = _dcm_heads(result, which)
        assert heads[(A, "object")] == {POSITIONAL[A][0]}
        assert heads[(B, "position")] == {POSITIONAL[B][0]} and heads[(C, "position")] == {POSITIONAL[C][0]}
    assert result["faithfulness"]["base_circuit_in_finetuned"]["faithfulness"] >= 0.95


def test_enhance_cmap_closes_the_gap_through_a_b_c_and_not_through_d(scored):
    cmap = scored["planted-enhance"]["cmap"]
    assert cmap["acc_finetuned"] - cmap["acc_base"] > 0.25 and cmap["gain_defined"]
    assert cmap["circuit"]["gain"] >= 0.9
    assert all(cmap["groups"][g]["gain"] >= 0.9 for g in (A, B, C))
    assert abs(cmap["groups"][D]["gain"]) <= 0.05


def test_replace_shares_no_head_and_the_base_circuit_neither_explains_nor_recovers_it(scored):
    result = scored["planted-replace"]
    base = {tuple(h) for heads in result["circuits"]["base"]["groups"].values() for h in heads}
    finetuned = {tuple(h) for heads in result["circuits"]["finetuned"]["groups"].values() for h in heads}
    assert base and finetuned and not base & finetuned
    assert result["circuits"]["iou"]["overall"] == 0.0
    assert result["faithfulness"]["base_circuit_in_finetuned"]["faithfulness"] <= 0.10
    # The four-group template misses the binder (it works at the context labels): the numbers say so.
    assert result["faithfulness"]["finetuned"]["own"]["faithfulness"] <= 0.10
    assert _dcm_heads(result, "finetuned")[(B, "label")] == {LEXICAL["label_mover"][0]}
    cmap = result["cmap"]
    assert cmap["circuit"]["acc_patched"] <= cmap["acc_finetuned"] - 0.5


def test_null_pair_reports_no_change(scored):
    cmap = scored["planted-null"]["cmap"]
    assert not cmap["gain_defined"] and cmap["acc_base"] == cmap["acc_finetuned"]
    assert cmap["circuit"]["change"] == 0.0 and all(g["change"] == 0.0 for g in cmap["groups"].values())
    assert all(g["gain"] is None for g in cmap["groups"].values())


def _estimates(result: dict) -> dict:
    return {e["name"]: e for e in result["uncertainty"]}


@pytest.mark.parametrize("pair", ["planted-enhance", "planted-replace", "planted-null"])
def test_every_interval_covers_its_value_on_the_real_pipeline(scored, pair):
    estimates = _estimates(scored[pair])
    assert {
        "behaviour.accuracy_gain",
        "faithfulness.resample.cross.normalized",
        "cmap.circuit.accuracy",
    } <= set(estimates)
    for e in estimates.values():
        assert e["low"] is None or e["low"] <= e["value"] <= e["high"], e
        assert e["n_contexts"] == -(-e["n"] // 7)


def test_the_identical_pair_has_paired_differences_exactly_zero_with_zero_width(scored):
    estimates = _estimates(scored["planted-null"])
    changes = [name for name in estimates if name.endswith("accuracy_gain") or ".change." in name]
    assert len(changes) == 5  # accuracy, and ratio and f under each ablation
    for name in changes:
        assert (estimates[name]["value"], estimates[name]["low"], estimates[name]["high"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("ablation", ["mean", "resample"])
def test_normalized_faithfulness_gives_the_planted_answers_under_both_ablations(scored, ablation):
    def block(pair):
        result = scored[pair]
        return next(
            b for b in (result["faithfulness"], *result["other_ablations"]) if b["ablation"] == ablation
        )

    enhance, replace = block("planted-enhance"), block("planted-replace")
    for which in ("base", "finetuned"):
        assert enhance[which]["own"]["normalized"] >= 0.9
        assert abs(enhance[which]["random"]["normalized_mean"]) <= 0.1
    assert enhance["base_circuit_in_finetuned"]["normalized"] >= 0.9
    assert replace["base_circuit_in_finetuned"]["normalized"] <= 0.1


def test_the_noise_floor_of_a_planted_circuit_is_one(scored):
    """The planted heads are exact, so other prompts find the same circuit: a same-model IoU of 1."""
    for pair in ("planted-enhance", "planted-replace"):
        for which in ("base", "finetuned"):
            assert scored[pair]["circuits"][f"{which}_floor"]["iou"]["overall"] == 1.0


def test_the_reference_set_has_one_prompt_per_context_and_the_result_says_how_many(scored):
    reference = next(d for d in scored["planted-enhance"]["datasets"] if d["role"] == "reference")
    assert reference["n_used"] == SMALL["faithfulness"]["n_reference"] == reference["n_rows"] // 7
    assert reference["split_id"].endswith(f"contexts{reference['n_used']}")


def test_an_atp_exact_score_records_its_verification_and_finds_the_planted_heads(tmp_path):
    """`etbench score --discovery atp+exact` end to end on a planted pair: a valid schema-4 result that
    records per stage what was patched exactly, and finds every planted head in both models."""
    settings = preset_settings("cpu-small", prefilter="atp", **SMALL)
    base, finetuned = get_pair("planted-enhance").specs(cache_dir=tmp_path / "models", device="cpu")
    result = score_pair(base, finetuned, settings, tmp_path / "run", progress=False)
    assert check(result.path).ok
    plain = json.loads(result.path.read_text())
    assert plain["settings"]["discovery"]["prefilter"] == "atp" and plain["suite"]["schema_version"] == "4"
    for which in ("base", "finetuned"):
        circuit = plain["circuits"][which]
        recovery = circuit_recovery(_planted("planted-enhance", which), circuit["groups"])
        assert all(r == (1.0, 1.0) for r in recovery.values()), (which, recovery)
        records = [stage["prefilter"] for stage in circuit["stages"] if stage["mean"] is not None]
        assert records and all(r["n_senders"] > len(r["estimated"]) for r in records)
