"""The valuation rules engine (``valuation_terminal.core.rules``), issue #9 item 3.

The formula is tested against a fixed test policy (below), not the default one: social workers
edit ``default.toml``, and an edit must not break a test of the arithmetic. The default policy is
only checked to load and to name every category in both languages.
"""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from valuation_terminal.core.rules import (
    ABSTENTION_REASONS,
    CONDITION_GRADES,
    MULTIPLIER_FACTORS,
    Demand,
    Inputs,
    Policy,
    PolicyError,
    Proposal,
    load_policy,
    recompute,
    value,
)

TEST_POLICY = """
version = "test-1"
step = 1
purchase_cap = 0.5
max_age_months = 360
max_purchase_price_yuan = 20000
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

[categories.toys]
name_zh = "玩具"
name_en = "Toys"
reference_points = 25
depreciation_per_year = 0.33
floor = 0.10
min_points = 1
max_points = 100
weight_range_g = [20, 10000]

[categories.kids_clothing]
name_zh = "童装"
name_en = "Children's clothing"
reference_points = 20
depreciation_per_year = 0.5
floor = 0.10
min_points = 1
max_points = 60
weight_range_g = [30, 2000]

[categories.kids_books]
name_zh = "童书"
name_en = "Children's books"
reference_points = 10
depreciation_per_year = 0.25
floor = 0.5
min_points = 1
max_points = 40
weight_range_g = [50, 2000]

[categories.appliance]
name_zh = "小厨电"
name_en = "Small kitchen appliances"
reference_points = 60
depreciation_per_year = 0.10
floor = 0.10
min_points = 5
max_points = 200
weight_range_g = [300, 8000]

[categories.clothes]
name_zh = "成人衣物"
name_en = "Adult clothing"
per_kg_rate = 5
min_points = 1
max_points = 60
weight_range_g = [200, 15000]
"""

STEP5_POLICY = TEST_POLICY.replace("step = 1", "step = 5").replace(
    "min_points = 1\n", "min_points = 5\n"
)

POLICY = load_policy(TEST_POLICY)
POLICY5 = load_policy(STEP5_POLICY)
WEEK = "2026-W47"


def inputs(
    category: str = "toys",
    condition: str = "全新",
    age_months: int = 0,
    weight_g: int = 500,
    photo_count: int = 3,
    demand: float = 1.0,
    price: float | None = None,
) -> Inputs:
    return Inputs(
        category, condition, age_months, weight_g, photo_count, Demand(demand, WEEK), price
    )


def factor(proposal: Proposal, name: str) -> float:
    [found] = [f.value for f in proposal.factors if f.name == name]
    return found


# --- the formula, by hand --------------------------------------------------------------

