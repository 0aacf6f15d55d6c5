"""End to end on a real broker (issue #9, "Done when"): a proposal at the valuation terminal →
the cloud opens the drop-off door of a simulated locker → the item goes in → a social worker
approves over HTTP → the donor is credited once, with the approval sent twice and concurrently.

The real cloud (uvicorn, SQLite) and the real controller daemon (gpiozero's MockFactory, the
door and item simulator) on a private Mosquitto; the terminal's requests are the ones its client
sends (docs/terminal-api.md).
"""

from __future__ import annotations

import threading

import pytest
from conftest import CloudUnderTest, LockerFactory
from test_offline_grants import compartment_is, open_swap_and_close, start_locker
from test_settlement_scenarios import balance, item_status
from test_valuation_api import (
    _close_clients,  # noqa: F401  (the fixture closing the HTTP clients)
    jpeg,
    proposal_body,
    sign_in_at_terminal,
    staff_http,
    submit,
    terminal_http,
    upload,
)

from station.scenarios import wait_for

WANG, ZHANG, SECOND_WORKER = "per_1", "per_3", "per_5"


@pytest.mark.slow
def test_a_proposal_dropped_into_a_locker_and_approved_twice_at_once_credits_once(
    cloud: CloudUnderTest, simulated_locker: LockerFactory
) -> None:
    locker = start_locker(cloud, simulated_locker)
    terminal = terminal_http(cloud)
    ticket = sign_in_at_terminal(cloud, terminal, WANG)
    photos = [upload(terminal, ticket, jpeg(i)) for i in range(3)]
    body = proposal_body(terminal, photos) | {"open_now": True}
    assert body["proposal"]["points"] > 0
    answer = submit(terminal, ticket, body)
    assert answer.status_code == 201, answer.text
    shown = answer.json()
    grant = shown["grant"]
    assert (grant["device_id"], grant["compartment"]) == ("locker-a", "A1")
    assert grant["opened"] is True  # "door A1 is open": the controller pulsed it for the grant

    posted_before, _ = balance(cloud, WANG)
    open_swap_and_close(locker, "A1", take=False, put=True)
    wait_for("the item inside", lambda: item_status(cloud, shown["item_id"]) == "pending_approval")
    assert compartment_is(locker, "A1", occupancy="present", door="closed")
    status = terminal.get(f"/api/v1/terminal/proposals/{body['proposal_id']}").json()
    assert status["status"] == "pending_approval"  # what the kiosk waits for: "thank you"
    assert balance(cloud, WANG)[0] == posted_before  # inside, not yet approved

    # Two social workers approve at the same moment, one of them twice.
    path = f"/api/v1/valuations/{shown['item_id']}/decision"
    workers = [staff_http(cloud, ZHANG), staff_http(cloud, SECOND_WORKER)]
    queue = workers[0].get("/api/v1/valuations").json()["items"]
    (entry,) = [e for e in queue if e["item_id"] == shown["item_id"]]
    assert entry["valuation"]["proposed"] == body["proposal"]["points"]
    assert [p["hash"] for p in entry["valuation"]["photos"]] == photos
    assert workers[0].get(entry["valuation"]["photos"][0]["url"]).content == jpeg(0)
    barrier = threading.Barrier(3)
    codes: list[int] = []

    def approve(index: int) -> None:
        barrier.wait()
        answer = workers[index % 2].post(path, json={"decision": "approve", "reason": "好 good"})
        codes.append(answer.status_code)

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409]
    assert balance(cloud, WANG)[0] == posted_before + body["proposal"]["points"]
    assert item_status(cloud, shown["item_id"]) == "listed"
    credits = cloud.store.read(
        "SELECT amount FROM transfers WHERE kind = 'valuation_credit' AND refs LIKE ?",
        (f'%"{shown["item_id"]}"%',),
    )
    assert [r["amount"] for r in credits] == [body["proposal"]["points"]]
    decided = terminal.get(f"/api/v1/terminal/proposals/{body['proposal_id']}").json()
    assert decided["decision"] == {
        "decision": "approve",
        "points": body["proposal"]["points"],
        "reason": "好 good",
    }
