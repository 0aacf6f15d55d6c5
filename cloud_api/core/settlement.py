"""What a locker's event means for the item in the compartment (pure).

Settlement follows facts the locker reported, never the code alone (system.md, "Occupancy is a
fact"):

- a grant is *consumed* by the first ``door_opened`` it caused;
- a pickup is *picked up* (its hold posted) only once the item is reported absent — by the item
  sensor or by the resident's answer at the kiosk, both arriving as ``occupancy_changed``;
  a door that closes on an item still inside is *not taken* (``item_left``);
- a drop-off or a return is *inside* only when the door closes on an item reported present
  (``item_inside``); a door closed on an empty compartment is ``dropoff_empty``;
- a door left open with the item inside is a risk (a case), and settles nothing until it closes.

An event about a grant the cloud already settled as *unused* (expired or cancelled, and the
device's reports had passed that moment, or the staleness bound did) contradicts a decision
taken: it is a **late conflict** — recorded as a correction and a case for a social worker,
never applied as a second outcome.

Example:
    >>> settle(Context("reserved", "give", "pickup", "active", False, "present"), "door_opened")
    Settlement(action='door_opened', consume_grant=True, occupancy=None, case=None, conflict=False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cloud_api.core.items import InvalidTransition, next_status

FACTS = ("door_opened", "door_closed", "item_present", "item_absent", "at_risk")


def fact_of(event_type: str, data: Mapping[str, object]) -> str | None:
    """Reduce an event to the fact settlement cares about (None: nothing to settle)."""
    if event_type in ("door_opened", "door_closed"):
        return event_type
    if event_type == "occupancy_changed":
        occupancy = data.get("occupancy")
        if occupancy == "absent":
            return "item_absent"
        if occupancy == "present":
            return "item_present"
    if event_type == "alarm" and data.get("item_at_risk") is True:
        return "at_risk"
    return None


@dataclass(frozen=True)
class Context:
    """What the cloud knows when the event is applied.

    Attributes:
        item_status: the item's status, or None when no item is concerned.
        item_kind: ``give`` or ``lend``.
        purpose: the purpose of the grant the event names (None: the event names no grant).
        grant_status: that grant's status.
        settled_unused: the grant was already settled as unused (its holds voided).
        occupancy: the compartment's occupancy as the events so far report it.
    """

    item_status: str | None
    item_kind: str
    purpose: str | None
    grant_status: str | None
    settled_unused: bool
    occupancy: str


@dataclass(frozen=True)
class Settlement:
    """What one event changes: an item action, the grant consumed, the occupancy the events now
    report, a case to open (its kind), or a late conflict."""

    action: str | None = None
    consume_grant: bool = False
    occupancy: str | None = None
    case: str | None = None
    conflict: bool = False


NOTHING = Settlement()

_CLOSE_ACTIONS: Mapping[tuple[str, str], str] = {
    ("pickup", "present"): "item_left",
    ("dropoff", "present"): "item_inside",
    ("dropoff", "absent"): "dropoff_empty",
    ("return", "present"): "item_inside",
    ("return", "absent"): "dropoff_empty",
}
"""(grant purpose, occupancy when the door closed) → the item action."""

_UNEXPECTED_GONE = frozenset({"listed", "pending_approval"})
"""An item reported gone in these statuses left without anyone being allowed to take it."""


def settle(ctx: Context, fact: str | None) -> Settlement:
    """Decide what one fact does, given what the cloud knows.

    The returned action is always valid for the item's status (checked against the lifecycle);
    an action that would not be is dropped, so a repeated or re-ordered event settles nothing.
    """
    if fact is None:
        return NOTHING
    occupancy = {"item_present": "present", "item_absent": "absent"}.get(fact)
    uses_grant = ctx.purpose is not None and fact in ("door_opened", "item_absent")
    if ctx.settled_unused and uses_grant:
        return Settlement(occupancy=occupancy, conflict=True, case="late_conflict")
    consume = fact == "door_opened" and ctx.grant_status in ("active", "expired", "revoked")
    action: str | None = None
    case: str | None = None
    if fact == "door_opened" and ctx.purpose == "pickup":
        action = "door_opened"
    elif fact == "item_absent":
        action = "item_gone"
        if ctx.item_status in _UNEXPECTED_GONE:
            case = "item_missing"
    elif fact == "door_closed" and ctx.purpose is not None:
        action = _CLOSE_ACTIONS.get((ctx.purpose, ctx.occupancy))
        if action == "item_left":
            case = "item_left_behind"
        elif action == "dropoff_empty":
            case = "dropoff_empty"
    elif fact == "at_risk":
        case = "item_at_risk"
    if action is not None and not _valid(ctx, action):
        action = None
        if case in ("item_left_behind", "item_missing", "dropoff_empty"):
            case = None  # nothing of ours was in that state: a repeat, or not our item
    return Settlement(action=action, consume_grant=consume, occupancy=occupancy, case=case)


def _valid(ctx: Context, action: str) -> bool:
    if ctx.item_status is None:
        return False
    try:
        next_status(ctx.item_status, action, ctx.item_kind)
    except InvalidTransition:
        return False
    return True
