"""The item lifecycle on a real store, driven by device events through the real ingest path.

No broker and no server: a seeded SQLite file, the real :class:`DeviceService` (its publisher
records instead of sending, conftest's ``RecordingPublisher``), the real :class:`ItemService` and
:class:`Scheduler`, and a fake clock. Events are the contract's models, encoded and handed to
``DeviceService.handle`` exactly as the MQTT worker does. The scenarios on a real broker are in
tests/test_settlement_scenarios.py; this file covers the rest of the lifecycle: lending with a
deposit, rejection and return to the donor, re-issue, maintenance codes, compartments that need
attention, refused transitions that change nothing, and jobs that are idempotent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RecordingPublisher

from cloud_api import ledger
from cloud_api.accounts.service import Person
from cloud_api.devices.service import DeviceService
from cloud_api.errors import Conflict, Forbidden, NotFound
from cloud_api.items.service import DAY_MS, ItemService, Policy
from cloud_api.keys import CloudKeys
from cloud_api.points.service import PointsService
from cloud_api.scheduler import Scheduler, domain_jobs
from cloud_api.seed import seed_demo
from cloud_api.store import Store
from linli.clock import FakeClock
from linli.contract import Event, Status, Telemetry, encode, topic

NOW_MS = 1_800_000_000_000
BOOT = "d" * 12


@dataclass
class World:
    store: Store
    keys: CloudKeys
    clock: FakeClock
    devices: DeviceService
    items: ItemService
    scheduler: Scheduler
    publisher: RecordingPublisher
    seq: int = 0

    def person(self, person_id: str) -> Person:
        row = self.store.read_one(
            "SELECT id, community_id, role, display_name, language FROM people WHERE id = ?",
            (person_id,),
        )
        assert row is not None
        return Person(
            row["id"], row["community_id"], row["role"], row["display_name"], row["language"]
        )

    def event(
        self,
        type_: str,
        compartment: str,
        grant_id: str | None = None,
        device_id: str = "locker-a",
        **data: Any,
    ) -> None:
        """The next event of locker-a's boot, through the real ingest path."""
        self.seq += 1
        self.devices.handle(
            topic(device_id, "evt"),
            encode(
                Event(
                    device_id=device_id,
                    boot_id=BOOT,
                    seq=self.seq,
                    type=type_,
                    mono_ms=self.seq,
                    wall_ms=self.clock.now().wall_ms,
                    trust="synced",
                    compartment=compartment,
                    grant_id=grant_id,
                    data=data,
                )
            ),
        )

    def pickup(self, compartment: str, grant_id: str, *, take: bool = True) -> None:
        self.event("door_opened", compartment, grant_id)
        self.event("grant_consumed", compartment, grant_id)
        if take:
            self.event("occupancy_changed", compartment, grant_id, occupancy="absent")
        self.event("door_closed", compartment, grant_id, epoch=0)

    def put_in(self, compartment: str, grant_id: str) -> None:
        self.event("door_opened", compartment, grant_id)
        self.event("occupancy_changed", compartment, grant_id, occupancy="present")
        self.event("door_closed", compartment, grant_id, epoch=1)

    def horizon(self, through_ms: int) -> None:
        """Telemetry saying every event before ``through_ms`` is acknowledged."""
        self.devices.handle(
            topic("locker-a", "tele"),
            encode(
                Telemetry(
                    device_id="locker-a",
                    boot_id=BOOT,
                    uptime_s=1,
                    outbox_depth=0,
                    reported_through_ms=through_ms,
                )
            ),
        )

    def status(self, item_id: str) -> str:
        row = self.store.read_one("SELECT status FROM items WHERE id = ?", (item_id,))
        assert row is not None
        return str(row["status"])

    def balance(self, person_id: str) -> tuple[int, int]:
        with self.store.snapshot() as db:
            return ledger.balances(db, f"mem:{person_id}")


@pytest.fixture
def world(tmp_path: Path, cloud_keys: CloudKeys) -> Iterator[World]:
    store = Store(tmp_path / "cloud.sqlite3")
    store.migrate()
    seed_demo(store, cloud_keys, NOW_MS)
    clock = FakeClock(wall_ms=NOW_MS + 1000, mono_ms=1)
    publisher = RecordingPublisher()
    policy = Policy()
    devices = DeviceService(store, cloud_keys, publisher, clock, policy)
    points = PointsService(store, cloud_keys, clock)
    items = ItemService(store, cloud_keys, clock, devices.publish_config, points, policy)
    scheduler = Scheduler(store, clock, domain_jobs(store, cloud_keys, devices, policy))
    devices.handle(
        topic("locker-a", "status"),
        encode(
            Status(
                device_id="locker-a",
                state="online",
                role="locker",
                boot_id=BOOT,
                version="test",
                keepalive_s=30,
            )
        ),
    )
    with store.write() as db:  # the bank reports its compartments empty but for the seeded items
        db.execute(
            "UPDATE compartments SET occupancy = 'absent', door = 'closed'"
            " WHERE occupancy != 'present'"
        )
    yield World(store, cloud_keys, clock, devices, items, scheduler, publisher)
    store.close()


