"""Alerts through the real app: device messages open and clear them, people act on them over the
API and the console pages, and the person on call is told.

The cloud is the real app under uvicorn on a private Mosquitto, with its clock a ``FakeClock`` (the
tests move time: grace, escalation, clocks), and its background jobs slowed to once an hour, so a
test runs each job itself on the cloud's own scheduler (``svc.scheduler.run``) and the store stays
quiet between calls. Device messages go through the cloud's real ingest
(``DeviceService.handle`` with encoded contract messages); the last test has a simulated
controller speak over MQTT to a cloud on the system clock.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import (
    axe_violations,
    format_violations,
    horizontal_overflow_px,
    new_phone_page,
    wider_than_viewport,
)
from conftest import CloudUnderTest
from playwright.sync_api import Browser
from test_pages import ALLOWED_BARE, TextNodes, cookie_named, csrf_of

from cloud_api.alerts.service import AlertService
from cloud_api.core.alerts import DAY_MS, HOUR_MS, MINUTE_MS, cause_key
from cloud_api.core.notify import QuietHours
from cloud_api.deps import Services
from cloud_api.keys import load_or_create_keys
from cloud_api.notify.service import Deliverer, Outgoing
from cloud_api.seed import LOGINS, DemoLogin, seed_demo
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from linli.broker import BrokerAddress
from linli.clock import FakeClock
from linli.contract import Event, Status, Telemetry, encode, topic
from linli.ids import new_boot_id
from station.broker import BrokerInfo, free_port
from station.cloud_server import CloudServer
from station.locker import SimulatedLocker

WANG, LI, ZHANG, LIU, CHEN = LOGINS
FRIDAY_1800 = 1_800_007_200_000
"""2027-01-15 18:00 in UTC+8, a Friday: the cloud's clock at the start of every test."""
BOOT = "a1b2c3d4e5f6"
STAFF_PHONE = "13912345678"
"""Chen's phone for alerts (not a demo login's: the canary plugin does not know it; the tests
look for it in the logs themselves)."""


# --- the rig ------------------------------------------------------------------------------------


@dataclass
class Rig:
    """A seeded cloud on a fake clock, its services, an HTTP client and staff sessions."""

    server: CloudServer
    clock: FakeClock
    http: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)
    seq: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def svc(self) -> Services:
        services: Services = self.server.app.state.services
        return services

    @property
    def store(self) -> Store:
        return self.svc.store

    def now(self) -> int:
        return self.clock.now().wall_ms

    def advance(self, ms: int) -> None:
        self.clock.advance(ms)

    # device messages, through the cloud's real ingest

    def event(
        self,
        type_: str,
        reason: str | None = None,
        compartment: str | None = "A1",
        *,
        device: str = "locker-a",
        boot: str = BOOT,
        seq: int | None = None,
        **data: Any,
    ) -> tuple[str, int]:
        """An event of ``device``'s boot (the next seq, or ``seq`` to re-send one)."""
        if seq is None:
            seq = self.seq.get((device, boot), 0) + 1
            self.seq[(device, boot)] = seq
        message = Event(
            device_id=device,
            boot_id=boot,
            seq=seq,
            type=type_,  # type: ignore[arg-type]
            mono_ms=seq,
            wall_ms=self.now(),
            trust="synced",
            compartment=compartment,
            reason=reason,
            data=data,
        )
        self.svc.devices.handle(topic(device, "evt"), encode(message))
        return boot, seq

    def alarm(self, reason: str, compartment: str | None = "A1", **kw: Any) -> tuple[str, int]:
        return self.event("alarm", reason, compartment, **kw)

    def cleared(self, reason: str, compartment: str | None = "A1", **kw: Any) -> tuple[str, int]:
        return self.event("alarm_cleared", reason, compartment, **kw)

    def tele(self, device: str = "locker-a", **figures: Any) -> None:
        message = Telemetry(device_id=device, boot_id=BOOT, uptime_s=60, outbox_depth=0, **figures)
        self.svc.devices.handle(topic(device, "tele"), encode(message))

    def status(self, state: str, device: str = "locker-a", keepalive_s: int = 10) -> None:
        message = Status(
            device_id=device,
            state=state,  # type: ignore[arg-type]
            role="locker",
            boot_id=new_boot_id(),
            version="test",
            keepalive_s=keepalive_s,
        )
        self.svc.devices.handle(topic(device, "status"), encode(message))

    # the store

    def alerts(self, rule: str | None = None) -> list[Any]:
        return self.store.read(
            "SELECT * FROM alerts WHERE (? IS NULL OR rule = ?) ORDER BY opened_ms, rowid",
            (rule, rule),
        )

    def alert(self, rule: str) -> Any:
        rows = self.alerts(rule)
        assert len(rows) == 1, f"{len(rows)} alerts of rule {rule}"
        return rows[0]

    def actions(self, alert_id: str) -> list[tuple[str, str | None, str | None]]:
        return [
            (r["action"], r["by_person"], r["note"])
            for r in self.store.read(
                "SELECT * FROM alert_actions WHERE alert_id = ? ORDER BY at_ms, rowid", (alert_id,)
            )
        ]

    def messages(self) -> list[Any]:
        return self.store.read(
            "SELECT * FROM notifications WHERE kind = 'alert' ORDER BY created_ms, rowid"
        )

    def run(self, job: str) -> int:
        return self.svc.scheduler.run(job)

    # people

    def sign_in(self, login: DemoLogin) -> str:
        """A fresh API session at the cloud's time (an authenticator code counts once: staff
        signing in again need the clock 30 s on)."""
        answer = self.http.post("/api/v1/session", json=login.body(self.now()))
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        self.tokens[login.login] = token
        return token

    def as_(self, login: DemoLogin) -> dict[str, str]:
        token = self.tokens.get(login.login) or self.sign_in(login)
        return {"Authorization": f"Bearer {token}"}

    def api(self, method: str, path: str, login: DemoLogin, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.as_(login), **kw)


