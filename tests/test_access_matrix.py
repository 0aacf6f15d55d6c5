"""Role × route: every API route, called by every kind of caller, answers what its declared access
says, and every refusal changes nothing.

The matrix is generated from :func:`cloud_api.access.declared_routes`, so a route is covered the
day it lands. Callers: anonymous; Auntie Wang (``per_1``, who owns the seeded reservation, its
pickup grant, a command and ledger entries); Uncle Li (``per_2``, same community, owns none of
those); Zhang (social worker); Liu (maintainer); and a resident, a social worker and a maintainer
of another community. What each must get, from the route's :class:`~cloud_api.access.Access`:

========================================  ==============================================================
anonymous, route not public               401 ``not_authenticated``
role not admitted                         403 ``forbidden``
other community, the request names one    404 ``not_found`` (never 403: existence is not revealed)
  of our objects (path id or body)
other community, otherwise                success or a business refusal, and none of our ids in the body
``per_2`` on ``per_1``'s object           404 ``not_found`` (grant, command, person, ledger entry, item
                                          she gave or holds)
``per_2`` otherwise                       success or a business refusal, none of ``per_1``'s private ids
admitted callers                          2xx, or a business refusal (409, or 422 other than
                                          ``invalid_request``): never 401/403/404, never 5xx
========================================  ==============================================================

Every call answered 401, 403 or 404 must leave the store as it was (``Store.dump()`` before and
after, see :data:`IGNORED_TABLES` for the tables left out and why). Each call starts from
the same seeded state: when a call changed the store, the cloud is stopped, its database file
restored from the snapshot taken after setup, and started again (about 0.3 s), so a social worker
disabling Auntie Wang cannot turn a later route's expectations into vacuous 404s.

``LINLI_MATRIX_TABLE=path`` writes the whole table (route, caller, expected, got) to ``path``.

To cover a new route: a path parameter needs a value in :data:`PATH_VALUES` (the test fails and
names it otherwise), or, where the route needs an object in a given state (an item proposed by
per_1, one on loan to her), in :data:`ROUTE_PATH_VALUES`; a body the generator cannot make
meaningful (a PIN that must be right, a phone that must be valid) needs an entry in
:data:`BODY_OVERRIDES` or :data:`QUERY_OVERRIDES`. The generated request being refused as
``invalid_request`` fails the route and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from conftest import CloudUnderTest, require_system
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from test_valuation_api import jpeg, proposal_body

from cloud_api import ledger
from cloud_api.access import Access, declared_routes
from cloud_api.accounts.service import hash_secret, seal_totp_secret
from cloud_api.app import create_app
from cloud_api.contributions.service import default_policy
from cloud_api.core.contributions import value_time
from cloud_api.devices.enrol import enrol_device
from cloud_api.keys import CloudKeys
from cloud_api.seed import COMMUNITY, LOGINS, DemoLogin
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from cloud_api.transparency import local_day, sign_day
from station.broker import MosquittoBroker, mosquitto_binary
from station.cloud_server import CloudServer

RESIDENT_1, RESIDENT_2, SOCIAL_WORKER, MAINTAINER, SECOND_SOCIAL_WORKER = LOGINS
OTHER = "river-side"
OTHER_LOGINS = {
    "per_river_res": DemoLogin("resident", "River resident", "13900000009", "864213"),
    "per_river_sw": DemoLogin(
        "social_worker",
        "River social worker",
        "river-sw",
        "river-social-worker",
        totp_secret="JBSWY3DPEHPK3PXS",
    ),
    "per_river_m": DemoLogin(
        "maintainer",
        "River maintainer",
        "river-m",
        "river-maintainer",
        totp_secret="JBSWY3DPEHPK3PXT",
    ),
}
DAY_MS = 24 * 60 * 60 * 1000


def api_routes(app: FastAPI) -> list[tuple[str, str, Access | str]]:
    """``declared_routes(app)``; if it refuses the app (a route declares no access, or several),
    every route on its own, so that route's test fails with the reason and the others still run.
    """
    try:
        return list(declared_routes(app))
    except ValueError:
        pass
    found: list[tuple[str, str, Access | str]] = []
    for context in iter_route_contexts(app.routes):
        route = context.route
        try:
            found += declared_routes(SimpleNamespace(routes=[route]))  # type: ignore[arg-type]
        except ValueError as exc:
            path = getattr(route, "path", "?")
            found += [(m, path, str(exc)) for m in sorted(getattr(route, "methods", ()))]
    return found


# The app's routes, read without starting it (nothing is opened before the lifespan runs).
APP = create_app(CloudSettings(data_dir=Path("unused-by-the-matrix")))
OPENAPI: dict[str, Any] = APP.openapi()
ROUTES = api_routes(APP)
API_OPERATIONS = {
    (method.upper(), path)
    for path, operations in OPENAPI["paths"].items()
    if path.startswith("/api/")
    for method in operations
}


# --- callers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who calls: a demo login of our community, of the other community, or nobody."""

    name: str
    login: DemoLogin | None
    person_id: str | None
    community: str | None

    @property
    def role(self) -> str | None:
        return self.login.role if self.login else None


ANONYMOUS = Caller("anonymous", None, None, None)
OWNER = Caller("per_1 (owner)", RESIDENT_1, "per_1", COMMUNITY)
NEIGHBOUR = Caller("per_2", RESIDENT_2, "per_2", COMMUNITY)
CALLERS = (
    ANONYMOUS,
    OWNER,
    NEIGHBOUR,
    Caller("zhang (sw)", SOCIAL_WORKER, "per_3", COMMUNITY),
    Caller("liu (maint.)", MAINTAINER, "per_4", COMMUNITY),
    *(
        Caller(f"other {login.role.replace('_', ' ')}", login, person_id, OTHER)
        for person_id, login in OTHER_LOGINS.items()
    ),
)


