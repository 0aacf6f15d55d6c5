"""The social worker's console: what its pages share, acting for a resident, the switches, and
the staff's photo route (issue #10). The queue is in :mod:`cloud_api.pages.console_queue`, the
residents in :mod:`cloud_api.pages.console_residents`.

- **Who**: every page and post is for a signed-in social worker of the community
  (:func:`worker_of`); anyone else is sent to ``/staff/signin``.
- **Posts**: each carries its CSRF token (403 without, nothing changed); a change answers 303 to
  a page (PRG); a refusal (bad input, a decision already taken) renders the page again with its
  4xx status and a message saying what to do. The two exceptions show a secret once, in the
  answer to the post and nowhere else (never in a URL, never logged): a new resident's PIN and
  a reset PIN, as the code read-out does.
- **Acting for a resident** who is not online: a cookie ``linli_acting`` holds the resident's id
  and an HMAC over the session token and that id under :attr:`CloudKeys.page_secret`. It is
  accepted only with the same session, for a resident of the worker's community
  (:func:`acting_for`); anything else is ignored, and a post that needs it is refused. While it
  holds, every console page shows the banner (``acting_for`` of ``console_base.html``); the
  services record the worker as actor and the resident as ``on_behalf_of``.
- **Switches** ``/staff/settings``: auto-approval's threshold, daily cap and minimum
  confidence, and the learned correction, per community, each change with a reason
  (:meth:`ValuationService.change_settings`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from cloud_api.accounts.service import Person
from cloud_api.deps import Services
from cloud_api.errors import CloudError, Invalid
from cloud_api.pages.web import (
    SESSION_MAX_AGE_S,
    check_csrf,
    language_of,
    redirect,
    set_cookie,
    signed_in,
)
from cloud_api.uploads import community_photo
from cloud_api.valuations.service import SWITCH_RANGES, Switches, deployment_switches
from linli.i18n import t

router = APIRouter(include_in_schema=False)

ACTING_COOKIE = "linli_acting"
ACTING_MAX_AGE_S = 4 * 60 * 60
"""Acting ends by itself after 4 hours (and with the session: the cookie is bound to it)."""
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CsrfField = Annotated[str, Form(max_length=64)]
ReasonField = Annotated[str, Form(max_length=200)]
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def svc_of(request: Request) -> Services:
    """The app's services."""
    found: Services = request.app.state.services
    return found


def worker_of(request: Request) -> tuple[Person, str]:
    """The social worker behind the session cookie and its token, or a redirect to sign in."""
    return signed_in(request, "social_worker", "/staff/signin")


def now_ms(request: Request) -> int:
    return int(svc_of(request).clock.now().wall_ms)


def say(request: Request, worker: Person, key: str, **values: object) -> str:
    """Catalog text in the worker's language (for a reason the worker chose with one click)."""
    return t(key, language_of(request, worker), **values)


# --- acting for a resident ---------------------------------------------------------------------


def _acting_mac(request: Request, token: str, resident_id: str) -> str:
    secret: bytes = svc_of(request).keys.page_secret
    message = b"acting:" + token.encode() + b"\x00" + resident_id.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:40]


def start_acting(request: Request, response: Response, token: str, resident_id: str) -> None:
    """Set the acting cookie for ``resident_id`` (checked by the caller) on ``response``."""
    value = f"{resident_id}.{_acting_mac(request, token, resident_id)}"
    set_cookie(response, ACTING_COOKIE, value, min(ACTING_MAX_AGE_S, SESSION_MAX_AGE_S))


