"""The controller's pure core, ``decide(state, event, now)``, as tables of cases and a property.

Everything here is pure: states are built directly (or through signed configuration), time comes
from :class:`linli.clock.FakeClock`, commands and configuration are really signed with a test
Ed25519 key. The property test at the end is the contract test of command delivery: whatever the
interleaving of valid, forged, expired, wrong-device, duplicated and re-ordered commands, and
wherever the controller restarts (through the real :class:`StateStore`), each valid command pulses
exactly once and no other ever does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import get_args

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linli.clock import FakeClock
from linli.codes import hash_code
from linli.contract import (
    CommandBody,
    CompartmentPolicy,
    ConfigBody,
    Event,
    Grant,
    canonical_json,
    public_key_bytes,
    sign_body,
)
from linli.contract.models import GrantPurpose
from locker_controller.core.decide import HANDLERS, decide, trusted_time
from locker_controller.core.model import (
    COOLDOWN_MS,
    DOOR_DEBOUNCE_MS,
    DOOR_OPEN_AFTER_PULSE_MS,
    ENERGIZED_MS_PER_MINUTE,
    HOLDOVER_FOR_MS,
    ITEM_DEBOUNCE_MS,
    MAX_PULSE_MS,
    PULSE_RETRY_WINDOW_MS,
    REPLAY_WINDOW,
    SYNCED_FOR_MS,
    CodeEntered,
    CommandArrived,
    Compartment,
    ConfigArrived,
    ControllerState,
    DoorSensed,
    GrantUse,
    Identity,
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
)
from locker_controller.core.persist import from_document, to_document
from locker_controller.statestore import StateStore

DEVICE_ID = "locker-t1"
OTHER_DEVICE_ID = "locker-t2"
KEY_ID = "cloud-test"
CLOUD_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ROGUE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
CODE_KEY = b"device-code-key-for-the-tests-32"
T0 = 1_800_000_000_000
"""The fake clock's wall time at the start of every test (tests/conftest.py)."""
HOUR_MS = 60 * 60 * 1000
DAY_MS = 24 * HOUR_MS
NAMES = ["A1", "A2", "A3", "A4"]
CHANNEL = "keypad"
CODE = "12345678"
OTHER_CODE = "87654321"

IDENTITY = Identity(
    device_id=DEVICE_ID, cloud_keys={KEY_ID: public_key_bytes(CLOUD_KEY)}, code_hash_key=CODE_KEY
)


# --- builders ---------------------------------------------------------------------------------


def make_grant(
    grant_id: str = "grt_g1",
    code: str = CODE,
    *,
    compartment: str = "A1",
    purpose: GrantPurpose = "pickup",
    valid_from_ms: int = T0 - HOUR_MS,
    valid_until_ms: int = T0 + DAY_MS,
    epoch: int = 0,
) -> Grant:
    return Grant(
        grant_id=grant_id,
        compartment=compartment,
        purpose=purpose,
        valid_from_ms=valid_from_ms,
        valid_until_ms=valid_until_ms,
        code_hash=hash_code(CODE_KEY, code),
        epoch=epoch,
    )


def make_state(*grants: Grant, **compartments: Compartment) -> ControllerState:
    """A running controller: every door closed and latched, its sensors already read."""
    comps = {
        name: Compartment(name=name, latch="locked", door="closed", occupancy="present")
        for name in NAMES
    }
    comps.update(compartments)
    return ControllerState(
        identity=IDENTITY, compartments=comps, grants={g.code_hash: g for g in grants}
    )


def command(
    seq: int,
    *,
    cmd_id: str | None = None,
    name: str = "open",
    compartment: str | None = "A1",
    grant_id: str | None = None,
    device_id: str = DEVICE_ID,
    issued_at_ms: int = T0 - 1_000,
    expires_at_ms: int = T0 + HOUR_MS,
    key: Ed25519PrivateKey = CLOUD_KEY,
    key_id: str = KEY_ID,
) -> bytes:
    body = CommandBody(
        device_id=device_id,
        id=cmd_id or f"cmd-{seq}",
        seq=seq,
        name=name,  # type: ignore[arg-type]
        compartment=compartment,
        grant_id=grant_id,
        issued_at_ms=issued_at_ms,
        expires_at_ms=expires_at_ms,
    )
    return sign_body(key, key_id, body)


def config(
    version: int,
    grants: Sequence[Grant] = (),
    *,
    issued_at_ms: int = T0,
    device_id: str = DEVICE_ID,
    revoked: Sequence[str] = (),
    policies: dict[str, CompartmentPolicy] | None = None,
    key: Ed25519PrivateKey = CLOUD_KEY,
) -> bytes:
    body = ConfigBody(
        device_id=device_id,
        version=version,
        issued_at_ms=issued_at_ms,
        compartments=policies
        if policies is not None
        else {n: CompartmentPolicy(size="M") for n in NAMES},
        grants=list(grants),
        revoked=list(revoked),
    )
    return sign_body(key, KEY_ID, body)


def tampered(payload: bytes, **changes: object) -> bytes:
    """The same envelope with its signed body altered after signing."""
    envelope = json.loads(payload)
    envelope["body"].update(changes)
    return canonical_json(envelope)


