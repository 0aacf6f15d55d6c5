"""The valuation terminal's HTTP API and the social workers' approval queue (issue #9, items 4–6).

The real cloud (uvicorn, SQLite, its MQTT worker on a private Mosquitto); the locker's door and
occupancy events are published on the broker as a controller would (the full controller runs in
``test_valuation_end_to_end.py``). Terminals authenticate with their token, residents with a
ticket from the terminal's sign-in; social workers with their sessions.
"""

from __future__ import annotations

import hashlib
import io
import random
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import CloudUnderTest
from PIL import Image
from test_settlement_scenarios import balance, event, item_status, publish_as

from cloud_api.terminal.service import Terminal
from station.scenarios import wait_for
from valuation_terminal.core.rules import Correction, Demand, Inputs, load_policy, value

WANG, LI, ZHANG, SECOND_WORKER = "per_1", "per_2", "per_3", "per_5"


_CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client(cloud: CloudUnderTest, **headers: str) -> httpx.Client:
    """An HTTP client of the cloud, closed after the test."""
    made = httpx.Client(base_url=cloud.url, headers=headers, timeout=15)
    _CLIENTS.append(made)
    return made


# --- helpers ---------------------------------------------------------------------------------


def terminal_http(cloud: CloudUnderTest, token: str | None = None) -> httpx.Client:
    token = cloud.seed.terminal_token if token is None else token
    return client(cloud, Authorization=f"Terminal {cloud.seed.terminal_id}:{token}")


def login_of(cloud: CloudUnderTest, person_id: str) -> Any:
    index = int(person_id.split("_")[1]) - 1
    return cloud.seed.logins[index]


_STAFF_TOKENS: dict[tuple[str, str], str] = {}


def staff_http(cloud: CloudUnderTest, person_id: str) -> httpx.Client:
    """A social worker signed in with password and TOTP (once per cloud: a TOTP step counts
    once)."""
    http = client(cloud)
    key = (cloud.url, person_id)
    if key not in _STAFF_TOKENS:
        answer = http.post(
            "/api/v1/session", json=login_of(cloud, person_id).body(int(time.time() * 1000))
        )
        assert answer.status_code == 200, answer.text
        _STAFF_TOKENS[key] = answer.json()["token"]
    http.headers["Authorization"] = f"Bearer {_STAFF_TOKENS[key]}"
    return http


def sign_in_at_terminal(cloud: CloudUnderTest, http: httpx.Client, person_id: str) -> str:
    login = login_of(cloud, person_id)
    answer = http.post("/api/v1/terminal/signin", json={"phone": login.login, "pin": login.secret})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["resident_id"] == person_id
    return str(body["ticket"])


def jpeg(seed: int) -> bytes:
    """A real JPEG (noise, so every seed gives other bytes)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (32, 24), bytes(rng.randrange(256) for _ in range(32 * 24 * 3)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def upload(http: httpx.Client, ticket: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    answer = http.put(
        f"/api/v1/terminal/photos/{digest}",
        content=data,
        headers={"Linli-Ticket": ticket, "Content-Type": "image/jpeg"},
    )
    assert answer.status_code in (200, 201), answer.text
    return digest


def proposal_body(
    http: httpx.Client,
    photos: list[str],
    *,
    category: str = "toys",
    condition: str = "9成新以上",
    age_months: int = 6,
    weight_g: int = 400,
    size: str = "S",
    title: str = "积木 Building blocks",
) -> dict[str, Any]:
    """What a terminal sends: the engine's proposal under the cloud's current context."""
    context = http.get("/api/v1/terminal/context").json()
    correction = context["corrections"].get(category)
    inputs = Inputs(
        category=category,
        condition=condition,
        age_months=age_months,
        weight_g=weight_g,
        photo_count=len(photos),
        demand=Demand(context["demand"]["factors"][category], context["demand"]["snapshot_id"]),
        correction=None if correction is None else Correction.from_json(correction),
    )
    proposal = value(load_policy(context["policy_text"]), inputs)
    return {
        "proposal_id": "prp_" + secrets.token_urlsafe(18),
        "title": title,
        "category": category,
        "size": size,
        "inputs": inputs.to_json(),
        "proposal": proposal.to_json(),
        "photos": photos,
        "weight_mg": weight_g * 1000,
        "open_now": False,
    }


def submit(http: httpx.Client, ticket: str, body: dict[str, Any]) -> httpx.Response:
    return http.post("/api/v1/terminal/proposals", json=body, headers={"Linli-Ticket": ticket})


def dropped_in(cloud: CloudUnderTest, answer: dict[str, Any], boot: str) -> None:
    """The locker reports the donor's door opened, the item inside, the door closed."""
    grant = answer["grant"]
    device, compartment, grant_id = grant["device_id"], grant["compartment"], grant["grant_id"]
    publish_as(
        cloud,
        device,
        [
            event(device, boot, 1, "door_opened", compartment=compartment, grant_id=grant_id),
            event(
                device,
                boot,
                2,
                "occupancy_changed",
                compartment=compartment,
                grant_id=grant_id,
                data={"occupancy": "present"},
            ),
            event(
                device,
                boot,
                3,
                "door_closed",
                compartment=compartment,
                grant_id=grant_id,
                data={"epoch": 0},
            ),
        ],
    )
    wait_for(
        "the item inside", lambda: item_status(cloud, answer["item_id"]) == "pending_approval", 15
    )


