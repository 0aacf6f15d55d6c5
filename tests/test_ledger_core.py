"""The pure ledger core: every rule as a table, then a stateful machine against a model.

The tables name each error code and the request that must raise it; a refused request must
leave the ledger as it was. :class:`LedgerMachine` then drives a ledger through random
sequences (members, credits, holds, posts, voids, reversals by key — including keys never seen
and the late originals that follow —, reused keys, limit changes, absurd amounts) and predicts
every outcome from its own model: the exact error, the repeat returned for a reused key, or the
new record, whose balances it recomputes with its own arithmetic. After every step it checks:

- the sum of ``posted`` over all accounts is 0;
- every snapshot equals the account derived from the transfers (the ledger's ``derived`` and
  this module's own recount) and the model;
- every member's available balance is at or above its limit;
- no hold has both a post and a void (or two of either);
- the reversals of a transfer never exceed its amount;
- keys are unique, never buried by a tombstone, and each record's body hash is its request's;
- the ledger holds exactly the transfers the model expects (a refused request records nothing).

A reused key with another body must raise Conflict, and a late original must be refused: the
machine asserts both at the step itself.

Running the machine against another ledger (the SQLite adapter) takes two lines in another
test module::

    from test_ledger_core import LEDGER_FACTORIES, machine_test

    LEDGER_FACTORIES["sqlite"] = lambda: SqlLedger(Store(":memory:"))  # any LedgerPort
    TestSqlLedgerMachine = machine_test("sqlite")

(Import only these names: importing ``TestMemoryLedgerMachine`` would run it twice.) A ledger
with a ``close()`` method is closed after each example.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import unittest
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, cast

import pytest
from hypothesis import Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from cloud_api.core.ledger import (
    ERROR_CODES,
    FLOWS,
    ISSUANCE,
    KINDS,
    MAX_AMOUNT,
    PENALTIES,
    REDEMPTION,
    SUBSIDY_POOL,
    SYSTEM_ACCOUNTS,
    AccountKind,
    AccountState,
    Conflict,
    Delta,
    InsiderPolicy,
    LedgerError,
    LedgerPort,
    LimitChange,
    LimitRequest,
    MemoryLedger,
    NotFound,
    PostRequest,
    Refused,
    Request,
    ReversalRequest,
    Tombstone,
    Transfer,
    TransferRequest,
    VoidRequest,
    account_kind,
    body_hash,
    check_insider,
    check_insider_limit,
    derive,
    effects,
    issued_by,
    member_account,
    plan_limit,
    plan_post,
    plan_reversal,
    plan_transfer,
)

T0 = 1_800_000_000_000
STAFF = "staff:li"
ANA = "mem:ana"
BO = "mem:bo"


# ---------------------------------------------------------------------------------------------
# Helpers


def credit(key: str, account: str, amount: int, **kw: Any) -> TransferRequest:
    return TransferRequest(key, "valuation_credit", ISSUANCE, account, amount, STAFF, **kw)


def spend(key: str, account: str, amount: int, *, pending: bool = False) -> TransferRequest:
    return TransferRequest(
        key, "redemption", account, REDEMPTION, amount, "person:x", pending=pending
    )


def funded_ledger() -> MemoryLedger:
    """Ana has 100 points (key "c1"), Bo has none."""
    ledger = MemoryLedger()
    ledger.open_account(ANA, "member")
    ledger.open_account(BO, "member")
    ledger.transfer(credit("c1", ANA, 100), T0)
    return ledger


def state_of(ledger: MemoryLedger) -> tuple[object, ...]:
    accounts = [ANA, BO, *SYSTEM_ACCOUNTS]
    return (
        ledger.transfers(),
        ledger.limit_changes(),
        ledger.tombstones(),
        [ledger.account(a) for a in accounts],
    )


# ---------------------------------------------------------------------------------------------
# Tables: flows, hashes, arithmetic


def test_flows_are_the_published_table() -> None:
    assert dict(FLOWS) == {
        "valuation_credit": ("sys:issuance", "member"),
        "time_credit": ("sys:issuance", "member"),
        "skill_credit": ("sys:issuance", "member"),
        "subsidy_grant": ("sys:subsidy_pool", "member"),
        "subsidy_funding": ("sys:issuance", "sys:subsidy_pool"),
        "redemption": ("member", "sys:redemption"),
        "refund": ("sys:redemption", "member"),
        "penalty": ("member", "sys:penalties"),
        "expiry": ("member", "sys:issuance"),
    }
    assert SYSTEM_ACCOUNTS == (ISSUANCE, REDEMPTION, SUBSIDY_POOL, PENALTIES)
    assert KINDS[-1] == "reversal"
    # no flow from member to member, and none names an account outside the ledger
    for debit_side, credit_side in FLOWS.values():
        assert (debit_side, credit_side) != ("member", "member")
        assert {debit_side, credit_side} <= {"member", *SYSTEM_ACCOUNTS}


def test_account_ids() -> None:
    assert member_account("p_1") == "mem:p_1"
    assert [account_kind(a) for a in ("mem:p", "mem:", "sys:issuance", "sys:x", "p")] == [
        "member",
        None,
        "system",
        None,
        None,
    ]


def test_body_hash_is_the_documented_encoding() -> None:
    """A golden value: stored hashes must never change meaning."""
    req = TransferRequest("k", "refund", REDEMPTION, ANA, 5, STAFF, refs=(("item", "邻1"),))
    document = {
        "v": 1,
        "type": "transfer",
        "body": {
            "kind": "refund",
            "debit": REDEMPTION,
            "credit": ANA,
            "amount": 5,
            "actor": STAFF,
            "refs": [["item", "邻1"]],
            "approved_by": None,
            "on_behalf_of": None,
            "pending": False,
        },
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert body_hash(req) == hashlib.sha256(text.encode()).hexdigest()
    assert body_hash(req) == "82064299f6e7ab50cf50736ee1fb08ba24cf86a3cf884bd759ebdbd1e956ad33"


SAMPLE_REQUESTS: list[Request] = [
    TransferRequest("k", "redemption", ANA, REDEMPTION, 5, "person:ana", (("item", "i1"),)),
    PostRequest("k", "trf_1", "device:a"),
    VoidRequest("k", "trf_1", "device:a", "no-show"),
    ReversalRequest("k", "c1", STAFF, "typo", 3),
    LimitRequest("k", ANA, -10, STAFF, "trusted"),
]

OTHER_VALUES: dict[str, list[object]] = {
    "kind": ["penalty"],
    "debit": [BO],
    "credit": [PENALTIES],
    "amount": [6, None],
    "actor": ["person:bo"],
    "refs": [(("item", "i2"),), ()],
    "approved_by": ["staff:wu"],
    "on_behalf_of": ["mem:chen"],
    "pending": [True],
    "pending_id": ["trf_2"],
    "reason": ["expired"],
    "original_key": ["c2"],
    "account": [BO],
    "limit": [None, -11],
}


@pytest.mark.parametrize("req", SAMPLE_REQUESTS, ids=lambda r: r.TAG)
def test_body_hash_covers_every_field_but_the_key(req: Request) -> None:
    digest = body_hash(req)
    assert digest == body_hash(replace(req, key="another key"))
    for f in fields(req):
        if f.name == "key":
            continue
        for value in OTHER_VALUES[f.name]:
            if value != getattr(req, f.name):
                changed: Any = replace(cast(Any, req), **{f.name: value})
                assert body_hash(changed) != digest, f.name


def test_body_hash_tells_request_types_apart() -> None:
    post = PostRequest("k", "trf_1", "device:a")
    assert len({body_hash(r) for r in SAMPLE_REQUESTS} | {body_hash(post)}) == 5


def test_refs_are_stored_sorted() -> None:
    a = credit("k", ANA, 1, refs=(("reservation", "r"), ("item", "i")))
    b = credit("k", ANA, 1, refs=(("item", "i"), ("reservation", "r")))
    assert a.refs == (("item", "i"), ("reservation", "r"))
    assert a == b and body_hash(a) == body_hash(b)


def _transfer(phase: str, amount: int = 7) -> Transfer:
    return Transfer(
        "trf_9", "k", "redemption", ANA, REDEMPTION, amount, phase,  # type: ignore[arg-type]
        "trf_1" if phase in ("post", "void") else None, None, (), "x", None, None, None, "h", 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "debit", "credit"),
    [
        ("single", (-7, 0, 0), (7, 0, 0)),
        ("pending", (0, 7, 0), (0, 0, 7)),
        ("post", (-7, -7, 0), (7, 0, -7)),
        ("void", (0, -7, 0), (0, 0, -7)),
    ],
)
def test_effects_table(
    phase: str, debit: tuple[int, int, int], credit: tuple[int, int, int]
) -> None:
    assert effects(_transfer(phase)) == (Delta(ANA, *debit), Delta(REDEMPTION, *credit))


def test_a_hold_then_its_post_moves_available_once() -> None:
    transfers = [_transfer("pending"), _transfer("post")]
    ana = derive(ANA, "member", 0, transfers[:1])
    assert (ana.posted, ana.available) == (0, -7)
    ana = derive(ANA, "member", 0, transfers)
    assert (ana.posted, ana.pending_debits, ana.available) == (-7, 0, -7)
    red = derive(REDEMPTION, "system", None, transfers)
    assert (red.posted, red.pending_credits) == (7, 0)


# ---------------------------------------------------------------------------------------------
# Tables: every error code


Act = Callable[[], object]
Setup = Callable[[MemoryLedger], Act]


def _hold(ledger: MemoryLedger, amount: int = 30) -> Transfer:
    return ledger.transfer(spend("h1", ANA, amount, pending=True), T0)


def _voided(ledger: MemoryLedger) -> Transfer:
    hold = _hold(ledger)
    ledger.void(VoidRequest("v1", hold.id, "device:a", "no-show"), T0)
    return hold


def _posted(ledger: MemoryLedger) -> Transfer:
    hold = _hold(ledger)
    ledger.post(PostRequest("p1", hold.id, "device:a"), T0)
    return hold


def _rev(key: str, original: str, amount: int | None = None) -> ReversalRequest:
    return ReversalRequest(key, original, STAFF, "mistake", amount)


def _buried(ledger: MemoryLedger) -> Transfer | Tombstone:
    return ledger.reverse(_rev("r-late", "late"), T0)  # buries "late"


def _spent_and_reverse(ledger: MemoryLedger) -> Act:
    ledger.transfer(spend("s1", ANA, 100), T0)  # Ana spends it all, then the credit is reversed
    return lambda: ledger.reverse(_rev("r1", "c1"), T0)


ERROR_CASES: list[tuple[str, str, Setup]] = [
    # same key, different body
    ("key_conflict", "amount", lambda lg: lambda: lg.transfer(credit("c1", ANA, 101), T0)),
    ("key_conflict", "limit key", lambda lg: lambda: lg.set_limit(LimitRequest("c1", ANA, -1, STAFF, "r"), T0)),
    ("key_conflict", "reversal key", lambda lg: lambda: lg.reverse(_rev("c1", "c9"), T0)),
    ("key_conflict", "tombstone key", lambda lg: (_buried(lg), lambda: lg.transfer(credit("r-late", ANA, 1), T0))[1]),
    ("key_conflict", "post key", lambda lg: (_hold(lg), lambda: lg.post(PostRequest("h1", "trf_2", "d"), T0))[1]),
    # holds
    ("voided", "post after void", lambda lg: (h := _voided(lg), lambda: lg.post(PostRequest("p9", h.id, "d"), T0))[1]),
    ("voided", "second void", lambda lg: (h := _voided(lg), lambda: lg.void(VoidRequest("v9", h.id, "d", "r"), T0))[1]),
    ("posted", "void after post", lambda lg: (h := _posted(lg), lambda: lg.void(VoidRequest("v9", h.id, "d", "r"), T0))[1]),
    ("posted", "second post", lambda lg: (h := _posted(lg), lambda: lg.post(PostRequest("p9", h.id, "d"), T0))[1]),
    ("not_pending", "post a single", lambda lg: lambda: lg.post(PostRequest("p9", "trf_1", "d"), T0)),
    ("not_pending", "void a post", lambda lg: (_posted(lg), lambda: lg.void(VoidRequest("v9", "trf_3", "d", "r"), T0))[1]),
    ("not_found", "post nothing", lambda lg: lambda: lg.post(PostRequest("p9", "trf_404", "d"), T0)),
    ("not_found", "void nothing", lambda lg: lambda: lg.void(VoidRequest("v9", "trf_404", "d", "r"), T0)),
    # reversals
    ("already_reversed", "twice in full", lambda lg: (lg.reverse(_rev("r1", "c1"), T0), lambda: lg.reverse(_rev("r2", "c1"), T0))[1]),
    ("already_reversed", "buried twice", lambda lg: (_buried(lg), lambda: lg.reverse(_rev("r2", "late"), T0))[1]),
    ("reversal_exceeds", "more than all", lambda lg: lambda: lg.reverse(_rev("r1", "c1", 101), T0)),
    ("reversal_exceeds", "more than the rest", lambda lg: (lg.reverse(_rev("r1", "c1", 60), T0), lambda: lg.reverse(_rev("r2", "c1", 41), T0))[1]),
    ("not_reversible", "a hold", lambda lg: (_hold(lg), lambda: lg.reverse(_rev("r1", "h1"), T0))[1]),
    ("not_reversible", "a void", lambda lg: (_voided(lg), lambda: lg.reverse(_rev("r1", "v1"), T0))[1]),
    ("not_reversible", "a reversal", lambda lg: (lg.reverse(_rev("r1", "c1", 5), T0), lambda: lg.reverse(_rev("r2", "r1"), T0))[1]),
    ("not_reversible", "a limit change", lambda lg: (lg.set_limit(LimitRequest("l1", ANA, -5, STAFF, "r"), T0), lambda: lg.reverse(_rev("r1", "l1"), T0))[1]),
    ("not_reversible", "a tombstone's key", lambda lg: (_buried(lg), lambda: lg.reverse(_rev("r2", "r-late"), T0))[1]),
    ("not_reversible", "itself", lambda lg: lambda: lg.reverse(_rev("r1", "r1"), T0)),
    ("amount", "reversal of 0", lambda lg: lambda: lg.reverse(_rev("r1", "c1", 0), T0)),
    ("limit", "reversal below the limit", _spent_and_reverse),
    ("late_original", "transfer", lambda lg: (_buried(lg), lambda: lg.transfer(credit("late", ANA, 5), T0))[1]),
    ("late_original", "hold", lambda lg: (_buried(lg), lambda: lg.transfer(spend("late", ANA, 5, pending=True), T0))[1]),
    ("late_original", "post", lambda lg: (_hold(lg), _buried(lg), lambda: lg.post(PostRequest("late", "trf_2", "d"), T0))[2]),
    ("late_original", "void", lambda lg: (_hold(lg), _buried(lg), lambda: lg.void(VoidRequest("late", "trf_2", "d", "r"), T0))[2]),
    ("late_original", "reversal", lambda lg: (_buried(lg), lambda: lg.reverse(_rev("late", "c1"), T0))[1]),
    ("late_original", "limit", lambda lg: (_buried(lg), lambda: lg.set_limit(LimitRequest("late", ANA, -1, STAFF, "r"), T0))[1]),
    # transfers
    ("limit", "overspend", lambda lg: lambda: lg.transfer(spend("s1", ANA, 101), T0)),
    ("limit", "a hold counts", lambda lg: (_hold(lg, 80), lambda: lg.transfer(spend("s1", ANA, 21), T0))[1]),
    ("limit", "second hold", lambda lg: (_hold(lg, 80), lambda: lg.transfer(spend("s1", ANA, 21, pending=True), T0))[1]),
    ("limit", "penalty", lambda lg: lambda: lg.transfer(TransferRequest("p", "penalty", BO, PENALTIES, 1, STAFF), T0)),
    ("limit", "expiry", lambda lg: lambda: lg.transfer(TransferRequest("e", "expiry", ANA, ISSUANCE, 101, STAFF), T0)),
    ("limit", "limited pool", lambda lg: (lg.set_limit(LimitRequest("l1", SUBSIDY_POOL, 0, STAFF, "funded only"), T0), lambda: lg.transfer(TransferRequest("g", "subsidy_grant", SUBSIDY_POOL, ANA, 1, STAFF), T0))[1]),
    ("flow", "member to member", lambda lg: lambda: lg.transfer(TransferRequest("x", "redemption", ANA, BO, 5, STAFF), T0)),
    ("flow", "cash-out", lambda lg: lambda: lg.transfer(TransferRequest("x", "redemption", ANA, "ext:bank", 5, STAFF), T0)),
    ("flow", "from outside", lambda lg: lambda: lg.transfer(TransferRequest("x", "valuation_credit", "ext:bank", ANA, 5, STAFF), T0)),
    ("flow", "unknown kind", lambda lg: lambda: lg.transfer(TransferRequest("x", "cash_out", ANA, REDEMPTION, 5, STAFF), T0)),
    ("flow", "kind reversal", lambda lg: lambda: lg.transfer(TransferRequest("x", "reversal", REDEMPTION, ANA, 5, STAFF), T0)),
    ("flow", "wrong system account", lambda lg: lambda: lg.transfer(TransferRequest("x", "valuation_credit", SUBSIDY_POOL, ANA, 5, STAFF), T0)),
    ("flow", "backwards", lambda lg: lambda: lg.transfer(TransferRequest("x", "valuation_credit", ANA, ISSUANCE, 5, STAFF), T0)),
    ("amount", "zero", lambda lg: lambda: lg.transfer(credit("x", ANA, 0), T0)),
    ("amount", "negative", lambda lg: lambda: lg.transfer(credit("x", ANA, -5), T0)),
    ("amount", "huge", lambda lg: lambda: lg.transfer(credit("x", ANA, MAX_AMOUNT + 1), T0)),
    ("amount", "a bool", lambda lg: lambda: lg.transfer(credit("x", ANA, True), T0)),
    ("same_account", "to itself", lambda lg: lambda: lg.transfer(TransferRequest("x", "redemption", ANA, ANA, 5, STAFF), T0)),
    ("not_found", "no such member", lambda lg: lambda: lg.transfer(credit("x", "mem:ghost", 5), T0)),
    ("not_found", "no such account", lambda lg: lambda: lg.account("mem:ghost")),
    # limits and accounts
    ("limit", "above available", lambda lg: lambda: lg.set_limit(LimitRequest("l1", ANA, 101, STAFF, "r"), T0)),
    ("limit", "member unlimited", lambda lg: lambda: lg.set_limit(LimitRequest("l1", ANA, None, STAFF, "r"), T0)),
    ("limit", "beyond bounds", lambda lg: lambda: lg.set_limit(LimitRequest("l1", ANA, -MAX_AMOUNT - 1, STAFF, "r"), T0)),
    ("limit", "open unlimited member", lambda lg: lambda: lg.open_account("mem:chen", "member", None)),
    ("limit", "open with a positive floor", lambda lg: lambda: lg.open_account("mem:chen", "member", 5)),
    ("not_found", "limit of nobody", lambda lg: lambda: lg.set_limit(LimitRequest("l1", "mem:ghost", 0, STAFF, "r"), T0)),
    ("account_exists", "other limit", lambda lg: lambda: lg.open_account(ANA, "member", -5)),
    ("account", "member id as system", lambda lg: lambda: lg.open_account("mem:chen", "system")),
    ("account", "unknown system account", lambda lg: lambda: lg.open_account("sys:holds", "system")),
    ("account", "empty member id", lambda lg: lambda: lg.open_account("mem:", "member")),
    ("account", "system id as member", lambda lg: lambda: lg.open_account(ISSUANCE, "member")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "setup"),
    [(code, setup) for code, _, setup in ERROR_CASES],
    ids=[f"{code}: {name}" for code, name, _ in ERROR_CASES],
)
def test_error_table(code: str, setup: Setup) -> None:
    ledger = funded_ledger()
    act = setup(ledger)
    before = state_of(ledger)
    with pytest.raises(LedgerError) as caught:
        act()
    assert caught.value.code == code, caught.value
    assert type(caught.value) is ERROR_CODES[code]
    assert state_of(ledger) == before, "a refused request recorded something"


INSIDER_CASES: list[tuple[str | None, str, TransferRequest, frozenset[str], int]] = [
    ("insider_self", "own account", credit("k", "mem:li", 10), frozenset({"mem:li"}), 0),
    ("insider_self", "acts for", TransferRequest("k", "subsidy_grant", SUBSIDY_POOL, "mem:gran", 10, STAFF), frozenset({"mem:li", "mem:gran"}), 0),
    ("insider_self", "refund to self", TransferRequest("k", "refund", REDEMPTION, "mem:li", 10, STAFF), frozenset({"mem:li"}), 0),
    ("insider_second_approver", "alone", credit("k", ANA, 201), frozenset(), 0),
    ("insider_second_approver", "self-approved", credit("k", ANA, 201, approved_by=STAFF), frozenset(), 0),
    ("insider_second_approver", "funding", TransferRequest("k", "subsidy_funding", ISSUANCE, SUBSIDY_POOL, 500, STAFF), frozenset(), 0),
    ("insider_cap", "over the cap", credit("k", ANA, 150), frozenset(), 1900),
    (None, "at the threshold", credit("k", ANA, 200), frozenset({"mem:li"}), 0),
    (None, "approved", credit("k", ANA, 201, approved_by="staff:wu"), frozenset(), 0),
    (None, "at the cap", credit("k", ANA, 100), frozenset(), 1900),
    (None, "refunds are not capped", TransferRequest("k", "refund", REDEMPTION, ANA, 100, STAFF), frozenset(), 2000),
    (None, "a device settling a pickup", TransferRequest("k", "redemption", ANA, REDEMPTION, 900, "device:l1"), frozenset({ANA}), 5000),
    (None, "a penalty takes, not gives", TransferRequest("k", "penalty", "mem:li", PENALTIES, 300, STAFF), frozenset({"mem:li"}), 5000),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "req", "accounts", "issued"),
    [(c, r, a, i) for c, _, r, a, i in INSIDER_CASES],
    ids=[f"{c}: {n}" for c, n, *_ in INSIDER_CASES],
)
def test_insider_table(
    code: str | None, req: TransferRequest, accounts: frozenset[str], issued: int
) -> None:
    def check() -> None:
        check_insider(
            req, policy=InsiderPolicy(), actor_accounts=accounts, issued_today_by_actor=issued
        )

    if code is None:
        check()
    else:
        with pytest.raises(Refused) as caught:
            check()
        assert caught.value.code == code


def test_insider_grants_count_against_the_cap_and_approvers_are_checked() -> None:
    grant = TransferRequest("k", "subsidy_grant", SUBSIDY_POOL, ANA, 2, STAFF)
    with pytest.raises(Refused, match="cap") as caught:
        check_insider(
            grant, policy=InsiderPolicy(), actor_accounts=frozenset(), issued_today_by_actor=1999
        )
    assert caught.value.code == "insider_cap"
    approved = credit("k", "mem:wu", 300, approved_by="staff:wu")
    with pytest.raises(Refused) as caught:
        check_insider(
            approved,
            policy=InsiderPolicy(),
            actor_accounts=frozenset(),
            issued_today_by_actor=0,
            approver_accounts=frozenset({"mem:wu"}),
        )
    assert caught.value.code == "insider_self"
    with pytest.raises(Refused) as caught:
        check_insider_limit(
            LimitRequest("l", "mem:li", -500, STAFF, "r"), actor_accounts=frozenset({"mem:li"})
        )
    assert caught.value.code == "insider_self"
    check_insider_limit(
        LimitRequest("l", ANA, -5, STAFF, "r"), actor_accounts=frozenset({"mem:li"})
    )


def test_issued_by_counts_credits_and_grants_of_one_actor_and_day() -> None:
    ledger = funded_ledger()  # c1: 100 by STAFF at T0
    ledger.transfer(TransferRequest("f", "subsidy_funding", ISSUANCE, SUBSIDY_POOL, 500, STAFF), T0)
    ledger.transfer(TransferRequest("g", "subsidy_grant", SUBSIDY_POOL, BO, 40, STAFF), T0 + 1)
    ledger.transfer(credit("c2", BO, 7, pending=True), T0 + 2)
    ledger.post(PostRequest("p", "trf_4", "device:a"), T0 + 3)
    ledger.transfer(TransferRequest("o", "valuation_credit", ISSUANCE, BO, 9, "staff:wu"), T0)
    ledger.transfer(credit("late", BO, 1000), T0 + 86_400_000)
    assert issued_by(ledger.transfers(), STAFF, T0, T0 + 86_400_000) == 147


def test_the_tables_cover_every_error_code() -> None:
    tested = {c for c, _, _ in ERROR_CASES} | {c for c, *_ in INSIDER_CASES if c}
    assert tested == set(ERROR_CODES)


# ---------------------------------------------------------------------------------------------
# Tables: what succeeds


def test_a_repeat_returns_the_first_record_even_after_the_balance_moved() -> None:
    ledger = funded_ledger()
    first = ledger.transfer(spend("s1", ANA, 60), T0)
    ledger.transfer(spend("s2", ANA, 40), T0)
    assert ledger.transfer(spend("s1", ANA, 60), T0 + 5) == first  # would overdraw if new
    assert len(ledger.transfers()) == 3


def test_a_refused_key_stays_free() -> None:
    ledger = funded_ledger()
    with pytest.raises(Refused):
        ledger.transfer(spend("s1", ANA, 150), T0)
    ledger.transfer(credit("c2", ANA, 50), T0)
    assert ledger.transfer(spend("s1", ANA, 150), T0).amount == 150


def test_hold_post_and_its_repeat() -> None:
    ledger = funded_ledger()
    hold = _hold(ledger, 30)
    ana = ledger.account(ANA)
    assert (ana.posted, ana.pending_debits, ana.available) == (100, 30, 70)
    assert ledger.account(REDEMPTION).pending_credits == 30
    post = ledger.post(PostRequest("p1", hold.id, "device:a"), T0 + 1)
    assert ledger.post(PostRequest("p1", hold.id, "device:a"), T0 + 2) == post
    assert (post.phase, post.pending_id, post.kind, post.amount) == (
        "post",
        hold.id,
        "redemption",
        30,
    )
    ana = ledger.account(ANA)
    assert (ana.posted, ana.pending_debits, ana.available) == (70, 0, 70)
    assert ledger.account(REDEMPTION) == AccountState(REDEMPTION, "system", 30, 0, 0, None)


def test_void_releases_the_hold() -> None:
    ledger = funded_ledger()
    hold = _hold(ledger, 30)
    void = ledger.void(VoidRequest("v1", hold.id, "device:a", "no-show"), T0)
    assert void.reason == "no-show"
    assert ledger.account(ANA).available == 100
    assert ledger.account(REDEMPTION).pending_credits == 0


def test_reversals_partial_then_the_rest() -> None:
    ledger = funded_ledger()
    first = ledger.reverse(_rev("r1", "c1", 30), T0)
    assert isinstance(first, Transfer)
    assert (first.kind, first.debit, first.credit, first.reverses_id) == (
        "reversal",
        ANA,
        ISSUANCE,
        "trf_1",
    )
    rest = ledger.reverse(_rev("r2", "c1"), T0)
    assert isinstance(rest, Transfer) and rest.amount == 70
    assert ledger.account(ANA).posted == 0 and ledger.account(ISSUANCE).posted == 0


def test_reversal_within_a_negative_limit() -> None:
    ledger = funded_ledger()
    ledger.transfer(spend("s1", ANA, 100), T0)
    ledger.set_limit(LimitRequest("l1", ANA, -100, STAFF, "dispute pending"), T0)
    reversal = ledger.reverse(_rev("r1", "c1"), T0)
    assert isinstance(reversal, Transfer)
    assert ledger.account(ANA).available == -100


def test_a_posted_hold_is_reversed_by_the_post_key() -> None:
    ledger = funded_ledger()
    _posted(ledger)
    refund = ledger.reverse(_rev("r1", "p1"), T0)
    assert isinstance(refund, Transfer) and (refund.debit, refund.credit) == (REDEMPTION, ANA)
    assert ledger.account(ANA).available == 100


def test_reversal_first_then_the_late_original() -> None:
    ledger = funded_ledger()
    tomb = ledger.reverse(_rev("rev:t42", "dev:t42"), T0)
    assert tomb == Tombstone("dev:t42", "rev:t42", STAFF, "mistake", tomb.body_hash, T0)
    assert ledger.reverse(_rev("rev:t42", "dev:t42"), T0 + 9) == tomb  # a repeat
    with pytest.raises(Refused) as caught:
        ledger.transfer(spend("dev:t42", ANA, 10), T0 + 10)
    assert caught.value.code == "late_original"
    assert ledger.account(ANA).available == 100


def test_limit_changes_are_logged() -> None:
    ledger = funded_ledger()
    change = ledger.set_limit(LimitRequest("l1", ANA, -50, STAFF, "trusted"), T0)
    assert change == LimitChange("lim_1", "l1", ANA, 0, -50, STAFF, "trusted", T0, change.body_hash)
    assert ledger.set_limit(LimitRequest("l1", ANA, -50, STAFF, "trusted"), T0 + 1) == change
    ledger.set_limit(LimitRequest("l2", ANA, 100, STAFF, "back to a floor"), T0)
    assert ledger.account(ANA).limit == 100
    assert ledger.derived(ANA) == ledger.account(ANA)
    assert [c.new_limit for c in ledger.limit_changes()] == [-50, 100]
    ledger.set_limit(LimitRequest("l3", ISSUANCE, None, STAFF, "unlimited"), T0)


def test_open_account_is_idempotent() -> None:
    ledger = MemoryLedger()
    first = ledger.open_account(ANA, "member", -10)
    assert ledger.open_account(ANA, "member") == first
    assert ledger.open_account(ANA, "member", -10) == first
    assert ledger.open_account(ISSUANCE, "system").limit is None


def test_plans_refuse_states_of_other_accounts() -> None:
    """Adapter bugs (a state looked up for the wrong id) are ValueErrors, not ledger errors."""
    ana = AccountState(ANA, "member", 0, 0, 0, 0)
    with pytest.raises(ValueError, match="given for"):
        plan_transfer(
            credit("k", BO, 5),
            existing=None,
            debit=AccountState(ISSUANCE, "system", 0, 0, 0, None),
            credit=ana,
            is_tombstoned=False,
            new_id="t",
            now_ms=0,
        )
    with pytest.raises(ValueError, match="given for"):
        plan_limit(
            LimitRequest("l", BO, 0, STAFF, "r"),
            existing_change=None,
            is_tombstoned=False,
            account=ana,
            new_id="l",
            now_ms=0,
        )
    with pytest.raises(ValueError, match="given for"):
        plan_post(
            PostRequest("p", "trf_1", "d"),
            existing=None,
            is_tombstoned=False,
            pending=_transfer("pending"),
            resolution=None,
            new_id="t",
            now_ms=0,
        )
    with pytest.raises(ValueError, match="given for"):
        plan_reversal(
            _rev("r", "k"),
            existing=None,
            is_tombstoned=False,
            original=_transfer("single"),
            original_is_tombstoned=False,
            reversed_so_far=0,
            debit=ana,
            credit=ana,
            new_id="t",
            now_ms=0,
        )


def port_mismatches(cls: type) -> list[str]:
    """How ``cls`` differs from :class:`LedgerPort` (names and parameters of every method)."""
    problems = []
    for name, member in vars(LedgerPort).items():
        if name.startswith("_") or not callable(member):
            continue
        theirs = getattr(cls, name, None)
        if theirs is None:
            problems.append(f"{name} missing")
            continue
        want = list(inspect.signature(member).parameters.values())
        have = list(inspect.signature(theirs).parameters.values())
        if [(p.name, p.kind, p.default) for p in want] != [
            (p.name, p.kind, p.default) for p in have
        ]:
            problems.append(f"{name}{inspect.signature(theirs)} != {inspect.signature(member)}")
    return problems


def test_memory_ledger_implements_the_port() -> None:
    assert port_mismatches(MemoryLedger) == []
    assert len([n for n in vars(LedgerPort) if not n.startswith("_")]) == 9


# ---------------------------------------------------------------------------------------------
# The stateful machine

LEDGER_FACTORIES: dict[str, Callable[[], LedgerPort]] = {"memory": MemoryLedger}
"""Name -> a fresh, empty ledger. Other test modules register theirs (see the module doc)."""

SETTINGS = settings(max_examples=200, stateful_step_count=40, deadline=None)

PERSONS = ("ana", "bo", "chen")
GHOST = "mem:ghost"  # a member id never opened
OUTSIDE = "ext:bank"  # not an account of the ledger
ACTORS = ("staff:li", "person:ana", "device:l1")

AMOUNTS = st.integers(0, 9).flatmap(
    lambda n: (
        st.integers(1, 60)
        if n < 6
        else st.integers(61, 300)
        if n < 8
        else st.integers(-2, 0)
        if n < 9
        else st.sampled_from([MAX_AMOUNT, MAX_AMOUNT + 1, 10**30])
    )
)
"""Mostly valid amounts; one in ten is 0 or negative, one in ten is at or beyond the maximum."""
LIMITS = st.one_of(
    st.integers(-150, 40),
    st.none(),
    st.sampled_from([-MAX_AMOUNT, -MAX_AMOUNT - 1, MAX_AMOUNT + 1]),
)


def same_body(a: Request, b: Request) -> bool:
    """Two requests that differ at most in their key (judged without :func:`body_hash`)."""
    return type(a) is type(b) and replace(a, key="") == replace(b, key="")


def valid_amount(amount: int) -> bool:
    return 1 <= amount <= MAX_AMOUNT


def recount(transfers: list[Transfer], account: str) -> tuple[int, int, int]:
    """(posted, pending debits, pending credits) from the transfers, without :func:`effects`."""
    holds = {t.id: t for t in transfers if t.phase == "pending"}
    resolved = {t.pending_id for t in transfers if t.pending_id is not None}
    posted = sum(
        (t.amount if t.credit == account else 0) - (t.amount if t.debit == account else 0)
        for t in transfers
        if t.phase in ("single", "post")
    )
    open_holds = [t for i, t in holds.items() if i not in resolved]
    pending_debits = sum(t.amount for t in open_holds if t.debit == account)
    pending_credits = sum(t.amount for t in open_holds if t.credit == account)
    return posted, pending_debits, pending_credits


Expected = tuple[Any, ...]
"""("new",) | ("tombstone",) | ("repeat", record) | ("error", class, code)."""


@dataclass
class Model:
    """What the ledger must hold, kept by the test's own rules and arithmetic."""

    kinds: dict[str, AccountKind] = field(default_factory=dict)
    balances: dict[str, list[int]] = field(default_factory=dict)  # posted, pd, pc
    limits: dict[str, int | None] = field(default_factory=dict)
    records: dict[str, tuple[Request, object]] = field(default_factory=dict)
    buried: set[str] = field(default_factory=set)
    transfers: list[Transfer] = field(default_factory=list)
    by_id: dict[str, Transfer] = field(default_factory=dict)
    resolutions: dict[str, str] = field(default_factory=dict)
    reversed: Counter[str] = field(default_factory=Counter)
    sent: list[Request] = field(default_factory=list)
    conflicts: int = 0
    late_refused: int = 0

    def available(self, account: str) -> int:
        posted, pending_debits, _ = self.balances[account]
        return posted - pending_debits

    def breaks_limit(self, account: str, amount: int) -> bool:
        limit = self.limits[account]
        return limit is not None and self.available(account) - amount < limit


