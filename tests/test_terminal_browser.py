"""The valuation kiosk in a real browser (issue #9): headless chromium (Debian's, driven by
Playwright, tests/browser.py) at the terminal's screen size, once in Chinese and once in English.

A resident goes through the whole drop-off with taps and typing only: sign in → size → weigh →
photos (a blurred one retaken) → category → describe → condition → age → price → proposal →
confirm → "door … is open" → the item into the simulated locker → "thank you". Then the screens a
drop-off can also meet: a wrong PIN, no door free, the engine abstaining, the cloud down at the
confirmation, the idle warning, a page that does not exist. Everything is real: the cloud
(uvicorn, private Mosquitto) with the seed's two simulated lockers, the scale simulated on a
pseudo-terminal, the simulated camera on real photographs, the SQLite queue, the kiosk over HTTP.

Every screen is measured in the browser, against what the resident pages promise
(docs/decisions/0018-resident-pages.md):

- axe-core (vendored) finds no serious or critical WCAG 2.0/2.1/2.2 A or AA violation;
- ``lang`` on the page is the resident's language;
- the base font is at least 20 px and no text is under 18 px; text (not headings) has a line
  height of at least 1.6;
- every control is at least 44×44 px, a primary button at least 56 px high;
- focus is visible: every control reached with Tab draws an outline at least 2 px wide whose
  colour has 3:1 contrast with the page (WCAG 1.4.11);
- nothing scrolls sideways at 640 CSS px, nor at 400 px (this screen at 200 % zoom);
- no catalog placeholder such as ``{n}`` is left unfilled.

The findings of all screens are gathered and reported together, so one run lists everything. The
drop-off code shown on the kiosk is marked ``data-testid="code-digits"``: the helpers never
print it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser import (
    axe_violations,
    body_font_px,
    format_violations,
    horizontal_overflow_px,
    small_targets,
    small_text,
    wider_than_viewport,
)
from conftest import CloudUnderTest
from playwright.sync_api import Browser, Error, Page, ViewportSize, expect
from tcp_gate import TcpGate
from terminal_station import BLURRED, TerminalStation, start_terminal
from test_terminal_kiosk import LI, WANG, Clock, lockers, put_in

from linli.i18n import t
from valuation_terminal.core import flow
from valuation_terminal.core.explain import explain
from valuation_terminal.core.rules import load_policy

__all__ = ["lockers"]
"""The seed's two lockers, running (a fixture of test_terminal_kiosk, shared by import)."""

pytestmark = pytest.mark.mosquitto

KIOSK_VIEWPORT: ViewportSize = {"width": 800, "height": 480}
"""The terminal's screen: the Raspberry Pi 7-inch Touch Display, landscape, at 1×."""
REFLOW_WIDTHS = (640, 400)
"""Widths (CSS px) the page must fit without sideways scrolling: 640, and 400 — this screen at
200 % zoom."""
BASE_FONT_PX = 20
MIN_TEXT_PX = 18
MIN_LINE_HEIGHT = 1.6
MIN_TARGET_PX = 44
PRIMARY_PX = 56
FOCUS_MIN_WIDTH_PX = 2
FOCUS_MIN_CONTRAST = 3.0
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
TIMEOUT_MS = 15_000

_LINE_HEIGHTS = """
([minRatio]) => {
    const low = [];
    for (const el of document.querySelectorAll("body, p, li, td, th, dd, dt, label")) {
        const s = getComputedStyle(el);
        const r = el.getBoundingClientRect();
        if (el !== document.body && (s.visibility === "hidden" || r.width === 0 || r.height === 0))
            continue;
        const size = parseFloat(s.fontSize);
        const line = s.lineHeight === "normal" ? 1.2 * size : parseFloat(s.lineHeight);
        if (line / size + 0.005 < minRatio) {
            low.push({element: el.tagName.toLowerCase() + (el.className ? "." + el.className : ""),
                      ratio: Math.round(line / size * 100) / 100});
        }
    }
    return low;
}
"""

_PRIMARY_HEIGHTS = """
([minPx]) => [...document.querySelectorAll("button.primary")]
    .filter((b) => getComputedStyle(b).visibility !== "hidden" && b.getBoundingClientRect().height > 0)
    .filter((b) => b.getBoundingClientRect().height + 0.5 < minPx)
    .map((b) => ({element: b.getAttribute("data-testid") || b.getAttribute("value") || "button",
                  height: Math.round(b.getBoundingClientRect().height * 10) / 10}))
"""

