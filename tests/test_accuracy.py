"""The accuracy scorer on a tiny model with known answers, and its exact agreement with lm-eval's `acc`."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.accuracy import last_token_logits, score_accuracy
from benchmark.data import encode_examples, generate_split
from benchmark.testing import TINY_ARCHITECTURES


@pytest.fixture(scope="module")
def known(known_answer_model):
    """(model, encoded prompts, expected correctness) of the known-answer tiny Llama."""
    model = AutoModelForCausalLM.from_pretrained(known_answer_model.directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(known_answer_model.directory)
    return model, encode_examples(tokenizer, known_answer_model.examples), known_answer_model.correct


def test_scores_exactly_the_designed_rows(known):
    model, encoded, correct = known
    result = score_accuracy(model, encoded)
    assert result.correct == correct
    assert result.n == len(correct) == 48
    assert result.accuracy == sum(correct) / len(correct)
    assert 0 < result.accuracy < 1
    predicted_right = [p == a for p, a in zip(result.predicted_ids, encoded.answer_ids.tolist(), strict=True)]
    assert predicted_right == list(correct)


def test_per_position_breakdown(known):
    model, encoded, correct = known
    result = score_accuracy(model, encoded)
    for box in range(3):
        rows = [ok for ok, q in zip(correct, encoded.query_index.tolist(), strict=True) if q == box]
        assert result.n_per_position[box] == len(rows) == 16
        assert result.per_position[box] == sum(rows) / len(rows)


@pytest.mark.parametrize("batch_size", [1, 5, 48, 100])
def test_batch_size_does_not_change_the_result(known, batch_size):
    model, encoded, correct = known
    assert score_accuracy(model, encoded, batch_size=batch_size).correct == correct


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_the_decisions(known, dtype):
    model, encoded, correct = known
    assert score_accuracy(model.to(dtype), encoded).correct == correct
    model.float()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_same_decisions(known):
    model, encoded, correct = known
    try:
        assert score_accuracy(model.to("cuda"), encoded, device="cuda").correct == correct
    finally:
        model.to("cpu")


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_last_token_logits_equal_a_plain_forward(tiny_model_dir, arch):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir(arch)).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir(arch))
    encoded = encode_examples(tokenizer, generate_split(5, "test", 10).examples)
    with torch.no_grad():
        expected = model(encoded.input_ids).logits[:, -1].float()
    logits = last_token_logits(model, encoded.input_ids, batch_size=3)
    assert logits.shape == (10, len(tokenizer)) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    result = score_accuracy(model, encoded, batch_size=4)
    assert list(result.predicted_ids) == expected.argmax(-1).tolist()


def test_bad_arguments_are_errors(known):
    model, encoded, _ = known
    with pytest.raises(ValueError, match="batch_size"):
        score_accuracy(model, encoded, batch_size=0)
    with pytest.raises(ValueError, match=r"\[batch, pos\]"):
        last_token_logits(model, encoded.input_ids[0])


def test_lm_eval_agrees_row_by_row(known_answer_model, known, tasks_dir):
    """lm-eval's `acc` on the entity_tracking_3 task equals score_accuracy, row by row and overall."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    model, encoded, correct = known
    directory = str(known_answer_model.directory)
    # include_defaults=False skips indexing lm-eval's own ~10k task files (seconds); the task is the same.
    task_manager = TaskManager(
        include_path=str(tasks_dir), include_defaults=False, metadata={"pretrained": directory}
    )
    output = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": directory},
        tasks=["entity_tracking_3"],
        limit=len(correct),
        log_samples=True,
        task_manager=task_manager,
        device="cpu",
        batch_size=8,
    )
    samples = sorted(output["samples"]["entity_tracking_3"], key=lambda s: s["doc_id"])
    assert [s["doc"]["prompt"] for s in samples] == [e.prompt for e in known_answer_model.examples]
    assert [s["target"] for s in samples] == [e.answer for e in known_answer_model.examples]
    lm_eval_correct = tuple(bool(s["acc"]) for s in samples)
    ours = score_accuracy(model, encoded)
    assert lm_eval_correct == ours.correct == correct
    assert output["results"]["entity_tracking_3"]["acc,none"] == ours.accuracy
