"""The durable proposal queue: a confirmed proposal survives kill -9 and cloud outages.

When a resident confirms a proposal, :meth:`ProposalQueue.enqueue` writes it **before** the kiosk
says anything: its photos as ``<data_dir>/photos/<sha256>.jpg`` (temporary file, fsync, rename,
fsync of the directory), then one row in ``<data_dir>/terminal.sqlite3`` (WAL,
``synchronous=FULL``, committed before it returns). From then on nothing can lose it: the
:class:`Sender` uploads the photos the cloud lacks, then posts the proposal, until the cloud has
answered. The cloud is idempotent on ``proposal_id`` (the same body returns the first answer),
so a proposal sent again after a crash or a lost answer is recorded once.

**States** (``state`` column)::

    queued ──photos uploaded──▶ photos_uploaded ──POST sent──▶ submitted ──answered──▶ done
       │                                                           │
       └──── ticket expired / invalid ──▶ needs_signin             └── refused (the cloud's code)

``submitted`` means a POST may have reached the cloud; a crash or a timeout there just sends it
again. ``needs_signin`` waits for the resident to sign in again at the kiosk
(:meth:`ProposalQueue.renew_ticket`); ``refused`` keeps the cloud's error code and the photos for
a social worker to look at. Photos are deleted once their proposal is ``done`` (and no other
waiting proposal uses them).

**Back-off**: a failed attempt is retried after 1 s, 5 s, 30 s, 2 min, then every 5 min
(:data:`BACKOFF_S`); a 429 waits at least its ``retry_after_s``. While the cloud is unreachable
the sender probes with one proposal at a time and logs the outage once when it starts and once
when it ends.

**open_now.** Only the kiosk's own first attempt, right after the confirmation while the
resident stands there, asks the cloud to open the door (``open_now=true``); every later attempt
sends ``open_now=false`` and the cloud sends the resident the code by message. A first attempt
whose answer was lost may still have reached the cloud with ``open_now=true``: a later one with
``false`` is then a different body (409 ``idempotency_conflict``), and the sender asks again with
the value the cloud has, which returns the first answer and opens nothing.

**Secrets.** The resident's ticket is stored with the row (it must outlive the kiosk session:
a proposal queued during an outage is submitted with it later). The database file is created
mode 0600 (SQLite gives its WAL the same mode), the ticket is blanked once the row is final, and
it is never logged. The drop-off code in the cloud's answer is handed to the kiosk in memory
(:attr:`Attempt.code`) and never stored.

Example:
    >>> queue = ProposalQueue(data_dir)
    >>> queue.enqueue("prp_x1", "res_1", ticket, body, {sha: jpeg}, now_ms=now)
    >>> sender = Sender(queue, client)
    >>> sender.attempt("prp_x1", open_now=True).state
    'done'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from valuation_terminal.client import CloudRefused, CloudUnavailable, TerminalClient
from valuation_terminal.core.rules import Inputs, Proposal

__all__ = [
    "BACKOFF_S",
    "FINAL_STATES",
    "PENDING_STATES",
    "Attempt",
    "ProposalQueue",
    "QueueError",
    "QueuedProposal",
    "Sender",
    "backoff_ms",
    "new_proposal_id",
    "proposal_body",
]

log = logging.getLogger(__name__)

State = Literal["queued", "photos_uploaded", "submitted", "done", "needs_signin", "refused"]
PENDING_STATES: Final[tuple[State, ...]] = ("queued", "photos_uploaded", "submitted")
"""States the sender works on."""
FINAL_STATES: Final[tuple[State, ...]] = ("done", "refused")
"""States nothing changes any more (``needs_signin`` waits for a new ticket)."""

BACKOFF_S: Final[tuple[int, ...]] = (1, 5, 30, 120, 300)
"""Wait after the 1st, 2nd, ... failed attempt; the last value repeats."""

KIOSK_HOLD_MS: Final = 30_000
"""A proposal the kiosk is about to send itself (with ``open_now``) is not due for the sender
thread before this, so the thread cannot send it first with ``open_now=false``."""

DONE_KEPT_MS: Final = 30 * 24 * 3600 * 1000
"""Done rows (without ticket or photos) are kept this long for the maintainer, then purged."""

DB_FILE: Final = "terminal.sqlite3"
PHOTOS_DIR: Final = "photos"
PROPOSAL_ID = re.compile(r"^prp_[A-Za-z0-9_-]{20,40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS proposals (
    proposal_id TEXT PRIMARY KEY,
    resident_id TEXT NOT NULL,
    ticket TEXT NOT NULL,
    body TEXT NOT NULL,
    photos TEXT NOT NULL,
    uploaded TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL CHECK (state IN
        ('queued', 'photos_uploaded', 'submitted', 'done', 'needs_signin', 'refused')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    error_code TEXT,
    answer TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS proposals_due ON proposals (state, next_attempt_ms);
"""