def start_rig(data_dir: Path, broker: BrokerInfo, clock: FakeClock) -> Rig:
    store = Store(data_dir / "cloud.sqlite3")
    store.migrate()
    seed_demo(store, load_or_create_keys(data_dir / "secrets"), clock.now().wall_ms)
    store.close()
    settings = CloudSettings(
        data_dir=data_dir,
        host="127.0.0.1",
        port=free_port(),
        broker_url=BrokerAddress(broker.host, broker.port).url,
        quiet_start="00:00",
        quiet_end="00:00",
        jobs_every_s=3600,  # the tests run the jobs themselves
    )
    server = CloudServer(settings, clock=clock).start()
    return Rig(server, clock, httpx.Client(base_url=server.url, timeout=10))


@pytest.fixture
def rig(tmp_path: Path, mosquitto: BrokerInfo) -> Iterator[Rig]:
    running = start_rig(tmp_path / "cloud", mosquitto, FakeClock(FRIDAY_1800, 1_000))
    yield running
    running.http.close()
    running.server.stop()


@dataclass
class Recorder:
    """A notifier recording what the deliverer hands it."""

    channel: str = "sms"
    sent: list[Outgoing] = field(default_factory=list)

    def send(self, message: Outgoing) -> None:
        self.sent.append(message)


def deliver(rig: Rig) -> list[Outgoing]:
    """Write and hand over every due message with the cloud's real deliverer; return the alerts."""
    recorder = Recorder()
    deliverer = Deliverer(
        rig.store, rig.svc.keys, rig.clock, lambda channel: recorder, quiet=QuietHours(0, 0)
    )
    while deliverer.deliver_due(rig.now()):
        pass
    return [m for m in recorder.sent if m.kind == "alert"]


def quiet_dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """The store's rows but sessions (a request slides its session's expiry)."""
    dump = store.dump()
    dump["sessions"] = sorted(row[:2] for row in dump["sessions"])
    return dump


# --- each rule from its real trigger ------------------------------------------------------------

EVENT_RULES = [
    # alarm reason, data, compartment, rule, severity
    ("door_ajar", {}, "A1", "door_ajar", "yellow"),
    ("door_ajar", {"item_at_risk": True}, "A2", "item_at_risk", "red"),
    ("door_forced", {"occupancy": "present"}, "A3", "door_forced", "red"),
    ("jammed", {"pulses": 2}, "A4", "jammed", "red"),
    ("bus_unreachable", {"failures": 3}, None, "board_unreachable", "red"),
    ("grant_list_stale", {"grant_list_age_s": 4000}, None, "stale_grant_list", "yellow"),
    ("output_forced_off", {"on_ms": 2000, "bound_ms": 2000}, "A1", "output_forced_off", "red"),
    ("latch_fault", {}, "A2", "latch_fault", "red"),
    ("code_guessing", {"failures": 10}, None, "code_guessing", "blue"),
    ("guess_budget_spent", {"budget_spent": True}, None, "guessing_guarded", "blue"),
    ("occupancy_unexplained", {"occupancy": "absent"}, "A3", "occupancy_unexplained", "blue"),
    ("impossible_transition", {"phase": "open"}, "A4", "impossible_transition", "blue"),
]
TELEMETRY_RULES = [
    # figures, device, rule, severity
    ({"throttled": 0x1}, "locker-a", "under_voltage", "yellow"),
    ({"throttled": 0x10000}, "locker-b", "under_voltage", "yellow"),
    ({"disk_free_pct": 8.5}, "locker-a", "disk", "yellow"),
    ({"disk_free_pct": 2.0}, "locker-b", "disk", "red"),
    ({"grant_list_age_s": 3601}, "locker-b", "stale_grant_list", "yellow"),
]


def test_each_rule_opens_once_from_its_real_trigger(rig: Rig) -> None:
    expected = {}
    for reason, data, compartment, rule, severity in EVENT_RULES:
        sent = rig.alarm(reason, compartment, **data)
        rig.alarm(reason, compartment, seq=sent[1], **data)  # the same event, re-sent
        rig.alarm(reason, compartment, **data)  # raised again while live
        expected[cause_key(rule, "locker-a", compartment)] = severity
    for figures, device, rule, severity in TELEMETRY_RULES:
        for _ in range(3):  # heartbeats repeat the figures
            rig.tele(device, **figures)
        expected[cause_key(rule, device, None)] = severity
    rows = rig.alerts()
    assert {r["cause_key"]: r["severity"] for r in rows} == expected
    assert len(rows) == len(expected)  # one alert per cause, whatever was repeated
    for row in rows:
        assert row["status"] == "open" and row["community_id"] == "sunny-garden"
        assert re.fullmatch(rf"{row['severity'][0].upper()}-0115-\d{{3}}", row["tracking_code"])
        assert (
            row["due_ms"]
            == {
                "red": FRIDAY_1800 + DAY_MS,
                "yellow": FRIDAY_1800 + 5 * DAY_MS,  # Friday 18:00 → Wednesday 18:00
                "blue": FRIDAY_1800 + 7 * DAY_MS,
            }[row["severity"]]
        )
        assert rig.actions(row["id"]) == [("opened", None, None)]
    # Nobody is on call: each alert goes to the community's maintainer, red ones urgently.
    messages = rig.messages()
    assert len(messages) == len(rows)
    by_alert = {json.loads(m["params"])["alert_id"]: m for m in messages}
    for row in rows:
        message = by_alert[row["id"]]
        assert (message["person_id"], message["key"]) == (LIU_ID, f"alert:{row['id']}:0")
        assert message["is_urgent"] == (row["severity"] == "red")
        assert row["assigned_to"] == LIU_ID
    # Alarms that are a social worker's case, not an alert, open none.
    rig.alarm("dropoff_empty", "A1")
    rig.alarm("item_left_behind", "A2")
    assert len(rig.alerts()) == len(rows)


