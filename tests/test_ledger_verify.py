"""``linli ledger verify`` finds tampering: one-byte edits to the database file, rows changed
behind the triggers' back, deleted rows, forged snapshots, forged roots — and passes an honest
ledger with holds, reversals, tombstones, limit changes and signed daily roots."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_api.core.ledger import (
    ISSUANCE,
    LimitRequest,
    ReversalRequest,
    TransferRequest,
)
from cloud_api.core.transparency import TransferLeaf, verify_inclusion
from cloud_api.keys import CloudKeys, load_or_create_keys
from cloud_api.ledger import SqlLedger
from cloud_api.ledger_verify import verify
from cloud_api.seed import seed_demo
from cloud_api.store import Store
from cloud_api.transparency import inclusion_for, sign_day

NOW_MS = 1_800_000_000_000
DAY_MS = 24 * 60 * 60 * 1000


def build(data_dir: Path) -> tuple[Path, CloudKeys]:
    """A demo store with a day of history, a reversal, a tombstone, a limit change, two roots."""
    path = data_dir / "cloud.sqlite3"
    store = Store(path)
    store.migrate()
    keys = load_or_create_keys(data_dir / "secrets")
    seed_demo(store, keys, NOW_MS)
    sign_day(store, keys, "2027-01-15", NOW_MS)
    with store.write() as db:
        ledger = SqlLedger(db)
        ledger.transfer(
            TransferRequest("credit:itm_9", "valuation_credit", ISSUANCE, "mem:per_2", 30, "per_9"),
            NOW_MS + DAY_MS,
        )
        ledger.reverse(
            ReversalRequest("rev:itm_9", "credit:itm_9", "per_9", "wrong item", 10), NOW_MS + DAY_MS
        )
        ledger.reverse(
            ReversalRequest("rev:t1:77", "t1:77", "terminal:t1", "timed out"), NOW_MS + DAY_MS
        )
        ledger.set_limit(
            LimitRequest("lim:per_2", "mem:per_2", -20, "per_9", "trusted elder"), NOW_MS + DAY_MS
        )
    sign_day(store, keys, "2027-01-16", NOW_MS + DAY_MS)
    store.close()  # the last connection checkpoints the WAL into the file
    return path, keys


def problems(path: Path, keys: CloudKeys) -> list[str]:
    store = Store(path)
    try:
        return verify(store, keys).problems
    except sqlite3.DatabaseError as exc:  # a page so damaged SQLite refuses it is caught too
        return [f"sqlite: {exc}"]
    finally:
        store.close()


def test_an_honest_ledger_verifies(tmp_path: Path) -> None:
    path, keys = build(tmp_path)
    store = Store(path)
    report = verify(store, keys)
    store.close()
    assert report.problems == []
    assert (report.roots, report.accounts) == (2, 6)
    assert report.transfers == 5  # 2 seed credits, a hold, a credit and its partial reversal


@pytest.mark.parametrize(
    "needle",
    [
        b"valuation_credit",  # a kind
        b"seed-credit:per_1",  # an idempotency key
        b"wrong item",  # a reversal's reason
        b"trusted elder",  # a limit change's reason
    ],
)
def test_a_one_byte_edit_to_the_file_is_caught(tmp_path: Path, needle: bytes) -> None:
    path, keys = build(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0, f"{needle!r} not in the file"
    data[at + len(needle) - 1] ^= 0x01  # one bit of one byte
    path.write_bytes(bytes(data))
    found = problems(path, keys)
    assert found, f"an edit of {needle!r} went unnoticed"


def _tamper(path: Path, *statements: str) -> None:
    """What someone with the file can do: drop the triggers, change rows, put them back."""
    db = sqlite3.connect(path)
    triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for name, _ in triggers:
        db.execute(f'DROP TRIGGER "{name}"')
    for statement in statements:
        db.execute(statement)
    for _, sql in triggers:
        db.execute(sql)
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        pytest.param(
            ["UPDATE transfers SET amount = amount + 1 WHERE rowid = 1"],
            "chain hash",
            id="amount-raised",
        ),
        pytest.param(
            [
                "UPDATE transfers SET amount = amount + 1 WHERE rowid = 1",
                "UPDATE account_balances SET posted = posted + 1"
                " WHERE account_id = (SELECT credit_account FROM transfers WHERE rowid = 1)",
                "UPDATE account_balances SET posted = posted - 1 WHERE account_id = 'sys:issuance'",
            ],
            "chain hash",
            id="amount-and-snapshots-raised-together",
        ),
        pytest.param(
            ["DELETE FROM transfers WHERE rowid = (SELECT MAX(rowid) FROM transfers)"],
            "snapshot",
            id="last-row-deleted",
        ),
        pytest.param(
            ["UPDATE account_balances SET posted = posted + 5 WHERE account_id = 'mem:per_1'"],
            "snapshot",
            id="snapshot-forged",
        ),
        pytest.param(
            ["UPDATE accounts SET limit_points = -1000 WHERE id = 'mem:per_2'"],
            "limit",
            id="limit-changed-without-log",
        ),
        pytest.param(
            ["UPDATE ledger_tombstones SET reason = 'x'"],
            "ledger_tombstones row 1: chain hash",
            id="tombstone-edited",
        ),
        pytest.param(
            [
                "UPDATE limit_changes SET new_limit = -500",
                "UPDATE accounts SET limit_points = -500 WHERE id = 'mem:per_2'",
            ],
            "limit_changes row 1: chain hash",
            id="limit-log-and-account-rewritten",
        ),
    ],
)
def test_rows_changed_behind_the_triggers_back_are_caught(
    tmp_path: Path, statements: list[str], expected: str
) -> None:
    path, keys = build(tmp_path)
    _tamper(path, *statements)
    found = problems(path, keys)
    assert any(expected in p for p in found), found


def test_a_rewritten_history_with_a_consistent_chain_is_caught_by_the_signed_roots(
    tmp_path: Path,
) -> None:
    """The operator rewrites an early amount and recomputes every chain hash and snapshot: only
    the roots signed (and published) before can tell."""
    from cloud_api.ledger import TRANSFER_COLUMNS, chain_hash, row_fields

    path, keys = build(tmp_path)
    _tamper(path, "UPDATE transfers SET amount = amount + 7 WHERE rowid = 1")
    db = sqlite3.connect(path)
    previous = ""
    query = f"SELECT rowid, {TRANSFER_COLUMNS} FROM transfers ORDER BY rowid"  # noqa: S608
    for row in db.execute(query).fetchall():
        previous = chain_hash(previous, row_fields(row[1:]))
        db.execute("DROP TRIGGER IF EXISTS transfers_no_update")
        db.execute("UPDATE transfers SET chain_hash = ? WHERE rowid = ?", (previous, row[0]))
    first = db.execute(
        "SELECT debit_account, credit_account FROM transfers WHERE rowid = 1"
    ).fetchone()
    db.execute("UPDATE account_balances SET posted = posted - 7 WHERE account_id = ?", (first[0],))
    db.execute("UPDATE account_balances SET posted = posted + 7 WHERE account_id = ?", (first[1],))
    db.commit()
    db.close()
    found = problems(path, keys)
    assert found and all("root of" in p for p in found), found


def test_a_resident_checks_their_entry_against_the_signed_root(tmp_path: Path) -> None:
    path, keys = build(tmp_path)
    store = Store(path)
    with store.snapshot() as db:
        credit = db.execute(
            "SELECT id FROM transfers WHERE idempotency_key = 'seed-credit:per_1'"
        ).fetchone()[0]
        proof = inclusion_for(db, keys, credit)
    store.close()
    assert proof is not None
    leaf = TransferLeaf.decode(proof["leaf"].encode())
    assert leaf.opens(proof["private"], bytes.fromhex(proof["salt"]))  # their own fields
    assert "mem:per_1" not in proof["leaf"]  # the published leaf does not name them
    body = proof["root"]["body"]
    assert verify_inclusion(
        proof["leaf"].encode(),
        proof["index"],
        body["log_size"],
        [bytes.fromhex(p) for p in proof["proof"]],
        bytes.fromhex(body["log_root"]),
    )


def test_linli_ledger_verify_exits_1_and_names_the_problem(tmp_path: Path) -> None:
    path, _ = build(tmp_path)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "linli.cli", "ledger", "verify", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    good = run()
    assert good.returncode == 0, good.stdout + good.stderr
    assert "OK:" in good.stdout
    _tamper(path, "UPDATE account_balances SET posted = posted + 5 WHERE account_id = 'mem:per_1'")
    bad = run()
    assert bad.returncode == 1
    assert "PROBLEM account mem:per_1" in bad.stdout


def test_the_cloud_signs_yesterday_once(tmp_path: Path) -> None:
    from cloud_api.transparency import local_day, sign_due

    path, keys = build(tmp_path)
    store = Store(path)
    try:
        later = NOW_MS + 3 * DAY_MS
        signed = sign_due(store, keys, later)
        assert signed is not None
        assert signed.body.day == local_day(later - DAY_MS)
        assert signed.body.previous_day == "2027-01-16"
        assert sign_due(store, keys, later + 60_000) is None  # once
        assert verify(store, keys).problems == []
    finally:
        store.close()
