"""The resident's web pages: sign in, balance and history, browse and reserve, the code and
"open now", loans, a problem report, the language (docs/decisions/0018-resident-pages.md).

One thing per screen; every action is a form post with its CSRF token followed by a redirect;
nothing secret travels in a URL (the code is shown on a page whose URL names only the grant).
The pages call the same services as the API, so the same rules and ownership checks apply.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response

from cloud_api.accounts.service import Person
from cloud_api.errors import CloudError, Conflict, NotFound, Throttled
from cloud_api.grants.router import open_grant
from cloud_api.items.service import grant_view
from cloud_api.pages.web import (
    CSRF_COOKIE,
    LANG_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    check_csrf,
    check_signin_csrf,
    csrf_for,
    language_chosen,
    language_of,
    redirect,
    render,
    set_cookie,
    signed_in_resident,
    signin_form,
)
from cloud_api.uploads import MAX_PHOTO_BYTES, media_type_of, photo_path, store_upload
from linli.i18n import LANGUAGES

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CsrfField = Annotated[str, Form(max_length=64)]
PAGE_SIZE = 20
NOTICES = {
    "open_sent": "page.code.open_sent",
    "problem_sent": "page.problem.sent",
}


def _svc(request: Request) -> Any:
    return request.app.state.services


def _now(request: Request) -> int:
    return int(_svc(request).clock.now().wall_ms)


def _page(
    request: Request, template: str, person: Person, token: str, **context: Any
) -> HTMLResponse:
    language = language_of(request, person)
    return render(
        request, template, language, person=person, csrf=csrf_for(request, token), **context
    )


def _error(request: Request, person: Person, token: str, exc: CloudError) -> HTMLResponse:
    status = {NotFound: 404, Conflict: 409, Throttled: 429}.get(type(exc), 400)
    key = "page.error.not_found" if status == 404 else "page.error.again"
    return _page(request, "error.html", person, token, status_code=status, message_key=key)


# --- signing in ---------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def root() -> Response:
    """The pages start at the resident's home."""
    return redirect("/app")


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request) -> Response:
    """Phone number and PIN."""
    return _signin(request, problem=None)


def _signin(request: Request, problem: str | None, status_code: int = 200) -> Response:
    return signin_form(request, "signin.html", problem, status_code)


