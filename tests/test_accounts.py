"""Accounts (issue #7): TOTP, sign-in by phone in any spelling, staff password + TOTP, the
persisted throttle per login and per address, sessions, and what a social worker does for
residents (onboarding, PIN reset, phone change, flags, status) with its history.

Pure tests first (TOTP vectors, phone and PIN rules); then the service on a seeded SQLite file
(the throttle, across a restart); then the real HTTP app on a private Mosquitto, one cloud for
the module (``accounts_cloud``). HTTP tests come from one address, so they stay well under the
per-address limit (20 failures in 15 minutes).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CloudUnderTest, require_system

from cloud_api.access import Access, declared_routes
from cloud_api.accounts.router import router as accounts_router
from cloud_api.accounts.service import (
    AccountService,
    Person,
    check_pin,
    hash_secret,
    mask_phone,
    normalize_phone,
    seal_totp_secret,
    unseal_totp_secret,
)
from cloud_api.core import totp
from cloud_api.errors import Invalid, NotAuthenticated, Throttled
from cloud_api.keys import CloudKeys, load_or_create_keys
from cloud_api.seed import LOGINS, DemoLogin, seed_demo
from cloud_api.store import Store
from linli.codes import guard_hash, phone_digits
from station.broker import MosquittoBroker, mosquitto_binary

WANG, LI, ZHANG, LIU, CHEN = LOGINS
NOW_MS = 1_800_000_000_000
MINUTE_MS = 60_000
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of b"12345678901234567890"
RIVER_TOTP = "JBSWY3DPEHPK3PXT"  # a test secret for another community's social worker


# --- TOTP (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unix_s", "code"),
    [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ],
)
def test_totp_matches_the_rfc_6238_sha1_vectors(unix_s: int, code: str) -> None:
    assert totp.totp_at(RFC_SECRET, totp.step_of(unix_s * 1000), digits=8) == code
    assert totp.verify(RFC_SECRET, code, unix_s * 1000, last_step=0, digits=8) == unix_s // 30


def test_totp_accepts_one_step_of_drift_and_never_the_same_step_twice() -> None:
    now = 1_800_000_000_000
    step = totp.step_of(now)
    for drift in (-1, 0, 1):
        code = totp.totp_at(RFC_SECRET, step + drift)
        assert totp.verify(RFC_SECRET, code, now, last_step=0) == step + drift
        assert totp.verify(RFC_SECRET, code, now, last_step=step + drift) is None
    assert totp.verify(RFC_SECRET, totp.totp_at(RFC_SECRET, step - 2), now, last_step=0) is None
    assert totp.verify(RFC_SECRET, totp.totp_at(RFC_SECRET, step + 2), now, last_step=0) is None
    for bad in ("", "12345", "1234567", "abcdef", "12 456", "１２３４５６"):
        assert totp.verify(RFC_SECRET, bad, now, last_step=0) is None


def test_totp_secrets_and_the_provisioning_uri() -> None:
    assert totp.decode_secret("gezd gnbv gy3t qojq gezd gnbv gy3t qojq") == b"12345678901234567890"
    with pytest.raises(totp.SecretError):
        totp.decode_secret("not base32!")
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "zhang@sunny garden")
    assert uri.startswith("otpauth://totp/Linli%3Azhang%40sunny%20garden?secret=JBSWY3DPEHPK3PXP")
    assert "&issuer=Linli&algorithm=SHA1&digits=6&period=30" in uri


# --- phone and PIN rules (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800000001", "13800000001"),
        ("+86 138-0000-0001", "13800000001"),
        ("+8613800000001", "13800000001"),
        ("86 138 0000 0001", "13800000001"),
        ("0086-13800000001", "13800000001"),
        ("199 1234 5678", "19912345678"),
        ("12800000001", None),  # no mobile starts 12
        ("1380000000", None),
        ("138000000011", None),
        ("+1 13800000001", None),
        ("１３８００００００01", None),  # full-width digits are not accepted
        ("", None),
    ],
)
def test_phone_numbers_are_normalized_to_the_11_digit_mobile(
    raw: str, expected: str | None
) -> None:
    assert normalize_phone(raw) == expected


def test_phones_are_shown_masked() -> None:
    assert mask_phone("13800000001") == "138****0001"


@pytest.mark.parametrize(
    "pin",
    [
        "12345",
        "1234567",
        "12a456",
        "１２３４５６",
        "111111",
        "123456",
        "987654",
        "456789",
        "000001",
    ],
)
def test_weak_or_malformed_pins_are_refused(pin: str) -> None:
    with pytest.raises(Invalid) as refused:
        check_pin(pin, "13800000001")  # its last 6 are 000001
    assert refused.value.field == "pin"


@pytest.mark.parametrize("pin", ["246810", "135790", "123457", "090909"])
def test_reasonable_pins_are_accepted(pin: str) -> None:
    check_pin(pin, "13800000001")


# --- the service on a seeded store ---------------------------------------------------------------


@pytest.fixture
def seeded(tmp_path: Path, cloud_keys: CloudKeys) -> Iterator[tuple[Store, CloudKeys]]:
    """A migrated, seeded store on a temporary file (no server)."""
    store = Store(tmp_path / "cloud.sqlite3")
    store.migrate()
    seed_demo(store, cloud_keys, NOW_MS)
    yield store, cloud_keys
    store.close()


def test_a_phone_number_never_lands_in_the_people_table(
    seeded: tuple[Store, CloudKeys],
) -> None:
    store, _ = seeded
    people = store.read("SELECT * FROM people")
    for login in (WANG, LI):
        assert not any(login.login in str(cell) for row in people for cell in row)
    profiles = {r["person_id"]: dict(r) for r in store.read("SELECT * FROM resident_profiles")}
    assert profiles["per_1"]["phone"] == WANG.login
    assert json.loads(profiles["per_1"]["flags"]) == ["elderly"]
    assert profiles["per_1"]["unit"] == "3栋 2单元 401"


def test_staff_totp_secrets_are_sealed_in_the_store(seeded: tuple[Store, CloudKeys]) -> None:
    store, keys = seeded
    row = store.read_one("SELECT totp_secret FROM people WHERE id = 'per_3'")
    assert row is not None and row[0].startswith("v1:")
    assert ZHANG.totp_secret is not None and ZHANG.totp_secret not in row[0]
    assert unseal_totp_secret(keys, "per_3", row[0]) == ZHANG.totp_secret
    assert unseal_totp_secret(keys, "per_4", row[0]) is None  # bound to the person
    other = load_or_create_keys(store.path.parent / "other-secrets")
    assert unseal_totp_secret(other, "per_3", row[0]) is None  # the file alone is not enough


def test_staff_need_the_password_and_a_fresh_totp_code(seeded: tuple[Store, CloudKeys]) -> None:
    store, keys = seeded
    accounts = AccountService(store, keys)
    assert ZHANG.totp_secret is not None
    with pytest.raises(NotAuthenticated) as missing:
        accounts.sign_in(ZHANG.login, ZHANG.secret, NOW_MS, address="10.0.0.1")
    assert missing.value.code == "totp_required"
    with pytest.raises(NotAuthenticated) as wrong_password:
        accounts.sign_in(ZHANG.login, "not-the-password", NOW_MS, address="10.0.0.1")
    assert wrong_password.value.code == "not_authenticated"
    code = totp.totp_at(ZHANG.totp_secret, totp.step_of(NOW_MS))
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(NotAuthenticated) as bad:
        accounts.sign_in(ZHANG.login, ZHANG.secret, NOW_MS, address="10.0.0.1", totp=wrong)
    assert bad.value.code == "totp_invalid"
    token, person = accounts.sign_in(
        ZHANG.login, ZHANG.secret, NOW_MS, address="10.0.0.1", totp=code
    )
    assert person.id == "per_3" and accounts.person_for(token, NOW_MS + 1).role == "social_worker"
    with pytest.raises(NotAuthenticated) as replayed:
        accounts.sign_in(ZHANG.login, ZHANG.secret, NOW_MS + 5_000, address="10.0.0.2", totp=code)
    assert replayed.value.code == "totp_invalid"
    # Sessions record when they began; signing out ends one.
    created = store.read_one("SELECT created_ms FROM sessions WHERE person_id = 'per_3'")
    assert created is not None and created[0] == NOW_MS
    accounts.sign_out(token)
    with pytest.raises(NotAuthenticated):
        accounts.person_for(token, NOW_MS + 2)
    # A resident's id is not a login, and a staff login is not a phone.
    with pytest.raises(NotAuthenticated):
        accounts.sign_in("per_1", WANG.secret, NOW_MS, address="10.0.0.3")


def _attempts(store: Store) -> dict[str, sqlite3.Row]:
    return {r["key"]: r for r in store.read("SELECT * FROM sign_in_attempts")}


def test_the_login_throttle_doubles_persists_and_is_not_keyed_by_the_phone(
    tmp_path: Path, seeded: tuple[Store, CloudKeys]
) -> None:
    store, keys = seeded
    accounts = AccountService(store, keys)
    now = NOW_MS
    for i in range(5):  # five free failures, each from another address
        with pytest.raises(NotAuthenticated):
            accounts.sign_in(WANG.login, "999999", now, address=f"10.0.1.{i}")
    with pytest.raises(Throttled) as blocked:
        accounts.sign_in("+86 138-0000-0001", WANG.secret, now + 1, address="10.0.2.1")
    assert "300 seconds" in str(blocked.value)  # 5 minutes, said in seconds
    assert WANG.secret not in str(blocked.value) and WANG.login not in str(blocked.value)

    # Nothing in the table names the phone or an address in clear.
    rows = _attempts(store)
    assert len(rows) == 6  # one login, five addresses
    for key in rows:
        kind, _, digest = key.partition(":")
        assert kind in ("login", "addr") and len(digest) == 64 and int(digest, 16) >= 0
        assert "13800000001" not in key and "10.0.1" not in key

    # A restart (a new store and service on the same file) keeps the block.
    store.close()
    store2 = Store(tmp_path / "cloud.sqlite3")
    try:
        restarted = AccountService(store2, keys)
        with pytest.raises(Throttled):
            restarted.sign_in(WANG.login, WANG.secret, now + MINUTE_MS, address="10.0.3.1")
        # After the block, the next failure blocks twice as long.
        now += 5 * MINUTE_MS + 1
        with pytest.raises(NotAuthenticated):
            restarted.sign_in(WANG.login, "999999", now, address="10.0.3.2")
        with pytest.raises(Throttled) as longer:
            restarted.sign_in(WANG.login, WANG.secret, now + 1, address="10.0.3.3")
        assert "600 seconds" in str(longer.value)
        # ... capped at an hour.
        for _ in range(4):
            now += 61 * MINUTE_MS
            with pytest.raises(NotAuthenticated):
                restarted.sign_in(WANG.login, "999999", now, address="10.0.3.4")
        login_key = next(k for k in _attempts(store2) if k.startswith("login:"))
        assert _attempts(store2)[login_key]["blocked_until_ms"] == now + 60 * MINUTE_MS
        # A neighbour is not locked out; the right PIN after the block clears the login's count.
        assert restarted.sign_in(LI.login, LI.secret, now, address="10.0.3.5")
        now += 60 * MINUTE_MS + 1
        restarted.sign_in(WANG.login, WANG.secret, now, address="10.0.3.6")
        assert login_key not in _attempts(store2)
    finally:
        store2.close()


def test_the_address_throttle_blocks_20_failures_in_15_minutes(
    seeded: tuple[Store, CloudKeys],
) -> None:
    store, keys = seeded
    accounts = AccountService(store, keys)
    address = "203.0.113.9"
    for i in range(20):  # 20 different unknown phones: no login reaches its own limit
        with pytest.raises(NotAuthenticated):
            accounts.sign_in(f"139000000{i:02d}", "999999", NOW_MS + i, address=address)
    with pytest.raises(Throttled) as blocked:
        accounts.sign_in(WANG.login, WANG.secret, NOW_MS + 100, address=address)
    assert "900 seconds" in str(blocked.value)
    # Another address is not blocked, and a restart does not lift the block.
    accounts.sign_in(WANG.login, WANG.secret, NOW_MS + 100, address="203.0.113.10")
    restarted = AccountService(store, keys)
    with pytest.raises(Throttled):
        restarted.sign_in(LI.login, LI.secret, NOW_MS + 14 * MINUTE_MS, address=address)
    # The address's failures are not cleared by a success elsewhere; its block ends on time.
    restarted.sign_in(LI.login, LI.secret, NOW_MS + 16 * MINUTE_MS, address=address)


def test_disabled_people_cannot_sign_in_and_lose_their_sessions(
    seeded: tuple[Store, CloudKeys],
) -> None:
    store, keys = seeded
    accounts = AccountService(store, keys)
    worker = Person("per_3", "sunny-garden", "social_worker", "Zhang", "zh-CN")
    token, _ = accounts.sign_in(LI.login, LI.secret, NOW_MS, address="10.0.0.1")
    accounts.set_status(worker, "per_2", "disabled", "moved away", now_ms=NOW_MS)
    with pytest.raises(NotAuthenticated):
        accounts.person_for(token, NOW_MS + 1)
    with pytest.raises(NotAuthenticated) as refused:
        accounts.sign_in(LI.login, LI.secret, NOW_MS + 2, address="10.0.0.1")
    assert refused.value.code == "account_disabled"
    accounts.set_status(worker, "per_2", "active", "came back", now_ms=NOW_MS + 3)
    assert accounts.sign_in(LI.login, LI.secret, NOW_MS + 4, address="10.0.0.1")


# --- HTTP ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def accounts_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudUnderTest]:
    """One seeded cloud for the module, with a second community and its social worker."""
    if mosquitto_binary() is None:
        require_system("mosquitto binary not installed (apt-get install mosquitto)")
    base = tmp_path_factory.mktemp("accounts-cloud")
    with MosquittoBroker(base / "mosquitto") as broker:
        running = CloudUnderTest(base / "cloud", broker.info)
        try:
            with running.store.write() as db:
                db.execute("INSERT INTO communities (id, name) VALUES ('river-side', 'River Side')")
                db.execute(
                    "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
                    " totp_secret, created_ms) VALUES ('per_river', 'river-side', 'social_worker',"
                    " 'River worker', 'river-sw', ?, ?, 0)",
                    (
                        hash_secret("river-social-worker"),
                        seal_totp_secret(running.keys, "per_river", RIVER_TOTP),
                    ),
                )
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def http(accounts_cloud: CloudUnderTest) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=accounts_cloud.url, timeout=10) as client:
        yield client


def now_ms() -> int:
    return int(time.time() * 1000)


def sign_in(http: httpx.Client, login: DemoLogin, **changes: str) -> str:
    response = http.post("/api/v1/session", json=login.body(now_ms()) | changes)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def zhang(http: httpx.Client) -> dict[str, str]:
    """The social worker's headers (one sign-in: a TOTP code is accepted once)."""
    return auth(sign_in(http, ZHANG))


