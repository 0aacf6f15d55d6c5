"""Problems and disputes, items and reservations: the social worker's pages (issue #10).

``/staff/cases`` lists the community's cases (table ``cases``, :mod:`cloud_api.cases`): what
kind, which item, who is involved, what a locker or a resident reported, when it was opened.
``/staff/cases/{id}`` shows one with its corrections and offers what makes sense for its kind
(:data:`KIND_ACTIONS`), each with a required note and each through the service the API uses:

- **refund by reversal**: a posted payment for the case's item is reversed
  (:meth:`PointsService.reverse`, one reversal per payment and case: a second click is refused
  with a message and reverses nothing);
- **compensation**: points credited to a resident from the community's account. The ledger has
  no kind of its own for it: it is a ``refund`` (``sys:redemption`` → member), the only flow
  that credits a member from a community account without being issuance; it carries the refs
  ``dispute`` (the case) and ``note``. Above the threshold it waits for a second social worker
  (:meth:`PointsService.move`), who approves it from the same page;
- **credit note to the party at fault**: a ``penalty`` (member → ``sys:penalties``), refused
  with a message when the resident's available points do not cover it;
- **the loan's deposit**: kept (posted) or released (voided) (:meth:`PointsService.resolve_hold`);
- **return code**: a borrower's code to bring a lent item back (:meth:`ItemService.request_return`,
  or the grants router's re-issue when the return code expired);
- **what the item becomes** (:meth:`ItemService.review`);
- **resolve** with a note (the logic of ``POST /api/v1/cases/{id}/resolve``).

``/staff/items`` lists the community's items (filter by status, search by title) and
``/staff/items/{id}`` shows one: photo, status history, the live code (never its digits), the
reservation, the holder, the loan's due date, and the actions the item service offers staff
(withdraw, check a return, review, cancel a reservation), each with a reason.

Every post carries its CSRF token (403 without, nothing changed); a change answers 303 back to
the page with ``?done=`` (PRG); a refusal renders the page again with its 4xx status and a
message saying what happened.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from cloud_api.accounts.service import Person
from cloud_api.cases import CASE_KINDS
from cloud_api.core.items import STATUSES, allowed_actions
from cloud_api.core.ledger import Conflict as LedgerConflict
from cloud_api.core.ledger import LedgerError
from cloud_api.core.ledger import NotFound as LedgerNotFound
from cloud_api.deps import Services
from cloud_api.errors import HTTP_STATUS, CloudError, Conflict, Invalid, NotFound
from cloud_api.grants.router import Resolution, WithReason, reissue, resolve_case
from cloud_api.pages.console import CsrfField, IdPath, svc_of, sw_page, worker_of
from cloud_api.pages.web import check_csrf, redirect
from cloud_api.points.service import Movement
from linli.i18n import catalog
from linli.ids import new_id

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_POINTS = 10_000
"""The most points one compensation or credit note may move (a typing slip, not a policy)."""
NoteField = Annotated[str, Form(max_length=500)]
SmallField = Annotated[str, Form(max_length=64)]

KIND_ACTIONS: dict[str, tuple[str, ...]] = {
    "problem_report": ("refund", "compensation", "credit_note", "return_grant"),
    "damaged_return": ("deposit", "credit_note", "compensation", "refund", "review"),
    "late_conflict": ("credit_note", "refund", "compensation", "review", "return_grant"),
    "item_missing": ("credit_note", "compensation", "review", "return_grant"),
    "item_left_behind": (),
    "item_at_risk": (),
    "dropoff_empty": (),
    "device_mismatch": (),
}
"""What a social worker may do about each kind of case besides resolving it (an action is
offered only when the facts allow it too: something paid to refund, a deposit still held, a
loan out to bring back, an item under review)."""
REVIEW_DECISIONS = ("relist", "confirm_gone", "return_to_donor", "withdraw")
OUT_ON_LOAN = ("on_loan", "due", "overdue")
CASE_DONE = (
    "refund",
    "compensation",
    "awaiting",
    "credit_note",
    "deposit",
    "return_grant",
    "review",
    "approved",
    "resolved",
)
ITEM_DONE = ("withdraw", "check", "review", "cancel")
ERROR_KEYS = {
    "already_reversed": "swc.error.already_refunded",
    "already_refunded": "swc.error.already_refunded",
    "limit": "swc.error.limit",
    "insider_self": "swc.error.insider_self",
    "insider_second_approver": "swc.error.second_approver",
    "insider_cap": "swc.error.cap",
    "key_conflict": "swc.error.form_used",
    "second_approval_differs": "swc.error.form_used",
    "reversal_exceeds": "swc.error.exceeds",
    "not_reversible": "swc.error.not_reversible",
    "resolved": "swc.error.resolved",
    "invalid_transition": "swc.error.invalid_transition",
    "no_free_compartment": "swc.error.no_free_compartment",
    "not_waiting": "swc.error.not_waiting",
    "settled": "swc.error.not_waiting",
    "posted": "swc.error.deposit_done",
    "voided": "swc.error.deposit_done",
    "deposit_done": "swc.error.deposit_done",
    "note": "swc.error.note",
    "amount": "swc.error.amount",
    "member": "swc.error.member",
    "payment": "swc.error.payment",
    "decision": "swc.error.decision",
    "not_offered": "swc.error.not_offered",
    "not_found": "swc.error.not_found",
    "status": "swc.error.status",
}
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,40}")
_PHOTO = re.compile(r"(?:^|\n)photo:([0-9a-f]{64})\s*$")


@dataclass(frozen=True)
class Refusal:
    """What the page says about a refused post, and its HTTP status."""

    key: str
    status: int


def refusal_of(exc: Exception) -> Refusal:
    """The message and status of a service's refusal (ledger or domain)."""
    code = str(getattr(exc, "code", ""))
    key = ERROR_KEYS.get(code, "swc.error.other")
    if isinstance(exc, LedgerError):
        status = (
            409
            if isinstance(exc, LedgerConflict)
            else 404
            if isinstance(exc, LedgerNotFound)
            else 422
        )
    elif isinstance(exc, CloudError):
        status = next((s for t, s in HTTP_STATUS.items() if isinstance(exc, t)), 400)
    else:  # pragma: no cover - only the two roots are caught
        status = 400
    return Refusal(key, status)


