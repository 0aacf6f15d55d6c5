"""Make the recorded scale streams of this directory, byte for byte the same on every run.

Run from the repository root (standard library only; no argument rewrites this directory)::

    python tests/data/scale_streams/make_streams.py [OUT_DIR]

For each scenario and line format it writes ``<scenario>.<format>.bin`` -- the bytes the scale
sends, exactly as they come off its RS232 port (9600 baud 8N1) -- and ``<scenario>.<format>.json``,
the sidecar: the timing of every chunk, what the host asks before each chunk (polled formats), and
the outcome :class:`firmware_bridge.scale.SerialScale` must reach. ``tests/test_scale_streams.py``
replays each file through a real pseudo-terminal and checks that outcome.

**Synthesized, not captured.** No capture of a real scale was available, so the readings are
computed from published characteristics of load cells and weighing indicators (the sidecar's
``sources``); the parameters (natural frequency, damping, motion band, noise) are chosen, not
measured:

- *A placed load* follows the step response of an underdamped second-order system (overshoot,
  damped oscillation): ``1 - exp(-zeta*w*t) * (cos(wd*t) + zeta/sqrt(1-zeta**2) * sin(wd*t))``
  with ``f_n = 2 Hz``, ``zeta = 0.45`` (20 % overshoot, 2 % band after ``4/(zeta*w)`` = 0.7 s),
  as the display of a filtered indicator shows it, sampled every 100 ms (10 lines a second).
- *The stable flag* is the scale's own motion detection, computed from the displayed values as
  indicators do it: a reading is stable when it lies within ``motion_band_mg`` of every reading of
  the last ``motion_window`` lines (Unipulse F159: compare with the data of the last second;
  Flintec DAD 143: a no-motion range in divisions and a no-motion time).
- *Noise* is Gaussian (sigma 0.4 division, seeded), added before the display rounds to one
  division. *Vibration* (noisy scenarios) is a 5 Hz sway sampled at 10 Hz: readings alternate
  above and below the load. *Creep* is a decaying exponential (NIST's analysis of load-cell creep
  fits exponential terms; here the load itself settles, e.g. a soft bag slumping).
- *Line noise* is written by hand: a truncated line, a byte a framing error turned into 0xFF, a
  flipped digit (a plausible weight: none of the formats has a checksum), and for the streaming
  format a burst of lines that a late host finds waiting together.

The expected outcome is computed by :func:`expected`, a direct statement of the adapter's
documented rule (a weight counts when the scale flags it stable and ``agree`` consecutive stable
readings lie within ``tolerance_mg``; the median, lower for an even count), fed with what each
line *means* -- which this generator knows because it made the line -- not with what a decoder
makes of its bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
FORMATS = ("sics", "and", "continuous")
LINE_MS = 100  # 10 lines a second: a common indicator output rate, and the adapter's poll rate
AGREE = 3  # the adapter's defaults (SerialScale.open)
TOLERANCE_MG = 2000
F_N_HZ = 2.0
ZETA = 0.45
NOISE_DIVISIONS = 0.4
TAIL_LINES = 3  # a streaming indicator goes on sending after the host has its weight

SOURCES = [
    {
        "what": "motion detection: a reading is stable when it stays within a range of the "
        "readings of the last second",
        "url": "https://manualshive.com/en/manual/unipulse/f159/f159_operation-manual_3887529-61.html",
        "title": "Unipulse F159 operation manual, 5-4 Motion Detection (MD)",
    },
    {
        "what": "no-motion range (in divisions) and no-motion time (ms) set the stable flag",
        "url": "https://www.easymanua.ls/flintec/dad143-series/manual?p=20",
        "title": "Flintec DAD 143 user manual, 6.6 Filter & Motion Detection",
    },
    {
        "what": "a weighing filter's step response: 63 % after rate x steps, 99 % after 5x, "
        "99.9 % after 7x",
        "url": "https://www.manualslib.com/manual/1431844/Mantracourt-Dscusb.html?page=16",
        "title": "Mantracourt DSCUSB user manual, dynamic filter",
    },
    {
        "what": "second-order step response: settling time about 4/(zeta*w_n) to a 2 % band",
        "url": "https://probsee.com/p/Settling_time",
        "title": "Settling time",
    },
    {
        "what": "load-cell creep is bounded over 30 minutes (0.7 MPE); creep curves are fitted "
        "with exponential terms",
        "url": "https://metanorma.github.io/mn-samples-oiml/documents/r060/1/firelight/"
        "_5e7bc85b-6dbc-cb31-89d0-bd1357c24c0c/sec-5_5/sec-5_5_1",
        "title": "OIML R 60-1, 5.5.1 Creep; NIST NTEP creep data (PubMed 27805151)",
    },
]


# --- what a line means --------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A weight line: ``stable``, ``unstable``, ``overload`` (``mg`` None) and gross or net."""

    status: Literal["stable", "unstable", "overload"]
    mg: int | None
    is_net: bool


