"""The compartment transition table, pair by pair, and the alarms and safety rules built on it.

Every (phase, stimulus) pair of :data:`~locker_controller.core.table.TABLE` is either exercised
here with an expected outcome written independently of the code (:data:`EXPECTED`), or declared
impossible — and a declared-impossible pair applied anyway changes nothing and says so. Behaviour
tests then drive the whole core through ``decide`` with a fake clock.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import pytest
from test_controller_core import (
    CODE,
    OTHER_CODE,
    T0,
    Rig,
    command,
    config,
    make_grant,
    make_state,
    pulses,
    records,
)

from hardware.capabilities import Capabilities
from linli.clock import FakeClock
from locker_controller.core.compartment import TRANSITIONS, Authorization, apply, apply_pulse
from locker_controller.core.decide import next_deadline, trusted_time
from locker_controller.core.model import (
    AJAR_AFTER_MS,
    DOOR_DEBOUNCE_MS,
    DOOR_OPEN_AFTER_PULSE_MS,
    ENERGIZED_MS_PER_MINUTE,
    FLOOR_EVERY_MS,
    ITEM_DEBOUNCE_MS,
    MAX_PULSE_MS,
    UNREACHABLE_AFTER_FAILURES,
    BusRead,
    BusReadFailed,
    CommandArrived,
    Compartment,
    CompartmentReading,
    ConfigArrived,
    ControllerState,
    DoorSensed,
    OccupancySensed,
    Output,
    PulseEnded,
    PulseLatch,
    ReadBus,
    RecordEvent,
    ReplyToCommand,
    SwitchAllOff,
    Ticked,
    UnlockUnanswered,
)
from locker_controller.core.table import PHASES, STIMULI, TABLE, Impossible, lock_word, phase_of

NOW_MONO = 100_000


# --- the table as data ------------------------------------------------------------------------


def test_the_table_lists_every_pair_exactly_once() -> None:
    assert set(TABLE) == set(product(PHASES, STIMULI))
    assert len(TABLE) == len(PHASES) * len(STIMULI)


def test_every_named_transition_exists_and_is_used() -> None:
    named = {entry for entry in TABLE.values() if isinstance(entry, str)}
    assert named == set(TRANSITIONS) | {"start_pulse"}


def test_every_impossible_pair_says_why() -> None:
    for pair, entry in TABLE.items():
        if isinstance(entry, Impossible):
            assert len(entry.reason) > 20, pair


# --- every pair, with its expected outcome -----------------------------------------------------

# (phase, stimulus) -> (phase after, what is recorded: event type, or "type:reason").
EXPECTED: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("unknown", "door_opened"): ("open", ("door_opened:found_open",)),
    ("unknown", "door_closed"): ("locked", ()),
    ("unknown", "item_appeared"): ("unknown", ("occupancy_changed",)),
    ("unknown", "item_gone"): ("unknown", ("occupancy_changed",)),
    ("unknown", "item_learned"): ("unknown", ()),
    ("unknown", "pulse_started"): ("unlocking", ("latch_pulsed",)),
    ("unknown", "output_on_unexpected"): ("unknown", ("alarm:output_forced_off",)),
    ("unknown", "latch_released"): ("unknown", ("alarm:latch_fault",)),
    ("unknown", "latch_caught"): ("unknown", ()),
    ("unknown", "window_over"): ("unknown", ()),
    ("unknown", "sensors_lost"): ("unknown", ()),
    ("unknown", "attention_cleared"): ("unknown", ("alarm_cleared:jammed",)),
    ("locked", "door_opened"): ("open", ("door_opened:not_unlocked", "alarm:door_forced")),
    ("locked", "item_appeared"): (
        "locked",
        ("occupancy_changed:door_closed", "alarm:occupancy_unexplained"),
    ),
    ("locked", "item_gone"): (
        "locked",
        ("occupancy_changed:door_closed", "alarm:occupancy_unexplained"),
    ),
    ("locked", "item_learned"): ("locked", ()),
    ("locked", "pulse_started"): ("unlocking", ("latch_pulsed",)),
    ("locked", "output_on_unexpected"): ("locked", ("alarm:output_forced_off",)),
    ("locked", "latch_released"): ("locked", ("alarm:latch_fault",)),
    ("locked", "latch_caught"): ("locked", ()),
    ("locked", "sensors_lost"): ("unknown", ()),
    ("locked", "attention_cleared"): ("locked", ("alarm_cleared:jammed",)),
    ("unlocking", "door_opened"): ("open", ("door_opened", "grant_consumed")),
    ("unlocking", "door_closed"): ("unlocking", ()),
    ("unlocking", "item_appeared"): (
        "unlocking",
        ("occupancy_changed:door_closed", "alarm:occupancy_unexplained"),
    ),
    ("unlocking", "item_gone"): (
        "unlocking",
        ("occupancy_changed:door_closed", "alarm:occupancy_unexplained"),
    ),
    ("unlocking", "item_learned"): ("unlocking", ()),
    ("unlocking", "pulse_ended"): ("unlocked", ()),
    ("unlocking", "pulse_overdue"): ("unlocked", ("alarm:output_forced_off",)),
    ("unlocking", "latch_released"): ("unlocking", ()),
    ("unlocking", "latch_caught"): ("unlocking", ()),
    ("unlocking", "sensors_lost"): ("unlocking", ()),
    ("unlocking", "attention_cleared"): ("unlocking", ("alarm_cleared:jammed",)),
    ("unlocked", "door_opened"): ("open", ("door_opened", "grant_consumed")),
    ("unlocked", "item_appeared"): (
        "unlocked",
        ("occupancy_changed:door_closed", "alarm:occupancy_unexplained"),
    ),
    ("unlocked", "item_gone"): (
        "unlocked",
        ("occupancy_changed:door_closed", "alarm:occupancy_unexplained"),
    ),
    ("unlocked", "item_learned"): ("unlocked", ()),
    ("unlocked", "pulse_started"): ("unlocking", ("latch_pulsed",)),
    ("unlocked", "output_on_unexpected"): ("unlocked", ("alarm:output_forced_off",)),
    ("unlocked", "latch_released"): ("unlocked", ()),
    ("unlocked", "latch_caught"): ("unlocked", ()),
    ("unlocked", "window_over"): ("locked", ()),
    ("unlocked", "sensors_lost"): ("unknown", ()),
    ("unlocked", "attention_cleared"): ("unlocked", ("alarm_cleared:jammed",)),
    ("open", "door_closed"): ("locked", ("door_closed", "alarm:item_left_behind")),
    ("open", "item_appeared"): ("open", ("occupancy_changed",)),
    ("open", "item_gone"): ("open", ("occupancy_changed",)),
    ("open", "item_learned"): ("open", ()),
    ("open", "pulse_ended"): ("open", ()),
    ("open", "pulse_overdue"): ("open", ("alarm:output_forced_off",)),
    ("open", "output_on_unexpected"): ("open", ("alarm:output_forced_off",)),
    ("open", "latch_released"): ("open", ()),
    ("open", "latch_caught"): ("open", ()),
    ("open", "ajar_due"): ("open", ("alarm:door_ajar",)),
    ("open", "sensors_lost"): ("unknown", ()),
    ("open", "attention_cleared"): ("open", ("alarm_cleared:jammed",)),
}

PAIRS = sorted(TABLE)
POSSIBLE = [p for p in PAIRS if not isinstance(TABLE[p], Impossible)]
IMPOSSIBLE = [p for p in PAIRS if isinstance(TABLE[p], Impossible)]
FEEDBACK = Capabilities(
    has_door_sensor=True, has_latch_feedback=True, has_item_sensor=True, can_time_pulse=True
)


def test_every_possible_pair_has_an_expected_outcome() -> None:
    assert set(EXPECTED) == set(POSSIBLE)


def _in_phase(phase: str) -> Compartment:
    """Compartment A1 in ``phase``, holding an item, opened (if at all) by pickup grant grt_g1."""
    base = Compartment("A1", latch="locked", door="closed", occupancy="present")
    pending = {"opened_by": "grt_g1", "opened_purpose": "pickup"}
    if phase == "unknown":
        return replace(base, door="unknown", latch="unknown")
    if phase == "unlocking":
        return replace(
            base,
            latch="unlocked",
            energized_since_mono_ms=NOW_MONO - 100,
            last_pulse_mono_ms=NOW_MONO - 100,
            **pending,  # type: ignore[arg-type]
        )
    if phase == "unlocked":
        return replace(base, last_pulse_mono_ms=NOW_MONO - 1_000, **pending)  # type: ignore[arg-type]
    if phase == "open":
        return replace(base, door="open", door_since_mono_ms=NOW_MONO - 1_000, **pending)  # type: ignore[arg-type]
    return base


def _primed(c: Compartment, stimulus: str) -> Compartment:
    """The compartment with the reading or condition that produces ``stimulus``."""
    if stimulus == "door_opened":
        return replace(c, door_raw=True, door_raw_mono_ms=NOW_MONO - DOOR_DEBOUNCE_MS)
    if stimulus == "door_closed":
        return replace(c, door_raw=False, door_raw_mono_ms=NOW_MONO - DOOR_DEBOUNCE_MS)
    if stimulus == "item_appeared":
        return replace(c, occupancy="absent", item_raw=True, item_raw_mono_ms=NOW_MONO - 300)
    if stimulus == "item_gone":
        return replace(c, item_raw=False, item_raw_mono_ms=NOW_MONO - 300)
    if stimulus == "item_learned":
        return replace(c, occupancy="unknown", item_raw=True, item_raw_mono_ms=NOW_MONO)
    if stimulus in ("pulse_ended", "pulse_overdue") and c.door == "open":
        return replace(c, energized_since_mono_ms=NOW_MONO - MAX_PULSE_MS)
    if stimulus == "window_over":
        return replace(c, opened_by="grt_g1", opened_purpose="pickup")
    if stimulus == "attention_cleared":
        return replace(c, attention="jammed")
    return c


def _summary(outputs: list[Output]) -> tuple[str, ...]:
    return tuple(f"{r.type}:{r.reason}" if r.reason else r.type for r in records(outputs))


@pytest.mark.parametrize(("phase", "stimulus"), POSSIBLE, ids=[f"{p}-{s}" for p, s in POSSIBLE])
def test_each_possible_pair(phase: str, stimulus: str) -> None:
    c = _in_phase(phase)
    assert phase_of(c) == phase
    c = _primed(c, stimulus)
    state = make_state(make_grant(), A1=c)
    now = FakeClock(wall_ms=T0, mono_ms=NOW_MONO).now()
    if stimulus == "pulse_started":
        auth = Authorization(by="grt_g1", purpose="pickup", token="grt_g1#1", grant_id="grt_g1")
        after, outputs = apply_pulse(state, "A1", now, auth)
        assert pulses(outputs) == [PulseLatch("A1", 500)]
    else:
        after, outputs = apply(state, "A1", stimulus, now)  # type: ignore[arg-type]
    expected_phase, expected_records = EXPECTED[(phase, stimulus)]
    assert (phase_of(after.compartments["A1"]), _summary(outputs)) == (
        expected_phase,
        expected_records,
    )
    if "alarm:output_forced_off" in expected_records:
        assert SwitchAllOff() in outputs
        assert after.compartments["A1"].energized_since_mono_ms is None
    for record in records(outputs):  # every record is a valid contract event
        assert record.type in {"door_opened", "door_closed", "occupancy_changed", "alarm",
                               "alarm_cleared", "latch_pulsed", "grant_consumed"}  # fmt: skip


@pytest.mark.parametrize(("phase", "stimulus"), IMPOSSIBLE, ids=[f"{p}-{s}" for p, s in IMPOSSIBLE])
def test_an_impossible_pair_changes_nothing_and_says_so(phase: str, stimulus: str) -> None:
    state = make_state(make_grant(), A1=_in_phase(phase))
    now = FakeClock(wall_ms=T0, mono_ms=NOW_MONO).now()
    if stimulus == "pulse_started":
        auth = Authorization(by="x", purpose=None, token="x")
        after, outputs = apply_pulse(state, "A1", now, auth)
    else:
        after, outputs = apply(state, "A1", stimulus, now)  # type: ignore[arg-type]
    assert after is state
    assert _summary(outputs) == ("alarm:impossible_transition",)


# --- lock words -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compartment", "word"),
    [
        (Compartment("A1", latch="locked", door="closed"), "locked"),
        (Compartment("A1", door="closed", energized_since_mono_ms=1), "unlocking"),
        (Compartment("A1", door="closed", opened_by="g"), "unlocked"),
        (Compartment("A1", door="open"), "open"),
        (Compartment("A1", door="closed", attention="jammed"), "jammed"),
        (Compartment("A1"), "unknown"),
        (Compartment("A1", latch="locked"), "locked"),  # a board without door sensor
    ],
)
def test_lock_words_are_derived_for_display(compartment: Compartment, word: str) -> None:
    assert lock_word(compartment) == word


# --- behaviour through decide ------------------------------------------------------------------


def test_a_bounce_shorter_than_the_debounce_records_nothing(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    outputs = rig.feed(DoorSensed("A1", is_open=True))
    rig.advance(DOOR_DEBOUNCE_MS - 10)
    outputs += rig.feed(DoorSensed("A1", is_open=False))
    rig.advance(DOOR_DEBOUNCE_MS * 4)
    outputs += rig.feed(Ticked())
    assert records(outputs) == []
    assert rig.state.compartments["A1"].door == "closed"
    # A reading that holds counts once, at the moment it began.
    assert len(records(rig.door("A1", is_open=True), "door_opened")) == 1
    assert rig.state.compartments["A1"].door_since_mono_ms == (
        fake_clock.now().mono_ms - DOOR_DEBOUNCE_MS
    )


def test_a_door_change_is_due_at_its_debounce_deadline(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(), fake_clock)
    assert next_deadline(rig.state) is None
    rig.feed(DoorSensed("A2", is_open=True))
    assert next_deadline(rig.state) == fake_clock.now().mono_ms + DOOR_DEBOUNCE_MS


def test_a_forced_door_takes_the_compartment_out_of_use_until_cleared(
    fake_clock: FakeClock,
) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    forced = rig.door("A1", is_open=True)
    assert records(forced, "alarm")[0].reason == "door_forced"
    rig.door("A1", is_open=False)
    assert rig.state.compartments["A1"].attention == "door_forced"
    refused = rig.code()
    assert (pulses(refused), records(refused)[0].reason) == ([], "out_of_service")
    # A resident's remote open for the grant is refused too; a maintainer's service open is not.
    rig.advance(1)
    remote = rig.feed(CommandArrived(command(1, grant_id="grt_g1")))
    assert [r.reason for r in outputs_of(remote, ReplyToCommand)] == ["out_of_service"]
    service = rig.feed(CommandArrived(command(2)))
    assert pulses(service) == [PulseLatch("A1", 500)]
    rig.advance(3_000)
    cleared = rig.feed(CommandArrived(command(3, name="clear_attention")))
    assert records(cleared) == [
        RecordEvent("alarm_cleared", compartment="A1", reason="door_forced")
    ]
    assert rig.state.compartments["A1"].attention is None
    assert pulses(rig.code()) == [PulseLatch("A1", 500)]


def outputs_of(outputs: list[Output], kind: type) -> list:  # type: ignore[type-arg]
    return [o for o in outputs if isinstance(o, kind)]


def test_a_door_left_open_raises_ajar_with_the_item_at_risk(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    rig.code()
    rig.door("A1", is_open=True)
    assert next_deadline(rig.state) is not None
    rig.advance(AJAR_AFTER_MS - DOOR_DEBOUNCE_MS - 1)
    assert records(rig.feed(Ticked()), "alarm") == []
    rig.advance(1)
    [ajar] = records(rig.feed(Ticked()), "alarm")
    assert (ajar.reason, ajar.data["item_at_risk"], ajar.grant_id) == (
        "door_ajar",
        True,
        "grt_g1",
    )
    rig.advance(60_000)
    assert records(rig.feed(Ticked())) == []  # raised once per opening
    rig.item("A1", is_present=False)
    closed = rig.door("A1", is_open=False)
    assert _summary(closed) == ("door_closed", "alarm_cleared:door_ajar")


def test_two_unanswered_pulses_mean_a_jammed_latch(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    rig.code()
    rig.advance(DOOR_OPEN_AFTER_PULSE_MS + 1)
    assert records(rig.feed(Ticked())) == []  # one: usually a resident who did not pull
    assert rig.state.compartments["A1"].unanswered_pulses == 1
    assert pulses(rig.code()) == [PulseLatch("A1", 500)]
    rig.advance(DOOR_OPEN_AFTER_PULSE_MS + 1)
    [jammed] = records(rig.feed(Ticked()))
    assert (jammed.type, jammed.reason, jammed.data) == ("alarm", "jammed", {"pulses": 2})
    assert lock_word(rig.state.compartments["A1"]) == "jammed"


def test_a_latch_whose_hook_never_moved_is_jammed_at_once(fake_clock: FakeClock) -> None:
    state = replace(make_state(make_grant()), capabilities=FEEDBACK)
    rig = Rig(state, fake_clock)
    rig.code()
    assert rig.state.compartments["A1"].latch == "locked"  # feedback decides, not assumption
    rig.advance(500)  # the pulse ends; the hook bit never said released
    assert _summary(rig.background) == ("alarm:jammed",)
    assert rig.state.compartments["A1"].attention == "jammed"


def test_an_output_on_past_its_bound_is_forced_off(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    rig.code()
    rig.pulse_ends.clear()  # the adapter's timer died: nothing will end the pulse
    assert next_deadline(rig.state) == fake_clock.now().mono_ms + MAX_PULSE_MS
    rig.advance(MAX_PULSE_MS)
    outputs = rig.feed(Ticked())
    assert outputs[0] == SwitchAllOff()
    [alarm] = records(outputs)
    assert (alarm.reason, alarm.data) == (
        "output_forced_off",
        {"on_ms": MAX_PULSE_MS, "bound_ms": MAX_PULSE_MS},
    )
    assert rig.feed(PulseEnded("A1")) == []  # a late report changes nothing


def test_an_output_read_on_without_a_pulse_is_forced_off(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(), fake_clock)
    reading = {n: CompartmentReading(door_open=False, is_energized=n == "A3") for n in ["A1", "A3"]}
    outputs = rig.feed(BusRead(reading))
    assert outputs[0] == SwitchAllOff()
    assert _summary(outputs) == ("alarm:output_forced_off",)
    assert rig.state.compartments["A3"].attention == "output_forced_off"


def test_an_unreachable_bus_makes_every_axis_unknown_and_refuses_codes(
    fake_clock: FakeClock,
) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    for _ in range(UNREACHABLE_AFTER_FAILURES - 1):
        assert rig.feed(BusReadFailed("timeout")) == []
    lost = rig.feed(BusReadFailed("timeout"))
    assert _summary(lost) == ("alarm:bus_unreachable",)
    assert {c.door for c in rig.state.compartments.values()} == {"unknown"}
    assert {c.occupancy for c in rig.state.compartments.values()} == {"unknown"}
    assert rig.feed(BusReadFailed("timeout")) == []  # raised once
    assert records(rig.code())[0].reason == "out_of_service"
    readings = {n: CompartmentReading(door_open=False, item_present=True) for n in ("A1", "A2")}
    back = rig.feed(BusRead(readings))
    assert _summary(back) == ("alarm_cleared:bus_unreachable",)  # relearned silently
    assert rig.state.compartments["A1"].door == "closed"
    assert pulses(rig.code()) == [PulseLatch("A1", 500)]


def test_an_unanswered_unlock_is_never_retried_the_reading_decides(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    rig.code()
    outputs = rig.feed(UnlockUnanswered("A1"))
    assert pulses(outputs) == []
    assert ReadBus() in outputs
    assert _summary(outputs) == ("unlock_unanswered",)
    # The board did fire: its reading shows the door open, which the pulse explains.
    rig.feed(BusRead({"A1": CompartmentReading(door_open=True)}))
    rig.advance(DOOR_DEBOUNCE_MS)
    assert _summary(rig.feed(Ticked())) == ("door_opened", "grant_consumed")


def test_the_energize_cap_refuses_a_latch_pulsed_too_often(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(), fake_clock)
    allowed = ENERGIZED_MS_PER_MINUTE // 500
    for seq in range(1, allowed + 1):
        assert pulses(rig.feed(CommandArrived(command(seq))))
        rig.advance(2_001)
    refused = rig.feed(CommandArrived(command(allowed + 1)))
    assert outputs_of(refused, ReplyToCommand)[0].reason == "energize_cap"
    rig.advance(60_000)
    assert pulses(rig.feed(CommandArrived(command(allowed + 2))))


def test_open_all_pulses_one_latch_at_a_time_and_skips_open_doors(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(), fake_clock)
    rig.door("A2", is_open=True)
    started = rig.feed(CommandArrived(command(1, name="open_all", compartment=None)))
    assert pulses(started) == [PulseLatch("A1", 500)]
    assert outputs_of(started, ReplyToCommand) == [ReplyToCommand("cmd-1", ok=True)]
    tokens = [p.authorized_by for p in outputs_of(started, PulseLatch)]
    order = []
    for _ in range(3):
        rig.advance(500)  # each pulse ends; only then does the next begin
        order += [p.compartment for p in outputs_of(rig.background, PulseLatch)]
        tokens += [p.authorized_by for p in outputs_of(rig.background, PulseLatch)]
        rig.background.clear()
    assert order == ["A3", "A4"]
    assert len(set(tokens)) == 3
    assert rig.state.open_all == ()


def test_an_empty_dropoff_and_an_item_left_behind_are_alarmed(fake_clock: FakeClock) -> None:
    empty = replace(make_state().compartments["A1"], occupancy="absent")
    rig = Rig(make_state(make_grant(purpose="dropoff"), A1=empty), fake_clock)
    rig.code()
    rig.door("A1", is_open=True)
    assert _summary(rig.door("A1", is_open=False)) == ("door_closed", "alarm:dropoff_empty")
    assert rig.state.compartments["A1"].epoch == 1

    rig = Rig(make_state(make_grant()), fake_clock)
    rig.code()
    rig.door("A1", is_open=True)
    assert _summary(rig.door("A1", is_open=False)) == ("door_closed", "alarm:item_left_behind")


def test_an_item_put_in_just_before_the_door_shuts_is_no_mismatch(fake_clock: FakeClock) -> None:
    """The beam settles after the door: the reading began while the door was open."""
    empty = replace(make_state().compartments["A1"], occupancy="absent")
    rig = Rig(make_state(make_grant(purpose="dropoff"), A1=empty), fake_clock)
    rig.code()
    rig.door("A1", is_open=True)
    outputs = rig.feed(OccupancySensed("A1", is_present=True))
    rig.advance(20)
    outputs += rig.door("A1", is_open=False)
    rig.advance(ITEM_DEBOUNCE_MS)
    outputs += rig.feed(Ticked())
    assert _summary(outputs) == ("door_closed", "occupancy_changed")


def test_a_board_without_door_sensor_spends_the_grant_at_its_pulse(fake_clock: FakeClock) -> None:
    blind = Capabilities(
        has_door_sensor=False, has_latch_feedback=False, has_item_sensor=False, can_time_pulse=True
    )
    a1 = Compartment("A1", latch="locked")
    rig = Rig(replace(make_state(make_grant(), A1=a1), capabilities=blind), fake_clock)
    assert pulses(rig.code()) == [PulseLatch("A1", 500)]
    rig.advance(3_000)
    assert records(rig.code())[0].reason == "used"


# --- time -------------------------------------------------------------------------------------


def test_the_floor_follows_signed_time_not_a_clock_that_runs_ahead() -> None:
    clock = FakeClock(wall_ms=T0 + 30 * 24 * 3_600_000, mono_ms=1_000)  # wall a month ahead
    rig = Rig(make_state(), clock)
    rig.feed(ConfigArrived(config(1, [], issued_at_ms=T0)))
    assert trusted_time(rig.state, clock.now())[1] == "synced"
    clock.advance(FLOOR_EVERY_MS)
    rig.feed(Ticked())
    floor = rig.state.time.floor_wall_ms
    assert floor == T0 + FLOOR_EVERY_MS  # signed time carried forward, not the wall clock
    clock.advance(FLOOR_EVERY_MS - 1)
    rig.feed(Ticked())
    assert rig.state.time.floor_wall_ms == floor  # raised every FLOOR_EVERY_MS, not every tick


def test_an_old_signed_message_does_not_take_time_back(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(), fake_clock)
    rig.feed(ConfigArrived(config(1, [], issued_at_ms=T0)))
    rig.advance(3_600_000)
    rig.feed(ConfigArrived(config(2, [], issued_at_ms=T0 + 5)))  # queued an hour ago
    assert trusted_time(rig.state, fake_clock.now())[0] >= T0 + 3_600_000
    assert rig.state.time.floor_wall_ms == T0


def test_codes_other_than_a_listed_one_never_pulse(fake_clock: FakeClock) -> None:
    rig = Rig(make_state(make_grant()), fake_clock)
    assert pulses(rig.code(OTHER_CODE)) == []
    assert pulses(rig.code(CODE)) == [PulseLatch("A1", 500)]


def test_a_state_without_inputs_has_no_deadline() -> None:
    assert next_deadline(ControllerState(identity=make_state().identity, compartments={})) is None
