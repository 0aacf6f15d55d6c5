"""The maintainer's console: every device and its health, a bank's live view, the service open.

- ``/maint``: each device of the community with its liveness (in words and a colour), last
  seen, version, clock trust, grant-list age, outbox depth, CPU temperature, under-voltage, disk
  free, relay cycles against the rated life, and event gaps.
- ``/maint/devices/{id}``: the bank's compartments (latch, door, occupancy, needs attention),
  rendered on the server (a reload link refreshes it without JavaScript) and kept current by
  ``static/live.js`` through the server-sent events of ``/maint/devices/{id}/live``; a form per
  compartment opens it with a reason, and an occupied one asks a second time.

The event stream: ``retry: 1000``, then ``event: snapshot`` with the whole view, then
``event: change`` with what changed (device, compartments by name, commands), and a comment
every 15 s so proxies keep the connection. A change is read from the store after the hub
(:mod:`cloud_api.live`) wakes the stream, so it shows what the store holds. The stream ends
when the client leaves, when the hub closes, and when the HTTP server drains its connections to
stop (uvicorn waits for open responses to finish before it stops, and does not tell the app: see
:func:`_server_draining`); the browser's ``EventSource`` then reconnects by itself and gets a
fresh snapshot from the server that answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from cloud_api.accounts.service import Person
from cloud_api.deps import Services
from cloud_api.devices.router import (
    RATED_RELAY_CYCLES,
    ServiceReason,
    command_view,
    devices_of,
    live_view,
    relay_cycles,
    service_open,
    under_voltage,
)
from cloud_api.errors import Conflict, DeviceUnavailable, NotFound
from cloud_api.live import LiveHub
from cloud_api.pages.staff import console_page
from cloud_api.pages.web import check_csrf, language_of, redirect, signed_in
from linli.contract.models import AlarmReason
from linli.i18n import t
from linli.ids import COMPARTMENT_PATTERN

router = APIRouter(include_in_schema=False)

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CompartmentPath = Annotated[str, Path(pattern=COMPARTMENT_PATTERN)]
CsrfField = Annotated[str, Form(max_length=64)]
CommandQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""
CHECK_EVERY_S = 0.5
"""How often a waiting stream looks whether the server is stopping (changes wake it at once)."""
RETRY_MS = 1000
"""How long the browser waits before reconnecting a stream that ended."""

STATUS_STYLE = {
    status: f"status-{status}" for status in ("online", "offline", "lost", "never_seen")
}
"""Colour of each liveness (``console.css``: green, amber, red, grey); the word is always shown
with it."""
STATUSES = tuple(STATUS_STYLE)
ATTENTION_REASONS: tuple[str, ...] = get_args(AlarmReason)
CLOCK_TRUST = ("synced", "holdover", "untrusted")
LATCHES = ("locked", "unlocked", "unknown")
DOORS = ("closed", "open", "unknown")
OCCUPANCIES = ("present", "absent", "unknown")
OUTCOMES = ("pending", "done", "refused", "unanswered")
RELAY_WORN_PCT = 80
"""Relay life used from which the console marks a latch for replacement."""


def _maintainer(request: Request) -> tuple[Person, str]:
    return signed_in(request, "maintainer", "/staff/signin")


def _svc(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def _hub(request: Request) -> LiveHub:
    found: LiveHub = request.app.state.live
    return found


# --- the devices page -------------------------------------------------------------------------


def _duration(seconds: int, language: str) -> str:
    if seconds < 120:
        return t("maint.duration.s", language, n=seconds)
    if seconds < 2 * 3600:
        return t("maint.duration.min", language, n=seconds // 60)
    if seconds < 2 * 86400:
        return t("maint.duration.h", language, n=seconds // 3600)
    return t("maint.duration.d", language, n=seconds // 86400)


def device_health(
    device: dict[str, Any], cycles: dict[str, int], now_ms: int, language: str
) -> dict[str, Any]:
    """What the devices page shows of one device (``device``: an entry of :func:`devices_of`)."""
    tele: dict[str, Any] = device["telemetry"] or {}
    age_s = tele.get("grant_list_age_s")
    if isinstance(age_s, int) and isinstance(tele.get("received_ms"), int):
        age_s += max(0, now_ms - tele["received_ms"]) // 1000  # as of now, not of the report
    elif device["cfg_reported"] and isinstance(device["cfg_reported"].get("grant_list_age_s"), int):
        age_s = device["cfg_reported"]["grant_list_age_s"]
    else:
        age_s = None
    temp = tele.get("cpu_temp_c")
    disk = tele.get("disk_free_pct")
    trust = tele.get("clock_trust")
    relays = []
    for c in device["compartments"]:
        n = cycles.get(c["name"], 0)
        pct = 100 * n / RATED_RELAY_CYCLES
        shown = "<0.1" if 0 < pct < 0.1 else f"{pct:.1f}"
        relays.append(
            {"name": c["name"], "cycles": n, "pct": shown, "is_worn": pct >= RELAY_WORN_PCT}
        )
    return {
        "id": device["id"],
        "name": device["name"],
        "location": device["location"],
        "role": device["role"],
        "status": device["status"] if device["status"] in STATUSES else "never_seen",
        "status_style": STATUS_STYLE.get(device["status"], "tag"),
        "last_seen_ms": device["last_seen_ms"],
        "version": device["software_version"],
        "clock_trust": trust if trust in CLOCK_TRUST else None,
        "grant_list_age": None if age_s is None else _duration(int(age_s), language),
        "outbox_depth": tele.get("outbox_depth"),
        "cpu_temp": None if not isinstance(temp, int | float) else f"{temp:.1f}",
        "under_voltage": under_voltage(tele.get("throttled")),
        "disk_free": None if not isinstance(disk, int | float) else f"{disk:.0f}",
        "gaps": device["event_gaps"],
        "relays": relays,
    }


@router.get("/maint", response_class=HTMLResponse)
def devices_page(request: Request) -> Response:
    """Every device of the maintainer's community, with its health."""
    person, token = _maintainer(request)
    svc = _svc(request)
    language = language_of(request, person)
    now = svc.clock.now().wall_ms
    cycles = relay_cycles(svc, person.community_id)
    devices = [
        device_health(d, cycles.get(d["id"], {}), now, language)
        for d in devices_of(svc, person.community_id)
    ]
    return console_page(
        request,
        "maint_devices.html",
        person,
        token,
        devices=devices,
        rated_cycles=RATED_RELAY_CYCLES,
    )


