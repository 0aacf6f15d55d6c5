"""The controller's own health in telemetry (locker_controller/health.py): the Pi's CPU
temperature from its thermal zone, the firmware's throttling bits from ``vcgencmd get_throttled``,
and free disk — sampled off the core thread, ``None`` where the machine cannot say.

Real parts: a thermal-zone file and a real executable standing in for ``vcgencmd`` (this machine
is not a Pi; the executable prints what the firmware prints); the real controller daemon on a
simulated bank and a private Mosquitto for the telemetry it publishes.
"""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import CloudUnderTest, LockerFactory

from locker_controller.health import (
    HealthProbe,
    HealthSample,
    cpu_temp_c,
    disk_free_pct,
    parse_throttled,
)

pytestmark = pytest.mark.mosquitto


def fake_vcgencmd(tmp_path: Path, output: str, exit_code: int = 0, delay_s: float = 0) -> str:
    """An executable that answers ``get_throttled`` like the Pi's firmware tool, and records
    each call (one line per call in ``calls``)."""
    script = tmp_path / "vcgencmd"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> "{tmp_path / "calls"}"\n'
        f"sleep {delay_s}\n"
        f"printf '%s\\n' '{output}'\n"
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def thermal_zone(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "temp"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [("48312\n", 48.3), ("85000", 85.0), ("-5000\n", -5.0), ("garbage", None), ("", None),
     ("999999", None)],
)  # fmt: skip
def test_the_cpu_temperature_is_read_from_the_thermal_zone_in_millidegrees(
    tmp_path: Path, text: str, expected: float | None
) -> None:
    assert cpu_temp_c(thermal_zone(tmp_path, text)) == expected


def test_a_machine_without_a_thermal_zone_reports_no_temperature(tmp_path: Path) -> None:
    assert cpu_temp_c(tmp_path / "no-such-zone") is None


@pytest.mark.parametrize(
    ("output", "expected"),
    [("throttled=0x0", 0), ("throttled=0x50005", 0x50005), ("throttled=0x1\n", 1),
     ("error=1 error_msg=\"Command not registered\"", None), ("throttled=", None), ("", None)],
)  # fmt: skip
def test_the_throttling_bits_are_parsed_from_vcgencmd(output: str, expected: int | None) -> None:
    assert parse_throttled(output) == expected


def test_a_probe_reads_every_figure_from_the_machine(tmp_path: Path) -> None:
    probe = HealthProbe(
        tmp_path,
        thermal_zone=thermal_zone(tmp_path, "61300\n"),
        vcgencmd=fake_vcgencmd(tmp_path, "throttled=0x50000"),
    )
    sample = probe.sample()
    assert sample.cpu_temp_c == 61.3
    assert sample.throttled == 0x50000  # under-voltage has occurred since boot (bit 16)
    assert sample.disk_free_pct == disk_free_pct(tmp_path)
    assert sample.disk_free_pct is not None and 0 < sample.disk_free_pct <= 100
    assert probe.latest is sample


def test_a_failing_vcgencmd_gives_no_bits_and_a_missing_one_is_not_looked_for_again(
    tmp_path: Path,
) -> None:
    failing = HealthProbe(tmp_path, vcgencmd=fake_vcgencmd(tmp_path, "oops", exit_code=1))
    assert failing.throttled() is None
    assert failing.throttled() is None
    assert (tmp_path / "calls").read_text().split() == ["get_throttled", "get_throttled"]

    missing = HealthProbe(tmp_path, vcgencmd=str(tmp_path / "nowhere" / "vcgencmd"))
    assert missing.sample() == HealthSample(
        cpu_temp_c=missing.latest.cpu_temp_c, throttled=None, disk_free_pct=disk_free_pct(tmp_path)
    )
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "vcgencmd").symlink_to(fake_vcgencmd(tmp_path, "throttled=0x1"))
    assert missing.throttled() is None  # a PC stays a PC: not looked for on every heartbeat


def test_the_probe_samples_on_its_own_thread_and_stops(tmp_path: Path) -> None:
    slow = fake_vcgencmd(tmp_path, "throttled=0x4", delay_s=0.3)
    probe = HealthProbe(tmp_path, vcgencmd=slow, every_s=0.05)
    started = time.monotonic()
    probe.start()
    assert probe.latest.throttled == 0x4  # the first sample is taken before start() returns
    assert time.monotonic() - started >= 0.3
    deadline = time.monotonic() + 5
    while len((tmp_path / "calls").read_text().split()) < 3:
        assert time.monotonic() < deadline, "the probe did not sample again"
        time.sleep(0.05)
    names = {thread.name for thread in threading.enumerate()}
    assert "health" in names
    probe.stop()
    calls = len((tmp_path / "calls").read_text().split())
    time.sleep(0.5)
    assert len((tmp_path / "calls").read_text().split()) == calls  # stopped: no more samples


def test_the_controllers_telemetry_carries_the_sampled_health(
    tmp_path: Path, cloud: CloudUnderTest, simulated_locker: LockerFactory
) -> None:
    locker = simulated_locker(
        cloud.identity("locker-a"), cloud.broker, telemetry_every_ms=200, start=False
    )
    locker.daemon._health = HealthProbe(  # the Pi's sources, as a file and a program here
        locker.data_dir,
        thermal_zone=thermal_zone(tmp_path, "72100\n"),
        vcgencmd=fake_vcgencmd(tmp_path, "throttled=0x50005"),
    )
    locker.daemon.start()
    telemetry = cloud.server.app.state.services.devices.telemetry
    deadline = time.monotonic() + 10
    while "locker-a" not in telemetry:
        assert time.monotonic() < deadline, "no telemetry reached the cloud"
        time.sleep(0.05)
    tele = telemetry["locker-a"]
    assert (tele["cpu_temp_c"], tele["throttled"]) == (72.1, 0x50005)
    assert isinstance(tele["disk_free_pct"], float)
    # ... and the cloud reads the under-voltage bits (since boot) as an alert.
    while cloud.store.read_one("SELECT 1 FROM alerts WHERE rule = 'under_voltage'") is None:
        assert time.monotonic() < deadline, "no under-voltage alert"
        time.sleep(0.05)
