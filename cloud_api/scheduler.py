"""The cloud's scheduled jobs: grant expiry and settlement, loans, proposals, device silence.

Every job is idempotent: it changes only rows whose state says the change is still due, in one
write transaction, so running it twice, or again after a crash between two runs, changes nothing
more. Jobs run on the MQTT worker thread (:meth:`CloudBridge.every`), serialized with the
device messages they settle against; :meth:`Scheduler.run_all` runs them at once for tests and
``linli cloud jobs``. A run that changed something is recorded in ``job_runs`` (name, time, how
much); every run is kept in memory (``last_runs``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cloud_api.devices.service import DeviceService
from cloud_api.items.service import Policy, transition
from cloud_api.items.settlement import expire_grants, settle_unused_grants
from cloud_api.keys import CloudKeys
from cloud_api.notify.outbox import enqueue
from cloud_api.store import Store
from linli.clock import Clock

log = logging.getLogger(__name__)

DEVICE_SILENCE_MS = 10 * 60 * 1000
"""A device that has sent nothing (telemetry included) for this long is marked lost, also when
the cloud restarted and its in-memory keepalive watchdog knows nothing of it."""


@dataclass(frozen=True)
class Job:
    """One periodic job: ``run(now_ms)`` returns how many things it changed."""

    name: str
    period_s: float
    run: Callable[[int], int]


class Scheduler:
    """Runs each job when its period has passed."""

    def __init__(self, store: Store, clock: Clock, jobs: list[Job]) -> None:
        self._store = store
        self._clock = clock
        self.jobs = {job.name: job for job in jobs}
        self._next: dict[str, float] = {}
        self.last_runs: dict[str, tuple[int, int]] = {}
        """name → (wall time of the last run, how much it changed)."""

    def run_due(self) -> dict[str, int]:
        """Run every job whose period has passed; return what each changed."""
        now_mono = time.monotonic()
        results = {}
        for name, job in self.jobs.items():
            if now_mono >= self._next.get(name, 0.0):
                self._next[name] = now_mono + job.period_s
                results[name] = self.run(name)
        return results

    def run_all(self) -> dict[str, int]:
        """Run every job now, in order."""
        return {name: self.run(name) for name in self.jobs}

    def run(self, name: str) -> int:
        """Run one job now and record the run."""
        now = self._clock.now().wall_ms
        try:
            changed = self.jobs[name].run(now)
        except Exception:
            log.exception("job %s failed", name)
            return 0
        self.last_runs[name] = (now, changed)
        if not changed:
            return 0  # an idle run writes nothing (a quiet store stays byte-for-byte the same)
        with self._store.write() as db:
            db.execute(
                "INSERT INTO job_runs (name, last_run_ms, last_changed) VALUES (?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET last_run_ms = excluded.last_run_ms,"
                " last_changed = excluded.last_changed",
                (name, now, changed),
            )
        if changed:
            log.info("job %s changed %d", name, changed)
        return changed


def domain_jobs(
    store: Store,
    keys: CloudKeys,
    devices: DeviceService,
    policy: Policy,
    *,
    period_s: float = 1.0,
    silence_ms: int = DEVICE_SILENCE_MS,
) -> list[Job]:
    """The jobs of the item lifecycle and of device silence."""

    def expire(now: int) -> int:
        with store.write() as db:
            return expire_grants(db, now)

    def settle(now: int) -> int:
        with store.write() as db:
            count, changed = settle_unused_grants(db, keys, now, policy)
        for device_id in sorted(changed):
            devices.publish_config(device_id)
        return count

    def loans(now: int) -> int:
        count = 0
        with store.write() as db:
            for action, sql in (
                ("loan_due", "SELECT * FROM items WHERE status = 'on_loan' AND due_ms <= ?"),
                ("loan_overdue", "SELECT * FROM items WHERE status = 'due' AND due_ms <= ?"),
            ):
                limit = now if action == "loan_due" else now - policy.due_grace_ms
                for item in db.execute(sql, (limit,)).fetchall():
                    transition(
                        db,
                        keys,
                        item,
                        action,
                        cause=action,
                        actor="scheduler",
                        now_ms=now,
                        policy=policy,
                    )
                    if action == "loan_due" and item["reserved_by"] is not None:
                        enqueue(
                            db,
                            person_id=item["reserved_by"],
                            kind="loan_due",
                            key=f"loan_due:{item['id']}:{item['due_ms']}",
                            params={"item_id": item["id"], "due_ms": item["due_ms"]},
                            now_ms=now,
                        )
                    count += 1
        return count

    def proposals(now: int) -> int:
        count = 0
        with store.write() as db:
            for item in db.execute(
                "SELECT * FROM items WHERE status = 'proposed' AND deadline_ms <= ?", (now,)
            ).fetchall():
                transition(
                    db,
                    keys,
                    item,
                    "proposal_lapsed",
                    cause="proposal_lapsed",
                    actor="scheduler",
                    now_ms=now,
                    policy=policy,
                )
                count += 1
        return count

    def silence(now: int) -> int:
        with store.write() as db:
            lost = db.execute(
                "UPDATE devices SET status = 'lost', status_ms = ? WHERE status = 'online'"
                " AND last_seen_ms IS NOT NULL AND last_seen_ms < ? RETURNING id",
                (now, now - silence_ms),
            ).fetchall()
        for row in lost:
            log.warning("device %s lost: silent for over %d s", row["id"], silence_ms // 1000)
        return len(lost)

    def stale_events(now: int) -> int:
        return devices.settle_stale_events(policy.staleness_ms)

    return [
        Job("expire_grants", period_s, expire),
        Job("settle_grants", period_s, settle),
        Job("loans", max(period_s, 30.0), loans),
        Job("proposals", max(period_s, 30.0), proposals),
        Job("device_silence", max(period_s, 30.0), silence),
        Job("stale_events", max(period_s, 60.0), stale_events),
    ]
