"""Pytest fixtures for the browser tests: one headless chromium per session, phone-sized pages.

Loaded as a plugin from ``tests/conftest.py`` (``pytest_plugins``). The helpers they use are in
``tests/browser.py``.

Fixtures:
    chromium_browser: Debian's chromium, headless, launched once for the session through
        Playwright's sync API (skips, or fails with LINLI_REQUIRE_SYSTEM=1, without chromium).
    phone_page: A page in a fresh context that looks like a phone (390×844 CSS px, 2× pixels,
        touch, ``zh-CN``, 10 s default timeout), closed after the test.

Playwright's sync API keeps its asyncio loop marked as *running* on the main thread between
calls, so while the session's browser is alive ``asyncio.run()`` would refuse to start in any
other test. The hooks below hide that loop during tests that do not use the browser and give it
back before those that do (and before the browser closes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator

import pytest
from browser import chromium_path, new_phone_page
from playwright.sync_api import Browser, Page, sync_playwright

BROWSER_FIXTURE = "chromium_browser"


class _PlaywrightLoop:
    """Playwright's event loop, hidden from the main thread while no browser test runs."""

    loop: asyncio.AbstractEventLoop | None = None
    is_hidden = False

    @classmethod
    def adopt(cls) -> None:
        cls.loop = asyncio._get_running_loop()
        cls.is_hidden = False

    @classmethod
    def hide(cls) -> None:
        if cls.loop is not None and not cls.is_hidden and asyncio._get_running_loop() is cls.loop:
            asyncio._set_running_loop(None)
            cls.is_hidden = True

    @classmethod
    def restore(cls) -> None:
        if cls.loop is not None and cls.is_hidden:
            asyncio._set_running_loop(cls.loop)
            cls.is_hidden = False

    @classmethod
    def forget(cls) -> None:
        cls.loop = None
        cls.is_hidden = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    if BROWSER_FIXTURE in getattr(item, "fixturenames", ()):
        _PlaywrightLoop.restore()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        if nextitem is None or BROWSER_FIXTURE not in getattr(nextitem, "fixturenames", ()):
            _PlaywrightLoop.hide()


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Browser]:
    """Headless chromium (the system's, never Playwright's download), shared by the session."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        _PlaywrightLoop.adopt()
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            _PlaywrightLoop.restore()
            browser.close()
    _PlaywrightLoop.forget()


@pytest.fixture
def phone_page(chromium_browser: Browser) -> Iterator[Page]:
    """A phone-sized page (390×844, 2×, touch, zh-CN, 10 s timeout) in a fresh context."""
    page = new_phone_page(chromium_browser)
    yield page
    page.context.close()
