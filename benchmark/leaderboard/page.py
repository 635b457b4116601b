"""The static leaderboard page: one self-contained HTML file, no network (inline CSS, JS and SVG).

The table sorts by clicking a header, or on load from `?sort=KEY:desc` / `#sort=KEY:asc`. Below it, one
section per pair with the head-effect heatmaps, faithfulness curves, DCM and CMAP tables. Every string
that comes from a submission goes through `html.escape`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from benchmark.leaderboard.sections import (
    SIDES,
    diagnostics_section,
    display,
    faithfulness_figure,
    grid,
    mechanism_section,
    uncertainty_section,
)
from benchmark.leaderboard.svg import heatmap
from benchmark.leaderboard.table import COLUMNS, MISSING, Column, Entry, dcm_iou, model_label, shown
from benchmark.records import Result
from benchmark.submission.kinds import GROUP_NAMES

TITLE = "entity-tracking-bench leaderboard"
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 24px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td.text, th.text { text-align: left; }
#leaderboard td.file { font-size: 11px; word-break: break-all; min-width: 120px; }
#leaderboard th { background: #f0f3f7; cursor: pointer; user-select: none; font-size: 12px; }
#leaderboard th[aria-sort=ascending]::after { content: " \\25B2"; }
#leaderboard th[aria-sort=descending]::after { content: " \\25BC"; }
#leaderboard td.flag { color: #b03a2e; font-weight: bold; }
section.detail { border-top: 2px solid #ccd; margin-top: 24px; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
svg text { font: 11px sans-serif; fill: #333; }
svg text.t { font-weight: bold; }
svg rect.sel { fill: none; stroke: #000; stroke-width: 1.5; }
svg rect.pruned { fill: none; stroke: #555; stroke-width: 1; stroke-dasharray: 2 2; }
#leaderboard:not(.all) .more { display: none; }
#leaderboard td.pair { min-width: 200px; max-width: 360px; }
.pair span { display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
p.note { color: #555; font-size: 12px; }
svg rect.frame { fill: none; stroke: #999; }
svg line.one { stroke: #000; stroke-dasharray: 2 2; }
code { font-size: 12px; }
div.scroll { overflow-x: auto; }
"""
_SCRIPT = """
(function () {
  var table = document.getElementById("leaderboard");
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function value(row, index, numeric) {
    var raw = row.cells[index].getAttribute("data-value");
    if (raw === "") return null;
    return numeric ? Number(raw) : raw.toLowerCase();
  }
  function sortBy(key, descending) {
    var index = headers.findIndex(function (h) { return h.getAttribute("data-key") === key; });
    if (index < 0) return;
    var numeric = headers[index].getAttribute("data-type") === "num";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, index, numeric), y = value(b, index, numeric);
      if (x === null || y === null) return (x === null) - (y === null);
      var order = numeric ? x - y : (x < y ? -1 : x > y ? 1 : 0);
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    headers[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  headers.forEach(function (h) {
    h.addEventListener("click", function () {
      sortBy(h.getAttribute("data-key"), h.getAttribute("aria-sort") === "ascending");
    });
  });
  var toggle = document.getElementById("all-columns");
  toggle.addEventListener("change", function () { table.classList.toggle("all", toggle.checked); });
  var match = /sort=([a-z_]+)(?::(asc|desc))?/.exec(location.search + location.hash);
  if (match) sortBy(match[1], match[2] === "desc");
})();
"""


def anchor(entry: Entry) -> str:
    """A safe element id for a pair's detail section, from its file name."""
    return "detail-" + re.sub(r"[^A-Za-z0-9_-]+", "-", entry.file)


def _css(column: Column) -> str:
    """A cell's classes: alignment, the column's own key where it is styled, "more" when not brief."""
    css = "num" if column.numeric else "text"
    css += f" {column.key}" if column.key in ("pair", "flag", "file") else ""
    return css + ("" if column.brief else " more")