class Rig:
    """A controller state driven through ``decide`` by a fake clock, with a lock bus that ends
    each pulse on time (as the GPIO adapter's timer does) when the clock passes its end."""

    def __init__(self, state: ControllerState, clock: FakeClock) -> None:
        self.state = state
        self.clock = clock
        self.pulse_ends: list[tuple[int, str]] = []
        self.background: list[Output] = []

    def feed(self, event: Input) -> list[Output]:
        self.state, outputs = decide(self.state, event, self.clock.now())
        now = self.clock.now().mono_ms
        for output in outputs:
            if isinstance(output, PulseLatch):
                self.pulse_ends.append((now + output.pulse_ms, output.compartment))
        return outputs

    def advance(self, ms: int) -> None:
        target = self.clock.now().mono_ms + ms
        while self.pulse_ends and min(self.pulse_ends)[0] <= target:
            end = min(self.pulse_ends)
            self.pulse_ends.remove(end)
            self.clock.advance(max(0, end[0] - self.clock.now().mono_ms))
            self.background += self.feed(PulseEnded(end[1]))
        self.clock.advance(target - self.clock.now().mono_ms)

    def code(self, code: str = CODE) -> list[Output]:
        return self.feed(CodeEntered(CHANNEL, code))

    def door(self, compartment: str, *, is_open: bool) -> list[Output]:
        """A door reading that holds past the debounce (and the tick that settles it)."""
        outputs = self.feed(DoorSensed(compartment, is_open=is_open))
        self.advance(DOOR_DEBOUNCE_MS)
        return outputs + self.feed(Ticked())

    def item(self, compartment: str, *, is_present: bool) -> list[Output]:
        """An item reading that holds past the debounce (and the tick that settles it)."""
        outputs = self.feed(OccupancySensed(compartment, is_present=is_present))
        self.advance(ITEM_DEBOUNCE_MS)
        return outputs + self.feed(Ticked())


def pulses(outputs: Sequence[Output]) -> list[PulseLatch]:
    """The pulses among ``outputs``, without their authorization token (checked on its own)."""
    return [replace(o, authorized_by="") for o in outputs if isinstance(o, PulseLatch)]


def _pulses_with_tokens(outputs: Sequence[Output]) -> list[PulseLatch]:
    return [o for o in outputs if isinstance(o, PulseLatch)]


def records(outputs: Sequence[Output], type_: str | None = None) -> list[RecordEvent]:
    return [o for o in outputs if isinstance(o, RecordEvent) and type_ in (None, o.type)]


def replies(outputs: Sequence[Output]) -> list[ReplyToCommand]:
    return [o for o in outputs if isinstance(o, ReplyToCommand)]


def as_contract_event(record: RecordEvent, seq: int = 1) -> Event:
    """The event the adapter would publish: it must satisfy the contract's model."""
    return Event(
        device_id=DEVICE_ID,
        boot_id="0123456789ab",
        seq=seq,
        type=record.type,  # type: ignore[arg-type]
        mono_ms=0,
        wall_ms=T0,
        trust="synced",
        compartment=record.compartment,
        grant_id=record.grant_id,
        cmd_id=record.cmd_id,
        reason=record.reason,
        data=dict(record.data),
    )