FORMULA_CASES = [
    # (id, policy, inputs, expected points)
    # 25 × (1 − 0.33 × 0.5 = 0.835) × 0.5 × 1.0 = 10.4375 → 10
    ("per-item", POLICY, inputs("toys", "9成新", age_months=6), 10),
    # 20 × (1 − 0.5 × 1) × 1.0 × 1.1 = 11.0 → 11
    ("demand-within", POLICY, inputs("kids_clothing", age_months=12, demand=1.1), 11),
    # 1 − 0.5 × 3 = −0.5 → floor 0.1: 20 × 0.1 × 0.75 × 1.0 = 1.5 → 2 (half up)
    ("floor+half-up", POLICY, inputs("kids_clothing", "9成新以上", age_months=36), 2),
    # books keep half: 1 − 0.25 × 4 = 0 → floor 0.5: 10 × 0.5 × 0.5 = 2.5 → 3
    ("book-floor", POLICY, inputs("kids_books", "9成新", age_months=48, weight_g=300), 3),
    # 25 × 0.1 (floor: 1 − 0.33 × 5 < 0) × 0.25 × 1.0 = 0.625 → clamp to min 1 → 1
    ("clamp-min", POLICY, inputs("toys", "8成新", age_months=60), 1),
    # 20 × 1 × 1 × 2.0 → demand bounded to 1.25 → 25
    ("demand-max", POLICY, inputs("kids_clothing", demand=2.0), 25),
    # 20 × 1 × 1 × 0.5 → demand bounded to 0.8 → 16
    ("demand-min", POLICY, inputs("kids_clothing", demand=0.5), 16),
    # bulk: 2.35 kg × 1 × 1 × 0.9 × 5 = 10.575 → 11
    ("bulk", POLICY, inputs("clothes", "8成新", weight_g=2350, demand=0.9), 11),
    # bulk: 15 kg × 1.0 × 5 = 75 → clamp to max 60
    ("bulk-clamp-max", POLICY, inputs("clothes", weight_g=15000), 60),
    # 60 × (1 − 0.1 × 2 = 0.8) × 0.75 × 1.0 = 36 → 36; price ¥80 → cap 40, not binding
    (
        "cap-not-binding",
        POLICY,
        inputs("appliance", "9成新以上", 24, 2000, price=80),
        36,
    ),
    # 60 × 1 × 1 × 1 = 60; price ¥80 → cap 80 × 0.5 = 40 → 40
    ("cap", POLICY, inputs("appliance", weight_g=2000, price=80), 40),
    # 20 → 20; price ¥1 → cap floor(0.5) = 0: the cap goes below min
    ("cap-below-min", POLICY, inputs("kids_clothing", price=1), 0),
    # below: recycling only → 0, whatever the reference
    ("below", POLICY, inputs("appliance", "below", weight_g=2000), 0),
    ("below-bulk", POLICY, inputs("clothes", "below", weight_g=3000), 0),
    # step 5: 10.4375 / 5 = 2.09 → 2 → 10
    ("step5", POLICY5, inputs("toys", "9成新", age_months=6), 10),
    # step 5: 60 × 1.2 = 72 → 14.4 → 70
    ("step5-down", POLICY5, inputs("appliance", weight_g=2000, demand=1.2), 70),
    # step 5: 60 × 1.225 = 73.5 → 14.7 → 75
    ("step5-up", POLICY5, inputs("appliance", weight_g=2000, demand=1.225), 75),
    # step 5: 60; price ¥95 → 47.5 → floored to the step: 45
    ("step5-cap", POLICY5, inputs("appliance", weight_g=2000, price=95), 45),
    # step 5: 25 × 0.1 × 0.25 = 0.625 → clamp to min 5 → 5
    ("step5-min", POLICY5, inputs("toys", "8成新", age_months=60), 5),
]


@pytest.mark.parametrize(
    ("policy", "given", "points"),
    [case[1:] for case in FORMULA_CASES],
    ids=[case[0] for case in FORMULA_CASES],
)
def test_formula(policy: Policy, given: Inputs, points: int) -> None:
    proposal = value(policy, given)
    assert proposal.abstained is None
    assert proposal.points == points
    assert proposal.policy_version == policy.version
    assert proposal.demand == given.demand


def test_depreciation_floor_and_reason() -> None:
    old = value(POLICY, inputs("kids_clothing", age_months=36))
    assert factor(old, "depreciation") == pytest.approx(0.10)
    assert "floor 10%" in next(f.reason for f in old.factors if f.name == "depreciation")
    young = value(POLICY, inputs("kids_clothing", age_months=6))  # 1 − 0.5 × 0.5
    assert factor(young, "depreciation") == pytest.approx(0.75)


def test_demand_bound_is_explained() -> None:
    proposal = value(POLICY, inputs("kids_clothing", demand=2.0))
    reason = next(f.reason for f in proposal.factors if f.name == "demand")
    assert WEEK in reason
    assert "bounded to 1.25" in reason


def test_factor_order_and_reasons() -> None:
    per_item = value(POLICY, inputs("appliance", weight_g=2000, price=80))
    assert [f.name for f in per_item.factors] == [
        "reference",
        "depreciation",
        "condition",
        "demand",
        "clamp",
        "rounding",
        "purchase_cap",
    ]
    bulk = value(POLICY, inputs("clothes", weight_g=2000))
    assert [f.name for f in bulk.factors] == [
        "reference",
        "depreciation",
        "condition",
        "demand",
        "bulk_rate",
        "clamp",
        "rounding",
    ]
    for proposal in (per_item, bulk):
        assert all(f.reason for f in proposal.factors)
    assert "capped at 50%" in per_item.factors[-1].reason


