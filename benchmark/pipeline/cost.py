"""What `etbench score` will cost, before any weights load: per stage, forward passes, FLOPs and memory.

Each stage of `pipeline.stages.STAGES` has one cost function here (`COSTS`, keyed by the stage's name and
whether it runs per model) that lists the stage's forward passes (`models.cost.Pass`: rows of so many new
tokens over a cached prefix, logits at so many positions, with or without a backward pass, priced by
`models.cost.pass_flops`) and the buffers it holds (`Buffer`: a head cache, a key-value cache...).
`stage_costs` turns them into token-rows (a backward pass counted as two forwards), FLOPs and peak memory:
the weights at the run's dtype plus the stage's largest buffer or batch working set. Model loading and
hashing (the record stage) are I/O and cost nothing here; the time is FLOPs over a stated throughput.

What no dry run can know is the circuit: how many heads each group selects, how high the receivers sit
(senders of a stage are the heads below its receivers' top layer), how low (a prompt's path-patching rows
run once below that) and how many path-patching prompts the model answers (only those are patched).
`CircuitGuess()` takes the upper bound: every group at its cap, receivers from the first layer to the last,
every prompt answered; discovery, DCM and CMAP scale with these.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from benchmark.circuit import GROUP_SITE, GROUPS, Group, Site
from benchmark.data import DCM_DESIDERATA
from benchmark.dcm.masking import PREFIX_GROUPS
from benchmark.dcm.prefix import STORE_BYTES
from benchmark.faithfulness_curve import curve_k
from benchmark.models.cost import ModelShape, Pass
from benchmark.path_patching import prefilter
from benchmark.path_patching.sweep import STAGES as SWEEP_STAGES
from benchmark.path_patching.sweep import Stage as SweepStage
from benchmark.pipeline.pair import Pair, Side
from benchmark.pipeline.runner import schedule
from benchmark.pipeline.stages import STAGES, ScoreStage
from benchmark.pipeline.work import (
    Buffer,
    CircuitGuess,
    Inputs,
    StageCost,
    Work,
    cost_of,
    rows_of,
    site_position,
)
from benchmark.settings import ABLATIONS, DiscoveryConfig, ScoreSettings

# Effective throughput of the suite's passes on 2 idle CPU cores (float32, torch threads = cores): fitted
# on SmolLM2-135M's minimality pruning (organism base, cpu-small, 131 s); tests/test_cost.py checks it.
CPU_TFLOPS = 0.134
RESAMPLE = ABLATIONS[1]


def _behaviour(c: Inputs) -> Work:
    """lm-eval's loglikelihood (logits at every position), then the suite's scorer (the last position)."""
    rows, b = rows_of(c.settings.behaviour.n_prompts, c.settings.n_boxes), c.settings.batch_size
    logits = Buffer("lm-eval log-probabilities [batch, pos, vocab]", 2 * b * c.n_tokens * c.shape.vocab * 4)
    return Work((c.full(rows, logits=c.n_tokens), c.full(rows)), (logits,))


def _means(c: Inputs) -> Work:
    """Every head's output over the reference prompts (one per context), summed in float32."""
    n, b = c.settings.faithfulness.n_reference, c.settings.batch_size
    recorded = Buffer("head outputs of a batch [batch, pos, layer, head, d]", c.heads_at_sites(b, c.n_tokens))
    return Work((c.full(n, logits=c.n_tokens),), (recorded,))


def verified_senders(config: DiscoveryConfig, n_senders: int, cap: int) -> int:
    """Senders a path-patching stage runs through both passes: all `n_senders` of them when discovery is
    exact; with the attribution pre-filter at most its candidate lists (`cap`: the group cap) and its
    sample of the others (an upper bound: the lists overlap, and a sample that finds a missed head makes
    the stage exact)."""
    if config.prefilter is None:
        return n_senders
    chosen = min(n_senders, prefilter.ORDERS * math.ceil(prefilter.MARGIN * cap))
    others = n_senders - chosen
    return chosen + min(others, max(1, math.ceil(prefilter.SAMPLE_SHARE * others)))


