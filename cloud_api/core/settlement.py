"""How device events settle items and grants: a pure transition table.

A pickup is settled from facts the locker reported, never from the code alone (system.md,
"Occupancy is a fact"): the grant is *consumed* by the first ``door_opened`` it caused; the item
is *picked up* (and the points hold posted) only once the compartment reports the item absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ITEM_TRANSITIONS: Mapping[tuple[str, str], str] = {
    ("reserved", "door_opened"): "collecting",
    ("reserved", "item_gone"): "picked_up",
    ("collecting", "item_gone"): "picked_up",
}
"""(item status, fact) -> new item status. Pairs not listed change nothing."""


@dataclass(frozen=True)
class Settlement:
    """What one event changes."""

    item_status: str | None = None
    consume_grant: bool = False
    post_hold: bool = False


def fact_of(event_type: str, data: Mapping[str, object]) -> str | None:
    """Reduce an event to the fact settlement cares about."""
    if event_type == "door_opened":
        return "door_opened"
    if event_type == "occupancy_changed" and data.get("occupancy") == "absent":
        return "item_gone"
    return None


def settle_pickup(
    item_status: str, grant_status: str | None, event_type: str, data: Mapping[str, object]
) -> Settlement:
    """Decide what a pickup-related event does to its item and grant.

    Args:
        item_status: the item's current status.
        grant_status: the status of the grant named by the event, if any.
        event_type: the event's type.
        data: the event's data.
    """
    fact = fact_of(event_type, data)
    if fact is None:
        return Settlement()
    new_status = ITEM_TRANSITIONS.get((item_status, fact))
    return Settlement(
        item_status=new_status,
        consume_grant=fact == "door_opened" and grant_status == "active",
        post_hold=new_status == "picked_up",
    )
