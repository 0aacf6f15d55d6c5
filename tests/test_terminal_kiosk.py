"""The kiosk (valuation_terminal/kiosk.py) driven over real HTTP through the whole drop-off,
in Chinese and in English: the real cloud (uvicorn, private Mosquitto) with the seed's two
simulated lockers, a scale simulated on a pseudo-terminal (MT-SICS bytes), the simulated camera
on real photographs, the real SQLite queue. Also: the retake prompt for a blurred shot, the
engine's abstention, the cloud down at the confirmation, the idle timeout, CSRF, loopback only,
and the pseudo-locale (no text outside the catalog)."""

from __future__ import annotations

import html as htmlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import CloudUnderTest, LockerFactory
from PIL import Image
from tcp_gate import TcpGate
from terminal_station import BLURRED, SHARP, KioskDriver, TerminalStation, start_terminal
from test_pages import ALLOWED_BARE, TextNodes

from linli.i18n import t
from station.broker import free_port
from valuation_terminal.core.explain import explain
from valuation_terminal.core.rules import Demand, Inputs, load_policy, value

WANG = ("13800000001", "246810")  # zh-CN account
LI = ("13800000002", "135790")


class Clock:
    """Wall time in ms: real time plus a shift the test moves."""

    def __init__(self) -> None:
        self.shift_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.shift_ms


@pytest.fixture
def lockers(cloud: CloudUnderTest, simulated_locker: LockerFactory) -> dict[str, Any]:
    """The seed's two lockers, running, with their configuration applied."""
    started = {
        device_id: simulated_locker(
            cloud.identity(device_id),
            cloud.broker,
            items=cloud.seed.items_in_lockers.get(device_id, set()),
        )
        for device_id in ("locker-a", "locker-b")
    }
    deadline = time.monotonic() + 20
    while True:
        rows = cloud.store.read(
            "SELECT id FROM devices WHERE role = 'locker' AND cfg_applied_version >= cfg_version"
        )
        if len(rows) == 2:
            return started
        assert time.monotonic() < deadline, "the lockers did not apply their configuration"
        time.sleep(0.1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def terminal(cloud: CloudUnderTest, tmp_path: Path, clock: Clock) -> Iterator[TerminalStation]:
    station = start_terminal(
        tmp_path / "terminal", cloud.url, cloud.seed.terminal_token, now_ms=clock
    )
    yield station
    station.stop()


@pytest.fixture
def kiosk(terminal: TerminalStation) -> Iterator[KioskDriver]:
    driver = KioskDriver(terminal.kiosk)
    yield driver
    driver.close()


def text(page: str) -> str:
    """The page's text as a person reads it (tags dropped, entities decoded)."""
    inline = re.sub(r"</?span[^>]*>", "", page)  # values sit inside the text around them
    return htmlib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inline)))


def _(key: str, language: str, **values: object) -> str:
    return re.sub(r"\s+", " ", t(key, language, **values))


def sign_in(kiosk: KioskDriver, login: tuple[str, str], language: str | None = None) -> None:
    assert kiosk.screen == "signin"
    if language is not None:
        kiosk.post("language", language=language)
    kiosk.post("signin", phone=login[0], pin=login[1])
    assert kiosk.screen == "size", text(kiosk.html)


def put_in(cloud: CloudUnderTest, locker: Any, device_id: str, compartment: str) -> None:
    """The resident opens the unlatched door, puts the item in and, once the locker has
    noticed it (its item sensor is debounced), closes the door."""
    assert locker.sim.open_door(compartment)
    assert locker.sim.put_item(compartment)
    deadline = time.monotonic() + 10
    while True:
        row = cloud.store.read_one(
            "SELECT occupancy FROM compartments WHERE device_id = ? AND name = ?",
            (device_id, compartment),
        )
        if row is not None and row["occupancy"] == "present":
            break
        assert time.monotonic() < deadline, "the locker did not report the item"
        time.sleep(0.05)
    locker.sim.close_door(compartment)


