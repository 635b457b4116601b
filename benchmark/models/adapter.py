"""Per-architecture adapter: where the attention heads of an unmodified Hugging Face model live.

A component of the suite is one head's output before the output projection (SPEC section 3): the input
of o_proj / c_proj / dense, split into heads. Receivers of path patching also need each head's q, k and
v, which some families compute in separate projections and others in one fused projection. Adding an
architecture means adding one `ArchitectureSpec` entry to `ARCHITECTURES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.models.identity import HeadShape


class UnsupportedArchitectureError(BenchmarkError, ValueError):
    """The model's `model_type` has no entry in `ARCHITECTURES`."""


class QKV(StrEnum):
    """Which attention input of a receiver head is patched."""

    Q = "q"
    K = "k"
    V = "v"


class QKVLayout(StrEnum):
    """How an architecture computes q, k and v."""

    SEPARATE = "separate"  # q_proj, k_proj, v_proj (Llama, Mistral, Qwen2, Gemma...)
    FUSED_BLOCKS = "fused_blocks"  # one projection, output [q | k | v] (GPT-2 c_attn)
    FUSED_PER_HEAD = "fused_per_head"  # one projection, output [head, (q k v), head_dim] (GPT-NeoX)


@dataclass(frozen=True)
class ArchitectureSpec:
    """Attribute paths from the model to its blocks, and from a block to its attention pieces."""

    layers: str  # model -> list of decoder blocks
    attention: str  # block -> attention module
    out_proj: str  # attention -> module whose input is the concatenated head outputs
    qkv_layout: QKVLayout
    qkv: tuple[str, ...]  # attention -> the q, k, v projection(s)


_SEPARATE = dict(
    layers="model.layers",
    attention="self_attn",
    out_proj="o_proj",
    qkv_layout=QKVLayout.SEPARATE,
    qkv=("q_proj", "k_proj", "v_proj"),
)
ARCHITECTURES: dict[str, ArchitectureSpec] = {
    **{
        name: ArchitectureSpec(**_SEPARATE)
        for name in (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "gemma3_text",
            "olmo2",
        )
    },
    "gpt2": ArchitectureSpec("transformer.h", "attn", "c_proj", QKVLayout.FUSED_BLOCKS, ("c_attn",)),
    "gpt_neox": ArchitectureSpec(
        "gpt_neox.layers", "attention", "dense", QKVLayout.FUSED_PER_HEAD, ("query_key_value",)
    ),
}


def _get(root: nn.Module, path: str) -> nn.Module:
    module = root
    for name in path.split("."):
        module = getattr(module, name)
    return module


def head_shape(config) -> HeadShape:
    """Layers, heads, key-value heads and head_dim from a HF config (Gemma's head_dim is explicit)."""
    config = getattr(config, "text_config", None) or config
    n_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    n_kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    return HeadShape(config.num_hidden_layers, n_heads, n_kv_heads, head_dim)


def architecture_spec(model_type: str) -> ArchitectureSpec:
    """The spec of `model_type`, or an error naming the supported ones and how to add one."""
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"architecture {model_type!r} is not supported; supported: {sorted(ARCHITECTURES)}. To add one, "
            "add an ArchitectureSpec to benchmark.models.adapter.ARCHITECTURES naming its decoder blocks, "
            "attention module, output projection and q/k/v projections."
        )
    return ARCHITECTURES[model_type]


class ArchitectureAdapter:
    """Finds a model's per-layer output projections and q/k/v columns of each head."""

    def __init__(self, model: nn.Module):
        config = model.config
        self.model_type: str = (getattr(config, "text_config", None) or config).model_type
        self.spec = architecture_spec(self.model_type)
        self.shape = head_shape(config)
        try:
            self._layers = _get(model, self.spec.layers)
        except AttributeError as error:
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} ({self.model_type}) has no decoder blocks at {self.spec.layers!r}: "
                "load the causal language model (for a multimodal checkpoint, its text model)"
            ) from error

    def block(self, layer: int) -> nn.Module:
        """The decoder block: its output is the residual stream after that layer."""
        return self._layers[layer]

    def attention(self, layer: int) -> nn.Module:
        return _get(self._layers[layer], self.spec.attention)

    def out_proj(self, layer: int) -> nn.Module:
        """The module whose input is [batch, pos, n_heads * head_dim]: the heads' outputs, concatenated."""
        return _get(self.attention(layer), self.spec.out_proj)

    def kv_group(self, head: int) -> int:
        """The key-value head a query head reads (grouped-query attention)."""
        return head // self.shape.group_size

    def qkv_projection(self, layer: int, kind: QKV) -> nn.Module:
        """The module whose output holds the `kind` vectors of this layer's heads."""
        names = self.spec.qkv
        name = names[list(QKV).index(kind)] if len(names) == 3 else names[0]
        return _get(self.attention(layer), name)

    def qkv_heads(self, kind: QKV) -> int:
        """How many `kind` vectors a layer has: query heads for q, key-value heads for k and v."""
        return self.shape.n_heads if kind is QKV.Q else self.shape.n_kv_heads

    def qkv_view(self, kind: QKV, output: torch.Tensor) -> torch.Tensor:
        """A view [batch, pos, qkv_heads(kind), head_dim] into `output` of `qkv_projection(layer, kind)`."""
        b, p, _ = output.shape
        n, d = self.qkv_heads(kind), self.shape.head_dim
        layout, k = self.spec.qkv_layout, list(QKV).index(kind)
        if layout is QKVLayout.SEPARATE:
            return output.view(b, p, n, d)
        if layout is QKVLayout.FUSED_BLOCKS:
            hidden = self.shape.n_heads * d
            return output[..., k * hidden : (k + 1) * hidden].view(b, p, n, d)
        return output.view(b, p, n, 3, d)[:, :, :, k]