# --- what each caller must get -------------------------------------------------------------------

OK = "ok"
"""2xx, or a business refusal: 409, or 422 whose code is not ``invalid_request``."""
OK_NONE_OF_OURS = "ok, none of ours"
OK_NONE_OF_PER_1 = "ok, none of per_1's"


def expected(caller: Caller, access: Access, *, names_ours: bool, names_per_1s: bool) -> str:
    """What ``caller`` must get from a route declared ``access``.

    Args:
        names_ours: the request names an object of our community (a path id, or an id of ours
            in the body).
        names_per_1s: the request names one of per_1's own objects (grant, command, ledger
            entry, per_1 as a person).
    """
    if access.scope == "public":
        return OK
    if caller.login is None:
        return "401"
    if caller.role not in access.roles:
        return "403"
    if caller.community != COMMUNITY:
        return "404" if names_ours else OK_NONE_OF_OURS
    if caller.role == "resident" and caller.person_id != OWNER.person_id:
        return "404" if names_per_1s else OK_NONE_OF_PER_1
    return OK


REFUSAL_CODES = {401: "not_authenticated", 403: "forbidden", 404: "not_found"}


# --- the store: what a refusal must not change -------------------------------------------------

IGNORED_TABLES = {
    "sign_in_attempts": "a refused sign-in is a failure the throttle must count",
    "job_runs": "the scheduler's bookkeeping, written on its own clock",
    "notifications": "the notification thread delivers queued messages on its own clock",
    "ledger_roots": "the root signer writes on its own clock (once after the community's midnight)",
}
"""Tables left out of the before/after comparison, and why. Nothing else is: the matrix runs no
locker, so no device traffic (``devices``, ``device_events``, ``event_heads``) moves on its own,
and a refused call must not touch them. ``sessions`` is compared by (token hash, person): a
refusal must not create, end or move a session, but may slide its expiry."""

State = dict[str, list[tuple[Any, ...]]]


def state_of(store: Store) -> State:
    """The store's rows, as the matrix compares them."""
    dump = store.dump()
    for table in IGNORED_TABLES:
        dump.pop(table, None)
    if "sessions" in dump:  # (token_hash, person_id, expires_ms, ...)
        dump["sessions"] = sorted(row[:2] for row in dump["sessions"])
    return dump


def describe_change(before: State, after: State) -> str:
    """Which tables changed, and how many rows came and went (no row content: hashes, ids)."""
    changes = []
    for table in sorted(set(before) | set(after)):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        if old != new:
            changes.append(f"{table} +{len(new - old)}/-{len(old - new)}")
    return ", ".join(changes) or "nothing"


# --- ids that must not cross communities, or reach a neighbour ---------------------------------


def _token(value: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(value)}(?![A-Za-z0-9_-])")


@dataclass(frozen=True)
class Ids:
    """Ids (and phones) of one kind, to be found as whole tokens in a response body."""

    labelled: dict[str, str]  # value -> label shown in a failure (never a phone itself)

    def found_in(self, text: str) -> list[str]:
        return sorted(
            {label for value, label in self.labelled.items() if _token(value).search(text)}
        )


def ours(store: Store) -> Ids:
    """Everything of our community another community must never see."""
    found: dict[str, str] = {COMMUNITY: "our community id"}

    def add(label: str, sql: str) -> None:
        for row in store.read(sql, (COMMUNITY,)):
            found[str(row[0])] = f"{label} {row[0]}"

    add("person", "SELECT id FROM people WHERE community_id = ?")
    add("device", "SELECT id FROM devices WHERE community_id = ?")
    add("item", "SELECT id FROM items WHERE community_id = ?")
    add(
        "grant",
        "SELECT g.id FROM grants g JOIN devices d ON d.id = g.device_id WHERE d.community_id = ?",
    )
    add(
        "command",
        "SELECT c.id FROM commands c JOIN devices d ON d.id = c.device_id WHERE d.community_id = ?",
    )
    add(
        "ledger entry",
        "SELECT t.id FROM transfers t JOIN accounts a ON a.id IN (t.debit_account,"
        " t.credit_account) JOIN people p ON p.id = a.person_id WHERE p.community_id = ?",
    )
    add(
        "ledger request",
        "SELECT r.id FROM ledger_requests r JOIN people p ON p.id = r.requested_by"
        " WHERE p.community_id = ?",
    )
    if _has_table(store, "cases"):
        add("case", "SELECT id FROM cases WHERE community_id = ?")
    if _has_table(store, "contributions"):
        add("contribution", "SELECT id FROM contributions WHERE community_id = ?")
    if _has_table(store, "alerts"):
        add("alert", "SELECT id FROM alerts WHERE community_id = ?")
        add("on-call shift", "SELECT id FROM on_call WHERE community_id = ?")
    for phone in _phones(store, COMMUNITY):
        found[phone] = "a phone number of ours"
    return Ids(found)


