"""Known-answer tests of the hook layer on every supported tiny architecture (SPEC section 3)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.data import encode_examples, generate_split
from benchmark.hooks import (
    capture_head_outputs,
    capture_qkv,
    edit_head_outputs,
    expand_rows,
    head_output_means,
    mean_ablate,
    patch_head_outputs,
    patch_qkv,
)
from benchmark.models import QKV, ArchitectureAdapter, ModelUnderStudy, UnsupportedArchitectureError
from benchmark.testing import TINY_ARCHITECTURES, build_tiny_model

ATOL = 1e-5


@pytest.fixture(scope="module", params=TINY_ARCHITECTURES)
def tiny(request, tmp_path_factory):
    """(model, adapter, clean ids, counterfactual ids) for one tiny architecture, float32 on CPU."""
    directory = build_tiny_model(request.param, tmp_path_factory.mktemp(request.param))
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    clean = encode_examples(tokenizer, generate_split(3, "test", 6, seed=0).examples).input_ids
    counterfactual = encode_examples(tokenizer, generate_split(3, "test", 6, seed=1).examples).input_ids
    return model, ArchitectureAdapter(model), clean, counterfactual


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def _capture(model, adapter, ids, **kwargs):
    with torch.no_grad(), capture_head_outputs(adapter, **kwargs) as recording:
        model(ids)
    return recording.stack()  # [batch, site, layer, head, d]


def _attention_outputs(model, adapter, ids) -> list[torch.Tensor]:
    """The real output of every layer's output projection."""
    outputs = []
    handles = [
        adapter.out_proj(layer).register_forward_hook(lambda m, a, out: outputs.append(out.detach()))
        for layer in range(adapter.shape.n_layers)
    ]
    try:
        _logits(model, ids)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _rebuilt_per_head(proj, z: torch.Tensor) -> torch.Tensor:
    """Each head alone through the output projection (bias removed), summed, plus the bias once."""
    n_heads = z.shape[-2]
    with torch.no_grad():
        bias = proj(torch.zeros_like(z.flatten(-2)))
        per_head = [
            proj((z * (torch.arange(n_heads) == h)[:, None]).flatten(-2)) - bias for h in range(n_heads)
        ]
        return torch.stack(per_head).sum(0) + bias


def test_head_outputs_through_output_projection_rebuild_the_module_output(tiny):
    model, adapter, clean, _ = tiny
    heads = _capture(model, adapter, clean)
    real = _attention_outputs(model, adapter, clean)
    for layer in range(adapter.shape.n_layers):
        rebuilt = _rebuilt_per_head(adapter.out_proj(layer), heads[:, :, layer])  # z: [batch, pos, head, d]
        torch.testing.assert_close(rebuilt, real[layer], atol=ATOL, rtol=0)


def test_patching_every_head_with_its_own_clean_value_changes_nothing(tiny):
    model, adapter, clean, _ = tiny
    before = _logits(model, clean)
    with patch_head_outputs(adapter, _capture(model, adapter, clean)):
        after = _logits(model, clean)
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)


def test_patching_one_layer_with_counterfactual_values_gives_the_counterfactual_attention_output(tiny):
    model, adapter, clean, counterfactual = tiny
    layer = adapter.shape.n_layers - 2
    cf_heads = _capture(model, adapter, counterfactual, layers=[layer])
    with patch_head_outputs(adapter, cf_heads, layers=[layer]):
        patched = _attention_outputs(model, adapter, clean)[layer]
    expected = _attention_outputs(model, adapter, counterfactual)[layer]
    assert not torch.allclose(_attention_outputs(model, adapter, clean)[layer], expected, atol=1e-3)
    torch.testing.assert_close(patched, expected, atol=ATOL, rtol=0)


def test_mean_ablation_over_the_clean_prompt_alone_changes_nothing(tiny):
    model, adapter, clean, _ = tiny
    for row in range(2):
        ids = clean[row : row + 1]
        means = head_output_means(model, adapter, ids)
        with mean_ablate(adapter, means):
            ablated = _logits(model, ids)
        torch.testing.assert_close(ablated, _logits(model, ids), atol=ATOL, rtol=0)


def test_mean_ablation_changes_logits_unless_kept(tiny):
    model, adapter, clean, _ = tiny
    means = head_output_means(model, adapter, clean)
    with mean_ablate(adapter, means):
        ablated = _logits(model, clean)
    assert not torch.allclose(ablated, _logits(model, clean), atol=1e-3)
    keep = torch.ones(1, 1, adapter.shape.n_layers, adapter.shape.n_heads, dtype=torch.bool)
    with mean_ablate(adapter, means, keep=keep):
        kept = _logits(model, clean)
    torch.testing.assert_close(kept, _logits(model, clean), atol=ATOL, rtol=0)


def test_patch_at_one_position_leaves_earlier_positions_alone(tiny):
    model, adapter, clean, counterfactual = tiny
    last = clean.shape[1] - 1
    positions = torch.full((len(clean), 1), last - 3)
    cf_sites = _capture(model, adapter, counterfactual, positions=positions)
    assert cf_sites.shape[:2] == (len(clean), 1)
    before = _logits(model, clean)
    with patch_head_outputs(adapter, cf_sites, positions=positions):
        after = _logits(model, clean)
    torch.testing.assert_close(after[:, : last - 3], before[:, : last - 3], atol=ATOL, rtol=0)
    assert not torch.allclose(after[:, last], before[:, last], atol=1e-4)


