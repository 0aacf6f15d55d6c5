"""Labelled valuation cases from outside sources, and the engine's error against a baseline (#9).

``tests/data/valuation_cases.json`` holds items whose *label* (points, 1 point ≈ ¥1) comes from
a published price, not from our rule table: points-shop prices of Chinese community and campus
爱心超市, flea-market and thrift-store prices, recyclers' prices per kilogram, resale shops'
buy-back prices and US charities' donation value guides. Each case cites its source (title, URL,
the quoted text, the figure in that text) and how the label follows from the figure; the method
and the table are in ``tests/data/valuation_cases.md``.

What is measured, for the default policy and for a **category-median baseline** (a case's label
predicted as the median label of the *other* cases of its category, leave-one-out): mean absolute
error in points, median absolute percentage error, the share of cases within ±20 % of the label,
and the number of abstentions. ``bench/valuation_error.py`` prints the same figures per category,
per market and per kind of label.

Example::

    cases = load_cases()
    engine = engine_predictions(default_policy(), cases)
    baseline = baseline_predictions(cases)
    metrics(cases, engine).mae, metrics(cases, baseline).mae
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from valuation_terminal.core.rules import (
    CONDITION_GRADES,
    Demand,
    Inputs,
    Policy,
    load_policy,
    value,
)

CASES_PATH = Path(__file__).resolve().parent / "data" / "valuation_cases.json"
ACCESSED = "2026-11-23"
SNAPSHOT = "outside-cases"
PPP_CNY_PER_USD = 4.2
"""US prices are converted at China's purchasing power parity, 4.2 yuan per international dollar
(2020; the source is in valuation_cases.md), not at the market exchange rate: a thrift-store
price is a price level, and 1 point ≈ ¥1 at Chinese prices."""
MARKETS = frozenset({"CN", "US"})
LABEL_KINDS = frozenset(
    {
        "points_shop_price",  # what a points shop (爱心超市, 积分超市) charges for the item
        "resale_price",  # flea market, thrift store, garage sale, second-hand group
        "charity_shop_price",  # a charity shop's deliberately low price
        "wholesale_price",  # what a second-hand shop pays a wholesaler
        "buyback_price",  # what a resale shop pays the owner
        "recycling_price",  # what a recycler pays (scrap value)
        "donation_fmv",  # a charity's fair-market-value guide for tax deductions
    }
)
PER_UNITS = {"item", "kg", "jin"}
INPUT_FIELDS = ("condition", "age_months", "weight_g", "purchase_price_yuan")
WITHIN = 0.20


# --- the cases --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One labelled case: the engine's inputs, the outside label and where it comes from."""

    id: str
    category: str
    market: str
    label_kind: str
    inputs: Inputs
    label: float
    assumed: tuple[str, ...]
    source: Mapping[str, Any]


def default_policy() -> Policy:
    """The packaged default policy (``valuation_terminal/policy/default.toml``)."""
    text = (
        resources.files("valuation_terminal")
        .joinpath("policy/default.toml")
        .read_text(encoding="utf-8")
    )
    return load_policy(text)


def raw_cases(path: Path = CASES_PATH) -> list[dict[str, Any]]:
    """The JSON list as stored."""
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def load_cases(path: Path = CASES_PATH) -> list[Case]:
    """The cases as engine inputs (photo count and demand as stored: 3 photos, factor 1.0)."""
    cases = []
    for raw in raw_cases(path):
        given = raw["inputs"]
        price = given["purchase_price_yuan"]
        cases.append(
            Case(
                id=raw["id"],
                category=raw["category"],
                market=raw["market"],
                label_kind=raw["label_kind"],
                inputs=Inputs(
                    category=raw["category"],
                    condition=given["condition"],
                    age_months=given["age_months"],
                    weight_g=given["weight_g"],
                    photo_count=given["photo_count"],
                    demand=Demand(float(given["demand"]), SNAPSHOT),
                    purchase_price_yuan=None if price is None else float(price),
                ),
                label=float(raw["label_points"]),
                assumed=tuple(raw["assumed"]),
                source=raw["source"],
            )
        )
    return cases


def derived_label(derivation: Mapping[str, Any], weight_g: int) -> float:
    """The label that follows from the cited figures (rounded to 0.01 point).

    ``amounts`` are the figures in the source (two for a range: the midpoint is taken), per
    ``per_count`` units of ``per`` (``item``, ``kg`` or ``jin`` = 500 g), in ``currency``,
    times ``to_points`` points per unit of currency.

    >>> derived_label({"amounts": [0.5, 0.6], "per": "jin", "per_count": 1, "to_points": 1.0}, 5000)
    5.5
    >>> derived_label({"amounts": [2, 8], "per": "item", "per_count": 1, "to_points": 4.2}, 800)
    21.0
    """
    amounts = derivation["amounts"]
    rate = sum(amounts) / len(amounts) / derivation["per_count"]
    quantity = {"item": 1.0, "kg": weight_g / 1000, "jin": weight_g / 500}[derivation["per"]]
    return round(rate * quantity * derivation["to_points"], 2)


