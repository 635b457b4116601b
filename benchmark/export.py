"""`etbench export`: write a model as a plain Hugging Face directory (config, safetensors, tokenizer).

The suite loads GGUF files (dequantised to float) and merges LoRA adapter chains in memory; other tools,
lm-eval's own CLI among them, want a directory that `from_pretrained` reads as it is. A GGUF-loaded model
refuses `save_pretrained` ("quantized with gguf and is not serializable"), so the weights are copied into a
model built from the same config without its quantisation entry, and that one is saved.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmark.models import ModelRecord, ModelSpec


class ExportError(Exception):
    """The export cannot be written (the CLI prints it in one line)."""


def plain_copy(model):
    """The same weights in a freshly built model whose config has no quantisation entry (serialisable)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict())
    return plain.eval()


def export_model(spec: ModelSpec, out: str | Path) -> ModelRecord:
    """Load `spec` (GGUF dequantised, adapters merged in order) and save it with its tokenizer into `out`,
    which must not hold a model already; returns the record of what was loaded (hashes, adapters)."""
    from benchmark.models import load_model

    out = Path(out)
    if (out / "config.json").exists():
        raise ExportError(f"{out} already holds a model (config.json); choose an empty or new directory")
    loaded = load_model(spec, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    plain_copy(loaded.model).save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return loaded.record