# --- the live view ----------------------------------------------------------------------------


def _words(language: str) -> dict[str, dict[str, str]]:
    """Every state word the live view may show, for ``live.js`` (no text is built in script)."""

    def group(prefix: str, values: tuple[str, ...]) -> dict[str, str]:
        return {v: t(f"{prefix}.{v}", language) for v in values}

    return {
        "latch": group("maint.latch", LATCHES),
        "door": group("maint.door", DOORS),
        "occupancy": group("maint.occupancy", OCCUPANCIES),
        "attention": group("maint.attention", ("yes", "no")),
        "reason": group("maint.reason", ATTENTION_REASONS),
        "status": group("maint.status", STATUSES),
        "outcome": group("maint.outcome", OUTCOMES),
    }


def _device_page(
    request: Request,
    person: Person,
    token: str,
    device_id: str,
    *,
    shown_command: str | None = None,
    confirm: dict[str, str] | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    svc = _svc(request)
    view = live_view(svc, person.community_id, device_id)
    if view is None:
        return console_page(request, "maint_device.html", person, token, view=None, status_code=404)
    result = None
    if shown_command is not None:
        row = svc.store.read_one(
            "SELECT id, name, compartment, issued_ms, expires_ms, result_ok, result_reason"
            " FROM commands WHERE id = ? AND device_id = ?",
            (shown_command, device_id),
        )
        if row is not None:
            result = command_view(dict(row), svc.clock.now().wall_ms)
    language = language_of(request, person)
    return console_page(
        request,
        "maint_device.html",
        person,
        token,
        view=view,
        result=result,
        confirm=confirm,
        problem=problem,
        now_ms=svc.clock.now().wall_ms,
        words=_words(language),
        styles=STATUS_STYLE,
        scripts=True,
        status_code=status_code,
    )


@router.get("/maint/devices/{device_id}", response_class=HTMLResponse)
def device_page(request: Request, device_id: IdPath, cmd: CommandQuery = None) -> Response:
    """A bank's compartments, kept current by ``live.js`` (``cmd``: a command to show)."""
    person, token = _maintainer(request)
    return _device_page(request, person, token, device_id, shown_command=cmd)


@router.post("/maint/devices/{device_id}/compartments/{compartment}/open")
def open_page(
    request: Request,
    device_id: IdPath,
    compartment: CompartmentPath,
    reason: Annotated[ServiceReason, Form()],
    csrf: CsrfField = "",
    confirm_occupied: Annotated[bool, Form()] = False,
) -> Response:
    """Service open from the live view: sent, then the page shows the command and its result;
    for an occupied compartment the first post asks for confirmation."""
    person, token = _maintainer(request)
    check_csrf(request, token, csrf)
    try:
        command_id = service_open(
            _svc(request),
            person,
            device_id,
            compartment,
            reason=reason,
            confirm_occupied=confirm_occupied,
        )
    except NotFound:
        return _device_page(request, person, token, device_id, status_code=404)
    except Conflict:
        confirm = {"compartment": compartment, "reason": reason}
        return _device_page(request, person, token, device_id, confirm=confirm, status_code=409)
    except DeviceUnavailable:
        return _device_page(
            request, person, token, device_id, problem="maint.open.unavailable", status_code=503
        )
    return redirect(f"/maint/devices/{device_id}?cmd={command_id}#open-result")


@router.get("/maint/devices/{device_id}/compartments/{compartment}/open")
def open_page_again(request: Request, device_id: IdPath, compartment: CompartmentPath) -> Response:
    """The confirmation is the answer to a post: its address, reached again (the language
    switch comes back to the page it was pressed on), is the bank's page."""
    _maintainer(request)
    return redirect(f"/maint/devices/{device_id}")


# --- the event stream -------------------------------------------------------------------------


def _server_draining(request: Request) -> bool:
    """Whether the HTTP server is stopping and waits for this response to end.

    uvicorn's graceful shutdown (0.54, h11) marks each open request's cycle ``keep_alive =
    False`` and waits for the response to finish, without a message to the app (its
    ``http.disconnect`` on shutdown is not in this version); a stream that never ends would hold
    the server, and the lifespan's clean-up, forever. The cycle is the object behind the ASGI
    ``receive`` the server handed us. Under a server without that attribute this says False and
    the stream ends by the other ways (the client leaving, :meth:`LiveHub.close`).
    """
    cycle = getattr(request.receive, "__self__", None)
    return getattr(cycle, "keep_alive", True) is False


def sse(event: str, payload: object) -> str:
    """One server-sent event (JSON on one ``data:`` line: ``json.dumps`` escapes newlines)."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {data}\n\n"


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What differs between two live views: the device, compartments by name, the commands."""
    found: dict[str, Any] = {}
    if after["device"] != before["device"]:
        found["device"] = after["device"]
    compartments = {
        name: c
        for name, c in after["compartments"].items()
        if before["compartments"].get(name) != c
    }
    if compartments:
        found["compartments"] = compartments
    if after["commands"] != before["commands"]:
        found["commands"] = after["commands"]
    return found


async def live_events(
    request: Request, svc: Services, hub: LiveHub, community_id: str, device_id: str
) -> AsyncIterator[str]:
    """The event stream of one bank (see the module's docstring)."""
    yield f"retry: {RETRY_MS}\n\n"
    async with hub.watch(device_id) as watch:
        shown = await run_in_threadpool(live_view, svc, community_id, device_id)
        if shown is None:
            return
        yield sse("snapshot", shown)
        beat = time.monotonic()
        while not _server_draining(request):
            woke = await watch.changed(CHECK_EVERY_S)
            if woke is None:
                return  # the hub closed: the app is stopping
            if woke:
                now = await run_in_threadpool(live_view, svc, community_id, device_id)
                if now is None:
                    return
                found = changes(shown, now)
                shown = now
                if found:
                    yield sse("change", found)
                    beat = time.monotonic()
            if time.monotonic() - beat >= HEARTBEAT_S:
                yield ": heartbeat\n\n"
                beat = time.monotonic()


@router.get("/maint/devices/{device_id}/live")
async def device_live(request: Request, device_id: IdPath) -> Response:
    """Server-sent events of a bank's live view (the same cookie session as the page)."""
    person, _token = await run_in_threadpool(_maintainer, request)
    svc = _svc(request)
    known = await run_in_threadpool(
        svc.store.read_one,
        "SELECT 1 FROM devices WHERE id = ? AND community_id = ?",
        (device_id, person.community_id),
    )
    if known is None:
        return Response(status_code=404, headers={"Cache-Control": "no-store"})
    return StreamingResponse(
        live_events(request, svc, _hub(request), person.community_id, device_id),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy must pass each event on at once
            "X-Content-Type-Options": "nosniff",
        },
    )
