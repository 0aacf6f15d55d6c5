"""Secrets never reach a log line, a URL or an MQTT payload (system brief, "Privacy").

One seeded cloud on a private Mosquitto, the real controller daemon on simulated hardware, and
everything the station says recorded while residents and staff use it:

- every log record of the process at DEBUG (the root logger, and uvicorn's own loggers with the
  access log switched on, so every request line and its URL is a log line too);
- every URL the test's HTTP client asks for, and every answer it gets;
- every MQTT message on ``linli/#``, as raw bytes and as the strings of its decoded JSON.

Driven: failed sign-ins (a neighbour's PIN, a wrong password, a wrong and a missing authenticator
code) and successful ones of residents and staff; ``/me``; ``/me/pickups`` (the owner is shown
her code); a remote "open now"; a pickup with the code at the locker's keypad, settled; a
drop-off code and a maintenance code; a resident onboarded by a social worker, her PIN reset, her phone changed, her own PIN changed.

Then none of the secrets (the demo logins' phones, PINs, passwords and TOTP secrets, the TOTP
codes used, the pickup codes, and the phones and PINs set along the way) may appear in any log
line, URL or MQTT payload; answers may show a code only to whom it belongs, where it is meant to be shown (``GET
/me/pickups`` and ``/me/grants`` to the resident, the drop-off code to its donor, the maintenance
code to the maintainer), and never echo a PIN, password, TOTP code or full phone number. Failures name the
secret by what it is, never by its value.

The session-wide watch of every other test's logs is :mod:`canary_plugin`; the last test here
proves that plugin fails a session whose logs leak.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker_fixtures import CaptureFactory
from canary_plugin import canaries, pattern_of, record_texts
from conftest import CloudUnderTest, LockerFactory
from test_offline_grants import Code, enter, open_swap_and_close, start_locker, wait_settled

from cloud_api.core.totp import step_of, totp_at
from cloud_api.items.service import reserve
from cloud_api.seed import LOGINS, DemoLogin
from station.scenarios import wait_for

RESIDENT_1, RESIDENT_2, SOCIAL_WORKER, MAINTAINER, _ = LOGINS
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


# --- what the station says ------------------------------------------------------------------------


class RecordCapture(logging.Handler):
    """Keeps every record's texts (message, arguments, exception) with its logger's name."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend((record.name, text) for text in record_texts(record))


@pytest.fixture
def log_capture(cloud: CloudUnderTest) -> Iterator[RecordCapture]:
    """Every record at DEBUG, uvicorn's access log included, for the duration of one test.

    After the cloud started: uvicorn configures its loggers (and drops their handlers) when the
    server is built."""
    capture = RecordCapture()
    root = logging.getLogger()
    saved = (root.level, {name: logging.getLogger(name).level for name in UVICORN_LOGGERS})
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not logger.propagate:
            logger.addHandler(capture)
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).removeHandler(capture)
            logging.getLogger(name).setLevel(level)


@dataclass
class Traffic:
    """What the test's HTTP client asked for and got."""

    urls: list[str] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)  # ("GET /path", body)

    def on_request(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))

    def on_response(self, response: httpx.Response) -> None:
        response.read()
        self.answers.append(
            (f"{response.request.method} {response.request.url.path}", response.text)
        )


def json_strings(payload: bytes) -> str:
    """Every string and number of a JSON payload, decoded (escapes undone), one per line."""
    try:
        value = json.loads(payload)
    except ValueError:
        return ""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                found.append(str(key))
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif node is not None:
            found.append(str(node))
            if isinstance(node, str) and node.lstrip().startswith(("{", "[")):
                found.append(json_strings(node.encode()))  # JSON inside a string (signed bodies)

    walk(value)
    return "\n".join(found)


