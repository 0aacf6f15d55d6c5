"""Hypothesis stateful tests: the controller core against a physical model of a locker bank.

The machine drives ``decide`` the way the daemon does — inputs in order, a tick at every
:func:`next_deadline`, a lock bus that ends each pulse on time unless its timer died — while a
model of the hardware (latches, doors, items, relay outputs) plays residents, maintainers and
intruders. After every step it checks the issue's invariants:

- no latch output is ever energized longer than ``MAX_PULSE_MS``;
- no two pulses share one authorization, and every pulse spends one the test really gave (a code
  entry of a listed grant, at most twice per grant, or a command sent once);
- every door or item change that held past its debounce yields exactly one event, and a bounce
  yields none;
- no declared-impossible (phase, stimulus) pair is ever reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from test_controller_core import T0, command, make_grant, make_state

from linli.clock import FakeClock
from locker_controller.core.decide import decide, next_deadline
from locker_controller.core.model import (
    DOOR_DEBOUNCE_MS,
    ITEM_DEBOUNCE_MS,
    MAX_PULSE_MS,
    MAX_PULSES_PER_GRANT,
    CodeEntered,
    CommandArrived,
    Input,
    OccupancySensed,
    Output,
    PulseEnded,
    PulseLatch,
    RecordEvent,
    SwitchAllOff,
    Ticked,
)
from locker_controller.core.model import DoorSensed as DoorSensedInput

NAMES = ("A1", "A2", "A3")
CODES = {"A1": "11111111", "A2": "22222222", "A3": "33333333"}
WRONG_CODE = "99999999"


@dataclass
class Output_:
    """One relay output of the model: on since when, and until when its timer ends it."""

    on_since: int | None = None
    ends_at: int | None = None


@dataclass
class Physical:
    """The hardware: what a resident can do depends on it, not on what the core believes."""

    door_open: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(NAMES, False))
    item: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(NAMES, True))
    outputs: dict[str, Output_] = field(default_factory=lambda: {n: Output_() for n in NAMES})
    jammed: set[str] = field(default_factory=set)


class LockerBank(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        grants = [make_grant(f"grt_{n}", CODES[n], compartment=n, purpose="pickup") for n in NAMES]
        self.clock = FakeClock(wall_ms=T0, mono_ms=1_000)
        full = make_state(*grants)
        self.state = replace(full, compartments={n: full.compartments[n] for n in NAMES})
        self.hw = Physical()
        self.seq = 0
        self.sent_commands: set[str] = set()
        self.code_entries: dict[str, int] = dict.fromkeys(NAMES, 0)
        self.tokens: list[str] = []
        self.longest_on_ms = 0
        self.door_events: dict[str, int] = dict.fromkeys(NAMES, 0)
        self.door_changes: dict[str, int] = dict.fromkeys(NAMES, 0)
        self.item_events: dict[str, int] = dict.fromkeys(NAMES, 0)
        self.item_changes: dict[str, int] = dict.fromkeys(NAMES, 0)
        self.impossible: list[RecordEvent] = []

    # --- the daemon's loop ----------------------------------------------------------------

    def feed(self, event: Input) -> None:
        self.state, outputs = decide(self.state, event, self.clock.now())
        self.carry_out(outputs)

    def carry_out(self, outputs: list[Output]) -> None:
        now = self.clock.now().mono_ms
        for output in outputs:
            if isinstance(output, PulseLatch):
                out = self.hw.outputs[output.compartment]
                assert out.on_since is None, "a latch pulsed while already energized"
                out.on_since, out.ends_at = now, now + output.pulse_ms
                self.tokens.append(output.authorized_by)
            elif isinstance(output, SwitchAllOff):
                for name in NAMES:
                    self.switch_off(name)
            elif isinstance(output, RecordEvent):
                if output.reason == "impossible_transition":
                    self.impossible.append(output)
                if output.type in ("door_opened", "door_closed") and output.compartment:
                    self.door_events[output.compartment] += 1
                if output.type == "occupancy_changed" and output.compartment:
                    self.item_events[output.compartment] += 1

    def switch_off(self, name: str) -> None:
        out = self.hw.outputs[name]
        if out.on_since is not None:
            self.longest_on_ms = max(self.longest_on_ms, self.clock.now().mono_ms - out.on_since)
        out.on_since = out.ends_at = None

    def run_until(self, target: int) -> None:
        """Let time pass: pulses end on their timers, the core wakes at its deadlines."""
        while True:
            now = self.clock.now().mono_ms
            ends = [(o.ends_at, n) for n, o in self.hw.outputs.items() if o.ends_at is not None]
            deadline = next_deadline(self.state)
            candidates = [t for t in (min(ends, default=(None, ""))[0], deadline) if t is not None]
            step = min([t for t in candidates if t <= target], default=None)
            if step is None:
                self.clock.advance(target - now)
                return
            self.clock.advance(max(0, step - now))
            due = [n for t, n in ends if t is not None and t <= self.clock.now().mono_ms]
            for name in due:
                self.switch_off(name)
                self.feed(PulseEnded(name))
            if deadline is not None and deadline <= self.clock.now().mono_ms:
                self.feed(Ticked())

    def settle(self, ms: int) -> None:
        self.run_until(self.clock.now().mono_ms + ms)

    # --- what people and hardware do --------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), pull=st.booleans())
    def enter_code(self, name: str, pull: bool) -> None:
        self.code_entries[name] += 1
        self.feed(CodeEntered("keypad", CODES[name]))
        if pull:
            self.pull(name)
        self.settle(DOOR_DEBOUNCE_MS)

    @rule()
    def enter_wrong_code(self) -> None:
        self.feed(CodeEntered("keypad", WRONG_CODE))

    @rule(name=st.sampled_from(NAMES), pull=st.booleans())
    def service_open(self, name: str, pull: bool) -> None:
        self.seq += 1
        self.sent_commands.add(f"cmd-{self.seq}")
        self.feed(CommandArrived(self.signed(self.seq, compartment=name)))
        if pull:
            self.pull(name)
        self.settle(DOOR_DEBOUNCE_MS)

    @rule()
    def open_all(self) -> None:
        self.seq += 1
        self.sent_commands.add(f"cmd-{self.seq}")
        self.feed(CommandArrived(self.signed(self.seq, name="open_all", compartment=None)))

    @rule(back=st.integers(0, 10))
    def replay_a_command(self, back: int) -> None:
        if self.seq:
            again = max(1, self.seq - back)
            self.feed(CommandArrived(self.signed(again, compartment="A1")))

    def signed(self, seq: int, **fields: object) -> bytes:
        """A command signed by the cloud now (its id is ``cmd-<seq>``)."""
        issued = T0 + self.clock.now().mono_ms
        return command(seq, issued_at_ms=issued, expires_at_ms=issued + 60_000, **fields)  # type: ignore[arg-type]

    def pull(self, name: str) -> None:
        """A resident pulls the door: it opens only while its latch is released."""
        released = self.hw.outputs[name].on_since is not None and name not in self.hw.jammed
        if released and not self.hw.door_open[name]:
            self.set_door(name, True)

    def set_door(self, name: str, is_open: bool) -> None:
        self.hw.door_open[name] = is_open
        self.door_changes[name] += 1
        self.feed(DoorSensedInput(name, is_open=is_open))

    @rule(name=st.sampled_from(NAMES))
    def close_door(self, name: str) -> None:
        if self.hw.door_open[name]:
            self.set_door(name, False)
            self.settle(DOOR_DEBOUNCE_MS)

    @rule(name=st.sampled_from(NAMES))
    def pry_door_open(self, name: str) -> None:
        if not self.hw.door_open[name]:
            self.set_door(name, True)
            self.settle(DOOR_DEBOUNCE_MS)

    @rule(name=st.sampled_from(NAMES), bounce_ms=st.integers(1, DOOR_DEBOUNCE_MS - 1))
    def door_bounces(self, name: str, bounce_ms: int) -> None:
        """A spike on the reed switch's wire (solenoid inrush): shorter than the debounce."""
        level = self.hw.door_open[name]
        self.feed(DoorSensedInput(name, is_open=not level))
        self.settle(bounce_ms)
        self.feed(DoorSensedInput(name, is_open=level))

    @rule(name=st.sampled_from(NAMES), flicker_ms=st.integers(1, ITEM_DEBOUNCE_MS - 1))
    def hand_crosses_the_beam(self, name: str, flicker_ms: int) -> None:
        """An item sensor flickers while a hand passes: shorter than its debounce."""
        level = self.hw.item[name]
        self.feed(OccupancySensed(name, is_present=not level))
        self.settle(flicker_ms)
        self.feed(OccupancySensed(name, is_present=level))

    @rule(name=st.sampled_from(NAMES))
    def take_or_put_item(self, name: str) -> None:
        if self.hw.door_open[name]:
            self.hw.item[name] = not self.hw.item[name]
            self.item_changes[name] += 1
            self.feed(OccupancySensed(name, is_present=self.hw.item[name]))
            self.settle(ITEM_DEBOUNCE_MS)

    @rule(name=st.sampled_from(NAMES))
    def jam(self, name: str) -> None:
        self.hw.jammed.add(name)

    @rule(name=st.sampled_from(NAMES))
    def timer_dies(self, name: str) -> None:
        """The adapter's timer for a running pulse never fires (a hung thread)."""
        self.hw.outputs[name].ends_at = None

    @rule(ms=st.integers(1, 200_000))
    def time_passes(self, ms: int) -> None:
        self.settle(ms)

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def no_output_outlasts_the_bound(self) -> None:
        now = self.clock.now().mono_ms
        running = [now - o.on_since for o in self.hw.outputs.values() if o.on_since is not None]
        assert max([self.longest_on_ms, *running]) <= MAX_PULSE_MS

    @invariant()
    def every_pulse_spends_its_own_authorization(self) -> None:
        assert len(self.tokens) == len(set(self.tokens))
        for token in self.tokens:
            if token.startswith("cmd:"):
                assert token.split(":")[1] in self.sent_commands
            else:
                grant_id, n = token.split("#")
                name = grant_id.removeprefix("grt_")
                assert 1 <= int(n) <= min(MAX_PULSES_PER_GRANT, self.code_entries[name])

    @invariant()
    def every_held_change_is_one_event(self) -> None:
        assert self.door_events == self.door_changes
        assert self.item_events == self.item_changes

    @invariant()
    def no_impossible_pair_is_reached(self) -> None:
        assert self.impossible == []


LockerBank.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLockerBank = LockerBank.TestCase
