"""Codes that work offline, on a real Mosquitto (issue #4, "Done when", first item).

Each test runs the real cloud (uvicorn, SQLite), a private Mosquitto and the real controller
daemon on gpiozero's MockFactory with the door and item simulator. Pulses are counted from the
simulated relay pin, never taken from the controller's word. It proves:

- with the **cloud stopped**, a pickup succeeds from the grant list the controller already holds,
  and once the cloud is back on the same data directory it settles exactly once: the item is
  ``picked_up``, the points hold posted once, the grant consumed, the cloud stores exactly the
  events the controller generated, and the controller's outbox drains; a re-delivery of every
  event changes nothing;
- with the **broker stopped**, the same;
- a **stale grant list** cannot open a refilled compartment: after a drop-off closed the
  compartment (bumping its content epoch on the device) while the cloud was down, the old pickup
  code is refused ``stale_epoch`` and the latch does not move;
- a **revocation** works on the next message: the very next configuration makes the controller
  refuse the revoked code (no pulse) while another live grant still opens its door.

Codes are never printed: they go only to the controller, and their repr hides them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from conftest import CloudUnderTest, LockerFactory
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api import ledger
from cloud_api.deps import Services
from cloud_api.grants.service import code_of, issue_grant
from cloud_api.items.service import reserve
from linli.clock import SystemClock
from linli.contract import topic
from locker_controller.core.model import COOLDOWN_MS
from station.broker import MosquittoBroker
from station.capture import MqttCapture
from station.cloud_server import CloudServer
from station.locker import SimulatedLocker
from station.scenarios import wait_for

DEVICE = "locker-a"
SEED_CREDIT = 50
"""Points the demo seed credits every resident (cloud_api/seed.py)."""
CaptureFactory = Callable[..., MqttCapture]


class Code(str):
    """An 8-digit code whose repr hides it, so no failure report or ``--showlocals`` shows it."""

    def __repr__(self) -> str:
        return "Code(********)"


# --- waiting and reading ----------------------------------------------------------------------


def services(cloud: CloudUnderTest) -> Services:
    """The running cloud's services (store, keys, devices)."""
    found: Services = cloud.server.app.state.services
    return found


def grant_code(cloud: CloudUnderTest, grant_id: str) -> Code:
    """The code the cloud derives for a grant (what its holder is shown)."""
    row = cloud.store.read_one("SELECT code_counter FROM grants WHERE id = ?", (grant_id,))
    assert row is not None
    return Code(code_of(cloud.keys, grant_id, int(row["code_counter"])))


def seeded_pickup(cloud: CloudUnderTest) -> str:
    """The id of the seeded pickup grant (Auntie Wang's kettle in locker-a A2)."""
    row = cloud.store.read_one(
        "SELECT id FROM grants WHERE item_id = ? AND purpose = 'pickup' AND status = 'active'",
        (cloud.seed.reserved_item,),
    )
    assert row is not None
    return str(row["id"])


def holds_grant(locker: SimulatedLocker, grant_id: str) -> bool:
    """Whether the controller's applied list holds this grant."""
    return any(g.grant_id == grant_id for g in locker.daemon.state.grants.values())


def start_locker(cloud: CloudUnderTest, simulated_locker: LockerFactory) -> SimulatedLocker:
    """locker-a with the seeded items inside, once it applied a list holding the seeded pickup."""
    locker = simulated_locker(
        cloud.identity(DEVICE), cloud.broker, items=cloud.seed.items_in_lockers[DEVICE]
    )
    pickup = seeded_pickup(cloud)
    wait_for("the controller to apply its grant list", lambda: holds_grant(locker, pickup))
    return locker


def enter(locker: SimulatedLocker, code: Code) -> str:
    """Enter a code at the keypad; return the message key the resident is shown."""
    shown = locker.daemon.submit_code(code, channel="keypad")
    return shown.key if shown is not None else "(nothing shown)"


def compartment_is(locker: SimulatedLocker, name: str, **expected: object) -> bool:
    """Whether the controller's view of a compartment has these field values."""
    c = locker.daemon.state.compartments[name]
    return all(getattr(c, field) == value for field, value in expected.items())


def open_swap_and_close(
    locker: SimulatedLocker, name: str, *, take: bool = True, put: bool = False
) -> None:
    """A person at the door: pull it (it opens only if the latch released), take the item out
    and/or put one in, push it shut; each step once the controller has seen the previous one."""
    wait_for(f"the latch of {name} to release", lambda: locker.sim.open_door(name), 5)
    wait_for(f"{name} seen open", lambda: compartment_is(locker, name, door="open"))
    if take:
        assert locker.sim.take_item(name)
        wait_for(f"{name} seen empty", lambda: compartment_is(locker, name, occupancy="absent"))
    if put:
        assert locker.sim.put_item(name)
        wait_for(f"{name} seen full", lambda: compartment_is(locker, name, occupancy="present"))
    locker.sim.close_door(name)
    wait_for(f"{name} seen closed", lambda: compartment_is(locker, name, door="closed"))


