"""Factor reasons in the resident's language (``valuation_terminal.core.explain``, issue #9).

Every factor the engine can emit, and every abstention, maps to a ``valuation.reason.*`` key that
is in BOTH catalogs, whose placeholders the reason fills, whose Chinese is Chinese (no Latin
letters outside the values), and which passes the pseudo-locale check the pages use (rendered in
``x-pseudo``, nothing is left outside ⟦…⟧ but the values). Inputs are generated two ways: a grid
over every category and condition of the shipped policy (and of a step-5 policy, for rounding to
a step) with ages, weights, prices, demand and corrections chosen to reach every branch — which
must reach every key in the catalogs' block, so none is dead — and hypothesis, which also tries
implausible values. The choice between a factor's messages is checked against the numbers.
"""

from __future__ import annotations

import doctest
import itertools
import math
import re
import string
from collections.abc import Iterator
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linli.i18n import LANGUAGES, PSEUDO, catalog, t
from valuation_terminal.core import explain as explain_module
from valuation_terminal.core.explain import (
    REASON_KEYS,
    ExplainError,
    Reason,
    explain,
    number,
    percent,
)
from valuation_terminal.core.rules import (
    CONDITION_GRADES,
    Correction,
    Demand,
    Factor,
    Inputs,
    Policy,
    Proposal,
    load_policy,
    value,
)

DEFAULT = load_policy(
    resources.files("valuation_terminal").joinpath("policy/default.toml").read_text("utf-8")
)
"""The policy the terminal ships (its categories are the ones residents choose from)."""

STEP_POLICY = load_policy(
    """
version = "test-step-5"
step = 5
purchase_cap = 0.5
max_age_months = 240
max_purchase_price_yuan = 5000
photos_wanted = 3

[demand]
min = 0.8
max = 1.25

[conditions]
"全新" = 1.0
"9成新以上" = 0.75
"9成新" = 0.5
"8成新" = 0.25
"below" = 0.0

[categories.tools]
name_zh = "工具"
name_en = "Tools"
reference_points = 43
depreciation_per_year = 0.2
floor = 0.2
min_points = 5
max_points = 50
weight_range_g = [50, 10000]

[categories.books]
name_zh = "图书"
name_en = "Books"
per_kg_rate = 4
min_points = 5
max_points = 60
weight_range_g = [150, 20000]
"""
)
"""A policy rounding to steps of 5 (the shipped one rounds to whole points)."""