def proposal_body(
    proposal_id: str,
    *,
    title: str,
    category: str,
    size: str,
    inputs: Inputs,
    proposal: Proposal,
    photos: Sequence[str],
    weight_mg: int,
) -> dict[str, Any]:
    """The ``POST /proposals`` body as queued (``open_now`` is added per attempt).

    Example:
        >>> proposal_body("prp_" + "a" * 20, title="LEGO", category="toys", size="M",
        ...               inputs=inputs, proposal=proposal, photos=[sha], weight_mg=412300)["size"]
        'M'
    """
    return {
        "proposal_id": proposal_id,
        "title": title,
        "category": category,
        "size": size,
        "inputs": inputs.to_json(),
        "proposal": proposal.to_json(),
        "photos": list(photos),
        "weight_mg": weight_mg,
    }


def new_proposal_id() -> str:
    """A fresh idempotency key: ``prp_`` and 24 url-safe random characters."""
    return "prp_" + secrets.token_urlsafe(18)


def backoff_ms(failures: int) -> int:
    """How long to wait after ``failures`` failed attempts (1 s, 5 s, 30 s, 2 min, 5 min...).

    Example:
        >>> [backoff_ms(n) // 1000 for n in range(1, 8)]
        [1, 5, 30, 120, 300, 300, 300]
    """
    return BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1] * 1000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class QueueError(Exception):
    """A proposal the queue refuses to take (bad id, photos not matching their hash...)."""


