"""The controller's pure core: ``decide(state, event, now) -> (state, outputs)``.

One thread calls :func:`decide` for every input, in order. It performs no I/O and reads no clock:
``now`` is passed in. Dispatch is a table from input type to handler (:data:`HANDLERS`), so a test
can check that every input type is handled.

Safety rules enforced here (system.md, "Non-negotiables"):
- a latch pulses only for a valid, unexpired, unconsumed grant of that compartment and content
  epoch, or for a signed, unexpired, not-yet-seen command addressed to this device;
- a grant pulses at most :data:`MAX_PULSES_PER_GRANT` times, the second within
  :data:`PULSE_RETRY_WINDOW_MS`, and is consumed by the first door opening it caused;
- a compartment never pulses twice within :data:`COOLDOWN_MS`; a pulse never exceeds
  :data:`MAX_PULSE_MS`;
- durable state (uses, replay window, time floor) changes before the pulse is emitted, and the
  adapter persists it before carrying out any output.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from linli.clock import Now
from linli.codes import hash_code, normalize_code
from linli.contract.envelope import verify_envelope
from linli.contract.errors import ContractError
from linli.contract.models import CommandBody, ConfigBody, Door, Grant, Occupancy, Trust
from linli.contract.topics import decode_json
from locker_controller.core.model import (
    COOLDOWN_MS,
    DOOR_OPEN_AFTER_PULSE_MS,
    HOLDOVER_FOR_MS,
    MAX_PULSE_MS,
    MAX_PULSES_PER_GRANT,
    PULSE_RETRY_WINDOW_MS,
    SYNCED_FOR_MS,
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
    PulseLatch,
    RecordEvent,
    ReplyToCommand,
    ReportConfig,
    ShowMessage,
    Ticked,
    TimeState,
)

Result = tuple[ControllerState, list[Output]]


# --- time -----------------------------------------------------------------------------------


def trusted_time(state: ControllerState, now: Now) -> tuple[int, Trust]:
    """The controller's best estimate of the true time, and how far it trusts it.

    Every source is a lower bound the controller can only move forward: the wall clock (NTP or
    RTC, possibly stale after a power cut), signed cloud time learned this boot and carried by the
    monotonic clock, and the persisted floor. The estimate is their maximum, so a stale clock
    cannot make an expired grant valid. The label is ``synced`` for an hour after fresh signed
    time, ``holdover`` for a week, else ``untrusted``.
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


def _learn_time(state: ControllerState, cloud_ms: int, now: Now) -> ControllerState:
    """Adopt signed cloud time if it is news; the floor never goes backwards."""
    if cloud_ms <= state.time.floor_wall_ms:
        return state  # a retained or replayed message: it says nothing new about the time
    time = TimeState(
        floor_wall_ms=cloud_ms,
        offset_ms=cloud_ms - now.mono_ms,
        synced_at_mono_ms=now.mono_ms,
    )
    return replace(state, time=time)


# --- helpers --------------------------------------------------------------------------------


def _set_compartment(state: ControllerState, compartment: Compartment) -> ControllerState:
    compartments = dict(state.compartments)
    compartments[compartment.name] = compartment
    return replace(state, compartments=compartments)


def _refuse_input(state: ControllerState) -> ControllerState:
    return replace(state, refused_inputs=state.refused_inputs + 1)


def _pulse(
    state: ControllerState,
    compartment: Compartment,
    opened_by: str,
    purpose: Any,
    now: Now,
) -> tuple[ControllerState, PulseLatch]:
    pulsed = replace(
        compartment,
        latch="unlocked",
        last_pulse_mono_ms=now.mono_ms,
        opened_by=opened_by,
        opened_purpose=purpose,
    )
    return _set_compartment(state, pulsed), PulseLatch(
        compartment.name, min(compartment.pulse_ms, MAX_PULSE_MS)
    )


def _find(grants: Mapping[str, Grant], code_hash: str) -> Grant | None:
    """The grant whose code hash matches (compared in constant time)."""
    return next((g for h, g in grants.items() if hmac.compare_digest(h, code_hash)), None)


def _cooling_down(compartment: Compartment, now: Now) -> bool:
    last = compartment.last_pulse_mono_ms
    return last is not None and now.mono_ms - last < COOLDOWN_MS


# --- handlers -------------------------------------------------------------------------------


