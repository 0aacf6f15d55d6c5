"""Benchmark: ledger write latency at 10k and 200k transfers, and posted holds per second (#6).

What is timed: ``StoreLedger.transfer`` of one valuation credit — one write transaction
(``BEGIN IMMEDIATE``, the core's checks, the idempotency lookup across the key space, the
tombstone check, both balance snapshots, the hash chain, ``COMMIT`` with ``synchronous=FULL``
in WAL mode) — on a real SQLite file, once the ledger holds 10 000 transfers and again at
200 000 (filled in batches through the same ``SqlLedger`` code, so every row is chained and
every snapshot kept). Then ``StoreLedger.post`` of open holds, one per transaction, on one
thread: posted holds per second.

Baseline from the same run: a plain ``INSERT`` of one row into a one-column table with one
commit each, same file system and pragmas — the cost of a durable commit by itself.

Targets (issue #6): median latency at 200k / median at 10k ≤ 1.5; ≥ 500 posted holds per second
on one worker.

Run: ``.venv/bin/python bench/ledger_write.py [--samples 1000] [--large 200000]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from cloud_api.core.ledger import ISSUANCE, SYSTEM_ACCOUNTS, PostRequest, TransferRequest
from cloud_api.ledger import SqlLedger, StoreLedger
from cloud_api.store import Store

MEMBERS = 1000
NOW_MS = 1_800_000_000_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(name: str, values: list[float]) -> float:
    median = statistics.median(values)
    print(
        f"  {name:<46} n={len(values):>5}  median {median:7.3f} ms"
        f"  p99 {percentile(values, 0.99):7.3f} ms"
    )
    return median


def fill(store: Store, start: int, until: int, batch: int = 2000) -> None:
    """Credits through SqlLedger in large transactions (chained and snapshotted like any)."""
    n = start
    while n < until:
        with store.write() as db:
            ledger = SqlLedger(db)
            for _ in range(min(batch, until - n)):
                ledger.transfer(
                    TransferRequest(
                        f"fill:{n}", "valuation_credit", ISSUANCE, f"mem:m{n % MEMBERS}", 1, "bench"
                    ),
                    NOW_MS + n,
                )
                n += 1


def timed_credits(ledger: StoreLedger, tag: str, samples: int) -> list[float]:
    out: list[float] = []
    for i in range(samples):
        req = TransferRequest(
            f"{tag}:{i}", "valuation_credit", ISSUANCE, f"mem:m{i % MEMBERS}", 2, "bench"
        )
        started = time.perf_counter()
        ledger.transfer(req, NOW_MS + i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def baseline(path: Path, samples: int) -> list[float]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (v INTEGER)")
    out: list[float] = []
    for i in range(samples):
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (i,))
        db.execute("COMMIT")
        out.append((time.perf_counter() - started) * 1000)
    db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--holds", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores, Python"
            f" {platform.python_version()}, SQLite {sqlite3.sqlite_version}; files in {tmp}"
        )
        store = Store(Path(tmp) / "cloud.sqlite3")
        store.migrate()
        ledger = StoreLedger(store)
        for account in SYSTEM_ACCOUNTS:
            ledger.open_account(account, "system")
        with store.write() as db:
            for m in range(MEMBERS):
                SqlLedger(db).open_account(f"mem:m{m}", "member")
        print("\nResults:")
        base = show(
            "baseline: plain INSERT + durable COMMIT", baseline(Path(tmp) / "b.db", args.samples)
        )
        fill(store, 0, 10_000)
        small = show("transfer at 10 000 transfers", timed_credits(ledger, "a", args.samples))
        started = time.monotonic()
        fill(store, 10_000 + args.samples, args.large)
        print(f"  (filled to {args.large} transfers in {time.monotonic() - started:.0f} s)")
        large = show(
            f"transfer at {args.large:,} transfers".replace(",", " "),
            timed_credits(ledger, "b", args.samples),
        )

        holds: list[str] = []
        with store.write() as db:
            for i in range(args.holds):
                req = TransferRequest(
                    f"hold:{i}",
                    "redemption",
                    f"mem:m{i % MEMBERS}",
                    "sys:redemption",
                    1,
                    "bench",
                    pending=True,
                )
                holds.append(SqlLedger(db).transfer(req, NOW_MS).id)
        post_ms: list[float] = []
        started = time.perf_counter()
        for i, hold in enumerate(holds):
            t0 = time.perf_counter()
            ledger.post(PostRequest(f"post:{i}", hold, "device:bench"), NOW_MS)
            post_ms.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
        show("post one hold (one transaction each)", post_ms)
        per_second = len(holds) / elapsed
        size_mb = (Path(tmp) / "cloud.sqlite3").stat().st_size / 1e6
        store.close()
    ratio = large / small
    print(f"\n  store file: {size_mb:.0f} MB")
    print(f"  ratio of medians, {args.large} / 10 000: {ratio:.2f}x (target <= 1.5)")
    print(f"  transfer at 10 000 / baseline commit: {small / base:.2f}x")
    print(f"  posted holds per second, one worker: {per_second:.0f} (target >= 500)")
    print(f"\n  {'PASS' if ratio <= 1.5 else 'MISS'} latency ratio {ratio:.2f}")
    print(f"  {'PASS' if per_second >= 500 else 'MISS'} posted holds {per_second:.0f}/s")


if __name__ == "__main__":
    main()
