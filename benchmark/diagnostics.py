"""Position-scoped diagnostics of a circuit run: where the work a circuit misses happens.

Next to the circuit run (its heads at their group's site, everything else ablated), three runs under the
same ablation, each measured like faithfulness (accuracy ratio, and f between the same full and empty
runs):
- context kept: the circuit, plus every head at every context position (every token up to and
  including the context's last box label) left clean. What the circuit misses in the context (heads
  that write the bindings where the labels are) shows up here.
- query kept: the circuit, plus every head at every query-segment position (the tokens after the
  context's last label: the closing period, then "Box X contains the") left clean.
- all sites: every head kept at every group site (last token, query label, its earlier occurrence) and
  nothing else: everything a four-group circuit could keep. Not an upper bound on its faithfulness:
  under ablation, keeping more heads clean can lower it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.circuit import GROUPS, Circuit
from benchmark.circuit_run import keep_mask
from benchmark.data import EncodedPrompts
from benchmark.faithfulness import Ends, FaithfulnessResult, Source, mask_faithfulness, prefixed
from benchmark.models import ModelUnderStudy
from benchmark.records import PositionDiagnostics


@dataclass(frozen=True)
class Diagnostics:
    """The three position-scoped runs of one model under one ablation."""

    ablation: str
    context_kept: FaithfulnessResult
    query_kept: FaithfulnessResult
    all_sites: FaithfulnessResult

    def record(self) -> PositionDiagnostics:
        return PositionDiagnostics(
            self.context_kept.record(), self.query_kept.record(), self.all_sites.record()
        )


def context_positions(rows: EncodedPrompts) -> torch.Tensor:
    """[batch, pos] bool: the tokens up to and including the context's last box label."""
    last_label = rows.label_pos.max(dim=1).values  # [batch]
    return torch.arange(rows.input_ids.shape[1])[None, :] <= last_label[:, None]


def _with_positions(circuit: Circuit, rows: EncodedPrompts, positions: torch.Tensor, shape) -> torch.Tensor:
    """The circuit's keep mask with every head at `positions` [batch, pos] kept too."""
    return keep_mask(circuit, rows, shape.n_layers, shape.n_heads) | positions[:, :, None, None]


def all_sites_mask(rows: EncodedPrompts, shape) -> torch.Tensor:
    """[batch, pos, layer, head]: every head at each group's site (the keep mask of a circuit that puts
    every head in every group)."""
    every = [(layer, head) for layer in range(shape.n_layers) for head in range(shape.n_heads)]
    return keep_mask(Circuit.of({group: every for group in GROUPS}), rows, shape.n_layers, shape.n_heads)


def run_diagnostics(
    study: ModelUnderStudy,
    circuit: Circuit,
    encoded: EncodedPrompts,
    source: Source,
    ends: Ends,
    ablation: str,
    batch_size: int = 32,
) -> Diagnostics:
    """The three runs, measured between `ends` (the model's full and empty runs under this ablation)."""
    shape = study.adapter.shape
    source = prefixed(study, source, encoded, batch_size)  # the three runs share the ablated prefix

    def run(keep) -> FaithfulnessResult:
        return mask_faithfulness(study, encoded, source, keep, batch_size, ends=ends)

    return Diagnostics(
        ablation,
        run(lambda rows: _with_positions(circuit, rows, context_positions(rows), shape)),
        run(lambda rows: _with_positions(circuit, rows, ~context_positions(rows), shape)),
        run(lambda rows: all_sites_mask(rows, shape)),
    )
