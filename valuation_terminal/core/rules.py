"""The valuation rules engine: a published, versioned rule table turned into a points proposal.

The terminal measures (stable weight, photos, declared category, condition, age, purchase
price) and proposes; the social worker decides (points.md, "Valuation"). This module is pure:
no I/O, clock or randomness, so a stored proposal can be recomputed from its stored inputs and
the policy text of its version, and must come out equal.

The rule (every parameter is policy, see ``valuation_terminal/policy/default.toml``)::

    raw    = reference_c × depreciation_c(age) × condition(grade) × demand_c × correction_c
    raw    = weight_kg × 1 × 1 × demand_c × per_kg_rate_c × correction_c           (bulk)
    points = round_to(step, clamp(min_c, max_c, raw))
    points = min(points, floor_to(step, purchase_price × purchase_cap))   (price declared)

- ``depreciation_c(age) = max(floor_c, 1 - depreciation_per_year_c × age_months / 12)``.
- ``demand_c`` is the weekly snapshot's factor clamped to ``[demand_min, demand_max]``.
- ``correction_c`` is learned from social workers' past decisions in the category
  (:mod:`valuation_terminal.core.learning`): bounded, shown as its own factor, and absent (the
  rule's own output) when switched off or when no correction is given.
- Bulk categories (those with a ``per_kg_rate``) are priced by weight only: depreciation and
  condition are recorded with the value 1 and the reason "bulk".
- Condition ``below`` is *not* an abstention: the item is accepted for recycling only and the
  proposal is 0 points (the clamp to ``min_c`` is skipped, and said so).
- ``round_to`` rounds half up; policy refuses ``min``/``max`` that are not multiples of
  ``step``, so rounding never leaves ``[min_c, max_c]``. The purchase-price cap may go below
  ``min_c``: a declared ¥6 item is not worth 5 points of ¥12 of goods.

Example (the default policy is package data)::

    text = resources.files("valuation_terminal").joinpath("policy/default.toml").read_text()
    proposal = value(load_policy(text), Inputs("toys", "9成新", 6, 400, 3, Demand(1.0, "2026-W47")))
    proposal.points, [(f.name, f.value) for f in proposal.factors], proposal.confidence
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from linli import policy_table as pt
from linli.policy_table import PolicyError

__all__ = [
    "ABSTENTION_REASONS",
    "CONDITION_GRADES",
    "MULTIPLIER_FACTORS",
    "Category",
    "Correction",
    "Demand",
    "Factor",
    "Inputs",
    "Policy",
    "PolicyError",
    "Proposal",
    "load_policy",
    "recompute",
    "value",
]

CONDITION_GRADES: tuple[str, ...] = ("全新", "9成新以上", "9成新", "8成新", "below")
"""Condition grades, best first. ``below`` means worse than 8成新: recycling only, 0 points."""

ABSTENTION_REASONS: tuple[str, ...] = (
    "unknown_category",
    "no_photos",
    "weight_implausible",
    "age_implausible",
    "price_implausible",
)
"""Reason codes of an abstention, in the order they are checked (the first that holds wins)."""

MULTIPLIER_FACTORS: frozenset[str] = frozenset(
    {"reference", "depreciation", "condition", "demand", "bulk_rate", "correction"}
)
"""The factors whose product is the value before clamp and rounding."""

# Confidence coefficients (see :func:`confidence`).
PHOTO_PENALTY = 0.15
AGE_PENALTY = 0.3
WEIGHT_EDGE = 0.1
WEIGHT_EDGE_CONFIDENCE = 0.7
DEMAND_AT_BOUND = 0.9


@dataclass(frozen=True)
class Category:
    """One category of the rule table.

    Attributes:
        name: The key (``children_clothing``), as stored in inputs.
        name_zh: Display name in Simplified Chinese.
        name_en: Display name in English.
        reference_points: Points of a "good" item (1 point ≈ ¥1); unused for bulk.
        depreciation_per_year: Straight-line loss per year, a fraction (0.5 = 50 %/year).
        floor: The least fraction of the reference an item keeps, however old.
        min_points: Least proposal (after clamp; a multiple of the policy's step).
        max_points: Greatest proposal (a multiple of the policy's step).
        weight_range_g: Plausible stable weight ``(lo, hi)`` in grams, inclusive.
        per_kg_rate: Points per kilogram; set for bulk categories only.
    """

    name: str
    name_zh: str
    name_en: str
    reference_points: float
    depreciation_per_year: float
    floor: float
    min_points: int
    max_points: int
    weight_range_g: tuple[int, int]
    per_kg_rate: float | None = None

    @property
    def is_bulk(self) -> bool:
        """Priced by weight (``points = weight_kg × per_kg_rate``)."""
        return self.per_kg_rate is not None


@dataclass(frozen=True)
class Policy:
    """A versioned rule table (parsed from TOML by :func:`load_policy`).

    Attributes:
        version: Stored with every proposal (``"2026-11-1"``).
        categories: Category key → :class:`Category`.
        conditions: Condition grade → factor (every grade of :data:`CONDITION_GRADES`).
        step: Rounding step in points.
        demand_min: Lower bound of the demand factor.
        demand_max: Upper bound of the demand factor.
        purchase_cap: A declared purchase price caps points at this fraction of it.
        max_age_months: Older declared ages are implausible.
        max_purchase_price_yuan: Greater declared prices are implausible.
        photos_wanted: Photos for full confidence (fewer lower it; none abstains).
    """

    version: str
    categories: Mapping[str, Category]
    conditions: Mapping[str, float]
    step: int
    demand_min: float
    demand_max: float
    purchase_cap: float
    max_age_months: int
    max_purchase_price_yuan: float
    photos_wanted: int


@dataclass(frozen=True)
class Demand:
    """The weekly demand snapshot of a category: its factor and the snapshot's id."""

    factor: float
    snapshot_id: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor > 0):
            raise ValueError(f"demand factor must be finite and > 0, not {self.factor!r}")

    def to_json(self) -> dict[str, Any]:
        return {"factor": self.factor, "snapshot_id": self.snapshot_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Demand:
        return cls(float(data["factor"]), str(data["snapshot_id"]))


@dataclass(frozen=True)
class Correction:
    """The category's learned correction: a factor and how many decisions it comes from."""

    factor: float
    decisions: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor > 0) or self.decisions < 0:
            raise ValueError(f"invalid correction {self.factor!r} from {self.decisions!r}")

    def to_json(self) -> dict[str, Any]:
        return {"factor": self.factor, "decisions": self.decisions}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Correction:
        return cls(float(data["factor"]), int(data["decisions"]))


@dataclass(frozen=True)
class Inputs:
    """What the terminal measured and the resident declared.

    Implausible *values* (a negative age, a weight out of range) are not errors: :func:`value`
    abstains on them. An unknown condition grade is a programming error and raises.

    Attributes:
        category: Category key in the policy.
        condition: One of :data:`CONDITION_GRADES`.
        age_months: Declared age in months (plausible: 0..policy.max_age_months).
        weight_g: Stable weight from the scale, grams.
        photo_count: Photos taken (0 abstains).
        demand: The category's weekly demand snapshot.
        purchase_price_yuan: Declared purchase price, if any.
        correction: The category's learned correction, or ``None`` (switched off).
    """

    category: str
    condition: str
    age_months: int
    weight_g: int
    photo_count: int
    demand: Demand
    purchase_price_yuan: float | None = None
    correction: Correction | None = None

    def __post_init__(self) -> None:
        if self.condition not in CONDITION_GRADES:
            raise ValueError(
                f"condition must be one of {', '.join(CONDITION_GRADES)}, not {self.condition!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "condition": self.condition,
            "age_months": self.age_months,
            "weight_g": self.weight_g,
            "photo_count": self.photo_count,
            "demand": self.demand.to_json(),
            "purchase_price_yuan": self.purchase_price_yuan,
            "correction": None if self.correction is None else self.correction.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Inputs:
        price = data.get("purchase_price_yuan")
        correction = data.get("correction")
        return cls(
            category=str(data["category"]),
            condition=str(data["condition"]),
            age_months=int(data["age_months"]),
            weight_g=int(data["weight_g"]),
            photo_count=int(data["photo_count"]),
            demand=Demand.from_json(data["demand"]),
            purchase_price_yuan=None if price is None else float(price),
            correction=None if correction is None else Correction.from_json(correction),
        )


@dataclass(frozen=True)
class Factor:
    """One step of the rule: its name, the value it contributed, and why."""

    name: str
    value: float
    reason: str


@dataclass(frozen=True)
class Proposal:
    """The engine's answer: points (``None`` when abstaining) and how they came about.

    Attributes:
        points: Proposed points, or ``None`` when the engine abstains.
        factors: Every factor in the order applied: reference, depreciation, condition,
            demand, bulk_rate (bulk only), clamp, rounding, purchase_cap (price declared only).
        confidence: 0..1 (0 when abstaining); see :func:`confidence`.
        abstained: A reason code of :data:`ABSTENTION_REASONS`, or ``None``.
        detail: Why, in words, when abstaining (``""`` otherwise).
        policy_version: The policy's version, for recomputation.
        demand: The demand snapshot used, for recomputation.
    """

    points: int | None
    factors: tuple[Factor, ...]
    confidence: float
    abstained: str | None
    policy_version: str
    demand: Demand
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "factors": [
                {"name": f.name, "value": f.value, "reason": f.reason} for f in self.factors
            ],
            "confidence": self.confidence,
            "abstained": self.abstained,
            "detail": self.detail,
            "policy_version": self.policy_version,
            "demand": self.demand.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Proposal:
        points = data["points"]
        abstained = data["abstained"]
        return cls(
            points=None if points is None else int(points),
            factors=tuple(
                Factor(str(f["name"]), float(f["value"]), str(f["reason"])) for f in data["factors"]
            ),
            confidence=float(data["confidence"]),
            abstained=None if abstained is None else str(abstained),
            policy_version=str(data["policy_version"]),
            demand=Demand.from_json(data["demand"]),
            detail=str(data.get("detail", "")),
        )


# --- the rule ----------------------------------------------------------------------------


def _abstain(policy: Policy, inputs: Inputs, reason: str, detail: str) -> Proposal:
    return Proposal(None, (), 0.0, reason, policy.version, inputs.demand, detail)


def _abstention(policy: Policy, inputs: Inputs) -> tuple[str, str] | None:
    category = policy.categories.get(inputs.category)
    if category is None:
        return "unknown_category", f"category {inputs.category!r} is not in the policy"
    if inputs.photo_count <= 0:
        return "no_photos", "no photo was taken"
    lo, hi = category.weight_range_g
    if not lo <= inputs.weight_g <= hi:
        return (
            "weight_implausible",
            f"{inputs.weight_g} g is outside {lo}–{hi} g for {category.name}",
        )
    if not 0 <= inputs.age_months <= policy.max_age_months:
        return (
            "age_implausible",
            f"age {inputs.age_months} months is outside 0–{policy.max_age_months}",
        )
    price = inputs.purchase_price_yuan
    if price is not None and not (
        math.isfinite(price) and 0 < price <= policy.max_purchase_price_yuan
    ):
        return (
            "price_implausible",
            f"purchase price ¥{price} is outside (0, {policy.max_purchase_price_yuan:g}]",
        )
    return None


def confidence(policy: Policy, category: Category, inputs: Inputs) -> float:
    """How far the proposal can be trusted, 0..1: a product of four terms, each ≤ 1.

    - photos: ``1 - 0.15 × max(0, photos_wanted - photo_count)`` (floored at 0);
    - age: ``1 - 0.3 × age_months / max_age_months`` (older is less certain);
    - weight: with ``t`` the weight's position in the plausible range (0 at ``lo``, 1 at
      ``hi``) and ``e = min(t, 1 - t)``: ``0.7 + 0.3 × e / 0.1`` when ``e < 0.1``, else 1
      (near either end the category itself is doubtful);
    - demand: 0.9 when the snapshot's factor is at or beyond a bound, else 1.

    Each term is monotonic in its input in the direction named; the result is rounded to 4
    decimals.
    """
    photos = max(0.0, 1 - PHOTO_PENALTY * max(0, policy.photos_wanted - inputs.photo_count))
    age = 1 - AGE_PENALTY * min(1.0, inputs.age_months / policy.max_age_months)
    lo, hi = category.weight_range_g
    t = (inputs.weight_g - lo) / (hi - lo) if hi > lo else 0.5
    edge = min(t, 1 - t)
    weight = (
        WEIGHT_EDGE_CONFIDENCE + (1 - WEIGHT_EDGE_CONFIDENCE) * edge / WEIGHT_EDGE
        if edge < WEIGHT_EDGE
        else 1.0
    )
    at_bound = not policy.demand_min < inputs.demand.factor < policy.demand_max
    demand = DEMAND_AT_BOUND if at_bound else 1.0
    return round(max(0.0, min(1.0, photos * age * weight * demand)), 4)


def value(policy: Policy, inputs: Inputs) -> Proposal:
    """Propose points for ``inputs`` under ``policy`` (the module docstring has the rule)."""
    abstention = _abstention(policy, inputs)
    if abstention is not None:
        return _abstain(policy, inputs, *abstention)
    category = policy.categories[inputs.category]
    factors: list[Factor] = []
    is_recycling = inputs.condition == "below"

    raw_demand = inputs.demand.factor
    demand = min(policy.demand_max, max(policy.demand_min, raw_demand))
    demand_reason = f"snapshot {inputs.demand.snapshot_id}: {raw_demand:g}" + (
        f", bounded to {demand:g}"
        if demand != raw_demand
        else f" (within {policy.demand_min:g}–{policy.demand_max:g})"
    )
    rate = category.per_kg_rate
    if rate is not None:
        weight_kg = inputs.weight_g / 1000
        factors.append(Factor("reference", weight_kg, f"bulk: priced by weight, {weight_kg:g} kg"))
        factors.append(Factor("depreciation", 1.0, "bulk: not applied"))
        if is_recycling:
            factors.append(Factor("condition", 0.0, "below 8成新: accepted for recycling only"))
        else:
            factors.append(Factor("condition", 1.0, "bulk: not applied"))
        factors.append(Factor("demand", demand, demand_reason))
        factors.append(Factor("bulk_rate", rate, f"{rate:g} points per kg"))
    else:
        years = inputs.age_months / 12
        straight = 1 - category.depreciation_per_year * years
        depreciation = max(category.floor, straight)
        dep_reason = f"{category.depreciation_per_year:.0%}/year × {years:g} years" + (
            f", floor {category.floor:.0%}" if depreciation > straight else ""
        )
        grade = policy.conditions[inputs.condition]
        factors.append(
            Factor("reference", category.reference_points, f"{category.name_en} reference")
        )
        factors.append(Factor("depreciation", depreciation, dep_reason))
        factors.append(
            Factor(
                "condition",
                grade,
                "below 8成新: accepted for recycling only"
                if is_recycling
                else f"condition {inputs.condition}",
            )
        )
        factors.append(Factor("demand", demand, demand_reason))
    if inputs.correction is not None:
        factors.append(
            Factor(
                "correction",
                inputs.correction.factor,
                f"learned from {inputs.correction.decisions} decisions in {inputs.category}",
            )
        )

    raw = math.prod(f.value for f in factors)
    if is_recycling:
        clamped = 0.0
        factors.append(Factor("clamp", 0.0, "not clamped: recycling only, 0 points"))
    else:
        clamped = min(float(category.max_points), max(float(category.min_points), raw))
        clamp_reason = (
            f"{raw:.2f} within {category.min_points}–{category.max_points}"
            if clamped == raw
            else f"{raw:.2f} clamped to {clamped:g}"
        )
        factors.append(Factor("clamp", clamped, clamp_reason))
    points = pt.round_half_up(clamped, policy.step)
    factors.append(Factor("rounding", float(points), f"{clamped:.2f} to a step of {policy.step}"))

    price = inputs.purchase_price_yuan
    if price is not None:
        cap = math.floor(round(price * policy.purchase_cap / policy.step, 9)) * policy.step
        if points > cap:
            points = cap
            cap_reason = f"capped at {policy.purchase_cap:.0%} of the declared ¥{price:g}"
        else:
            cap_reason = f"under {policy.purchase_cap:.0%} of the declared ¥{price:g}"
        factors.append(Factor("purchase_cap", float(cap), cap_reason))

    return Proposal(
        points=points,
        factors=tuple(factors),
        confidence=confidence(policy, category, inputs),
        abstained=None,
        policy_version=policy.version,
        demand=inputs.demand,
    )


def recompute(policy_text: str, stored_inputs: Mapping[str, Any]) -> Proposal:
    """Recompute a stored proposal from its policy version's text and its stored inputs."""
    return value(load_policy(policy_text), Inputs.from_json(stored_inputs))


# --- policy parsing ----------------------------------------------------------------------


def _category(name: str, table: Any, step: int) -> Category:
    where = f"categories.{name}."
    if not isinstance(table, dict):
        raise PolicyError(f"categories.{name}: must be a table")
    is_bulk = "per_kg_rate" in table
    rate = pt.number(table, "per_kg_rate", where) if is_bulk else None
    if rate is not None and rate <= 0:
        raise PolicyError(f"{where}per_kg_rate: must be > 0")
    reference = pt.number(table, "reference_points", where, 0.0 if is_bulk else None)
    if not is_bulk and reference <= 0:
        raise PolicyError(f"{where}reference_points: must be > 0")
    depreciation = pt.fraction(table, "depreciation_per_year", where, 0.0 if is_bulk else None)
    floor = pt.fraction(table, "floor", where, 1.0 if is_bulk else None)
    lo_pts, hi_pts = pt.points_bounds(table, where, step)
    weights = pt.get(table, "weight_range_g", where)
    if (
        not isinstance(weights, list)
        or len(weights) != 2
        or not all(isinstance(w, int) and not isinstance(w, bool) for w in weights)
        or not 0 < weights[0] < weights[1]
    ):
        raise PolicyError(f"{where}weight_range_g: must be [lo, hi] grams with 0 < lo < hi")
    fields = {
        "name_zh",
        "name_en",
        "reference_points",
        "depreciation_per_year",
        "floor",
        "min_points",
        "max_points",
        "weight_range_g",
        "per_kg_rate",
    }
    pt.known(table, where, fields)
    return Category(
        name=name,
        name_zh=pt.text(table, "name_zh", where),
        name_en=pt.text(table, "name_en", where),
        reference_points=reference,
        depreciation_per_year=depreciation,
        floor=floor,
        min_points=lo_pts,
        max_points=hi_pts,
        weight_range_g=(weights[0], weights[1]),
        per_kg_rate=rate,
    )


def load_policy(text: str) -> Policy:
    """Parse a policy from TOML text; raise :class:`PolicyError` naming the field at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}") from exc
    version = pt.text(data, "version", "")
    step = pt.integer(data, "step", "")
    if step < 1:
        raise PolicyError("step: must be ≥ 1")

    demand = pt.get(data, "demand", "")
    if not isinstance(demand, dict):
        raise PolicyError("demand: must be a table")
    demand_min, demand_max = (
        pt.number(demand, "min", "demand."),
        pt.number(demand, "max", "demand."),
    )
    if not 0 < demand_min <= 1 <= demand_max:
        raise PolicyError(
            f"demand.min: bounds must satisfy 0 < min ≤ 1 ≤ max, not {demand_min:g}–{demand_max:g}"
        )

    conditions = pt.get(data, "conditions", "")
    if not isinstance(conditions, dict):
        raise PolicyError("conditions: must be a table")
    for grade in conditions:
        if grade not in CONDITION_GRADES:
            raise PolicyError(f"conditions.{grade}: unknown condition grade")
    grades = {grade: pt.fraction(conditions, grade, "conditions.") for grade in CONDITION_GRADES}
    if grades["below"] != 0:
        raise PolicyError("conditions.below: must be 0 (recycling only)")

    categories = pt.get(data, "categories", "")
    if not isinstance(categories, dict) or not categories:
        raise PolicyError("categories: must be a non-empty table")

    max_age = pt.integer(data, "max_age_months", "")
    if max_age < 1:
        raise PolicyError("max_age_months: must be ≥ 1")
    photos_wanted = pt.integer(data, "photos_wanted", "")
    if photos_wanted < 1:
        raise PolicyError("photos_wanted: must be ≥ 1")
    max_price = pt.number(data, "max_purchase_price_yuan", "")
    if max_price <= 0:
        raise PolicyError("max_purchase_price_yuan: must be > 0")
    purchase_cap = pt.number(data, "purchase_cap", "")
    if purchase_cap <= 0:
        raise PolicyError("purchase_cap: must be > 0")

    return Policy(
        version=version,
        categories=MappingProxyType(
            {name: _category(name, table, step) for name, table in categories.items()}
        ),
        conditions=MappingProxyType(grades),
        step=step,
        demand_min=demand_min,
        demand_max=demand_max,
        purchase_cap=purchase_cap,
        max_age_months=max_age,
        max_purchase_price_yuan=max_price,
        photos_wanted=photos_wanted,
    )
