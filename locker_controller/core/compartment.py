"""The transitions of one compartment, named by :data:`~locker_controller.core.table.TABLE`.

Each transition takes the controller state, the compartment as it was, the time and, for
``start_pulse``, the authorization being spent; it returns the new state and the outputs, in the
order the daemon must carry them out (events recorded before the latch moves). Nothing here reads a
clock or performs I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from linli.clock import Now
from linli.contract.models import AlarmReason, GrantPurpose, Occupancy
from locker_controller.core.model import (
    AJAR_AFTER_MS,
    COOLDOWN_MS,
    ENERGIZED_MS_PER_MINUTE,
    JAMMED_AFTER_UNANSWERED,
    MAX_PULSE_MS,
    UNREACHABLE_AFTER_FAILURES,
    Compartment,
    ControllerState,
    GrantUse,
    Output,
    PublishState,
    PulseLatch,
    RecordEvent,
    SwitchAllOff,
)
from locker_controller.core.table import TABLE, Impossible, Stimulus, phase_of

Result = tuple[ControllerState, list[Output]]
MINUTE_MS = 60_000
MAX_CONFIGURED_PULSE_MS = 1_500


@dataclass(frozen=True)
class Authorization:
    """What a pulse spends: who authorized it (grant or command id), for what, and a token
    unique to this one authorization (``grant#2``, ``cmd:<id>:A3``)."""

    by: str
    purpose: GrantPurpose | None
    token: str
    grant_id: str | None = None
    cmd_id: str | None = None


def set_compartment(state: ControllerState, compartment: Compartment) -> ControllerState:
    """The state with one compartment replaced."""
    compartments = dict(state.compartments)
    compartments[compartment.name] = compartment
    return replace(state, compartments=compartments)


def energized_last_minute_ms(compartment: Compartment, now: Now) -> int:
    """Energized time of the pulses that began within the last minute."""
    return sum(ms for start, ms in compartment.energized_log if now.mono_ms - start < MINUTE_MS)


def alarm(
    compartment: Compartment,
    reason: AlarmReason,
    grant_id: str | None = None,
    **data: str | int | bool | None,
) -> RecordEvent:
    """An ``alarm`` event for one compartment (naming the grant whose opening it concerns)."""
    return RecordEvent(
        "alarm", compartment=compartment.name, grant_id=grant_id, reason=reason, data=data
    )


def grant_of(state: ControllerState, opened_by: str | None) -> str | None:
    """``opened_by`` if it names a grant this controller knows (not a plain command)."""
    if opened_by is None:
        return None
    if opened_by in state.uses or any(g.grant_id == opened_by for g in state.grants.values()):
        return opened_by
    return None


def _item_view(compartment: Compartment) -> Occupancy:
    """Occupancy including a reading still settling (a hand just left the beam)."""
    if compartment.item_raw is None:
        return compartment.occupancy
    return "present" if compartment.item_raw else "absent"


# --- door -----------------------------------------------------------------------------------


def _learn_open(state: ControllerState, c: Compartment, now: Now) -> Result:
    if c.opened_by is not None:  # a pulse is still waiting for its opening: this is it
        return _authorized_open(state, c, now)
    opened = replace(c, door="open", door_since_mono_ms=c.door_raw_mono_ms, is_ajar=False)
    event = RecordEvent("door_opened", compartment=c.name, reason="found_open")
    return set_compartment(state, opened), [event, PublishState()]


def _learn_closed(state: ControllerState, c: Compartment, now: Now) -> Result:
    closed = replace(c, door="closed", door_since_mono_ms=c.door_raw_mono_ms)
    return set_compartment(state, closed), [PublishState()]


def _authorized_open(state: ControllerState, c: Compartment, now: Now) -> Result:
    outputs: list[Output] = []
    grant_id = grant_of(state, c.opened_by)
    if grant_id is not None:
        # A grant opened by a command ("open now" on the phone page) has no use yet: the door it
        # opened consumes it all the same, so its code cannot open the door again.
        use = state.uses.get(grant_id, GrantUse())
        if not use.is_consumed:
            state = replace(state, uses={**state.uses, grant_id: replace(use, is_consumed=True)})
            outputs.append(RecordEvent("grant_consumed", compartment=c.name, grant_id=grant_id))
    opened = replace(
        c, door="open", door_since_mono_ms=c.door_raw_mono_ms, is_ajar=False, unanswered_pulses=0
    )
    event = RecordEvent(
        "door_opened",
        compartment=c.name,
        grant_id=grant_id,
        cmd_id=c.opened_by if grant_id is None else None,
    )
    return set_compartment(state, opened), [event, *outputs, PublishState()]


def _forced(state: ControllerState, c: Compartment, now: Now) -> Result:
    opened = replace(
        c,
        door="open",
        door_since_mono_ms=c.door_raw_mono_ms,
        is_ajar=False,
        attention=c.attention or "door_forced",
    )
    return set_compartment(state, opened), [
        RecordEvent("door_opened", compartment=c.name, reason="not_unlocked"),
        alarm(c, "door_forced", occupancy=_item_view(c)),
        PublishState(),
    ]


def _closed(state: ControllerState, c: Compartment, now: Now) -> Result:
    grant_id = grant_of(state, c.opened_by)
    epoch = c.epoch + (1 if c.opened_purpose in ("dropoff", "return") else 0)
    outputs: list[Output] = [
        RecordEvent("door_closed", compartment=c.name, grant_id=grant_id, data={"epoch": epoch})
    ]
    inside = _item_view(c)
    if c.opened_purpose in ("dropoff", "return") and inside == "absent":
        outputs.append(alarm(c, "dropoff_empty", grant_id=grant_id))
    elif c.opened_purpose == "pickup" and inside == "present":
        outputs.append(alarm(c, "item_left_behind", grant_id=grant_id))
    if c.is_ajar:
        outputs.append(RecordEvent("alarm_cleared", compartment=c.name, reason="door_ajar"))
    closed = replace(
        c,
        door="closed",
        door_since_mono_ms=c.door_raw_mono_ms,
        opened_by=None,
        opened_purpose=None,
        epoch=epoch,
        is_ajar=False,
    )
    return set_compartment(state, closed), [*outputs, PublishState()]


def _ajar(state: ControllerState, c: Compartment, now: Now) -> Result:
    at_risk = _item_view(c) == "present"
    event = alarm(
        c, "door_ajar", open_s=AJAR_AFTER_MS // 1000, item_at_risk=at_risk,
        grant_id=grant_of(state, c.opened_by),
    )  # fmt: skip
    return set_compartment(state, replace(c, is_ajar=True)), [event, PublishState()]


# --- items ----------------------------------------------------------------------------------


def _occupancy_of(c: Compartment) -> Occupancy:
    return "present" if c.item_raw else "absent"


def _item_change(state: ControllerState, c: Compartment, now: Now) -> Result:
    occupancy = _occupancy_of(c)
    event = RecordEvent(
        "occupancy_changed",
        compartment=c.name,
        grant_id=grant_of(state, c.opened_by),
        data={"occupancy": occupancy},
    )
    return set_compartment(state, replace(c, occupancy=occupancy)), [event, PublishState()]


def _item_change_while_closed(state: ControllerState, c: Compartment, now: Now) -> Result:
    began_while_open = c.door_since_mono_ms is not None and c.item_raw_mono_ms <= (
        c.door_since_mono_ms
    )
    if began_while_open:  # the reading changed before the door shut and has now settled
        return _item_change(state, c, now)
    occupancy = _occupancy_of(c)
    return set_compartment(state, replace(c, occupancy=occupancy)), [
        RecordEvent(
            "occupancy_changed",
            compartment=c.name,
            reason="door_closed",
            data={"occupancy": occupancy},
        ),
        alarm(c, "occupancy_unexplained", occupancy=occupancy),
        PublishState(),
    ]


def _learn_item(state: ControllerState, c: Compartment, now: Now) -> Result:
    return set_compartment(state, replace(c, occupancy=_occupancy_of(c))), [PublishState()]


# --- latch ----------------------------------------------------------------------------------


def start_pulse(state: ControllerState, c: Compartment, now: Now, auth: Authorization) -> Result:
    """Energize the latch for this one authorization (the caller has checked the guards)."""
    pulse_ms = min(c.pulse_ms, MAX_CONFIGURED_PULSE_MS)
    log = tuple(entry for entry in c.energized_log if now.mono_ms - entry[0] < MINUTE_MS)
    pulsed = replace(
        c,
        latch=c.latch if state.capabilities.has_latch_feedback else "unlocked",
        last_pulse_mono_ms=now.mono_ms,
        opened_by=auth.by,
        opened_purpose=auth.purpose,
        energized_since_mono_ms=now.mono_ms,
        energized_log=(*log, (now.mono_ms, pulse_ms)),
    )
    outputs: list[Output] = [
        RecordEvent(
            "latch_pulsed",
            compartment=c.name,
            grant_id=auth.grant_id,
            cmd_id=auth.cmd_id,
            data={"pulse_ms": pulse_ms},
        ),
        PulseLatch(c.name, pulse_ms, authorized_by=auth.token),
        PublishState(),
    ]
    state = set_compartment(state, pulsed)
    if auth.grant_id is not None and not state.capabilities.has_door_sensor:
        # Nothing can tell this board's door opened: the pulse itself spends the grant.
        use = state.uses.get(auth.grant_id, GrantUse())
        state = replace(state, uses={**state.uses, auth.grant_id: replace(use, is_consumed=True)})
    return state, outputs


def pulse_refusal(
    state: ControllerState, c: Compartment, now: Now, *, is_service: bool
) -> str | None:
    """Why a pulse of ``c`` may not start now, or None. A maintainer's service open may pulse a
    compartment that needs attention (that is how it gets fixed); nothing else may."""
    if state.bus_failures >= UNREACHABLE_AFTER_FAILURES:
        return "out_of_service"
    if c.needs_attention and not is_service:
        return "out_of_service"
    if c.door == "open":
        return "door_open"
    if c.energized_since_mono_ms is not None or (
        c.last_pulse_mono_ms is not None and now.mono_ms - c.last_pulse_mono_ms < COOLDOWN_MS
    ):
        return "cooling_down"
    pulse_ms = min(c.pulse_ms, MAX_CONFIGURED_PULSE_MS)
    if energized_last_minute_ms(c, now) + pulse_ms > ENERGIZED_MS_PER_MINUTE:
        return "energize_cap"
    return None


def _end_pulse(state: ControllerState, c: Compartment, now: Now) -> Result:
    caps = state.capabilities
    ended = replace(c, energized_since_mono_ms=None)
    outputs: list[Output] = [PublishState()]
    if not caps.has_latch_feedback:
        ended = replace(ended, latch="locked")  # a fail-secure latch springs back unpowered
    elif c.latch != "unlocked" and c.door != "open":
        # The hook never moved while energized: the latch is jammed, whoever is waiting.
        ended = replace(ended, attention=c.attention or "jammed")
        outputs.insert(0, alarm(c, "jammed", pulses=1))
    return set_compartment(state, ended), outputs


def _force_off(state: ControllerState, c: Compartment, now: Now) -> Result:
    """Every output off; every pulse in progress ends here (their timers were cancelled)."""
    since = c.energized_since_mono_ms
    on_ms = now.mono_ms - since if since is not None else None
    compartments = dict(state.compartments)
    for name, other in compartments.items():
        if other.energized_since_mono_ms is not None or name == c.name:
            latch = other.latch if state.capabilities.has_latch_feedback else "locked"
            compartments[name] = replace(other, energized_since_mono_ms=None, latch=latch)
    compartments[c.name] = replace(
        compartments[c.name], attention=c.attention or "output_forced_off"
    )
    state = replace(state, compartments=compartments, open_all=(), open_all_by=None)
    return state, [
        SwitchAllOff(),
        alarm(c, "output_forced_off", on_ms=on_ms, bound_ms=MAX_PULSE_MS),
        PublishState(),
    ]


def _note_released(state: ControllerState, c: Compartment, now: Now) -> Result:
    return set_compartment(state, replace(c, latch="unlocked")), [PublishState()]


def _note_caught(state: ControllerState, c: Compartment, now: Now) -> Result:
    return set_compartment(state, replace(c, latch="locked")), [PublishState()]


def _latch_unbidden(state: ControllerState, c: Compartment, now: Now) -> Result:
    if c.opened_by is not None:  # a board without door sensor, still within its pulse's window
        return _note_released(state, c, now)
    released = replace(c, latch="unlocked", attention=c.attention or "latch_fault")
    return set_compartment(state, released), [alarm(c, "latch_fault"), PublishState()]


def _window_over(state: ControllerState, c: Compartment, now: Now) -> Result:
    caps = state.capabilities
    unanswered = c.unanswered_pulses + 1
    quiet = replace(c, opened_by=None, opened_purpose=None, unanswered_pulses=unanswered)
    outputs: list[Output] = [PublishState()]
    can_judge = caps.has_door_sensor and not caps.has_latch_feedback and c.door != "unknown"
    if can_judge and unanswered >= JAMMED_AFTER_UNANSWERED and c.attention is None:
        quiet = replace(quiet, attention="jammed")
        outputs.insert(0, alarm(c, "jammed", pulses=unanswered))
    return set_compartment(state, quiet), outputs


# --- the bank -------------------------------------------------------------------------------


def _lose_sensors(state: ControllerState, c: Compartment, now: Now) -> Result:
    caps = state.capabilities
    lost = replace(
        c,
        door="unknown" if caps.has_door_sensor else c.door,
        occupancy="unknown" if caps.has_item_sensor else c.occupancy,
        latch="unknown" if caps.has_latch_feedback else c.latch,
        door_raw=None,
        item_raw=None,
        is_ajar=False,
    )
    return set_compartment(state, lost), [PublishState()]


def _clear_attention(state: ControllerState, c: Compartment, now: Now) -> Result:
    if c.attention is None:
        return state, []
    cleared = replace(c, attention=None, unanswered_pulses=0)
    event = RecordEvent("alarm_cleared", compartment=c.name, reason=c.attention)
    return set_compartment(state, cleared), [event, PublishState()]


Transition = Callable[[ControllerState, Compartment, Now], Result]

TRANSITIONS: Mapping[str, Transition] = {
    "learn_open": _learn_open,
    "learn_closed": _learn_closed,
    "authorized_open": _authorized_open,
    "forced": _forced,
    "closed": _closed,
    "ajar": _ajar,
    "item_change": _item_change,
    "item_change_while_closed": _item_change_while_closed,
    "learn_item": _learn_item,
    "end_pulse": _end_pulse,
    "force_off": _force_off,
    "note_released": _note_released,
    "note_caught": _note_caught,
    "latch_unbidden": _latch_unbidden,
    "window_over": _window_over,
    "lose_sensors": _lose_sensors,
    "clear_attention": _clear_attention,
}
"""Every transition the table names except ``start_pulse``, which also takes an
:class:`Authorization` and is called through :func:`apply_pulse`."""


def apply(state: ControllerState, name: str, stimulus: Stimulus, now: Now) -> Result:
    """Apply one stimulus to compartment ``name`` through the table.

    A pair declared impossible is never reached by the core; if it ever were, the state is left
    as it was and an alarm says so, rather than guessing.
    """
    c = state.compartments[name]
    entry = TABLE[(phase_of(c), stimulus)]
    if isinstance(entry, Impossible) or entry == "start_pulse":
        return state, [_impossible(c, stimulus)]
    return TRANSITIONS[entry](state, c, now)


def apply_pulse(state: ControllerState, name: str, now: Now, auth: Authorization) -> Result:
    """Start a pulse through the table (the caller has checked :func:`pulse_refusal`)."""
    c = state.compartments[name]
    if TABLE[(phase_of(c), "pulse_started")] != "start_pulse":
        return state, [_impossible(c, "pulse_started")]
    return start_pulse(state, c, now, auth)


def _impossible(c: Compartment, stimulus: Stimulus) -> RecordEvent:
    return RecordEvent(
        "alarm",
        compartment=c.name,
        reason="impossible_transition",
        data={"phase": phase_of(c), "stimulus": stimulus},
    )
