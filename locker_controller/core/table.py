"""The compartment transition table, as data: (phase, stimulus) -> transition, or impossible.

A compartment's *phase* is derived from its axes (:func:`phase_of`); a *stimulus* is what the core
made of an input for one compartment — a debounced door or item change, a pulse it decided to
start, a report from the lock bus, a deadline that passed. Every pair of the product is listed:
either the name of a transition (in :mod:`locker_controller.core.compartment`) or
:class:`Impossible` with the reason the core can never produce that stimulus in that phase. The
tests walk the whole product, so a new phase or stimulus cannot be added without deciding every
pair.

Example:
    >>> TABLE[("locked", "door_opened")]
    'forced'
    >>> TABLE[("open", "door_opened")]
    Impossible(reason='the debouncer only forwards a change of level')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from linli.contract.models import LockWord
from locker_controller.core.model import Compartment

Phase = Literal["unknown", "locked", "unlocking", "unlocked", "open"]
"""``open``: the door is open. ``unlocking``: a pulse is in progress. ``unknown``: the door is not
sensed (start-up, bus unreachable, or a board without door sensor). ``unlocked``: a pulse ended
and its authorization still explains an opening. ``locked``: door closed, nothing pending."""

Stimulus = Literal[
    "door_opened",
    "door_closed",
    "item_appeared",
    "item_gone",
    "item_learned",
    "pulse_started",
    "pulse_ended",
    "pulse_overdue",
    "output_on_unexpected",
    "latch_released",
    "latch_caught",
    "window_over",
    "ajar_due",
    "sensors_lost",
    "attention_cleared",
]

PHASES: tuple[Phase, ...] = get_args(Phase)
STIMULI: tuple[Stimulus, ...] = get_args(Stimulus)


@dataclass(frozen=True)
class Impossible:
    """A pair the core never produces, and why."""

    reason: str


_DEBOUNCED = Impossible("the debouncer only forwards a change of level")
_NO_PULSE = Impossible(
    "pulse reports and deadlines exist only while a pulse is in progress (phase unlocking or"
    " open); a late report after a forced off is dropped before the table"
)
_GUARDED = Impossible("the pulse guard refuses while the door is open or a pulse is in progress")
_NO_WINDOW = Impossible("the window is only watched while a pulse ended and the door is closed")
_NOT_OPEN = Impossible("ajar is only watched while the door is open")
_CLOSED_DOOR = Impossible("the window begins at the pulse, which lasts at most MAX_PULSE_MS")

# fmt: off
TABLE: Mapping[tuple[Phase, Stimulus], str | Impossible] = {
    ("unknown", "door_opened"): "learn_open",
    ("unknown", "door_closed"): "learn_closed",
    ("unknown", "item_appeared"): "item_change",
    ("unknown", "item_gone"): "item_change",
    ("unknown", "item_learned"): "learn_item",
    ("unknown", "pulse_started"): "start_pulse",
    ("unknown", "pulse_ended"): _NO_PULSE,
    ("unknown", "pulse_overdue"): _NO_PULSE,
    ("unknown", "output_on_unexpected"): "force_off",
    ("unknown", "latch_released"): "latch_unbidden",
    ("unknown", "latch_caught"): "note_caught",
    ("unknown", "window_over"): "window_over",
    ("unknown", "ajar_due"): _NOT_OPEN,
    ("unknown", "sensors_lost"): "lose_sensors",
    ("unknown", "attention_cleared"): "clear_attention",

    ("locked", "door_opened"): "forced",
    ("locked", "door_closed"): _DEBOUNCED,
    ("locked", "item_appeared"): "item_change_while_closed",
    ("locked", "item_gone"): "item_change_while_closed",
    ("locked", "item_learned"): "learn_item",
    ("locked", "pulse_started"): "start_pulse",
    ("locked", "pulse_ended"): _NO_PULSE,
    ("locked", "pulse_overdue"): _NO_PULSE,
    ("locked", "output_on_unexpected"): "force_off",
    ("locked", "latch_released"): "latch_unbidden",
    ("locked", "latch_caught"): "note_caught",
    ("locked", "window_over"): _NO_WINDOW,
    ("locked", "ajar_due"): _NOT_OPEN,
    ("locked", "sensors_lost"): "lose_sensors",
    ("locked", "attention_cleared"): "clear_attention",

    ("unlocking", "door_opened"): "authorized_open",
    ("unlocking", "door_closed"): "learn_closed",
    ("unlocking", "item_appeared"): "item_change_while_closed",
    ("unlocking", "item_gone"): "item_change_while_closed",
    ("unlocking", "item_learned"): "learn_item",
    ("unlocking", "pulse_started"): _GUARDED,
    ("unlocking", "pulse_ended"): "end_pulse",
    ("unlocking", "pulse_overdue"): "force_off",
    ("unlocking", "output_on_unexpected"): Impossible("an output on during its own pulse is expected"),
    ("unlocking", "latch_released"): "note_released",
    ("unlocking", "latch_caught"): "note_caught",
    ("unlocking", "window_over"): _CLOSED_DOOR,
    ("unlocking", "ajar_due"): _NOT_OPEN,
    ("unlocking", "sensors_lost"): "lose_sensors",
    ("unlocking", "attention_cleared"): "clear_attention",

    ("unlocked", "door_opened"): "authorized_open",
    ("unlocked", "door_closed"): _DEBOUNCED,
    ("unlocked", "item_appeared"): "item_change_while_closed",
    ("unlocked", "item_gone"): "item_change_while_closed",
    ("unlocked", "item_learned"): "learn_item",
    ("unlocked", "pulse_started"): "start_pulse",
    ("unlocked", "pulse_ended"): _NO_PULSE,
    ("unlocked", "pulse_overdue"): _NO_PULSE,
    ("unlocked", "output_on_unexpected"): "force_off",
    ("unlocked", "latch_released"): "note_released",
    ("unlocked", "latch_caught"): "note_caught",
    ("unlocked", "window_over"): "window_over",
    ("unlocked", "ajar_due"): _NOT_OPEN,
    ("unlocked", "sensors_lost"): "lose_sensors",
    ("unlocked", "attention_cleared"): "clear_attention",

    ("open", "door_opened"): _DEBOUNCED,
    ("open", "door_closed"): "closed",
    ("open", "item_appeared"): "item_change",
    ("open", "item_gone"): "item_change",
    ("open", "item_learned"): "learn_item",
    ("open", "pulse_started"): _GUARDED,
    ("open", "pulse_ended"): "end_pulse",  # the door opened during the pulse
    ("open", "pulse_overdue"): "force_off",
    ("open", "output_on_unexpected"): "force_off",
    ("open", "latch_released"): "note_released",
    ("open", "latch_caught"): "note_caught",
    ("open", "window_over"): Impossible("an opening ends the window"),
    ("open", "ajar_due"): "ajar",
    ("open", "sensors_lost"): "lose_sensors",
    ("open", "attention_cleared"): "clear_attention",
}
# fmt: on


def phase_of(compartment: Compartment) -> Phase:
    """The phase a compartment is in, from its axes (see :data:`Phase`)."""
    if compartment.door == "open":
        return "open"
    if compartment.energized_since_mono_ms is not None:
        return "unlocking"
    if compartment.door == "unknown":
        return "unknown"
    if compartment.opened_by is not None:
        return "unlocked"
    return "locked"


def lock_word(compartment: Compartment) -> LockWord:
    """Home Assistant's word for a compartment, for display only (decisions use the axes)."""
    if compartment.attention == "jammed":
        return "jammed"
    phase = phase_of(compartment)
    if phase == "unknown":
        return compartment.latch if compartment.latch != "unknown" else "unknown"
    return phase