@dataclass(frozen=True)
class QueuedProposal:
    """One row of the queue. The ticket is a credential: not in ``repr``."""

    proposal_id: str
    resident_id: str
    ticket: str = field(repr=False)
    body: dict[str, Any] = field(repr=False)
    photos: tuple[str, ...]
    uploaded: frozenset[str]
    state: State
    attempts: int
    next_attempt_ms: int
    error_code: str | None
    answer: dict[str, Any] | None
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class Attempt:
    """What one attempt to submit came to.

    Attributes:
        proposal_id: The proposal.
        state: The row's state after the attempt.
        answer: The cloud's answer (``done``), without the code.
        error_code: The cloud's code (``refused``, ``needs_signin``), or ``unavailable`` when
            the cloud could not be reached (the row stays pending).
        code: The drop-off code of the grant, if the cloud answered with one in this attempt
            (shown once on the kiosk; never stored).
    """

    proposal_id: str
    state: State
    answer: dict[str, Any] | None = None
    error_code: str | None = None
    code: str = field(default="", repr=False)

    @property
    def is_unavailable(self) -> bool:
        """The cloud could not be reached."""
        return self.error_code == "unavailable"

    @property
    def is_pending(self) -> bool:
        """Not sent yet: the proposal waits in the queue for a later attempt."""
        return self.state in PENDING_STATES


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ProposalQueue:
    """The queue's SQLite file and photo directory (thread-safe: one lock, one connection).

    Args:
        data_dir: The terminal's data directory (``terminal.sqlite3`` and ``photos/`` in it).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_FILE
        self.photos_dir = data_dir / PHOTOS_DIR
        data_dir.mkdir(parents=True, exist_ok=True)
        self.photos_dir.mkdir(exist_ok=True)
        # The ticket is a credential: the file (and the WAL, which SQLite creates with the
        # database's mode) is readable by this user only.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self.path.chmod(0o600)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
        self.sweep_photos()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- writing a proposal ----------------------------------------------------------------

    def photo_path(self, sha256: str) -> Path:
        """Where a photo is kept until its proposal is accepted."""
        if not SHA256.match(sha256):
            raise QueueError(f"not a sha256: {sha256!r}")
        return self.photos_dir / f"{sha256}.jpg"

    def _write_photo(self, sha256: str, jpeg: bytes) -> None:
        path = self.photo_path(sha256)
        if hashlib.sha256(jpeg).hexdigest() != sha256:
            raise QueueError(f"photo {sha256[:12]}… does not match its hash")
        if path.exists() and path.stat().st_size == len(jpeg):
            return  # content-addressed, written by rename: present means complete
        tmp = path.with_name(f".{sha256}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, jpeg)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)

    def enqueue(
        self,
        proposal_id: str,
        resident_id: str,
        ticket: str,
        body: Mapping[str, Any],
        photos: Mapping[str, bytes],
        *,
        now_ms: int | None = None,
        hold_for_kiosk: bool = True,
    ) -> QueuedProposal:
        """Store a confirmed proposal durably; it is committed when this returns.

        Args:
            proposal_id: ``prp_`` and 20–40 url-safe characters (the idempotency key).
            resident_id: The resident it is for (to renew its ticket).
            ticket: The resident's ticket.
            body: The ``POST /proposals`` body without ``open_now`` (added per attempt); its
                ``photos`` must list exactly the keys of ``photos``.
            photos: sha256 → JPEG bytes.
            now_ms: Wall time (default: now).
            hold_for_kiosk: The kiosk sends it itself right away: the sender thread leaves it
                alone for :data:`KIOSK_HOLD_MS`.

        Enqueueing the same id with the same body again is a no-op; with another body it is a
        :class:`QueueError`.
        """
        now = _wall_ms() if now_ms is None else now_ms
        if not PROPOSAL_ID.match(proposal_id):
            raise QueueError(
                f"proposal id must be prp_ + 20–40 url-safe characters: {proposal_id!r}"
            )
        if "open_now" in body:
            raise QueueError("the body is stored without open_now (it is chosen per attempt)")
        listed = list(body.get("photos", []))
        if sorted(listed) != sorted(photos) or len(set(listed)) != len(listed):
            raise QueueError("the body's photos must be exactly the photos given, once each")
        for sha256, jpeg in photos.items():
            self._write_photo(sha256, jpeg)
        if photos:
            _fsync_dir(self.photos_dir)
        text = json.dumps(dict(body), ensure_ascii=False, sort_keys=True)
        with self._transaction() as db:
            row = db.execute(
                "SELECT body FROM proposals WHERE proposal_id = ?", (proposal_id,)
            ).fetchone()
            if row is not None:
                if row[0] != text:
                    raise QueueError(f"{proposal_id} is queued already with another body")
            else:
                db.execute(
                    "INSERT INTO proposals (proposal_id, resident_id, ticket, body, photos,"
                    " state, next_attempt_ms, created_ms, updated_ms)"
                    " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                    (
                        proposal_id,
                        resident_id,
                        ticket,
                        text,
                        json.dumps(listed),
                        now + (KIOSK_HOLD_MS if hold_for_kiosk else 0),
                        now,
                        now,
                    ),
                )
        found = self.get(proposal_id)
        assert found is not None
        return found

    # --- reading ----------------------------------------------------------------------------

    _COLUMNS = (
        "proposal_id, resident_id, ticket, body, photos, uploaded, state, attempts,"
        " next_attempt_ms, error_code, answer, created_ms, updated_ms"
    )

    @staticmethod
    def _row(row: tuple[Any, ...]) -> QueuedProposal:
        return QueuedProposal(
            proposal_id=row[0],
            resident_id=row[1],
            ticket=row[2],
            body=json.loads(row[3]),
            photos=tuple(json.loads(row[4])),
            uploaded=frozenset(json.loads(row[5])),
            state=row[6],
            attempts=row[7],
            next_attempt_ms=row[8],
            error_code=row[9],
            answer=None if row[10] is None else json.loads(row[10]),
            created_ms=row[11],
            updated_ms=row[12],
        )

    def get(self, proposal_id: str) -> QueuedProposal | None:
        """One proposal, or ``None``."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM proposals WHERE proposal_id = ?",  # noqa: S608
                (proposal_id,),
            ).fetchone()
        return None if row is None else self._row(row)

    def all(self) -> list[QueuedProposal]:
        """Every proposal, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM proposals ORDER BY created_ms, proposal_id"  # noqa: S608
            ).fetchall()
        return [self._row(r) for r in rows]

    def due(self, now_ms: int) -> list[str]:
        """Pending proposals whose next attempt is due, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT proposal_id FROM proposals WHERE state IN (?, ?, ?)"
                " AND next_attempt_ms <= ? ORDER BY created_ms, proposal_id",
                (*PENDING_STATES, now_ms),
            ).fetchall()
        return [r[0] for r in rows]

    def next_due_ms(self) -> int | None:
        """When the earliest pending proposal is due, or ``None`` if none waits."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_ms) FROM proposals WHERE state IN (?, ?, ?)",
                PENDING_STATES,
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def counts(self) -> dict[str, int]:
        """How many proposals are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM proposals GROUP BY state")
            return {state: n for state, n in rows}

    def read_photo(self, sha256: str) -> bytes:
        """A kept photo's bytes, checked against its hash.

        Raises:
            QueueError: the file is missing or does not match its hash.
        """
        try:
            jpeg = self.photo_path(sha256).read_bytes()
        except FileNotFoundError:
            raise QueueError(f"photo {sha256[:12]}… is missing") from None
        if hashlib.sha256(jpeg).hexdigest() != sha256:
            raise QueueError(f"photo {sha256[:12]}… is damaged")
        return jpeg

    # --- state changes (the sender's) --------------------------------------------------------

    def _update(self, proposal_id: str, now_ms: int, sql: str, *args: object) -> None:
        with self._transaction() as db:
            db.execute(
                f"UPDATE proposals SET {sql}, updated_ms = ? WHERE proposal_id = ?",  # noqa: S608
                (*args, now_ms, proposal_id),
            )

    def mark_uploaded(self, proposal_id: str, sha256: str, now_ms: int) -> None:
        """The cloud has this photo (201 or 200)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT photos, uploaded FROM proposals WHERE proposal_id = ?", (proposal_id,)
            ).fetchone()
            photos, uploaded = json.loads(row[0]), set(json.loads(row[1]))
            uploaded.add(sha256)
            state = "photos_uploaded" if set(photos) <= uploaded else "queued"
            db.execute(
                "UPDATE proposals SET uploaded = ?, state = CASE WHEN state = 'queued' THEN ?"
                " ELSE state END, updated_ms = ? WHERE proposal_id = ?",
                (json.dumps(sorted(uploaded)), state, now_ms, proposal_id),
            )

    def mark_submitted(self, proposal_id: str, now_ms: int) -> None:
        """A POST is about to leave: from now on it may have reached the cloud."""
        self._update(proposal_id, now_ms, "state = 'submitted'")

    def mark_done(self, proposal_id: str, answer: Mapping[str, Any], now_ms: int) -> None:
        """The cloud answered 201/200: store the answer without the code; forget the ticket
        and the photos no other waiting proposal needs."""
        kept = json.loads(json.dumps(dict(answer)))
        grant = kept.get("grant")
        if isinstance(grant, dict):
            grant.pop("code", None)
        self._update(
            proposal_id,
            now_ms,
            "state = 'done', ticket = '', answer = ?, error_code = NULL",
            json.dumps(kept, ensure_ascii=False, sort_keys=True),
        )
        self._forget_photos(proposal_id)

    def mark_retry(
        self, proposal_id: str, now_ms: int, error_code: str, *, at_least_ms: int = 0
    ) -> int:
        """A failed attempt: count it and schedule the next; returns when it is due."""
        with self._transaction() as db:
            (attempts,) = db.execute(
                "SELECT attempts FROM proposals WHERE proposal_id = ?", (proposal_id,)
            ).fetchone()
            attempts += 1
            due = now_ms + max(backoff_ms(attempts), at_least_ms)
            db.execute(
                "UPDATE proposals SET attempts = ?, next_attempt_ms = ?, error_code = ?,"
                " updated_ms = ? WHERE proposal_id = ?",
                (attempts, due, error_code, now_ms, proposal_id),
            )
        return due

    def mark_photos_missing(self, proposal_id: str, now_ms: int) -> None:
        """The cloud says a photo is missing: upload them all again."""
        self._update(proposal_id, now_ms, "uploaded = '[]', state = 'queued'")

    def mark_needs_signin(self, proposal_id: str, error_code: str, now_ms: int) -> None:
        """The ticket expired or is not valid: wait for the resident to sign in again."""
        self._update(
            proposal_id, now_ms, "state = 'needs_signin', ticket = '', error_code = ?", error_code
        )

    def mark_refused(self, proposal_id: str, error_code: str, now_ms: int) -> None:
        """The cloud refused it for good (the photos are kept for a social worker)."""
        self._update(
            proposal_id, now_ms, "state = 'refused', ticket = '', error_code = ?", error_code
        )

    def renew_ticket(self, resident_id: str, ticket: str, now_ms: int) -> int:
        """The resident signed in again: their proposals waiting for it go back to the queue
        (due now) with the new ticket; returns how many."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE proposals SET ticket = ?, state = CASE WHEN state = 'needs_signin'"
                " THEN 'queued' ELSE state END, next_attempt_ms = ?, updated_ms = ?"
                " WHERE resident_id = ? AND state IN ('needs_signin', 'queued',"
                " 'photos_uploaded', 'submitted')",
                (ticket, now_ms, now_ms, resident_id),
            )
            return cursor.rowcount

    # --- housekeeping ------------------------------------------------------------------------

    def _needed_photos(self) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT photos FROM proposals WHERE state != 'done'").fetchall()
        return {sha for (photos,) in rows for sha in json.loads(photos)}

    def _forget_photos(self, proposal_id: str) -> None:
        row = self.get(proposal_id)
        if row is None:
            return
        needed = self._needed_photos()
        for sha256 in row.photos:
            if sha256 not in needed:
                self.photo_path(sha256).unlink(missing_ok=True)

    def sweep_photos(self) -> int:
        """Delete photo files no waiting proposal needs (left by a crash between writing the
        photos and committing the row, or by a temporary file); returns how many."""
        needed = self._needed_photos()
        removed = 0
        for path in self.photos_dir.iterdir():
            keep = path.suffix == ".jpg" and path.stem in needed
            if not keep and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def make_due(self, now_ms: int) -> int:
        """Every pending proposal due now (at start: the kiosk that held one is gone)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE proposals SET next_attempt_ms = ? WHERE state IN (?, ?, ?)"
                " AND next_attempt_ms > ?",
                (now_ms, *PENDING_STATES, now_ms),
            )
            return cursor.rowcount

    def purge_done(self, now_ms: int, kept_ms: int = DONE_KEPT_MS) -> int:
        """Forget done rows older than ``kept_ms``; returns how many."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM proposals WHERE state = 'done' AND updated_ms < ?",
                (now_ms - kept_ms,),
            )
            return cursor.rowcount