_FOCUSED = """
() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const all = [...document.querySelectorAll("*")];
    const rgb = (c) => (c.match(/[0-9.]+/g) || []).slice(0, 4).map(Number);
    const lum = ([r, g, b]) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const s = getComputedStyle(el);
    let page = getComputedStyle(document.body).backgroundColor;
    if (rgb(page).length === 4 && rgb(page)[3] === 0) page = "rgb(255, 255, 255)";
    const [a, b] = [lum(rgb(s.outlineColor)), lum(rgb(page))];
    const contrast = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    let d = el.tagName.toLowerCase();
    for (const attr of ["data-testid", "name", "value", "href"]) {
        if (el.hasAttribute(attr) && !(attr === "value" && el.tagName === "INPUT"))
            d += `[${attr}="${el.getAttribute(attr)}"]`;
    }
    return {index: all.indexOf(el), element: d, style: s.outlineStyle,
            width: parseFloat(s.outlineWidth), contrast: Math.round(contrast * 100) / 100};
}
"""


class Findings:
    """What every screen got wrong, by ``language/screen``, reported together at the end."""

    def __init__(self) -> None:
        self.problems: dict[str, list[str]] = {}
        self.surveyed: list[str] = []

    def add(self, where: str, problems: list[str]) -> None:
        self.surveyed.append(where)
        if problems:
            self.problems[where] = problems

    def report(self) -> str:
        return "\n".join(
            f"{where}:\n  " + "\n  ".join(problems) for where, problems in self.problems.items()
        )


def _focus_problems(page: Page) -> list[str]:
    """Tab through the page; every control reached must draw a visible focus outline."""
    problems = []
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")
    seen: set[int] = set()
    for _n in range(40):
        page.keyboard.press("Tab")
        focused: dict[str, Any] | None = page.evaluate(_FOCUSED)
        if focused is None:
            continue
        if focused["index"] in seen:
            break
        seen.add(focused["index"])
        if (
            focused["style"] == "none"
            or focused["width"] < FOCUS_MIN_WIDTH_PX
            or focused["contrast"] < FOCUS_MIN_CONTRAST
        ):
            problems.append(
                f"focus: {focused['element']} outline {focused['style']} {focused['width']} px,"
                f" contrast {focused['contrast']}:1"
            )
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")
    if not seen:
        problems.append("focus: Tab reaches no control")
    return problems


def _measure(page: Page, language: str) -> list[str]:
    problems: list[str] = []
    lang = page.evaluate("() => document.documentElement.lang")
    if lang != language:
        problems.append(f"lang: <html lang={lang!r}>, not {language!r}")
    violations = axe_violations(page)
    if violations:
        problems.append("axe: " + format_violations(violations).replace("\n", "\n  axe: "))
    if (size := body_font_px(page)) < BASE_FONT_PX:
        problems.append(f"base font {size} px")
    problems += [
        f"text {s['element']} {s['text']!r} at {s['font_px']} px"
        for s in small_text(page, MIN_TEXT_PX)
    ]
    problems += [
        f"line height {low['element']} {low['ratio']}"
        for low in page.evaluate(_LINE_HEIGHTS, [MIN_LINE_HEIGHT])
    ]
    problems += [
        f"target {s['element']} {s['text']!r} is {s['width']}×{s['height']} px"
        for s in small_targets(page, MIN_TARGET_PX)
    ]
    problems += [
        f"primary button {b['element']} is {b['height']} px high"
        for b in page.evaluate(_PRIMARY_HEIGHTS, [PRIMARY_PX])
    ]
    problems += _focus_problems(page)
    placeholders = PLACEHOLDER.findall(page.locator("body").inner_text())
    if placeholders:
        problems.append(f"unfilled placeholders {placeholders}")
    for width in REFLOW_WIDTHS:
        page.set_viewport_size({"width": width, "height": KIOSK_VIEWPORT["height"]})
        overflow = horizontal_overflow_px(page)
        if overflow > 1:
            wide = "; ".join(
                f"{w['element']} {w['text']!r} reaches {w['right_px']} px"
                for w in wider_than_viewport(page)
            )
            problems.append(f"reflow at {width} px: {overflow:g} px too wide: {wide}")
    page.set_viewport_size(KIOSK_VIEWPORT)
    return problems


