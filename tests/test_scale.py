"""The serial scale adapter against a simulated scale on a pseudo-terminal, in all three formats.

Real bytes through a real pty: :class:`~firmware_bridge.sim.scale.ScaleSim` speaks MT-SICS, the
A&D standard format or an indicator's continuous output (made by the codec's device side), and
:class:`~firmware_bridge.scale.SerialScale` reads it through a real
:class:`~firmware_bridge.transport.SerialTransport`. Loads settle in ``SETTLE_S``; nothing waits
on a bare sleep where a poll works.
"""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
from test_serial_bus import wait_until

import valuation_terminal.scale as port
from firmware_bridge.scale import ScaleFormat, SerialScale, describe
from firmware_bridge.sim.pty import PtyDevice
from firmware_bridge.sim.scale import FailureKind, ScaleSim
from firmware_bridge.transport import SerialTransport
from linli.cli import main as linli_main
from valuation_terminal.scale import (
    Scale,
    ScaleError,
    ScaleFault,
    ScaleOverload,
    ScaleUnavailable,
    ScaleUnstable,
    StableWeight,
)

FORMATS: tuple[ScaleFormat, ...] = get_args(ScaleFormat)
COMMANDED: tuple[ScaleFormat, ...] = ("sics", "and")  # the formats with tare and zero commands
SETTLE_S = 0.15
POLL_S = 0.02


@dataclass
class Rig:
    """A simulated scale and the adapter reading it."""

    sim: ScaleSim
    scale: SerialScale