def test_below_is_recycling_not_abstention() -> None:
    proposal = value(POLICY, inputs("toys", "below"))
    assert proposal.abstained is None
    assert proposal.points == 0
    assert factor(proposal, "condition") == 0
    assert "recycling" in next(f.reason for f in proposal.factors if f.name == "clamp")


# --- abstention ------------------------------------------------------------------------

ABSTAIN_CASES = [
    ("unknown_category", inputs("sofa")),
    ("unknown_category", inputs("sofa", photo_count=0)),  # checked first
    ("no_photos", inputs(photo_count=0)),
    ("weight_implausible", inputs("toys", weight_g=19)),  # range 20–10000
    ("weight_implausible", inputs("toys", weight_g=10001)),
    ("weight_implausible", inputs("clothes", weight_g=0)),
    ("age_implausible", inputs(age_months=-1)),
    ("age_implausible", inputs(age_months=361)),
    ("price_implausible", inputs(price=0)),
    ("price_implausible", inputs(price=-5)),
    ("price_implausible", inputs(price=20001)),
    ("price_implausible", inputs(price=math.nan)),
    ("price_implausible", inputs(price=math.inf)),
]


@pytest.mark.parametrize(("reason", "given"), ABSTAIN_CASES)
def test_abstains(reason: str, given: Inputs) -> None:
    proposal = value(POLICY, given)
    assert proposal.abstained == reason
    assert proposal.points is None
    assert proposal.confidence == 0
    assert proposal.detail
    assert proposal.policy_version == "test-1"


def test_every_abstention_reason_is_tested() -> None:
    assert {reason for reason, _ in ABSTAIN_CASES} == set(ABSTENTION_REASONS)


def test_the_range_ends_are_plausible() -> None:
    assert value(POLICY, inputs("toys", weight_g=20)).points is not None
    assert value(POLICY, inputs("toys", weight_g=10000, age_months=360)).points is not None


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="condition must be one of"):
        inputs(condition="7成新")
    with pytest.raises(ValueError, match="demand factor"):
        Demand(math.nan, WEEK)
    with pytest.raises(ValueError, match="demand factor"):
        Demand(0.0, WEEK)


# --- confidence ------------------------------------------------------------------------


def confidence_of(**kwargs: object) -> float:
    proposal = value(POLICY, inputs(**kwargs))  # type: ignore[arg-type]
    assert proposal.abstained is None
    return proposal.confidence


def test_confidence_full_for_a_typical_item() -> None:
    # 3 photos, new, weight mid-range, demand within the bounds
    assert confidence_of(weight_g=5000) == 1.0


def test_confidence_falls_with_fewer_photos() -> None:
    # 1 − 0.15 × (3 − n): 0.7, 0.85, 1.0, 1.0
    assert [confidence_of(weight_g=5000, photo_count=n) for n in (1, 2, 3, 4)] == [
        0.7,
        0.85,
        1.0,
        1.0,
    ]


def test_confidence_falls_with_age() -> None:
    values = [confidence_of(weight_g=5000, age_months=m) for m in (0, 12, 60, 180, 360)]
    assert values == sorted(values, reverse=True)
    assert values[0] > values[-1] == pytest.approx(0.7)  # 1 − 0.3 × 360 / 360


def test_confidence_falls_near_the_ends_of_the_weight_range() -> None:
    # toys 20–10000 g: 10 % in is 1018 g; at either end 0.7
    lo_side = [confidence_of(weight_g=w) for w in (20, 200, 500, 1018, 5000)]
    hi_side = [confidence_of(weight_g=w) for w in (10000, 9800, 9500, 9002, 5000)]
    for side in (lo_side, hi_side):
        assert side == sorted(side)
        assert side[0] == pytest.approx(0.7)
        assert side[-1] == 1.0


