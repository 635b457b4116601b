"""Circuit runs over the shared ablated prefix give what full passes give, row for row, on tiny models of
every supported architecture under both ablations, and they really skip the prefix (the saving cannot vanish
unnoticed)."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark import ablated_prefix
from benchmark.ablated_prefix import AblatedPrefix, Base, first_kept
from benchmark.ablation import MEAN, RESAMPLE, AblationSource, ablated_run, resample_prompts, score_run
from benchmark.accuracy import answer_probabilities
from benchmark.circuit import GROUP_SITE, Circuit, Group
from benchmark.circuit_run import keep_mask
from benchmark.data import encode_examples, generate_split
from benchmark.diagnostics import all_sites_mask, context_positions
from benchmark.faithfulness import ablation_means, mask_faithfulness, prefixed
from benchmark.head_cache import cached_patch, capture_heads, patch_from_cache, site_mask, sites_positions
from benchmark.models import ArchitectureAdapter, ModelUnderStudy
from benchmark.path_patching.minimality import prune_minimal, removal_metric
from benchmark.testing import TINY_ARCHITECTURES

WITH_READERS = Circuit.of(
    {
        Group.VALUE_FETCHER: [(2, 0), (1, 1)],
        Group.POSITION_TRANSMITTER: [(1, 2)],
        Group.POSITION_DETECTOR: [(0, 1)],
        Group.STRUCTURE_READER: [(0, 3), (1, 0)],
    }
)
WITHOUT_READERS = Circuit.of({Group.VALUE_FETCHER: [(2, 1)], Group.POSITION_DETECTOR: [(1, 3), (0, 0)]})


def _keeps(shape):
    """Keep functions of every kind a circuit run meets, by name."""
    n_layers, n_heads = shape.n_layers, shape.n_heads
    return {
        "empty": lambda rows: None,
        "with structure readers": lambda rows: keep_mask(WITH_READERS, rows, n_layers, n_heads),
        "without structure readers": lambda rows: keep_mask(WITHOUT_READERS, rows, n_layers, n_heads),
        "all sites": lambda rows: all_sites_mask(rows, shape),
        "context kept": lambda rows: (
            keep_mask(WITH_READERS, rows, n_layers, n_heads) | context_positions(rows)[:, :, None, None]
        ),
        "everything": lambda rows: torch.ones(1, 1, n_layers, n_heads, dtype=torch.bool),
    }


@pytest.fixture(scope="module", params=TINY_ARCHITECTURES)
def setup(request, tiny_model_dir):
    """(study, [(mean source, prompts), (resample source, prompts)]) on 5-box prompts of every queried box."""
    directory = tiny_model_dir(request.param)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    study = ModelUnderStudy(model, ArchitectureAdapter(model), AutoTokenizer.from_pretrained(directory))
    encoded = encode_examples(study.tokenizer, generate_split(5, "test", 23).examples)
    assert len(set(encoded.query_label_earlier_pos.tolist())) == 5  # rows differ in their earliest site
    means = ablation_means(study, generate_split(5, "validation", 20))
    resampled = resample_prompts(encoded, torch.roll(encoded.input_ids, 5, dims=0), seed=0)
    return study, [(AblationSource(MEAN, means), encoded), (AblationSource(RESAMPLE), resampled)]


@pytest.mark.parametrize("which", [0, 1], ids=[MEAN, RESAMPLE])
def test_every_run_over_the_prefix_equals_the_full_pass_row_for_row(setup, which):
    study, sources = setup
    source, prompts = sources[which]
    runs = AblatedPrefix(study, source, prompts, batch_size=4)
    assert runs.cached and len(runs.batches) >= 5  # no batch mixes two earliest sites
    for name, keep in _keeps(study.adapter.shape).items():
        full = score_run(study.model, prompts, 4, ablated_run(study, source, keep))
        over_prefix = runs.score(keep)
        assert over_prefix.correct == full.correct, name
        assert torch.allclose(
            torch.tensor(over_prefix.logit_diffs), torch.tensor(full.logit_diffs), atol=1e-5
        )
    again = runs.score(_keeps(study.adapter.shape)["with structure readers"])  # the cache is not consumed
    assert again == runs.score(_keeps(study.adapter.shape)["with structure readers"])


def test_a_patch_on_top_of_the_ablation_equals_the_full_pass(setup):
    """Minimality's donor patch: a removed head takes another row's output at its site, over the prefix."""
    study, sources = setup
    (source, prompts), shape = sources[0], study.adapter.shape
    donors = torch.roll(torch.arange(len(prompts)), 1)
    sites = sites_positions([GROUP_SITE[Group.STRUCTURE_READER]], prompts)  # [rows, 1]
    mask = site_mask([[(0, 3)]], shape)
    cache = capture_heads(study.model, study.adapter, prompts.input_ids[donors], sites[donors], mask, 8)
    reader = Circuit.of({**WITH_READERS.groups, Group.STRUCTURE_READER: [(1, 0)]})  # (0, 3) removed
    keep = lambda rows: keep_mask(reader, rows, shape.n_layers, shape.n_heads)  # noqa: E731
    touched = lambda rows: keep_mask(WITH_READERS, rows, shape.n_layers, shape.n_heads)  # noqa: E731
    runs = AblatedPrefix(study, source, prompts, batch_size=4)
    patch = lambda index, start: cached_patch(study.adapter, cache, index, sites[index] - start)  # noqa: E731
    over_prefix = runs.answer_probabilities(keep, patch, touched)
    ablate, donor = (
        ablated_run(study, source, keep),
        patch_from_cache(study.adapter, cache, sites, prompts.input_ids),
    )

    def full_pass(rows):
        stack = ExitStack()
        stack.enter_context(ablate(rows))
        stack.enter_context(donor(rows))
        return stack

    full = answer_probabilities(study.model, prompts, 4, intervention=full_pass)
    assert torch.allclose(over_prefix, full, rtol=1e-5, atol=1e-8)
    unpatched = runs.answer_probabilities(keep)
    assert not torch.allclose(unpatched, full, rtol=1e-3, atol=0)  # the patch changes something


def test_runs_compute_only_the_tokens_from_their_first_kept_site(setup, monkeypatch):
    study, sources = setup
    source, prompts = sources[0]
    runs = AblatedPrefix(study, source, prompts, batch_size=64)
    lengths = []
    embed = study.model.get_input_embeddings()
    handle = embed.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    try:
        keeps = _keeps(study.adapter.shape)
        assert len(prompts) <= 64 and len(runs.batches) >= 5  # one batch per earliest site
        runs.score(keeps["empty"])
        assert lengths == [1]  # the last token alone, every row in one pass (the site batches joined)
        lengths.clear()
        runs.score(keeps["without structure readers"])
        assert lengths == [prompts.last_pos + 1 - int(prompts.query_label_pos[0])]
        lengths.clear()
        runs.score(keeps["with structure readers"])
        starts = sorted(set(prompts.query_label_earlier_pos.tolist()))
        assert sorted(lengths, reverse=True) == [prompts.last_pos + 1 - s for s in starts]
    finally:
        handle.remove()


def test_first_kept_reads_broadcast_masks():
    keep = torch.zeros(2, 6, 3, 4, dtype=torch.bool)
    assert first_kept(None, 6) == 6 and first_kept(keep, 6) == 6
    keep[1, 4, 2, 0] = True
    assert first_kept(keep, 6) == 4
    assert first_kept(torch.ones(1, 1, 3, 4, dtype=torch.bool), 6) == 0


def test_a_prefix_of_other_prompts_is_a_clear_error(setup):
    study, sources = setup
    source, prompts = sources[0]
    runs = prefixed(study, source, prompts)
    assert prefixed(study, runs, prompts) is runs  # passed on as it is
    others = prompts.select(torch.arange(len(prompts) - 1, -1, -1))
    with pytest.raises(ValueError, match="another model or other prompts"):
        mask_faithfulness(study, others, runs, lambda rows: None, ends=None, full_accuracy=1.0)


@pytest.mark.parametrize("which", [0, 1], ids=[MEAN, RESAMPLE])
def test_a_prefix_kept_by_a_base_equals_the_full_pass_for_every_run(setup, which):
    """A base (the structure readers kept) changes what the prefix holds, not what any run gives: runs that
    keep the readers, runs that drop them and runs that keep more all equal their full passes."""
    study, sources = setup
    source, prompts = sources[which]
    shape = study.adapter.shape
    readers = Circuit.of({Group.STRUCTURE_READER: WITH_READERS.heads(Group.STRUCTURE_READER)})
    base = Base(lambda rows: keep_mask(readers, rows, shape.n_layers, shape.n_heads))
    runs = AblatedPrefix(study, source, prompts, batch_size=4, base=base)
    assert runs.cached
    for name, keep in _keeps(shape).items():
        full = score_run(study.model, prompts, 4, ablated_run(study, source, keep))
        over_prefix = runs.score(keep)
        assert over_prefix.correct == full.correct, name
        assert torch.allclose(
            torch.tensor(over_prefix.logit_diffs), torch.tensor(full.logit_diffs), atol=1e-5
        ), name


@pytest.mark.parametrize("tolerance", [0.0, 10.0], ids=["keeps every head", "drops every head"])
def test_pruning_over_base_prefixes_equals_full_passes_and_recomputes_only_the_query(
    setup, monkeypatch, tolerance
):
    """Minimality's metric for every candidate pruning tries, over its prefixes, against full passes (heads
    kept, and heads removed, whose donor patches the prefixes then hold); the first run builds the prefix
    its followers share, so the first candidate, which removes a value fetcher, runs the last token alone."""
    study, sources = setup
    source, prompts = sources[0]
    means = source.means
    tried: list[tuple[Circuit, float]] = []
    metric = removal_metric(study, WITH_READERS, prompts, means, batch_size=4)
    recording = lambda circuit: tried.append((circuit, metric(circuit))) or tried[-1][1]  # noqa: E731
    pruned, _, _ = prune_minimal(WITH_READERS, recording, tolerance=tolerance, progress=False)
    assert len(tried) == 1 + len(WITH_READERS.all_heads())
    assert len(pruned.all_heads()) == (len(WITH_READERS.all_heads()) if tolerance == 0 else 0)
    lengths = []
    embed = study.model.get_input_embeddings()
    handle = embed.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    try:
        fresh = removal_metric(study, WITH_READERS, prompts, means, batch_size=4)
        fresh(WITH_READERS)
        lengths.clear()
        fresh(tried[1][0])
        assert set(lengths) == {1}  # every batch: the last token alone
    finally:
        handle.remove()
    monkeypatch.setattr(ablated_prefix, "STORE_BYTES", 0)  # every run a full pass
    full = removal_metric(study, WITH_READERS, prompts, means, batch_size=4)
    for circuit, value in tried:
        assert value == pytest.approx(full(circuit), rel=1e-5, abs=1e-8), circuit


def test_a_prefix_started_from_a_near_one_computes_only_from_where_their_runs_part(setup):
    """A prefix whose run keeps the structure readers, started from the all-ablated prefix, recomputes only
    the tokens from each batch's earliest site (the queried box's label) on, and holds the same cache as one
    built from the first token."""
    study, sources = setup
    source, prompts = sources[0]
    shape = study.adapter.shape
    readers = Circuit.of({Group.STRUCTURE_READER: WITH_READERS.heads(Group.STRUCTURE_READER)})
    base = Base(lambda rows: keep_mask(readers, rows, shape.n_layers, shape.n_heads))
    ablated = AblatedPrefix(study, source, prompts, batch_size=4)
    scratch = AblatedPrefix(study, source, prompts, batch_size=4, base=base)
    lengths = []
    embed = study.model.get_input_embeddings()
    handle = embed.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    try:
        near = AblatedPrefix(study, source, prompts, batch_size=4, base=base, near=(ablated,))
    finally:
        handle.remove()
    assert lengths == [near.last - batch.low for batch in near.batches]
    for mine, theirs in zip(near.batches, scratch.batches, strict=True):
        for (k, v, *_), (k0, v0, *_) in zip(mine.entries, theirs.entries, strict=True):
            assert torch.allclose(k, k0, atol=1e-5) and torch.allclose(v, v0, atol=1e-5)