def stop_acting(response: Response) -> None:
    """Clear the acting cookie."""
    response.delete_cookie(ACTING_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def acting_for(request: Request, worker: Person, token: str) -> dict[str, Any] | None:
    """The resident the worker acts for (their profile, phone masked), or None: no cookie, a
    cookie of another session or forged, or a resident not of the worker's community."""
    raw = request.cookies.get(ACTING_COOKIE)
    if not raw or worker.role != "social_worker":
        return None
    resident_id, _, mac = raw.rpartition(".")
    if not _ID.fullmatch(resident_id) or not hmac.compare_digest(
        mac, _acting_mac(request, token, resident_id)
    ):
        return None
    try:
        profile: dict[str, Any] = svc_of(request).accounts.profile(worker, resident_id)
    except CloudError:
        return None
    return profile


def sw_page(
    request: Request, template: str, worker: Person, token: str, **context: Any
) -> HTMLResponse:
    """A page of the social worker's console (``console_page`` adds the acting banner)."""
    # Imported here, not above: staff.py imports this module's acting_for while rendering.
    from cloud_api.pages.staff import console_page

    page: HTMLResponse = console_page(request, template, worker, token, **context)  # type: ignore[assignment]
    return page


@router.post("/staff/acting/stop")
def acting_stop(request: Request, csrf: CsrfField = "") -> Response:
    """Stop acting for a resident; back to their page."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    resident = acting_for(request, worker, token)
    response = redirect(f"/staff/residents/{resident['id']}" if resident else "/staff/residents")
    stop_acting(response)
    return response


# --- photos ----------------------------------------------------------------------------------


@router.get("/staff/photos/{digest}")
def staff_photo(
    request: Request, digest: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
) -> Response:
    """A photo of the community by content hash, for its social workers (cookie session)."""
    worker, _ = worker_of(request)
    svc = svc_of(request)
    found = community_photo(svc.store, svc.data_dir, digest, worker.community_id)
    if found is None:
        return Response(status_code=404)
    return FileResponse(found[0], media_type=found[1], headers={"Cache-Control": "private"})


# --- switches --------------------------------------------------------------------------------

SETTING_FIELDS = tuple(SWITCH_RANGES)


def _settings_page(
    request: Request,
    worker: Person,
    token: str,
    *,
    problem: str | None = None,
    problem_values: dict[str, str] | None = None,
    entered: dict[str, str] | None = None,
    done: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    svc = svc_of(request)
    with svc.store.snapshot() as db:
        switches = svc.valuations.effective_settings(db, worker.community_id)
    language = language_of(request, worker)
    history = [
        change
        | {
            "old_shown": _value_shown(change["old"], language),
            "new_shown": _value_shown(change["new"], language),
        }
        for change in svc.valuations.setting_history(worker)
    ]
    latest: dict[str, dict[str, Any]] = {}
    for change in history:
        latest.setdefault(change["name"], change)
    return sw_page(
        request,
        "sw_settings.html",
        worker,
        token,
        switches=switches,
        shown_now=_shown(switches),
        shown=entered or _shown(switches),
        deployment=_shown(deployment_switches(svc.valuations.settings)),
        latest=latest,
        history=history,
        ranges=SWITCH_RANGES,
        problem=problem,
        problem_values=problem_values or {},
        done=done,
        status_code=status_code,
    )


def _value_shown(value: object, language: str) -> str:
    """A switch's value in words (on/off in the page's language, numbers as written)."""
    if isinstance(value, bool):
        return t("sw.settings.on" if value else "sw.settings.off", language)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _shown(switches: Switches) -> dict[str, str]:
    """Switch values as the form shows them."""
    return {
        "auto_approve_below": str(switches.auto_approve_below),
        "auto_approve_per_day": str(switches.auto_approve_per_day),
        "auto_approve_confidence": f"{switches.auto_approve_confidence:g}",
        "corrections_enabled": "on" if switches.corrections_enabled else "off",
    }


@router.get("/staff/settings", response_class=HTMLResponse)
def settings_page(
    request: Request, done: Annotated[str | None, Query(max_length=4)] = None
) -> Response:
    """The valuation switches in force, where each comes from, and every change."""
    worker, token = worker_of(request)
    return _settings_page(request, worker, token, done=done == "1")


def _parse_switches(form: dict[str, str]) -> dict[str, object]:
    """The form's text as switch values (:class:`Invalid` names the field that is not a number)."""
    values: dict[str, object] = {}
    for name in SETTING_FIELDS:
        text = form[name].strip().replace(",", ".")
        kind = SWITCH_RANGES[name][0]
        if kind is bool:
            if text not in ("on", "off"):
                raise Invalid("on or off", field=name)
            values[name] = text == "on"
            continue
        try:
            values[name] = int(text) if kind is int else float(text)
        except ValueError:
            raise Invalid("not a number", field=name) from None
    return values


@router.post("/staff/settings")
def change_settings(
    request: Request,
    auto_approve_below: Annotated[str, Form(max_length=16)] = "",
    auto_approve_per_day: Annotated[str, Form(max_length=16)] = "",
    auto_approve_confidence: Annotated[str, Form(max_length=16)] = "",
    corrections_enabled: Annotated[str, Form(max_length=8)] = "",
    reason: ReasonField = "",
    csrf: CsrfField = "",
) -> Response:
    """Change switches of the community, with a reason; bad input changes nothing (422)."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    entered = {
        "auto_approve_below": auto_approve_below,
        "auto_approve_per_day": auto_approve_per_day,
        "auto_approve_confidence": auto_approve_confidence,
        "corrections_enabled": corrections_enabled,
    }
    try:
        values = _parse_switches(entered)
        svc_of(request).valuations.change_settings(worker, values, reason)
    except Invalid as exc:
        field = exc.field if exc.field in (*SETTING_FIELDS, "reason") else None
        if exc.code == "unchanged":
            key = "sw.settings.error.unchanged"
        elif field == "reason":
            key = "sw.settings.error.reason"
        else:
            key = "sw.settings.error.range"
        low, high = SWITCH_RANGES[field][1:] if field and field in SWITCH_RANGES else (0, 0)
        return _settings_page(
            request,
            worker,
            token,
            problem=key,
            problem_values={
                "field": say(request, worker, f"sw.settings.{field}") if field else "",
                "low": f"{low:g}",
                "high": f"{high:g}",
            },
            entered=entered,
            status_code=422,
        )
    return redirect("/staff/settings?done=1")


def not_found_page(request: Request, worker: Person, token: str) -> HTMLResponse:
    """A resident or item not of the community (or no such one): the residents' list, 404."""
    return sw_page(
        request,
        "sw_residents.html",
        worker,
        token,
        found=None,
        q="",
        problem="sw.error.not_found",
        status_code=404,
    )


__all__ = [
    "ACTING_COOKIE",
    "acting_for",
    "router",
    "start_acting",
    "stop_acting",
    "sw_page",
    "worker_of",
]