def test_confidence_falls_with_demand_at_its_bound() -> None:
    assert confidence_of(weight_g=5000, demand=1.0) == 1.0
    assert confidence_of(weight_g=5000, demand=1.25) == 0.9
    assert confidence_of(weight_g=5000, demand=3.0) == 0.9
    assert confidence_of(weight_g=5000, demand=0.8) == 0.9


# --- the policy file -------------------------------------------------------------------


def default_text() -> str:
    return (
        resources.files("valuation_terminal")
        .joinpath("policy/default.toml")
        .read_text(encoding="utf-8")
    )


def test_default_policy_loads() -> None:
    policy = load_policy(default_text())
    assert policy.version == "2026-11-1"
    assert len(policy.categories) >= 10
    assert (policy.step, policy.demand_min, policy.demand_max) == (1, 0.8, 1.25)
    assert policy.purchase_cap == 0.5
    assert dict(policy.conditions) == {
        "全新": 1.0,
        "9成新以上": 0.75,
        "9成新": 0.5,
        "8成新": 0.25,
        "below": 0.0,
    }
    for category in policy.categories.values():
        assert category.name_zh.strip()
        assert category.name_en.strip()
        assert category.name_zh != category.name_en
        assert category.floor >= 0.10
    assert policy.categories["adult_clothing"].is_bulk
    assert policy.categories["children_clothing"].depreciation_per_year == 0.5


def test_default_policy_values_a_typical_gift() -> None:
    # toys: 25 × (1 − 0.33 × 0.5) × 0.5 × 1.0 = 10.4375 → 10 (as the test policy)
    proposal = value(load_policy(default_text()), inputs("toys", "9成新", 6, 400))
    assert proposal.points == 10
    assert proposal.policy_version == "2026-11-1"


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


TOYS = "[categories.toys]\n"
BAD_POLICIES = [
    # (field named in the message, broken text)
    (
        "conditions.7成新",
        _replace_once(TEST_POLICY, '"below" = 0.0', '"below" = 0.0\n"7成新" = 0.1'),
    ),
    ("conditions.8成新: missing", _replace_once(TEST_POLICY, '"8成新" = 0.25\n', "")),
    ("conditions.below", _replace_once(TEST_POLICY, '"below" = 0.0', '"below" = 0.1')),
    ("conditions.全新", _replace_once(TEST_POLICY, '"全新" = 1.0', '"全新" = 1.5')),
    (
        "categories.toys.floor",
        _replace_once(
            TEST_POLICY,
            "floor = 0.10\nmin_points = 1\nmax_points = 100",
            "floor = 1.5\nmin_points = 1\nmax_points = 100",
        ),
    ),
    (
        "categories.toys.min_points",
        _replace_once(
            TEST_POLICY, "min_points = 1\nmax_points = 100", "min_points = 101\nmax_points = 100"
        ),
    ),
    (
        "categories.toys.reference_points: missing",
        _replace_once(TEST_POLICY, "reference_points = 25\n", ""),
    ),
    (
        "categories.toys.weight_range_g",
        _replace_once(TEST_POLICY, "[20, 10000]", "[10000, 20]"),
    ),
    (
        "categories.toys.flor: unknown field",
        _replace_once(TEST_POLICY, TOYS, TOYS + "flor = 0.1\n"),
    ),
    ("categories.toys.name_en: missing", _replace_once(TEST_POLICY, 'name_en = "Toys"\n', "")),
    (
        "categories.clothes.per_kg_rate",
        _replace_once(TEST_POLICY, "per_kg_rate = 5", "per_kg_rate = 0"),
    ),
    ("version: missing", _replace_once(TEST_POLICY, 'version = "test-1"\n', "")),
    ("step", _replace_once(TEST_POLICY, "step = 1", "step = 0")),
    ("min_points: 1 is not a multiple of step 5", TEST_POLICY.replace("step = 1", "step = 5")),
    ("demand.min", _replace_once(TEST_POLICY, "min = 0.8", "min = 1.3")),
    ("demand.max: missing", _replace_once(TEST_POLICY, "max = 1.25\n", "")),
    ("purchase_cap", _replace_once(TEST_POLICY, "purchase_cap = 0.5", 'purchase_cap = "half"')),
    ("not valid TOML", TEST_POLICY + "\n[[[\n"),
]