# --- predictions and metrics --------------------------------------------------------------

Predictions = Mapping[str, float | None]
"""Case id → predicted points, ``None`` where the predictor abstains."""


def engine_predictions(policy: Policy, cases: Iterable[Case]) -> dict[str, float | None]:
    """The engine's proposal for each case (``None`` when it abstains)."""
    predictions: dict[str, float | None] = {}
    for case in cases:
        points = value(policy, case.inputs).points
        predictions[case.id] = None if points is None else float(points)
    return predictions


def baseline_predictions(cases: Sequence[Case]) -> dict[str, float | None]:
    """Leave-one-out category median: the median label of the *other* cases of the category.

    A category with a single case has nothing to learn from: the baseline abstains on it.
    """
    predictions: dict[str, float | None] = {}
    for case in cases:
        others = [o.label for o in cases if o.category == case.category and o.id != case.id]
        predictions[case.id] = statistics.median(others) if others else None
    return predictions


@dataclass(frozen=True)
class Metrics:
    """Errors over the cases a predictor answered.

    Attributes:
        n: Cases with a prediction (the metrics are over these).
        abstained: Cases without one.
        mae: Mean absolute error, points.
        mdape: Median absolute percentage error (0.5 = 50 %).
        within: Share of the answered cases within ±20 % of the label.
    """

    n: int
    abstained: int
    mae: float
    mdape: float
    within: float


def metrics(cases: Iterable[Case], predictions: Predictions) -> Metrics:
    """Metrics of ``predictions`` over ``cases`` (every label is > 0).

    Labels 10, 20 and 5 predicted as 12, 10 and nothing: n 2, one abstention, MAE 6.0
    (errors 2 and 10), MdAPE 0.35 (20 % and 50 %), within ±20 % 0.5 (inclusive) — the case
    ``test_metrics_by_hand`` checks.
    """
    errors = []
    abstained = 0
    for case in cases:
        predicted = predictions[case.id]
        if predicted is None:
            abstained += 1
            continue
        errors.append((abs(predicted - case.label), abs(predicted - case.label) / case.label))
    if not errors:
        return Metrics(0, abstained, math.nan, math.nan, math.nan)
    return Metrics(
        n=len(errors),
        abstained=abstained,
        mae=statistics.fmean(e for e, _ in errors),
        mdape=statistics.median(p for _, p in errors),
        within=sum(p <= WITHIN + 1e-12 for _, p in errors) / len(errors),
    )


def paired(cases: Iterable[Case], *predictions: Predictions) -> list[Case]:
    """The cases every predictor answered (the fair set for a ratio of errors)."""
    return [c for c in cases if all(p[c.id] is not None for p in predictions)]


def groups(cases: Iterable[Case], key: str) -> dict[str, list[Case]]:
    """Cases grouped by an attribute (``category``, ``market``, ``label_kind``), sorted by name."""
    grouped: dict[str, list[Case]] = {}
    for case in cases:
        grouped.setdefault(getattr(case, key), []).append(case)
    return dict(sorted(grouped.items()))


# --- the data ----------------------------------------------------------------------------

CASES = load_cases()
RAW = {raw["id"]: raw for raw in raw_cases()}
POLICY = default_policy()


def test_ids_are_unique_and_cases_cover_enough_categories() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30
    assert len({c.category for c in CASES}) >= 5


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_is_well_formed(case: Case) -> None:
    raw = RAW[case.id]
    assert case.category in POLICY.categories
    assert case.market in MARKETS
    assert case.label_kind in LABEL_KINDS
    assert case.inputs.condition in CONDITION_GRADES
    assert raw["inputs"]["photo_count"] == 3
    assert raw["inputs"]["demand"] == 1.0  # neutral: the label knows nothing of our demand
    assert case.label > 0
    assert set(case.assumed) <= set(INPUT_FIELDS)
    assert len(set(case.assumed)) == len(case.assumed)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_cites_its_source(case: Case) -> None:
    source = case.source
    for key in ("title", "url", "quote"):
        assert isinstance(source[key], str)
        assert source[key].strip(), key
    assert source["url"].startswith(("http://", "https://"))
    assert source["accessed"] == ACCESSED
    derivation = source["derivation"]
    assert derivation["text"].strip()
    # the figure the label comes from is in the quoted text, word for word
    assert derivation["figure_text"] in source["quote"]
    if "weight_source" in source:  # a weight from a source is not an assumption
        assert source["weight_source"]["url"].startswith(("http://", "https://"))
        assert source["weight_source"]["quote"].strip()
        assert "weight_g" not in case.assumed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_label_follows_from_the_cited_figures(case: Case) -> None:
    derivation = case.source["derivation"]
    assert derivation["per"] in PER_UNITS
    assert derivation["per_count"] > 0
    assert all(a > 0 for a in derivation["amounts"])
    assert len(derivation["amounts"]) in (1, 2)
    currency = derivation["currency"]
    if currency == "USD":
        assert case.market == "US"
        assert derivation["to_points"] == PPP_CNY_PER_USD
    elif currency == "CNY":
        assert case.market == "CN"
        assert derivation["to_points"] == 1.0
    else:  # a points scheme's own points; the case says what one is worth in yuan
        assert currency == "points"
        assert 0 < derivation["to_points"] <= 1.0
    assert derived_label(derivation, case.inputs.weight_g) == pytest.approx(case.label, abs=0.005)


