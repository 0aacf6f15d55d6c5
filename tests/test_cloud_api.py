"""The cloud: sign-in, authorization (role + community + ownership), codes shown again but never
stored, balances, the ledger's immutability and idempotency, the store's migrations, code
uniqueness per bank, and the settlement table.

HTTP tests run against the real app under uvicorn on a real Mosquitto (httpx over a socket).
Ledger, store and grant tests use a seeded SQLite file directly: no server is needed for them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CloudUnderTest, require_system

from cloud_api import ledger
from cloud_api.accounts.service import hash_secret, seal_totp_secret
from cloud_api.core.ledger import Conflict as LedgerConflict
from cloud_api.core.ledger import VoidRequest
from cloud_api.errors import Conflict
from cloud_api.grants import service as grants
from cloud_api.grants.service import build_config, issue_grant
from cloud_api.keys import CloudKeys
from cloud_api.seed import LOGINS, DemoLogin, seed_demo
from cloud_api.store import MIGRATIONS, Store
from linli.codes import derive_code, hash_code
from linli.contract import encode
from station.broker import MosquittoBroker, mosquitto_binary

RESIDENT_1, RESIDENT_2, SOCIAL_WORKER, MAINTAINER, SECOND_SOCIAL_WORKER = LOGINS
NOW_MS = 1_800_000_000_000
OTHER_TOTP = "JBSWY3DPEHPK3PXS"  # the other community's maintainer (a test secret)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudUnderTest]:
    """One seeded cloud for the tests that only read (or add what no other test looks at)."""
    if mosquitto_binary() is None:
        require_system("mosquitto binary not installed (apt-get install mosquitto)")
    base = tmp_path_factory.mktemp("shared-cloud")
    with MosquittoBroker(base / "mosquitto") as broker:
        running = CloudUnderTest(base / "cloud", broker.info)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def http(shared_cloud: CloudUnderTest) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_cloud.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def tokens(http: httpx.Client) -> dict[str, str]:
    """A session token per demo login (signing in costs one scrypt each)."""
    return {login.login: sign_in(http, login) for login in LOGINS}


def sign_in(http: httpx.Client, login: DemoLogin, secret: str | None = None) -> str:
    body = login.body(int(time.time() * 1000))  # staff: with the current TOTP code
    if secret is not None:
        body["secret"] = secret
    response = http.post("/api/v1/session", json=body)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def as_(tokens: dict[str, str], login: DemoLogin) -> dict[str, str]:
    return auth(tokens[login.login])


def wait_for_broker(http: httpx.Client, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        health: dict[str, Any] = http.get("/healthz").json()
        if health["broker_connected"] or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


@pytest.fixture
def seeded(tmp_path: Path, cloud_keys: CloudKeys) -> Iterator[tuple[Store, CloudKeys]]:
    """A migrated, seeded store on a temporary file (no server)."""
    store = Store(tmp_path / "cloud.sqlite3")
    store.migrate()
    seed_demo(store, cloud_keys, NOW_MS)
    yield store, cloud_keys
    store.close()


# --- sign-in --------------------------------------------------------------------------------


def test_sign_in_with_the_right_pin_returns_a_token(http: httpx.Client) -> None:
    response = http.post(
        "/api/v1/session", json={"login": RESIDENT_1.login, "secret": RESIDENT_1.secret}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["role"] == "resident" and len(body["token"]) >= 32
    me = http.get("/api/v1/me", headers=auth(body["token"]))
    assert me.status_code == 200 and me.json()["id"] == "per_1"


@pytest.mark.parametrize(
    ("login", "secret"),
    [
        (RESIDENT_2.login, "000000"),  # wrong PIN
        (RESIDENT_2.login, RESIDENT_1.secret),  # someone else's PIN
        ("13899999999", "246810"),  # unknown login
        ("王阿姨 (Auntie Wang, 72)", "246810"),
        ("1380000000\x00", "246810"),
    ],
)
def test_sign_in_refuses_wrong_credentials(http: httpx.Client, login: str, secret: str) -> None:
    response = http.post("/api/v1/session", json={"login": login, "secret": secret})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "token" not in response.json()


def test_sixth_sign_in_after_five_failures_is_throttled(cloud: CloudUnderTest) -> None:
    with httpx.Client(base_url=cloud.url, timeout=10) as http:
        for _ in range(5):
            response = http.post(
                "/api/v1/session", json={"login": RESIDENT_1.login, "secret": "999999"}
            )
            assert response.status_code == 401
        right = http.post(
            "/api/v1/session", json={"login": RESIDENT_1.login, "secret": RESIDENT_1.secret}
        )
        assert right.status_code == 429
        assert right.json()["code"] == "throttled"
        assert "token" not in right.json()
        # The lockout is per login: a neighbour is not locked out.
        assert sign_in(http, RESIDENT_2)


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"json": {}}, id="empty-object"),
        pytest.param({"json": {"login": RESIDENT_1.login}}, id="missing-secret"),
        pytest.param({"json": {"secret": RESIDENT_1.secret}}, id="missing-login"),
        pytest.param(
            {"json": {"login": RESIDENT_1.login, "secret": RESIDENT_1.secret, "role": "maintainer"}},
            id="extra-field",
        ),
        pytest.param({"json": {"login": "1" * 65, "secret": "246810"}}, id="login-too-long"),
        pytest.param({"json": {"login": "13", "secret": "246810"}}, id="login-too-short"),
        pytest.param({"json": {"login": RESIDENT_1.login, "secret": "2" * 129}}, id="secret-too-long"),
        pytest.param({"json": {"login": RESIDENT_1.login, "secret": "246"}}, id="secret-too-short"),
        pytest.param({"json": {"login": 13800000001, "secret": "246810"}}, id="login-number"),
        pytest.param({"json": {"login": RESIDENT_1.login, "secret": 246810}}, id="secret-number"),
        pytest.param({"json": {"login": [RESIDENT_1.login], "secret": "246810"}}, id="login-list"),
        pytest.param({"json": {"login": RESIDENT_1.login, "secret": None}}, id="secret-null"),
        pytest.param({"json": {"login": True, "secret": "246810"}}, id="login-bool"),
        pytest.param({"json": [RESIDENT_1.login, RESIDENT_1.secret]}, id="json-array"),
        pytest.param({"json": None}, id="json-null"),
        pytest.param({"json": "13800000001"}, id="json-string"),
        pytest.param(
            {"content": b'{"login": "13800000001", "secret": ', "headers": {"Content-Type": "application/json"}},
            id="truncated-json",
        ),
        pytest.param({"content": b"", "headers": {"Content-Type": "application/json"}}, id="empty-body"),
        pytest.param({"data": {"login": RESIDENT_1.login, "secret": RESIDENT_1.secret}}, id="form-encoded"),
    ],
)  # fmt: skip
def test_sign_in_refuses_invalid_bodies(
    http: httpx.Client, request_kwargs: dict[str, Any], shared_cloud: CloudUnderTest
) -> None:
    sessions_before = shared_cloud.store.read("SELECT COUNT(*) FROM sessions")[0][0]
    response = http.post("/api/v1/session", **request_kwargs)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request" and response.json()["field"]
    assert shared_cloud.store.read("SELECT COUNT(*) FROM sessions")[0][0] == sessions_before


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"login": "\xff\xfe", "secret": "246810"}', id="not-utf8"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, id="deeply-nested"),
    ],
)
def test_sign_in_refuses_a_body_that_cannot_be_parsed(
    http: httpx.Client, shared_cloud: CloudUnderTest, content: bytes
) -> None:
    """FastAPI answers 400 (not 422) for a body it cannot parse: a client error all the same."""
    sessions_before = shared_cloud.store.read("SELECT COUNT(*) FROM sessions")[0][0]
    response = http.post(
        "/api/v1/session", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_request"
    assert shared_cloud.store.read("SELECT COUNT(*) FROM sessions")[0][0] == sessions_before


# --- authorization: role + community + ownership ---------------------------------------------


def test_a_resident_sees_only_their_own_pickups(
    http: httpx.Client, tokens: dict[str, str], shared_cloud: CloudUnderTest
) -> None:
    mine = http.get("/api/v1/me/pickups", headers=as_(tokens, RESIDENT_1))
    assert mine.status_code == 200
    assert [p["item"] for p in mine.json()] == ["电热水壶 Electric kettle"]
    assert mine.json()[0]["compartment"] == shared_cloud.seed.reserved_compartment
    theirs = http.get("/api/v1/me/pickups", headers=as_(tokens, RESIDENT_2))
    assert theirs.status_code == 200 and theirs.json() == []


@pytest.mark.parametrize("login", [SOCIAL_WORKER, MAINTAINER])
def test_staff_have_no_pickups_route(
    http: httpx.Client, tokens: dict[str, str], login: DemoLogin
) -> None:
    response = http.get("/api/v1/me/pickups", headers=as_(tokens, login))
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_devices_are_for_staff_of_the_community(http: httpx.Client, tokens: dict[str, str]) -> None:
    for resident in (RESIDENT_1, RESIDENT_2):
        refused = http.get("/api/v1/devices", headers=as_(tokens, resident))
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        events = http.get("/api/v1/devices/locker-a/events", headers=as_(tokens, resident))
        assert events.status_code == 403
    for staff in (MAINTAINER, SOCIAL_WORKER):
        listed = http.get("/api/v1/devices", headers=as_(tokens, staff))
        assert listed.status_code == 200
        devices = {d["id"]: d for d in listed.json()}
        assert {"locker-a", "locker-b"} <= set(devices)
        assert [c["name"] for c in devices["locker-a"]["compartments"]] == [
            "A1",
            "A2",
            "A3",
            "A4",
        ]
        assert http.get("/api/v1/devices/locker-a/events", headers=as_(tokens, staff)).is_success


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer not-a-session"}, id="unknown-token"),
        pytest.param({"Authorization": "Bearer"}, id="empty-token"),
        pytest.param({"Authorization": "Basic MTM4MDAwMDAwMDE6MjQ2ODEw"}, id="basic-auth"),
        pytest.param({"Authorization": "Bearer " + "x" * 5000}, id="huge-token"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/me/pickups"),
        ("GET", "/api/v1/devices"),
        ("GET", "/api/v1/devices/locker-a/events"),
        ("GET", "/api/v1/items/itm_kettle"),
        ("GET", "/api/v1/commands/cmd_x"),
        ("POST", "/api/v1/me/pickups/grt_x/open"),
    ],
)
def test_no_valid_session_gets_401(
    http: httpx.Client, headers: dict[str, str], method: str, path: str
) -> None:
    response = http.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_a_resident_cannot_open_or_read_what_is_not_theirs(
    http: httpx.Client, tokens: dict[str, str], shared_cloud: CloudUnderTest
) -> None:
    assert wait_for_broker(http)["broker_connected"]
    pickup = http.get("/api/v1/me/pickups", headers=as_(tokens, RESIDENT_1)).json()[0]
    commands_before = shared_cloud.store.read("SELECT COUNT(*) FROM commands")[0][0]

    stolen = http.post(
        f"/api/v1/me/pickups/{pickup['grant_id']}/open", headers=as_(tokens, RESIDENT_2)
    )
    assert stolen.status_code == 404 and stolen.json()["code"] == "not_found"
    assert shared_cloud.store.read("SELECT COUNT(*) FROM commands")[0][0] == commands_before

    opened = http.post(
        f"/api/v1/me/pickups/{pickup['grant_id']}/open", headers=as_(tokens, RESIDENT_1)
    )
    assert opened.status_code == 202, opened.text
    command_id = opened.json()["command_id"]

    own = http.get(f"/api/v1/commands/{command_id}", headers=as_(tokens, RESIDENT_1))
    assert own.status_code == 200
    assert own.json()["requested_by"] == "per_1"
    assert own.json()["compartment"] == pickup["compartment"]
    other = http.get(f"/api/v1/commands/{command_id}", headers=as_(tokens, RESIDENT_2))
    assert other.status_code == 404
    staff = http.get(f"/api/v1/commands/{command_id}", headers=as_(tokens, MAINTAINER))
    assert staff.status_code == 200


def test_another_community_sees_nothing_of_ours(
    http: httpx.Client, tokens: dict[str, str], shared_cloud: CloudUnderTest
) -> None:
    with shared_cloud.store.write() as db:
        db.execute("INSERT INTO communities (id, name) VALUES ('river-side', 'River Side')")
        db.execute(
            "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
            " totp_secret, created_ms)"
            " VALUES ('per_other', 'river-side', 'maintainer', 'Other', 'other-m', ?, ?, 0)",
            (
                hash_secret("other-maintainer"),
                seal_totp_secret(shared_cloud.keys, "per_other", OTHER_TOTP),
            ),
        )
        db.execute(
            "INSERT INTO devices (id, community_id, role, name) VALUES"
            " ('locker-river', 'river-side', 'locker', 'River locker')"
        )
    token = sign_in(
        http, DemoLogin("maintainer", "Other", "other-m", "other-maintainer", OTHER_TOTP)
    )
    listed = http.get("/api/v1/devices", headers=auth(token))
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()] == ["locker-river"]
    for path in (
        "/api/v1/devices/locker-a/events",
        "/api/v1/items/itm_kettle",
    ):
        response = http.get(path, headers=auth(token))
        assert response.status_code == 404, path
    ours = {d["id"] for d in http.get("/api/v1/devices", headers=as_(tokens, MAINTAINER)).json()}
    assert "locker-river" not in ours
    # A command of our community stays ours.
    assert wait_for_broker(http)["broker_connected"]
    grant_id = http.get("/api/v1/me/pickups", headers=as_(tokens, RESIDENT_1)).json()[0]["grant_id"]
    command_id = http.post(
        f"/api/v1/me/pickups/{grant_id}/open", headers=as_(tokens, RESIDENT_1)
    ).json()["command_id"]
    assert http.get(f"/api/v1/commands/{command_id}", headers=auth(token)).status_code == 404


@pytest.mark.parametrize(
    "bad_id",
    ["bad id", "a.b", "a..b", "x" * 65, "€", "a'b", "a;b", "a%00b", "<script>", "%"],
)
@pytest.mark.parametrize(
    ("method", "template", "login"),
    [
        ("GET", "/api/v1/items/{}", RESIDENT_1),
        ("GET", "/api/v1/commands/{}", RESIDENT_1),
        ("POST", "/api/v1/me/pickups/{}/open", RESIDENT_1),
        ("GET", "/api/v1/devices/{}/events", MAINTAINER),
    ],
)
def test_bad_path_ids_get_422(
    http: httpx.Client,
    tokens: dict[str, str],
    bad_id: str,
    method: str,
    template: str,
    login: DemoLogin,
) -> None:
    response = http.request(method, template.format(bad_id), headers=as_(tokens, login))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("trick", ["a%2Fb", "..%2F..%2Fdevices", "%2E%2E", "a/b"])
def test_path_tricks_are_client_errors(
    http: httpx.Client, tokens: dict[str, str], trick: str
) -> None:
    """An id the router cannot even match is a 404 (never a 5xx, never another route)."""
    for path in (f"/api/v1/items/{trick}", f"/api/v1/commands/{trick}"):
        response = http.get(path, headers=as_(tokens, RESIDENT_1))
        assert response.status_code in (404, 422), path
        assert "history" not in response.text and "requested_by" not in response.text


def test_unknown_ids_get_404(http: httpx.Client, tokens: dict[str, str]) -> None:
    for method, path, login in [
        ("GET", "/api/v1/items/itm_nope", RESIDENT_1),
        ("GET", "/api/v1/commands/cmd_nope", RESIDENT_1),
        ("POST", "/api/v1/me/pickups/grt_nope/open", RESIDENT_1),
        ("GET", "/api/v1/devices/locker-nope/events", MAINTAINER),
    ]:
        response = http.request(method, path, headers=as_(tokens, login))
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


# --- codes: shown again, never stored --------------------------------------------------------


def test_the_pickup_code_is_derived_shown_again_and_never_stored(
    http: httpx.Client, shared_cloud: CloudUnderTest
) -> None:
    first = http.get("/api/v1/me/pickups", headers=auth(sign_in(http, RESIDENT_1))).json()
    assert len(first) == 1
    pickup = first[0]
    code = pickup["code"]
    assert isinstance(code, str) and len(code) == 8 and code.isascii() and code.isdigit()
    counter = shared_cloud.store.read_one(
        "SELECT code_counter FROM grants WHERE id = ?", (pickup["grant_id"],)
    )
    assert counter is not None
    assert code == derive_code(shared_cloud.keys.code_secret, pickup["grant_id"], counter[0])

    again = http.get("/api/v1/me/pickups", headers=auth(sign_in(http, RESIDENT_1))).json()
    assert again[0]["code"] == code

    for table, rows in shared_cloud.store.dump().items():
        for row in rows:
            assert not any(code in str(cell) for cell in row), f"the code is stored in {table}"


def test_devices_receive_only_a_keyed_hash_of_the_code(seeded: tuple[Store, CloudKeys]) -> None:
    store, keys = seeded
    grant = store.read_one("SELECT id, code_counter FROM grants WHERE device_id = 'locker-a'")
    assert grant is not None
    code = derive_code(keys.code_secret, grant["id"], grant["code_counter"])
    with store.write() as db:
        body = build_config(db, keys, "locker-a", 1, NOW_MS)
    payload = encode(body).decode()
    assert code not in payload
    assert hash_code(keys.device_code_key("locker-a"), code) in payload
    assert [g.grant_id for g in body.grants] == [grant["id"]]


# --- balances -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        (RESIDENT_1, {"balance": 50, "held": 12, "available": 38}),
        (RESIDENT_2, {"balance": 50, "held": 0, "available": 50}),
    ],
)
def test_me_shows_balance_held_and_available(
    http: httpx.Client, tokens: dict[str, str], login: DemoLogin, expected: dict[str, int]
) -> None:
    body = http.get("/api/v1/me", headers=as_(tokens, login)).json()
    assert {k: body[k] for k in expected} == expected
    assert body["role"] == "resident"


def test_staff_have_no_balance(http: httpx.Client, tokens: dict[str, str]) -> None:
    body = http.get("/api/v1/me", headers=as_(tokens, MAINTAINER)).json()
    assert body["role"] == "maintainer"
    assert "balance" not in body


def test_healthz(http: httpx.Client) -> None:
    health = wait_for_broker(http)
    assert health["ok"] is True
    assert health["broker_connected"] is True


# --- the ledger -----------------------------------------------------------------------------


def _hold_id(store: Store) -> str:
    row = store.read_one("SELECT id FROM transfers WHERE phase = 'pending'")
    assert row is not None
    return str(row["id"])


def _total(db: sqlite3.Connection) -> int:
    accounts = [r["id"] for r in db.execute("SELECT id FROM accounts")]
    return sum(ledger.balances(db, a)[0] for a in accounts)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE transfers SET amount = amount + 1",
        "UPDATE transfers SET kind = 'refund' WHERE phase = 'pending'",
        "DELETE FROM transfers",
        "DELETE FROM transfers WHERE phase = 'pending'",
    ],
)
def test_transfers_are_immutable(seeded: tuple[Store, CloudKeys], statement: str) -> None:
    store, _ = seeded
    before = store.dump()
    with pytest.raises(sqlite3.DatabaseError, match="immutable"), store.write() as db:
        db.execute(statement)
    assert store.dump() == before


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"amount": 0}, id="zero"),
        pytest.param({"amount": -5}, id="negative"),
        pytest.param({"credit": "mem:per_1"}, id="debit-equals-credit"),
        pytest.param({"debit": "mem:nobody"}, id="unknown-account"),
        pytest.param({"phase": "post"}, id="post-without-pending"),
        pytest.param({"phase": "bogus"}, id="unknown-phase"),
    ],
)
def test_the_store_refuses_unbalanced_or_malformed_transfers(
    seeded: tuple[Store, CloudKeys], changes: dict[str, Any]
) -> None:
    store, _ = seeded
    before = store.dump()
    fields: dict[str, Any] = {
        "key": "test:1",
        "debit": "mem:per_1",
        "credit": ledger.REDEMPTION,
        "amount": 5,
        "kind": "redemption",
        "actor": "test",
        "now_ms": NOW_MS,
    }
    # The ledger core refuses first (Conflict with its rule's code); the schema's CHECKs and
    # foreign keys are the second line (IntegrityError) for whatever bypasses the core.
    with pytest.raises((sqlite3.IntegrityError, Conflict)), store.write() as db:
        ledger.transfer(db, **(fields | changes))
    assert store.dump() == before


def test_transfer_is_idempotent_and_a_reused_key_with_another_body_conflicts(
    seeded: tuple[Store, CloudKeys],
) -> None:
    store, _ = seeded
    fields: dict[str, Any] = {
        "key": "credit:itm_x",
        "debit": ledger.ISSUANCE,
        "credit": "mem:per_2",
        "amount": 7,
        "kind": "valuation_credit",
        "actor": "per_3",
        "item_id": "itm_books",
    }
    with store.write() as db:
        first = ledger.transfer(db, now_ms=NOW_MS, **fields)
        again = ledger.transfer(db, now_ms=NOW_MS + 1000, **fields)
        assert again == first
        assert ledger.balances(db, "mem:per_2") == (57, 0)
    for changed in (
        {"amount": 8},
        {"credit": "mem:per_1"},
        {"debit": ledger.REDEMPTION},
        {"phase": "pending"},
        {"kind": "subsidy_grant"},
        {"item_id": "itm_coat"},
    ):
        with pytest.raises(Conflict), store.write() as db:
            ledger.transfer(db, now_ms=NOW_MS, **(fields | changed))
    rows = store.read("SELECT amount FROM transfers WHERE idempotency_key = 'credit:itm_x'")
    assert [r["amount"] for r in rows] == [7]


def test_a_hold_posts_once_and_the_ledger_stays_balanced(seeded: tuple[Store, CloudKeys]) -> None:
    store, _ = seeded
    hold = _hold_id(store)
    with store.write() as db:
        assert _total(db) == 0
        assert ledger.balances(db, "mem:per_1") == (50, 12)
        first = ledger.post_pending(db, hold, actor="device:locker-a", now_ms=NOW_MS)
        second = ledger.post_pending(db, hold, actor="device:locker-a", now_ms=NOW_MS + 5)
        assert first == second
        assert ledger.balances(db, "mem:per_1") == (38, 0)
        assert ledger.balances(db, ledger.REDEMPTION) == (12, 0)
        assert ledger.balances(db, ledger.ISSUANCE) == (-100, 0)
        assert _total(db) == 0
    posts = store.read("SELECT id FROM transfers WHERE pending_id = ?", (hold,))
    assert [r["id"] for r in posts] == [first]
    # No void after a post: the core refuses it, and the store allows one resolution per hold
    # even to a write that bypasses the core.
    with pytest.raises(LedgerConflict, match="posted"), store.write() as db:
        ledger.SqlLedger(db).void(VoidRequest(f"void:{hold}", hold, "test", "expired"), NOW_MS)
    with pytest.raises(sqlite3.IntegrityError), store.write() as db:
        db.execute(
            "INSERT INTO transfers (id, idempotency_key, debit_account, credit_account, amount,"
            " phase, pending_id, kind, actor, created_ms) VALUES"
            " ('trf_raw', 'raw-void', 'mem:per_1', 'sys:redemption', 12, 'void', ?,"
            " 'redemption', 'test', 0)",
            (hold,),
        )


def test_no_post_after_a_void(seeded: tuple[Store, CloudKeys]) -> None:
    store, _ = seeded
    hold = _hold_id(store)
    with store.write() as db:
        ledger.SqlLedger(db).void(VoidRequest(f"void:{hold}", hold, "expiry", "expired"), NOW_MS)
        assert ledger.balances(db, "mem:per_1") == (50, 0)
    before = store.dump()
    with pytest.raises(Conflict), store.write() as db:
        ledger.post_pending(db, hold, actor="device:locker-a", now_ms=NOW_MS)
    assert store.dump() == before


def test_only_a_pending_transfer_can_be_posted(seeded: tuple[Store, CloudKeys]) -> None:
    store, _ = seeded
    single = store.read_one("SELECT id FROM transfers WHERE phase = 'single'")
    assert single is not None
    for transfer_id in (single["id"], "trf_nope"):
        with pytest.raises(Conflict), store.write() as db:
            ledger.post_pending(db, transfer_id, actor="test", now_ms=NOW_MS)


# --- the store ------------------------------------------------------------------------------


def test_migrate_twice_is_a_no_op(tmp_path: Path) -> None:
    store = Store(tmp_path / "cloud.sqlite3")
    try:
        assert store.schema_version() == 0
        assert store.migrate() == len(MIGRATIONS)
        assert store.schema_version() == len(MIGRATIONS)
        with store.write() as db:
            db.execute("INSERT INTO communities (id, name) VALUES ('c1', 'C1')")
        before = store.dump()
        assert store.migrate() == len(MIGRATIONS)
        assert store.dump() == before
    finally:
        store.close()
    reopened = Store(tmp_path / "cloud.sqlite3")
    try:
        assert reopened.migrate() == len(MIGRATIONS)
        assert reopened.dump() == before
    finally:
        reopened.close()


def test_a_newer_schema_stops_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "cloud.sqlite3"
    store = Store(path)
    store.migrate()
    newer = len(MIGRATIONS) + 1
    with store.write() as db:
        db.execute("UPDATE schema_version SET version = ?", (newer,))
    store.close()
    store = Store(path)
    try:
        with pytest.raises(SystemExit) as caught:
            store.migrate()
        message = str(caught.value.code)
        assert str(path) in message
        assert f"schema version {newer}" in message
        assert "upgrade" in message
        assert store.schema_version() == newer
    finally:
        store.close()


# --- grants: codes unique among the live codes of a bank --------------------------------------


def test_a_colliding_code_bumps_the_counter(
    seeded: tuple[Store, CloudKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, keys = seeded
    real_code_of: Callable[[CloudKeys, str, int], str] = grants.code_of

    def issue(device_id: str, compartment: str) -> str:
        with store.write() as db:
            return issue_grant(
                db,
                keys,
                device_id=device_id,
                compartment=compartment,
                purpose="dropoff",
                valid_from_ms=NOW_MS,
                valid_until_ms=NOW_MS + 3_600_000,
                now_ms=NOW_MS,
            )

    def counter_of(grant_id: str) -> int:
        row = store.read_one("SELECT code_counter FROM grants WHERE id = ?", (grant_id,))
        assert row is not None
        return int(row[0])

    first = issue("locker-a", "A1")
    assert counter_of(first) == 0
    existing = {r["id"] for r in store.read("SELECT id FROM grants")}

    def colliding_code_of(keys: CloudKeys, grant_id: str, counter: int) -> str:
        """Every new grant's first code equals the first grant's code."""
        if counter == 0 and grant_id not in existing:
            return real_code_of(keys, first, 0)
        return real_code_of(keys, grant_id, counter)

    monkeypatch.setattr(grants, "code_of", colliding_code_of)

    second = issue("locker-a", "A4")
    assert counter_of(second) == 1
    assert real_code_of(keys, second, 1) != real_code_of(keys, first, 0)
    assert derive_code(keys.code_secret, second, 1) == real_code_of(keys, second, 1)

    # Another bank's live codes do not count: the same code may live on locker-b.
    other_bank = issue("locker-b", "A1")
    assert counter_of(other_bank) == 0

    # Nor do consumed grants.
    with store.write() as db:
        db.execute("UPDATE grants SET status = 'consumed' WHERE id = ?", (first,))
    existing.add(second)
    third = issue("locker-a", "A1")
    assert counter_of(third) == 0


def test_issue_grant_refuses_an_unknown_compartment(seeded: tuple[Store, CloudKeys]) -> None:
    store, keys = seeded
    before = store.dump()
    with pytest.raises(LookupError), store.write() as db:
        issue_grant(
            db,
            keys,
            device_id="locker-a",
            compartment="Z9",
            purpose="pickup",
            valid_from_ms=NOW_MS,
            valid_until_ms=NOW_MS + 1,
            now_ms=NOW_MS,
        )
    assert store.dump() == before
