"""PNG figures of a run: per-stage head-effect heatmaps and faithfulness curves (matplotlib).

Figures are plain `matplotlib.figure.Figure` objects rendered by Agg, so pyplot's global state and the
user's backend are never touched. The only module of the methods layer that writes files, and only to the
path it is given. The same data gives the same bytes (no software or time stamp in the PNG metadata).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from benchmark.circuit import Head
from benchmark.records import Curve, Discovery, DiscoveryStage
from benchmark.submission.kinds import EFFECT_UNIT, group_title

DPI = 100
PANEL_SIZE = (3.6, 3.4)  # inches per heatmap panel
CURVE_SIZE = (6.4, 4.4)  # inches


def _save(figure: Figure, path: str | Path) -> Path:
    """Write `figure` as a PNG without metadata that changes between runs, and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


# How a head is outlined: in the circuit (kept after minimality pruning), or selected and then pruned.
KEPT_STYLE = {"edgecolor": "black", "linewidth": 1.6, "linestyle": "-"}
PRUNED_STYLE = {"edgecolor": "0.35", "linewidth": 1.0, "linestyle": "--"}
# A head the attribution pre-filter left out: hatched, its colour being AtP's estimate, not an exact effect.
ESTIMATED_STYLE = {"edgecolor": "0.6", "linewidth": 0.0, "hatch": "////"}


def stage_title(stage: DiscoveryStage, kept: Sequence[Head] | None) -> str:
    """The panel's title: the group and how many of its selected heads the circuit kept."""
    return group_title(stage.group.value, None if kept is None else len(kept), len(stage.selected))


def head_marks(stage: DiscoveryStage, kept: Sequence[Head] | None) -> list[tuple[Head, dict]]:
    """Each selected head with its outline style: kept heads solid, pruned ones dashed."""
    survivors = set(stage.selected if kept is None else kept)
    return [(head, KEPT_STYLE if head in survivors else PRUNED_STYLE) for head in stage.selected]


def _draw_stage(axes, stage: DiscoveryStage, kept: Sequence[Head] | None) -> None:
    """One heatmap [layer, head] of a stage's mean effects, centred at 0, selected heads outlined."""
    axes.set_title(stage_title(stage, kept), fontsize=9)
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    if stage.mean is None:
        axes.text(0.5, 0.5, "stage skipped", ha="center", va="center", transform=axes.transAxes)
        axes.set_xticks([])
        axes.set_yticks([])
        return
    effects = np.asarray(stage.mean, dtype=float)  # [layer, head]
    limit = max(float(np.abs(effects).max()), 1e-9)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    image = axes.imshow(effects, cmap="RdBu", norm=norm, origin="lower", aspect="auto")
    axes.figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label=EFFECT_UNIT)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    for (layer, head), style in head_marks(stage, kept):
        axes.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, **style))
    for layer, head in stage.prefilter.estimated if stage.prefilter else ():  # AtP's estimate only
        axes.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, **ESTIMATED_STYLE))


def plot_head_effects(
    effects: Discovery | Sequence[DiscoveryStage], path: str | Path, title: str | None = None
) -> Path:
    """One heatmap per path-patching stage (layer x head, diverging colours), with the circuit's heads
    outlined solid and the selected-then-pruned ones dashed (only a whole `Discovery` record knows which
    survived). Draws from the result file's records, as the leaderboard page does."""
    stages = tuple(effects.stages if isinstance(effects, Discovery) else effects)
    if not stages:
        raise ValueError("no stages to plot")
    circuit = effects.groups if isinstance(effects, Discovery) else None
    width, height = PANEL_SIZE
    figure = Figure(figsize=(width * len(stages), height))
    axes = figure.subplots(1, len(stages), squeeze=False)
    for axis, stage in zip(axes[0], stages, strict=True):
        _draw_stage(axis, stage, None if circuit is None else circuit[stage.group])
    if title:
        figure.suptitle(title)
    keys = [Patch(fill=False, label="in the circuit (kept after pruning)", **KEPT_STYLE)]
    keys += [Patch(fill=False, label="selected, then pruned", **PRUNED_STYLE)] if circuit is not None else []
    figure.legend(handles=keys, loc="lower center", ncol=len(keys), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(figure, path)


def plot_faithfulness_curves(
    curves: Mapping[str, Curve],
    path: str | Path,
    baselines: Mapping[str, float] | None = None,
    title: str = "Faithfulness over circuit size",
) -> Path:
    """Faithfulness against the fraction of heads kept, one line per label (area in the legend);
    `baselines` {label: value} adds dashed horizontal lines (e.g. a random circuit's mean)."""
    if not curves:
        raise ValueError("no curves to plot")
    figure = Figure(figsize=CURVE_SIZE)
    axes = figure.subplots()
    for label, curve in curves.items():
        x = [point.fraction for point in curve.points]
        y = [point.faithfulness for point in curve.points]
        area = "undefined" if curve.area is None else f"{curve.area:.3f}"
        axes.plot(x, y, marker="o", markersize=3, label=f"{label} (area {area})")
    for label, value in (baselines or {}).items():
        axes.axhline(value, linestyle="--", linewidth=1, color="grey", label=f"{label} ({value:.3f})")
    axes.axhline(1.0, linestyle=":", linewidth=0.8, color="black")
    axes.set_xlim(0, 1)
    axes.set_xlabel("fraction of all heads in the circuit (the top-k by path-patching effect)")
    axes.set_ylabel("faithfulness (circuit / full accuracy)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def heatmap_pixels(n_stages: int) -> tuple[int, int]:
    """(width, height) in pixels of `plot_head_effects` with `n_stages` panels."""
    return round(PANEL_SIZE[0] * n_stages * DPI), round(PANEL_SIZE[1] * DPI)


def curve_pixels() -> tuple[int, int]:
    """(width, height) in pixels of `plot_faithfulness_curves`."""
    return round(CURVE_SIZE[0] * DPI), round(CURVE_SIZE[1] * DPI)
