"""The controller's durable storage: the SQLite outbox, the atomic TinyDB state document, and the
durable part of the core's state — on real files, including a process killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from linli.codes import hash_code
from linli.contract import Grant
from locker_controller.core.model import (
    Compartment,
    ControllerState,
    GrantUse,
    Identity,
    ReplayWindow,
    TimeState,
)
from locker_controller.core.persist import DOCUMENT_VERSION, from_document, to_document
from locker_controller.outbox import ARCHIVE_MS, Outbox, PreviousBoot
from locker_controller.statestore import StateStore

REPO = Path(__file__).resolve().parents[1]
BOOT_A = "aaaaaaaaaaaa"
BOOT_B = "bbbbbbbbbbbb"
T0 = 1_800_000_000_000
CODE_KEY = b"device-code-key-for-the-tests-32"
IDENTITY = Identity(device_id="locker-t1", cloud_keys={}, code_hash_key=CODE_KEY)


def seqs(box: Outbox, boot_id: str | None = None) -> list[int]:
    """Sequence numbers of the pending events (of one boot), in sending order."""
    box.forget_sending()
    return [s for b, s, _ in box.due(None, limit=1_000_000) if boot_id in (None, b)]


# --- outbox -----------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.begin_boot(BOOT_A)
    yield box
    box.close()


def test_outbox_orders_events_by_boot_then_seq_not_by_boot_id(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    assert box.begin_boot(BOOT_B) is None  # boot ids are random: "b..." boots first here
    for seq in (1, 2, 3):
        box.append(BOOT_B, seq, f"b{seq}".encode())
    assert box.begin_boot(BOOT_A) == PreviousBoot(BOOT_B, 3)
    for seq in (1, 2):
        box.append(BOOT_A, seq, f"a{seq}".encode())

    assert box.depth() == 5
    assert box.due(None) == [
        (BOOT_B, 1, b"b1"),
        (BOOT_B, 2, b"b2"),
        (BOOT_B, 3, b"b3"),
        (BOOT_A, 1, b"a1"),
        (BOOT_A, 2, b"a2"),
    ]
    assert box.due(None, limit=2) == [(BOOT_B, 1, b"b1"), (BOOT_B, 2, b"b2")]
    box.close()


def test_outbox_due_is_what_was_never_sent_or_sent_long_ago(outbox: Outbox) -> None:
    for seq in (1, 2, 3):
        outbox.append(BOOT_A, seq, b"x")
    outbox.mark_sent(BOOT_A, 1, mono_ms=100)
    outbox.mark_sent(BOOT_A, 2, mono_ms=500)
    assert outbox.in_flight() == 2
    assert [s for _, s, _ in outbox.due(resend_before_mono_ms=300)] == [1, 3]
    assert [s for _, s, _ in outbox.due(resend_before_mono_ms=600)] == [1, 2, 3]
    assert [s for _, s, _ in outbox.due(resend_before_mono_ms=50)] == [3]
    assert [s for _, s, _ in outbox.due(None)] == [3]
    outbox.forget_sending()  # a new connection: nothing is in flight
    assert outbox.in_flight() == 0
    assert [s for _, s, _ in outbox.due(None)] == [1, 2, 3]


def test_outbox_ack_is_cumulative_per_boot_and_archives(outbox: Outbox) -> None:
    for seq in range(1, 6):
        outbox.append(BOOT_A, seq, b"a")
        outbox.append(BOOT_B, seq, b"b")

    assert outbox.acknowledge(BOOT_A, 3) == 3
    assert seqs(outbox, BOOT_A) == [4, 5]
    assert seqs(outbox, BOOT_B) == [1, 2, 3, 4, 5]
    assert outbox.acknowledge(BOOT_A, 3) == 0  # a repeated ack changes nothing
    assert outbox.acknowledge("cccccccccccc", 100) == 0
    assert (outbox.depth(), outbox.archived()) == (7, 3)
    assert outbox.acknowledge(BOOT_A, 100) == 2
    assert (outbox.depth(), outbox.archived()) == (5, 5)
    assert seqs(outbox, BOOT_B) == [1, 2, 3, 4, 5]


def test_an_ack_lower_than_one_applied_replays_the_archive(outbox: Outbox) -> None:
    """A cloud restored from a backup acknowledges less than it once did: what it lost is sent
    again from the archive, in order, and acknowledged again."""
    for seq in range(1, 6):
        outbox.append(BOOT_A, seq, f"a{seq}".encode())
    assert outbox.acknowledge(BOOT_A, 5) == 5
    assert outbox.depth() == 0

    assert outbox.acknowledge(BOOT_A, 2) == -3
    assert outbox.due(None) == [(BOOT_A, 3, b"a3"), (BOOT_A, 4, b"a4"), (BOOT_A, 5, b"a5")]
    assert outbox.acknowledge(BOOT_A, 5) == 3
    assert (outbox.depth(), outbox.archived()) == (0, 5)


def test_events_committed_together_are_all_there_or_none(outbox: Outbox) -> None:
    outbox.append(BOOT_A, 2, b"taken")
    with pytest.raises(sqlite3.IntegrityError):
        outbox.append_all([(BOOT_A, 1, b"one", 0), (BOOT_A, 2, b"clash", 0)])
    assert outbox.due(None) == [(BOOT_A, 2, b"taken")]
    outbox.append_all([(BOOT_A, 1, b"one", 0), (BOOT_A, 3, b"three", 0)])
    assert seqs(outbox) == [1, 2, 3]


def test_an_ack_leaves_later_events_in_flight(outbox: Outbox) -> None:
    for seq in (1, 2, 3):
        outbox.append(BOOT_A, seq, b"x")
        outbox.mark_sent(BOOT_A, seq, mono_ms=100)
    assert outbox.acknowledge(BOOT_A, 1) == 1
    assert outbox.in_flight() == 2
    assert outbox.due(None) == []  # 2 and 3 are still on their way: not sent twice


def test_outbox_never_overwrites_an_event(outbox: Outbox) -> None:
    outbox.append(BOOT_A, 1, b"first")
    with pytest.raises(sqlite3.IntegrityError):
        outbox.append(BOOT_A, 1, b"second")
    assert outbox.due(None) == [(BOOT_A, 1, b"first")]


def test_outbox_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "data" / "outbox.sqlite3"
    box = Outbox(path)
    box.begin_boot(BOOT_A)
    payloads = {seq: bytes([seq]) * seq + b"\x00\xff" for seq in range(1, 8)}
    for seq, payload in payloads.items():
        box.append(BOOT_A, seq, payload)
    box.mark_sent(BOOT_A, 2, mono_ms=10)
    box.acknowledge(BOOT_A, 1)
    box.close()

    reopened = Outbox(path)
    try:
        assert reopened.begin_boot(BOOT_B) == PreviousBoot(BOOT_A, 7)
        assert reopened.in_flight() == 0  # a new process has nothing in flight
        assert reopened.due(None) == [(BOOT_A, s, p) for s, p in payloads.items() if s > 1]
        assert (reopened.depth(), reopened.archived()) == (6, 1)
    finally:
        reopened.close()


def test_the_archive_is_bounded_by_age_and_count_and_never_drops_pending(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = 24 * 60 * 60 * 1000
    for seq in range(1, 11):
        outbox.append(BOOT_A, seq, b"x", wall_ms=T0 + seq * day)
    outbox.acknowledge(BOOT_A, 8)

    assert outbox.prune(T0 + 8 * day + ARCHIVE_MS) == 7  # acknowledged and older than 30 days
    assert (outbox.depth(), outbox.archived()) == (2, 1)
    monkeypatch.setattr("locker_controller.outbox.ARCHIVE_MAX_EVENTS", 0)
    assert outbox.prune(T0) == 1
    assert outbox.prune(T0 + 1000 * day) == 0  # pending events stay, however old
    assert seqs(outbox) == [9, 10]


def test_an_outbox_of_version_1_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events (boot_id TEXT NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,"
        " sent_mono_ms INTEGER, PRIMARY KEY (boot_id, seq)) WITHOUT ROWID"
    )
    db.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)", [(BOOT_B, 1, b"1", None), (BOOT_B, 2, b"2", 7)]
    )
    db.commit()
    db.close()

    box = Outbox(path)
    assert box.begin_boot(BOOT_A) == PreviousBoot(BOOT_B, 2)
    box.append(BOOT_A, 1, b"new")
    assert seqs(box) == [1, 2, 1]
    assert [b for b, _, _ in box.due(None)] == [BOOT_B, BOOT_B, BOOT_A]  # old events first
    box.close()


# --- state store ------------------------------------------------------------------------------


DOC: dict[str, Any] = {
    "document_version": 1,
    "grants": [{"grant_id": "grt_1", "epoch": 0}],
    "uses": {"grt_1": [1, T0, False]},
    "note": "邻里",
}


def file_identity(path: Path) -> tuple[int, int, bytes]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


def test_state_store_first_boot_has_no_document(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    assert store.load() is None
    store.close()


def test_state_store_round_trips_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateStore(path)
    assert store.save(DOC) is True
    store.close()

    again = StateStore(path)
    assert again.load() == DOC
    changed = {**DOC, "uses": {"grt_1": [2, T0, True]}}
    assert again.save(changed) is True
    again.close()
    third = StateStore(path)
    assert third.load() == changed
    third.close()


def test_state_store_does_not_rewrite_an_unchanged_document(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateStore(path)
    assert store.save(DOC) is True
    before = file_identity(path)  # every write renames a new file in: a new inode
    assert store.save(json.loads(json.dumps(DOC))) is False
    assert file_identity(path) == before
    store.close()

    reopened = StateStore(path)
    reopened.load()
    assert reopened.save(json.loads(json.dumps(DOC))) is False
    assert file_identity(path) == before
    reopened.close()


def test_a_leftover_temporary_file_does_not_corrupt_the_document(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateStore(path)
    store.save(DOC)
    store.close()
    # A crash between writing the temporary file and renaming it leaves half a document behind.
    (tmp_path / "state.json.tmp").write_text('{"_default": {"1": {"grants": [', encoding="utf-8")

    reopened = StateStore(path)
    assert reopened.load() == DOC
    newer = {**DOC, "note": "newer"}
    assert reopened.save(newer) is True
    reopened.close()
    final = StateStore(path)
    assert final.load() == newer
    final.close()


def test_the_document_is_never_partially_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    store = StateStore(path)
    store.save(DOC)
    old_bytes = path.read_bytes()
    real_dump = json.dump

    def dump_half_then_fail(obj: Any, handle: Any, **kwargs: Any) -> None:
        text = json.dumps(obj, **kwargs)
        handle.write(text[: len(text) // 2])
        handle.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        store.save({**DOC, "note": "lost in the crash"})
    assert path.read_bytes() == old_bytes
    other = StateStore(path)
    assert other.load() == DOC
    other.close()

    monkeypatch.setattr(json, "dump", real_dump)
    newer = {**DOC, "note": "after the disk was freed"}
    assert store.save(newer) is True  # the failed write was not taken as saved
    store.close()
    final = StateStore(path)
    assert final.load() == newer
    final.close()


# --- the durable part of the core's state -----------------------------------------------------


def grant(
    grant_id: str, code: str, compartment: str = "A1", until_ms: int = T0 + 3_600_000
) -> Grant:
    return Grant(
        grant_id=grant_id,
        compartment=compartment,
        purpose="pickup",
        valid_from_ms=T0 - 1_000,
        valid_until_ms=until_ms,
        code_hash=hash_code(CODE_KEY, code),
        epoch=3,
    )


def busy_state() -> ControllerState:
    g1, g2, g3 = (
        grant("grt_1", "11111111"),
        grant("grt_2", "22222222", "A2"),
        grant("grt_3", "33333333"),
    )
    return ControllerState(
        identity=IDENTITY,
        compartments={
            "A1": Compartment(
                "A1",
                size="L",
                pulse_ms=700,
                latch="unlocked",
                door="open",
                occupancy="present",
                epoch=3,
                last_pulse_mono_ms=5_000,
                opened_by="grt_1",
                opened_purpose="pickup",
            ),
            "A2": Compartment("A2", size="S", latch="locked", door="closed", occupancy="absent"),
            "GONE": Compartment("GONE", epoch=9),  # no longer wired on this board
        },
        cfg_version=7,
        cfg_issued_at_ms=T0 - 50,
        grants={g1.code_hash: g1, g2.code_hash: g2},
        uses={
            "grt_1": GrantUse(pulses=2, first_pulse_wall_ms=T0, is_consumed=True),
            "grt_2": GrantUse(pulses=1, first_pulse_wall_ms=T0 + 5, is_consumed=False),
            "grt_3": GrantUse(pulses=1, first_pulse_wall_ms=T0 - 9, is_consumed=True),
        },
        retired={g3.code_hash: g3},
        window=ReplayWindow().accept(5).accept(9).accept(70),
        time=TimeState(floor_wall_ms=T0 + 123, offset_ms=42, synced_at_mono_ms=1),
        refused_inputs=4,
    )  # fmt: skip


def test_durable_state_round_trips_through_the_real_store(tmp_path: Path) -> None:
    state = busy_state()
    store = StateStore(tmp_path / "state.json")
    store.save(to_document(state))
    store.close()
    reopened = StateStore(tmp_path / "state.json")
    restored = from_document(IDENTITY, ["A1", "A2", "A3"], reopened.load())
    reopened.close()

    assert restored.cfg_version == 7
    assert restored.cfg_issued_at_ms == T0 - 50
    assert restored.grants == state.grants
    assert restored.retired == state.retired
    assert restored.uses == state.uses
    assert restored.window == state.window
    assert restored.window.check(70) == "duplicate"
    assert restored.window.check(5) == "outside_window"
    assert restored.window.check(9) == "duplicate"
    assert restored.time == TimeState(floor_wall_ms=T0 + 123)  # this boot's offset is not kept
    assert set(restored.compartments) == {"A1", "A2", "A3"}  # as wired now
    a1 = restored.compartments["A1"]
    assert (a1.size, a1.pulse_ms, a1.epoch) == ("L", 700, 3)
    assert restored.compartments["A3"] == Compartment("A3")
    for c in restored.compartments.values():
        assert (c.latch, c.door, c.occupancy) == ("unknown", "unknown", "unknown")
        assert (c.last_pulse_mono_ms, c.opened_by, c.opened_purpose) == (None, None, None)
    # The document is stable: saving the restored state changes nothing on disk.
    assert to_document(restored)["uses"] == to_document(state)["uses"]


def test_first_boot_starts_from_defaults() -> None:
    state = from_document(IDENTITY, ["A1", "A2"], None)
    assert state == ControllerState(
        identity=IDENTITY, compartments={"A1": Compartment("A1"), "A2": Compartment("A2")}
    )


def test_a_document_of_an_unknown_version_is_refused() -> None:
    document = to_document(busy_state())
    document["document_version"] = DOCUMENT_VERSION + 1
    with pytest.raises(ValueError, match="unsupported state document version"):
        from_document(IDENTITY, ["A1"], document)


# --- kill -9 ----------------------------------------------------------------------------------

WRITER = r"""
import sys
from pathlib import Path
from locker_controller.outbox import ARCHIVE_MS, Outbox, PreviousBoot
from locker_controller.statestore import StateStore