def private_to_per_1(store: Store) -> Ids:
    """per_1's own objects, which per_2 must never see."""
    found: dict[str, str] = {}
    for label, sql in (
        ("grant", "SELECT id FROM grants WHERE person_id = 'per_1'"),
        ("command", "SELECT id FROM commands WHERE requested_by = 'per_1'"),
        (
            "ledger entry",
            "SELECT id FROM transfers WHERE 'mem:per_1' IN (debit_account, credit_account)",
        ),
    ):
        for row in store.read(sql):
            found[str(row[0])] = f"per_1's {label} {row[0]}"
    if _has_table(store, "contributions"):  # what she gave or received
        for row in store.read(
            "SELECT id FROM contributions WHERE 'per_1' IN (provider_id, beneficiary_id)"
        ):
            found[str(row[0])] = f"per_1's contribution {row[0]}"
    for phone in _phones(store, COMMUNITY, person_id="per_1"):
        found[phone] = "per_1's phone number"
    # Who reserved or holds an item is for staff only (cloud_api.items.service.item_json).
    found["per_1"] = "per_1's person id"
    found[RESIDENT_1.name] = "per_1's name"
    return Ids(found)


def _has_table(store: Store, name: str) -> bool:
    return bool(
        store.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    )


def _phones(store: Store, community: str, person_id: str | None = None) -> list[str]:
    if not _has_table(store, "resident_profiles"):
        return []
    rows = store.read(
        "SELECT r.phone FROM resident_profiles r JOIN people p ON p.id = r.person_id"
        " WHERE p.community_id = ? AND (? IS NULL OR p.id = ?)",
        (community, person_id, person_id),
    )
    return [str(r[0]) for r in rows]


# --- path values, query values and bodies ------------------------------------------------------


@dataclass(frozen=True)
class PathValue:
    """A path parameter's value in the seeded state, and the resident who owns it (if any)."""

    value: str
    owner: str | None = None


def _one(store: Store, sql: str) -> str | None:
    row = store.read_one(sql)
    return None if row is None else str(row[0])


def _owned_by_per_1(sql: str) -> Callable[[Store], PathValue | None]:
    def find(store: Store) -> PathValue | None:
        value = _one(store, sql)
        return None if value is None else PathValue(value, "per_1")

    return find


def _community_object(sql: str) -> Callable[[Store], PathValue | None]:
    def find(store: Store) -> PathValue | None:
        value = _one(store, sql)
        return None if value is None else PathValue(value)

    return find


PATH_VALUES: dict[str, Callable[[Store], PathValue | None]] = {
    "item_id": _community_object("SELECT id FROM items WHERE id = 'itm_kettle'"),
    "device_id": _community_object("SELECT id FROM devices WHERE id = 'locker-a'"),
    "compartment": _community_object(
        "SELECT name FROM compartments WHERE device_id = 'locker-a' AND name = 'A1'"
    ),
    "person_id": _owned_by_per_1("SELECT id FROM people WHERE id = 'per_1'"),
    "grant_id": _owned_by_per_1(
        "SELECT id FROM grants WHERE person_id = 'per_1' AND purpose = 'pickup'"
        " AND status = 'active' ORDER BY created_ms LIMIT 1"
    ),
    "command_id": _owned_by_per_1(
        "SELECT id FROM commands WHERE requested_by = 'per_1' ORDER BY issued_ms LIMIT 1"
    ),
    # per_1's reservation hold: a pending ledger entry staff may post or void, covered by the
    # root the setup signs (so per_1 gets its inclusion proof).
    "transfer_id": _owned_by_per_1(
        "SELECT id FROM transfers WHERE debit_account = 'mem:per_1' AND phase = 'pending'"
        " ORDER BY rowid LIMIT 1"
    ),
    # The movement chen parked for a second approver (Zhang).
    "request_id": _community_object(
        "SELECT id FROM ledger_requests WHERE status = 'awaiting_second_approver' LIMIT 1"
    ),
    # per_1's photo and proposal at the valuation terminal (add_terminal_proposal).
    "digest": _community_object("SELECT hash FROM uploads ORDER BY uploaded_ms LIMIT 1"),
    "proposal_id": _owned_by_per_1("SELECT proposal_key FROM valuations LIMIT 1"),
    # The hours per_1 gave to the community, waiting for its confirmation
    # (add_matrix_contributions).
    "contribution_id": _owned_by_per_1(
        "SELECT id FROM contributions WHERE id = 'ctb_mx_wang' AND status = 'proposed'"
    ),
    # The case per_1's problem report opened.
    "case_id": _community_object(
        f"SELECT id FROM cases WHERE community_id = '{COMMUNITY}' ORDER BY created_ms LIMIT 1"  # noqa: S608
    ),
    # The alert and the on-call shift add_matrix_alerts writes.
    "alert_id": _community_object("SELECT id FROM alerts WHERE id = 'alr_mx_ajar'"),
    "shift_id": _community_object("SELECT id FROM on_call WHERE id = 'onc_mx_liu'"),
}
"""Path parameter name → its value in the seeded state. A route with a parameter not named here
(or in :data:`ROUTE_PATH_VALUES`) fails the matrix with a message naming it."""


def _item(item_id: str, owner: str | None = None) -> Callable[[Store], PathValue | None]:
    return (_owned_by_per_1 if owner else _community_object)(
        f"SELECT id FROM items WHERE id = '{item_id}'"  # noqa: S608
    )


