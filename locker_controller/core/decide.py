"""The controller's pure core: ``decide(state, event, now) -> (state, outputs)``.

One thread calls :func:`decide` for every input, in order. It performs no I/O and reads no clock:
``now`` is passed in. Two tables drive it, both data: :data:`HANDLERS` maps each input type to the
handler that turns it into compartment *stimuli* (a debounced door change, a pulse to start, a
deadline that passed), and :data:`~locker_controller.core.table.TABLE` maps each (phase,
stimulus) pair of a compartment to its transition or declares it impossible. The daemon wakes the
core at :func:`next_deadline` so debounce, pulse bounds, ajar and window deadlines are met on time.

Safety rules enforced here (system.md, "Non-negotiables"):
- a latch pulses only for a valid, unexpired, unconsumed grant of that compartment and content
  epoch, or for a signed, unexpired, not-yet-seen command addressed to this device;
- a grant pulses at most :data:`MAX_PULSES_PER_GRANT` times, the second within
  :data:`PULSE_RETRY_WINDOW_MS`, and is consumed by the first door opening it caused;
- a compartment never pulses twice within :data:`COOLDOWN_MS`, nor past
  :data:`ENERGIZED_MS_PER_MINUTE`; an output still on at :data:`MAX_PULSE_MS` is forced off and
  alarmed; "open all" pulses one latch at a time;
- an unanswered unlock is never retried: the core asks for a reading and the reading decides;
- durable state (uses, replay window, time floor) changes before the pulse is emitted, and the
  adapter persists it before carrying out any output.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from linli.clock import Now
from linli.codes import guard_hash, hash_code, split_entry
from linli.contract.envelope import verify_envelope
from linli.contract.errors import ContractError
from linli.contract.models import (
    AlarmReason,
    CommandBody,
    ConfigBody,
    Grant,
    GrantPurpose,
    Occupancy,
    Trust,
)
from linli.contract.topics import decode_json
from locker_controller.core.compartment import (
    Authorization,
    alarm,
    apply,
    apply_pulse,
    grant_of,
    pulse_refusal,
    set_compartment,
)
from locker_controller.core.model import (
    AJAR_AFTER_MS,
    DOOR_DEBOUNCE_MS,
    DOOR_OPEN_AFTER_PULSE_MS,
    FLOOR_EVERY_MS,
    HOLDOVER_FOR_MS,
    ITEM_DEBOUNCE_MS,
    MAX_PULSE_MS,
    MAX_PULSES_PER_GRANT,
    PULSE_RETRY_WINDOW_MS,
    SYNCED_FOR_MS,
    UNREACHABLE_AFTER_FAILURES,
    BusRead,
    BusReadFailed,
    CodeEntered,
    CommandArrived,
    Compartment,
    ConfigArrived,
    ControllerState,
    DoorSensed,
    GrantUse,
    Input,
    OccupancySensed,
    Output,
    PublishState,
    PulseEnded,
    ReadBus,
    RecordEvent,
    ReplyToCommand,
    ReportConfig,
    ShowMessage,
    Ticked,
    TimeState,
    UnlockUnanswered,
)
from locker_controller.core.throttle import GUESS_BUDGET

Result = tuple[ControllerState, list[Output]]
RESYNC_TOLERANCE_MS = 5_000


# --- time -----------------------------------------------------------------------------------


def trusted_time(state: ControllerState, now: Now) -> tuple[int, Trust]:
    """The controller's best estimate of the true time, and how far it trusts it.

    Every source is a lower bound the controller can only move forward: the wall clock (NTP or
    RTC, possibly stale after a power cut), signed cloud time learned this boot and carried by the
    monotonic clock, and the persisted floor. The estimate is their maximum, so neither a stale
    clock nor an old signed message can make an expired grant valid. The label is ``synced`` for
    an hour after fresh signed time, ``holdover`` for a week, else ``untrusted``.
    """
    ts = state.time
    estimate = max(now.wall_ms, ts.floor_wall_ms)
    if ts.offset_ms is not None and ts.synced_at_mono_ms is not None:
        estimate = max(estimate, now.mono_ms + ts.offset_ms)
        age = now.mono_ms - ts.synced_at_mono_ms
        if age <= SYNCED_FOR_MS:
            return estimate, "synced"
        if age <= HOLDOVER_FOR_MS:
            return estimate, "holdover"
    return estimate, "untrusted"


def _signed_time(state: ControllerState, now: Now) -> int:
    """Time from signed sources only (floor, and cloud time carried by the monotonic clock):
    what may be persisted, so a wall clock that runs ahead cannot poison the floor."""
    ts = state.time
    if ts.offset_ms is None:
        return ts.floor_wall_ms
    return max(ts.floor_wall_ms, now.mono_ms + ts.offset_ms)


def _learn_time(state: ControllerState, cloud_ms: int, now: Now) -> ControllerState:
    """Adopt signed cloud time if it is news. Signed time is only ever carried forward.

    A signed time is when the message was *issued*: a retained or queued message says the time
    is at least that. One within :data:`RESYNC_TOLERANCE_MS` of the signed estimate, or ahead of
    it, refreshes ``synced``; an older one says nothing.
    """
    signed = _signed_time(state, now)
    if state.time.offset_ms is None and cloud_ms <= signed:
        return state  # nothing learned this boot, and no news beyond the floor
    if cloud_ms < signed - RESYNC_TOLERANCE_MS:
        return state
    anchor = max(cloud_ms, signed)
    time = TimeState(
        floor_wall_ms=anchor,
        offset_ms=anchor - now.mono_ms,
        synced_at_mono_ms=now.mono_ms,
    )
    return replace(state, time=time)


def _raise_floor(state: ControllerState, now: Now) -> ControllerState:
    """While signed time is trusted, persist it as the floor every :data:`FLOOR_EVERY_MS`, so a
    reboot with a stale clock resumes from at most that far back."""
    _, trust = trusted_time(state, now)
    signed = _signed_time(state, now)
    if trust == "untrusted" or signed - state.time.floor_wall_ms < FLOOR_EVERY_MS:
        return state
    return replace(state, time=replace(state.time, floor_wall_ms=signed))


# --- helpers --------------------------------------------------------------------------------


def _refuse_input(state: ControllerState) -> ControllerState:
    return replace(state, refused_inputs=state.refused_inputs + 1)


def _settle(state: ControllerState, name: str, now: Now) -> Result:
    """Turn one compartment's settled readings and passed deadlines into stimuli.

    Order matters: a pulse past its bound first (safety); then an item reading, so a door that
    closes sees what is inside; then the window of a pulse, unless a door opening that began
    inside the window is still settling; then the door; then ajar.
    """
    outputs: list[Output] = []

    def step(stimulus: Any) -> None:
        nonlocal state
        state, more = apply(state, name, stimulus, now)
        outputs.extend(more)

    c = state.compartments[name]
    if c.energized_since_mono_ms is not None and now.mono_ms >= (
        c.energized_since_mono_ms + MAX_PULSE_MS
    ):
        step("pulse_overdue")
    # A first reading is learned at once (learning is silent); changes must hold to count.
    c = state.compartments[name]
    item_changed = c.item_raw is not None and c.occupancy != ("present" if c.item_raw else "absent")
    if c.item_raw is not None and c.occupancy == "unknown":
        state, more = _changed_while_down(state, c)
        outputs.extend(more)
        step("item_learned")
    elif item_changed and now.mono_ms - c.item_raw_mono_ms >= ITEM_DEBOUNCE_MS:
        step("item_appeared" if c.item_raw else "item_gone")
    c = state.compartments[name]
    door_settled = c.door_raw is not None and (
        c.door == "unknown" or now.mono_ms - c.door_raw_mono_ms >= DOOR_DEBOUNCE_MS
    )
    door_pending = door_settled and c.door != ("open" if c.door_raw else "closed")
    window_end = _window_end(c)
    if window_end is not None and now.mono_ms >= window_end:
        opened_in_time = door_pending and c.door_raw and c.door_raw_mono_ms < window_end
        if not opened_in_time:
            step("window_over")
    c = state.compartments[name]
    if door_pending:
        step("door_opened" if c.door_raw else "door_closed")
    c = state.compartments[name]
    ajar_at = _ajar_at(c)
    if ajar_at is not None and now.mono_ms >= ajar_at:
        step("ajar_due")
    return state, outputs


EXPECTED_AFTER: Mapping[GrantPurpose, Occupancy] = {
    "pickup": "absent",
    "dropoff": "present",
    "return": "present",
}


def _changed_while_down(state: ControllerState, c: Compartment) -> Result:
    """Compare the first item reading after a restart with the occupancy persisted before it.

    A pulse was waiting for its opening when the controller went down, and the item is now as
    that grant's purpose leaves it: the resident opened the door while nobody watched. The grant
    is consumed (its code cannot open again) and the cloud is told what happened, marked
    ``while_down``. Any other change is reported as unexplained, and settles nothing.
    """
    if c.restored is None:
        return state, []
    by, purpose, before = c.restored
    c = replace(c, restored=None)
    state = set_compartment(state, c)
    now_item: Occupancy = "present" if c.item_raw else "absent"
    is_changed = before not in ("unknown", now_item)
    grant_id = grant_of(state, by)
    changed = RecordEvent(
        "occupancy_changed",
        compartment=c.name,
        grant_id=grant_id,
        reason="while_down",
        data={"occupancy": now_item},
    )
    if c.door_raw and grant_id is not None and purpose is not None:
        # Found open while a pulse was waiting (or after it opened): that pulse released it.
        # Learning the door credits the grant (consuming it); its closing is seen as usual.
        state = set_compartment(state, replace(c, opened_by=grant_id, opened_purpose=purpose))
        return state, [changed] if is_changed else []
    if not is_changed:
        return state, []
    if grant_id is None or purpose is None or EXPECTED_AFTER.get(purpose) != now_item:
        event = alarm(c, "occupancy_unexplained", occupancy=now_item, while_down=True)
        return state, [event]
    use = state.uses.get(grant_id, GrantUse())
    # The opening is reported even if it was seen before the crash: its report may have been
    # lost with it (the cloud settles a repeated opening once).
    outputs: list[Output] = [
        RecordEvent("door_opened", compartment=c.name, grant_id=grant_id, reason="while_down")
    ]
    if not use.is_consumed:
        state = replace(state, uses={**state.uses, grant_id: replace(use, is_consumed=True)})
        outputs.append(RecordEvent("grant_consumed", compartment=c.name, grant_id=grant_id))
    outputs.append(changed)
    epoch = c.epoch + (1 if purpose in ("dropoff", "return") else 0)
    state = set_compartment(state, replace(c, epoch=epoch))
    closed = RecordEvent(
        "door_closed",
        compartment=c.name,
        grant_id=grant_id,
        reason="while_down",
        data={"epoch": epoch},
    )
    return state, [*outputs, closed]


def _window_end(c: Compartment) -> int | None:
    """The first instant at which a pulse not yet answered by an opening no longer explains one
    (a door may open up to :data:`DOOR_OPEN_AFTER_PULSE_MS` after the pulse, inclusive)."""
    if c.opened_by is None or c.door == "open" or c.energized_since_mono_ms is not None:
        return None
    if c.last_pulse_mono_ms is None:
        return None
    return c.last_pulse_mono_ms + DOOR_OPEN_AFTER_PULSE_MS + 1


def _ajar_at(c: Compartment) -> int | None:
    if c.door != "open" or c.is_ajar or c.door_since_mono_ms is None:
        return None
    return c.door_since_mono_ms + AJAR_AFTER_MS


def next_deadline(state: ControllerState) -> int | None:
    """The earliest monotonic time at which the core must be woken, or None.

    The daemon waits on its inbox at most until then, so a debounce settles, an output is
    forced off at its bound, and an ajar door or an unanswered pulse is noticed on time.
    """
    times: list[int] = []
    for c in state.compartments.values():
        if c.door_raw is not None and c.door != ("open" if c.door_raw else "closed"):
            times.append(c.door_raw_mono_ms + DOOR_DEBOUNCE_MS)
        if c.item_raw is not None and c.occupancy != ("present" if c.item_raw else "absent"):
            times.append(c.item_raw_mono_ms + ITEM_DEBOUNCE_MS)
        if c.energized_since_mono_ms is not None:
            times.append(c.energized_since_mono_ms + MAX_PULSE_MS)
        for deadline in (_window_end(c), _ajar_at(c)):
            if deadline is not None:
                times.append(deadline)
    return min(times, default=None)


def _settle_all(state: ControllerState, now: Now) -> Result:
    outputs: list[Output] = []
    for name in state.compartments:
        state, more = _settle(state, name, now)
        outputs.extend(more)
    return state, outputs


def _continue_open_all(state: ControllerState, now: Now) -> Result:
    """Pulse the next compartment of a maintenance "open all" once no latch is energized."""
    if not state.open_all or any(
        c.energized_since_mono_ms is not None for c in state.compartments.values()
    ):
        return state, []
    queue, cmd_id = list(state.open_all), state.open_all_by or ""
    while queue:
        name = queue.pop(0)
        c = state.compartments[name]
        if pulse_refusal(state, c, now, is_service=True) is None:
            state = replace(state, open_all=tuple(queue), open_all_by=cmd_id if queue else None)
            auth = Authorization(
                by=cmd_id, purpose="maintenance", token=f"cmd:{cmd_id}:{name}", cmd_id=cmd_id
            )
            return apply_pulse(state, name, now, auth)
    return replace(state, open_all=(), open_all_by=None), []


# --- handlers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GrantIndex:
    """What code checks derive from a grant list, built once per list.

    A grant list is an immutable mapping replaced when a configuration is applied, so the index
    of the latest list is kept (a strong reference: an identity match is a true match) and costs
    nothing on the ticks and entries between configurations.
    """

    grants: Mapping[str, Grant]
    by_guard: Mapping[str, Grant]
    until: tuple[int, ...]
    """Every grant's ``valid_until_ms``, sorted."""
    by_id: Mapping[str, Grant]


