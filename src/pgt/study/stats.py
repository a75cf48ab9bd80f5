"""Means with 95 % intervals over seeds, paired differences and the verdict rule of `pgt study`.

The verdict rule (docs/study.md): every claim is phrased so that a positive difference is
what the paper says. With the difference's 95 % interval [lo, hi] over seeds:
  lo > 0 -> holds;  hi < 0 -> reversed;  otherwise (the interval includes zero, or there is
  no interval: fewer than two seeds, or seeds that all gave the same value, whose spread
  says nothing about the uncertainty) -> inconclusive at this scale.
An interval that includes zero is therefore never "holds".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["holds", "reversed", "inconclusive at this scale"]
CONFIDENCE = 0.95


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


def estimate(values: Sequence[float]) -> Estimate:
    """Mean and 95 % t-interval half-width of `values` (the seeds of one arm, or paired differences)."""
    from scipy import stats

    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"need finite values to estimate, got {values}")
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    if sd == 0:
        return Estimate(mean, None, n)
    return Estimate(mean, float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n), n)


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