def to_proposal(
    kiosk: KioskDriver,
    terminal: TerminalStation,
    *,
    grams: float = 412.3,
    category: str = "toys",
    price: str | None = "199",
) -> None:
    """From the size screen to the proposal: weigh, three photos, the declarations."""
    kiosk.post("size", size="M")
    assert kiosk.screen == "weigh"
    terminal.scale_sim.place(grams)
    kiosk.post("weigh")
    assert kiosk.screen == "photos", text(kiosk.html)
    for _n in range(3):
        kiosk.post("photo")
    assert 'data-testid="photo-count"' in kiosk.html
    kiosk.post("photos_done")
    assert kiosk.screen == "category"
    kiosk.post("category", category=category)
    assert kiosk.screen == "describe"
    kiosk.post("describe", title="LEGO 积木")
    kiosk.post("condition", condition="9成新")
    assert kiosk.screen == "age"
    kiosk.post("age", years="1", months="6")
    assert kiosk.screen == "price"
    if price is None:
        kiosk.post("price_skip")
    else:
        kiosk.post("price", price=price)
    assert kiosk.screen == "proposal", text(kiosk.html)


# --- the whole drop-off -----------------------------------------------------------------------


@pytest.mark.parametrize(("language", "login"), [("zh-CN", WANG), ("en", LI)])
def test_the_whole_drop_off_in_each_language(
    cloud: CloudUnderTest,
    lockers: dict[str, Any],
    terminal: TerminalStation,
    kiosk: KioskDriver,
    language: str,
    login: tuple[str, str],
) -> None:
    assert '<html lang="zh-CN">' in kiosk.html  # the default before anyone chooses
    sign_in(kiosk, login, None if language == "zh-CN" else language)
    assert f'<html lang="{language}">' in kiosk.html
    assert _("terminal.size.title", language) in text(kiosk.html)

    kiosk.post("size", size="M")
    terminal.scale_sim.place(412.3)
    kiosk.post("weigh")
    assert _("terminal.weight", language, grams="412.3") in text(kiosk.html)

    # a blurred shot: the retake prompt, nothing kept
    terminal.camera.queue(BLURRED)
    kiosk.post("photo")
    problem = _("terminal.photos.problem.blurred", language)
    assert _("terminal.photos.retake", language, problem=problem) in text(kiosk.html)
    assert terminal.kiosk.session.photos == ()
    for _n in range(3):
        kiosk.post("photo")
    assert _("terminal.photos.count", language, count=3, wanted=3) in text(kiosk.html)
    shas = re.findall(r'src="/photo/([0-9a-f]{64})\.jpg"', kiosk.html)
    assert len(shas) == 3
    thumb = kiosk.http.get(f"/photo/{shas[0]}.jpg")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert not Image.open(io.BytesIO(thumb.content)).getexif()  # stripped: no camera EXIF

    kiosk.post("photos_done")
    assert _("terminal.category.title", language) in text(kiosk.html)
    assert ("玩具" if language == "zh-CN" else "Toys") in text(kiosk.html)
    kiosk.post("category", category="toys")
    kiosk.post("describe", title="LEGO 积木")
    kiosk.post("condition", condition="9成新")
    kiosk.post("age", years="1", months="6")
    kiosk.post("price", price="199")
    page = text(kiosk.html)

    context = terminal.client.fetch_context()
    snapshot = context["demand"]
    inputs = Inputs(
        "toys",
        "9成新",
        18,
        412,
        3,
        Demand(float(snapshot["factors"]["toys"]), snapshot["snapshot_id"]),
        199.0,
    )
    policy = load_policy(context["policy_text"])
    expected = value(policy, inputs)
    assert expected.points is not None and expected.abstained is None
    assert _("unit.points", language, n=expected.points) in page
    for factor, reason in zip(expected.factors, explain(expected, inputs, policy), strict=True):
        assert _(f"valuation.factor.{factor.name}", language) in page
        assert _(reason.key, language, **reason.values) in page  # in the page's language
        assert factor.reason not in page  # not the engine's English
    assert [f.name for f in expected.factors] == re.findall(
        r'data-testid="factor-([a-z_]+)"', kiosk.html
    )

    kiosk.post("confirm")
    assert kiosk.screen == "dropoff", text(kiosk.html)
    row = terminal.queue.all()[0]
    assert row.state == "done" and row.answer is not None
    grant = row.answer["grant"]
    assert _("terminal.door.open", language, door=grant["label"]) in text(kiosk.html)
    code = re.search(
        r'data-testid="code"><span class="data" data-testid="code-digits">(\d{8})<', kiosk.html
    )
    assert code is not None

    # the resident opens the unlatched door, puts the item in, closes it
    put_in(cloud, lockers[grant["device_id"]], grant["device_id"], grant["compartment"])
    kiosk.wait_for("thanks")
    assert _("terminal.thanks.title", language) in text(kiosk.html)
    item = cloud.store.read_one(
        "SELECT i.status, i.title, v.points FROM valuations v JOIN items i ON i.id = v.item_id"
        " WHERE v.proposal_key = ?",
        (row.proposal_id,),
    )
    assert item is not None and tuple(item) == ("pending_approval", "LEGO 积木", expected.points)
    kiosk.post("cancel")  # "finish"
    assert kiosk.screen == "signin" and terminal.kiosk.session.resident is None


