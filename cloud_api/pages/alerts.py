"""The console's alert pages: the live alerts, one alert with its history, and its actions.

- ``/maint/alerts``: open and acknowledged alerts, newest first: severity in colour *and* words,
  tracking code, the rule in words, locker and compartment, when it opened, the response clock
  ("due in 5 h 12 min", "overdue by 2 h", or once acknowledged "responded in 3 min"), and
  whether the condition has cleared.
- ``/maint/alerts/{id}``: the same and every action taken, with three forms: acknowledge (one
  click), escalate with a note, resolve with a note. Each post carries the CSRF token (403 and
  nothing changed without it) and answers 303 back to the alert; an action the alert's status no
  longer allows (someone else was quicker) shows the alert again with a 409 and says why.

Maintainers and social workers both reach these pages (an item at risk concerns the social
worker): :func:`~cloud_api.pages.staff.staff_of`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from cloud_api.accounts.service import Person
from cloud_api.core.alerts import NOTE_MAX_CHARS, duration_parts
from cloud_api.errors import Conflict, Invalid, NotFound
from cloud_api.pages.staff import console_page, staff_of
from cloud_api.pages.web import check_csrf, language_of, redirect, render
from linli.i18n import PSEUDO, t

router = APIRouter(include_in_schema=False)

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CsrfField = Annotated[str, Form(max_length=64)]
NoteField = Annotated[str, Form(max_length=NOTE_MAX_CHARS)]
PAGE_SIZE = 100


def duration_text(ms: int, language: str) -> str:
    """A duration in words: ``5 h 12 min`` / ``5 小时 12 分钟`` (days and hours past a day)."""
    inner = "en" if language == PSEUDO else language  # wrapped once, by the sentence around it
    days, hours, minutes = duration_parts(ms)
    if days:
        return t("alert.duration.days", inner, days=days, hours=hours)
    if hours:
        return t("alert.duration.hours", inner, hours=hours, minutes=minutes)
    return t("alert.duration.minutes", inner, minutes=minutes)


def clock_text(alert: dict[str, Any], language: str) -> str:
    """The response clock in words: running (``due in …``, ``overdue by …``), or stopped
    (``responded in …``, with how late when it was)."""
    clock = alert["clock"]
    if clock["stopped_ms"] is not None:
        took = duration_text(clock["stopped_ms"] - alert["opened_ms"], language)
        if clock["overdue_ms"]:
            late = duration_text(clock["overdue_ms"], language)
            return t("alert.clock.responded_late", language, duration=took, late=late)
        return t("alert.clock.responded", language, duration=took)
    if clock["overdue_ms"] is not None:
        return t(
            "alert.clock.overdue", language, duration=duration_text(clock["overdue_ms"], language)
        )
    return t(
        "alert.clock.due_in", language, duration=duration_text(clock["remaining_ms"], language)
    )


def _view(alert: dict[str, Any], language: str) -> dict[str, Any]:
    return alert | {
        "clock_text": clock_text(alert, language),
        "is_overdue": alert["clock"]["overdue_ms"] is not None,
        "is_running": alert["clock"]["stopped_ms"] is None,
    }


@router.get("/maint/alerts", response_class=HTMLResponse)
def alerts_page(request: Request) -> Response:
    """Open and acknowledged alerts of the worker's community, newest first."""
    worker, token = staff_of(request)
    language = language_of(request, worker)
    found = request.app.state.services.alerts.list_alerts(worker, live=True, limit=PAGE_SIZE)
    return console_page(
        request,
        "maint_alerts.html",
        worker,
        token,
        alerts=[_view(a, language) for a in found],
    )


def _detail(
    request: Request,
    worker: Person,
    token: str,
    alert_id: str,
    *,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    language = language_of(request, worker)
    try:
        alert = request.app.state.services.alerts.get(worker, alert_id)
    except NotFound:
        return render(
            request, "error.html", language, status_code=404, message_key="page.error.not_found"
        )
    response = console_page(
        request, "maint_alert.html", worker, token, alert=_view(alert, language), problem=problem
    )
    response.status_code = status_code
    return response


@router.get("/maint/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, alert_id: IdPath) -> Response:
    """One alert: what, where, its clock, its history, and what can be done."""
    worker, token = staff_of(request)
    return _detail(request, worker, token, alert_id)


def _act(request: Request, alert_id: str, csrf: str, action: str, note: str = "") -> Response:
    worker, token = staff_of(request)
    check_csrf(request, token, csrf)
    alerts = request.app.state.services.alerts
    try:
        if action == "acknowledge":
            alerts.acknowledge(worker, alert_id)
        elif action == "escalate":
            alerts.escalate(worker, alert_id, note)
        else:
            alerts.resolve(worker, alert_id, note)
    except NotFound:
        return _detail(request, worker, token, alert_id)  # renders the 404 page
    except Conflict as exc:
        return _detail(request, worker, token, alert_id, problem=exc.code, status_code=409)
    except Invalid as exc:
        return _detail(request, worker, token, alert_id, problem=exc.code, status_code=422)
    return redirect(f"/maint/alerts/{alert_id}")


@router.post("/maint/alerts/{alert_id}/acknowledge")
def acknowledge_form(request: Request, alert_id: IdPath, csrf: CsrfField = "") -> Response:
    """Acknowledge in one click: the clock stops."""
    return _act(request, alert_id, csrf, "acknowledge")


@router.post("/maint/alerts/{alert_id}/escalate")
def escalate_form(
    request: Request, alert_id: IdPath, note: NoteField = "", csrf: CsrfField = ""
) -> Response:
    """Escalate to the next person on call, with a note."""
    return _act(request, alert_id, csrf, "escalate", note)


@router.post("/maint/alerts/{alert_id}/resolve")
def resolve_form(
    request: Request, alert_id: IdPath, note: NoteField = "", csrf: CsrfField = ""
) -> Response:
    """Resolve with a note saying what was done."""
    return _act(request, alert_id, csrf, "resolve", note)
