"""The points ledger, pure: accounts, transfers, holds, reversals and limits as data and rules.

Double-entry in whole points (1 point ≈ ¥1), modelled on TigerBeetle and Cyclos (design:
points.md, "The ledger" and "Insider controls"):

- Every transfer moves ``amount > 0`` points from a *debit* account to a *credit* account.
  Credits add, debits subtract, so the sum of ``posted`` over all accounts is always 0 and the
  negative balance of :data:`ISSUANCE` is the number of points in circulation.
- Only the flows in :data:`FLOWS` exist. There is no member-to-member flow and no flow out of the
  ledger: points are not money.
- A *pending* transfer (a hold) counts against the debit account's available balance
  (``posted - pending_debits``); it is later *posted* or *voided*, never both. Limits apply to
  the available balance. Holds are phases of a transfer, as in TigerBeetle, so the design's
  ``holds`` escrow account is not needed: the escrow is each account's ``pending_*`` columns.
- Nothing is updated or deleted. A mistake is fixed by a *reversal* that names the original by
  its idempotency key (as a terminal that timed out would), never for more than what remains.
  A reversal that arrives before its original leaves a :class:`Tombstone`: the late original is
  refused.
- **One key space.** Every request carries a client-chosen idempotency key, kept forever. A key
  identifies exactly one record of any type (transfer, limit change or tombstone). The same key
  with the same body returns the existing record; with another body it raises
  :class:`Conflict` (``key_conflict``). A refused request records nothing: its key stays free.
  A key buried by a tombstone can never be recorded.

The ``plan_*`` functions take what the ledger holds (looked up by the adapter, in one
transaction) and return the record to store, or raise. :func:`effects` is the only place that
knows how a record moves balances; :class:`MemoryLedger` and the SQLite adapter both use it.

Each ``plan_*`` checks in a fixed order, so that every adapter raises the same error for the
same request: the idempotent repeat first, then the tombstone, then the request's own values,
then the accounts and records it names, then balances.

Example:
    >>> ledger = MemoryLedger()
    >>> _ = ledger.open_account("mem:ana", "member")
    >>> t = ledger.transfer(
    ...     TransferRequest("v1", "valuation_credit", ISSUANCE, "mem:ana", 30, "staff:li"), 0
    ... )
    >>> ledger.account("mem:ana").available, ledger.account(ISSUANCE).posted
    (30, -30)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import ClassVar, Literal, NamedTuple, Protocol, TypeVar

# ---------------------------------------------------------------------------------------------
# Accounts

AccountKind = Literal["member", "system"]
Phase = Literal["single", "pending", "post", "void"]

ISSUANCE = "sys:issuance"
"""Valuation credits and subsidy funding come from here; its negative balance is circulation."""
REDEMPTION = "sys:redemption"
"""Points spent on items end here."""
SUBSIDY_POOL = "sys:subsidy_pool"
"""Funded from issuance on behalf of the community or a sponsor; pays subsidy grants."""
PENALTIES = "sys:penalties"
"""Penalties (for example a partial no-show penalty) end here."""
SYSTEM_ACCOUNTS: tuple[str, ...] = (ISSUANCE, REDEMPTION, SUBSIDY_POOL, PENALTIES)

MEMBER_PREFIX = "mem:"
MEMBER = "member"
"""The side of a flow that is any member account (``mem:<person_id>``)."""

MAX_AMOUNT = 1_000_000_000
"""The largest amount of one transfer and the largest magnitude of a limit.

Python integers are unbounded, SQLite's are 64-bit: this bound keeps every balance far inside
SQLite's range (about 9.2 billion transfers of the largest size would be needed to overflow).
"""

DEFAULT_MEMBER_LIMIT = 0
"""A member may not go below 0 unless a recorded limit change says so."""


def member_account(person_id: str) -> str:
    """Return the account id of a person.

    Example:
        >>> member_account("p_1")
        'mem:p_1'
    """
    return MEMBER_PREFIX + person_id


def account_kind(account_id: str) -> AccountKind | None:
    """Tell which kind of account an id names, or None if it names none.

    Example:
        >>> account_kind(ISSUANCE), account_kind("mem:p_1"), account_kind("ext:bank")
        ('system', 'member', None)
    """
    if account_id in SYSTEM_ACCOUNTS:
        return "system"
    if account_id.startswith(MEMBER_PREFIX) and len(account_id) > len(MEMBER_PREFIX):
        return "member"
    return None


@dataclass(frozen=True)
class AccountState:
    """An account's balance snapshot.

    Attributes:
        id: ``mem:<person_id>`` or one of :data:`SYSTEM_ACCOUNTS`.
        kind: "member" or "system".
        posted: credits minus debits of single and posted transfers.
        pending_debits: amounts of unresolved holds debiting this account.
        pending_credits: amounts of unresolved holds crediting this account (not yet usable).
        limit: the lowest available balance allowed; None means unlimited (system accounts by
            default; never a member).

    Example:
        >>> AccountState("mem:ana", "member", 50, 20, 0, 0).available
        30
    """

    id: str
    kind: AccountKind
    posted: int
    pending_debits: int
    pending_credits: int
    limit: int | None

    @property
    def available(self) -> int:
        """``posted - pending_debits``: what the account may still spend."""
        return self.posted - self.pending_debits


# ---------------------------------------------------------------------------------------------
# Kinds and flows

FLOWS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "valuation_credit": (ISSUANCE, MEMBER),
        "time_credit": (ISSUANCE, MEMBER),  # hours given, confirmed by both parties
        "skill_credit": (ISSUANCE, MEMBER),  # a skill used for a neighbour
        "subsidy_grant": (SUBSIDY_POOL, MEMBER),
        "subsidy_funding": (ISSUANCE, SUBSIDY_POOL),
        "redemption": (MEMBER, REDEMPTION),  # usually a hold, posted at pickup
        "refund": (REDEMPTION, MEMBER),
        "penalty": (MEMBER, PENALTIES),
        "expiry": (MEMBER, ISSUANCE),  # the dormancy sink
    }
)
"""kind -> (debit side, credit side); a side is a system account id or :data:`MEMBER`."""

REVERSAL = "reversal"
"""The kind of a reversal: the original's accounts swapped (made by :func:`plan_reversal`)."""
KINDS: tuple[str, ...] = (*FLOWS, REVERSAL)

