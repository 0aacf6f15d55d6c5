"""The weekly report page of the social worker's console (issue #10).

``/staff/report?week=YYYY-Www`` (default: the last full week in the community's time zone,
UTC+8) shows the week's figures — items in and out, points issued, redeemed and returned,
compartment utilization, and the practice's evaluation indicators (participation rate, resource
utilization, mismatch rate), each with what it was computed from — and two bar charts of the
last 8 weeks (items in and out; points issued and redeemed). The charts are inline SVG drawn on
the server (the pages' CSP forbids scripts), each named by its ``<title>`` and followed by a
table of the same numbers. The figures are those of ``GET /api/v1/reports/weekly``
(:mod:`cloud_api.reports`); docs/reports.md defines them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from cloud_api.core.reports import Series, Week, bar_chart_svg, shift
from cloud_api.errors import Invalid
from cloud_api.pages.console import svc_of, sw_page, worker_of
from cloud_api.pages.web import language_of, local_time
from cloud_api.reports import chosen_week, weekly_report
from cloud_api.transparency import COMMUNITY_TZ
from linli.i18n import t

router = APIRouter(include_in_schema=False)


def percent(value: float | None) -> str | None:
    """A rate as a percentage with one decimal (None stays None: the page shows "—")."""
    return None if value is None else f"{value * 100:.1f}%"


def _charts(weeks: list[dict[str, Any]], labels: list[str], language: str) -> dict[str, Markup]:
    """The two bar charts, their words from the catalog in the page's language."""

    def say(key: str) -> str:
        return t(key, language)

    items = bar_chart_svg(
        chart_id="chart-items",
        title=say("swr.chart.items"),
        categories=labels,
        series=[
            Series(say("swr.items_in"), tuple(w["items_in"] for w in weeks)),
            Series(say("swr.items_out"), tuple(w["items_out"] for w in weeks)),
        ],
    )
    points = bar_chart_svg(
        chart_id="chart-points",
        title=say("swr.chart.points"),
        categories=labels,
        series=[
            Series(say("swr.points_issued"), tuple(w["points_issued"] for w in weeks)),
            Series(say("swr.points_redeemed"), tuple(w["points_redeemed"] for w in weeks)),
        ],
    )
    # The SVG text is built and escaped by bar_chart_svg (catalog text and numbers only).
    return {"items": Markup(items), "points": Markup(points)}  # noqa: S704


@router.get("/staff/report", response_class=HTMLResponse)
def report_page(request: Request, week: Annotated[str, Query(max_length=16)] = "") -> Response:
    """The week's figures and the last 8 weeks' charts; a week that does not exist is a 422
    page saying how to write one, showing the last full week."""
    worker, token = worker_of(request)
    svc = svc_of(request)
    now = svc.clock.now().wall_ms
    problem = None
    status_code = 200
    try:
        chosen: Week = chosen_week(week.strip() or None, now)
    except Invalid:
        chosen = chosen_week(None, now)
        problem, status_code = "swr.error.week", 422
    report = weekly_report(svc.store, worker.community_id, chosen, now)
    language = language_of(request, worker)
    weeks = report["weeks"]
    labels = [w["week"][5:] for w in weeks]
    following = shift(chosen, 1, COMMUNITY_TZ)
    return sw_page(
        request,
        "sw_report.html",
        worker,
        token,
        week=chosen,
        figures=report["week"],
        weeks=weeks,
        labels=labels,
        charts=_charts(weeks, labels, language),
        percent=percent,
        day=lambda ms: local_time(ms, language).rsplit(" ", 1)[0],
        previous=shift(chosen, -1, COMMUNITY_TZ).label,
        following=following.label if following.start_ms <= now else None,
        entered=week,
        problem=problem,
        status_code=status_code,
    )


__all__ = ["percent", "router"]
