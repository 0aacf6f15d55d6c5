"""The social worker's console in a real browser (issue #10 "Done when"): headless chromium
(Debian's, driven by Playwright, tests/browser.py), Chinese and English.

- **A social worker approves a proposal and the donor's balance changes**: Zhang signs in with
  password and authenticator code, reads Auntie Wang's points on her page, opens the proposal
  from the approval queue, approves it with one click, and finds Wang's points grown by the
  proposed amount.
- **axe-core** (vendored, tests/data/axe) finds no serious or critical WCAG 2.x A/AA violation on
  each page of the console's approvals, residents and switches — the queue, one proposal, the
  residents, one resident while acting for her (the banner on), onboarding and its answer with
  the PIN, the switches — in both languages, at a desktop's 1280×800 and a phone's 390×844; and
  every link, button and field there is at least 44×44 CSS px.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser import (
    DESKTOP_VIEWPORT,
    LANG_BUTTON,
    VIEWPORTS,
    axe_violations,
    format_violations,
    small_targets,
)
from conftest import CloudUnderTest, module_cloud
from playwright.sync_api import Browser, Page, expect
from test_valuation_api import _close_clients, proposed_and_inside  # noqa: F401 (a fixture)

from cloud_api.seed import LOGINS
from linli.i18n import LANGUAGES, t

ZHANG = next(login for login in LOGINS if login.login == "zhang")
DESKTOP = DESKTOP_VIEWPORT
SIZES = VIEWPORTS

pytestmark = pytest.mark.mosquitto


class Site:
    """A seeded cloud with two proposals of Auntie Wang's waiting for a decision."""

    def __init__(self, cloud: CloudUnderTest) -> None:
        self.cloud = cloud
        self.proposals: list[tuple[str, int]] = []
        for _ in range(2):
            _, _, body, answer = proposed_and_inside(cloud, secrets.token_hex(6))
            self.proposals.append((str(answer["item_id"]), int(body["proposal"]["points"])))
        self.phones = iter(f"1391234{n:04d}" for n in range(10_000))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The module's cloud, on its own Mosquitto."""
    with module_cloud(tmp_path_factory, "sw-browser") as running:
        yield Site(running)


def sign_in(page: Page) -> None:
    """Zhang signs in through the staff form (password and authenticator code)."""
    page.goto("/staff/signin")
    page.locator("#login").fill(ZHANG.login)
    page.locator("#password").fill(ZHANG.secret)
    page.locator("#totp").fill(ZHANG.body(int(time.time() * 1000))["totp"])
    page.locator("form[action='/staff/signin'] button[type=submit]").click()
    page.wait_for_url("**/staff")


@pytest.fixture(scope="module")
def worker_page(chromium_browser: Browser, site: Site) -> Iterator[Page]:
    """Zhang's tab, signed in once for the module (a TOTP step counts once)."""
    context = chromium_browser.new_context(
        viewport=DESKTOP, locale="zh-CN", base_url=site.cloud.url
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    sign_in(page)
    yield page
    context.close()


def use_language(page: Page, language: str) -> None:
    """Press the console's button for ``language`` (on the queue page) unless it is in use."""
    page.goto("/staff")
    if page.locator("html").get_attribute("lang") != language:
        page.locator(f"[data-testid={LANG_BUTTON[language]}]").click()
    expect(page.locator("html")).to_have_attribute("lang", language)


def available(page: Page) -> int:
    return int(re.sub(r"\D", "", page.locator("[data-testid=available]").inner_text()))


def test_a_social_worker_approves_a_proposal_and_the_donors_balance_changes(
    site: Site, worker_page: Page
) -> None:
    page = worker_page
    item_id, points = site.proposals[0]
    use_language(page, "zh-CN")
    page.goto("/staff/residents/per_1")
    before = available(page)

    page.goto("/staff")
    page.locator(f"[data-item={item_id}] [data-testid=queue-link]").click()
    page.wait_for_url(f"**/staff/queue/{item_id}")
    expect(page.locator("[data-testid=proposed]")).to_contain_text(str(points))
    page.locator("[data-testid=approve]").click()
    page.wait_for_url(re.compile(rf"done=approve&item={item_id}"))
    expect(page.locator("[data-testid=done]")).to_contain_text(str(points))

    page.goto("/staff/residents/per_1")
    assert available(page) == before + points
    movement = page.locator("[data-testid=movement]").first
    expect(movement).to_contain_text(t("page.history.kind.valuation_credit", "zh-CN"))


# --- every page, both languages, both sizes ------------------------------------------------------


def _goto(path: str) -> Callable[[Page, Site], None]:
    def visit(page: Page, _site: Site) -> None:
        response = page.goto(path)
        assert response is not None and response.status == 200, path

    return visit


def _proposal(page: Page, site: Site) -> None:
    _goto(f"/staff/queue/{site.proposals[1][0]}")(page, site)


def _onboarded(page: Page, site: Site) -> None:
    _goto("/staff/residents/new")(page, site)
    page.locator("#display_name").fill("测试居民 Test")
    page.locator("#phone").fill(next(site.phones))
    page.locator("#reason").fill("axe survey")
    page.locator("[data-testid=onboard]").click()
    expect(page.locator("[data-testid=new-pin]")).to_have_count(1)


def _searched(page: Page, site: Site) -> None:
    _goto("/staff/residents")(page, site)
    page.locator("#q").fill("王")
    page.locator("form[action='/staff/residents/search'] button[type=submit]").click()
    expect(page.locator("[data-testid=resident-link]").first).to_be_visible()


PAGES: dict[str, Callable[[Page, Site], None]] = {
    "queue": _goto("/staff"),
    "proposal": _proposal,
    "residents": _goto("/staff/residents"),
    "residents-search": _searched,
    "resident-acting": _goto("/staff/residents/per_1"),
    "onboard": _goto("/staff/residents/new"),
    "onboarded": _onboarded,
    "settings": _goto("/staff/settings"),
}


@pytest.fixture(scope="module")
def acting(worker_page: Page) -> Iterator[Page]:
    """Zhang acting for Auntie Wang: the banner shows on every page surveyed."""
    page = worker_page
    page.goto("/staff/residents/per_1")
    act = page.locator("[data-testid=act]")
    if act.count():
        act.click()
    expect(page.locator("[data-testid=acting-banner]")).to_be_visible()
    yield page
    page.locator("[data-testid=acting-banner] button[type=submit]").click()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", list(PAGES))
def test_axe_finds_no_serious_violation_and_targets_are_large(
    site: Site, acting: Page, name: str, language: str
) -> None:
    page = acting
    use_language(page, language)
    found: dict[str, Any] = {}
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        PAGES[name](page, site)
        expect(page.locator("html")).to_have_attribute("lang", language)
        expect(page.locator("[data-testid=acting-banner]")).to_be_visible()
        violations = axe_violations(page)
        if violations:
            found[f"axe {size}"] = format_violations(violations, f"{name} ({language}, {size}): ")
        small = small_targets(page)
        if small:
            found[f"targets {size}"] = "; ".join(
                f"{s['element']} {s['text']!r} {s['width']}×{s['height']}" for s in small
            )
    page.set_viewport_size(DESKTOP)
    assert not found, found