def test_an_abstention_is_said_plainly_and_can_still_be_given(
    cloud: CloudUnderTest, lockers: dict[str, Any], terminal: TerminalStation, kiosk: KioskDriver
) -> None:
    sign_in(kiosk, LI, "en")
    to_proposal(kiosk, terminal, grams=15_000.0, category="toys", price=None)  # toys ≤ 10 kg
    page = text(kiosk.html)
    reason = _("valuation.abstained.weight_implausible", "en")
    assert _("terminal.proposal.abstained", "en", reason=reason) in page
    why = _("valuation.reason.abstained.weight_implausible", "en", weight=15000, lo=20, hi=10000)
    assert why in page
    assert _("terminal.proposal.by_hand", "en") in page
    assert 'data-testid="points"' not in kiosk.html
    assert _("terminal.proposal.confirm_by_hand", "en") in page
    kiosk.post("confirm")
    assert kiosk.screen == "dropoff"
    row = terminal.queue.all()[0]
    stored = cloud.store.read_one(
        "SELECT points, abstained FROM valuations WHERE proposal_key = ?", (row.proposal_id,)
    )
    assert stored is not None and tuple(stored) == (None, "weight_implausible")


def test_no_door_free_is_said_before_the_item_goes_on_the_scale(
    cloud: CloudUnderTest, terminal: TerminalStation, kiosk: KioskDriver
) -> None:
    with cloud.store.write() as db:  # every compartment of the community needs attention
        db.execute("UPDATE compartments SET needs_attention = 1")
    sign_in(kiosk, WANG)
    kiosk.post("size", size="L")
    assert kiosk.screen == "no_space"
    assert _("terminal.space.none", "zh-CN") in text(kiosk.html)
    kiosk.post("back")
    assert kiosk.screen == "size"


def test_cloud_down_at_the_confirmation_queues_and_submits_when_it_returns(
    cloud: CloudUnderTest, tmp_path: Path
) -> None:
    port = urlsplit(cloud.url).port
    assert port is not None
    gate = TcpGate("127.0.0.1", port).start()
    terminal = start_terminal(tmp_path / "t", gate.url, cloud.seed.terminal_token)
    kiosk = KioskDriver(terminal.kiosk)
    try:
        sign_in(kiosk, WANG)
        to_proposal(kiosk, terminal)
        notifications_before = _notifications(cloud)
        gate.close()
        kiosk.post("confirm")
        assert kiosk.screen == "submitted"
        assert _("terminal.submitted.queued", "zh-CN") in text(kiosk.html)
        row = terminal.queue.all()[0]
        assert row.state == "queued" and not _valuation(cloud, row.proposal_id)
        gate.open()
        deadline = time.monotonic() + 15
        while terminal.queue.get(row.proposal_id).state != "done":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the queue did not submit it"
            time.sleep(0.1)
        assert _valuation(cloud, row.proposal_id) == 1
        # sent with open_now=false: the cloud sends the resident the code by message
        deadline = time.monotonic() + 10
        while _notifications(cloud) == notifications_before:
            assert time.monotonic() < deadline, "no message with the code"
            time.sleep(0.1)
    finally:
        kiosk.close()
        terminal.stop()
        gate.close()