def _on_code(state: ControllerState, event: CodeEntered, now: Now) -> Result:
    def refuse(reason: str, grant: Grant | None = None) -> Result:
        return _refuse_input(state), [
            RecordEvent(
                "code_refused",
                compartment=grant.compartment if grant else None,
                grant_id=grant.grant_id if grant else None,
                reason=reason,
                data={"channel": event.channel},
            ),
            ShowMessage(event.channel, f"code.refused.{reason}"),
        ]

    code = normalize_code(event.code)
    if code is None:
        return refuse("malformed")
    entered_hash = hash_code(state.identity.code_hash_key, code)
    grant = _find(state.grants, entered_hash)
    if grant is None:
        retired = _find(state.retired, entered_hash)
        if retired is None:
            return refuse("unknown_code")
        is_consumed = state.uses.get(retired.grant_id, GrantUse()).is_consumed
        return refuse("used" if is_consumed else "withdrawn", retired)
    wall_ms, _ = trusted_time(state, now)
    if wall_ms > grant.valid_until_ms:
        return refuse("expired", grant)
    if wall_ms < grant.valid_from_ms:
        return refuse("not_yet_valid", grant)
    compartment = state.compartments.get(grant.compartment)
    if compartment is None or compartment.needs_attention:
        return refuse("out_of_service", grant)
    if grant.epoch != compartment.epoch:
        return refuse("stale_epoch", grant)
    use = state.uses.get(grant.grant_id, GrantUse())
    if use.is_consumed:
        return refuse("used", grant)
    if use.pulses >= MAX_PULSES_PER_GRANT or (
        use.pulses > 0 and wall_ms - use.first_pulse_wall_ms > PULSE_RETRY_WINDOW_MS
    ):
        return refuse("pulse_limit", grant)
    if _cooling_down(compartment, now):
        return refuse("cooling_down", grant)

    uses = dict(state.uses)
    uses[grant.grant_id] = GrantUse(
        pulses=use.pulses + 1,
        first_pulse_wall_ms=use.first_pulse_wall_ms or wall_ms,
    )
    state = replace(state, uses=uses)
    state, pulse = _pulse(state, compartment, grant.grant_id, grant.purpose, now)
    return state, [
        RecordEvent(
            "code_accepted",
            compartment=grant.compartment,
            grant_id=grant.grant_id,
            data={"channel": event.channel, "pulse": use.pulses + 1},
        ),
        RecordEvent(
            "latch_pulsed",
            compartment=grant.compartment,
            grant_id=grant.grant_id,
            data={"pulse_ms": pulse.pulse_ms},
        ),
        pulse,
        PublishState(),
        ShowMessage(event.channel, "code.accepted", {"compartment": grant.compartment}),
    ]


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
    def refuse(reason: str, cmd_id: str | None) -> Result:
        return _refuse_input(state), [ReplyToCommand(cmd_id, ok=False, reason=reason)]

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

    compartment = state.compartments.get(command.compartment or "")
    if compartment is None:
        return refuse("unknown_compartment", command.id)
    if _cooling_down(compartment, now):
        return refuse("cooling_down", command.id)
    state = replace(state, window=state.window.accept(command.seq))
    opened_by = command.grant_id or command.id
    purpose = next(
        (g.purpose for g in state.grants.values() if g.grant_id == command.grant_id), None
    )
    state, pulse = _pulse(state, compartment, opened_by, purpose, now)
    return state, [
        RecordEvent(
            "latch_pulsed",
            compartment=compartment.name,
            grant_id=command.grant_id,
            cmd_id=command.id,
            data={"pulse_ms": pulse.pulse_ms},
        ),
        pulse,
        ReplyToCommand(command.id, ok=True),
        PublishState(),
    ]


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
        return _learn_time(state, config.issued_at_ms, now), []
    if config.version < state.cfg_version:
        return state, [
            ReportConfig("refused", refused_version=config.version, reason="older_version")
        ]

    state = _learn_time(state, config.issued_at_ms, now)
    revoked = set(config.revoked)
    grants = {g.code_hash: g for g in config.grants if g.grant_id not in revoked}
    wall_ms, _ = trusted_time(state, now)
    # A grant dropped from the list after it pulsed (consumed, or revoked after one pulse) is
    # kept, with its uses, until it expires: a re-pushed or later list never re-arms it, and a
    # resident re-entering its code is told it was used or withdrawn, not that it is wrong.
    retired = {
        h: g
        for h, g in (*state.retired.items(), *state.grants.items())
        if h not in grants and g.valid_until_ms > wall_ms and g.grant_id in state.uses
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
    )
    report = ReportConfig("applied", reason="unwired_compartments" if unwired else None)
    return state, [report, PublishState()]


