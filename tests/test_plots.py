"""The PNG figures: readable images of the documented size, the same bytes for the same data."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from benchmark.circuit import Circuit, Group
from benchmark.faithfulness import CurvePoint, FaithfulnessCurve
from benchmark.path_patching.discovery import DiscoveryConfig, DiscoveryResult, StageResult
from benchmark.path_patching.sweep import StageEffects
from benchmark.plots import curve_pixels, heatmap_pixels, plot_faithfulness_curves, plot_head_effects
from benchmark.records import Curve, Discovery


def _discovery_run() -> DiscoveryResult:
    """Four stages on a 6-layer x 8-head model: three with effects and selected heads, the last skipped."""
    generator = torch.Generator().manual_seed(0)
    stages = []
    for group in (Group.VALUE_FETCHER, Group.POSITION_TRANSMITTER, Group.POSITION_DETECTOR):
        mean = torch.randn(6, 8, generator=generator) * 0.05  # [layer, head]
        mean[5, 2] = -0.6
        stages.append(StageResult(group, StageEffects(mean, mean.abs() / 10, 64), ((5, 2), (1, 7))))
    stages.append(StageResult(Group.STRUCTURE_READER, None, (), "no receivers"))
    circuit = Circuit.of({stage.group: stage.selected for stage in stages})
    return DiscoveryResult(DiscoveryConfig(), tuple(stages), circuit, circuit)


def _discovery() -> Discovery:
    """The record the plots draw from (as the result file holds it)."""
    return _discovery_run().record()


def _curve(scale: float) -> Curve:
    fractions = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
    points = tuple(
        CurvePoint(f, max(1, round(f * 48)), 0.6 * scale * f**0.3, scale * f**0.3) for f in fractions
    )
    return FaithfulnessCurve(0.6, (), points).record()


def _read_png(path) -> Image.Image:
    assert path.is_file() and path.stat().st_size > 1000
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image


def test_head_effect_heatmaps_are_a_png_of_the_expected_size(tmp_path):
    path = plot_head_effects(_discovery(), tmp_path / "figures" / "effects.png", title="tiny")
    assert path == tmp_path / "figures" / "effects.png"
    assert _read_png(path).size == heatmap_pixels(4)


def test_heatmaps_accept_a_sequence_of_stages(tmp_path):
    stages = _discovery().stages[:2]
    assert _read_png(plot_head_effects(stages, tmp_path / "two.png")).size == heatmap_pixels(2)
    with pytest.raises(ValueError, match="no stages"):
        plot_head_effects((), tmp_path / "none.png")


def test_faithfulness_curves_are_one_png_of_the_expected_size(tmp_path):
    curves = {"base": _curve(0.8), "fine-tuned": _curve(1.0)}
    path = plot_faithfulness_curves(curves, tmp_path / "curves.png", baselines={"random (base)": 0.02})
    assert _read_png(path).size == curve_pixels()
    with pytest.raises(ValueError, match="no curves"):
        plot_faithfulness_curves({}, tmp_path / "none.png")


def test_the_same_data_gives_the_same_bytes(tmp_path):
    for name in ("a", "b"):
        plot_head_effects(_discovery(), tmp_path / f"effects-{name}.png")
        plot_faithfulness_curves({"base": _curve(1.0)}, tmp_path / f"curve-{name}.png")
    for kind in ("effects", "curve"):
        assert (tmp_path / f"{kind}-a.png").read_bytes() == (tmp_path / f"{kind}-b.png").read_bytes()
    plot_faithfulness_curves({"base": _curve(0.5)}, tmp_path / "curve-c.png")
    assert (tmp_path / "curve-c.png").read_bytes() != (tmp_path / "curve-a.png").read_bytes()


def test_titles_count_the_heads_kept_after_pruning_and_marks_tell_them_apart():
    from benchmark.plots import KEPT_STYLE, PRUNED_STYLE, head_marks, stage_title

    stage = _discovery().stages[0]  # selected (5, 2) and (1, 7)
    kept = ((5, 2),)
    assert stage_title(stage, kept) == "A: value fetcher, 1 kept of 2 selected"
    assert stage_title(stage, ()) == "A: value fetcher, 0 kept of 2 selected"
    assert stage_title(stage, None) == "A: value fetcher, 2 selected"
    assert head_marks(stage, kept) == [((5, 2), KEPT_STYLE), ((1, 7), PRUNED_STYLE)]


def test_pruned_heads_change_the_picture(tmp_path):
    discovery = _discovery_run()
    pruned = Circuit.of({s.group: s.selected[:1] for s in discovery.stages})
    plot_head_effects(discovery.record(), tmp_path / "all-kept.png")
    plot_head_effects(
        DiscoveryResult(DiscoveryConfig(), discovery.stages, discovery.circuit, pruned).record(),
        tmp_path / "p.png",
    )
    assert (tmp_path / "all-kept.png").read_bytes() != (tmp_path / "p.png").read_bytes()
