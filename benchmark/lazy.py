"""Package namespaces that import their submodules on first use.

`from benchmark.data import Split` keeps working, but importing `benchmark.data.words` (torch-free) no
longer drags in `benchmark.data.tokenization` (torch) through the package's `__init__`. That keeps the
torch-free layers (configs, records, validation, the CLI's parser) fast to import: `etbench --help`
answers in a tenth of a second.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]) -> tuple[Callable, Callable]:
    """`__getattr__` and `__dir__` for `package`, whose names (values) live in its submodules (keys)."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # later look-ups are plain attributes
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