ISSUING_KINDS = frozenset(
    {"valuation_credit", "time_credit", "skill_credit", "subsidy_grant", "refund"}
)
"""Kinds that put points into a member account on someone's decision (insider-controlled)."""
CAPPED_KINDS = frozenset({"valuation_credit", "time_credit", "skill_credit", "subsidy_grant"})
"""Kinds that count against an actor's daily issuance cap."""
CONTROLLED_KINDS = ISSUING_KINDS | {"subsidy_funding"}
"""Kinds :func:`check_insider` looks at; all others only take points from members."""


# ---------------------------------------------------------------------------------------------
# Errors


class LedgerError(Exception):
    """Root of the ledger's errors. ``code`` is a stable machine string (see :data:`ERROR_CODES`).

    Example:
        >>> Refused("limit", "too low").code
        'limit'
    """

    code: str = "ledger_error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Conflict(LedgerError):
    """The request contradicts what is recorded: a reused key, a resolved hold, a spent original."""


class Refused(LedgerError):
    """The request breaks a ledger rule; nothing was recorded and its key stays free."""


class NotFound(LedgerError, LookupError):
    """The request names an account or pending transfer the ledger does not hold."""


ERROR_CODES: Mapping[str, type[LedgerError]] = MappingProxyType(
    {
        "key_conflict": Conflict,  # same key, different body
        "voided": Conflict,  # post or void of a voided hold
        "posted": Conflict,  # void or post of a posted hold
        "already_reversed": Conflict,  # nothing of the original remains
        "account_exists": Conflict,  # open_account with another kind or limit
        "limit": Refused,  # below an account's limit, or a limit that cannot be set
        "flow": Refused,  # no such kind, or not between these accounts
        "amount": Refused,  # not a whole number from 1 to MAX_AMOUNT
        "same_account": Refused,
        "account": Refused,  # not a member or system account id, or the wrong kind
        "reversal_exceeds": Refused,
        "late_original": Refused,  # the key was reversed before it arrived
        "not_pending": Refused,
        "not_reversible": Refused,
        "insider_self": Refused,
        "insider_second_approver": Refused,
        "insider_cap": Refused,
        "not_found": NotFound,
    }
)
"""Every code the ledger raises, with its class. The HTTP layer maps the classes."""


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class TransferRequest:
    """Move ``amount`` points from ``debit`` to ``credit`` now (or hold them: ``pending``).

    Attributes:
        key: the client's idempotency key, e.g. ``"dev-a1:trace-42"``.
        kind: one of :data:`FLOWS`.
        refs: what it belongs to, as (name, value) pairs such as ("item", id),
            ("reservation", id), ("dispute", id); stored sorted.
        actor: who did it (``staff:…``, ``person:…``, ``device:…``).
        approved_by: a second approver, when one was needed.
        on_behalf_of: the resident a proxy acted for.

    Example:
        >>> TransferRequest("k", "redemption", "mem:ana", REDEMPTION, 5, "person:ana",
        ...                 refs=(("reservation", "r1"), ("item", "i1")), pending=True).refs
        (('item', 'i1'), ('reservation', 'r1'))
    """

    TAG: ClassVar[str] = "transfer"

    key: str
    kind: str
    debit: str
    credit: str
    amount: int
    actor: str
    refs: tuple[tuple[str, str], ...] = ()
    approved_by: str | None = None
    on_behalf_of: str | None = None
    pending: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "refs", tuple(sorted((str(n), str(v)) for n, v in self.refs)))


@dataclass(frozen=True)
class PostRequest:
    """Post a pending transfer in full (the confirmed pickup)."""

    TAG: ClassVar[str] = "post"

    key: str
    pending_id: str
    actor: str


@dataclass(frozen=True)
class VoidRequest:
    """Void a pending transfer (expiry, no-show, fault)."""

    TAG: ClassVar[str] = "void"

    key: str
    pending_id: str
    actor: str
    reason: str


@dataclass(frozen=True)
class ReversalRequest:
    """Reverse the transfer recorded under ``original_key``, in full (None) or in part."""

    TAG: ClassVar[str] = "reversal"

    key: str
    original_key: str
    actor: str
    reason: str
    amount: int | None = None


@dataclass(frozen=True)
class LimitRequest:
    """Set an account's limit (the lowest available balance allowed; None = unlimited)."""

    TAG: ClassVar[str] = "limit"

    key: str
    account: str
    limit: int | None
    actor: str
    reason: str


Request = TransferRequest | PostRequest | VoidRequest | ReversalRequest | LimitRequest

BODY_HASH_VERSION = 1


