"""The learned per-category correction and the proposal-vs-decision report (issue #9, item 6)."""

from __future__ import annotations

import doctest
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valuation_terminal.core import learning
from valuation_terminal.core.learning import error_report, learned_correction
from valuation_terminal.core.rules import Correction, Demand, Inputs, load_policy, value

POLICY = load_policy(
    resources.files("valuation_terminal").joinpath("policy/default.toml").read_text("utf-8")
)


def test_no_decisions_and_no_adjustments_give_exactly_one() -> None:
    assert learned_correction([]) == Correction(1.0, 0)
    unchanged = learned_correction([(30, 30), (55, 55), (5, 5)] * 40)
    assert unchanged.factor == 1.0
    assert unchanged.decisions == 120


@given(
    history=st.lists(
        st.tuples(st.integers(1, 500), st.integers(0, 5000)).filter(lambda pd: pd[0] > 0),
        max_size=60,
    ),
    outlier=st.integers(0, 100_000),
    bound=st.sampled_from([0.05, 0.2, 0.5]),
)
def test_one_outlier_moves_the_correction_at_most_its_bound(
    history: list[tuple[int, int]], outlier: int, bound: float
) -> None:
    before = learned_correction(history, bound=bound).factor
    after = learned_correction([*history, (40, outlier)], bound=bound).factor
    assert abs(after - before) <= bound + 1e-9
    assert 1 - bound - 1e-9 <= after <= 1 + bound + 1e-9


def test_a_single_outlier_among_agreement_moves_it_only_a_little() -> None:
    agreeing = [(20, 20)] * 19
    outlier = learned_correction([*agreeing, (20, 2000)], bound=0.2, prior=5)
    assert outlier.factor == pytest.approx(1 + 0.2 / 25)


def test_consistent_adjustments_pull_it_towards_the_workers_but_not_past_the_bound() -> None:
    lower = learned_correction([(50, 35)] * 200, bound=0.2, prior=5)
    assert lower.factor == pytest.approx(1 - 0.2 * 200 / 205, abs=1e-4)
    assert lower.factor >= 0.8


def test_abstentions_and_zero_proposals_carry_no_ratio() -> None:
    assert learned_correction([(0, 30), (0, 0)]) == Correction(1.0, 0)


def test_the_correction_is_its_own_factor_and_switched_off_is_the_rule_output() -> None:
    base = Inputs("toys", "9成新以上", 6, 400, 3, Demand(1.0, "2026-W47"))
    rule = value(POLICY, base)
    off = value(POLICY, Inputs.from_json({**base.to_json(), "correction": None}))
    assert off == rule
    assert "correction" not in [f.name for f in rule.factors]
    on = value(
        POLICY, Inputs.from_json({**base.to_json(), "correction": {"factor": 0.8, "decisions": 12}})
    )
    (factor,) = [f for f in on.factors if f.name == "correction"]
    assert factor.value == 0.8
    assert "12 decisions" in factor.reason
    assert rule.points is not None and on.points is not None
    assert on.points < rule.points


def test_inputs_with_a_correction_round_trip() -> None:
    inputs = Inputs("toys", "全新", 1, 300, 2, Demand(1.1, "w"), None, Correction(1.04, 7))
    assert Inputs.from_json(inputs.to_json()) == inputs


def test_error_report_per_category_and_overall() -> None:
    report = error_report({"books": [(10, 10), (10, 15), (0, 7)], "toys": [(20, 16)]})
    by = {r.category: r for r in report}
    assert list(by) == ["books", "toys", "*"]
    assert by["books"].decisions == 2 and by["books"].adjusted == 1
    assert by["books"].mean_abs_pct == 25.0 and by["books"].within_20_pct == 50.0
    assert by["toys"].bias_pct == -20.0 and by["toys"].within_20_pct == 100.0
    assert by["*"].decisions == 3
    assert by["*"].bias_pct == pytest.approx(round(100 * (0 + 0.5 - 0.2) / 3, 2))
    assert error_report({}) == []


def test_module_examples() -> None:
    assert doctest.testmod(learning).failed == 0