def outbox_rows(locker: SimulatedLocker) -> list[tuple[str, int, bytes]]:
    """Every event the controller generated: its outbox, pending and archived alike."""
    path = locker.data_dir / "outbox.sqlite3"
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT boot_id, seq, payload FROM events ORDER BY boot_id, seq")
        return [(str(b), int(s), bytes(p)) for b, s, p in rows]


def table(cloud: CloudUnderTest, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query as plain tuples (comparable before and after)."""
    return [tuple(r) for r in cloud.store.read(sql, params)]


# --- the cloud and the broker going away --------------------------------------------------------


def stop_cloud(cloud: CloudUnderTest) -> None:
    """Stop the cloud's HTTP server and MQTT bridge; prove it no longer answers."""
    cloud.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{cloud.url}/healthz", timeout=1)


def restart_cloud(cloud: CloudUnderTest) -> None:
    """Start the cloud again on the same data directory, port and broker (no re-seeding)."""
    cloud.server = CloudServer(cloud.server.settings).start()
    cloud.url = cloud.server.url


# --- settlement -------------------------------------------------------------------------------


def wait_settled(cloud: CloudUnderTest, locker: SimulatedLocker, item_id: str) -> None:
    """Wait until the cloud marked the item picked up and acknowledged every event."""

    def settled() -> bool:
        row = cloud.store.read_one("SELECT status FROM items WHERE id = ?", (item_id,))
        return row is not None and row["status"] == "picked_up"

    # Events the cloud missed are re-sent at most every RESEND_AFTER_MS (5 s).
    wait_for("the cloud to mark the item picked up", settled, 20)
    wait_for("the outbox to drain", lambda: locker.daemon.outbox_depth() == 0, 20)


def settlement_rows(cloud: CloudUnderTest, item_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a settlement writes, for comparing before and after a re-delivery."""
    return {
        "events": table(
            cloud,
            "SELECT boot_id, seq, type, grant_id, reason, received_ms FROM device_events"
            " WHERE device_id = ? ORDER BY boot_id, seq",
            (DEVICE,),
        ),
        "transfers": table(cloud, "SELECT id, phase, pending_id FROM transfers ORDER BY id"),
        "history": table(
            cloud,
            "SELECT from_status, to_status, cause FROM item_history WHERE item_id = ?"
            " ORDER BY at_ms, rowid",
            (item_id,),
        ),
        "grants": table(cloud, "SELECT id, status FROM grants ORDER BY id"),
    }


def assert_settled_once(
    cloud: CloudUnderTest, locker: SimulatedLocker, grant_id: str, item_id: str
) -> None:
    """The pickup settled exactly once, and the cloud holds exactly the events generated."""
    store = cloud.store
    item = store.read_one("SELECT status, points, reserved_by FROM items WHERE id = ?", (item_id,))
    assert item is not None and item["status"] == "picked_up"
    history = [
        r["to_status"]
        for r in store.read(
            "SELECT to_status FROM item_history WHERE item_id = ? ORDER BY at_ms, rowid",
            (item_id,),
        )
    ]
    assert history == ["reserved", "collecting", "picked_up"]

    hold = store.read_one(
        "SELECT id FROM transfers WHERE idempotency_key = ?",
        (f"hold:{item_id}:{item['reserved_by']}",),
    )
    assert hold is not None
    posts = store.read("SELECT phase FROM transfers WHERE pending_id = ?", (hold["id"],))
    assert [r["phase"] for r in posts] == ["post"]
    with store.snapshot() as db:
        posted, pending = ledger.balances(db, f"mem:{item['reserved_by']}")
    assert (posted, pending) == (SEED_CREDIT - item["points"], 0)

    grant = store.read_one("SELECT status FROM grants WHERE id = ?", (grant_id,))
    assert grant is not None and grant["status"] == "consumed"

    # The cloud stores exactly what the controller generated, each (boot_id, seq) once, no gap.
    generated = [(b, s) for b, s, _ in outbox_rows(locker)]
    stored = [
        (r["boot_id"], r["seq"])
        for r in store.read(
            "SELECT boot_id, seq FROM device_events WHERE device_id = ? ORDER BY boot_id, seq",
            (DEVICE,),
        )
    ]
    assert stored == generated
    assert [s for _, s in stored] == list(range(1, len(stored) + 1))  # one boot, seq from 1
    of_grant = [
        r["type"]
        for r in store.read(
            "SELECT type FROM device_events WHERE device_id = ? AND grant_id = ? ORDER BY seq",
            (DEVICE, grant_id),
        )
    ]
    assert of_grant == [
        "code_accepted",
        "latch_pulsed",
        "door_opened",
        "grant_consumed",
        "occupancy_changed",
        "door_closed",
    ]
    assert locker.daemon.outbox_depth() == 0


def redeliver_everything(
    cloud: CloudUnderTest, locker: SimulatedLocker, mqtt_capture: CaptureFactory
) -> int:
    """Publish every event of the controller's outbox again, byte for byte (as a controller does
    after a lost acknowledgement); return how many once the cloud acknowledged each."""
    rows = outbox_rows(locker)
    acks = mqtt_capture(cloud.broker, topic(DEVICE, "ack"))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-redelivery")
    client.connect(cloud.broker.host, cloud.broker.port)
    client.loop_start()
    try:
        for _, _, payload in rows:
            client.publish(topic(DEVICE, "evt"), payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    # The cloud answers every event it handles, a duplicate included, with an ack.
    wait_for("an ack for every re-delivered event", lambda: len(acks.messages()) >= len(rows))
    return len(rows)


def assert_redelivery_changes_nothing(
    cloud: CloudUnderTest,
    locker: SimulatedLocker,
    mqtt_capture: CaptureFactory,
    grant_id: str,
    item_id: str,
) -> None:
    """Every event delivered a second time leaves the settlement exactly as it was."""
    before = settlement_rows(cloud, item_id)
    assert redeliver_everything(cloud, locker, mqtt_capture) >= 6
    assert settlement_rows(cloud, item_id) == before
    assert_settled_once(cloud, locker, grant_id, item_id)


# --- the tests ----------------------------------------------------------------------------------


def test_pickup_with_the_cloud_stopped_settles_once_when_it_returns(
    cloud: CloudUnderTest, simulated_locker: LockerFactory, mqtt_capture: CaptureFactory
) -> None:
    locker = start_locker(cloud, simulated_locker)
    grant_id, item_id = seeded_pickup(cloud), cloud.seed.reserved_item
    compartment = cloud.seed.reserved_compartment
    code = grant_code(cloud, grant_id)

    stop_cloud(cloud)
    shown = enter(locker, code)
    assert shown == "code.accepted"
    open_swap_and_close(locker, compartment)
    assert locker.sim.pulses(compartment) == 1
    assert all(locker.sim.pulses(c) == 0 for c in ("A1", "A3", "A4"))
    assert locker.daemon.outbox_depth() > 0  # nobody acknowledged the pickup's events yet

    restart_cloud(cloud)
    wait_settled(cloud, locker, item_id)
    assert_settled_once(cloud, locker, grant_id, item_id)
    assert_redelivery_changes_nothing(cloud, locker, mqtt_capture, grant_id, item_id)
    assert locker.sim.pulses(compartment) == 1


def test_pickup_with_the_broker_stopped_settles_once_when_it_returns(
    cloud: CloudUnderTest,
    mosquitto_broker: MosquittoBroker,
    simulated_locker: LockerFactory,
    mqtt_capture: CaptureFactory,
) -> None:
    locker = start_locker(cloud, simulated_locker)
    grant_id, item_id = seeded_pickup(cloud), cloud.seed.reserved_item
    compartment = cloud.seed.reserved_compartment
    code = grant_code(cloud, grant_id)
    port = mosquitto_broker.info.port

    mosquitto_broker.stop()
    wait_for("the controller to lose the broker", lambda: not locker.daemon.link.is_connected)
    shown = enter(locker, code)
    assert shown == "code.accepted"
    open_swap_and_close(locker, compartment)
    assert locker.sim.pulses(compartment) == 1
    assert all(locker.sim.pulses(c) == 0 for c in ("A1", "A3", "A4"))
    assert not locker.daemon.link.is_connected  # the pickup really ran without a broker
    assert locker.daemon.outbox_depth() > 0

    assert mosquitto_broker.start().port == port  # where the controller and the cloud expect it
    wait_settled(cloud, locker, item_id)
    assert_settled_once(cloud, locker, grant_id, item_id)
    assert_redelivery_changes_nothing(cloud, locker, mqtt_capture, grant_id, item_id)
    assert locker.sim.pulses(compartment) == 1


def test_a_stale_grant_list_cannot_open_a_refilled_compartment(
    cloud: CloudUnderTest, simulated_locker: LockerFactory
) -> None:
    locker = start_locker(cloud, simulated_locker)
    compartment = cloud.seed.reserved_compartment
    pickup = seeded_pickup(cloud)
    # A donor's drop-off grant for the same compartment, pushed with the pickup grant.
    now_ms = services(cloud).clock.now().wall_ms
    with cloud.store.write() as db:
        dropoff = issue_grant(
            db,
            cloud.keys,
            device_id=DEVICE,
            compartment=compartment,
            purpose="dropoff",
            valid_from_ms=now_ms,
            valid_until_ms=now_ms + 3_600_000,
            now_ms=now_ms,
        )
    services(cloud).devices.publish_config(DEVICE)
    wait_for("the drop-off grant on the controller", lambda: holds_grant(locker, dropoff))
    state = locker.daemon.state
    epoch = state.compartments[compartment].epoch
    held = {g.grant_id: g.epoch for g in state.grants.values()}
    assert held[pickup] == held[dropoff] == epoch
    pickup_code, dropoff_code = grant_code(cloud, pickup), grant_code(cloud, dropoff)
    version = state.cfg_version

    stop_cloud(cloud)  # no newer list can reach the controller from here on
    shown = enter(locker, dropoff_code)
    assert shown == "code.accepted"
    # The compartment is emptied and refilled through the drop-off's door.
    open_swap_and_close(locker, compartment, take=True, put=True)
    assert locker.sim.pulses(compartment) == 1
    assert compartment_is(locker, compartment, epoch=epoch + 1, occupancy="present")

    # Past the compartment's cool-down, so only the epoch can stand between the code and a pulse.
    last_pulse_ms = locker.daemon.state.compartments[compartment].last_pulse_mono_ms
    assert last_pulse_ms is not None
    wait_for(
        "the cool-down after the drop-off's pulse",
        lambda: SystemClock().now().mono_ms - last_pulse_ms > COOLDOWN_MS,
    )
    shown = enter(locker, pickup_code)
    assert shown == "code.refused.stale_epoch"
    assert locker.sim.pulses(compartment) == 1  # the latch never moved for the old code
    assert not locker.sim.open_door(compartment)  # and the door holds
    assert locker.daemon.state.cfg_version == version  # still the list the cloud pushed
    assert holds_grant(locker, pickup)  # the stale grant is still there: the epoch refused it


def test_a_revocation_works_on_the_next_message(
    cloud: CloudUnderTest, simulated_locker: LockerFactory
) -> None:
    locker = start_locker(cloud, simulated_locker)
    revoked_compartment = cloud.seed.reserved_compartment
    revoked = seeded_pickup(cloud)
    # A second live grant: Auntie Wang also reserves the picture books in A3 (Uncle Li gave
    # them, and a donor cannot reserve his own item).
    now_ms = services(cloud).clock.now().wall_ms
    with cloud.store.write() as db:
        live = reserve(db, cloud.keys, "itm_books", "per_1", now_ms)
        live_compartment = db.execute(
            "SELECT compartment FROM grants WHERE id = ?", (live,)
        ).fetchone()["compartment"]
    assert live_compartment != revoked_compartment
    services(cloud).devices.publish_config(DEVICE)
    wait_for("both grants on the controller", lambda: holds_grant(locker, live))
    assert holds_grant(locker, revoked)
    before = locker.daemon.state.cfg_version

    with cloud.store.write() as db:
        changed = db.execute(
            "UPDATE grants SET status = 'revoked' WHERE id = ? AND status = 'active'", (revoked,)
        ).rowcount
    assert changed == 1
    version = services(cloud).devices.publish_config(DEVICE)
    wait_for(
        "the controller to apply the revocation",
        lambda: locker.daemon.state.cfg_version >= version,
    )
    assert version == before + 1  # the very next configuration, no other in between
    assert locker.daemon.state.cfg_version == version

    shown = enter(locker, grant_code(cloud, revoked))
    # Dropped from the list before it ever pulsed, the code is simply unknown to the controller.
    assert shown in ("code.refused.unknown_code", "code.refused.withdrawn")
    assert locker.sim.pulses(revoked_compartment) == 0
    assert not locker.sim.open_door(revoked_compartment)

    shown = enter(locker, grant_code(cloud, live))
    assert shown == "code.accepted"
    wait_for("the live grant's door to open", lambda: locker.sim.open_door(live_compartment), 5)
    assert locker.sim.pulses(live_compartment) == 1
    assert locker.sim.pulses(revoked_compartment) == 0