LIU_ID = "per_4"
CHEN_ID = "per_5"


def test_a_clear_clears_the_condition_and_the_alert_stays_until_resolved(rig: Rig) -> None:
    before = quiet_dump(rig.store)
    rig.cleared("door_ajar", "A1")  # never opened: nothing happens
    rig.tele(throttled=0, disk_free_pct=50.0, grant_list_age_s=10)
    rig.status("online")
    assert len(rig.alerts()) == 0
    after = quiet_dump(rig.store)
    for table in ("alerts", "alert_actions", "notifications"):
        assert before[table] == after[table]  # the device's tables record what it said, only

    opened = rig.alarm("door_ajar", "A1")
    rig.advance(5 * MINUTE_MS)
    first_clear = rig.cleared("door_ajar", "A1")
    alert = rig.alert("door_ajar")
    assert (alert["status"], alert["cleared_ms"]) == ("open", rig.now())
    assert [a for a, _, _ in rig.actions(alert["id"])] == ["opened", "cleared"]

    # The same door left open again while the alert is live: the same alert, condition back.
    rig.advance(MINUTE_MS)
    rig.alarm("door_ajar", "A1")
    alert = rig.alert("door_ajar")
    assert alert["cleared_ms"] is None
    # The first clear, re-sent after a reconnect, changes nothing.
    rig.cleared("door_ajar", "A1", seq=first_clear[1])
    assert [a for a, _, _ in rig.actions(alert["id"])] == ["opened", "cleared", "recurred"]
    rig.cleared("door_ajar", "A1")
    assert rig.alert("door_ajar")["cleared_ms"] == rig.now()

    # Resolved by a person; the next time the door is left open is a new alert.
    resolved = rig.api("POST", f"/api/v1/alerts/{alert['id']}/resolve", LIU, json={"note": "ok"})
    assert resolved.status_code == 200, resolved.text
    rig.alarm("door_ajar", "A1", seq=opened[1])  # the first alarm, replayed: nothing new
    assert len(rig.alerts("door_ajar")) == 1
    rig.alarm("door_ajar", "A1")
    first, second = rig.alerts("door_ajar")
    assert (first["status"], second["status"]) == ("resolved", "open")
    assert first["tracking_code"] != second["tracking_code"]


def test_an_attention_alarm_clears_with_the_clear_after_clear_attention(rig: Rig) -> None:
    rig.alarm("jammed", "A2", pulses=2)
    rig.cleared("door_ajar", "A2")  # a door closing does not clear a jam
    assert rig.alert("jammed")["cleared_ms"] is None
    rig.cleared("jammed", "A2")  # what the controller sends after a maintainer's clear_attention
    assert rig.alert("jammed")["cleared_ms"] == rig.now()


def test_telemetry_writes_only_when_a_condition_changes(rig: Rig) -> None:
    rig.tele(throttled=0x10000, disk_free_pct=9.0)
    under, disk = rig.alert("under_voltage"), rig.alert("disk")
    assert (under["severity"], disk["severity"]) == ("yellow", "yellow")
    before = quiet_dump(rig.store)
    for _ in range(5):
        rig.tele(throttled=0x10000, disk_free_pct=9.0)
    assert quiet_dump(rig.store) == before  # heartbeats do not churn the store

    # Disk space going from low to nearly none raises the live alert, and says so.
    rig.advance(HOUR_MS)
    rig.tele(throttled=0x10000, disk_free_pct=2.5)
    disk = rig.alert("disk")
    assert disk["severity"] == "red"
    assert disk["due_ms"] == rig.now() + DAY_MS  # sooner than the yellow clock
    assert [a for a, _, _ in rig.actions(disk["id"])] == ["opened", "raised"]
    assert [m["key"] for m in rig.messages()][-1] == f"alert:{disk['id']}:0:red"

    # A person resolves the under-voltage while the bit is still set (it stays set until the
    # next boot): the next heartbeats page nobody again, nor does a restarted cloud.
    done = rig.api("POST", f"/api/v1/alerts/{under['id']}/resolve", LIU, json={"note": "PSU"})
    assert done.status_code == 200
    rig.tele(throttled=0x10000, disk_free_pct=2.5)
    AlertService(rig.store, rig.clock).on_device(
        "locker-a",
        "tele",
        Telemetry(device_id="locker-a", boot_id=BOOT, uptime_s=1, outbox_depth=0, throttled=1),
    )
    assert len(rig.alerts("under_voltage")) == 1
    # Once it clears (a new boot, a better supply), a new under-voltage is a new alert.
    rig.tele(throttled=0)
    assert rig.alert("under_voltage")["cleared_ms"] == rig.now()
    rig.tele(throttled=0x1)
    assert [r["status"] for r in rig.alerts("under_voltage")] == ["resolved", "open"]


def test_a_stale_grant_list_in_telemetry_uses_the_configured_bound(rig: Rig) -> None:
    rig.tele(grant_list_age_s=3600)
    assert rig.alerts() == []
    rig.tele(grant_list_age_s=3601)
    alert = rig.alert("stale_grant_list")
    rig.alarm("grant_list_stale", None)  # the device's own alarm: the same cause
    assert len(rig.alerts()) == 1
    rig.tele(grant_list_age_s=12)
    assert rig.alert("stale_grant_list")["cleared_ms"] is not None
    assert alert["compartment"] is None