def onboard(http: httpx.Client, headers: dict[str, str], **changes: Any) -> httpx.Response:
    body = {
        "display_name": "赵奶奶 (Granny Zhao)",
        "phone": "139 1234 5678",
        "pin": "314159",
        "household": "赵家",
        "unit": "7栋 1单元 101",
        "language": "zh-CN",
        "flags": ["elderly", "low_income"],
        "reason": "signed up at the community centre",
    } | changes
    return http.post("/api/v1/residents", json=body, headers=headers)


def secrets_in_changes(store: Store, *secrets: str) -> list[str]:
    rows = store.read("SELECT * FROM account_changes")
    return [s for s in secrets if any(s in str(cell) for row in rows for cell in row)]


def test_the_account_routes_declare_their_access() -> None:
    # The router itself: FastAPI 0.165 includes routers lazily, out of ``app.routes``' sight.
    declared = {(m, p): a for m, p, a in declared_routes(accounts_router)}  # type: ignore[arg-type]
    worker = Access(frozenset({"social_worker"}), "community")
    resident_self = Access(frozenset({"resident"}), "self")
    assert declared[("POST", "/api/v1/session")] == Access(frozenset(), "public")
    assert declared[("DELETE", "/api/v1/session")].scope == "self"
    assert declared[("PATCH", "/api/v1/me/language")] == resident_self
    assert declared[("POST", "/api/v1/me/pin")] == resident_self
    for method, path in [
        ("GET", "/api/v1/residents"),
        ("POST", "/api/v1/residents"),
        ("GET", "/api/v1/residents/{person_id}"),
        ("POST", "/api/v1/residents/{person_id}/pin"),
        ("POST", "/api/v1/residents/{person_id}/phone"),
        ("PUT", "/api/v1/residents/{person_id}/flags"),
        ("PUT", "/api/v1/residents/{person_id}/status"),
    ]:
        assert declared[(method, path)] == worker, path