def _on_door(state: ControllerState, event: DoorSensed, now: Now) -> Result:
    compartment = state.compartments.get(event.compartment)
    if compartment is None:
        return state, []
    new_door: Door = "open" if event.is_open else "closed"
    if compartment.door == new_door:
        return state, []
    if compartment.door == "unknown":
        # First reading after start-up: learn it. A door found open is worth an event.
        state = _set_compartment(state, replace(compartment, door=new_door))
        found: list[Output] = []
        if event.is_open:
            found.append(
                RecordEvent("door_opened", compartment=compartment.name, reason="found_open")
            )
        return state, [*found, PublishState()]
    outputs: list[Output] = []
    if event.is_open:
        # A pulse explains one opening: once the door has closed (``opened_by`` cleared), the
        # latch caught it again, and opening it without a new pulse is forced, however soon.
        pulsed_recently = (
            compartment.opened_by is not None
            and compartment.last_pulse_mono_ms is not None
            and now.mono_ms - compartment.last_pulse_mono_ms <= DOOR_OPEN_AFTER_PULSE_MS
        )
        opened_by = compartment.opened_by if pulsed_recently else None
        updated = replace(
            compartment,
            door="open",
            opened_by=opened_by,
            opened_purpose=compartment.opened_purpose if opened_by else None,
        )
        # A listed grant opened by a command ("open now" on the phone page) has no use yet: the
        # door it opened consumes it all the same, so its code cannot open the door again.
        is_grant = opened_by is not None and (
            opened_by in state.uses or any(g.grant_id == opened_by for g in state.grants.values())
        )
        if opened_by is not None and is_grant:
            use = state.uses.get(opened_by, GrantUse())
            if not use.is_consumed:
                uses = dict(state.uses)
                uses[opened_by] = replace(use, is_consumed=True)
                state = replace(state, uses=uses)
                outputs.append(
                    RecordEvent("grant_consumed", compartment=compartment.name, grant_id=opened_by)
                )
        outputs.insert(
            0,
            RecordEvent(
                "door_opened",
                compartment=compartment.name,
                grant_id=opened_by if opened_by in state.uses else None,
                reason=None if pulsed_recently else "not_unlocked",
            ),
        )
    else:
        epoch = compartment.epoch + (
            1 if compartment.opened_purpose in ("dropoff", "return") else 0
        )
        outputs.append(
            RecordEvent(
                "door_closed",
                compartment=compartment.name,
                grant_id=compartment.opened_by if compartment.opened_by in state.uses else None,
                data={"epoch": epoch},
            )
        )
        updated = replace(
            compartment, door="closed", opened_by=None, opened_purpose=None, epoch=epoch
        )
    state = _set_compartment(state, updated)
    return state, [*outputs, PublishState()]


def _on_occupancy(state: ControllerState, event: OccupancySensed, now: Now) -> Result:
    compartment = state.compartments.get(event.compartment)
    if compartment is None:
        return state, []
    occupancy: Occupancy = "present" if event.is_present else "absent"
    if compartment.occupancy == occupancy:
        return state, []
    was_unknown = compartment.occupancy == "unknown"
    state = _set_compartment(state, replace(compartment, occupancy=occupancy))
    if was_unknown:
        return state, [PublishState()]  # first reading after start-up: published as state
    return state, [
        RecordEvent(
            "occupancy_changed",
            compartment=compartment.name,
            grant_id=compartment.opened_by if compartment.opened_by in state.uses else None,
            data={"occupancy": occupancy},
        ),
        PublishState(),
    ]


def _on_pulse_ended(state: ControllerState, event: PulseEnded, now: Now) -> Result:
    compartment = state.compartments.get(event.compartment)
    if compartment is None or compartment.latch == "locked":
        return state, []
    # No latch feedback on a plain GPIO build: an unpowered fail-secure latch springs back.
    return _set_compartment(state, replace(compartment, latch="locked")), [PublishState()]


def _on_tick(state: ControllerState, event: Ticked, now: Now) -> Result:
    return state, []


HANDLERS: Mapping[type, Callable[[ControllerState, Any, Now], Result]] = {
    CodeEntered: _on_code,
    CommandArrived: _on_command,
    ConfigArrived: _on_config,
    DoorSensed: _on_door,
    OccupancySensed: _on_occupancy,
    PulseEnded: _on_pulse_ended,
    Ticked: _on_tick,
}


def decide(state: ControllerState, event: Input, now: Now) -> Result:
    """Apply one input; return the new state and the outputs to carry out, in order."""
    handler = HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"no handler for {type(event).__name__}")
    return handler(state, event, now)
