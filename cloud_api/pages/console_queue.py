"""The approval queue: proposals waiting for a social worker, and the decision on each.

``/staff`` lists the items inside a locker waiting for a decision, oldest first
(:meth:`ValuationService.queue`); ``/staff/queue/{item}`` shows one large enough to judge — the
photos, the weight, what the resident said, the rule breakdown with each factor's reason in the
worker's language (:mod:`valuation_terminal.core.explain`), the terminal's confidence and the
learned correction — and decides it in one or two clicks through
:meth:`ValuationService.decide`, the same call as the API: **approve** (one button), **adjust**
(points and a reason) or **reject** (a common reason in one click, or one's own words).

After a decision the worker is taken to the next item waiting. Above the ledger's threshold an
approval waits for a *different* social worker (the second-approver rule of the ledger): the page
says so, and shows that worker a button to approve the same points. A decision that can no
longer be taken (another worker was quicker) is a 409 page that says what happened.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from cloud_api.accounts.service import Person
from cloud_api.core.ledger import LedgerError
from cloud_api.errors import CloudError, Conflict, Forbidden, Invalid, NotFound
from cloud_api.pages.console import (
    CsrfField,
    IdPath,
    ReasonField,
    say,
    svc_of,
    sw_page,
    worker_of,
)
from cloud_api.pages.web import check_csrf, data, language_of, redirect
from cloud_api.valuations.service import Decision
from valuation_terminal.core.explain import ExplainError, Reason, explain
from valuation_terminal.core.rules import Inputs, Policy, PolicyError, Proposal, load_policy

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_POINTS = 10_000
REJECT_REASONS = ("damaged", "dirty", "unsafe", "not_as_described", "not_accepted")
"""The common reasons to refuse an item, one click each (``sw.reject.<name>`` in the catalog)."""
CONDITION_KEYS = {
    "全新": "terminal.condition.new",
    "9成新以上": "terminal.condition.like_new",
    "9成新": "terminal.condition.very_good",
    "8成新": "terminal.condition.good",
    "below": "terminal.condition.below",
}
"""Each condition grade's catalog key (the kiosk's words for them)."""
DONE = ("approve", "adjust", "reject", "second")
"""What ``?done=`` may report after a decision (the item is named by ``?item=``)."""


def _category_names(svc: Any, language: str) -> dict[str, str]:
    """Category key → its name in ``language``, from the current policy."""
    with svc.store.snapshot() as db:
        _, text = svc.valuations.current_policy(db)
    categories = load_policy(text).categories
    zh = language == "zh-CN"
    return {key: c.name_zh if zh else c.name_en for key, c in categories.items()}


def _parked(svc: Any, item_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Approvals waiting for a second social worker, by item: points and who asked."""
    if not item_ids:
        return {}
    keys = [f"credit:{item_id}" for item_id in item_ids]
    marks = ",".join("?" for _ in keys)
    rows = svc.store.read(
        "SELECT r.key, r.body, r.requested_by, p.display_name FROM ledger_requests r"  # noqa: S608
        f" JOIN people p ON p.id = r.requested_by WHERE r.key IN ({marks})"
        " AND r.status = 'awaiting_second_approver'",
        tuple(keys),
    )
    return {
        r["key"].removeprefix("credit:"): {
            "points": int(json.loads(r["body"])["amount"]),
            "requested_by": r["requested_by"],
            "requested_by_name": r["display_name"],
        }
        for r in rows
    }