class LedgerMachine(RuleBasedStateMachine):
    """Random ledger histories checked against :class:`Model` (see the module doc)."""

    factory_name: ClassVar[str] = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.ledger = LEDGER_FACTORIES[self.factory_name]()
        self.model = Model()
        self.now_ms = T0
        self.fresh = 0

    def teardown(self) -> None:
        close = getattr(self.ledger, "close", None)
        if callable(close):
            close()

    # -- sending and predicting ----------------------------------------------------------

    def _new_key(self) -> str:
        self.fresh += 1
        return f"k{self.fresh}"

    def _key(self, data: st.DataObject) -> str:
        """Mostly a fresh key; else a recorded one, a buried one, or one sent before."""
        pools = [
            sorted(self.model.records),
            sorted(self.model.buried),
            sorted({r.key for r in self.model.sent}),
        ]
        n = data.draw(st.integers(0, 9), label="key source")
        pool = pools[n - 7] if n >= 7 else []
        return data.draw(st.sampled_from(pool), label="key") if pool else self._new_key()

    def _member(self, data: st.DataObject) -> str:
        members = [a for a, k in self.model.kinds.items() if k == "member"]
        return data.draw(st.sampled_from([*members, *members, GHOST]), label="member")

    def _expect(self, req: Request) -> Expected:
        m = self.model
        if req.key in m.records:
            made_by, record = m.records[req.key]
            return (
                ("repeat", record)
                if same_body(made_by, req)
                else ("error", Conflict, "key_conflict")
            )
        if req.key in m.buried:
            return ("error", Refused, "late_original")
        if isinstance(req, TransferRequest):
            return self._expect_transfer(req)
        if isinstance(req, PostRequest | VoidRequest):
            hold = m.by_id.get(req.pending_id)
            if hold is None:
                return ("error", NotFound, "not_found")
            if hold.phase != "pending":
                return ("error", Refused, "not_pending")
            if hold.id in m.resolutions:
                return (
                    "error",
                    Conflict,
                    "voided" if m.resolutions[hold.id] == "void" else "posted",
                )
            return ("new",)
        if isinstance(req, ReversalRequest):
            return self._expect_reversal(req)
        if req.account not in m.kinds:
            return ("error", NotFound, "not_found")
        if req.limit is None:
            return ("error", Refused, "limit") if m.kinds[req.account] == "member" else ("new",)
        if not -MAX_AMOUNT <= req.limit <= min(MAX_AMOUNT, m.available(req.account)):
            return ("error", Refused, "limit")
        return ("new",)  # fmt: skip

    def _expect_transfer(self, req: TransferRequest) -> Expected:
        m = self.model
        if not valid_amount(req.amount):
            return ("error", Refused, "amount")
        if req.debit == req.credit:
            return ("error", Refused, "same_account")
        sides = FLOWS.get(req.kind)

        def fits(side: str, account: str) -> bool:
            if side == "member":
                return account.startswith("mem:") and account != "mem:"
            return account == side

        if sides is None or not (fits(sides[0], req.debit) and fits(sides[1], req.credit)):
            return ("error", Refused, "flow")
        if req.debit not in m.kinds or req.credit not in m.kinds:
            return ("error", NotFound, "not_found")
        if m.breaks_limit(req.debit, req.amount):
            return ("error", Refused, "limit")
        return ("new",)

    def _expect_reversal(self, req: ReversalRequest) -> Expected:
        m = self.model
        if req.amount is not None and not valid_amount(req.amount):
            return ("error", Refused, "amount")
        if req.key == req.original_key:
            return ("error", Refused, "not_reversible")
        if req.original_key not in m.records:
            if req.original_key in m.buried:
                return ("error", Conflict, "already_reversed")
            return ("tombstone",)
        original = m.records[req.original_key][1]
        if (
            not isinstance(original, Transfer)
            or original.phase not in ("single", "post")
            or original.kind == "reversal"
        ):
            return ("error", Refused, "not_reversible")
        remaining = original.amount - m.reversed[original.id]
        if remaining <= 0:
            return ("error", Conflict, "already_reversed")
        amount = remaining if req.amount is None else req.amount
        if amount > remaining:
            return ("error", Refused, "reversal_exceeds")
        if m.breaks_limit(original.credit, amount):
            return ("error", Refused, "limit")
        return ("new",)

    def _call(self, req: Request) -> object:
        if isinstance(req, TransferRequest):
            return self.ledger.transfer(req, self.now_ms)
        if isinstance(req, PostRequest):
            return self.ledger.post(req, self.now_ms)
        if isinstance(req, VoidRequest):
            return self.ledger.void(req, self.now_ms)
        if isinstance(req, ReversalRequest):
            return self.ledger.reverse(req, self.now_ms)
        return self.ledger.set_limit(req, self.now_ms)

    def send(self, req: Request) -> object:
        """Send a request; assert the predicted outcome; learn what was recorded."""
        expected = self._expect(req)
        self.now_ms += 1
        self.model.sent.append(req)
        try:
            result = self._call(req)
        except LedgerError as exc:
            assert expected[0] == "error", f"{req} raised {exc!r} ({exc.code}), expected {expected}"
            assert (type(exc), exc.code) == expected[1:], (
                f"{req}: {exc!r} ({exc.code}) != {expected}"
            )
            event(f"{req.TAG}: {exc.code}")
            self.model.conflicts += exc.code == "key_conflict"
            self.model.late_refused += exc.code == "late_original"
            return exc
        assert expected[0] != "error", f"{req} returned {result}, expected {expected}"
        event(f"{req.TAG}: {expected[0]}")
        if expected[0] == "repeat":
            assert result == expected[1], f"a repeat of {req.key!r} returned another record"
            return result
        if expected[0] == "tombstone":
            assert isinstance(req, ReversalRequest)
            assert result == Tombstone(
                req.original_key, req.key, req.actor, req.reason, body_hash(req), self.now_ms
            )
            self.model.buried.add(req.original_key)
        elif isinstance(req, LimitRequest):
            self._learn_limit(req, result)
        else:
            self._learn_transfer(req, result)
        self.model.records[req.key] = (req, result)
        return result  # fmt: skip

    def _learn_limit(self, req: LimitRequest, change: object) -> None:
        assert isinstance(change, LimitChange)
        old = self.model.limits[req.account]
        assert (change.key, change.account, change.old_limit, change.new_limit) == (
            req.key,
            req.account,
            old,
            req.limit,
        )
        assert (change.actor, change.reason, change.created_ms) == (
            req.actor,
            req.reason,
            self.now_ms,
        )
        self.model.limits[req.account] = req.limit

    def _learn_transfer(self, req: Request, t: object) -> None:
        m = self.model
        assert isinstance(t, Transfer)
        assert t.id not in m.by_id and t.key == req.key and t.created_ms == self.now_ms
        assert t.body_hash == body_hash(req) and t.actor == req.actor
        if isinstance(req, TransferRequest):
            assert (t.kind, t.debit, t.credit, t.amount, t.refs) == (
                req.kind,
                req.debit,
                req.credit,
                req.amount,
                req.refs,
            )
            assert (t.approved_by, t.on_behalf_of, t.pending_id, t.reverses_id) == (
                req.approved_by,
                req.on_behalf_of,
                None,
                None,
            )
            assert t.phase == ("pending" if req.pending else "single")
        elif isinstance(req, PostRequest | VoidRequest):
            hold = m.by_id[req.pending_id]
            assert (t.kind, t.debit, t.credit, t.amount, t.refs, t.pending_id) == (
                hold.kind,
                hold.debit,
                hold.credit,
                hold.amount,
                hold.refs,
                hold.id,
            )
            assert t.phase == ("post" if isinstance(req, PostRequest) else "void")
            m.resolutions[hold.id] = t.phase
        else:
            assert isinstance(req, ReversalRequest)
            original = m.records[req.original_key][1]
            assert isinstance(original, Transfer)
            remaining = original.amount - m.reversed[original.id]
            assert (t.kind, t.debit, t.credit, t.reverses_id, t.phase) == (
                "reversal",
                original.credit,
                original.debit,
                original.id,
                "single",
            )
            assert t.amount == (remaining if req.amount is None else req.amount)
            m.reversed[original.id] += t.amount
        debit, credit = m.balances[t.debit], m.balances[t.credit]
        if t.phase in ("single", "post"):
            debit[0] -= t.amount
            credit[0] += t.amount
        if t.phase == "pending":
            debit[1] += t.amount
            credit[2] += t.amount
        if t.phase in ("post", "void"):
            debit[1] -= t.amount
            credit[2] -= t.amount
        m.transfers.append(t)
        m.by_id[t.id] = t

    def _open(self, account: str, kind: AccountKind, limit: int | str | None) -> None:
        m = self.model
        if account in m.kinds:
            ok = m.kinds[account] == kind and limit in ("default", m.limits[account])
            expected: Expected = ("existing",) if ok else ("error", Conflict, "account_exists")
        else:
            default = 0 if kind == "member" else None
            wanted = default if limit == "default" else limit
            out_of_range = isinstance(wanted, int) and not -MAX_AMOUNT <= wanted <= 0
            if out_of_range or (kind == "member" and wanted is None):
                expected = ("error", Refused, "limit")
            else:
                expected = ("new", wanted)
        try:
            state = self.ledger.open_account(account, kind, limit)  # type: ignore[arg-type]
        except LedgerError as exc:
            assert (type(exc), exc.code) == expected[1:], f"open {account}: {exc!r} != {expected}"
            return
        assert expected[0] != "error", f"open {account} {limit}: {state}, expected {expected}"
        if expected[0] == "new":
            assert state == AccountState(account, kind, 0, 0, 0, expected[1])
            m.kinds[account] = kind
            m.balances[account] = [0, 0, 0]
            m.limits[account] = expected[1]
        else:
            assert state == self.ledger.account(account)

    # -- rules -------------------------------------------------------------------------------

    @initialize()
    def open_system_accounts(self) -> None:
        for account in SYSTEM_ACCOUNTS:
            self._open(account, "system", "default")
        self._open("mem:ana", "member", "default")
        self.send(credit(self._new_key(), "mem:ana", 100))  # something to spend from the start

    @rule(
        person=st.sampled_from(PERSONS),
        limit=st.one_of(st.just("default"), LIMITS),
    )
    def open_member(self, person: str, limit: int | str | None) -> None:
        self._open(member_account(person), "member", limit)

    @rule(
        account=st.sampled_from(["mem:", "sys:holds", "mem:ana", ISSUANCE]),
        kind=st.sampled_from(["member", "system"]),
    )
    def open_oddly(self, account: str, kind: AccountKind) -> None:
        """Ids that name no account of that kind are refused; existing ones are idempotent."""
        if account_kind(account) != kind:
            with pytest.raises(Refused) as caught:
                self.ledger.open_account(account, kind)
            assert caught.value.code == "account"
        else:
            self._open(account, kind, "default")

    @rule(data=st.data())
    def give(self, data: st.DataObject) -> None:
        """Points for a member: valuation credits, grants, refunds, funding of the pool."""
        kind = data.draw(
            st.sampled_from(["valuation_credit", "subsidy_grant", "refund", "subsidy_funding"])
        )
        debit, credit_side = FLOWS[kind]
        credit_account = credit_side if credit_side != "member" else self._member(data)
        refs = data.draw(
            st.sampled_from([(), (("item", "i1"),), (("dispute", "d1"), ("item", "i2"))])
        )
        self.send(
            TransferRequest(
                self._key(data), kind, debit, credit_account, data.draw(AMOUNTS, label="amount"),
                data.draw(st.sampled_from(ACTORS)), refs=refs,
                approved_by=data.draw(st.sampled_from([None, "staff:wu"])),
                on_behalf_of=data.draw(st.sampled_from([None, "mem:bo"])),
                pending=data.draw(st.integers(0, 5)) == 0,
            )
        )  # fmt: skip

    @rule(data=st.data())
    def take(self, data: st.DataObject) -> None:
        """Points from a member: redemptions (mostly holds), penalties, expiry."""
        kind = data.draw(st.sampled_from(["redemption", "redemption", "penalty", "expiry"]))
        _, credit_side = FLOWS[kind]
        self.send(
            TransferRequest(
                self._key(data), kind, self._member(data), credit_side,
                data.draw(AMOUNTS, label="amount"), data.draw(st.sampled_from(ACTORS)),
                refs=(("reservation", "r1"),),
                pending=data.draw(st.booleans()) if kind == "redemption" else False,
            )
        )  # fmt: skip

    @rule(data=st.data())
    def reserve(self, data: st.DataObject) -> None:
        """A reservation: a hold of up to what a member has (sometimes one point more)."""
        m = self.model
        members = [a for a, k in m.kinds.items() if k == "member" and m.available(a) > 0]
        if not members:
            return
        member = data.draw(st.sampled_from(members))
        amount = data.draw(st.integers(1, m.available(member) + 1))
        self.send(
            TransferRequest(
                self._key(data), "redemption", member, REDEMPTION, amount, "person:x",
                refs=(("item", "i1"), ("reservation", "r1")), pending=True,
            )
        )  # fmt: skip

    @rule(data=st.data())
    def stray(self, data: st.DataObject) -> None:
        """Any kind between any accounts: member to member, cash-out, unknown kinds."""
        accounts = [*self.model.kinds, GHOST, OUTSIDE]
        self.send(
            TransferRequest(
                self._key(data), data.draw(st.sampled_from([*KINDS, "cash_out"])),
                data.draw(st.sampled_from(accounts)), data.draw(st.sampled_from(accounts)),
                data.draw(AMOUNTS, label="amount"), STAFF,
            )
        )  # fmt: skip

    def _pending_id(self, data: st.DataObject) -> str:
        """Mostly an open hold; else a resolved one, any transfer, or none at all."""
        m = self.model
        holds = [t.id for t in m.transfers if t.phase == "pending"]
        pools = [
            [h for h in holds if h not in m.resolutions],
            [h for h in holds if h in m.resolutions],
            [t.id for t in m.transfers],
        ]
        n = data.draw(st.integers(0, 9), label="hold source")
        pool = pools[0] if n < 6 else pools[1] if n < 8 else pools[2] if n < 9 else []
        return data.draw(st.sampled_from(pool)) if pool else "trf_404"

    @rule(data=st.data())
    def post(self, data: st.DataObject) -> None:
        self.send(PostRequest(self._key(data), self._pending_id(data), "device:l1"))

    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        reason = data.draw(st.sampled_from(["no-show", "expired"]))
        self.send(VoidRequest(self._key(data), self._pending_id(data), "device:l1", reason))

    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        """By a reversible key, any recorded key, a buried key, a key never seen (it buries it),
        its own key, or a key refused before."""
        m = self.model
        key = self._key(data)
        reversible = [
            t.key for t in m.transfers if t.phase in ("single", "post") and t.kind != "reversal"
        ]
        pools = [
            reversible,
            sorted(m.records),
            sorted(m.buried),
            [],
            [key],
            [r.key for r in m.sent],
        ]
        n = data.draw(st.integers(0, 9), label="original source")
        pool = pools[0] if n < 5 else pools[n - 4]
        original = data.draw(st.sampled_from(pool)) if pool else self._new_key()
        amount = data.draw(
            st.one_of(st.none(), st.integers(1, 80), st.sampled_from([0, -1, MAX_AMOUNT + 1]))
        )
        self.send(ReversalRequest(key, original, STAFF, "mistake", amount))

    @rule(data=st.data())
    def late_original(self, data: st.DataObject) -> None:
        """The original of a reversal that came first arrives: it must be refused."""
        if not self.model.buried:
            return
        key = data.draw(st.sampled_from(sorted(self.model.buried)))
        before = self.model.late_refused
        self.send(credit(key, data.draw(st.sampled_from([*self.model.kinds, GHOST])), 5))
        assert self.model.late_refused == before + 1, f"late original {key!r} was not refused"

    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        """A request sent before, again as it was (a retry)."""
        if self.model.sent:
            self.send(data.draw(st.sampled_from(self.model.sent)))

    @rule(data=st.data())
    def reuse_key(self, data: st.DataObject) -> None:
        """A recorded key with another body: it must raise Conflict."""
        if not self.model.records:
            return
        key = data.draw(st.sampled_from(sorted(self.model.records)))
        made_by = self.model.records[key][0]
        other = data.draw(
            st.sampled_from(
                [
                    credit(key, "mem:ana", 3),
                    PostRequest(key, "trf_1", "device:l1"),
                    ReversalRequest(key, "k1", STAFF, "mistake", 1),
                    LimitRequest(key, "mem:ana", -1, STAFF, "r"),
                    replace(made_by, actor="person:other"),
                ]
            )
        )
        before = self.model.conflicts
        self.send(other)
        if not same_body(made_by, other):
            assert self.model.conflicts == before + 1, f"{key!r} reused without a Conflict"

    @rule(data=st.data(), limit=LIMITS)
    def set_limit(self, data: st.DataObject, limit: int | None) -> None:
        accounts = [*self.model.kinds, GHOST]
        account = data.draw(st.sampled_from(accounts))
        if data.draw(st.booleans()) and account in self.model.kinds and limit is not None:
            limit = min(limit, self.model.available(account))  # mostly a change that fits
        self.send(LimitRequest(self._key(data), account, limit, STAFF, "policy"))

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def posted_sums_to_zero(self) -> None:
        assert sum(self.ledger.account(a).posted for a in self.model.kinds) == 0

    @invariant()
    def snapshots_match_the_transfers_and_the_model(self) -> None:
        transfers = self.ledger.transfers()
        for account, kind in self.model.kinds.items():
            snapshot = self.ledger.account(account)
            assert snapshot == self.ledger.derived(account), account
            counted = recount(transfers, account)
            assert (snapshot.posted, snapshot.pending_debits, snapshot.pending_credits) == counted
            assert list(counted) == self.model.balances[account], account
            assert (snapshot.kind, snapshot.limit) == (kind, self.model.limits[account])

    @invariant()
    def members_stay_within_their_limits(self) -> None:
        for account, kind in self.model.kinds.items():
            state = self.ledger.account(account)
            if kind == "member":
                assert state.limit is not None and state.available >= state.limit, state

    @invariant()
    def holds_are_resolved_at_most_once(self) -> None:
        transfers = self.ledger.transfers()
        by_id = {t.id: t for t in transfers}
        resolutions = Counter(t.pending_id for t in transfers if t.pending_id is not None)
        for pending_id, count in resolutions.items():
            assert count == 1, f"{pending_id} resolved {count} times (post and void?)"
            assert by_id[pending_id].phase == "pending"

    @invariant()
    def reversals_never_exceed_their_originals(self) -> None:
        transfers = self.ledger.transfers()
        by_id = {t.id: t for t in transfers}
        reversed_ = Counter[str]()
        for t in transfers:
            if t.reverses_id is not None:
                original = by_id[t.reverses_id]
                assert t.kind == "reversal" and original.kind != "reversal"
                assert original.phase in ("single", "post")
                assert (t.debit, t.credit) == (original.credit, original.debit)
                reversed_[original.id] += t.amount
                assert reversed_[original.id] <= original.amount, original

    @invariant()
    def keys_are_unique_never_buried_and_hash_their_requests(self) -> None:
        transfers = self.ledger.transfers()
        keys = [t.key for t in transfers]
        assert len(keys) == len(set(keys))
        assert not set(keys) & self.model.buried
        for t in transfers:
            assert t.body_hash == body_hash(self.model.records[t.key][0])

    @invariant()
    def the_ledger_holds_what_the_model_expects(self) -> None:
        assert self.ledger.transfers() == self.model.transfers


