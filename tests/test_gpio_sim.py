"""The GPIO lock bus on gpiozero's MockFactory, the locker simulator's physics, and the board
definitions' safety checks.

Timing is observed, never assumed: relay edges are timestamped by the mock pins themselves
(:class:`~locker_controller.sim.ObservablePin`), and waits poll with a deadline.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory

import locker_controller.lockbus as lockbus_module
from hardware.gpio import (
    BOARDS,
    BoardDefinitionError,
    Capabilities,
    GpioBoard,
    GpioCompartment,
    board_by_name,
    validate,
)
from locker_controller.core.model import (
    CompartmentReading,
    DoorSensed,
    Input,
    OccupancySensed,
    PulseEnded,
)
from locker_controller.gpio import GpioLockBus
from locker_controller.sim import LockerSimulator, ObservablePin, simulation_factory

DEADLINE_S = 3.0
CAPS = Capabilities(
    has_door_sensor=True, has_latch_feedback=False, has_item_sensor=True, can_time_pulse=False
)
GPIO4 = board_by_name("gpio-4")
MIXED = GpioBoard(
    name="mixed",
    capabilities=CAPS,
    compartments=(
        GpioCompartment("A1", "S", relay_pin=17, relay_active_high=True, door_pin=5, presence_pin=12),
        GpioCompartment("B1", "M", relay_pin=4, relay_active_high=False, door_pin=6),
    ),
)  # fmt: skip


class Inbox:
    """What the bus enqueued for the core, as the daemon's queue receives it."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Input] = queue.Queue()
        self.seen: list[Input] = []

    def put(self, event: Input) -> None:
        self.queue.put(event)

    def drain(self) -> list[Input]:
        drained: list[Input] = []
        while True:
            try:
                drained.append(self.queue.get_nowait())
            except queue.Empty:
                self.seen.extend(drained)
                return drained

    def wait_for(self, wanted: Input, timeout_s: float = DEADLINE_S) -> None:
        """Until ``wanted`` has been delivered (now, or already while waiting for another)."""
        if wanted in self.seen:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{wanted} not delivered within {timeout_s} s; got {self.seen}")
            try:
                event = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(event)
            if event == wanted:
                return


class Edges:
    """Timestamps of a relay pin's level changes, recorded by the pin itself."""

    def __init__(self, factory: MockFactory, pin: int) -> None:
        self.levels: list[tuple[float, bool]] = []
        observable: ObservablePin = factory.pin(pin)
        observable.observers.append(lambda level: self.levels.append((time.monotonic(), level)))