def test_an_answer_lost_at_the_confirmation_is_asked_for_again_while_the_resident_waits(
    cloud: CloudUnderTest, lockers: dict[str, Any], tmp_path: Path
) -> None:
    port = urlsplit(cloud.url).port
    assert port is not None
    gate = TcpGate("127.0.0.1", port).start()
    terminal = start_terminal(tmp_path / "t", gate.url, cloud.seed.terminal_token)
    kiosk = KioskDriver(terminal.kiosk)
    try:
        sign_in(kiosk, WANG)
        to_proposal(kiosk, terminal)
        gate.drop_at = {gate.connections + 4}  # after the three photos: the proposal's answer
        kiosk.post("confirm")
        assert kiosk.screen == "dropoff", text(kiosk.html)
        row = terminal.queue.all()[0]
        assert row.state == "done" and _valuation(cloud, row.proposal_id) == 1
        assert re.search(
            r'data-testid="code"><span class="data" data-testid="code-digits">\d{8}<', kiosk.html
        )
    finally:
        kiosk.close()
        terminal.stop()
        gate.close()


def _valuation(cloud: CloudUnderTest, proposal_id: str) -> int:
    row = cloud.store.read_one(
        "SELECT COUNT(*) AS n FROM valuations WHERE proposal_key = ?", (proposal_id,)
    )
    return int(row["n"]) if row else 0


def _notifications(cloud: CloudUnderTest) -> int:
    row = cloud.store.read_one("SELECT COUNT(*) AS n FROM notifications WHERE person_id = 'per_1'")
    return int(row["n"]) if row else 0


# --- the session -----------------------------------------------------------------------------------


def test_back_and_cancel_on_every_screen_before_the_confirmation(
    terminal: TerminalStation, kiosk: KioskDriver
) -> None:
    sign_in(kiosk, WANG)
    to_proposal(kiosk, terminal)
    visited = []
    while kiosk.screen != "size":
        assert 'data-testid="back"' in kiosk.html and 'data-testid="cancel"' in kiosk.html
        visited.append(kiosk.screen)
        kiosk.post("back")
    assert visited == [
        "proposal",
        "price",
        "age",
        "condition",
        "describe",
        "category",
        "photos",
        "weigh",
    ]
    kiosk.post("cancel")
    assert kiosk.screen == "signin" and terminal.kiosk.session.resident is None


def test_an_idle_session_returns_to_the_start_and_forgets_the_resident(
    terminal: TerminalStation, kiosk: KioskDriver, clock: Clock
) -> None:
    sign_in(kiosk, WANG)
    kiosk.post("size", size="M")
    old_token = kiosk.csrf
    assert kiosk.http.get("/").headers["refresh"] == "121; url=/"
    clock.shift_ms += 119_000
    kiosk.page()
    assert kiosk.screen == "weigh"
    clock.shift_ms += 2_000
    kiosk.page()
    assert kiosk.screen == "signin" and terminal.kiosk.session.resident is None
    assert "王阿姨" not in kiosk.html
    kiosk.post("weigh", csrf=old_token)  # a form of the forgotten session
    assert kiosk.status == 403


def _timing(kiosk: KioskDriver) -> tuple[str, str | None, str | None]:
    """(the page's Refresh header, its idle warning's reveal class, the seconds it says)."""
    response = kiosk.http.get("/")
    kiosk.status, kiosk.html = response.status_code, response.text
    reveal = re.search(r'class="idle (idle-in-\d+)', kiosk.html)
    seconds = re.search(
        r'data-testid="idle-warning">.*?<span class="data">(\d+)</span>', kiosk.html, re.S
    )
    return (
        response.headers["refresh"],
        reveal.group(1) if reveal else None,
        seconds.group(1) if seconds else None,
    )