_index: list[_GrantIndex] = []


def _grant_index(state: ControllerState) -> _GrantIndex:
    if _index and _index[0].grants is state.grants:
        return _index[0]
    grants = state.grants.values()
    built = _GrantIndex(
        grants=state.grants,
        by_guard={g.guard_hash: g for g in grants if g.guard_hash},
        until=tuple(sorted(g.valid_until_ms for g in grants)),
        by_id={g.grant_id: g for g in grants},
    )
    _index[:] = [built]
    return built


def _live_codes(state: ControllerState, wall_ms: int) -> int:
    """Codes a guess could hit right now: grants not expired and not consumed."""
    index = _grant_index(state)
    unexpired = len(index.until) - bisect_left(index.until, wall_ms)
    consumed = sum(
        1
        for grant_id, use in state.uses.items()
        if use.is_consumed
        and (grant := index.by_id.get(grant_id)) is not None
        and grant.valid_until_ms >= wall_ms
    )
    return unexpired - consumed


def is_guarded(state: ControllerState, wall_ms: int) -> bool:
    """Whether the bank checks codes only with the phone's last four digits (docs/security.md)."""
    if not state.throttle.guesses and len(state.grants) <= GUESS_BUDGET:
        return False  # the common case, without counting live codes (every tick asks)
    return state.throttle.is_guarded(wall_ms, _live_codes(state, wall_ms))


