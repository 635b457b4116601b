"""What the page says in words: undefined DCM overlaps, adapter hashes, CMAP's gap, kept and pruned heads,
and a default table narrower than the full one."""

from __future__ import annotations

import dataclasses
import re

from benchmark.leaderboard.page import page
from benchmark.leaderboard.svg import heatmap
from benchmark.leaderboard.table import COLUMNS, dcm_iou, entries, row_values
from benchmark.models.identity import AdapterRecord as Adapter
from benchmark.submission.synthetic import synthetic_result

RESULT = synthetic_result()


def _heads(masks, overlap) -> list:
    return [m.heads for m in masks if (m.group, m.desideratum) == (overlap.group, overlap.desideratum)]


def test_dcm_overlap_of_two_empty_head_sets_is_undefined_not_one():
    empty = [
        o for o in RESULT.dcm.overlap if not any(_heads(RESULT.dcm.base, o) + _heads(RESULT.dcm.finetuned, o))
    ]
    some = [o for o in RESULT.dcm.overlap if o not in empty]
    assert empty and some, "the synthetic result has both kinds"
    assert all(o.iou == 1.0 and dcm_iou(RESULT, o) is None for o in empty)
    assert [dcm_iou(RESULT, o) for o in some] == [o.iou for o in some]
    assert row_values(RESULT, "f.json")["dcm_overlap"] == sum(o.iou for o in some) / len(some)
    html = page(entries([("f.json", RESULT)]))
    assert html.count('<td class="text">undefined</td>') == len(empty)


def test_the_page_shows_adapter_hashes_and_cmap_in_words():
    adapter = Adapter("zoo/adapters/organism-finetuned", "ab" * 32, "cd" * 32, "LORA")
    finetuned = dataclasses.replace(RESULT.models.finetuned, adapters=(adapter,))
    result = dataclasses.replace(RESULT, models=dataclasses.replace(RESULT.models, finetuned=finetuned))
    html = page(entries([("f.json", result)]))
    assert "fine-tuned adapter 1: organism-finetuned" in html and f"weights sha256 {'ab' * 32}" in html
    assert "gain defined" not in html and "True" not in html
    gap = RESULT.cmap.acc_finetuned - RESULT.cmap.acc_base
    assert f"a gap of {gap:+.3f}, so gain = change / gap" in html


def test_heatmaps_outline_kept_and_pruned_heads_and_count_the_kept_ones():
    circuit = RESULT.circuits.base
    stage = circuit.stages[0]
    kept = circuit.groups[stage.group]
    svg = heatmap(stage, kept)
    assert f"A: value fetcher, {len(kept)} kept of {len(stage.selected)} selected" in svg
    assert svg.count('class="sel"') == len(kept)
    assert svg.count('class="pruned"') == len(stage.selected) - len(kept) > 0
    ticks = re.findall(r'text-anchor="middle">(\d+)</text>', svg)
    assert ticks and all(t.isdigit() for t in ticks), "integer head ticks"
    assert "relative change of p(answer)" in svg, "the colour key says what the colours are"


def test_the_default_table_is_narrower_and_the_rest_is_one_click_away():
    html = page(entries([("f.json", RESULT)]))
    hidden = [c for c in COLUMNS if not c.brief]
    assert 0 < len(hidden) < len(COLUMNS) - 8
    header = re.search(r"<thead>.*</thead>", html)[0]
    hidden_keys = re.findall(r'<th class="[^"]*\bmore\b[^"]*" data-key="(\w+)"', header)
    assert hidden_keys == [c.key for c in hidden]
    assert 'id="all-columns"' in html and 'classList.toggle("all"' in html