@pytest.mark.parametrize("kind", list(QKV))
def test_qkv_patching_with_own_values_changes_nothing_and_counterfactual_values_do(tiny, kind):
    model, adapter, clean, counterfactual = tiny
    positions = torch.full((len(clean), 1), clean.shape[1] - 1)
    with torch.no_grad(), capture_qkv(adapter, kind, positions=positions) as own:
        before = model(clean).logits
    with torch.no_grad(), capture_qkv(adapter, kind, positions=positions) as other:
        model(counterfactual)
    assert own.stack().shape[3] == adapter.qkv_heads(kind)
    with patch_qkv(adapter, kind, own.stack(), positions=positions):
        torch.testing.assert_close(_logits(model, clean), before, atol=ATOL, rtol=0)
    with patch_qkv(adapter, kind, other.stack(), positions=positions):
        assert not torch.allclose(_logits(model, clean)[:, -1], before[:, -1], atol=1e-4)


def _row_scaled_head(adapter, layer: int, factors: torch.Tensor):
    """Head 0 of `layer` scaled by a per-row factor: rows that are equal below `layer` differ above it."""

    def edit(sites, index):
        return torch.cat([sites[:, :, :1] * factors[:, None, None, None], sites[:, :, 1:]], dim=2)

    return edit_head_outputs(adapter, edit, layers=[layer])


@pytest.mark.parametrize("cached", [False, True], ids=["no cache", "over a cache"])
def test_expanded_rows_equal_the_repeated_inputs_run_in_full(tiny, cached):
    """Running the layers below `split` once per input, then k rows per input, gives the logits of the
    inputs repeated k times from the embeddings on (with or without a key-value cache of a prefix)."""
    model, adapter, clean, _ = tiny
    study, k, split = ModelUnderStudy(model, adapter), 3, adapter.shape.n_layers - 1
    n, factors = len(clean), torch.tensor([1.0, 0.0, -2.0]).repeat(len(clean))
    prefix, suffix = (clean[:, :-2], clean[:, -2:]) if cached else (None, clean)

    def run(ids, cache):
        with torch.no_grad(), _row_scaled_head(adapter, split, factors):
            return model(ids, use_cache=False).logits if cache is None else study.extend(ids, cache)

    repeated_cache = None if prefix is None else study.prefill(prefix.repeat_interleave(k, 0))
    full = run(suffix.repeat_interleave(k, 0), repeated_cache)
    cache = None if prefix is None else study.prefill(prefix)
    if cache is not None:
        study.repeat_cached_rows(cache, k, from_layer=split)
    with expand_rows(adapter, split, torch.arange(n).repeat_interleave(k), n):
        expanded = run(suffix, cache)
    assert expanded.shape == full.shape
    assert (full[0::k] - full[2::k]).abs().max() > 1e-3  # the rows do differ above the split
    torch.testing.assert_close(expanded, full, atol=ATOL, rtol=0)


def test_expanding_to_no_more_rows_than_inputs_is_refused(tiny):
    _, adapter, _, _ = tiny
    with (
        pytest.raises(ValueError, match="more rows than the 4 inputs"),
        expand_rows(adapter, 0, torch.arange(4), 4),
    ):
        pass


def test_hooks_are_removed_after_an_exception(tiny):
    model, adapter, clean, _ = tiny
    values = _capture(model, adapter, clean)
    with (
        pytest.raises(RuntimeError, match="boom"),
        patch_head_outputs(adapter, values),
        capture_qkv(adapter, QKV.V),
    ):
        raise RuntimeError("boom")
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_unsupported_architecture_names_the_supported_ones():
    class Config:
        model_type = "bert"

    class Model(torch.nn.Module):
        config = Config()

    with pytest.raises(UnsupportedArchitectureError, match="supported: .*llama"):
        ArchitectureAdapter(Model())


@pytest.mark.smollm2
def test_smollm2_head_outputs_rebuild_o_proj_output(smollm2_source):
    """SmolLM2-135M-Instruct, loaded from its GGUF through the suite's loader (grouped-query attention)."""
    from benchmark.models import ModelSpec, load_model

    loaded = load_model(ModelSpec("smollm2"))
    model, adapter = loaded.model, ArchitectureAdapter(loaded.model)
    assert (adapter.shape.n_heads, adapter.shape.n_kv_heads, adapter.shape.head_dim) == (9, 3, 64)
    ids = encode_examples(loaded.tokenizer, generate_split(7, "test", 7, seed=0).examples[:2]).input_ids
    layers = [0, adapter.shape.n_layers // 2, adapter.shape.n_layers - 1]
    heads = _capture(model, adapter, ids, layers=layers)
    real = _attention_outputs(model, adapter, ids)
    for index, layer in enumerate(layers):
        rebuilt = _rebuilt_per_head(adapter.out_proj(layer), heads[:, :, index])
        torch.testing.assert_close(rebuilt, real[layer], atol=1e-5, rtol=1e-5)
    before = _logits(model, ids)
    with patch_head_outputs(adapter, _capture(model, adapter, ids)):
        torch.testing.assert_close(_logits(model, ids), before, atol=1e-5, rtol=0)
