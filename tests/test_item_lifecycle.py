"""The item lifecycle and the settlement table, as pure tables (cloud_api/core/items.py and
cloud_api/core/settlement.py), and one property: no sequence of actions leaves the lifecycle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_api.core.items import (
    ACTIONS,
    IN_LOCKER,
    OUT_OF_LOCKER,
    PEOPLE_ACTIONS,
    STATUSES,
    TRANSITIONS,
    InvalidTransition,
    allowed_actions,
    next_status,
)
from cloud_api.core.settlement import NOTHING, Context, Settlement, fact_of, settle


def test_every_status_is_either_in_a_locker_or_out_of_one() -> None:
    assert set(STATUSES) == IN_LOCKER | OUT_OF_LOCKER
    assert not IN_LOCKER & OUT_OF_LOCKER


def test_every_status_but_the_first_is_reachable_from_proposed() -> None:
    seen, frontier = {"proposed"}, ["proposed"]
    while frontier:
        status = frontier.pop()
        for action in allowed_actions(status):
            for kind in ("give", "lend"):
                target = next_status(status, action, kind)
                if target not in seen:
                    seen.add(target)
                    frontier.append(target)
    assert seen == set(STATUSES)


def test_people_actions_are_actions() -> None:
    assert PEOPLE_ACTIONS <= ACTIONS


@pytest.mark.parametrize(
    ("status", "action", "kind", "expected"),
    [
        ("proposed", "issue_dropoff", "give", "awaiting_dropoff"),
        ("awaiting_dropoff", "item_inside", "give", "pending_approval"),
        ("awaiting_dropoff", "dropoff_empty", "give", "proposed"),
        ("pending_approval", "approve", "give", "listed"),
        ("pending_approval", "reject", "give", "rejected"),
        ("rejected", "issue_return_to_donor", "give", "awaiting_return_to_donor"),
        ("listed", "reserve", "give", "reserved"),
        ("reserved", "door_opened", "give", "collecting"),
        ("collecting", "item_gone", "give", "picked_up"),
        ("collecting", "item_gone", "lend", "on_loan"),
        ("collecting", "item_left", "lend", "reserved"),
        ("reserved", "grant_unused", "give", "listed"),
        ("on_loan", "loan_due", "lend", "due"),
        ("due", "loan_overdue", "lend", "overdue"),
        ("overdue", "request_return", "lend", "awaiting_return"),
        ("awaiting_return", "item_inside", "lend", "returned_pending_check"),
        ("returned_pending_check", "check_ok", "lend", "listed"),
        ("listed", "late_conflict", "give", "under_review"),
        ("under_review", "confirm_gone", "lend", "on_loan"),
    ],
)
def test_transitions(status: str, action: str, kind: str, expected: str) -> None:
    assert next_status(status, action, kind) == expected


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("picked_up", "reserve"),  # gone is gone
        ("reserved", "reserve"),  # no double reservation
        ("listed", "approve"),  # approval credits once
        ("rejected", "approve"),  # approval after rejection is refused
        ("proposed", "item_inside"),  # a drop-off needs its grant first
        ("withdrawn", "issue_dropoff"),
        ("returned_to_donor", "item_gone"),
    ],
)
def test_invalid_transitions_are_refused(status: str, action: str) -> None:
    with pytest.raises(InvalidTransition) as refused:
        next_status(status, action)
    assert refused.value.code == "invalid_transition"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.sampled_from(sorted(ACTIONS)), max_size=40),
    st.sampled_from(["give", "lend"]),
)
def test_no_sequence_of_actions_leaves_the_lifecycle(actions: list[str], kind: str) -> None:
    status = "proposed"
    for action in actions:
        try:
            new = next_status(status, action, kind)
        except InvalidTransition:
            assert (status, action) not in TRANSITIONS
            continue
        assert new in STATUSES
        if kind == "give":
            assert new not in ("on_loan", "due", "overdue", "awaiting_return")
        status = new


# --- settlement ---------------------------------------------------------------------------------


def ctx(
    status: str | None,
    purpose: str | None = "pickup",
    grant: str | None = "active",
    *,
    occupancy: str = "present",
    settled_unused: bool = False,
    kind: str = "give",
) -> Context:
    return Context(status, kind, purpose, grant, settled_unused, occupancy)


ABSENT = {"occupancy": "absent"}
PRESENT = {"occupancy": "present"}


@pytest.mark.parametrize(
    ("event", "data", "fact"),
    [
        ("door_opened", {}, "door_opened"),
        ("door_closed", {"epoch": 3}, "door_closed"),
        ("occupancy_changed", ABSENT, "item_absent"),
        ("occupancy_changed", PRESENT, "item_present"),
        ("occupancy_changed", {"occupancy": "unknown"}, None),
        ("alarm", {"item_at_risk": True}, "at_risk"),
        ("alarm", {"item_at_risk": False}, None),
        ("code_accepted", {}, None),
        ("latch_pulsed", {}, None),
    ],
)
def test_facts(event: str, data: dict[str, object], fact: str | None) -> None:
    assert fact_of(event, data) == fact


@pytest.mark.parametrize(
    ("context", "fact", "expected"),
    [
        # A pickup: the first opening consumes the grant, the item gone completes it.
        (ctx("reserved"), "door_opened", Settlement("door_opened", consume_grant=True)),
        (ctx("collecting", grant="consumed"), "item_absent",
         Settlement("item_gone", occupancy="absent")),
        # An opening by a grant that expired (or was cancelled) on the cloud but not yet on the
        # device consumes it: the device served it in time.
        (ctx("reserved", grant="expired"), "door_opened", Settlement("door_opened", consume_grant=True)),
        # Door closed on the item still inside: not taken.
        (ctx("collecting", grant="consumed", occupancy="present"), "door_closed",
         Settlement("item_left", case="item_left_behind")),
        # Door closed alone settles nothing more once the item is gone.
        (ctx("picked_up", grant="consumed", occupancy="absent"), "door_closed", NOTHING),
        # Drop-offs: inside only when the door closed on it.
        (ctx("awaiting_dropoff", "dropoff", "consumed", occupancy="present"), "door_closed",
         Settlement("item_inside")),
        (ctx("awaiting_dropoff", "dropoff", "consumed", occupancy="absent"), "door_closed",
         Settlement("dropoff_empty", case="dropoff_empty")),
        (ctx("awaiting_dropoff", "dropoff", "consumed"), "item_present",
         Settlement(occupancy="present")),
        (ctx("awaiting_dropoff", "dropoff", "consumed"), "at_risk", Settlement(case="item_at_risk")),
        # Unknown occupancy at closing: nothing is decided.
        (ctx("awaiting_dropoff", "dropoff", "consumed", occupancy="unknown"), "door_closed", NOTHING),
        # A listed item reported gone: under review, and a case.
        (ctx("listed", None, None), "item_absent",
         Settlement("item_gone", occupancy="absent", case="item_missing")),
        # A late event about a grant settled as unused: a conflict, never an action.
        (ctx("listed", grant="expired", settled_unused=True), "door_opened",
         Settlement(conflict=True, case="late_conflict")),
        (ctx("reserved", grant="expired", settled_unused=True), "item_absent",
         Settlement(occupancy="absent", conflict=True, case="late_conflict")),
        # Repeats change nothing.
        (ctx("collecting", grant="consumed"), "door_opened", NOTHING),
        (ctx("picked_up", grant="consumed", occupancy="absent"), "item_absent",
         Settlement(occupancy="absent")),
        # No item concerned.
        (ctx(None, "maintenance"), "door_opened", Settlement(consume_grant=True)),
    ],
)  # fmt: skip
def test_settlement_table(context: Context, fact: str, expected: Settlement) -> None:
    assert settle(context, fact) == expected