def body_hash(request: Request) -> str:
    """SHA-256 (hex) of a request's body: every field except ``key``, and the request's type.

    The key identifies a request, the body is compared with what the key first recorded. The
    canonical encoding is UTF-8 JSON, keys sorted, no spaces, tuples as arrays::

        {"body":{...every field but key...},"type":"transfer","v":1}

    Hashes are stored forever: never change this encoding without a new ``v``.

    Example:
        >>> a = PostRequest("k1", "trf_1", "device:a")
        >>> body_hash(a) == body_hash(PostRequest("k2", "trf_1", "device:a"))
        True
        >>> body_hash(a) == body_hash(PostRequest("k1", "trf_2", "device:a"))
        False
    """
    body = {f.name: getattr(request, f.name) for f in fields(request) if f.name != "key"}
    document = {"v": BODY_HASH_VERSION, "type": request.TAG, "body": body}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Transfer:
    """One immutable ledger entry.

    Attributes:
        phase: "single" (moves posted balances), "pending" (a hold), "post" or "void" (resolve
            the hold named by ``pending_id``; they carry its accounts, amount, kind and refs).
        reverses_id: for a reversal (kind "reversal"), the id of the transfer it reverses.
        reason: why, for voids and reversals.
        body_hash: :func:`body_hash` of the request that made it.
    """

    id: str
    key: str
    kind: str
    debit: str
    credit: str
    amount: int
    phase: Phase
    pending_id: str | None
    reverses_id: str | None
    refs: tuple[tuple[str, str], ...]
    actor: str
    approved_by: str | None
    on_behalf_of: str | None
    reason: str | None
    body_hash: str
    created_ms: int


@dataclass(frozen=True)
class Tombstone:
    """A reversal that arrived before its original: ``key`` is buried, the original is refused.

    Attributes:
        key: the original's idempotency key (buried: nothing may ever be recorded under it).
        reversal_key: the idempotency key of the reversal request (its record in the key space).
    """

    key: str
    reversal_key: str
    actor: str
    reason: str
    body_hash: str
    created_ms: int


@dataclass(frozen=True)
class LimitChange:
    """One recorded change of an account's limit (every change is logged)."""

    id: str
    key: str
    account: str
    old_limit: int | None
    new_limit: int | None
    actor: str
    reason: str
    created_ms: int
    body_hash: str


LedgerRecord = Transfer | Tombstone | LimitChange
"""Whatever an idempotency key can hold (a tombstone is held under its ``reversal_key``)."""


def record_key(record: LedgerRecord) -> str:
    """The idempotency key a record is held under in the one key space.

    Example:
        >>> record_key(Tombstone("orig", "rev", "staff:li", "timeout", "h", 0))
        'rev'
    """
    return record.reversal_key if isinstance(record, Tombstone) else record.key


# ---------------------------------------------------------------------------------------------
# Checks shared by the plans

_R = TypeVar("_R", Transfer, Tombstone, LimitChange)


def _repeat(key: str, existing: LedgerRecord | None, digest: str, want: type[_R]) -> _R | None:
    """The existing record if this is a repeat of its request; Conflict if the key is taken."""
    if existing is None:
        return None
    if isinstance(existing, want) and existing.body_hash == digest:
        return existing
    raise Conflict("key_conflict", f"idempotency key {key!r} was used for a different request")


def _check_not_buried(key: str, is_tombstoned: bool) -> None:
    if is_tombstoned:
        raise Refused(
            "late_original",
            f"{key!r} was reversed before it arrived; the late original is refused",
        )


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_amount(amount: int) -> None:
    if not _is_whole(amount) or not 0 < amount <= MAX_AMOUNT:
        raise Refused(
            "amount", f"amount must be a whole number from 1 to {MAX_AMOUNT}, not {amount!r}"
        )


def _side_matches(side: str, account_id: str) -> bool:
    return account_kind(account_id) == "member" if side == MEMBER else account_id == side


def _check_flow(kind: str, debit: str, credit: str) -> None:
    if kind == REVERSAL:
        raise Refused("flow", "a reversal is made with a ReversalRequest naming the original")
    flow = FLOWS.get(kind)
    if flow is None:
        raise Refused("flow", f"no transfer kind {kind!r}")
    if _side_matches(flow[0], debit) and _side_matches(flow[1], credit):
        return
    if account_kind(debit) == "member" and account_kind(credit) == "member":
        why = "points are not money: no transfer from one member to another"
    elif account_kind(debit) is None or account_kind(credit) is None:
        why = "no points enter or leave the ledger (no cash-out)"
    else:
        why = f"{kind} moves points from {flow[0]} to {flow[1]}"
    raise Refused("flow", f"{kind} from {debit} to {credit} refused: {why}")


def _require(state: AccountState | None, account_id: str) -> AccountState:
    if state is None:
        raise NotFound("not_found", f"no account {account_id!r}")
    if state.id != account_id:
        raise ValueError(f"state of {state.id!r} given for {account_id!r}")
    return state


def _check_limit(state: AccountState, amount: int) -> None:
    if state.limit is not None and state.available - amount < state.limit:
        raise Refused(
            "limit",
            f"{state.id} has {state.available} available; debiting {amount} would take it"
            f" below its limit {state.limit}",
        )


def _check_new_limit(kind: AccountKind, limit: int | None, available: int) -> None:
    """A limit must exist for a member, be within bounds, and not exceed what is available."""
    if limit is None:
        if kind == "member":
            raise Refused("limit", "a member account always has a limit")
        return
    if not (_is_whole(limit) and -MAX_AMOUNT <= limit <= MAX_AMOUNT):
        raise Refused("limit", f"a limit must be a whole number within ±{MAX_AMOUNT}")
    if limit > available:
        raise Refused(
            "limit", f"limit {limit} is above the available balance {available}; lower it first"
        )


