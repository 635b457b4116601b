"""Identity of a model in a result: where it came from, the hashes of its bytes, its head geometry.

Torch-free records: the loader fills them (`fingerprint`, `loading`), the result file stores them as
they are, and the leaderboard reads them back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark.kinds import Positive, Sha256


@dataclass(frozen=True)
class HeadShape:
    """The head geometry of a model, read from its config."""

    n_layers: Positive
    n_heads: Positive
    n_kv_heads: Positive
    head_dim: Positive

    @property
    def n_components(self) -> int:
        return self.n_layers * self.n_heads

    @property
    def group_size(self) -> int:
        """Query heads per key-value group (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads


@dataclass(frozen=True)
class AdapterRecord:
    """One PEFT adapter of the chain: where it came from and the hashes of its weights and settings."""

    path: str
    weights_sha256: Sha256
    config_sha256: Sha256  # adapter_config.json without machine-specific keys (base model path, revision)
    peft_type: str

    @property
    def name(self) -> str:
        """The adapter's folder (or hub repository) name, without the rest of its path."""
        return Path(self.path).name or self.path


@dataclass(frozen=True)
class ModelRecord:
    """Identity of one loaded model for a result: source, revision, bytes, geometry and tokenizer."""

    id: str
    revision: str | None
    gguf_file: str | None
    adapters: tuple[AdapterRecord, ...]
    dtype: str
    model_type: str
    architecture: str | None
    head_shape: HeadShape
    tokenizer_class: str
    vocab_size: Positive
    vocab_sha256: Sha256
    config_sha256: Sha256 | None  # config.json's bytes; None for GGUF (its config lives in the hashed file)
    weight_files: tuple[str, ...]
    weights_sha256: Sha256
    trust_remote_code: bool = False

    def to_dict(self) -> dict:
        """Plain JSON types only (nested dicts and lists)."""
        record = asdict(self)
        record["adapters"] = [dict(adapter) for adapter in record["adapters"]]
        record["weight_files"] = list(self.weight_files)
        return record

    @classmethod
    def from_dict(cls, record: dict) -> ModelRecord:
        """Inverse of `to_dict`, for reading a stored result."""
        return cls(
            **{
                **record,
                "adapters": tuple(AdapterRecord(**adapter) for adapter in record["adapters"]),
                "head_shape": HeadShape(**record["head_shape"]),
                "weight_files": tuple(record["weight_files"]),
            }
        )
