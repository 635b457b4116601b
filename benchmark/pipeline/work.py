"""The terms a stage's cost is written in: what the dry run cannot know (`CircuitGuess`), what a cost
function is given (`Inputs`: settings, model shape, prompt length) and returns (`Work`: passes and the
buffers held), and what `cost_of` makes of it (`StageCost`: token-rows, FLOPs, peak memory).
`pipeline.cost` writes each stage's cost in these terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from benchmark.circuit import GROUPS, Site
from benchmark.models.cost import ModelShape, Pass, dtype_bytes, pass_flops, working_set
from benchmark.settings import ScoreSettings


@dataclass(frozen=True)
class CircuitGuess:
    """The circuit a run will find, which sets how much discovery, DCM and CMAP compute (default: the upper
    bound). `group_sizes`: heads per group in `GROUPS` order (None: each at the selection's cap);
    `top_layers`: the highest layer of the value fetchers, transmitters and detectors, below which the next
    stage's senders lie (None: the last layer); `correct_share`: of the path-patching prompts;
    `bottom_layers`: the groups' lowest layers, below which a prompt's path-patching rows run once (None:
    layer 0, no such saving)."""

    group_sizes: tuple[int, ...] | None = None
    top_layers: tuple[int, ...] | None = None
    correct_share: float = 1.0
    bottom_layers: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Buffer:
    """Memory a stage holds beside the weights: what it is, and its bytes."""

    name: str
    nbytes: int


@dataclass(frozen=True)
class Work:
    """A stage's passes and the buffers it holds."""

    passes: tuple[Pass, ...] = ()
    buffers: tuple[Buffer, ...] = ()

    def __add__(self, other: Work) -> Work:
        """Both works' passes and buffers (a stage made of parts)."""
        return Work(self.passes + other.passes, self.buffers + other.buffers)


@dataclass(frozen=True)
class Inputs:
    """What a cost function reads: settings (their dtype), the model's shape, the prompts' tokens and the
    circuit guess."""

    settings: ScoreSettings
    shape: ModelShape
    n_tokens: int
    guess: CircuitGuess = field(default_factory=CircuitGuess)

    @property
    def bytes(self) -> int:
        """Bytes per weight or activation at the run's dtype."""
        return dtype_bytes(self.settings.dtype)

    @property
    def group_sizes(self) -> tuple[int, ...]:
        """Heads per group in `GROUPS` order: the guess's, else each group's cap."""
        cap = self.settings.discovery.max_heads(self.shape.heads.n_components)
        return self.guess.group_sizes or (cap,) * len(GROUPS)

    @property
    def n_groups(self) -> int:
        """Groups with heads: each gets DCM masks, a CMAP patch and a mechanism-mix patch."""
        return sum(1 for size in self.group_sizes if size)

    def full(self, rows: int, batch: int | None = None, logits: int = 1, backward: bool = False) -> Pass:
        """`rows` whole prompts (default batch: the run's)."""
        return Pass(rows, self.n_tokens, batch or self.settings.batch_size, 0, logits, backward)

    def heads_at_sites(self, rows: int, sites: int = 1, heads: int | None = None) -> int:
        """Bytes of head outputs [rows, site, heads (default: all), d] at the model's dtype."""
        h = self.shape.heads
        return rows * sites * (h.n_components if heads is None else heads) * h.head_dim * self.bytes

    def means(self) -> Buffer:
        """The mean-ablation values [pos, layer, head, d], float32."""
        h = self.shape.heads
        return Buffer("means [pos, layer, head, d], float32", self.n_tokens * h.n_components * h.head_dim * 4)

    def kv(self, rows: int, tokens: int) -> int:
        """Bytes of a key-value cache of `rows` x `tokens`, every layer."""
        return self.shape.kv_bytes(rows, tokens, self.bytes)


@dataclass(frozen=True)
class StageCost:
    """One stage's token-rows (forward, backward), FLOPs and peak memory (weights + largest buffer)."""

    stage: str
    forward_token_rows: int
    backward_token_rows: int
    flops: float
    peak_bytes: int
    peak_from: str

    @property
    def forward_equivalents(self) -> int:
        """Token-rows of forward passes, a backward counted as two forwards."""
        return self.forward_token_rows + 2 * self.backward_token_rows

    def seconds(self, tflops: float) -> float:
        """The projected time at `tflops` effective TFLOP/s."""
        return self.flops / (tflops * 1e12)


def rows_of(n_prompts: int, n_boxes: int) -> int:
    """Rows of a generated split: whole contexts of n rows (`data.generate_split`)."""
    return math.ceil(n_prompts / n_boxes) * n_boxes


def site_position(site: Site, n_tokens: int) -> int:
    """The token index of a site read at one position in every row (the last token, the query label)."""
    return {Site.LAST: n_tokens - 1, Site.QUERY_LABEL: n_tokens - 3}[site]


def cost_of(c: Inputs, stage_id: str, work: Work) -> StageCost:
    """Token-rows, FLOPs and peak memory (weights + the largest buffer or working set) of a stage's work."""
    weights = c.shape.params * c.bytes
    held = [(b.nbytes, b.name) for b in work.buffers] + [
        (working_set(c.shape, p, c.bytes), "batch working set") for p in work.passes
    ]
    largest, name = max(held, default=(0, "weights only"))
    return StageCost(
        stage_id,
        sum(p.token_rows for p in work.passes),
        sum(p.token_rows for p in work.passes if p.backward),
        sum(pass_flops(c.shape, p) for p in work.passes),
        weights + largest,
        name,
    )
