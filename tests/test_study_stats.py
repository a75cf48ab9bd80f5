"""The verdict rule and the FLOPs formula of `pgt study`, on constructed numbers."""

from __future__ import annotations

import math

import pytest

from pgt.study import flops
from pgt.study.stats import Estimate, estimate, paired_difference, verdict


def test_estimate_is_the_student_t_interval() -> None:
    result = estimate([1.0, 2.0, 3.0])
    # sd 1, n 3, t(0.975, 2) = 4.3027
    assert result.mean == pytest.approx(2.0)
    assert result.half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert estimate([5.0]).half is None


@pytest.mark.parametrize(("values", "expected"), [
    ([0.30, 0.32, 0.31], "holds"),  # the whole interval above zero
    ([-0.30, -0.32, -0.31], "reversed"),
    ([0.30, -0.10, 0.50], "inconclusive at this scale"),  # mean > 0, interval includes zero
    ([0.5], "inconclusive at this scale"),  # one seed: no interval
    ([0.0, 0.0, 0.0], "inconclusive at this scale"),  # an interval [0, 0] includes zero
    ([0.25, 0.25], "inconclusive at this scale"),  # identical seeds: no spread, no interval
])
def test_verdict(values: list[float], expected: str) -> None:
    assert verdict(estimate(values)) == expected


def test_an_interval_that_includes_zero_never_holds() -> None:
    for low in (-1.0, -1e-9, 0.0):
        assert verdict(Estimate(mean=1.0, half=1.0 - low, n=3)) != "holds"
    assert verdict(Estimate(mean=1.0, half=0.999, n=3)) == "holds"


def test_paired_difference_is_oriented_by_the_claim() -> None:
    claimed, other = [2.0, 2.1, 2.05], [2.5, 2.62, 2.53]  # bits per byte: lower is better
    assert verdict(paired_difference(claimed, other, lower_is_better=True)) == "holds"
    assert verdict(paired_difference(claimed, other, lower_is_better=False)) == "reversed"
    # pairing by seed: a shared seed effect cancels, so a consistent small gain holds
    assert verdict(paired_difference([1.00, 3.00, 5.00], [1.01, 3.01, 5.011], lower_is_better=True)) == "holds"
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0], lower_is_better=True)


def test_flops_of_growth_and_monolithic() -> None:
    d, vocab, seq, n, tokens = 64, 1000, 32, 3, 100
    block, head = 24 * d * d + 4 * seq * d, 2 * vocab * d
    mono = flops.monolithic_flops(d=d, vocab=vocab, seq_len=seq, blocks=n, tokens=n * tokens)
    assert mono == pytest.approx(n * tokens * 3 * (n * block + head))
    grown = flops.grown_flops(d=d, vocab=vocab, seq_len=seq, stages=n, tokens_per_stage=tokens)
    assert grown == pytest.approx(tokens * sum((k + 2) * block + 3 * head for k in range(1, n + 1)))
    assert grown < mono  # a grown step backpropagates through one block only