def has_route(request: Request, path: str) -> bool:
    """Whether the app serves ``path`` (a page another part of the console adds). Included
    routers are either flattened into ``app.routes`` or kept as entries that expand through
    ``effective_route_contexts()``, depending on FastAPI's version: both are looked at."""
    for route in request.app.routes:
        if getattr(route, "path", None) == path:
            return True
        expand = getattr(route, "effective_route_contexts", None)
        if expand is not None and any(getattr(r, "path", None) == path for r in expand()):
            return True
    return False


def _names(db: sqlite3.Connection, ids: set[str]) -> dict[str, str]:
    """People's display names by id (an id that names nobody, e.g. ``device:…``, is absent)."""
    ids = {i for i in ids if i}
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    rows = db.execute(
        f"SELECT id, display_name FROM people WHERE id IN ({marks})",  # noqa: S608
        tuple(sorted(ids)),
    ).fetchall()
    return {r["id"]: r["display_name"] for r in rows}


def _refs(text: str) -> dict[str, str]:
    return {str(name): str(value) for name, value in json.loads(text)}


# --- cases: reading -----------------------------------------------------------------------------


def _photo_of(note: str) -> tuple[str, str | None]:
    """A problem note without its photo line, and the photo's hash if it had one."""
    found = _PHOTO.search(note)
    if found is None:
        return note, None
    return note[: found.start()].strip(), found.group(1)


