"""The social worker's problems and disputes, items and reservations, and the weekly report
(issue #10), over real HTTP on a seeded cloud with a private Mosquitto; and the report's pure
computations (cloud_api/core/reports.py) as tables.

- a resident's problem report is a case on ``/staff/cases``; on its page a refund by reversal
  moves the points back once (a second click says so and reverses nothing), compensation is
  credited (above the threshold it waits for a *different* social worker), a credit note is
  refused when the resident lacks the points, and resolving needs a note;
- ``/staff/items`` filters by status and title; an item page never shows a code's digits;
- the report of a week built through the API (a gift dropped off, a pickup, a cancelled
  reservation) equals the hand-computed figures, on the page and in ``/api/v1/reports/weekly``;
- a post without its CSRF token is 403 and changes nothing; residents and maintainers are sent
  to the staff sign-in page.

Browser checks (axe-core) of the same pages are in tests/test_sw_cases_browser.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta, timezone
from typing import Any

import httpx
import pytest
from conftest import CloudUnderTest, module_cloud
from test_pages import ALLOWED_BARE, TextNodes, cookie_named, csrf_of, sign_in
from test_settlement_scenarios import event, item_status, publish_as

from cloud_api import ledger
from cloud_api.cases import open_case
from cloud_api.core.reports import (
    HOUR_MS,
    WEEK_MS,
    ContributionRow,
    HistoryRow,
    ItemRow,
    OccupancyRow,
    ReportRows,
    ResidentRow,
    Series,
    TransferRow,
    WeekError,
    bar_chart_svg,
    figures_json,
    last_full_week,
    parse_week,
    status_at,
    week_of,
    weekly_figures,
    weeks_ending,
)
from cloud_api.grants.service import code_of
from cloud_api.seed import LOGINS, DemoLogin
from cloud_api.transparency import COMMUNITY_TZ
from station.scenarios import wait_for

WANG, LI, ZHANG, LIU, CHEN = LOGINS
TZ = timezone(timedelta(hours=8))

pytestmark = pytest.mark.mosquitto


# --- the pure report --------------------------------------------------------------------------


def test_weeks_are_iso_weeks_in_the_community_time_zone() -> None:
    week = parse_week("2026-W01", TZ)
    # ISO 2026-W01 starts on Monday 29 December 2025, 00:00 in UTC+8 = 28 Dec 16:00 UTC.
    assert week.start_ms == 1_766_937_600_000
    assert week.end_ms - week.start_ms == WEEK_MS
    assert week_of(week.start_ms, TZ) == week
    assert week_of(week.end_ms - 1, TZ) == week
    assert week_of(week.end_ms, TZ).label == "2026-W02"
    assert last_full_week(week.end_ms + 5, TZ) == week
    assert [w.label for w in weeks_ending(week, 3, TZ)] == ["2025-W51", "2025-W52", "2026-W01"]
    assert parse_week("2020-W53", TZ).label == "2020-W53"  # 2020 has 53 ISO weeks


@pytest.mark.parametrize("text", ["2026-W54", "2021-W53", "2026-W00", "2026-7", "26-W07", ""])
def test_a_week_that_does_not_exist_is_refused(text: str) -> None:
    with pytest.raises(WeekError):
        parse_week(text, TZ)


def h(
    item: str, at: int, a: str, b: str, actor: str | None = None, behalf: str | None = None
) -> HistoryRow:
    return HistoryRow(item, at, a, b, actor, behalf)


WEEK = parse_week("2026-W10", TZ)
S = WEEK.start_ms
E = WEEK.end_ms
AFTER = E + 1


def test_status_at_reads_the_history_and_falls_back_sensibly() -> None:
    item = ItemRow("i", "d", "picked_up", 0)
    rows = [h("i", S + 10, "listed", "reserved"), h("i", S + 20, "reserved", "picked_up")]
    assert status_at(item, rows, S) == "listed"  # before the first change: its from-status
    assert status_at(item, rows, S + 15) == "reserved"
    assert status_at(item, rows, S + 21) == "picked_up"
    new = [h("i", S + 10, "", "proposed")]
    assert status_at(item, new, S) is None  # did not exist yet
    assert status_at(ItemRow("s", "d", "listed", 0), [], S) == "listed"  # never moved
    assert status_at(ItemRow("s", "d", "listed", S + 5), [], S) is None


def test_a_week_with_no_activity_has_no_rates_and_no_division_by_zero() -> None:
    empty = weekly_figures(WEEK, ReportRows(), AFTER)
    assert (empty.items_in, empty.items_out, empty.points_issued, empty.points_redeemed) == (
        0,
        0,
        0,
        0,
    )
    assert empty.participation_rate is None
    assert empty.resource_utilization is None
    assert empty.mismatch_rate is None
    assert empty.compartment_utilization is None
    assert figures_json(empty)["mismatch_rate"] is None
    # Residents and compartments but nothing happening: participation 0, the others still "—".
    quiet = weekly_figures(
        WEEK,
        ReportRows(
            residents=(ResidentRow("a", 0, True),),
            compartments=(("l", "A1"),),
            current_occupancy=(("l", "A1", "absent"),),
            reporting_since=(("l", 0),),
        ),
        AFTER,
    )
    assert quiet.participation_rate == 0.0
    assert quiet.compartment_utilization == 0.0
    assert quiet.resource_utilization is None and quiet.mismatch_rate is None


def constructed_rows() -> ReportRows:
    """A week built by hand (see the test below for each expected figure)."""
    items = (
        ItemRow("gift", "ana", "listed", S + 100),
        ItemRow("kettle", "bo", "picked_up", 0),
        ItemRow("books", "bo", "listed", 0),
        ItemRow("coat", "bo", "listed", 0),  # never moved: on offer all week
        ItemRow("old", "bo", "picked_up", 0),  # taken before the week: not on offer
        ItemRow("drill", "bo", "on_loan", 0),
    )
    history = (
        h("old", S - 5000, "listed", "reserved", "cy"),
        h("old", S - 4000, "reserved", "picked_up", "device:l"),
        h("gift", S + 100, "", "proposed", "ana"),
        h("gift", S + 200, "proposed", "awaiting_dropoff", "ana"),
        h("gift", S + 300, "awaiting_dropoff", "pending_approval", "device:l"),
        h("gift", S + 400, "pending_approval", "listed", "sw"),
        h("kettle", S - 1000, "listed", "reserved", "ana"),  # reserved last week
        h("kettle", S + 500, "reserved", "collecting", "device:l"),
        h("kettle", S + 600, "collecting", "picked_up", "device:l"),
        h("books", S + 700, "listed", "reserved", "sw", "cy"),  # a worker for Cy
        h("books", S + 800, "reserved", "listed", "device:l"),  # expired
        h("books", S + 900, "listed", "reserved", "bo"),  # Bo reserves ...
        h("drill", S + 950, "listed", "reserved", "dee"),
        h("drill", S + 990, "reserved", "on_loan", "device:l"),  # a loan picked up
        h("books", E + 10, "reserved", "listed", "device:l"),  # ... it ends next week
    )
    transfers = (
        TransferRow("valuation_credit", "single", 30, S + 400, "sys:issuance", "mem:ana"),
        TransferRow("time_credit", "single", 8, S + 420, "sys:issuance", "mem:dee"),
        TransferRow("redemption", "pending", 12, S - 1000, "mem:ana", "sys:redemption"),
        TransferRow("redemption", "post", 12, S + 600, "mem:ana", "sys:redemption"),
        TransferRow("redemption", "void", 5, S + 800, "mem:cy", "sys:redemption"),
        TransferRow("reversal", "single", 12, S + 700, "sys:redemption", "mem:ana"),
        TransferRow("refund", "single", 3, S + 710, "sys:redemption", "mem:ana"),
        TransferRow("valuation_credit", "single", 99, S - 1, "sys:issuance", "mem:ana"),
        TransferRow("subsidy_funding", "single", 500, S + 1, "sys:issuance", "sys:subsidy_pool"),
        TransferRow("valuation_credit", "single", 7, S + 2, "sys:issuance", "mem:stranger"),
    )
    residents = (
        ResidentRow("ana", 0, True),
        ResidentRow("bo", 0, True),
        ResidentRow("cy", 0, True),
        ResidentRow("dee", 0, True),
        ResidentRow("eve", 0, True),  # did nothing
        ResidentRow("gone", 0, False),  # disabled: not active
        ResidentRow("late", E + 1, True),  # opened after the week
    )
    contributions = (
        ContributionRow("eve", S + 50, "rejected"),  # refused: not taking part
        ContributionRow("dee", S + 60, "approved"),
    )
    compartments = (("l", "A1"), ("l", "A2"), ("l", "A3"), ("l", "A4"))
    occupancy = (
        OccupancyRow("l", "A1", S - 10, "present"),  # full from before the week ...
        OccupancyRow("l", "A1", S + 6 * HOUR_MS, "absent"),  # ... emptied 6 h in
        OccupancyRow("l", "A2", S + 24 * HOUR_MS, "present"),  # first change ever: empty before
        OccupancyRow("l", "A3", S + 12 * HOUR_MS, "absent"),  # first change: full before
    )
    return ReportRows(
        items=items,
        history=history,
        transfers=transfers,
        occupancy=occupancy,
        compartments=compartments,
        current_occupancy=(("l", "A4", "present"), ("l", "A1", "absent")),
        reporting_since=(("l", S - 7 * 24 * HOUR_MS),),
        residents=residents,
        contributions=contributions,
    )


def test_a_locker_counts_only_from_its_first_report() -> None:
    # Installed two days into the week, full ever since: 5 days of its hours, all occupied; a
    # locker that never reported adds nothing (its hours before installation are nobody's).
    rows = ReportRows(
        compartments=(("new", "A1"), ("silent", "A1")),
        current_occupancy=(("new", "A1", "present"), ("silent", "A1", "present")),
        reporting_since=(("new", S + 48 * HOUR_MS),),
    )
    f = weekly_figures(WEEK, rows, AFTER)
    assert f.compartment_hours == pytest.approx(5 * 24)
    assert f.compartment_utilization == pytest.approx(1.0)
    assert weekly_figures(WEEK, replace(rows, reporting_since=()), AFTER).compartment_hours == 0


def test_the_figures_of_a_constructed_week_equal_the_hand_computed_ones() -> None:
    f = weekly_figures(WEEK, constructed_rows(), AFTER)
    assert f.items_in == 1  # the gift dropped off
    assert f.items_out == 2  # the kettle and the drill
    assert f.points_issued == 30 + 8  # credits to members in the week (not funding, not others)
    assert f.points_redeemed == 12  # the kettle's hold posted (the void is not a redemption)
    assert f.points_returned == 12 + 3  # the reversal of a payment and a refund
    # Taking part: ana (gift), cy (a worker reserved for her), bo (reserved books), dee (loan
    # picked up and a contribution); the kettle was picked up by ana (reserved last week).
    # Active: ana, bo, cy, dee, eve (not "gone", not "late").
    assert (f.participants, f.active_residents) == (4, 5)
    assert f.participation_rate == pytest.approx(0.8)
    # On offer during the week: gift, kettle (reserved at the start), books, coat, drill.
    assert f.items_available == 5
    assert f.resource_utilization == pytest.approx(2 / 5)
    # Reservations ended: kettle and drill (picked up), books once (expired) -> 1 of 3.
    assert (f.reservations_ended, f.reservations_unfulfilled) == (3, 1)
    assert f.mismatch_rate == pytest.approx(1 / 3)
    # Compartments: 4 x 168 h; A1 6 h, A2 144 h, A3 12 h, A4 168 h (never changed: as now).
    assert f.compartment_hours == pytest.approx(4 * 168)
    assert f.occupied_hours == pytest.approx(6 + 144 + 12 + 168)
    assert f.compartment_utilization == pytest.approx(330 / 672)
    assert f.notes == ()


def test_a_week_not_over_is_counted_up_to_now_and_says_so() -> None:
    now = S + 24 * HOUR_MS
    f = weekly_figures(WEEK, constructed_rows(), now)
    assert f.notes == ("partial",)
    assert f.compartment_hours == pytest.approx(4 * 24)
    assert f.occupied_hours == pytest.approx(6 + 0 + 12 + 24)
    before = weekly_figures(WEEK, constructed_rows(), S - 1)
    assert before.compartment_utilization is None  # nothing elapsed: no division by zero


def test_the_charts_are_named_svg_with_their_words_escaped() -> None:
    svg = bar_chart_svg(
        chart_id="c1",
        title="Items <in> & out",
        categories=["W01", "W02"],
        series=[Series("In", (3, 0)), Series("Out", (1, 2))],
    )
    assert svg.startswith('<svg class="chart" id="c1" role="img" aria-labelledby="c1-title"')
    assert '<title id="c1-title">Items &lt;in&gt; &amp; out</title>' in svg
    assert "<script" not in svg and "style=" not in svg
    assert svg.count("<rect") == 2 + 4  # two legend keys, four bars
    assert '<text class="data"' in svg and ">W02</text>" in svg
    flat = bar_chart_svg(chart_id="c2", title="t", categories=["W01"], series=[Series("a", (0,))])
    assert 'height="0.0"' in flat  # nothing to draw, and no division by zero


# --- the real app: sessions ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudUnderTest]:
    """A seeded cloud for the cases and items tests, on its own Mosquitto."""
    with module_cloud(tmp_path_factory, "sw-cases") as running:
        yield running


_SESSIONS: dict[tuple[int, str], str] = {}
"""Staff sessions per cloud and login: an authenticator code is accepted once per person."""


def staff_session(site: CloudUnderTest, login: DemoLogin) -> str:
    """A signed-in staff session through /staff/signin (password and TOTP), once per cloud."""
    key = (id(site), login.login)
    if key not in _SESSIONS:
        page = httpx.get(f"{site.url}/staff/signin")
        token = csrf_of(page.text)
        body = login.body(int(time.time() * 1000))
        done = httpx.post(
            f"{site.url}/staff/signin",
            data={
                "login": login.login,
                "password": login.secret,
                "totp": body["totp"],
                "csrf": token,
            },
            headers={"cookie": f"linli_csrf={token}"},
        )
        assert done.status_code == 303, done.text[:300]
        _SESSIONS[key] = cookie_named(done, "linli_session")["value"]
    return _SESSIONS[key]


def get(site: CloudUnderTest, path: str, session: str, language: str = "en") -> httpx.Response:
    return httpx.get(
        f"{site.url}{path}", headers={"cookie": f"linli_session={session}; linli_lang={language}"}
    )


def post(
    site: CloudUnderTest, path: str, session: str, data: dict[str, str], *, csrf: bool = True
) -> httpx.Response:
    """Post a console form (with the session's CSRF token, read off a console page)."""
    if csrf:
        data = {**data, "csrf": csrf_of(get(site, "/staff/cases", session).text)}
    return httpx.post(
        f"{site.url}{path}",
        data=data,
        headers={"cookie": f"linli_session={session}; linli_lang=en"},
    )


def api(site: CloudUnderTest, session: str) -> httpx.Client:
    """The API with a session's token (the page cookie holds the same token)."""
    return httpx.Client(base_url=site.url, headers={"authorization": f"Bearer {session}"})


def resident_token(site: CloudUnderTest, login: DemoLogin) -> str:
    answer = httpx.post(f"{site.url}/api/v1/session", json=login.body(0))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def available(site: CloudUnderTest, person_id: str) -> int:
    with site.store.snapshot() as db:
        posted, held = ledger.balances(db, f"mem:{person_id}")
    return posted - held


def picked_up(site: CloudUnderTest, item_id: str, grant_id: str, boot: str) -> None:
    """The locker reports the door opened, the item taken, the door closed."""
    grant = site.store.read_one(
        "SELECT device_id, compartment FROM grants WHERE id = ?", (grant_id,)
    )
    assert grant is not None
    device, door = grant["device_id"], grant["compartment"]
    publish_as(
        site,
        device,
        [
            event(device, boot, 1, "door_opened", compartment=door, grant_id=grant_id),
            event(
                device,
                boot,
                2,
                "occupancy_changed",
                compartment=door,
                grant_id=grant_id,
                data={"occupancy": "absent"},
            ),
            event(
                device,
                boot,
                3,
                "door_closed",
                compartment=door,
                grant_id=grant_id,
                data={"epoch": 0},
            ),
        ],
    )
    wait_for("picked up", lambda: item_status(site, item_id) in ("picked_up", "on_loan"), 15)


def put_in(site: CloudUnderTest, item_id: str, grant_id: str, boot: str, then: str) -> None:
    """The locker reports the door opened, an item inside, the door closed."""
    grant = site.store.read_one(
        "SELECT device_id, compartment FROM grants WHERE id = ?", (grant_id,)
    )
    assert grant is not None
    device, door = grant["device_id"], grant["compartment"]
    publish_as(
        site,
        device,
        [
            event(device, boot, 1, "door_opened", compartment=door, grant_id=grant_id),
            event(
                device,
                boot,
                2,
                "occupancy_changed",
                compartment=door,
                grant_id=grant_id,
                data={"occupancy": "present"},
            ),
            event(
                device,
                boot,
                3,
                "door_closed",
                compartment=door,
                grant_id=grant_id,
                data={"epoch": 1},
            ),
        ],
    )
    wait_for(f"the item {then}", lambda: item_status(site, item_id) == then, 15)


def one(site: CloudUnderTest, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row a query finds (the row must exist)."""
    row = site.store.read_one(sql, params)
    assert row is not None, sql
    return row[0]


def grant_status(site: CloudUnderTest, grant_id: str) -> str:
    row = site.store.read_one("SELECT status FROM grants WHERE id = ?", (grant_id,))
    assert row is not None
    return str(row["status"])


def case_status(site: CloudUnderTest, case_id: str) -> str:
    row = site.store.read_one("SELECT status FROM cases WHERE id = ?", (case_id,))
    assert row is not None
    return str(row["status"])


def problem(html: str) -> str:
    found = re.search(r'data-testid="problem">(.*?)</p>', html, re.S)
    return re.sub(r"<[^>]+>", "", found.group(1)) if found else ""


# --- problems and disputes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def problem_case(site: CloudUnderTest) -> str:
    """Auntie Wang picks up the kettle (reserved in the seed: 12 points) and reports a problem
    through the resident API; return the case's id."""
    grant = site.store.read_one(
        "SELECT id FROM grants WHERE item_id = 'itm_kettle' AND status = 'active'"
    )
    assert grant is not None
    picked_up(site, "itm_kettle", grant["id"], "a1" * 6)
    wang = resident_token(site, WANG)
    answer = httpx.post(
        f"{site.url}/api/v1/items/itm_kettle/problem",
        json={"problem": "not_as_described", "note": "the lid is missing"},
        headers={"authorization": f"Bearer {wang}"},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_id"])


def test_a_problem_report_appears_as_a_case(site: CloudUnderTest, problem_case: str) -> None:
    zhang = staff_session(site, ZHANG)
    listing = get(site, "/staff/cases", zhang)
    assert listing.status_code == 200
    row = re.search(rf'data-case="{problem_case}">(.*?)</tr>', listing.text, re.S)
    assert row, listing.text[:2000]
    assert "Problem reported by a resident" in row.group(1)
    assert "Not as described" in row.group(1)
    assert "电热水壶" in row.group(1)  # the item's title
    assert "Auntie Wang" in row.group(1) and "Uncle Li" in row.group(1)
    page = get(site, f"/staff/cases/{problem_case}", zhang)
    assert page.status_code == 200
    for action in ("refund", "compensation", "credit_note", "resolve"):
        assert f'data-testid="action-{action}"' in page.text
    assert 'data-testid="action-deposit"' not in page.text  # a gift has no deposit
    assert 'data-testid="action-return_grant"' not in page.text  # a gift does not come back
    assert "the lid is missing" in page.text
    options = re.findall(r'<option class="data" value="(per_\d)"[^>]*>([^<]*)<', page.text)
    assert ("per_1", "王阿姨 (Auntie Wang, 72) · reported it") in options
    assert ("per_2", "李叔叔 (Uncle Li) · gave it") in options
    chinese = get(site, f"/staff/cases/{problem_case}", zhang, "zh-CN")
    assert "居民报告的问题" in chinese.text and "冲正退款" in chinese.text


def console_pages(case_id: str) -> list[str]:
    return [
        "/staff/cases",
        f"/staff/cases/{case_id}",
        "/staff/cases?status=all",
        "/staff/items",
        "/staff/items/itm_kettle",
        "/staff/items/itm_books",
        "/staff/report",
    ]


def test_the_pseudo_locale_finds_no_hard_coded_text(
    site: CloudUnderTest, problem_case: str
) -> None:
    zhang = staff_session(site, ZHANG)
    for path in console_pages(problem_case):
        html = get(site, path, zhang, "x-pseudo").text
        parser = TextNodes()
        parser.feed(html)
        bare = []
        for line in parser.lines():
            rest = re.sub(r"⟦[^⟦⟧]*⟧", "", line)
            for word in ALLOWED_BARE:
                rest = rest.replace(word, "")
            if not re.fullmatch(r"[\s§·+\-0-9,:]*", rest):
                bare.append(line)
        assert not bare, f"hard-coded text on {path}: {bare}"


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_no_console_page_leaves_a_placeholder_unfilled(
    site: CloudUnderTest, problem_case: str, language: str
) -> None:
    zhang = staff_session(site, ZHANG)
    for path in console_pages(problem_case):
        html = get(site, path, zhang, language).text
        assert not re.search(r"\{[a-z_]+\}", html), (path, re.findall(r".{30}\{[a-z_]+\}", html))
        assert f'<html lang="{language}">' in html


def test_refund_by_reversal_moves_the_points_back_once(
    site: CloudUnderTest, problem_case: str
) -> None:
    zhang = staff_session(site, ZHANG)
    page = get(site, f"/staff/cases/{problem_case}", zhang).text
    payment = re.search(
        r'<select id="refund-payment" name="payment" required>\s*<option value="([^"]+)"', page
    )
    assert payment
    before = available(site, WANG_ID)
    done = post(
        site,
        f"/staff/cases/{problem_case}/refund",
        zhang,
        {"payment": payment.group(1), "note": "not as described: refunded"},
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?done=refund")
    assert available(site, WANG_ID) == before + 12
    again = post(
        site,
        f"/staff/cases/{problem_case}/refund",
        zhang,
        {"payment": payment.group(1), "note": "clicked twice"},
    )
    assert again.status_code == 409
    assert "already refunded" in problem(again.text)
    assert available(site, WANG_ID) == before + 12
    reversals = site.store.read(
        "SELECT reason FROM transfers WHERE kind = 'reversal' AND reverses_id = ?",
        (payment.group(1),),
    )
    assert [r["reason"] for r in reversals] == ["not as described: refunded"]
    shown = get(site, f"/staff/cases/{problem_case}?done=refund", zhang).text
    assert 'data-testid="done"' in shown and 'data-testid="all-refunded"' in shown
    assert 'id="refund-payment"' not in shown


WANG_ID, LI_ID = "per_1", "per_2"


def test_compensation_is_credited_and_a_large_one_waits_for_a_second_worker(
    site: CloudUnderTest, problem_case: str
) -> None:
    zhang, chen = staff_session(site, ZHANG), staff_session(site, CHEN)
    before = available(site, WANG_ID)
    done = post(
        site,
        f"/staff/cases/{problem_case}/compensation",
        zhang,
        {"member": WANG_ID, "amount": "3", "note": "for the trouble", "nonce": "frm_small"},
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?done=compensation")
    assert available(site, WANG_ID) == before + 3
    refs = site.store.read_one(
        "SELECT kind, refs FROM transfers WHERE idempotency_key = ?",
        (f"case:{problem_case}:compensation:frm_small",),
    )
    assert refs is not None and refs["kind"] == "refund"
    assert ["dispute", problem_case] in json.loads(refs["refs"])
    # The same form posted twice (a double click) records once.
    post(
        site,
        f"/staff/cases/{problem_case}/compensation",
        zhang,
        {"member": WANG_ID, "amount": "3", "note": "for the trouble", "nonce": "frm_small"},
    )
    assert available(site, WANG_ID) == before + 3

    large = post(
        site,
        f"/staff/cases/{problem_case}/compensation",
        zhang,
        {"member": WANG_ID, "amount": "250", "note": "a large one", "nonce": "frm_large"},
    )
    assert large.headers["location"].endswith("?done=awaiting")
    assert available(site, WANG_ID) == before + 3
    shown = get(site, f"/staff/cases/{problem_case}?done=awaiting", zhang).text
    assert "awaiting a second approver" in shown
    assert 'data-testid="parked"' in shown and 'data-testid="approve-parked"' not in shown
    request_id = one(
        site, "SELECT id FROM ledger_requests WHERE status = 'awaiting_second_approver'"
    )
    own = post(site, f"/staff/cases/{problem_case}/approve", zhang, {"request_id": request_id})
    assert own.status_code == 422 and "different social worker" in problem(own.text)
    assert available(site, WANG_ID) == before + 3
    assert 'data-testid="approve-parked"' in get(site, f"/staff/cases/{problem_case}", chen).text
    approved = post(site, f"/staff/cases/{problem_case}/approve", chen, {"request_id": request_id})
    assert approved.headers["location"].endswith("?done=approved")
    assert available(site, WANG_ID) == before + 253
    row = site.store.read_one(
        "SELECT actor, approved_by FROM transfers WHERE idempotency_key = ?",
        (f"case:{problem_case}:compensation:frm_large",),
    )
    assert row is not None and tuple(row) == ("per_3", "per_5")


def test_a_credit_note_is_a_deduction_refused_beyond_the_residents_points(
    site: CloudUnderTest, problem_case: str
) -> None:
    zhang = staff_session(site, ZHANG)
    before = available(site, LI_ID)
    done = post(
        site,
        f"/staff/cases/{problem_case}/credit_note",
        zhang,
        {"member": LI_ID, "amount": "2", "note": "described it wrongly", "nonce": "frm_cn1"},
    )
    assert done.headers["location"].endswith("?done=credit_note")
    assert available(site, LI_ID) == before - 2
    too_much = post(
        site,
        f"/staff/cases/{problem_case}/credit_note",
        zhang,
        {"member": LI_ID, "amount": "9999", "note": "too much", "nonce": "frm_cn2"},
    )
    assert too_much.status_code == 422 and "not have enough points" in problem(too_much.text)
    assert available(site, LI_ID) == before - 2
    stranger = post(
        site,
        f"/staff/cases/{problem_case}/credit_note",
        zhang,
        {"member": "per_3", "amount": "1", "note": "not involved", "nonce": "frm_cn3"},
    )
    assert stranger.status_code == 422 and "involved in the case" in problem(stranger.text)
    bad = post(
        site,
        f"/staff/cases/{problem_case}/compensation",
        zhang,
        {"member": WANG_ID, "amount": "ten", "note": "x", "nonce": "frm_cn4"},
    )
    assert bad.status_code == 422 and "whole number" in problem(bad.text)


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    site: CloudUnderTest, problem_case: str
) -> None:
    zhang = staff_session(site, ZHANG)
    before = site.store.dump()
    for action, data in [
        ("refund", {"payment": "x", "note": "n"}),
        ("compensation", {"member": WANG_ID, "amount": "5", "note": "n", "nonce": "frm_x"}),
        ("resolve", {"note": "n"}),
    ]:
        refused = post(site, f"/staff/cases/{problem_case}/{action}", zhang, data, csrf=False)
        assert refused.status_code == 403, action
        forged = post(
            site,
            f"/staff/cases/{problem_case}/{action}",
            zhang,
            {**data, "csrf": "0" * 40},
            csrf=False,
        )
        assert forged.status_code == 403, action
    refused = post(site, "/staff/items/itm_books/cancel", zhang, {"reason": "n"}, csrf=False)
    assert refused.status_code == 403
    after = site.store.dump()
    changed = {t for t in before if before[t] != after[t]} - {
        "sign_in_attempts",
        "job_runs",
        "notifications",
    }
    assert not changed, changed


def test_resolving_needs_a_note(site: CloudUnderTest, problem_case: str) -> None:
    zhang = staff_session(site, ZHANG)
    empty = post(site, f"/staff/cases/{problem_case}/resolve", zhang, {"note": "   "})
    assert empty.status_code == 422 and "note" in problem(empty.text).lower()
    assert case_status(site, problem_case) == "open"
    done = post(
        site, f"/staff/cases/{problem_case}/resolve", zhang, {"note": "refunded and compensated"}
    )
    assert done.headers["location"].endswith("?done=resolved")
    row = site.store.read_one(
        "SELECT status, resolved_by, resolution FROM cases WHERE id = ?", (problem_case,)
    )
    assert row is not None and tuple(row) == ("resolved", "per_3", "refunded and compensated")
    again = post(site, f"/staff/cases/{problem_case}/resolve", zhang, {"note": "again"})
    assert again.status_code == 409 and "already resolved" in problem(again.text)
    resolved = get(site, "/staff/cases?status=resolved", zhang).text
    assert f'data-case="{problem_case}"' in resolved
    assert f'data-case="{problem_case}"' not in get(site, "/staff/cases", zhang).text
    assert get(site, "/staff/cases?status=bogus", zhang).status_code == 422
    assert get(site, "/staff/cases/case_nope", zhang).status_code == 404


def test_residents_and_maintainers_are_sent_to_the_staff_sign_in(site: CloudUnderTest) -> None:
    resident = sign_in(site, WANG)
    maintainer = staff_session(site, LIU)
    for session in (resident, maintainer):
        for path in ("/staff/cases", "/staff/items", "/staff/items/itm_books", "/staff/report"):
            answer = get(site, path, session)
            assert answer.status_code == 303 and answer.headers["location"] == "/staff/signin", path
        refused = httpx.post(
            f"{site.url}/staff/items/itm_books/cancel",
            data={"reason": "x", "csrf": "0" * 40},
            headers={"cookie": f"linli_session={session}"},
        )
        assert refused.status_code == 303 and refused.headers["location"] == "/staff/signin"
    with api(site, resident) as client:
        assert client.get("/api/v1/reports/weekly").status_code == 403
    with api(site, maintainer) as client:
        assert client.get("/api/v1/reports/weekly").status_code == 200  # staff of the community
    assert httpx.get(f"{site.url}/api/v1/reports/weekly").status_code == 401


# --- items and reservations ---------------------------------------------------------------------


def test_the_items_page_filters_and_never_shows_a_code(site: CloudUnderTest) -> None:
    zhang = staff_session(site, ZHANG)
    everything = get(site, "/staff/items", zhang).text
    assert {"itm_kettle", "itm_books", "itm_coat"} <= set(
        re.findall(r'data-item="([^"]+)"', everything)
    )
    listed = get(site, "/staff/items?status=listed", zhang).text
    statuses = re.findall(r'data-status="([^"]+)"', listed)
    assert statuses and set(statuses) == {"listed"}
    assert "itm_kettle" not in listed  # picked up by now
    found = get(site, "/staff/items?q=Winter", zhang).text
    assert re.findall(r'data-item="([^"]+)"', found) == ["itm_coat"]
    assert 'data-testid="no-items"' in get(site, "/staff/items?q=nothing-like-this", zhang).text
    assert get(site, "/staff/items?status=bogus", zhang).status_code == 422
    assert get(site, "/staff/items/itm_nope", zhang).status_code == 404
    # Reserve the books for Auntie Wang: the page shows the code's place, never its digits.
    wang = resident_token(site, WANG)
    shown = httpx.post(
        f"{site.url}/api/v1/items/itm_books/reservation",
        json={},
        headers={"authorization": f"Bearer {wang}"},
    ).json()
    counter = one(site, "SELECT code_counter FROM grants WHERE id = ?", (shown["grant_id"],))
    digits = code_of(site.keys, shown["grant_id"], counter)
    page = get(site, "/staff/items/itm_books", zhang).text
    assert 'data-testid="grants"' in page and "Pickup code" in page
    assert digits not in page and f"{digits[:4]} {digits[4:]}" not in page
    assert 'data-testid="history"' in page and "Auntie Wang" in page
    assert 'data-testid="do-cancel"' in page
    no_reason = post(site, "/staff/items/itm_books/cancel", zhang, {"reason": ""})
    assert no_reason.status_code == 422
    assert grant_status(site, shown["grant_id"]) == "active"
    cancelled = post(site, "/staff/items/itm_books/cancel", zhang, {"reason": "she phoned"})
    assert cancelled.headers["location"].endswith("?done=cancel")
    assert grant_status(site, shown["grant_id"]) == "revoked"
    review = post(
        site, "/staff/items/itm_coat/review", zhang, {"reason": "x", "decision": "relist"}
    )
    assert review.status_code == 422  # a listed item may only go back to its donor
    check = post(site, "/staff/items/itm_coat/check", zhang, {"reason": "x", "decision": "ok"})
    assert check.status_code == 409  # nothing was returned: no check to record


def test_a_loan_case_gives_a_return_code_keeps_the_deposit_and_relists(
    site: CloudUnderTest,
) -> None:
    zhang = staff_session(site, ZHANG)
    wang, li = resident_token(site, WANG), resident_token(site, LI)
    as_li = {"authorization": f"Bearer {li}"}
    as_wang = {"authorization": f"Bearer {wang}"}
    drill = httpx.post(
        f"{site.url}/api/v1/items",
        json={
            "title": "电钻 Drill",
            "category": "tools",
            "kind": "lend",
            "size": "S",
            "deposit_points": 5,
            "loan_days": 7,
        },
        headers=as_li,
    ).json()["item_id"]
    dropoff = httpx.post(f"{site.url}/api/v1/items/{drill}/dropoff", json={}, headers=as_li)
    assert dropoff.status_code == 201, dropoff.text
    put_in(site, drill, dropoff.json()["grant_id"], "e5" * 6, "pending_approval")
    with api(site, zhang) as client:
        assert client.post(
            f"/api/v1/items/{drill}/approve", json={"points": 4, "reason": "ok"}
        ).is_success
    pickup = httpx.post(f"{site.url}/api/v1/items/{drill}/reservation", json={}, headers=as_wang)
    assert pickup.status_code == 201, pickup.text
    picked_up(site, drill, pickup.json()["grant_id"], "e6" * 6)
    assert item_status(site, drill) == "on_loan"
    assert 'data-testid="do-' not in get(site, f"/staff/items/{drill}", zhang).text
    # A dispute about the loan (a late report of the pickup code, say): the borrower is given a
    # code to bring the drill back.
    with site.store.write() as db:
        case_id = open_case(
            db,
            community_id="sunny-garden",
            kind="late_conflict",
            now_ms=int(time.time() * 1000),
            event_ref=f"test:{drill}",
            item_id=drill,
            person_id=WANG_ID,
        )
    assert case_id is not None
    page = get(site, f"/staff/cases/{case_id}", zhang).text
    assert 'data-testid="action-return_grant"' in page
    assert 'data-testid="action-deposit"' not in page  # late_conflict: not its kind's action
    given = post(site, f"/staff/cases/{case_id}/return_grant", zhang, {"note": "bring it back"})
    assert given.headers["location"].endswith("?done=return_grant"), given.text[:300]
    assert item_status(site, drill) == "awaiting_return"
    code = site.store.read_one(
        "SELECT id, person_id FROM grants WHERE item_id = ? AND purpose = 'return'"
        " AND status = 'active'",
        (drill,),
    )
    assert code is not None and code["person_id"] == WANG_ID
    causes = [
        r["cause"]
        for r in site.store.read("SELECT cause FROM item_history WHERE item_id = ?", (drill,))
    ]
    assert any("bring it back" in c for c in causes)
    again = post(site, f"/staff/cases/{case_id}/return_grant", zhang, {"note": "again"})
    assert again.status_code == 409 and "not offered" in problem(again.text)
    # The drill comes back damaged: the check opens a damaged_return case.
    put_in(site, drill, code["id"], "e7" * 6, "returned_pending_check")
    item_page = get(site, f"/staff/items/{drill}", zhang).text
    assert 'data-testid="do-check"' in item_page
    checked = post(
        site,
        f"/staff/items/{drill}/check",
        zhang,
        {"reason": "chuck broken", "decision": "damaged"},
    )
    assert checked.headers["location"].endswith("?done=check")
    damaged = one(
        site, "SELECT id FROM cases WHERE kind = 'damaged_return' AND item_id = ?", (drill,)
    )
    page = get(site, f"/staff/cases/{damaged}", zhang).text
    for action in ("deposit", "credit_note", "compensation", "refund", "review"):
        assert f'data-testid="action-{action}"' in page, action
    assert 'data-testid="action-return_grant"' not in page  # it is in the locker
    held = available(site, WANG_ID)
    no_choice = post(site, f"/staff/cases/{damaged}/deposit", zhang, {"note": "x"})
    assert no_choice.status_code == 422 and "choose a decision" in problem(no_choice.text)
    kept = post(
        site, f"/staff/cases/{damaged}/deposit", zhang, {"decision": "keep", "note": "broken"}
    )
    assert kept.headers["location"].endswith("?done=deposit")
    deposit = site.store.read_one(
        "SELECT r.phase FROM transfers t JOIN transfers r ON r.pending_id = t.id"
        " WHERE t.kind = 'penalty' AND t.phase = 'pending' AND t.refs LIKE ?",
        (f'%"{drill}"%',),
    )
    assert deposit is not None and deposit["phase"] == "post"
    assert available(site, WANG_ID) == held  # it was held already: now it is charged
    relisted = post(
        site, f"/staff/cases/{damaged}/review", zhang, {"decision": "relist", "note": "repaired"}
    )
    assert relisted.headers["location"].endswith("?done=review")
    assert item_status(site, drill) == "listed"


# --- the weekly report --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudUnderTest]:
    """A second seeded cloud for the report (its figures are computed from a known start), with
    a 1 s staleness bound so a cancelled reservation settles at once."""
    with module_cloud(tmp_path_factory, "sw-report", staleness_s=1) as running:
        yield running


def test_the_report_of_a_constructed_week_equals_the_hand_computed_figures(
    report_site: CloudUnderTest,
) -> None:
    site = report_site
    started = int(time.time() * 1000)
    zhang = staff_session(site, ZHANG)
    wang, li = resident_token(site, WANG), resident_token(site, LI)
    # 1. Auntie Wang picks up the kettle she reserved in the seed (12 points).
    kettle = one(site, "SELECT id FROM grants WHERE item_id = 'itm_kettle'")
    picked_up(site, "itm_kettle", kettle, "b2" * 6)
    # 2. Uncle Li gives a lamp: proposed, dropped off, approved at 10 points.
    with httpx.Client(base_url=site.url, headers={"authorization": f"Bearer {li}"}) as client:
        lamp = client.post("/api/v1/items", json={"title": "台灯 Lamp", "category": "appliance"})
        assert lamp.status_code == 201, lamp.text
        lamp_id = lamp.json()["item_id"]
        place = client.post(f"/api/v1/items/{lamp_id}/dropoff", json={}).json()
    device, door, grant_id = place["device_id"], place["compartment"], place["grant_id"]
    boot = "c3" * 6
    publish_as(
        site,
        device,
        [
            event(device, boot, 1, "door_opened", compartment=door, grant_id=grant_id),
            event(
                device,
                boot,
                2,
                "occupancy_changed",
                compartment=door,
                grant_id=grant_id,
                data={"occupancy": "present"},
            ),
            event(
                device,
                boot,
                3,
                "door_closed",
                compartment=door,
                grant_id=grant_id,
                data={"epoch": 1},
            ),
        ],
    )
    wait_for("the lamp inside", lambda: item_status(site, lamp_id) == "pending_approval", 15)
    with api(site, zhang) as client:
        approved = client.post(
            f"/api/v1/items/{lamp_id}/approve", json={"points": 10, "reason": "ok"}
        )
        assert approved.status_code == 200, approved.text
    # 3. Auntie Wang reserves the books and cancels: it ends without a pickup.
    with httpx.Client(base_url=site.url, headers={"authorization": f"Bearer {wang}"}) as client:
        assert client.post("/api/v1/items/itm_books/reservation", json={}).status_code == 201
        assert (
            client.post(
                "/api/v1/items/itm_books/reservation/cancel", json={"reason": "no"}
            ).status_code
            == 202
        )
    wait_for("the books listed again", lambda: item_status(site, "itm_books") == "listed", 20)
    finished = int(time.time() * 1000)
    week = week_of(started, COMMUNITY_TZ)
    seeded = one(site, "SELECT MIN(created_ms) FROM people")
    if week_of(finished, COMMUNITY_TZ) != week or week_of(seeded, COMMUNITY_TZ) != week:
        pytest.skip("the test ran across a week's boundary (Monday 00:00 UTC+8)")

    with api(site, zhang) as client:
        answer = client.get("/api/v1/reports/weekly", params={"week": week.label})
    assert answer.status_code == 200, answer.text
    figures = answer.json()["week"]
    assert figures["week"] == week.label and figures["notes"] == ["partial"]
    assert figures["items_in"] == 1  # the lamp
    assert figures["items_out"] == 1  # the kettle
    assert figures["points_issued"] == 2 * 50 + 10  # the seed's credits and the lamp's
    assert figures["points_redeemed"] == 12
    assert figures["points_returned"] == 0
    assert (figures["participants"], figures["active_residents"]) == (2, 2)
    assert figures["participation_rate"] == 1.0
    # On offer: the kettle (reserved), the books and the coat (listed), the lamp (listed).
    assert figures["items_available"] == 4
    assert figures["resource_utilization"] == 0.25
    assert (figures["reservations_ended"], figures["reservations_unfulfilled"]) == (2, 1)
    assert figures["mismatch_rate"] == 0.5
    # Compartments: 8; the books' (A3) and the coat's (locker-b A4) full since the seed, the
    # kettle's full until it was taken, the lamp's full since it was dropped off.
    elapsed_h = figures["compartment_hours"] / 8
    taken = one(
        site,
        "SELECT wall_ms FROM device_events WHERE type = 'occupancy_changed' AND boot_id = ?",
        ("b2" * 6,),
    )
    put_in = one(
        site,
        "SELECT wall_ms FROM device_events WHERE type = 'occupancy_changed' AND boot_id = ?",
        (boot,),
    )
    expected = 3 * elapsed_h + (taken - put_in) / HOUR_MS
    assert figures["occupied_hours"] == pytest.approx(expected, abs=0.15)
    assert len(answer.json()["weeks"]) == 8 and answer.json()["weeks"][-1] == figures

    page = get(site, f"/staff/report?week={week.label}", zhang)
    assert page.status_code == 200
    cell = lambda name: re.search(rf'data-testid="{name}">(.*?)</td>', page.text, re.S).group(1)  # noqa: E731
    assert ">1<" in cell("items_in") and ">1<" in cell("items_out")
    assert ">110<" in cell("points_issued") and ">12<" in cell("points_redeemed")
    assert "100.0%" in cell("participation")
    assert "25.0%" in cell("resource") and "50.0%" in cell("mismatch")
    assert page.text.count('role="img"') == 2 and page.text.count("<title id=") == 2
    assert "Items in and out, last 8 weeks" in page.text

    quiet = client_get(site, zhang, "/api/v1/reports/weekly?week=2020-W01")
    assert quiet["week"]["items_in"] == 0 and quiet["week"]["mismatch_rate"] is None
    assert quiet["week"]["participation_rate"] is None  # nobody's account existed yet
    bad = client_get(site, zhang, "/api/v1/reports/weekly?week=2026-W60", status=422)
    assert bad["code"] == "invalid" and bad["field"] == "week"
    shown = get(site, "/staff/report?week=2026-W60", zhang)
    assert shown.status_code == 422 and "no such week" in problem(shown.text)
    default = get(site, "/staff/report", zhang).text
    assert last_full_week(finished, COMMUNITY_TZ).label in default


def client_get(site: CloudUnderTest, session: str, path: str, status: int = 200) -> dict[str, Any]:
    with api(site, session) as client:
        answer = client.get(path)
    assert answer.status_code == status, answer.text
    result: dict[str, Any] = answer.json()
    return result
