"""Package namespaces whose names are imported on first use (PEP 562), so `etbench --help` stays fast.

A package lists which submodule defines each public name; `from benchmark.data import Split` still works,
but importing the package (or a light submodule of it) no longer pulls in torch or transformers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

Exports = Mapping[str, str]  # public name -> the submodule (relative to the package) that defines it


def lazy_exports(package: str, exports: Exports) -> tuple[Callable[[str], object], Callable[[], list]]:
    """`__getattr__` and `__dir__` for `package`, which defines none of `exports` itself.

    The first access imports the submodule and stores the value on the package, so later ones are plain
    attribute look-ups."""

    def __getattr__(name: str) -> object:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{submodule}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
