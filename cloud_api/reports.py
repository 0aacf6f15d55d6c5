"""The weekly report: the rows it reads from one community's store, and its API route.

``GET /api/v1/reports/weekly?week=YYYY-Www`` (staff of the community; default the last full week
in the community's time zone) answers the week's figures and the same figures for the
:data:`~cloud_api.core.reports.CHART_WEEKS` weeks ending with it (the charts' data). The
computations are pure (:mod:`cloud_api.core.reports`); docs/reports.md defines each figure.

Example:
    >>> report = weekly_report(store, "sunny-garden", parse_week("2026-W47", COMMUNITY_TZ), now)
    >>> report["week"]["items_in"], len(report["weeks"])
    (3, 8)
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Query

from cloud_api.core.reports import (
    CHART_WEEKS,
    WEEK_PATTERN,
    ContributionRow,
    HistoryRow,
    ItemRow,
    OccupancyRow,
    ReportRows,
    ResidentRow,
    TransferRow,
    Week,
    WeekError,
    figures_json,
    last_full_week,
    parse_week,
    weekly_figures,
    weeks_ending,
)
from cloud_api.deps import ServicesDep, Staff
from cloud_api.errors import Invalid
from cloud_api.store import StorePort
from cloud_api.transparency import COMMUNITY_TZ

router = APIRouter(prefix="/api/v1", tags=["reports"])
WeekQuery = Annotated[str | None, Query(max_length=8, pattern=WEEK_PATTERN)]


def read_rows(
    db: sqlite3.Connection, community_id: str, since_ms: int, until_ms: int
) -> ReportRows:
    """Everything the report of ``[since_ms, until_ms)`` needs from one community."""
    items = tuple(
        ItemRow(r["id"], r["donor_id"], r["status"], r["created_ms"])
        for r in db.execute(
            "SELECT id, donor_id, status, created_ms FROM items WHERE community_id = ?",
            (community_id,),
        )
    )
    history = tuple(
        HistoryRow(
            r["item_id"],
            r["at_ms"],
            r["from_status"],
            r["to_status"],
            r["actor"],
            r["on_behalf_of"],
        )
        for r in db.execute(
            "SELECT h.item_id, h.at_ms, h.from_status, h.to_status, h.actor, h.on_behalf_of"
            " FROM item_history h JOIN items i ON i.id = h.item_id"
            " WHERE i.community_id = ? AND h.at_ms < ? ORDER BY h.at_ms, h.rowid",
            (community_id, until_ms),
        )
    )
    members = "SELECT 'mem:' || id FROM people WHERE community_id = ? AND role = 'resident'"
    transfers = tuple(
        TransferRow(
            r["kind"],
            r["phase"],
            r["amount"],
            r["created_ms"],
            r["debit_account"],
            r["credit_account"],
        )
        for r in db.execute(
            "SELECT kind, phase, amount, created_ms, debit_account, credit_account"  # noqa: S608
            " FROM transfers WHERE created_ms >= ? AND created_ms < ?"
            f" AND (credit_account IN ({members}) OR debit_account IN ({members}))",
            (since_ms, until_ms, community_id, community_id),
        )
    )
    lockers = "SELECT id FROM devices WHERE community_id = ? AND role = 'locker'"
    compartments = db.execute(
        f"SELECT device_id, name, occupancy FROM compartments WHERE device_id IN ({lockers})"  # noqa: S608
        " ORDER BY device_id, name",
        (community_id,),
    ).fetchall()
    occupancy_sql = (
        "SELECT device_id, compartment, wall_ms,"  # noqa: S608
        " COALESCE(json_extract(payload, '$.data.occupancy'), 'unknown') AS occupancy"
        " FROM device_events WHERE type = 'occupancy_changed' AND compartment IS NOT NULL"
        f" AND device_id IN ({lockers})"
    )
    in_range = db.execute(
        f"{occupancy_sql} AND wall_ms >= ? AND wall_ms < ?", (community_id, since_ms, until_ms)
    ).fetchall()
    # Per compartment, the last change before the range (its state when the range starts) and
    # the first change ever (what it was before, if the range starts before it).
    edges = db.execute(
        f"SELECT e.* FROM ({occupancy_sql}) e JOIN (SELECT device_id, compartment,"  # noqa: S608
        " MAX(CASE WHEN wall_ms < ? THEN wall_ms END) AS last_before, MIN(wall_ms) AS first"
        f" FROM ({occupancy_sql}) GROUP BY device_id, compartment) b"
        " ON b.device_id = e.device_id AND b.compartment = e.compartment"
        " AND (e.wall_ms = b.last_before OR e.wall_ms = b.first)",
        (community_id, since_ms, community_id),
    ).fetchall()
    seen: set[tuple[str, str, int, str]] = set()
    occupancy = []
    for r in [*edges, *in_range]:
        key = (r["device_id"], r["compartment"], r["wall_ms"], r["occupancy"])
        if key not in seen:
            seen.add(key)
            occupancy.append(OccupancyRow(*key))
    residents = tuple(
        ResidentRow(r["id"], r["created_ms"], r["status"] == "active")
        for r in db.execute(
            "SELECT id, created_ms, status FROM people WHERE community_id = ? AND role = 'resident'",
            (community_id,),
        )
    )
    contributions = tuple(
        ContributionRow(r["provider_id"], r["created_ms"], r["status"])
        for r in db.execute(
            "SELECT provider_id, created_ms, status FROM contributions WHERE community_id = ?"
            " AND created_ms >= ? AND created_ms < ?",
            (community_id, since_ms, until_ms),
        )
    )
    reporting_since = tuple(
        (r["device_id"], int(r["first_ms"]))
        for r in db.execute(
            f"SELECT device_id, MIN(wall_ms) AS first_ms FROM device_events"  # noqa: S608
            f" WHERE device_id IN ({lockers}) GROUP BY device_id",
            (community_id,),
        )
    )
    return ReportRows(
        items=items,
        history=history,
        transfers=transfers,
        occupancy=tuple(occupancy),
        compartments=tuple((r["device_id"], r["name"]) for r in compartments),
        current_occupancy=tuple((r["device_id"], r["name"], r["occupancy"]) for r in compartments),
        reporting_since=reporting_since,
        residents=residents,
        contributions=contributions,
    )


def chosen_week(text: str | None, now_ms: int) -> Week:
    """The week asked for, or the last full week (:class:`Invalid` for one that does not exist)."""
    if not text:
        return last_full_week(now_ms, COMMUNITY_TZ)
    try:
        return parse_week(text, COMMUNITY_TZ)
    except WeekError as exc:
        raise Invalid(str(exc), field="week") from None


def weekly_report(
    store: StorePort, community_id: str, week: Week, now_ms: int, weeks: int = CHART_WEEKS
) -> dict[str, Any]:
    """The week's figures and those of the ``weeks`` weeks ending with it (oldest first)."""
    span = weeks_ending(week, weeks, COMMUNITY_TZ)
    with store.snapshot() as db:
        rows = read_rows(db, community_id, span[0].start_ms, span[-1].end_ms)
    series = [weekly_figures(w, rows, now_ms) for w in span]
    return {
        "week": figures_json(series[-1]),
        "weeks": [figures_json(f) for f in series],
        "time_zone": "UTC+08:00",
    }


@router.get("/reports/weekly")
def weekly(person: Staff, svc: ServicesDep, week: WeekQuery = None) -> dict[str, Any]:
    """The community's weekly report: items in and out, points issued, redeemed and returned,
    compartment utilization, participation rate, resource utilization and mismatch rate, for
    the week and the 8 weeks ending with it (docs/reports.md)."""
    now = svc.clock.now().wall_ms
    return weekly_report(svc.store, person.community_id, chosen_week(week, now), now)
