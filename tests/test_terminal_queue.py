"""The terminal's durable proposal queue (valuation_terminal/queue.py) against the real cloud
(the app under uvicorn, tests/conftest.py's ``CloudUnderTest``) behind a TCP gate that can refuse
connections or lose an answer (tests/tcp_gate.py): durability across kill -9 (subprocesses
killed at random, tests/terminal_queue_rig.py), back-off while the cloud is down, exactly one
submission when it returns, the lost-answer and expired-ticket paths, private files, and no
credential in the logs."""

from __future__ import annotations

import hashlib
import io
import logging
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import CloudUnderTest
from PIL import Image
from tcp_gate import TcpGate
from terminal_queue_rig import Target, run_trials

from cloud_api.terminal.service import Terminal
from valuation_terminal.client import TerminalClient
from valuation_terminal.core.rules import Demand, Inputs, load_policy, value
from valuation_terminal.queue import (
    KIOSK_HOLD_MS,
    Attempt,
    ProposalQueue,
    QueueError,
    Sender,
    backoff_ms,
    proposal_body,
)

T0 = 1_800_000_000_000
PHONE, PIN = "13800000001", "246810"  # the demo seed's first resident


class Clock:
    """A wall clock in ms that moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def jpeg(seed: int) -> bytes:
    image = Image.new("RGB", (32, 24), ((seed * 37) % 256, (seed * 91) % 256, seed % 256))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


class Terminal1:
    """The seeded terminal ``terminal-1`` talking to the cloud through a gate."""

    def __init__(self, cloud: CloudUnderTest, gate: TcpGate, data_dir: Path) -> None:
        self.cloud = cloud
        self.gate = gate
        self.data_dir = data_dir
        self.token = cloud.seed.terminal_token
        self.client = TerminalClient(gate.url, "terminal-1", self.token, data_dir, timeout_s=5.0)
        signin = self.client.signin(PHONE, PIN)
        self.resident_id, self.ticket = signin.resident_id, signin.ticket
        context = self.client.fetch_context()
        self.policy = load_policy(context["policy_text"])
        self.demand = context["demand"]

    def proposal(
        self, n: int, photos: int = 2, category: str = "toys"
    ) -> tuple[str, dict[str, Any], dict[str, bytes]]:
        pid = f"prp_test{n:020d}"
        images = {
            hashlib.sha256(j).hexdigest(): j for j in (jpeg(n * 10 + k) for k in range(photos))
        }
        factor = float(self.demand["factors"].get(category, 1.0))
        inputs = Inputs(
            category, "9成新", 12, 400, len(images), Demand(factor, self.demand["snapshot_id"])
        )
        body = proposal_body(
            pid,
            title="LEGO",
            category=category,
            size="M",
            inputs=inputs,
            proposal=value(self.policy, inputs),
            photos=list(images),
            weight_mg=400_200,
        )
        return pid, body, images

    def accepted(self) -> dict[str, int]:
        """proposal_id → how many valuations the cloud recorded for it."""
        rows = self.cloud.store.read(
            "SELECT proposal_key, COUNT(*) AS n FROM valuations GROUP BY proposal_key"
        )
        return {row["proposal_key"]: row["n"] for row in rows}

    def expired_ticket(self) -> str:
        """A ticket of this terminal for the resident, expired an hour ago (the cloud's own
        ticket maker, with a past expiry)."""
        community = self.cloud.store.read_one(
            "SELECT community_id FROM devices WHERE id = ?", ("terminal-1",)
        )
        assert community is not None
        service = self.cloud.server.app.state.services.terminal
        return str(
            service.ticket_for(
                Terminal("terminal-1", community["community_id"]),
                self.resident_id,
                int(time.time() * 1000) - 3_600_000,
            )
        )


@pytest.fixture
def gate(cloud: CloudUnderTest) -> Iterator[TcpGate]:
    port = urlsplit(cloud.url).port
    assert port is not None
    running = TcpGate("127.0.0.1", port).start()
    yield running
    running.close()


@pytest.fixture
def terminal(cloud: CloudUnderTest, gate: TcpGate, tmp_path: Path) -> Terminal1:
    return Terminal1(cloud, gate, tmp_path / "terminal")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _setup(terminal: Terminal1, clock: Clock) -> tuple[ProposalQueue, Sender, str]:
    queue = ProposalQueue(terminal.data_dir)
    return queue, Sender(queue, terminal.client, now_ms=clock), terminal.ticket


# --- durability and privacy ------------------------------------------------------------------


def test_an_enqueued_proposal_is_on_disk_in_private_files(
    terminal: Terminal1, clock: Clock
) -> None:
    queue, _, ticket = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(1)
    row = queue.enqueue(pid, terminal.resident_id, ticket, body, photos, now_ms=clock.now)
    assert row.state == "queued" and row.next_attempt_ms == clock.now + KIOSK_HOLD_MS
    for name in ("terminal.sqlite3", "terminal.sqlite3-wal"):  # the WAL while it is open
        assert stat.S_IMODE((terminal.data_dir / name).stat().st_mode) == 0o600, name
    queue.close()
    for sha, data in photos.items():
        path = terminal.data_dir / "photos" / f"{sha}.jpg"
        assert path.read_bytes() == data and stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ProposalQueue(terminal.data_dir).get(pid)
    assert again is not None and again.body == body and again.ticket == ticket
    assert ticket not in repr(again)


def test_the_queue_refuses_what_it_cannot_send(terminal: Terminal1, clock: Clock) -> None:
    queue, _, ticket = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(2)
    with pytest.raises(QueueError, match="proposal id"):
        queue.enqueue("prp_short", "r", ticket, {**body, "proposal_id": "prp_short"}, photos)
    with pytest.raises(QueueError, match="open_now"):
        queue.enqueue(pid, "r", ticket, {**body, "open_now": True}, photos)
    with pytest.raises(QueueError, match="exactly the photos"):
        queue.enqueue(pid, "r", ticket, body, dict(list(photos.items())[:1]))
    sha = next(iter(photos))
    with pytest.raises(QueueError, match="does not match"):
        queue.enqueue(pid, "r", ticket, body, {**photos, sha: b"\xff\xd8\xffnot it"})
    queue.enqueue(pid, "r", ticket, body, photos)
    queue.enqueue(pid, "r", ticket, body, photos)  # the same again: a no-op
    with pytest.raises(QueueError, match="another body"):
        queue.enqueue(pid, "r", ticket, {**body, "title": "other"}, photos)
    assert len(queue.all()) == 1


def test_photo_files_left_by_a_crash_are_swept_at_open(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir(parents=True)
    orphan = tmp_path / "photos" / f"{'e' * 64}.jpg"
    orphan.write_bytes(b"\xff\xd8\xff")
    (tmp_path / "photos" / f".{'f' * 64}.tmp").write_bytes(b"half")
    ProposalQueue(tmp_path).close()
    assert list((tmp_path / "photos").iterdir()) == []


# --- sending ---------------------------------------------------------------------------------


def test_the_kiosk_attempt_uploads_photos_then_submits_and_keeps_no_code(
    terminal: Terminal1, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue, sender, ticket = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(3)
    queue.enqueue(pid, terminal.resident_id, ticket, body, photos, now_ms=clock.now)
    attempt = sender.attempt(pid, open_now=True)
    assert attempt.state == "done" and attempt.answer is not None
    grant = attempt.answer["grant"]
    assert grant is not None and "code" not in grant
    assert attempt.code.isdigit() and len(attempt.code) == 8  # shown once, never stored
    assert terminal.accepted()[pid] == 1
    stored = terminal.cloud.store.read_one(
        "SELECT photos, weight_mg FROM valuations WHERE proposal_key = ?", (pid,)
    )
    assert stored is not None and sorted(stored["photos"][2:-2].split('", "')) == sorted(photos)
    assert stored["weight_mg"] == 400_200
    row = queue.get(pid)
    assert row is not None and row.state == "done" and row.ticket == ""
    assert row.answer is not None and "code" not in row.answer["grant"]
    assert list((terminal.data_dir / "photos").iterdir()) == []  # accepted: photos forgotten
    for name in ("terminal.sqlite3", "terminal.sqlite3-wal"):
        assert attempt.code.encode() not in (terminal.data_dir / name).read_bytes()
    assert ticket not in caplog.text and attempt.code not in caplog.text
    # a done proposal is not sent again
    before = terminal.gate.connections
    assert sender.attempt(pid, open_now=False).state == "done"
    assert terminal.gate.connections == before


def test_cloud_down_queued_retried_with_back_off_and_submitted_once_when_up(
    terminal: Terminal1, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    queue, sender, ticket = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(4)
    queue.enqueue(pid, terminal.resident_id, ticket, body, photos, now_ms=clock.now)
    terminal.gate.close()
    first = sender.attempt(pid, open_now=True)
    assert first.is_unavailable and first.is_pending
    waits = []
    for _ in range(6):
        row = queue.get(pid)
        assert row is not None
        waits.append((row.next_attempt_ms - clock.now) // 1000)
        clock.now = row.next_attempt_ms - 1
        assert sender.run_due() == 0  # not due yet
        clock.now = row.next_attempt_ms
        assert sender.run_due() == 1
    assert waits == [1, 5, 30, 120, 300, 300]
    assert pid not in terminal.accepted()
    terminal.gate.open()
    row = queue.get(pid)
    assert row is not None
    clock.now = row.next_attempt_ms
    assert sender.run_due() == 1
    assert queue.get(pid).state == "done"  # type: ignore[union-attr]
    assert terminal.accepted()[pid] == 1
    assert caplog.text.count("the cloud is unreachable") == 1
    assert caplog.text.count("the cloud is reachable again") == 1


def test_during_an_outage_one_proposal_probes_for_all(terminal: Terminal1, clock: Clock) -> None:
    queue, sender, ticket = _setup(terminal, clock)
    pids = []
    for n in range(5):
        pid, body, photos = terminal.proposal(10 + n, photos=1)
        queue.enqueue(
            pid, terminal.resident_id, ticket, body, photos, now_ms=clock.now, hold_for_kiosk=False
        )
        pids.append(pid)
    terminal.gate.close()
    assert sender.run_due() == 1  # the first could not reach the cloud: the others wait
    clock.now += 1000
    assert sender.run_due() == 1
    terminal.gate.open()
    clock.now += 5000
    assert sender.run_due() == 5
    assert all(queue.get(p).state == "done" for p in pids)  # type: ignore[union-attr]
    accepted = terminal.accepted()
    assert all(accepted[p] == 1 for p in pids)


def test_a_lost_answer_is_asked_for_again_and_recorded_once(
    terminal: Terminal1, clock: Clock
) -> None:
    queue, sender, ticket = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(5)
    queue.enqueue(pid, terminal.resident_id, ticket, body, photos, now_ms=clock.now)
    for sha, data in photos.items():  # uploaded by an earlier attempt
        terminal.client.put_photo(ticket, sha, data)
        queue.mark_uploaded(pid, sha, clock.now)
    terminal.gate.drop_responses = 1  # the cloud records the proposal; its answer is lost
    assert sender.attempt(pid, open_now=True).is_unavailable
    assert queue.get(pid).state == "submitted"  # type: ignore[union-attr]
    assert terminal.accepted()[pid] == 1
    clock.now += 1000
    assert sender.run_due() == 1  # sent again (open_now=false): the first answer comes back
    row = queue.get(pid)
    assert row is not None and row.state == "done" and row.answer is not None
    assert terminal.accepted()[pid] == 1


def test_an_expired_ticket_waits_for_the_resident_to_sign_in_again(
    terminal: Terminal1, clock: Clock
) -> None:
    queue, sender, _ = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(6)
    queue.enqueue(pid, terminal.resident_id, terminal.expired_ticket(), body, photos)
    attempt = sender.attempt(pid, open_now=True)
    assert (attempt.state, attempt.error_code) == ("needs_signin", "ticket_expired")
    row = queue.get(pid)
    assert row is not None and row.ticket == ""
    assert len(list((terminal.data_dir / "photos").iterdir())) == 2
    clock.now += 3_600_000
    assert sender.run_due() == 0  # waiting for a ticket, not for the cloud
    signin = terminal.client.signin(PHONE, PIN)
    assert queue.renew_ticket(signin.resident_id, signin.ticket, clock.now) == 1
    assert queue.renew_ticket("per_nobody", "x", clock.now) == 0
    assert sender.run_due() == 1
    assert queue.get(pid).state == "done" and terminal.accepted()[pid] == 1  # type: ignore[union-attr]


def test_a_ticket_of_nobody_is_refused_the_same_way(terminal: Terminal1, clock: Clock) -> None:
    queue, sender, _ = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(16)
    queue.enqueue(pid, terminal.resident_id, "not-a-ticket", body, photos)
    attempt = sender.attempt(pid, open_now=True)
    assert (attempt.state, attempt.error_code) == ("needs_signin", "ticket_invalid")


def test_a_photo_the_cloud_lacks_is_uploaded_again(terminal: Terminal1, clock: Clock) -> None:
    queue, sender, ticket = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(7)
    queue.enqueue(pid, terminal.resident_id, ticket, body, photos, now_ms=clock.now)
    for sha in photos:  # marked uploaded, but the cloud never got them (restored from backup)
        queue.mark_uploaded(pid, sha, clock.now)
    assert queue.get(pid).state == "photos_uploaded"  # type: ignore[union-attr]
    attempt = sender.attempt(pid, open_now=True)
    assert (attempt.state, attempt.error_code) == ("queued", "photo_missing")
    clock.now += 1000
    assert sender.run_due() == 1
    assert queue.get(pid).state == "done"  # type: ignore[union-attr]
    assert terminal.accepted()[pid] == 1


def test_a_refused_proposal_keeps_its_code_and_photos(terminal: Terminal1, clock: Clock) -> None:
    queue, sender, ticket = _setup(terminal, clock)
    pid, body, photos = terminal.proposal(8)
    proposal = dict(body["proposal"])
    proposal["points"] += 5  # a proposal the cloud's recomputation does not give
    queue.enqueue(pid, terminal.resident_id, ticket, {**body, "proposal": proposal}, photos)
    attempt = sender.attempt(pid, open_now=True)
    assert (attempt.state, attempt.error_code) == ("refused", "proposal_mismatch")
    row = queue.get(pid)
    assert row is not None and row.error_code == "proposal_mismatch" and row.ticket == ""
    assert len(list((terminal.data_dir / "photos").iterdir())) == 2
    clock.now += 10**9
    assert sender.run_due() == 0 and pid not in terminal.accepted()


def test_a_refused_terminal_token_is_retried_not_given_up(
    terminal: Terminal1, clock: Clock
) -> None:
    client = TerminalClient(terminal.gate.url, "terminal-1", "wrong-token", terminal.data_dir)
    queue = ProposalQueue(terminal.data_dir)
    sender = Sender(queue, client, now_ms=clock)
    pid, body, photos = terminal.proposal(9)
    queue.enqueue(pid, terminal.resident_id, terminal.ticket, body, photos)
    attempt = sender.attempt(pid, open_now=True)
    assert attempt.is_pending and attempt.error_code == "terminal_unauthorized"


def test_the_sender_thread_submits_when_the_cloud_returns(terminal: Terminal1) -> None:
    queue = ProposalQueue(terminal.data_dir)
    sender = Sender(queue, terminal.client).start()
    try:
        terminal.gate.close()
        pid, body, photos = terminal.proposal(11)
        queue.enqueue(
            pid, terminal.resident_id, terminal.ticket, body, photos, hold_for_kiosk=False
        )
        sender.wake()
        deadline = time.monotonic() + 5
        while queue.get(pid).attempts == 0 and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.01)
        assert queue.get(pid).attempts == 1  # type: ignore[union-attr]
        terminal.gate.open()  # before the second attempt, 1 s after the first
        deadline = time.monotonic() + 10
        while queue.get(pid).state != "done" and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.02)
        assert queue.get(pid).state == "done"  # type: ignore[union-attr]
        assert terminal.accepted()[pid] == 1
    finally:
        sender.stop()


def test_back_off_schedule() -> None:
    assert [backoff_ms(n) for n in (1, 2, 3, 4, 5, 9)] == [1000, 5000, 30_000, 120_000] + [
        300_000
    ] * 2


def test_attempt_reprs_hold_no_code() -> None:
    assert "12345678" not in repr(Attempt("prp_x", "done", {}, code="12345678"))


# --- kill -9 -----------------------------------------------------------------------------------

TRIALS = 4


def test_kill_9_at_random_loses_no_confirmed_proposal_and_submits_each_once(
    terminal: Terminal1, tmp_path: Path
) -> None:
    target = Target(
        url=terminal.gate.url,
        device_id="terminal-1",
        token=terminal.token,
        ticket=terminal.ticket,
        accepted=terminal.accepted,
    )
    result = run_trials(tmp_path / "trials", target, TRIALS, seed=20261124)
    assert result.problems == []
    assert result.trials == TRIALS and result.kills >= TRIALS
    assert result.confirmed > TRIALS  # the children really confirmed between kills
    assert result.accepted >= result.confirmed
