"""Benchmark: settling device events, and the expiry settlement job (#7).

What is timed:

1. ``DeviceService.handle`` of one pickup's six events (``code_accepted``, ``latch_pulsed``,
   ``door_opened``, ``grant_consumed``, ``occupancy_changed`` absent, ``door_closed``) for each
   of N reservations: decode, store once, settle in the device's order (item lifecycle, grant
   consumed, hold posted, history), advance the horizon, acknowledge — per event, on a real
   SQLite file with ``synchronous=FULL``. Publishing goes to an in-memory recorder.
2. The same number of events that settle nothing (``latch_pulsed`` on an empty compartment):
   the **baseline** measured in the same run, the ingest path without settlement.
3. ``settle_unused_grants`` over N expired reservations whose device reported past their expiry:
   one job run, the time per grant settled (hold voided, item relisted).

Target (set here, the issue names none): settling costs at most 3× the baseline per event, and a
settlement run handles ≥ 500 expired grants per second on one worker.

Run: ``.venv/bin/python bench/settlement.py [--reservations 300]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from cloud_api import ledger
from cloud_api.devices.enrol import enrol_device
from cloud_api.devices.service import DeviceService
from cloud_api.items.service import reserve
from cloud_api.items.settlement import expire_grants, settle_unused_grants
from cloud_api.keys import load_or_create_keys
from cloud_api.store import Store
from linli.clock import FakeClock
from linli.contract import Event, encode, topic

NOW_MS = 1_800_000_000_000
COMMUNITY = "bench"


class Recorder:
    """The cloud's publisher, in memory."""

    is_connected = True

    def publish(self, device_id: str, name: str, payload: bytes) -> None:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(name: str, values: list[float]) -> float:
    median = statistics.median(values)
    print(
        f"  {name:<44} n={len(values):>5}  median {median:7.3f} ms  p99 {percentile(values, 0.99):7.3f} ms"
    )
    return median


def setup(root: Path, reservations: int) -> tuple[Store, DeviceService, list[tuple[str, str]]]:
    store = Store(root / "cloud.sqlite3")
    store.migrate()
    keys = load_or_create_keys(root / "secrets")
    with store.write() as db:
        db.execute("INSERT INTO communities (id, name) VALUES (?, ?)", (COMMUNITY, "bench"))
        accounts = ledger.SqlLedger(db)
        for account in ledger.SYSTEM_ACCOUNTS:
            accounts.open_account(account, "system", name=account)
        for pid in ("per_donor", "per_taker"):
            db.execute(
                "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
                " created_ms) VALUES (?,?, 'resident', ?, ?, 'x', 0)",
                (pid, COMMUNITY, pid, pid),
            )
            accounts.open_account(f"mem:{pid}", "member", limit=0, person_id=pid, name=pid)
        ledger.transfer(
            db,
            key="fund",
            debit=ledger.ISSUANCE,
            credit="mem:per_taker",
            amount=10 * reservations,
            kind="valuation_credit",
            actor="bench",
            now_ms=NOW_MS,
        )
    names = [f"A{i}" for i in range(1, reservations + 1)]
    enrol_device(
        store,
        keys,
        community_id=COMMUNITY,
        device_id="bank-1",
        role="locker",
        name="bench",
        location="",
        compartments=[(n, "M") for n in names],
    )
    grants = []
    with store.write() as db:
        for name in names:
            item_id = f"itm_{name}"
            db.execute(
                "INSERT INTO items (id, community_id, donor_id, title, category, points, status,"
                " device_id, compartment, updated_ms) VALUES (?,?, 'per_donor', ?, 'other', 3,"
                " 'listed', 'bank-1', ?, ?)",
                (item_id, COMMUNITY, item_id, name, NOW_MS),
            )
            grants.append((reserve(db, keys, item_id, "per_taker", NOW_MS), name))
    clock = FakeClock(wall_ms=NOW_MS, mono_ms=1)
    return store, DeviceService(store, keys, Recorder(), clock), grants


def events_of(boot: str, start: int, grant_id: str | None, name: str) -> list[Event]:
    kinds = [
        ("code_accepted", {}),
        ("latch_pulsed", {}),
        ("door_opened", {}),
        ("grant_consumed", {}),
        ("occupancy_changed", {"occupancy": "absent"}),
        ("door_closed", {"epoch": 0}),
    ]
    return [
        Event(
            device_id="bank-1",
            boot_id=boot,
            seq=start + i,
            type=kind,
            mono_ms=start + i,
            wall_ms=NOW_MS + start + i,
            trust="synced",
            compartment=name,
            grant_id=grant_id,
            data=data,
        )
        for i, (kind, data) in enumerate(kinds)
    ]


def run(reservations: int) -> None:
    print(
        f"settlement benchmark — {platform.node()}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}, {reservations} reservations"
    )
    with tempfile.TemporaryDirectory() as tmp:
        store, devices, grants = setup(Path(tmp), reservations)
        settled: list[float] = []
        seq = 1
        for grant_id, name in grants:
            for event in events_of("a" * 12, seq, grant_id, name):
                started = time.perf_counter()
                devices.handle(topic("bank-1", "evt"), encode(event))
                settled.append((time.perf_counter() - started) * 1000)
            seq += 6
        picked = store.read_one("SELECT COUNT(*) FROM items WHERE status = 'picked_up'")[0]
        assert picked == reservations, picked
        baseline: list[float] = []
        for i in range(len(settled)):
            event = Event(
                device_id="bank-1",
                boot_id="b" * 12,
                seq=i + 1,
                type="latch_pulsed",
                mono_ms=i,
                wall_ms=NOW_MS + i,
                trust="synced",
                compartment="A1",
            )
            started = time.perf_counter()
            devices.handle(topic("bank-1", "evt"), encode(event))
            baseline.append((time.perf_counter() - started) * 1000)
        store.close()
    with tempfile.TemporaryDirectory() as tmp:
        store, _devices, grants = setup(Path(tmp), reservations)
        later = NOW_MS + 49 * 3600 * 1000
        with store.write() as db:
            expire_grants(db, later)
            db.execute("UPDATE devices SET reported_through_ms = ?", (later,))
        keys = load_or_create_keys(Path(tmp) / "secrets")
        started = time.perf_counter()
        with store.write() as db:
            count, _ = settle_unused_grants(db, keys, later)
        job_s = time.perf_counter() - started
        assert count == reservations, count
        listed = store.read_one("SELECT COUNT(*) FROM items WHERE status = 'listed'")[0]
        assert listed == reservations, listed
        store.close()
    print()
    m_settle = show("event settled (pickup events)", settled)
    m_base = show("baseline: event stored, settles nothing", baseline)
    print(f"  ratio settled / baseline (median)            {m_settle / m_base:5.2f}  (target ≤ 3)")
    print(
        f"  expiry settlement job: {reservations} grants in {job_s * 1000:.1f} ms"
        f" = {reservations / job_s:,.0f} grants/s  (target ≥ 500)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reservations", type=int, default=300)
    run(parser.parse_args().reservations)
