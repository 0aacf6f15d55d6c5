"""The serial lock buses on a pseudo-terminal: transport rules, adapters and installer tools.

Every test talks real bytes through a real pty to a board simulated byte for byte
(:mod:`firmware_bridge.sim.boards`); nothing of ours is mocked. The controller-level behaviour of
the same adapters (alarms, pickups) is tested by tests/test_controller_sim.py, parametrized over
every bus.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
from test_gpio_sim import Inbox

from firmware_bridge.codecs import kerong, modbus
from firmware_bridge.errors import BoardTimeout, ProtocolError, Unavailable
from firmware_bridge.lockbus import (
    PULSE_END_MARGIN_MS,
    KerongLockBus,
    ModbusLockBus,
    SerialLockBus,
    open_lock_bus,
    read_kerong_status,
)
from firmware_bridge.sim.boards import BoardSim, KerongBoardSim, ModbusBoardSim
from firmware_bridge.transport import SerialTransport, retry_read
from hardware.serial_boards import (
    BankDefinitionError,
    SerialBank,
    SerialBoard,
    SerialCompartment,
    bank_by_name,
    validate,
)
from linli.cli import main as linli_main
from locker_controller.core.model import (
    DoorSensed,
    OccupancySensed,
    PulseEnded,
    UnlockUnanswered,
)
from locker_controller.lockbus import LockBusError

KERONG = bank_by_name("kerong-4")
MODBUS = bank_by_name("modbus-4")
DEADLINE_S = 5.0


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> float:
    """Poll until ``condition`` holds; return how long it took; fail naming ``what``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.005)
    return time.monotonic() - started


Rig = tuple[BoardSim, SerialLockBus, Inbox]