@pytest.mark.parametrize(
    "spelling", ["13800000002", "+86 138-0000-0002", "86 138 0000 0002", " 138-0000-0002 "]
)
def test_a_resident_signs_in_with_the_phone_in_any_spelling(
    http: httpx.Client, spelling: str
) -> None:
    response = http.post("/api/v1/session", json={"login": spelling, "secret": LI.secret})
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "resident"
    me = http.get("/api/v1/me", headers=auth(response.json()["token"])).json()
    assert me["id"] == "per_2"


def test_staff_without_a_totp_code_are_asked_for_one_and_codes_work_once(
    http: httpx.Client,
) -> None:
    missing = http.post("/api/v1/session", json={"login": LIU.login, "secret": LIU.secret})
    assert missing.status_code == 401 and missing.json()["code"] == "totp_required"
    assert "token" not in missing.json()
    body = CHEN.body(now_ms())
    first = http.post("/api/v1/session", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["role"] == "social_worker"
    replayed = http.post("/api/v1/session", json=body)
    assert replayed.status_code == 401 and "token" not in replayed.json()
    not_digits = http.post("/api/v1/session", json=body | {"totp": "12ab56"})
    assert not_digits.status_code == 422


def test_sign_out_ends_the_session(http: httpx.Client) -> None:
    token = sign_in(http, LI)
    assert http.delete("/api/v1/session", headers=auth(token)).status_code == 204
    assert http.get("/api/v1/me", headers=auth(token)).status_code == 401
    assert http.delete("/api/v1/session").status_code == 401


def test_a_resident_sets_their_language_and_pin(
    http: httpx.Client, zhang: dict[str, str], accounts_cloud: CloudUnderTest
) -> None:
    created = onboard(http, zhang, display_name="Mr Qian", phone="13700000011", pin="271828")
    assert created.status_code == 201, created.text
    here = sign_in(http, DemoLogin("resident", "Mr Qian", "13700000011", "271828"))
    elsewhere = sign_in(http, DemoLogin("resident", "Mr Qian", "13700000011", "271828"))
    language = http.patch("/api/v1/me/language", json={"language": "en"}, headers=auth(here))
    assert language.status_code == 200
    assert http.get("/api/v1/me", headers=auth(here)).json()["language"] == "en"
    assert (
        http.patch("/api/v1/me/language", json={"language": "fr"}, headers=auth(here)).status_code
        == 422
    )
    assert (
        http.patch("/api/v1/me/language", json={"language": "en"}, headers=zhang).status_code == 403
    )

    wrong = http.post(
        "/api/v1/me/pin", json={"old_pin": "000000", "new_pin": "161803"}, headers=auth(here)
    )
    assert wrong.status_code == 403 and wrong.json()["field"] == "old_pin"
    weak = http.post(
        "/api/v1/me/pin", json={"old_pin": "271828", "new_pin": "123456"}, headers=auth(here)
    )
    assert weak.status_code == 422 and weak.json()["field"] == "new_pin"
    changed = http.post(
        "/api/v1/me/pin", json={"old_pin": "271828", "new_pin": "161803"}, headers=auth(here)
    )
    assert changed.status_code == 204, changed.text
    assert http.get("/api/v1/me", headers=auth(here)).status_code == 200  # this session stays
    assert http.get("/api/v1/me", headers=auth(elsewhere)).status_code == 401  # others end
    assert sign_in(http, DemoLogin("resident", "Mr Qian", "13700000011", "161803"))
    assert secrets_in_changes(accounts_cloud.store, "13700000011", "271828", "161803") == []


def test_onboarding_opens_an_account_the_resident_can_sign_in_to(
    http: httpx.Client, zhang: dict[str, str], accounts_cloud: CloudUnderTest
) -> None:
    created = onboard(http, zhang)
    assert created.status_code == 201, created.text
    profile = created.json()
    person_id = profile["id"]
    assert profile["phone_masked"] == "139****5678" and "13912345678" not in created.text
    assert profile["flags"] == ["elderly", "low_income"] and profile["status"] == "active"

    token = sign_in(http, DemoLogin("resident", "Zhao", "+86 139-1234-5678", "314159"))
    me = http.get("/api/v1/me", headers=auth(token)).json()
    assert me["id"] == person_id and me["role"] == "resident"
    assert (me["balance"], me["held"], me["available"]) == (0, 0, 0)

    again = onboard(http, zhang, display_name="Someone else")
    assert again.status_code == 409 and again.json()["field"] == "phone"

    detail = http.get(f"/api/v1/residents/{person_id}", headers=zhang).json()
    assert [c["kind"] for c in detail["changes"]] == ["onboarded"]
    assert detail["changes"][0]["actor_name"] == ZHANG.name
    assert detail["changes"][0]["reason"] == "signed up at the community centre"
    people = accounts_cloud.store.read("SELECT * FROM people")
    assert not any("13912345678" in str(cell) for row in people for cell in row)
    assert secrets_in_changes(accounts_cloud.store, "13912345678", "314159") == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pin": "123456"}, "pin"),
        ({"pin": "888888"}, "pin"),
        ({"pin": "12345"}, "pin"),
        ({"pin": "765431", "phone": "13598765431"}, "pin"),  # the phone's last six
        ({"phone": "12345678901"}, "phone"),
        ({"phone": "1391234567"}, "phone"),
        ({"reason": "   "}, "reason"),
        ({"display_name": "  "}, "display_name"),
    ],
)
def test_onboarding_refuses_invalid_values_with_the_field(
    http: httpx.Client,
    zhang: dict[str, str],
    accounts_cloud: CloudUnderTest,
    changes: dict[str, str],
    field: str,
) -> None:
    before = accounts_cloud.store.read("SELECT COUNT(*) FROM people")[0][0]
    response = onboard(http, zhang, **({"phone": "13612345678"} | changes))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert accounts_cloud.store.read("SELECT COUNT(*) FROM people")[0][0] == before