# ---------------------------------------------------------------------------------------------
# Plans


LimitArg = int | None | Literal["default"]


def plan_open(
    account_id: str,
    kind: AccountKind,
    limit: LimitArg = "default",
    *,
    existing: AccountState | None,
) -> AccountState:
    """Plan opening an account (idempotent): the new, empty state, or the existing one.

    ``limit="default"`` means 0 for a member and None (unlimited) for a system account. An
    opening limit is recorded with the account; later changes go through :func:`plan_limit`.

    Raises:
        Refused: "account" (id and kind do not match), "limit" (None for a member, out of
            bounds, or above 0).
        Conflict: "account_exists" (already open with another kind, or another explicit limit).

    Example:
        >>> plan_open("mem:ana", "member", existing=None).limit
        0
        >>> plan_open(ISSUANCE, "system", existing=None).limit is None
        True
    """
    if account_kind(account_id) != kind:
        raise Refused("account", f"{account_id!r} is not a {kind} account id")
    if existing is not None:
        if existing.kind != kind or (limit != "default" and limit != existing.limit):
            raise Conflict("account_exists", f"{account_id} is already open as {existing}")
        return existing
    if limit == "default":
        limit = DEFAULT_MEMBER_LIMIT if kind == "member" else None
    _check_new_limit(kind, limit, available=0)
    return AccountState(account_id, kind, 0, 0, 0, limit)


def plan_transfer(
    req: TransferRequest,
    *,
    existing: LedgerRecord | None,
    debit: AccountState | None,
    credit: AccountState | None,
    is_tombstoned: bool,
    new_id: str,
    now_ms: int,
) -> Transfer:
    """Plan a single or pending transfer.

    Args:
        req: the request.
        existing: the record held under ``req.key``, if any.
        debit: the state of ``req.debit`` (None if no such account).
        credit: the state of ``req.credit`` (None if no such account).
        is_tombstoned: whether ``req.key`` was buried by a reversal that came first.
        new_id: the id to give a new transfer.
        now_ms: the time to record.

    Returns:
        The new transfer, or the existing one for a repeat.

    Raises:
        Conflict: "key_conflict".
        Refused: "late_original", "amount", "same_account", "flow", "limit" (the debit
            account's available balance after the debit would be below its limit).
        NotFound: an account.

    Example:
        >>> ana = AccountState("mem:ana", "member", 10, 0, 0, 0)
        >>> red = AccountState(REDEMPTION, "system", 0, 0, 0, None)
        >>> req = TransferRequest("k", "redemption", "mem:ana", REDEMPTION, 11, "person:ana")
        >>> plan_transfer(req, existing=None, debit=ana, credit=red, is_tombstoned=False,
        ...               new_id="trf_1", now_ms=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        cloud_api.core.ledger.Refused: mem:ana has 10 available; debiting 11 would take it ...
    """
    digest = body_hash(req)
    found = _repeat(req.key, existing, digest, Transfer)
    if found is not None:
        return found
    _check_not_buried(req.key, is_tombstoned)
    _check_amount(req.amount)
    if req.debit == req.credit:
        raise Refused("same_account", f"{req.debit} cannot pay itself")
    _check_flow(req.kind, req.debit, req.credit)
    debit_state = _require(debit, req.debit)
    _require(credit, req.credit)
    _check_limit(debit_state, req.amount)
    return Transfer(
        id=new_id,
        key=req.key,
        kind=req.kind,
        debit=req.debit,
        credit=req.credit,
        amount=req.amount,
        phase="pending" if req.pending else "single",
        pending_id=None,
        reverses_id=None,
        refs=req.refs,
        actor=req.actor,
        approved_by=req.approved_by,
        on_behalf_of=req.on_behalf_of,
        reason=None,
        body_hash=digest,
        created_ms=now_ms,
    )


def _plan_resolution(
    req: PostRequest | VoidRequest,
    *,
    existing: LedgerRecord | None,
    is_tombstoned: bool,
    pending: Transfer | None,
    resolution: Transfer | None,
    new_id: str,
    now_ms: int,
) -> Transfer:
    digest = body_hash(req)
    found = _repeat(req.key, existing, digest, Transfer)
    if found is not None:
        return found
    _check_not_buried(req.key, is_tombstoned)
    if pending is None:
        raise NotFound("not_found", f"no transfer {req.pending_id!r}")
    if pending.id != req.pending_id:
        raise ValueError(f"transfer {pending.id!r} given for {req.pending_id!r}")
    if pending.phase != "pending":
        raise Refused("not_pending", f"{pending.id} is a {pending.phase} transfer, not a hold")
    if resolution is not None:
        if resolution.phase == "void":
            raise Conflict("voided", f"hold {pending.id} was voided ({resolution.key!r})")
        raise Conflict("posted", f"hold {pending.id} was posted ({resolution.key!r})")
    return Transfer(
        id=new_id,
        key=req.key,
        kind=pending.kind,
        debit=pending.debit,
        credit=pending.credit,
        amount=pending.amount,
        phase="post" if isinstance(req, PostRequest) else "void",
        pending_id=pending.id,
        reverses_id=None,
        refs=pending.refs,
        actor=req.actor,
        approved_by=None,
        on_behalf_of=None,
        reason=None if isinstance(req, PostRequest) else req.reason,
        body_hash=digest,
        created_ms=now_ms,
    )


