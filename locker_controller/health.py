"""The Pi's own health for telemetry: CPU temperature, the firmware's throttling bits, free disk.

Read where the Pi says them (/work/shared/design/hardware.md, "Raspberry Pi health signals"):
``/sys/class/thermal/thermal_zone0/temp`` (millidegrees Celsius) and ``vcgencmd get_throttled``
(``throttled=0x50005``: bit 0 under-voltage now, bit 1 frequency capped, bit 2 throttled, bit 3
soft temperature limit, bits 16–19 the same "since boot"). The cloud turns bits 0 and 16 into an
``under_voltage`` alert and low disk into a ``disk`` alert (decision 0022).

A reading runs a process (``vcgencmd``) and touches the file system, so it never runs on the
controller's core thread (which times latch pulses): :class:`HealthProbe` samples on its own
thread and the core only reads the latest :class:`HealthSample`. A figure the machine cannot give
(no thermal zone, no ``vcgencmd`` on a PC) is ``None``, and a missing ``vcgencmd`` is not looked
for again.

Example:
    >>> probe = HealthProbe(data_dir).start()
    >>> probe.latest.cpu_temp_c
    48.3
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
VCGENCMD = "vcgencmd"
SAMPLE_EVERY_S = 30.0
"""Temperature and throttling change over minutes; a sample costs one short process."""
VCGENCMD_TIMEOUT_S = 2.0
_THROTTLED = re.compile(r"^throttled=(0x[0-9a-fA-F]+)\s*$")


@dataclass(frozen=True)
class HealthSample:
    """One reading; ``None`` where the machine cannot say."""

    cpu_temp_c: float | None = None
    throttled: int | None = None
    disk_free_pct: float | None = None


def cpu_temp_c(path: Path = THERMAL_ZONE) -> float | None:
    """The CPU temperature in °C (one decimal) from a thermal zone's millidegrees, or None."""
    try:
        text = path.read_text(encoding="ascii").strip()
        value = int(text) / 1000
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return round(value, 1) if -40 <= value <= 150 else None


def disk_free_pct(path: Path) -> float | None:
    """Free space of the file system holding ``path``, in percent of its size (one decimal),
    or None when it cannot be read (the cloud alerts below 10 %)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    if usage.total <= 0:
        return None
    return round(100.0 * usage.free / usage.total, 1)


def parse_throttled(output: str) -> int | None:
    """``throttled=0x50005`` → 0x50005; anything else → None."""
    match = _THROTTLED.match(output.strip())
    return int(match.group(1), 16) if match else None


class HealthProbe:
    """Samples the Pi's health every ``every_s`` on its own thread; :attr:`latest` is the last
    sample (empty until the first one)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        thermal_zone: Path = THERMAL_ZONE,
        vcgencmd: str = VCGENCMD,
        every_s: float = SAMPLE_EVERY_S,
    ) -> None:
        self._data_dir = data_dir
        self._thermal_zone = thermal_zone
        self._vcgencmd: str | None = vcgencmd
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest = HealthSample()

    def throttled(self) -> int | None:
        """The firmware's throttling bits, or None (no ``vcgencmd`` here, or no answer)."""
        if self._vcgencmd is None:
            return None
        try:
            done = subprocess.run(
                [self._vcgencmd, "get_throttled"],
                capture_output=True,
                text=True,
                timeout=VCGENCMD_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            log.info("no %s on this machine: telemetry carries no throttling bits", VCGENCMD)
            self._vcgencmd = None  # not a Pi: do not look again
            return None
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_throttled(done.stdout) if done.returncode == 0 else None

    def sample(self) -> HealthSample:
        """Read every figure now (on the calling thread) and keep it as :attr:`latest`."""
        self.latest = HealthSample(
            cpu_temp_c=cpu_temp_c(self._thermal_zone),
            throttled=self.throttled(),
            disk_free_pct=disk_free_pct(self._data_dir),
        )
        return self.latest

    def start(self) -> HealthProbe:
        """Sample now (on the caller's thread: the first telemetry has figures), then every
        ``every_s`` on a daemon thread."""
        self._sample_safely()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (returns once the thread has ended, or after a vcgencmd timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=VCGENCMD_TIMEOUT_S + 1)

    def _sample_safely(self) -> None:
        try:
            self.sample()
        except Exception:  # health figures are best effort: never kill the sampler
            log.exception("reading the Pi's health failed")

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._sample_safely()