class Secrets:
    """The secrets of a run: value → what it is (the only thing a failure shows)."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = dict(canaries())

    def add(self, value: str, label: str) -> str:
        self.labels.setdefault(value, label)
        return value

    def find(self, text: str, *, allowed: frozenset[str] = frozenset()) -> set[str]:
        pattern = pattern_of(v for v in self.labels if v not in allowed)
        return {self.labels[m.group(0)] for m in pattern.finditer(text)}

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``***`` (to name where a leak was)."""
        return pattern_of(self.labels).sub("***", text)


# --- driving the station ---------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def brief(response: httpx.Response) -> str:
    """An answer as a failure may show it: status and error code (a body may hold a secret)."""
    code = response.json().get("code") if response.status_code >= 400 else None
    return f"{response.request.method} {response.request.url.path}: {response.status_code} {code}"


def sign_in(http: httpx.Client, body: dict[str, str], expect: int = 200) -> str:
    response = http.post("/api/v1/session", json=body)
    assert response.status_code == expect, brief(response)
    return str(response.json().get("token", ""))


def staff_sign_in(http: httpx.Client, login: DemoLogin, secrets: Secrets) -> str:
    body = login.body(now_ms())
    secrets.add(body["totp"], f"the TOTP code {login.login} signed in with")
    return sign_in(http, body)


def a_wrong_totp(login: DemoLogin) -> str:
    """An authenticator code of another time (5 minutes ahead): refused."""
    assert login.totp_secret is not None
    return totp_at(login.totp_secret, step_of(now_ms()) + 10)


# --- the test ---------------------------------------------------------------------------------------