def _pair_cell(entry: Entry) -> str:
    """The base model on one line and the fine-tuned one on the next, linking to the pair's details."""
    models = entry.result.models
    base, finetuned = escape(model_label(models.base)), escape(model_label(models.finetuned))
    spans = f'<span title="{base}">{base}</span><span title="{finetuned}">&#8594; {finetuned}</span>'
    return f'<a href="#{anchor(entry)}">{spans}</a>'


def _row(entry: Entry) -> str:
    """One table row; each cell carries its raw value in data-value, which the script sorts by."""
    cells = []
    for column in COLUMNS:
        value = entry.values[column.key]
        sort_value = "" if value is None else (repr(value) if isinstance(value, float) else str(value))
        shown_value = shown(value, entry.intervals.get(column.key))
        text = _pair_cell(entry) if column.key == "pair" else escape(shown_value)
        cells.append(f'<td class="{_css(column)}" data-value="{escape(sort_value)}">{text}</td>')
    return f'<tr data-file="{escape(entry.file)}">{"".join(cells)}</tr>'


def table(rows: Sequence[Entry]) -> str:
    """The sortable leaderboard table."""
    headers = "".join(
        f'<th class="{_css(c)}" data-key="{c.key}" '
        f'data-type="{"num" if c.numeric else "text"}" title="{escape(c.description)}">{escape(c.title)}</th>'
        for c in COLUMNS
    )
    body = "\n".join(_row(entry) for entry in rows)
    hidden = ", ".join(escape(c.title) for c in COLUMNS if not c.brief)
    toggle = (
        f'<p><label><input type="checkbox" id="all-columns"> show all columns</label> (adds {hidden})</p>'
    )
    head = f'{toggle}<div class="scroll"><table id="leaderboard">\n<thead><tr>{headers}</tr></thead>'
    return f"{head}\n<tbody>\n{body}\n</tbody>\n</table></div>"


def _facts_table(facts: Sequence[tuple[str, object]]) -> str:
    rows = "".join(
        f'<tr><th class="text">{escape(k)}</th><td class="text">{escape(display(v))}</td></tr>'
        for k, v in facts
    )
    return f"<table>{rows}</table>"


def _facts(result: Result) -> list[tuple[str, object]]:
    facts: list[tuple[str, object]] = []
    for side, name in SIDES:
        model = getattr(result.models, side)
        facts += [
            (f"{name} model", model_label(model)),
            (f"{name} weights sha256 (before adapters)", model.weights_sha256),
            *(
                (f"{name} adapter {i}: {adapter.name}", f"weights sha256 {adapter.weights_sha256}")
                for i, adapter in enumerate(model.adapters, 1)
            ),
            (
                f"{name} dtype / type / tokenizer",
                f"{model.dtype} / {model.model_type} / {model.tokenizer_class}",
            ),
        ]
    shape, hardware = result.models.base.head_shape, result.hardware
    facts += [
        ("heads", f"{shape.n_layers} layers x {shape.n_heads} heads ({shape.n_kv_heads} key-value heads)"),
        (
            "suite / metric / schema",
            f"{result.suite.version} / {result.suite.metric_version} / {result.suite.schema_version}",
        ),
        ("preset", result.settings.preset),
        ("hardware", f"{hardware.device_name} ({hardware.device}), torch {hardware.torch_version}"),
        ("finished", result.timing.finished_at),
        ("run time (s)", result.timing.total_seconds),
    ]
    facts += [(f"split: {d.role}", f"{d.split_id} sha256 {d.sha256[:16]}...") for d in result.datasets]
    return facts


def _circuit_figures(result: Result) -> str:
    if result.circuits is None:
        return "<p>Circuit discovery did not run.</p>"
    parts = [
        "<p>Each cell is one head's path-patching effect as a sender: the relative change of p(answer), "
        "(p_patched - p_clean) / p_clean. Red: patching the head lowers p(answer); blue: raises it. "
        "Solid outline: in the circuit (kept after minimality pruning); dashed: selected, then pruned. "
        f"{escape(result.circuits.gqa_note)}</p>"
    ]
    for side, name in SIDES:
        circuit = getattr(result.circuits, side)
        figures = "".join(heatmap(stage, circuit.groups[stage.group]) for stage in circuit.stages)
        parts.append(f"<h4>{name} model: path-patching effect per head</h4>")
        parts.append(f'<div class="figures">{figures}</div>')
    return "\n".join(parts)


