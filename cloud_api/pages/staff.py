"""The social worker's page to read a code to a resident by phone, each reading recorded.

A resident who cannot see a screen phones the social worker; the worker signs in (password and
TOTP), finds the resident, and reads out one live code. Each reading records the worker, the
resident, the grant and the reason in the immutable ``code_readouts`` table. The code is shown in
the answer to that post only, never in a URL and never in a log.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from cloud_api.accounts.service import Person
from cloud_api.errors import CloudError, NotFound
from cloud_api.items.service import grant_view
from cloud_api.pages.web import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    PageRedirect,
    check_csrf,
    check_signin_csrf,
    csrf_for,
    language_chosen,
    language_of,
    redirect,
    render,
    set_cookie,
    signed_in,
    signin_form,
)
from linli.ids import new_id

router = APIRouter(include_in_schema=False)
STAFF_HOME = {"social_worker": "/staff", "maintainer": "/maint"}
"""Where each staff role lands after signing in (the social worker's and maintainer's consoles)."""
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CsrfField = Annotated[str, Form(max_length=64)]


def _worker(request: Request) -> tuple[Person, str]:
    return signed_in(request, "social_worker", "/staff/signin")


def staff_of(request: Request) -> tuple[Person, str]:
    """The social worker or maintainer behind the session cookie, or a redirect to sign in."""
    token = request.cookies.get(SESSION_COOKIE)
    for role in STAFF_HOME:
        try:
            return signed_in(request, role, "/staff/signin")
        except PageRedirect:
            if not token:
                raise
    raise PageRedirect("/staff/signin")


def console_page(
    request: Request, template: str, worker: Person, token: str, **context: Any
) -> Response:
    """A console page (``console_base.html``) in the worker's language, with the CSRF token and,
    for a social worker acting for a resident, the banner that says so."""
    if worker.role == "social_worker":
        from cloud_api.pages.console import acting_for  # console.py imports this module

        context.setdefault("acting_for", acting_for(request, worker, token))
    return render(
        request,
        template,
        language_of(request, worker),
        staff=worker,
        csrf=csrf_for(request, token),
        **context,
    )


_page = console_page


@router.post("/staff/language")
def staff_language(
    request: Request,
    language: Annotated[str, Form(max_length=16)],
    csrf: CsrfField = "",
    back: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Choose the console's language: kept on the account and in a cookie."""
    worker, token = staff_of(request)
    check_csrf(request, token, csrf)
    safe = back.startswith(("/staff", "/maint")) and "//" not in back
    return language_chosen(request, worker, language, back if safe else STAFF_HOME[worker.role])


@router.post("/staff/signout")
def staff_signout(request: Request, csrf: CsrfField = "") -> Response:
    """End a worker's session."""
    _, token = staff_of(request)
    check_csrf(request, token, csrf)
    request.app.state.services.accounts.sign_out(token)
    response = redirect("/staff/signin")
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    from cloud_api.pages.console import stop_acting  # console.py imports this module

    stop_acting(response)
    return response


@router.get("/staff/signin", response_class=HTMLResponse)
def staff_signin_page(request: Request) -> Response:
    """Login, password and TOTP."""
    return signin_form(request, "staff_signin.html")


@router.post("/staff/signin")
def staff_signin(
    request: Request,
    login: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=128)],
    totp: Annotated[str, Form(max_length=8)],
    csrf: CsrfField = "",
) -> Response:
    """Sign in a social worker or a maintainer (password and TOTP, throttled like every
    sign-in); each lands on their console."""
    check_signin_csrf(request, csrf)
    services = request.app.state.services
    address = request.client.host if request.client else "unknown"
    try:
        token, person = services.accounts.sign_in(
            login, password, services.clock.now().wall_ms, address=address, totp=totp
        )
    except CloudError:
        person, token = None, None
    if person is None or token is None or person.role not in STAFF_HOME:
        if token is not None:
            services.accounts.sign_out(token)
        return signin_form(request, "staff_signin.html", "page.staff.signin_failed", 401)
    response = redirect(STAFF_HOME[person.role])
    set_cookie(response, SESSION_COOKIE, token, SESSION_MAX_AGE_S)
    return response


@router.get("/staff/read-code", response_class=HTMLResponse)
def read_code_page(request: Request) -> Response:
    """Find the resident who phoned."""
    worker, token = _worker(request)
    return _page(request, "staff_read.html", worker, token, found=None, q="")


@router.post("/staff/read-code/search", response_class=HTMLResponse)
def read_code_search(
    request: Request, q: Annotated[str, Form(max_length=64)] = "", csrf: CsrfField = ""
) -> Response:
    """Residents by name, unit or a phone's last four digits (in the body, never the URL)."""
    worker, token = _worker(request)
    check_csrf(request, token, csrf)
    found, _total = request.app.state.services.accounts.search(worker, q, 0, 20)
    return _page(request, "staff_read.html", worker, token, found=found, q=q)


@router.get("/staff/residents/{person_id}/codes", response_class=HTMLResponse)
def resident_codes(request: Request, person_id: IdPath) -> Response:
    """The resident's live codes (without the digits)."""
    worker, token = _worker(request)
    services = request.app.state.services
    profile = services.accounts.profile(worker, person_id)
    with services.store.snapshot() as db:
        ids = [
            r["id"]
            for r in db.execute(
                "SELECT id FROM grants WHERE person_id = ? AND status = 'active'"
                " AND valid_until_ms > ? ORDER BY valid_until_ms, id",
                (person_id, services.clock.now().wall_ms),
            )
        ]
        codes = [grant_view(db, services.keys, g, with_code=False) for g in ids]
    return _page(
        request, "staff_codes.html", worker, token, resident=profile, codes=codes, shown=None
    )


@router.post("/staff/codes/{grant_id}/read", response_class=HTMLResponse)
def read_code(
    request: Request,
    grant_id: IdPath,
    reason: Annotated[str, Form(min_length=1, max_length=200)],
    csrf: CsrfField = "",
) -> Response:
    """Show one code to the worker and record that it was read out, by whom and why."""
    worker, token = _worker(request)
    check_csrf(request, token, csrf)
    services = request.app.state.services
    now = services.clock.now().wall_ms
    with services.store.write() as db:
        grant = db.execute(
            "SELECT g.person_id, p.community_id FROM grants g JOIN people p ON p.id = g.person_id"
            " WHERE g.id = ? AND g.status = 'active' AND g.valid_until_ms > ?",
            (grant_id, now),
        ).fetchone()
        if grant is None or grant["community_id"] != worker.community_id:
            raise NotFound("no such code")
        db.execute(
            "INSERT INTO code_readouts (id, grant_id, worker_id, person_id, reason, at_ms)"
            " VALUES (?,?,?,?,?,?)",
            (new_id("rdo"), grant_id, worker.id, grant["person_id"], reason, now),
        )
        shown = grant_view(db, services.keys, grant_id, with_code=True)
    profile = services.accounts.profile(worker, grant["person_id"])
    code = shown.pop("code")
    return _page(
        request,
        "staff_codes.html",
        worker,
        token,
        resident=profile,
        codes=[shown],
        shown={"grant_id": grant_id, "digits": f"{code[:4]} {code[4:]}", "at_ms": now},
    )