def _sweep_batches(n_prompts: int, sender_layers: Sequence[int], rows_per_pass: int, bottom: int) -> Counter:
    """The passes of one sweep as `path_patching.sweep` batches them, counted by (chunk, k, shared): per
    prompt chunk, the null sender then the senders (in layer order), k to a prompt per pass (the last batch
    padded). Where k > 1 a prompt's rows are equal, and run once, below `shared`: the batch's lowest
    sender's layer, or `bottom` (the receivers' lowest layer) where that is lower."""
    batches: Counter = Counter()
    for start in range(0, n_prompts, rows_per_pass):
        chunk = min(rows_per_pass, n_prompts - start)
        k = max(1, rows_per_pass // chunk)
        for first in range(0, 1 + len(sender_layers), k):
            lowest = sender_layers[max(first - 1, 0)] if sender_layers else bottom
            batches[chunk, k, min(lowest, bottom) if k > 1 else 0] += 1
    return batches


def _sweep(c: Inputs, stage: SweepStage, n: int, tops: tuple[int | None, int], prepared: bool) -> Work:
    """One stage: head caches at the site of n clean and n counterfactual prompts (unless an earlier stage
    of the same site made them: `prepared`); pass 1 replays the site's token alone for every row, up to the
    receivers' top layer (`tops`: top and bottom; the logits stage: every layer and the logits); pass 2 runs
    the suffix from the receivers' reading position over a prefix. Both run the layers where a prompt's
    rows are equal once per prompt (`_sweep_batches`)."""
    (top, bottom), config, s, h = tops, c.settings.discovery, c.n_tokens, c.shape.heads
    cap = config.max_heads(h.n_components)
    n_senders = verified_senders(config, h.n_heads * (h.n_layers if top is None else top), cap)
    sender_layers = [index // h.n_heads for index in range(n_senders)]  # heads in (layer, head) order
    batches = _sweep_batches(n, sender_layers, config.rows_per_pass, bottom)
    layers, logits = (None, 1) if top is None else (top + 1, 0)
    passes = [] if prepared else [c.full(2 * n, config.batch_size)]
    passes += [
        Pass(count * chunk * k, 1, chunk * k, 0, logits, layers=layers, shared=shared, fan=k)
        for (chunk, k, shared), count in batches.items()
    ]
    cache = Buffer(
        "clean and counterfactual heads at a site [prompt, layer, head, d]", c.heads_at_sites(2 * n)
    )
    atp = 0 if config.prefilter is None else prefilter.ATP_STEPS * n  # AtP: a forward and backward a step
    passes += [Pass(atp, 1, config.batch_size, 0, logits, True, layers)] if atp else []
    if stage.receivers is not None:
        reader = site_position(GROUP_SITE[stage.receivers], s)
        passes += [Pass(n, reader, min(n, config.rows_per_pass))]
        passes += [
            Pass(count * chunk * k, s - reader, chunk * k, reader, s - reader, shared=bottom * (k > 1), fan=k)
            for (chunk, k, _), count in batches.items()
        ]
        passes += [Pass(atp, s - reader, config.batch_size, reader, s - reader, True)] if atp else []
    return Work(tuple(passes), (cache,))


def path_patching(c: Inputs) -> Work:
    """Scoring the path-patching prompts, then the four stages on those answered correctly, each stage's
    senders below its receivers' top layer; a group with no heads ends the chain."""
    h, n_rows = c.shape.heads, rows_of(c.settings.discovery.n_prompts, c.settings.n_boxes)
    n = max(1, round(c.guess.correct_share * n_rows))
    tops = c.guess.top_layers or (h.n_layers - 1,) * (len(SWEEP_STAGES) - 1)
    bottoms = c.guess.bottom_layers or (0,) * len(tops)
    work = Work((c.full(n_rows, c.settings.discovery.batch_size),))
    for index, stage in enumerate(SWEEP_STAGES):
        if index and not c.group_sizes[index - 1]:
            break
        receivers = (tops[index - 1], bottoms[index - 1]) if index else (None, h.n_layers)
        prepared = any(earlier.site == stage.site for earlier in SWEEP_STAGES[:index])
        work += _sweep(c, stage, n, receivers, prepared)
    return work


def minimality(c: Inputs, prefix: bool = True) -> Work:
    """Donor head caches, then the circuit run once and once without each selected head (`prefix=False`:
    donor caches per group and each run a full pass, the reference path). Over prefixes: the structure
    readers' candidates over the all-ablated prefix; the circuit's run and the value fetchers' and position
    transmitters' candidates over one that keeps the readers and detectors (the last token alone), built
    from the readers' label on; the detectors' over one that keeps the readers (the query segment), built
    from the query label on."""
    rows = rows_of(c.settings.discovery.n_minimality_prompts, c.settings.n_boxes)
    batch = c.settings.discovery.batch_size
    sizes = dict(zip(GROUPS, c.group_sizes, strict=True))
    if not prefix:
        return Work((c.full((c.n_groups + 1 + sum(c.group_sizes)) * rows, batch),), (c.means(),))
    last = sizes[Group.VALUE_FETCHER] + sizes[Group.POSITION_TRANSMITTER]
    detectors, readers = sizes[Group.POSITION_DETECTOR], sizes[Group.STRUCTURE_READER]
    work = Work((c.full(rows, batch),), (c.means(),))
    work += _prefix_runs(c, rows, readers + (last + detectors == 0), batch)  # the circuit's run: first level
    query = c.n_tokens - site_position(Site.QUERY_LABEL, c.n_tokens)
    built = reader_start(c)  # where the first level's run leaves the all-ablated one
    for runs, tokens in ((last + (last > 0), 1), (detectors + (last == 0), query)):
        if runs:
            work += _prefix_runs(c, rows, runs, batch, c.n_tokens - tokens, built)
            built = c.n_tokens - query  # the second level's leaves the first's at the query label
    return work


def reader_start(c: Inputs) -> int:
    """The first token a circuit run over the ablated prefix computes, taking the upper bound that every
    circuit has structure readers: the queried box's label, on average half-way into the context."""
    context = site_position(Site.QUERY_LABEL, c.n_tokens)  # the query segment follows the context
    return context * (c.settings.n_boxes - 1) // (2 * c.settings.n_boxes)


def _prefix_runs(
    c: Inputs, rows: int, runs: int, batch: int, start: int | None = None, built: int = 0
) -> Work:
    """`runs` circuit runs of `rows` prompts over a cached prefix (`AblatedPrefix`): the prefix once (every
    token but the last, its cache held; from token `built` on, after another prefix's), then each run's
    tokens from `start` on (default `reader_start`)."""
    start = reader_start(c) if start is None else start
    prefix = Pass(rows, c.n_tokens - 1 - built, batch, built)
    passes = (prefix, Pass(runs * rows, c.n_tokens - start, batch, start))
    return Work(passes, (Buffer("ablated prefix cache", c.kv(rows, c.n_tokens - 1)),))


def _discovery(c: Inputs) -> Work:
    """The circuit: path patching, then minimality pruning of its selection."""
    return path_patching(c) + minimality(c)


def _floor(c: Inputs) -> Work:
    """The noise floor: discovery again on other prompts (nothing without a floor seed)."""
    return Work() if c.settings.floor_seed is None else _discovery(c)


def _ablated(c: Inputs, runs: int, clean_runs: int = 0, full_runs: int = 0) -> Work:
    """Per ablation, `runs` circuit runs of the test prompts over their all-ablated prefix, `full_runs` in
    full (a run keeping context tokens) and `clean_runs` unmodified ones; resample ablation runs the
    counterfactuals (a plain forward: logits at every position) once for the prefix and for each full run,
    and keeps their head outputs from `reader_start` on."""
    n, b, work = rows_of(c.settings.behaviour.n_prompts, c.settings.n_boxes), c.settings.batch_size, Work()
    for ablation in c.settings.faithfulness.ablations:
        work += Work((c.full((clean_runs + full_runs) * n),))
        work += _prefix_runs(c, n, runs, b) if runs else Work()
        if ablation != RESAMPLE:
            work += Work((), (c.means(),))
            continue
        kept = c.heads_at_sites(n, c.n_tokens - reader_start(c))
        heads = Buffer("counterfactual heads [prompt, pos, layer, head, d] from the earliest site", kept)
        work += Work((c.full((bool(runs) + full_runs) * n, logits=c.n_tokens),), (heads,) if runs else ())
    return work


def _faithfulness(c: Inputs) -> Work:
    """Per ablation: the full and empty runs, the circuit, the random draws and each distinct curve size."""
    f, heads = c.settings.faithfulness, c.shape.heads.n_components
    curve = len({curve_k(fraction, heads) for fraction in f.curve_fractions})
    return _ablated(c, 2 + f.n_random + curve, clean_runs=1)


def mechanism(c: Inputs, suffix: bool = True) -> Work:
    """Per prompt: clean and counterfactual full passes, the residual patched after each layer at two sites
    (a suffix from the query label on over a cached prefix; `suffix=False`: the full passes with a
    counterfactual pass per site), and one full pass per group (two without `suffix`)."""
    if c.settings.n_boxes < 4:
        return Work()
    n, b = rows_of(c.settings.behaviour.n_prompts, c.settings.n_boxes), c.settings.batch_size
    layers, start = c.shape.heads.n_layers, site_position(Site.QUERY_LABEL, c.n_tokens)
    if not suffix:
        return Work((c.full((2 + 2 * (1 + layers) + 2 * c.n_groups) * n),))
    patched = Pass(2 * layers * n, c.n_tokens - start, b, start)
    return Work((c.full((2 + c.n_groups) * n), patched))


def _prefix_store(c: Inputs, rows: int, used: int, start: int, batch: int) -> Work:
    """`PrefixRuns` over `rows` prompts cut at `start`, read `used` rows in all: stored once while it fits
    STORE_BYTES, else measured on a first batch and recomputed at every call."""
    size = c.kv(rows, start)
    if size <= STORE_BYTES:
        return Work((Pass(rows, start, batch),), (Buffer("DCM prefix store", size),))
    return Work(
        (Pass(min(rows, batch) + used, start, batch),), (Buffer("DCM prefix of a batch", c.kv(batch, start)),)
    )


def _dcm_rows(c: Inputs) -> tuple[int, int]:
    """Rows one mask runs through training (forward + backward) and through its validations."""
    d = c.settings.dcm
    steps = d.epochs * math.ceil(d.n_train / d.batch_size)
    validations = d.epochs if d.eval_every is None else math.ceil(steps / d.eval_every)
    return d.epochs * d.n_train, validations * d.n_validation


def _dcm_start(c: Inputs, group: Group) -> int:
    """The first token a mask's runs recompute: its group's site for `PREFIX_GROUPS`; for structure readers,
    trained and scored over one prefix per site (`RunsBySite`), the context's middle box label
    (`reader_start`)."""
    return site_position(GROUP_SITE[group], c.n_tokens) if group in PREFIX_GROUPS else reader_start(c)


def _dcm_mask(c: Inputs, group: Group) -> Work:
    """One mask: epochs of forward + backward steps, a validation per epoch and the test run, all over the
    suffix from the group's site on. The counterfactual runs are the desideratum's and the prefix stores
    the run's (`_dcm`). Counted per mask: the masks of a group's desiderata, trained together, also share
    the layers below the group's lowest head, which is not counted (an upper bound)."""
    d, (trained, validated) = c.settings.dcm, _dcm_rows(c)
    start = _dcm_start(c, group)
    scored = Pass(validated + d.n_test, c.n_tokens - start, d.eval_batch_size, start)
    return Work((scored, Pass(trained, c.n_tokens - start, d.batch_size, start, backward=True)))


def _dcm_stores(c: Inputs, splits: Sequence[tuple[int, int]], trained: int = 0) -> Work:
    """A `PrefixStore`'s runs: for each first token the groups with heads recompute from (`_dcm_start`), a
    store of each split (rows, rows read by one mask), read by that token's masks of every desideratum (the
    clean prompts are the split's same rows), the training split's (`trained` rows read) among them. The
    stored ones are all held until the stage ends."""
    d, work = c.settings.dcm, Work()
    sized = [g for g, size in zip(GROUPS, c.group_sizes, strict=True) if size]
    for start in sorted({_dcm_start(c, g) for g in sized}):
        groups = [g for g in sized if _dcm_start(c, g) == start]
        masks = len(DCM_DESIDERATA) * len(groups)
        train = ((d.n_train, trained),) if trained else ()
        for rows, used in (*train, *splits):
            work += _prefix_store(c, rows, masks * used, start, d.eval_batch_size)
    stored = [b for b in work.buffers if b.name == "DCM prefix store"]
    held = (Buffer("DCM prefix stores, all held", sum(b.nbytes for b in stored)),) if stored else ()
    return Work(work.passes, (*held, *(b for b in work.buffers if b not in stored)))


def _dcm(c: Inputs) -> Work:
    """Per desideratum, one counterfactual run of each split, shared by the groups (`run_dcm`); then a mask
    per group with heads; the cached prefixes of each split once for all of them."""
    d, (trained, validated) = c.settings.dcm, _dcm_rows(c)
    work = Work()
    for _ in DCM_DESIDERATA if c.n_groups else ():
        work += Work((c.full(d.n_train + d.n_validation + d.n_test, d.eval_batch_size),))
        for group, size in zip(GROUPS, c.group_sizes, strict=True):
            work += _dcm_mask(c, group) if size else Work()
    return work + _dcm_stores(c, ((d.n_validation, validated), (d.n_test, d.n_test)), trained)


def _dcm_transfer(c: Inputs) -> Work:
    """Each base mask's heads patched in the fine-tuned model: per desideratum one counterfactual run of the
    test pairs, shared by the groups, then a test run per mask over the test split's cached prefixes."""
    d, n_desiderata = c.settings.dcm, len(DCM_DESIDERATA)
    work = Work((c.full(n_desiderata * d.n_test, d.eval_batch_size),))
    for group in (g for g, size in zip(GROUPS, c.group_sizes, strict=True) if size):
        start = _dcm_start(c, group)
        work += Work((Pass(n_desiderata * d.n_test, c.n_tokens - start, d.eval_batch_size, start),))
    return work + _dcm_stores(c, ((d.n_test, d.n_test),))


def _cmap(c: Inputs) -> Work:
    """Fine-tuned: accuracy and the circuit's heads cached; base: accuracy, each group, the whole circuit."""
    config = c.settings.cmap
    cache = Buffer(
        "fine-tuned circuit heads [prompt, head, d]",
        c.heads_at_sites(config.n_prompts, heads=sum(c.group_sizes)),
    )
    return Work((c.full((c.n_groups + 4) * config.n_prompts, config.batch_size),), (cache,))


CostFunction = Callable[[Inputs], Work]
MODEL, PAIR = True, False
COSTS: dict[tuple[str, bool], CostFunction] = {
    ("record", MODEL): lambda c: Work(),  # loading and hashing: I/O, no forward pass
    ("behaviour", MODEL): _behaviour,
    ("means", MODEL): _means,
    ("discovery", MODEL): _discovery,
    ("faithfulness", MODEL): _faithfulness,
    ("dcm", MODEL): _dcm,
    ("diagnostics", MODEL): lambda c: _ablated(c, 2, full_runs=1),  # query kept, all sites; context kept
    ("mechanism", MODEL): mechanism,
    ("discovery_floor", MODEL): _floor,
    ("faithfulness", PAIR): lambda c: _ablated(c, 0, full_runs=1),  # the base circuit in the fine-tuned
    ("dcm_transfer", PAIR): _dcm_transfer,
    ("dcm_overlap", PAIR): lambda c: Work(),  # set overlaps of recorded heads
    ("cmap", PAIR): _cmap,
}


def stage_costs(
    settings: ScoreSettings,
    shapes: Pair[ModelShape],
    n_tokens: int,
    guesses: Pair[CircuitGuess] | None = None,
    stages: Sequence[ScoreStage] = STAGES,
) -> list[StageCost]:
    """Every stage's cost in run order; pair stages run in the fine-tuned model (CMAP: in both, one at a
    time) with the base model's circuit. `guesses`: each model's circuit (default: the upper bound)."""
    guesses = guesses or Pair(CircuitGuess(), CircuitGuess())
    costs = []
    for stage, side in schedule(stages):
        which = side if side is not None else (Side.FINETUNED if stage.name != "cmap" else Side.BASE)
        guess = guesses[side if side is not None else Side.BASE]
        c = Inputs(settings, shapes[which], n_tokens, guess)
        costs.append(cost_of(c, stage.id(side), COSTS[(stage.name, stage.per_model)](c)))
    return costs


def upper_bound_text(settings: ScoreSettings, shape: ModelShape) -> str:
    """What the default `CircuitGuess` assumes, in words (the dry run prints it)."""
    cap = settings.discovery.max_heads(shape.heads.n_components)
    return (
        f"circuit (known only after the run): the upper bound, each group at its cap of {cap} heads, "
        "receivers from the first layer to the last, every path-patching prompt answered correctly"
    )
