"""The social worker's problems and disputes, items and reservations, and weekly report in a
real browser: headless chromium (Debian's, driven by Playwright, tests/browser.py), axe-core
vendored in tests/data/axe.

On each page — the cases, one open case with its actions (a picked-up kettle reported "not as
described", refunded once so the page also shows its payments and moves), the same case after a
refused post (its message on), the items, one item with a live code, the weekly report with its
two SVG charts — in both languages, at a desktop's 1280×800 and a phone's 390×844:

- axe-core finds no serious or critical WCAG 2.x A/AA violation;
- every visible link, button and field is at least 44×44 CSS px.

And the charts are named images whose numbers are also in a table beside them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import httpx
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
from test_sw_cases_report import picked_up, resident_token

from cloud_api.core.reports import week_of
from cloud_api.seed import LOGINS
from cloud_api.transparency import COMMUNITY_TZ
from linli.i18n import LANGUAGES

WANG, _, ZHANG, *_ = LOGINS
DESKTOP = DESKTOP_VIEWPORT
SIZES = VIEWPORTS

pytestmark = pytest.mark.mosquitto


class Site:
    """A seeded cloud where Auntie Wang picked up the kettle and reported a problem with it."""

    def __init__(self, cloud: CloudUnderTest) -> None:
        self.cloud = cloud
        grant = cloud.store.read_one(
            "SELECT id FROM grants WHERE item_id = 'itm_kettle' AND status = 'active'"
        )
        assert grant is not None
        picked_up(cloud, "itm_kettle", grant["id"], "d4" * 6)
        answer = httpx.post(
            f"{cloud.url}/api/v1/items/itm_kettle/problem",
            json={"problem": "damaged", "note": "the handle is cracked"},
            headers={"authorization": f"Bearer {resident_token(cloud, WANG)}"},
        )
        assert answer.status_code == 201, answer.text
        self.case_id = str(answer.json()["case_id"])
        wang = resident_token(cloud, WANG)
        reserved = httpx.post(
            f"{cloud.url}/api/v1/items/itm_books/reservation",
            json={},
            headers={"authorization": f"Bearer {wang}"},
        )
        assert reserved.status_code == 201, reserved.text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The module's cloud, on its own Mosquitto."""
    with module_cloud(tmp_path_factory, "sw-cases-browser") as running:
        yield Site(running)


@pytest.fixture(scope="module")
def worker_page(chromium_browser: Browser, site: Site) -> Iterator[Page]:
    """Zhang's tab, signed in once through the staff form (a TOTP step counts once)."""
    context = chromium_browser.new_context(
        viewport=DESKTOP, locale="zh-CN", base_url=site.cloud.url
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/staff/signin")
    page.locator("#login").fill(ZHANG.login)
    page.locator("#password").fill(ZHANG.secret)
    page.locator("#totp").fill(ZHANG.body(int(time.time() * 1000))["totp"])
    page.locator("form[action='/staff/signin'] button[type=submit]").click()
    page.wait_for_url("**/staff")
    # One refund first, so the case page shows a payment, a move and the "all refunded" note.
    page.goto(f"/staff/cases/{site.case_id}")
    page.locator("[data-testid=action-refund] textarea").fill("refunded in full")
    page.locator("[data-testid=do-refund]").click()
    page.wait_for_url(re.compile("done=refund"))
    yield page
    context.close()


def use_language(page: Page, language: str) -> None:
    """Press the console's button for ``language`` unless it is in use."""
    page.goto("/staff/cases")
    if page.locator("html").get_attribute("lang") != language:
        page.locator(f"[data-testid={LANG_BUTTON[language]}]").click()
    expect(page.locator("html")).to_have_attribute("lang", language)


def refused_post(page: Page, site: Site) -> None:
    """The case page after a refused post: resolving without a note (the message shown)."""
    page.goto(f"/staff/cases/{site.case_id}")
    page.locator("#resolve-note").evaluate("el => el.removeAttribute('required')")
    page.locator("[data-testid=do-resolve]").click()
    expect(page.locator("[data-testid=problem]")).to_be_visible()


VISITS: dict[str, Callable[[Page, Site], None]] = {
    "cases": lambda page, site: page.goto("/staff/cases?status=all"),
    "case": lambda page, site: page.goto(f"/staff/cases/{site.case_id}?done=refund"),
    "case refused": refused_post,
    "items": lambda page, site: page.goto("/staff/items"),
    "item": lambda page, site: page.goto("/staff/items/itm_books"),
    "report": lambda page, site: page.goto("/staff/report"),
    "report this week": lambda page, site: page.goto(f"/staff/report?week={current_week()}"),
}


def current_week() -> str:
    """This week (the kettle was picked up in it)."""
    return week_of(int(time.time() * 1000), COMMUNITY_TZ).label


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", list(VISITS))
def test_no_serious_violation_and_big_targets(
    site: Site, worker_page: Page, name: str, language: str, size: str
) -> None:
    page = worker_page
    page.set_viewport_size(SIZES[size])
    use_language(page, language)
    VISITS[name](page, site)
    expect(page.locator("html")).to_have_attribute("lang", language)
    where = f"{name} ({language}, {size}): "
    violations = axe_violations(page)
    assert not violations, format_violations(violations, where)
    small = small_targets(page)
    assert not small, where + repr(small[:5])


def test_the_charts_are_named_images_with_the_same_numbers_in_a_table(
    site: Site, worker_page: Page
) -> None:
    page = worker_page
    page.set_viewport_size(DESKTOP)
    use_language(page, "en")
    page.goto("/staff/report?week=" + current_week())
    for chart, title in (
        ("chart-items", "Items in and out, last 8 weeks"),
        ("chart-points", "Points issued and redeemed, last 8 weeks"),
    ):
        figure = page.locator(f"[data-testid={chart}]")
        expect(figure.get_by_role("img", name=title)).to_be_visible()
        expect(figure.get_by_role("table", name=title)).to_be_visible()
        rows = figure.locator("tbody tr")
        expect(rows).to_have_count(8)
        # The week's numbers label its bars, and are the table's last row.
        last = rows.nth(7).locator("td").all_inner_texts()
        bars = figure.locator("svg text.data").all_text_contents()
        assert last[0] in bars and last[1] in bars
    this_week = page.locator("[data-testid=chart-items] tbody tr").nth(7).locator("td")
    assert this_week.all_inner_texts() == ["0", "1"]  # nothing dropped off; the kettle taken
