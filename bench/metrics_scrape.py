"""Benchmark: the cost of one ``GET /metrics`` scrape on a store of a year's size (issue #10).

What is run: the real cloud (HTTP app under uvicorn, SQLite store, MQTT bridge on a private
Mosquitto) on a store seeded with 100 locker banks × 16 compartments in 4 communities, 200 000
``device_events`` (a sixth of them ``latch_pulsed``), 5 000 items, 800 residents with their
ledger (5 000 valuation credits, 1 500 redemptions, 600 live holds), 10 000 item history rows,
20 000 notifications, open cases and alerts. Every bank is online (a real ``status`` message)
and has sent telemetry (a real ``tele`` message), so every device series is present.

What is timed, over HTTP with one keep-alive client, alternating:

1. ``GET /metrics`` with the token: ``--scrapes`` samples (default 60) after one untimed first
   scrape (timed apart: it counts the running totals over every row once, see
   cloud_api/metrics.py ``RunningTotals``).
2. Baseline in the same run: ``GET /healthz``.
3. In-process ``generate_latest`` of the app's registry: what a scrape holds the store's one
   lock for, at most (writers wait this long).
4. For the index question: the latch count done the naive way (``GROUP BY`` over every
   ``device_events`` row) without an index, then with ``(type, device_id, compartment)``
   indexed (on this bench's own copy: migrations are not touched).

Target (issue #10, set by the lead): scrape p99 ≤ 500 ms on the 2-core machine.

Run: ``.venv/bin/python bench/metrics_scrape.py [--scrapes 60]``. Needs the ``mosquitto``
binary. Takes about a minute, most of it seeding.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloud_api import ledger
from cloud_api.core.items import STATUSES
from cloud_api.devices.enrol import enrol_device
from cloud_api.keys import load_or_create_keys
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from linli.broker import BrokerAddress
from linli.contract import Status, Telemetry, encode, topic
from station.broker import MosquittoBroker, free_port, mosquitto_binary
from station.cloud_server import CloudServer
from station.scenarios import wait_for

COMMUNITIES = ("north", "south", "east", "west")
BANKS = 100
COMPARTMENTS = 16
EVENTS = 200_000
ITEMS = 5_000
RESIDENTS = 800
NOTIFICATIONS = 20_000
TARGET_P99_MS = 500.0
NOW_MS = int(time.time() * 1000)
EVENT_TYPES = (
    "code_accepted",
    "latch_pulsed",
    "door_opened",
    "grant_consumed",
    "occupancy_changed",
    "door_closed",
)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (as the other benches compute it)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, values_ms: Sequence[float]) -> tuple[float, float]:
    """Print one line ``name n median p99``; return (median, p99)."""
    median, p99 = statistics.median(values_ms), percentile(values_ms, 0.99)
    print(f"  {name:<52} n={len(values_ms):>4}  median {median:8.2f} ms  p99 {p99:8.2f} ms")
    return median, p99


# --- the store ----------------------------------------------------------------------------------


def seed(data_dir: Path) -> list[str]:
    """Fill a new store; return the device ids."""
    store = Store(data_dir / "cloud.sqlite3")
    store.migrate()
    keys = load_or_create_keys(data_dir / "secrets")
    devices = [f"bank-{i:03d}" for i in range(BANKS)]
    names = [f"{row}{n}" for row in "ABCD" for n in range(1, 5)]
    assert len(names) == COMPARTMENTS
    with store.write() as db:
        for community in COMMUNITIES:
            db.execute("INSERT INTO communities (id, name) VALUES (?, ?)", (community, community))
        accounts = ledger.SqlLedger(db)
        for account in ledger.SYSTEM_ACCOUNTS:
            accounts.open_account(account, "system", name=account)
        for i in range(RESIDENTS):
            pid = f"per_{i:04d}"
            db.execute(
                "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
                " created_ms) VALUES (?,?, 'resident', ?, ?, 'x', 0)",
                (pid, COMMUNITIES[i % len(COMMUNITIES)], pid, pid),
            )
            accounts.open_account(f"mem:{pid}", "member", limit=0, person_id=pid, name=pid)
    for i, device_id in enumerate(devices):
        enrol_device(
            store,
            keys,
            community_id=COMMUNITIES[i % len(COMMUNITIES)],
            device_id=device_id,
            role="locker",
            name=device_id,
            compartments=[(n, "M") for n in names],
        )
    with store.write() as db:
        # Items across every status, their history (two rows each), the ledger behind them.
        items = []
        for i in range(ITEMS):
            status = STATUSES[i % len(STATUSES)]
            donor = f"per_{i % RESIDENTS:04d}"
            items.append(
                (
                    f"itm_{i:05d}",
                    COMMUNITIES[(i % RESIDENTS) % len(COMMUNITIES)],
                    donor,
                    f"item {i}",
                    "books",
                    5,
                    status,
                    devices[i % BANKS],
                    names[i % COMPARTMENTS],
                    NOW_MS,
                )
            )
        db.executemany(
            "INSERT INTO items (id, community_id, donor_id, title, category, points, status,"
            " device_id, compartment, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
            items,
        )
        db.executemany(
            "INSERT INTO item_history (item_id, at_ms, from_status, to_status, cause)"
            " VALUES (?,?,?,?,?)",
            [
                (item[0], NOW_MS + k, "proposed", item[6], "bench")
                for item in items
                for k in range(2)
            ],
        )
        for i in range(ITEMS):
            ledger.transfer(
                db,
                key=f"credit:{i}",
                debit=ledger.ISSUANCE,
                credit=f"mem:per_{i % RESIDENTS:04d}",
                amount=5,
                kind="valuation_credit",
                actor="bench",
                now_ms=NOW_MS,
            )
        for i in range(1_500):
            ledger.transfer(
                db,
                key=f"spend:{i}",
                debit=f"mem:per_{i % RESIDENTS:04d}",
                credit=ledger.REDEMPTION,
                amount=3,
                kind="redemption",
                actor="bench",
                now_ms=NOW_MS,
            )
        for i in range(600):
            ledger.transfer(
                db,
                key=f"hold:{i}",
                debit=f"mem:per_{i % RESIDENTS:04d}",
                credit=ledger.REDEMPTION,
                amount=2,
                kind="redemption",
                actor="bench",
                now_ms=NOW_MS,
                phase="pending",
            )
        db.executemany(
            "INSERT INTO notifications (id, key, person_id, kind, params, status,"
            " next_attempt_ms, created_ms) VALUES (?,?,?, 'new_code', '{}', ?, ?, ?)",
            [
                (
                    f"ntf_{i:06d}",
                    f"bench:{i}",
                    f"per_{i % RESIDENTS:04d}",
                    "sent" if i % 50 else "failed",
                    NOW_MS,
                    NOW_MS,
                )
                for i in range(NOTIFICATIONS)
            ],
        )
        db.executemany(
            "INSERT INTO cases (id, community_id, kind, status, created_ms) VALUES (?,?,?,?,?)",
            [
                (
                    f"cas_{i}",
                    COMMUNITIES[i % 4],
                    "problem_report",
                    "open" if i % 3 else "resolved",
                    0,
                )
                for i in range(300)
            ],
        )
        db.executemany(
            "INSERT INTO alerts (id, community_id, tracking_code, rule, severity, cause_key,"
            " status, opened_ms, due_ms) VALUES (?,?,?, 'ajar', ?, ?, ?, ?, ?)",
            [
                (
                    f"alr_{i}",
                    COMMUNITIES[i % 4],
                    f"T{i:05d}",
                    ("red", "yellow", "blue")[i % 3],
                    f"ajar:{i}",
                    "resolved" if i % 4 else "open",
                    NOW_MS,
                    NOW_MS,
                )
                for i in range(400)
            ],
        )
        # Events: one boot per device, contiguous, each with its stored payload.
        per_device = EVENTS // BANKS
        rows = []
        for d, device_id in enumerate(devices):
            boot = f"{d:012x}"
            for seq in range(1, per_device + 1):
                kind = EVENT_TYPES[seq % len(EVENT_TYPES)]
                compartment = names[(seq // len(EVENT_TYPES)) % COMPARTMENTS]
                wall_ms = NOW_MS - (per_device - seq) * 60_000
                payload = json.dumps(
                    {
                        "v": 1,
                        "device_id": device_id,
                        "boot_id": boot,
                        "seq": seq,
                        "type": kind,
                        "mono_ms": seq * 1000,
                        "wall_ms": wall_ms,
                        "trust": "synced",
                        "compartment": compartment,
                        "grant_id": f"grt_{seq:08d}",
                        "cmd_id": None,
                        "reason": None,
                        "data": {},
                    },
                    separators=(",", ":"),
                )
                rows.append(
                    (device_id, boot, seq, kind, compartment, f"grt_{seq:08d}", wall_ms,
                     seq * 1000, payload, wall_ms, wall_ms)
                )  # fmt: skip
            db.execute(
                "INSERT INTO event_heads (device_id, boot_id, contiguous_seq, highest_seq,"
                " expected_seq) VALUES (?,?,?,?,0)",
                (device_id, boot, per_device, per_device),
            )
        db.executemany(
            "INSERT INTO device_events (device_id, boot_id, seq, type, compartment, grant_id,"
            " wall_ms, mono_ms, trust, payload, received_ms, settled_ms)"
            " VALUES (?,?,?,?,?,?,?,?, 'synced', ?,?,?)",
            rows,
        )
    store.close()
    return devices


def announce(broker: BrokerAddress, devices: list[str]) -> None:
    """Every bank says it is online and sends its telemetry, over MQTT as a controller does."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-banks")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for i, device_id in enumerate(devices):
            boot = f"{i:012x}"
            status = Status(
                device_id=device_id, state="online", role="locker", boot_id=boot,
                version="0.1.0", keepalive_s=3600,
            )  # fmt: skip
            tele = Telemetry(
                device_id=device_id, boot_id=boot, uptime_s=86_400, outbox_depth=i % 5,
                grant_list_age_s=300, clock_trust="synced", cpu_temp_c=48.0 + i % 20,
                throttled=0x50000 if i % 10 == 0 else 0,
            )  # fmt: skip
            client.publish(topic(device_id, "status"), encode(status), qos=1).wait_for_publish(5)
            client.publish(topic(device_id, "tele"), encode(tele), qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


# --- the run ------------------------------------------------------------------------------------


def naive_latch_count_ms(path: Path, runs: int = 5) -> float:
    """Median time of counting latch pulses over every event row (a separate connection)."""
    db = sqlite3.connect(path)
    try:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            db.execute(
                "SELECT device_id, compartment, COUNT(*) FROM device_events"
                " WHERE type = 'latch_pulsed' GROUP BY device_id, compartment"
            ).fetchall()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)
    finally:
        db.close()