def plan_post(
    req: PostRequest,
    *,
    existing: LedgerRecord | None,
    is_tombstoned: bool,
    pending: Transfer | None,
    resolution: Transfer | None,
    new_id: str,
    now_ms: int,
) -> Transfer:
    """Plan posting a hold in full: pending becomes posted, available balances do not change.

    Args:
        req: the request.
        existing: the record held under ``req.key``, if any.
        is_tombstoned: whether ``req.key`` was buried by a reversal that came first.
        pending: the transfer ``req.pending_id`` names (None if there is none).
        resolution: the post or void already recorded for it, if any.
        new_id: the id to give the post.
        now_ms: the time to record.

    Raises:
        Conflict: "key_conflict"; "voided" (no post after a void); "posted" (already posted
            under another key; the same key returns the first post).
        Refused: "late_original"; "not_pending" (the id names no hold).
        NotFound: the pending transfer.
    """
    return _plan_resolution(
        req,
        existing=existing,
        is_tombstoned=is_tombstoned,
        pending=pending,
        resolution=resolution,
        new_id=new_id,
        now_ms=now_ms,
    )


def plan_void(
    req: VoidRequest,
    *,
    existing: LedgerRecord | None,
    is_tombstoned: bool,
    pending: Transfer | None,
    resolution: Transfer | None,
    new_id: str,
    now_ms: int,
) -> Transfer:
    """Plan voiding a hold: its amount is released, nothing is posted.

    Arguments as for :func:`plan_post`.

    Raises:
        Conflict: "key_conflict"; "posted" (no void after a post); "voided" (already voided
            under another key).
        Refused: "late_original"; "not_pending".
        NotFound: the pending transfer.
    """
    return _plan_resolution(
        req,
        existing=existing,
        is_tombstoned=is_tombstoned,
        pending=pending,
        resolution=resolution,
        new_id=new_id,
        now_ms=now_ms,
    )


def plan_reversal(
    req: ReversalRequest,
    *,
    existing: LedgerRecord | None,
    is_tombstoned: bool,
    original: LedgerRecord | None,
    original_is_tombstoned: bool,
    reversed_so_far: int,
    debit: AccountState | None,
    credit: AccountState | None,
    new_id: str,
    now_ms: int,
) -> Transfer | Tombstone:
    """Plan reversing (part of) the transfer held under ``req.original_key``.

    The reversal debits the original's credit account and credits its debit account. It is a
    debit like any other: it may take a member below 0 only down to the member's limit, and is
    refused with "limit" otherwise (a social worker then resolves it, for example with a limit
    change or a later reversal once the member has points again). A hold is voided, not
    reversed; a reversal is not itself reversible (make a new transfer).

    Args:
        req: the request.
        existing: the record held under ``req.key``, if any.
        is_tombstoned: whether ``req.key`` was buried by a reversal that came first.
        original: the record held under ``req.original_key``, if any.
        original_is_tombstoned: whether ``req.original_key`` is already buried.
        reversed_so_far: the sum of the reversals of ``original`` already recorded.
        debit: the state of the original's credit account (None without an original).
        credit: the state of the original's debit account (None without an original).
        new_id: the id to give the reversal.
        now_ms: the time to record.

    Returns:
        The reversal; a :class:`Tombstone` if the original has not arrived (it will be
        refused when it does); or the existing record for a repeat.

    Raises:
        Conflict: "key_conflict"; "already_reversed" (nothing remains, or the original key is
            already buried by another reversal).
        Refused: "late_original", "amount", "not_reversible" (pending, void, a reversal, a
            limit change, or the request's own key), "reversal_exceeds", "limit".
        NotFound: an account of the original.

    Example:
        >>> req = ReversalRequest("rev:k9", "k9", "device:t1", "terminal timed out")
        >>> plan_reversal(req, existing=None, is_tombstoned=False, original=None,
        ...               original_is_tombstoned=False, reversed_so_far=0, debit=None,
        ...               credit=None, new_id="trf_9", now_ms=5).key
        'k9'
    """
    digest = body_hash(req)
    if isinstance(existing, Tombstone):
        tombstone = _repeat(req.key, existing, digest, Tombstone)
        if tombstone is not None:
            return tombstone
    found = _repeat(req.key, existing, digest, Transfer)
    if found is not None:
        return found
    _check_not_buried(req.key, is_tombstoned)
    if req.amount is not None:
        _check_amount(req.amount)
    if req.key == req.original_key:
        raise Refused("not_reversible", "a reversal cannot reverse itself")
    if original is None:
        if original_is_tombstoned:
            raise Conflict("already_reversed", f"{req.original_key!r} was already reversed")
        return Tombstone(
            key=req.original_key,
            reversal_key=req.key,
            actor=req.actor,
            reason=req.reason,
            body_hash=digest,
            created_ms=now_ms,
        )
    if not isinstance(original, Transfer):
        raise Refused("not_reversible", f"{req.original_key!r} names no transfer")
    if original.phase not in ("single", "post") or original.kind == REVERSAL:
        what = "a reversal" if original.kind == REVERSAL else f"a {original.phase} transfer"
        raise Refused(
            "not_reversible",
            f"{original.id} is {what}; only transfers that moved posted points can be reversed",
        )
    remaining = original.amount - reversed_so_far
    if remaining <= 0:
        raise Conflict("already_reversed", f"{original.id} is already reversed in full")
    amount = remaining if req.amount is None else req.amount
    if amount > remaining:
        raise Refused(
            "reversal_exceeds", f"only {remaining} of {original.id} remains to be reversed"
        )
    debit_state = _require(debit, original.credit)
    _require(credit, original.debit)
    _check_limit(debit_state, amount)
    return Transfer(
        id=new_id,
        key=req.key,
        kind=REVERSAL,
        debit=original.credit,
        credit=original.debit,
        amount=amount,
        phase="single",
        pending_id=None,
        reverses_id=original.id,
        refs=original.refs,
        actor=req.actor,
        approved_by=None,
        on_behalf_of=None,
        reason=req.reason,
        body_hash=digest,
        created_ms=now_ms,
    )