def proposed_and_inside(
    cloud: CloudUnderTest, boot: str, **fields: Any
) -> tuple[httpx.Client, str, dict[str, Any], dict[str, Any]]:
    http = terminal_http(cloud)
    ticket = sign_in_at_terminal(cloud, http, WANG)
    photos = [upload(http, ticket, jpeg(i)) for i in range(2)]
    body = proposal_body(http, photos, **fields)
    answer = submit(http, ticket, body)
    assert answer.status_code == 201, answer.text
    dropped_in(cloud, answer.json(), boot)
    return http, ticket, body, answer.json()


# --- terminal authentication and tickets --------------------------------------------------------


def test_only_an_enrolled_terminal_with_its_token_is_admitted(cloud: CloudUnderTest) -> None:
    anonymous = client(cloud)
    assert anonymous.get("/api/v1/terminal/context").status_code == 401
    wrong = terminal_http(cloud, token="x" * 43)
    answer = wrong.get("/api/v1/terminal/context")
    assert (answer.status_code, answer.json()["code"]) == (401, "terminal_unauthorized")
    worker = staff_http(cloud, ZHANG)
    answer = worker.get("/api/v1/terminal/context")
    assert (answer.status_code, answer.json()["code"]) == (403, "forbidden")
    context = terminal_http(cloud).get("/api/v1/terminal/context").json()
    policy = load_policy(context["policy_text"])
    assert policy.version == context["policy_version"]
    assert set(context["demand"]["factors"]) == set(policy.categories)
    assert context["corrections"] == {}  # no decisions yet
    # The token is not stored: only its hash is.
    row = cloud.store.read_one(
        "SELECT http_token_hash FROM devices WHERE id = ?", (cloud.seed.terminal_id,)
    )
    assert row is not None and cloud.seed.terminal_token not in row["http_token_hash"]


