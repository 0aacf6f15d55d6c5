"""The item lifecycle: every status an item can be in and the only ways out of each (pure).

An item given away::

    proposed → awaiting_dropoff → pending_approval → listed → reserved → collecting → picked_up

lent (a deposit is held while it is out)::

    … listed → reserved → collecting → on_loan → due → overdue
    on_loan | due | overdue → awaiting_return → returned_pending_check → listed

and refused::

    pending_approval → rejected → awaiting_return_to_donor → returned_to_donor

Actions are of two sorts: what a person decides (``approve``, ``reserve``, ``cancel``, …) and
what the world reports (``door_opened``, ``item_gone``, ``item_inside`` from a locker's events;
``grant_unused``, ``loan_due`` from the scheduler). :func:`next_status` is the one place that
says which action is valid in which status; any other pair raises :class:`InvalidTransition`
(HTTP 409), and the services change nothing.

Example:
    >>> next_status("listed", "reserve")
    'reserved'
    >>> next_status("collecting", "item_gone", kind="lend")
    'on_loan'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

ItemKind = Literal["give", "lend"]

STATUSES: tuple[str, ...] = (
    "proposed",
    "awaiting_dropoff",
    "pending_approval",
    "listed",
    "reserved",
    "collecting",
    "picked_up",
    "on_loan",
    "due",
    "overdue",
    "awaiting_return",
    "returned_pending_check",
    "rejected",
    "awaiting_return_to_donor",
    "returned_to_donor",
    "withdrawn",
    "under_review",
)

IN_LOCKER: frozenset[str] = frozenset(
    {
        "awaiting_dropoff",  # the compartment is kept for the donor's drop-off
        "pending_approval",
        "listed",
        "reserved",
        "collecting",
        "awaiting_return",  # the compartment is kept for the borrower's return
        "returned_pending_check",
        "rejected",
        "awaiting_return_to_donor",
        "under_review",
    }
)
"""Statuses in which an item holds (or is about to hold) its compartment."""

OUT_OF_LOCKER: frozenset[str] = frozenset(
    {"proposed", "picked_up", "on_loan", "due", "overdue", "returned_to_donor", "withdrawn"}
)
"""Statuses in which an item holds no compartment."""

TRANSITIONS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        # The donor's way in.
        ("proposed", "issue_dropoff"): "awaiting_dropoff",
        ("proposed", "withdraw"): "withdrawn",
        ("proposed", "proposal_lapsed"): "withdrawn",
        ("awaiting_dropoff", "item_inside"): "pending_approval",
        ("awaiting_dropoff", "dropoff_empty"): "proposed",
        ("awaiting_dropoff", "grant_unused"): "proposed",
        ("awaiting_dropoff", "withdraw"): "withdrawn",
        ("pending_approval", "approve"): "listed",
        ("pending_approval", "reject"): "rejected",
        ("pending_approval", "item_gone"): "under_review",
        # Back to the donor.
        ("rejected", "issue_return_to_donor"): "awaiting_return_to_donor",
        ("listed", "return_to_donor"): "awaiting_return_to_donor",
        ("awaiting_return_to_donor", "item_gone"): "returned_to_donor",
        # A resident's way out.
        ("listed", "reserve"): "reserved",
        ("listed", "item_gone"): "under_review",
        ("reserved", "door_opened"): "collecting",
        ("reserved", "item_gone"): "picked_up",
        ("reserved", "grant_unused"): "listed",
        ("collecting", "item_gone"): "picked_up",
        ("collecting", "item_left"): "reserved",
        # Lending.
        ("on_loan", "loan_due"): "due",
        ("due", "loan_overdue"): "overdue",
        ("on_loan", "request_return"): "awaiting_return",
        ("due", "request_return"): "awaiting_return",
        ("overdue", "request_return"): "awaiting_return",
        ("awaiting_return", "item_inside"): "returned_pending_check",
        ("awaiting_return", "grant_unused"): "on_loan",
        ("awaiting_return", "dropoff_empty"): "awaiting_return",
        ("returned_pending_check", "check_ok"): "listed",
        ("returned_pending_check", "check_damaged"): "under_review",
        # A social worker decides what a conflict or a problem left open.
        ("under_review", "relist"): "listed",
        ("under_review", "confirm_gone"): "picked_up",
        ("under_review", "return_to_donor"): "awaiting_return_to_donor",
        ("under_review", "withdraw"): "withdrawn",
        ("listed", "late_conflict"): "under_review",
        ("reserved", "late_conflict"): "under_review",
    }
)
"""(status, action) → status for items given away; :data:`LEND_TARGETS` overrides for loans."""

LEND_TARGETS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("reserved", "item_gone"): "on_loan",
        ("collecting", "item_gone"): "on_loan",
        ("under_review", "confirm_gone"): "on_loan",
    }
)
"""Where a lent item goes instead (it comes back; a given item does not)."""

ACTIONS: frozenset[str] = frozenset(action for _, action in TRANSITIONS)
PEOPLE_ACTIONS: frozenset[str] = frozenset(
    {
        "issue_dropoff",
        "withdraw",
        "approve",
        "reject",
        "issue_return_to_donor",
        "return_to_donor",
        "reserve",
        "request_return",
        "check_ok",
        "check_damaged",
        "relist",
        "confirm_gone",
    }
)
"""Actions a person takes through the API; the rest come from devices and the scheduler."""


class InvalidTransition(ValueError):
    """The action is not valid for the item's current status."""

    code = "invalid_transition"

    def __init__(self, status: str, action: str) -> None:
        super().__init__(f"an item that is {status} cannot be {_describe(action)}")
        self.status = status
        self.action = action


def _describe(action: str) -> str:
    return {
        "reserve": "reserved",
        "approve": "approved",
        "reject": "rejected",
        "withdraw": "withdrawn",
        "request_return": "returned",
    }.get(action, f"moved by {action}")


def next_status(status: str, action: str, kind: ItemKind | str = "give") -> str:
    """The status an action leads to, or raise :class:`InvalidTransition`.

    Args:
        status: the item's current status.
        action: what happened or what a person asked for.
        kind: ``give`` or ``lend``.
    """
    if kind == "lend" and (status, action) in LEND_TARGETS:
        return LEND_TARGETS[(status, action)]
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        raise InvalidTransition(status, action) from None


def allowed_actions(status: str) -> frozenset[str]:
    """Every action valid in a status."""
    return frozenset(action for (s, action) in TRANSITIONS if s == status)


def holds_compartment(status: str) -> bool:
    """Whether an item in this status keeps its compartment from other uses."""
    return status in IN_LOCKER
