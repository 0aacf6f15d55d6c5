"""The cloud's side of "events are never lost": acknowledgement per (device, boot), de-duplication
by (device, boot, seq), gap detection within and across boots, replay after a restore — on the
real DeviceService and SQLite store, with the device's real outbox answering the acks.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RecordingPublisher

from cloud_api.devices.service import DeviceService
from cloud_api.keys import load_or_create_keys
from cloud_api.seed import seed_demo
from cloud_api.store import Store
from linli.clock import FakeClock
from linli.contract import Ack, Event, decode, encode
from locker_controller.link import jittered_delays
from locker_controller.outbox import Outbox

DEVICE = "locker-a"
BOOT_1 = "111111111111"
BOOT_2 = "222222222222"
WALL = 1_800_000_000_000


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[DeviceService, Store, RecordingPublisher]]:
    store = Store(tmp_path / "cloud.sqlite3")
    store.migrate()
    keys = load_or_create_keys(tmp_path / "secrets")
    seed_demo(store, keys, WALL)
    publisher = RecordingPublisher()
    yield DeviceService(store, keys, publisher, FakeClock(wall_ms=WALL)), store, publisher
    store.close()


def event(boot_id: str, seq: int, type_: str = "door_closed", **data: object) -> Event:
    return Event(
        device_id=DEVICE,
        boot_id=boot_id,
        seq=seq,
        type=type_,  # type: ignore[arg-type]
        mono_ms=seq,
        wall_ms=WALL + seq,
        trust="synced",
        compartment="A1" if type_ != "booted" else None,
        data=data,  # type: ignore[arg-type]
    )


def acks(publisher: RecordingPublisher) -> list[tuple[str, int]]:
    found = [decode(Ack, p, DEVICE) for d, name, p in publisher.sent if name == "ack"]
    publisher.sent.clear()
    return [(a.boot_id, a.seq) for a in found]


def stored(store: Store) -> list[tuple[str, int]]:
    rows = store.read(
        "SELECT boot_id, seq FROM device_events WHERE device_id = ? ORDER BY 1, 2", (DEVICE,)
    )
    return [(r["boot_id"], r["seq"]) for r in rows]


def send(service: DeviceService, e: Event) -> None:
    service.handle(f"linli/v1/{DEVICE}/evt", encode(e))


def test_each_event_is_stored_once_and_acknowledged_cumulatively(
    cloud: tuple[DeviceService, Store, RecordingPublisher],
) -> None:
    service, store, publisher = cloud
    send(service, event(BOOT_1, 1))
    send(service, event(BOOT_1, 1))  # a duplicate: stored once, acknowledged again
    send(service, event(BOOT_1, 3))  # a gap: 2 is missing, the ack stays at 1
    assert acks(publisher) == [(BOOT_1, 1), (BOOT_1, 1), (BOOT_1, 1)]
    assert service.gaps(DEVICE) == [{"boot_id": BOOT_1, "have_through": 1, "known_through": 3}]

    send(service, event(BOOT_1, 2))  # the gap fills: the ack jumps over what was held
    assert acks(publisher) == [(BOOT_1, 3)]
    assert service.gaps(DEVICE) == []
    assert stored(store) == [(BOOT_1, 1), (BOOT_1, 2), (BOOT_1, 3)]


def test_an_event_of_a_boot_the_cloud_lacks_the_start_of_is_acknowledged_at_zero(
    cloud: tuple[DeviceService, Store, RecordingPublisher],
) -> None:
    """After a restore, the cloud may first hear seq 57 of a boot: "I have nothing of it"."""
    service, _, publisher = cloud
    send(service, event(BOOT_2, 57))
    assert acks(publisher) == [(BOOT_2, 0)]
    assert service.gaps(DEVICE) == [{"boot_id": BOOT_2, "have_through": 0, "known_through": 57}]


def test_a_boot_names_the_previous_one_and_a_missing_tail_is_asked_for(
    cloud: tuple[DeviceService, Store, RecordingPublisher],
) -> None:
    service, _, publisher = cloud
    send(service, event(BOOT_1, 1, "booted"))
    send(service, event(BOOT_1, 2))
    acks(publisher)
    # The device died after committing seq 3 and 4 of boot 1, which never reached the cloud.
    send(service, event(BOOT_2, 1, "booted", previous_boot=BOOT_1, previous_last_seq=4))
    assert acks(publisher) == [(BOOT_2, 1), (BOOT_1, 2)]
    assert service.gaps(DEVICE) == [{"boot_id": BOOT_1, "have_through": 2, "known_through": 4}]
    # A previous boot the cloud holds entirely needs no ack.
    send(service, event(BOOT_1, 3))
    send(service, event(BOOT_1, 4))
    acks(publisher)
    send(service, event(BOOT_2, 1, "booted", previous_boot=BOOT_1, previous_last_seq=4))
    assert acks(publisher) == [(BOOT_2, 1)]
    assert service.gaps(DEVICE) == []


def test_a_restored_cloud_gets_every_lost_event_back_from_the_device_archive(
    tmp_path: Path, cloud: tuple[DeviceService, Store, RecordingPublisher]
) -> None:
    """The whole loop, with the device's real outbox: events acknowledged and archived, the cloud
    restored from a backup taken before they arrived, the device's next boot names them, the
    cloud's low ack brings them back, and the cloud holds every event exactly once."""
    service, store, publisher = cloud
    backup = tmp_path / "backup.sqlite3"
    box = Outbox(tmp_path / "device" / "outbox.sqlite3")
    box.begin_boot(BOOT_1)

    def device_sends(boot_id: str, seq: int, e: Event) -> None:
        box.append(boot_id, seq, encode(e), WALL)

    def deliver(target: DeviceService) -> None:
        """Send what the outbox has due; feed the cloud's acks back into the outbox, until quiet."""
        for _ in range(20):
            box.forget_sending()
            due = box.due(None, limit=1000)
            for _, _, payload in due:
                target.handle(f"linli/v1/{DEVICE}/evt", payload)
            answered = False
            for boot_id, seq in acks(publisher):
                answered |= box.acknowledge(boot_id, seq) != 0
            if not due and not answered:
                return
        raise AssertionError("delivery never settled")

    device_sends(BOOT_1, 1, event(BOOT_1, 1, "booted"))
    device_sends(BOOT_1, 2, event(BOOT_1, 2))
    deliver(service)
    source, target = sqlite3.connect(store.path), sqlite3.connect(backup)
    source.backup(target)  # the cloud's nightly backup, taken while it runs
    source.close()
    target.close()
    for seq in (3, 4, 5):
        device_sends(BOOT_1, seq, event(BOOT_1, seq))
    deliver(service)
    assert (box.depth(), box.archived()) == (0, 5)

    # The cloud is restored from the backup: events 3..5 of boot 1 are gone from it.
    restored = Store(backup)
    try:
        service2 = DeviceService(restored, service._keys, publisher, FakeClock(wall_ms=WALL))
        assert stored(restored) == [(BOOT_1, 1), (BOOT_1, 2)]
        previous = box.begin_boot(BOOT_2)
        assert previous is not None
        device_sends(
            BOOT_2,
            1,
            event(
                BOOT_2,
                1,
                "booted",
                previous_boot=previous.boot_id,
                previous_last_seq=previous.last_seq,
            ),
        )
        deliver(service2)
        assert stored(restored) == [(BOOT_1, s) for s in range(1, 6)] + [(BOOT_2, 1)]
        assert service2.gaps(DEVICE) == []
        assert box.depth() == 0
    finally:
        restored.close()
        box.close()


