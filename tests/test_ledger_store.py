"""The SQLite ledger (cloud_api/ledger.py) against the same state machine as the pure core's
in-memory ledger: every rule, every invariant, on real SQLite with the store's triggers, balance
snapshots and hash chain; then ``ledger verify`` on what the machine left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ledger_core import LEDGER_FACTORIES, machine_test

from cloud_api.core.ledger import (
    ISSUANCE,
    SYSTEM_ACCOUNTS,
    LedgerPort,
    LimitRequest,
    ReversalRequest,
    TransferRequest,
)
from cloud_api.ledger import StoreLedger
from cloud_api.ledger_verify import verify
from cloud_api.store import Store

NOW_MS = 1_800_000_000_000


def sqlite_ledger(path: Path | str = ":memory:") -> StoreLedger:
    """A migrated store (in memory for the machine's speed) with the system accounts open."""
    store = Store(Path(path))
    store.migrate()
    ledger = StoreLedger(store)
    for account in SYSTEM_ACCOUNTS:
        ledger.open_account(account, "system")
    return ledger


class VerifiedLedger(StoreLedger):
    """The SQLite ledger, verified from its raw rows when the machine is done with it."""

    def close(self) -> None:
        report = verify(self.store)
        assert report.problems == [], report.problems
        super().close()


def _verified() -> LedgerPort:
    ledger = sqlite_ledger()
    return VerifiedLedger(ledger.store)


LEDGER_FACTORIES["sqlite"] = _verified
TestSqlLedgerMachine = machine_test("sqlite")


def test_the_sqlite_ledger_satisfies_the_port() -> None:
    ledger: LedgerPort = sqlite_ledger()  # mypy checks the structural match
    assert ledger.account(SYSTEM_ACCOUNTS[0]).posted == 0
    assert isinstance(ledger, StoreLedger)
    ledger.close()


@pytest.mark.parametrize("table", ["transfers", "limit_changes", "ledger_tombstones"])
def test_ledger_rows_cannot_be_changed_or_deleted(table: str) -> None:
    import sqlite3

    ledger = sqlite_ledger()
    ledger.open_account("mem:ana", "member")
    ledger.transfer(
        TransferRequest("k1", "valuation_credit", ISSUANCE, "mem:ana", 5, "staff:li"), NOW_MS
    )
    ledger.set_limit(LimitRequest("k2", "mem:ana", -10, "staff:li", "trusted"), NOW_MS)
    ledger.reverse(ReversalRequest("k3", "never-seen", "terminal:t1", "timed out"), NOW_MS)
    with ledger.store.snapshot() as db:
        assert db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] == 1  # noqa: S608
    with pytest.raises(sqlite3.DatabaseError, match="immutable"), ledger.store.write() as db:
        db.execute(f'UPDATE "{table}" SET rowid = rowid')  # noqa: S608
    with pytest.raises(sqlite3.DatabaseError, match="immutable"), ledger.store.write() as db:
        db.execute(f'DELETE FROM "{table}"')  # noqa: S608
    ledger.close()