def _summary(kind: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A case's one-line summary for the list: the problem's words, or the event and door."""
    if kind == "problem_report":
        return {"problem": detail.get("problem")}
    if kind == "damaged_return":
        return {"reason": detail.get("reason")}
    return {
        "event": detail.get("event") or detail.get("first_event"),
        "compartment": detail.get("compartment"),
    }


def _fields(values: dict[str, Any]) -> list[dict[str, Any]]:
    """A dict from the store as rows to show: a catalog label where one exists, times as times,
    anything else as data (its machine words are the store's, not the page's)."""
    known = catalog("en")
    shown = []
    for name, value in values.items():
        label = f"swc.field.{name}"
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        shown.append(
            {
                "label": label if label in known else None,
                "name": name,
                "value": value,
                "is_time": name.endswith("_ms") and isinstance(value, int),
            }
        )
    return shown


def case_rows(svc: Services, worker: Person, status: str | None, offset: int) -> dict[str, Any]:
    """A page of the community's cases, newest first, with item titles and people's names."""
    with svc.store.snapshot() as db:
        total = db.execute(
            "SELECT COUNT(*) FROM cases WHERE community_id = ? AND (? IS NULL OR status = ?)",
            (worker.community_id, status, status),
        ).fetchone()[0]
        rows = db.execute(
            "SELECT c.*, i.title, i.donor_id, (SELECT COUNT(*) FROM corrections k"
            " WHERE k.case_id = c.id) AS corrections FROM cases c"
            " LEFT JOIN items i ON i.id = c.item_id WHERE c.community_id = ?"
            " AND (? IS NULL OR c.status = ?) ORDER BY c.created_ms DESC, c.id LIMIT ? OFFSET ?",
            (worker.community_id, status, status, PAGE_SIZE, offset),
        ).fetchall()
        names = _names(db, {r["person_id"] for r in rows} | {r["donor_id"] for r in rows})
    cases = []
    for r in rows:
        detail = json.loads(r["detail"])
        people = [names[p] for p in dict.fromkeys((r["person_id"], r["donor_id"])) if p in names]
        cases.append(
            {
                "id": r["id"],
                "kind": r["kind"],
                "status": r["status"],
                "item_id": r["item_id"],
                "title": r["title"],
                "people": people,
                "summary": _summary(r["kind"], detail),
                "corrections": r["corrections"],
                "created_ms": r["created_ms"],
            }
        )
    return {"cases": cases, "total": int(total), "offset": offset}


def _case_row(db: sqlite3.Connection, worker: Person, case_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM cases WHERE id = ? AND community_id = ?", (case_id, worker.community_id)
    ).fetchone()
    if row is None:
        raise NotFound("no such case")
    return row


def _payments(db: sqlite3.Connection, item_id: str) -> list[dict[str, Any]]:
    """Posted payments for an item (redemptions), with what remains of each to reverse."""
    rows = db.execute(
        "SELECT t.id, t.idempotency_key, t.amount, t.debit_account, t.created_ms,"
        " COALESCE((SELECT SUM(r.amount) FROM transfers r WHERE r.reverses_id = t.id), 0)"
        " AS reversed FROM transfers t WHERE t.kind = 'redemption'"
        " AND t.phase IN ('single', 'post') AND EXISTS (SELECT 1 FROM json_each(t.refs) j"
        " WHERE json_extract(j.value, '$[0]') = 'item' AND json_extract(j.value, '$[1]') = ?)"
        " ORDER BY t.created_ms, t.rowid",
        (item_id,),
    ).fetchall()
    return [
        {
            "id": r["id"],
            "key": r["idempotency_key"],
            "amount": r["amount"],
            "reversed": r["reversed"],
            "remaining": r["amount"] - r["reversed"],
            "member": r["debit_account"].removeprefix("mem:"),
            "at_ms": r["created_ms"],
        }
        for r in rows
    ]


def _case_moves(db: sqlite3.Connection, case_id: str) -> list[dict[str, Any]]:
    """Points moved for this case: its compensations, credit notes, refunds and deposit."""
    rows = db.execute(
        "SELECT id, kind, phase, amount, debit_account, credit_account, actor, approved_by,"
        " reason, refs, created_ms FROM transfers WHERE idempotency_key LIKE ? ESCAPE '\\'"
        " ORDER BY created_ms, rowid",
        (_like_prefix(f"case:{case_id}:"),),
    ).fetchall()
    moves = []
    for r in rows:
        account = (
            r["credit_account"] if r["credit_account"].startswith("mem:") else r["debit_account"]
        )
        refs = _refs(r["refs"])
        moves.append(
            {
                "id": r["id"],
                "kind": r["kind"],
                "phase": r["phase"],
                "amount": r["amount"],
                "member": account.removeprefix("mem:"),
                "actor": r["actor"],
                "approved_by": r["approved_by"],
                "note": r["reason"] or refs.get("note", ""),
                "at_ms": r["created_ms"],
            }
        )
    return moves


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _parked(db: sqlite3.Connection, case_id: str) -> list[dict[str, Any]]:
    """Movements of this case waiting for a second social worker."""
    rows = db.execute(
        "SELECT id, key, body, requested_by, requested_ms FROM ledger_requests"
        " WHERE key LIKE ? ESCAPE '\\' AND status = 'awaiting_second_approver'"
        " ORDER BY requested_ms, id",
        (_like_prefix(f"case:{case_id}:"),),
    ).fetchall()
    parked = []
    for r in rows:
        body = json.loads(r["body"])
        refs = {str(n): str(v) for n, v in body.get("refs", [])}
        parked.append(
            {
                "id": r["id"],
                "kind": body["kind"],
                "amount": body["amount"],
                "member": body.get("member"),
                "note": refs.get("note", ""),
                "requested_by": r["requested_by"],
                "requested_ms": r["requested_ms"],
            }
        )
    return parked


def _deposit(db: sqlite3.Connection, item: sqlite3.Row | None) -> dict[str, Any] | None:
    """The item's deposit hold, if it is still held."""
    if item is None or not item["deposit_key"]:
        return None
    row = db.execute(
        "SELECT t.id, t.amount, t.debit_account FROM transfers t WHERE t.idempotency_key = ?"
        " AND t.phase = 'pending' AND NOT EXISTS (SELECT 1 FROM transfers r"
        " WHERE r.pending_id = t.id)",
        (item["deposit_key"],),
    ).fetchone()
    if row is None:
        return None
    return {"id": row["id"], "amount": row["amount"], "member": row["debit_account"][4:]}


def _return_route(db: sqlite3.Connection, item: sqlite3.Row | None) -> dict[str, Any] | None:
    """How a code to bring the item back can be given: a new return grant for a loan that is
    out, or a re-issue of the return code an item still waits on; None if neither applies."""
    if item is None or item["kind"] != "lend" or not item["reserved_by"]:
        return None  # only a loan has a borrower to give the code to
    if item["status"] in OUT_ON_LOAN:
        return {"how": "request_return", "grant_id": None}
    if item["status"] == "awaiting_return":
        live = db.execute(
            "SELECT 1 FROM grants WHERE item_id = ? AND purpose = 'return' AND status = 'active'",
            (item["id"],),
        ).fetchone()
        last = db.execute(
            "SELECT id FROM grants WHERE item_id = ? AND purpose = 'return'"
            " ORDER BY created_ms DESC, rowid DESC LIMIT 1",
            (item["id"],),
        ).fetchone()
        if live is None and last is not None:
            return {"how": "reissue", "grant_id": last["id"]}
    return None


def case_view(svc: Services, worker: Person, case_id: str) -> dict[str, Any]:
    """Everything the case page shows and its actions need (NotFound for another community's)."""
    with svc.store.snapshot() as db:
        row = _case_row(db, worker, case_id)
        corrections = db.execute(
            "SELECT * FROM corrections WHERE case_id = ? ORDER BY created_ms, id", (case_id,)
        ).fetchall()
        item = None
        if row["item_id"]:
            item = db.execute(
                "SELECT * FROM items WHERE id = ? AND community_id = ?",
                (row["item_id"], worker.community_id),
            ).fetchone()
        grant = None
        if row["grant_id"]:
            grant = db.execute(
                "SELECT person_id, purpose FROM grants WHERE id = ?", (row["grant_id"],)
            ).fetchone()
        payments = _payments(db, item["id"]) if item is not None else []
        moves = _case_moves(db, case_id)
        parked = _parked(db, case_id)
        deposit = _deposit(db, item)
        return_route = _return_route(db, item)
        involved = _involved(row, item, grant)
        residents = {
            r["id"]
            for r in db.execute(
                "SELECT id FROM people WHERE community_id = ? AND role = 'resident'",
                (worker.community_id,),
            )
        }
        ids = (
            {p["id"] for p in involved}
            | {p["member"] for p in payments}
            | {m["member"] for m in moves}
            | {m["actor"] for m in moves}
            | {m["approved_by"] for m in moves}
            | {p["member"] for p in parked}
            | {p["requested_by"] for p in parked}
            | {row["resolved_by"]}
        )
        names = _names(db, {i for i in ids if i})
    detail = json.loads(row["detail"])
    photo = None
    if isinstance(detail.get("note"), str):
        detail["note"], photo = _photo_of(detail["note"])
    review = [
        d for d in REVIEW_DECISIONS if item is not None and d in allowed_actions(item["status"])
    ]
    facts = {
        "refund": bool(payments),
        "compensation": True,
        "credit_note": True,
        "deposit": deposit is not None,
        "return_grant": return_route is not None,
        "review": bool(review),
    }
    named = [p | {"name": names.get(p["id"], p["id"])} for p in involved]
    is_open = row["status"] == "open"
    offered = [a for a in KIND_ACTIONS.get(row["kind"], ()) if is_open and facts[a]]
    return {
        "case": dict(row),
        "detail": _fields(detail),
        "photo": photo,
        "corrections": [
            {
                "at_ms": c["created_ms"],
                "decided": _fields(json.loads(c["decided"])),
                "observed": _fields(json.loads(c["observed"])),
                "applied": _fields(json.loads(c["applied"])),
            }
            for c in corrections
        ],
        "item": dict(item) if item is not None else None,
        "involved": named,
        "residents": [p for p in named if p["id"] in residents],
        "payments": payments,
        "moves": moves,
        "parked": parked,
        "deposit": deposit,
        "return_route": return_route,
        "review": review,
        "offered": offered,
        "names": names,
        "is_open": is_open,
    }


def _involved(
    case: sqlite3.Row, item: sqlite3.Row | None, grant: sqlite3.Row | None
) -> list[dict[str, str]]:
    """Who the case is about, each once, with how they are involved."""
    roles = {
        "problem_report": "reporter",
        "damaged_return": "borrower",
    }
    found: dict[str, str] = {}
    if case["person_id"]:
        found[case["person_id"]] = roles.get(case["kind"], "code_holder")
    if grant is not None and grant["person_id"]:
        found.setdefault(grant["person_id"], "code_holder")
    if item is not None:
        if item["reserved_by"]:
            found.setdefault(item["reserved_by"], "holder")
        if item["donor_id"]:
            found.setdefault(item["donor_id"], "donor")
    return [{"id": person_id, "role": role} for person_id, role in found.items()]


# --- cases: pages -------------------------------------------------------------------------------


def _cases_page(
    request: Request,
    worker: Person,
    token: str,
    *,
    status: str,
    offset: int = 0,
    problem: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = case_rows(svc_of(request), worker, None if status == "all" else status, offset)
    following = offset + PAGE_SIZE
    return sw_page(
        request,
        "sw_cases.html",
        worker,
        token,
        found=found,
        shown_status=status,
        next_offset=following if following < found["total"] else None,
        kinds=CASE_KINDS,
        problem=problem,
        status_code=status_code,
    )


@router.get("/staff/cases", response_class=HTMLResponse)
def cases_page(
    request: Request,
    status: Annotated[str, Query(max_length=16)] = "open",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """The community's problems and disputes, newest first (open ones by default)."""
    worker, token = worker_of(request)
    if status not in ("open", "resolved", "all"):
        return _cases_page(
            request, worker, token, status="open", problem="swc.error.status", status_code=422
        )
    return _cases_page(request, worker, token, status=status, offset=offset)


def _case_page(
    request: Request,
    worker: Person,
    token: str,
    case_id: str,
    *,
    done: str | None = None,
    refusal: Refusal | None = None,
    entered: dict[str, str] | None = None,
) -> HTMLResponse:
    svc = svc_of(request)
    try:
        view = case_view(svc, worker, case_id)
    except NotFound:
        return _cases_page(
            request, worker, token, status="open", problem="swc.error.not_found", status_code=404
        )
    return sw_page(
        request,
        "sw_case.html",
        worker,
        token,
        view=view,
        done=done if done in CASE_DONE else None,
        problem=refusal.key if refusal else None,
        entered=entered or {},
        nonce=new_id("frm"),
        limit=svc.points.policy.second_approver_over,
        photos=has_route(request, "/staff/photos/{digest}"),
        residents_linked=has_route(request, "/staff/residents/{person_id}"),
        status_code=refusal.status if refusal else 200,
    )


@router.get("/staff/cases/{case_id}", response_class=HTMLResponse)
def case_page(
    request: Request,
    case_id: IdPath,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    """One case: what happened, who is involved, what was done, and what can be done."""
    worker, token = worker_of(request)
    return _case_page(request, worker, token, case_id, done=done)


@dataclass(frozen=True)
class CaseForm:
    """What a case action's form posted."""

    note: str
    amount: str
    member: str
    payment: str
    decision: str
    nonce: str
    request_id: str


def _note(form: CaseForm) -> str:
    note = form.note.strip()
    if not note:
        raise Invalid("a note is required", code="note", field="note")
    return note


def _points(form: CaseForm) -> int:
    try:
        amount = int(form.amount.strip())
    except ValueError:
        raise Invalid("points must be a whole number", code="amount", field="amount") from None
    if not 1 <= amount <= MAX_POINTS:
        raise Invalid(f"points from 1 to {MAX_POINTS}", code="amount", field="amount")
    return amount


def _member(view: dict[str, Any], form: CaseForm) -> str:
    if form.member not in {p["id"] for p in view["residents"]}:
        raise Invalid("choose a resident involved in the case", code="member", field="member")
    return form.member


def _nonce(form: CaseForm) -> str:
    if not _NONCE.fullmatch(form.nonce):
        raise Invalid("reload the page and try again", code="key_conflict", field="nonce")
    return form.nonce


def _refund(svc: Services, worker: Person, view: dict[str, Any], form: CaseForm) -> str:
    note = _note(form)
    payment = next((p for p in view["payments"] if p["id"] == form.payment), None)
    if payment is None:
        raise Invalid("choose a payment of this item", code="payment", field="payment")
    key = f"case:{view['case']['id']}:reverse:{payment['id']}"
    done_before = svc.store.read_one("SELECT 1 FROM transfers WHERE idempotency_key = ?", (key,))
    if done_before is not None or payment["remaining"] <= 0:
        raise Conflict("this payment is already refunded", code="already_refunded")
    svc.points.reverse(worker, key, payment["key"], note[:200], None)
    return "refund"


def _movement(
    svc: Services, worker: Person, view: dict[str, Any], form: CaseForm, kind: str, name: str
) -> str:
    note = _note(form)
    amount = _points(form)
    member = _member(view, form)
    case_id = view["case"]["id"]
    refs: tuple[tuple[str, str], ...] = (("dispute", case_id), ("note", note))
    if view["item"] is not None:
        refs += (("item", view["item"]["id"]),)
    result = svc.points.move(
        worker,
        Movement(
            key=f"case:{case_id}:{name}:{_nonce(form)}",
            kind=kind,
            amount=amount,
            member=member,
            refs=refs,
        ),
    )
    return "awaiting" if result["status"] == "awaiting_second_approver" else name


def _compensation(svc: Services, worker: Person, view: dict[str, Any], form: CaseForm) -> str:
    return _movement(svc, worker, view, form, "refund", "compensation")


def _credit_note(svc: Services, worker: Person, view: dict[str, Any], form: CaseForm) -> str:
    return _movement(svc, worker, view, form, "penalty", "credit_note")


def _deposit_decision(svc: Services, worker: Person, view: dict[str, Any], form: CaseForm) -> str:
    note = _note(form)
    if form.decision not in ("keep", "release"):
        raise Invalid("keep or release the deposit", code="decision", field="decision")
    deposit = view["deposit"]
    if deposit is None:
        raise Conflict("the deposit is already decided", code="deposit_done")
    svc.points.resolve_hold(
        worker,
        deposit["id"],
        f"case:{view['case']['id']}:deposit",
        post=form.decision == "keep",
        reason=note[:200],
    )
    return "deposit"


def _return_grant(svc: Services, worker: Person, view: dict[str, Any], form: CaseForm) -> str:
    note = _note(form)
    route = view["return_route"]
    item = view["item"]
    if route is None or item is None:
        raise Conflict("this item cannot be brought back now", code="invalid_transition")
    if route["how"] == "reissue":
        reissue(route["grant_id"], WithReason(reason=note[:200]), worker, svc)
        return "return_grant"
    svc.items.request_return(worker, item["id"], None)
    with svc.store.write() as db:  # the note, beside the service's own "return grant" entry
        now = svc.clock.now().wall_ms
        status = db.execute("SELECT status FROM items WHERE id = ?", (item["id"],)).fetchone()[0]
        db.execute(
            "INSERT INTO item_history (item_id, at_ms, from_status, to_status, cause, actor)"
            " VALUES (?,?,?,?,?,?)",
            (
                item["id"],
                now,
                status,
                status,
                f"return code for case {view['case']['id']}: {note}",
                worker.id,
            ),
        )
    return "return_grant"


def _review(svc: Services, worker: Person, view: dict[str, Any], form: CaseForm) -> str:
    note = _note(form)
    if form.decision not in view["review"]:
        raise Invalid("choose what the item becomes", code="decision", field="decision")
    svc.items.review(worker, view["item"]["id"], form.decision, note[:200])
    return "review"


def _approve(svc: Services, worker: Person, view: dict[str, Any], form: CaseForm) -> str:
    if form.request_id not in {p["id"] for p in view["parked"]}:
        raise NotFound("no such request waiting", code="not_found")
    svc.points.approve(worker, form.request_id)
    return "approved"


def _resolve(svc: Services, worker: Person, view: dict[str, Any], form: CaseForm) -> str:
    note = _note(form)
    resolve_case(view["case"]["id"], Resolution(resolution=note), worker, svc)
    return "resolved"


CASE_ACTIONS = {
    "refund": _refund,
    "compensation": _compensation,
    "credit_note": _credit_note,
    "deposit": _deposit_decision,
    "return_grant": _return_grant,
    "review": _review,
    "approve": _approve,
    "resolve": _resolve,
}
"""The posts of the case page: each runs one service call (or two, for a return code)."""
ALWAYS = ("approve", "resolve")
"""Actions open on every case (the others only where :data:`KIND_ACTIONS` and the facts allow;
a refund stays open while the item has a payment, so a second one is answered "already
refunded"). A movement parked for a second approver may be approved after the case is
resolved."""


@router.post("/staff/cases/{case_id}/{action}")
def case_action(
    request: Request,
    case_id: IdPath,
    action: Annotated[str, Path(max_length=16, pattern=r"^[a-z_]+$")],
    note: NoteField = "",
    amount: Annotated[str, Form(max_length=16)] = "",
    member: SmallField = "",
    payment: SmallField = "",
    decision: Annotated[str, Form(max_length=32)] = "",
    nonce: SmallField = "",
    request_id: SmallField = "",
    csrf: CsrfField = "",
) -> Response:
    """One action on a case, with its note; back to the case (303) or the case again with what
    went wrong (4xx)."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    form = CaseForm(note, amount, member, payment, decision, nonce, request_id)
    entered = {"note": note, "amount": amount, "member": member, "action": action}
    run = CASE_ACTIONS.get(action)
    svc = svc_of(request)
    try:
        view = case_view(svc, worker, case_id)
        if run is None:
            raise NotFound("no such action", code="not_offered")
        if not view["is_open"] and action != "approve":
            raise Conflict("the case is already resolved", code="resolved")
        if action not in ALWAYS and action not in view["offered"]:
            raise Conflict("not offered for this case now", code="not_offered")
        done = run(svc, worker, view, form)
    except (CloudError, LedgerError) as exc:
        return _case_page(request, worker, token, case_id, refusal=refusal_of(exc), entered=entered)
    return redirect(f"/staff/cases/{case_id}?done={done}")


# --- items and reservations -------------------------------------------------------------------


def _lockers(db: sqlite3.Connection, community_id: str) -> dict[str, str]:
    return {
        r["id"]: r["name"]
        for r in db.execute("SELECT id, name FROM devices WHERE community_id = ?", (community_id,))
    }


def _items_page(
    request: Request,
    worker: Person,
    token: str,
    *,
    status: str,
    q: str,
    offset: int,
    problem: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    svc = svc_of(request)
    found = svc.items.search(
        worker,
        status=status or None,
        q=q.strip() or None,
        category=None,
        mine=False,
        offset=offset,
        limit=PAGE_SIZE,
    )
    with svc.store.snapshot() as db:
        names = _names(db, {str(i["reserved_by"]) for i in found["items"] if i["reserved_by"]})
        lockers = _lockers(db, worker.community_id)
    following = offset + PAGE_SIZE
    return sw_page(
        request,
        "sw_items.html",
        worker,
        token,
        found=found,
        names=names,
        lockers=lockers,
        statuses=STATUSES,
        shown_status=status,
        q=q,
        next_offset=following if following < found["total"] else None,
        problem=problem,
        status_code=status_code,
    )


@router.get("/staff/items", response_class=HTMLResponse)
def items_page(
    request: Request,
    status: Annotated[str, Query(max_length=32)] = "",
    q: Annotated[str, Query(max_length=80)] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """The community's items, newest change first: filter by status, search by title."""
    worker, token = worker_of(request)
    if status and status not in STATUSES:
        return _items_page(
            request,
            worker,
            token,
            status="",
            q=q,
            offset=0,
            problem="swc.error.status",
            status_code=422,
        )
    return _items_page(request, worker, token, status=status, q=q, offset=offset)


def item_view(svc: Services, worker: Person, item_id: str) -> dict[str, Any]:
    """One item of the community as the item page shows it (NotFound otherwise)."""
    with svc.store.snapshot() as db:
        item = db.execute(
            "SELECT * FROM items WHERE id = ? AND community_id = ?", (item_id, worker.community_id)
        ).fetchone()
        if item is None:
            raise NotFound("no such item")
        history = db.execute(
            "SELECT at_ms, from_status, to_status, cause, actor, on_behalf_of FROM item_history"
            " WHERE item_id = ? ORDER BY at_ms, rowid",
            (item_id,),
        ).fetchall()
        grants = db.execute(
            "SELECT id, purpose, person_id, device_id, compartment, valid_until_ms FROM grants"
            " WHERE item_id = ? AND status = 'active' ORDER BY created_ms, id",
            (item_id,),
        ).fetchall()
        hold = None
        if item["hold_key"]:
            hold = db.execute(
                "SELECT t.amount, (SELECT r.phase FROM transfers r WHERE r.pending_id = t.id)"
                " AS resolved FROM transfers t WHERE t.idempotency_key = ?",
                (item["hold_key"],),
            ).fetchone()
        cases = db.execute(
            "SELECT id, kind, status, created_ms FROM cases WHERE item_id = ? AND community_id = ?"
            " ORDER BY created_ms DESC, id",
            (item_id, worker.community_id),
        ).fetchall()
        people = {item["donor_id"], item["reserved_by"]}
        people |= {h["actor"] for h in history} | {h["on_behalf_of"] for h in history}
        people |= {g["person_id"] for g in grants}
        names = _names(db, {p for p in people if p})
        lockers = _lockers(db, worker.community_id)
    status = item["status"]
    review = [d for d in REVIEW_DECISIONS if d in allowed_actions(status) and d != "withdraw"]
    actions = {
        "withdraw": "withdraw" in allowed_actions(status),
        "check": status == "returned_pending_check",
        "review": bool(review),
        "cancel": status == "reserved",
    }
    return {
        "item": dict(item),
        "history": [dict(h) for h in history],
        "grants": [dict(g) for g in grants],
        "hold": dict(hold) if hold is not None else None,
        "cases": [dict(c) for c in cases],
        "names": names,
        "lockers": lockers,
        "review": review,
        "actions": actions,
        "is_cancelling": status == "reserved" and not grants,
    }


def _item_page(
    request: Request,
    worker: Person,
    token: str,
    item_id: str,
    *,
    done: str | None = None,
    refusal: Refusal | None = None,
) -> HTMLResponse:
    svc = svc_of(request)
    try:
        view = item_view(svc, worker, item_id)
    except NotFound:
        return _items_page(
            request,
            worker,
            token,
            status="",
            q="",
            offset=0,
            problem="swc.error.not_found",
            status_code=404,
        )
    return sw_page(
        request,
        "sw_item.html",
        worker,
        token,
        view=view,
        done=done if done in ITEM_DONE else None,
        problem=refusal.key if refusal else None,
        photos=has_route(request, "/staff/photos/{digest}"),
        status_code=refusal.status if refusal else 200,
    )


@router.get("/staff/items/{item_id}", response_class=HTMLResponse)
def item_page(
    request: Request,
    item_id: IdPath,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    """One item: photo, status history, live code, reservation, holder, loan due, cases."""
    worker, token = worker_of(request)
    return _item_page(request, worker, token, item_id, done=done)


@router.post("/staff/items/{item_id}/{action}")
def item_action(
    request: Request,
    item_id: IdPath,
    action: Annotated[str, Path(max_length=16, pattern=r"^[a-z_]+$")],
    reason: Annotated[str, Form(max_length=200)] = "",
    decision: Annotated[str, Form(max_length=32)] = "",
    csrf: CsrfField = "",
) -> Response:
    """Withdraw, check a return, review or cancel a reservation, with a reason."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    svc = svc_of(request)
    why = reason.strip()
    try:
        view = item_view(svc, worker, item_id)
        if action not in ITEM_DONE:
            raise NotFound("no such action", code="not_offered")
        if not view["actions"][action]:
            raise Conflict("not possible for this item now", code="invalid_transition")
        if not why:
            raise Invalid("a reason is required", code="note", field="reason")
        if action == "withdraw":
            svc.items.withdraw(worker, item_id, why)
        elif action == "check":
            if decision not in ("ok", "damaged"):
                raise Invalid("in good order or damaged", code="decision", field="decision")
            svc.items.check(worker, item_id, decision == "ok", why)
        elif action == "review":
            if decision not in view["review"]:
                raise Invalid("choose what the item becomes", code="decision", field="decision")
            svc.items.review(worker, item_id, decision, why)
        else:
            svc.items.cancel(worker, item_id, why)
    except (CloudError, LedgerError) as exc:
        return _item_page(request, worker, token, item_id, refusal=refusal_of(exc))
    return redirect(f"/staff/items/{item_id}?done={action}")


__all__ = ["KIND_ACTIONS", "case_view", "item_view", "router"]