def plan_limit(
    req: LimitRequest,
    *,
    existing_change: LedgerRecord | None,
    is_tombstoned: bool,
    account: AccountState | None,
    new_id: str,
    now_ms: int,
) -> LimitChange:
    """Plan a limit change (every change is recorded, even one to the same value).

    A limit may be lowered (negative: a credit line) freely, and raised only up to the current
    available balance, so no account is ever left below its own limit. A member always has a
    limit; a system account may be unlimited (None) or limited (for example
    :data:`SUBSIDY_POOL` at 0, so it can only grant what was funded).

    Args:
        req: the request.
        existing_change: the record held under ``req.key``, if any.
        is_tombstoned: whether ``req.key`` was buried by a reversal that came first.
        account: the state of ``req.account`` (None if no such account).
        new_id: the id to give the change.
        now_ms: the time to record.

    Raises:
        Conflict: "key_conflict".
        Refused: "late_original", "limit".
        NotFound: the account.

    Example:
        >>> ana = AccountState("mem:ana", "member", 0, 0, 0, 0)
        >>> plan_limit(LimitRequest("l1", "mem:ana", -50, "staff:li", "trusted neighbour"),
        ...            existing_change=None, is_tombstoned=False, account=ana, new_id="lim_1",
        ...            now_ms=0).old_limit
        0
    """
    digest = body_hash(req)
    found = _repeat(req.key, existing_change, digest, LimitChange)
    if found is not None:
        return found
    _check_not_buried(req.key, is_tombstoned)
    state = _require(account, req.account)
    _check_new_limit(state.kind, req.limit, state.available)
    return LimitChange(
        id=new_id,
        key=req.key,
        account=state.id,
        old_limit=state.limit,
        new_limit=req.limit,
        actor=req.actor,
        reason=req.reason,
        created_ms=now_ms,
        body_hash=digest,
    )


# ---------------------------------------------------------------------------------------------
# Balance arithmetic: the single source of truth


class Delta(NamedTuple):
    """What one transfer does to one account's snapshot (a tuple, ready for SQL parameters)."""

    account: str
    d_posted: int
    d_pending_debits: int
    d_pending_credits: int


def effects(transfer: Transfer) -> tuple[Delta, Delta]:
    """How a transfer changes its two accounts: (debit side, credit side).

    A post or void carries its hold's accounts and amount, so it needs nothing else.

    Example:
        >>> t = Transfer("trf_2", "k", "redemption", "mem:ana", REDEMPTION, 5, "post", "trf_1",
        ...              None, (), "device:a", None, None, None, "h", 0)
        >>> effects(t)
        (Delta(account='mem:ana', d_posted=-5, d_pending_debits=-5, d_pending_credits=0), \
Delta(account='sys:redemption', d_posted=5, d_pending_debits=0, d_pending_credits=-5))
    """
    a = transfer.amount
    if transfer.phase == "single":
        debit, credit = (-a, 0, 0), (a, 0, 0)
    elif transfer.phase == "pending":
        debit, credit = (0, a, 0), (0, 0, a)
    elif transfer.phase == "post":
        debit, credit = (-a, -a, 0), (a, 0, -a)
    else:
        debit, credit = (0, -a, 0), (0, 0, -a)
    return Delta(transfer.debit, *debit), Delta(transfer.credit, *credit)


def apply(state: AccountState, delta: Delta) -> AccountState:
    """Return the state after one delta.

    Example:
        >>> s = AccountState("mem:ana", "member", 0, 0, 0, 0)
        >>> apply(s, Delta("mem:ana", 7, 0, 0)).posted
        7
    """
    if delta.account != state.id:
        raise ValueError(f"delta for {delta.account!r} applied to {state.id!r}")
    return AccountState(
        state.id,
        state.kind,
        state.posted + delta.d_posted,
        state.pending_debits + delta.d_pending_debits,
        state.pending_credits + delta.d_pending_credits,
        state.limit,
    )


def derive(
    account_id: str, kind: AccountKind, limit: int | None, transfers: Iterable[Transfer]
) -> AccountState:
    """Recompute an account's state from the transfers alone (to check a snapshot).

    Example:
        >>> derive("mem:ana", "member", 0, []).posted
        0
    """
    state = AccountState(account_id, kind, 0, 0, 0, limit)
    for transfer in transfers:
        for delta in effects(transfer):
            if delta.account == account_id:
                state = apply(state, delta)
    return state


# ---------------------------------------------------------------------------------------------
# Insider controls


@dataclass(frozen=True)
class InsiderPolicy:
    """Insider limits (policy, published).

    Attributes:
        second_approver_over: above this amount a controlled transfer needs a second approver.
        daily_issuance_cap: per actor and day, for valuation credits and subsidy grants.
    """

    second_approver_over: int = 200
    daily_issuance_cap: int = 2000