def catalog(language: str) -> dict[str, str]:
    text = (resources.files("linli") / "i18n" / f"{language}.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


# --- dispatch ---------------------------------------------------------------------------------


def test_every_input_type_has_a_handler_and_every_handler_an_input_type() -> None:
    assert set(get_args(Input)) == set(HANDLERS)


@pytest.mark.parametrize(
    "event",
    [
        CodeEntered(CHANNEL, "0"),
        CommandArrived(b"{}"),
        ConfigArrived(b"{}"),
        DoorSensed("A1", is_open=False),
        OccupancySensed("A1", is_present=True),
        PulseEnded("A1"),
        Ticked(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_each_input_is_dispatched_and_returns_state_and_outputs(
    event: Input, fake_clock: FakeClock
) -> None:
    state, outputs = decide(make_state(), event, fake_clock.now())
    assert isinstance(state, ControllerState)
    assert isinstance(outputs, list)


def test_an_unknown_input_type_is_a_type_error(fake_clock: FakeClock) -> None:
    with pytest.raises(TypeError, match="no handler"):
        decide(make_state(), object(), fake_clock.now())  # type: ignore[arg-type]


# --- codes: accepted --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entered", [CODE, "1234 5678", "1234-5678"], ids=["plain", "space", "dash"]
)
def test_an_accepted_code_records_the_pulse_before_moving_the_latch(
    entered: str, fake_clock: FakeClock
) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    outputs = rig.code(entered)

    assert outputs[0] == RecordEvent(
        "code_accepted",
        compartment="A1",
        grant_id="grt_g1",
        data={"channel": CHANNEL, "pulse": 1},
    )
    assert outputs[1] == RecordEvent(
        "latch_pulsed", compartment="A1", grant_id="grt_g1", data={"pulse_ms": 500}
    )
    assert outputs[2] == PulseLatch("A1", 500, authorized_by="grt_g1#1")
    assert pulses(outputs) == [PulseLatch("A1", 500)]
    assert ShowMessage(CHANNEL, "code.accepted", {"compartment": "A1"}) in outputs
    assert PublishState() in outputs
    # The durable use is in the state that the adapter persists before it pulses.
    assert rig.state.uses["grt_g1"] == GrantUse(pulses=1, first_pulse_wall_ms=T0)
    assert rig.state.compartments["A1"].latch == "unlocked"
    for n, record in enumerate(records(outputs), start=1):
        as_contract_event(record, n)


def test_a_second_pulse_within_the_retry_window_is_accepted(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    rig.code()
    rig.advance(PULSE_RETRY_WINDOW_MS)
    outputs = rig.code()
    assert pulses(outputs) == [PulseLatch("A1", 500)]
    assert records(outputs, "code_accepted")[0].data["pulse"] == 2
    assert rig.state.uses["grt_g1"] == GrantUse(pulses=2, first_pulse_wall_ms=T0)


# --- codes: refused ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeCase:
    """A controller prepared by ``build``; entering ``code`` must be refused with ``reason``."""

    id: str
    build: Callable[[FakeClock], Rig]
    reason: str
    code: str = CODE


def _rig(clock: FakeClock, *grants: Grant, **compartments: Compartment) -> Rig:
    return Rig(make_state(*grants, **compartments), clock)


def _used(clock: FakeClock) -> Rig:
    rig = _rig(clock, make_grant())
    rig.code()
    rig.advance(1_000)
    rig.door("A1", is_open=True)
    rig.advance(10_000)
    rig.door("A1", is_open=False)
    rig.advance(COOLDOWN_MS + 1)
    return rig


def _third_pulse(clock: FakeClock) -> Rig:
    rig = _rig(clock, make_grant())
    for _ in range(2):
        assert pulses(rig.code())
        rig.advance(COOLDOWN_MS + 1)
    return rig


def _second_pulse_too_late(clock: FakeClock) -> Rig:
    rig = _rig(clock, make_grant())
    assert pulses(rig.code())
    rig.advance(PULSE_RETRY_WINDOW_MS + 1)
    return rig


def _cooling_down(clock: FakeClock) -> Rig:
    rig = _rig(clock, make_grant())
    assert pulses(rig.code())
    rig.advance(COOLDOWN_MS - 1)
    return rig


def _cooling_down_other_grant(clock: FakeClock) -> Rig:
    rig = _rig(clock, make_grant(), make_grant("grt_g2", OTHER_CODE))
    assert pulses(rig.code(OTHER_CODE))
    rig.advance(COOLDOWN_MS - 1)
    return rig


def _used_then_dropped_by_config(clock: FakeClock) -> Rig:
    rig = Rig(ControllerState(identity=IDENTITY, compartments=make_state().compartments), clock)
    assert rig.feed(ConfigArrived(config(1, [make_grant()])))[0] == ReportConfig("applied")
    assert pulses(rig.code())
    rig.door("A1", is_open=True)
    rig.door("A1", is_open=False)
    rig.advance(COOLDOWN_MS + 1)
    assert rig.feed(ConfigArrived(config(2, [], issued_at_ms=T0 + 1)))[0] == ReportConfig("applied")
    assert rig.state.grants == {}
    assert list(rig.state.retired.values()) == [make_grant()]
    return rig


CODE_CASES = [
    CodeCase("malformed_seven_digits", lambda c: _rig(c, make_grant()), "malformed", "1234567"),
    CodeCase("malformed_nine_digits", lambda c: _rig(c, make_grant()), "malformed", "123456789"),
    CodeCase("malformed_letters", lambda c: _rig(c, make_grant()), "malformed", "1234abcd"),
    CodeCase(
        "malformed_fullwidth", lambda c: _rig(c, make_grant()), "malformed", "１２３４５６７８"
    ),
    CodeCase("malformed_empty", lambda c: _rig(c, make_grant()), "malformed", ""),
    CodeCase("unknown_code", lambda c: _rig(c, make_grant()), "unknown_code", OTHER_CODE),
    CodeCase("unknown_no_grants", lambda c: _rig(c), "unknown_code"),
    CodeCase("expired", lambda c: _rig(c, make_grant(valid_until_ms=T0 - 1)), "expired"),
    CodeCase("not_yet_valid", lambda c: _rig(c, make_grant(valid_from_ms=T0 + 1)), "not_yet_valid"),
    CodeCase(
        "stale_epoch",
        lambda c: _rig(c, make_grant(epoch=0), A1=Compartment("A1", door="closed", epoch=1)),
        "stale_epoch",
    ),
    CodeCase(
        "out_of_service",
        lambda c: _rig(c, make_grant(), A1=Compartment("A1", door="closed", attention="jammed")),
        "out_of_service",
    ),
    CodeCase(
        "out_of_service_unwired",
        lambda c: _rig(c, make_grant(compartment="B9")),
        "out_of_service",
    ),
    CodeCase("used", _used, "used"),
    CodeCase("pulse_limit_third_pulse", _third_pulse, "pulse_limit"),
    CodeCase("pulse_limit_after_retry_window", _second_pulse_too_late, "pulse_limit"),
    CodeCase("cooling_down", _cooling_down, "cooling_down"),
    CodeCase("cooling_down_other_grant", _cooling_down_other_grant, "cooling_down"),
    CodeCase("used_retired_by_newer_config", _used_then_dropped_by_config, "used"),
]


@pytest.mark.parametrize("case", CODE_CASES, ids=[c.id for c in CODE_CASES])
def test_a_refused_code_never_pulses_and_changes_nothing(
    case: CodeCase, fake_clock: FakeClock
) -> None:
    rig = case.build(fake_clock)
    before = rig.state
    outputs = rig.code(case.code)

    assert pulses(outputs) == []
    [record] = records(outputs)
    assert record.type == "code_refused"
    assert record.reason == case.reason
    assert record.data == {"channel": CHANNEL}
    as_contract_event(record)
    assert ShowMessage(CHANNEL, f"code.refused.{case.reason}") in outputs
    expected = replace(before, refused_inputs=before.refused_inputs + 1)
    if case.reason in ("malformed", "unknown_code"):  # entries that could be guesses count
        assert rig.state.throttle.channels[CHANNEL].failures == 1
        assert rig.state.throttle.bank.failures == before.throttle.bank.failures + 1
        expected = replace(expected, throttle=rig.state.throttle)
    # A code that matched a grant reveals nothing a guesser can use: the throttle is untouched.
    assert rig.state == expected


@pytest.mark.parametrize("reason", sorted({c.reason for c in CODE_CASES}))
@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_every_refusal_reason_has_a_message_in_every_language(reason: str, language: str) -> None:
    text = catalog(language).get(f"code.refused.{reason}")
    assert text, f"code.refused.{reason} missing from {language}.json"


def test_a_refusal_names_the_grant_when_it_is_known(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock, make_grant(valid_until_ms=T0 - 1))
    [record] = records(rig.code())
    assert (record.compartment, record.grant_id) == ("A1", "grt_g1")
    [unknown] = records(rig.code(OTHER_CODE))
    assert (unknown.compartment, unknown.grant_id) == (None, None)


def test_expiry_is_checked_against_trusted_time_not_a_stale_clock(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    rig.feed(ConfigArrived(config(1, [make_grant(valid_until_ms=T0 + HOUR_MS)])))
    # The cloud says it is now a day later than our clock believes (a stale RTC).
    rig.feed(ConfigArrived(config(1, issued_at_ms=T0 + DAY_MS)))
    [record] = records(rig.code())
    assert record.reason == "expired"


# --- pulse bound ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured_ms", "expected_ms"),
    [(300, 300), (1_500, 1_500), (MAX_PULSE_MS, 1_500), (5_000, 1_500)],
)
def test_a_pulse_never_exceeds_the_bound(
    configured_ms: int, expected_ms: int, fake_clock: FakeClock
) -> None:
    a1 = Compartment("A1", latch="locked", door="closed", pulse_ms=configured_ms)
    a2 = Compartment("A2", latch="locked", door="closed", pulse_ms=configured_ms)
    rig = _rig(fake_clock, make_grant(), A1=a1, A2=a2)

    by_code = rig.code()
    assert pulses(by_code) == [PulseLatch("A1", expected_ms)]
    assert _pulses_with_tokens(by_code)[0].authorized_by == "grt_g1#1"
    assert records(by_code, "latch_pulsed")[0].data["pulse_ms"] == expected_ms

    by_command = rig.feed(CommandArrived(command(1, compartment="A2")))
    assert pulses(by_command) == [PulseLatch("A2", expected_ms)]
    assert _pulses_with_tokens(by_command)[0].authorized_by == "cmd:cmd-1:A2"
    assert records(by_command, "latch_pulsed")[0].data["pulse_ms"] == expected_ms


# --- doors ------------------------------------------------------------------------------------


def test_a_door_opened_by_a_pulse_consumes_its_grant(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock, make_grant())
    rig.code()
    rig.advance(DOOR_OPEN_AFTER_PULSE_MS)
    outputs = rig.door("A1", is_open=True)

    assert records(outputs) == [
        RecordEvent("door_opened", compartment="A1", grant_id="grt_g1"),
        RecordEvent("grant_consumed", compartment="A1", grant_id="grt_g1"),
    ]
    assert rig.state.uses["grt_g1"].is_consumed
    assert rig.state.compartments["A1"].door == "open"
    rig.item("A1", is_present=False)  # the resident takes the item
    closed = rig.door("A1", is_open=False)
    assert records(closed) == [
        RecordEvent("door_closed", compartment="A1", grant_id="grt_g1", data={"epoch": 0})
    ]


def test_a_door_opened_too_long_after_the_pulse_is_not_attributed(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock, make_grant())
    rig.code()
    rig.advance(DOOR_OPEN_AFTER_PULSE_MS + 1)
    outputs = rig.door("A1", is_open=True)

    assert records(outputs) == [
        RecordEvent("door_opened", compartment="A1", grant_id=None, reason="not_unlocked"),
        RecordEvent("alarm", compartment="A1", reason="door_forced", data={"occupancy": "present"}),
    ]
    assert not rig.state.uses["grt_g1"].is_consumed


def test_a_door_opened_without_a_pulse_is_not_unlocked(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock, make_grant())
    outputs = rig.door("A1", is_open=True)
    assert records(outputs) == [
        RecordEvent("door_opened", compartment="A1", grant_id=None, reason="not_unlocked"),
        RecordEvent("alarm", compartment="A1", reason="door_forced", data={"occupancy": "present"}),
    ]
    assert records(outputs, "grant_consumed") == []
    assert rig.state.uses == {}
    as_contract_event(records(outputs)[0])


def test_a_door_reopened_after_closing_without_a_new_pulse_is_not_unlocked(
    fake_clock: FakeClock,
) -> None:
    """The latch caught the door when it closed: opening it again is forced, however soon."""
    rig = _rig(fake_clock, make_grant())
    rig.code()
    rig.advance(1_000)
    rig.door("A1", is_open=True)
    rig.advance(1_000)
    rig.door("A1", is_open=False)
    rig.advance(1_000)  # still well within DOOR_OPEN_AFTER_PULSE_MS of the pulse
    outputs = rig.door("A1", is_open=True)
    assert records(outputs) == [
        RecordEvent("door_opened", compartment="A1", grant_id=None, reason="not_unlocked"),
        RecordEvent("alarm", compartment="A1", reason="door_forced", data={"occupancy": "present"}),
    ]


def test_the_first_door_reading_after_start_up_is_learned_silently(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock, A1=Compartment("A1"), A2=Compartment("A2"))
    closed = rig.door("A1", is_open=False)
    assert records(closed) == []
    assert closed == [PublishState()]
    assert rig.state.compartments["A1"].door == "closed"
    found_open = rig.door("A2", is_open=True)
    assert records(found_open) == [
        RecordEvent("door_opened", compartment="A2", reason="found_open")
    ]
    assert rig.door("A1", is_open=False) == []  # no change, no output


def test_a_sensor_of_an_unknown_compartment_changes_nothing(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    before = rig.state
    assert rig.door("Z9", is_open=True) == []
    assert rig.feed(OccupancySensed("Z9", is_present=False)) == []
    assert rig.feed(PulseEnded("Z9")) == []
    assert rig.state == before


@pytest.mark.parametrize(
    ("purpose", "epoch_after"),
    [("dropoff", 1), ("return", 1), ("pickup", 0), ("maintenance", 0)],
)
def test_closing_the_door_after_a_dropoff_bumps_the_content_epoch(
    purpose: GrantPurpose, epoch_after: int, fake_clock: FakeClock
) -> None:
    old_list_pickup = make_grant("grt_old", OTHER_CODE, purpose="pickup", epoch=0)
    rig = _rig(fake_clock, make_grant(purpose=purpose), old_list_pickup)
    rig.code()
    rig.door("A1", is_open=True)
    outputs = rig.door("A1", is_open=False)
    [closed] = records(outputs, "door_closed")
    assert closed.data == {"epoch": epoch_after}
    assert rig.state.compartments["A1"].epoch == epoch_after

    # A grant from the list issued before the refill can no longer open the compartment.
    rig.advance(COOLDOWN_MS + 1)
    after = rig.code(OTHER_CODE)
    if epoch_after:
        assert pulses(after) == []
        assert records(after)[0].reason == "stale_epoch"
    else:
        assert pulses(after) == [PulseLatch("A1", 500)]


def test_occupancy_changes_are_recorded_against_the_grant_that_opened(
    fake_clock: FakeClock,
) -> None:
    rig = _rig(fake_clock, make_grant())
    rig.code()
    rig.door("A1", is_open=True)
    outputs = rig.item("A1", is_present=False)
    assert records(outputs) == [
        RecordEvent(
            "occupancy_changed", compartment="A1", grant_id="grt_g1", data={"occupancy": "absent"}
        )
    ]
    first = _rig(fake_clock, A1=Compartment("A1"))
    assert first.item("A1", is_present=True) == [PublishState()]


def test_pulse_ended_relocks(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock, make_grant())
    rig.code()
    assert rig.state.compartments["A1"].latch == "unlocked"
    assert rig.feed(PulseEnded("A1")) == [PublishState()]
    assert rig.state.compartments["A1"].latch == "locked"
    assert rig.feed(PulseEnded("A1")) == []


# --- commands ---------------------------------------------------------------------------------


def test_an_accepted_open_pulses_once_and_replies(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    payload = command(7, compartment="A3")
    outputs = rig.feed(CommandArrived(payload))

    assert pulses(outputs) == [PulseLatch("A3", 500)]
    assert replies(outputs) == [ReplyToCommand("cmd-7", ok=True)]
    [pulsed] = records(outputs)
    assert pulsed == RecordEvent(
        "latch_pulsed", compartment="A3", cmd_id="cmd-7", data={"pulse_ms": 500}
    )
    assert outputs.index(pulsed) < outputs.index(
        PulseLatch("A3", 500, authorized_by="cmd:cmd-7:A3")
    )
    as_contract_event(pulsed)
    assert rig.state.window.highest == 7

    rig.advance(COOLDOWN_MS + 1)
    again = rig.feed(CommandArrived(payload))
    assert pulses(again) == []
    assert replies(again) == [ReplyToCommand("cmd-7", ok=False, reason="duplicate")]


def test_publish_state_command_pulses_nothing(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    outputs = rig.feed(CommandArrived(command(1, name="publish_state", compartment=None)))
    assert outputs == [PublishState(), ReplyToCommand("cmd-1", ok=True)]
    assert 1 in rig.state.window.seen


def test_an_open_within_the_cooldown_is_refused_and_may_be_retried_later(
    fake_clock: FakeClock,
) -> None:
    rig = _rig(fake_clock)
    assert pulses(rig.feed(CommandArrived(command(1))))
    rig.advance(COOLDOWN_MS - 1)
    retry = command(2)
    early = rig.feed(CommandArrived(retry))
    assert (pulses(early), replies(early)) == (
        [],
        [ReplyToCommand("cmd-2", ok=False, reason="cooling_down")],
    )
    rig.advance(1)
    assert pulses(rig.feed(CommandArrived(retry))) == [PulseLatch("A1", 500)]


def _cfg_body_as_cmd() -> bytes:
    body = ConfigBody(device_id=DEVICE_ID, version=1, issued_at_ms=T0, compartments={}, grants=[])
    return sign_body(CLOUD_KEY, KEY_ID, body)


def _signed_invalid_body() -> bytes:
    """Signed by the cloud, but not a valid command body (seq 0)."""
    body = CommandBody(
        device_id=DEVICE_ID,
        id="cmd-bad",
        seq=1,
        name="open",
        compartment="A1",
        issued_at_ms=T0,
        expires_at_ms=T0 + HOUR_MS,
    ).model_dump(mode="json")
    body["seq"] = 0
    return sign_body(CLOUD_KEY, KEY_ID, body)


@dataclass(frozen=True)
class CommandCase:
    id: str
    payload: Callable[[], bytes]
    reason: str
    cmd_id: str | None


COMMAND_CASES = [
    CommandCase("bad_signature_other_key", lambda: command(1, key=ROGUE_KEY), "bad_signature", "cmd-1"),
    CommandCase("bad_signature_unknown_key_id", lambda: command(1, key_id="cloud-x"), "bad_signature", "cmd-1"),
    CommandCase("tampered_compartment", lambda: tampered(command(1), compartment="A2"), "bad_signature", "cmd-1"),
    CommandCase("tampered_expiry", lambda: tampered(command(1, expires_at_ms=T0 - 1), expires_at_ms=T0 + DAY_MS), "bad_signature", "cmd-1"),
    CommandCase("wrong_kind_cfg_as_cmd", _cfg_body_as_cmd, "bad_signature", None),
    CommandCase("wrong_device", lambda: command(1, device_id=OTHER_DEVICE_ID), "wrong_device", "cmd-1"),
    CommandCase("expired", lambda: command(1, issued_at_ms=T0 - DAY_MS, expires_at_ms=T0 - 1), "expired", "cmd-1"),
    CommandCase("duplicate", lambda: command(90, cmd_id="cmd-90b"), "duplicate", "cmd-90b"),
    CommandCase("outside_window", lambda: command(100 - REPLAY_WINDOW), "outside_window", f"cmd-{100 - REPLAY_WINDOW}"),
    CommandCase("malformed_garbage", lambda: b"\x00\xffnot json", "malformed", None),
    CommandCase("malformed_not_an_envelope", lambda: b'{"v":1,"body":{"id":"cmd-9"}}', "malformed", "cmd-9"),
    CommandCase("malformed_signed_invalid_body", _signed_invalid_body, "malformed", "cmd-bad"),
    CommandCase("unsupported_version", lambda: b'{"v":2}', "unsupported_version", None),
    CommandCase("unknown_compartment", lambda: command(50, compartment="Z9"), "unknown_compartment", "cmd-50"),
    CommandCase("open_without_compartment", lambda: command(50, compartment=None), "unknown_compartment", "cmd-50"),
]  # fmt: skip


@pytest.mark.parametrize("case", COMMAND_CASES, ids=[c.id for c in COMMAND_CASES])
def test_a_refused_command_replies_with_its_reason_and_changes_nothing(
    case: CommandCase, fake_clock: FakeClock
) -> None:
    # Seq 90 and 100 were accepted earlier, on other compartments and past their cooldown.
    rig = _rig(fake_clock)
    assert pulses(rig.feed(CommandArrived(command(90, compartment="A3"))))
    assert pulses(rig.feed(CommandArrived(command(100, compartment="A4"))))
    rig.advance(COOLDOWN_MS + 1)
    before = rig.state

    outputs = rig.feed(CommandArrived(case.payload()))

    assert outputs == [ReplyToCommand(case.cmd_id, ok=False, reason=case.reason)]
    assert rig.state == replace(before, refused_inputs=before.refused_inputs + 1)


def test_the_replay_window_edge_is_accepted(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    rig.feed(CommandArrived(command(100, compartment="A4")))
    rig.advance(COOLDOWN_MS + 1)
    edge = 100 - REPLAY_WINDOW + 1
    assert replies(rig.feed(CommandArrived(command(edge)))) == [
        ReplyToCommand(f"cmd-{edge}", ok=True)
    ]


def test_a_command_expired_against_trusted_time_is_refused(fake_clock: FakeClock) -> None:
    """Valid by the (stale) wall clock, expired by the signed time the controller learned."""
    rig = _rig(fake_clock)
    rig.feed(ConfigArrived(config(1, issued_at_ms=T0 + DAY_MS)))
    outputs = rig.feed(CommandArrived(command(1, expires_at_ms=T0 + HOUR_MS)))
    assert outputs == [ReplyToCommand("cmd-1", ok=False, reason="expired")]


def test_a_door_opened_by_a_command_for_a_grant_consumes_that_grant(
    fake_clock: FakeClock,
) -> None:
    """'Open now' from the phone page names the grant: the door it opens uses the code up."""
    rig = _rig(fake_clock, make_grant())
    assert pulses(rig.feed(CommandArrived(command(1, grant_id="grt_g1"))))
    outputs = rig.door("A1", is_open=True)
    assert records(outputs) == [
        RecordEvent("door_opened", compartment="A1", grant_id="grt_g1"),
        RecordEvent("grant_consumed", compartment="A1", grant_id="grt_g1"),
    ]
    rig.door("A1", is_open=False)
    rig.advance(COOLDOWN_MS + 1)
    later = rig.code()
    assert pulses(later) == []
    assert records(later)[0].reason == "used"


def test_a_door_opened_by_a_plain_service_command_names_no_grant(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock, make_grant())
    rig.feed(CommandArrived(command(1)))
    outputs = rig.door("A1", is_open=True)
    assert records(outputs) == [RecordEvent("door_opened", compartment="A1", cmd_id="cmd-1")]
    assert rig.state.uses == {}


# --- configuration ----------------------------------------------------------------------------


def test_a_new_configuration_is_applied(fake_clock: FakeClock) -> None:
    rig = Rig(
        ControllerState(identity=IDENTITY, compartments={"A1": Compartment("A1")}), fake_clock
    )
    payload = config(
        3,
        [make_grant(), make_grant("grt_g2", OTHER_CODE)],
        revoked=["grt_g2"],
        policies={"A1": CompartmentPolicy(size="L", pulse_ms=800)},
    )
    outputs = rig.feed(ConfigArrived(payload))
    assert outputs == [ReportConfig("applied"), PublishState()]
    assert rig.state.cfg_version == 3
    assert list(rig.state.grants.values()) == [make_grant()]  # the revoked one is not installed
    assert (rig.state.compartments["A1"].size, rig.state.compartments["A1"].pulse_ms) == ("L", 800)
    assert pulses(rig.code()) == [PulseLatch("A1", 800)]
    rig.advance(COOLDOWN_MS + 1)
    assert records(rig.code(OTHER_CODE))[0].reason == "unknown_code"


def test_a_revoked_grant_is_withdrawn_and_its_code_is_not_a_guess(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    rig.feed(ConfigArrived(config(1, [make_grant()])))
    rig.feed(ConfigArrived(config(2, [], revoked=["grt_g1"], issued_at_ms=T0 + 1)))
    assert rig.state.grants == {}
    outputs = rig.code()
    assert pulses(outputs) == []
    assert [r.reason for r in records(outputs)] == ["withdrawn"]
    assert rig.state.throttle.bank.failures == 0
    # Past its window it is forgotten with the next list.
    fake_clock.advance(2 * DAY_MS)
    rig.feed(ConfigArrived(config(3, [], issued_at_ms=T0 + 2 * DAY_MS)))
    assert rig.state.retired == {}


def test_an_older_configuration_is_refused_and_reported(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    rig.feed(ConfigArrived(config(2, [make_grant()])))
    before = rig.state
    outputs = rig.feed(ConfigArrived(config(1, [], issued_at_ms=T0 + HOUR_MS)))
    assert outputs == [ReportConfig("refused", refused_version=1, reason="older_version")]
    assert rig.state == before


def test_the_same_version_again_only_teaches_newer_time(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    rig.feed(ConfigArrived(config(2, [make_grant()], issued_at_ms=T0)))
    before = rig.state
    assert before.time.floor_wall_ms == T0

    # A retained copy, or an older signing of the same version: nothing at all.
    assert rig.feed(ConfigArrived(config(2, [], issued_at_ms=T0))) == []
    assert rig.feed(ConfigArrived(config(2, [], issued_at_ms=T0 - 1))) == []
    assert rig.state == before

    # Re-signed later by the cloud: the time is news, and so is the cloud's word that the list
    # is current (its age restarts); the content is not.
    assert rig.feed(ConfigArrived(config(2, [], issued_at_ms=T0 + 5_000))) == [
        ReportConfig("applied")
    ]
    assert rig.state.time.floor_wall_ms == T0 + 5_000
    assert rig.state.cfg_issued_at_ms == T0 + 5_000
    assert rig.state.grants == before.grants
    assert replace(rig.state, time=before.time, cfg_issued_at_ms=T0) == before


def _unsigned_envelope() -> bytes:
    body = json.loads(config(1, [make_grant()]))["body"]
    return canonical_json({"v": 1, "key_id": KEY_ID, "body": body, "sig": "A" * 86})


def _cmd_as_cfg() -> bytes:
    return command(1)


def _signed_invalid_config() -> bytes:
    body = json.loads(config(1))["body"]
    body["version"] = 0
    return sign_body(CLOUD_KEY, KEY_ID, body)


@pytest.mark.parametrize(
    "payload",
    [
        lambda: b"\xff\xfegarbage",
        lambda: b"",
        lambda: b'{"v":1}',
        lambda: json.dumps(json.loads(config(1, [make_grant()]))["body"]).encode(),
        _unsigned_envelope,
        lambda: config(1, [make_grant()], key=ROGUE_KEY),
        lambda: tampered(config(1, []), grants=[make_grant().model_dump(mode="json")]),
        _cmd_as_cfg,
        _signed_invalid_config,
        lambda: config(1, [make_grant()], device_id=OTHER_DEVICE_ID),
    ],
    ids=[
        "garbage",
        "empty",
        "not_an_envelope",
        "bare_body",
        "unsigned",
        "other_key",
        "tampered",
        "cmd_as_cfg",
        "signed_invalid",
        "wrong_device",
    ],
)
def test_a_configuration_not_from_the_cloud_for_us_changes_nothing_and_reports_nothing(
    payload: Callable[[], bytes], fake_clock: FakeClock
) -> None:
    rig = _rig(fake_clock)
    before = rig.state
    assert rig.feed(ConfigArrived(payload())) == []
    assert rig.state == replace(before, refused_inputs=before.refused_inputs + 1)
    assert rig.state.cfg_version == 0


def test_a_re_pushed_list_never_re_arms_a_used_grant(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    grant = make_grant()
    rig.feed(ConfigArrived(config(1, [grant])))
    rig.code()
    rig.door("A1", is_open=True)
    rig.door("A1", is_open=False)
    used = rig.state.uses["grt_g1"]
    assert used.is_consumed

    for version in (2, 3):  # 2 drops the grant, 3 lists it again (a cloud restored a backup)
        rig.advance(COOLDOWN_MS + 1)
        listed = [grant] if version == 3 else []
        assert rig.feed(ConfigArrived(config(version, listed, issued_at_ms=T0 + version)))[
            0
        ] == ReportConfig("applied")
        assert rig.state.uses["grt_g1"] == used
        outputs = rig.code()
        assert pulses(outputs) == []
        assert records(outputs)[0].reason == "used"


def test_a_retired_grant_is_forgotten_once_it_has_expired(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    rig.feed(ConfigArrived(config(1, [make_grant(valid_until_ms=T0 + HOUR_MS)])))
    rig.code()
    rig.door("A1", is_open=True)
    rig.feed(ConfigArrived(config(2, [], issued_at_ms=T0 + 1)))
    assert rig.state.retired
    rig.advance(HOUR_MS + 1)
    rig.feed(ConfigArrived(config(3, [], issued_at_ms=T0 + 2)))
    assert rig.state.retired == {}
    assert rig.state.uses == {}


def test_a_grant_withdrawn_after_one_pulse_keeps_its_count_when_listed_again(
    fake_clock: FakeClock,
) -> None:
    rig = _rig(fake_clock)
    grant = make_grant()
    rig.feed(ConfigArrived(config(1, [grant])))
    assert len(pulses(rig.code())) == 1  # first pulse; the resident never opened the door
    rig.advance(COOLDOWN_MS + 1)
    rig.feed(ConfigArrived(config(2, [], issued_at_ms=T0 + 2)))  # withdrawn by the cloud
    outputs = rig.code()
    assert pulses(outputs) == [] and records(outputs)[0].reason == "withdrawn"
    rig.feed(ConfigArrived(config(3, [grant], issued_at_ms=T0 + 3)))  # listed again
    assert rig.state.uses["grt_g1"].pulses == 1
    assert len(pulses(rig.code())) == 1  # the second and last pulse
    rig.advance(COOLDOWN_MS + 1)
    outputs = rig.code()
    assert pulses(outputs) == [] and records(outputs)[0].reason == "pulse_limit"


def test_a_configuration_cannot_invent_compartments_the_board_lacks(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    ghost = make_grant("grt_ghost", "87654321", compartment="Z9")
    policies = {n: CompartmentPolicy(size="M") for n in NAMES} | {"Z9": CompartmentPolicy(size="L")}
    outputs = rig.feed(ConfigArrived(config(1, [make_grant(), ghost], policies=policies)))
    assert outputs[0] == ReportConfig("applied", reason="unwired_compartments")
    assert "Z9" not in rig.state.compartments
    assert [g.grant_id for g in rig.state.grants.values()] == ["grt_g1"]
    assert pulses(rig.code("87654321")) == []


# --- time -------------------------------------------------------------------------------------


def test_trusted_time_never_goes_back_past_signed_time(fake_clock: FakeClock) -> None:
    rig = _rig(fake_clock)
    cloud_ms = T0 + DAY_MS  # the cloud says our clock is a day slow
    rig.feed(ConfigArrived(config(1, issued_at_ms=cloud_ms)))
    readings = [trusted_time(rig.state, fake_clock.now())]
    assert readings[0] == (cloud_ms, "synced")

    for wall_ms in (T0 - 30 * DAY_MS, 0, T0, T0 - 1):  # an RTC restoring stale times
        fake_clock.set_wall(wall_ms)
        fake_clock.advance(1_000)
        readings.append(trusted_time(rig.state, fake_clock.now()))
    estimates = [ms for ms, _ in readings]
    assert estimates == sorted(estimates)
    assert estimates[-1] == cloud_ms + 4 * 1_000  # carried forward by the monotonic clock

    fake_clock.advance(SYNCED_FOR_MS)
    assert trusted_time(rig.state, fake_clock.now())[1] == "holdover"
    fake_clock.advance(HOLDOVER_FOR_MS)
    estimate, trust = trusted_time(rig.state, fake_clock.now())
    assert trust == "untrusted"
    assert estimate >= estimates[-1]


def test_the_time_floor_holds_across_a_restart() -> None:
    clock = FakeClock(wall_ms=T0, mono_ms=1_000)
    rig = _rig(clock)
    cloud_ms = T0 + DAY_MS
    rig.feed(
        ConfigArrived(config(1, [make_grant(valid_until_ms=T0 + HOUR_MS)], issued_at_ms=cloud_ms))
    )
    document = json.loads(json.dumps(to_document(rig.state)))

    # Power cut: the Pi boots with a month-old time and a fresh monotonic clock.
    rebooted = FakeClock(wall_ms=T0 - 30 * DAY_MS, mono_ms=5)
    state = from_document(IDENTITY, NAMES, document)
    assert trusted_time(state, rebooted.now()) == (cloud_ms, "untrusted")
    # The grant looks valid to the stale clock, but not to the persisted floor.
    after = Rig(state, rebooted)
    after.door("A1", is_open=False)
    outputs = after.code()
    assert pulses(outputs) == []
    assert records(outputs)[0].reason == "expired"


# --- property: every valid command pulses exactly once -----------------------------------------


@dataclass(frozen=True)
class Script:
    compartments: list[str]
    deliveries: list[tuple[str, int]]
    """(kind, index): kind "valid" indexes a valid command, the others a bad one."""
    bad: list[tuple[str, int, str]]
    """(kind, seq, compartment) of each bad command."""
    restarts: frozenset[int]


BAD_KINDS = {
    "forged": "bad_signature",
    "tampered": "bad_signature",
    "expired": "expired",
    "wrong_device": "wrong_device",
}


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    n = draw(st.integers(1, 80))
    compartments = draw(st.lists(st.sampled_from(NAMES), min_size=n, max_size=n))
    # Re-order within the replay window: sort by index + a delay below the window size, so a
    # command is delivered after at most REPLAY_WINDOW - 1 higher ones.
    delays = draw(st.lists(st.integers(0, REPLAY_WINDOW - 1), min_size=n, max_size=n))
    order = sorted(range(n), key=lambda i: (i + delays[i], i))
    deliveries: list[tuple[str, int]] = [("valid", i) for i in order]
    # Duplicates and replays, each somewhere after a delivery of the same command.
    for _ in range(draw(st.integers(0, 25))):
        src = draw(st.integers(0, len(deliveries) - 1))
        deliveries.insert(draw(st.integers(src + 1, len(deliveries))), deliveries[src])
    bad = draw(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(BAD_KINDS)), st.integers(1, n + 70), st.sampled_from(NAMES)
            ),
            max_size=15,
        )
    )
    for j in range(len(bad)):
        deliveries.insert(draw(st.integers(0, len(deliveries))), ("bad", j))
    restarts = draw(st.frozensets(st.integers(0, len(deliveries)), max_size=4))
    return Script(compartments, deliveries, bad, restarts)


def _bad_payload(kind: str, j: int, seq: int, compartment: str) -> bytes:
    cmd_id = f"bad-{kind}-{j}"
    if kind == "forged":
        return command(seq, cmd_id=cmd_id, compartment=compartment, key=ROGUE_KEY)
    if kind == "tampered":
        return tampered(command(seq, cmd_id=cmd_id, compartment=compartment), seq=seq + 1)
    if kind == "expired":
        return command(
            seq,
            cmd_id=cmd_id,
            compartment=compartment,
            issued_at_ms=T0 - 2 * DAY_MS,
            expires_at_ms=T0 - DAY_MS,
        )
    return command(seq, cmd_id=cmd_id, compartment=compartment, device_id=OTHER_DEVICE_ID)


class Controller:
    """The core with its real state store: restarts persist, close, reopen and reload."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = FakeClock(wall_ms=T0, mono_ms=1_000)
        self.store = StateStore(path)
        self.state = from_document(IDENTITY, NAMES, self.store.load())

    def restart(self) -> None:
        self.store.save(to_document(self.state))
        self.store.close()
        self.store = StateStore(self.path)
        self.state = from_document(IDENTITY, NAMES, self.store.load())
        # A new boot: the monotonic clock starts again, the wall clock keeps going.
        self.clock = FakeClock(wall_ms=self.clock.now().wall_ms + 10_000, mono_ms=0)

    def deliver(self, payload: bytes) -> list[Output]:
        # Spaced so neither the cool-down nor the per-minute energize cap refuses a valid command.
        self.clock.advance(ENERGIZED_MS_PER_MINUTE // 500 * 1_000)
        self.state, outputs = decide(self.state, CommandArrived(payload), self.clock.now())
        for pulse in (o for o in outputs if isinstance(o, PulseLatch)):
            self.clock.advance(pulse.pulse_ms)  # the bus's timer ends the pulse
            self.state, _ = decide(self.state, PulseEnded(pulse.compartment), self.clock.now())
        return outputs


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(script=scripts())
def test_each_valid_command_pulses_exactly_once_whatever_the_delivery(
    script: Script, tmp_path_factory: pytest.TempPathFactory
) -> None:
    valid = [
        command(i + 1, cmd_id=f"cmd-{i}", compartment=c, expires_at_ms=T0 + DAY_MS)
        for i, c in enumerate(script.compartments)
    ]
    bad = [_bad_payload(kind, j, seq, c) for j, (kind, seq, c) in enumerate(script.bad)]
    controller = Controller(tmp_path_factory.mktemp("replay") / "state.json")
    pulsed: list[str] = []
    all_pulses: list[PulseLatch] = []

    def check(kind: str, index: int, outputs: list[Output]) -> None:
        [reply] = replies(outputs)
        pulses_here = pulses(outputs)
        all_pulses.extend(pulses_here)
        if kind == "valid":
            cmd_id = f"cmd-{index}"
            assert reply.cmd_id == cmd_id
            if cmd_id in pulsed:
                assert pulses_here == []
                assert not reply.ok
                assert reply.reason in ("duplicate", "outside_window")
            else:
                assert reply == ReplyToCommand(cmd_id, ok=True)
                assert pulses_here == [PulseLatch(script.compartments[index], 500)]
                pulsed.append(cmd_id)
        else:
            bad_kind = script.bad[index][0]
            assert pulses_here == []
            assert reply == ReplyToCommand(
                f"bad-{bad_kind}-{index}", ok=False, reason=BAD_KINDS[bad_kind]
            )

    for position, (kind, index) in enumerate(script.deliveries):
        if position in script.restarts:
            controller.restart()
        payload = valid[index] if kind == "valid" else bad[index]
        check(kind, index, controller.deliver(payload))

    # After a final restart, every valid command arrives once more (a broker re-delivering its
    # queue): none may pulse again.
    controller.restart()
    for payload in valid:
        assert pulses(controller.deliver(payload)) == []
    controller.store.close()

    delivered = {f"cmd-{i}" for kind, i in script.deliveries if kind == "valid"}
    assert len(all_pulses) == len(delivered) == len(pulsed)
    assert set(pulsed) == delivered