class Resident:
    """The resident's finger on the kiosk's screen, and the surveyor after each tap."""

    def __init__(self, page: Page, language: str, findings: Findings) -> None:
        self.page = page
        self.language = language
        self.findings = findings

    def _(self, key: str, **values: object) -> str:
        return t(key, self.language, **values)

    @property
    def screen(self) -> str:
        return str(self.page.locator("body").get_attribute("data-screen"))

    def survey(self, name: str) -> None:
        """Measure the screen shown (again if a refresh reloaded it meanwhile)."""
        for attempt in range(3):
            try:
                self.page.wait_for_load_state("load")
                problems = _measure(self.page, self.language)
                break
            except Error as exc:  # the waiting screens reload themselves every few seconds
                if attempt == 2 or "context was destroyed" not in str(exc):
                    raise
        self.findings.add(f"{self.language}/{name}", problems)

    def tap(self, selector: str, screen: str | None = None) -> None:
        """Press a button (a form post, then the page it leads to); require ``screen``."""
        with self.page.expect_navigation():
            self.page.locator(selector).click()
        if screen is not None:
            assert self.screen == screen, (self.screen, self.page.locator("main").inner_text())

    def fill(self, label_key: str, text: str) -> None:
        self.page.get_by_label(self._(label_key), exact=True).fill(text)

    def sign_in(self, login: tuple[str, str]) -> None:
        self.fill("page.signin.phone", login[0])
        self.fill("page.signin.pin", login[1])
        self.tap("form.stack button[type=submit]", "size")


@pytest.fixture
def gate(cloud: CloudUnderTest) -> Iterator[TcpGate]:
    """The network between the terminal and the cloud (closed to take the cloud away)."""
    port = urlsplit(cloud.url).port
    assert port is not None
    running = TcpGate("127.0.0.1", port).start()
    yield running
    running.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def terminal(
    cloud: CloudUnderTest, gate: TcpGate, tmp_path: Path, clock: Clock
) -> Iterator[TerminalStation]:
    station = start_terminal(
        tmp_path / "terminal", gate.url, cloud.seed.terminal_token, now_ms=clock
    )
    yield station
    station.stop()