@pytest.mark.parametrize(("named", "text"), BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES])
def test_bad_policy_refused_with_the_field_named(named: str, text: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(text)
    assert named in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- storage and recomputation ---------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        inputs("appliance", "9成新以上", 24, 2000, price=80),
        inputs("clothes", "8成新", weight_g=2350, demand=0.9),
        inputs("toys", weight_g=5),  # abstained
    ],
)
def test_json_round_trip_and_recompute(given: Inputs) -> None:
    proposal = value(POLICY, given)
    stored = json.loads(json.dumps({"inputs": given.to_json(), "proposal": proposal.to_json()}))
    assert Inputs.from_json(stored["inputs"]) == given
    assert Proposal.from_json(stored["proposal"]) == proposal
    assert recompute(TEST_POLICY, stored["inputs"]) == proposal
    assert stored["proposal"]["policy_version"] == "test-1"
    assert stored["proposal"]["demand"] == {"factor": given.demand.factor, "snapshot_id": WEEK}


def test_another_policy_version_gives_another_proposal() -> None:
    given = inputs("toys", "9成新", age_months=6).to_json()
    edited = TEST_POLICY.replace('"test-1"', '"test-2"').replace(
        "reference_points = 25", "reference_points = 30"
    )
    assert recompute(TEST_POLICY, given).points == 10
    # 30 × 0.835 × 0.5 = 12.525 → 13
    again = recompute(edited, given)
    assert (again.points, again.policy_version) == (13, "test-2")


# --- properties ------------------------------------------------------------------------


def round_half_up(x: float, step: int) -> int:
    return math.floor(round(x / step, 9) + 0.5) * step


any_inputs = st.builds(
    Inputs,
    category=st.sampled_from([*POLICY.categories, "sofa"]),
    condition=st.sampled_from(CONDITION_GRADES),
    age_months=st.integers(-24, 480),
    weight_g=st.integers(0, 20_000),
    photo_count=st.integers(0, 6),
    demand=st.builds(
        Demand,
        factor=st.floats(0.05, 5.0),
        snapshot_id=st.sampled_from(["2026-W47", "2026-W48"]),
    ),
    purchase_price_yuan=st.none() | st.floats(-10, 30_000),
)


@settings(max_examples=400, deadline=None)
@given(policy=st.sampled_from([POLICY, POLICY5]), given=any_inputs)
def test_points_are_bounded_stepped_and_explained(policy: Policy, given: Inputs) -> None:
    proposal = value(policy, given)
    assert 0 <= proposal.confidence <= 1
    assert Proposal.from_json(json.loads(json.dumps(proposal.to_json()))) == proposal
    if proposal.points is None:
        assert proposal.abstained in ABSTENTION_REASONS
        assert proposal.confidence == 0
        return
    assert proposal.abstained is None
    category = policy.categories[given.category]
    points = proposal.points
    assert points % policy.step == 0
    assert 0 <= points <= category.max_points
    capped = given.purchase_price_yuan is not None
    if given.condition == "below":
        assert points == 0
    elif not capped:
        assert category.min_points <= points <= category.max_points

    names = [f.name for f in proposal.factors]
    expected = ["reference", "depreciation", "condition", "demand"]
    expected += ["bulk_rate"] if category.is_bulk else []
    expected += ["clamp", "rounding"] + (["purchase_cap"] if capped else [])
    assert names == expected

    # the product of the factors explains the value before clamp and rounding
    raw = math.prod(f.value for f in proposal.factors if f.name in MULTIPLIER_FACTORS)
    clamped = factor(proposal, "clamp")
    if given.condition == "below":
        assert raw == 0 == clamped
    else:
        assert clamped == pytest.approx(min(category.max_points, max(category.min_points, raw)))
    assert factor(proposal, "rounding") == round_half_up(clamped, policy.step)
    rounded = factor(proposal, "rounding")
    assert points == (min(rounded, factor(proposal, "purchase_cap")) if capped else rounded)
    assert policy.demand_min <= factor(proposal, "demand") <= policy.demand_max