def wait_until(condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> float:
    """Poll ``condition`` until true; return when it became true (monotonic seconds)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.002)
    return time.monotonic()


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = simulation_factory()
    yield f
    f.close()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def bus(factory: MockFactory, inbox: Inbox) -> Iterator[GpioLockBus]:
    built = GpioLockBus(GPIO4, factory, on_input=inbox.put)
    yield built
    built.close()


# --- the bus ----------------------------------------------------------------------------------


def test_relays_are_off_from_the_first_instant(factory: MockFactory, inbox: Inbox) -> None:
    a1, b1 = Edges(factory, 17), Edges(factory, 4)
    bus = GpioLockBus(MIXED, factory, on_input=inbox.put)
    try:
        assert bus.energized() == []
        assert not factory.pin(17).state  # active-high: low is off
        assert bool(factory.pin(4).state) is True  # active-low: high is off
        assert [level for _, level in a1.levels if level] == []  # never driven high
        assert [level for _, level in b1.levels if not level] == []  # never driven low
    finally:
        bus.close()


def test_a_pulse_energizes_then_ends_by_itself(
    factory: MockFactory, bus: GpioLockBus, inbox: Inbox
) -> None:
    sim = LockerSimulator(GPIO4, factory)
    edges = Edges(factory, 27)
    bus.unlock("A2", 80)
    assert bus.energized() == ["A2"]
    assert sim.is_energized("A2")

    wait_until(lambda: bus.energized() == [])
    assert not sim.is_energized("A2")
    inbox.wait_for(PulseEnded("A2"))
    (on_at, on), (off_at, off) = edges.levels
    assert (on, off) == (True, False)
    assert 0.05 <= off_at - on_at < 1.0


def test_a_pulse_never_outlasts_the_bound(
    factory: MockFactory, bus: GpioLockBus, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound lives with the pulse timers every software-timed bus shares; 2 s: keep it quick.
    monkeypatch.setattr(lockbus_module, "MAX_PULSE_MS", 100)
    edges = Edges(factory, 17)
    bus.unlock("A1", 60_000)
    wait_until(lambda: bus.energized() == [])
    inbox.wait_for(PulseEnded("A1"))
    (on_at, _), (off_at, _) = edges.levels
    assert off_at - on_at < 1.0


def test_all_off_cancels_a_running_pulse(
    factory: MockFactory, bus: GpioLockBus, inbox: Inbox
) -> None:
    a1 = Edges(factory, 17)
    bus.unlock("A1", 300)
    bus.all_off()
    assert bus.energized() == []
    assert not factory.pin(17).state
    # A2's pulse outlasts A1's would-be timer: once A2 ended, A1's timer would have fired.
    bus.unlock("A2", 400)
    inbox.wait_for(PulseEnded("A2"))
    assert PulseEnded("A1") not in inbox.seen + inbox.drain()
    assert [level for _, level in a1.levels] == [True, False]


def test_close_switches_off_and_releases_every_pin(factory: MockFactory, inbox: Inbox) -> None:
    first = GpioLockBus(GPIO4, factory, on_input=inbox.put)
    first.unlock("A3", 2_000)
    with pytest.raises(GPIOPinInUse):
        GpioLockBus(GPIO4, factory, on_input=inbox.put)
    first.close()
    assert not factory.pin(22).state

    second = GpioLockBus(GPIO4, factory, on_input=inbox.put)
    try:
        assert second.energized() == []
    finally:
        second.close()


def test_a_failed_construction_releases_what_it_claimed(factory: MockFactory, inbox: Inbox) -> None:
    holder = GpioLockBus(MIXED, factory, on_input=inbox.put)  # holds GPIO 17 among others
    clashing = GpioBoard(
        name="clash",
        capabilities=CAPS,
        compartments=(
            GpioCompartment("C1", "S", relay_pin=24, relay_active_high=True, door_pin=25),
            GpioCompartment("C2", "S", relay_pin=17, relay_active_high=True, door_pin=26),
        ),
    )
    with pytest.raises(GPIOPinInUse):
        GpioLockBus(clashing, factory, on_input=inbox.put)
    holder.close()
    retried = GpioLockBus(clashing, factory, on_input=inbox.put)  # GPIO 24 was released
    retried.close()


# --- the simulator ----------------------------------------------------------------------------


@pytest.fixture
def station(factory: MockFactory, inbox: Inbox) -> Iterator[tuple[LockerSimulator, GpioLockBus]]:
    sim = LockerSimulator(GPIO4, factory, items={"A2"})
    bus = GpioLockBus(GPIO4, factory, on_input=inbox.put)
    sim.attach()
    inbox.drain()
    yield sim, bus
    # gpiozero's Button waits out its 1 s hold time on close while pressed (a closed door):
    # release the reed switches first so teardown does not wait.
    for c in GPIO4.compartments:
        factory.pin(c.door_pin).drive_high()
    bus.close()


def test_the_bus_reads_the_simulated_sensors(
    station: tuple[LockerSimulator, GpioLockBus],
) -> None:
    _, bus = station
    reading = bus.read_all()
    assert reading.compartments == {
        name: CompartmentReading(door_open=False, item_present=name == "A2", is_energized=False)
        for name in ("A1", "A2", "A3", "A4")
    }
    assert bus.capabilities.has_door_sensor and not bus.capabilities.has_latch_feedback
    bus.unlock("A3", 1_000)
    assert bus.read_all().compartments["A3"].is_energized is True


def test_a_door_opens_only_after_its_latch_was_pulsed(
    station: tuple[LockerSimulator, GpioLockBus], inbox: Inbox
) -> None:
    sim, bus = station
    assert sim.open_door("A2") is False
    assert sim.take_item("A2") is False  # not through a closed door
    assert sim.pulses("A2") == 0
    assert inbox.drain() == []

    bus.unlock("A2", 30)
    inbox.wait_for(PulseEnded("A2"))
    assert sim.pulses("A2") == 1
    assert sim.open_door("A1") is False  # only the pulsed latch released
    assert sim.open_door("A2") is True
    inbox.wait_for(DoorSensed("A2", is_open=True))
    assert sim.take_item("A2") is True
    inbox.wait_for(OccupancySensed("A2", is_present=False))
    sim.close_door("A2")
    inbox.wait_for(DoorSensed("A2", is_open=False))

    assert sim.open_door("A2") is False  # the latch caught the door again
    assert sim.put_item("A2") is False
    assert bus.read_all().compartments["A2"].door_open is False


def test_pulses_are_counted_from_the_relay_edges(
    station: tuple[LockerSimulator, GpioLockBus], inbox: Inbox
) -> None:
    sim, bus = station
    for n in (1, 2):
        bus.unlock("A4", 20)
        inbox.wait_for(PulseEnded("A4"))
        assert sim.pulses("A4") == n
    assert [sim.pulses(name) for name in ("A1", "A2", "A3")] == [0, 0, 0]


# --- board definitions ------------------------------------------------------------------------


def board(*compartments: GpioCompartment) -> GpioBoard:
    return GpioBoard(name="test", compartments=compartments, capabilities=CAPS)


OK = GpioCompartment("A1", "S", relay_pin=17, relay_active_high=True, door_pin=5, presence_pin=12)


def test_the_shipped_boards_are_valid() -> None:
    for definition in BOARDS.values():
        validate(definition)
    validate(
        board(OK, GpioCompartment("B1", "M", relay_pin=4, relay_active_high=False, door_pin=6))
    )


@pytest.mark.parametrize("pin", range(2, 9))
def test_an_active_high_relay_on_a_boot_pulled_up_pin_is_refused(pin: int) -> None:
    relay = GpioCompartment("B1", "M", relay_pin=pin, relay_active_high=True, door_pin=20)
    with pytest.raises(BoardDefinitionError, match=f"B1: relay on GPIO{pin} is active-high"):
        validate(board(relay))


@pytest.mark.parametrize("pin", [9, 17, 27])
def test_an_active_low_relay_on_a_boot_pulled_down_pin_is_refused(pin: int) -> None:
    relay = GpioCompartment("B1", "M", relay_pin=pin, relay_active_high=False, door_pin=5)
    with pytest.raises(BoardDefinitionError, match=f"B1: relay on GPIO{pin} is active-low"):
        validate(board(relay))


@pytest.mark.parametrize(
    "clash",
    [
        replace(OK, name="A2", relay_pin=27, door_pin=5),  # door pin of A1
        replace(OK, name="A2", relay_pin=27, door_pin=6, presence_pin=17),  # relay pin of A1
        replace(OK, name="A2", relay_pin=12, door_pin=6, presence_pin=None),  # presence of A1
    ],
    ids=["door", "presence_on_relay", "relay_on_presence"],
)
def test_a_reused_pin_is_refused(clash: GpioCompartment) -> None:
    with pytest.raises(BoardDefinitionError, match="already used by A1"):
        validate(board(OK, clash))


def test_a_pin_reused_within_one_compartment_is_refused() -> None:
    with pytest.raises(BoardDefinitionError, match="already used by A1 relay"):
        validate(board(replace(OK, door_pin=17)))


@pytest.mark.parametrize("pin", [0, 1, 28, -1])
@pytest.mark.parametrize("role", ["relay_pin", "door_pin", "presence_pin"])
def test_an_invalid_pin_is_refused(pin: int, role: str) -> None:
    bad = replace(OK, **{role: pin})
    with pytest.raises(BoardDefinitionError, match=f"GPIO{pin} is not usable"):
        validate(board(bad))


def test_an_unknown_board_names_the_known_ones() -> None:
    with pytest.raises(BoardDefinitionError, match="unknown board 'kerong-99'") as caught:
        board_by_name("kerong-99")
    for known in BOARDS:
        assert known in str(caught.value)
