"""Screenshots of the main pages for the docs: every role's pages, phone and desktop, 中文 and English.

A deliverable, not a test: it starts the demo station (simulated lockers and terminal, a real
broker, the real cloud), has a resident give one item at the kiosk so the social worker's queue
is not empty, then signs in as a resident, a social worker and a maintainer in headless Chromium
and saves each page as a PNG::

    .venv/bin/python -m station.screenshots --out linli-data/screenshots

It needs the development extra (Playwright) and a Chromium (``/usr/bin/chromium``, or
``$LINLI_CHROMIUM``). Pages that fail to load are listed at the end and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloud_api.seed import DemoLogin
from station.demo import Station, start_station

WIDTHS = {"phone": (390, 844), "desktop": (1280, 800)}
LANGUAGES = ("zh-CN", "en")


@dataclass(frozen=True)
class Shot:
    """One page to capture: a file name, who looks at it, and its path (a function of the
    station, for pages that name a device or an item)."""

    name: str
    role: str
    path: Callable[[Station], str | None]


def _first(station: Station, sql: str) -> str | None:
    row = station.cloud.app.state.services.store.read_one(sql)
    return None if row is None else str(row[0])


def _device(station: Station) -> str | None:
    return _first(station, "SELECT id FROM devices WHERE role = 'locker' ORDER BY id")


def _pending(station: Station) -> str | None:
    return _first(
        station, "SELECT id FROM items WHERE status = 'pending_approval' ORDER BY created_ms"
    )


def _resident(station: Station) -> str | None:
    return _first(station, "SELECT id FROM people WHERE role = 'resident' ORDER BY id")


def _item(station: Station) -> str | None:
    return _first(station, "SELECT id FROM items ORDER BY created_ms")


SHOTS = (
    Shot("resident-home", "resident", lambda s: "/app"),
    Shot("resident-items", "resident", lambda s: "/app/items"),
    Shot("resident-history", "resident", lambda s: "/app/history"),
    Shot("sw-queue", "social_worker", lambda s: "/staff"),
    Shot("sw-valuation", "social_worker", lambda s: _opt("/staff/queue/", _pending(s))),
    Shot("sw-residents", "social_worker", lambda s: "/staff/residents"),
    Shot("sw-resident", "social_worker", lambda s: _opt("/staff/residents/", _resident(s))),
    Shot("sw-cases", "social_worker", lambda s: "/staff/cases"),
    Shot("sw-items", "social_worker", lambda s: "/staff/items"),
    Shot("sw-item", "social_worker", lambda s: _opt("/staff/items/", _item(s))),
    Shot("sw-report", "social_worker", lambda s: "/staff/report"),
    Shot("sw-settings", "social_worker", lambda s: "/staff/settings"),
    Shot("maint-devices", "maintainer", lambda s: "/maint"),
    Shot("maint-bank", "maintainer", lambda s: _opt("/maint/devices/", _device(s))),
    Shot("maint-alerts", "maintainer", lambda s: "/maint/alerts"),
)


def _opt(prefix: str, value: str | None) -> str | None:
    return None if value is None else prefix + value


def _chromium() -> str:
    for candidate in (os.environ.get("LINLI_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium")
    if found is None:
        raise SystemExit("no chromium: apt-get install chromium fonts-noto-cjk")
    return found


def _give_one_item(station: Station) -> None:
    """A resident gives an item at the kiosk and puts it in: the queue then has a proposal."""
    from station.kiosk_driver import KioskDriver
    from station.scenarios import Gift, _give_at_kiosk, _put_in, _tap

    if station.terminal is None:
        return
    wang = next(login for login in station.seed.logins if login.role == "resident")
    kiosk = KioskDriver(station.terminal.kiosk)
    try:
        given = _give_at_kiosk(kiosk, station.terminal, wang, Gift(), lambda *a, **k: None)
        _put_in(station.lockers[given.device_id], given.compartment)
        kiosk.wait_for("thanks", timeout_s=20)
        _tap(kiosk, "cancel", "signin")
    finally:
        kiosk.close()


def _sign_in(page: object, base: str, login: DemoLogin) -> None:
    """Sign in through the page's own form (staff: password and the current TOTP)."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    if login.role == "resident":
        page.goto(base + "/signin")
        page.fill("input[name=phone]", login.login)
        page.fill("input[name=pin]", login.secret)
    else:
        page.goto(base + "/staff/signin")
        page.fill("input[name=login]", login.login)
        page.fill("input[name=password]", login.secret)
        # A TOTP step is accepted once per person: wait for a fresh one if needed.
        page.fill("input[name=totp]", str(login.body(int(time.time() * 1000))["totp"]))
    page.locator("form:not(.lang) button[type=submit]").last.click()
    page.wait_for_load_state()


def capture(station: Station, out: Path) -> list[str]:
    """Save every shot; return the pages that failed."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    base = station.cloud.url
    host = base.split("//", 1)[1].split(":", 1)[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            for role in ("resident", "social_worker", "maintainer"):
                login = next(x for x in station.seed.logins if x.role == role)
                first = browser.new_context()
                _sign_in(first.new_page(), base, login)  # once per person: one TOTP step
                signed_in = first.storage_state()
                first.close()
                for language in LANGUAGES:
                    for width_name, (width, height) in WIDTHS.items():
                        context = browser.new_context(
                            viewport={"width": width, "height": height},
                            locale=language,
                            storage_state=signed_in,
                        )
                        context.add_cookies(
                            [
                                {
                                    "name": "linli_lang",
                                    "value": language,
                                    "domain": host,
                                    "path": "/",
                                    "secure": True,
                                    "httpOnly": True,
                                }
                            ]
                        )
                        page = context.new_page()
                        try:
                            for shot in (s for s in SHOTS if s.role == role):
                                failed += _shoot(page, station, shot, out, language, width_name)
                        finally:
                            context.close()
        finally:
            browser.close()
    return failed


def _shoot(
    page: object, station: Station, shot: Shot, out: Path, language: str, width_name: str
) -> list[str]:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    path = shot.path(station)
    if path is None:
        return [f"{shot.name}: nothing to show"]
    answer = page.goto(station.cloud.url + path)
    if answer is None or answer.status >= 400 or "/signin" in page.url:
        status = None if answer is None else answer.status
        return [f"{shot.name} {language} {width_name}: {status} {page.url}"]
    file = out / f"{shot.name}.{language}.{width_name}.png"
    page.screenshot(path=str(file), full_page=True)
    print(f"  {file}", flush=True)
    return []


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m station.screenshots --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("linli-data/screenshots"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="linli-shots-") as tmp:
        station = start_station(Path(tmp), broker_kind="auto", http_port=0, capture=True)
        try:
            _give_one_item(station)
            failed = capture(station, args.out)
        finally:
            station.stop()
    for line in failed:
        print(f"  not captured: {line}", file=sys.stderr)
    print(f"{len(list(args.out.glob('*.png')))} screenshots in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
