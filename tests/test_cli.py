"""The ``linli`` command: sub-commands, data directories, explicit simulation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cloud_api.store import MIGRATIONS
from linli.contract import TOPICS
from station.broker import BrokerInfo, free_port


def _linli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linli.cli", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_version_and_help() -> None:
    result = _linli("--version")
    assert result.returncode == 0 and result.stdout.startswith("linli ")
    result = _linli("--help")
    for command in ("demo", "cloud", "locker", "terminal"):
        assert command in result.stdout


def test_contract_schema_exports_every_topic() -> None:
    result = _linli("contract", "schema")
    assert result.returncode == 0, result.stderr
    schemas = json.loads(result.stdout)
    assert {spec.name for spec in TOPICS} <= set(schemas)
    assert {"body:cmd", "body:cfg"} <= set(schemas)


def test_db_migrate_honours_data_dir_and_env(tmp_path: Path) -> None:
    first = _linli("db", "migrate", "--data-dir", str(tmp_path / "a"))
    latest = len(MIGRATIONS)
    assert first.returncode == 0 and f"schema version 0 -> {latest}" in first.stdout
    again = _linli("db", "migrate", "--data-dir", str(tmp_path / "a"))
    assert f"schema version {latest} -> {latest}" in again.stdout
    env = dict(os.environ, LINLI_DATA_DIR=str(tmp_path / "from-env"))
    assert _linli("db", "migrate", env=env).returncode == 0
    assert (tmp_path / "from-env" / "cloud.sqlite3").exists()


def test_locker_refuses_to_guess_its_gpio_backend(tmp_path: Path, cloud_keys: object) -> None:
    from cloud_api.keys import CloudKeys
    from linli.identity import DeviceIdentity

    assert isinstance(cloud_keys, CloudKeys)
    DeviceIdentity("locker-z", {cloud_keys.key_id: cloud_keys.public_key}, b"k" * 32).save(
        tmp_path / "identity.json"
    )
    env = {k: v for k, v in os.environ.items() if k != "LINLI_GPIO"}
    result = _linli("locker", "run", "--data-dir", str(tmp_path), env=env)
    assert result.returncode != 0
    assert "choose the GPIO backend explicitly" in result.stderr


def test_locker_without_identity_says_enrol_first(tmp_path: Path) -> None:
    result = _linli("locker", "run", "--gpio", "simulated", "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "enrol this device first" in result.stderr


def test_locker_code_without_a_controller_is_a_clear_error(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "linli.cli", "locker", "code", "--data-dir", str(tmp_path)],
        input="12345678\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == 2
    assert "no controller keypad" in process.stderr
    assert "12345678" not in process.stdout + process.stderr  # never echoed


def test_linli_cloud_serves_and_stops_on_sigterm(tmp_path: Path, mosquitto: BrokerInfo) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "linli.cli",
            "--log-level",
            "WARNING",
            "cloud",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(port),
            "--broker-url",
            f"mqtt://{mosquitto.host}:{mosquitto.port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
                if health["broker_connected"]:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "linli cloud did not come up"
            time.sleep(0.1)
        assert health["ok"] is True
        assert (tmp_path / "cloud.sqlite3").exists()
        secrets = tmp_path / "secrets"
        assert oct(secrets.stat().st_mode & 0o777) == "0o700"
        assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in secrets.iterdir())
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    # uvicorn shuts down gracefully (lifespan cleanup runs), then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), stderr[-2000:]
    assert "Traceback" not in stderr


def _locker_identity(data_dir: Path) -> None:
    from linli.identity import DeviceIdentity

    DeviceIdentity("locker-rs485", {"k1": b"\x01" * 32}, b"k" * 32).save(data_dir / "identity.json")


def test_a_serial_bank_needs_its_port(tmp_path: Path) -> None:
    _locker_identity(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "LINLI_BUS_PORT"}
    result = _linli("locker", "run", "--board", "kerong-4", "--data-dir", str(tmp_path), env=env)
    assert result.returncode != 0
    assert "give its serial port with --port" in result.stderr


def test_linli_locker_run_drives_a_kerong_bank_on_its_serial_port(tmp_path: Path) -> None:
    """The real command on a real (pseudo-)serial port: it polls the board, and on SIGTERM it
    stops cleanly. No broker is needed: the controller serves offline."""
    from firmware_bridge.codecs import kerong
    from firmware_bridge.sim.boards import KerongBoardSim
    from hardware.serial_boards import bank_by_name

    sim = KerongBoardSim(bank_by_name("kerong-4"), tmp_path / "ttyUSB0").start()
    _locker_identity(tmp_path)
    argv = ["locker", "run", "--board", "kerong-4", "--port", str(sim.path)]
    argv += ["--broker-url", f"mqtt://127.0.0.1:{free_port()}", "--data-dir", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "linli.cli", "--log-level", "WARNING", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while sim.commands[kerong.CMD_STATUS] < 5:  # the poller reads the board, again and again
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the controller never polled the board"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        sim.stop()
    assert sim.pulses("A1") == 0  # starting and stopping moved no latch