def test_assumed_weight_does_not_change_a_per_item_proposal() -> None:
    # Sources rarely give a weight: per-item cases carry a typical one (marked assumed). That is
    # only honest if the weight cannot move the points, which holds within the plausible range.
    checked = 0
    for case in CASES:
        category = POLICY.categories[case.category]
        if category.is_bulk or "weight_g" not in case.assumed:
            continue
        lo, hi = category.weight_range_g
        points = {
            value(POLICY, _with_weight(case.inputs, w)).points
            for w in (lo, case.inputs.weight_g, hi)
        }
        assert points == {value(POLICY, case.inputs).points}, case.id
        checked += 1
    assert checked >= 20


def _with_weight(given: Inputs, weight_g: int) -> Inputs:
    return Inputs(
        given.category,
        given.condition,
        given.age_months,
        weight_g,
        given.photo_count,
        given.demand,
        given.purchase_price_yuan,
    )


# --- the metrics ---------------------------------------------------------------------------


def _case(case_id: str, category: str, label: float) -> Case:
    given = Inputs(category, "9成新", 0, 500, 3, Demand(1.0, SNAPSHOT))
    return Case(case_id, category, "CN", "resale_price", given, label, (), {})


def test_metrics_by_hand() -> None:
    cases = [_case("a", "toys", 10), _case("b", "toys", 20), _case("c", "toys", 5)]
    m = metrics(cases, {"a": 12, "b": 10, "c": None})
    # errors 2 and 10 points; 20 % and 50 %
    assert (m.n, m.abstained) == (2, 1)
    assert m.mae == pytest.approx(6.0)
    assert m.mdape == pytest.approx(0.35)
    assert m.within == pytest.approx(0.5)  # ±20 % is inclusive
    nothing = metrics(cases, {"a": None, "b": None, "c": None})
    assert (nothing.n, nothing.abstained) == (0, 3)
    assert math.isnan(nothing.mae)


def test_baseline_leaves_the_case_out() -> None:
    cases = [
        _case("a", "toys", 1),
        _case("b", "toys", 3),
        _case("c", "toys", 100),
        _case("d", "bags", 7),
    ]
    predicted = baseline_predictions(cases)
    # "c" sees only 1 and 3: its own 100 must not pull the median up
    assert predicted == {"a": 51.5, "b": 50.5, "c": 2.0, "d": None}


def test_metrics_are_over_every_answered_case() -> None:
    engine = engine_predictions(POLICY, CASES)
    baseline = baseline_predictions(CASES)
    for predictions in (engine, baseline):
        m = metrics(CASES, predictions)
        answered = sum(p is not None for p in predictions.values())
        assert m.n == answered
        assert m.n + m.abstained == len(CASES)
    # the baseline abstains exactly on the categories with a single case
    single = {c for c, members in groups(CASES, "category").items() if len(members) == 1}
    assert {i for i, p in baseline.items() if p is None} == {
        c.id for c in CASES if c.category in single
    }
    # per-category metrics add up to the overall count
    assert sum(metrics(cs, engine).n for cs in groups(CASES, "category").values()) == len(CASES)


# Measured with policy 2026-11-1 on these 55 cases, on the 54 both predictors answer
# (bench/valuation_error.py prints the same): engine MAE 18.50 vs baseline 15.81 points
# (ratio 1.170); MdAPE 74.4 % vs 66.3 %; within ±20 %: 5.6 % vs 16.7 %. The engine is WORSE than the
# category median of the outside labels; the policy is not tuned to these cases (the lead
# decides). The bounds below are what was measured, with a small margin: a policy edit that
# makes the engine worse against these labels fails here, one that makes it better passes.
MEASURED_MAE_RATIO = 1.17
MEASURED_ENGINE_MDAPE = 0.744
MEASURED_ENGINE_WITHIN = 0.056


def test_engine_is_not_worse_than_measured_against_the_baseline() -> None:
    engine = engine_predictions(POLICY, CASES)
    baseline = baseline_predictions(CASES)
    both = paired(CASES, engine, baseline)
    assert len(both) == len(CASES) - 1  # the single electronics-accessories case
    e, b = metrics(both, engine), metrics(both, baseline)
    assert e.abstained == b.abstained == 0
    assert e.mae / b.mae <= MEASURED_MAE_RATIO + 0.01
    assert e.mdape <= MEASURED_ENGINE_MDAPE + 0.01
    assert e.within >= MEASURED_ENGINE_WITHIN - 0.01
    # and the engine answers every case: no abstention on plausible inputs
    assert metrics(CASES, engine).abstained == 0