@pytest.mark.parametrize(
    "body",
    [
        {"flags": ["vip"]},
        {"language": "de"},
        {"extra": 1},
        {"reason": "x" * 201},
        {"phone": "1" * 40},
    ],
)
def test_onboarding_bodies_are_checked_at_the_boundary(
    http: httpx.Client, zhang: dict[str, str], body: dict[str, Any]
) -> None:
    response = onboard(http, zhang, **body)
    assert response.status_code == 422 and response.json()["field"]
    assert "1" * 40 not in response.text


def test_a_pin_reset_ends_sessions_and_records_who_and_why(
    http: httpx.Client, zhang: dict[str, str], accounts_cloud: CloudUnderTest
) -> None:
    created = onboard(http, zhang, display_name="Mrs Sun", phone="13700000022", pin="202020")
    person_id = created.json()["id"]
    token = sign_in(http, DemoLogin("resident", "Sun", "13700000022", "202020"))

    weak = http.post(
        f"/api/v1/residents/{person_id}/pin", json={"pin": "000022", "reason": "x"}, headers=zhang
    )
    assert weak.status_code == 422 and weak.json()["field"] == "pin"
    no_reason = http.post(
        f"/api/v1/residents/{person_id}/pin", json={"pin": "303030"}, headers=zhang
    )
    assert no_reason.status_code == 422
    reset = http.post(
        f"/api/v1/residents/{person_id}/pin",
        json={"pin": "303030", "reason": "forgot her PIN, came in person"},
        headers=zhang,
    )
    assert reset.status_code == 200, reset.text
    assert reset.json()["sessions_ended"] == 1
    assert http.get("/api/v1/me", headers=auth(token)).status_code == 401
    old = http.post("/api/v1/session", json={"login": "13700000022", "secret": "202020"})
    assert old.status_code == 401
    assert sign_in(http, DemoLogin("resident", "Sun", "13700000022", "303030"))

    change = accounts_cloud.store.read_one(
        "SELECT person_id, actor_id, reason, detail FROM account_changes"
        " WHERE person_id = ? AND kind = 'pin_reset'",
        (person_id,),
    )
    assert change is not None
    assert (change["person_id"], change["actor_id"]) == (person_id, "per_3")
    assert change["reason"] == "forgot her PIN, came in person"
    assert secrets_in_changes(accounts_cloud.store, "13700000022", "202020", "303030") == []


