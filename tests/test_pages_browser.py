"""The resident pages in a real browser (issue #8, "Done when"): headless chromium (Debian's,
driven by Playwright, tests/browser.py) at a phone's width, in Chinese and in English.

- **The whole way**, once per language: a resident signs in, browses, reserves 儿童绘本, reads
  the code off the page and types it at the simulated locker's keypad (the real controller daemon
  on gpiozero's MockFactory, on a private Mosquitto, holding the grant the cloud sent it); the
  door opens, the books are taken, the door shuts, and the points history shows the pickup while
  the code is gone from home. Each language is reached through the sign-in page's own switch,
  from a browser set to the other language.
- **Every resident page**, and the states worth seeing (a failed sign-in, search results and
  none, an item already reserved, a code after "open now", a page not found), in both languages,
  at 390 CSS px:

  - ``axe``: axe-core (vendored, tests/data/axe) reports no serious or critical WCAG 2.0/2.1/2.2
    A or AA violation;
  - ``reflow``: laid out at the phone's width, nothing scrolls sideways; ``reflow-200`` the same
    at 200 % zoom (a 195 CSS px layout viewport, as WCAG 1.4.10 measures reflow);
  - ``targets``: every visible link, button and field is at least 44×44 CSS px;
  - ``text-size``: the body's font and every visible text at least 18 CSS px;
  - ``filled``: no catalog placeholder such as ``{n}`` is left in what the resident reads.

- Every page route of ``cloud_api/pages/router.py`` is surveyed here (a new page fails
  :func:`test_every_resident_page_is_surveyed` until it is added to :data:`PAGES`).

Problems found in the pages are listed in :data:`KNOWN_PROBLEMS` and marked
``xfail(strict=True)`` with the page, the rule and the element: fixing the page makes the test
pass unexpectedly, which fails it, so the entry is then removed.

Codes are never printed: they are read from the page into :class:`Code`, whose repr hides them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from browser import (
    LANG_BUTTON,
    PHONE_VIEWPORT,
    axe_violations,
    body_font_px,
    format_violations,
    horizontal_overflow_px,
    layout_width_px,
    new_phone_page,
    small_targets,
    small_text,
    wider_than_viewport,
)
from conftest import CloudUnderTest, LockerFactory, module_cloud
from playwright.sync_api import Browser, Page, ViewportSize, expect
from starlette.routing import Route
from test_offline_grants import (
    Code,
    enter,
    grant_code,
    holds_grant,
    open_swap_and_close,
    seeded_pickup,
)
from test_offline_grants import start_locker as start_locker_a

from cloud_api.pages.router import router as pages_router
from cloud_api.seed import ITEMS, LOGINS, DemoLogin
from linli.i18n import LANGUAGES, t
from station.scenarios import wait_for

WANG = LOGINS[0]
"""Auntie Wang: she can afford the books (the seed's donor of every item is Uncle Li, and a donor
cannot reserve their own item)."""
BOOKS = "itm_books"
BOOKS_TITLE, BOOKS_POINTS, BOOKS_COMPARTMENT = next(
    (title, points, compartment)
    for item_id, title, _, points, _, compartment in ITEMS
    if item_id == BOOKS
)
KETTLE = "itm_kettle"
"""Reserved by Auntie Wang in the seed: its code page is live without reserving anything."""
KETTLE_TITLE = next(title for item_id, title, *_ in ITEMS if item_id == KETTLE)
ZOOM_200_VIEWPORT: ViewportSize = {
    "width": PHONE_VIEWPORT["width"] // 2,
    "height": PHONE_VIEWPORT["height"] // 2,
}
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")

pytestmark = pytest.mark.mosquitto


# --- the resident's moves ---------------------------------------------------------------------


def choose_language(page: Page, language: str) -> None:
    """Press the page's button for ``language`` (an explicit choice, kept in a cookie, even when
    the page is in that language already: it may only be following Accept-Language)."""
    page.locator(f"[data-testid={LANG_BUTTON[language]}]").click()
    expect(page.locator("html")).to_have_attribute("lang", language)


def sign_in(page: Page, login: DemoLogin, language: str) -> None:
    """Sign in through the form, in ``language``, the fields found by their visible labels."""
    page.goto("/signin")
    choose_language(page, language)
    page.get_by_label(t("page.signin.phone", language), exact=True).fill(login.login)
    page.get_by_label(t("page.signin.pin", language), exact=True).fill(login.secret)
    page.get_by_role("button", name=t("page.signin.submit", language), exact=True).click()
    page.wait_for_url("**/app")
    expect(page.locator("html")).to_have_attribute("lang", language)


def go_to(page: Page, nav_key: str, language: str) -> None:
    """Follow a link of the navigation bar, by its text."""
    nav = page.get_by_role("navigation")
    nav.get_by_role("link", name=t(nav_key, language), exact=True).click()


def balance(page: Page) -> int:
    """The available points the page shows."""
    return int(re.sub(r"\D", "", page.locator("[data-testid=balance]").inner_text()))


def pickup_shown(page: Page, language: str) -> bool:
    """Reload the history; whether it shows the books collected, no longer on hold."""
    page.reload()
    rows = (
        page.locator("[data-testid=movement]")
        .filter(has_text=BOOKS_TITLE)
        .filter(has_text=t("page.history.kind.redemption", language))
        .all_inner_texts()
    )
    return bool(rows) and not any(t("page.history.held", language) in row for row in rows)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_resident_reserves_picks_up_and_sees_it_in_the_history(
    language: str,
    cloud: CloudUnderTest,
    simulated_locker: LockerFactory,
    chromium_browser: Browser,
) -> None:
    locker = start_locker_a(cloud, simulated_locker)
    elsewhere = next(other for other in LANGUAGES if other != language)
    page = new_phone_page(chromium_browser, locale=elsewhere, base_url=cloud.url)
    try:
        sign_in(page, WANG, language)
        before = balance(page)

        go_to(page, "page.nav.items", language)
        page.wait_for_url("**/app/items")
        page.locator("[data-testid=item]").filter(has_text=BOOKS_TITLE).click()
        page.wait_for_url(f"**/app/items/{BOOKS}")
        page.locator("[data-testid=reserve]").click()
        page.wait_for_url(re.compile(r"/app/codes/[A-Za-z0-9_-]+$"))
        grant_id = page.url.rsplit("/", 1)[1]
        code = Code(re.sub(r"\s", "", page.locator("[data-testid=code-digits]").inner_text()))
        assert re.fullmatch(r"\d{8}", code), "the code page shows no 8-digit code"
        place = page.locator(".card").inner_text()
        assert BOOKS_COMPARTMENT in place, place

        go_to(page, "page.nav.home", language)
        assert balance(page) == before - BOOKS_POINTS
        expect(
            page.locator(f"[data-testid=code-link][href='/app/codes/{grant_id}']")
        ).to_be_visible()

        go_to(page, "page.nav.history", language)
        page.wait_for_url("**/app/history")
        expect(page.locator("[data-testid=movement]").filter(has_text=BOOKS_TITLE)).to_contain_text(
            t("page.history.held", language)
        )
        assert not pickup_shown(page, language)

        wait_for("the controller to hold the new grant", lambda: holds_grant(locker, grant_id))
        assert enter(locker, code) == "code.accepted"
        open_swap_and_close(locker, BOOKS_COMPARTMENT)

        wait_for("the history to show the pickup", lambda: pickup_shown(page, language), 20, 0.25)
        assert balance(page) == before - BOOKS_POINTS

        # Switching language on a signed-in page keeps the resident on that page.
        choose_language(page, elsewhere)
        assert page.url.endswith("/app/history"), page.url
        pickup = page.locator("[data-testid=movement]").filter(has_text=BOOKS_TITLE).first
        expect(pickup).to_contain_text(t("page.history.kind.redemption", elsewhere))
        choose_language(page, language)

        go_to(page, "page.nav.home", language)
        expect(
            page.locator(f"[data-testid=code-link][href='/app/codes/{grant_id}']")
        ).to_have_count(0)
        page.goto(f"/app/codes/{grant_id}")
        expect(page.locator("[data-testid=code-digits]")).to_have_count(0)
        expect(page.locator("main")).to_contain_text(t("page.code.gone", language))
    finally:
        page.context.close()


def test_a_pickup_shows_once_in_the_history(
    cloud: CloudUnderTest, simulated_locker: LockerFactory, chromium_browser: Browser
) -> None:
    # The seed's kettle, reserved by Auntie Wang: collected at the keypad with its code.
    locker = start_locker_a(cloud, simulated_locker)
    grant_id = seeded_pickup(cloud)
    assert enter(locker, grant_code(cloud, grant_id)) == "code.accepted"
    open_swap_and_close(locker, cloud.seed.reserved_compartment)
    page = new_phone_page(chromium_browser, base_url=cloud.url)
    try:
        sign_in(page, WANG, "zh-CN")
        page.goto("/app/history")
        kettle = page.locator("[data-testid=movement]").filter(has_text=KETTLE_TITLE)

        def posted() -> bool:
            page.reload()
            return t("page.history.held", "zh-CN") not in kettle.first.inner_text()

        wait_for("the kettle's hold to be posted", posted, 20, 0.25)
        shown = kettle.all_inner_texts()
        assert len(shown) == 1, shown
    finally:
        page.context.close()


# --- every page, both languages -----------------------------------------------------------------


@dataclass(frozen=True)
class PageVisit:
    """How the survey reaches a page: signed in or not, and the steps from a blank tab."""

    is_signed_in: bool
    steps: Callable[[Page, CloudUnderTest, str], None]


def _open(path: str) -> Callable[[Page, CloudUnderTest, str], None]:
    return lambda page, _site, _language: _goto(page, path)


def _goto(page: Page, path: str, status: int = 200) -> None:
    response = page.goto(path)
    assert response is not None and response.status == status, (
        f"GET {path}: {response.status if response else 'no response'}"
    )


def _signin(page: Page, _site: CloudUnderTest, language: str) -> None:
    _goto(page, "/signin")
    choose_language(page, language)


def _signin_failed(page: Page, site: CloudUnderTest, language: str) -> None:
    _signin(page, site, language)
    page.locator("input[name=phone]").fill("13900000000")  # nobody's number
    page.locator("input[name=pin]").fill("000000")
    page.locator("form[action='/signin'] button[type=submit]").click()
    expect(page.locator("[role=alert]")).to_have_text(t("page.signin.failed", language))


def _search(page: Page, _site: CloudUnderTest, language: str) -> None:
    _goto(page, "/app/items")
    page.get_by_label(t("page.items.search_label", language), exact=True).fill("绘本")
    page.get_by_role("button", name=t("page.items.search", language), exact=True).click()
    page.wait_for_url(re.compile(r"[?&]q="))
    expect(page.locator("[data-testid=item]")).to_have_count(1)


def _code(page: Page, site: CloudUnderTest, _language: str) -> None:
    _goto(page, f"/app/codes/{seeded_pickup(site)}")


def _code_after_open_now(page: Page, site: CloudUnderTest, _language: str) -> None:
    _code(page, site, _language)
    page.locator("[data-testid=open-now]").click()
    page.wait_for_url(re.compile(r"notice="))


PAGES: dict[str, PageVisit] = {
    "signin": PageVisit(False, _signin),
    "signin-failed": PageVisit(False, _signin_failed),
    "home": PageVisit(True, _open("/app")),
    "items": PageVisit(True, _open("/app/items")),
    "items-search": PageVisit(True, _search),
    "items-none": PageVisit(True, _open("/app/items?q=nothing-like-this")),
    "item": PageVisit(True, _open(f"/app/items/{BOOKS}")),
    "item-reserved": PageVisit(True, _open(f"/app/items/{KETTLE}")),
    "code": PageVisit(True, _code),
    "code-open-now": PageVisit(True, _code_after_open_now),
    "history": PageVisit(True, _open("/app/history")),
    "loans": PageVisit(True, _open("/app/loans")),
    "problem": PageVisit(True, _open(f"/app/items/{BOOKS}/problem")),
    "not-found": PageVisit(True, lambda page, _s, _l: _goto(page, "/app/items/no_such_item", 404)),
}

NOT_PAGES = {"/", "/photos/{digest}"}
"""GET routes of the pages router that are not pages: a redirect to /app, and a photo."""

KNOWN_PROBLEMS: dict[tuple[str, ...], str] = {}
"""(check, page) or (check, page, language) → what is wrong; marked xfail(strict=True)."""


@dataclass
class Survey:
    """What the browser measured on one page in one language."""

    path: str
    violations: list[dict[str, Any]]
    layout_width: int
    overflow_px: float
    zoomed_layout_width: int
    zoomed_overflow_px: float
    zoomed_too_wide: list[dict[str, Any]]
    small_targets: list[dict[str, Any]]
    small_text: list[dict[str, Any]]
    body_font_px: float
    placeholders: list[str]
    links: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        # Short in a failure report; the assertion messages say what is wrong.
        return f"Survey({self.path!r})"


class Surveyor:
    """Visits each (page, language) once, on demand, and keeps what it measured.

    One tab per language and per signed-in or not (Auntie Wang signs in once per language, through
    the form), reused from page to page; it goes back to the phone's size before each page.
    """

    def __init__(self, browser: Browser, site: CloudUnderTest) -> None:
        self.browser = browser
        self.site = site
        self.surveys: dict[tuple[str, str], Survey] = {}
        self.tabs: dict[tuple[str, bool], Page] = {}

    def tab(self, language: str, is_signed_in: bool) -> Page:
        if (language, is_signed_in) not in self.tabs:
            page = new_phone_page(self.browser, locale=language, base_url=self.site.url)
            self.tabs[language, is_signed_in] = page
            if is_signed_in:
                sign_in(page, WANG, language)
        page = self.tabs[language, is_signed_in]
        page.set_viewport_size(PHONE_VIEWPORT)
        return page

    def close(self) -> None:
        for page in self.tabs.values():
            page.context.close()

    def survey(self, name: str, language: str) -> Survey:
        if (name, language) not in self.surveys:
            self.surveys[name, language] = self._measure(name, language)
        return self.surveys[name, language]

    def _measure(self, name: str, language: str) -> Survey:
        visit = PAGES[name]
        page = self.tab(language, visit.is_signed_in)
        visit.steps(page, self.site, language)
        expect(page.locator("html")).to_have_attribute("lang", language)
        found = Survey(
            path=page.evaluate("() => location.pathname"),
            violations=axe_violations(page),
            layout_width=layout_width_px(page),
            overflow_px=horizontal_overflow_px(page),
            zoomed_layout_width=0,
            zoomed_overflow_px=0,
            zoomed_too_wide=[],
            small_targets=small_targets(page),
            small_text=small_text(page),
            body_font_px=body_font_px(page),
            placeholders=PLACEHOLDER.findall(page.locator("body").inner_text()),
            links=page.eval_on_selector_all(
                "a[href]",
                "els => els.filter(a => a.origin === location.origin).map(a => a.pathname)",
            ),
        )
        page.set_viewport_size(ZOOM_200_VIEWPORT)
        found.zoomed_layout_width = layout_width_px(page)
        found.zoomed_overflow_px = horizontal_overflow_px(page)
        found.zoomed_too_wide = wider_than_viewport(page)
        return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudUnderTest]:
    """A seeded cloud for the module's survey, on its own Mosquitto (no locker: pages only)."""
    with module_cloud(tmp_path_factory, "pages-browser") as running:
        yield running


