"""The verdict rule, Holm's correction, the undertrained rule, the best-expert choice and the FLOPs formula of
`pgt study`, on constructed numbers."""

from __future__ import annotations

import math

import pytest

from pgt.study import flops
from pgt.study.results import ModelRow, below_anchor, best_expert, judge_family
from pgt.study.stats import (
    Estimate,
    estimate,
    family_verdict,
    holm,
    p_value,
    paired_difference,
    t_quantile,
    t_sf,
    verdict,
)


def test_estimate_is_the_student_t_interval() -> None:
    result = estimate([1.0, 2.0, 3.0])
    # sd 1, n 3, t(0.975, 2) = 4.3027
    assert result.mean == pytest.approx(2.0)
    assert result.half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert estimate([5.0]).half is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.30, 0.32, 0.31], "holds"),  # the whole interval above zero
        ([-0.30, -0.32, -0.31], "reversed"),
        ([0.30, -0.10, 0.50], "inconclusive at this scale"),  # mean > 0, interval includes zero
        ([0.5], "inconclusive at this scale"),  # one seed: no interval
        ([0.0, 0.0, 0.0], "inconclusive at this scale"),  # an interval [0, 0] includes zero
        ([0.25, 0.25], "inconclusive at this scale"),  # identical seeds: no spread, no interval
        ([0.1 + 0.2 - 0.3, 0.0, 5.55e-17], "inconclusive at this scale"),  # equal up to rounding: no interval either
    ],
)
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


def test_holm_adjusts_in_order_and_skips_untested() -> None:
    # m = 3 tested: 0.01 x 3 = 0.03, 0.02 x 2 = 0.04, 0.04 x 1 = 0.04 (kept non-decreasing)
    adjusted = holm([0.04, None, 0.01, 0.02])
    assert adjusted[1] is None and adjusted[0] == pytest.approx(0.04) and adjusted[2] == pytest.approx(0.03)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_student_t_without_scipy_matches_the_tables() -> None:
    for df, quantile in [(1, 12.706205), (2, 4.302653), (4, 2.776445), (10, 2.228139), (30, 2.042272)]:
        assert t_quantile(0.975, df) == pytest.approx(quantile, rel=1e-6)
        assert t_sf(quantile, df) == pytest.approx(0.025, rel=1e-5)
        assert t_sf(-quantile, df) == pytest.approx(0.975, rel=1e-6)
    assert t_sf(0.0, 3) == pytest.approx(0.5)


def test_student_t_without_scipy_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 9, 50):
        for t in (0.01, 0.5, 1.0, 2.5, 7.0, 40.0):
            assert t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-300)
        for q in (0.6, 0.9, 0.975, 0.999):
            assert t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9)


def test_p_value_is_the_paired_t_test() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")

    values = [0.30, 0.10, 0.25]
    expected = scipy_stats.ttest_1samp(values, 0.0).pvalue
    assert p_value(estimate(values), values) == pytest.approx(expected)
    assert p_value(estimate([0.2, 0.2]), [0.2, 0.2]) is None  # no spread: no test


def test_a_family_verdict_needs_the_adjusted_p_below_alpha() -> None:
    assert family_verdict(Estimate(0.3, 0.1, 3), 0.01) == "holds"
    assert family_verdict(Estimate(-0.3, 0.1, 3), 0.01) == "reversed"
    assert family_verdict(Estimate(0.3, 0.1, 3), 0.06) == "inconclusive at this scale"
    assert family_verdict(Estimate(0.3, None, 3), None) == "inconclusive at this scale"


def _row(
    key: str,
    bpb: dict[str, list[float]],
    *,
    kind: str = "baseline",
    trained=("en", "ru"),
    tokens: int = 100,
    validation: dict[str, list[float]] | None = None,
) -> ModelRow:
    return ModelRow(
        key=key,
        label=key,
        family="embeddings",
        kind=kind,
        blocks=1,
        runs=[],
        training_tokens=tokens,
        training_flops=1.0,
        trained_parameters=10,
        lr=1e-3,
        trained_languages=list(trained),
        scoring_id="s",
        bits_per_byte=bpb,
        cloze_accuracy={},
        cloze_items={},
        validation_bits_per_byte=validation or bpb,
    )


def test_undertrained_arms_get_no_verdict_and_do_not_count_among_the_tests() -> None:
    anchors = {"en": 3.0, "ru": 2.0}
    glyph = _row("glyph", {"en": [2.50, 2.52, 2.51], "ru": [1.90, 1.91, 2.30]})  # ru: interval reaches the anchor
    trainable = _row("trainable", {"en": [2.80, 2.83, 2.81], "ru": [1.70, 1.71, 1.72]})
    rows = [
        glyph,
        trainable,
        *(
            _row(k, {"en": [2.6, 2.61, 2.6], "ru": [1.8, 1.81, 1.8]})
            for k in ("frozen-random", "glyph-shuffled", "glyph-recentred", "glyph-visible")
        ),
    ]
    comparisons, tested = judge_family("embeddings", rows, ["en", "ru"], anchors, [], [])
    first = {c.scope: c for c in comparisons if c.claim == "glyph-vs-trainable"}
    assert first["ru"].verdict == "undertrained: no verdict" and "glyph:ru" in first["ru"].note
    assert first["ru"].p_holm is None
    assert first["en"].verdict == "holds" and first["en"].p_holm >= first["en"].p_value
    assert tested == sum(c.p_holm is not None for c in comparisons) < len(comparisons)
    # every arm below the anchor everywhere: the same numbers give a verdict
    assert below_anchor([1.90, 1.91, 1.92], 2.0) and not below_anchor([1.90, 1.91, 2.30], 2.0)
    # the rule is per seed, not per interval: a wide spread wholly below the anchor passes
    assert below_anchor([1.20, 1.95, 1.99], 2.0) and not below_anchor([1.20, 1.30, 2.0], 2.0)


def test_the_best_expert_is_chosen_on_validation_documents_not_on_the_held_out_text() -> None:
    a = _row("expert-a", {"en": [2.0, 2.0]}, kind="expert", trained=("en", "ru"), validation={"en": [3.0, 1.0]})
    b = _row("expert-b", {"en": [1.0, 1.0]}, kind="expert", trained=("en", "de"), validation={"en": [2.0, 2.0]})
    chosen = best_expert({"expert-a": a, "expert-b": b}, "en")
    assert [row.key for row in chosen] == ["expert-b", "expert-a"]  # seed 1 picks a, though b scores better held out