def machine_for(factory: str) -> type[LedgerMachine]:
    """:class:`LedgerMachine` driving the ledger registered as ``factory``."""
    return type(f"LedgerMachine_{factory}", (LedgerMachine,), {"factory_name": factory})


def machine_test(factory: str) -> type[unittest.TestCase]:
    """The machine's test case against the ledger registered as ``factory`` in LEDGER_FACTORIES."""
    case: type[unittest.TestCase] = machine_for(factory).TestCase
    case.settings = SETTINGS  # type: ignore[attr-defined]
    return case


TestMemoryLedgerMachine = machine_test("memory")


class DriftingSnapshot(MemoryLedger):
    """Sabotage: a member's snapshot is one point off once it has points."""

    def account(self, account_id: str) -> AccountState:
        state = super().account(account_id)
        return replace(state, posted=state.posted + 1) if state.posted > 0 else state


class ForgetfulList(MemoryLedger):
    """Sabotage: the list of transfers misses the latest."""

    def transfers(self) -> list[Transfer]:
        return super().transfers()[:-1]


@pytest.mark.parametrize("sabotaged", [DriftingSnapshot, ForgetfulList], ids=lambda c: c.__name__)
def test_the_invariants_catch_a_ledger_the_oracle_cannot(
    sabotaged: type[MemoryLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sabotage answers every request correctly; only the invariants can see it."""
    monkeypatch.setitem(LEDGER_FACTORIES, "sabotaged", sabotaged)
    quick = settings(SETTINGS, max_examples=50, phases=[Phase.generate], database=None)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(machine_for("sabotaged"), settings=quick)