ROUTE_PATH_VALUES: dict[tuple[str, str], dict[str, Callable[[Store], PathValue | None]]] = {
    # per_1's own items: the donor's proposal, her reservation, her loan, her pickup.
    ("POST", "/api/v1/items/{item_id}/dropoff"): {
        "item_id": _owned_by_per_1(
            "SELECT id FROM items WHERE donor_id = 'per_1' AND status = 'proposed'"
        )
    },
    ("POST", "/api/v1/items/{item_id}/withdraw"): {
        "item_id": _owned_by_per_1(
            "SELECT id FROM items WHERE donor_id = 'per_1' AND status = 'proposed'"
        )
    },
    ("POST", "/api/v1/items/{item_id}/reservation/cancel"): {
        "item_id": _item("itm_kettle", "per_1")
    },
    ("POST", "/api/v1/items/{item_id}/return"): {"item_id": _item("itm_mx_loan", "per_1")},
    ("POST", "/api/v1/items/{item_id}/problem"): {"item_id": _item("itm_mx_gone", "per_1")},
    # Items of the community in the state each decision applies to.
    ("POST", "/api/v1/items/{item_id}/reservation"): {"item_id": _item("itm_books")},
    ("POST", "/api/v1/items/{item_id}/approve"): {"item_id": _item("itm_mx_pending")},
    ("POST", "/api/v1/valuations/{item_id}/decision"): {"item_id": _item("itm_mx_pending")},
    ("GET", "/api/v1/valuations/{item_id}"): {
        "item_id": _community_object("SELECT item_id FROM valuations LIMIT 1")
    },
    ("POST", "/api/v1/items/{item_id}/reject"): {"item_id": _item("itm_mx_pending")},
    ("POST", "/api/v1/items/{item_id}/check"): {"item_id": _item("itm_mx_returned")},
    ("POST", "/api/v1/items/{item_id}/review"): {"item_id": _item("itm_mx_review")},
    # per_2's hours, confirmed for the community by chen: Zhang may decide them.
    **{
        ("POST", f"/api/v1/contributions/{{contribution_id}}/{decision}"): {
            "contribution_id": _community_object(
                "SELECT id FROM contributions WHERE id = 'ctb_mx_li' AND status = 'confirmed'"
            )
        }
        for decision in ("approve", "reject")
    },
}
"""Where a route needs another object than :data:`PATH_VALUES` gives (an item in a given state,
owned by per_1 or not)."""

MATRIX_ITEMS = [
    # id, kind, status, reserved_by, device, compartment, size
    ("itm_mx_loan", "lend", "on_loan", "per_1", None, None, "S"),
    ("itm_mx_picked", "give", "picked_up", "per_1", None, None, "M"),  # problem reported
    ("itm_mx_gone", "give", "picked_up", "per_1", None, None, "M"),
    ("itm_mx_pending", "give", "pending_approval", None, "locker-b", "A1", "S"),
    ("itm_mx_returned", "lend", "returned_pending_check", "per_1", "locker-b", "A2", "M"),
    ("itm_mx_review", "give", "under_review", None, "locker-b", "A3", "M"),
]
"""Items of Uncle Li's (per_2) in the states only a locker's events lead to, written as rows."""


def seeded_path_values(
    store: Store, finders: dict[str, Callable[[Store], PathValue | None]] | None = None
) -> dict[str, PathValue]:
    """The value of every path parameter the seeded state has an object for."""
    values = {}
    for name, find in (finders or PATH_VALUES).items():
        try:
            found = find(store)
        except sqlite3.OperationalError:  # a table this schema version does not have
            found = None
        if found is not None:
            values[name] = found
    return values


@dataclass
class Context:
    """What overrides may use: the seeded state and the time."""

    store: Store
    now_ms: int
    published_day: str


BodyOverride = dict[str, Any] | Callable[[Context, Caller], Any]

BODY_OVERRIDES: dict[tuple[str, str], BodyOverride] = {
    # A sign-in that succeeds (a resident: a staff authenticator code is accepted only once).
    ("POST", "/api/v1/session"): lambda ctx, caller: RESIDENT_2.body(ctx.now_ms),
    # Refused to every person (a terminal's route) before the body matters; still well-formed.
    ("POST", "/api/v1/terminal/proposals"): lambda ctx, caller: {
        "proposal_id": "prp_" + "m" * 24,
        "title": "Matrix",
        "category": "toys",
        "size": "S",
        "inputs": {},
        "proposal": {},
        "photos": [],
        "weight_mg": 1,
    },
    ("POST", "/api/v1/ledger/movements"): {
        "key": "matrix-movement",
        "kind": "valuation_credit",
        "amount": 5,
        "member": "per_1",
    },
    ("POST", "/api/v1/ledger/reversals"): {
        "key": "matrix-reversal",
        "original_key": "seed-credit:per_1",
        "reason": "matrix",
        "amount": 5,
    },
    ("POST", "/api/v1/ledger/limits"): {
        "key": "matrix-limit",
        "member": "per_1",
        "limit": -10,
        "reason": "matrix",
    },
    ("POST", "/api/v1/me/pin"): lambda ctx, caller: {
        "old_pin": caller.login.secret if caller.login else "802413",
        "new_pin": "802413",
    },
    ("POST", "/api/v1/residents"): {
        "display_name": "Matrix resident",
        "phone": "13900000077",
        "pin": "802413",
        "reason": "matrix",
    },
    ("POST", "/api/v1/residents/{person_id}/pin"): {"pin": "802413", "reason": "matrix"},
    # A worker acts for a resident, whom they name.
    ("POST", "/api/v1/items"): lambda ctx, caller: (
        {"title": "Matrix chair", "category": "furniture"}
        | ({"on_behalf_of": "per_1"} if caller.role == "social_worker" else {})
    ),
    ("POST", "/api/v1/items/{item_id}/reservation"): lambda ctx, caller: (
        {"for_person": "per_1"} if caller.role == "social_worker" else {}
    ),
    ("POST", "/api/v1/items/{item_id}/check"): {"ok": True},
    # Hours given to the community; a worker records them for a resident, whom they name.
    ("POST", "/api/v1/contributions"): lambda ctx, caller: (
        {
            "kind": "time",
            "description": "Matrix station duty",
            "hours": 1,
            "intensity": "standard",
            "slot": "daytime",
        }
        | ({"on_behalf_of": "per_1"} if caller.role == "social_worker" else {})
    ),
    ("POST", "/api/v1/residents/search"): {"q": "0001"},
    ("POST", "/api/v1/residents/{person_id}/phone"): {"phone": "13900000078", "reason": "matrix"},
    # Chen (a social worker of ours) on call as the backup; a staff member's own phone.
    ("POST", "/api/v1/on-call"): {"person_id": "per_5", "rank": 1},
    ("PUT", "/api/v1/staff/me/contact"): {"phone": "13900000088"},
}
"""(method, path) → fields merged over the generated minimal body (or a function of the context
and the caller giving the whole body)."""

