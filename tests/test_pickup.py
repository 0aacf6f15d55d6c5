"""One real pickup, end to end: cloud, broker, controller, simulated resident, independent checks.

The scenario's checks (station/scenarios.py) do not take the controller's word: they count
pulses from an MQTT capture and from the simulated latch itself (relay pin or board), and read
the cloud over HTTP. The pickup runs on every lock bus.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linli.codes import derive_code
from locker_controller.core.model import MAX_PULSE_MS
from locker_controller.keypad import enter_code
from station.demo import describe, start_station
from station.scenarios import run_pickup


@pytest.mark.usefixtures("mosquitto_bin")
@pytest.mark.parametrize("board", ["gpio-4", "kerong-4", "modbus-4"])
def test_pickup_on_mosquitto(
    board: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pickup on every lock bus: GPIO, and the RS485 adapters on simulated boards."""
    station = start_station(
        tmp_path / "station", broker_kind="mosquitto", capture=True, boards={"locker-a": board}
    )
    try:
        assert run_pickup(station) == 0
        locker = station.lockers["locker-a"]
        assert locker.sim.pulses("A2") == 1
        assert all(locker.sim.pulses(c) == 0 for c in ("A1", "A3", "A4"))
        # The pulse is bounded: the relay is off within MAX_PULSE_MS of the (only) pulse.
        deadline = time.monotonic() + (MAX_PULSE_MS + 500) / 1000
        while locker.sim.is_energized("A2"):
            assert time.monotonic() < deadline, "latch still energized past its bound"
            time.sleep(0.01)
    finally:
        station.stop()
    out = capsys.readouterr().out
    assert "11 of 11 checks passed" in out
    assert re.search(r"\b\d{8}\b", out) is None  # the code is never printed


@pytest.mark.usefixtures("amqtt_installed")
def test_pickup_on_embedded_amqtt(tmp_path: Path) -> None:
    """amqtt serves the demo's pickup correctly (its retained and last-will defects are not
    exercised here; those tests run on Mosquitto)."""
    station = start_station(tmp_path / "station", broker_kind="amqtt", capture=True)
    try:
        assert station.broker.info.kind == "amqtt"
        assert run_pickup(station) == 0
    finally:
        station.stop()


def _linli(*args: str) -> list[str]:
    return [sys.executable, "-m", "linli.cli", "--log-level", "WARNING", *args]


@pytest.mark.usefixtures("mosquitto_bin")
def test_linli_demo_scenario_pickup_exits_zero(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        _linli("demo", "--scenario", "pickup", "--data-dir", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "11 of 11 checks passed" in result.stdout
    assert "mqtt://127.0.0.1:" in result.stdout
    assert time.monotonic() - started < 60


@pytest.mark.usefixtures("mosquitto_bin")
def test_linli_demo_prints_where_everything_is_and_serves_the_keypad(tmp_path: Path) -> None:
    process = subprocess.Popen(
        _linli("demo", "--data-dir", str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30  # the bound
        assert process.stdout is not None
        while not any("Stop with Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline, "demo did not print its banner within 30 s"
            line = process.stdout.readline()
            assert line, "demo exited early: " + "".join(lines)
            lines.append(line)
        banner = "".join(lines)
        assert re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert re.search(r"mqtt://127\.0\.0\.1:\d+", banner)
        assert str(tmp_path.resolve()) in banner
        assert "Simulated" in banner and "13800000001" in banner and "maintainer" in banner
        # The local keypad answers, and a wrong code is refused without moving anything.
        sock = tmp_path / "locker-a" / "keypad.sock"
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        reply = enter_code(sock, "00000000")
        assert reply["key"] == "code.refused.unknown_code"
        assert "取件码" in reply["text"]  # Chinese by default
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-3000:]


def test_describe_names_what_is_simulated_and_how_to_sign_in() -> None:
    class _Info:
        kind = "amqtt"

    class _Broker:
        info = _Info()

    class _Address:
        url = "mqtt://127.0.0.1:1"

    class _Cloud:
        url = "http://127.0.0.1:2"

    from cloud_api.seed import LOGINS

    class _Seed:
        logins = LOGINS

    text = describe(
        type(
            "S",
            (),
            {
                "broker": _Broker(),
                "broker_address": _Address(),
                "cloud": _Cloud(),
                "seed": _Seed(),
                "data_dir": Path("/d"),
                "terminal": type("T", (), {"kiosk": type("K", (), {"url": "http://k:3/"})()})(),
            },
        )()  # type: ignore[arg-type]
    )
    assert "Valuation kiosk:   http://k:3/" in text
    assert "last will never fires" in text  # amqtt's limits stated where it is used
    assert all(login.login in text for login in LOGINS)
    assert json.dumps(text)  # printable
    assert os.sep in text


@pytest.mark.usefixtures("mosquitto_bin")
def test_no_code_pin_or_password_reaches_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every log record of a whole pickup (DEBUG and up, every logger) is free of secrets."""
    import logging

    caplog.set_level(logging.DEBUG)
    station = start_station(tmp_path / "station", broker_kind="mosquitto", capture=True)
    try:
        keys = station.cloud.app.state.services.keys
        grant_id, counter = _pickup_grant(station)
        code = derive_code(keys.code_secret, grant_id, counter)
        assert run_pickup(station) == 0
    finally:
        station.stop()
    secrets = {code} | {login.secret for login in station.seed.logins}
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert len(caplog.records) > 10  # the pickup was logged at all (the count varies with acks)
    leaked = sorted(s for s in secrets if s in text)
    assert leaked == [], f"secrets in logs: {len(leaked)}"
    assert code not in capsys.readouterr().out


def _pickup_grant(station: object) -> tuple[str, int]:
    store = station.cloud.app.state.services.store  # type: ignore[attr-defined]
    row = store.read_one(
        "SELECT id, code_counter FROM grants WHERE purpose = 'pickup' AND status = 'active'"
    )
    assert row is not None
    return str(row["id"]), int(row["code_counter"])
