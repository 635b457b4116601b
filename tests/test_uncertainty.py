"""The bootstrap over contexts: known answers on constructed per-prompt outcomes, and on results."""

from __future__ import annotations

import dataclasses
import random

import pytest

from benchmark.settings import BootstrapConfig
from benchmark.submission import validate
from benchmark.submission.codec import to_plain
from benchmark.submission.integrity import reseal
from benchmark.submission.synthetic import synthetic_result
from benchmark.uncertainty import Measured, estimate, estimate_all, percentile, resamples

CONFIG = BootstrapConfig()
MEAN = lambda m: m[0]  # noqa: E731


def _outcomes(n_contexts: int, n_boxes: int = 7, p: float = 0.6, seed: int = 0) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(float(rng.random() < p) for _ in range(n_contexts * n_boxes))


def test_the_interval_covers_the_exact_value_and_counts_contexts():
    column = _outcomes(10)
    found = estimate(Measured("acc", (column,), MEAN), 7, CONFIG)
    assert found.value == sum(column) / len(column)
    assert found.low <= found.value <= found.high and found.low < found.high
    assert (found.n, found.n_contexts) == (70, 10)


def test_the_interval_shrinks_like_one_over_the_square_root_of_the_contexts():
    widths = []
    for n_contexts in (25, 100, 400):
        found = estimate(Measured("acc", (_outcomes(n_contexts),), MEAN), 7, CONFIG)
        widths.append(found.high - found.low)
    for wide, narrow in zip(widths, widths[1:], strict=False):
        assert 1.6 < wide / narrow < 2.5, widths  # 4 times the contexts: half the width


def test_rows_of_one_context_move_together():
    """A context answered all right or all wrong: resampling rows would understate the spread; resampling
    contexts keeps it (the interval is that of 10 coin flips, not 70)."""
    column = tuple(float(c % 2) for c in range(10) for _ in range(7))
    found = estimate(Measured("acc", (column,), MEAN), 7, CONFIG)
    assert found.high - found.low >= 0.5


def test_a_paired_difference_of_identical_columns_is_exactly_zero_with_zero_width():
    column = _outcomes(10)
    found = estimate(Measured("gain", (column, column), lambda m: m[0] - m[1]), 7, CONFIG)
    assert (found.value, found.low, found.high) == (0.0, 0.0, 0.0)


def test_the_same_seed_gives_the_same_draws_and_another_seed_others():
    assert resamples(10, 50, 0) == resamples(10, 50, 0) != resamples(10, 50, 1)
    assert percentile([0.0, 1.0, 2.0, 3.0], 0.5) == 1.5


def test_a_statistic_undefined_in_most_resamples_has_no_interval():
    column = (1.0,) + (0.0,) * 69  # one right answer: most resamples lose it, the ratio's denominator
    found = estimate(
        Measured("ratio", (column, column), lambda m: None if m[1] == 0 else m[0] / m[1]), 7, CONFIG
    )
    assert found.value == 1.0 and found.low is None and found.high is None


def test_synthetic_results_carry_their_intervals_and_a_changed_interval_is_caught():
    result = synthetic_result()
    assert result.uncertainty == estimate_all(result) and result.uncertainty
    plain = to_plain(result)
    plain["uncertainty"][0]["low"] = 0.0
    found = validate(reseal(plain))
    assert [p.path for p in found] == ["$.uncertainty[0].low"]


@pytest.mark.parametrize("field", ["n_resamples", "seed"])
def test_the_bootstrap_settings_decide_the_intervals(field):
    result = synthetic_result()
    other = dataclasses.replace(result.settings.bootstrap, **{field: 7})
    changed = dataclasses.replace(result, settings=dataclasses.replace(result.settings, bootstrap=other))
    assert estimate_all(changed) != result.uncertainty
