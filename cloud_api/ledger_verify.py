"""``linli ledger verify``: recompute the ledger from its raw rows and fail loudly on any mismatch.

It trusts nothing the database says about itself except the rows of ``transfers``:

1. SQLite's own ``PRAGMA integrity_check`` (pages, indexes).
2. The hash chain: every transfer row's ``chain_hash`` recomputed from the previous row's and
   the row's fields, in insertion order — an edited, removed, inserted or reordered row breaks it.
3. Balances: every account's snapshot (``account_balances``) against the balances derived from
   the transfers alone; the sum of posted balances over all accounts is zero.
4. Holds: every post or void resolves a pending transfer of the same accounts and amount, once.
5. Reversals: each reverses a single or posted transfer, with its accounts swapped, and all
   reversals of one transfer add up to no more than its amount.
6. Limits: each account's current limit is the last one its logged history set.
7. Tombstones: no transfer carries a key that was reversed before it arrived.
8. Signed daily roots (:mod:`cloud_api.transparency`): each signature, and each day's and the
   cumulative log's Merkle root recomputed from the transfers.

Example:
    >>> problems = verify(store, keys)
    >>> problems == []
    True
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloud_api.keys import CloudKeys, load_or_create_keys
from cloud_api.ledger import (
    LIMIT_COLUMNS,
    TOMBSTONE_COLUMNS,
    TRANSFER_COLUMNS,
    SqlLedger,
    chain_hash,
    row_fields,
)
from cloud_api.store import Store
from cloud_api.transparency import signed_roots, verify_roots


@dataclass
class Report:
    """What verification found: counts, and one line per problem."""

    transfers: int = 0
    accounts: int = 0
    roots: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def verify_db(db: sqlite3.Connection) -> Report:
    """Check everything except signatures (see :func:`verify`) on one consistent snapshot."""
    report = Report()
    problems = report.problems
    integrity = [r[0] for r in db.execute("PRAGMA integrity_check")]
    if integrity != ["ok"]:
        problems += [f"sqlite integrity: {line}" for line in integrity[:10]]

    rows = db.execute(
        f"SELECT {TRANSFER_COLUMNS}, chain_hash FROM transfers ORDER BY rowid"  # noqa: S608
    ).fetchall()
    report.transfers = len(rows)
    previous = ""
    by_id: dict[str, dict[str, object]] = {}
    for row in rows:
        fields = row_fields(tuple(row)[:-1])
        stored = row[-1]
        by_id[str(fields["id"])] = fields
        if stored is None:
            if previous:
                problems.append(
                    f"transfer {fields['id']}: chain hash missing after the chain began"
                )
            continue  # a row from before the chain (schema < 3)
        expected = chain_hash(previous, fields)
        if stored != expected:
            problems.append(f"transfer {fields['id']}: chain hash does not match its row")
        previous = stored

    for table, columns in (
        ("limit_changes", LIMIT_COLUMNS),
        ("ledger_tombstones", TOMBSTONE_COLUMNS),
    ):
        previous = ""
        query = f'SELECT {", ".join(columns)}, chain_hash FROM "{table}" ORDER BY rowid'  # noqa: S608
        for n, row in enumerate(db.execute(query).fetchall(), start=1):
            expected = chain_hash(previous, dict(zip(columns, tuple(row)[:-1], strict=True)))
            if row[-1] != expected:
                problems.append(f"{table} row {n}: chain hash does not match its row")
            previous = row[-1]

    ledger = SqlLedger(db)
    accounts = ledger.accounts()
    report.accounts = len(accounts)
    total = 0
    for account in accounts:
        snapshot, derived = ledger.account(account), ledger.derived(account)
        total += derived.posted
        if snapshot != derived:
            problems.append(
                f"account {account}: snapshot {snapshot.posted}/{snapshot.pending_debits}/"
                f"{snapshot.pending_credits} but transfers give {derived.posted}/"
                f"{derived.pending_debits}/{derived.pending_credits}"
            )
    if total != 0:
        problems.append(f"posted balances sum to {total}, not 0")
    orphans = db.execute(
        "SELECT t.debit_account, t.credit_account FROM transfers t"
        " WHERE t.debit_account NOT IN (SELECT id FROM accounts)"
        " OR t.credit_account NOT IN (SELECT id FROM accounts)"
    ).fetchall()
    problems += [f"transfer names unknown accounts {tuple(o)}" for o in orphans]

    reversed_total: dict[str, int] = {}
    for fields in by_id.values():
        phase, pending_id, reverses_id = (
            fields["phase"],
            fields["pending_id"],
            fields["reverses_id"],
        )
        if phase in ("post", "void"):
            pending = by_id.get(str(pending_id))
            if pending is None or pending["phase"] != "pending":
                problems.append(f"transfer {fields['id']}: {phase} of no pending transfer")
            elif (pending["debit"], pending["credit"], pending["amount"]) != (
                fields["debit"],
                fields["credit"],
                fields["amount"],
            ):
                problems.append(f"transfer {fields['id']}: {phase} differs from its pending one")
        if reverses_id is not None:
            original = by_id.get(str(reverses_id))
            if original is None or original["phase"] not in ("single", "post"):
                problems.append(f"transfer {fields['id']}: reverses nothing reversible")
            elif (original["debit"], original["credit"]) != (fields["credit"], fields["debit"]):
                problems.append(f"transfer {fields['id']}: reversal does not swap the accounts")
            else:
                key = str(reverses_id)
                reversed_total[key] = reversed_total.get(key, 0) + int(str(fields["amount"]))
    for original_id, amount in reversed_total.items():
        if amount > int(str(by_id[original_id]["amount"])):
            problems.append(f"transfer {original_id}: reversed {amount}, more than its amount")

    limits = db.execute(
        "SELECT a.id, a.limit_points, (SELECT new_limit FROM limit_changes l"
        " WHERE l.account_id = a.id ORDER BY l.rowid DESC LIMIT 1),"
        " (SELECT COUNT(*) FROM limit_changes l WHERE l.account_id = a.id) FROM accounts a"
    ).fetchall()
    for account, current, last, changes in limits:
        if changes and current != last:
            problems.append(f"account {account}: limit {current} is not its last logged {last}")
    late = db.execute(
        "SELECT t.id FROM transfers t JOIN ledger_tombstones s ON s.original_key = t.idempotency_key"
    ).fetchall()
    problems += [f"transfer {r[0]}: recorded although its key was reversed first" for r in late]
    return report


def verify(store: Store, keys: CloudKeys | None = None) -> Report:
    """Verify the ledger in ``store`` on one consistent snapshot; with the cloud's ``keys``, also
    every signed daily root (without them, roots are counted but not checked)."""
    with store.snapshot() as db:
        report = verify_db(db)
        report.roots = len(signed_roots(db))
        if keys is not None:
            report.problems += verify_roots(db, keys)
        elif report.roots:
            report.problems.append("signed roots present but not checked: no cloud keys given")
    return report


def main(args: argparse.Namespace, data_dir: Path) -> int:
    """``linli ledger verify`` and ``linli ledger sign-day``."""
    path = data_dir / "cloud.sqlite3"
    if not path.exists():
        print(f"no cloud store at {path}", file=sys.stderr)
        return 2
    store = Store(path)
    keys = load_or_create_keys(data_dir / "secrets")
    try:
        if args.action == "sign-day":
            from cloud_api.transparency import local_day, sign_day

            now_ms = int(time.time() * 1000)
            signed = sign_day(store, keys, args.day or local_day(now_ms), now_ms)
            print(signed.to_json().decode())
            return 0
        report = verify(store, keys)
    finally:
        store.close()
    print(
        f"ledger {path}: {report.transfers} transfers, {report.accounts} accounts, "
        f"{report.roots} signed roots"
    )
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    print(
        "OK: balances, holds, reversals, limits, chain and roots recomputed"
        if report.ok
        else f"FAILED: {len(report.problems)} problem(s)"
    )
    return 0 if report.ok else 1