@dataclass(frozen=True)
class Fault:
    """An error the scale reports (the adapter raises ``ScaleFault(kind)``)."""

    kind: str


@dataclass(frozen=True)
class Skip:
    """Bytes no decoder can use; ``eats_next``: a lost line end glues the next line to it."""

    why: str
    eats_next: bool = False


@dataclass(frozen=True)
class Ack:
    """A tare or zero acknowledgement."""


Meaning = Reading | Fault | Skip | Ack


@dataclass(frozen=True)
class Line:
    """One chunk as the scale writes it: ``delay_ms`` after the previous one, its bytes, its sense."""

    delay_ms: int
    data: bytes
    meaning: Meaning


# --- the scales ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """A scale: capacity, one display division, and its motion detection."""

    fmt: str
    capacity_mg: int
    division_mg: int
    motion_band_mg: int
    motion_window: int = 5  # lines compared: half a second at 10 lines a second

    def loosened(self, band_mg: int, window: int) -> Scale:
        """The same scale with its stability setting at its loosest (noisy, drifting)."""
        return Scale(self.fmt, self.capacity_mg, self.division_mg, band_mg, window)

    def describe(self) -> dict[str, Any]:
        return {
            "capacity_g": self.capacity_mg / 1000,
            "division_mg": self.division_mg,
            "motion_band_mg": self.motion_band_mg,
            "motion_window_lines": self.motion_window,
        }


SCALES = {
    "sics": Scale("sics", 6_200_000, 100, 300),  # an MT-SICS balance, 6.2 kg x 0.1 g
    "and": Scale("and", 6_100_000, 100, 300),  # an A&D-format balance, 6.1 kg x 0.1 g
    "continuous": Scale("continuous", 6_000_000, 1000, 3000),  # an indicator, 6 kg x 1 g
}
LOOSE_BAND_MG = 5000  # "stability: fast" -- the flag comes on while readings still swing


def encode(fmt: str, reading: Reading) -> bytes:
    """The line a scale of ``fmt`` sends for ``reading`` (CR LF included)."""
    if fmt == "sics":
        if reading.status == "overload":
            return b"S +\r\n"
        code = "S" if reading.status == "stable" else "D"
        return f"S {code} {_grams(reading.mg, 1):>10} g\r\n".encode("ascii")
    if fmt == "and":
        if reading.status == "overload":
            return b"OL,+9999999E+19\r\n"
        code = "ST" if reading.status == "stable" else "US"
        value = _grams(reading.mg, 1)
        sign, digits = ("-", value[1:]) if value.startswith("-") else ("+", value)
        return f"{code},{sign}{digits.zfill(8)}  g\r\n".encode("ascii")
    kind = "NT" if reading.is_net else "GS"
    if reading.status == "overload":
        return f"OL,{kind},+99999999kg\r\n".encode("ascii")
    code = "ST" if reading.status == "stable" else "US"
    assert reading.mg is not None
    sign = "-" if reading.mg < 0 else "+"
    return f"{code},{kind},{sign}{abs(reading.mg) / 1_000_000:08.3f}kg\r\n".encode("ascii")


def _grams(mg: int | None, decimals: int) -> str:
    assert mg is not None
    return f"{mg / 1000:.{decimals}f}"


def step_response(t_s: float) -> float:
    """The unit step response of the pan and display: 0 at placement, 1 once settled."""
    if t_s <= 0:
        return 0.0
    w = 2 * math.pi * F_N_HZ
    wd = w * math.sqrt(1 - ZETA**2)
    decay = math.exp(-ZETA * w * t_s)
    return 1 - decay * (math.cos(wd * t_s) + ZETA / math.sqrt(1 - ZETA**2) * math.sin(wd * t_s))