def add_lend_item(world: World) -> str:
    """Uncle Li lends a drill (deposit 10, 7 days), dropped off, approved and listed in A1."""
    li, zhang = world.person("per_2"), world.person("per_3")
    item_id = world.items.propose(
        li,
        {
            "title": "电钻 Drill",
            "category": "tools",
            "size": "S",
            "kind": "lend",
            "deposit_points": 10,
            "loan_days": 7,
            "points": 2,
        },
        None,
    )
    shown = world.items.request_dropoff(li, item_id, "locker-a")
    assert shown["compartment"] == "A1" and len(shown["code"]) == 8
    world.put_in("A1", shown["grant_id"])
    assert world.status(item_id) == "pending_approval"
    world.items.approve(zhang, item_id, 2, "works")
    return item_id


def test_a_loan_holds_a_deposit_until_it_comes_back_in_good_order(world: World) -> None:
    item_id = add_lend_item(world)
    wang = world.person("per_1")
    posted, held = world.balance("per_1")
    shown = world.items.reserve(wang, item_id, None)
    assert world.balance("per_1") == (posted, held + 12)  # fee 2 + deposit 10
    world.pickup("A1", shown["grant_id"])
    assert world.status(item_id) == "on_loan"
    assert world.balance("per_1") == (posted - 2, held + 10)  # the fee posted, the deposit held
    due = world.store.read_one("SELECT due_ms FROM items WHERE id = ?", (item_id,))["due_ms"]
    assert due == world.clock.now().wall_ms + 7 * DAY_MS

    world.clock.advance(7 * DAY_MS + 1)
    assert world.scheduler.run("loans") == 1
    assert world.status(item_id) == "due"
    assert world.scheduler.run("loans") == 0  # idempotent
    world.clock.advance(DAY_MS)
    world.scheduler.run("loans")
    assert world.status(item_id) == "overdue"

    back = world.items.request_return(wang, item_id, "locker-a")
    assert world.status(item_id) == "awaiting_return"
    world.put_in(back["compartment"], back["grant_id"])
    assert world.status(item_id) == "returned_pending_check"
    assert world.balance("per_1") == (posted - 2, held + 10)  # still held until checked
    world.items.check(world.person("per_3"), item_id, True, "no damage")
    assert world.status(item_id) == "listed"
    assert world.balance("per_1") == (posted - 2, held)  # deposit released


def test_a_damaged_return_keeps_the_deposit_held_and_opens_a_case(world: World) -> None:
    item_id = add_lend_item(world)
    wang = world.person("per_1")
    shown = world.items.reserve(wang, item_id, None)
    world.pickup("A1", shown["grant_id"])
    back = world.items.request_return(wang, item_id, "locker-a")
    world.put_in(back["compartment"], back["grant_id"])
    _, held = world.balance("per_1")
    world.items.check(world.person("per_3"), item_id, False, "chuck broken")
    assert world.status(item_id) == "under_review"
    assert world.balance("per_1")[1] == held
    assert world.store.read("SELECT kind FROM cases WHERE item_id = ?", (item_id,))[0][0] == (
        "damaged_return"
    )


def test_a_rejected_item_goes_back_to_its_donor(world: World) -> None:
    li = world.person("per_2")
    item_id = world.items.propose(
        li, {"title": "旧鞋 Old shoes", "category": "clothing", "size": "S"}, None
    )
    shown = world.items.request_dropoff(li, item_id, None)
    world.put_in(shown["compartment"], shown["grant_id"])
    posted, _ = world.balance("per_2")
    result = world.items.reject(world.person("per_3"), item_id, "worn out")
    assert world.status(item_id) == "awaiting_return_to_donor"
    grant = world.store.read_one("SELECT * FROM grants WHERE id = ?", (result["grant_id"],))
    assert (grant["person_id"], grant["purpose"]) == ("per_2", "pickup")
    world.pickup(shown["compartment"], result["grant_id"])
    assert world.status(item_id) == "returned_to_donor"
    assert world.balance("per_2")[0] == posted  # never credited
    with pytest.raises(Conflict, match="cannot be approved"):
        world.items.approve(world.person("per_3"), item_id, 5, "changed my mind")


def test_refused_transitions_change_nothing(world: World) -> None:
    wang, zhang = world.person("per_1"), world.person("per_3")
    before = world.store.dump()
    with pytest.raises(Conflict) as refused:
        world.items.approve(zhang, "itm_books", 5, "listed already")
    assert refused.value.code == "invalid_transition"
    with pytest.raises(Conflict):
        world.items.reserve(wang, "itm_kettle", None)  # reserved already (by her)
    with pytest.raises(Conflict) as own:
        world.items.reserve(world.person("per_2"), "itm_books", None)
    assert own.value.code == "own_item"
    with pytest.raises(NotFound):
        world.items.cancel(world.person("per_2"), "itm_kettle", "not mine")  # Wang's
    with pytest.raises(Forbidden):
        world.items.reserve(wang, "itm_books", "per_2")  # residents reserve for themselves
    assert world.store.dump() == before


