"""Residents in the social worker's console: find, onboard, look after, and act for one.

- ``/staff/residents``: the community's residents; a search by name, unit, household or the
  phone's last four digits is posted (the term never goes in a URL).
- ``/staff/residents/new``: onboarding (:meth:`AccountService.onboard_resident`). The first PIN
  is made here at random (6 digits, none of the easy ones :func:`check_pin` refuses) and shown
  once, in the answer to the post: never in a URL, never logged, stored only as its hash.
- ``/staff/residents/{id}``: profile (phone masked), support flags, status, the balance (posted,
  held, available), points movements, account changes and item history with who did each and
  for whom; a PIN reset (a new random PIN shown once); the resident's codes; "act for this
  resident".
- **Acting** (see :mod:`cloud_api.pages.console`): while the worker acts for the resident, the
  resident's page offers what the services do for a resident through a worker — reserve an item
  (:meth:`ItemService.reserve` with ``for_person``), record a gift (:meth:`ItemService.propose`
  with ``on_behalf_of``) and get its drop-off code sent to them
  (:meth:`ItemService.request_dropoff`), and bring back a loan
  (:meth:`ItemService.request_return`). Each records the worker as the actor and the resident as
  ``on_behalf_of``. The resident comes from the verified acting cookie, never from the form.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from cloud_api.accounts.service import (
    FLAGS,
    LANGUAGES,
    STATUSES,
    Person,
    check_pin,
    normalize_phone,
)
from cloud_api.core.ledger import LedgerError
from cloud_api.errors import CloudError, Conflict, Invalid, NotFound
from cloud_api.pages.console import (
    CsrfField,
    IdPath,
    ReasonField,
    acting_for,
    not_found_page,
    now_ms,
    start_acting,
    stop_acting,
    svc_of,
    sw_page,
    worker_of,
)
from cloud_api.pages.web import check_csrf, language_of, redirect
from valuation_terminal.core.rules import load_policy

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
ITEMS_SHOWN = 20
FLAG_NAMES = tuple(sorted(FLAGS))
DONE = ("flags", "status", "acting", "reserved", "gift", "dropoff", "return", "problem")
"""What ``?done=`` may report on the resident's page."""
PROBLEMS = {
    "not_available": "sw.act.error.not_available",
    "own_item": "sw.act.error.own_item",
    "insufficient_points": "sw.act.error.points",
    "attention": "sw.act.error.attention",
    "no_free_compartment": "sw.act.error.no_space",
    "invalid_transition": "sw.act.error.state",
    "dispute_window_closed": "sw.act.error.window",
    "already_reported": "sw.act.error.reported",
}
"""A service's refusal code → what the page says."""


def new_pin(phone: str | None = None) -> str:
    """A random 6-digit PIN that :func:`check_pin` accepts (for ``phone`` when known)."""
    while True:
        pin = f"{secrets.randbelow(1_000_000):06d}"
        try:
            check_pin(pin, phone or "")
        except Invalid:
            continue
        return pin


# --- the list and the search -------------------------------------------------------------------


def _list_page(
    request: Request,
    worker: Person,
    token: str,
    *,
    q: str = "",
    offset: int = 0,
    searched: bool = False,
) -> HTMLResponse:
    found, total = svc_of(request).accounts.search(worker, q, offset, PAGE_SIZE)
    return sw_page(
        request,
        "sw_residents.html",
        worker,
        token,
        found=found,
        total=total,
        q=q,
        searched=searched,
        next_offset=offset + PAGE_SIZE if offset + PAGE_SIZE < total else None,
    )


