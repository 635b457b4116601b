"""Inline SVG figures for the static page: head-effect heatmaps and faithfulness curves.

Written by hand rather than by matplotlib so the page is byte-identical across library versions (the CI
check compares a fresh build with the committed one). Every text from a submission is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from benchmark.kinds import Heads
from benchmark.records import Curve, CurvePoint, DiscoveryStage
from benchmark.submission.kinds import EFFECT_UNIT, group_title

HEATMAP_WIDTH = 192  # pixels for the head axis, at most
HEATMAP_MIN_SVG_WIDTH = 240
CURVE_SIZE = (460, 300)
_MARGIN = (58, 28, 14, 40)  # left, top, right, bottom (room for tick labels and axis titles)
LEGEND_ROW = 16  # pixels per legend line, below the plot
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


def _ticks(n: int, most: int = 8) -> range:
    """Integer tick positions 0, step, 2 step... with at most about `most` of them."""
    return range(0, n, max(1, -(-n // most)))


def _heatmap_axes(n_layers: int, n_heads: int, cell: int, left: int, top: int) -> list[str]:
    """Integer tick labels for heads (below) and layers (left, layer 0 at the bottom), and axis titles."""
    bottom = top + n_layers * cell
    parts = [
        f'<text x="{left + h * cell + cell / 2:.1f}" y="{bottom + 12}" text-anchor="middle">{h}</text>'
        for h in _ticks(n_heads)
    ]
    parts += [
        f'<text x="{left - 4}" y="{top + (n_layers - 1 - layer) * cell + cell / 2 + 4:.1f}" '
        f'text-anchor="end">{layer}</text>'
        for layer in _ticks(n_layers)
    ]
    parts.append(
        f'<text x="{left + n_heads * cell / 2:.1f}" y="{bottom + 25}" text-anchor="middle">head</text>'
    )
    parts.append(
        f'<text x="10" y="{top + n_layers * cell / 2:.1f}" transform="rotate(-90 10 '
        f'{top + n_layers * cell / 2:.1f})" text-anchor="middle">layer</text>'
    )
    return parts


def _colour_scale(limit: float, x: int, y: int, width: int) -> list[str]:
    """A horizontal key from -limit (red) through 0 (white) to +limit (blue), labelled at both ends and 0."""
    steps = 11
    swatch = width / steps
    parts = [
        f'<rect x="{x + i * swatch:.1f}" y="{y}" width="{swatch + 0.5:.1f}" height="8" '
        f'fill="{colour((2 * i / (steps - 1) - 1) * limit, limit)}"/>'
        for i in range(steps)
    ]
    labels = (
        (x, "start", f"{-limit:.3g}"),
        (x + width / 2, "middle", "0"),
        (x + width, "end", f"+{limit:.3g}"),
    )
    parts += [
        f'<text x="{lx:.1f}" y="{y + 20}" text-anchor="{anchor}">{text}</text>' for lx, anchor, text in labels
    ]
    parts.append(f'<text x="{x + width / 2:.1f}" y="{y + 33}" text-anchor="middle">{EFFECT_UNIT}</text>')
    return parts


def heatmap(stage: DiscoveryStage, kept: Heads | None) -> str:
    """One stage's mean effects as a [layer x head] grid (layer 0 at the bottom) with integer ticks and a
    colour key; the circuit's heads outlined solid, heads selected and then pruned dashed, and heads whose
    effect is only the attribution pre-filter's estimate faded."""
    title = group_title(stage.group, None if kept is None else len(kept), len(stage.selected))
    if stage.mean is None:
        reason = escape(stage.skipped_because or "stage skipped")
        body = [f'<text x="4" y="16" class="t">{escape(title)}</text>', f'<text x="4" y="36">{reason}</text>']
        return _svg(HEATMAP_WIDTH + 60, 48, title, body)
    n_layers, n_heads = len(stage.mean), len(stage.mean[0])
    cell = max(3, min(24, HEATMAP_WIDTH // n_heads))
    left, top = 40, 22
    grid_width = n_heads * cell
    width, height = max(HEATMAP_MIN_SVG_WIDTH, left + grid_width + 8), top + n_layers * cell + 72
    limit = max((abs(v) for row in stage.mean for v in row), default=0.0)
    body = [f'<text x="4" y="14" class="t">{escape(title)}</text>']
    estimated = set(map(tuple, stage.prefilter.estimated)) if stage.prefilter else set()
    for layer, row in enumerate(stage.mean):
        y = top + (n_layers - 1 - layer) * cell
        for head, value in enumerate(row):
            guess = (layer, head) in estimated
            fade, note = (' fill-opacity="0.4"', " (AtP estimate)") if guess else ("", "")
            body.append(
                f'<rect x="{left + head * cell}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{colour(value, limit)}"{fade}>'
                f"<title>L{layer} H{head}: {value:.4g}{note}</title></rect>"
            )
    survivors = set(map(tuple, stage.selected if kept is None else kept))
    for layer, head in stage.selected:
        y = top + (n_layers - 1 - layer) * cell
        css = "sel" if (layer, head) in survivors else "pruned"
        body.append(f'<rect x="{left + head * cell}" y="{y}" width="{cell}" height="{cell}" class="{css}"/>')
    body += _heatmap_axes(n_layers, n_heads, cell, left, top)
    body += _colour_scale(limit, left, top + n_layers * cell + 32, max(grid_width, 150))
    return _svg(max(width, left + 158), height, title, body)


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


def _axes(at, box, y_max: float, y_label: str = "faithfulness (circuit / full accuracy)") -> list[str]:
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
        "fraction of all heads in the circuit (the top-k by path-patching effect)</text>"
    )
    middle = top + plot_h / 2
    parts.append(
        f'<text x="14" y="{middle:.1f}" transform="rotate(-90 14 {middle:.1f})" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    return parts


def _legend(entries: Sequence[tuple[str, str, str]], x: float, y: float) -> list[str]:
    """One line per (css class or colour, dash pattern, label): a short stroke of the line's style, then the
    label, so each colour is tied to its name."""
    parts = []
    for i, (stroke, dash, label) in enumerate(entries):
        row = y + i * LEGEND_ROW
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{x}" y1="{row - 4}" x2="{x + 24}" y2="{row - 4}" stroke="{stroke}" '
            f'stroke-width="2"{dashes}/>'
        )
        parts.append(f'<text x="{x + 30}" y="{row}">{escape(label)}</text>')
    return parts


@dataclass(frozen=True)
class CurveValue:
    """What a curve chart draws of each point, how its axis is labelled, and its areas' legend text."""

    value: Callable[[CurvePoint], float | None]
    y_label: str
    areas: Callable[[Curve], str]


RATIO = CurveValue(
    lambda p: p.faithfulness,
    "faithfulness (circuit / full accuracy)",
    lambda c: "area under the curve " + ("n/a" if c.area is None else f"{c.area:.3f}"),
)
NORMALIZED = CurveValue(
    lambda p: None if p.normalized is None else max(0.0, p.normalized),  # below 0 drawn at 0
    "f of the logit difference (below 0 at 0)",
    lambda c: "CPR n/a" if c.cpr is None else f"CPR {c.cpr:.3f}, CMD {c.cmd:.3f}",
)


def curves(
    series: Sequence[Series], baselines: Sequence[tuple[str, float]], title: str, drawn: CurveValue = RATIO
) -> str:
    """Faithfulness over circuit size, one polyline per series, dashed lines for the baselines, and a
    legend below the plot with each line's colour and style."""
    values = [v for s in series for p in s.curve.points if (v := drawn.value(p)) is not None]
    y_max = max([1.2, *values, *(v for _, v in baselines)]) * 1.05
    at, box = _plot_geometry(y_max)
    body = [
        f'<text x="{box[0]}" y="16" class="t">{escape(title)}</text>',
        *_axes(at, box, y_max, drawn.y_label),
    ]
    legend = []
    for i, item in enumerate(series):
        colour_ = CURVE_COLOURS[i % len(CURVE_COLOURS)]
        values = [(p.fraction, drawn.value(p)) for p in item.curve.points]
        points = [at(fraction, value) for fraction, value in values if value is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour_}" stroke-width="2"/>')
        legend.append((colour_, "", f"{item.label} ({drawn.areas(item.curve)})"))
    for label, value in baselines:
        _, y = at(0, value)
        colour_, dash = ("#b8860b", "1 3") if label.startswith("all heads") else ("#777", "6 3")
        body.append(
            f'<line x1="{box[0]}" y1="{y:.1f}" x2="{box[0] + box[2]}" y2="{y:.1f}" stroke="{colour_}" '
            f'stroke-dasharray="{dash}"/>'
        )
        legend.append((colour_, dash, f"{label}: {value:.3f}"))
    legend.append(("#000", "2 2", "faithfulness 1 (the circuit does what the model does)"))
    width, height = CURVE_SIZE
    body += _legend(legend, box[0], height + 4)
    return _svg(width, height + 8 + LEGEND_ROW * len(legend), title, body)


INTERVAL_ROW = 18  # pixels per estimate in the interval chart
_INTERVAL_LABEL = 250  # pixels for the labels left of the axis


def intervals(items: Sequence[tuple[str, float, float, float]], title: str) -> str:
    """One row per (label, value, low, high): a dot at the value and a bar over its 95% interval, on a
    shared axis from min(0, lows) to max(1, highs), with dotted lines at 0 and 1."""
    lo = min([0.0, *(low for _, _, low, _ in items)])
    hi = max([1.0, *(high for _, _, _, high in items)])
    width, plot_w, top = _INTERVAL_LABEL + 300, 280, 28
    x = lambda v: _INTERVAL_LABEL + (v - lo) / (hi - lo) * plot_w  # noqa: E731
    bottom = top + INTERVAL_ROW * len(items)
    body = [f'<text x="4" y="16" class="t">{escape(title)}</text>']
    for tick in sorted({lo, 0.0, 0.5, 1.0, hi}):
        body.append(f'<text x="{x(tick):.1f}" y="{bottom + 14}" text-anchor="middle">{tick:.2g}</text>')
    for mark in (0.0, 1.0):
        body.append(f'<line x1="{x(mark):.1f}" y1="{top - 6}" x2="{x(mark):.1f}" y2="{bottom}" class="one"/>')
    for i, (label, value, low, high) in enumerate(items):
        y = top + i * INTERVAL_ROW + INTERVAL_ROW / 2
        body.append(
            f'<text x="{_INTERVAL_LABEL - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
        body.append(
            f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" stroke="#1b6ca8" '
            'stroke-width="3"/>'
        )
        body.append(f'<circle cx="{x(value):.1f}" cy="{y:.1f}" r="3.5" fill="#000"/>')
    return _svg(width, bottom + 22, title, body)


def layer_shares(runs: Sequence, title: str) -> str:
    """Each mechanism-mix answer's share (y, 0 to 1) over the patched layer (x), one line per answer."""
    width, left, top, plot_w, plot_h = 460, 50, 28, 380, 170
    height = top + plot_h + 40 + 4 * LEGEND_ROW
    n = max(len(runs) - 1, 1)
    at = lambda i, v: (left + i / n * plot_w, top + (1 - v) * plot_h)  # noqa: E731
    body = [f'<text x="{left}" y="16" class="t">{escape(title)}</text>']
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    for tick in (0.0, 0.5, 1.0):
        body.append(f'<text x="{left - 6}" y="{at(0, tick)[1] + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for i in _ticks(len(runs)):
        body.append(f'<text x="{at(i, 0)[0]:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{i}</text>')
    body.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 28}" text-anchor="middle">layer patched</text>'
    )
    legend = []
    for colour_, answer in zip(
        CURVE_COLOURS, ("positional", "lexical", "reflexive", "original"), strict=True
    ):
        points = [at(i, v) for i, run in enumerate(runs) if (v := getattr(run, answer)) is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour_}" stroke-width="2"/>')
        legend.append((colour_, "", f"{answer} share"))
    body += _legend(legend, left, top + plot_h + 48)
    return _svg(width, height, title, body)