def check_insider(
    req: TransferRequest,
    *,
    policy: InsiderPolicy,
    actor_accounts: frozenset[str],
    issued_today_by_actor: int,
    approver_accounts: frozenset[str] = frozenset(),
) -> None:
    """Refuse a transfer an insider may not make (call it before the ledger, in one transaction).

    Only :data:`CONTROLLED_KINDS` are checked: the kinds that give points (to a member or to the
    subsidy pool). The others only take points from a member, so they cannot enrich the actor. A
    device settling a pickup (actor ``device:…``, kind redemption) is therefore never subject to
    these rules; there is deliberately no exemption by actor, so a device that asked to issue
    would be held to the same rules as a person.

    Args:
        req: the transfer request.
        policy: the limits.
        actor_accounts: the actor's own account and the accounts they act for.
        issued_today_by_actor: the actor's valuation credits and subsidy grants today
            (see :func:`issued_by`).
        approver_accounts: the same for ``req.approved_by``.

    Raises:
        Refused: "insider_self" (points into the actor's or the approver's own accounts),
            "insider_second_approver" (above the threshold without an approver other than the
            actor), "insider_cap" (the day's issuance would exceed the cap).

    Example:
        >>> req = TransferRequest("k", "valuation_credit", ISSUANCE, "mem:li", 10, "staff:li")
        >>> check_insider(req, policy=InsiderPolicy(), actor_accounts=frozenset({"mem:li"}),
        ...               issued_today_by_actor=0)
        Traceback (most recent call last):
        cloud_api.core.ledger.Refused: staff:li may not give valuation_credit points to mem:li
    """
    if req.kind not in CONTROLLED_KINDS:
        return
    if req.kind in ISSUING_KINDS:
        if req.credit in actor_accounts:
            raise Refused(
                "insider_self", f"{req.actor} may not give {req.kind} points to {req.credit}"
            )
        if req.approved_by is not None and req.credit in approver_accounts:
            raise Refused(
                "insider_self",
                f"{req.approved_by} may not approve {req.kind} points to {req.credit}",
            )
    if req.amount > policy.second_approver_over and req.approved_by in (None, req.actor):
        raise Refused(
            "insider_second_approver",
            f"{req.amount} points is above {policy.second_approver_over}: a second approver"
            " is needed",
        )
    if req.kind in CAPPED_KINDS and issued_today_by_actor + req.amount > policy.daily_issuance_cap:
        raise Refused(
            "insider_cap",
            f"{req.actor} has issued {issued_today_by_actor} today; the cap is"
            f" {policy.daily_issuance_cap}",
        )


def check_insider_limit(req: LimitRequest, *, actor_accounts: frozenset[str]) -> None:
    """Refuse a limit change on the actor's own accounts (a credit line is issuance in disguise).

    Raises:
        Refused: "insider_self".
    """
    if req.account in actor_accounts:
        raise Refused("insider_self", f"{req.actor} may not change the limit of {req.account}")


def issued_by(transfers: Iterable[Transfer], actor: str, since_ms: int, until_ms: int) -> int:
    """The points an actor issued (:data:`CAPPED_KINDS`) in ``[since_ms, until_ms)``.

    Holds count when made (a void does not give the allowance back); posts are not counted twice.

    Example:
        >>> issued_by([], "staff:li", 0, 86_400_000)
        0
    """
    return sum(
        t.amount
        for t in transfers
        if t.actor == actor
        and t.kind in CAPPED_KINDS
        and t.phase in ("single", "pending")
        and since_ms <= t.created_ms < until_ms
    )


# ---------------------------------------------------------------------------------------------
# The port and its in-memory implementation


class LedgerPort(Protocol):
    """What the cloud's services need from a ledger; :class:`MemoryLedger` and ``SqlLedger``."""

    def open_account(
        self, account_id: str, kind: AccountKind, limit: LimitArg = "default"
    ) -> AccountState:
        """Open an account (idempotent); see :func:`plan_open`."""
        ...

    def transfer(self, req: TransferRequest, now_ms: int) -> Transfer:
        """Record a single or pending transfer; see :func:`plan_transfer`."""
        ...

    def post(self, req: PostRequest, now_ms: int) -> Transfer:
        """Post a hold; see :func:`plan_post`."""
        ...

    def void(self, req: VoidRequest, now_ms: int) -> Transfer:
        """Void a hold; see :func:`plan_void`."""
        ...

    def reverse(self, req: ReversalRequest, now_ms: int) -> Transfer | Tombstone:
        """Reverse by the original's key; see :func:`plan_reversal`."""
        ...

    def set_limit(self, req: LimitRequest, now_ms: int) -> LimitChange:
        """Change a limit; see :func:`plan_limit`."""
        ...

    def account(self, account_id: str) -> AccountState:
        """The balance snapshot of an account (NotFound if there is none)."""
        ...

    def transfers(self) -> list[Transfer]:
        """Every transfer, in the order recorded."""
        ...

    def derived(self, account_id: str) -> AccountState:
        """The account recomputed from the transfers (and the limit log) alone."""
        ...


