"""Points through the real HTTP app: staff movements with insider controls, holds, reversals,
limits, a resident's history and proof, public roots and totals — and 8 threads × 500 mixed
writes at once that lose no update.

Each test gets its own seeded cloud on a private Mosquitto (``cloud`` fixture): residents
``per_1`` (50 points, 12 of them held for a reservation) and ``per_2`` (50), social workers
``per_3`` (zhang) and ``per_5`` (chen).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import CloudUnderTest

from cloud_api.ledger import SqlLedger
from cloud_api.ledger_verify import verify
from cloud_api.seed import LOGINS, DemoLogin
from cloud_api.transparency import local_day, sign_day

RESIDENT_1, RESIDENT_2, ZHANG, _MAINTAINER, CHEN = LOGINS


class Client:
    """One signed-in person talking to the app."""

    def __init__(self, cloud: CloudUnderTest, login: DemoLogin | str) -> None:
        """Sign ``login`` in, or share the session of a token: staff sign in with a TOTP code
        that is accepted once, so concurrent clients of one person share one session."""
        self.http = httpx.Client(base_url=cloud.url, timeout=30)
        if isinstance(login, str):
            self.token = login
        else:
            response = self.http.post("/api/v1/session", json=login.body(int(time.time() * 1000)))
            assert response.status_code == 200, response.text
            self.token = str(response.json()["token"])
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(f"/api/v1{path}", json=body)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(f"/api/v1{path}")

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def people(cloud: CloudUnderTest) -> Iterator[dict[str, Client]]:
    clients = {login.login: Client(cloud, login) for login in (RESIDENT_1, RESIDENT_2, ZHANG, CHEN)}
    yield clients
    for client in clients.values():
        client.close()


def balance(cloud: CloudUnderTest, person_id: str) -> tuple[int, int]:
    with cloud.store.snapshot() as db:
        state = SqlLedger(db).account(f"mem:{person_id}")
    return state.posted, state.pending_debits


def credit(key: str, amount: int, member: str = "per_2", **more: Any) -> dict[str, Any]:
    return {"key": key, "kind": "valuation_credit", "amount": amount, "member": member} | more


def test_a_credit_is_recorded_once_and_a_reused_key_is_a_conflict(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    zhang = people["zhang"]
    first = zhang.post("/ledger/movements", credit("credit:itm_7", 12, item="itm_7"))
    assert first.status_code == 200, first.text
    again = zhang.post("/ledger/movements", credit("credit:itm_7", 12, item="itm_7"))
    assert again.json()["transfer"]["id"] == first.json()["transfer"]["id"]
    assert balance(cloud, "per_2") == (62, 0)
    other = zhang.post("/ledger/movements", credit("credit:itm_7", 13, item="itm_7"))
    assert (other.status_code, other.json()["code"]) == (409, "key_conflict")
    assert balance(cloud, "per_2") == (62, 0)


def test_residents_cannot_move_points(people: dict[str, Client]) -> None:
    response = people["13800000001"].post("/ledger/movements", credit("self:1", 5, "per_1"))
    assert response.status_code == 403


def test_a_large_credit_waits_for_a_second_social_worker(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    zhang, chen = people["zhang"], people["chen"]
    parked = zhang.post("/ledger/movements", credit("credit:sofa", 300, item="itm_sofa"))
    assert parked.json()["status"] == "awaiting_second_approver"
    assert balance(cloud, "per_2") == (50, 0)
    request_id = parked.json()["request_id"]
    own = zhang.post(f"/ledger/requests/{request_id}/approve", {})
    assert (own.status_code, own.json()["code"]) == (422, "insider_second_approver")
    approved = chen.post(f"/ledger/requests/{request_id}/approve", {})
    assert approved.status_code == 200, approved.text
    transfer = approved.json()["transfer"]
    assert (transfer["actor"], transfer["approved_by"]) == ("per_3", "per_5")
    assert balance(cloud, "per_2") == (350, 0)
    twice = chen.post(f"/ledger/requests/{request_id}/approve", {})
    assert twice.json()["status"] == "approved"
    assert balance(cloud, "per_2") == (350, 0)


def test_a_social_workers_daily_issuance_is_capped(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    zhang = people["zhang"]
    for n in range(10):
        assert zhang.post("/ledger/movements", credit(f"cap:{n}", 200)).status_code == 200
    over = zhang.post("/ledger/movements", credit("cap:10", 1))
    assert (over.status_code, over.json()["code"]) == (422, "insider_cap")
    assert people["chen"].post("/ledger/movements", credit("cap:chen", 1)).status_code == 200
    assert balance(cloud, "per_2") == (50 + 2000 + 1, 0)
    report = {(r["worker"], r["issued"], r["cap"]) for r in zhang.get("/ledger/issuance").json()}
    assert report == {("per_3", 2000, 2000), ("per_5", 1, 2000)}  # the seed's credits: "seed"
    assert people["13800000001"].get("/ledger/issuance").status_code == 403


def test_holds_post_or_void_once(cloud: CloudUnderTest, people: dict[str, Client]) -> None:
    zhang = people["zhang"]
    hold = zhang.post(
        "/ledger/movements",
        {
            "key": "deposit:umbrella",
            "kind": "penalty",
            "amount": 20,
            "member": "per_2",
            "hold": True,
        },
    )
    assert hold.status_code == 200, hold.text
    hold_id = hold.json()["transfer"]["id"]
    assert balance(cloud, "per_2") == (50, 20)
    too_much = zhang.post(
        "/ledger/movements",
        {"key": "deposit:2", "kind": "penalty", "amount": 31, "member": "per_2", "hold": True},
    )
    assert (too_much.status_code, too_much.json()["code"]) == (422, "limit")  # 30 available
    posted = zhang.post(f"/ledger/holds/{hold_id}/post", {"key": "post:umbrella"})
    assert posted.status_code == 200
    assert balance(cloud, "per_2") == (30, 0)
    void = zhang.post(f"/ledger/holds/{hold_id}/void", {"key": "void:umbrella", "reason": "late"})
    assert (void.status_code, void.json()["code"]) == (409, "posted")
    assert balance(cloud, "per_2") == (30, 0)


def test_reversals_never_exceed_the_remainder_and_a_late_original_is_refused(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    zhang = people["zhang"]
    assert zhang.post("/ledger/movements", credit("credit:lamp", 40)).status_code == 200
    part = {"key": "rev:lamp:1", "original_key": "credit:lamp", "reason": "chipped", "amount": 25}
    assert zhang.post("/ledger/reversals", part).status_code == 200
    rest = part | {"key": "rev:lamp:2", "amount": 16}
    exceeds = zhang.post("/ledger/reversals", rest)
    assert (exceeds.status_code, exceeds.json()["code"]) == (422, "reversal_exceeds")
    assert balance(cloud, "per_2") == (65, 0)

    early = {"key": "rev:t1:88", "original_key": "t1:88", "reason": "terminal timed out"}
    assert zhang.post("/ledger/reversals", early).json()["status"] == "tombstoned"
    late = zhang.post("/ledger/movements", credit("t1:88", 5))
    assert (late.status_code, late.json()["code"]) == (422, "late_original")
    assert balance(cloud, "per_2") == (65, 0)


def test_a_limit_change_is_logged_and_lets_a_member_go_below_zero(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    zhang = people["zhang"]
    penalty = {"key": "pen:1", "kind": "penalty", "amount": 60, "member": "per_2"}
    assert zhang.post("/ledger/movements", penalty).json()["code"] == "limit"
    change = {"key": "lim:per_2", "member": "per_2", "limit": -10, "reason": "elder, trusted"}
    assert zhang.post("/ledger/limits", change).status_code == 200
    assert zhang.post("/ledger/movements", penalty).status_code == 200
    assert balance(cloud, "per_2") == (-10, 0)
    history = people["13800000002"].get("/me/ledger").json()
    assert (history["balance"], history["limit"]) == (-10, -10)
    assert history["movements"][0]["points"] == -60


def test_a_resident_sees_their_history_and_proves_an_entry(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    wang = people["13800000001"]
    history = wang.get("/me/ledger").json()
    assert (history["balance"], history["held"], history["available"]) == (50, 12, 38)
    kinds = {m["kind"] for m in history["movements"]}
    assert kinds == {"valuation_credit", "redemption"}
    entry = history["movements"][-1]["id"]
    assert wang.get(f"/me/ledger/{entry}/proof").status_code == 404  # no root signed yet
    now = cloud.server.app.state.services.clock.now().wall_ms
    sign_day(cloud.store, cloud.keys, local_day(now), now)
    proof = wang.get(f"/me/ledger/{entry}/proof")
    assert proof.status_code == 200, proof.text
    assert "mem:per_1" not in proof.json()["leaf"]
    other = people["13800000002"].get(f"/me/ledger/{entry}/proof")
    assert other.status_code == 404  # not their entry
    public = httpx.get(f"{cloud.url}/api/v1/ledger/roots").json()
    assert [r["body"]["log_size"] for r in public] == [proof.json()["root"]["body"]["log_size"]]
    totals = httpx.get(f"{cloud.url}/api/v1/ledger/totals").json()
    assert {t["kind"] for t in totals} == {"valuation_credit"}
    assert all("member" not in t and "per_" not in str(t) for t in totals)


@pytest.mark.parametrize(
    "body",
    [
        credit("bad:0", 0),
        credit("bad:neg", -5),
        credit("bad:huge", 10**12),
        credit("bad key with spaces", 5),
        {"key": "bad:kind", "kind": "cash_out", "amount": 5, "member": "per_2"},
        {"key": "bad:m2m", "kind": "transfer", "amount": 5, "member": "per_2"},
        credit("bad:extra", 5) | {"debit": "mem:per_1"},
        credit("bad:nobody", 5, member="per_404"),
        credit("bad:staff", 5, member="per_3"),
    ],
)
def test_bad_movements_are_refused_and_change_nothing(
    cloud: CloudUnderTest, people: dict[str, Client], body: dict[str, Any]
) -> None:
    before = cloud.store.dump()
    response = people["zhang"].post("/ledger/movements", body)
    assert 400 <= response.status_code < 500, response.text
    assert cloud.store.dump() == before


THREADS = 8
WRITES_PER_THREAD = 500


def test_eight_threads_of_mixed_writes_lose_no_update(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    """8 threads × 500 writes through the HTTP app at once: refunds and penalties, holds posted
    or voided, partial reversals. Every acknowledged write is in the ledger exactly once, every
    balance equals the sum of what was acknowledged, and ``ledger verify`` passes."""
    zhang = people["zhang"]
    for member in ("per_1", "per_2"):  # room for penalties
        change = {"key": f"lim:{member}", "member": member, "limit": -100_000, "reason": "load"}
        assert zhang.post("/ledger/limits", change).status_code == 200
    expected = {"per_1": 0, "per_2": 0}
    acknowledged: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(n)
        client = Client(cloud, zhang.token)  # one session, as a TOTP code is accepted once
        delta = {"per_1": 0, "per_2": 0}
        keys: list[str] = []
        try:
            for i in range(WRITES_PER_THREAD // 2):
                member = rng.choice(("per_1", "per_2"))
                amount = rng.randint(1, 9)
                key = f"w{n}:{i}"
                op = rng.randrange(4)
                kind = "refund" if op == 0 else "penalty"
                body = {"key": key, "kind": kind, "amount": amount, "member": member}
                if op >= 2:
                    body["hold"] = True
                first = client.post("/ledger/movements", body)
                if first.status_code != 200:
                    failures.append(f"{key}: {first.status_code} {first.text}")
                    continue
                keys.append(key)
                transfer_id = first.json()["transfer"]["id"]
                if op == 0:  # a refund, then part of it reversed
                    second = client.post(
                        "/ledger/reversals",
                        {"key": f"{key}:rev", "original_key": key, "reason": "x", "amount": 1},
                    )
                    delta[member] += amount - 1
                elif op == 1:  # a penalty, then the same key again (a retry)
                    second = client.post("/ledger/movements", body)
                    delta[member] -= amount
                elif op == 2:  # a hold posted
                    second = client.post(f"/ledger/holds/{transfer_id}/post", {"key": f"{key}:p"})
                    delta[member] -= amount
                else:  # a hold voided
                    second = client.post(
                        f"/ledger/holds/{transfer_id}/void", {"key": f"{key}:v", "reason": "x"}
                    )
                if second.status_code != 200:
                    failures.append(f"{key} second: {second.status_code} {second.text}")
                    continue
                keys.append(f"{key}:second")
        finally:
            client.close()
        with lock:
            for member, d in delta.items():
                expected[member] += d
            acknowledged.extend(keys)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(acknowledged) == THREADS * WRITES_PER_THREAD
    assert balance(cloud, "per_1") == (50 + expected["per_1"], 12)
    assert balance(cloud, "per_2") == (50 + expected["per_2"], 0)
    report = verify(cloud.store, cloud.keys)
    assert report.problems == []
    first_keys = {k for k in acknowledged if not k.endswith(":second")}
    rows = cloud.store.read("SELECT idempotency_key FROM transfers WHERE idempotency_key LIKE 'w%'")
    recorded = {r[0] for r in rows}
    assert first_keys <= recorded


def test_anyone_checks_that_a_later_day_extends_an_earlier_one(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    from cloud_api.core.transparency import verify_consistency

    now = cloud.server.app.state.services.clock.now().wall_ms
    day = 24 * 60 * 60 * 1000
    sign_day(cloud.store, cloud.keys, local_day(now - day), now)
    assert people["zhang"].post("/ledger/movements", credit("credit:kettle", 8)).status_code == 200
    sign_day(cloud.store, cloud.keys, local_day(now), now)
    query = {"from_day": local_day(now - day), "to_day": local_day(now)}
    found = httpx.get(f"{cloud.url}/api/v1/ledger/consistency", params=query).json()
    old, new = found["from"]["body"], found["to"]["body"]
    assert new["log_size"] == old["log_size"] + 1
    assert verify_consistency(
        old["log_size"],
        new["log_size"],
        bytes.fromhex(old["log_root"]),
        bytes.fromhex(new["log_root"]),
        [bytes.fromhex(p) for p in found["proof"]],
    )
    backwards = {"from_day": query["to_day"], "to_day": query["from_day"]}
    refused = httpx.get(f"{cloud.url}/api/v1/ledger/consistency", params=backwards)
    assert refused.status_code == 422
    missing = httpx.get(
        f"{cloud.url}/api/v1/ledger/consistency",
        params={"from_day": "2020-01-01", "to_day": query["to_day"]},
    )
    assert missing.status_code == 404