def _grant_refusal(state: ControllerState, grant: Grant, wall_ms: int, now: Now) -> str | None:
    """Why a listed grant may not pulse its latch now, or None (codes and remote opens alike)."""
    if wall_ms > grant.valid_until_ms:
        return "expired"
    if wall_ms < grant.valid_from_ms:
        return "not_yet_valid"
    compartment = state.compartments.get(grant.compartment)
    if compartment is None or compartment.needs_attention:
        return "out_of_service"
    if grant.epoch != compartment.epoch:
        return "stale_epoch"
    use = state.uses.get(grant.grant_id, GrantUse())
    if use.is_consumed:
        return "used"
    if use.pulses >= MAX_PULSES_PER_GRANT or (
        use.pulses > 0 and wall_ms - use.first_pulse_wall_ms > PULSE_RETRY_WINDOW_MS
    ):
        return "pulse_limit"
    return pulse_refusal(state, compartment, now, is_service=False)


def _retired_refusal(state: ControllerState, grant: Grant) -> str:
    """A grant the cloud dropped after it pulsed: used, or withdrawn."""
    return "used" if state.uses.get(grant.grant_id, GrantUse()).is_consumed else "withdrawn"


def _spend_grant(
    state: ControllerState, grant: Grant, wall_ms: int, now: Now, *, cmd_id: str | None = None
) -> Result:
    """Count one pulse of ``grant`` (persisted before the pulse) and start it."""
    use = state.uses.get(grant.grant_id, GrantUse())
    uses = dict(state.uses)
    uses[grant.grant_id] = GrantUse(
        pulses=use.pulses + 1, first_pulse_wall_ms=use.first_pulse_wall_ms or wall_ms
    )
    state = replace(state, uses=uses)
    auth = Authorization(
        by=grant.grant_id,
        purpose=grant.purpose,
        token=f"{grant.grant_id}#{use.pulses + 1}",
        grant_id=grant.grant_id,
        cmd_id=cmd_id,
    )
    return apply_pulse(state, grant.compartment, now, auth)


