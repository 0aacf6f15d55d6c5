"""Kill -9 the cloud API at random while a client writes points; check what survived.

Shared by tests/test_ledger_crash.py (50 trials) and bench/ledger_crash.py (500). One trial:
start ``linli cloud`` as its own process on a seeded store, let a client write (credits,
penalties, holds posted or voided, partial reversals, large credits approved by a second social
worker) and log every write that got HTTP 2xx, SIGKILL the process at a random moment, then —
with the API down — check the store file:

- every acknowledged write is there (its idempotency key is recorded);
- no half transaction: every approved request has its transfer and every transfer made from a
  request has its approval; every reserved item has its open hold;
- ``ledger verify`` passes (balances, holds, reversals, limits, chains recomputed from the rows).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cloud_api.core.ledger import LimitRequest
from cloud_api.keys import load_or_create_keys
from cloud_api.ledger import StoreLedger
from cloud_api.ledger_verify import verify
from cloud_api.seed import LOGINS, seed_demo
from cloud_api.store import Store
from station.broker import free_port

ZHANG, CHEN = LOGINS[2], LOGINS[4]


def prepare(data_dir: Path) -> None:
    """A seeded store whose residents may go far below zero (penalties keep flowing)."""
    store = Store(data_dir / "cloud.sqlite3")
    store.migrate()
    seed_demo(store, load_or_create_keys(data_dir / "secrets"), int(time.time() * 1000))
    ledger = StoreLedger(store)
    for member in ("per_1", "per_2"):
        ledger.set_limit(
            LimitRequest(f"lim:{member}", f"mem:{member}", -1_000_000_000, "setup", "load"),
            int(time.time() * 1000),
        )
    store.close()


@dataclass
class Api:
    """One ``linli cloud`` process."""

    process: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, the store is not closed."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_api(data_dir: Path, broker_url: str, timeout_s: float = 30.0) -> Api:
    """Start the API on a free port (connected to ``broker_url``) and wait until it answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "linli.cli",
            "--log-level",
            "WARNING",
            "cloud",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--broker-url",
            broker_url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Api(process, url)
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the API did not start (exit {process.poll()})")
        time.sleep(0.05)


@dataclass
class Log:
    """Writes that got HTTP 2xx, by idempotency key."""

    keys: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str) -> None:
        with self.lock:
            self.keys.append(key)


def sign_in(url: str, login: object) -> str:
    response = httpx.post(
        f"{url}/api/v1/session",
        json=login.body(int(time.time() * 1000)),  # type: ignore[attr-defined]
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["token"])


def write_until_dead(url: str, tokens: tuple[str, str], log: Log, rng: random.Random) -> None:
    """Write mixed movements until the API stops answering; log each acknowledged write."""
    zhang = httpx.Client(
        base_url=f"{url}/api/v1", timeout=5, headers={"Authorization": f"Bearer {tokens[0]}"}
    )
    chen = httpx.Client(
        base_url=f"{url}/api/v1", timeout=5, headers={"Authorization": f"Bearer {tokens[1]}"}
    )
    try:
        while True:
            tag = f"{rng.getrandbits(48):012x}"
            member = rng.choice(("per_1", "per_2"))
            op = rng.randrange(5)
            if op == 0:
                body = {"key": f"c:{tag}", "kind": "refund", "amount": 3, "member": member}
                response = zhang.post("/ledger/movements", json=body)
                response.raise_for_status()
                log.add(body["key"])
                reversal = {
                    "key": f"r:{tag}",
                    "original_key": body["key"],
                    "reason": "x",
                    "amount": 1,
                }
                zhang.post("/ledger/reversals", json=reversal).raise_for_status()
                log.add(reversal["key"])
            elif op in (1, 2):
                body = {"key": f"h:{tag}", "kind": "penalty", "amount": 2, "member": member}
                body["hold"] = True  # type: ignore[assignment]
                response = zhang.post("/ledger/movements", json=body)
                response.raise_for_status()
                log.add(str(body["key"]))
                hold = response.json()["transfer"]["id"]
                if op == 1:
                    zhang.post(
                        f"/ledger/holds/{hold}/post", json={"key": f"p:{tag}"}
                    ).raise_for_status()
                    log.add(f"p:{tag}")
                else:
                    void = {"key": f"v:{tag}", "reason": "x"}
                    zhang.post(f"/ledger/holds/{hold}/void", json=void).raise_for_status()
                    log.add(f"v:{tag}")
            elif op == 3:
                body = {"key": f"pen:{tag}", "kind": "penalty", "amount": 1, "member": member}
                zhang.post("/ledger/movements", json=body).raise_for_status()
                log.add(str(body["key"]))
            else:  # a large subsidy: parked, then approved by the second social worker
                body = {"key": f"s:{tag}", "kind": "refund", "amount": 250, "member": member}
                parked = zhang.post("/ledger/movements", json=body)
                parked.raise_for_status()
                request_id = parked.json()["request_id"]
                chen.post(f"/ledger/requests/{request_id}/approve", json={}).raise_for_status()
                log.add(str(body["key"]))
    except httpx.HTTPError:
        return  # the API died mid-write: that write is not acknowledged
    finally:
        zhang.close()
        chen.close()


