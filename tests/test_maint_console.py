"""The maintainer's console over real HTTP (Chromium: tests/test_maint_browser.py).

A seeded cloud on a private Mosquitto; device messages are published through that broker as a
device would publish them (the cloud's real ingest applies them), so the pages and the event
stream show what the store holds:

- ``/maint`` and ``/maint/devices/{id}`` render in both languages, for maintainers only (a
  resident, a social worker and nobody are sent to the staff sign-in, and see no device);
- the health a device reports (telemetry, events, gaps) is on the devices page;
- the event stream: ``retry``, a snapshot, a change after a device's ``state`` message, a
  heartbeat, ``no-store``; it ends when the server stops, and a stream to the restarted server
  starts with a fresh snapshot;
- the service open: refused for an occupied compartment without the second confirmation (and
  nothing sent), sent with it (the ``commands`` row and the signed ``cmd`` on the broker, with
  the reason); the same two steps through the page's forms; bad input is 422, never 5xx, and
  changes nothing.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from conftest import CloudUnderTest, module_cloud
from paho.mqtt.enums import CallbackAPIVersion
from test_pages import ALLOWED_BARE, TextNodes

import cloud_api.pages.maint as maint_pages
from cloud_api.devices.enrol import enrol_device
from cloud_api.devices.router import RATED_RELAY_CYCLES, devices_of
from cloud_api.seed import LOGINS, DemoLogin
from linli.broker import BrokerAddress
from linli.contract import (
    CommandResult,
    CompartmentState,
    Event,
    State,
    Status,
    Telemetry,
    encode,
    topic,
    verify_envelope,
)
from linli.i18n import LANGUAGES, t
from station.capture import MqttCapture
from station.cloud_server import CloudServer

pytestmark = pytest.mark.mosquitto

WANG, _LI, ZHANG, LIU = LOGINS[0], LOGINS[1], LOGINS[2], LOGINS[3]
BOOT = "00000000b007"
BANK = "locker-b"
"""The bank the tests speak for (no simulated controller runs here)."""
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


@dataclass
class Site:
    """A seeded cloud for the module, its broker, and a session per caller."""

    cloud: CloudUnderTest
    broker: BrokerAddress
    sessions: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cloud.url

    def session(self, login: DemoLogin) -> str:
        """A session token, signed in once per module (a TOTP code is accepted once)."""
        if login.login not in self.sessions:
            body = login.body(int(time.time() * 1000))
            response = httpx.post(f"{self.url}/api/v1/session", json=body)
            assert response.status_code == 200, response.text
            self.sessions[login.login] = response.json()["token"]
        return self.sessions[login.login]

    def cookie(self, login: DemoLogin | None, language: str | None = None) -> dict[str, str]:
        parts = [] if login is None else [f"linli_session={self.session(login)}"]
        if language is not None:
            parts.append(f"linli_lang={language}")
        return {"cookie": "; ".join(parts)} if parts else {}

    def get(self, path: str, login: DemoLogin | None = LIU, language: str | None = None) -> Any:
        return httpx.get(f"{self.url}{path}", headers=self.cookie(login, language))

    def api(self, method: str, path: str, login: DemoLogin | None = LIU, **kw: Any) -> Any:
        headers = {} if login is None else {"Authorization": f"Bearer {self.session(login)}"}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, **kw)

    def publish(self, device_id: str, name: str, message: Any) -> None:
        """Publish a device's message through the broker, as the device would (QoS 1)."""
        publish(self.broker, topic(device_id, name), encode(message))