def test_the_idle_warning_shows_30_seconds_before_and_more_time_keeps_the_session(
    terminal: TerminalStation, kiosk: KioskDriver, clock: Clock
) -> None:
    # an untouched start screen: reloaded every 2 minutes (to clear what was typed), never faster
    assert _timing(kiosk) == ("121; url=/", "idle-in-90", "30")
    clock.shift_ms += 600_000
    assert _timing(kiosk) == ("121; url=/", "idle-in-90", "30")
    assert "<meta http-equiv" not in kiosk.html  # axe's meta-refresh rule: see kiosk.py
    assert 'class="idle idle-in-90 quiet"' in kiosk.html  # shown only while someone types
    sign_in(kiosk, WANG)
    kiosk.post("size", size="M")
    assert _timing(kiosk) == ("121; url=/", "idle-in-90", "30")
    assert "idle-in-90 quiet" not in kiosk.html
    clock.shift_ms += 93_000  # 27 s left: the warning at once, the refresh just after the timeout
    assert _timing(kiosk) == ("28; url=/", "idle-in-0", "27")
    assert _("terminal.idle.warning", "zh-CN", seconds=27) in text(kiosk.html)
    kiosk.post("still_here")  # "I need more time": a touch, nothing else changes
    assert kiosk.screen == "weigh" and terminal.kiosk.session.size == "M"
    assert terminal.kiosk.session.language == "zh-CN"
    assert _timing(kiosk) == ("121; url=/", "idle-in-90", "30")
    clock.shift_ms += 121_000
    kiosk.page()
    assert kiosk.screen == "signin" and terminal.kiosk.session.resident is None


# --- the daemon ------------------------------------------------------------------------------------


def _daemon_env(cloud: CloudUnderTest, data_dir: Path, port: int) -> dict[str, str]:
    assert cloud.seed.terminal_identity is not None
    cloud.seed.terminal_identity.save(data_dir / "identity.json")
    secrets_dir = data_dir / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    token_file = secrets_dir / "terminal_token"
    token_file.write_text(cloud.seed.terminal_token)
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_")}
    return {
        **env,
        "LINLI_DATA_DIR": str(data_dir),
        "LINLI_CLOUD_URL": cloud.url,
        "LINLI_BROKER_URL": cloud.broker.url,
        "LINLI_TERMINAL_SCALE": "sim",
        "LINLI_TERMINAL_CAMERA": "sim",
        "LINLI_TERMINAL_CAMERA_OPTIONS": f"sources={SHARP[0]}{os.pathsep}{SHARP[1]}",
        "LINLI_TERMINAL_KIOSK_PORT": str(port),
    }