@pytest.fixture
def kiosk_page(chromium_browser: Browser, terminal: TerminalStation) -> Iterator[Page]:
    """A tab on the terminal's screen: 800×480, touch, 1× pixels."""
    context = chromium_browser.new_context(
        viewport=KIOSK_VIEWPORT, has_touch=True, base_url=terminal.kiosk.url
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def _expected_reasons(terminal: TerminalStation, language: str) -> list[tuple[str, str]]:
    """(factor, reason in ``language``) of the proposal on screen, recomputed from the session."""
    context = terminal.client.cached_context()
    assert context is not None and terminal.kiosk.session.valuation is not None
    inputs, proposal = terminal.kiosk.session.valuation
    reasons = explain(proposal, inputs, load_policy(context["policy_text"]))
    return [
        (f.name, t(r.key, language, **r.values))
        for f, r in zip(proposal.factors, reasons, strict=True)
    ]


@pytest.mark.parametrize(("language", "login"), [("zh-CN", WANG), ("en", LI)])
def test_every_kiosk_screen_in_a_real_browser(
    language: str,
    login: tuple[str, str],
    cloud: CloudUnderTest,
    lockers: dict[str, Any],
    terminal: TerminalStation,
    gate: TcpGate,
    clock: Clock,
    kiosk_page: Page,
) -> None:
    findings = Findings()
    you = Resident(kiosk_page, language, findings)
    page = kiosk_page
    page.goto("/")
    assert you.screen == "signin"
    if language == "zh-CN":  # untouched, the start screen warns only while someone types
        warning = page.locator("[data-testid=idle-warning]")
        assert warning.evaluate("el => getComputedStyle(el).display") == "none"
        page.locator("#phone").focus()
        assert warning.evaluate("el => getComputedStyle(el).display") == "block"
        page.locator("#phone").blur()
    else:
        you.tap("[data-testid=lang-en]", "signin")
    you.survey("signin")

    # a wrong PIN: the alert
    you.fill("page.signin.phone", login[0])
    you.fill("page.signin.pin", "000000")
    you.tap("form.stack button[type=submit]", "signin")
    expect(page.locator("[data-testid=problem]")).to_have_text(you._("terminal.signin.failed"))
    you.survey("signin-failed")

    you.sign_in(login)
    you.survey("size")

    # no large door free: said before the item goes on the scale
    with cloud.store.write() as db:
        db.execute("UPDATE compartments SET needs_attention = 1 WHERE size = 'L'")
    you.tap("[data-testid=size-L]", "no_space")
    you.survey("no_space")
    you.tap("[data-testid=back]", "size")

    you.tap("[data-testid=size-M]", "weigh")
    you.survey("weigh")
    terminal.scale_sim.place(412.3)
    you.tap("[data-testid=weigh]", "photos")
    you.survey("photos")
    terminal.camera.queue(BLURRED)
    you.tap("[data-testid=take-photo]", "photos")
    expect(page.locator("[data-testid=problem]")).to_be_visible()
    you.survey("photos-retake")
    for _n in range(3):
        you.tap("[data-testid=take-photo]", "photos")
    expect(page.locator(".thumbs img")).to_have_count(3)
    you.survey("photos-taken")
    you.tap("[data-testid=photos-done]", "category")
    you.survey("category")
    you.tap("[data-testid=category-toys]", "describe")
    you.survey("describe")
    page.locator("#title").fill("LEGO 积木")
    you.tap("[data-testid=describe]", "condition")
    you.survey("condition")
    you.tap("[data-testid=condition-3]", "age")  # 9成新
    you.survey("age")
    you.fill("terminal.age.years", "1")
    you.fill("terminal.age.months", "6")
    you.tap("[data-testid=age]", "price")
    you.survey("price")
    you.fill("terminal.price.label", "199")
    you.tap("[data-testid=price]", "proposal")

    # the reasons, in the page's language
    for name, reason in _expected_reasons(terminal, language):
        expect(page.locator(f"[data-testid=factor-{name}]")).to_contain_text(reason)
    you.survey("proposal")

    # left alone: a warning before the screen returns to the start; one tap keeps it
    clock.shift_ms += flow.IDLE_TIMEOUT_MS - 25_000
    page.reload()
    expect(page.locator("[data-testid=idle-warning]")).to_be_visible()
    you.survey("proposal-idle-warning")
    you.tap("[data-testid=still-here]", "proposal")
    expect(page.locator("[data-testid=idle-warning]")).to_be_hidden()

    you.tap("[data-testid=confirm]", "dropoff")
    row = terminal.queue.all()[0]
    assert row.answer is not None
    grant = row.answer["grant"]
    expect(page.locator("[data-testid=door-open]")).to_have_text(
        you._("terminal.door.open", door=grant["label"])
    )
    you.survey("dropoff")
    put_in(cloud, lockers[grant["device_id"]], grant["device_id"], grant["compartment"])
    page.wait_for_selector("[data-testid=thanks]", timeout=20_000)  # the page's own refresh
    you.survey("thanks")
    you.tap("[data-testid=cancel]", "signin")  # "finish"
    assert page.locator("html").get_attribute("lang") == "zh-CN"  # the next resident's default
    if language != "zh-CN":
        you.tap("[data-testid=lang-en]", "signin")

    # too heavy for a toy: the engine abstains; then the cloud is down at the confirmation
    you.sign_in(login)
    you.tap("[data-testid=size-M]", "weigh")
    terminal.scale_sim.place(15_000.0)
    you.tap("[data-testid=weigh]", "photos")
    you.tap("[data-testid=take-photo]", "photos")
    you.tap("[data-testid=photos-done]", "category")
    you.tap("[data-testid=category-toys]", "describe")
    you.tap("[data-testid=describe]", "condition")
    you.tap("[data-testid=condition-1]", "age")
    you.tap("[data-testid=age]", "price")
    you.tap("[data-testid=price-skip]", "proposal")
    expect(page.locator("[data-testid=abstained]")).to_be_visible()
    expect(page.locator("[data-testid=abstention-reason]")).to_have_text(
        you._("valuation.reason.abstained.weight_implausible", weight="15000", lo="20", hi="10000")
    )
    you.survey("proposal-abstained")
    gate.close()
    you.tap("[data-testid=confirm]", "submitted")
    you.survey("submitted")
    gate.open()

    response = page.goto("/no-such-page")
    assert response is not None and response.status == 404
    you.survey("not-found")

    assert not findings.problems, findings.report()
    assert len(findings.surveyed) == 20, findings.surveyed
