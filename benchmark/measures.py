"""The definitions computed from a result's records, each written once: a curve's area (its accuracy
ratio's, and CPR / CMD of f), normalized faithfulness f, and CMAP's gain. The methods, the bootstrap
(`benchmark.uncertainty`) and the integrity checks all call these. Torch-free.
"""

from __future__ import annotations

from benchmark.records import CurvePoint


def curve_area(points: tuple[CurvePoint, ...], value=lambda point: point.faithfulness) -> float | None:
    """Trapezoid area of `value(point)` (default: the accuracy ratio) over the points' fractions (spans
    first to last fraction); None when there are no points or a value is undefined. The one definition of
    a curve's area: also CPR (the area of f) and CMD (the area of |1 - f|)."""
    values = [value(point) for point in points]
    if not points or any(v is None for v in values):
        return None
    pairs = zip(zip(points, values, strict=True), zip(points[1:], values[1:], strict=True), strict=False)
    return sum((b.fraction - a.fraction) * (va + vb) / 2 for (a, va), (b, vb) in pairs)


def normalized_faithfulness(circuit: float, empty: float, full: float) -> float | None:
    """f = (m(circuit) - m(empty)) / (m(full) - m(empty)) of mean logit differences: 1 for the unmodified
    model, 0 for the fully ablated one; None when those two agree (nothing to normalize by). The one
    definition, used by the method, the bootstrap and the integrity checks."""
    return None if full == empty else (circuit - empty) / (full - empty)


def cmap_gain(acc_patched: float, acc_base: float, acc_finetuned: float, min_gap: float) -> float | None:
    """Share of the accuracy gap a CMAP patch closes; None when |acc_finetuned - acc_base| < min_gap."""
    gap = acc_finetuned - acc_base
    return None if abs(gap) < min_gap else (acc_patched - acc_base) / gap + 0.0  # + 0.0: no -0.0


def cpr_value(point: CurvePoint) -> float | None:
    """The curve value CPR integrates: f."""
    return point.normalized


def cmd_value(point: CurvePoint) -> float | None:
    """The curve value CMD integrates: |1 - f|."""
    return None if point.normalized is None else abs(1.0 - point.normalized)