class MemoryLedger:
    """The ledger in memory, built only from the ``plan_*`` functions and :func:`effects`.

    The four system accounts are open from the start. Ids are deterministic counters
    (``trf_1``, ``lim_1``, ...).

    Example:
        >>> ledger = MemoryLedger()
        >>> _ = ledger.open_account("mem:ana", "member", limit=-20)
        >>> hold = ledger.transfer(TransferRequest("h1", "redemption", "mem:ana", REDEMPTION, 15,
        ...                                        "person:ana", pending=True), 0)
        >>> ledger.account("mem:ana").available
        -15
        >>> ledger.void(VoidRequest("v1", hold.id, "device:a", "no-show"), 1).phase
        'void'
    """

    def __init__(self) -> None:
        self._accounts: dict[str, AccountState] = {}
        self._opening_limits: dict[str, int | None] = {}
        self._transfers: list[Transfer] = []
        self._by_id: dict[str, Transfer] = {}
        self._keys: dict[str, LedgerRecord] = {}
        self._buried: dict[str, Tombstone] = {}
        self._resolutions: dict[str, Transfer] = {}
        self._reversed: dict[str, int] = {}
        self._limit_changes: list[LimitChange] = []
        for account_id in SYSTEM_ACCOUNTS:
            self.open_account(account_id, "system")

    def open_account(
        self, account_id: str, kind: AccountKind, limit: LimitArg = "default"
    ) -> AccountState:
        """Open an account (idempotent); see :func:`plan_open`."""
        existing = self._accounts.get(account_id)
        state = plan_open(account_id, kind, limit, existing=existing)
        if existing is None:
            self._accounts[account_id] = state
            self._opening_limits[account_id] = state.limit
        return state

    def transfer(self, req: TransferRequest, now_ms: int) -> Transfer:
        """Record a single or pending transfer; see :func:`plan_transfer`."""
        return self._record(
            plan_transfer(
                req,
                existing=self._keys.get(req.key),
                debit=self._accounts.get(req.debit),
                credit=self._accounts.get(req.credit),
                is_tombstoned=req.key in self._buried,
                new_id=self._next_transfer_id(),
                now_ms=now_ms,
            )
        )

    def post(self, req: PostRequest, now_ms: int) -> Transfer:
        """Post a hold; see :func:`plan_post`."""
        return self._record(
            plan_post(
                req,
                existing=self._keys.get(req.key),
                is_tombstoned=req.key in self._buried,
                pending=self._by_id.get(req.pending_id),
                resolution=self._resolutions.get(req.pending_id),
                new_id=self._next_transfer_id(),
                now_ms=now_ms,
            )
        )

    def void(self, req: VoidRequest, now_ms: int) -> Transfer:
        """Void a hold; see :func:`plan_void`."""
        return self._record(
            plan_void(
                req,
                existing=self._keys.get(req.key),
                is_tombstoned=req.key in self._buried,
                pending=self._by_id.get(req.pending_id),
                resolution=self._resolutions.get(req.pending_id),
                new_id=self._next_transfer_id(),
                now_ms=now_ms,
            )
        )

    def reverse(self, req: ReversalRequest, now_ms: int) -> Transfer | Tombstone:
        """Reverse by the original's key; see :func:`plan_reversal`."""
        original = self._keys.get(req.original_key)
        debit = credit = None
        reversed_so_far = 0
        if isinstance(original, Transfer):
            debit = self._accounts.get(original.credit)
            credit = self._accounts.get(original.debit)
            reversed_so_far = self._reversed.get(original.id, 0)
        result = plan_reversal(
            req,
            existing=self._keys.get(req.key),
            is_tombstoned=req.key in self._buried,
            original=original,
            original_is_tombstoned=req.original_key in self._buried,
            reversed_so_far=reversed_so_far,
            debit=debit,
            credit=credit,
            new_id=self._next_transfer_id(),
            now_ms=now_ms,
        )
        if isinstance(result, Tombstone):
            if result.reversal_key not in self._keys:
                self._keys[result.reversal_key] = result
                self._buried[result.key] = result
            return result
        return self._record(result)

    def set_limit(self, req: LimitRequest, now_ms: int) -> LimitChange:
        """Change a limit; see :func:`plan_limit`."""
        change = plan_limit(
            req,
            existing_change=self._keys.get(req.key),
            is_tombstoned=req.key in self._buried,
            account=self._accounts.get(req.account),
            new_id=f"lim_{len(self._limit_changes) + 1}",
            now_ms=now_ms,
        )
        if change.key not in self._keys:
            self._keys[change.key] = change
            self._limit_changes.append(change)
            state = self._accounts[change.account]
            self._accounts[change.account] = AccountState(
                state.id,
                state.kind,
                state.posted,
                state.pending_debits,
                state.pending_credits,
                change.new_limit,
            )
        return change

    def account(self, account_id: str) -> AccountState:
        """The balance snapshot of an account (NotFound if there is none)."""
        state = self._accounts.get(account_id)
        if state is None:
            raise NotFound("not_found", f"no account {account_id!r}")
        return state

    def transfers(self) -> list[Transfer]:
        """Every transfer, in the order recorded."""
        return list(self._transfers)

    def derived(self, account_id: str) -> AccountState:
        """The account recomputed from the transfers and the limit log alone."""
        kind = self.account(account_id).kind
        limit = self._opening_limits[account_id]
        for change in self._limit_changes:
            if change.account == account_id:
                limit = change.new_limit
        return derive(account_id, kind, limit, self._transfers)

    def limit_changes(self) -> list[LimitChange]:
        """Every limit change, in the order recorded."""
        return list(self._limit_changes)

    def tombstones(self) -> list[Tombstone]:
        """Every tombstone, in the order recorded."""
        return list(self._buried.values())

    def _next_transfer_id(self) -> str:
        return f"trf_{len(self._transfers) + 1}"

    def _record(self, transfer: Transfer) -> Transfer:
        if transfer.key in self._keys:  # an idempotent repeat: nothing changes
            return transfer
        self._keys[transfer.key] = transfer
        self._transfers.append(transfer)
        self._by_id[transfer.id] = transfer
        for delta in effects(transfer):
            self._accounts[delta.account] = apply(self._accounts[delta.account], delta)
        if transfer.pending_id is not None:
            self._resolutions[transfer.pending_id] = transfer
        if transfer.reverses_id is not None:
            self._reversed[transfer.reverses_id] = (
                self._reversed.get(transfer.reverses_id, 0) + transfer.amount
            )
        return transfer