@pytest.fixture(scope="module")
def surveyor(chromium_browser: Browser, site: CloudUnderTest) -> Iterator[Surveyor]:
    """The module's surveyor (its measurements are shared by the checks below)."""
    running = Surveyor(chromium_browser, site)
    yield running
    running.close()


def cases(check: str) -> list[Any]:
    """(page, language) parameters for one check, known problems marked xfail(strict)."""
    found = []
    for name in PAGES:
        for language in LANGUAGES:
            problem = KNOWN_PROBLEMS.get((check, name, language)) or KNOWN_PROBLEMS.get(
                (check, name)
            )
            marks = [pytest.mark.xfail(strict=True, reason=problem)] if problem else []
            found.append(pytest.param(name, language, id=f"{name}-{language}", marks=marks))
    return found


def where(name: str, language: str, survey: Survey) -> str:
    return f"{name} ({language}, {survey.path}): "


@pytest.mark.parametrize(("name", "language"), cases("axe"))
def test_axe_finds_no_serious_or_critical_violation(
    surveyor: Surveyor, name: str, language: str
) -> None:
    survey = surveyor.survey(name, language)
    assert survey.violations == [], format_violations(
        survey.violations, where(name, language, survey)
    )


@pytest.mark.parametrize(("name", "language"), cases("reflow"))
def test_it_fits_the_phone_without_sideways_scrolling(
    surveyor: Surveyor, name: str, language: str
) -> None:
    survey = surveyor.survey(name, language)
    assert survey.layout_width == PHONE_VIEWPORT["width"], (
        "no <meta name=viewport width=device-width>?"
    )
    assert survey.overflow_px <= 1, (
        f"{where(name, language, survey)}{survey.overflow_px} px too wide"
    )