@router.get("/staff", response_class=HTMLResponse)
def queue_page(
    request: Request,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    done: Annotated[str | None, Query(max_length=16)] = None,
    item: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> Response:
    """The social worker's home: what waits for a decision, oldest first."""
    worker, token = worker_of(request)
    svc = svc_of(request)
    found = svc.valuations.queue(worker, offset, PAGE_SIZE)
    return sw_page(
        request,
        "sw_queue.html",
        worker,
        token,
        queue=found,
        parked=_parked(svc, [e["item_id"] for e in found["items"]]),
        categories=_category_names(svc, _language(request, worker)),
        next_offset=offset + PAGE_SIZE if offset + PAGE_SIZE < found["total"] else None,
        done=_done(request, worker, done, item),
    )


def _language(request: Request, worker: Person) -> str:
    return language_of(request, worker)


def _done(
    request: Request, worker: Person, done: str | None, item_id: str | None
) -> dict[str, Any] | None:
    """What the last decision did, read back from the store (never from the URL's words)."""
    if done not in DONE or item_id is None:
        return None
    svc = svc_of(request)
    try:
        entry = svc.valuations.valuation(worker, item_id)
    except NotFound:
        try:
            item = svc.items.get(worker, item_id)
        except CloudError:
            return None
        entry = {"item_id": item_id, "title": item["title"], "decision": None}
    if done == "second":
        points = (_parked(svc, [item_id]).get(item_id) or {}).get("points", 0)
    else:
        points = (entry.get("decision") or {}).get("points", 0)
    return {
        "kind": done,
        "title": entry["title"],
        "donor": entry.get("donor", ""),
        "points": points,
        "limit": svc.points.policy.second_approver_over,
    }


# --- one item ---------------------------------------------------------------------------------


def _breakdown(db: sqlite3.Connection, svc: Any, valuation: dict[str, Any]) -> dict[str, Any]:
    """The proposal's factors with their reasons, the inputs, and the correction it used."""
    inputs = Inputs.from_json(valuation["inputs"])
    proposal = Proposal.from_json(valuation["proposal"])
    policy: Policy | None = None
    reasons: tuple[Reason, ...] = ()
    text = svc.valuations.policy_text(db, proposal.policy_version)
    try:
        if text is not None:
            policy = load_policy(text)
            reasons = explain(proposal, inputs, policy)
    except (PolicyError, ExplainError) as exc:
        log.error("the proposal cannot be explained: %s", exc)
        reasons = ()
    factors = [
        {
            "name": f.name,
            "shown": _shown_factor(f.name, f.value, reasons[n] if reasons else None),
            "reason": reasons[n] if reasons and not proposal.abstained else None,
        }
        for n, f in enumerate(proposal.factors)
    ]
    return {
        "inputs": inputs,
        "proposal": proposal,
        "factors": factors,
        "abstention": reasons[0] if proposal.abstained and reasons else None,
        "condition_key": CONDITION_KEYS.get(inputs.condition),
        "age_years": inputs.age_months // 12,
        "age_months": inputs.age_months % 12,
        "correction": inputs.correction,
    }


def _shown_factor(name: str, value: float, reason: Reason | None) -> str:
    """A factor's value written for people (× for multipliers, kg for a bulk reference)."""
    if name in ("depreciation", "condition", "demand", "correction", "bulk_rate"):
        return f"× {round(value, 3):g}"
    if reason is not None and reason.key == "valuation.reason.reference.bulk":
        return f"{round(value, 3):g} kg"
    return f"{round(value, 2):g}"


def reason_values(reason: Reason) -> dict[str, Any]:
    """A reason's values, each marked as a value from the store."""
    return {name: data(text) for name, text in reason.values.items()}


def _item_page(
    request: Request,
    worker: Person,
    token: str,
    item_id: str,
    *,
    problem: str | None = None,
    problem_values: dict[str, Any] | None = None,
    entered: dict[str, str] | None = None,
    done: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    svc = svc_of(request)
    language = _language(request, worker)
    try:
        entry: dict[str, Any] = svc.valuations.valuation(worker, item_id)
    except NotFound:
        entry = _without_valuation(svc, worker, item_id)
    breakdown = None
    corrections: dict[str, Any] = {}
    if entry["valuation"] is not None:
        with svc.store.snapshot() as db:
            breakdown = _breakdown(db, svc, entry["valuation"])
            corrections = svc.valuations.corrections(db, worker.community_id)
    decider = None
    if entry.get("decision"):
        row = svc.store.read_one(
            "SELECT display_name FROM people WHERE id = ?", (entry["decision"]["decided_by"],)
        )
        decider = row["display_name"] if row else entry["decision"]["decided_by"]
    return sw_page(
        request,
        "sw_valuation.html",
        worker,
        token,
        entry=entry,
        breakdown=breakdown,
        current_correction=corrections.get(entry["category"]),
        category_name=_category_names(svc, language).get(entry["category"], entry["category"]),
        parked=_parked(svc, [item_id]).get(item_id),
        decider=decider,
        reject_reasons=REJECT_REASONS,
        reason_values=reason_values,
        problem=problem,
        problem_values=problem_values or {},
        entered=entered or {},
        done=done,
        status_code=status_code,
    )


def _without_valuation(svc: Any, worker: Person, item_id: str) -> dict[str, Any]:
    """An item with no terminal proposal (recorded by hand): what the queue shows of it."""
    item = svc.items.get(worker, item_id)  # NotFound for another community's
    donor = svc.store.read_one(
        "SELECT display_name FROM people WHERE id = ?", (item.get("donor_id"),)
    )
    return {
        "item_id": item["id"],
        "title": item["title"],
        "category": item["category"],
        "size": item["size"],
        "kind": item["kind"],
        "donor_id": item.get("donor_id"),
        "donor": donor["display_name"] if donor else "",
        "device_id": item["device_id"],
        "compartment": item["compartment"],
        "since_ms": item["updated_ms"],
        "status": item["status"],
        "valuation": None,
        "decision": None,
    }


@router.get("/staff/queue/{item_id}", response_class=HTMLResponse)
def item_page(
    request: Request,
    item_id: IdPath,
    done: Annotated[str | None, Query(max_length=16)] = None,
    item: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> Response:
    """One proposal, large enough to judge, with the decision's buttons."""
    worker, token = worker_of(request)
    try:
        return _item_page(request, worker, token, item_id, done=_done(request, worker, done, item))
    except NotFound:
        return _queue_not_found(request, worker, token)


def _queue_not_found(request: Request, worker: Person, token: str) -> HTMLResponse:
    svc = svc_of(request)
    found = svc.valuations.queue(worker, 0, PAGE_SIZE)
    return sw_page(
        request,
        "sw_queue.html",
        worker,
        token,
        queue=found,
        parked=_parked(svc, [e["item_id"] for e in found["items"]]),
        categories=_category_names(svc, _language(request, worker)),
        next_offset=None,
        done=None,
        problem="sw.error.not_found",
        status_code=404,
    )


def _next_item(request: Request, worker: Person, decided: str) -> str | None:
    """The next item waiting that this worker can decide (not the one just decided, nor one
    waiting for someone else's second approval of this worker's request)."""
    svc = svc_of(request)
    found = svc.valuations.queue(worker, 0, PAGE_SIZE)
    ids = [str(e["item_id"]) for e in found["items"]]
    parked = _parked(svc, ids)
    for item_id in ids:
        mine = parked.get(item_id, {}).get("requested_by") == worker.id
        if item_id != decided and not mine:
            return item_id
    return None


@router.post("/staff/queue/{item_id}/decision")
def decide(
    request: Request,
    item_id: IdPath,
    decision: Annotated[str, Form(max_length=16)] = "",
    points: Annotated[str, Form(max_length=16)] = "",
    reason: ReasonField = "",
    preset: Annotated[str, Form(max_length=32)] = "",
    csrf: CsrfField = "",
) -> Response:
    """Approve, adjust or reject (the API's :meth:`ValuationService.decide`); then the next
    item. A refusal is the item's page again with its status and what to do."""
    worker, token = worker_of(request)
    check_csrf(request, token, csrf)
    svc = svc_of(request)
    entered = {"points": points, "reason": reason}

    def refused(key: str, status: int, **values: Any) -> HTMLResponse:
        try:
            return _item_page(
                request,
                worker,
                token,
                item_id,
                problem=key,
                problem_values=values,
                entered=entered,
                status_code=status,
            )
        except NotFound:
            return _queue_not_found(request, worker, token)

    try:
        chosen = _decision(request, worker, decision, points, reason, preset)
    except Invalid as exc:
        return refused(f"sw.decide.error.{exc.field or 'decision'}", 422)
    try:
        result = svc.valuations.decide(worker, item_id, chosen)
    except NotFound:
        return _queue_not_found(request, worker, token)
    except Forbidden:
        return refused("sw.decide.error.own_item", 403)
    except Invalid as exc:
        key = "points_needed" if exc.code == "points_needed" else "points"
        return refused(f"sw.decide.error.{key}", 422)
    except Conflict as exc:
        if exc.code in ("invalid_transition", "conflict"):
            return refused("sw.decide.error.decided", 409)
        return refused("sw.decide.error.ledger", 409)
    except (LedgerError, CloudError):
        return refused("sw.decide.error.ledger", 409)
    parked = result.get("status") == "awaiting_second_approver"
    done = "second" if parked else chosen.decision
    following = _next_item(request, worker, item_id)
    where = f"/staff/queue/{following}" if following else "/staff"
    return redirect(f"{where}?done={done}&item={item_id}")


def _decision(
    request: Request, worker: Person, decision: str, points: str, reason: str, preset: str
) -> Decision:
    """The form's decision, checked (:class:`Invalid` with the field at fault)."""
    why = reason.strip()
    if decision == "approve":
        return Decision("approve", None, why or say(request, worker, "sw.decide.approved_reason"))
    if decision == "adjust":
        try:
            value = int(points.strip())
        except ValueError:
            raise Invalid("points", field="points") from None
        if not 0 <= value <= MAX_POINTS:
            raise Invalid("points", field="points")
        if not why:
            raise Invalid("reason", field="reason")
        return Decision("adjust", value, why)
    if decision == "reject":
        if preset in REJECT_REASONS:
            said = say(request, worker, f"sw.reject.{preset}")
            why = f"{said}: {why}"[:200] if why else said
        if not why:
            raise Invalid("reason", field="reject_reason")
        return Decision("reject", None, why)
    raise Invalid("decision", field="decision")