def check(data_dir: Path, log: Log) -> list[str]:
    """What is wrong with the store after a crash (empty: nothing)."""
    store = Store(data_dir / "cloud.sqlite3")
    try:
        problems: list[str] = []
        with store.snapshot() as db:
            recorded = {r[0] for r in db.execute("SELECT idempotency_key FROM transfers")}
            recorded |= {r[0] for r in db.execute("SELECT reversal_key FROM ledger_tombstones")}
            missing = [k for k in log.keys if k not in recorded]
            problems += [f"acknowledged write {k} is missing" for k in missing[:10]]
            half = db.execute(
                "SELECT r.id FROM ledger_requests r LEFT JOIN transfers t ON t.id = r.transfer_id"
                " WHERE (r.status = 'approved') <> (t.id IS NOT NULL)"
            ).fetchall()
            problems += [f"request {r[0]} approved without its transfer" for r in half]
            orphans = db.execute(
                "SELECT t.idempotency_key FROM transfers t WHERE t.approved_by IS NOT NULL AND"
                " NOT EXISTS (SELECT 1 FROM ledger_requests r WHERE r.transfer_id = t.id)"
            ).fetchall()
            problems += [f"transfer {r[0]} approved without its request" for r in orphans]
            unheld = db.execute(
                "SELECT i.id FROM items i WHERE i.status = 'reserved' AND i.points > 0 AND NOT EXISTS"
                " (SELECT 1 FROM transfers t WHERE t.phase = 'pending'"
                " AND t.idempotency_key = 'hold:' || i.id || ':' || i.reserved_by)"
            ).fetchall()
            problems += [f"item {r[0]} reserved without its hold" for r in unheld]
        problems += verify(store, load_or_create_keys(data_dir / "secrets")).problems
        return problems
    finally:
        store.close()


def run_trials(
    data_dir: Path, broker_url: str, trials: int, seed: int, max_run_s: float = 0.6
) -> dict[str, int]:
    """``trials`` kill -9 trials on one store; raises AssertionError at the first problem.

    The API connects to the broker at ``broker_url`` (a private Mosquitto: without a broker it
    waits 10 s for one at every start).
    """
    rng = random.Random(seed)
    log = Log()
    prepare(data_dir)
    api = start_api(data_dir, broker_url)
    tokens = (sign_in(api.url, ZHANG), sign_in(api.url, CHEN))  # sessions survive restarts
    writes_before = 0
    for trial in range(1, trials + 1):
        writer = threading.Thread(
            target=write_until_dead, args=(api.url, tokens, log, random.Random(rng.random()))
        )
        writer.start()
        time.sleep(rng.uniform(0.05, max_run_s))
        api.kill()
        writer.join(timeout=30)
        problems = check(data_dir, log)
        if problems:
            raise AssertionError(f"trial {trial}: " + "; ".join(problems[:10]))
        writes_before = len(log.keys)
        if trial < trials:
            api = start_api(data_dir, broker_url)
    return {"trials": trials, "acknowledged_writes": writes_before}