data = Path(sys.argv[1])
box = Outbox(data / "outbox.sqlite3")
store = StateStore(data / "state.json")
print("ready", flush=True)
seq = 0
while True:
    seq += 1
    box.append("0123456789ab", seq, b'{"seq":%d}' % seq)
    store.save({"seq": seq, "grants": ["grt_%d" % i for i in range(seq % 40)], "note": "邻里"})
"""


@pytest.mark.parametrize("trial", range(5))
def test_kill_9_while_writing_loses_no_committed_event(tmp_path: Path, trial: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as writer:
        assert writer.stdout is not None
        ready = writer.stdout.readline()
        if ready != b"ready\n":
            writer.kill()
            _, err = writer.communicate()
            pytest.fail(f"writer did not start: {err.decode(errors='replace')}")
        time.sleep(0.3 + 0.02 * trial)  # let it write; the kill lands somewhere in the loop
        writer.kill()  # SIGKILL
        writer.communicate()
    assert writer.returncode == -9

    box = Outbox(tmp_path / "outbox.sqlite3")
    try:
        rows = box.due(None, limit=10_000_000)
    finally:
        box.close()
    k = len(rows)
    assert k > 0
    assert [s for _, s, _ in rows] == list(range(1, k + 1))
    assert all(p == b'{"seq":%d}' % s for _, s, p in rows)

    store = StateStore(tmp_path / "state.json")
    document = store.load()
    store.close()
    assert document is not None
    # Each loop appends seq before saving it: the document is the last save or the one before.
    assert document["seq"] in (k - 1, k)
    assert document["grants"] == [f"grt_{i}" for i in range(document["seq"] % 40)]
    assert document["note"] == "邻里"


def test_a_document_mutated_in_place_and_saved_again_is_written(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    document = {"cfg_version": 1}
    assert store.save(document)
    document["cfg_version"] = 2  # the caller reuses its dict
    assert store.save(document)
    store.close()
    reopened = StateStore(tmp_path / "state.json")
    assert reopened.load() == {"cfg_version": 2}
    reopened.close()