def test_the_stale_bound_is_read_from_the_devices_configuration(rig: Rig) -> None:
    store = rig.server.app.state.services.store
    with store.write() as db:  # a configuration whose bound is ten minutes, not the default hour
        db.execute(
            "UPDATE devices SET cfg_body = ? WHERE id = 'locker-b'",
            (json.dumps({"version": 9, "stale_after_s": 600, "grants": []}),),
        )
    rig.tele("locker-b", grant_list_age_s=600)
    assert rig.alerts() == []
    rig.tele("locker-b", grant_list_age_s=601)
    assert rig.alert("stale_grant_list")["device_id"] == "locker-b"


def test_offline_only_after_the_grace_and_a_restart_pages_nobody(rig: Rig) -> None:
    # A clean restart: offline, back online within seconds.
    rig.status("online")
    rig.status("offline")
    rig.advance(10_000)
    rig.status("online")
    rig.advance(10 * MINUTE_MS)
    rig.tele()  # its heartbeat keeps it online
    rig.run("alerts_offline")
    assert rig.alerts() == []

    # Silence: the watchdog calls it lost after 1.5 × keepalive; the grace starts then.
    rig.advance(16_000)
    deadline = time.monotonic() + 5
    while rig.store.read_one("SELECT status FROM devices WHERE id = 'locker-a'")[0] != "lost":
        assert time.monotonic() < deadline, "the liveness watchdog did not mark locker-a lost"
        time.sleep(0.02)
    lost_at = rig.store.read_one("SELECT status_ms FROM devices WHERE id = 'locker-a'")[0]
    rig.advance(5 * MINUTE_MS - (rig.now() - lost_at))
    rig.run("alerts_offline")
    assert rig.alerts() == []  # exactly the grace: not yet
    rig.advance(1_000)
    rig.run("alerts_offline")
    rig.run("alerts_offline")
    alert = rig.alert("offline")
    assert (alert["severity"], alert["device_id"], alert["cleared_ms"]) == (
        "yellow",
        "locker-a",
        None,
    )
    assert len(rig.messages()) == 1
    # Heard from again: the condition clears (the alert waits for a person).
    rig.advance(MINUTE_MS)
    rig.tele()
    alert = rig.alert("offline")
    assert alert["cleared_ms"] == rig.now() and alert["status"] == "open"
    # A device that was never seen is not offline.
    assert rig.store.read_one("SELECT status FROM devices WHERE id = 'locker-b'")[0] == (
        "never_seen"
    )


def test_tracking_codes_are_unique_and_sequential_per_local_day(rig: Rig) -> None:
    # A code of the same day a year ago takes number 002: it is skipped.
    with rig.store.write() as db:
        db.execute(
            "INSERT INTO alerts (id, community_id, tracking_code, rule, severity, cause_key,"
            " status, opened_ms, due_ms) VALUES ('alr_old', 'sunny-garden', 'B-0115-002',"
            " 'code_guessing', 'blue', 'old', 'resolved', ?, ?)",
            (FRIDAY_1800 - 365 * DAY_MS, FRIDAY_1800 - 358 * DAY_MS),
        )
    rig.alarm("jammed", "A1")
    rig.alarm("door_ajar", "A2")
    rig.alarm("code_guessing", None)
    rig.advance(6 * HOUR_MS)  # Saturday 00:00 local: a new day
    rig.alarm("jammed", "A3")
    codes = [r["tracking_code"] for r in rig.alerts() if r["id"] != "alr_old"]
    assert codes == ["R-0115-001", "Y-0115-003", "B-0115-004", "R-0116-001"]


# --- people's actions over the API ----------------------------------------------------------------


def test_acknowledging_stops_the_clock(rig: Rig) -> None:
    rig.alarm("jammed", "A2")
    alert_id = rig.alert("jammed")["id"]

    def clock() -> dict[str, Any]:
        answer = rig.api("GET", f"/api/v1/alerts/{alert_id}", LIU)
        assert answer.status_code == 200
        found: dict[str, Any] = answer.json()["clock"]
        return found

    assert clock() == {
        "due_ms": FRIDAY_1800 + DAY_MS,
        "stopped_ms": None,
        "remaining_ms": DAY_MS,
        "overdue_ms": None,
    }
    rig.advance(3 * MINUTE_MS)
    assert clock()["remaining_ms"] == DAY_MS - 3 * MINUTE_MS
    acknowledged = rig.api("POST", f"/api/v1/alerts/{alert_id}/acknowledge", LIU)
    assert acknowledged.status_code == 200
    body = acknowledged.json()
    assert (body["status"], body["acknowledged_by"], body["acknowledged_ms"]) == (
        "acknowledged",
        LIU_ID,
        rig.now(),
    )
    stopped = clock()
    for hours in (2, 30):  # later, and past the due time: the clock says what it said
        rig.advance(hours * HOUR_MS)
        assert (
            clock()
            == stopped
            == {
                "due_ms": FRIDAY_1800 + DAY_MS,
                "stopped_ms": FRIDAY_1800 + 3 * MINUTE_MS,
                "remaining_ms": DAY_MS - 3 * MINUTE_MS,
                "overdue_ms": None,
            }
        )
        rig.tokens.clear()  # the session may have expired: sign in again (30 s later)
        rig.advance(30_000)
    # An unacknowledged alert past due shows how late it is.
    rig.alarm("latch_fault", "A1")
    late_id = rig.alert("latch_fault")["id"]
    rig.advance(DAY_MS + HOUR_MS)
    rig.tokens.clear()
    late = rig.api("GET", f"/api/v1/alerts/{late_id}", LIU).json()["clock"]
    assert (late["remaining_ms"], late["overdue_ms"]) == (None, HOUR_MS)


