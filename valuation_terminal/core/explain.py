"""Why a proposal came out as it did, in words a resident can read in their own language.

The engine (:mod:`valuation_terminal.core.rules`) gives each factor an English ``reason`` for
logs, the stored proposal and recomputation. What a resident (or a social worker) reads instead is
a catalog message: this module turns a :class:`~valuation_terminal.core.rules.Proposal`, its
:class:`~valuation_terminal.core.rules.Inputs` and the
:class:`~valuation_terminal.core.rules.Policy` it was computed with into one :class:`Reason` per
factor — a ``valuation.reason.*`` catalog key and the values of its placeholders — or, when the
engine abstained, the one reason why. The page that shows it translates the key in its own
language (``linli.i18n.t(reason.key, language, **reason.values)``).

Which message fits is decided from the numbers, never by reading the English reason: bulk from
the category, the depreciation floor from the straight line, a demand factor bounded or not from
the snapshot, a clamp from the product of the multipliers, the purchase cap from the points
before it. Values are language-neutral text (digits, ``.`` and ``%``: ``"1.5"``, ``"30%"``), so
one set of values fills both catalogs; a message may leave some of them out (the snapshot's id
is for the staff console, not for a resident).

Pure (no I/O; the standard library and the rules only), so the kiosk and the cloud's staff
console show the same explanation of the same stored proposal.

Example:
    >>> from importlib import resources
    >>> from valuation_terminal.core.rules import Demand, Inputs, load_policy, value
    >>> text = resources.files("valuation_terminal").joinpath("policy/default.toml").read_text()
    >>> policy = load_policy(text)  # the default policy is package data
    >>> inputs = Inputs("toys", "9成新", 18, 400, 3, Demand(1.0, "2026-W47"))
    >>> reasons = explain(value(policy, inputs), inputs, policy)
    >>> reasons[1].key, dict(reasons[1].values)["rate"], dict(reasons[1].values)["kept"]
    ('valuation.reason.depreciation', '33%', '50.5%')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from valuation_terminal.core.rules import (
    ABSTENTION_REASONS,
    Category,
    Factor,
    Inputs,
    Policy,
    Proposal,
)

__all__ = [
    "REASON_KEYS",
    "ExplainError",
    "Reason",
    "explain",
    "explain_factor",
    "number",
    "percent",
]

PREFIX = "valuation.reason."

REASON_KEYS: frozenset[str] = frozenset(
    PREFIX + name
    for name in (
        "reference",
        "reference.bulk",
        "depreciation",
        "depreciation.floor",
        "depreciation.bulk",
        "condition",
        "condition.bulk",
        "condition.recycling",
        "demand",
        "demand.bounded",
        "correction",
        "bulk_rate",
        "clamp",
        "clamp.clamped",
        "clamp.recycling",
        "rounding",
        "rounding.step",
        "rounding.whole",
        "purchase_cap",
        "purchase_cap.capped",
        *(f"abstained.{code}" for code in ABSTENTION_REASONS),
    )
)
"""Every catalog key :func:`explain` can return (each must be in every catalog)."""


class ExplainError(ValueError):
    """The proposal does not fit the inputs or the policy given (another category, a factor
    this module does not know, a correction without its inputs): the message says which."""


class Reason(NamedTuple):
    """A catalog key and the values of its placeholders (``key, values = reason``)."""

    key: str
    values: Mapping[str, str]


def _reason(name: str, **values: str) -> Reason:
    return Reason(PREFIX + name, MappingProxyType(values))


def number(x: float, places: int = 2) -> str:
    """``x`` rounded to ``places`` decimals, without trailing zeros: ``number(12.50) == "12.5"``.

    >>> number(0.5049999), number(3.0), number(-0.0001), number(1234.567, 1)
    ('0.5', '3', '0', '1234.6')
    """
    if not math.isfinite(x):
        return str(x)
    text = f"{round(x, places):.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def percent(fraction: float) -> str:
    """A fraction as a percentage, to one decimal at most: ``percent(0.505) == "50.5%"``."""
    return number(fraction * 100, 1) + "%"


def _category(proposal: Proposal, inputs: Inputs, policy: Policy) -> Category:
    category = policy.categories.get(inputs.category)
    if category is None:
        raise ExplainError(
            f"category {inputs.category!r} is not in policy {policy.version!r}"
            f" (the proposal was valued with {proposal.policy_version!r})"
        )
    return category


def _abstention(proposal: Proposal, inputs: Inputs, policy: Policy) -> Reason:
    code = proposal.abstained
    if code == "unknown_category":
        return _reason("abstained.unknown_category", category=inputs.category)
    if code == "no_photos":
        return _reason("abstained.no_photos", photos=str(inputs.photo_count))
    if code == "weight_implausible":
        lo, hi = _category(proposal, inputs, policy).weight_range_g
        return _reason(
            "abstained.weight_implausible", weight=str(inputs.weight_g), lo=str(lo), hi=str(hi)
        )
    if code == "age_implausible":
        return _reason(
            "abstained.age_implausible",
            years=number(inputs.age_months / 12, 1),
            max_years=number(policy.max_age_months / 12, 1),
        )
    if code == "price_implausible":
        price = inputs.purchase_price_yuan
        return _reason(
            "abstained.price_implausible",
            price="" if price is None else number(price),
            max=number(policy.max_purchase_price_yuan),
        )
    raise ExplainError(f"unknown abstention {code!r}")


def explain_factor(
    factor: Factor,
    before: tuple[Factor, ...],
    inputs: Inputs,
    policy: Policy,
    category: Category,
) -> Reason:
    """The reason of one factor, given the factors the engine applied ``before`` it.

    Raises:
        ExplainError: a factor this module does not know, or one that cannot come from these
            inputs (a correction without one).
    """
    name = factor.name
    is_recycling = inputs.condition == "below"
    if name == "reference":
        if category.is_bulk:
            return _reason("reference.bulk", kg=number(factor.value, 3))
        return _reason("reference", points=number(factor.value))
    if name == "depreciation":
        years = inputs.age_months / 12
        values = {
            "rate": percent(category.depreciation_per_year),
            "years": number(years, 1),
            "age_years": str(inputs.age_months // 12),
            "age_months": str(inputs.age_months % 12),
            "kept": percent(factor.value),
            "floor": percent(category.floor),
        }
        if category.is_bulk:
            return _reason("depreciation.bulk")
        straight = 1 - category.depreciation_per_year * years
        return _reason(
            "depreciation.floor" if factor.value > straight else "depreciation", **values
        )
    if name == "condition":
        if is_recycling:
            return _reason("condition.recycling")
        if category.is_bulk:
            return _reason("condition.bulk")
        return _reason("condition", grade=inputs.condition, percent=percent(factor.value))
    if name == "demand":
        raw = inputs.demand.factor
        values = {
            "factor": number(factor.value, 3),
            "raw": number(raw, 3),
            "min": number(policy.demand_min, 3),
            "max": number(policy.demand_max, 3),
            "snapshot": inputs.demand.snapshot_id,
        }
        return _reason("demand" if factor.value == raw else "demand.bounded", **values)
    if name == "correction":
        if inputs.correction is None:
            raise ExplainError("a correction factor, but the inputs have no correction")
        return _reason(
            "correction",
            factor=number(factor.value, 3),
            decisions=str(inputs.correction.decisions),
        )
    if name == "bulk_rate":
        return _reason("bulk_rate", rate=number(factor.value))
    if name == "clamp":
        if is_recycling:
            return _reason("clamp.recycling")
        raw = math.prod(f.value for f in before)  # the engine's own product, in its order
        return _reason(
            "clamp" if factor.value == raw else "clamp.clamped",
            raw=number(raw),
            min=str(category.min_points),
            max=str(category.max_points),
            points=number(factor.value),
        )
    if name == "rounding":
        clamp = next((f for f in reversed(before) if f.name == "clamp"), None)
        unrounded = factor.value if clamp is None else clamp.value
        if unrounded == factor.value:
            return _reason("rounding.whole", points=number(factor.value))
        return _reason(
            "rounding" if policy.step == 1 else "rounding.step",
            value=number(unrounded),
            points=number(factor.value),
            step=str(policy.step),
        )
    if name == "purchase_cap":
        rounded = next((f for f in reversed(before) if f.name == "rounding"), None)
        price = inputs.purchase_price_yuan
        if rounded is None or price is None:
            raise ExplainError("a purchase cap without a rounded value or a declared price")
        return _reason(
            "purchase_cap.capped" if rounded.value > factor.value else "purchase_cap",
            percent=percent(policy.purchase_cap),
            price=number(price),
            cap=number(factor.value),
            points=number(min(rounded.value, factor.value)),
        )
    raise ExplainError(f"unknown factor {name!r}")


def explain(proposal: Proposal, inputs: Inputs, policy: Policy) -> tuple[Reason, ...]:
    """One :class:`Reason` per factor of ``proposal``, in its order; for an abstention, the
    one reason why (the proposal has no factors then).

    Args:
        proposal: The engine's proposal (``value(policy, inputs)``, or a stored one).
        inputs: The inputs it was computed from.
        policy: The policy of the proposal's version.

    Raises:
        ExplainError: the proposal does not fit ``inputs`` and ``policy``.
    """
    if proposal.abstained is not None:
        return (_abstention(proposal, inputs, policy),)
    category = _category(proposal, inputs, policy)
    reasons = []
    for index, factor in enumerate(proposal.factors):
        reasons.append(explain_factor(factor, proposal.factors[:index], inputs, policy, category))
    return tuple(reasons)
