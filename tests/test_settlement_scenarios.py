"""Settlement scenarios on a real Mosquitto with simulated controllers (issue #7, "Done when").

Each test runs the real cloud (uvicorn, SQLite, its scheduler on the MQTT worker) and the real
controller daemon on gpiozero's MockFactory with the door and item simulator; residents act
through the cloud's services (the HTTP layer is covered by the access matrix and the fuzz). Each
scenario states its documented outcome (docs/decisions/0016-domain-and-settlement.md):

- **offline pickup reported after expiry** — the cloud does not void the hold at expiry: it waits
  until the controller's reports pass the expiry; the late report settles it as a pickup, once;
- **the same, past the staleness bound** — the cloud settled the grant as unused (hold voided,
  item relisted); the late report opens a case with a recorded correction, takes the item off the
  listing, and moves no points: never a second outcome;
- **item not taken** — door opened and closed with the item still inside: no points move, the
  item stays reserved, the used-up code is replaced, a case records it;
- **empty drop-off** — the door closed on an empty compartment: no credit, the proposal is back
  to ``proposed`` and the compartment free; a real drop-off afterwards is credited on approval;
- **ajar with the item inside** — nothing is settled while the door stands open; a case records
  the risk; closing the door settles the drop-off;
- **a wrong device speaking for a compartment** — recorded as a case, settles nothing;
- **duplicate and re-ordered events** — settled once, in the device's order.
"""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import CloudUnderTest, LockerFactory
from paho.mqtt.enums import CallbackAPIVersion
from test_offline_grants import (
    Code,
    compartment_is,
    enter,
    holds_grant,
    open_swap_and_close,
    services,
    start_locker,
)

from cloud_api import ledger
from cloud_api.accounts.service import Person
from cloud_api.items.service import grant_view
from linli.contract import Event, encode, topic
from station.broker import MosquittoBroker
from station.scenarios import wait_for

DEVICE = "locker-a"
WANG, LI, ZHANG = "per_1", "per_2", "per_3"


def person(cloud: CloudUnderTest, person_id: str) -> Person:
    """The signed-in person the services act for."""
    row = cloud.store.read_one(
        "SELECT id, community_id, role, display_name, language FROM people WHERE id = ?",
        (person_id,),
    )
    assert row is not None
    return Person(
        id=row["id"],
        community_id=row["community_id"],
        role=row["role"],
        display_name=row["display_name"],
        language=row["language"],
    )


def item_status(cloud: CloudUnderTest, item_id: str) -> str:
    row = cloud.store.read_one("SELECT status FROM items WHERE id = ?", (item_id,))
    assert row is not None
    return str(row["status"])


def grant_row(cloud: CloudUnderTest, grant_id: str) -> dict[str, Any]:
    row = cloud.store.read_one("SELECT * FROM grants WHERE id = ?", (grant_id,))
    assert row is not None
    return dict(row)


def balance(cloud: CloudUnderTest, person_id: str) -> tuple[int, int]:
    """(posted, held) points of a resident."""
    with cloud.store.snapshot() as db:
        return ledger.balances(db, f"mem:{person_id}")


def holds_of(cloud: CloudUnderTest, item_id: str) -> list[tuple[str, str | None]]:
    """Every hold of an item and how it ended (``post``, ``void`` or None)."""
    rows = cloud.store.read(
        "SELECT h.id, (SELECT r.phase FROM transfers r WHERE r.pending_id = h.id) AS ended"
        " FROM transfers h WHERE h.phase = 'pending' AND h.refs LIKE ? ORDER BY h.rowid",
        (f'%"{item_id}"%',),
    )
    return [(r["id"], r["ended"]) for r in rows]


def cases(cloud: CloudUnderTest, kind: str) -> list[dict[str, Any]]:
    return [dict(r) for r in cloud.store.read("SELECT * FROM cases WHERE kind = ?", (kind,))]