def _dcm_table(result: Result) -> str:
    """Per (group, desideratum): IoU ("undefined" for two empty sets) and the base heads' accuracies."""
    if result.dcm is None:
        return "<p>DCM did not run.</p>"
    rows = [
        (
            o.group,
            o.desideratum,
            _undefined(dcm_iou(result, o)),
            o.base_heads_in_base,
            o.base_heads_in_finetuned,
        )
        for o in result.dcm.overlap
    ]
    note = (
        '<p class="note">IoU of the heads DCM selects in each model ("undefined": neither model has any). '
        "The accuracy columns patch the base model's DCM heads with their counterfactual values, in the base "
        "model and in the fine-tuned one (test pairs).</p>"
    )
    headers = ("group", "desideratum", "IoU", "accuracy, base heads patched in base", "... in fine-tuned")
    return note + grid(headers, rows)


def _undefined(value: float | None) -> float | str:
    """A number, or the word for one that has no meaning here."""
    return "undefined" if value is None else value


def _cmap_table(result: Result) -> str:
    """The accuracy gap in words, then the patched accuracy, change and gain per head set."""
    cmap = result.cmap
    if cmap is None:
        return "<p>CMAP did not run.</p>"
    entries = [("circuit", cmap.circuit), *((g, cmap.groups[g]) for g in GROUP_NAMES)]
    rows = [
        (name, len(e.heads), e.acc_patched, e.change, e.gain) if e else (name, 0, None, None, None)
        for name, e in entries
    ]
    gap = cmap.acc_finetuned - cmap.acc_base
    defined = (
        "so gain = change / gap, the share of the gap closed"
        if cmap.gain_defined
        else "too small a gap for a gain, so only the raw change is shown"
    )
    note = (
        f"<p>accuracy of the base {cmap.acc_base:.3f}, of the fine-tuned {cmap.acc_finetuned:.3f}: "
        f"a gap of {gap:+.3f}, {defined}. Change = accuracy patched - accuracy of the base. "
        f"A dash: the group has no heads.</p>"
    )
    return note + grid(("heads patched", "n heads", "accuracy patched", "change", "gain"), rows)


def detail(entry: Entry) -> str:
    """A pair's section: facts, heatmaps, curves, DCM overlap and CMAP."""
    result = entry.result
    return "\n".join(
        [
            f'<section class="detail" id="{anchor(entry)}">',
            f"<h2>{escape(str(entry.values['pair']))}</h2>",
            _facts_table(_facts(result)),
            "<h3>Circuits</h3>",
            _circuit_figures(result),
            "<h3>Faithfulness</h3>",
            faithfulness_figure(result),
            diagnostics_section(result),
            "<h3>Mechanism mix</h3>",
            mechanism_section(result),
            "<h3>Numbers with intervals</h3>",
            uncertainty_section(result),
            "<h3>DCM overlap</h3>",
            _dcm_table(result),
            "<h3>CMAP</h3>",
            _cmap_table(result),
            "</section>",
        ]
    )


def page(rows: Sequence[Entry]) -> str:
    """The whole page."""
    empty = "" if rows else '<p id="empty">No submissions yet.</p>'
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            f'<head><meta charset="utf-8"><title>{TITLE}</title><style>{_STYLE}</style></head>',
            "<body>",
            f"<h1>{TITLE}</h1>",
            f"<p>{len(rows)} submissions. Click a column header to sort. Built by "
            "<code>etbench leaderboard build</code> from <code>submissions/</code>; "
            "the columns are defined in <code>docs/metrics.md</code> (hover a header for a summary). "
            f"A dash ({MISSING}) means the stage did not run, the group has no heads, or the number is "
            "undefined.</p>",
            table(rows),
            empty,
            *(detail(entry) for entry in rows),
            f"<script>{_SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )
