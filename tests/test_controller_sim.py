"""The real controller daemon on the simulated bank: alarms raised by what happens physically.

Every test drives the real :class:`~locker_controller.daemon.LockerDaemon` through a real lock
bus, once per bus: the :class:`~locker_controller.gpio.GpioLockBus` on gpiozero's ``MockFactory``,
and the Kerong and Modbus adapters (:mod:`firmware_bridge.lockbus`) on a pseudo-terminal with the
board simulated byte for byte. The same :class:`~locker_controller.sim.BankPhysics` is the world
around them: residents pull doors, latches jam, doors are pried open, the sensor lines or the bus
fail. Grants arrive as signed configuration through the
daemon's inbox (the path MQTT uses); codes are entered as at the keypad.

Time: the daemon runs on a :class:`~linli.clock.FakeClock`, so debounce, the pulse window and the
ajar delay pass when a test advances it; only latch pulses (100 ms, timed by the adapter or the board) and the
serial adapter's poll take real time. A test waits for what it expects by polling the outbox (the real SQLite file) or the
daemon's state with a deadline, and advances the clock only once the daemon has seen the reading
the advance must settle. No broker is needed: the daemon records every event in its outbox first
and publishes only when connected, so it runs against a port where nothing listens.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import hardware.gpio as hardware_gpio
import locker_controller.cli as locker_cli
from firmware_bridge.codecs import kerong, modbus
from firmware_bridge.sim.boards import BoardSim, KerongBoardSim
from hardware.gpio import GPIO_CAPABILITIES, GpioBoard, GpioCompartment, board_by_name
from linli.broker import BrokerAddress
from linli.clock import FakeClock
from linli.codes import hash_code
from linli.contract import (
    CompartmentPolicy,
    ConfigBody,
    Event,
    Grant,
    decode,
    public_key_bytes,
    sign_body,
)
from linli.contract.models import GrantPurpose
from linli.identity import DeviceIdentity
from locker_controller.core.model import (
    AJAR_AFTER_MS,
    DOOR_DEBOUNCE_MS,
    DOOR_OPEN_AFTER_PULSE_MS,
    ITEM_DEBOUNCE_MS,
    MAX_PULSE_MS,
    UNREACHABLE_AFTER_FAILURES,
    ConfigArrived,
    ControllerState,
)
from locker_controller.daemon import BUS_POLL_MS, LockerDaemon
from locker_controller.gpio import GpioLockBus
from locker_controller.lockbus import LockBusError
from locker_controller.sim import LockerSimulator, ObservablePin, simulation_factory
from station.broker import free_port
from station.locker import simulated_wiring

DEADLINE_S = 5.0
DEVICE_ID = "locker-sim1"
KEY_ID = "cloud-test"
CLOUD_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CODE_KEY = b"device-code-key-for-the-tests-32"
T0 = 1_800_000_000_000
"""The fake clock's wall time at the start of every test (tests/conftest.py)."""
HOUR_MS = 60 * 60 * 1000
BOARD = board_by_name("gpio-4")
NAMES = BOARD.compartment_names()
PULSE_MS = 100
"""Configured latch pulse: the adapter's real timer ends it, so keep it short."""
CODE_A1 = "11112222"
CODE_A2 = "33334444"


# --- builders ---------------------------------------------------------------------------------


def grant(
    grant_id: str, code: str, compartment: str, purpose: GrantPurpose, epoch: int = 0
) -> Grant:
    return Grant(
        grant_id=grant_id,
        compartment=compartment,
        purpose=purpose,
        valid_from_ms=T0 - HOUR_MS,
        valid_until_ms=T0 + 24 * HOUR_MS,
        code_hash=hash_code(CODE_KEY, code),
        epoch=epoch,
    )


def signed_config(version: int, *grants: Grant) -> bytes:
    body = ConfigBody(
        device_id=DEVICE_ID,
        version=version,
        issued_at_ms=T0,
        compartments={n: CompartmentPolicy(size="M", pulse_ms=PULSE_MS) for n in NAMES},
        grants=list(grants),
    )
    return sign_body(CLOUD_KEY, KEY_ID, body)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.005)


# --- the rig ----------------------------------------------------------------------------------


class Bank:
    """A running controller on a simulated bank, its fake clock, and its outbox file."""

    def __init__(
        self, data_dir: Path, clock: FakeClock, items: set[str], board_name: str = "gpio-4"
    ) -> None:
        self.clock = clock
        self.board_name = board_name
        self.wiring = simulated_wiring(board_name, data_dir, items)
        self.sim = self.wiring.sim
        identity = DeviceIdentity(DEVICE_ID, {KEY_ID: public_key_bytes(CLOUD_KEY)}, CODE_KEY)
        self._outbox_path = data_dir / "outbox.sqlite3"
        self.daemon = LockerDaemon(
            identity,
            self.wiring.names,
            self.wiring.make_bus,
            data_dir,
            BrokerAddress("127.0.0.1", free_port()),  # nothing listens: no broker needed
            clock=clock,
        )
        self.wiring.attach()
        self.daemon.start()
        self.wait_state(
            lambda s: all(c.door == "closed" for c in s.compartments.values()),
            "the first reading learned",
        )

    def stop(self) -> None:
        self.daemon.stop()
        self.wiring.stop()

    # --- what the daemon did -----------------------------------------------------------------

    @property
    def state(self) -> ControllerState:
        return self.daemon.state

    def events(self) -> list[Event]:
        """Every event of this boot in the outbox (read from the SQLite file itself)."""
        db = sqlite3.connect(f"file:{self._outbox_path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT payload FROM events ORDER BY boot_id, seq").fetchall()
        finally:
            db.close()
        return [decode(Event, bytes(payload), DEVICE_ID) for (payload,) in rows]

    def matching(
        self, type_: str, *, reason: str | None = None, compartment: str | None = None
    ) -> list[Event]:
        return [
            e
            for e in self.events()
            if e.type == type_
            and (reason is None or e.reason == reason)
            and (compartment is None or e.compartment == compartment)
        ]

    def wait_event(
        self, type_: str, *, reason: str | None = None, compartment: str | None = None
    ) -> Event:
        """The first such event, once it is in the outbox."""
        found: list[Event] = []

        def recorded() -> bool:
            found[:] = self.matching(type_, reason=reason, compartment=compartment)
            return bool(found)

        wait_until(recorded, f"event {type_}/{reason}/{compartment} in the outbox")
        return found[0]

    def wait_state(self, condition: Callable[[ControllerState], bool], what: str) -> None:
        wait_until(lambda: condition(self.daemon.state), what)

    # --- what happens around it ----------------------------------------------------------------

    def configure(self, *grants: Grant, version: int = 1) -> None:
        """Deliver signed configuration through the inbox, as MQTT does."""
        self.daemon.submit(ConfigArrived(signed_config(version, *grants)))
        self.wait_state(lambda s: s.cfg_version == version, f"config version {version} applied")

    def enter(self, code: str) -> str:
        """Enter a code at the keypad; return the message key the resident is shown."""
        shown = self.daemon.submit_code(code, channel="keypad")
        assert shown is not None, "the keypad got no answer"
        return shown.key

    def wait_pulse_over(self, name: str) -> None:
        """Until the adapter's timer ended the pulse and the core knows it."""
        self.wait_state(
            lambda s: s.compartments[name].energized_since_mono_ms is None,
            f"pulse of {name} ended",
        )
        assert not self.sim.is_energized(name)

    def settle_door(self, name: str, *, is_open: bool) -> None:
        """Once the core has seen the door's new level, let it hold past the debounce."""
        self.wait_state(
            lambda s: s.compartments[name].door_raw is is_open, f"door {name} seen {is_open}"
        )
        self.clock.advance(DOOR_DEBOUNCE_MS)
        door = "open" if is_open else "closed"
        self.wait_state(lambda s: s.compartments[name].door == door, f"door {name} {door}")

    def settle_item(self, name: str, *, is_present: bool) -> None:
        self.wait_state(
            lambda s: s.compartments[name].item_raw is is_present, f"item {name} seen {is_present}"
        )
        self.clock.advance(ITEM_DEBOUNCE_MS)
        occupancy = "present" if is_present else "absent"
        self.wait_state(
            lambda s: s.compartments[name].occupancy == occupancy, f"{name} {occupancy}"
        )

    def open_by_code(self, name: str, code: str) -> None:
        """A resident enters the code, the latch releases, the resident pulls the door open."""
        assert self.enter(code) == "code.accepted"
        self.wait_pulse_over(name)
        assert self.sim.open_door(name) is True
        self.settle_door(name, is_open=True)
        self.wait_event("door_opened", compartment=name)

    def poll(self) -> None:
        """Let one bus poll come due (the daemon polls every BUS_POLL_MS of its clock)."""
        self.clock.advance(BUS_POLL_MS)


BUSES = ["gpio-4", "kerong-4", "modbus-4"]
"""The same tests on every lock bus: GPIO on gpiozero's MockFactory, and the serial adapters on a
pseudo-terminal with a Kerong or a Modbus board simulated byte for byte (station/locker.py)."""
SERIAL_BUSES = ["kerong-4", "modbus-4"]
REPORTS_OUTPUTS = {"gpio-4": True, "kerong-4": False, "modbus-4": True}
"""Whether the bus can read its latch outputs back (a Kerong board cannot)."""


@pytest.fixture(params=BUSES)
def bank(request: pytest.FixtureRequest, tmp_path: Path, fake_clock: FakeClock) -> Iterator[Bank]:
    """A running controller; A2 holds an item, A1, A3 and A4 are empty."""
    running = Bank(tmp_path / "locker", fake_clock, items={"A2"}, board_name=request.param)
    yield running
    running.stop()


# --- alarms -----------------------------------------------------------------------------------


def test_a_door_left_open_with_the_item_inside_raises_door_ajar(bank: Bank) -> None:
    bank.configure(grant("grt_pick2", CODE_A2, "A2", "pickup"))
    bank.open_by_code("A2", CODE_A2)

    bank.clock.advance(AJAR_AFTER_MS)
    alarm = bank.wait_event("alarm", reason="door_ajar", compartment="A2")
    assert alarm.data["item_at_risk"] is True
    assert alarm.grant_id == "grt_pick2"
    assert bank.state.compartments["A2"].attention is None  # an ajar door needs no maintainer

    bank.sim.close_door("A2")
    bank.settle_door("A2", is_open=False)
    bank.wait_event("alarm_cleared", reason="door_ajar", compartment="A2")
    assert bank.sim.pulses("A2") == 1


def test_a_pried_door_raises_door_forced_and_takes_the_compartment_out_of_service(
    bank: Bank,
) -> None:
    bank.configure(grant("grt_pick2", CODE_A2, "A2", "pickup"))
    assert bank.sim.force_door("A2") is True
    bank.settle_door("A2", is_open=True)

    opened = bank.wait_event("door_opened", compartment="A2")
    assert opened.reason == "not_unlocked"
    alarm = bank.wait_event("alarm", reason="door_forced", compartment="A2")
    assert alarm.data["occupancy"] == "present"
    assert bank.state.compartments["A2"].attention == "door_forced"
    assert bank.sim.take_item("A2") is True  # the thief's hand gets in

    assert bank.enter(CODE_A2) == "code.refused.out_of_service"
    refused = bank.wait_event("code_refused", compartment="A2")
    assert refused.reason == "out_of_service"
    assert bank.sim.pulses("A2") == 0


def test_a_jammed_latch_is_alarmed_after_the_second_unanswered_pulse_and_never_pulsed_again(
    bank: Bank,
) -> None:
    bank.configure(grant("grt_pick2", CODE_A2, "A2", "pickup"))
    bank.sim.jam("A2")

    for attempt in (1, 2):
        assert bank.enter(CODE_A2) == "code.accepted"
        bank.wait_pulse_over("A2")
        assert bank.sim.open_door("A2") is False  # the resident pulls; the door holds
        bank.clock.advance(DOOR_OPEN_AFTER_PULSE_MS + 1)
        bank.wait_state(
            lambda s, n=attempt: s.compartments["A2"].unanswered_pulses == n,
            f"pulse {attempt} unanswered",
        )
        if attempt == 1:  # one unanswered pulse is usually a resident too slow to pull
            assert bank.matching("alarm", reason="jammed") == []
            assert bank.state.compartments["A2"].attention is None

    alarm = bank.wait_event("alarm", reason="jammed", compartment="A2")
    assert alarm.data["pulses"] == 2
    assert bank.state.compartments["A2"].attention == "jammed"
    assert bank.enter(CODE_A2) == "code.refused.out_of_service"
    assert bank.sim.pulses("A2") == 2  # no third pulse
    assert len(bank.matching("alarm", reason="jammed")) == 1


def test_lost_sensor_lines_make_every_axis_unknown_then_known_again(bank: Bank) -> None:
    bank.configure(grant("grt_pick2", CODE_A2, "A2", "pickup"))
    bank.sim.disconnect()
    for failures in range(1, UNREACHABLE_AFTER_FAILURES + 1):
        if failures == UNREACHABLE_AFTER_FAILURES:
            assert bank.matching("alarm", reason="bus_unreachable") == []
        bank.poll()
        bank.wait_state(lambda s, n=failures: s.bus_failures == n, f"{failures} failed reads")

    alarm = bank.wait_event("alarm", reason="bus_unreachable")
    assert alarm.data["failures"] == UNREACHABLE_AFTER_FAILURES
    for c in bank.state.compartments.values():
        assert (c.door, c.occupancy) == ("unknown", "unknown"), c.name
    assert bank.enter(CODE_A2) == "code.refused.out_of_service"  # nothing to judge a pulse by
    assert bank.sim.pulses("A2") == 0

    bank.sim.reconnect()
    bank.poll()
    bank.wait_event("alarm_cleared", reason="bus_unreachable")
    bank.wait_state(
        lambda s: (
            {n: (c.door, c.occupancy) for n, c in s.compartments.items()}
            == {n: ("closed", "present" if n == "A2" else "absent") for n in NAMES}
        ),
        "every axis known again",
    )
    assert bank.state.bus_failures == 0


def test_closing_a_pickup_without_taking_the_item_raises_item_left_behind(bank: Bank) -> None:
    bank.configure(grant("grt_pick2", CODE_A2, "A2", "pickup"))
    bank.open_by_code("A2", CODE_A2)
    bank.sim.close_door("A2")
    bank.settle_door("A2", is_open=False)

    alarm = bank.wait_event("alarm", reason="item_left_behind", compartment="A2")
    assert alarm.grant_id == "grt_pick2"
    assert bank.matching("alarm", reason="dropoff_empty") == []


def test_a_pickup_that_takes_the_item_raises_no_alarm(bank: Bank) -> None:
    """The counterpart of the test above: the same path with the item taken stays quiet."""
    bank.configure(grant("grt_pick2", CODE_A2, "A2", "pickup"))
    bank.open_by_code("A2", CODE_A2)
    assert bank.sim.take_item("A2") is True
    bank.settle_item("A2", is_present=False)
    bank.sim.close_door("A2")
    bank.settle_door("A2", is_open=False)

    bank.wait_event("door_closed", compartment="A2")
    assert bank.matching("alarm") == []


def test_closing_a_dropoff_without_an_item_raises_dropoff_empty(bank: Bank) -> None:
    bank.configure(grant("grt_drop1", CODE_A1, "A1", "dropoff"))
    bank.open_by_code("A1", CODE_A1)
    bank.sim.close_door("A1")
    bank.settle_door("A1", is_open=False)

    alarm = bank.wait_event("alarm", reason="dropoff_empty", compartment="A1")
    assert alarm.grant_id == "grt_drop1"
    assert bank.state.compartments["A1"].occupancy == "absent"


@pytest.mark.parametrize("bank", [b for b in BUSES if REPORTS_OUTPUTS[b]], indirect=True)
def test_an_output_driven_on_behind_the_controllers_back_is_forced_off(bank: Bank) -> None:
    """Only on buses that read their outputs back (a Kerong board cannot)."""
    bank.sim.stick_output_on("A3")
    assert bank.sim.is_energized("A3")  # the output really is at its active level now

    bank.poll()
    alarm = bank.wait_event("alarm", reason="output_forced_off", compartment="A3")
    assert alarm.data["bound_ms"] == MAX_PULSE_MS
    wait_until(lambda: not any(bank.sim.is_energized(n) for n in NAMES), "every output off")
    assert bank.state.compartments["A3"].attention == "output_forced_off"


@pytest.mark.parametrize("bank", SERIAL_BUSES, indirect=True)
def test_an_unlock_whose_reply_is_lost_pulses_once_and_the_door_still_counts(bank: Bank) -> None:
    """The board fires but its acknowledgement never arrives: the controller records it, reads
    the board instead of sending the unlock again, and the resident's opening is still the
    grant's."""
    assert isinstance(bank.sim, BoardSim)
    unlock = kerong.CMD_UNLOCK if isinstance(bank.sim, KerongBoardSim) else modbus.FC_WRITE_COIL
    bank.configure(grant("grt_pick2", CODE_A2, "A2", "pickup"))
    bank.sim.lose_replies(1, to=unlock)

    bank.open_by_code("A2", CODE_A2)
    bank.wait_event("unlock_unanswered", compartment="A2")
    opened = bank.wait_event("door_opened", compartment="A2")
    assert opened.grant_id == "grt_pick2"
    assert bank.sim.pulses("A2") == 1
    assert bank.matching("alarm") == []


@pytest.mark.parametrize("bank", SERIAL_BUSES, indirect=True)
def test_a_pulled_usb_adapter_raises_bus_unreachable_and_the_bank_recovers(bank: Bank) -> None:
    """The RS485 adapter is unplugged mid-run: every read fails as ``Unavailable``, the core
    raises ``bus_unreachable`` and refuses codes; once the adapter is back the port is reopened
    and every axis is known again."""
    assert isinstance(bank.sim, BoardSim)
    bank.configure(grant("grt_pick2", CODE_A2, "A2", "pickup"))
    bank.sim.unplug()
    for failures in range(1, UNREACHABLE_AFTER_FAILURES + 1):
        bank.poll()
        bank.wait_state(lambda s, n=failures: s.bus_failures >= n, f"{failures} failed reads")
    alarm = bank.wait_event("alarm", reason="bus_unreachable")
    assert alarm.data["failures"] == UNREACHABLE_AFTER_FAILURES
    assert bank.enter(CODE_A2) == "code.refused.out_of_service"

    bank.sim.replug()
    started = time.monotonic()
    while not bank.matching("alarm_cleared", reason="bus_unreachable"):
        assert time.monotonic() - started < 5, "the bank did not recover within 5 s"
        bank.poll()
        time.sleep(0.1)
    bank.wait_state(lambda s: s.compartments["A2"].occupancy == "present", "every axis known again")
    assert bank.enter(CODE_A2) == "code.accepted"
    bank.wait_pulse_over("A2")
    assert bank.sim.pulses("A2") == 1


# --- the adapter and the simulator's failures --------------------------------------------------


def test_a_failed_pin_read_is_a_lock_bus_error() -> None:
    factory = simulation_factory()
    sim = LockerSimulator(BOARD, factory)
    bus = GpioLockBus(BOARD, factory, on_input=lambda _: None)
    sim.attach()
    try:
        sim.disconnect()
        with pytest.raises(LockBusError, match="reading A1 failed") as caught:
            bus.read_all()
        assert isinstance(caught.value.__cause__, OSError)
        sim.reconnect()
        assert bus.read_all().compartments["A1"].door_open is False
    finally:
        for c in BOARD.compartments:
            factory.pin(c.door_pin).drive_high()
        bus.close()
        factory.close()


def test_the_simulated_failures_are_physical() -> None:
    """Jam, pry and a stray write act on the pins, as the bus reads them."""
    factory = simulation_factory()
    sim = LockerSimulator(BOARD, factory, items={"A4"})
    bus = GpioLockBus(BOARD, factory, on_input=lambda _: None)
    sim.attach()
    try:
        sim.jam("A1")
        bus.unlock("A1", 1_000)
        assert sim.pulses("A1") == 1 and sim.open_door("A1") is False
        bus.all_off()

        assert sim.force_door("A4") is True and sim.force_door("A4") is False
        assert sim.take_item("A4") is True
        assert bus.read_all().compartments["A4"].door_open is True

        sim.stick_output_on("A3")
        assert bus.read_all().compartments["A3"].is_energized is True
        assert sim.open_door("A3") is True  # an energized latch releases, whoever energized it
        bus.all_off()
        assert bus.read_all().compartments["A3"].is_energized is False
    finally:
        for c in BOARD.compartments:
            factory.pin(c.door_pin).drive_high()
        bus.close()
        factory.close()


# --- start-up ---------------------------------------------------------------------------------


def test_linli_locker_run_refuses_an_unsafe_pin_map_before_any_relay_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An active-high relay on BCM 4 (pulled up at boot) would energize before the daemon runs."""
    unsafe = GpioBoard(
        name="unsafe",
        capabilities=GPIO_CAPABILITIES,
        compartments=(
            GpioCompartment("A1", "S", relay_pin=17, relay_active_high=True, door_pin=5),
            GpioCompartment("B1", "M", relay_pin=4, relay_active_high=True, door_pin=20),
        ),
    )
    monkeypatch.setitem(hardware_gpio.BOARDS, "unsafe", unsafe)
    factory = simulation_factory()
    driven: list[tuple[int, bool]] = []
    for number in (4, 17):
        pin: ObservablePin = factory.pin(number)
        pin.observers.append(lambda level, n=number: driven.append((n, level)))
    monkeypatch.setattr(locker_cli, "_pin_factory", lambda backend: factory)

    def started(self: LockerDaemon) -> None:  # a tripwire, so a regression fails, not hangs
        raise AssertionError("the daemon started on an unsafe pin map")

    monkeypatch.setattr(LockerDaemon, "start", started)
    data_dir = tmp_path / "locker"
    DeviceIdentity(DEVICE_ID, {KEY_ID: public_key_bytes(CLOUD_KEY)}, CODE_KEY).save(
        data_dir / "identity.json"
    )
    args = argparse.Namespace(action="run", board="unsafe", gpio="simulated", broker_url=None)

    with pytest.raises(SystemExit) as stopped:
        locker_cli.main(args, data_dir)

    assert "B1: relay on GPIO4 is active-high but the pin is pulled up at boot" in str(
        stopped.value.code
    )
    assert driven == []
    assert [factory.pin(n).function for n in (4, 17)] == ["input", "input"]  # never outputs
    assert not (data_dir / "outbox.sqlite3").exists()  # no daemon was built
    factory.close()
