"""What the rules learn from social workers' decisions: a per-category correction, and the error
report of proposals against decisions.

Every decision is kept with its proposal (the cloud's ``valuation_decisions``). When a social
worker adjusts a proposal, the ratio *decided / proposed* says how far the rule was off for that
item. The correction of a category is the mean of those ratios, each clipped to the bound (so one
outlier moves it at most ``bound / (n + prior)``, never more than the bound) and shrunk towards 1
by a prior of ``prior`` agreeing decisions (a few decisions do not swing it). It is applied as a
factor of its own, ``correction``, so the resident and the worker see it; switched off, the rule's
own output stands.

Pure: no I/O, no clock.

Example:
    >>> learned_correction([]).factor
    1.0
    >>> learned_correction([(100, 100), (40, 40)]).factor  # approvals as proposed
    1.0
    >>> learned_correction([(100, 1000)], bound=0.2, prior=4).factor  # one outlier: +0.2 / 5
    1.04
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from valuation_terminal.core.rules import Correction

__all__ = ["DEFAULT_BOUND", "DEFAULT_PRIOR", "CategoryError", "error_report", "learned_correction"]

DEFAULT_BOUND = 0.2
"""A correction stays within 1 ± this, and one decision's ratio is clipped to it."""
DEFAULT_PRIOR = 5
"""Pseudo-decisions at ratio 1 that the learned mean is shrunk with."""


def learned_correction(
    decisions: Iterable[tuple[int, int]],
    *,
    bound: float = DEFAULT_BOUND,
    prior: int = DEFAULT_PRIOR,
) -> Correction:
    """The correction learned from ``(proposed, decided)`` points of one category.

    Pairs with ``proposed <= 0`` carry no ratio and are skipped (an abstention valued by hand, or
    a recycling-only item). Rejections are not passed here: they say the item was not wanted, not
    that it was mispriced.

    Example:
        >>> learned_correction([(50, 40)] * 20, bound=0.2, prior=5).factor  # shrunk: 0.8 → 0.84
        0.84
    """
    if not 0 < bound < 1 or prior < 0:
        raise ValueError(f"bound must be in (0, 1) and prior >= 0, not {bound!r}, {prior!r}")
    ratios = [
        min(1 + bound, max(1 - bound, decided / proposed))
        for proposed, decided in decisions
        if proposed > 0
    ]
    if not ratios:
        return Correction(1.0, 0)
    shift = math.fsum(r - 1 for r in ratios) / (len(ratios) + prior)
    return Correction(round(1 + shift, 4), len(ratios))


@dataclass(frozen=True)
class CategoryError:
    """How far proposals were from decisions in one category (or overall, ``category="*"``).

    Attributes:
        decisions: Decided proposals with proposed points > 0.
        adjusted: Of them, how many the worker changed.
        mean_abs_pct: Mean of |decided − proposed| / proposed, in percent.
        median_abs_pct: Median of the same.
        bias_pct: Mean of (decided − proposed) / proposed, in percent (negative: the rule
            proposes too much).
        within_20_pct: Share of decisions within ±20 % of the proposal, in percent.
    """

    category: str
    decisions: int
    adjusted: int
    mean_abs_pct: float
    median_abs_pct: float
    bias_pct: float
    within_20_pct: float


def _summary(category: str, pairs: Sequence[tuple[int, int]]) -> CategoryError:
    errors = [(d - p) / p for p, d in pairs]
    absolute = [abs(e) for e in errors]
    return CategoryError(
        category=category,
        decisions=len(pairs),
        adjusted=sum(1 for p, d in pairs if p != d),
        mean_abs_pct=round(100 * statistics.fmean(absolute), 2),
        median_abs_pct=round(100 * statistics.median(absolute), 2),
        bias_pct=round(100 * statistics.fmean(errors), 2),
        within_20_pct=round(100 * sum(1 for a in absolute if a <= 0.2) / len(pairs), 2),
    )


def error_report(decisions: Mapping[str, Sequence[tuple[int, int]]]) -> list[CategoryError]:
    """Per category and overall (``"*"``, last), over ``(proposed, decided)`` pairs.

    Example:
        >>> [r.mean_abs_pct for r in error_report({"books": [(10, 10), (10, 15)]})]
        [25.0, 25.0]
    """
    report: list[CategoryError] = []
    everything: list[tuple[int, int]] = []
    for category in sorted(decisions):
        pairs = [(p, d) for p, d in decisions[category] if p > 0]
        if pairs:
            report.append(_summary(category, pairs))
            everything.extend(pairs)
    if everything:
        report.append(_summary("*", everything))
    return report