@pytest.mark.parametrize(("name", "language"), cases("reflow-200"))
def test_it_reflows_at_200_percent_zoom(surveyor: Surveyor, name: str, language: str) -> None:
    survey = surveyor.survey(name, language)
    assert survey.zoomed_layout_width == ZOOM_200_VIEWPORT["width"]
    assert survey.zoomed_overflow_px <= 1, (
        f"{where(name, language, survey)}{survey.zoomed_overflow_px:g} px too wide at 200 %: "
        + "; ".join(
            f"{w['element']} {w['text']!r} reaches {w['right_px']} px"
            for w in survey.zoomed_too_wide
        )
    )


@pytest.mark.parametrize(("name", "language"), cases("targets"))
def test_every_link_button_and_field_is_44_px_or_more(
    surveyor: Surveyor, name: str, language: str
) -> None:
    survey = surveyor.survey(name, language)
    assert survey.small_targets == [], where(name, language, survey) + "; ".join(
        f"{s['element']} {s['text']!r} is {s['width']}×{s['height']} px"
        for s in survey.small_targets
    )


@pytest.mark.parametrize(("name", "language"), cases("text-size"))
def test_text_is_18_px_or_more(surveyor: Surveyor, name: str, language: str) -> None:
    survey = surveyor.survey(name, language)
    assert survey.body_font_px >= 18
    assert survey.small_text == [], where(name, language, survey) + "; ".join(
        f"{s['element']} {s['text']!r} at {s['font_px']} px" for s in survey.small_text
    )


@pytest.mark.parametrize(("name", "language"), cases("filled"))
def test_no_placeholder_is_left_unfilled(surveyor: Surveyor, name: str, language: str) -> None:
    survey = surveyor.survey(name, language)
    assert survey.placeholders == [], f"{where(name, language, survey)}shows {survey.placeholders}"


def test_every_resident_page_is_surveyed(surveyor: Surveyor) -> None:
    page_routes = [
        route
        for route in pages_router.routes
        if isinstance(route, Route)
        and "GET" in (route.methods or ())
        and route.path not in NOT_PAGES
    ]
    surveys = [surveyor.survey(name, LANGUAGES[0]) for name in PAGES]
    surveyed = {s.path for s in surveys}
    linked = {link for s in surveys for link in s.links if link.startswith("/app")}
    unsurveyed = [
        route.path
        for route in page_routes
        if not any(route.path_regex.match(path) for path in surveyed)
    ]
    assert unsurveyed == [], f"pages no test visits (add them to PAGES): {unsurveyed}"
    not_pages = [
        link for link in linked if not any(route.path_regex.match(link) for route in page_routes)
    ]
    assert not_pages == [], f"links to no page route: {not_pages}"
