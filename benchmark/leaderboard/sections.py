"""The metric-v2 parts of a pair's details on the page: the faithfulness curves with their reference
lines, the position-scoped diagnostics, the mechanism mix and every number with its interval; and the
small table helpers the page shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from benchmark.leaderboard.svg import NORMALIZED, Series, curves, intervals, layer_shares
from benchmark.leaderboard.table import MISSING
from benchmark.records import Result

SIDES = (("base", "base"), ("finetuned", "fine-tuned"))  # (result field, display name)


def display(value: object) -> str:
    if value is None:
        return MISSING
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _grid_cell(value: object) -> str:
    css = "text" if isinstance(value, str) else "num"
    return f'<td class="{css}">{escape(display(value))}</td>'


def grid(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_grid_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def faithfulness_figure(result: Result) -> str:
    faith = result.faithfulness
    if faith is None:
        return "<p>Faithfulness did not run.</p>"
    note = (
        "<p>Point k keeps the top k heads of the path-patching ranking, each at the site of the group where "
        "its effect is most negative, and ablates everything else; the 100% point keeps every head at one "
        "site only, which is not the whole model.</p>"
    )
    series = [Series("base", faith.base.curve), Series("fine-tuned", faith.finetuned.curve)]
    figures = [curves(series, _baselines(faith, "ratio"), "faithfulness over circuit size (mean ablation)")]
    for block in (faith, *(result.other_ablations or ())):
        if block.base.own.normalized is None:
            continue
        pair = [Series("base", block.base.curve), Series("fine-tuned", block.finetuned.curve)]
        title = f"f over circuit size ({block.ablation} ablation)"
        figures.append(curves(pair, _baselines(block, "normalized"), title, NORMALIZED))
    return note + f'<div class="figures">{"".join(figures)}</div>'


def _baselines(block, kind: str) -> list[tuple[str, float]]:
    """Reference lines of the curve, per model: random circuits; all heads at all group sites (metric v2)."""
    lines = []
    for side, name in SIDES:
        model = getattr(block, side)
        random = model.random.mean if kind == "ratio" else model.random.normalized_mean
        lines.append((f"random ({name})", random))
        if model.diagnostics is not None:
            all_sites = model.diagnostics.all_sites
            value = all_sites.faithfulness if kind == "ratio" else all_sites.normalized
            lines.append((f"all heads at all group sites ({name})", value))
    return [(label, value) for label, value in lines if value is not None]


def mechanism_section(result: Result) -> str:
    """Per model: the query label's and the last token's curves over layers, and the group patches."""
    mechanism = result.mechanism
    if mechanism is None:
        return "<p>No mechanism mix (a result before metric v2, or fewer than 4 boxes).</p>"
    parts = [
        "<p>Share of each answer when a piece of the counterfactual run is patched into the clean run, over "
        "the prompts both runs answer correctly (docs/metrics.md has a worked example).</p>"
    ]
    rows = []
    for side, name in SIDES:
        mix = getattr(mechanism, side)
        layer = "none" if mix.positional_layer is None else mix.positional_layer
        parts.append(
            f"<h4>{name} model: {mix.n_kept} of {mix.n_prompts} prompts kept; first mostly positional "
            f"layer of the query label: {layer}</h4>"
        )
        figures = layer_shares(mix.query_label, "query label's residual") + layer_shares(
            mix.last_token, "last token's residual"
        )
        parts.append(f'<div class="figures">{figures}</div>')
        for group, run in mix.groups.items():
            values = (
                (MISSING,) * 5
                if run is None
                else (run.original, run.positional, run.lexical, run.reflexive, run.other)
            )
            rows.append((name, group.value, *values))
    headers = ("model", "heads patched", "original", "positional", "lexical", "reflexive", "other")
    return "\n".join(parts) + grid(headers, rows)


def diagnostics_section(result: Result) -> str:
    """Per ablation and model: the circuit run and its three position-scoped variants."""
    rows = []
    blocks = (result.faithfulness, *(result.other_ablations or ())) if result.faithfulness else ()
    for block in blocks:
        for side, name in SIDES:
            model = getattr(block, side)
            found = model.diagnostics
            if found is None:
                continue
            runs = (model.own, found.context_kept, found.query_kept, found.all_sites)
            rows.append(
                (
                    block.ablation,
                    name,
                    *(
                        f"{r.faithfulness:.3f} / {r.normalized:.3f}"
                        if r.normalized is not None and r.faithfulness is not None
                        else MISSING
                        for r in runs
                    ),
                )
            )
    if not rows:
        return ""
    note = (
        "<p>Accuracy ratio / f of the circuit run, then of the same run with every head at every context "
        "position kept clean (up to the context's last label), with every head of the query segment kept "
        "clean, and of every head kept at every group site and nothing else (what a four-group circuit "
        "could keep at most; not an upper bound, since keeping more heads can lower faithfulness).</p>"
    )
    headers = ("ablation", "model", "circuit", "context kept", "query kept", "all group sites")
    return note + grid(headers, rows)


def uncertainty_section(result: Result) -> str:
    """The main numbers as dots with their 95% intervals, then every estimate in a table."""
    if not result.uncertainty:
        return "<p>This result predates intervals (metric v1): its numbers carry none.</p>"
    main = [e for e in result.uncertainty if e.low is not None and _charted(e.name)]
    chart = intervals(
        [(e.name, e.value, e.low, e.high) for e in main], "95% intervals (bootstrap over contexts)"
    )
    note = (
        f"<p>Each interval resamples whole contexts {result.settings.bootstrap.n_resamples} times (seed "
        f"{result.settings.bootstrap.seed}); a change (fine-tuned minus base) is paired over the same "
        "contexts. n: prompts; contexts: the independent units.</p>"
    )
    rows = [(e.name, e.value, e.low, e.high, e.n, e.n_contexts) for e in result.uncertainty]
    table = grid(("number", "value", "low", "high", "n", "contexts"), rows)
    return note + chart + table


def _charted(name: str) -> bool:
    """The estimates the interval chart shows: accuracies, faithfulness of the base circuit, CMAP gains."""
    return name.startswith("behaviour.") or name.endswith(
        ("base.ratio", "base.normalized", "cross.normalized")
    )