def test_a_phone_change_ends_sessions_and_re_guards_live_codes(
    http: httpx.Client, zhang: dict[str, str], accounts_cloud: CloudUnderTest
) -> None:
    store, keys = accounts_cloud.store, accounts_cloud.keys
    token = sign_in(http, WANG)
    pickup = http.get("/api/v1/me/pickups", headers=auth(token)).json()[0]
    version_before = store.read_one("SELECT cfg_version FROM devices WHERE id = 'locker-a'")[0]

    taken = http.post(
        "/api/v1/residents/per_1/phone",
        json={"phone": "13800000002", "reason": "typo"},
        headers=zhang,
    )
    assert taken.status_code == 409 and taken.json()["field"] == "phone"
    bad = http.post(
        "/api/v1/residents/per_1/phone", json={"phone": "5551234", "reason": "x"}, headers=zhang
    )
    assert bad.status_code == 422 and bad.json()["field"] == "phone"
    try:
        changed = http.post(
            "/api/v1/residents/per_1/phone",
            json={"phone": "+86 136 0000 9999", "reason": "new phone from her son"},
            headers=zhang,
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["phone_masked"] == "136****9999"
        assert http.get("/api/v1/me", headers=auth(token)).status_code == 401
        old = http.post("/api/v1/session", json={"login": WANG.login, "secret": WANG.secret})
        assert old.status_code == 401
        assert sign_in(http, DemoLogin("resident", "Wang", "13600009999", WANG.secret))

        # The locker holding her live code got a new configuration, guarded by the new digits.
        device = store.read_one("SELECT cfg_version, cfg_body FROM devices WHERE id = 'locker-a'")
        assert device is not None and device["cfg_version"] > version_before
        grant = next(
            g
            for g in json.loads(device["cfg_body"])["grants"]
            if g["grant_id"] == pickup["grant_id"]
        )
        expected = guard_hash(
            keys.device_code_key("locker-a"), pickup["code"], phone_digits("13600009999") or ""
        )
        assert grant["guard_hash"] == expected

        change = store.read_one(
            "SELECT actor_id, reason FROM account_changes"
            " WHERE person_id = 'per_1' AND kind = 'phone_changed'"
        )
        assert change is not None and tuple(change) == ("per_3", "new phone from her son")
        assert secrets_in_changes(store, "13600009999", WANG.login, WANG.secret) == []
        people = store.read("SELECT * FROM people")
        assert not any("13600009999" in str(cell) for row in people for cell in row)
    finally:  # the demo number back, for the tests after this one
        http.post(
            "/api/v1/residents/per_1/phone",
            json={"phone": WANG.login, "reason": "test restores the demo number"},
            headers=zhang,
        )


def test_flags_and_status_are_set_with_a_reason(http: httpx.Client, zhang: dict[str, str]) -> None:
    person_id = onboard(
        http, zhang, display_name="Mr Zhou", phone="13700000033", pin="404040"
    ).json()["id"]
    token = sign_in(http, DemoLogin("resident", "Zhou", "13700000033", "404040"))
    flags = http.put(
        f"/api/v1/residents/{person_id}/flags",
        json={"flags": ["disabled"], "reason": "uses a wheelchair"},
        headers=zhang,
    )
    assert flags.status_code == 200 and flags.json()["flags"] == ["disabled"]
    unknown = http.put(
        f"/api/v1/residents/{person_id}/flags",
        json={"flags": ["vip"], "reason": "x"},
        headers=zhang,
    )
    assert unknown.status_code == 422

    disabled = http.put(
        f"/api/v1/residents/{person_id}/status",
        json={"status": "disabled", "reason": "moved to his daughter's"},
        headers=zhang,
    )
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    assert http.get("/api/v1/me", headers=auth(token)).status_code == 401
    refused = http.post("/api/v1/session", json={"login": "13700000033", "secret": "404040"})
    assert refused.status_code == 401 and refused.json()["code"] == "account_disabled"
    enabled = http.put(
        f"/api/v1/residents/{person_id}/status",
        json={"status": "active", "reason": "back home"},
        headers=zhang,
    )
    assert enabled.status_code == 200
    assert sign_in(http, DemoLogin("resident", "Zhou", "13700000033", "404040"))

    history = http.get(f"/api/v1/residents/{person_id}", headers=zhang).json()["changes"]
    assert [c["kind"] for c in history] == ["status_set", "status_set", "flags_set", "onboarded"]
    assert [c["reason"] for c in history][:2] == ["back home", "moved to his daughter's"]
    assert all(c["actor_name"] == ZHANG.name for c in history)


def test_social_workers_search_their_residents(http: httpx.Client, zhang: dict[str, str]) -> None:
    by_digits = http.post("/api/v1/residents/search", json={"q": "0001"}, headers=zhang).json()
    assert [r["id"] for r in by_digits["items"]] == ["per_1"]
    assert by_digits["items"][0]["phone_masked"] == "138****0001"
    assert by_digits["items"][0]["flags"] == ["elderly"]
    by_unit = http.post("/api/v1/residents/search", json={"q": "3栋 2单元"}, headers=zhang).json()
    assert [r["id"] for r in by_unit["items"]] == ["per_1"]
    by_name = http.post("/api/v1/residents/search", json={"q": "Uncle"}, headers=zhang).json()
    assert [r["id"] for r in by_name["items"]] == ["per_2"]
    assert (
        http.post("/api/v1/residents/search", json={"q": "%"}, headers=zhang).json()["total"] == 0
    )
    everyone = http.get("/api/v1/residents", headers=zhang).json()
    assert everyone["total"] >= 2 and (everyone["offset"], everyone["limit"]) == (0, 50)
    assert all("phone" not in r for r in everyone["items"])
    assert "13800000001" not in json.dumps(everyone)
    page = http.get("/api/v1/residents", params={"limit": 1, "offset": 1}, headers=zhang).json()
    assert len(page["items"]) == 1 and page["total"] == everyone["total"]
    assert page["items"][0] == everyone["items"][1]
    assert http.get("/api/v1/residents", params={"limit": 201}, headers=zhang).status_code == 422
    assert http.get("/api/v1/residents", params={"offset": -1}, headers=zhang).status_code == 422
    staff = http.get("/api/v1/residents/per_4", headers=zhang)  # a maintainer is no resident
    assert staff.status_code == 404


def test_residents_and_maintainers_may_not_manage_residents(http: httpx.Client) -> None:
    resident = auth(sign_in(http, LI))
    for method, path in [
        ("GET", "/api/v1/residents"),
        ("GET", "/api/v1/residents/per_1"),
        ("POST", "/api/v1/residents/per_1/pin"),
        ("PUT", "/api/v1/residents/per_2/status"),
    ]:
        response = http.request(method, path, headers=resident, json={})
        assert response.status_code == 403, path
        assert response.json()["code"] == "forbidden"
    assert http.get("/api/v1/residents").status_code == 401
    maintainer = auth(sign_in(http, LIU))
    assert http.get("/api/v1/residents", headers=maintainer).status_code == 403


def test_a_worker_of_another_community_gets_404(
    http: httpx.Client, accounts_cloud: CloudUnderTest
) -> None:
    river = DemoLogin("social_worker", "River", "river-sw", "river-social-worker", RIVER_TOTP)
    headers = auth(sign_in(http, river))
    assert http.get("/api/v1/residents", headers=headers).json() == {
        "items": [], "total": 0, "offset": 0, "limit": 50,
    }  # fmt: skip
    tables = ("people", "resident_profiles", "account_changes", "sign_in_attempts")
    before = {t: rows for t, rows in accounts_cloud.store.dump().items() if t in tables}
    for method, path, body in [
        ("GET", "/api/v1/residents/per_1", None),
        ("POST", "/api/v1/residents/per_1/pin", {"pin": "505050", "reason": "x"}),
        ("POST", "/api/v1/residents/per_1/phone", {"phone": "13500000000", "reason": "x"}),
        ("PUT", "/api/v1/residents/per_1/flags", {"flags": [], "reason": "x"}),
        ("PUT", "/api/v1/residents/per_1/status", {"status": "disabled", "reason": "x"}),
        ("GET", "/api/v1/residents/per_3", None),  # staff are not residents
        ("GET", "/api/v1/residents/per_nobody", None),
    ]:
        response = http.request(method, path, headers=headers, json=body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == "not_found"
    after = {t: rows for t, rows in accounts_cloud.store.dump().items() if t in tables}
    assert after == before
