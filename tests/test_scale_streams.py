"""Recorded scale streams, replayed byte for byte through a real pseudo-terminal into the adapter.

Each ``tests/data/scale_streams/<scenario>.<format>.bin`` holds the bytes a scale sends, and its
``.json`` sidecar the timing of every chunk and the outcome
:class:`~firmware_bridge.scale.SerialScale` must reach (``tests/data/README``, "Scale streams";
``make_streams.py`` there makes them). :class:`Replay` is the scale's end of the line: a
:class:`~firmware_bridge.sim.pty.PtyDevice` that writes each chunk when its time comes -- in a polled
format only in answer to the request the sidecar names (``SI``, ``Q``, ``T``, ``Z``), in the
streaming format on its own -- while the adapter reads through a real
:class:`~firmware_bridge.transport.SerialTransport` on pyserial.

**Time runs ten times faster** (:data:`TIME_SCALE`) so that 27 streams replay in a few seconds:
chunk delays, the adapter's poll interval, its reply and command timeouts and each call's
timeout are all scaled alike. A pty moves bytes at once; the 9600 baud wire time of a line
(19 bytes: 20 ms) is not emulated.

**The streaming format starts on the adapter's flush.** Each ``stable_weight`` call first drops
what was streamed while nobody listened; the replay starts a step's chunks only once the adapter
has done so (the port tells it: :class:`FlushReportingSerial`), so which lines the adapter sees
does not depend on how fast this machine is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import serial

from firmware_bridge.codecs.scales import CommandLineDecoder, ScaleCommand
from firmware_bridge.scale import SerialScale
from firmware_bridge.sim.pty import PtyDevice
from firmware_bridge.transport import SerialTransport
from valuation_terminal.scale import ScaleFault, ScaleOverload, ScaleUnstable

STREAMS = Path(__file__).parent / "data" / "scale_streams"
SIDECARS = sorted(STREAMS.glob("*.json"))
SCENARIOS = {
    "settling",
    "noisy",
    "noisy-never",
    "overload",
    "fault",
    "tare",
    "zero",
    "drifting",
    "line-noise",
}
FORMATS = {"sics", "and", "continuous"}

TIME_SCALE = 0.1
"""Replay time per recorded second."""
POLL_S = 0.1 * TIME_SCALE  # the adapter's default 0.1 s poll interval
STREAM_POLL_S = 1.0 * TIME_SCALE  # streaming: R only after 2 s of silence (none here)
REPLY_TIMEOUT_S = 1.5 * TIME_SCALE  # an unusable reply costs this before the next poll
COMMAND_TIMEOUT_S = 5.0 * TIME_SCALE  # the adapter's default, scaled


@dataclass(frozen=True)
class Chunk:
    """Bytes the scale writes at once, ``delay_s`` (replay time) after the previous chunk."""

    delay_s: float
    data: bytes


@dataclass(frozen=True)
class Step:
    """One call of the adapter, what the scale sends meanwhile, and the documented outcome."""

    call: str
    request: str | None
    timeout_s: float | None
    expect: dict[str, Any]
    chunks: list[Chunk]


@dataclass(frozen=True)
class Recording:
    """A stream file and its sidecar."""

    name: str
    fmt: str
    sidecar: dict[str, Any]
    steps: list[Step]


def load(sidecar_path: Path) -> Recording:
    """Read a sidecar and cut its ``.bin`` into the chunks it lists (checked against sha256)."""
    sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    data = (STREAMS / sidecar["bytes"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sidecar["sha256"], sidecar_path.name
    steps = []
    offset = 0
    for step in sidecar["steps"]:
        chunks = []
        for delay_ms, size in step["lines"]:
            chunks.append(Chunk(delay_ms / 1000 * TIME_SCALE, data[offset : offset + size]))
            offset += size
        steps.append(
            Step(step["call"], step.get("request"), step.get("timeout_s"), step["expect"], chunks)
        )
    assert offset == len(data), f"{sidecar_path.name}: chunk sizes do not add up to the file"
    return Recording(sidecar_path.stem, sidecar["format"], sidecar, steps)


class FlushReportingSerial(serial.Serial):  # type: ignore[misc]
    """pyserial's own port, which tells the replay each time the adapter drops unread input."""

    def __init__(self, *args: Any, on_flush: Callable[[], None], **kwargs: Any) -> None:
        self._on_flush = on_flush
        super().__init__(*args, **kwargs)

    def reset_input_buffer(self) -> None:
        super().reset_input_buffer()
        self._on_flush()