def reserve_books(cloud: CloudUnderTest, locker: Any) -> dict[str, Any]:
    """Auntie Wang reserves the picture books (locker-a A3); the list reaches the controller."""
    shown: dict[str, Any] = services(cloud).items.reserve(person(cloud, WANG), "itm_books", None)
    wait_for("the new grant on the controller", lambda: holds_grant(locker, shown["grant_id"]))
    return shown


def wait_past(cloud: CloudUnderTest, wall_ms: int) -> None:
    """Until the cloud's clock has passed a time (real time: the cloud runs on SystemClock)."""
    wait_for("the cloud's clock to pass", lambda: services(cloud).clock.now().wall_ms > wall_ms, 30)


# --- expiry waits for the device ------------------------------------------------------------------


def test_an_offline_pickup_reported_after_expiry_settles_as_the_pickup(
    make_cloud: Any, mosquitto_broker: MosquittoBroker, simulated_locker: LockerFactory
) -> None:
    cloud = make_cloud(pickup_valid_s=8)
    locker = start_locker(cloud, simulated_locker)
    shown = reserve_books(cloud, locker)
    posted_before, held_before = balance(cloud, WANG)

    port = mosquitto_broker.info.port
    mosquitto_broker.stop()
    wait_for("the controller to lose the broker", lambda: not locker.daemon.link.is_connected)
    assert enter(locker, Code(shown["code"])) == "code.accepted"
    open_swap_and_close(locker, "A3")

    wait_past(cloud, shown["valid_until_ms"] + 2000)
    services(cloud).scheduler.run_all()  # the jobs also run by themselves every second
    grant = grant_row(cloud, shown["grant_id"])
    # Expired, but not settled: the controller has not reported past the expiry.
    assert (grant["status"], grant["settled_ms"]) == ("expired", None)
    assert item_status(cloud, "itm_books") == "reserved"
    assert balance(cloud, WANG) == (posted_before, held_before)  # the hold is still held

    assert mosquitto_broker.start().port == port
    wait_for("the late pickup settled", lambda: item_status(cloud, "itm_books") == "picked_up", 20)
    wait_for("the outbox drained", lambda: locker.daemon.outbox_depth() == 0, 20)
    services(cloud).scheduler.run_all()
    grant = grant_row(cloud, shown["grant_id"])
    assert (grant["status"], grant["outcome"]) == ("consumed", "used")
    assert [ended for _, ended in holds_of(cloud, "itm_books")] == ["post"]
    assert balance(cloud, WANG) == (posted_before - 5, held_before - 5)
    assert cases(cloud, "late_conflict") == []
    history = [
        r["to_status"]
        for r in cloud.store.read(
            "SELECT to_status FROM item_history WHERE item_id = 'itm_books' ORDER BY at_ms, rowid"
        )
    ]
    assert history == ["reserved", "collecting", "picked_up"]


def test_a_report_later_than_the_staleness_bound_is_a_case_never_a_second_outcome(
    make_cloud: Any, mosquitto_broker: MosquittoBroker, simulated_locker: LockerFactory
) -> None:
    cloud = make_cloud(pickup_valid_s=6, staleness_s=2)
    locker = start_locker(cloud, simulated_locker)
    shown = reserve_books(cloud, locker)
    posted_before, _ = balance(cloud, WANG)

    port = mosquitto_broker.info.port
    mosquitto_broker.stop()
    wait_for("the controller to lose the broker", lambda: not locker.daemon.link.is_connected)
    assert enter(locker, Code(shown["code"])) == "code.accepted"
    open_swap_and_close(locker, "A3")

    # Silent past expiry + the staleness bound: the cloud decides without the device.
    wait_past(cloud, shown["valid_until_ms"] + 2000 + 1000)
    services(cloud).scheduler.run_all()
    grant = grant_row(cloud, shown["grant_id"])
    assert (grant["status"], grant["outcome"]) == ("expired", "unused_stale")
    assert item_status(cloud, "itm_books") == "listed"
    assert [ended for _, ended in holds_of(cloud, "itm_books")] == ["void"]
    assert balance(cloud, WANG) == (posted_before, 12)  # only the seeded kettle's hold is left

    assert mosquitto_broker.start().port == port
    wait_for("the late conflict recorded", lambda: cases(cloud, "late_conflict"), 20)
    wait_for("the outbox drained", lambda: locker.daemon.outbox_depth() == 0, 20)
    (case,) = cases(cloud, "late_conflict")
    assert (case["grant_id"], case["item_id"], case["person_id"]) == (
        shown["grant_id"],
        "itm_books",
        WANG,
    )
    corrections = cloud.store.read("SELECT * FROM corrections WHERE case_id = ?", (case["id"],))
    assert corrections, "every conflicting event leaves a recorded correction"
    first = json.loads(corrections[0]["applied"])
    assert first["item"] == {"from": "listed", "to": "under_review"}
    # Never a second outcome: the hold stays voided, nothing was posted, the item is off the list.
    assert [ended for _, ended in holds_of(cloud, "itm_books")] == ["void"]
    assert balance(cloud, WANG) == (posted_before, 12)
    assert item_status(cloud, "itm_books") == "under_review"
    assert grant_row(cloud, shown["grant_id"])["outcome"] == "unused_stale"


