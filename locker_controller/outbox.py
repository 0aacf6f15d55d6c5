"""The controller's event outbox: SQLite in the data directory, forgotten only on cloud acks.

An event is committed here (``synchronous=FULL``) before it is published and before any latch
moves; it leaves only when the *cloud* acknowledges it cumulatively for its boot id (a broker's
PUBACK is not delivery). Events of earlier boots stay until acknowledged and are re-sent with
their original ``(boot_id, seq)``, so the cloud can de-duplicate.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    sent_mono_ms INTEGER,
    PRIMARY KEY (boot_id, seq)
) WITHOUT ROWID;
"""


class Outbox:
    """Durable queue of encoded events keyed by ``(boot_id, seq)``.

    Example:
        >>> box = Outbox(tmp_path / "outbox.sqlite3")
        >>> box.append("0123456789ab", 1, b"{...}")
        >>> box.acknowledge("0123456789ab", 1)
        1
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def append(self, boot_id: str, seq: int, payload: bytes) -> None:
        """Store one event durably (committed before this returns)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO events (boot_id, seq, payload) VALUES (?, ?, ?)",
                (boot_id, seq, payload),
            )

    def mark_sent(self, boot_id: str, seq: int, mono_ms: int) -> None:
        """Remember when an event was last handed to the broker (for re-sending)."""
        with self._lock:
            self._db.execute(
                "UPDATE events SET sent_mono_ms = ? WHERE boot_id = ? AND seq = ?",
                (mono_ms, boot_id, seq),
            )

    def due(
        self, resend_before_mono_ms: int | None, limit: int = 100
    ) -> list[tuple[str, int, bytes]]:
        """Events never sent, or (if given) last sent before ``resend_before_mono_ms``.

        ``sent_mono_ms`` is of the current boot; events sent by an earlier boot carry a value that
        means nothing now, so callers pass ``None`` after a reconnect to re-send everything.
        """
        with self._lock:
            if resend_before_mono_ms is None:
                rows = self._db.execute(
                    "SELECT boot_id, seq, payload FROM events ORDER BY boot_id, seq LIMIT ?",
                    (limit,),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT boot_id, seq, payload FROM events"
                    " WHERE sent_mono_ms IS NULL OR sent_mono_ms < ?"
                    " ORDER BY boot_id, seq LIMIT ?",
                    (resend_before_mono_ms, limit),
                ).fetchall()
        return [(str(b), int(s), bytes(p)) for b, s, p in rows]

    def acknowledge(self, boot_id: str, seq: int) -> int:
        """Forget every event of ``boot_id`` up to ``seq``; return how many were forgotten."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM events WHERE boot_id = ? AND seq <= ?", (boot_id, seq)
            )
        return cursor.rowcount

    def depth(self) -> int:
        """How many events await the cloud's acknowledgement."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