def _bank_alarms(state: ControllerState, wall_ms: int) -> Result:
    """Raise or clear the bank-wide alarms whose condition changed: a stale grant list, someone
    guessing codes (the bank backs off), the guess budget spent (the bank is guarded)."""
    conditions: dict[AlarmReason, bool] = {
        "grant_list_stale": state.cfg_issued_at_ms > 0
        and wall_ms - state.cfg_issued_at_ms > state.stale_after_ms,
        "code_guessing": state.throttle.is_backing_off(wall_ms),
        "guess_budget_spent": is_guarded(state, wall_ms),
    }
    outputs: list[Output] = []
    raised = set(state.raised)
    for reason, holds in conditions.items():
        if holds and reason not in raised:
            raised.add(reason)
            outputs.append(RecordEvent("alarm", reason=reason, data=_alarm_data(state, wall_ms)))
        elif not holds and reason in raised:
            raised.discard(reason)
            outputs.append(RecordEvent("alarm_cleared", reason=reason))
        else:
            continue
        if reason == "grant_list_stale":  # the retained report shows the list's age
            outputs.append(ReportConfig("applied"))
    if not outputs:
        return state, []
    return replace(state, raised=frozenset(raised)), outputs


def _alarm_data(state: ControllerState, wall_ms: int) -> dict[str, str | int | bool | None]:
    return {
        "grant_list_age_s": max(0, wall_ms - state.cfg_issued_at_ms) // 1000
        if state.cfg_issued_at_ms
        else None,
        "failures": state.throttle.bank.count(wall_ms),
        "budget_spent": state.throttle.spent(wall_ms),
    }


