"""Check a PEFT LoRA adapter against a model's config in milliseconds, before any weights load.

A corrupt or mismatched adapter otherwise shows only when it is merged, which for the fine-tuned model of
a pair comes after the whole base pass. This reads adapter_config.json and the safetensors header (not
the tensors) and checks that every LoRA matrix fits the model: its layer exists, and its input and
output sizes are the projection's (hidden size, heads x head_dim, kv heads x head_dim, MLP size).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from transformers import PretrainedConfig

from benchmark.models.adapter import head_shape
from benchmark.models.loading import ModelLoadError

WEIGHTS = "adapter_model.safetensors"
_MAX_HEADER = 100_000_000  # bytes; a real adapter's header is a few hundred KB at most
# base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight -> layer 3, module q_proj, matrix A
_TENSOR = re.compile(r"\.(?P<module>\w+)\.lora_(?P<matrix>[AB])(?:\.\w+)?\.weight$")
_LAYER = re.compile(r"\.(\d+)\.")


class AdapterMismatchError(ModelLoadError):
    """An adapter directory is corrupt, is not a LoRA adapter, or does not fit its model."""


def _expected_sizes(config: PretrainedConfig) -> dict[str, tuple[int, int]]:
    """(input, output) size of each projection LoRA commonly targets, from the config alone."""
    text = getattr(config, "text_config", None) or config
    shape, hidden = head_shape(config), text.hidden_size
    attention, kv = shape.n_heads * shape.head_dim, shape.n_kv_heads * shape.head_dim
    sizes = {"q_proj": (hidden, attention), "k_proj": (hidden, kv), "v_proj": (hidden, kv)}
    sizes["o_proj"] = (attention, hidden)
    intermediate = getattr(text, "intermediate_size", None)
    if intermediate:
        sizes |= {"gate_proj": (hidden, intermediate), "up_proj": (hidden, intermediate)}
        sizes["down_proj"] = (intermediate, hidden)
    return sizes


def read_safetensors_header(path: Path) -> dict:
    """The tensor table of a safetensors file (name -> dtype, shape, offsets), checked against its size."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{size} bytes, too short for a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if not 0 < length <= min(_MAX_HEADER, size - 8):
            raise ValueError(f"header length {length} does not fit the file's {size} bytes")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    tensors = {name: info for name, info in header.items() if name != "__metadata__"}
    end = max((info["data_offsets"][1] for info in tensors.values()), default=0)
    if 8 + length + end > size:
        raise ValueError(f"truncated: the tensors need {8 + length + end} bytes, the file has {size}")
    return tensors


def check_adapter(directory: Path, config: PretrainedConfig, what: str) -> None:
    """Raise AdapterMismatchError (one line: the file, what is wrong, what to do) unless `directory`
    holds a readable LoRA adapter whose matrices fit a model of `config`."""
    config_file, weights = directory / "adapter_config.json", directory / WEIGHTS

    def fail(file: Path, problem: str) -> AdapterMismatchError:
        return AdapterMismatchError(
            f"{what} ({file}): {problem}; save the adapter again with PeftModel.save_pretrained, trained on "
            "this model, or pass the right adapter directory"
        )

    try:
        adapter = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise fail(config_file, f"not readable JSON ({error})") from error
    if not isinstance(adapter, dict) or adapter.get("peft_type") != "LORA":
        found = adapter.get("peft_type") if isinstance(adapter, dict) else type(adapter).__name__
        raise fail(config_file, f"not a LoRA adapter config (peft_type {found!r}, the suite merges LORA)")
    if not weights.is_file():
        if (directory / "adapter_model.bin").is_file():
            return  # a pickle checkpoint: its shapes cannot be read without loading it (merging checks it)
        raise fail(weights, "missing")
    try:
        tensors = read_safetensors_header(weights)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise fail(weights, f"corrupt or truncated safetensors file ({error})") from error
    n_layers, sizes = head_shape(config).n_layers, _expected_sizes(config)
    for name, info in sorted(tensors.items()):
        layer = _LAYER.search(name)
        if layer and int(layer.group(1)) >= n_layers:
            raise fail(weights, f"{name} is for layer {layer.group(1)}, the model has {n_layers} layers")
        match = _TENSOR.search(name)
        if not match or match["module"] not in sizes:
            continue
        shape, (fan_in, fan_out) = info["shape"], sizes[match["module"]]
        size, expected = (shape[1], fan_in) if match["matrix"] == "A" else (shape[0], fan_out)
        if len(shape) != 2 or size != expected:
            side = "input" if match["matrix"] == "A" else "output"
            raise fail(
                weights,
                f"{name} has shape {shape}, but the model's {match['module']} has {side} size {expected} "
                f"(hidden size {(getattr(config, 'text_config', None) or config).hidden_size})",
            )