def test_no_secret_reaches_a_log_line_a_url_or_an_mqtt_payload(
    cloud: CloudUnderTest,
    simulated_locker: LockerFactory,
    mqtt_capture: CaptureFactory,
    log_capture: RecordCapture,
) -> None:
    secrets = Secrets()
    traffic = Traffic()
    mqtt = mqtt_capture(cloud.broker, "linli/#")
    # A second reservation of Auntie Wang's (the books in A3), to open from her phone page; the
    # seeded one (the kettle in A2) she collects with its code at the keypad.
    with cloud.store.write() as db:
        books_grant = reserve(db, cloud.keys, "itm_books", "per_1", now_ms())
    locker = start_locker(cloud, simulated_locker)
    hooks: dict[str, list[Callable[..., Any]]] = {
        "request": [traffic.on_request],
        "response": [traffic.on_response],
    }
    with httpx.Client(base_url=cloud.url, timeout=10, event_hooks=hooks) as http:
        # Failed sign-ins, each with real secrets in the wrong place.
        sign_in(http, {"login": RESIDENT_1.login, "secret": RESIDENT_2.secret}, 401)
        sign_in(http, {"login": SOCIAL_WORKER.login, "secret": "not-the-password-1"}, 401)
        wrong = secrets.add(a_wrong_totp(SOCIAL_WORKER), "a wrong TOTP code")
        sign_in(
            http,
            {"login": SOCIAL_WORKER.login, "secret": SOCIAL_WORKER.secret, "totp": wrong},
            401,
        )
        sign_in(http, {"login": MAINTAINER.login, "secret": MAINTAINER.secret}, 401)
        # Successful ones.
        wang = sign_in(http, RESIDENT_1.body(now_ms()))
        li = sign_in(http, RESIDENT_2.body(now_ms()))
        zhang = staff_sign_in(http, SOCIAL_WORKER, secrets)
        liu = staff_sign_in(http, MAINTAINER, secrets)
        for token in (wang, li, zhang, liu):
            assert http.get("/api/v1/me", headers=auth(token)).status_code == 200

        # The owner is shown her codes; her neighbour sees none.
        pickups = http.get("/api/v1/me/pickups", headers=auth(wang))
        assert pickups.status_code == 200, brief(pickups)
        codes = {
            p["grant_id"]: Code(secrets.add(p["code"], f"the pickup code of {p['item']}"))
            for p in pickups.json()
        }
        assert http.get("/api/v1/me/pickups", headers=auth(li)).json() == []
        kettle_grant = next(g for g in codes if g != books_grant)
        assert books_grant in codes and len(codes) == 2

        # She opens the books' compartment from her phone page.
        opened = http.post(f"/api/v1/me/pickups/{books_grant}/open", headers=auth(wang))
        assert opened.status_code == 202, brief(opened)
        command = opened.json()["command_id"]

        def command_done() -> bool:
            answer = http.get(f"/api/v1/commands/{command}", headers=auth(wang)).json()
            return answer["result_ok"] is not None

        wait_for("the locker to answer the open command", command_done)

        # Auntie Wang types her code at the keypad and takes the kettle.
        assert enter(locker, codes[kettle_grant]) == "code.accepted"
        open_swap_and_close(locker, cloud.seed.reserved_compartment)
        wait_settled(cloud, locker, cloud.seed.reserved_item)

        # Codes shown to whom they belong: Auntie Wang's again (all her live codes), a drop-off
        # code for an item she proposes, a maintenance code for Liu.
        shown_in: dict[str, set[str]] = {}
        grants = http.get("/api/v1/me/grants", headers=auth(wang))
        assert grants.status_code == 200, brief(grants)
        shown_in["GET /api/v1/me/grants"] = {g["code"] for g in grants.json()}
        proposed = http.post(
            "/api/v1/items",
            json={"title": "Canary lamp", "category": "appliance"},
            headers=auth(wang),
        )
        assert proposed.status_code == 201, brief(proposed)
        dropoff_path = f"/api/v1/items/{proposed.json()['item_id']}/dropoff"
        dropoff = http.post(dropoff_path, json={}, headers=auth(wang))
        assert dropoff.status_code == 201, brief(dropoff)
        shown_in[f"POST {dropoff_path}"] = {secrets.add(dropoff.json()["code"], "a drop-off code")}
        maintenance_path = "/api/v1/devices/locker-a/compartments/A1/maintenance"
        maintenance = http.post(maintenance_path, json={"reason": "latch check"}, headers=auth(liu))
        assert maintenance.status_code == 201, brief(maintenance)
        shown_in[f"POST {maintenance_path}"] = {
            secrets.add(maintenance.json()["code"], "a maintenance code")
        }

        # A social worker onboards a resident, resets her PIN and changes her phone; she
        # changes her PIN herself.
        phone = secrets.add("13912340001", "the onboarded resident's first phone")
        pin = secrets.add("720946", "the onboarded resident's first PIN")
        onboarded = http.post(
            "/api/v1/residents",
            json={"display_name": "Ms Canary", "phone": phone, "pin": pin, "reason": "moved in"},
            headers=auth(zhang),
        )
        assert onboarded.status_code == 201, brief(onboarded)
        person_id = onboarded.json()["id"]
        sign_in(http, {"login": phone, "secret": pin})
        reset_pin = secrets.add("580317", "the onboarded resident's reset PIN")
        reset = http.post(
            f"/api/v1/residents/{person_id}/pin",
            json={"pin": reset_pin, "reason": "forgot it"},
            headers=auth(zhang),
        )
        assert reset.status_code == 200, brief(reset)
        new_phone = secrets.add("13912340002", "the onboarded resident's new phone")
        changed = http.post(
            f"/api/v1/residents/{person_id}/phone",
            json={"phone": new_phone, "reason": "new number"},
            headers=auth(zhang),
        )
        assert changed.status_code == 200, brief(changed)
        canary = sign_in(http, {"login": new_phone, "secret": reset_pin})
        own_pin = secrets.add("394061", "the onboarded resident's own new PIN")
        changed_pin = http.post(
            "/api/v1/me/pin", json={"old_pin": reset_pin, "new_pin": own_pin}, headers=auth(canary)
        )
        assert changed_pin.status_code == 204, brief(changed_pin)
        sign_in(http, {"login": new_phone, "secret": own_pin})
    mqtt.wait_quiet(0.3)

    # The capture saw the run (so finding nothing means something).
    access_lines = [text for name, text in log_capture.lines if name == "uvicorn.access"]
    assert any("/api/v1/me/pickups" in line for line in access_lines), "no access log captured"
    topics = {m.topic.rsplit("/", 2)[-1] for m in mqtt.messages()} | {
        m.topic.rsplit("/", 1)[-1] for m in mqtt.messages()
    }
    assert {"cmd", "res", "evt", "desired"} <= topics, f"MQTT capture saw only {sorted(topics)}"
    assert len(traffic.urls) >= 20

    leaks: list[str] = []  # where (secrets masked) and what, never the value
    for logger, text in log_capture.lines:
        leaks += [f"log record of {logger!r}: {label}" for label in secrets.find(text)]
    for url in traffic.urls:
        leaks += [f"URL {secrets.mask(url)}: {label}" for label in secrets.find(url)]
    for message in mqtt.messages():
        raw = message.payload.decode("utf-8", errors="replace")
        where = f"MQTT {secrets.mask(message.topic)}"
        for text in (message.topic, raw, json_strings(message.payload)):
            leaks += [f"{where}: {label}" for label in secrets.find(text)]
    shown_in["GET /api/v1/me/pickups"] = set(codes.values())
    for route, body in traffic.answers:
        allowed = frozenset(shown_in.get(route, ()))
        where = f"answer to {secrets.mask(route)}"
        leaks += [f"{where}: {label}" for label in secrets.find(body, allowed=allowed)]
    assert not leaks, "secrets seen:\n" + "\n".join(sorted(set(leaks)))