class Replay:
    """The scale's end of the line: plays a recording into a pty, step by step.

    Polled formats: each chunk answers the next request the adapter sends, and must be the
    step's ``request`` (anything else is noted in :attr:`errors` and left unanswered); it goes
    out no earlier than its delay after the previous chunk. Streaming format: a step's first
    chunk waits for the adapter's flush, and chunks with delay 0 go out in the same write as the
    one before.
    """

    def __init__(self, path: Path, recording: Recording) -> None:
        self.recording = recording
        self.device = PtyDevice(path, self._receive)
        self.sent = [0] * len(recording.steps)
        """Chunks written (or being written) per step."""
        self.commands: list[str] = []
        """Every command line the adapter sent, by name."""
        self.errors: list[str] = []
        self._decoder = CommandLineDecoder()
        self._requests: queue.Queue[str] = queue.Queue()
        self._flushes = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name=f"replay:{path.name}", daemon=True)

    @property
    def path(self) -> Path:
        return self.device.path

    def port(self, url: str, **options: Any) -> FlushReportingSerial:
        """The ``serial_for_url`` the adapter's transport opens its port with."""
        return FlushReportingSerial(url, on_flush=self._flushed, **options)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout=2)
        self.device.stop()

    def _flushed(self) -> None:
        with self._changed:
            self._flushes += 1
            self._changed.notify_all()

    def _receive(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if isinstance(event, ScaleCommand):
                self.commands.append(event.name)
                self._requests.put(event.name)

    def _next_request(self) -> str | None:
        while not self._stop.is_set():
            try:
                return self._requests.get(timeout=0.02)
            except queue.Empty:
                continue
        return None

    def _flush_after(self, seen: int) -> bool:
        with self._changed:
            while self._flushes <= seen and not self._stop.is_set():
                self._changed.wait(0.05)
        return not self._stop.is_set()

    def _play(self) -> None:
        with self._changed:
            seen = self._flushes
        last = time.monotonic()
        for number, step in enumerate(self.recording.steps):
            chunks = list(step.chunks)
            while chunks:
                if step.request is not None:
                    name = self._next_request()
                    if name is None:
                        return
                    if name != step.request:
                        self.errors.append(f"step {number} ({step.call}): got {name!r}")
                        continue
                    group = [chunks.pop(0)]
                else:
                    if len(chunks) == len(step.chunks):
                        if not self._flush_after(seen):
                            return
                        last = time.monotonic()
                    group = [chunks.pop(0)]
                    while chunks and chunks[0].delay_s == 0:
                        group.append(chunks.pop(0))
                if self._stop.wait(max(0.0, last + group[0].delay_s - time.monotonic())):
                    return
                self.sent[number] += len(group)  # before the write: the adapter may be quicker
                self.device.write(b"".join(chunk.data for chunk in group))
                last = time.monotonic()
                with self._changed:
                    seen = self._flushes


def perform(scale: SerialScale, step: Step) -> dict[str, Any]:
    """Run one step's call; its outcome in the sidecar's terms (``lines_read`` aside)."""
    try:
        if step.call == "stable_weight":
            assert step.timeout_s is not None
            weight = scale.stable_weight(timeout_s=step.timeout_s * TIME_SCALE)
            assert weight.grams == weight.milligrams / 1000
            return {
                "outcome": "weight",
                "milligrams": weight.milligrams,
                "is_net": weight.is_net,
                "readings": weight.readings,
            }
        if step.call == "tare":
            scale.tare()
        else:
            assert step.call == "zero", step.call
            scale.zero()
        return {"outcome": "ok"}
    except ScaleUnstable:
        return {"outcome": "unstable"}
    except ScaleOverload:
        return {"outcome": "overload"}
    except ScaleFault as fault:
        return {"outcome": "fault", "kind": fault.kind}


@pytest.mark.parametrize("sidecar", SIDECARS, ids=[path.stem for path in SIDECARS])
def test_a_recorded_stream_gives_its_documented_outcome(sidecar: Path, tmp_path: Path) -> None:
    recording = load(sidecar)
    replay = Replay(tmp_path / "ttyScale", recording)
    replay.device.start()
    adapter = recording.sidecar["adapter"]
    streaming = recording.fmt == "continuous"
    scale = SerialScale(
        SerialTransport(str(replay.path), baudrate=9600, serial_for_url=replay.port),
        recording.fmt,  # type: ignore[arg-type]
        agree=adapter["agree"],
        tolerance_mg=adapter["tolerance_mg"],
        poll_s=STREAM_POLL_S if streaming else POLL_S,
        reply_timeout_s=REPLY_TIMEOUT_S,
        command_timeout_s=COMMAND_TIMEOUT_S,
    )
    try:
        scale.transport.open()
        replay.start()
        for number, step in enumerate(recording.steps):
            commands_before = len(replay.commands)
            outcome = perform(scale, step)
            expect = dict(step.expect)
            lines_read = expect.pop("lines_read")
            where = f"step {number} ({step.call}) of {recording.name}"
            assert outcome == expect, where
            if step.request is not None or expect["outcome"] == "unstable":
                # A polled scale sends only what it is asked for: exactly this many chunks.
                assert replay.sent[number] == lines_read, where
            else:
                # A streaming scale may already have sent its next line; not fewer, though.
                assert replay.sent[number] >= lines_read, where
            if expect.get("kind") == "unsupported":
                assert replay.commands[commands_before:] == [], where  # nothing was sent
        assert replay.errors == []
    finally:
        replay.stop()
        scale.close()


def test_every_scenario_is_recorded_in_every_format() -> None:
    recorded = {tuple(path.stem.rsplit(".", 1)) for path in SIDECARS}
    assert recorded == {(scenario, fmt) for scenario in SCENARIOS for fmt in FORMATS}
    assert {path.name for path in STREAMS.glob("*.bin")} == {
        f"{path.stem}.bin" for path in SIDECARS
    }


def test_each_outcome_the_adapter_can_reach_is_recorded() -> None:
    outcomes = {
        (step["call"], step["expect"]["outcome"])
        for path in SIDECARS
        for step in json.loads(path.read_text(encoding="utf-8"))["steps"]
    }
    assert outcomes >= {
        ("stable_weight", "weight"),
        ("stable_weight", "unstable"),
        ("stable_weight", "overload"),
        ("stable_weight", "fault"),
        ("tare", "ok"),
        ("tare", "fault"),
        ("zero", "ok"),
        ("zero", "fault"),
    }


def test_the_generator_makes_these_files_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("make_streams", STREAMS / "make_streams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_streams", module)
    spec.loader.exec_module(module)
    written = module.write(tmp_path)
    assert {path.name for path in written} == {
        path.name for path in STREAMS.iterdir() if path.suffix in (".bin", ".json")
    }
    for path in written:
        assert path.read_bytes() == (STREAMS / path.name).read_bytes(), path.name
