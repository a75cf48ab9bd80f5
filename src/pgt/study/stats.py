"""Means with 95 % intervals over seeds, paired differences, p-values, Holm's correction and the verdict rule.

The verdict rule (docs/study.md): every claim is phrased so that a positive difference is
what the paper says. A single comparison, with the difference's 95 % interval [lo, hi] over
seeds: lo > 0 -> holds; hi < 0 -> reversed; otherwise (the interval includes zero, or there
is no interval: fewer than two seeds, or seeds that all gave the same value, whose spread
says nothing about the uncertainty) -> inconclusive at this scale. A family of m comparisons
is judged on Holm-adjusted p-values of the paired t-test (`holm`): holds / reversed only
where the adjusted p is below ALPHA, which implies the unadjusted interval excludes zero, so
an interval that includes zero is never "holds".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["holds", "reversed", "inconclusive at this scale"]
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # the family-wise error rate Holm's procedure keeps
SAME = 1e-9  # relative spread below which seeds count as giving one value (float rounding, not variation)


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with the half-width of its two-sided 95 % Student-t interval (None: one seed)."""

    mean: float
    half: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half

    def format(self, digits: int = 3) -> str:
        if self.half is None:
            return f"{self.mean:.{digits}f} (no interval, n={self.n})"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"

    def format_interval(self, digits: int = 3) -> str:
        if self.half is None:
            return f"{self.mean:+.{digits}f} [no interval, n={self.n}]"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The incomplete beta function's continued fraction, by Lentz's method (Numerical Recipes, 6.4)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0 or x >= 1.0:
        return max(0.0, min(1.0, x))
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom (pure Python: pgt runs where scipy is absent)."""
    tail = 0.5 * _regularized_beta(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(q: float, df: int) -> float:
    """The t with P(T <= t) = q, for 0.5 <= q < 1, by bisection on `t_sf` (to float precision)."""
    low, high = 0.0, 1.0
    while t_sf(high, df) > 1.0 - q:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if t_sf(middle, df) > 1.0 - q else (low, middle)
    return (low + high) / 2


def estimate(values: Sequence[float]) -> Estimate:
    """Mean and 95 % t-interval half-width of `values` (the seeds of one arm, or paired differences)."""
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"need finite values to estimate, got {values}")
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    if sd <= SAME * max(1.0, abs(mean)):  # equal values (up to rounding): their spread says nothing
        return Estimate(mean, None, n)
    return Estimate(mean, t_quantile(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n), n)


def paired_difference(claimed_better: Sequence[float], other: Sequence[float], *, lower_is_better: bool) -> Estimate:
    """The per-seed difference oriented so that positive means `claimed_better` is better."""
    if len(claimed_better) != len(other):
        raise ValueError(f"paired seeds differ in number: {len(claimed_better)} vs {len(other)}")
    sign = -1.0 if lower_is_better else 1.0
    return estimate([sign * (a - b) for a, b in zip(claimed_better, other, strict=True)])


def verdict(difference: Estimate) -> Verdict:
    """holds / reversed / inconclusive at this scale, from the difference's interval (see the module docstring)."""
    if difference.half is None or difference.low <= 0 <= difference.high:
        return "inconclusive at this scale"
    return "holds" if difference.low > 0 else "reversed"


def p_value(difference: Estimate, values: Sequence[float]) -> float | None:
    """Two-sided p of the one-sample t-test of `values` (paired differences) against 0; None without an interval."""
    if difference.half is None:
        return None
    n = len(values)
    sd = math.sqrt(sum((v - difference.mean) ** 2 for v in values) / (n - 1))
    return 2 * t_sf(abs(difference.mean) / (sd / math.sqrt(n)), n - 1)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (None stays None and does not count among the m tests).

    Sorted ascending, the i-th of m p-values (from 0) is multiplied by m − i; the adjusted values
    are made non-decreasing in that order and capped at 1. Rejecting where adjusted p < ALPHA
    keeps the chance of any false verdict in the family below ALPHA.
    """
    tested = sorted((p, index) for index, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def family_verdict(difference: Estimate, adjusted_p: float | None) -> Verdict:
    """holds / reversed where the Holm-adjusted p is below ALPHA, by the difference's sign."""
    if adjusted_p is None or adjusted_p >= ALPHA:
        return "inconclusive at this scale"
    return "holds" if difference.mean > 0 else "reversed"