def test_a_compartment_needing_attention_is_neither_reserved_nor_chosen(world: World) -> None:
    with world.store.write() as db:
        db.execute(
            "UPDATE compartments SET needs_attention = 1, attention = 'door_forced'"
            " WHERE device_id = 'locker-a' AND name IN ('A1', 'A3')"
        )
    with pytest.raises(Conflict) as refused:
        world.items.reserve(world.person("per_1"), "itm_books", None)  # in A3
    assert refused.value.code == "attention"
    li = world.person("per_2")
    item_id = world.items.propose(li, {"title": "书 Book", "category": "books", "size": "S"}, None)
    shown = world.items.request_dropoff(li, item_id, "locker-a")
    assert shown["compartment"] == "A4"  # A1 needs attention, A2 and A3 are taken: L fits S
    item2 = world.items.propose(li, {"title": "书 Book 2", "category": "books", "size": "S"}, None)
    with pytest.raises(Conflict) as full:
        world.items.request_dropoff(li, item2, "locker-a")
    assert full.value.code == "no_free_compartment"


def test_an_unused_pickup_is_relisted_only_after_the_device_reports_past_its_expiry(
    world: World,
) -> None:
    wang = world.person("per_1")
    shown = world.items.reserve(wang, "itm_books", None)
    world.clock.advance(48 * 3600 * 1000 + 1)
    world.scheduler.run_all()
    assert world.status("itm_books") == "reserved"  # expired, but the device has not reported
    world.horizon(shown["valid_until_ms"] - 1)
    world.scheduler.run_all()
    assert world.status("itm_books") == "reserved"  # not yet past the expiry
    world.horizon(shown["valid_until_ms"] + 1)
    world.scheduler.run_all()
    assert world.status("itm_books") == "listed"
    grant = world.store.read_one("SELECT outcome FROM grants WHERE id = ?", (shown["grant_id"],))
    assert grant["outcome"] == "unused"
    before = world.store.dump()
    world.scheduler.run_all()  # every job is idempotent
    after = world.store.dump()
    assert {t: r for t, r in after.items() if t != "job_runs"} == {
        t: r for t, r in before.items() if t != "job_runs"
    }


def test_a_reissued_code_replaces_the_old_one_and_its_expiry_relists_nothing(
    world: World,
) -> None:
    wang, zhang = world.person("per_1"), world.person("per_3")
    kettle = world.store.read_one(
        "SELECT id FROM grants WHERE item_id = 'itm_kettle' AND status = 'active'"
    )["id"]
    from cloud_api.grants.router import WithReason
    from cloud_api.grants.router import reissue as reissue_route

    class Svc:  # the route's dependencies, as the app provides them
        store, keys, clock, items, devices = (
            world.store,
            world.keys,
            world.clock,
            world.items,
            world.devices,
        )

    new = reissue_route(kettle, WithReason(reason="lost her note"), zhang, Svc())  # type: ignore[arg-type]
    assert "code" not in new  # the worker reads it to her from her page, never from this answer
    old = world.store.read_one("SELECT status, outcome FROM grants WHERE id = ?", (kettle,))
    assert (old["status"], old["outcome"]) == ("revoked", "replaced")
    world.clock.advance(48 * 3600 * 1000 - 500)  # past the old code's expiry, not the new one's
    world.horizon(world.clock.now().wall_ms)
    world.scheduler.run_all()
    assert world.status("itm_kettle") == "reserved"  # the old code's expiry relisted nothing
    world.pickup("A2", new["grant_id"])
    assert world.status("itm_kettle") == "picked_up"
    assert world.balance("per_1") == (50 - 12, 0)
    assert wang.id == "per_1"


def test_proposals_lapse_and_silent_devices_are_marked_lost(world: World) -> None:
    li = world.person("per_2")
    item_id = world.items.propose(li, {"title": "伞 Umbrella", "category": "other"}, None)
    world.clock.advance(7 * DAY_MS + 1)
    results = world.scheduler.run_all()
    assert world.status(item_id) == "withdrawn"
    assert results["proposals"] == 1 and results["device_silence"] == 1
    assert world.store.read_one("SELECT status FROM devices WHERE id = 'locker-a'")[0] == "lost"
    assert world.scheduler.run_all()["proposals"] == 0


def test_an_event_for_an_unknown_compartment_or_anothers_grant_is_a_case(world: World) -> None:
    kettle = world.store.read_one(
        "SELECT id FROM grants WHERE item_id = 'itm_kettle' AND status = 'active'"
    )["id"]
    world.event("door_opened", "A3", kettle)  # the kettle's grant is for A2
    world.event("door_opened", "Z9")
    kinds = [r[0] for r in world.store.read("SELECT kind FROM cases ORDER BY created_ms")]
    assert kinds == ["device_mismatch", "device_mismatch"]
    assert world.status("itm_kettle") == "reserved"