def test_a_cancelled_reservation_is_released_only_after_the_controller_confirms(
    make_cloud: Any, simulated_locker: LockerFactory
) -> None:
    cloud = make_cloud()
    locker = start_locker(cloud, simulated_locker)
    shown = reserve_books(cloud, locker)
    assert services(cloud).items.cancel(person(cloud, WANG), "itm_books", "changed my mind") == {
        "status": "cancelling"
    }
    grant = grant_row(cloud, shown["grant_id"])
    assert grant["status"] == "revoked" and grant["settled_ms"] is None
    # The controller applies the revocation, reports it, and its telemetry passes that moment.
    wait_for("the release", lambda: item_status(cloud, "itm_books") == "listed", 30)
    assert not holds_grant(locker, shown["grant_id"])
    assert grant_row(cloud, shown["grant_id"])["outcome"] == "unused"
    assert [ended for _, ended in holds_of(cloud, "itm_books")] == ["void"]
    assert enter(locker, Code(shown["code"])) == "code.refused.withdrawn"


# --- what the compartment reports --------------------------------------------------------------


def test_an_item_not_taken_moves_no_points_and_the_code_is_replaced(
    make_cloud: Any, simulated_locker: LockerFactory
) -> None:
    cloud = make_cloud()
    locker = start_locker(cloud, simulated_locker)
    shown = reserve_books(cloud, locker)
    posted_before, held_before = balance(cloud, WANG)

    assert enter(locker, Code(shown["code"])) == "code.accepted"
    open_swap_and_close(locker, "A3", take=False)  # looked inside, closed the door again
    wait_for("the case", lambda: cases(cloud, "item_left_behind"), 15)
    wait_for("reserved again", lambda: item_status(cloud, "itm_books") == "reserved")
    assert grant_row(cloud, shown["grant_id"])["status"] == "consumed"
    assert balance(cloud, WANG) == (posted_before, held_before)
    (replacement,) = [
        g
        for g in services(cloud).store.read(
            "SELECT id FROM grants WHERE item_id = 'itm_books' AND status = 'active'"
        )
    ]
    assert grant_row(cloud, replacement["id"])["replaces_id"] == shown["grant_id"]

    # The new code (shown again on the resident's page) opens the door; this time she takes it.
    with cloud.store.snapshot() as db:
        again = grant_view(db, cloud.keys, replacement["id"], with_code=True)
    wait_for("the replacement on the controller", lambda: holds_grant(locker, again["grant_id"]))
    wait_for("the cool-down", lambda: enter(locker, Code(again["code"])) == "code.accepted", 15)
    open_swap_and_close(locker, "A3")
    wait_for("picked up", lambda: item_status(cloud, "itm_books") == "picked_up")
    assert [ended for _, ended in holds_of(cloud, "itm_books")] == ["post"]
    assert balance(cloud, WANG) == (posted_before - 5, held_before - 5)


