"""Load a model or a pair, record what was loaded, and find the attention heads (architecture adapter)."""

from benchmark.models.adapter import (
    ARCHITECTURES,
    QKV,
    ArchitectureAdapter,
    ArchitectureSpec,
    HeadShape,
    UnsupportedArchitectureError,
    head_shape,
)

__all__ = [
    "ARCHITECTURES",
    "QKV",
    "ArchitectureAdapter",
    "ArchitectureSpec",
    "HeadShape",
    "UnsupportedArchitectureError",
    "head_shape",
]
