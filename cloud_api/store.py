"""The cloud's store: SQLite in the data directory (docs/decisions/0003-cloud-store-sqlite.md).

WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE`` for every write, one connection serialized by a
lock (HTTP handlers in the thread pool, the MQTT worker and scheduled jobs all go through it).
The schema carries a version; :data:`MIGRATIONS` brings any older file up to date
(``linli db migrate``). Ledger transfers are append-only: triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: the foundation: people, devices, compartments, items, grants, events, commands, ledger.
    """
    CREATE TABLE communities (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE TABLE people (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        role TEXT NOT NULL CHECK (role IN ('resident', 'social_worker', 'maintainer')),
        display_name TEXT NOT NULL,
        login TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        language TEXT NOT NULL DEFAULT 'zh-CN',
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        person_id TEXT NOT NULL REFERENCES people(id),
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        role TEXT NOT NULL CHECK (role IN ('locker', 'terminal')),
        name TEXT NOT NULL,
        location TEXT NOT NULL DEFAULT '',
        cmd_seq INTEGER NOT NULL DEFAULT 0,
        cfg_version INTEGER NOT NULL DEFAULT 0,
        cfg_body TEXT,
        status TEXT NOT NULL DEFAULT 'never_seen',
        boot_id TEXT,
        software_version TEXT,
        status_ms INTEGER,
        last_seen_ms INTEGER,
        cfg_reported TEXT
    );
    CREATE TABLE compartments (
        device_id TEXT NOT NULL REFERENCES devices(id),
        name TEXT NOT NULL,
        size TEXT NOT NULL CHECK (size IN ('S', 'M', 'L')),
        latch TEXT NOT NULL DEFAULT 'unknown',
        door TEXT NOT NULL DEFAULT 'unknown',
        occupancy TEXT NOT NULL DEFAULT 'unknown',
        needs_attention INTEGER NOT NULL DEFAULT 0,
        epoch INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, name)
    );
    CREATE TABLE items (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        donor_id TEXT REFERENCES people(id),
        title TEXT NOT NULL,
        category TEXT NOT NULL,
        points INTEGER NOT NULL CHECK (points >= 0),
        status TEXT NOT NULL,
        device_id TEXT REFERENCES devices(id),
        compartment TEXT,
        reserved_by TEXT REFERENCES people(id),
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE item_history (
        item_id TEXT NOT NULL REFERENCES items(id),
        at_ms INTEGER NOT NULL,
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        cause TEXT NOT NULL
    );
    CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        item_id TEXT REFERENCES items(id),
        person_id TEXT REFERENCES people(id),
        device_id TEXT NOT NULL REFERENCES devices(id),
        compartment TEXT NOT NULL,
        purpose TEXT NOT NULL CHECK (purpose IN ('dropoff', 'pickup', 'return', 'maintenance')),
        epoch INTEGER NOT NULL,
        valid_from_ms INTEGER NOT NULL,
        valid_until_ms INTEGER NOT NULL,
        code_counter INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('active', 'consumed', 'revoked')),
        created_ms INTEGER NOT NULL,
        consumed_ms INTEGER
    );
    CREATE INDEX grants_live ON grants (device_id, status);
    CREATE TABLE device_events (
        device_id TEXT NOT NULL,
        boot_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        compartment TEXT,
        grant_id TEXT,
        cmd_id TEXT,
        reason TEXT,
        wall_ms INTEGER NOT NULL,
        mono_ms INTEGER NOT NULL,
        trust TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (device_id, boot_id, seq)
    );
    CREATE TABLE event_heads (
        device_id TEXT NOT NULL,
        boot_id TEXT NOT NULL,
        contiguous_seq INTEGER NOT NULL,
        PRIMARY KEY (device_id, boot_id)
    );
    CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id),
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        compartment TEXT,
        grant_id TEXT,
        requested_by TEXT NOT NULL,
        on_behalf_of TEXT,
        issued_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        result_ok INTEGER,
        result_reason TEXT,
        result_ms INTEGER,
        UNIQUE (device_id, seq)
    );
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('member', 'system')),
        person_id TEXT UNIQUE REFERENCES people(id),
        name TEXT NOT NULL
    );
    CREATE TABLE transfers (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        debit_account TEXT NOT NULL REFERENCES accounts(id),
        credit_account TEXT NOT NULL REFERENCES accounts(id),
        amount INTEGER NOT NULL CHECK (amount > 0),
        phase TEXT NOT NULL CHECK (phase IN ('single', 'pending', 'post', 'void')),
        pending_id TEXT REFERENCES transfers(id),
        kind TEXT NOT NULL,
        item_id TEXT,
        actor TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        CHECK (debit_account <> credit_account),
        CHECK ((phase IN ('post', 'void')) = (pending_id IS NOT NULL))
    );
    CREATE UNIQUE INDEX transfers_one_resolution ON transfers (pending_id) WHERE pending_id IS NOT NULL;
    CREATE TRIGGER transfers_no_update BEFORE UPDATE ON transfers
        BEGIN SELECT RAISE(ABORT, 'transfers are immutable'); END;
    CREATE TRIGGER transfers_no_delete BEFORE DELETE ON transfers
        BEGIN SELECT RAISE(ABORT, 'transfers are immutable'); END;
    """,
    # 2: gap detection per (device, boot): the highest seq received, and the last seq a later
    # boot's ``booted`` event says this boot committed.
    """
    ALTER TABLE event_heads ADD COLUMN highest_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE event_heads ADD COLUMN expected_seq INTEGER NOT NULL DEFAULT 0;
    UPDATE event_heads SET highest_seq = contiguous_seq;
    """,
    # 3: the ledger of issue #6 (docs/decisions/0015-ledger.md): limits with their history, why
    # and on whose behalf each transfer was made, reversals, a body hash per idempotency key, a
    # hash chain over every row, balance snapshots kept in the same transaction, tombstones for
    # originals reversed before they arrived, and signed daily Merkle roots.
    """
    ALTER TABLE accounts ADD COLUMN limit_points INTEGER;
    UPDATE accounts SET limit_points = 0 WHERE kind = 'member';
    ALTER TABLE transfers ADD COLUMN reverses_id TEXT REFERENCES transfers(id);
    ALTER TABLE transfers ADD COLUMN refs TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE transfers ADD COLUMN approved_by TEXT;
    ALTER TABLE transfers ADD COLUMN on_behalf_of TEXT;
    ALTER TABLE transfers ADD COLUMN reason TEXT;
    ALTER TABLE transfers ADD COLUMN body_hash TEXT;
    ALTER TABLE transfers ADD COLUMN chain_hash TEXT;
    CREATE INDEX transfers_reverses ON transfers (reverses_id) WHERE reverses_id IS NOT NULL;
    CREATE INDEX transfers_debit ON transfers (debit_account);
    CREATE INDEX transfers_credit ON transfers (credit_account);
    CREATE TABLE account_balances (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id),
        posted INTEGER NOT NULL DEFAULT 0,
        pending_debits INTEGER NOT NULL DEFAULT 0,
        pending_credits INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO account_balances (account_id, posted, pending_debits, pending_credits)
    SELECT a.id,
        COALESCE((SELECT SUM(CASE WHEN t.credit_account = a.id THEN t.amount ELSE -t.amount END)
                  FROM transfers t WHERE t.phase IN ('single', 'post')
                  AND (t.credit_account = a.id OR t.debit_account = a.id)), 0),
        COALESCE((SELECT SUM(t.amount) FROM transfers t WHERE t.phase = 'pending'
                  AND t.debit_account = a.id
                  AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)), 0),
        COALESCE((SELECT SUM(t.amount) FROM transfers t WHERE t.phase = 'pending'
                  AND t.credit_account = a.id
                  AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)), 0)
    FROM accounts a;
    CREATE TABLE limit_changes (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        old_limit INTEGER,
        new_limit INTEGER,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        chain_hash TEXT NOT NULL
    );
    CREATE TRIGGER limit_changes_no_update BEFORE UPDATE ON limit_changes
        BEGIN SELECT RAISE(ABORT, 'limit changes are immutable'); END;
    CREATE TRIGGER limit_changes_no_delete BEFORE DELETE ON limit_changes
        BEGIN SELECT RAISE(ABORT, 'limit changes are immutable'); END;
    CREATE TABLE ledger_tombstones (
        original_key TEXT PRIMARY KEY,
        reversal_key TEXT NOT NULL UNIQUE,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        chain_hash TEXT NOT NULL
    );
    CREATE TRIGGER ledger_tombstones_no_update BEFORE UPDATE ON ledger_tombstones
        BEGIN SELECT RAISE(ABORT, 'tombstones are immutable'); END;
    CREATE TRIGGER ledger_tombstones_no_delete BEFORE DELETE ON ledger_tombstones
        BEGIN SELECT RAISE(ABORT, 'tombstones are immutable'); END;
    CREATE TABLE ledger_requests (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        requested_by TEXT NOT NULL REFERENCES people(id),
        requested_ms INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('awaiting_second_approver', 'approved')),
        decided_by TEXT REFERENCES people(id),
        decided_ms INTEGER,
        transfer_id TEXT REFERENCES transfers(id)
    );
    CREATE TABLE ledger_roots (
        community_id TEXT NOT NULL,
        day TEXT NOT NULL,
        body TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (community_id, day)
    );
    CREATE TRIGGER ledger_roots_no_update BEFORE UPDATE ON ledger_roots
        BEGIN SELECT RAISE(ABORT, 'signed roots are immutable'); END;
    CREATE TRIGGER ledger_roots_no_delete BEFORE DELETE ON ledger_roots
        BEGIN SELECT RAISE(ABORT, 'signed roots are immutable'); END;
    """,
    # 4: the domain of issue #7 (docs/decisions/0016-domain-and-settlement.md): residents'
    # sensitive data apart from people and the ledger, persisted sign-in throttles, staff TOTP,
    # account changes with both identities, the item lifecycle and loans, grants that record how
    # they ended and when their outcome may be settled, the device's reporting horizon, events
    # settled in order, cases (tasks for people) and immutable corrections, scheduler runs.
    """
    CREATE TABLE resident_profiles (
        person_id TEXT PRIMARY KEY REFERENCES people(id),
        phone TEXT NOT NULL UNIQUE,
        household TEXT NOT NULL DEFAULT '',
        unit TEXT NOT NULL DEFAULT '',
        flags TEXT NOT NULL DEFAULT '[]'
    );
    INSERT INTO resident_profiles (person_id, phone)
        SELECT id, login FROM people WHERE role = 'resident';
    UPDATE people SET login = id WHERE role = 'resident';
    ALTER TABLE people ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
    ALTER TABLE people ADD COLUMN totp_secret TEXT;
    ALTER TABLE people ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE sign_in_attempts (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        blocked_until_ms INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE account_changes (
        id TEXT PRIMARY KEY,
        person_id TEXT NOT NULL REFERENCES people(id),
        kind TEXT NOT NULL,
        actor_id TEXT NOT NULL REFERENCES people(id),
        reason TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}',
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX account_changes_person ON account_changes (person_id);
    CREATE TRIGGER account_changes_no_update BEFORE UPDATE ON account_changes
        BEGIN SELECT RAISE(ABORT, 'account changes are immutable'); END;
    CREATE TRIGGER account_changes_no_delete BEFORE DELETE ON account_changes
        BEGIN SELECT RAISE(ABORT, 'account changes are immutable'); END;
    ALTER TABLE items ADD COLUMN kind TEXT NOT NULL DEFAULT 'give';
    ALTER TABLE items ADD COLUMN size TEXT NOT NULL DEFAULT 'M';
    ALTER TABLE items ADD COLUMN description TEXT NOT NULL DEFAULT '';
    ALTER TABLE items ADD COLUMN deposit_points INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE items ADD COLUMN loan_days INTEGER;
    ALTER TABLE items ADD COLUMN due_ms INTEGER;
    ALTER TABLE items ADD COLUMN deadline_ms INTEGER;
    ALTER TABLE items ADD COLUMN dispute_until_ms INTEGER;
    ALTER TABLE items ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE items ADD COLUMN hold_key TEXT;
    ALTER TABLE items ADD COLUMN deposit_key TEXT;
    UPDATE items SET hold_key = 'hold:' || id || ':' || reserved_by
        WHERE reserved_by IS NOT NULL AND status IN ('reserved', 'collecting');
    ALTER TABLE item_history ADD COLUMN actor TEXT;
    ALTER TABLE item_history ADD COLUMN on_behalf_of TEXT;
    CREATE INDEX items_place ON items (device_id, compartment);
    CREATE INDEX items_status ON items (community_id, status);
    CREATE INDEX item_history_item ON item_history (item_id);
    CREATE TABLE grants_v4 (
        id TEXT PRIMARY KEY,
        item_id TEXT REFERENCES items(id),
        person_id TEXT REFERENCES people(id),
        device_id TEXT NOT NULL REFERENCES devices(id),
        compartment TEXT NOT NULL,
        purpose TEXT NOT NULL CHECK (purpose IN ('dropoff', 'pickup', 'return', 'maintenance')),
        epoch INTEGER NOT NULL,
        valid_from_ms INTEGER NOT NULL,
        valid_until_ms INTEGER NOT NULL,
        code_counter INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('active', 'consumed', 'revoked', 'expired')),
        created_ms INTEGER NOT NULL,
        consumed_ms INTEGER,
        created_by TEXT,
        ended_ms INTEGER,
        ended_by TEXT,
        end_reason TEXT,
        replaces_id TEXT,
        revoked_cfg_version INTEGER,
        settle_after_ms INTEGER,
        settled_ms INTEGER,
        outcome TEXT
    );
    INSERT INTO grants_v4 (id, item_id, person_id, device_id, compartment, purpose, epoch,
        valid_from_ms, valid_until_ms, code_counter, status, created_ms, consumed_ms)
        SELECT id, item_id, person_id, device_id, compartment, purpose, epoch, valid_from_ms,
        valid_until_ms, code_counter, status, created_ms, consumed_ms FROM grants;
    DROP TABLE grants;
    ALTER TABLE grants_v4 RENAME TO grants;
    CREATE INDEX grants_live ON grants (device_id, status);
    CREATE INDEX grants_item ON grants (item_id);
    CREATE INDEX grants_unsettled ON grants (device_id) WHERE settled_ms IS NULL
        AND status IN ('revoked', 'expired');
    ALTER TABLE devices ADD COLUMN reported_through_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN cfg_applied_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE compartments ADD COLUMN attention TEXT;
    ALTER TABLE compartments ADD COLUMN state_ms INTEGER;
    ALTER TABLE compartments ADD COLUMN fact_occupancy TEXT NOT NULL DEFAULT 'unknown';
    UPDATE compartments SET fact_occupancy = occupancy;
    ALTER TABLE device_events ADD COLUMN settled_ms INTEGER;
    UPDATE device_events SET settled_ms = received_ms;
    CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        kind TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        item_id TEXT,
        grant_id TEXT,
        device_id TEXT,
        person_id TEXT,
        event_ref TEXT,
        detail TEXT NOT NULL DEFAULT '{}',
        created_ms INTEGER NOT NULL,
        resolved_ms INTEGER,
        resolved_by TEXT,
        resolution TEXT
    );
    CREATE UNIQUE INDEX cases_once ON cases (kind, event_ref) WHERE event_ref IS NOT NULL;
    CREATE INDEX cases_open ON cases (community_id, status);
    CREATE TABLE corrections (
        id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL REFERENCES cases(id),
        decided TEXT NOT NULL,
        observed TEXT NOT NULL,
        applied TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TRIGGER corrections_no_update BEFORE UPDATE ON corrections
        BEGIN SELECT RAISE(ABORT, 'corrections are immutable'); END;
    CREATE TRIGGER corrections_no_delete BEFORE DELETE ON corrections
        BEGIN SELECT RAISE(ABORT, 'corrections are immutable'); END;
    CREATE TABLE job_runs (
        name TEXT PRIMARY KEY,
        last_run_ms INTEGER NOT NULL,
        last_changed INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 5: residents' pages and notifications (issue #8): a durable outbox of notifications (never
    # a code, PIN or phone in it: a code is derived from its grant at send time), the channel a
    # resident is reached on, and the record of each code a social worker read out by phone.
    """
    CREATE TABLE notifications (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        person_id TEXT NOT NULL REFERENCES people(id),
        kind TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        is_urgent INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        sent_ms INTEGER,
        channel TEXT,
        last_error TEXT
    );
    CREATE INDEX notifications_due ON notifications (status, next_attempt_ms);
    ALTER TABLE resident_profiles ADD COLUMN notify_channel TEXT NOT NULL DEFAULT 'sms';
    ALTER TABLE resident_profiles ADD COLUMN wechat_openid TEXT;
    ALTER TABLE items ADD COLUMN photo TEXT;
    CREATE TABLE uploads (
        hash TEXT PRIMARY KEY,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        uploaded_by TEXT NOT NULL REFERENCES people(id),
        uploaded_ms INTEGER NOT NULL
    );
    CREATE TABLE code_readouts (
        id TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL REFERENCES grants(id),
        worker_id TEXT NOT NULL REFERENCES people(id),
        person_id TEXT NOT NULL REFERENCES people(id),
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE TRIGGER code_readouts_no_update BEFORE UPDATE ON code_readouts
        BEGIN SELECT RAISE(ABORT, 'code readouts are immutable'); END;
    CREATE TRIGGER code_readouts_no_delete BEFORE DELETE ON code_readouts
        BEGIN SELECT RAISE(ABORT, 'code readouts are immutable'); END;
    """,
    # v6 (issue #9): valuation terminals speak HTTP with their own token; proposals with the
    # policy text and demand snapshot they were computed under; decisions kept as calibration
    # data; time and skills contributions.
    """
    ALTER TABLE devices ADD COLUMN http_token_hash TEXT;
    CREATE TABLE valuation_policies (
        version TEXT PRIMARY KEY,
        text TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TRIGGER valuation_policies_no_update BEFORE UPDATE ON valuation_policies
        BEGIN SELECT RAISE(ABORT, 'valuation policies are immutable'); END;
    CREATE TRIGGER valuation_policies_no_delete BEFORE DELETE ON valuation_policies
        BEGIN SELECT RAISE(ABORT, 'valuation policies are immutable'); END;
    CREATE TABLE demand_snapshots (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        week TEXT NOT NULL,
        factors TEXT NOT NULL,
        counts TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        UNIQUE (community_id, week)
    );
    CREATE TRIGGER demand_snapshots_no_update BEFORE UPDATE ON demand_snapshots
        BEGIN SELECT RAISE(ABORT, 'demand snapshots are immutable'); END;
    CREATE TRIGGER demand_snapshots_no_delete BEFORE DELETE ON demand_snapshots
        BEGIN SELECT RAISE(ABORT, 'demand snapshots are immutable'); END;
    CREATE TABLE valuations (
        item_id TEXT PRIMARY KEY REFERENCES items(id),
        proposal_key TEXT NOT NULL UNIQUE,
        request_hash TEXT NOT NULL,
        terminal_id TEXT REFERENCES devices(id),
        policy_version TEXT NOT NULL REFERENCES valuation_policies(version),
        inputs TEXT NOT NULL,
        proposal TEXT NOT NULL,
        points INTEGER CHECK (points IS NULL OR points >= 0),
        confidence REAL NOT NULL,
        abstained TEXT,
        photos TEXT NOT NULL DEFAULT '[]',
        weight_mg INTEGER,
        created_ms INTEGER NOT NULL
    );
    CREATE TRIGGER valuations_no_update BEFORE UPDATE ON valuations
        BEGIN SELECT RAISE(ABORT, 'valuations are immutable'); END;
    CREATE TRIGGER valuations_no_delete BEFORE DELETE ON valuations
        BEGIN SELECT RAISE(ABORT, 'valuations are immutable'); END;
    CREATE TABLE valuation_decisions (
        item_id TEXT PRIMARY KEY REFERENCES items(id),
        decision TEXT NOT NULL CHECK (decision IN ('approve', 'adjust', 'reject')),
        points INTEGER NOT NULL CHECK (points >= 0),
        proposed INTEGER,
        category TEXT NOT NULL,
        decided_by TEXT NOT NULL REFERENCES people(id),
        automatic INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL,
        decided_ms INTEGER NOT NULL
    );
    CREATE INDEX valuation_decisions_by_category ON valuation_decisions (category, decided_ms);
    CREATE TRIGGER valuation_decisions_no_update BEFORE UPDATE ON valuation_decisions
        BEGIN SELECT RAISE(ABORT, 'valuation decisions are immutable'); END;
    CREATE TRIGGER valuation_decisions_no_delete BEFORE DELETE ON valuation_decisions
        BEGIN SELECT RAISE(ABORT, 'valuation decisions are immutable'); END;
    CREATE TABLE contributions (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        kind TEXT NOT NULL CHECK (kind IN ('time', 'skill')),
        provider_id TEXT NOT NULL REFERENCES people(id),
        beneficiary_id TEXT REFERENCES people(id),
        description TEXT NOT NULL,
        hours REAL NOT NULL CHECK (hours > 0),
        inputs TEXT NOT NULL,
        points INTEGER NOT NULL CHECK (points >= 0),
        breakdown TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('proposed', 'confirmed', 'approved', 'rejected', 'withdrawn')),
        provider_confirmed_ms INTEGER,
        beneficiary_confirmed_ms INTEGER,
        beneficiary_confirmed_by TEXT REFERENCES people(id),
        decided_by TEXT REFERENCES people(id),
        decided_ms INTEGER,
        reason TEXT,
        created_by TEXT NOT NULL REFERENCES people(id),
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX contributions_by_status ON contributions (community_id, status);
    """,
    # v7 (issue #10): alerts that reach a person (one open alert per cause, a tracking code, a
    # response clock by severity, every action kept), who is on call, how staff are reached, the
    # console's switches with each change recorded, the reason of a command (a maintainer's
    # service open), and events by type (relay cycles are counted from ``latch_pulsed``).
    """
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        tracking_code TEXT NOT NULL UNIQUE,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('red', 'yellow', 'blue')),
        cause_key TEXT NOT NULL,
        device_id TEXT REFERENCES devices(id),
        compartment TEXT,
        status TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
        escalation_level INTEGER NOT NULL DEFAULT 0,
        assigned_to TEXT REFERENCES people(id),
        detail TEXT NOT NULL DEFAULT '{}',
        opened_ms INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        acknowledged_ms INTEGER,
        acknowledged_by TEXT REFERENCES people(id),
        cleared_ms INTEGER,
        resolved_ms INTEGER,
        resolved_by TEXT REFERENCES people(id),
        resolution TEXT
    );
    CREATE UNIQUE INDEX alerts_one_live_per_cause ON alerts (cause_key)
        WHERE status != 'resolved';
    CREATE INDEX alerts_by_status ON alerts (community_id, status, opened_ms);
    CREATE TABLE alert_actions (
        id TEXT PRIMARY KEY,
        alert_id TEXT NOT NULL REFERENCES alerts(id),
        action TEXT NOT NULL,
        by_person TEXT REFERENCES people(id),
        note TEXT,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX alert_actions_by_alert ON alert_actions (alert_id, at_ms);
    CREATE TRIGGER alert_actions_no_update BEFORE UPDATE ON alert_actions
        BEGIN SELECT RAISE(ABORT, 'alert actions are immutable'); END;
    CREATE TRIGGER alert_actions_no_delete BEFORE DELETE ON alert_actions
        BEGIN SELECT RAISE(ABORT, 'alert actions are immutable'); END;
    CREATE TABLE on_call (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        person_id TEXT NOT NULL REFERENCES people(id),
        rank INTEGER NOT NULL CHECK (rank >= 0),
        starts_ms INTEGER NOT NULL,
        ends_ms INTEGER,
        created_by TEXT NOT NULL REFERENCES people(id),
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX on_call_by_community ON on_call (community_id, rank, starts_ms);
    CREATE TABLE staff_contacts (
        person_id TEXT PRIMARY KEY REFERENCES people(id),
        phone TEXT NOT NULL,
        notify_channel TEXT NOT NULL DEFAULT 'sms',
        wechat_openid TEXT
    );
    CREATE TABLE setting_changes (
        id TEXT PRIMARY KEY,
        community_id TEXT NOT NULL REFERENCES communities(id),
        name TEXT NOT NULL,
        old_value TEXT NOT NULL,
        value TEXT NOT NULL,
        reason TEXT NOT NULL,
        changed_by TEXT NOT NULL REFERENCES people(id),
        changed_ms INTEGER NOT NULL
    );
    CREATE INDEX setting_changes_latest ON setting_changes (community_id, name, changed_ms);
    ALTER TABLE commands ADD COLUMN reason TEXT;
    CREATE INDEX device_events_by_type ON device_events (device_id, type);
    CREATE TRIGGER setting_changes_no_update BEFORE UPDATE ON setting_changes
        BEGIN SELECT RAISE(ABORT, 'setting changes are immutable'); END;
    CREATE TRIGGER setting_changes_no_delete BEFORE DELETE ON setting_changes
        BEGIN SELECT RAISE(ABORT, 'setting changes are immutable'); END;
    """,
]


class StorePort(Protocol):
    """What services need of a store (the seam for a second adapter, e.g. PostgreSQL).

    ``write()`` yields a DB-API connection inside a write transaction on the **one writer**
    (every HTTP request, MQTT callback and scheduled job goes through it); ``snapshot()`` one
    inside a consistent read. Services write portable SQL with ``?`` parameters; an adapter for
    another database translates its paramstyle in the connection it yields.
    """

    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...
    def snapshot(self) -> AbstractContextManager[sqlite3.Connection]: ...
    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]: ...
    def read_one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None: ...
    def migrate(self) -> int: ...
    def close(self) -> None: ...