def test_an_empty_dropoff_credits_nothing_and_a_real_one_is_credited_on_approval(
    make_cloud: Any, simulated_locker: LockerFactory
) -> None:
    cloud = make_cloud()
    locker = start_locker(cloud, simulated_locker)
    items = services(cloud).items
    wang = person(cloud, WANG)
    item_id = items.propose(
        wang, {"title": "台灯 Desk lamp", "category": "appliance", "size": "S"}, None
    )
    shown = items.request_dropoff(wang, item_id, DEVICE)
    assert (shown["device_id"], shown["compartment"]) == (DEVICE, "A1")  # the one free S
    wait_for("the drop-off grant on the controller", lambda: holds_grant(locker, shown["grant_id"]))
    posted_before, _ = balance(cloud, WANG)

    assert enter(locker, Code(shown["code"])) == "code.accepted"
    open_swap_and_close(locker, "A1", take=False)  # the door closes on an empty compartment
    wait_for("the case", lambda: cases(cloud, "dropoff_empty"), 15)
    wait_for("back to proposed", lambda: item_status(cloud, item_id) == "proposed")
    row = cloud.store.read_one("SELECT device_id, compartment FROM items WHERE id = ?", (item_id,))
    assert row is not None and (row["device_id"], row["compartment"]) == (None, None)
    assert balance(cloud, WANG)[0] == posted_before

    # A second try, with the item: known inside only once the door closed on it.
    shown = items.request_dropoff(wang, item_id, DEVICE)
    wait_for("the new grant on the controller", lambda: holds_grant(locker, shown["grant_id"]))
    wait_for("the cool-down", lambda: enter(locker, Code(shown["code"])) == "code.accepted", 15)
    open_swap_and_close(locker, "A1", take=False, put=True)
    wait_for("inside", lambda: item_status(cloud, item_id) == "pending_approval")
    assert balance(cloud, WANG)[0] == posted_before  # inside, but not approved yet
    result = items.approve(person(cloud, ZHANG), item_id, 8, "good condition")
    assert result["credit"]["status"] == "recorded"
    assert balance(cloud, WANG)[0] == posted_before + 8
    with pytest.raises(Exception, match="cannot be approved"):
        items.approve(person(cloud, "per_5"), item_id, 8, "again")  # credited once
    assert balance(cloud, WANG)[0] == posted_before + 8


