"""Inline SVG figures for the static page: head-effect heatmaps and faithfulness curves.

Written by hand rather than by matplotlib so the page is byte-identical across library versions (the CI
check compares a fresh build with the committed one). Every text from a submission is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from benchmark.records import Curve, DiscoveryStage

HEATMAP_WIDTH = 192  # pixels for the head axis, at most
HEATMAP_MIN_SVG_WIDTH = 240
CURVE_SIZE = (420, 260)
_MARGIN = (44, 28, 12, 36)  # left, top, right, bottom
_RED, _BLUE, _WHITE = (178, 24, 43), (33, 102, 172), (247, 247, 247)
CURVE_COLOURS = ("#1b6ca8", "#c0392b", "#2e8b57", "#8e44ad")


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


def colour(value: float, limit: float) -> str:
    """Diverging colour: red below 0, blue above, near-white at 0 (matplotlib's RdBu, simplified)."""
    t = max(-1.0, min(1.0, value / limit)) if limit > 0 else 0.0
    return _mix(_WHITE, _RED, -t) if t < 0 else _mix(_WHITE, _BLUE, t)


def _svg(width: int, height: int, label: str, body: Sequence[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
    )
    return "\n".join([head, *body, "</svg>"])


def heatmap(stage: DiscoveryStage, title: str) -> str:
    """One stage's mean effects as a [layer x head] grid (layer 0 at the bottom), selected heads outlined."""
    if stage.mean is None:
        reason = escape(stage.skipped_because or "stage skipped")
        body = [f'<text x="4" y="16" class="t">{escape(title)}</text>', f'<text x="4" y="36">{reason}</text>']
        return _svg(HEATMAP_WIDTH + 60, 48, title, body)
    n_layers, n_heads = len(stage.mean), len(stage.mean[0])
    cell = max(3, min(24, HEATMAP_WIDTH // n_heads))
    left, top = 30, 22
    width, height = max(HEATMAP_MIN_SVG_WIDTH, left + n_heads * cell + 8), top + n_layers * cell + 24
    limit = max((abs(v) for row in stage.mean for v in row), default=0.0)
    body = [f'<text x="{left}" y="14" class="t">{escape(title)}</text>']
    for layer, row in enumerate(stage.mean):
        y = top + (n_layers - 1 - layer) * cell
        for head, value in enumerate(row):
            body.append(
                f'<rect x="{left + head * cell}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{colour(value, limit)}"><title>L{layer} H{head}: {value:.4g}</title></rect>'
            )
    for layer, head in stage.selected:
        y = top + (n_layers - 1 - layer) * cell
        body.append(f'<rect x="{left + head * cell}" y="{y}" width="{cell}" height="{cell}" class="sel"/>')
    body.append(f'<text x="{left}" y="{height - 8}">{n_heads} heads across, {n_layers} layers up</text>')
    return _svg(width, height, title, body)


@dataclass(frozen=True)
class Series:
    """One labelled curve of the faithfulness plot."""

    label: str
    curve: Curve


def _plot_geometry(y_max: float) -> tuple:
    left, top, right, bottom = _MARGIN
    width, height = CURVE_SIZE
    plot_w, plot_h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + x * plot_w, top + (1 - y / y_max) * plot_h

    return at, (left, top, plot_w, plot_h)


def _axes(at, box, y_max: float) -> list[str]:
    left, top, plot_w, plot_h = box
    parts = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>']
    for tick in (0.0, 0.5, 1.0):
        x, _ = at(tick, 0)
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{tick:g}</text>')
    for tick in (0.0, 0.5, 1.0):
        _, y = at(0, tick)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    _, one = at(0, 1.0)
    parts.append(f'<line x1="{left}" y1="{one:.1f}" x2="{left + plot_w}" y2="{one:.1f}" class="one"/>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 30}" text-anchor="middle">'
        "fraction of heads (top-k by effect)</text>"
    )
    return parts


def curves(series: Sequence[Series], baselines: Sequence[tuple[str, float]], title: str) -> str:
    """Faithfulness over circuit size, one polyline per series, dashed lines for the baselines."""
    values = [p.faithfulness for s in series for p in s.curve.points if p.faithfulness is not None]
    y_max = max([1.2, *values, *(v for _, v in baselines)]) * 1.05
    at, box = _plot_geometry(y_max)
    body = [f'<text x="{box[0]}" y="16" class="t">{escape(title)}</text>', *_axes(at, box, y_max)]
    for i, item in enumerate(series):
        colour_ = CURVE_COLOURS[i % len(CURVE_COLOURS)]
        points = [at(p.fraction, p.faithfulness) for p in item.curve.points if p.faithfulness is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        area = "n/a" if item.curve.area is None else f"{item.curve.area:.3f}"
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour_}" stroke-width="2"/>')
        body.append(
            f'<text x="{box[0] + 8}" y="{box[1] + 16 + 14 * i}" fill="{colour_}">'
            f"{escape(item.label)} (area {area})</text>"
        )
    for i, (label, value) in enumerate(baselines):
        _, y = at(0, value)
        body.append(f'<line x1="{box[0]}" y1="{y:.1f}" x2="{box[0] + box[2]}" y2="{y:.1f}" class="base"/>')
        body.append(
            f'<text x="{box[0] + box[2] - 4}" y="{y - 4 - 12 * i:.1f}" text-anchor="end">'
            f"{escape(label)} {value:.3f}</text>"
        )
    return _svg(*CURVE_SIZE, title, body)