POLICIES = (DEFAULT, STEP_POLICY)
PREFIX = "valuation.reason."
CJK = re.compile(r"[\u4e00-\u9fff]")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def grid() -> Iterator[tuple[Policy, Inputs]]:
    """Inputs reaching every branch of the engine, for every category and condition."""
    for policy in POLICIES:
        for name, category in policy.categories.items():
            lo, hi = category.weight_range_g
            weights = (lo, (lo + hi) // 2, hi, hi + 1)
            for condition, age, weight, price, demand, correction in itertools.product(
                CONDITION_GRADES,
                (0, 18, 121, policy.max_age_months + 1),
                weights,
                (None, 3.0, 150.0, policy.max_purchase_price_yuan * 2),
                (0.5, 1.0, 1.1, 2.0),
                (None, Correction(0.85, 14)),
            ):
                yield (
                    policy,
                    Inputs(
                        name,
                        condition,
                        age,
                        weight,
                        3,
                        Demand(demand, "2026-W47"),
                        price,
                        correction,
                    ),
                )
        yield policy, Inputs("no_such_kind", "9成新", 12, 500, 3, Demand(1.0, "2026-W47"))
        yield policy, Inputs(next(iter(policy.categories)), "全新", 0, 500, 0, Demand(1.0, "W"))


def check(policy: Policy, inputs: Inputs) -> list[str]:
    """Explain ``value(policy, inputs)`` and check every reason; return the keys used."""
    proposal = value(policy, inputs)
    reasons = explain(proposal, inputs, policy)
    if proposal.abstained is not None:
        assert len(reasons) == 1
        assert reasons[0].key == f"{PREFIX}abstained.{proposal.abstained}"
    else:
        assert len(reasons) == len(proposal.factors)
    for reason in reasons:
        assert reason.key in REASON_KEYS, reason.key
        assert all(isinstance(v, str) and v for v in reason.values.values()), reason
        for language in LANGUAGES:
            text = catalog(language).get(reason.key)
            assert text is not None, f"{reason.key} is not in the {language} catalog"
            missing = placeholders(text) - set(reason.values)
            assert not missing, f"{reason.key} ({language}) leaves {missing} unfilled"
            shown = t(reason.key, language, **reason.values)
            assert "{" not in shown and "}" not in shown, shown
        # the pseudo-locale check of the pages: only catalog text (⟦…⟧) and values (§)
        pseudo = t(reason.key, PSEUDO, **{k: "§" for k in reason.values})
        assert re.fullmatch(r"⟦[^⟦⟧]*⟧", pseudo), pseudo
    # a stored proposal (JSON and back) is explained the same: the staff console's case
    stored = Proposal.from_json(proposal.to_json())
    assert explain(stored, Inputs.from_json(inputs.to_json()), policy) == reasons
    return [reason.key for reason in reasons]


# --- the catalogs ------------------------------------------------------------------------------


def test_the_reason_block_is_the_same_in_both_catalogs_and_holds_exactly_the_reachable_keys() -> (
    None
):
    for language in LANGUAGES:
        block = {key for key in catalog(language) if key.startswith(PREFIX)}
        assert block == REASON_KEYS, block ^ REASON_KEYS
    for key in REASON_KEYS:
        assert placeholders(catalog("zh-CN")[key]) == placeholders(catalog("en")[key]), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_reason_block_is_contiguous_in_each_catalog(language: str) -> None:
    keys = list(catalog(language))
    where = [n for n, key in enumerate(keys) if key.startswith(PREFIX)]
    assert where == list(range(where[0], where[0] + len(REASON_KEYS)))


def test_the_chinese_is_written_in_chinese_not_copied_from_the_english() -> None:
    for key in REASON_KEYS:
        zh, en = catalog("zh-CN")[key], catalog("en")[key]
        words = re.sub(r"\{[a-z_]+\}", "", zh)
        assert CJK.search(words), key
        assert not re.search(r"[A-Za-z]", words), f"{key}: Latin letters in {zh!r}"
        assert zh != en


# --- every factor the engine can emit ---------------------------------------------------------


def test_every_factor_of_every_category_condition_and_age_maps_to_a_filled_key_in_both() -> None:
    reached: set[str] = set()
    cases = 0
    for policy, inputs in grid():
        reached.update(check(policy, inputs))
        cases += 1
    assert cases > 10_000
    assert reached == REASON_KEYS, f"never reached: {sorted(REASON_KEYS - reached)}"


categories = st.sampled_from(
    [*sorted({name for policy in POLICIES for name in policy.categories}), "no_such_kind"]
)
prices = st.one_of(
    st.none(),
    st.floats(min_value=0.01, max_value=1000, allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-100, max_value=1e6),
)


@settings(max_examples=1500, deadline=None)
@given(
    policy=st.sampled_from(POLICIES),
    category=categories,
    condition=st.sampled_from(CONDITION_GRADES),
    age=st.integers(min_value=-24, max_value=500),
    weight=st.integers(min_value=0, max_value=25_000),
    photos=st.integers(min_value=0, max_value=6),
    demand=st.floats(min_value=0.05, max_value=5, allow_nan=False),
    price=prices,
    correction=st.one_of(
        st.none(),
        st.builds(
            Correction,
            st.floats(min_value=0.5, max_value=1.5, allow_nan=False),
            st.integers(min_value=0, max_value=500),
        ),
    ),
)
def test_any_inputs_are_explained_with_filled_keys_in_both_catalogs(
    policy: Policy,
    category: str,
    condition: str,
    age: int,
    weight: int,
    photos: int,
    demand: float,
    price: float | None,
    correction: Correction | None,
) -> None:
    inputs = Inputs(
        category, condition, age, weight, photos, Demand(demand, "W"), price, correction
    )
    check(policy, inputs)


# --- the right message for the numbers --------------------------------------------------------


def reasons_of(policy: Policy, inputs: Inputs) -> dict[str, Reason]:
    proposal = value(policy, inputs)
    return {
        f.name: r for f, r in zip(proposal.factors, explain(proposal, inputs, policy), strict=True)
    }


def keys(policy: Policy, inputs: Inputs) -> dict[str, str]:
    return {name: r.key.removeprefix(PREFIX) for name, r in reasons_of(policy, inputs).items()}


def toys(**changes: object) -> Inputs:
    base: dict[str, object] = {
        "category": "toys",
        "condition": "9成新",
        "age_months": 18,
        "weight_g": 400,
        "photo_count": 3,
        "demand": Demand(1.1, "2026-W47"),
        "purchase_price_yuan": 199.0,
        "correction": None,
    }
    return Inputs(**{**base, **changes})  # type: ignore[arg-type]


def test_a_toy_of_a_year_and_a_half_says_each_step_with_its_numbers() -> None:
    # 25 × (1 - 0.33 × 1.5) × 0.5 × 1.1 = 6.94 → 7; ¥199 × 50 % = 99 does not cap it
    reasons = reasons_of(DEFAULT, toys())
    assert {name: r.key.removeprefix(PREFIX) for name, r in reasons.items()} == {
        "reference": "reference",
        "depreciation": "depreciation",
        "condition": "condition",
        "demand": "demand",
        "clamp": "clamp",
        "rounding": "rounding",
        "purchase_cap": "purchase_cap",
    }
    assert t(reasons["depreciation"].key, "zh-CN", **reasons["depreciation"].values) == (
        "用了1年6个月，每年少算33%，现在还值新的50.5%。"
    )
    assert t(reasons["depreciation"].key, "en", **reasons["depreciation"].values) == (
        "Used for 1 years 6 months. It loses 33% of its value each year, so it keeps 50.5%."
    )
    assert dict(reasons["depreciation"].values) == {
        "rate": "33%",
        "years": "1.5",
        "age_years": "1",
        "age_months": "6",
        "kept": "50.5%",
        "floor": "10%",
    }
    assert dict(reasons["reference"].values) == {"points": "25"}
    assert dict(reasons["condition"].values) == {"grade": "9成新", "percent": "50%"}
    assert reasons["demand"].values["factor"] == "1.1"
    assert dict(reasons["clamp"].values) == {
        "raw": "6.94",
        "min": "1",
        "max": "100",
        "points": "6.94",
    }
    assert dict(reasons["rounding"].values) == {"value": "6.94", "points": "7", "step": "1"}
    assert t(reasons["purchase_cap"].key, "zh-CN", **reasons["purchase_cap"].values) == (
        "没有超过买价199元的50%（99分），不受影响。"
    )


@pytest.mark.parametrize(
    ("inputs", "factor", "key"),
    [
        (toys(age_months=24), "depreciation", "depreciation"),  # 1 - 0.66 = 0.34, over 10 %
        (toys(age_months=60), "depreciation", "depreciation.floor"),
        (toys(demand=Demand(1.25, "W")), "demand", "demand"),  # at the bound, not beyond
        (toys(demand=Demand(1.3, "W")), "demand", "demand.bounded"),
        (toys(demand=Demand(0.5, "W")), "demand", "demand.bounded"),
        (toys(condition="8成新", age_months=120), "clamp", "clamp.clamped"),  # below 1 point
        (toys(condition="全新", age_months=0, demand=Demand(1.25, "W")), "clamp", "clamp"),
        (toys(condition="below"), "condition", "condition.recycling"),
        (toys(condition="below"), "clamp", "clamp.recycling"),
        (toys(purchase_price_yuan=10.0), "purchase_cap", "purchase_cap.capped"),
        (toys(purchase_price_yuan=14.0), "purchase_cap", "purchase_cap"),  # cap 7 = points 7
        (toys(correction=Correction(0.9, 12)), "correction", "correction"),
        (toys(condition="8成新", age_months=120), "rounding", "rounding.whole"),  # clamped to 1
    ],
)
def test_each_factor_gets_the_message_its_numbers_call_for(
    inputs: Inputs, factor: str, key: str
) -> None:
    assert keys(DEFAULT, inputs)[factor] == key


def test_depreciation_at_its_floor_is_said_so() -> None:
    reasons = reasons_of(DEFAULT, toys(age_months=60))
    assert reasons["depreciation"].values["kept"] == "10%"
    assert t(reasons["depreciation"].key, "zh-CN", **reasons["depreciation"].values) == (
        "用了5年0个月，每年少算33%；不过再旧也至少值新的10%。"
    )


def test_a_bounded_demand_says_both_the_weeks_factor_and_the_one_used() -> None:
    values = reasons_of(DEFAULT, toys(demand=Demand(1.6, "2026-W48")))["demand"].values
    assert (values["raw"], values["factor"], values["snapshot"]) == ("1.6", "1.25", "2026-W48")


def test_a_clamp_says_the_raw_value_and_the_bounds() -> None:
    values = reasons_of(DEFAULT, toys(condition="8成新", age_months=120))["clamp"].values
    # 25 × 0.1 × 0.25 × 1.1 = 0.6875, raised to the category's least, 1
    assert dict(values) == {"raw": "0.69", "min": "1", "max": "100", "points": "1"}


def test_a_capped_price_says_the_price_the_share_and_the_cap() -> None:
    reason = reasons_of(DEFAULT, toys(purchase_price_yuan=10.0))["purchase_cap"]
    assert t(reason.key, "en", **reason.values) == (
        "It cost ¥10 new, and points are at most 50% of that: 5."
    )
    assert t(reason.key, "zh-CN", **reason.values) == (
        "买的时候花了10元，积分最多是买价的50%，所以是5分。"
    )


def test_bulk_is_priced_by_weight_and_neither_ages_nor_grades() -> None:
    inputs = Inputs("adult_clothing", "9成新", 40, 3000, 3, Demand(1.0, "W"))
    assert keys(DEFAULT, inputs) == {
        "reference": "reference.bulk",
        "depreciation": "depreciation.bulk",
        "condition": "condition.bulk",
        "demand": "demand",
        "bulk_rate": "bulk_rate",
        "clamp": "clamp",
        "rounding": "rounding.whole",
    }
    reasons = reasons_of(DEFAULT, inputs)
    assert reasons["reference"].values["kg"] == "3"
    assert reasons["bulk_rate"].values["rate"] == "5"
    recycled = keys(DEFAULT, Inputs("books", "below", 40, 3000, 3, Demand(1.0, "W")))
    assert recycled["condition"] == "condition.recycling"
    assert recycled["clamp"] == "clamp.recycling"


def test_rounding_to_a_step_says_the_step() -> None:
    inputs = Inputs("tools", "9成新", 0, 500, 3, Demand(1.0, "W"))  # 43 × 0.5 = 21.5 → 20
    reason = reasons_of(STEP_POLICY, inputs)["rounding"]
    assert reason.key == PREFIX + "rounding.step"
    assert t(reason.key, "zh-CN", **reason.values) == "21.5按每5分一档四舍五入，得20分。"


@pytest.mark.parametrize(
    ("inputs", "key", "values"),
    [
        (
            toys(category="furniture"),
            "abstained.unknown_category",
            {"category": "furniture"},
        ),
        (toys(photo_count=0), "abstained.no_photos", {"photos": "0"}),
        (
            toys(weight_g=15_000),
            "abstained.weight_implausible",
            {"weight": "15000", "lo": "20", "hi": "10000"},
        ),
        (
            toys(age_months=366),
            "abstained.age_implausible",
            {"years": "30.5", "max_years": "30"},
        ),
        (
            toys(purchase_price_yuan=25_000.0),
            "abstained.price_implausible",
            {"price": "25000", "max": "20000"},
        ),
    ],
)
def test_every_abstention_says_why_with_its_numbers(
    inputs: Inputs, key: str, values: dict[str, str]
) -> None:
    proposal = value(DEFAULT, inputs)
    (reason,) = explain(proposal, inputs, DEFAULT)
    assert reason == Reason(PREFIX + key, values)
    for language in LANGUAGES:
        assert "{" not in t(reason.key, language, **reason.values)


def test_the_weight_abstention_reads_naturally() -> None:
    inputs = toys(weight_g=15_000)
    (reason,) = explain(value(DEFAULT, inputs), inputs, DEFAULT)
    assert t(reason.key, "zh-CN", **reason.values) == (
        "称出来是15000克，可这类物品一般在20到10000克之间。"
    )


# --- a proposal that does not fit -----------------------------------------------------------


def test_a_proposal_of_a_category_the_policy_lacks_is_refused_with_its_name() -> None:
    inputs = Inputs("bags", "9成新", 12, 500, 3, Demand(1.0, "W"))
    proposal = value(DEFAULT, inputs)
    with pytest.raises(ExplainError, match="'bags' is not in policy 'test-step-5'"):
        explain(proposal, inputs, STEP_POLICY)


def test_an_unknown_factor_or_a_correction_without_inputs_is_refused() -> None:
    inputs = toys()
    proposal = value(DEFAULT, inputs)
    odd = Proposal(
        proposal.points,
        (*proposal.factors, Factor("luck", 1.0, "")),
        proposal.confidence,
        None,
        proposal.policy_version,
        proposal.demand,
    )
    with pytest.raises(ExplainError, match="unknown factor 'luck'"):
        explain(odd, inputs, DEFAULT)
    corrected = value(DEFAULT, toys(correction=Correction(0.9, 3)))
    with pytest.raises(ExplainError, match="no correction"):
        explain(corrected, inputs, DEFAULT)
    assert issubclass(ExplainError, ValueError)


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "places", "shown"),
    [
        (6.9375, 2, "6.94"),
        (7.0, 2, "7"),
        (0.5049999, 2, "0.5"),
        (-0.0001, 2, "0"),
        (1234.56, 1, "1234.6"),
        (1e6, 2, "1000000"),
        (math.inf, 2, "inf"),
    ],
)
def test_numbers_are_written_without_trailing_zeros(x: float, places: int, shown: str) -> None:
    assert number(x, places) == shown


def test_percentages_keep_one_decimal_at_most() -> None:
    assert (percent(0.505), percent(0.5), percent(0.333333), percent(1.0)) == (
        "50.5%",
        "50%",
        "33.3%",
        "100%",
    )


def test_the_module_examples_run() -> None:
    result = doctest.testmod(explain_module)
    assert result.attempted > 0 and result.failed == 0
