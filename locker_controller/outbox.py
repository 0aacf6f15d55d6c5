"""The controller's event outbox: SQLite in the data directory, forgotten only on cloud acks.

An event is committed here (WAL, ``synchronous=FULL``) before it is published and before any
latch moves. It stays *pending* until the **cloud** acknowledges it cumulatively for its boot id
(a broker's PUBACK is not delivery), and is then kept as *archived* for :data:`ARCHIVE_MS` (30
days), so a cloud restored from a backup can have it replayed: an acknowledgement lower than one
already applied means the cloud lost what came after, and those events become pending again.

Events are ordered by ``(boot_no, seq)``: ``boot_no`` counts this device's boots in this data
directory (boot ids are random, so they cannot order), and each boot remembers the one before it
and that boot's last sequence number, which the ``booted`` event carries so the cloud can notice
a boot whose tail it never received.

Each event also keeps the wall time it was stamped with and the trust level of that time (0007),
so the controller can tell the cloud how far its reporting reaches (its *reporting horizon*:
:meth:`Outbox.oldest_unacked_wall_ms`, :meth:`Outbox.unacked_untrusted`).

Example:
    >>> box = Outbox(tmp_path / "outbox.sqlite3")
    >>> previous = box.begin_boot("0123456789ab")   # None on the first boot
    >>> box.append("0123456789ab", 1, b"{...}", wall_ms=1_800_000_000_000, trust="synced")
    >>> box.acknowledge("0123456789ab", 1)
    1
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_MS = 30 * 24 * 60 * 60 * 1000
"""How long acknowledged events are kept for replay after a cloud restore."""
ARCHIVE_MAX_EVENTS = 200_000
"""Bound on archived events whatever their age (a few hundred bytes each: ~100 MB at most)."""
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS boots (
    boot_no INTEGER PRIMARY KEY AUTOINCREMENT,
    boot_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS events (
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    sent_mono_ms INTEGER, -- unused since schema 2 (in memory), kept for version 1 files
    boot_no INTEGER NOT NULL DEFAULT 0,
    stored_wall_ms INTEGER NOT NULL DEFAULT 0,
    acked INTEGER NOT NULL DEFAULT 0,
    trust TEXT, -- the trust level of stored_wall_ms (0007), NULL if unknown (since schema 3)
    PRIMARY KEY (boot_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_pending ON events (acked, boot_no, seq);
"""

_V1_UPGRADE = """
ALTER TABLE events ADD COLUMN boot_no INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN stored_wall_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN acked INTEGER NOT NULL DEFAULT 0;
"""
_V2_UPGRADE = "ALTER TABLE events ADD COLUMN trust TEXT"

TRUSTED = ("synced", "holdover")
"""Trust levels whose wall time the cloud can reason with (an ``untrusted`` one it cannot)."""


@dataclass(frozen=True)
class PreviousBoot:
    """The boot before this one, and the last sequence number it committed."""

    boot_id: str
    last_seq: int