def test_the_daemon_serves_the_kiosk_and_stops_cleanly_on_sigterm(
    cloud: CloudUnderTest, tmp_path: Path
) -> None:
    port = free_port()
    env = _daemon_env(cloud, tmp_path / "terminal", port)
    process = subprocess.Popen(
        [sys.executable, "-m", "linli.cli", "terminal"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the kiosk did not answer"
            time.sleep(0.1)
        kiosk = KioskDriver(f"http://127.0.0.1:{port}/")
        sign_in(kiosk, WANG)
        kiosk.post("size", size="M")
        kiosk.post("weigh")  # the simulated scale holds 500 g
        assert kiosk.screen == "photos" and _("terminal.weight", "zh-CN", grams="500") in text(
            kiosk.html
        )
        kiosk.post("photo")
        assert len(re.findall(r'src="/photo/', kiosk.html)) == 1
        kiosk.close()
        deadline = time.monotonic() + 10
        while _status(cloud, "terminal-1") != "online":
            assert time.monotonic() < deadline, "the terminal never came online"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        deadline = time.monotonic() + 10
        while _status(cloud, "terminal-1") != "offline":
            assert time.monotonic() < deadline, "the terminal did not say offline"
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
        _out, stderr = process.communicate(timeout=10)
    assert WANG[1] not in stderr and cloud.seed.terminal_token not in stderr
    assert "SIMULATED" in stderr  # simulation is said out loud


def _status(cloud: CloudUnderTest, device_id: str) -> str | None:
    row = cloud.store.read_one("SELECT status FROM devices WHERE id = ?", (device_id,))
    return None if row is None else str(row["status"])


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("LINLI_TERMINAL_SCALE", "choose the scale explicitly"),
        ("LINLI_TERMINAL_CAMERA", "choose the camera explicitly"),
        ("LINLI_CLOUD_URL", "give the cloud's URL"),
    ],
)
def test_the_daemon_refuses_to_guess(
    cloud: CloudUnderTest, tmp_path: Path, drop: str, message: str
) -> None:
    env = _daemon_env(cloud, tmp_path / "terminal", free_port())
    del env[drop]
    result = subprocess.run(
        [sys.executable, "-m", "linli.cli", "terminal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and message in result.stderr


# --- security ----------------------------------------------------------------------------------


def test_a_post_without_the_session_token_is_refused_and_changes_nothing(
    terminal: TerminalStation, kiosk: KioskDriver
) -> None:
    before = terminal.kiosk.session
    kiosk.post("signin", csrf="", phone=WANG[0], pin=WANG[1])
    assert kiosk.status == 403 and terminal.kiosk.session == before
    kiosk.post("signin", csrf="x" * 32, phone=WANG[0], pin=WANG[1])
    assert kiosk.status == 403 and terminal.kiosk.session == before
    token = CSRF_OF(terminal)
    response = kiosk.http.post(
        "/act",
        data={"action": "language", "language": "en", "csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert response.status_code == 403 and terminal.kiosk.session == before
    response = httpx.post(
        f"http://127.0.0.1:{terminal.kiosk.port}/act",
        data={"action": "language", "language": "en", "csrf": token},
        headers={"Host": "evil.example"},  # DNS rebinding
    )
    assert response.status_code == 421 and terminal.kiosk.session == before


def CSRF_OF(terminal: TerminalStation) -> str:
    return terminal.kiosk.session.token


def test_security_headers_and_no_script(terminal: TerminalStation, kiosk: KioskDriver) -> None:
    response = kiosk.http.get("/")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # so no script at all
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script" not in response.text
    assert kiosk.http.get("/nothing").status_code == 404


def test_the_kiosk_listens_on_loopback_only(terminal: TerminalStation) -> None:
    assert terminal.kiosk.url.startswith("http://127.0.0.1:")
    server = terminal.kiosk._server
    assert server is not None and server.server_address[0] == "127.0.0.1"
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this finds the outward address
        outward = probe.getsockname()[0]
    except OSError:
        outward = ""
    finally:
        probe.close()
    if outward and not outward.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((outward, terminal.kiosk.port), timeout=2).close()


def test_the_pseudo_locale_finds_no_hard_coded_text(
    terminal: TerminalStation, kiosk: KioskDriver
) -> None:
    kiosk.post("language", language="x-pseudo")
    pages = {"signin": kiosk.html}
    kiosk.post("signin", phone=WANG[0], pin=WANG[1])
    pages["size"] = kiosk.html
    kiosk.post("size", size="M")
    pages["weigh"] = kiosk.html
    terminal.scale_sim.place(300.0)
    kiosk.post("weigh")
    terminal.camera.queue(BLURRED)
    kiosk.post("photo")
    kiosk.post("photo")
    pages["photos"] = kiosk.html
    for action, fields in (
        ("photos_done", {}),
        ("category", {"category": "toys"}),
        ("describe", {"title": ""}),
        ("condition", {"condition": "8成新"}),
        ("age", {"years": "2", "months": "0"}),
        ("price", {"price": "50"}),
    ):
        pages[kiosk.screen] = kiosk.html
        kiosk.post(action, **fields)
    pages["proposal"] = kiosk.html
    assert set(pages) == {
        "signin",
        "size",
        "weigh",
        "photos",
        "category",
        "describe",
        "condition",
        "age",
        "price",
        "proposal",
    }
    for screen, page in pages.items():
        parser = TextNodes()
        parser.feed(page)
        bare = []
        for line in parser.lines():
            rest = re.sub(r"⟦[^⟦⟧]*⟧", "", line)
            for word in ALLOWED_BARE:
                rest = rest.replace(word, "")
            if not re.fullmatch(r"[\s§·+\-0-9,:]*", rest):
                bare.append(line)
        assert not bare, f"hard-coded text on {screen}: {bare}"