@dataclass
class Display:
    """What the scale shows, line by line: load plus noise, rounded, flagged by motion detection."""

    scale: Scale
    rng: random.Random
    history: list[int] = field(default_factory=lambda: [0] * 10)
    tare_mg: int = 0
    is_net: bool = False

    def show(self, load_mg: float, sway_mg: float = 0.0) -> Reading:
        """The reading for a gross ``load_mg`` (plus ``sway_mg`` of vibration)."""
        scale = self.scale
        noise = self.rng.gauss(0.0, NOISE_DIVISIONS * scale.division_mg)
        gross = load_mg + sway_mg + noise
        if gross > scale.capacity_mg + 9 * scale.division_mg:
            self.history.append(scale.capacity_mg)
            return Reading("overload", None, self.is_net)
        shown = round(gross / scale.division_mg) * scale.division_mg - self.tare_mg
        past = self.history[-scale.motion_window :]
        is_stable = all(abs(shown - before) <= scale.motion_band_mg for before in past)
        self.history.append(shown)
        return Reading("stable" if is_stable else "unstable", shown, self.is_net)

    def tare(self) -> int:
        """Tare what the display shows now (gross); later readings are net."""
        self.tare_mg += self.history[-1]
        self.is_net = True
        self.history = [0] * len(self.history)
        return self.tare_mg

    def zero(self) -> None:
        """Zero the pan: what is on it now reads 0 gross, and a tare is cleared."""
        self.tare_mg = 0
        self.is_net = False