def _on_code(state: ControllerState, event: CodeEntered, now: Now) -> Result:
    """A code entered at a keypad, kiosk or local command: throttle, then check it locally.

    An entry is eight digits (the code) or twelve (the code and the last four digits of the
    holder's phone, required while the bank is guarded). Entries during a back-off are not
    checked at all. Failures that reveal nothing about a live code (a matched grant that is
    expired, used, ...) are not counted; unknown and malformed entries are (docs/security.md).
    """
    channel = event.channel
    wall_ms, _ = trusted_time(state, now)
    throttle = state.throttle
    wait_ms = throttle.wait_ms(channel, wall_ms)
    if wait_ms > 0:
        seconds = str(-(-wait_ms // 1000))
        return _refuse_input(state), [
            ShowMessage(channel, "code.refused.throttled", {"seconds": seconds})
        ]

    def refuse(reason: str, grant: Grant | None = None) -> tuple[ControllerState, list[Output]]:
        return _refuse_input(state), [
            RecordEvent(
                "code_refused",
                compartment=grant.compartment if grant else None,
                grant_id=grant.grant_id if grant else None,
                reason=reason,
                data={"channel": channel},
            ),
            ShowMessage(channel, f"code.refused.{reason}"),
        ]

    def fail(reason: str, live_codes: int = 0) -> Result:
        failed, outputs = refuse(reason)
        failed = replace(failed, throttle=throttle.failed(channel, wall_ms, live_codes=live_codes))
        failed, alarms = _bank_alarms(failed, wall_ms)
        return failed, [*alarms, *outputs]

    entry = split_entry(event.code)
    if entry is None:
        return fail("malformed")
    code, phone_digits = entry
    key = state.identity.code_hash_key
    if phone_digits is None:
        if is_guarded(state, wall_ms):
            return fail("guarded")  # not checked: a code alone reveals nothing while guarded
        entered = hash_code(key, code)
        grant = state.grants.get(entered)
        if grant is None:
            retired = state.retired.get(entered)
            if retired is None:
                return fail("unknown_code", _live_codes(state, wall_ms))
            return refuse(_retired_refusal(state, retired), retired)
    else:
        entered = guard_hash(key, code, phone_digits)
        grant = _grant_index(state).by_guard.get(entered)
        if grant is None:
            retired = next((g for g in state.retired.values() if g.guard_hash == entered), None)
            if retired is None:
                return fail("unknown_code")
            return refuse(_retired_refusal(state, retired), retired)
    refusal = _grant_refusal(state, grant, wall_ms, now)
    if refusal is not None:
        return refuse(refusal, grant)

    pulse = state.uses.get(grant.grant_id, GrantUse()).pulses + 1
    state = replace(state, throttle=throttle.succeeded(channel))
    accepted = RecordEvent(
        "code_accepted",
        compartment=grant.compartment,
        grant_id=grant.grant_id,
        data={"channel": channel, "pulse": pulse},
    )
    state, outputs = _spend_grant(state, grant, wall_ms, now)
    shown = ShowMessage(channel, "code.accepted", {"compartment": grant.compartment})
    return state, [accepted, *outputs, shown]


def _unverified_id(payload: bytes) -> str | None:
    """Best-effort command id of a refused payload, for correlation on ``res`` only."""
    try:
        body = decode_json(payload).get("body")
    except ContractError:
        return None
    cmd_id = body.get("id") if isinstance(body, dict) else None
    if (
        isinstance(cmd_id, str)
        and 0 < len(cmd_id) <= 64
        and cmd_id.replace("_", "").replace("-", "").isalnum()
        and cmd_id.isascii()
    ):
        return cmd_id
    return None


def _on_command(state: ControllerState, event: CommandArrived, now: Now) -> Result:
    before = state  # a refused command changes nothing, not even what it taught of the time

    def refuse(reason: str, cmd_id: str | None) -> Result:
        return _refuse_input(before), [ReplyToCommand(cmd_id, ok=False, reason=reason)]

    try:
        body = verify_envelope(event.payload, state.identity.cloud_keys, kind="cmd")
        command = CommandBody.model_validate(body)
    except ContractError as exc:
        return refuse(exc.reason, _unverified_id(event.payload))
    except ValidationError:
        return refuse("malformed", _unverified_id(event.payload))
    if command.device_id != state.identity.device_id:
        return refuse("wrong_device", command.id)
    state = _learn_time(state, command.issued_at_ms, now)
    wall_ms, _ = trusted_time(state, now)
    if wall_ms > command.expires_at_ms:
        return refuse("expired", command.id)
    replay = state.window.check(command.seq)
    if replay is not None:
        return refuse(replay, command.id)

    if command.name == "publish_state":
        state = replace(state, window=state.window.accept(command.seq))
        return state, [PublishState(), ReplyToCommand(command.id, ok=True)]
    if command.name == "open_all":
        if state.open_all:
            return refuse("busy", command.id)
        state = replace(
            state,
            window=state.window.accept(command.seq),
            open_all=tuple(n for n, c in state.compartments.items() if c.door != "open"),
            open_all_by=command.id,
        )
        state, outputs = _continue_open_all(state, now)
        return state, [*outputs, ReplyToCommand(command.id, ok=True)]

    compartment = state.compartments.get(command.compartment or "")
    if compartment is None:
        return refuse("unknown_compartment", command.id)
    if command.name == "clear_attention":
        state = replace(state, window=state.window.accept(command.seq))
        state, outputs = apply(state, compartment.name, "attention_cleared", now)
        return state, [*outputs, ReplyToCommand(command.id, ok=True)]
    # "open": a resident's remote open names its grant and spends one of its pulses, under every
    # check a code gets (the used-code set on the device is authoritative); a maintainer's
    # service open names no grant, and may open a compartment that needs attention.
    if command.grant_id is not None:
        wall_ms, _ = trusted_time(state, now)
        grant, refusal = _remote_open_grant(state, command.grant_id, compartment, wall_ms, now)
        if grant is None or refusal is not None:
            return refuse(refusal or "unknown_grant", command.id)
        state = replace(state, window=state.window.accept(command.seq))
        state, outputs = _spend_grant(state, grant, wall_ms, now, cmd_id=command.id)
        return state, [*outputs, ReplyToCommand(command.id, ok=True)]
    refusal = pulse_refusal(state, compartment, now, is_service=True)
    if refusal is not None:
        return refuse(refusal, command.id)
    state = replace(state, window=state.window.accept(command.seq))
    auth = Authorization(
        by=command.id,
        purpose="maintenance",
        token=f"cmd:{command.id}:{compartment.name}",
        cmd_id=command.id,
    )
    state, outputs = apply_pulse(state, compartment.name, now, auth)
    return state, [*outputs, ReplyToCommand(command.id, ok=True)]


def _remote_open_grant(
    state: ControllerState, grant_id: str, compartment: Compartment, wall_ms: int, now: Now
) -> tuple[Grant | None, str | None]:
    """The grant a resident's "open now" names, and why it may not pulse (None: it may)."""
    grant = _grant_index(state).by_id.get(grant_id)
    if grant is None:
        retired = next((g for g in state.retired.values() if g.grant_id == grant_id), None)
        return None, "unknown_grant" if retired is None else _retired_refusal(state, retired)
    if grant.compartment != compartment.name:
        return grant, "wrong_compartment"
    return grant, _grant_refusal(state, grant, wall_ms, now)


def _on_config(state: ControllerState, event: ConfigArrived, now: Now) -> Result:
    try:
        body = verify_envelope(event.payload, state.identity.cloud_keys, kind="cfg")
        config = ConfigBody.model_validate(body)
    except (ContractError, ValidationError):
        # Unsigned or malformed: not from the cloud. Counted (telemetry), never reported on the
        # retained cfg/reported, which an attacker could otherwise overwrite at will.
        return _refuse_input(state), []
    if config.device_id != state.identity.device_id:
        return _refuse_input(state), []
    if config.version == state.cfg_version:
        # The same list re-signed: signed time, and the cloud's word that the list is current.
        state = _learn_time(state, config.issued_at_ms, now)
        if config.issued_at_ms > state.cfg_issued_at_ms:
            state = replace(state, cfg_issued_at_ms=config.issued_at_ms)
            state, alarms = _bank_alarms(state, trusted_time(state, now)[0])
            return state, [*alarms, ReportConfig("applied")]
        return state, []
    if config.version < state.cfg_version:
        return state, [
            ReportConfig("refused", refused_version=config.version, reason="older_version")
        ]

    state = _learn_time(state, config.issued_at_ms, now)
    revoked = set(config.revoked)
    grants = {g.code_hash: g for g in config.grants if g.grant_id not in revoked}
    wall_ms, _ = trusted_time(state, now)
    # A grant dropped from the list after it pulsed (consumed, or revoked after one pulse), or
    # named as revoked, is kept, with its uses, until it expires: a re-pushed or later list never
    # re-arms it, and a resident re-entering its code is told it was used or withdrawn — not
    # that it is wrong, and without counting it as a guess.
    retired = {
        h: g
        for h, g in (*state.retired.items(), *state.grants.items())
        if h not in grants
        and g.valid_until_ms > wall_ms
        and (g.grant_id in state.uses or g.grant_id in revoked)
    }
    live_ids = {g.grant_id for g in (*grants.values(), *retired.values())}
    uses = {gid: u for gid, u in state.uses.items() if gid in live_ids}
    # The board's wiring defines the compartments; a configuration only sets their policy.
    compartments = dict(state.compartments)
    unwired = sorted(set(config.compartments) - set(compartments))
    for name, policy in config.compartments.items():
        if name in compartments:
            compartments[name] = replace(
                compartments[name], size=policy.size, pulse_ms=policy.pulse_ms
            )
    grants = {h: g for h, g in grants.items() if g.compartment in compartments}
    state = replace(
        state,
        cfg_version=config.version,
        cfg_issued_at_ms=config.issued_at_ms,
        grants=grants,
        retired=retired,
        uses=uses,
        compartments=compartments,
        stale_after_ms=config.stale_after_s * 1000,
    )
    state, alarms = _bank_alarms(state, wall_ms)
    report = ReportConfig("applied", reason="unwired_compartments" if unwired else None)
    return state, [*alarms, report, PublishState()]


def _sampled(
    c: Compartment, now: Now, *, door_open: bool | None = None, item_present: bool | None = None
) -> Compartment:
    """The compartment with new raw readings; a reading that did not change keeps its start."""
    if door_open is not None and door_open != c.door_raw:
        c = replace(c, door_raw=door_open, door_raw_mono_ms=now.mono_ms)
    if item_present is not None and item_present != c.item_raw:
        c = replace(c, item_raw=item_present, item_raw_mono_ms=now.mono_ms)
    return c


def _on_sensor(state: ControllerState, event: DoorSensed | OccupancySensed, now: Now) -> Result:
    """An edge from a door or item sensor (GPIO interrupts): store it raw, then settle."""
    c = state.compartments.get(event.compartment)
    if c is None:
        return state, []
    if isinstance(event, DoorSensed):
        sampled = _sampled(c, now, door_open=event.is_open)
    else:
        sampled = _sampled(c, now, item_present=event.is_present)
    if sampled is not c:
        state = set_compartment(state, sampled)
    return _settle(state, c.name, now)


def _on_pulse_ended(state: ControllerState, event: PulseEnded, now: Now) -> Result:
    c = state.compartments.get(event.compartment)
    if c is None or c.energized_since_mono_ms is None:
        return state, []  # a late report after a forced off: nothing is energized
    state, outputs = apply(state, c.name, "pulse_ended", now)
    state, more = _continue_open_all(state, now)
    return state, [*outputs, *more]


def _on_bus_read(state: ControllerState, event: BusRead, now: Now) -> Result:
    outputs: list[Output] = []
    if state.bus_failures >= UNREACHABLE_AFTER_FAILURES:
        outputs.append(RecordEvent("alarm_cleared", reason="bus_unreachable"))
    if state.bus_failures:
        state = replace(state, bus_failures=0)
    caps = state.capabilities
    for name, reading in event.compartments.items():
        c = state.compartments.get(name)
        if c is None:
            continue
        sampled = _sampled(
            c,
            now,
            door_open=reading.door_open if caps.has_door_sensor else None,
            item_present=reading.item_present if caps.has_item_sensor else None,
        )
        if sampled is not c:
            state = set_compartment(state, sampled)
        if reading.latch_released is not None and caps.has_latch_feedback:
            latch = "unlocked" if reading.latch_released else "locked"
            if latch != c.latch:
                state, more = apply(
                    state, name, "latch_released" if reading.latch_released else "latch_caught", now
                )
                outputs.extend(more)
        if reading.is_energized and state.compartments[name].energized_since_mono_ms is None:
            state, more = apply(state, name, "output_on_unexpected", now)
            outputs.extend(more)
        state, more = _settle(state, name, now)
        outputs.extend(more)
    return state, outputs


def _on_bus_read_failed(state: ControllerState, event: BusReadFailed, now: Now) -> Result:
    failures = state.bus_failures + 1
    state = replace(state, bus_failures=failures)
    if failures != UNREACHABLE_AFTER_FAILURES:
        return state, []
    outputs: list[Output] = [
        RecordEvent("alarm", reason="bus_unreachable", data={"failures": failures})
    ]
    for name in state.compartments:
        state, more = apply(state, name, "sensors_lost", now)
        outputs.extend(more)
    return state, outputs


def _on_unlock_unanswered(state: ControllerState, event: UnlockUnanswered, now: Now) -> Result:
    """Never retried: record it, and let a fresh reading of the board decide what happened."""
    c = state.compartments.get(event.compartment)
    if c is None:
        return state, []
    if state.capabilities.has_latch_feedback:
        state = set_compartment(state, replace(c, latch="unknown"))
    event_out = RecordEvent("unlock_unanswered", compartment=c.name, grant_id=None)
    return state, [event_out, ReadBus()]


def _on_tick(state: ControllerState, event: Ticked, now: Now) -> Result:
    state = _raise_floor(state, now)
    wall_ms, _ = trusted_time(state, now)
    throttle = state.throttle.expire(wall_ms)
    if throttle is not state.throttle:
        state = replace(state, throttle=throttle)
    state, alarms = _bank_alarms(state, wall_ms)
    state, outputs = _settle_all(state, now)
    state, more = _continue_open_all(state, now)
    return state, [*alarms, *outputs, *more]


HANDLERS: Mapping[type, Callable[[ControllerState, Any, Now], Result]] = {
    CodeEntered: _on_code,
    CommandArrived: _on_command,
    ConfigArrived: _on_config,
    DoorSensed: _on_sensor,
    OccupancySensed: _on_sensor,
    PulseEnded: _on_pulse_ended,
    BusRead: _on_bus_read,
    BusReadFailed: _on_bus_read_failed,
    UnlockUnanswered: _on_unlock_unanswered,
    Ticked: _on_tick,
}


def decide(state: ControllerState, event: Input, now: Now) -> Result:
    """Apply one input; return the new state and the outputs to carry out, in order."""
    handler = HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"no handler for {type(event).__name__}")
    return handler(state, event, now)