def run(scrapes: int, tmp: Path) -> bool:
    print(
        f"metrics scrape benchmark — {platform.node()}, {platform.machine()}, {os.cpu_count()}"
        f" cpus, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    started = time.perf_counter()
    devices = seed(tmp / "cloud")
    size_mb = (tmp / "cloud" / "cloud.sqlite3").stat().st_size / 1e6
    print(
        f"  seeded in {time.perf_counter() - started:.1f} s: {BANKS} banks × {COMPARTMENTS}"
        f" compartments, {EVENTS:,} events, {ITEMS:,} items, {NOTIFICATIONS:,} notifications;"
        f" store {size_mb:.0f} MB"
    )
    token = secrets.token_hex(32)
    broker = MosquittoBroker(tmp / "broker")
    info = broker.start()
    address = BrokerAddress(info.host, info.port)
    cloud: CloudServer | None = None
    try:
        settings = CloudSettings(
            data_dir=tmp / "cloud",
            host="127.0.0.1",
            port=free_port(),
            broker_url=address.url,
            metrics_token=token,
        )
        cloud = CloudServer(settings).start()
        services = cloud.app.state.services
        wait_for("the cloud on the broker", lambda: services.devices.broker_connected, 15)
        announce(address, devices)
        wait_for("every bank's telemetry", lambda: len(services.devices.telemetry) == BANKS, 30)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=cloud.url, timeout=30) as http:
            began = time.perf_counter()
            first = http.get("/metrics", headers=auth)
            first_ms = (time.perf_counter() - began) * 1000
            assert first.status_code == 200, first.status_code
            families = list(text_string_to_metric_families(first.text))
            series = sum(len(f.samples) for f in families)
            pulses = sum(
                s.value
                for f in families
                if f.name == "linli_compartment_latch_actuations"
                for s in f.samples
            )
            # seq % 6 == 1 is a latch_pulsed event (EVENT_TYPES), in every bank's boot
            assert pulses == BANKS * len(range(1, EVENTS // BANKS + 1, len(EVENT_TYPES))), pulses
            scrape_ms: list[float] = []
            health_ms: list[float] = []
            for _ in range(scrapes):
                began = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                health_ms.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                response = http.get("/metrics", headers=auth)
                scrape_ms.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200
        registry = cloud.app.state.metrics
        collect_ms, render_ms = [], []
        for _ in range(scrapes):
            began = time.perf_counter()
            list(registry.collect())
            collect_ms.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            generate_latest(registry)
            render_ms.append((time.perf_counter() - began) * 1000)
    finally:
        if cloud is not None:
            cloud.stop()
        broker.stop()

    path = tmp / "cloud" / "cloud.sqlite3"
    naive_ms = naive_latch_count_ms(path)
    db = sqlite3.connect(path)
    db.execute("CREATE INDEX bench_events_by_type ON device_events (type, device_id, compartment)")
    db.close()
    indexed_ms = naive_latch_count_ms(path)

    print(f"  one scrape: {len(first.content) / 1000:.0f} kB, {series:,} samples")
    print()
    print(f"  {'first scrape (running totals counted from row 1)':<52} n=   1  {first_ms:8.2f} ms")
    _, p99 = report("GET /metrics", scrape_ms)
    report("baseline: GET /healthz", health_ms)
    report("in process: collect (holds the store lock ≤ this)", collect_ms)
    report("in process: collect + render (generate_latest)", render_ms)
    print(f"  {'latch count over all events, no index (median of 5)':<52} {naive_ms:8.2f} ms")
    print(f"  {'the same with (type, device_id, compartment) index':<52} {indexed_ms:8.2f} ms")
    met = p99 <= TARGET_P99_MS
    print(f"  p99 {p99:.1f} ms — target ≤ {TARGET_P99_MS:.0f} ms: {'PASS' if met else 'MISS'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scrapes", type=int, default=60, help="timed scrapes (≥ 50)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the alerts the bench's telemetry raises
    if mosquitto_binary() is None:
        raise SystemExit("needs the mosquitto binary (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory() as tmp:
        met = run(max(args.scrapes, 50), Path(tmp))
    raise SystemExit(0 if met else 1)


if __name__ == "__main__":
    main()