def test_a_resident_signs_in_at_the_terminal_and_gets_a_ticket_not_a_session(
    cloud: CloudUnderTest,
) -> None:
    http = terminal_http(cloud)
    sessions_before = cloud.store.read_one("SELECT COUNT(*) FROM sessions")[0]
    ticket = sign_in_at_terminal(cloud, http, WANG)
    assert cloud.store.read_one("SELECT COUNT(*) FROM sessions")[0] == sessions_before
    wrong = http.post(
        "/api/v1/terminal/signin", json={"phone": login_of(cloud, WANG).login, "pin": "135792"}
    )
    assert (wrong.status_code, wrong.json()["code"]) == (401, "not_authenticated")
    staff = login_of(cloud, ZHANG)
    answer = http.post("/api/v1/terminal/signin", json={"phone": staff.login, "pin": "123457"})
    assert answer.status_code in (401, 422)
    # The ticket opens the space check; a tampered, foreign or expired one does not.
    ok = http.get("/api/v1/terminal/space", params={"size": "S"}, headers={"Linli-Ticket": ticket})
    assert ok.status_code == 200 and ok.json()["free"] is True
    body, _, mac = ticket.partition(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    svc = cloud.server.app.state.services.terminal
    expired = svc.ticket_for(Terminal(cloud.seed.terminal_id, "sunny-garden"), WANG, 1)
    foreign = svc.ticket_for(Terminal("terminal-9", "sunny-garden"), WANG, 2**62)
    for bad, code in (
        (tampered, "ticket_invalid"),
        (expired, "ticket_expired"),
        (foreign, "ticket_invalid"),
        ("", "ticket_invalid"),
    ):
        answer = http.get(
            "/api/v1/terminal/space", params={"size": "S"}, headers={"Linli-Ticket": bad}
        )
        assert (answer.status_code, answer.json()["code"]) == (401, code), bad


def test_photos_are_stored_by_their_hash_once_and_bad_ones_change_nothing(
    cloud: CloudUnderTest,
) -> None:
    http = terminal_http(cloud)
    ticket = sign_in_at_terminal(cloud, http, WANG)
    data = jpeg(1)
    digest = hashlib.sha256(data).hexdigest()
    path = f"/api/v1/terminal/photos/{digest}"
    headers = {"Linli-Ticket": ticket}
    assert http.put(path, content=data, headers=headers).status_code == 201
    assert http.put(path, content=data, headers=headers).status_code == 200
    assert (cloud.data_dir / "uploads" / digest).read_bytes() == data
    uploads = cloud.store.read_one("SELECT COUNT(*) FROM uploads")[0]
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    other = jpeg(2)
    for content, target, code in (
        (other, digest, "hash_mismatch"),
        (png, hashlib.sha256(png).hexdigest(), "bad_photo"),
        (b"\xff\xd8\xff" + b"0" * (2 * 1024 * 1024), "0" * 64, "photo_too_large"),
    ):
        answer = http.put(f"/api/v1/terminal/photos/{target}", content=content, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (422, code)
    assert cloud.store.read_one("SELECT COUNT(*) FROM uploads")[0] == uploads
    # Staff of the community see it; no one else.
    assert staff_http(cloud, ZHANG).get(f"/api/v1/photos/{digest}").content == data
    assert staff_http(cloud, ZHANG).get(f"/api/v1/photos/{'1' * 64}").status_code == 404


# --- proposals ---------------------------------------------------------------------------------


def test_a_proposal_is_recorded_once_with_its_grant_and_replays_answer_the_same(
    cloud: CloudUnderTest,
) -> None:
    http = terminal_http(cloud)
    ticket = sign_in_at_terminal(cloud, http, WANG)
    photos = [upload(http, ticket, jpeg(i)) for i in range(3)]
    body = proposal_body(http, photos)
    first = submit(http, ticket, body)
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["status"] == "awaiting_dropoff"
    grant = answer["grant"]
    assert grant["compartment"] == "A1" and grant["code"].isdigit()  # the one free S
    assert grant["opened"] is False and answer["no_grant_reason"] is None
    again = submit(http, ticket, {**body, "open_now": True})  # a retry after a lost answer
    assert again.status_code == 200
    assert again.json()["item_id"] == answer["item_id"]
    assert again.json()["grant"]["grant_id"] == grant["grant_id"]
    conflict = submit(http, ticket, {**body, "title": "别的 Something else"})
    assert (conflict.status_code, conflict.json()["code"]) == (409, "idempotency_conflict")
    assert cloud.store.read_one("SELECT COUNT(*) FROM valuations")[0] == 1
    stored = cloud.store.read_one("SELECT * FROM valuations")
    assert stored["policy_version"] == body["proposal"]["policy_version"]
    assert stored["points"] == body["proposal"]["points"]
    status = http.get(f"/api/v1/terminal/proposals/{body['proposal_id']}").json()
    assert status["status"] == "awaiting_dropoff" and status["decision"] is None


def test_a_proposal_that_does_not_recompute_the_same_is_refused_and_changes_nothing(
    cloud: CloudUnderTest,
) -> None:
    http = terminal_http(cloud)
    ticket = sign_in_at_terminal(cloud, http, WANG)
    photos = [upload(http, ticket, jpeg(7))]
    body = proposal_body(http, photos)
    items_before = cloud.store.read_one("SELECT COUNT(*) FROM items")[0]
    inflated = {**body, "proposal": {**body["proposal"], "points": body["proposal"]["points"] + 50}}
    unknown = {**body, "proposal": {**body["proposal"], "policy_version": "1999-1"}}
    demand = {
        **body,
        "inputs": {**body["inputs"], "demand": {"factor": 1.25, "snapshot_id": "x:2026-W01"}},
    }
    bent = {**body, "inputs": {**body["inputs"], "correction": {"factor": 3.0, "decisions": 1}}}
    missing = {**body, "photos": ["0" * 64]}
    for bad, code in (
        (inflated, "proposal_mismatch"),
        (unknown, "policy_unknown"),
        (demand, "demand_unknown"),
        (bent, "correction_bound"),
        (missing, "photo_missing"),
        ({**body, "inputs": {"category": "toys"}}, "inputs_malformed"),
    ):
        answer = submit(http, ticket, bad)
        assert (answer.status_code, answer.json()["code"]) == (422, code), code
    assert cloud.store.read_one("SELECT COUNT(*) FROM items")[0] == items_before
    assert cloud.store.read_one("SELECT COUNT(*) FROM valuations")[0] == 0


def test_an_abstained_proposal_waits_for_a_worker_who_must_name_the_points(
    cloud: CloudUnderTest,
) -> None:
    _, _, body, answer = proposed_and_inside(cloud, "a" * 12, weight_g=90_000)
    assert body["proposal"]["abstained"] == "weight_implausible"
    worker = staff_http(cloud, ZHANG)
    queue = worker.get("/api/v1/valuations").json()
    (entry,) = [e for e in queue["items"] if e["item_id"] == answer["item_id"]]
    assert entry["valuation"]["abstained"] == "weight_implausible"
    assert entry["valuation"]["weight_g"] == 90_000
    assert len(entry["valuation"]["photos"]) == 2
    path = f"/api/v1/valuations/{answer['item_id']}/decision"
    refused = worker.post(path, json={"decision": "approve", "reason": "ok"})
    assert (refused.status_code, refused.json()["code"]) == (422, "points_needed")
    posted_before, _ = balance(cloud, WANG)
    done = worker.post(path, json={"decision": "adjust", "points": 15, "reason": "a big toy"})
    assert done.status_code == 200, done.text
    assert balance(cloud, WANG)[0] == posted_before + 15


# --- decisions ---------------------------------------------------------------------------------


def test_two_workers_approving_at_the_same_moment_credit_the_donor_once(
    cloud: CloudUnderTest,
) -> None:
    http, _, body, answer = proposed_and_inside(cloud, "b" * 12)
    workers = [staff_http(cloud, ZHANG), staff_http(cloud, SECOND_WORKER)]
    posted_before, _ = balance(cloud, WANG)
    path = f"/api/v1/valuations/{answer['item_id']}/decision"
    barrier = threading.Barrier(2)
    results: list[int] = []

    def approve(worker: httpx.Client) -> None:
        barrier.wait()
        results.append(worker.post(path, json={"decision": "approve", "reason": "ok"}).status_code)

    threads = [threading.Thread(target=approve, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]
    assert balance(cloud, WANG)[0] == posted_before + body["proposal"]["points"]
    decisions = cloud.store.read("SELECT * FROM valuation_decisions")
    assert len(decisions) == 1 and decisions[0]["proposed"] == body["proposal"]["points"]
    # Sent again later: still once.
    again = workers[0].post(path, json={"decision": "approve", "reason": "again"})
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")
    assert balance(cloud, WANG)[0] == posted_before + body["proposal"]["points"]
    status = http.get(f"/api/v1/terminal/proposals/{body['proposal_id']}").json()
    assert status["status"] == "listed" and status["decision"]["decision"] == "approve"


def test_above_the_threshold_a_second_worker_approves_the_same_points(
    cloud: CloudUnderTest,
) -> None:
    _, _, _, answer = proposed_and_inside(cloud, "9" * 12)
    path = f"/api/v1/valuations/{answer['item_id']}/decision"
    zhang, chen = staff_http(cloud, ZHANG), staff_http(cloud, SECOND_WORKER)
    posted_before, _ = balance(cloud, WANG)
    adjust = {"decision": "adjust", "points": 260, "reason": "a rare antique set"}
    first = zhang.post(path, json=adjust)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "awaiting_second_approver"
    assert item_status(cloud, answer["item_id"]) == "pending_approval"
    assert balance(cloud, WANG)[0] == posted_before
    assert cloud.store.read("SELECT * FROM valuation_decisions") == []
    other = chen.post(path, json={**adjust, "points": 300})
    assert (other.status_code, other.json()["code"]) == (409, "second_approval_differs")
    second = chen.post(path, json=adjust)
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "listed"
    assert balance(cloud, WANG)[0] == posted_before + 260
    (decision,) = cloud.store.read("SELECT decision, points, decided_by FROM valuation_decisions")
    assert (decision["decision"], decision["points"], decision["decided_by"]) == (
        "adjust",
        260,
        SECOND_WORKER,
    )


def test_a_rejection_issues_a_return_grant_and_approval_after_it_is_refused(
    cloud: CloudUnderTest,
) -> None:
    _, _, _, answer = proposed_and_inside(cloud, "c" * 12)
    worker = staff_http(cloud, ZHANG)
    path = f"/api/v1/valuations/{answer['item_id']}/decision"
    posted_before, _ = balance(cloud, WANG)
    rejected = worker.post(path, json={"decision": "reject", "reason": "broken parts"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "awaiting_return_to_donor"
    grant = cloud.store.read_one(
        "SELECT purpose, person_id, status FROM grants WHERE id = ?", (rejected.json()["grant_id"],)
    )
    assert (grant["purpose"], grant["person_id"], grant["status"]) == ("pickup", WANG, "active")
    late = worker.post(path, json={"decision": "approve", "reason": "changed my mind"})
    assert (late.status_code, late.json()["code"]) == (409, "invalid_transition")
    assert balance(cloud, WANG)[0] == posted_before
    (decision,) = cloud.store.read("SELECT decision, points FROM valuation_decisions")
    assert (decision["decision"], decision["points"]) == ("reject", 0)


def test_adjustments_teach_the_category_a_bounded_correction_shown_as_its_own_factor(
    make_cloud: Any,
) -> None:
    cloud = make_cloud(correction_bound=0.2)
    worker = staff_http(cloud, ZHANG)
    http, _, body, answer = proposed_and_inside(cloud, "d" * 12)
    proposed = body["proposal"]["points"]
    worker.post(
        f"/api/v1/valuations/{answer['item_id']}/decision",
        json={"decision": "adjust", "points": proposed * 10, "reason": "rare set"},
    ).raise_for_status()
    context = http.get("/api/v1/terminal/context").json()
    correction = context["corrections"]["toys"]
    assert correction == {"factor": pytest.approx(1 + 0.2 / 6, abs=1e-4), "decisions": 1}
    ticket = sign_in_at_terminal(cloud, http, WANG)
    photos = [upload(http, ticket, jpeg(20))]
    second = proposal_body(http, photos)
    names = [f["name"] for f in second["proposal"]["factors"]]
    assert "correction" in names
    assert submit(http, ticket, second).status_code == 201
    report = worker.get("/api/v1/valuations/report").json()
    (toys,) = [c for c in report["categories"] if c["category"] == "toys"]
    assert toys["decisions"] == 1 and toys["adjusted"] == 1 and toys["mean_abs_pct"] == 900.0
    assert report["decisions"] == {"adjust": 1}


def test_corrections_switched_off_give_the_rule_output(make_cloud: Any) -> None:
    cloud = make_cloud(corrections_enabled=False)
    worker = staff_http(cloud, ZHANG)
    http, _, _, answer = proposed_and_inside(cloud, "e" * 12)
    worker.post(
        f"/api/v1/valuations/{answer['item_id']}/decision",
        json={"decision": "adjust", "points": 1, "reason": "worn"},
    ).raise_for_status()
    context = http.get("/api/v1/terminal/context").json()
    assert context["corrections"] == {} and context["corrections_enabled"] is False


def test_auto_approval_is_off_by_default(cloud: CloudUnderTest) -> None:
    _, _, _, answer = proposed_and_inside(cloud, "f" * 12)
    time.sleep(1.5)  # several scheduler periods
    assert item_status(cloud, answer["item_id"]) == "pending_approval"
    assert cloud.store.read("SELECT * FROM valuation_decisions") == []


def test_auto_approval_below_its_threshold_is_capped_per_donor_per_day(make_cloud: Any) -> None:
    cloud = make_cloud(auto_approve_below=100, auto_approve_per_day=1, auto_approve_confidence=0)
    posted_before, _ = balance(cloud, WANG)
    _, _, body, first = proposed_and_inside(cloud, "1" * 12)
    wait_for("auto-approved", lambda: item_status(cloud, first["item_id"]) == "listed", 15)
    assert balance(cloud, WANG)[0] == posted_before + body["proposal"]["points"]
    (decision,) = cloud.store.read("SELECT automatic, decided_by FROM valuation_decisions")
    assert decision["automatic"] == 1 and decision["decided_by"].startswith("auto_")
    _, _, _, second = proposed_and_inside(cloud, "2" * 12)
    time.sleep(1.5)
    assert item_status(cloud, second["item_id"]) == "pending_approval"  # the day's cap


def test_a_new_policy_version_is_checked_whole_and_never_overwrites(cloud: CloudUnderTest) -> None:
    worker = staff_http(cloud, ZHANG)
    current = terminal_http(cloud).get("/api/v1/terminal/context").json()
    text = current["policy_text"]
    old_version = current["policy_version"]
    same = worker.post("/api/v1/valuation-policies", json={"text": text})
    assert (same.status_code, same.json()["code"]) == (409, "policy_exists")
    broken = worker.post("/api/v1/valuation-policies", json={"text": "version = 3\n["})
    assert (broken.status_code, broken.json()["code"]) == (422, "policy_invalid")
    new_text = text.replace(f'version = "{old_version}"', 'version = "2026-11-2"')
    assert new_text != text
    assert worker.post("/api/v1/valuation-policies", json={"text": new_text}).status_code == 201
    context = terminal_http(cloud).get("/api/v1/terminal/context").json()
    assert context["policy_version"] == "2026-11-2"
    listed = worker.get("/api/v1/valuation-policies").json()["items"]
    assert [p["version"] for p in listed] == ["2026-11-2", old_version]
    resident = client(cloud)
    assert resident.post("/api/v1/valuation-policies", json={"text": new_text}).status_code == 401


def test_a_proposal_sent_again_after_an_outage_gets_its_code_by_message_once(
    cloud: CloudUnderTest,
) -> None:
    http = terminal_http(cloud)
    ticket = sign_in_at_terminal(cloud, http, WANG)
    body = proposal_body(http, [upload(http, ticket, jpeg(30))]) | {"open_now": True}
    first = submit(http, ticket, body)  # its answer lost on the way back, say
    assert first.status_code == 201
    grant_id = first.json()["grant"]["grant_id"]

    def messages() -> list[Any]:
        return cloud.store.read(
            "SELECT key FROM notifications WHERE key = ?", (f"new_code:{grant_id}",)
        )

    assert messages() == []  # the resident stood at the kiosk
    for _ in range(2):  # the queue re-sends after the outage, without the resident
        assert submit(http, ticket, body | {"open_now": False}).status_code == 200
    assert len(messages()) == 1


def test_a_proposal_that_found_no_free_door_gets_one_when_a_door_is_free(
    cloud: CloudUnderTest,
) -> None:
    http = terminal_http(cloud)
    ticket = sign_in_at_terminal(cloud, http, WANG)
    answers = []
    for i in range(4):  # large items: the banks have few large doors
        body = proposal_body(http, [upload(http, ticket, jpeg(40 + i))], size="L")
        answer = submit(http, ticket, body)
        assert answer.status_code == 201, answer.text
        answers.append(answer.json())
        if answer.json()["no_grant_reason"] == "no_space":
            break
    waiting = answers[-1]
    assert waiting["no_grant_reason"] == "no_space" and waiting["grant"] is None
    assert waiting["status"] == "proposed"
    # The resident of the first large item withdraws it: its door is free again.
    resident = client(cloud)
    token = resident.post("/api/v1/session", json=login_of(cloud, WANG).body(0)).json()["token"]
    resident.headers["Authorization"] = f"Bearer {token}"
    withdrawn = resident.post(
        f"/api/v1/items/{answers[0]['item_id']}/withdraw", json={"reason": "changed my mind"}
    )
    assert withdrawn.status_code == 200, withdrawn.text
    wait_for(
        "the waiting proposal's drop-off grant",
        lambda: item_status(cloud, waiting["item_id"]) == "awaiting_dropoff",
        45,
    )
    grant = cloud.store.read_one(
        "SELECT id FROM grants WHERE item_id = ? AND purpose = 'dropoff' AND status = 'active'",
        (waiting["item_id"],),
    )
    assert grant is not None
    assert cloud.store.read(
        "SELECT 1 FROM notifications WHERE key = ?", (f"new_code:{grant['id']}",)
    )