def test_a_dropoff_into_a_compartment_does_not_settle_the_item_reserved_there(
    cloud: tuple[DeviceService, Store, RecordingPublisher],
) -> None:
    """Only events of the item's own grant (or of no grant) settle it."""
    service, store, _ = cloud
    row = store.read_one("SELECT id, compartment FROM items WHERE status = 'reserved'")
    assert row is not None
    with store.write() as db:
        db.execute(
            "INSERT INTO grants (id, device_id, compartment, purpose, epoch, valid_from_ms,"
            " valid_until_ms, status, created_ms) VALUES ('grt_drop', ?, ?, 'dropoff', 0, 0, ?,"
            " 'active', 0)",
            (DEVICE, row["compartment"], WALL * 2),
        )
    for seq, (type_, data) in enumerate(
        [("door_opened", {}), ("occupancy_changed", {"occupancy": "absent"})], start=1
    ):
        e = event(BOOT_1, seq, type_, **data).model_copy(
            update={"grant_id": "grt_drop", "compartment": row["compartment"]}
        )
        send(service, e)
    after = store.read_one("SELECT status FROM items WHERE id = ?", (row["id"],))
    assert after is not None and after["status"] == "reserved"
    assert store.read("SELECT 1 FROM transfers WHERE phase = 'post'") == []


def test_reconnect_delays_are_drawn_afresh_for_every_outage() -> None:
    """200 banks that lost the same broker must not return in the same second (the reconnect
    itself, after a real broker restart, is tests/test_offline_grants.py)."""
    rng = random.Random(4)
    draws = [jittered_delays(rng) for _ in range(200)]
    assert len(set(draws)) == 200
    assert all(0.5 <= low <= 1.5 and 22.5 <= high <= 37.5 for low, high in draws)
    firsts = sorted(low for low, _ in draws)
    assert firsts[-1] - firsts[0] > 0.9  # spread over about a second, not bunched