@router.post("/signin")
def signin(
    request: Request,
    phone: Annotated[str, Form(max_length=32)],
    pin: Annotated[str, Form(max_length=32)],
    csrf: CsrfField = "",
) -> Response:
    """Sign in; the session goes into a Secure, HttpOnly, SameSite=Strict cookie."""
    check_signin_csrf(request, csrf)
    svc = _svc(request)
    address = request.client.host if request.client else "unknown"
    try:
        token, person = svc.accounts.sign_in(phone, pin, _now(request), address=address)
    except Throttled:
        return _signin(request, "page.signin.throttled", 429)
    except CloudError:
        return _signin(request, "page.signin.failed", 401)
    if person.role != "resident":
        svc.accounts.sign_out(token)
        return _signin(request, "page.signin.failed", 401)
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES and chosen != person.language:
        svc.accounts.set_language(person, chosen)  # chosen before signing in: keep it
    response = redirect("/app")
    set_cookie(response, SESSION_COOKIE, token, SESSION_MAX_AGE_S)
    response.delete_cookie(CSRF_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/signin/language")
def signin_language(
    request: Request, language: Annotated[str, Form(max_length=16)], csrf: CsrfField = ""
) -> Response:
    """Choose the language before signing in (a cookie)."""
    check_signin_csrf(request, csrf)
    return language_chosen(request, None, language, "/signin")


@router.post("/signout")
def signout(request: Request, csrf: CsrfField = "") -> Response:
    """End the session."""
    _, token = signed_in_resident(request)
    check_csrf(request, token, csrf)
    _svc(request).accounts.sign_out(token)
    response = redirect("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/app/language")
def app_language(
    request: Request,
    language: Annotated[str, Form(max_length=16)],
    csrf: CsrfField = "",
    back: Annotated[str, Form(max_length=200)] = "/app",
) -> Response:
    """Choose the language: kept on the account and in a cookie."""
    person, token = signed_in_resident(request)
    check_csrf(request, token, csrf)
    safe = back.startswith("/app") and "//" not in back
    return language_chosen(request, person, language, back if safe else "/app")


# --- home, codes ----------------------------------------------------------------------------------


def _live_codes(request: Request, person: Person) -> list[dict[str, Any]]:
    svc = _svc(request)
    with svc.store.snapshot() as db:
        ids = [
            r["id"]
            for r in db.execute(
                "SELECT id FROM grants WHERE person_id = ? AND status = 'active'"
                " AND valid_until_ms > ? ORDER BY valid_until_ms, id",
                (person.id, _now(request)),
            )
        ]
        return [grant_view(db, svc.keys, grant_id, with_code=False) for grant_id in ids]


@router.get("/app", response_class=HTMLResponse)
def home(request: Request, notice: Annotated[str | None, Query(max_length=32)] = None) -> Response:
    """Balance, and the codes waiting (shown again at every sign-in)."""
    person, token = signed_in_resident(request)
    points = _svc(request).points.history(person, limit=1)
    return _page(
        request,
        "home.html",
        person,
        token,
        points=points,
        codes=_live_codes(request, person),
        notice=NOTICES.get(notice or ""),
    )


@router.get("/app/codes/{grant_id}", response_class=HTMLResponse)
def code_page(
    request: Request,
    grant_id: IdPath,
    notice: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """One code, large, with where the compartment is and "open now"."""
    person, token = signed_in_resident(request)
    svc = _svc(request)
    with svc.store.snapshot() as db:
        row = db.execute(
            "SELECT id FROM grants WHERE id = ? AND person_id = ?", (grant_id, person.id)
        ).fetchone()
        if row is None:
            return _error(request, person, token, NotFound("no such code"))
        grant = grant_view(db, svc.keys, grant_id, with_code=True)
    is_live = grant["status"] == "active" and grant["valid_until_ms"] > _now(request)
    code = grant.pop("code")
    return _page(
        request,
        "code.html",
        person,
        token,
        grant=grant,
        is_live=is_live,
        digits=f"{code[:4]} {code[4:]}" if is_live else "",
        notice=NOTICES.get(notice or ""),
        failed=notice == "open_failed",
    )


@router.post("/app/codes/{grant_id}/open")
def open_now(request: Request, grant_id: IdPath, csrf: CsrfField = "") -> Response:
    """ "I am at the locker": a signed open command for the resident's own live code."""
    person, token = signed_in_resident(request)
    check_csrf(request, token, csrf)
    try:
        open_grant(_svc(request), person, grant_id, ("pickup", "dropoff", "return"))
    except CloudError:
        return redirect(f"/app/codes/{grant_id}?notice=open_failed")
    return redirect(f"/app/codes/{grant_id}?notice=open_sent")


# --- items ------------------------------------------------------------------------------------------


@router.get("/app/items", response_class=HTMLResponse)
def items_page(
    request: Request,
    q: Annotated[str | None, Query(max_length=80)] = None,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Response:
    """Listed items, newest first, with a search box."""
    person, token = signed_in_resident(request)
    found = _svc(request).items.search(
        person,
        status="listed",
        q=q or None,
        category=None,
        mine=False,
        offset=offset,
        limit=PAGE_SIZE,
    )
    lockers = _locker_names(request)
    return _page(
        request,
        "items.html",
        person,
        token,
        found=found,
        q=q or "",
        lockers=lockers,
        next_offset=offset + PAGE_SIZE if offset + PAGE_SIZE < found["total"] else None,
    )


def _locker_names(request: Request) -> dict[str, str]:
    return {r["id"]: r["name"] for r in _svc(request).store.read("SELECT id, name FROM devices")}


@router.get("/app/items/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, item_id: IdPath) -> Response:
    """One item: what it is, its points, where it is, and "reserve"."""
    person, token = signed_in_resident(request)
    try:
        item = _svc(request).items.get(person, item_id)
    except CloudError as exc:
        return _error(request, person, token, exc)
    return _page(request, "item.html", person, token, item=item, lockers=_locker_names(request))


@router.post("/app/items/{item_id}/reserve")
def reserve(request: Request, item_id: IdPath, csrf: CsrfField = "") -> Response:
    """Reserve: points held, a code issued; the resident is taken to the code."""
    person, token = signed_in_resident(request)
    check_csrf(request, token, csrf)
    try:
        shown = _svc(request).items.reserve(person, item_id, None)
    except CloudError as exc:
        return _error(request, person, token, exc)
    return redirect(f"/app/codes/{shown['grant_id']}")


@router.get("/app/items/{item_id}/problem", response_class=HTMLResponse)
def problem_page(request: Request, item_id: IdPath) -> Response:
    """What is wrong with an item picked up (within the dispute window)."""
    person, token = signed_in_resident(request)
    try:
        item = _svc(request).items.get(person, item_id)
    except CloudError as exc:
        return _error(request, person, token, exc)
    return _page(request, "problem.html", person, token, item=item)


@router.post("/app/items/{item_id}/problem")
async def problem(
    request: Request,
    item_id: IdPath,
    problem: Annotated[str, Form(max_length=32)],
    note: Annotated[str, Form(max_length=500)] = "",
    photo: Annotated[UploadFile | None, File()] = None,
    csrf: CsrfField = "",
) -> Response:
    """Record the problem (and its photo, stored by content hash) as a case."""
    person, token = signed_in_resident(request)
    check_csrf(request, token, csrf)
    photo_hash = None
    if photo is not None and photo.filename:
        data = await photo.read(MAX_PHOTO_BYTES + 1)
        if len(data) > MAX_PHOTO_BYTES or media_type_of(data) is None:
            return _error(request, person, token, Conflict("photo", code="bad_photo"))
        svc = _svc(request)
        photo_hash = store_upload(svc.store, svc.data_dir, person.id, data, _now(request))
    full_note = note if photo_hash is None else f"{note}\nphoto:{photo_hash}".strip()
    try:
        _svc(request).items.report_problem(person, item_id, problem, full_note)
    except CloudError as exc:
        return _error(request, person, token, exc)
    return redirect("/app?notice=problem_sent")


@router.get("/photos/{digest}")
def photo(request: Request, digest: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]) -> Response:
    """A photo by content hash, for signed-in residents."""
    signed_in_resident(request)
    svc = _svc(request)
    found = photo_path(svc.store, svc.data_dir, digest)
    if found is None:
        return Response(status_code=404)
    return FileResponse(found[0], media_type=found[1], headers={"Cache-Control": "private"})


# --- points, loans ------------------------------------------------------------------------------------


@router.get("/app/history", response_class=HTMLResponse)
def history(request: Request) -> Response:
    """Balance and every movement, each with what it was for."""
    person, token = signed_in_resident(request)
    svc = _svc(request)
    account = f"mem:{person.id}"
    points = svc.points.history(person, limit=1)
    with svc.store.snapshot() as db:
        rows = db.execute(
            "SELECT t.id, t.kind, t.phase, t.amount, t.credit_account, t.created_ms,"
            " COALESCE(p.refs, t.refs) AS refs, COALESCE(p.kind, t.kind) AS for_kind,"
            " (SELECT r.phase FROM transfers r WHERE r.pending_id = t.id) AS ended"
            " FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id"
            " WHERE t.debit_account = ? OR t.credit_account = ?"
            " ORDER BY t.rowid DESC LIMIT 200",
            (account, account),
        ).fetchall()
        titles = {
            r["id"]: r["title"]
            for r in db.execute(
                "SELECT id, title FROM items WHERE donor_id = ? OR reserved_by = ? OR id IN"
                " (SELECT value FROM json_each(?))",
                (person.id, person.id, json.dumps([_item_of(r["refs"]) for r in rows])),
            )
        }
    movements = []
    for r in rows:
        if r["phase"] in ("void", "post"):
            continue  # a hold is shown once, on the hold itself: held, collected or released
        item_id = _item_of(r["refs"])
        sign = 1 if r["credit_account"] == account else -1
        movements.append(
            {
                "kind": r["for_kind"] if r["kind"] != "reversal" else "reversal",
                "item": titles.get(item_id or ""),
                "points": sign * r["amount"],
                "at_ms": r["created_ms"],
                "state": {"pending": "held" if r["ended"] is None else r["ended"]}.get(
                    r["phase"], "done"
                ),
            }
        )
    return _page(request, "history.html", person, token, points=points, movements=movements)


def _item_of(refs: str | None) -> str | None:
    try:
        found = dict(json.loads(refs or "[]")).get("item")
    except (ValueError, TypeError):
        return None
    return str(found) if found else None


@router.get("/app/loans", response_class=HTMLResponse)
def loans(request: Request) -> Response:
    """What the resident borrowed and when it is due."""
    person, token = signed_in_resident(request)
    rows = _svc(request).store.read(
        "SELECT id, title, status, due_ms FROM items WHERE reserved_by = ? AND kind = 'lend'"
        " AND status IN ('on_loan', 'due', 'overdue', 'awaiting_return') ORDER BY due_ms, id",
        (person.id,),
    )
    return _page(request, "loans.html", person, token, loans=[dict(r) for r in rows])


@router.post("/app/loans/{item_id}/return")
def give_back(request: Request, item_id: IdPath, csrf: CsrfField = "") -> Response:
    """A return code for a free compartment of a fitting size."""
    person, token = signed_in_resident(request)
    check_csrf(request, token, csrf)
    try:
        shown = _svc(request).items.request_return(person, item_id, None)
    except CloudError as exc:
        return _error(request, person, token, exc)
    return redirect(f"/app/codes/{shown['grant_id']}")