# --- the plugin that watches every other test -------------------------------------------------------

LEAKY_TEST = """
import logging

from cloud_api.seed import LOGINS


def test_clean():
    logging.getLogger("quiet").debug("signed in %s", "per_1")


def test_leaky():
    logging.getLogger("leaky.module").debug("sign-in of %s", LOGINS[0].login)
    try:
        raise ValueError(LOGINS[2].secret)
    except ValueError:
        logging.getLogger("leaky.errors").exception("failed")
"""


def run_inner_session(
    tmp_path: Path, source: str, workers: int = 0
) -> subprocess.CompletedProcess[str]:
    """A pytest session of its own, with the canary plugin, on one test file (with ``workers``
    pytest-xdist workers, as the suite runs, or none)."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source))
    tests_dir = Path(__file__).resolve().parent
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(tests_dir), str(tests_dir.parent)]),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    parallel = ["-p", "xdist.plugin", "-n", str(workers)] if workers else []
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "canary_plugin", "-p", "no:cacheprovider",
         *parallel, "--rootdir", str(tmp_path), "-q", str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-xdist-workers"])
def test_the_canary_plugin_fails_a_session_whose_logs_carry_a_secret(
    tmp_path: Path, workers: int
) -> None:
    # With workers, each worker sees its own records: the controller must gather their leaks.
    leaky = run_inner_session(tmp_path, LEAKY_TEST, workers)
    output = leaky.stdout + leaky.stderr
    assert leaky.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "2 passed" in output, output
    assert (
        "test_inner.py::test_leaky: logger 'leaky.module' (DEBUG) logged the phone number" in output
    )
    assert "logger 'leaky.errors' (ERROR) logged the password of demo login #3" in output
    assert "test_clean" not in output.split("secret canary")[-1]
    for login in LOGINS:
        assert login.secret not in output
        assert login.role != "resident" or login.login not in output
    clean = run_inner_session(tmp_path, LEAKY_TEST.split("def test_leaky")[0], workers)
    assert clean.returncode == pytest.ExitCode.OK, clean.stdout + clean.stderr


def test_canaries_are_every_phone_pin_password_and_totp_secret_of_the_seed() -> None:
    found = canaries()
    for login in LOGINS:
        assert login.secret in found
        if login.role == "resident":
            assert login.login in found
        else:
            assert login.login not in found  # a staff login name is not a secret
            assert login.totp_secret in found
    assert all(value not in label for value, label in found.items())
    pattern = pattern_of(["246810"])
    assert pattern.search("pin 246810.") and not pattern.search("t=1724681099")