class Outbox:
    """Durable, ordered queue of encoded events keyed by ``(boot_id, seq)``, with an archive."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        self._boot_no = 0
        self._sent: dict[tuple[str, int], int] = {}

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version >= SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
        if columns and "acked" not in columns:  # an outbox written by version 1
            for statement in _V1_UPGRADE.strip().splitlines():
                self._db.execute(statement)
        if columns and "trust" not in columns:  # written by version 1 or 2
            self._db.execute(_V2_UPGRADE)
            self._backfill_pending()
        for statement in SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute("COMMIT")

    def _backfill_pending(self) -> None:
        """Read the wall time and trust of pending events of an older outbox from their payload
        (an encoded ``Event``), for the reporting horizon. Archived events are left unknown (a
        replay makes them pending again: the horizon is then withheld until they are acked)."""
        rows = self._db.execute(
            "SELECT boot_id, seq, payload, stored_wall_ms FROM events WHERE acked = 0"
        ).fetchall()
        updates = []
        for boot_id, seq, payload, stored_wall_ms in rows:
            try:
                event = json.loads(bytes(payload))
                wall_ms, trust = event["wall_ms"], event["trust"]
            except (ValueError, TypeError, KeyError):
                continue  # not an event the controller wrote: its trust stays unknown
            if not isinstance(wall_ms, int) or not isinstance(trust, str):
                continue
            updates.append((stored_wall_ms or wall_ms, trust, boot_id, seq))
        self._db.executemany(
            "UPDATE events SET stored_wall_ms = ?, trust = ? WHERE boot_id = ? AND seq = ?",
            updates,
        )

    def begin_boot(self, boot_id: str) -> PreviousBoot | None:
        """Register this boot; return the previous boot that committed events, if any."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT boot_id, MAX(seq) FROM events WHERE boot_no ="
                " (SELECT MAX(boot_no) FROM events)"
            ).fetchone()
            cursor = self._db.execute("INSERT INTO boots (boot_id) VALUES (?)", (boot_id,))
            self._db.execute("COMMIT")
            self._boot_no = int(cursor.lastrowid or 0)
        if row is None or row[0] is None:
            return None
        return PreviousBoot(str(row[0]), int(row[1]))

    def append(
        self, boot_id: str, seq: int, payload: bytes, wall_ms: int = 0, trust: str | None = None
    ) -> None:
        """Store one event durably (committed before this returns)."""
        self.append_all([(boot_id, seq, payload, wall_ms)], trust=trust)

    def append_all(
        self, events: list[tuple[str, int, bytes, int]], *, trust: str | None = None
    ) -> None:
        """Store ``(boot_id, seq, payload, wall_ms)`` events in one durable commit (one fsync:
        the events a code entry produces before its pulse are committed together).

        ``trust`` is the trust level of their wall times (they are stamped together); None
        (unknown) counts as untrusted for the reporting horizon.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO events (boot_id, seq, payload, boot_no, stored_wall_ms, trust)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(b, s, p, self._boot_no, w, trust) for b, s, p, w in events],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def mark_sent(self, boot_id: str, seq: int, mono_ms: int) -> None:
        """Remember when an event was last handed to the broker (for re-sending).

        Kept in memory, not on disk: it means nothing after a restart or a reconnect (nothing is
        in flight then), and a committed write per event would cost an fsync before each pulse.
        """
        with self._lock:
            self._sent[(boot_id, seq)] = mono_ms

    def forget_sending(self) -> None:
        """After a reconnect nothing is in flight: every pending event is due again, in order."""
        with self._lock:
            self._sent.clear()

    def due(
        self, resend_before_mono_ms: int | None, limit: int = 100
    ) -> list[tuple[str, int, bytes]]:
        """Pending events never sent this connection, or last sent before the given instant.

        With ``resend_before_mono_ms`` None, only events not yet sent are returned.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT boot_id, seq, payload FROM events WHERE acked = 0"
                " ORDER BY boot_no, seq LIMIT ?",
                (limit + len(self._sent),),
            ).fetchall()
            due = []
            for b, s, p in rows:
                sent = self._sent.get((str(b), int(s)))
                if sent is None or (
                    resend_before_mono_ms is not None and sent < resend_before_mono_ms
                ):
                    due.append((str(b), int(s), bytes(p)))
        return due[:limit]

    def in_flight(self) -> int:
        """Pending events sent and not yet acknowledged."""
        with self._lock:
            return len(self._sent)

    def acknowledge(self, boot_id: str, seq: int) -> int:
        """Apply the cloud's cumulative acknowledgement of ``boot_id`` up to ``seq``.

        Returns how many pending events it archived. An acknowledgement *below* one already
        applied means the cloud lost the events after ``seq`` (a restore from backup): those
        still in the archive become pending again, to be replayed (returned as a negative count).
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            archived = self._db.execute(
                "UPDATE events SET acked = 1 WHERE boot_id = ? AND seq <= ? AND acked = 0",
                (boot_id, seq),
            ).rowcount
            replay = self._db.execute(
                "UPDATE events SET acked = 0, sent_mono_ms = NULL"
                " WHERE boot_id = ? AND seq > ? AND acked = 1",
                (boot_id, seq),
            ).rowcount
            self._db.execute("COMMIT")
            for key in [k for k in self._sent if k[0] == boot_id and k[1] <= seq]:
                del self._sent[key]  # acknowledged: no longer in flight
        return archived if not replay else -replay

    def prune(self, now_wall_ms: int) -> int:
        """Drop archived events older than :data:`ARCHIVE_MS`, and beyond
        :data:`ARCHIVE_MAX_EVENTS`; pending events are never dropped. Return how many."""
        with self._lock:
            dropped = self._db.execute(
                "DELETE FROM events WHERE acked = 1 AND stored_wall_ms < ?",
                (now_wall_ms - ARCHIVE_MS,),
            ).rowcount
            (archived,) = self._db.execute("SELECT COUNT(*) FROM events WHERE acked = 1").fetchone()
            excess = int(archived) - ARCHIVE_MAX_EVENTS
            if excess > 0:
                dropped += self._db.execute(
                    "DELETE FROM events WHERE (boot_id, seq) IN (SELECT boot_id, seq FROM events"
                    " WHERE acked = 1 ORDER BY boot_no, seq LIMIT ?)",
                    (excess,),
                ).rowcount
        return dropped

    def depth(self) -> int:
        """How many events await the cloud's acknowledgement."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM events WHERE acked = 0").fetchone()
        return int(count)

    def oldest_unacked_wall_ms(self) -> int | None:
        """The earliest wall time among events awaiting the cloud's acknowledgement; None when
        none is waiting. Every event stamped before it is acknowledged — as far as the wall
        times can be trusted: see :meth:`unacked_untrusted`.

        The earliest, not the first in ``(boot, seq)`` order: they agree while trusted time
        never goes back (0007), and the minimum stays exact if it ever did.
        """
        with self._lock:
            (oldest,) = self._db.execute(
                "SELECT MIN(stored_wall_ms) FROM events WHERE acked = 0"
            ).fetchone()
        return None if oldest is None else int(oldest)

    def unacked_untrusted(self) -> int:
        """How many events awaiting acknowledgement were stamped with a wall time the cloud
        cannot reason with: ``untrusted``, or unknown (an older outbox's unreadable payload)."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM events WHERE acked = 0"
                " AND (trust IS NULL OR trust NOT IN (?, ?))",
                TRUSTED,
            ).fetchone()
        return int(count)

    def archived(self) -> int:
        """How many acknowledged events are kept for replay."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM events WHERE acked = 1").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