@pytest.fixture(params=["kerong", "modbus"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """A simulated board on a pty and the real adapter on it; A2 holds an item."""
    bank = KERONG if request.param == "kerong" else MODBUS
    kind = KerongBoardSim if request.param == "kerong" else ModbusBoardSim
    sim = kind(bank, tmp_path / "ttyRS485", items={"A2"}).start()
    inbox = Inbox()
    bus = open_lock_bus(bank, str(sim.path), inbox.put)
    yield sim, bus, inbox
    bus.close()
    sim.stop()


# --- the adapters ------------------------------------------------------------------------------


def test_the_bus_reads_doors_and_items_as_the_board_reports_them(rig: Rig) -> None:
    _sim, bus, _ = rig
    reading = bus.read_all().compartments
    assert {n: (r.door_open, r.item_present) for n, r in reading.items()} == {
        "A1": (False, False),
        "A2": (False, True),
        "A3": (False, False),
        "A4": (False, False),
    }
    expected_energized = None if isinstance(bus, KerongLockBus) else False
    assert all(r.is_energized is expected_energized for r in reading.values())
    assert bus.capabilities.can_time_pulse is True


def test_an_unlock_fires_once_and_the_board_ends_the_pulse(rig: Rig) -> None:
    sim, bus, inbox = rig
    bus.unlock("A1", 200)
    assert sim.pulses("A1") == 1
    assert sim.is_energized("A1")
    inbox.wait_for(PulseEnded("A1"))
    assert not sim.is_energized("A1")  # the board's own timer ended it first
    assert all(sim.pulses(n) == 0 for n in ("A2", "A3", "A4"))
    assert not any(isinstance(i, UnlockUnanswered) for i in inbox.seen + inbox.drain())


def test_an_unlock_whose_reply_is_lost_is_never_sent_again(rig: Rig) -> None:
    """The field problem hardware.md names: the lock opens but no ACK arrives."""
    sim, bus, inbox = rig
    unlock = kerong.CMD_UNLOCK if isinstance(sim, KerongBoardSim) else modbus.FC_WRITE_COIL
    sim.lose_replies(1, to=unlock)
    bus.unlock("A3", 200)
    inbox.wait_for(UnlockUnanswered("A3"))
    inbox.wait_for(PulseEnded("A3"))
    time.sleep(0.3)  # several polls later: still exactly one pulse
    assert sim.pulses("A3") == 1
    unlocks = (
        sim.commands[kerong.CMD_UNLOCK]
        if isinstance(sim, KerongBoardSim)
        else sim.commands[modbus.FC_WRITE_COIL] - 1  # the write-off at the pulse's end
    )
    assert unlocks == 1
    assert sim.open_door("A3") is True  # it did fire: the resident gets in


def test_an_echo_of_the_unlock_is_not_taken_for_its_answer(tmp_path: Path) -> None:
    """A half-duplex adapter returns ``02 00 31 03 36`` itself; only the board's reply counts."""
    sim = KerongBoardSim(KERONG, tmp_path / "tty").start()
    inbox = Inbox()
    bus = open_lock_bus(KERONG, str(sim.path), inbox.put)
    try:
        sim.echo()
        bus.unlock("A1", 100)  # answered: the echo is skipped, the board's reply accepted
        sim.lose_replies(1, to=kerong.CMD_UNLOCK)
        bus.unlock("A2", 100)  # only the echo comes back: unanswered
        inbox.wait_for(UnlockUnanswered("A2"))
        assert UnlockUnanswered("A1") not in inbox.seen + inbox.drain()
        assert (sim.pulses("A1"), sim.pulses("A2")) == (1, 1)
    finally:
        bus.close()
        sim.stop()


def test_the_poller_reports_door_and_item_changes_as_edges(rig: Rig) -> None:
    sim, bus, inbox = rig
    bus.read_all()  # the daemon's first reading: the baseline edges are measured from
    bus.unlock("A2", 100)
    inbox.wait_for(PulseEnded("A2"))
    assert sim.open_door("A2") is True
    inbox.wait_for(DoorSensed("A2", is_open=True))
    assert sim.take_item("A2") is True
    inbox.wait_for(OccupancySensed("A2", is_present=False))
    sim.close_door("A2")
    inbox.wait_for(DoorSensed("A2", is_open=False))
    edges = [i for i in inbox.seen if isinstance(i, DoorSensed | OccupancySensed)]
    assert edges == [  # each change once, in order, and nothing that did not change
        DoorSensed("A2", is_open=True),
        OccupancySensed("A2", is_present=False),
        DoorSensed("A2", is_open=False),
    ]


def test_stray_bytes_before_a_reply_are_skipped(rig: Rig) -> None:
    sim, bus, _ = rig
    sim.send_stray(b"\x00\xff\x13\x02\x00")  # noise with a false start of frame in it
    assert bus.read_all().compartments["A2"].item_present is True
    assert bus.transport.stats.garbage_bytes > 0


def test_a_read_is_retried_after_a_lost_reply(rig: Rig) -> None:
    sim, bus, _ = rig
    sim.lose_replies(1)
    assert bus.read_all().compartments["A2"].item_present is True
    assert bus.transport.stats.timeouts >= 1


def test_a_silent_bus_is_a_lock_bus_error_and_nothing_is_invented(rig: Rig) -> None:
    sim, bus, _ = rig
    sim.disconnect()
    with pytest.raises(LockBusError) as caught:
        bus.read_all()
    assert isinstance(caught.value.__cause__, BoardTimeout)
    sim.reconnect()
    assert bus.read_all().compartments["A2"].item_present is True


def test_a_busy_board_fails_reads_then_recovers(rig: Rig) -> None:
    sim, bus, _ = rig
    sim.busy_for(2.5)
    with pytest.raises(LockBusError) as caught:
        bus.read_all()
    if isinstance(sim, ModbusBoardSim):  # the board says so: exception 6, its fault
        assert isinstance(caught.value.__cause__, ProtocolError)
        assert caught.value.__cause__.fault == "device"
    else:  # a busy Kerong board is silent
        assert isinstance(caught.value.__cause__, BoardTimeout)
    wait_until(lambda: _reads(bus), "reads after the busy spell")


def _reads(bus: SerialLockBus) -> bool:
    try:
        bus.read_all()
    except LockBusError:
        return False
    return True


def test_an_unplugged_adapter_is_unavailable_and_the_port_recovers_within_5_s(rig: Rig) -> None:
    sim, bus, _ = rig
    assert bus.read_all().compartments["A2"].item_present is True  # the port is open, mid-run
    sim.unplug()
    with pytest.raises(LockBusError) as caught:
        bus.read_all()
    assert isinstance(caught.value.__cause__, Unavailable)
    time.sleep(1.0)  # unplugged for a while: the adapter keeps failing cleanly
    with pytest.raises(LockBusError):
        bus.read_all()
    sim.replug()
    took = wait_until(lambda: _reads(bus), "reads after the adapter returned", timeout_s=5)
    assert took < 5
    assert bus.transport.stats.reconnects >= 1
    assert bus.read_all().compartments["A2"].item_present is True


def test_an_unlock_on_an_unplugged_port_is_reported_unanswered_not_retried(rig: Rig) -> None:
    sim, bus, inbox = rig
    sim.unplug()
    bus.unlock("A1", 100)
    inbox.wait_for(UnlockUnanswered("A1"))
    sim.replug()
    wait_until(lambda: _reads(bus), "reads after the adapter returned")
    assert sim.pulses("A1") == 0


def test_all_off_switches_every_relay_off(tmp_path: Path) -> None:
    sim = ModbusBoardSim(MODBUS, tmp_path / "tty", items=set()).start()
    bus = open_lock_bus(MODBUS, str(sim.path), lambda _: None)
    try:
        sim.stick_output_on("A4")
        assert bus.read_all().compartments["A4"].is_energized is True
        bus.all_off()
        assert not sim.is_energized("A4")
        assert bus.read_all().compartments["A4"].is_energized is False
        assert sim.silence_violations == 0  # the transport kept 3.5 characters of silence
    finally:
        bus.close()
        sim.stop()


def test_the_board_simulator_counts_a_request_sent_without_the_inter_frame_silence(
    tmp_path: Path,
) -> None:
    # The check above can fail: a host that sends its next request as soon as the reply is in,
    # without 3.5 characters of silence, is counted.
    sim = ModbusBoardSim(MODBUS, tmp_path / "tty", items=set()).start()
    unit = MODBUS.compartments[0].board
    reply_size = len(modbus.bits_response(unit, 0x01, [False] * modbus.CHANNELS))
    try:
        with serial.Serial(str(sim.path), MODBUS.line_baudrate, timeout=2) as port:
            for _ in range(3):
                port.write(modbus.read_relays(unit))
                assert len(port.read(reply_size)) == reply_size
        assert sim.silence_violations >= 1
    finally:
        sim.stop()


def test_a_kerong_pulse_sets_the_boards_energize_time_once(tmp_path: Path) -> None:
    sim = KerongBoardSim(KERONG, tmp_path / "tty").start()
    bus = KerongLockBus(KERONG, SerialTransport(str(sim.path), baudrate=19200), lambda _: None)
    try:
        bus.unlock("A1", 300)
        bus.unlock("A2", 300)
        assert sim.energize_ms(0) == 300
        assert sim.commands[kerong.CMD_SET_TIME] == 1
        bus.unlock("A3", 1000)
        assert sim.energize_ms(0) == 1000
        assert sim.commands[kerong.CMD_SET_TIME] == 2
    finally:
        bus.close()
        sim.stop()


def test_a_modbus_pulse_is_switched_off_even_if_the_board_forgets(tmp_path: Path) -> None:
    """The board's flash timer is trusted, and checked: at the pulse's end the relay is off."""
    sim = ModbusBoardSim(MODBUS, tmp_path / "tty").start()
    inbox = Inbox()
    bus = ModbusLockBus(
        MODBUS,
        SerialTransport(str(sim.path), baudrate=9600, silence_s=modbus.silence_s(9600)),
        inbox.put,
    )
    try:
        bus.unlock("A1", 100)
        sim.stick_output_on("A1")  # as if the flash timer failed: the relay stays on
        inbox.wait_for(PulseEnded("A1"))
        assert not sim.is_energized("A1")
    finally:
        bus.close()
        sim.stop()


def test_the_pulse_end_waits_for_the_boards_timer(rig: Rig) -> None:
    _sim, bus, inbox = rig
    started = time.monotonic()
    bus.unlock("A1", 300)
    inbox.wait_for(PulseEnded("A1"))
    assert time.monotonic() - started >= (300 + PULSE_END_MARGIN_MS) / 1000 - 0.01


# --- the transport -----------------------------------------------------------------------------


def test_a_port_has_one_owner(tmp_path: Path) -> None:
    sim = KerongBoardSim(KERONG, tmp_path / "tty").start()
    first = SerialTransport(str(sim.path), baudrate=19200)
    second = SerialTransport(str(sim.path), baudrate=19200)
    try:
        first.open()
        with pytest.raises(Unavailable, match="lock"):
            second.open()
        assert read_kerong_status(first, 0, 0.5).board == 0
    finally:
        first.close()
        second.close()
        sim.stop()


def test_the_installer_tools_do_not_steal_the_controllers_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = KerongBoardSim(KERONG, tmp_path / "tty").start()
    controller = SerialTransport(str(sim.path), baudrate=19200)
    try:
        controller.open()
        argv = ["bus", "selftest", "--port", str(sim.path), "--protocol", "kerong"]
        argv += ["--board", "0", "--channel", "1", "--data-dir", str(tmp_path)]
        assert linli_main(argv) == 2
    finally:
        controller.close()
        sim.stop()
    assert "is the controller running?" in capsys.readouterr().err
    assert sim.pulses("A1") == 0


def test_a_missing_port_is_unavailable(tmp_path: Path) -> None:
    transport = SerialTransport(str(tmp_path / "ttyUSB9"), baudrate=9600)
    with pytest.raises(Unavailable, match="cannot open") as caught:
        transport.open()
    assert caught.value.fault == "line"
    assert isinstance(caught.value, ConnectionError)


def test_retry_read_retries_timeouts_but_not_a_callers_mistake() -> None:
    calls: list[int] = []
    delays: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise BoardTimeout("silent")
        return "status"

    assert retry_read(flaky, sleep=delays.append) == "status"
    assert delays == [0.05, 0.1]  # growing back-off

    def mistaken() -> str:
        calls.append(1)
        raise kerong_error()

    calls.clear()
    with pytest.raises(ProtocolError):
        retry_read(mistaken, sleep=delays.append)
    assert len(calls) == 1


def kerong_error() -> ProtocolError:
    try:
        kerong.unlock(0, 17)
    except ProtocolError as exc:
        return exc
    raise AssertionError("lock 17 was accepted")


def test_exchanges_through_loop_url_work_without_a_device() -> None:
    """``loop://`` (pyserial) echoes what is written: a status reply written is read back."""
    transport = SerialTransport("loop://", baudrate=19200)
    try:
        reply = transport.exchange(
            kerong.status_reply(3, 0x0001, 0x0002),
            kerong.ReplyDecoder(),
            lambda e: isinstance(e, kerong.StatusReply),
            0.5,
        )
        assert isinstance(reply, kerong.StatusReply)
        assert (reply.board, reply.hooks, reply.items) == (3, 0x0001, 0x0002)
    finally:
        transport.close()


def test_a_board_behind_an_rs485_to_ethernet_converter_answers_over_socket_url() -> None:
    """``socket://host:port`` (a serial server on the LAN): the same exchange over TCP."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            decoder = kerong.RequestDecoder()
            while data := connection.recv(64):
                for request in decoder.feed(data):
                    if isinstance(request, kerong.Request):
                        connection.sendall(b"\x00" + kerong.status_reply(request.board, 0xFFFE, 4))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = SerialTransport(f"socket://127.0.0.1:{port}", baudrate=19200)
    try:
        reply = read_kerong_status(transport, 2, 1.0)
        assert (reply.board, reply.hooks, reply.items) == (2, 0xFFFE, 4)
        assert transport.stats.garbage_bytes == 1  # the stray zero before the frame
    finally:
        transport.close()
        server.close()
        thread.join(timeout=2)


# --- bank definitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bank", "message"),
    [
        (
            SerialBank(
                "twice",
                "kerong",
                (SerialBoard(0),),
                (SerialCompartment("A1", "S", 0, 1), SerialCompartment("A2", "S", 0, 1)),
            ),
            "already used by A1",
        ),
        (
            SerialBank("far", "kerong", (SerialBoard(0),), (SerialCompartment("A1", "S", 0, 17),)),
            "lock 17 outside 1–16",
        ),
        (
            SerialBank("ghost", "modbus", (SerialBoard(1),), (SerialCompartment("A1", "S", 2, 0),)),
            "board 2 is not on the bus",
        ),
        (
            SerialBank(
                "inputs",
                "modbus",
                (SerialBoard(1),),
                (SerialCompartment("A1", "S", 1, 0, door_input=8),),
            ),
            "input 8 outside 0–7",
        ),
        (
            SerialBank("unit0", "modbus", (SerialBoard(0),), (SerialCompartment("A1", "S", 0, 0),)),
            "board address 0 outside 1–247",
        ),
    ],
)
def test_a_bad_bank_map_is_refused(bank: SerialBank, message: str) -> None:
    with pytest.raises(BankDefinitionError, match=message):
        validate(bank)


def test_capabilities_follow_the_wiring() -> None:
    assert KERONG.capabilities.has_door_sensor and not KERONG.capabilities.has_latch_feedback
    no_ir = SerialBank(
        "no-ir", "kerong", (SerialBoard(0, has_item_sensor=False),), KERONG.compartments
    )
    assert no_ir.capabilities.has_item_sensor is False
    doors_only = SerialBank(
        "doors", "modbus", (SerialBoard(1),), (SerialCompartment("A1", "S", 1, 0, door_input=0),)
    )
    assert doors_only.capabilities.has_door_sensor is True
    assert doors_only.capabilities.has_item_sensor is False


# --- installer tools -------------------------------------------------------------------------------


@pytest.mark.parametrize(("bank", "kind"), [(KERONG, KerongBoardSim), (MODBUS, ModbusBoardSim)])
def test_bus_scan_prints_each_board_found(
    bank: SerialBank, kind: type[BoardSim], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = kind(bank, tmp_path / "tty").start()
    try:
        addresses = "0-3" if bank.protocol == "kerong" else "1-3"
        argv = ["bus", "scan", "--port", str(sim.path), "--protocol", bank.protocol]
        assert linli_main([*argv, "--addresses", addresses, "--data-dir", str(tmp_path)]) == 0
    finally:
        sim.stop()
    found = [line.split()[:2] for line in capsys.readouterr().out.splitlines()]
    assert found == [["board", str(bank.boards[0].address)]]


def test_bus_scan_of_an_empty_bus_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = KerongBoardSim(KERONG, tmp_path / "tty").start()
    try:
        argv = ["bus", "scan", "--port", str(sim.path), "--protocol", "kerong"]
        assert linli_main([*argv, "--addresses", "5-6", "--data-dir", str(tmp_path)]) == 1
    finally:
        sim.stop()
    assert "no board answered" in capsys.readouterr().out


def run_selftest(
    sim: BoardSim, *, board: int, channel: int, tmp_path: Path
) -> tuple[int, dict[str, Any]]:
    """``linli bus selftest`` against the started simulator; its exit status and JSON record."""
    report_path = tmp_path / "selftest.json"
    sim.start()
    try:
        argv = ["bus", "selftest", "--port", str(sim.path), "--protocol", sim.bank.protocol]
        argv += ["--board", str(board), "--channel", str(channel), "--report", str(report_path)]
        status = linli_main([*argv, "--data-dir", str(tmp_path)])
    finally:
        sim.stop()
    return status, json.loads(report_path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("caught_level", [0, 1])
def test_selftest_reports_the_hook_polarity_of_either_wiring(
    caught_level: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = KerongBoardSim(KERONG, tmp_path / "tty", hook_caught_level={0: caught_level})
    status, report = run_selftest(sim, board=0, channel=2, tmp_path=tmp_path)
    assert (status, report["verdict"]) == (0, "ok")
    assert report["hook_caught_level"] == caught_level
    assert sim.pulses("A2") == 1  # one pulse, watched
    assert report["unlock_reply"] == kerong.unlock_reply(0, 2).hex(" ")
    assert any(r["kind"] == "StatusReply" for r in report["raw_replies"])
    assert report["round_trip"]["median_ms"] > 0
    assert f"hook bit = {caught_level} while caught" in capsys.readouterr().out


def test_selftest_of_a_jammed_lock_is_inconclusive_not_a_guess(tmp_path: Path) -> None:
    sim = KerongBoardSim(KERONG, tmp_path / "tty")
    sim.jam("A1")
    status, report = run_selftest(sim, board=0, channel=1, tmp_path=tmp_path)
    assert (status, report["verdict"]) == (1, "inconclusive")
    assert "hook_caught_level" not in report


def test_modbus_selftest_sees_the_board_time_its_pulse(tmp_path: Path) -> None:
    sim = ModbusBoardSim(MODBUS, tmp_path / "tty")
    status, report = run_selftest(sim, board=1, channel=0, tmp_path=tmp_path)
    assert (status, report["verdict"]) == (0, "ok")
    assert report["relay_seen_on"] is True
    assert 450 <= report["relay_off_after_ms"] <= 1500
    assert sim.pulses("A1") == 1
