"""A weighing scale simulated with its real line format on a pseudo-terminal.

:class:`ScaleSim` is the far end of the scale's RS232 line: the adapter opens
:attr:`ScaleSim.path` with pyserial exactly as it would open a USB adapter. Every line it sends is
made by the codec's device side (:func:`~firmware_bridge.codecs.scales.format_sics`,
:func:`~firmware_bridge.codecs.scales.format_and`,
:func:`~firmware_bridge.codecs.scales.format_continuous`), and commands are decoded by
:class:`~firmware_bridge.codecs.scales.CommandLineDecoder`.

**Physics.** A load placed (:meth:`ScaleSim.place`) moves the reading **linearly** from where it
was to the new load over ``settle_s`` (a damped pan, simplified so that "settled" means
"exactly there"); meanwhile every reading is flagged unstable. Each reading adds Gaussian
noise of ``noise_mg`` (a :class:`random.Random` seeded with ``seed``: the same requests give the
same readings) and is rounded to ``resolution_mg``. A reading is flagged stable only when the
load has settled *and* its noise lies within the scale's own stability band
(``stability_band_mg``, one division unless set): a noisy scale flickers unstable now and then,
as real ones do. Above ``capacity_g`` (gross) the scale reports overload; below minus the zero
range it reports underload (the pan lifted off).

**Commands.** MT-SICS: ``SI`` (now), ``S`` (waits up to ``command_wait_s`` for a stable reading,
else ``S I``), ``SIR``/``@`` (stream on/off), ``Z``, ``T``; anything else ``ES``. A&D: ``Q``,
``S``, ``SIR``/``C``, ``Z`` and ``T`` (ACK), anything else ``EC,E01``. Continuous: streams a
line every ``stream_every_s`` on its own thread (``None``: only on request) and answers ``R``
with one line; other commands are ignored, as these indicators do. Zero (within ±4 % of
capacity of the power-on zero, else a ``range`` refusal) clears the tare; tare takes the gross
load (a negative one is a ``range`` refusal) and makes later readings net. Both wait up to
``command_wait_s`` for the load to settle (MT-SICS ``Z I``/``T I``, A&D ``EC,E11`` if it does
not). The continuous format's indicator has only front-panel keys: :meth:`ScaleSim.press_tare`,
:meth:`ScaleSim.press_zero`.

**What goes wrong** is a knob: :meth:`ScaleSim.fail_next` (the next commands answered with an
error), :meth:`ScaleSim.unplug` / :meth:`ScaleSim.replug` (a pulled USB adapter).

Example:
    >>> sim = ScaleSim(tmp_path / "ttyScale", "sics", settle_s=0.3).start()
    >>> sim.place(500.0)
    >>> SerialScale.open(str(sim.path), "sics").stable_weight().grams
    500.0
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Final, Literal

from firmware_bridge.codecs import scales as codec
from firmware_bridge.codecs.base import Garbage
from firmware_bridge.sim.pty import PtyDevice

__all__ = ["FailureKind", "ScaleSim"]

SimFormat = Literal["and", "continuous", "sics"]
FailureKind = Literal["syntax", "transmission", "logical", "busy"]

ZERO_RANGE: Final = 0.04
"""Zero may be set within this fraction of capacity around the power-on zero (OIML R 76: 4 %)."""

AND_MAX_G: Final = 9999.999
"""The A&D value field (9 characters, grams with 3 decimals) holds no more."""

_AND_ERROR_CODES: Final = {"syntax": "E01", "transmission": "E00", "logical": "E07", "busy": "E02"}
_SICS_ERROR_CODES: Final = {"syntax": b"ES\r\n", "transmission": b"ET\r\n", "logical": b"EL\r\n"}

Reading = tuple[codec.Stability, int, bool]
"""(status, milligrams as displayed, is_net)."""

Refusal = Literal["unstable", "above", "below"]
"""Why zero or tare was refused: a moving load, or outside the allowed range."""


class ScaleSim:
    """A scale on a pty, speaking ``fmt`` byte for byte.

    Args:
        path: where the host finds the port.
        fmt: ``sics``, ``and`` or ``continuous``.
        baudrate: the line speed (only matters with ``pace``).
        capacity_g: the maximum load (default 30 kg; 6 kg for A&D, whose 9-character value
            field in grams holds at most 9999.999 g).
        resolution_mg: one display division.
        noise_mg: standard deviation of the reading noise (default half a division).
        stability_band_mg: noise beyond this flags a settled reading unstable (default one
            division).
        settle_s: how long a load change takes to reach the new value.
        stream_every_s: the continuous format's (and ``SIR``'s) line interval; ``None`` makes a
            continuous indicator send only on ``R``.
        command_wait_s: how long ``S``, ``Z`` and ``T`` wait for a settled load.
        seed: seeds the noise.
        pace: send at the baud rate's speed (a pty is instant otherwise).
    """

    def __init__(
        self,
        path: Path,
        fmt: SimFormat,
        *,
        baudrate: int = 9600,
        capacity_g: float | None = None,
        resolution_mg: int = 100,
        noise_mg: float | None = None,
        stability_band_mg: float | None = None,
        settle_s: float = 0.5,
        stream_every_s: float | None = 0.1,
        command_wait_s: float = 1.0,
        seed: int = 0,
        pace: bool = False,
    ) -> None:
        if fmt not in ("and", "continuous", "sics"):
            raise ValueError(f"unknown scale format {fmt!r}")
        if capacity_g is None:
            capacity_g = 6000.0 if fmt == "and" else 30000.0
        if fmt == "and" and capacity_g > AND_MAX_G:
            raise ValueError(f"an A&D scale in grams holds at most {AND_MAX_G} g, not {capacity_g}")
        if resolution_mg < 1:
            raise ValueError(f"resolution_mg must be at least 1, got {resolution_mg}")
        self.fmt: SimFormat = fmt
        self.capacity_mg = round(capacity_g * 1000)
        self.resolution_mg = resolution_mg
        self.noise_mg = resolution_mg / 2 if noise_mg is None else noise_mg
        self.stability_band_mg = resolution_mg if stability_band_mg is None else stability_band_mg
        self.settle_s = settle_s
        self.stream_every_s = stream_every_s
        self.command_wait_s = command_wait_s
        self.device = PtyDevice(path, self._receive, baudrate=baudrate, pace=pace)
        self.commands: Counter[str] = Counter()
        """Commands received, by name (``SI``, ``Q``, ``R``, ``T``...)."""
        self.sent: Counter[str] = Counter()
        """Weight lines sent, by status (``stable``, ``unstable``, ``overload``, ``underload``)."""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._decoder = codec.CommandLineDecoder()
        self._target_mg = 0
        self._from_mg = 0
        self._changed_at = time.monotonic() - settle_s
        self._zero_mg = 0
        self._tare_mg: int | None = None
        self._failures: deque[FailureKind] = deque()
        self._streaming = fmt == "continuous" and stream_every_s is not None
        self._stop = threading.Event()
        self._streamer: threading.Thread | None = None

    @property
    def path(self) -> Path:
        """Where the host opens the port."""
        return self.device.path

    def start(self) -> ScaleSim:
        """Plug the scale in; start streaming if the format streams."""
        self.device.start()
        self._streamer = threading.Thread(
            target=self._stream, name=f"scale-stream:{self.path.name}", daemon=True
        )
        self._streamer.start()
        return self

    def stop(self) -> None:
        """Stop streaming and answering; remove the port."""
        self._stop.set()
        if self._streamer is not None:
            self._streamer.join(timeout=2)
        self.device.stop()

    # --- the world -----------------------------------------------------------------------------

    def place(self, grams: float) -> None:
        """Put a load of ``grams`` on the pan (in total): readings move there over ``settle_s``.

        A negative load is the pan lifted off (underload once below the zero range).
        """
        now = time.monotonic()
        with self._lock:
            self._from_mg = round(self._load_mg(now))
            self._target_mg = round(grams * 1000)
            self._changed_at = now

    def remove(self) -> None:
        """Take everything off the pan."""
        self.place(0.0)

    def press_tare(self) -> bool:
        """The indicator's TARE key; ``False`` if refused (moving load, negative gross)."""
        with self._lock:
            return self._tare(time.monotonic()) is None

    def press_zero(self) -> bool:
        """The indicator's ZERO key; ``False`` if refused (moving load, out of the zero range)."""
        with self._lock:
            return self._zero(time.monotonic()) is None

    @property
    def is_net(self) -> bool:
        """Whether a tare is active."""
        return self._tare_mg is not None

    # --- what goes wrong ----------------------------------------------------------------------

    def fail_next(self, kind: FailureKind, times: int = 1) -> None:
        """Answer the next ``times`` commands with an error of ``kind``.

        MT-SICS: ``ES``, ``ET``, ``EL`` or ``<command> I``; A&D: ``EC,E01``, ``E00``, ``E07``,
        ``E02``. The continuous format has no error replies (``ValueError``).
        """
        if self.fmt == "continuous":
            raise ValueError("the continuous format has no error replies")
        if kind not in ("syntax", "transmission", "logical", "busy"):
            raise ValueError(f"unknown failure kind {kind!r}")
        with self._lock:
            self._failures.extend([kind] * times)

    def unplug(self) -> None:
        """Pull the USB adapter: the host's port fails and the path disappears."""
        self.device.unplug()

    def replug(self) -> None:
        """The USB adapter is back, at the same path."""
        self.device.replug()

    # --- physics ------------------------------------------------------------------------------

    def _load_mg(self, now: float) -> float:
        """The load on the pan as the cell feels it now (linear approach over ``settle_s``)."""
        elapsed = now - self._changed_at
        if elapsed >= self.settle_s:
            return float(self._target_mg)
        return self._from_mg + (self._target_mg - self._from_mg) * elapsed / self.settle_s

    def _settled(self, now: float) -> bool:
        return now - self._changed_at >= self.settle_s

    def _quantize(self, milligrams: float) -> int:
        return round(milligrams / self.resolution_mg) * self.resolution_mg

    def _reading(self, now: float) -> Reading:
        """One reading as the scale displays it (call with the lock held)."""
        gross = self._load_mg(now) - self._zero_mg
        is_net = self._tare_mg is not None
        if gross > self.capacity_mg:
            return "overload", 0, is_net
        if gross < -ZERO_RANGE * self.capacity_mg:
            return "underload", 0, is_net
        noise = self._rng.gauss(0.0, self.noise_mg) if self.noise_mg > 0 else 0.0
        shown = self._quantize(gross + noise) - (self._tare_mg or 0)
        is_stable = self._settled(now) and abs(noise) <= self.stability_band_mg
        return ("stable" if is_stable else "unstable"), shown, is_net

    def _zero(self, now: float) -> Refusal | None:
        """Zero the pan; the refusal, if any (call with the lock held)."""
        if not self._settled(now):
            return "unstable"
        if abs(self._target_mg) > ZERO_RANGE * self.capacity_mg:
            return "above" if self._target_mg > 0 else "below"
        self._zero_mg = self._target_mg
        self._tare_mg = None
        return None

    def _tare(self, now: float) -> Refusal | None:
        """Tare the load; the refusal, if any (call with the lock held)."""
        if not self._settled(now):
            return "unstable"
        gross = self._quantize(self._target_mg - self._zero_mg)
        if gross < 0 or gross > self.capacity_mg:
            return "below" if gross < 0 else "above"
        self._tare_mg = gross
        return None

    def _wait_settled(self) -> None:
        """Block (the device thread, as a balance does) until the load settles or time is up."""
        deadline = time.monotonic() + self.command_wait_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._settled(time.monotonic()):
                    return
            time.sleep(0.01)

    # --- the wire -----------------------------------------------------------------------------

    def _line(self, reading: Reading) -> bytes:
        status, milligrams, is_net = reading
        self.sent[status] += 1
        if self.fmt == "sics":
            return codec.format_sics(status, milligrams)
        if self.fmt == "and":
            return codec.format_and(status, milligrams)
        return codec.format_continuous(status, milligrams, is_net=is_net)

    def _weight_line(self) -> bytes:
        with self._lock:
            return self._line(self._reading(time.monotonic()))

    def _stream(self) -> None:
        every = self.stream_every_s or 0.1
        while not self._stop.wait(every):
            if self._streaming and self.device.is_plugged:
                self.device.write(self._weight_line())

    def _receive(self, data: bytes) -> None:
        for command in self._decoder.feed(data):
            if isinstance(command, Garbage):
                continue
            self.commands[command.name] += 1
            reply = self._answer(command.name)
            if reply:
                self.device.write(reply)

    def _answer(self, name: str) -> bytes:
        if self.fmt == "continuous":
            return self._weight_line() if name == "R" else b""
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return self._error(failure, name)
        if name in ("SI", "Q"):
            return self._weight_line()
        if name == "S":
            return self._stable_line()
        if name == "SIR":
            self._streaming = True
            return self._weight_line()
        if name in ("@", "C"):
            self._streaming = False
            return b'I4 A "SIM-SCALE"\r\n' if name == "@" and self.fmt == "sics" else b""
        if name == "Z":
            return self._zero_or_tare("Z")
        if name == "T":
            return self._zero_or_tare("T")
        return (
            codec.format_sics_error("syntax")
            if self.fmt == "sics"
            else codec.format_and_error("E01")
        )

    def _error(self, kind: FailureKind, name: str) -> bytes:
        if self.fmt == "and":
            return codec.format_and_error(_AND_ERROR_CODES[kind])
        if kind == "busy":
            command: Literal["S", "Z", "T"] = "Z" if name == "Z" else "T" if name == "T" else "S"
            return codec.format_sics_error("busy", command)
        return _SICS_ERROR_CODES[kind]

    def _stable_line(self) -> bytes:
        """``S``: the next stable reading, waiting up to ``command_wait_s`` for one."""
        deadline = time.monotonic() + self.command_wait_s
        while True:
            with self._lock:
                reading = self._reading(time.monotonic())
                if reading[0] != "unstable":
                    return self._line(reading)
            if time.monotonic() >= deadline:
                return (
                    codec.format_sics_error("busy")
                    if self.fmt == "sics"
                    else codec.format_and_error("E11")
                )
            time.sleep(0.02)

    def _zero_or_tare(self, name: Literal["Z", "T"]) -> bytes:
        self._wait_settled()
        with self._lock:
            now = time.monotonic()
            refusal = self._zero(now) if name == "Z" else self._tare(now)
            tare_mg = self._tare_mg or 0
        if self.fmt == "and":
            if refusal is None:
                return codec.format_and_ack()
            return codec.format_and_error("E11" if refusal == "unstable" else "E17")
        if refusal is None:
            return (
                codec.format_sics_ack(name, tare_mg) if name == "T" else codec.format_sics_ack("Z")
            )
        if refusal == "unstable":
            return codec.format_sics_error("busy", name)
        limit = "+" if refusal == "above" else "-"  # MT-SICS: upper / lower limit exceeded
        return f"{name} {limit}\r\n".encode("ascii")