@router.get("/staff/residents", response_class=HTMLResponse)
def residents(request: Request, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
    """Every resident of the community, by name, with a search."""
    worker, token = worker_of(request)
    return _list_page(request, worker, token, offset=offset)


@router.post("/staff/residents/search", response_class=HTMLResponse)
def search(
    request: Request, q: Annotated[str, Form(max_length=64)] = "", csrf: CsrfField = ""
) -> Response:
    """Residents by name, unit, household or the phone's last four digits (in the body)."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    return _list_page(request, worker, token, q=q.strip(), searched=True)


# --- onboarding -------------------------------------------------------------------------------


@router.get("/staff/residents/new", response_class=HTMLResponse)
def onboard_page(request: Request) -> Response:
    """The form to open a resident's account."""
    worker, token = worker_of(request)
    return _onboard_form(request, worker, token, {}, None)


def _onboard_form(
    request: Request,
    worker: Person,
    token: str,
    entered: dict[str, Any],
    problem: str | None,
    status_code: int = 200,
) -> HTMLResponse:
    return sw_page(
        request,
        "sw_onboard.html",
        worker,
        token,
        entered=entered,
        problem=problem,
        flags=FLAG_NAMES,
        languages=LANGUAGES,
        created=None,
        status_code=status_code,
    )


@router.post("/staff/residents/new", response_class=HTMLResponse)
def onboard(
    request: Request,
    display_name: Annotated[str, Form(max_length=64)] = "",
    phone: Annotated[str, Form(max_length=32)] = "",
    household: Annotated[str, Form(max_length=64)] = "",
    unit: Annotated[str, Form(max_length=64)] = "",
    language: Annotated[str, Form(max_length=8)] = "zh-CN",
    flags: Annotated[list[str] | None, Form()] = None,
    reason: ReasonField = "",
    csrf: CsrfField = "",
) -> Response:
    """Open the account; the first PIN is shown once, on this answer only."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    chosen = [f for f in (flags or []) if isinstance(f, str)][: len(FLAG_NAMES) + 1]
    entered = {
        "display_name": display_name,
        "phone": phone,
        "household": household,
        "unit": unit,
        "language": language,
        "flags": chosen,
        "reason": reason,
    }
    svc = svc_of(request)
    pin = new_pin(normalize_phone(phone.strip()))
    try:
        person_id = svc.accounts.onboard_resident(
            worker,
            display_name,
            phone,
            pin,
            household,
            unit,
            language,
            chosen,
            reason,
            now_ms=now_ms(request),
        )
    except Conflict:
        return _onboard_form(request, worker, token, entered, "sw.onboard.error.phone_taken", 409)
    except Invalid as exc:
        field = exc.field if exc.field in _ONBOARD_FIELDS else "form"
        return _onboard_form(request, worker, token, entered, f"sw.onboard.error.{field}", 422)
    profile = svc.accounts.profile(worker, person_id)
    return sw_page(
        request,
        "sw_onboard.html",
        worker,
        token,
        entered={},
        problem=None,
        flags=FLAG_NAMES,
        languages=LANGUAGES,
        created={"profile": profile, "pin": pin},
    )


_ONBOARD_FIELDS = ("display_name", "phone", "household", "unit", "language", "flags", "reason")


# --- one resident ---------------------------------------------------------------------------


def _resident_person(profile: dict[str, Any], worker: Person) -> Person:
    return Person(
        id=profile["id"],
        community_id=worker.community_id,
        role="resident",
        display_name=profile["display_name"],
        language=profile["language"],
    )


def _item_history(svc: Any, person_id: str) -> list[dict[str, Any]]:
    """What happened to the resident's items (given, reserved, or done for them), newest first,
    with who did it and for whom."""
    rows = svc.store.read(
        "SELECT h.item_id, i.title, h.at_ms, h.from_status, h.to_status, h.actor,"
        " a.display_name AS actor_name, h.on_behalf_of, b.display_name AS on_behalf_name"
        " FROM item_history h JOIN items i ON i.id = h.item_id"
        " LEFT JOIN people a ON a.id = h.actor LEFT JOIN people b ON b.id = h.on_behalf_of"
        " WHERE i.donor_id = ? OR i.reserved_by = ? OR h.on_behalf_of = ?"
        " ORDER BY h.at_ms DESC, h.rowid DESC LIMIT 40",
        (person_id, person_id, person_id),
    )
    return [dict(r) for r in rows]


def _movements(svc: Any, points: dict[str, Any]) -> list[dict[str, Any]]:
    """The points movements with the title of the item each was for."""
    ids = sorted({str(m["for"].get("item")) for m in points["movements"] if m["for"].get("item")})
    titles: dict[str, str] = {}
    if ids:
        marks = ",".join("?" for _ in ids)
        titles = {
            r["id"]: r["title"]
            for r in svc.store.read(
                f"SELECT id, title FROM items WHERE id IN ({marks})",  # noqa: S608
                tuple(ids),
            )
        }
    return [m | {"item": titles.get(str(m["for"].get("item", "")))} for m in points["movements"]]


def _resident_page(
    request: Request,
    worker: Person,
    token: str,
    person_id: str,
    *,
    done: str | None = None,
    q: str = "",
    new_pin_shown: str | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    svc = svc_of(request)
    try:
        profile = svc.accounts.profile(worker, person_id)
    except NotFound:
        return not_found_page(request, worker, token)
    acting = acting_for(request, worker, token)
    is_acting = acting is not None and acting["id"] == person_id
    points = svc.points.history(_resident_person(profile, worker), limit=50)
    context: dict[str, Any] = {
        "resident": profile,
        "flags": FLAG_NAMES,
        "statuses": STATUSES,
        "points": points,
        "movements": _movements(svc, points),
        "changes": svc.accounts.history(worker, person_id),
        "item_history": _item_history(svc, person_id),
        "is_acting": is_acting,
        "acting_for": acting,
        "done": done if done in DONE else None,
        "new_pin": new_pin_shown,
        "problem": problem,
        "q": q,
        "status_code": status_code,
    }
    if is_acting:
        context |= _acting_context(request, worker, person_id, q)
    return sw_page(request, "sw_resident.html", worker, token, **context)


def _acting_context(request: Request, worker: Person, person_id: str, q: str) -> dict[str, Any]:
    """What the resident's page offers while acting for them."""
    svc = svc_of(request)
    listed = svc.items.search(
        worker, status="listed", q=q or None, category=None, mine=False, offset=0,
        limit=ITEMS_SHOWN,
    )  # fmt: skip
    own = svc.store.read(
        "SELECT id, title, status, kind, due_ms FROM items WHERE community_id = ? AND"
        " ((donor_id = ? AND status = 'proposed') OR (reserved_by = ? AND kind = 'lend'"
        " AND status IN ('on_loan', 'due', 'overdue'))) ORDER BY updated_ms DESC, id",
        (worker.community_id, person_id, person_id),
    )
    picked_up = svc.store.read(
        "SELECT id, title, dispute_until_ms FROM items WHERE community_id = ? AND reserved_by = ?"
        " AND status = 'picked_up' AND dispute_until_ms >= ? ORDER BY dispute_until_ms, id",
        (worker.community_id, person_id, now_ms(request)),
    )
    with svc.store.snapshot() as db:
        _, text = svc.valuations.current_policy(db)
    zh = language_of(request, worker) == "zh-CN"
    categories = [
        (key, c.name_zh if zh else c.name_en) for key, c in load_policy(text).categories.items()
    ]
    return {
        "listed": [i for i in listed["items"] if i.get("donor_id") != person_id],
        "gifts": [dict(r) for r in own if r["status"] == "proposed"],
        "loans": [dict(r) for r in own if r["status"] != "proposed"],
        "picked_up": [dict(r) for r in picked_up],
        "problem_kinds": PROBLEM_KINDS,
        "categories": categories,
    }


@router.get("/staff/residents/{person_id}", response_class=HTMLResponse)
def resident_page(
    request: Request,
    person_id: IdPath,
    done: Annotated[str | None, Query(max_length=16)] = None,
    q: Annotated[str, Query(max_length=80)] = "",
) -> Response:
    """One resident: profile, balance, history, and what a worker does for them."""
    worker, token = worker_of(request)
    return _resident_page(request, worker, token, person_id, done=done, q=q)


@router.post("/staff/residents/{person_id}/pin", response_class=HTMLResponse)
def reset_pin(
    request: Request, person_id: IdPath, reason: ReasonField = "", csrf: CsrfField = ""
) -> Response:
    """A new random PIN (shown once, on this answer only); the resident's sessions end."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    svc = svc_of(request)
    for _ in range(20):  # a PIN that is the phone's last six digits is refused: draw again
        pin = new_pin()
        try:
            svc.accounts.reset_pin(worker, person_id, pin, reason, now_ms=now_ms(request))
        except NotFound:
            return not_found_page(request, worker, token)
        except Invalid as exc:
            if exc.field == "pin":
                continue
            return _resident_page(
                request, worker, token, person_id, problem="sw.res.error.reason", status_code=422
            )
        return _resident_page(request, worker, token, person_id, new_pin_shown=pin)
    raise Conflict("no acceptable PIN was drawn")  # pragma: no cover (one in 10^25)


@router.post("/staff/residents/{person_id}/flags")
def set_flags(
    request: Request,
    person_id: IdPath,
    flags: Annotated[list[str] | None, Form()] = None,
    reason: ReasonField = "",
    csrf: CsrfField = "",
) -> Response:
    """The resident's support flags, with a reason."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    chosen = (flags or [])[: len(FLAG_NAMES) + 1]
    try:
        svc_of(request).accounts.set_flags(
            worker, person_id, chosen, reason, now_ms=now_ms(request)
        )
    except NotFound:
        return not_found_page(request, worker, token)
    except Invalid as exc:
        key = "sw.res.error.reason" if exc.field == "reason" else "sw.res.error.flags"
        return _resident_page(request, worker, token, person_id, problem=key, status_code=422)
    return redirect(f"/staff/residents/{person_id}?done=flags")


@router.post("/staff/residents/{person_id}/status")
def set_status(
    request: Request,
    person_id: IdPath,
    status: Annotated[str, Form(max_length=16)] = "",
    reason: ReasonField = "",
    csrf: CsrfField = "",
) -> Response:
    """Enable or disable the resident's account, with a reason."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    try:
        svc_of(request).accounts.set_status(
            worker, person_id, status, reason, now_ms=now_ms(request)
        )
    except NotFound:
        return not_found_page(request, worker, token)
    except Invalid as exc:
        key = "sw.res.error.reason" if exc.field == "reason" else "sw.res.error.status"
        return _resident_page(request, worker, token, person_id, problem=key, status_code=422)
    return redirect(f"/staff/residents/{person_id}?done=status")


# --- acting for the resident ------------------------------------------------------------------


@router.post("/staff/residents/{person_id}/act")
def act_for(request: Request, person_id: IdPath, csrf: CsrfField = "") -> Response:
    """Start acting for the resident (an active resident of the community)."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    try:
        profile = svc_of(request).accounts.profile(worker, person_id)
    except NotFound:
        return not_found_page(request, worker, token)
    if profile["status"] != "active":
        return _resident_page(
            request, worker, token, person_id, problem="sw.act.error.disabled", status_code=409
        )
    response = redirect(f"/staff/residents/{person_id}?done=acting")
    start_acting(request, response, token, person_id)
    return response


def _acting(request: Request) -> tuple[Person, str, dict[str, Any] | None]:
    worker, token = worker_of(request)
    return worker, token, acting_for(request, worker, token)


def _not_acting(request: Request, worker: Person, token: str) -> HTMLResponse:
    """A post that needs acting without a valid acting state (none, forged, or another
    session's): refused, nothing done."""
    page = sw_page(
        request,
        "sw_residents.html",
        worker,
        token,
        found=None,
        q="",
        problem="sw.act.error.not_acting",
        acting_for=None,
        status_code=403,
    )
    stop_acting(page)
    return page


def _refused(
    request: Request, worker: Person, token: str, resident: dict[str, Any], exc: Exception
) -> HTMLResponse:
    code = getattr(exc, "code", "")
    key = PROBLEMS.get(code, "sw.act.error.other")
    status = 404 if isinstance(exc, NotFound) else 409
    if isinstance(exc, Invalid):
        key, status = "sw.act.error.gift", 422
    return _resident_page(request, worker, token, resident["id"], problem=key, status_code=status)


@router.post("/staff/acting/reserve/{item_id}")
def act_reserve(request: Request, item_id: IdPath, csrf: CsrfField = "") -> Response:
    """Reserve an item for the resident acted for: their points held, their pickup code."""
    worker, token, resident = _acting(request)
    check_csrf(request, token, csrf)
    if resident is None:
        return _not_acting(request, worker, token)
    try:
        svc_of(request).items.reserve(worker, item_id, resident["id"])
    except (CloudError, LedgerError) as exc:
        return _refused(request, worker, token, resident, exc)
    return redirect(f"/staff/residents/{resident['id']}?done=reserved")


@router.post("/staff/acting/gift")
def act_gift(
    request: Request,
    title: Annotated[str, Form(max_length=80)] = "",
    category: Annotated[str, Form(max_length=40)] = "",
    size: Annotated[str, Form(max_length=2)] = "M",
    description: Annotated[str, Form(max_length=500)] = "",
    csrf: CsrfField = "",
) -> Response:
    """Record a gift of the resident acted for (a proposal; the points are decided later)."""
    worker, token, resident = _acting(request)
    check_csrf(request, token, csrf)
    if resident is None:
        return _not_acting(request, worker, token)
    svc = svc_of(request)
    with svc.store.snapshot() as db:
        _, text = svc.valuations.current_policy(db)
    if (
        not title.strip()
        or category not in load_policy(text).categories
        or size not in ("S", "M", "L")
    ):
        return _refused(request, worker, token, resident, Invalid("gift"))
    fields = {
        "title": title.strip(),
        "category": category,
        "size": size,
        "description": description.strip(),
        "kind": "give",
    }
    try:
        svc.items.propose(worker, fields, resident["id"])
    except (CloudError, LedgerError) as exc:
        return _refused(request, worker, token, resident, exc)
    return redirect(f"/staff/residents/{resident['id']}?done=gift")


def _own_item(
    request: Request, item_id: str, resident: dict[str, Any], column: str
) -> dict[str, Any] | None:
    row = svc_of(request).store.read_one(
        f"SELECT id, status FROM items WHERE id = ? AND {column} = ?",  # noqa: S608
        (item_id, resident["id"]),
    )
    return None if row is None else dict(row)


@router.post("/staff/acting/dropoff/{item_id}")
def act_dropoff(request: Request, item_id: IdPath, csrf: CsrfField = "") -> Response:
    """A drop-off code for the resident's recorded gift, sent to them as a message."""
    worker, token, resident = _acting(request)
    check_csrf(request, token, csrf)
    if resident is None:
        return _not_acting(request, worker, token)
    if _own_item(request, item_id, resident, "donor_id") is None:
        return _refused(request, worker, token, resident, NotFound("no such gift"))
    try:
        svc_of(request).items.request_dropoff(worker, item_id, None, notify=True)
    except (CloudError, LedgerError) as exc:
        return _refused(request, worker, token, resident, exc)
    return redirect(f"/staff/residents/{resident['id']}?done=dropoff")


PROBLEM_KINDS = ("not_as_described", "damaged", "missing", "other")
"""What a resident may report about an item picked up (as on their own page)."""


@router.post("/staff/acting/problem/{item_id}")
def act_problem(
    request: Request,
    item_id: IdPath,
    problem: Annotated[str, Form(max_length=32)],
    note: Annotated[str, Form(max_length=500)] = "",
    csrf: CsrfField = "",
) -> Response:
    """A problem with an item the resident picked up, reported for them (a case in their name
    that records who wrote it)."""
    worker, token, resident = _acting(request)
    check_csrf(request, token, csrf)
    if resident is None:
        return _not_acting(request, worker, token)
    if problem not in PROBLEM_KINDS:
        return _refused(request, worker, token, resident, NotFound("no such problem"))
    try:
        svc_of(request).items.report_problem(
            worker, item_id, problem, note.strip(), on_behalf_of=resident["id"]
        )
    except CloudError as exc:
        return _refused(request, worker, token, resident, exc)
    return redirect(f"/staff/residents/{resident['id']}?done=problem")


@router.post("/staff/acting/return/{item_id}")
def act_return(request: Request, item_id: IdPath, csrf: CsrfField = "") -> Response:
    """A return code for a loan of the resident (sent to them as a message)."""
    worker, token, resident = _acting(request)
    check_csrf(request, token, csrf)
    if resident is None:
        return _not_acting(request, worker, token)
    if _own_item(request, item_id, resident, "reserved_by") is None:
        return _refused(request, worker, token, resident, NotFound("no such loan"))
    try:
        svc_of(request).items.request_return(worker, item_id, None)
    except (CloudError, LedgerError) as exc:
        return _refused(request, worker, token, resident, exc)
    return redirect(f"/staff/residents/{resident['id']}?done=return")
