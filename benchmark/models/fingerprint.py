"""What was loaded, exactly: SHA-256 of weight files, adapters and vocabulary, in a JSON-ready record.

lm-eval leaves the model hash empty for local and offline models; a result of the suite must name the
bytes it measured, so every loaded model carries a `ModelRecord` (`benchmark.models.identity`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from benchmark.models.identity import AdapterRecord

CHUNK_BYTES = 8 * 1024 * 1024
PROGRESS_MIN_BYTES = 256 * 1024 * 1024  # show a progress bar above this much to hash
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_MACHINE_SPECIFIC_ADAPTER_KEYS = ("base_model_name_or_path", "revision")


def sha256_files(paths: Sequence[Path], progress: bool | None = None, desc: str = "sha256") -> str:
    """SHA-256 of the files' bytes in the given order, read in chunks so a 14 GB model never sits in memory.

    A single file hashes to what `sha256sum` prints. `progress=None` shows a bar only for large totals.
    """
    total = sum(path.stat().st_size for path in paths)
    show = total >= PROGRESS_MIN_BYTES if progress is None else progress
    digest = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not show) as bar:
        for path in paths:
            with open(path, "rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    digest.update(chunk)
                    bar.update(len(chunk))
    return digest.hexdigest()


def weight_files(directory: Path, gguf_file: str | None = None) -> tuple[Path, ...]:
    """The weight files `from_pretrained` reads from `directory`, sorted by name.

    A GGUF file alone; else the shards named by a safetensors (or .bin) index; else model.safetensors
    (or pytorch_model.bin); else every top-level *.safetensors, then every *.bin file.
    """
    if gguf_file is not None:
        return (directory / gguf_file,)
    for index_name in _INDEXES:
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return tuple(directory / shard for shard in shards)
    for name in _SINGLE_FILES:
        if (directory / name).is_file():
            return (directory / name,)
    for pattern in ("*.safetensors", "*.bin"):
        found = sorted(path for path in directory.glob(pattern) if path.is_file())
        if found:
            return tuple(found)
    return ()


# Files beside the weights that change what a model computes or how its prompts are tokenized.
_SETTINGS_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt",
)  # fmt: skip


def settings_files(directory: Path) -> tuple[Path, ...]:
    """The config and tokenizer files present in a model directory, in a fixed order."""
    return tuple(directory / name for name in _SETTINGS_FILES if (directory / name).is_file())


def vocab_sha256(vocab: dict[str, int]) -> str:
    """SHA-256 of the token -> id map as canonical JSON: equal hashes mean identical vocabularies."""
    canonical = json.dumps(sorted(vocab.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def adapter_record(directory: Path) -> AdapterRecord:
    """Hash an adapter directory written by PEFT's `save_pretrained`."""
    config = json.loads((directory / "adapter_config.json").read_text())
    portable = {k: v for k, v in config.items() if k not in _MACHINE_SPECIFIC_ADAPTER_KEYS}
    canonical = json.dumps(portable, sort_keys=True, separators=(",", ":"))
    files = [directory / name for name in _ADAPTER_WEIGHTS if (directory / name).is_file()]
    return AdapterRecord(
        path=str(directory),
        weights_sha256=sha256_files(files, desc=f"sha256 {directory.name}"),
        config_sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        peft_type=str(config.get("peft_type", "")),
    )