# --- the adapter's rule, stated directly --------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """The documented outcome of one call, and how many chunks the scale sent until then."""

    outcome: Literal["weight", "unstable", "overload", "fault", "ok"]
    lines_read: int
    milligrams: int | None = None
    is_net: bool | None = None
    readings: int | None = None
    kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": self.outcome}
        for name in ("milligrams", "is_net", "readings", "kind"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["lines_read"] = self.lines_read
        return out


def expected(lines: list[Line], fmt: str) -> Expect:
    """What ``stable_weight`` makes of ``lines``: the first ``AGREE`` consecutive stable readings
    within ``TOLERANCE_MG`` (their lower median), an overload, a fault, or nothing (unstable).

    Unusable bytes are skipped and do not break a run of readings; a truncated line in a stream
    takes the next line with it (the two become one unusable line). An unstable reading or a
    switch between gross and net starts the run again.
    """
    run: list[tuple[int, bool]] = []
    eaten = False
    for number, line in enumerate(lines, start=1):
        meaning = line.meaning
        if eaten:
            eaten = False
            continue
        if isinstance(meaning, Skip):
            eaten = meaning.eats_next and fmt == "continuous"
            continue
        if isinstance(meaning, Fault):
            return Expect("fault", number, kind=meaning.kind)
        if isinstance(meaning, Ack):
            continue
        if meaning.status == "overload":
            return Expect("overload", number)
        if meaning.status == "unstable":
            run.clear()
            continue
        assert meaning.mg is not None
        if run and run[-1][1] != meaning.is_net:
            run.clear()
        run.append((meaning.mg, meaning.is_net))
        last = [mg for mg, _ in run[-AGREE:]]
        if len(last) == AGREE and max(last) - min(last) <= TOLERANCE_MG:
            weight = statistics.median_low(last)
            return Expect("weight", number, weight, meaning.is_net, AGREE)
    return Expect("unstable", len(lines))


# --- building streams --------------------------------------------------------------------------


@dataclass
class Step:
    """One call of the adapter and the chunks the scale sends meanwhile."""

    call: Literal["stable_weight", "tare", "zero"]
    lines: list[Line]
    expect: Expect
    timeout_s: float | None = None


def request_for(fmt: str, call: str) -> str | None:
    """What the adapter sends before each chunk of a step (``None``: the scale streams)."""
    if fmt == "continuous":
        return None
    if call == "stable_weight":
        return "SI" if fmt == "sics" else "Q"
    return "T" if call == "tare" else "Z"


def readings(display: Display, loads: list[float], sways: list[float] | None = None) -> list[Line]:
    """Lines for a series of loads, one every ``LINE_MS`` (the first 50 ms after the change)."""
    sways = sways or [0.0] * len(loads)
    out = []
    for index, (load, sway) in enumerate(zip(loads, sways, strict=True)):
        reading = display.show(load, sway)
        out.append(Line(50 if index == 0 else LINE_MS, encode(display.scale.fmt, reading), reading))
    return out


def placed(start_mg: float, target_mg: float, count: int, lowered_s: float = 0.0) -> list[float]:
    """Loads sampled from the moment a load starts to change from ``start_mg`` to ``target_mg``.

    ``lowered_s``: the load is let down evenly over this time instead of dropped at once (the
    response is then the mean of the step responses over that time, by superposition).
    """
    parts = 20 if lowered_s > 0 else 1

    def response(t_s: float) -> float:
        return sum(step_response(t_s - lowered_s * k / parts) for k in range(parts)) / parts

    return [
        start_mg + (target_mg - start_mg) * response(0.05 + LINE_MS / 1000 * index)
        for index in range(count)
    ]


def weigh(lines: list[Line], fmt: str, *, last: bool, timeout_s: float = 20.0) -> Step:
    """A ``stable_weight`` step over ``lines``, cut where the adapter stops reading.

    A polled scale sends nothing it is not asked for; a streaming one goes on after the host's
    last read only in the stream's last step (the next step starts from a flush anyway).
    """
    outcome = expected(lines, fmt)
    keep = outcome.lines_read
    if last and fmt == "continuous" and outcome.outcome != "unstable":
        keep += TAIL_LINES
    if outcome.outcome == "unstable":
        # Long enough to hear every line even when a slow poll stretches each interval to
        # double, so that the adapter gives up after the whole stream, not halfway.
        timeout_s = (2 * sum(line.delay_ms for line in lines) + 1000) / 1000
    return Step("stable_weight", lines[:keep], outcome, timeout_s)


def weigh_first(display: Display, loads: list[float]) -> Step:
    """A ``stable_weight`` step that is not the stream's last: readings are made one at a time
    and stop where the adapter stops reading, so what the scale shows next (and the value it
    tares) follows on from that moment."""
    fmt = display.scale.fmt
    lines: list[Line] = []
    for load in loads:
        reading = display.show(load)
        lines.append(Line(50 if not lines else LINE_MS, encode(fmt, reading), reading))
        if expected(lines, fmt).outcome != "unstable":
            break
    return weigh(lines, fmt, last=False)


def command(fmt: str, call: Literal["tare", "zero"], ack: bytes | None, delay_ms: int) -> Step:
    """A tare or zero: the acknowledgement, or (streaming format) nothing sent at all."""
    if fmt == "continuous" or ack is None:
        return Step(call, [], Expect("fault", 0, kind="unsupported"))
    return Step(call, [Line(delay_ms, ack, Ack())], Expect("ok", 1))


@dataclass
class Stream:
    """One scenario in one format: its story and its steps."""

    scenario: str
    fmt: str
    scale: Scale
    story: str
    steps: list[Step]


def settling(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt]
    display = Display(scale, rng)
    lines = readings(display, placed(0, 1_234_500, 60))
    return Stream(
        "settling",
        fmt,
        scale,
        "1234.5 g placed on the empty pan: the reading overshoots (about 20 %), swings and "
        "settles; the scale flags it stable once half a second of readings agree within its "
        "motion band. The adapter takes the first three agreeing stable readings.",
        [weigh(lines, fmt, last=True)],
    )


def _sway(count: int, rng: random.Random, low_mg: int, high_mg: int) -> list[float]:
    """A 5 Hz sway sampled at 10 Hz: alternating sides, each swing between low and high."""
    return [(1 if index % 2 else -1) * rng.uniform(low_mg, high_mg) for index in range(count)]


def noisy(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt].loosened(LOOSE_BAND_MG, 5)
    display = Display(scale, rng)
    target = 812_300
    settle = placed(0, target, 15)
    swaying = 25
    loads = [*settle, *[float(target)] * (swaying + 20)]
    sways = [0.0] * 15 + _sway(swaying, rng, 1600, 2300) + _sway(20, rng, 0, 250)
    lines = readings(display, loads, sways)
    step = weigh(lines, fmt, last=True)
    flagged = sum(
        isinstance(line.meaning, Reading) and line.meaning.status == "stable"
        for line in lines[15 : 15 + swaying]
    )
    assert step.expect.lines_read > 15 + swaying and flagged >= swaying - 3, (fmt, flagged)
    return Stream(
        "noisy",
        fmt,
        scale,
        "812.3 g on a counter that shakes (a 5 Hz sway, readings alternating 1.6 to 2.3 g above "
        "and below), with the scale's stability setting at its loosest: the scale flags "
        f"{flagged} of the {swaying} swaying readings stable, but no three consecutive ones lie "
        "within 2 g, so the adapter waits; the sway dies down and the adapter takes the weight.",
        [step],
    )


def noisy_never(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt].loosened(LOOSE_BAND_MG, 5)
    display = Display(scale, rng)
    target = 812_300
    swaying = 40
    loads = [*placed(0, target, 10), *[float(target)] * swaying]
    lines = readings(display, loads, [0.0] * 10 + _sway(swaying, rng, 1600, 2300))
    step = weigh(lines, fmt, last=True)
    assert step.expect.outcome == "unstable", fmt
    return Stream(
        "noisy-never",
        fmt,
        scale,
        "As 'noisy', but the counter never stops shaking: stable flags all along, no three "
        "consecutive readings within 2 g, and the adapter gives up with ScaleUnstable after "
        "reading every line.",
        [step],
    )


def overload(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt]
    display = Display(scale, rng)
    lines = readings(display, placed(0, scale.capacity_mg + 1_300_000, 30, lowered_s=0.8))
    step = weigh(lines, fmt, last=True)
    assert step.expect.outcome == "overload", fmt
    return Stream(
        "overload",
        fmt,
        scale,
        f"A box 1.3 kg above the {scale.capacity_mg / 1e6:g} kg capacity is let down onto the "
        "pan over 0.8 s: rising unstable readings, then the overload line; the adapter raises "
        "ScaleOverload at once.",
        [step],
    )


FAULTS = {
    "sics": (
        b"EL\r\n",
        "logical",
        "the balance answers SI with EL (command understood, not executable now: someone "
        "opened its menu)",
    ),
    "and": (
        b"EC,E00\r\n",
        "transmission",
        "the balance answers Q with EC,E00 (communications error)",
    ),
    "continuous": (
        b"US,GS,+0002.722lb\r\n",
        "unit",
        "someone presses the indicator's unit key: the next line is in pounds, which has no "
        "exact gram value",
    ),
}


def fault(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt]
    display = Display(scale, rng)
    lines = readings(display, placed(0, 1_234_500, 8))
    data, kind, what = FAULTS[fmt]
    lines.append(Line(LINE_MS, data, Fault(kind)))
    lines += readings(display, [1_234_500.0] * 10)
    step = weigh(lines, fmt, last=True)
    assert step.expect == Expect("fault", 9, kind=kind), step.expect
    return Stream(
        "fault",
        fmt,
        scale,
        f"1234.5 g is settling when {what}; the adapter raises ScaleFault({kind!r}) at once.",
        [step],
    )


def tare(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt]
    display = Display(scale, rng)
    container = weigh_first(display, placed(0, 200_000, 40))
    gross = display.history[-1]
    display.tare()
    if fmt == "sics":
        tared = command(fmt, "tare", f"T S {gross / 1000:>10.1f} g\r\n".encode("ascii"), 300)
    elif fmt == "and":
        tared = command(fmt, "tare", b"\x06\r\n", 30)
    else:
        tared = command(fmt, "tare", None, 0)
    item = weigh(readings(display, placed(200_000, 700_000, 40)), fmt, last=True)
    assert container.expect.is_net is False and item.expect.is_net is True
    how = (
        "the adapter's T is refused at once (ScaleFault 'unsupported', nothing sent) and the "
        "operator presses the indicator's TARE key: its lines switch from GS to NT"
        if fmt == "continuous"
        else "the adapter sends T and the scale acknowledges once the container is still"
    )
    return Stream(
        "tare",
        fmt,
        scale,
        f"A 200 g container is weighed (gross); {how}; a 500 g item is put in it and weighed "
        "again: a net weight.",
        [container, tared, item],
    )


def zero(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt]
    display = Display(scale, rng)
    crumbs = weigh_first(display, placed(0, 3_000, 30))
    display.zero()
    display.history = [0] * len(display.history)
    if fmt == "sics":
        zeroed = command(fmt, "zero", b"Z A\r\n", 200)
    elif fmt == "and":
        zeroed = command(fmt, "zero", b"\x06\r\n", 30)
    else:
        zeroed = command(fmt, "zero", None, 0)
    # Loads count from the new zero: the 3 g of crumbs now read 0.
    empty = weigh(readings(display, [0.0] * 20), fmt, last=True)
    how = (
        "the adapter's Z is refused at once (ScaleFault 'unsupported') and the operator "
        "presses the indicator's ZERO key"
        if fmt == "continuous"
        else "the adapter sends Z and the scale acknowledges"
    )
    return Stream(
        "zero",
        fmt,
        scale,
        f"3 g of crumbs on the pan read as a gross weight; {how}; the pan then reads 0 g gross.",
        [crumbs, zeroed, empty],
    )


def drifting(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt].loosened(LOOSE_BAND_MG, 3)
    display = Display(scale, rng)
    start, slump, tau_s = 950_000, 40_000, 1.2
    settle = placed(0, start, 10)
    creep = [
        start - slump * (1 - math.exp(-(LINE_MS / 1000) * index / tau_s)) for index in range(60)
    ]
    lines = readings(display, [*settle, *creep])
    step = weigh(lines, fmt, last=True)
    assert step.expect.outcome == "weight", fmt
    read = step.lines[: step.expect.lines_read]
    flagged_from = 2 + max(  # the line number from which every reading is flagged stable
        number
        for number, line in enumerate(read)
        if not (isinstance(line.meaning, Reading) and line.meaning.status == "stable")
    )
    refused = step.expect.lines_read - (flagged_from + AGREE - 1)  # three stable, not agreeing
    assert refused >= 2, (fmt, refused)
    left_mg = (step.expect.milligrams or 0) - (start - slump)
    return Stream(
        "drifting",
        fmt,
        scale,
        f"A 950 g soft bag slumps against the pan's rim and loses 40 g of apparent weight, "
        f"exponentially (time constant {tau_s} s). With a loose stability setting (5 g over "
        f"3 lines) the scale flags the creeping readings stable from line {flagged_from} on, while "
        f"they still drift 1 to 1.7 g a line; {refused} times the last three stable readings lie "
        f"more than 2 g apart, and the adapter takes the weight only at line "
        f"{step.expect.lines_read}, once the drift has slowed below 1 g a line. "
        f"The weight it takes is still {left_mg / 1000:g} g above where the bag comes to rest: "
        "a creep slower than tolerance/(agree-1) per poll passes, by design.",
        [step],
    )


def line_noise(fmt: str, rng: random.Random) -> Stream:
    scale = SCALES[fmt]
    display = Display(scale, rng)
    lines = readings(display, placed(0, 1_234_500, 60))
    first_stable = next(
        index
        for index, line in enumerate(lines)
        if isinstance(line.meaning, Reading) and line.meaning.status == "stable"
    )
    lines = lines[:first_stable]  # moving until here; then the settled readings, by hand
    target = 1_234_000 if fmt == "continuous" else 1_234_500
    step_mg = scale.division_mg

    def stable(mg: int, delay_ms: int = LINE_MS) -> Line:
        reading = Reading("stable", mg, False)
        return Line(delay_ms, encode(fmt, reading), reading)

    def unstable(mg: int, delay_ms: int = LINE_MS) -> Line:
        reading = Reading("unstable", mg, False)
        return Line(delay_ms, encode(fmt, reading), reading)

    clean = stable(target).data
    digits = b"1.234" if fmt == "continuous" else b"1234"
    flipped = clean.replace(digits, digits.replace(b"2", b"6"), 1)  # one bit: 0x32 -> 0x36

    assert flipped != clean
    framing = bytearray(stable(target + step_mg).data)
    framing[len(framing) // 2] = 0xFF  # a framing error in mid-line
    truncated = stable(target).data[:11]  # the rest of the line and its CR LF lost
    lines += [
        stable(target),
        Line(LINE_MS, truncated, Skip("truncated line", eats_next=True)),
        stable(target + step_mg, 60 if fmt == "continuous" else LINE_MS),
        Line(LINE_MS, flipped, Reading("stable", target + 400_000, False)),
        Line(LINE_MS, bytes(framing), Skip("framing error")),
        stable(target + step_mg),
    ]
    if fmt == "continuous":
        # The host was busy: three lines wait in its buffer and come in one read; in the
        # middle of them somebody touched the item (one unstable line).
        lines += [
            stable(target + 2 * step_mg),
            unstable(target + 17 * step_mg, 0),
            stable(target, 0),
            stable(target + step_mg),
            stable(target),
        ]
    else:
        lines += [stable(target - step_mg), stable(target)]
    lines += [stable(target)] * 5
    step = weigh(lines, fmt, last=True)
    assert step.expect.outcome == "weight" and step.expect.milligrams == target, step.expect
    burst = (
        " Then three lines arrive in one read (a late host), the middle one unstable (the item "
        "was touched): the run of agreeing readings must start again after it."
        if fmt == "continuous"
        else " Each unusable reply costs the adapter one reply timeout before it polls again."
    )
    return Stream(
        "line-noise",
        fmt,
        scale,
        "1234.5 g settling as in 'settling', then on a noisy line: a truncated line, a digit "
        "flipped into a plausible 400 g too much (flagged stable: no checksum catches it), and "
        "a byte a framing error made 0xFF. The unusable lines are skipped, the outlier falls "
        f"outside the 2 g tolerance, and the weight is the true one.{burst}",
        [step],
    )


SCENARIOS = {
    "settling": settling,
    "noisy": noisy,
    "noisy-never": noisy_never,
    "overload": overload,
    "fault": fault,
    "tare": tare,
    "zero": zero,
    "drifting": drifting,
    "line-noise": line_noise,
}


# --- writing -----------------------------------------------------------------------------------

FORMAT_NAMES = {
    "sics": "Mettler Toledo MT-SICS: replies to SI (weight now), T and Z",
    "and": "A&D standard format: replies to Q (weight now), T and Z",
    "continuous": "continuous output of a common weighing indicator (streams ST,GS,+0001.234kg)",
}


def sidecar(stream: Stream, data: bytes) -> dict[str, Any]:
    steps = []
    for step in stream.steps:
        entry: dict[str, Any] = {"call": step.call}
        request = request_for(stream.fmt, step.call)
        if request is not None and step.lines:
            entry["request"] = request
        if step.timeout_s is not None:
            entry["timeout_s"] = step.timeout_s
        entry["expect"] = step.expect.to_json()
        entry["lines"] = [[line.delay_ms, len(line.data)] for line in step.lines]
        steps.append(entry)
    return {
        "scenario": stream.scenario,
        "format": stream.fmt,
        "line_format": FORMAT_NAMES[stream.fmt],
        "bytes": f"{stream.scenario}.{stream.fmt}.bin",
        "sha256": hashlib.sha256(data).hexdigest(),
        "baudrate": 9600,
        "origin": "synthesized by make_streams.py (see its docstring): shapes from the sources, "
        "parameters chosen, not a capture",
        "story": stream.story,
        "scale": stream.scale.describe(),
        "adapter": {"agree": AGREE, "tolerance_mg": TOLERANCE_MG},
        "timing": "lines: [delay_ms, bytes] per chunk, in order. Streaming format: a chunk "
        "follows the previous one after delay_ms (0: in the same read); a step's first chunk "
        "counts from the adapter's flush at the start of the call. Polled formats: each chunk "
        "answers one 'request', never earlier than delay_ms after the previous chunk.",
        "sources": SOURCES,
        "steps": steps,
    }


def build() -> list[Stream]:
    """Every stream, each from its own seeded generator (stable across Python versions)."""
    streams = []
    for scenario, make in SCENARIOS.items():
        for fmt in FORMATS:
            seed = int.from_bytes(hashlib.sha256(f"{scenario}/{fmt}".encode()).digest()[:8], "big")
            streams.append(make(fmt, random.Random(seed)))
    return streams


def write(out_dir: Path) -> list[Path]:
    """Write every ``.bin`` and ``.json`` into ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stream in build():
        data = b"".join(line.data for step in stream.steps for line in step.lines)
        stem = f"{stream.scenario}.{stream.fmt}"
        (out_dir / f"{stem}.bin").write_bytes(data)
        text = json.dumps(sidecar(stream, data), indent=1, ensure_ascii=False)
        (out_dir / f"{stem}.json").write_text(_compact(text) + "\n", encoding="utf-8")
        written += [out_dir / f"{stem}.bin", out_dir / f"{stem}.json"]
    return written


def _compact(text: str) -> str:
    """Keep each ``[delay_ms, bytes]`` pair on one line, so the sidecars stay small."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if (
            line.strip() == "["
            and index + 3 < len(lines)
            and lines[index + 3].strip() in ("]", "],")
        ):
            first, second = lines[index + 1].strip(), lines[index + 2].strip()
            out.append(f"{line.rstrip()}{first} {second}{lines[index + 3].strip()}")
            index += 4
            continue
        out.append(line)
        index += 1
    return "\n".join(out)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for path in write(target):
        print(path.name)