class Sender:
    """Sends queued proposals to the cloud: photos first, then the proposal.

    One attempt at a time (a lock), whether the kiosk makes it right after the confirmation
    (:meth:`attempt` with ``open_now=True``) or the sender's thread (:meth:`start`) retries a
    due proposal (``open_now=False``).

    Args:
        queue: The queue.
        client: The cloud client.
        now_ms: Wall clock in ms (injected for tests).
    """

    def __init__(
        self,
        queue: ProposalQueue,
        client: TerminalClient,
        *,
        now_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.queue = queue
        self.client = client
        self._now_ms = now_ms
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage_since_ms: int | None = None
        self._probe_at_ms = 0

    # --- one attempt -----------------------------------------------------------------------

    def attempt(self, proposal_id: str, *, open_now: bool) -> Attempt:
        """Try once now to upload the missing photos and submit the proposal.

        Returns what the attempt came to; a proposal not pending any more is returned as it is
        (``done``, ``refused``, ``needs_signin``) without asking the cloud.
        """
        with self._send_lock:
            row = self.queue.get(proposal_id)
            if row is None:
                raise KeyError(proposal_id)
            if row.state not in PENDING_STATES:
                return Attempt(proposal_id, row.state, row.answer, row.error_code)
            result = self._attempt(row, open_now)
        self._note_outage(result)
        return result

    def _attempt(self, row: QueuedProposal, open_now: bool) -> Attempt:
        pid = row.proposal_id
        try:
            for sha256 in row.photos:
                if sha256 in row.uploaded:
                    continue
                try:
                    jpeg = self.queue.read_photo(sha256)
                except QueueError as exc:
                    log.error("proposal %s cannot be sent: %s", pid, exc)
                    self.queue.mark_refused(pid, "photo_lost", self._now_ms())
                    return Attempt(pid, "refused", error_code="photo_lost")
                self.client.put_photo(row.ticket, sha256, jpeg)
                self.queue.mark_uploaded(pid, sha256, self._now_ms())
            status, answer = self._submit(row, open_now)
        except CloudRefused as exc:
            return self._refused(row, exc)
        except CloudUnavailable as exc:
            log.debug("proposal %s not sent: %s", pid, exc)
            self.queue.mark_retry(pid, self._now_ms(), "unavailable")
            return Attempt(pid, self._state(pid), error_code="unavailable")
        code = ""
        grant = answer.get("grant")
        if isinstance(grant, dict):
            code = str(grant.get("code") or "")
        self.queue.mark_done(pid, answer, self._now_ms())
        log.info("proposal %s submitted (HTTP %d, item %s)", pid, status, answer.get("item_id"))
        stored = self.queue.get(pid)
        return Attempt(pid, "done", stored.answer if stored else None, code=code)

    def _submit(self, row: QueuedProposal, open_now: bool) -> tuple[int, dict[str, Any]]:
        self.queue.mark_submitted(row.proposal_id, self._now_ms())
        try:
            return self.client.submit(row.ticket, {**row.body, "open_now": open_now})
        except CloudRefused as exc:
            if exc.code != "idempotency_conflict":
                raise
            # An earlier attempt whose answer was lost reached the cloud with the other
            # open_now: asking with it returns that first answer (and opens nothing new).
            log.info("proposal %s: asking again with open_now=%s", row.proposal_id, not open_now)
            return self.client.submit(row.ticket, {**row.body, "open_now": not open_now})

    def _refused(self, row: QueuedProposal, exc: CloudRefused) -> Attempt:
        pid, now = row.proposal_id, self._now_ms()
        if exc.code in ("ticket_expired", "ticket_invalid"):
            log.info("proposal %s waits for the resident to sign in again (%s)", pid, exc.code)
            self.queue.mark_needs_signin(pid, exc.code, now)
            return Attempt(pid, "needs_signin", error_code=exc.code)
        if exc.code == "photo_missing":
            self.queue.mark_photos_missing(pid, now)
            self.queue.mark_retry(pid, now, exc.code)
            return Attempt(pid, "queued", error_code=exc.code)
        if exc.status in (401, 429) or exc.code in ("throttled", "terminal_unauthorized"):
            # The terminal's own token refused, or too many requests: not the proposal's fault.
            log.warning("proposal %s not sent: %s", pid, exc.code)
            wait_ms = int((exc.retry_after_s or 0) * 1000)
            self.queue.mark_retry(pid, now, exc.code, at_least_ms=wait_ms)
            return Attempt(pid, self._state(pid), error_code=exc.code)
        log.warning("proposal %s refused by the cloud: %s", pid, exc.code)
        self.queue.mark_refused(pid, exc.code, now)
        return Attempt(pid, "refused", error_code=exc.code)

    def _state(self, proposal_id: str) -> State:
        row = self.queue.get(proposal_id)
        return row.state if row is not None else "queued"

    def _note_outage(self, result: Attempt) -> None:
        now = self._now_ms()
        if result.is_unavailable:
            if self._outage_since_ms is None:
                self._outage_since_ms = now
                log.warning(
                    "the cloud is unreachable: proposals wait in the queue (%d pending)",
                    sum(self.queue.counts().get(s, 0) for s in PENDING_STATES),
                )
            row = self.queue.get(result.proposal_id)
            self._probe_at_ms = row.next_attempt_ms if row else now + backoff_ms(1)
        elif self._outage_since_ms is not None:
            log.warning(
                "the cloud is reachable again after %.0f s", (now - self._outage_since_ms) / 1000
            )
            self._outage_since_ms = None
            self._probe_at_ms = 0

    @property
    def is_in_outage(self) -> bool:
        """The last attempt could not reach the cloud."""
        return self._outage_since_ms is not None

    # --- the thread --------------------------------------------------------------------------

    def run_due(self) -> int:
        """Attempt every due proposal (``open_now=False``), stopping at the first that cannot
        reach the cloud (one probe per back-off during an outage); returns how many were tried."""
        tried = 0
        now = self._now_ms()
        if now < self._probe_at_ms:
            return 0
        for proposal_id in self.queue.due(now):
            if self._stop.is_set():
                break
            tried += 1
            if self.attempt(proposal_id, open_now=False).is_pending:
                break  # the cloud is down, throttling or refusing this terminal: wait
        return tried

    def _run(self) -> None:
        last_purge = 0
        while not self._stop.is_set():
            try:
                self.run_due()
                now = self._now_ms()
                if now - last_purge > 3600_000:
                    self.queue.purge_done(now)
                    last_purge = now
            except Exception:  # a bug must not stop the queue for good
                log.exception("the proposal sender failed; retrying in 5 s")
                self._stop.wait(5)
                continue
            due = self.queue.next_due_ms()
            wait_s = 60.0 if due is None else max(0.0, (max(due, self._probe_at_ms) - now) / 1000)
            self._wake.wait(min(wait_s, 60.0))
            self._wake.clear()

    def wake(self) -> None:
        """Look at the queue now (a proposal was enqueued or a ticket renewed)."""
        self._probe_at_ms = 0
        self._wake.set()

    def start(self) -> Sender:
        """Start the sender's thread; every proposal left pending by the last run is due now."""
        self.queue.make_due(self._now_ms())
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="proposal-sender", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (an attempt under way finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