class Store:
    """One SQLite database; every access is serialized through one connection and one lock.

    Example:
        >>> store = Store(data_dir / "cloud.sqlite3")
        >>> with store.write() as db:
        ...     db.execute("INSERT INTO communities VALUES (?, ?)", ("c1", "阳光花园"))
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")

    def schema_version(self) -> int:
        """The version recorded in the file (0 for a new file)."""
        with self._lock:
            exists = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
            ).fetchone()
            if not exists:
                return 0
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            return int(row[0]) if row else 0

    def migrate(self) -> int:
        """Apply every migration the file lacks, each in its own transaction; return the version."""
        with self._lock:
            current = self.schema_version()
            if current > len(MIGRATIONS):
                raise SystemExit(
                    f"{self.path} has schema version {current}, newer than this software "
                    f"({len(MIGRATIONS)}): upgrade linli"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if version == 1:
                        self._db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                        self._db.execute("INSERT INTO schema_version VALUES (0)")
                    for statement in _split(MIGRATIONS[version - 1]):
                        self._db.execute(statement)
                    self._db.execute("UPDATE schema_version SET version = ?", (version,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                log.info("store migrated to schema version %d", version)
            return len(MIGRATIONS)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several queries see one consistent state, taking no write lock."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Run a query and return all rows."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def read_one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """Run a query and return the first row, or None."""
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
            return row

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, sorted (for tests that prove bad input changed nothing)."""
        with self._lock:
            tables = [
                r[0]
                for r in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
                )
            ]
            return {
                t: sorted(tuple(r) for r in self._db.execute(f'SELECT * FROM "{t}"'))  # noqa: S608
                for t in tables
            }

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


def _split(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in script.strip().splitlines():
        buffer += line + "\n"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