def test_the_on_call_roster_decides_who_is_told_and_escalation_tells_rank_1(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for person, rank in ((LIU_ID, 0), (CHEN_ID, 1)):
        added = rig.api("POST", "/api/v1/on-call", ZHANG, json={"person_id": person, "rank": rank})
        assert added.status_code == 201, added.text
        assert (added.json()["rank"], added.json()["has_contact"]) == (rank, False)
    contact = rig.api("PUT", "/api/v1/staff/me/contact", CHEN, json={"phone": f"+86 {STAFF_PHONE}"})
    assert contact.status_code == 200, contact.text
    assert contact.json() == {"phone": "139****5678", "notify_channel": "sms", "has_wechat": False}
    roster = rig.api("GET", "/api/v1/on-call", LIU).json()["items"]
    assert [(r["person_id"], r["rank"], r["has_contact"]) for r in roster] == [
        (LIU_ID, 0, False),
        (CHEN_ID, 1, True),
    ]

    rig.alarm("door_ajar", "A2", item_at_risk=True)
    alert = rig.alert("item_at_risk")
    assert [(m["person_id"], m["key"]) for m in rig.messages()] == [
        (LIU_ID, f"alert:{alert['id']}:0")
    ]
    escalated = rig.api(
        "POST", f"/api/v1/alerts/{alert['id']}/escalate", LIU, json={"note": "I am across town"}
    )
    assert escalated.status_code == 200, escalated.text
    body = escalated.json()
    assert (body["escalation_level"], body["assigned_to"], body["status"]) == (1, CHEN_ID, "open")
    assert body["actions"][-1] | {"id": None, "at_ms": None} == {
        "id": None,
        "action": "escalated",
        "by_person": LIU_ID,
        "by_name": LIU.name,
        "note": "I am across town",
        "at_ms": None,
    }
    assert [(m["person_id"], m["key"], m["is_urgent"]) for m in rig.messages()] == [
        (LIU_ID, f"alert:{alert['id']}:0", 1),
        (CHEN_ID, f"alert:{alert['id']}:1", 1),
    ]
    for message in rig.messages():  # the outbox holds ids, never a phone
        assert STAFF_PHONE not in message["params"]

    # The real deliverer writes both messages; Chen's goes to the phone of her staff contact.
    sent = {m.person_id: m for m in deliver(rig)}
    assert sent[CHEN_ID].phone == STAFF_PHONE
    assert sent[LIU_ID].phone is None  # no contact given: the SMS adapter would refuse it
    chen = sent[CHEN_ID]
    assert chen.language == "zh-CN"
    assert alert["tracking_code"] in chen.text and "已转给您" in chen.text
    assert "1号柜 Locker A" in chen.text and "A2" in chen.text and "红色" in chen.text
    assert "柜门未关且格口内有物品" in chen.text and "1月16日 18:00" in chen.text
    assert STAFF_PHONE not in chen.text and "code" not in chen.values
    assert chen.redacted == chen.text  # nothing in it to hide
    for record in caplog.records:
        assert STAFF_PHONE not in record.getMessage()

    # An alert resolved before its message went out: the message is dropped, not sent.
    rig.alarm("jammed", "A4")
    jammed = rig.alert("jammed")
    rig.api("POST", f"/api/v1/alerts/{jammed['id']}/resolve", LIU, json={"note": "done"})
    assert deliver(rig) == []
    dropped = rig.store.read_one(
        "SELECT status, last_error FROM notifications WHERE key = ?", (f"alert:{jammed['id']}:0",)
    )
    assert dropped is not None and dropped["status"] == "failed"
    assert dropped["last_error"].startswith("obsolete")


def test_unanswered_alerts_escalate_by_themselves_once_per_level(rig: Rig) -> None:
    for person, rank in ((LIU_ID, 0), (CHEN_ID, 1)):
        rig.api("POST", "/api/v1/on-call", LIU, json={"person_id": person, "rank": rank})
    rig.alarm("jammed", "A1")
    rig.alarm("door_ajar", "A2")
    rig.alarm("latch_fault", "A3")
    jammed, ajar, latch = rig.alert("jammed"), rig.alert("door_ajar"), rig.alert("latch_fault")
    rig.api("POST", f"/api/v1/alerts/{latch['id']}/acknowledge", LIU)

    rig.advance(29 * MINUTE_MS)
    rig.run("alerts_escalate")
    assert rig.alert("jammed")["escalation_level"] == 0
    rig.advance(MINUTE_MS)
    rig.run("alerts_escalate")
    rig.run("alerts_escalate")
    assert [rig.alert(r)["escalation_level"] for r in ("jammed", "door_ajar", "latch_fault")] == [
        1,
        0,
        0,
    ]
    assert rig.actions(jammed["id"])[-1] == ("escalated", None, None)  # by nobody
    assert rig.alert("jammed")["assigned_to"] == CHEN_ID
    # Past due (red: 24 h; yellow: Wednesday 18:00), still unanswered: one level more each.
    rig.advance(DAY_MS)
    rig.run("alerts_escalate")
    assert rig.alert("jammed")["escalation_level"] == 2
    assert rig.alert("jammed")["assigned_to"] == LIU_ID  # past the roster's end: rank 0 again
    rig.advance(ajar["due_ms"] - rig.now())
    rig.run("alerts_escalate")
    assert [rig.alert(r)["escalation_level"] for r in ("jammed", "door_ajar", "latch_fault")] == [
        2,
        1,
        0,
    ]
    keys = [m["key"] for m in rig.messages()]
    assert keys.count(f"alert:{jammed['id']}:1") == keys.count(f"alert:{jammed['id']}:2") == 1
    assert [a for a, _, _ in rig.actions(jammed["id"])] == ["opened", "escalated", "escalated"]


def test_wrong_requests_are_refused_and_change_nothing(rig: Rig) -> None:
    rig.alarm("jammed", "A1")
    alert_id = rig.alert("jammed")["id"]
    with rig.store.write() as db:  # another community's alert
        db.execute("INSERT INTO communities (id, name) VALUES ('river-side', 'River Side')")
        db.execute(
            "INSERT INTO alerts (id, community_id, tracking_code, rule, severity, cause_key,"
            " status, opened_ms, due_ms) VALUES ('alr_river', 'river-side', 'R-0115-900',"
            " 'jammed', 'red', 'river', 'open', ?, ?)",
            (FRIDAY_1800, FRIDAY_1800 + DAY_MS),
        )
    for login in (LIU, ZHANG, WANG):
        rig.as_(login)
    refusals: list[tuple[str, str, DemoLogin | None, Any, int, str]] = [
        ("POST", f"/api/v1/alerts/{alert_id}/resolve", LIU, {}, 422, "invalid_request"),
        ("POST", f"/api/v1/alerts/{alert_id}/resolve", LIU, {"note": ""}, 422, "invalid_request"),
        ("POST", f"/api/v1/alerts/{alert_id}/resolve", LIU, {"note": "  "}, 422, "note_required"),
        ("POST", f"/api/v1/alerts/{alert_id}/escalate", LIU, {"note": "\n"}, 422, "note_required"),
        ("POST", f"/api/v1/alerts/{alert_id}/resolve", LIU, {"note": "x" * 501}, 422, "invalid_request"),
        ("POST", f"/api/v1/alerts/{alert_id}/resolve", LIU, {"note": "x", "extra": 1}, 422, "invalid_request"),
        ("GET", "/api/v1/alerts/alr_river", LIU, None, 404, "not_found"),
        ("POST", "/api/v1/alerts/alr_river/acknowledge", ZHANG, None, 404, "not_found"),
        ("POST", "/api/v1/alerts/alr_nothing/resolve", LIU, {"note": "x"}, 404, "not_found"),
        ("GET", "/api/v1/alerts?status=lost", LIU, None, 422, "invalid_request"),
        ("GET", "/api/v1/alerts?limit=0", LIU, None, 422, "invalid_request"),
        ("GET", "/api/v1/alerts", WANG, None, 403, "forbidden"),
        ("POST", f"/api/v1/alerts/{alert_id}/acknowledge", WANG, None, 403, "forbidden"),
        ("GET", "/api/v1/on-call", WANG, None, 403, "forbidden"),
        ("PUT", "/api/v1/staff/me/contact", WANG, {"phone": STAFF_PHONE}, 403, "forbidden"),
        ("GET", "/api/v1/alerts", None, None, 401, "not_authenticated"),
        ("POST", "/api/v1/on-call", LIU, {"person_id": "per_1", "rank": 0}, 422, "not_staff"),
        ("POST", "/api/v1/on-call", LIU, {"person_id": "per_river"}, 404, "not_found"),
        ("POST", "/api/v1/on-call", LIU, {"person_id": LIU_ID, "rank": 10}, 422, "invalid_request"),
        ("POST", "/api/v1/on-call", LIU, {"person_id": LIU_ID, "ends_ms": 5}, 422, "invalid"),
        ("POST", "/api/v1/on-call/onc_nothing/end", LIU, None, 404, "not_found"),
        ("PUT", "/api/v1/staff/me/contact", CHEN, {"phone": "12345"}, 422, "invalid"),
        ("PUT", "/api/v1/staff/me/contact", CHEN, {"phone": STAFF_PHONE, "notify_channel": "fax"}, 422, "invalid_request"),
    ]  # fmt: skip
    rig.as_(CHEN)
    before = quiet_dump(rig.store)
    for method, path, login, body, status, code in refusals:
        headers = rig.as_(login) if login else {}
        kw = {"json": body} if body is not None else {}
        answer = rig.http.request(method, path, headers=headers, **kw)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (method, path, body)
        assert STAFF_PHONE not in answer.text
    assert quiet_dump(rig.store) == before

    # Wrong state: 409 with a code that says why, and nothing changes.
    assert rig.api("POST", f"/api/v1/alerts/{alert_id}/acknowledge", LIU).status_code == 200
    state = quiet_dump(rig.store)
    again = rig.api("POST", f"/api/v1/alerts/{alert_id}/acknowledge", ZHANG)
    assert (again.status_code, again.json()["code"]) == (409, "already_acknowledged")
    assert quiet_dump(rig.store) == state
    done = rig.api("POST", f"/api/v1/alerts/{alert_id}/resolve", ZHANG, json={"note": " fixed "})
    assert (done.json()["status"], done.json()["resolution"]) == ("resolved", "fixed")
    assert done.json()["clock"]["stopped_ms"] == done.json()["acknowledged_ms"]
    state = quiet_dump(rig.store)
    for action, body in (
        ("acknowledge", None),
        ("escalate", {"note": "x"}),
        ("resolve", {"note": "x"}),
    ):
        kw = {"json": body} if body is not None else {}
        answer = rig.api("POST", f"/api/v1/alerts/{alert_id}/{action}", LIU, **kw)
        assert (answer.status_code, answer.json()["code"]) == (409, "already_resolved")
    assert quiet_dump(rig.store) == state

    # The roster refuses a rank someone holds; a shift ends once.
    first = rig.api("POST", "/api/v1/on-call", LIU, json={"person_id": LIU_ID})
    assert first.status_code == 201
    taken = rig.api("POST", "/api/v1/on-call", LIU, json={"person_id": CHEN_ID, "rank": 0})
    assert (taken.status_code, taken.json()["code"]) == (409, "rank_taken")
    shift = first.json()["id"]
    assert rig.api("POST", f"/api/v1/on-call/{shift}/end", ZHANG).json()["ends_ms"] == rig.now()
    ended = rig.api("POST", f"/api/v1/on-call/{shift}/end", ZHANG)
    assert (ended.status_code, ended.json()["code"]) == (409, "already_ended")
    rig.advance(1)
    assert rig.api("POST", "/api/v1/on-call", LIU, json={"person_id": CHEN_ID}).status_code == 201


def test_the_list_filters_and_pages_newest_first(rig: Rig) -> None:
    rig.alarm("jammed", "A1")
    rig.advance(1_000)
    rig.alarm("door_ajar", "A2")
    rig.advance(1_000)
    rig.alarm("code_guessing", None)
    listed = rig.api("GET", "/api/v1/alerts", ZHANG).json()
    assert [a["rule"] for a in listed["items"]] == ["code_guessing", "door_ajar", "jammed"]
    assert listed["items"][0]["device_name"] == "1号柜 Locker A"
    only_red = rig.api("GET", "/api/v1/alerts?severity=red", ZHANG).json()["items"]
    assert [a["rule"] for a in only_red] == ["jammed"]
    page = rig.api("GET", "/api/v1/alerts?offset=1&limit=1", ZHANG).json()["items"]
    assert [a["rule"] for a in page] == ["door_ajar"]
    assert rig.api("GET", "/api/v1/alerts?status=resolved", ZHANG).json()["items"] == []


# --- the console pages ----------------------------------------------------------------------------


def page_session(rig: Rig, login: DemoLogin) -> str:
    """A console session through the staff sign-in form (password and authenticator code)."""
    form = rig.http.get("/staff/signin")
    token = csrf_of(form.text)
    body = login.body(rig.now())
    done = rig.http.post(
        "/staff/signin",
        data={"login": login.login, "password": login.secret, "totp": body["totp"], "csrf": token},
        headers={"cookie": f"linli_csrf={token}"},
    )
    assert done.status_code == 303, done.text[:300]
    return cookie_named(done, "linli_session")["value"]


def page(rig: Rig, path: str, session: str, language: str = "zh-CN") -> httpx.Response:
    return rig.http.get(path, headers={"cookie": f"linli_session={session}; linli_lang={language}"})


def post(rig: Rig, path: str, session: str, **data: str) -> httpx.Response:
    return rig.http.post(path, data=data, headers={"cookie": f"linli_session={session}"})


def test_the_alert_pages_in_both_languages_and_acknowledging_by_form(rig: Rig) -> None:
    rig.alarm("code_guessing", None)
    rig.cleared("code_guessing", None)
    rig.advance(1_000)
    rig.alarm("door_ajar", "A2", item_at_risk=True)
    alert = rig.alert("item_at_risk")
    session = page_session(rig, LIU)
    rig.advance(5 * HOUR_MS)
    for language, words, clock in (
        ("zh-CN", ("柜门未关且格口内有物品", "红色", "蓝色", "状况已解除", "仍然存在"), "剩余 19 小时 0 分钟"),
        ("en", ("door open with an item inside", "Red", "Blue", "condition cleared", "still present"), "due in 19 h 0 min"),
    ):  # fmt: skip
        listed = page(rig, "/maint/alerts", session, language)
        assert listed.status_code == 200
        html = listed.text
        rows = re.findall(r'data-testid="alert-row" data-rule="([a-z_]+)"', html)
        assert rows == ["item_at_risk", "code_guessing"]  # newest first
        assert alert["tracking_code"] in html
        assert [w for w in words if w not in html] == [], language
        assert 'class="sev-red"' in html and 'class="sev-blue"' in html  # colour and words
        clocks = re.findall(r'data-testid="alert-clock"[^>]*>([^<]+)<', html)
        assert clocks[0] == clock
        statuses = re.findall(r'data-testid="alert-status" data-status="([a-z]+)"', html)
        assert statuses == ["open", "open"]
        detail = page(rig, f"/maint/alerts/{alert['id']}", session, language)
        assert detail.status_code == 200
        assert 'data-testid="alert-acknowledge"' in detail.text
        assert not re.search(r"\{[a-z_]+\}", html + detail.text)  # no placeholder left

    # Acknowledge through the form: without its CSRF token, 403 and nothing changes.
    form_token = csrf_of(page(rig, f"/maint/alerts/{alert['id']}", session).text)
    before = quiet_dump(rig.store)
    refused = post(rig, f"/maint/alerts/{alert['id']}/acknowledge", session)
    assert refused.status_code == 403
    refused = post(rig, f"/maint/alerts/{alert['id']}/acknowledge", session, csrf="0" * 40)
    assert refused.status_code == 403
    assert quiet_dump(rig.store) == before
    done = post(rig, f"/maint/alerts/{alert['id']}/acknowledge", session, csrf=form_token)
    assert (done.status_code, done.headers["location"]) == (303, f"/maint/alerts/{alert['id']}")
    assert rig.alert("item_at_risk")["status"] == "acknowledged"
    rig.advance(3 * HOUR_MS)
    detail = page(rig, f"/maint/alerts/{alert['id']}", session, "en").text
    clock = re.search(r'data-testid="alert-clock" data-running="false"[^>]*>([^<]+)<', detail)
    assert clock and clock.group(1) == "responded in 5 h 0 min"
    assert 'data-testid="alert-acknowledge"' not in detail  # done already
    again = post(rig, f"/maint/alerts/{alert['id']}/acknowledge", session, csrf=form_token)
    assert again.status_code == 409 and 'data-testid="alert-problem"' in again.text

    # Escalate and resolve with a note; resolving without one says so and changes nothing.
    state = quiet_dump(rig.store)
    empty = post(rig, f"/maint/alerts/{alert['id']}/resolve", session, csrf=form_token, note=" ")
    assert empty.status_code == 422 and "请填写说明" in empty.text
    assert quiet_dump(rig.store) == state
    escalated = post(
        rig, f"/maint/alerts/{alert['id']}/escalate", session, csrf=form_token, note="需要电工"
    )
    assert escalated.status_code == 303
    resolved = post(
        rig, f"/maint/alerts/{alert['id']}/resolve", session, csrf=form_token, note="已取出物品"
    )
    assert resolved.status_code == 303
    assert [(a, n) for a, _, n in rig.actions(alert["id"])] == [
        ("opened", None),
        ("acknowledged", None),
        ("escalated", "需要电工"),
        ("resolved", "已取出物品"),
    ]
    listed = page(rig, "/maint/alerts", session).text
    assert re.findall(r'data-rule="([a-z_]+)"', listed) == ["code_guessing"]  # live ones only
    history = page(rig, f"/maint/alerts/{alert['id']}", session).text
    assert re.findall(r'data-testid="alert-action" data-action="([a-z]+)"', history) == [
        "opened",
        "acknowledged",
        "escalated",
        "resolved",
    ]
    assert "需要电工" in history and 'data-testid="alert-resolve"' not in history


def test_social_workers_see_alerts_and_residents_do_not(rig: Rig) -> None:
    rig.alarm("door_ajar", "A2", item_at_risk=True)
    alert = rig.alert("item_at_risk")
    zhang = page_session(rig, ZHANG)
    assert page(rig, "/maint/alerts", zhang).status_code == 200
    assert page(rig, f"/maint/alerts/{alert['id']}", zhang).status_code == 200
    assert page(rig, "/maint/alerts/alr_nothing", zhang).status_code == 404
    resident = rig.sign_in(WANG)
    for path in ("/maint/alerts", f"/maint/alerts/{alert['id']}"):
        answer = page(rig, path, resident)
        assert (answer.status_code, answer.headers["location"]) == (303, "/staff/signin")
        assert page(rig, path, "").status_code == 303


@pytest.mark.parametrize("path", ["/maint/alerts", "/maint/alerts/{id}"])
def test_the_pseudo_locale_finds_no_hard_coded_text_on_the_alert_pages(rig: Rig, path: str) -> None:
    rig.alarm("jammed", "A1")
    rig.alarm("bus_unreachable", None)
    alert = rig.alert("jammed")
    rig.api("POST", f"/api/v1/alerts/{alert['id']}/escalate", LIU, json={"note": "help"})
    rig.advance(30_000)  # an authenticator code counts once
    session = page_session(rig, LIU)
    html = page(rig, path.format(id=alert["id"]), session, "x-pseudo").text
    parser = TextNodes()
    parser.feed(html)
    bare = []
    for line in parser.lines():
        rest = re.sub(r"⟦[^⟦⟧]*⟧", "", line)
        for word in ALLOWED_BARE:
            rest = rest.replace(word, "")
        if not re.fullmatch(r"[\s§·+\-0-9,:]*", rest):
            bare.append(line)
    assert not bare, f"hard-coded text on {path}: {bare}"


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_alert_pages_pass_axe_and_fit_a_phone(
    rig: Rig, chromium_browser: Browser, language: str
) -> None:
    rig.alarm("door_ajar", "A2", item_at_risk=True)
    rig.alarm("code_guessing", None)
    rig.cleared("code_guessing", None)
    alert = rig.alert("item_at_risk")
    rig.api("POST", f"/api/v1/alerts/{alert['id']}/acknowledge", LIU)
    rig.advance(30_000)
    session = page_session(rig, LIU)
    for width, height in ((390, 844), (1280, 800)):
        tab = new_phone_page(
            chromium_browser, locale=language, width=width, height=height, base_url=rig.server.url
        )
        try:
            tab.context.add_cookies(
                [
                    {"name": name, "value": value, "url": rig.server.url}
                    for name, value in (("linli_session", session), ("linli_lang", language))
                ]
            )
            for path in ("/maint/alerts", f"/maint/alerts/{alert['id']}"):
                assert tab.goto(path).status == 200  # type: ignore[union-attr]
                where = f"{path} {language} {width}px: "
                violations = axe_violations(tab)
                assert not violations, format_violations(violations, where)
                overflow = horizontal_overflow_px(tab)
                assert overflow <= 1, f"{where}{wider_than_viewport(tab)}"
        finally:
            tab.context.close()


# --- a controller speaks over MQTT ---------------------------------------------------------------


def test_a_forced_door_on_a_simulated_bank_reaches_the_maintainer(
    cloud: CloudUnderTest, simulated_locker: Callable[..., SimulatedLocker]
) -> None:
    locker = simulated_locker(cloud.identity("locker-a"), cloud.broker, telemetry_every_ms=200)
    services: Services = cloud.server.app.state.services

    def wait_for(what: str, check: Callable[[], object], timeout_s: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (found := check()):
            assert time.monotonic() < deadline, f"no {what}"
            time.sleep(0.05)
        return found

    tele = wait_for("telemetry", lambda: services.devices.telemetry.get("locker-a"))
    assert isinstance(tele["disk_free_pct"], float) and 0 <= tele["disk_free_pct"] <= 100
    wait_for(
        "the bank's first reading",
        lambda: locker.daemon.state.compartments["A3"].door == "closed",
    )
    time.sleep(0.3)  # past the door's debounce: the closed door is learned
    assert locker.sim.force_door("A3")
    alert = wait_for(
        "door_forced alert",
        lambda: cloud.store.read_one("SELECT * FROM alerts WHERE rule = 'door_forced'"),
    )
    assert (alert["severity"], alert["device_id"], alert["compartment"]) == (
        "red",
        "locker-a",
        "A3",
    )
    message = cloud.store.read_one("SELECT * FROM notifications WHERE kind = 'alert'")
    assert message is not None and (message["person_id"], message["is_urgent"]) == (LIU_ID, 1)