def test_a_door_left_ajar_with_the_item_inside_settles_nothing_until_it_closes(
    make_cloud: Any, simulated_locker: LockerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The controller's ajar delay (120 s) shortened: a policy value, not behaviour.
    monkeypatch.setattr("locker_controller.core.decide.AJAR_AFTER_MS", 1500)
    cloud = make_cloud()
    locker = start_locker(cloud, simulated_locker)
    items = services(cloud).items
    wang = person(cloud, WANG)
    item_id = items.propose(wang, {"title": "水杯 Cup", "category": "kitchen", "size": "S"}, None)
    shown = items.request_dropoff(wang, item_id, DEVICE)
    wait_for("the drop-off grant on the controller", lambda: holds_grant(locker, shown["grant_id"]))

    assert enter(locker, Code(shown["code"])) == "code.accepted"
    wait_for("the latch of A1 to release", lambda: locker.sim.open_door("A1"), 5)
    wait_for("A1 seen open", lambda: compartment_is(locker, "A1", door="open"))
    assert locker.sim.put_item("A1")
    wait_for("A1 seen full", lambda: compartment_is(locker, "A1", occupancy="present"))
    wait_for("the risk recorded", lambda: cases(cloud, "item_at_risk"), 15)
    (case,) = cases(cloud, "item_at_risk")
    assert case["item_id"] == item_id
    assert item_status(cloud, item_id) == "awaiting_dropoff"  # inside, but not secured

    locker.sim.close_door("A1")
    wait_for("inside", lambda: item_status(cloud, item_id) == "pending_approval")


# --- events that do not fit -----------------------------------------------------------------------


def publish_as(cloud: CloudUnderTest, device_id: str, payloads: list[bytes]) -> None:
    """Publish raw events on a device's event topic (a faulty device, or a re-delivery)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{device_id}-{time.time()}")
    client.connect(cloud.broker.host, cloud.broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic(device_id, "evt"), payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def event(device_id: str, boot_id: str, seq: int, type_: str, **fields: Any) -> bytes:
    now = int(time.time() * 1000)
    return encode(
        Event(
            device_id=device_id,
            boot_id=boot_id,
            seq=seq,
            type=type_,
            mono_ms=seq * 100,
            wall_ms=now,
            trust="synced",
            **fields,
        )
    )


def test_a_device_speaking_for_another_devices_compartment_settles_nothing(
    make_cloud: Any,
) -> None:
    cloud = make_cloud()
    grant_id = cloud.store.read_one(
        "SELECT id FROM grants WHERE item_id = 'itm_kettle' AND status = 'active'"
    )["id"]
    before = cloud.store.read("SELECT status, reserved_by FROM items ORDER BY id")
    boot = "b" * 12
    publish_as(
        cloud,
        "locker-b",
        [
            # locker-b names locker-a's pickup grant for the kettle ...
            event("locker-b", boot, 1, "door_opened", compartment="A2", grant_id=grant_id),
            event(
                "locker-b",
                boot,
                2,
                "occupancy_changed",
                compartment="A2",
                grant_id=grant_id,
                data={"occupancy": "absent"},
            ),
            # ... and a compartment it does not have.
            event("locker-b", boot, 3, "door_opened", compartment="Z9"),
        ],
    )
    wait_for("both mismatches recorded", lambda: len(cases(cloud, "device_mismatch")) == 3, 15)
    assert cloud.store.read("SELECT status, reserved_by FROM items ORDER BY id") == before
    assert grant_row(cloud, grant_id)["status"] == "active"
    assert [ended for _, ended in holds_of(cloud, "itm_kettle")] == [None]


def test_duplicate_and_reordered_events_settle_once_in_order(make_cloud: Any) -> None:
    cloud = make_cloud()
    # Auntie Wang reserves the winter coat in locker-b A4 (no controller runs for locker-b:
    # the events come from this test, as a controller re-sending after lost acknowledgements).
    shown = services(cloud).items.reserve(person(cloud, WANG), "itm_coat", None)
    grant_id = shown["grant_id"]
    boot = "c" * 12
    events = [
        event("locker-b", boot, 1, "code_accepted", compartment="A4", grant_id=grant_id),
        event("locker-b", boot, 2, "door_opened", compartment="A4", grant_id=grant_id),
        event(
            "locker-b",
            boot,
            3,
            "occupancy_changed",
            compartment="A4",
            grant_id=grant_id,
            data={"occupancy": "absent"},
        ),
        event(
            "locker-b",
            boot,
            4,
            "door_closed",
            compartment="A4",
            grant_id=grant_id,
            data={"epoch": 0},
        ),
    ]
    # Out of order, with duplicates: the item is gone (3) before the door opened (2) arrives.
    publish_as(cloud, "locker-b", [events[2], events[0], events[2], events[3]])
    time.sleep(1.0)
    assert item_status(cloud, "itm_coat") == "reserved"  # 3 and 4 wait for 2
    publish_as(cloud, "locker-b", [events[1], events[1], events[0]])
    wait_for("picked up", lambda: item_status(cloud, "itm_coat") == "picked_up", 15)
    history = [
        r["to_status"]
        for r in cloud.store.read(
            "SELECT to_status FROM item_history WHERE item_id = 'itm_coat' ORDER BY at_ms, rowid"
        )
    ]
    assert history == ["reserved", "collecting", "picked_up"]  # in the device's order
    assert [ended for _, ended in holds_of(cloud, "itm_coat")] == ["post"]
    stored = cloud.store.read(
        "SELECT seq FROM device_events WHERE device_id = 'locker-b' AND boot_id = ? ORDER BY seq",
        (boot,),
    )
    assert [r["seq"] for r in stored] == [1, 2, 3, 4]
    assert grant_row(cloud, grant_id)["status"] == "consumed"