QUERY_OVERRIDES: dict[tuple[str, str], Callable[[Context], dict[str, Any]]] = {
    ("GET", "/api/v1/ledger/consistency"): lambda ctx: {
        "from_day": ctx.published_day,
        "to_day": ctx.published_day,
    },
    # List filters naming our objects: another community must still get none of them.
    ("GET", "/api/v1/grants"): lambda ctx: {"item_id": "itm_kettle"},
    ("GET", "/api/v1/residents"): lambda ctx: {"q": "0001"},  # per_1's phone ends 0001
    ("GET", "/api/v1/items"): lambda ctx: {"q": "books"},
}
"""(method, path) → query parameters (required ones are generated otherwise)."""


class NoMinimalValue(Exception):
    """The generator cannot make a value for this schema: the route needs an override."""


_STRING_CANDIDATES = ("matrix", "matrix-1", "m", "1", "A1", "2024-01-01", "13900000099", "x")
_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "email": "matrix@example.org",
    "uri": "https://example.org/matrix",
}


def minimal(schema: dict[str, Any], where: str) -> Any:
    """A minimal value valid against an OpenAPI (JSON Schema) ``schema``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return minimal(OPENAPI["components"]["schemas"][name], f"{where} ({name})")
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in schema:
            options = [s for s in schema[combinator] if s.get("type") != "null"]
            for option in options:
                try:
                    return minimal(option, where)
                except NoMinimalValue:
                    continue
            raise NoMinimalValue(f"{where}: no option of {combinator} can be generated")
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {
            name: minimal(props[name], f"{where}.{name}") for name in schema.get("required", [])
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        if count > 1 and schema.get("uniqueItems"):
            raise NoMinimalValue(f"{where}: {count} unique items")
        return [minimal(schema.get("items", {}), f"{where}[]") for _ in range(count)]
    if kind == "string":
        return _minimal_string(schema, where)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**31)))
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**31))
        if "exclusiveMinimum" in schema:
            low += 1
        if "exclusiveMaximum" in schema:
            high -= 1
        return min(max(1, low), high)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    raise NoMinimalValue(f"{where}: cannot generate a value of schema {schema}")


def _minimal_string(schema: dict[str, Any], where: str) -> str:
    low, high = int(schema.get("minLength", 0)), int(schema.get("maxLength", 10_000))
    pattern = schema.get("pattern")
    candidates = [_FORMATS[schema["format"]]] if schema.get("format") in _FORMATS else []
    candidates += list(_STRING_CANDIDATES)
    for candidate in candidates:
        value = (candidate + "x" * low)[: max(low, len(candidate))][:high]
        if len(value) >= low and (pattern is None or re.search(pattern, value)):
            return value
    raise NoMinimalValue(f"{where}: no candidate string matches {pattern!r} ({low}..{high} chars)")


# --- the running matrix --------------------------------------------------------------------------


@dataclass
class Row:
    """One call of the matrix."""

    route: str
    caller: str
    expected: str
    got: str
    problem: str = ""


@dataclass
class Matrix:
    """A seeded cloud with two communities, signed-in callers, and a snapshot to restore."""

    cloud: CloudUnderTest
    http: httpx.Client
    tokens: dict[str, str]
    snapshot: Path
    baseline: State
    context: Context
    ours: Ids
    per_1s: Ids
    path_values: dict[str, PathValue]
    route_path_values: dict[tuple[str, str], dict[str, PathValue]]
    restores: int = 0
    rows: list[Row] = field(default_factory=list)

    # -- state --------------------------------------------------------------------------------

    def restore(self) -> None:
        """Stop the cloud, put the snapshot back, start it again on the same port."""
        self.cloud.stop()
        database = self.cloud.data_dir / "cloud.sqlite3"
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.snapshot, database)
        self.cloud.server = CloudServer(self.cloud.server.settings).start()
        self.cloud.url = self.cloud.server.url
        wait_for_broker(self.http)
        self.restores += 1
        now = state_of(self.cloud.store)
        if now != self.baseline:
            raise AssertionError(
                "the restored cloud does not match the seeded snapshot:"
                f" {describe_change(self.baseline, now)} changed while it started"
            )

    # -- one route ----------------------------------------------------------------------------

    def run_route(self, method: str, path: str, access: Access) -> list[Row]:
        route = f"{method} {path}"
        operation = OPENAPI["paths"].get(path, {}).get(method.lower())
        if operation is None:
            pytest.fail(f"{route} is declared but absent from the OpenAPI schema")
        parameters = operation.get("parameters", [])
        path_names = [p["name"] for p in parameters if p["in"] == "path"]
        values = self.path_values | self.route_path_values.get((method, path), {})
        missing = [n for n in path_names if n not in values]
        if missing:
            pytest.fail(
                f"{route}: the access matrix has no value for the path parameter(s) {missing};"
                " add a builder to PATH_VALUES (or ROUTE_PATH_VALUES) in"
                " tests/test_access_matrix.py"
            )
        url = path.format(**{n: values[n].value for n in path_names})
        try:
            query = {
                p["name"]: minimal(p.get("schema", {}), f"{route} query {p['name']}")
                for p in parameters
                if p["in"] == "query" and p.get("required")
            }
        except NoMinimalValue as exc:
            pytest.fail(f"{exc}; add an entry to QUERY_OVERRIDES in tests/test_access_matrix.py")
        if (method, path) in QUERY_OVERRIDES:
            query |= QUERY_OVERRIDES[(method, path)](self.context)
        names_per_1s = any(values[n].owner == "per_1" for n in path_names)
        rows = []
        for caller in sorted(CALLERS, key=lambda c: _call_order(c, access)):
            body = self._body(method, path, operation, caller)
            names_ours = bool(path_names) or bool(self.ours.found_in(json.dumps(body)))
            expect = expected(caller, access, names_ours=names_ours, names_per_1s=names_per_1s)
            rows.append(self._call(route, caller, expect, method, url, query, body))
        self.rows += rows
        return rows

    def _body(self, method: str, path: str, operation: dict[str, Any], caller: Caller) -> Any:
        request_body = operation.get("requestBody")
        override = BODY_OVERRIDES.get((method, path))
        if callable(override):
            return override(self.context, caller)
        if request_body is None:
            return None
        content = request_body.get("content", {})
        if "application/json" not in content:
            pytest.fail(
                f"{method} {path} takes {sorted(content)}, not JSON: add a body to"
                " BODY_OVERRIDES in tests/test_access_matrix.py"
            )
        try:
            body = minimal(content["application/json"].get("schema", {}), f"{method} {path} body")
        except NoMinimalValue as exc:
            pytest.fail(f"{exc}; add a body to BODY_OVERRIDES in tests/test_access_matrix.py")
        if isinstance(override, dict) and isinstance(body, dict):
            body |= override
        return body

    def _call(
        self,
        route: str,
        caller: Caller,
        expect: str,
        method: str,
        url: str,
        query: dict[str, Any],
        body: Any,
    ) -> Row:
        before = state_of(self.cloud.store)
        if before != self.baseline:
            self.restore()
            before = self.baseline
        headers = {"Authorization": f"Bearer {self.tokens[caller.name]}"} if caller.login else {}
        response = self.http.request(
            method,
            url,
            params=query or None,
            headers=headers,
            **({"json": body} if body is not None else {}),
        )
        after = state_of(self.cloud.store)
        code = _code_of(response)
        row = Row(route, caller.name, expect, f"{response.status_code} {code}".strip())
        row.problem = self._judge(expect, response, code)
        if response.status_code in REFUSAL_CODES and after != before:
            row.problem += f" the refusal changed the store: {describe_change(before, after)};"
        return row

    def _judge(self, expect: str, response: httpx.Response, code: str) -> str:
        status = response.status_code
        if status >= 500:
            return f"a server error: {response.text[:200]!r};"
        if expect.isdigit():
            wanted = int(expect)
            if status != wanted:
                return f"expected {wanted}, got {status} {code};"
            if code != REFUSAL_CODES[wanted]:
                return f"a {wanted} with code {code!r}, not {REFUSAL_CODES[wanted]!r};"
            return ""
        if status == 422 and code == "invalid_request":
            field_name = _json(response).get("field")
            return (
                f"the matrix's request was refused as invalid ({field_name}): add an override"
                " to BODY_OVERRIDES or QUERY_OVERRIDES;"
            )
        if not (200 <= status < 300 or status in (409, 422)):
            return f"an admitted caller got {status} {code};"
        if 200 <= status < 300 and expect != OK:
            ids = self.ours if expect == OK_NONE_OF_OURS else self.per_1s
            leaked = ids.found_in(response.text)
            if leaked:
                return f"the answer holds {', '.join(leaked)};"
        return ""


def _call_order(caller: Caller, access: Access) -> tuple[int, int]:
    """Refused callers first (they change nothing, so no restore is needed between them)."""
    admitted = access.scope == "public" or (
        caller.login is not None and caller.role in access.roles
    )
    return (1 if admitted else 0, CALLERS.index(caller))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _code_of(response: httpx.Response) -> str:
    return str(_json(response).get("code", "")) if response.status_code >= 400 else ""


def table(rows: list[Row]) -> str:
    """The rows as a readable table, problems marked."""
    head = Row("route", "caller", "expected", "got")
    columns = ("route", "caller", "expected", "got")
    widths = [max(len(getattr(r, c)) for r in [head, *rows]) for c in columns]
    lines = []
    for r in [head, *rows]:
        line = "  ".join(getattr(r, c).ljust(w) for c, w in zip(columns, widths, strict=True))
        lines.append(line + (f"  <-- {r.problem.strip()}" if r.problem else ""))
    return "\n".join(lines)


# --- setup ---------------------------------------------------------------------------------------


def wait_for_broker(http: httpx.Client, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not http.get("/healthz").json()["broker_connected"]:
        if time.monotonic() > deadline:
            raise AssertionError("the cloud did not connect to the broker")
        time.sleep(0.02)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sign_in(http: httpx.Client, login: DemoLogin) -> str:
    response = http.post("/api/v1/session", json=login.body(now_ms()))
    assert response.status_code == 200, f"{login.login}: {response.status_code} {response.text}"
    token: str = response.json()["token"]
    return token


def add_other_community(store: Store, keys: CloudKeys) -> None:
    """A second community, as the seed makes ours: three people, a locker, an item."""
    now = now_ms()
    with store.write() as db:
        db.execute("INSERT INTO communities (id, name) VALUES (?, 'River Side')", (OTHER,))
        for person_id, login in OTHER_LOGINS.items():
            is_resident = login.role == "resident"
            db.execute(
                "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
                " totp_secret, created_ms) VALUES (?,?,?,?,?,?,?,?)",
                (
                    person_id,
                    OTHER,
                    login.role,
                    login.name,
                    person_id if is_resident else login.login,
                    hash_secret(login.secret),
                    seal_totp_secret(keys, person_id, login.totp_secret)
                    if login.totp_secret
                    else None,
                    now,
                ),
            )
            if is_resident:
                db.execute(
                    "INSERT INTO resident_profiles (person_id, phone) VALUES (?, ?)",
                    (person_id, login.login),
                )
                ledger.SqlLedger(db).open_account(
                    f"mem:{person_id}", "member", limit=0, person_id=person_id, name=login.name
                )
    enrol_device(
        store,
        keys,
        community_id=OTHER,
        device_id="locker-river",
        role="locker",
        name="River locker",
        compartments=[("A1", "M")],
    )
    with store.write() as db:
        db.execute(
            "INSERT INTO items (id, community_id, donor_id, title, category, points, status,"
            " device_id, compartment, updated_ms) VALUES ('itm_river', ?, 'per_river_res',"
            " 'River kettle', 'appliance', 10, 'listed', 'locker-river', 'A1', ?)",
            (OTHER, now),
        )


def add_matrix_items(store: Store) -> None:
    """The rows of :data:`MATRIX_ITEMS` (due dates and windows far ahead: nothing lapses)."""
    now = now_ms()
    with store.write() as db:
        for item_id, kind, status, holder, device, compartment, size in MATRIX_ITEMS:
            db.execute(
                "INSERT INTO items (id, community_id, donor_id, title, category, points, status,"
                " device_id, compartment, reserved_by, kind, size, loan_days, due_ms,"
                " dispute_until_ms, created_ms, updated_ms)"
                " VALUES (?, ?, 'per_2', ?, 'household', 5, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item_id,
                    COMMUNITY,
                    f"Matrix {status}",
                    status,
                    device,
                    compartment,
                    holder,
                    kind,
                    size,
                    14 if kind == "lend" else None,
                    now + 14 * DAY_MS if kind == "lend" else None,
                    now + 7 * DAY_MS if status == "picked_up" else None,
                    now,
                    now,
                ),
            )
            if device is not None:
                db.execute(
                    "UPDATE compartments SET occupancy = 'present' WHERE device_id = ? AND name = ?",
                    (device, compartment),
                )


def add_terminal_proposal(cloud: CloudUnderTest) -> None:
    """per_1 at the valuation terminal: her photo, her proposal and its valuation (through the
    terminal's own API, with its token and her ticket)."""
    headers = {"Authorization": f"Terminal {cloud.seed.terminal_id}:{cloud.seed.terminal_token}"}
    with httpx.Client(base_url=cloud.url, headers=headers, timeout=10) as terminal:
        ticket = terminal.post(
            "/api/v1/terminal/signin", json={"phone": OWNER.login.login, "pin": OWNER.login.secret}
        ).json()["ticket"]
        photo = jpeg(99)
        digest = hashlib.sha256(photo).hexdigest()
        terminal.put(
            f"/api/v1/terminal/photos/{digest}", content=photo, headers={"Linli-Ticket": ticket}
        ).raise_for_status()
        body = proposal_body(terminal, [digest])
        terminal.post(
            "/api/v1/terminal/proposals", json=body, headers={"Linli-Ticket": ticket}
        ).raise_for_status()


MATRIX_CONTRIBUTIONS = [
    # id, provider, status, beneficiary confirmed by
    ("ctb_mx_wang", "per_1", "proposed", None),
    ("ctb_mx_li", "per_2", "confirmed", "per_5"),
]
"""Hours given to the community: per_1's, waiting for a worker to confirm them; per_2's,
confirmed by chen (so Zhang, who vouched for nothing, may approve them)."""


def add_matrix_contributions(store: Store) -> None:
    """The rows of :data:`MATRIX_CONTRIBUTIONS`, valued by the published rule (2 h, 20 points)."""
    now = now_ms()
    valued = value_time(default_policy(), hours=2, intensity="standard", slot="daytime")
    with store.write() as db:
        for contribution_id, provider, status, confirmed_by in MATRIX_CONTRIBUTIONS:
            db.execute(
                "INSERT INTO contributions (id, community_id, kind, provider_id, description,"
                " hours, inputs, points, breakdown, status, provider_confirmed_ms,"
                " beneficiary_confirmed_ms, beneficiary_confirmed_by, created_by, created_ms,"
                " updated_ms) VALUES (?, ?, 'time', ?, 'Matrix hours', ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?)",
                (
                    contribution_id,
                    COMMUNITY,
                    provider,
                    valued.inputs.hours,
                    json.dumps(valued.inputs.to_json()),
                    valued.points,
                    json.dumps(valued.to_json()),
                    status,
                    now,
                    now if confirmed_by else None,
                    confirmed_by,
                    provider,
                    now,
                    now,
                ),
            )


def add_matrix_alerts(store: Store) -> None:
    """An open yellow alert of locker-a (door A1 left open; due in days, so no escalation job
    changes it during the run) and Liu on call at rank 0, written as rows (the alerts' own tests
    open them from device messages)."""
    now = now_ms()
    with store.write() as db:
        db.execute(
            "INSERT INTO alerts (id, community_id, tracking_code, rule, severity, cause_key,"
            " device_id, compartment, status, opened_ms, due_ms) VALUES ('alr_mx_ajar', ?,"
            " 'Y-0101-901', 'door_ajar', 'yellow', 'door_ajar:locker-a:A1', 'locker-a', 'A1',"
            " 'open', ?, ?)",
            (COMMUNITY, now, now + 3 * DAY_MS),
        )
        db.execute(
            "INSERT INTO on_call (id, community_id, person_id, rank, starts_ms, created_by,"
            " created_ms) VALUES ('onc_mx_liu', ?, 'per_4', 0, ?, 'per_4', ?)",
            (COMMUNITY, now, now),
        )


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    if mosquitto_binary() is None:
        require_system("mosquitto binary not installed (apt-get install mosquitto)")
    base = tmp_path_factory.mktemp("access-matrix")
    with MosquittoBroker(base / "mosquitto") as broker:
        cloud = CloudUnderTest(base / "cloud", broker.info)
        try:
            with httpx.Client(base_url=cloud.url, timeout=10) as http:
                running = _set_up(cloud, http, base)
                yield running
                if os.environ.get("LINLI_MATRIX_TABLE"):  # the whole table, for reading
                    Path(os.environ["LINLI_MATRIX_TABLE"]).write_text(table(running.rows) + "\n")
        finally:
            cloud.stop()


def _set_up(cloud: CloudUnderTest, http: httpx.Client, base: Path) -> Matrix:
    store = cloud.store
    add_other_community(store, cloud.keys)
    wait_for_broker(http)
    tokens = {c.name: sign_in(http, c.login) for c in CALLERS if c.login is not None}
    chen = sign_in(http, SECOND_SOCIAL_WORKER)
    # per_1 asks the locker to open: a command of theirs.
    grant = PATH_VALUES["grant_id"](store)
    assert grant is not None, "the seed has no pickup grant for per_1"
    opened = http.post(
        f"/api/v1/me/pickups/{grant.value}/open",
        headers={"Authorization": f"Bearer {tokens[OWNER.name]}"},
    )
    assert opened.status_code == 202, opened.text
    # chen parks a movement above the threshold: Zhang may approve it.
    parked = http.post(
        "/api/v1/ledger/movements",
        json={"key": "matrix-parked", "kind": "subsidy_grant", "amount": 300, "member": "per_2"},
        headers={"Authorization": f"Bearer {chen}"},
    )
    assert parked.json().get("status") == "awaiting_second_approver", parked.text
    # per_1 proposes an item (hers to drop off or withdraw); items in the states a locker's
    # events lead to; per_1 reports a problem with her pickup, which opens a case.
    proposed = http.post(
        "/api/v1/items",
        json={"title": "Matrix lamp", "category": "appliance"},
        headers={"Authorization": f"Bearer {tokens[OWNER.name]}"},
    )
    assert proposed.status_code == 201, proposed.text
    add_matrix_items(store)
    add_matrix_contributions(store)
    add_terminal_proposal(cloud)
    add_matrix_alerts(store)
    reported = http.post(
        "/api/v1/items/itm_mx_picked/problem",
        json={"problem": "damaged"},
        headers={"Authorization": f"Bearer {tokens[OWNER.name]}"},
    )
    assert reported.status_code == 201, reported.text
    # A signed root over the seeded ledger: inclusion and consistency proofs exist.
    now = now_ms()
    published_day = local_day(now - DAY_MS)
    sign_day(store, cloud.keys, published_day, now)
    # This week's demand snapshot of the other community too (the scheduler would make it, and a
    # restarted cloud does at start).
    cloud.server.app.state.services.valuations.snapshot_weekly(now)

    snapshot = base / "snapshot.sqlite3"
    with (
        sqlite3.connect(cloud.data_dir / "cloud.sqlite3") as source,
        sqlite3.connect(snapshot) as target,
    ):
        source.backup(target)
    return Matrix(
        cloud=cloud,
        http=http,
        tokens=tokens,
        snapshot=snapshot,
        baseline=state_of(store),
        context=Context(store=store, now_ms=now, published_day=published_day),
        ours=ours(store),
        per_1s=private_to_per_1(store),
        path_values=seeded_path_values(store),
        route_path_values={
            route: seeded_path_values(store, finders)
            for route, finders in ROUTE_PATH_VALUES.items()
        },
    )


# --- the tests -----------------------------------------------------------------------------------


def test_every_api_route_declares_one_access_and_is_in_the_schema() -> None:
    declared_routes(APP)  # raises, naming the route, if one declares no access or several
    assert ROUTES, "no /api/ route found: the matrix would test nothing"
    unseen = API_OPERATIONS - {(m, p) for m, p, _ in ROUTES}
    assert not unseen, f"operations the matrix cannot see: {sorted(unseen)}"


def _route_order(route: tuple[str, str, object]) -> tuple[int, str]:
    """Reads first, deletions last (with the store restored between changes, order matters
    only for speed and for reading the report)."""
    method, path, _ = route
    return ({"GET": 0, "DELETE": 2}.get(method, 1), path)


ORDERED_ROUTES = sorted(ROUTES, key=_route_order)


@pytest.mark.parametrize(
    ("method", "path", "access"),
    ORDERED_ROUTES,
    ids=[f"{m} {p}" for m, p, _ in ORDERED_ROUTES],
)
def test_route_answers_each_caller_as_declared(
    matrix: Matrix, method: str, path: str, access: Access | str
) -> None:
    if isinstance(access, str):
        pytest.fail(f"{method} {path}: {access}")
    rows = matrix.run_route(method, path, access)
    assert not any(r.problem for r in rows), (
        f"{method} {path} declared {sorted(access.roles) or 'public'} / {access.scope}:\n"
        + table(rows)
    )