class Rigs:
    """Makes rigs on a temporary directory and takes them all down afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.made: list[Rig] = []

    def __call__(self, fmt: ScaleFormat, *, scale: dict[str, Any] | None = None, **sim: Any) -> Rig:
        options: dict[str, Any] = {"settle_s": SETTLE_S, "stream_every_s": POLL_S} | sim
        simulated = ScaleSim(self.tmp_path / f"ttyScale{len(self.made)}", fmt, **options).start()
        transport = SerialTransport(str(simulated.path), baudrate=9600, reopen_every_s=0.05)
        adapter = SerialScale(transport, fmt, poll_s=POLL_S, **(scale or {}))
        rig = Rig(simulated, adapter)
        self.made.append(rig)
        return rig

    def close(self) -> None:
        for rig in self.made:
            rig.scale.close()
            rig.sim.stop()


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[Rigs]:
    """A factory of rigs: ``rigs("sics", noise_mg=0, scale={"agree": 5})``."""
    made = Rigs(tmp_path)
    yield made
    made.close()


@pytest.fixture(params=FORMATS)
def rig(request: pytest.FixtureRequest, rigs: Rigs) -> Rig:
    """A scale in each format, its pan empty."""
    return rigs(request.param)


def assert_near(weight: StableWeight, grams: float, tolerance_mg: int) -> None:
    assert abs(weight.milligrams - round(grams * 1000)) <= tolerance_mg, weight
    assert weight.grams == weight.milligrams / 1000


# --- weighing ------------------------------------------------------------------------------


def test_a_placed_load_gives_its_stable_weight(rig: Rig) -> None:
    rig.sim.place(1234.5)
    weight = rig.scale.stable_weight(timeout_s=3)
    assert_near(weight, 1234.5, rig.scale.tolerance_mg)
    assert weight.is_net is False
    assert weight.readings == 3


def test_no_weight_is_taken_while_the_load_settles(rig: Rig) -> None:
    rig.sim.place(2500.0)
    started = time.monotonic()
    weight = rig.scale.stable_weight(timeout_s=3)
    assert time.monotonic() - started >= SETTLE_S * 0.9  # not before the pan settled
    assert_near(weight, 2500.0, rig.scale.tolerance_mg)  # mid-ramp readings were far off
    assert rig.sim.sent["unstable"] > 0  # the adapter did see the moving load


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_creeping_load_is_not_taken_although_its_readings_agree(
    rigs: Rigs, fmt: ScaleFormat
) -> None:
    # 10 g creeping on over 0.5 s: consecutive readings lie within the 2 g tolerance of each
    # other all the way, so only the scale's "unstable" flag keeps them out of the weight.
    rig = rigs(fmt, settle_s=0.5)
    rig.sim.place(10.0)
    weight = rig.scale.stable_weight(timeout_s=3)
    assert_near(weight, 10.0, 300)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stable_flags_alone_do_not_make_a_weight(rigs: Rigs, fmt: ScaleFormat) -> None:
    # A sloppy indicator: every settled reading flagged stable, scattered by 3 g of noise.
    sloppy = {"resolution_mg": 1, "noise_mg": 3000, "stability_band_mg": 1e9}
    strict = rigs(fmt, scale={"tolerance_mg": 10}, **sloppy)
    with pytest.raises(ScaleUnstable, match="no stable weight"):
        strict.scale.stable_weight(timeout_s=0.5)
    assert strict.sim.sent["stable"] >= 10
    lenient = rigs(fmt, scale={"tolerance_mg": 30_000}, **sloppy)
    assert_near(lenient.scale.stable_weight(timeout_s=2), 0.0, 30_000)


class ScriptedScale:
    """An MT-SICS balance that answers each command with the next of a fixed list of lines."""

    def __init__(self, path: Path, lines: list[bytes]) -> None:
        self.lines = list(lines)
        self.device = PtyDevice(path, self._receive).start()

    def _receive(self, data: bytes) -> None:
        for _ in range(data.count(b"\n")):
            if self.lines:
                self.device.write(self.lines.pop(0) + b"\r\n")


def test_the_weight_is_the_median_of_the_agreeing_readings(tmp_path: Path) -> None:
    balance = ScriptedScale(
        tmp_path / "ttyScripted",
        [
            b"S D    250.000 g",  # moving: not counted
            b"S S    180.000 g",  # stable, but the next readings disagree with it: dropped
            b"S S    100.000 g",
            b"S S    103.000 g",
            b"S S    101.000 g",  # the median of the five
            b"S S     99.000 g",
            b"S S    102.500 g",
            b"S S    500.000 g",  # never asked for
        ],
    )
    transport = SerialTransport(str(balance.device.path), baudrate=9600)
    scale = SerialScale(transport, "sics", agree=5, tolerance_mg=5000, poll_s=POLL_S)
    try:
        weight = scale.stable_weight(timeout_s=3)
    finally:
        scale.close()
        balance.device.stop()
    assert weight == StableWeight(101.0, 101_000, is_net=False, readings=5)
    assert balance.lines == [b"S S    500.000 g"]


def test_a_load_that_keeps_moving_gives_unstable(rig: Rig) -> None:
    stop = threading.Event()

    def fidget() -> None:
        grams = 800.0
        while not stop.wait(SETTLE_S / 4):
            grams = 820.0 if grams == 800.0 else 800.0
            rig.sim.place(grams)

    rig.sim.place(800.0)
    stable_before = rig.sim.sent["stable"]  # the empty pan's, streamed before anyone asked
    hand = threading.Thread(target=fidget, daemon=True)
    hand.start()
    try:
        with pytest.raises(ScaleUnstable, match="no stable weight"):
            rig.scale.stable_weight(timeout_s=0.6)
    finally:
        stop.set()
        hand.join()
    assert rig.sim.sent["unstable"] >= 5
    assert rig.sim.sent["stable"] == stable_before


def test_an_overload_is_reported_at_once(rig: Rig) -> None:
    rig.sim.place(rig.sim.capacity_mg / 1000 + 500)
    started = time.monotonic()
    with pytest.raises(ScaleOverload):
        rig.scale.stable_weight(timeout_s=5)
    assert time.monotonic() - started < 2  # not after waiting out the timeout
    assert rig.sim.sent["overload"] >= 1


def test_an_underload_is_a_fault(rig: Rig) -> None:
    rig.sim.place(-2000.0)  # the pan lifted off
    with pytest.raises(ScaleFault) as caught:
        rig.scale.stable_weight(timeout_s=5)
    assert caught.value.kind == "underload"


def test_a_silent_scale_gives_unstable_naming_the_silence(rigs: Rigs) -> None:
    # An indicator that only answers R, read as if it spoke MT-SICS: SI goes unanswered.
    rig = rigs("continuous", stream_every_s=None)
    rig.scale = SerialScale(rig.scale.transport, "sics", poll_s=POLL_S, reply_timeout_s=0.1)
    with pytest.raises(ScaleUnstable, match="no reply"):
        rig.scale.stable_weight(timeout_s=0.4)
    assert rig.sim.commands["SI"] >= 2  # polled again after each silence


# --- the continuous format -------------------------------------------------------------------


def test_a_stream_read_late_gives_the_weight_now_not_a_stale_one(rigs: Rigs) -> None:
    rig = rigs("continuous", scale={"agree": 1})  # one stale stable line would be taken
    rig.scale.transport.open()
    wait_until(lambda: rig.sim.sent["stable"] >= 15, "stale stable 0 g lines streamed, unread")
    rig.sim.place(900.0)
    assert_near(rig.scale.stable_weight(timeout_s=3), 900.0, rig.scale.tolerance_mg)


def test_an_indicator_that_does_not_stream_is_asked_with_r(rigs: Rigs) -> None:
    rig = rigs("continuous", stream_every_s=None)
    rig.sim.place(321.0)
    assert_near(rig.scale.stable_weight(timeout_s=3), 321.0, rig.scale.tolerance_mg)
    assert rig.sim.commands["R"] >= 3


def test_the_continuous_format_has_no_tare_or_zero_command(rigs: Rigs) -> None:
    rig = rigs("continuous")
    for command in (rig.scale.tare, rig.scale.zero):
        with pytest.raises(ScaleFault) as caught:
            command()
        assert caught.value.kind == "unsupported"
    assert sum(rig.sim.commands.values()) == 0  # nothing was sent


def test_the_continuous_format_reports_a_tare_made_at_the_indicator(rigs: Rigs) -> None:
    rig = rigs("continuous")
    rig.sim.place(200.0)
    wait_until(rig.sim.press_tare, "the indicator accepted its TARE key")
    rig.sim.place(700.0)
    weight = rig.scale.stable_weight(timeout_s=3)
    assert weight.is_net is True
    assert_near(weight, 500.0, rig.scale.tolerance_mg)
    rig.sim.remove()
    wait_until(rig.sim.press_zero, "the indicator accepted its ZERO key")  # clears the tare
    empty = rig.scale.stable_weight(timeout_s=3)
    assert (empty.is_net, abs(empty.milligrams) <= 300) == (False, True), empty


# --- tare and zero -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", COMMANDED)
def test_tare_then_place_gives_a_net_weight(rigs: Rigs, fmt: ScaleFormat) -> None:
    rig = rigs(fmt)
    rig.sim.place(200.0)  # the container
    rig.scale.tare()  # the scale waits for the container to settle
    assert rig.sim.commands["T"] == 1
    rig.sim.place(700.0)  # container and item
    weight = rig.scale.stable_weight(timeout_s=3)
    assert weight.is_net is True
    assert_near(weight, 500.0, rig.scale.tolerance_mg)


@pytest.mark.parametrize("fmt", COMMANDED)
def test_zero_sets_the_empty_pan_to_zero_and_clears_the_tare(rigs: Rigs, fmt: ScaleFormat) -> None:
    rig = rigs(fmt)
    rig.sim.place(50.0)
    rig.scale.tare()
    assert rig.scale.stable_weight(timeout_s=3).is_net is True
    rig.sim.place(3.0)  # crumbs left on the pan
    rig.scale.zero()
    empty = rig.scale.stable_weight(timeout_s=3)
    assert (empty.is_net, abs(empty.milligrams) <= 300) == (False, True), empty
    rig.sim.place(503.0)
    weight = rig.scale.stable_weight(timeout_s=3)
    assert weight.is_net is False
    assert_near(weight, 500.0, 300)  # 500, not 503: the crumbs are zeroed away


@pytest.mark.parametrize("fmt", COMMANDED)
def test_zero_out_of_range_is_refused(rigs: Rigs, fmt: ScaleFormat) -> None:
    rig = rigs(fmt)
    rig.sim.place(5000.0)  # far more than 4 % of capacity
    with pytest.raises(ScaleFault) as caught:
        rig.scale.zero()
    assert caught.value.kind == "range"


# --- what goes wrong -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [
        ("sics", "syntax"),  # ES
        ("sics", "transmission"),  # ET
        ("sics", "logical"),  # EL
        ("and", "syntax"),  # EC,E01
        ("and", "logical"),  # EC,E07
    ],
)
def test_an_error_reply_is_a_fault_naming_its_kind(
    rigs: Rigs, fmt: ScaleFormat, kind: FailureKind
) -> None:
    rig = rigs(fmt)
    rig.sim.fail_next(kind)
    with pytest.raises(ScaleFault) as caught:
        rig.scale.stable_weight(timeout_s=3)
    assert caught.value.kind == kind
    rig.sim.fail_next(kind)
    with pytest.raises(ScaleFault) as refused:
        rig.scale.tare()
    assert refused.value.kind == kind
    assert rig.scale.stable_weight(timeout_s=3).milligrams == 0  # the next command is answered


@pytest.mark.parametrize("fmt", COMMANDED)
def test_a_busy_scale_is_polled_through_and_a_fault_only_if_it_stays_busy(
    rigs: Rigs, fmt: ScaleFormat
) -> None:
    rig = rigs(fmt)
    rig.sim.fail_next("busy", times=2)
    assert rig.scale.stable_weight(timeout_s=3).milligrams == 0
    rig.sim.fail_next("busy", times=10_000)
    with pytest.raises(ScaleFault) as caught:
        rig.scale.stable_weight(timeout_s=0.3)
    assert caught.value.kind == "busy"


def test_an_unplugged_scale_is_unavailable_until_it_is_back(rig: Rig) -> None:
    rig.sim.place(250.0)
    assert_near(rig.scale.stable_weight(timeout_s=3), 250.0, rig.scale.tolerance_mg)
    rig.sim.unplug()
    with pytest.raises(ScaleUnavailable):
        rig.scale.stable_weight(timeout_s=3)
    rig.sim.replug()
    weights: list[StableWeight] = []

    def weighs() -> bool:
        try:
            weights.append(rig.scale.stable_weight(timeout_s=3))
        except ScaleUnavailable:
            return False
        return True

    wait_until(weighs, "a weight after the adapter was plugged back in")
    assert_near(weights[0], 250.0, rig.scale.tolerance_mg)


# --- the port ----------------------------------------------------------------------------------


def test_the_port_imports_no_io_library() -> None:
    tree = ast.parse(Path(port.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses", "typing"}, imported


def test_the_errors_share_one_root_and_the_matching_builtins() -> None:
    assert issubclass(ScaleUnstable, ScaleError) and issubclass(ScaleUnstable, TimeoutError)
    assert issubclass(ScaleUnavailable, ScaleError) and issubclass(
        ScaleUnavailable, ConnectionError
    )
    assert issubclass(ScaleOverload, ScaleError) and issubclass(ScaleFault, ScaleError)
    fault = ScaleFault("logical", "EL")
    assert (fault.kind, str(fault)) == ("logical", "logical: EL")


def test_a_fake_scale_needs_no_inheritance() -> None:
    class FakeScale:
        def stable_weight(self, timeout_s: float = 10.0) -> StableWeight:
            return StableWeight.from_milligrams(500_000, is_net=False, readings=3)

        def tare(self) -> None: ...

        def zero(self) -> None: ...

        def close(self) -> None: ...

    def weigh(scale: Scale) -> float:
        return scale.stable_weight().grams

    assert weigh(FakeScale()) == 500.0
    assert describe(FakeScale().stable_weight()) == "500 g (gross, stable over 3 readings)"


# --- linli scale read ----------------------------------------------------------------------


def test_linli_scale_read_prints_the_weight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = ScaleSim(tmp_path / "ttyScale", "sics", settle_s=SETTLE_S).start()
    try:
        sim.place(1234.5)
        argv = ["scale", "read", "--port", str(sim.path), "--format", "sics"]
        code = linli_main([*argv, "--count", "2", "--data-dir", str(tmp_path)])
    finally:
        sim.stop()
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == ["1234.5 g (gross, stable over 3 readings)"] * 2


def test_linli_scale_read_reports_a_scale_error_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = ScaleSim(tmp_path / "ttyScale", "and", settle_s=SETTLE_S).start()
    try:
        sim.place(9000.0)  # above the 6 kg capacity
        argv = ["scale", "read", "--port", str(sim.path), "--format", "and"]
        code = linli_main([*argv, "--data-dir", str(tmp_path)])
    finally:
        sim.stop()
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if line.startswith("scale on")]
    assert len(errors) == 1 and "ScaleOverload" in errors[0], captured.err


def test_linli_scale_read_without_the_port_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["scale", "read", "--port", str(tmp_path / "missing"), "--format", "continuous"]
    assert linli_main([*argv, "--data-dir", str(tmp_path)]) == 2
    assert "cannot use" in capsys.readouterr().err
