"""The maintainer's console in a real browser (issue #10, "Done when"): headless chromium
(Debian's, driven by Playwright, tests/browser.py).

- **Live within 2 s, and after a restart**: a simulated locker (the real controller daemon on
  gpiozero's MockFactory, on a private Mosquitto) connected to the cloud; a maintainer signs in
  through the staff form and opens locker-a's live view; a service open from the page's form
  releases A1's latch, a person pulls the door in the simulation, and the page's ``door-A1``
  cell says ``open`` within 2 s (the latency is measured from the simulated pull to the cell's
  change, as the browser saw it, and printed). Then the cloud stops and starts again on the same
  port and data directory: the page says it is reconnecting, then live again, and shows the door
  shut in the simulation, without a reload.
- **An ajar door reaches a person**: the door is left open; the controller's clock skips the two
  minutes after which a door is ajar; the alert appears on the alerts page (yellow, its clock
  running), the maintainer acknowledges it and its clock stops (it reads the same later).
- **axe-core** (vendored) finds no serious or critical WCAG 2.x A/AA violation on ``/maint``,
  ``/maint/devices/locker-a`` and its occupied-compartment confirmation, in both languages, at
  desktop (1280×800) and phone (390×844) widths.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from browser import DESKTOP_VIEWPORT, axe_violations, format_violations, new_phone_page
from conftest import CloudUnderTest, LockerFactory
from playwright.sync_api import Browser, Page, expect

from cloud_api.seed import LOGINS, DemoLogin
from linli.clock import Now, SystemClock
from linli.i18n import LANGUAGES, t
from locker_controller.core.model import AJAR_AFTER_MS
from locker_controller.daemon import LockerDaemon
from station.cloud_server import CloudServer
from station.locker import SimulatedLocker
from station.scenarios import wait_for

pytestmark = pytest.mark.mosquitto

LIU = next(login for login in LOGINS if login.role == "maintainer")
BANK = "locker-a"
EMPTY = "A1"
"""An empty compartment of locker-a (the seed's items are in A2 and A3)."""
FULL = "A2"
"""Holds the seed's kettle: a service open asks for a second confirmation."""
LIVE_WITHIN_MS = 2000
DESKTOP = DESKTOP_VIEWPORT

# Records, in the page, when a cell's data-state last changed (epoch ms, the browser's clock).
WATCH_CELL = """
(testid) => {
    const el = document.querySelector(`[data-testid="${testid}"]`);
    window.__changes = window.__changes || {};
    window.__changes[testid] = [];
    new MutationObserver(() => window.__changes[testid].push(
        [el.getAttribute("data-state"), Date.now()])).observe(el, {attributes: true,
        attributeFilter: ["data-state"]});
}
"""
CHANGED_AT = """
([testid, state]) => {
    const found = (window.__changes[testid] || []).find(([s]) => s === state);
    return found ? found[1] : null;
}
"""


def sign_in(page: Page, login: DemoLogin = LIU) -> None:
    """Sign in through the staff form (password and the authenticator's current code)."""
    page.goto("/staff/signin")
    totp = login.body(int(time.time() * 1000))["totp"]
    page.locator("#login").fill(login.login)
    page.locator("#password").fill(login.secret)
    page.locator("#totp").fill(totp)
    page.locator("form[action='/staff/signin'] button[type=submit]").click()
    page.wait_for_url("**/maint")


def choose_language(page: Page, language: str) -> None:
    button = "lang-zh" if language == "zh-CN" else "lang-en"
    page.locator(f"[data-testid={button}]").click()
    expect(page.locator("html")).to_have_attribute("lang", language)


def start_bank(cloud: CloudUnderTest, simulated_locker: LockerFactory) -> SimulatedLocker:
    """locker-a with the seed's items, once the cloud holds its first state."""
    locker = simulated_locker(
        cloud.identity(BANK), cloud.broker, items=cloud.seed.items_in_lockers[BANK]
    )

    def reported() -> bool:
        row = cloud.store.read_one(
            "SELECT door, occupancy FROM compartments WHERE device_id = ? AND name = ?",
            (BANK, FULL),
        )
        return row is not None and (row["door"], row["occupancy"]) == ("closed", "present")

    wait_for("the cloud to hold the bank's state", reported, 15)
    return locker


def daemon_sees(daemon: LockerDaemon, name: str, door: str) -> bool:
    return bool(daemon.state.compartments[name].door == door)


@pytest.fixture
def desktop(chromium_browser: Browser, cloud: CloudUnderTest) -> Iterator[Page]:
    context = chromium_browser.new_context(viewport=DESKTOP, locale="zh-CN", base_url=cloud.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def test_a_door_opened_at_the_bank_shows_live_and_after_an_api_restart(
    cloud: CloudUnderTest, simulated_locker: LockerFactory, desktop: Page
) -> None:
    page = desktop
    locker = start_bank(cloud, simulated_locker)
    sign_in(page)
    choose_language(page, "en")
    page.locator(f"[data-testid=live-link-{BANK}]").click()
    page.wait_for_url(f"**/maint/devices/{BANK}")
    status = page.locator("[data-testid=live-status]")
    expect(status).to_have_attribute("data-state", "live")
    expect(status).to_have_text(t("maint.live.live", "en"))
    door = page.locator(f"[data-testid=door-{EMPTY}]")
    expect(door).to_have_attribute("data-state", "closed")
    expect(page.locator(f"[data-testid=occupancy-{FULL}]")).to_have_attribute(
        "data-state", "present"
    )

    # Service open of the empty compartment, with a reason, from the page's form.
    page.get_by_label(t("maint.open.reason", "en", compartment=EMPTY), exact=True).fill(
        "Checking the latch after a report"
    )
    page.locator(f"[data-testid=open-{EMPTY}]").click()
    page.wait_for_url(f"**/maint/devices/{BANK}?cmd=*")
    result = page.locator("[data-testid=command-result]")
    expect(result).to_have_attribute("data-outcome", "done")  # the locker's answer, live
    expect(status).to_have_attribute("data-state", "live")

    # A person pulls the door; the page shows it open within 2 s, without a reload.
    page.evaluate("() => { window.__sameDocument = true; }")
    page.evaluate(WATCH_CELL, f"door-{EMPTY}")
    wait_for("the latch to release", lambda: locker.sim.open_door(EMPTY), 5, 0.005)
    pulled_ms = time.time() * 1000
    expect(door).to_have_attribute("data-state", "open", timeout=LIVE_WITHIN_MS + 1000)
    expect(door).to_have_text(t("maint.door.open", "en"))
    shown_ms = page.evaluate(CHANGED_AT, [f"door-{EMPTY}", "open"])
    latency_ms = shown_ms - pulled_ms
    print(f"\nlive view: door pulled → cell shows open in {latency_ms:.0f} ms")
    assert latency_ms < LIVE_WITHIN_MS, f"the door showed open after {latency_ms:.0f} ms"

    # The API restarts: the page says so, reconnects by itself, and shows the next change.
    settings = cloud.server.settings
    cloud.stop()
    expect(status).to_have_attribute("data-state", "reconnecting", timeout=5000)
    expect(status).to_have_text(t("maint.live.reconnecting", "en"))
    cloud.server = CloudServer(settings).start()
    expect(status).to_have_attribute("data-state", "live", timeout=15_000)
    page.evaluate(WATCH_CELL, f"door-{EMPTY}")
    locker.sim.close_door(EMPTY)
    closed_ms = time.time() * 1000
    expect(door).to_have_attribute("data-state", "closed", timeout=LIVE_WITHIN_MS + 1000)
    latency_ms = page.evaluate(CHANGED_AT, [f"door-{EMPTY}", "closed"]) - closed_ms
    print(f"live view after the restart: door shut → cell shows closed in {latency_ms:.0f} ms")
    assert latency_ms < LIVE_WITHIN_MS
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
    wait_for(
        "the controller to see the door shut", lambda: daemon_sees(locker.daemon, EMPTY, "closed")
    )


def survey(page: Page, where: str) -> list[str]:
    found = axe_violations(page)
    return [format_violations(found, f"{where}: ")] if found else []


def test_no_serious_accessibility_violation_on_the_console(
    cloud: CloudUnderTest,
    simulated_locker: LockerFactory,
    chromium_browser: Browser,
    desktop: Page,
) -> None:
    start_bank(cloud, simulated_locker)
    sign_in(desktop)
    phone = new_phone_page(
        chromium_browser, base_url=cloud.url, storage_state=desktop.context.storage_state()
    )
    problems: list[str] = []
    try:
        for page, width in ((desktop, "desktop"), (phone, "phone")):
            page.goto("/maint")
            for language in LANGUAGES:
                choose_language(page, language)
                page.goto("/maint")
                expect(page.locator(f"[data-testid=device-{BANK}]")).to_be_visible()
                problems += survey(page, f"/maint {language} {width}")
                page.goto(f"/maint/devices/{BANK}")
                expect(page.locator("[data-testid=live-status]")).to_have_attribute(
                    "data-state", "live"
                )
                problems += survey(page, f"/maint/devices/{BANK} {language} {width}")
                page.get_by_label(
                    t("maint.open.reason", language, compartment=FULL), exact=True
                ).fill("inspection")
                page.locator(f"[data-testid=open-{FULL}]").click()
                expect(page.locator("[data-testid=confirm-occupied]")).to_be_visible()
                problems += survey(page, f"occupied confirmation {language} {width}")
                # The next language is chosen on this page: it comes back to the bank's page.
    finally:
        phone.context.close()
    sent = cloud.store.read("SELECT id FROM commands WHERE compartment = ?", (FULL,))
    assert sent == [], "asking for the confirmation sent nothing"
    assert not problems, "\n".join(problems)


# --- an ajar door: the alert appears, is acknowledged, and its clock stops --------------------


class JumpClock:
    """The system clock plus an offset that a test can move forward at once: the controller
    runs in real time (its sensors, debounce and ticks) until the test skips the two minutes
    after which an open door is ajar."""

    def __init__(self) -> None:
        self._offset_ms = 0

    def now(self) -> Now:
        real = SystemClock().now()
        return Now(wall_ms=real.wall_ms + self._offset_ms, mono_ms=real.mono_ms + self._offset_ms)

    def jump(self, ms: int) -> None:
        self._offset_ms += ms


def test_a_door_left_open_raises_an_ajar_alert_that_is_acknowledged_and_its_clock_stops(
    cloud: CloudUnderTest, simulated_locker: LockerFactory, desktop: Page
) -> None:
    page = desktop
    clock = JumpClock()
    locker = simulated_locker(
        cloud.identity(BANK), cloud.broker, items=cloud.seed.items_in_lockers[BANK], clock=clock
    )
    wait_for(
        "the cloud to hold the bank's state",
        lambda: (
            cloud.store.read_one(
                "SELECT 1 FROM compartments WHERE device_id = ? AND name = ? AND door = 'closed'",
                (BANK, EMPTY),
            )
            is not None
        ),
        15,
    )
    sign_in(page)
    choose_language(page, "en")
    page.goto(f"/maint/devices/{BANK}")
    expect(page.locator("[data-testid=live-status]")).to_have_attribute("data-state", "live")
    page.get_by_label(t("maint.open.reason", "en", compartment=EMPTY), exact=True).fill(
        "Oiling the hinge"
    )
    page.locator(f"[data-testid=open-{EMPTY}]").click()
    page.wait_for_url(f"**/maint/devices/{BANK}?cmd=*")
    door = page.locator(f"[data-testid=door-{EMPTY}]")
    page.evaluate(WATCH_CELL, f"door-{EMPTY}")
    wait_for("the latch to release", lambda: locker.sim.open_door(EMPTY), 5, 0.005)
    pulled_ms = time.time() * 1000
    expect(door).to_have_attribute("data-state", "open", timeout=LIVE_WITHIN_MS + 1000)
    latency_ms = page.evaluate(CHANGED_AT, [f"door-{EMPTY}", "open"]) - pulled_ms
    assert latency_ms < LIVE_WITHIN_MS, f"the door showed open after {latency_ms:.0f} ms"

    # Nobody shuts it: two minutes later (skipped) the controller raises door_ajar.
    wait_for(
        "the controller to see the door open", lambda: daemon_sees(locker.daemon, EMPTY, "open")
    )
    clock.jump(AJAR_AFTER_MS + 1000)
    page.get_by_role("navigation").get_by_role(
        "link", name=t("console.nav.alerts", "en"), exact=True
    ).click()
    row = page.locator("[data-testid=alert-row][data-rule=door_ajar]")

    def alert_listed() -> bool:
        page.reload()
        return row.count() == 1

    wait_for("the ajar alert on the alerts page", alert_listed, 10, 0.5)
    expect(row.locator("[data-testid=alert-severity]")).to_have_text(
        t("alert.severity.yellow", "en")
    )
    clock_text = row.locator("[data-testid=alert-clock]")
    expect(clock_text).to_have_attribute("data-running", "true")
    expect(row.locator("[data-testid=alert-status]")).to_have_attribute("data-status", "open")

    row.locator("[data-testid=alert-link]").click()
    page.locator("[data-testid=alert-acknowledge]").click()
    detail = page.locator("[data-testid=alert-detail]")
    expect(detail.locator("[data-testid=alert-status]")).to_have_attribute(
        "data-status", "acknowledged"
    )
    stopped = detail.locator("[data-testid=alert-clock]")
    expect(stopped).to_have_attribute("data-running", "false")
    shown = stopped.inner_text()
    assert shown.startswith(t("alert.clock.responded", "en").split("{")[0].strip()), shown
    alert = cloud.store.read_one(
        "SELECT acknowledged_ms, acknowledged_by, due_ms, opened_ms FROM alerts"
        " WHERE rule = 'door_ajar' AND device_id = ?",
        (BANK,),
    )
    assert alert is not None and alert["acknowledged_by"] is not None
    assert alert["opened_ms"] <= alert["acknowledged_ms"] < alert["due_ms"]
    time.sleep(1.2)
    page.reload()
    expect(stopped).to_have_attribute("data-running", "false")
    expect(stopped).to_have_text(shown)  # stopped: the same however long one looks
    locker.sim.close_door(EMPTY)
