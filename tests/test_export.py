"""`etbench export`: a plain Hugging Face directory that `from_pretrained` (and so lm-eval) reads as it is,
with the same logits as the suite's own loading (GGUF dequantised, adapters merged)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.cli import main
from benchmark.data import encode_examples, generate_split
from benchmark.models import ModelSpec, load_model
from benchmark.testing import build_tiny_lora, build_tiny_model
from benchmark.zoo import ADAPTERS_DIR


def _same_logits(spec: ModelSpec, directory) -> None:
    """The exported directory, loaded by plain transformers, computes what the suite's loading computes."""
    loaded = load_model(spec, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    examples = generate_split(3, "test", 6).examples
    ids = encode_examples(tokenizer, examples).input_ids
    assert torch.equal(ids, encode_examples(loaded.tokenizer, examples).input_ids)
    exported = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, loaded.model(ids).logits, rtol=1e-5, atol=1e-5)
    assert "quantization_config" not in json.loads((directory / "config.json").read_text())


def test_export_merges_the_adapter_chain_into_a_plain_directory(tmp_path, capsys):
    base = build_tiny_model("llama", tmp_path / "base")
    lora = build_tiny_lora(base, tmp_path / "lora", seed=1)
    out = tmp_path / "exported"
    assert main(["export", str(base), str(out), "--adapter", str(lora)]) == 0
    printed = capsys.readouterr().out
    assert "adapter 1" in printed and str(out) in printed
    _same_logits(ModelSpec(str(base), adapters=(str(lora),)), out)
    unmerged = AutoModelForCausalLM.from_pretrained(base).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(AutoModelForCausalLM.from_pretrained(out)(ids).logits, unmerged(ids).logits)


def test_export_refuses_to_overwrite_a_model(tmp_path, capsys):
    base = build_tiny_model("llama", tmp_path / "base")
    assert main(["export", str(base), str(base)]) == 2
    assert "already holds a model" in capsys.readouterr().err


@pytest.mark.smollm2
@pytest.mark.slow
def test_export_of_the_builtin_gguf_model_with_a_zoo_adapter(smollm2_source, tmp_path, capsys):
    adapter = str(ADAPTERS_DIR / "organism-base")
    out = tmp_path / "smollm2-organism-base"
    assert main(["export", "smollm2", str(out), "--adapter", adapter]) == 0
    _same_logits(ModelSpec("smollm2", adapters=(adapter,)), out)