def publish(broker: BrokerAddress, where: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        client.publish(where, payload, qos=1).wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with module_cloud(tmp_path_factory, "maint") as cloud:
        yield Site(cloud, cloud.broker)


def wait_until(what: str, condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def compartment(site: Site, device_id: str, name: str) -> dict[str, Any]:
    row = site.cloud.store.read_one(
        "SELECT latch, door, occupancy FROM compartments WHERE device_id = ? AND name = ?",
        (device_id, name),
    )
    assert row is not None
    return dict(row)


def bank_state(**changed: CompartmentState) -> State:
    """locker-b's four compartments closed and empty, but for ``changed``."""
    closed = CompartmentState(latch="locked", door="closed", occupancy="absent")
    compartments = {n: changed.get(n, closed) for n in ("A1", "A2", "A3", "A4")}
    return State(
        device_id=BANK, boot_id=BOOT, compartments=compartments, wall_ms=int(time.time() * 1000)
    )


def set_state(site: Site, device_id: str = BANK, **changed: CompartmentState) -> None:
    """Publish the bank's state and wait until the store has it."""
    state = bank_state(**changed).model_copy(update={"device_id": device_id})
    site.publish(device_id, "state", state)
    expected = {
        n: c.model_dump(include={"latch", "door", "occupancy"})
        for n, c in state.compartments.items()
    }
    wait_until(
        "the state in the store",
        lambda: all(compartment(site, device_id, n) == e for n, e in expected.items()),
    )


def commands(site: Site) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in site.cloud.store.read("SELECT * FROM commands ORDER BY id")]


def text_of(page: str) -> str:
    """The page's text, tags removed and entities resolved."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no csrf field"
    return found.group(1)


# --- the event stream, read as a client reads it ---------------------------------------------------


class EventStream:
    """An open ``text/event-stream`` response read on a thread: events and comments, in order."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.items: list[tuple[str, str]] = []  # ("retry"|"comment"|event name, data)
        self.ended = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event, data = "message", []
        try:
            for line in self.response.iter_lines():
                if line.startswith(":"):
                    self._add("comment", line[1:].strip())
                elif line.startswith("retry:"):
                    self._add("retry", line[6:].strip())
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    self._add(event, "\n".join(data))
                    event, data = "message", []
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()
            with self._cond:
                self._cond.notify_all()

    def _add(self, kind: str, data: str) -> None:
        with self._cond:
            self.items.append((kind, data))
            self._cond.notify_all()

    def next(self, kind: str, timeout_s: float = 5.0, after: int = 0) -> tuple[int, str]:
        """The index and data of the first item of ``kind`` at or after ``after``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for i, (k, data) in enumerate(self.items[after:], start=after):
                    if k == kind:
                        return i, data
                remaining = deadline - time.monotonic()
                assert remaining > 0 and not self.ended.is_set(), (
                    f"no {kind} within {timeout_s} s (got {[k for k, _ in self.items]})"
                )
                self._cond.wait(min(remaining, 0.1))


@contextmanager
def event_stream(site_url: str, path: str, cookie: dict[str, str]) -> Iterator[EventStream]:
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=30.0)) as client,
        client.stream("GET", f"{site_url}{path}", headers=cookie) as response,
    ):
        assert response.status_code == 200, response.read()[:300]
        yield EventStream(response)


# --- pages ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_devices_page_lists_every_device_in_both_languages(site: Site, language: str) -> None:
    page = site.get("/maint", language=language)
    assert page.status_code == 200, page.text[:300]
    assert f'<html lang="{language}">' in page.text
    assert t("maint.devices.title", language) in page.text
    for device_id in ("locker-a", "locker-b", "terminal-1"):
        assert f'data-testid="device-{device_id}"' in page.text
        state = re.search(
            rf'data-testid="status-{device_id}" data-state="(\w+)">([^<]+)<', page.text
        )
        assert state, f"no status for {device_id}"
        assert state.group(2) == t(f"maint.status.{state.group(1)}", language)
    assert 'href="/maint/devices/locker-a"' in page.text
    assert not PLACEHOLDER.search(page.text), PLACEHOLDER.findall(page.text)
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_live_page_renders_the_bank_in_both_languages(site: Site, language: str) -> None:
    set_state(site, A3=CompartmentState(latch="locked", door="closed", occupancy="present"))
    page = site.get(f"/maint/devices/{BANK}", language=language)
    assert page.status_code == 200, page.text[:300]
    html = page.text
    assert f'<html lang="{language}">' in html
    for name in ("A1", "A2", "A3", "A4"):
        for cell in ("latch", "door", "occupancy", "attention"):
            assert f'data-testid="{cell}-{name}"' in html
        assert f'action="/maint/devices/{BANK}/compartments/{name}/open"' in html
    occupancy = re.search(r'data-testid="occupancy-A3"[^>]*data-state="(\w+)">([^<]+)<', html)
    assert occupancy and occupancy.groups() == ("present", t("maint.occupancy.present", language))
    door = re.search(r'data-testid="door-A1"[^>]*data-state="(\w+)">([^<]+)<', html)
    assert door and door.groups() == ("closed", t("maint.door.closed", language))
    # The live script is ours, from /static, never inline; the texts it shows come with the page.
    assert '<script src="/static/live.js" defer></script>' in html
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert f'data-text-live="{t("maint.live.live", language)}"' in html
    assert 'data-testid="live-status"' in html and 'data-testid="reload"' in html
    assert not PLACEHOLDER.search(html), PLACEHOLDER.findall(html)
    script = httpx.get(f"{site.url}/static/live.js")
    assert script.status_code == 200 and "EventSource" in script.text


@pytest.mark.parametrize("path", ["/maint", f"/maint/devices/{BANK}"])
def test_the_pseudo_locale_finds_no_hard_coded_text(site: Site, path: str) -> None:
    parser = TextNodes()
    parser.feed(site.get(path, language="x-pseudo").text)
    bare = []
    for line in parser.lines():
        rest = re.sub(r"⟦[^⟦⟧]*⟧", "", line)  # catalog text (values inside it allowed)
        for word in ALLOWED_BARE:
            rest = rest.replace(word, "")
        if not re.fullmatch(r"[\s§·+\-0-9,:]*", rest):
            bare.append(line)
    assert parser.lines() and not bare, f"hard-coded text on {path}: {bare}"


def test_the_devices_page_shows_what_a_device_reports(site: Site) -> None:
    now = int(time.time() * 1000)
    site.publish(
        BANK,
        "status",
        Status(device_id=BANK, state="online", role="locker", boot_id=BOOT, version="9.8.7",
               keepalive_s=3600),
    )  # fmt: skip
    tele = Telemetry(
        device_id=BANK,
        boot_id=BOOT,
        uptime_s=100,
        outbox_depth=7,
        grant_list_age_s=180,
        clock_trust="holdover",
        cpu_temp_c=61.25,
        throttled=0x10000,  # under-voltage has occurred since boot, not now
        disk_free_pct=41.5,
    )
    site.publish(BANK, "tele", tele)
    # Three latch pulses of A4, then an event whose predecessors never arrived (a gap).
    for seq in (1, 2, 3, 6):
        site.publish(
            BANK,
            "evt",
            Event(device_id=BANK, boot_id=BOOT, seq=seq, type="latch_pulsed", mono_ms=seq,
                  wall_ms=now + seq, trust="synced", compartment="A4"),
        )  # fmt: skip
    wait_until(
        "the events stored",
        lambda: (
            site.cloud.store.read_one(
                "SELECT COUNT(*) FROM device_events WHERE device_id = ? AND boot_id = ?",
                (BANK, BOOT),
            )[0]  # type: ignore[index]
            == 4
        ),
    )
    wait_until(
        "the telemetry", lambda: BANK in site.cloud.server.app.state.services.devices.telemetry
    )
    html = site.get("/maint", language="en").text
    card = html[html.index(f'data-testid="device-{BANK}"') :]
    card = card[: card.index("</section>")]
    assert 'data-testid="status-locker-b" data-state="online">Online<' in card
    assert "9.8.7" in card
    assert t("maint.clock.holdover", "en") in card
    assert re.search(r'data-testid="outbox-locker-b">\s*<span class="data">7<', card)
    assert re.search(r'data-testid="temp-locker-b"><span class="data">61.2</span> °C<', card)
    assert re.search(r'data-testid="disk-locker-b"><span class="data">42</span> %<', card)
    assert 'data-state="since_boot"' in card
    assert re.search(r'data-testid="grant-age-locker-b"><span class="data">3 min<', card)
    assert re.search(r'data-testid="gaps-locker-b" data-count="1"', card)
    assert 'data-testid="cycles-locker-b-A4" data-cycles="4"' in card
    assert RATED_RELAY_CYCLES == 100_000
    assert "&lt;0.1" in card  # 4 of 100 000


def test_the_console_reads_devices_as_the_api_lists_them(site: Site) -> None:
    # devices_of() is meant to be the body of GET /api/v1/devices (one function for both).
    services = site.cloud.server.app.state.services
    liu = services.accounts.person_for(site.session(LIU), int(time.time() * 1000))
    listed = site.api("GET", "/devices").json()
    assert json.loads(json.dumps(devices_of(services, liu.community_id))) == listed


# --- who may see it --------------------------------------------------------------------------------


@pytest.mark.parametrize("login", [None, WANG, ZHANG], ids=["nobody", "resident", "social_worker"])
def test_only_maintainers_see_the_console(site: Site, login: DemoLogin | None) -> None:
    for path in ("/maint", f"/maint/devices/{BANK}", f"/maint/devices/{BANK}/live"):
        page = site.get(path, login)
        assert page.status_code == 303, (path, page.status_code)
        assert page.headers["location"] == "/staff/signin"
        assert BANK not in page.text
    before = commands(site)
    refused = site.api("POST", f"/devices/{BANK}/compartments/A1/open", login, json={"reason": "x"})
    assert refused.status_code == (401 if login is None else 403)
    page = httpx.post(
        f"{site.url}/maint/devices/{BANK}/compartments/A1/open",
        data={"reason": "x", "csrf": "0" * 40},
        headers=site.cookie(login),
    )
    assert (
        page.status_code in (303, 403) and page.headers.get("location") != f"/maint/devices/{BANK}"
    )
    assert commands(site) == before


def test_another_communitys_device_is_not_found(site: Site) -> None:
    store = site.cloud.store
    with store.write() as db:
        db.execute("INSERT OR IGNORE INTO communities VALUES ('river', '河畔 River')")
    enrol_device(
        store, site.cloud.keys, community_id="river", device_id="locker-river", role="locker",
        name="River", location="", compartments=[("A1", "M")],
    )  # fmt: skip
    for path in (
        "/maint/devices/locker-river",
        "/maint/devices/no-such",
        "/maint/devices/locker-river/live",
    ):
        assert site.get(path).status_code == 404, path
    assert "locker-river" not in site.get("/maint").text
    for device in ("locker-river", "no-such"):
        response = site.api("POST", f"/devices/{device}/compartments/A1/open", json={"reason": "x"})
        assert response.status_code == 404 and response.json()["code"] == "not_found"


# --- the event stream -------------------------------------------------------------------------------


def test_the_stream_sends_a_snapshot_then_each_change(site: Site) -> None:
    set_state(site)
    with event_stream(site.url, f"/maint/devices/{BANK}/live", site.cookie(LIU)) as stream:
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-store"
        _, retry = stream.next("retry")
        assert retry == "1000"
        at, data = stream.next("snapshot")
        snapshot = json.loads(data)
        assert set(snapshot["compartments"]) == {"A1", "A2", "A3", "A4"}
        assert snapshot["compartments"]["A2"]["door"] == "closed"
        assert snapshot["device"]["id"] == BANK

        started = time.monotonic()
        opened = CompartmentState(latch="unlocked", door="open", occupancy="absent")
        site.publish(BANK, "state", bank_state(A2=opened))
        at, data = stream.next("change", timeout_s=2.0, after=at + 1)
        change = json.loads(data)
        assert change["compartments"] == {
            "A2": change["compartments"]["A2"] | {"latch": "unlocked", "door": "open"}
        }, "only what changed is sent"
        assert time.monotonic() - started < 2.0

        # The same state again changes nothing, so nothing is sent; the next real change is.
        site.publish(BANK, "state", bank_state(A2=opened))
        site.publish(BANK, "state", bank_state())
        at, data = stream.next("change", timeout_s=2.0, after=at + 1)
        assert json.loads(data)["compartments"]["A2"]["door"] == "closed"
        assert [k for k, _ in stream.items[at + 1 :]] == []


def test_a_quiet_stream_sends_a_heartbeat(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maint_pages, "HEARTBEAT_S", 0.3)  # the app runs in this process
    with event_stream(site.url, f"/maint/devices/{BANK}/live", site.cookie(LIU)) as stream:
        at, _ = stream.next("snapshot")
        _, comment = stream.next("comment", timeout_s=3.0, after=at)
        assert comment == "heartbeat"


def test_the_stream_ends_when_the_server_stops_and_starts_fresh_after(
    make_cloud: Callable[..., CloudUnderTest],
) -> None:
    cloud = make_cloud()
    login = LIU.body(int(time.time() * 1000))
    token = httpx.post(f"{cloud.url}/api/v1/session", json=login).json()["token"]
    cookie = {"cookie": f"linli_session={token}"}
    with event_stream(cloud.url, f"/maint/devices/{BANK}/live", cookie) as stream:
        stream.next("snapshot")
        started = time.monotonic()
        cloud.stop()
        assert stream.ended.wait(5), "the stream did not end when the server stopped"
        stopped_s = time.monotonic() - started
    assert not cloud.server._thread.is_alive(), "the server still waits for a response to end"
    assert stopped_s < 3, f"stopping took {stopped_s:.1f} s"
    cloud.server = CloudServer(cloud.server.settings).start()  # same port, same data
    with event_stream(cloud.url, f"/maint/devices/{BANK}/live", cookie) as stream:
        _, data = stream.next("snapshot")
        assert set(json.loads(data)["compartments"]) == {"A1", "A2", "A3", "A4"}


# --- the service open --------------------------------------------------------------------------------


def test_an_occupied_compartment_opens_only_when_confirmed(site: Site) -> None:
    inside = CompartmentState(latch="locked", door="closed", occupancy="present")
    set_state(site, A3=inside)
    path = f"/devices/{BANK}/compartments/A3/open"
    before = commands(site)
    with MqttCapture(site.broker, topic(BANK, "cmd")) as capture:
        refused = site.api("POST", path, json={"reason": "check the latch"})
        assert refused.status_code == 409
        assert refused.json() == {
            "code": "occupied",
            "message": refused.json()["message"],
            "field": "confirm_occupied",
        }
        assert commands(site) == before
        sent = site.api("POST", path, json={"reason": "check the latch", "confirm_occupied": True})
        assert sent.status_code == 202, sent.text
        command_id = sent.json()["command_id"]
        row = site.cloud.store.read_one("SELECT * FROM commands WHERE id = ?", (command_id,))
        assert row is not None
        assert (row["device_id"], row["name"], row["compartment"], row["grant_id"]) == (
            BANK, "open", "A3", None,
        )  # fmt: skip
        liu = site.api("GET", "/me").json()["id"]
        assert row["requested_by"] == liu
        message = capture.wait_for(topic(BANK, "cmd"), timeout_s=5)
        keys = site.cloud.keys
        body = verify_envelope(message.payload, {keys.key_id: keys.public_key}, kind="cmd")
        assert (body["id"], body["name"], body["compartment"], body["reason"]) == (
            command_id, "open", "A3", "check the latch",
        )  # fmt: skip
        assert len(capture.messages()) == 1, "the refused open sent nothing"
    # An empty compartment needs no confirmation.
    assert (
        site.api(
            "POST", f"/devices/{BANK}/compartments/A1/open", json={"reason": "test"}
        ).status_code
        == 202
    )


def test_the_live_page_opens_in_two_steps_and_shows_the_result(site: Site) -> None:
    inside = CompartmentState(latch="locked", door="closed", occupancy="present")
    set_state(site, A3=inside)
    cookie = site.cookie(LIU, "en")
    page = site.get(f"/maint/devices/{BANK}", language="en")
    token = csrf_of(page.text)
    action = f"{site.url}/maint/devices/{BANK}/compartments/A3/open"
    before = commands(site)

    without = httpx.post(action, data={"reason": "stuck door"}, headers=cookie)
    assert without.status_code == 403
    first = httpx.post(action, data={"reason": "stuck door", "csrf": token}, headers=cookie)
    assert first.status_code == 409
    assert 'data-testid="confirm-occupied"' in first.text
    assert t("maint.open.occupied", "en", compartment="A3") in text_of(first.text)
    assert 'name="confirm_occupied" value="1"' in first.text
    assert 'name="reason" value="stuck door"' in first.text
    assert commands(site) == before, "nothing is sent before the confirmation"

    second = httpx.post(
        action,
        data={"reason": "stuck door", "csrf": token, "confirm_occupied": "1"},
        headers=cookie,
    )
    assert second.status_code == 303
    location = second.headers["location"]
    command_id = re.fullmatch(rf"/maint/devices/{BANK}\?cmd=([A-Za-z0-9_-]+)#open-result", location)
    assert command_id, location
    cmd = command_id.group(1)
    shown = httpx.get(f"{site.url}{location}", headers=cookie).text
    assert f'data-command="{cmd}" data-outcome="pending"' in shown
    assert t("maint.outcome.pending", "en") in shown

    # The locker answers: the page (and the stream) show the result from the commands table.
    with event_stream(site.url, f"/maint/devices/{BANK}/live", cookie) as stream:
        at, _ = stream.next("snapshot")
        site.publish(BANK, "res", CommandResult(device_id=BANK, cmd_id=cmd, ok=True))
        _, data = stream.next("change", after=at + 1)
        latest = json.loads(data)["commands"][0]
        assert (latest["id"], latest["outcome"]) == (cmd, "done")
    shown = httpx.get(f"{site.url}{location}", headers=cookie).text
    assert f'data-command="{cmd}" data-outcome="done"' in shown


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/devices/locker-b/compartments/A1/open", {}),
        ("/devices/locker-b/compartments/A1/open", {"reason": ""}),
        ("/devices/locker-b/compartments/A1/open", {"reason": "   "}),
        ("/devices/locker-b/compartments/A1/open", {"reason": "x" * 201}),
        ("/devices/locker-b/compartments/A1/open", {"reason": "x", "confirm_occupied": "maybe"}),
        ("/devices/locker-b/compartments/A1/open", {"reason": "x", "extra": 1}),
        ("/devices/locker-b/compartments/A1/open", {"reason": 12}),
        ("/devices/locker-b/compartments/a1/open", {"reason": "x"}),
        ("/devices/locker-b/compartments/A1%00/open", {"reason": "x"}),
        ("/devices/lock%20er/compartments/A1/open", {"reason": "x"}),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    site: Site, path: str, body: dict[str, Any]
) -> None:
    before = commands(site)
    response = site.api("POST", path, json=body)
    assert response.status_code == 422, (response.status_code, response.text)
    assert response.json()["code"] == "invalid_request"
    assert commands(site) == before


def test_bad_form_input_is_refused_and_changes_nothing(site: Site) -> None:
    cookie = site.cookie(LIU)
    token = csrf_of(site.get(f"/maint/devices/{BANK}").text)
    before = commands(site)
    base = f"{site.url}/maint/devices/{BANK}/compartments"
    for where, data in (
        ("A1", {"csrf": token}),
        ("A1", {"csrf": token, "reason": ""}),
        ("A1", {"csrf": token, "reason": "x" * 201}),
        ("A1", {"csrf": token, "reason": "x", "confirm_occupied": "perhaps"}),
        ("a1", {"csrf": token, "reason": "x"}),
    ):
        response = httpx.post(f"{base}/{where}/open", data=data, headers=cookie)
        assert response.status_code == 422, (where, data, response.status_code)
    missing = httpx.post(f"{base}/Z9/open", data={"csrf": token, "reason": "x"}, headers=cookie)
    assert missing.status_code == 404
    for path in ("/maint/devices/x%27y", f"/maint/devices/{BANK}?cmd=%3Cscript%3E"):
        assert site.get(path).status_code == 422, path
    assert commands(site) == before
