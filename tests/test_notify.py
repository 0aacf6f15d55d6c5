"""Notifications (issue #8 part 5): the pure rules as tables, the deliverer on a real seeded store
with a fake clock, the SMS and WeChat adapters against real HTTP servers on free ports, the
secret canary, and kill -9 between queueing and sending and between sending and marking.

"Done when": a new code reaches the log adapter exactly once, also across a crash between
queueing and sending (:func:`test_a_crash_between_sending_and_marking_sends_once`,
:func:`test_a_crash_between_queueing_and_sending_sends_once`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydantic
import pytest

from cloud_api.core.notify import (
    DAY_MS,
    GIVE_UP_MS,
    HOUR_MS,
    MAX_ATTEMPTS,
    MINUTE_MS,
    REDACTED,
    Attempt,
    Defer,
    GiveUp,
    QuietHours,
    RenderError,
    backoff_ms,
    catalog_key,
    format_time,
    parse_hh_mm,
    placeholders,
    plan,
    reminder_at,
    render,
    retry_at,
)
from cloud_api.grants.service import code_of, end_grant, issue_grant
from cloud_api.keys import CloudKeys, load_or_create_keys
from cloud_api.notify.adapters import (
    LOG_FILE,
    LogNotifier,
    SmsGatewayNotifier,
    WeChatTemplateNotifier,
    notifier_routing,
)
from cloud_api.notify.outbox import KINDS, enqueue
from cloud_api.notify.service import (
    CLAIM_LEASE_MS,
    Deliverer,
    Notifier,
    Outgoing,
    Permanent,
    Retryable,
    Unreachable,
    notify_jobs,
)
from cloud_api.seed import LOGINS, seed_demo
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from linli.clock import FakeClock
from linli.crash import LABELS
from linli.i18n import LANGUAGES, catalog

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000_000
"""2027-01-15 16:00 in the community (UTC+8): an afternoon."""
MIDNIGHT = T0 - 16 * HOUR_MS
"""Local midnight starting that day."""
QUIET = QuietHours.parse("21:30", "07:30")
PHONE = LOGINS[0].login  # the seeded resident per_1's phone (a canary: never in a log)
SMS_TOKEN = "sms-gateway-token-7f3a9c"
WECHAT_SECRET = "wechat-app-secret-5be21d"
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
TEMPLATES = {kind: f"tpl-{kind}" for kind in KINDS}


def local(hh_mm: str, day: int = 0) -> int:
    """The instant of a local time of day, ``day`` days after 2027-01-15."""
    return MIDNIGHT + day * DAY_MS + parse_hh_mm(hh_mm) * MINUTE_MS


# --- the pure core --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quiet", "at", "is_quiet", "ends", "began"),
    [
        # 21:30–07:30, across midnight
        (QUIET, local("16:00"), False, None, None),
        (QUIET, local("21:29"), False, None, None),
        (QUIET, local("21:30"), True, local("07:30", 1), local("21:30")),
        (QUIET, local("23:59"), True, local("07:30", 1), local("21:30")),
        (QUIET, local("00:00", 1), True, local("07:30", 1), local("21:30")),
        (QUIET, local("03:10", 1), True, local("07:30", 1), local("21:30")),
        (QUIET, local("07:29", 1) + 59_999, True, local("07:30", 1), local("21:30")),
        (QUIET, local("07:30", 1), False, None, None),
        # a window within one day
        (QuietHours.parse("12:00", "14:00"), local("11:59"), False, None, None),
        (QuietHours.parse("12:00", "14:00"), local("13:00"), True, local("14:00"), local("12:00")),
        (QuietHours.parse("12:00", "14:00"), local("14:00"), False, None, None),
        # equal start and end: no quiet hours
        (QuietHours.parse("00:00", "00:00"), local("03:00"), False, None, None),
    ],
)
def test_quiet_hours(
    quiet: QuietHours, at: int, is_quiet: bool, ends: int | None, began: int | None
) -> None:
    assert quiet.is_quiet(at) is is_quiet
    assert quiet.end_after(at) == (ends if is_quiet else at)
    assert quiet.start_before(at) == (began if is_quiet else at)
    assert quiet.defer(at, is_urgent=False) == quiet.end_after(at)
    assert quiet.defer(at, is_urgent=True) == at


@pytest.mark.parametrize("bad", ["24:00", "7:30", "07:60", "", "07:30:00"])
def test_quiet_hours_refuse_a_malformed_time(bad: str) -> None:
    with pytest.raises(ValueError):
        QuietHours.parse(bad, "07:30")


@pytest.mark.parametrize(
    ("attempts", "wait_s"),
    [(1, 30), (2, 120), (3, 600), (4, 3600), (5, 21600), (6, 21600), (9, 21600)],
)
def test_backoff(attempts: int, wait_s: int) -> None:
    assert backoff_ms(attempts) == wait_s * 1000


def retry(attempts: int, created: int, now: int, *, urgent: bool = False, quiet: QuietHours = QUIET) -> int | None:  # fmt: skip
    return retry_at(
        attempts=attempts, created_ms=created, is_urgent=urgent, now_ms=now, quiet=quiet
    )


def test_retries_stop_within_24_hours_and_10_attempts() -> None:
    never_quiet = QuietHours(0, 0)
    created = local("10:00")
    schedule = [created]
    while (at := retry(len(schedule), created, schedule[-1], quiet=never_quiet)) is not None:
        schedule.append(at)
    offsets_s = [(at - created) // 1000 for at in schedule]
    assert offsets_s == [0, 30, 150, 750, 4350, 25950, 47550, 69150]  # the 9th would be 25 h on
    assert retry(MAX_ATTEMPTS, created, created, urgent=True) is None
    # a retry due in quiet hours waits for their end; an urgent one does not
    assert retry(1, local("21:00"), local("21:29") + 45_000) == local("07:30", 1)
    assert retry(1, local("21:00"), local("21:29") + 45_000, urgent=True) == local("21:30") + 15_000
    # a message that quiet hours would hold past 24 h after queueing is given up
    assert retry(2, local("07:00"), local("21:29") + 45_000) is None
    assert retry(2, local("08:00"), local("21:29") + 45_000) == local("07:30", 1)


@pytest.mark.parametrize(
    ("attempts", "created", "is_urgent", "now", "expected"),
    [
        (0, local("16:00"), False, local("16:00"), Attempt()),
        (3, local("16:00"), False, local("18:00"), Attempt()),
        (0, local("22:00"), False, local("22:00"), Defer(local("07:30", 1))),
        (0, local("22:00"), True, local("22:00"), Attempt()),
        (MAX_ATTEMPTS, local("16:00"), False, local("17:00"), GiveUp("gave up after 10 attempts")),
        (
            1,
            local("16:00"),
            False,
            local("16:00", 1),
            GiveUp("not sent within 24 h of being queued"),
        ),
    ],
)
def test_plan(attempts: int, created: int, is_urgent: bool, now: int, expected: object) -> None:
    assert (
        plan(attempts=attempts, created_ms=created, is_urgent=is_urgent, now_ms=now, quiet=QUIET)
        == expected
    )


@pytest.mark.parametrize(
    ("expires", "reminded"),
    [
        (local("16:00", 2), local("10:00", 2)),  # 6 h before
        (local("09:00", 2), local("03:00", 2)),  # in quiet hours: delivered 07:30, 1.5 h before
        (local("05:00", 2), local("21:15", 1)),  # 07:30 would be too late: the evening before
        (local("03:00", 2), local("21:00", 1)),  # 6 h before, just before quiet hours
    ],
)
def test_reminder_time(expires: int, reminded: int) -> None:
    at = reminder_at(expires, QUIET)
    assert at == reminded
    assert QUIET.end_after(at) <= expires - HOUR_MS  # always at least an hour's notice


MESSAGES = [
    ("new_code", {"purpose": "pickup"}),
    ("new_code", {"purpose": "dropoff"}),
    ("new_code", {"purpose": "return"}),
    ("code_expiring", {}),
    ("valuation_decision", {"decision": "approved"}),
    ("valuation_decision", {"decision": "rejected"}),
    ("loan_due", {}),
    ("item_to_collect", {}),
]
VALUES = {
    "item": "电热水壶 Electric kettle",
    "code": "04817263",
    "locker": "1号柜 Locker A",
    "compartment": "A2",
    "until": "1月17日 16:00",
    "points": "12",
    "reason": "有破损",
    "due": "1月20日 18:30",
}


def test_every_notify_message_of_the_catalogs_is_reachable() -> None:
    reachable = {catalog_key(kind, **extra) for kind, extra in MESSAGES}
    for language in LANGUAGES:
        assert {k for k in catalog(language) if k.startswith("notify.")} == reachable


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("kind", "extra"), MESSAGES)
def test_rendering_fills_every_placeholder(kind: str, extra: dict[str, str], language: str) -> None:
    key = catalog_key(kind, **extra)
    needed = placeholders(key, language)
    text = render(key, {name: VALUES[name] for name in needed}, language)
    assert "{" not in text and "}" not in text
    for name in needed:
        assert VALUES[name] in text
    assert ("code" in needed) == (kind == "new_code")
    with pytest.raises(RenderError, match="needs"):
        render(key, {name: VALUES[name] for name in sorted(needed)[1:]}, language)


def test_rendering_refuses_what_it_cannot_say() -> None:
    with pytest.raises(RenderError):
        catalog_key("new_code", purpose="maintenance")
    with pytest.raises(RenderError):
        catalog_key("valuation_decision", decision="maybe")
    with pytest.raises(RenderError):
        catalog_key("birthday")


@pytest.mark.parametrize(
    ("at", "language", "text"),
    [
        (T0, "zh-CN", "1月15日 16:00"),
        (T0, "en", "15 Jan 16:00"),
        (local("23:59", 16), "zh-CN", "1月31日 23:59"),
        (local("00:05", 17), "en", "1 Feb 00:05"),
        (T0, "fr", "1月15日 16:00"),  # unknown language: the default
    ],
)
def test_times_are_local(at: int, language: str, text: str) -> None:
    assert format_time(at, language) == text


# --- a seeded store -------------------------------------------------------------------------------


@dataclass
class Recorder:
    """A notifier that records what it was given; ``errors`` are raised first, one per send."""

    clock: FakeClock
    channel: str = "sms"
    errors: list[BaseException] = field(default_factory=list)
    sent: list[Outgoing] = field(default_factory=list)
    tried_at: list[int] = field(default_factory=list)

    def send(self, message: Outgoing) -> None:
        self.tried_at.append(self.clock.now().wall_ms)
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(message)


@dataclass
class Seeded:
    data_dir: Path
    store: Store
    keys: CloudKeys
    clock: FakeClock

    def deliverer(self, notifier: Notifier | Callable[[str], Notifier]) -> Deliverer:
        route = notifier if callable(notifier) else (lambda channel: notifier)
        return Deliverer(self.store, self.keys, self.clock, route, quiet=QUIET)

    def deliver(self, deliverer: Deliverer) -> int:
        return deliverer.deliver_due(self.clock.now().wall_ms)

    def row(self, message_id: str) -> sqlite3.Row:
        row = self.store.read_one("SELECT * FROM notifications WHERE id = ?", (message_id,))
        assert row is not None
        return row

    def kettle_grant(self) -> sqlite3.Row:
        row = self.store.read_one("SELECT * FROM grants WHERE item_id = 'itm_kettle'")
        assert row is not None
        return row

    def new_code_message(self) -> str:
        """The kettle's new-code message (queued by the reservation; queued here if not)."""
        grant = self.kettle_grant()
        with self.store.write() as db:
            enqueue(
                db,
                person_id="per_1",
                kind="new_code",
                key=f"new_code:{grant['id']}",
                params={"grant_id": grant["id"]},
                now_ms=grant["created_ms"],
            )
        row = self.store.read_one(
            "SELECT id FROM notifications WHERE key = ?", (f"new_code:{grant['id']}",)
        )
        assert row is not None
        return str(row["id"])

    def queue(
        self, person: str, kind: str, key: str, *, is_urgent: bool = False, **params: Any
    ) -> str:
        with self.store.write() as db:
            message_id = enqueue(
                db,
                person_id=person,
                kind=kind,
                key=key,
                params=params,
                now_ms=self.clock.now().wall_ms,
                is_urgent=is_urgent,
            )
        assert message_id is not None
        return message_id


def seed_at(data_dir: Path, now_ms: int) -> Seeded:
    store = Store(data_dir / "cloud.sqlite3")
    store.migrate()
    keys = load_or_create_keys(data_dir / "secrets")
    seed_demo(store, keys, now_ms)
    return Seeded(data_dir, store, keys, FakeClock(wall_ms=now_ms, mono_ms=1_000))


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    seeded = seed_at(tmp_path, T0)
    yield seeded
    seeded.store.close()


def test_a_new_code_reaches_the_resident_once(seeded: Seeded) -> None:
    message_id = seeded.new_code_message()
    grant = seeded.kettle_grant()
    code = code_of(seeded.keys, grant["id"], grant["code_counter"])
    recorder = Recorder(seeded.clock)
    deliverer = seeded.deliverer(recorder)

    assert seeded.deliver(deliverer) == 1
    assert seeded.deliver(deliverer) == 0

    (message,) = recorder.sent
    assert message.id == message_id and message.person_id == "per_1"
    assert message.channel == "sms" and message.language == "zh-CN" and message.phone == PHONE
    assert message.text == (
        f"邻里：电热水壶 Electric kettle 的取件码是 {code}，"
        "请在 1月17日 16:00 前到 1号柜 Locker A A2 号格口取件。"
    )
    assert message.redacted == message.text.replace(code, REDACTED)
    assert code not in message.redacted and PHONE not in repr(message) and code not in repr(message)
    row = seeded.row(message_id)
    assert (row["status"], row["channel"], row["sent_ms"], row["attempts"]) == (
        "sent",
        "sms",
        T0,
        1,
    )
    assert "code" not in json.loads(row["params"])  # no code is stored


def test_a_resident_reading_english_gets_english(seeded: Seeded) -> None:
    message_id = seeded.new_code_message()
    with seeded.store.write() as db:
        db.execute("UPDATE people SET language = 'en' WHERE id = 'per_1'")
    recorder = Recorder(seeded.clock)
    seeded.deliver(seeded.deliverer(recorder))
    (message,) = recorder.sent
    assert message.id == message_id and message.language == "en"
    assert message.redacted == (
        "Linli: the pickup code for 电热水壶 Electric kettle is ********. Please collect it from "
        "1号柜 Locker A, door A2, before 17 Jan 16:00."
    )


def test_every_kind_is_written_from_the_store(seeded: Seeded) -> None:
    seeded.new_code_message()
    seeded.queue(
        "per_2",
        "valuation_decision",
        "vd:books",
        item_id="itm_books",
        decision="approved",
        points=5,
        reason="ok",
    )
    seeded.queue(
        "per_2",
        "valuation_decision",
        "vd:coat",
        item_id="itm_coat",
        decision="rejected",
        points=0,
        reason="有破损",
    )
    seeded.queue("per_1", "loan_due", "loan:kettle", item_id="itm_kettle", due_ms=T0 + 3 * DAY_MS)
    seeded.queue("per_2", "item_to_collect", "collect:coat", item_id="itm_coat")
    recorder = Recorder(seeded.clock)
    assert seeded.deliver(seeded.deliverer(recorder)) == 5
    texts = {
        m.kind + (":" + m.values.get("points", "") if "points" in m.values else ""): m.text
        for m in recorder.sent
    }
    assert (
        texts["valuation_decision:5"]
        == "邻里：您捐出的 儿童绘本 5 本 Picture books 已通过审核，获得 5 积分。谢谢您！"
    )
    assert (
        texts["valuation_decision:0"]
        == "邻里：您捐出的 冬季外套 Winter coat 未能上架（有破损），请到 2号柜 Locker B A4 号格口取回。"
    )
    assert (
        texts["loan_due"]
        == "邻里：您借的 电热水壶 Electric kettle 应在 1月18日 16:00 前归还，请在网页上点“归还”获取归还码。"
    )
    assert (
        texts["item_to_collect"]
        == "邻里：冬季外套 Winter coat 在 2号柜 Locker B A4 号格口等您取回。"
    )
    assert all("{" not in m.text for m in recorder.sent)


def test_a_failed_attempt_is_retried_with_back_off(seeded: Seeded) -> None:
    message_id = seeded.new_code_message()
    recorder = Recorder(
        seeded.clock, errors=[Retryable("gateway busy"), Unreachable("gateway down")]
    )
    deliverer = seeded.deliverer(recorder)

    assert seeded.deliver(deliverer) == 1
    row = seeded.row(message_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("queued", 1, "gateway busy")
    assert row["next_attempt_ms"] == T0 + 30_000
    seeded.clock.advance(29_999)
    assert seeded.deliver(deliverer) == 0
    seeded.clock.advance(1)
    assert seeded.deliver(deliverer) == 1
    assert seeded.row(message_id)["next_attempt_ms"] == T0 + 30_000 + 120_000
    seeded.clock.advance(120_000)
    assert seeded.deliver(deliverer) == 1
    row = seeded.row(message_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert len(recorder.sent) == 1


def test_a_message_that_keeps_failing_is_given_up_within_a_day_never_in_quiet_hours(
    seeded: Seeded,
) -> None:
    message_id = seeded.new_code_message()
    recorder = Recorder(seeded.clock, errors=[Retryable("down")] * 50)
    deliverer = seeded.deliverer(recorder)
    while seeded.row(message_id)["status"] == "queued":
        seeded.clock.set_wall(
            max(seeded.clock.now().wall_ms, seeded.row(message_id)["next_attempt_ms"])
        )
        seeded.deliver(deliverer)
    row = seeded.row(message_id)
    assert row["status"] == "failed" and row["last_error"].startswith("gave up after")
    assert 1 < len(recorder.tried_at) <= MAX_ATTEMPTS
    assert all(not QUIET.is_quiet(at) for at in recorder.tried_at)
    assert recorder.tried_at[-1] - T0 < GIVE_UP_MS
    assert recorder.sent == []


def test_a_permanent_error_fails_at_once(seeded: Seeded) -> None:
    message_id = seeded.new_code_message()
    recorder = Recorder(seeded.clock, errors=[Permanent("number unknown to the gateway")])
    seeded.deliver(seeded.deliverer(recorder))
    row = seeded.row(message_id)
    assert (row["status"], row["attempts"], row["channel"]) == ("failed", 1, "sms")
    assert row["last_error"] == "number unknown to the gateway"


def test_a_message_due_in_quiet_hours_waits_for_the_morning(tmp_path: Path) -> None:
    seeded = seed_at(tmp_path, local("22:00"))
    message_id = seeded.new_code_message()
    recorder = Recorder(seeded.clock)
    deliverer = seeded.deliverer(recorder)

    assert seeded.deliver(deliverer) == 1  # deferred
    row = seeded.row(message_id)
    assert (row["status"], row["attempts"], row["next_attempt_ms"]) == (
        "queued",
        0,
        local("07:30", 1),
    )
    seeded.clock.set_wall(local("07:30", 1) - 1)
    assert seeded.deliver(deliverer) == 0 and recorder.sent == []
    urgent = seeded.queue("per_2", "item_to_collect", "urgent", is_urgent=True, item_id="itm_coat")
    assert seeded.deliver(deliverer) == 1
    assert [m.id for m in recorder.sent] == [urgent]  # urgent: at once, even at night
    seeded.clock.advance(1)
    assert seeded.deliver(deliverer) == 1
    assert [m.id for m in recorder.sent] == [urgent, message_id]
    seeded.store.close()


def test_a_code_no_longer_valid_is_not_sent(
    seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    message_id = seeded.new_code_message()
    with seeded.store.write() as db:
        end_grant(db, seeded.kettle_grant()["id"], reason="cancelled", by="per_1", now_ms=T0)
    recorder = Recorder(seeded.clock)
    with caplog.at_level(logging.INFO):
        assert seeded.deliver(seeded.deliverer(recorder)) == 1
    assert recorder.tried_at == []
    row = seeded.row(message_id)
    assert row["status"] == "failed" and row["last_error"] == "obsolete: the grant is revoked"


def test_a_code_goes_to_its_holder_only(seeded: Seeded) -> None:
    grant = seeded.kettle_grant()
    message_id = seeded.queue("per_2", "new_code", "stolen", grant_id=grant["id"])
    seeded.new_code_message()
    recorder = Recorder(seeded.clock)
    seeded.deliver(seeded.deliverer(recorder))
    assert [m.person_id for m in recorder.sent] == ["per_1"]
    assert seeded.row(message_id)["last_error"] == "the grant is someone else's"


def test_a_resident_on_wechat_without_an_openid_gets_sms(seeded: Seeded) -> None:
    seeded.new_code_message()
    asked: list[str] = []
    sms, wechat = Recorder(seeded.clock, "sms"), Recorder(seeded.clock, "wechat")

    def route(channel: str) -> Notifier:
        asked.append(channel)
        return wechat if channel == "wechat" else sms

    with seeded.store.write() as db:
        db.execute(
            "UPDATE resident_profiles SET notify_channel = 'wechat' WHERE person_id = 'per_1'"
        )
    seeded.deliver(seeded.deliverer(route))
    assert asked == ["sms"] and len(sms.sent) == 1

    with seeded.store.write() as db:
        db.execute(
            "UPDATE resident_profiles SET wechat_openid = ? WHERE person_id = 'per_1'", (OPENID,)
        )
    seeded.queue("per_1", "item_to_collect", "collect", item_id="itm_kettle")
    seeded.deliver(seeded.deliverer(route))
    assert asked == ["sms", "wechat"]
    (message,) = wechat.sent
    assert message.channel == "wechat" and message.openid == OPENID


def test_an_expiring_code_is_reminded_once(seeded: Seeded) -> None:
    recorder = Recorder(seeded.clock)
    deliverer = seeded.deliverer(recorder)
    seeded.deliver(deliverer)  # the new code
    with seeded.store.write() as db:  # a code issued 5 h before it expires: no reminder
        issue_grant(
            db,
            seeded.keys,
            device_id="locker-b",
            compartment="A1",
            purpose="pickup",
            valid_from_ms=T0,
            valid_until_ms=T0 + 5 * HOUR_MS,
            now_ms=T0,
            person_id="per_2",
        )
    for _ in range(3):
        assert deliverer.code_expiring_job(T0 + HOUR_MS) == 0
    expires = seeded.kettle_grant()["valid_until_ms"]
    assert deliverer.code_expiring_job(expires - 6 * HOUR_MS - 1) == 0
    assert deliverer.code_expiring_job(expires - 6 * HOUR_MS) == 1
    assert deliverer.code_expiring_job(expires - 5 * HOUR_MS) == 0  # once per grant
    seeded.clock.set_wall(expires - 5 * HOUR_MS)
    recorder.sent.clear()
    seeded.deliver(deliverer)
    assert [m.text for m in recorder.sent] == [
        "邻里：电热水壶 Electric kettle 的取件码将在 1月17日 16:00 失效，请尽快到 1号柜 Locker A 取件。"
    ]
    assert "code" not in recorder.sent[0].values


class Died(BaseException):
    """The process died while a notifier was sending (as SIGKILL would, nothing after runs)."""


def test_a_claimed_message_whose_process_died_is_sent_after_the_lease(seeded: Seeded) -> None:
    message_id = seeded.new_code_message()
    with pytest.raises(Died):
        seeded.deliver(seeded.deliverer(Recorder(seeded.clock, errors=[Died()])))
    row = seeded.row(message_id)
    assert (row["status"], row["attempts"], row["next_attempt_ms"]) == (
        "queued",
        1,
        T0 + CLAIM_LEASE_MS,
    )
    recorder = Recorder(seeded.clock)
    deliverer = seeded.deliverer(recorder)  # the restarted process
    assert seeded.deliver(deliverer) == 0
    seeded.clock.advance(CLAIM_LEASE_MS)
    assert seeded.deliver(deliverer) == 1 and len(recorder.sent) == 1


def test_a_message_that_kills_the_process_every_time_is_given_up(seeded: Seeded) -> None:
    message_id = seeded.new_code_message()
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(Died):
            seeded.deliver(seeded.deliverer(Recorder(seeded.clock, errors=[Died()])))
        seeded.clock.advance(CLAIM_LEASE_MS)
    seeded.deliver(seeded.deliverer(Recorder(seeded.clock)))
    row = seeded.row(message_id)
    assert (row["status"], row["last_error"]) == ("failed", "gave up after 10 attempts")


# --- the log adapter ------------------------------------------------------------------------------


def outgoing(message_id: str = "ntf_test", **changes: Any) -> Outgoing:
    message = Outgoing(
        id=message_id,
        person_id="per_1",
        kind="new_code",
        channel="log",
        language="zh-CN",
        text="邻里：取件码是 04817263。",
        redacted=f"邻里：取件码是 {REDACTED}。",
        values={"code": "04817263", "item": "电热水壶"},
        phone=PHONE,
        openid=OPENID,
    )
    return replace(message, **changes)


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def test_the_log_adapter_records_each_message_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / LOG_FILE
    clock = FakeClock(wall_ms=T0)
    notifier = LogNotifier(path, clock)
    with caplog.at_level(logging.DEBUG):
        notifier.send(outgoing())
        notifier.send(outgoing())
        LogNotifier(path, clock).send(outgoing())  # a restarted process reads the file
    assert log_lines(path) == [
        {"id": "ntf_test", "person_id": "per_1", "kind": "new_code", "channel": "log", "at_ms": T0}
    ]
    assert (
        "notification ntf_test new_code to per_1 via log: 邻里：取件码是 ********。"
        in caplog.messages
    )
    assert not any("04817263" in text for text in caplog.messages)


def test_the_log_adapter_survives_a_line_cut_short(tmp_path: Path) -> None:
    path = tmp_path / LOG_FILE
    clock = FakeClock(wall_ms=T0)
    LogNotifier(path, clock).send(outgoing("ntf_a"))
    whole_but_newline = json.dumps({"id": "ntf_b", "person_id": "per_1"}).encode()
    with open(path, "ab") as handle:
        handle.write(whole_but_newline)  # power lost before the newline
    notifier = LogNotifier(path, clock)
    notifier.send(outgoing("ntf_b"))  # recorded already: not again
    with open(path, "ab") as handle:
        handle.write(b'\n{"id": "ntf_c", "per')  # power lost mid-line
    notifier.send(outgoing("ntf_c"))
    notifier.send(outgoing("ntf_d"))
    assert [line["id"] for line in log_lines(path)] == ["ntf_a", "ntf_b", "ntf_c", "ntf_d"]
    assert LogNotifier(path, clock).recorded() == {"ntf_a", "ntf_b", "ntf_c", "ntf_d"}


# --- real HTTP servers ----------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


Answer = tuple[int, Any]
"""(HTTP status, JSON body), or a float: sleep that long and answer nothing in time."""


class HttpServer:
    """A real HTTP server on a free port, answering with ``app(request)`` in its own threads."""

    def __init__(self, app: Callable[[Request], Answer | float]) -> None:
        self.requests: list[Request] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(
                    "POST",
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                outer.requests.append(request)
                answer = app(request)
                if isinstance(answer, float):
                    time.sleep(answer)
                    answer = (200, {})
                status, body = answer
                data = json.dumps(body).encode()
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # a redirect followed as a GET would land here

            def log_message(self, *args: Any) -> None:  # never print a request (phones)
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up waiting (the timeout cases): nothing to report

        outer = self
        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@dataclass
class SmsGateway:
    """An SMS gateway that de-duplicates by ``client_ref``; ``script`` answers first."""

    script: list[Answer | float] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    lose_answers: int = 0
    """Accept this many messages, then answer 500 as if the answer was lost on the way."""

    def __call__(self, request: Request) -> Answer | float:
        if request.headers.get("authorization") != f"Bearer {SMS_TOKEN}":
            return (401, {"error": "unauthorized"})
        if self.script:
            return self.script.pop(0)
        if request.body["client_ref"] in {d["client_ref"] for d in self.delivered}:
            return (200, {"status": "duplicate"})
        self.delivered.append(request.body)
        if self.lose_answers:
            self.lose_answers -= 1
            return (502, {"error": "bad gateway"})
        return (200, {"status": "queued"})


@pytest.fixture
def sms_gateway() -> Iterator[tuple[SmsGateway, HttpServer]]:
    gateway = SmsGateway()
    server = HttpServer(gateway)
    yield gateway, server
    server.close()


def test_the_sms_adapter_posts_json_with_a_bearer_token(
    sms_gateway: tuple[SmsGateway, HttpServer],
) -> None:
    _, server = sms_gateway
    SmsGatewayNotifier(server.url + "/v1/send", SMS_TOKEN).send(outgoing())
    (request,) = server.requests
    assert request.path == "/v1/send" and request.headers["content-type"].startswith(
        "application/json"
    )
    assert request.body == {
        "to": PHONE,
        "text": "邻里：取件码是 04817263。",
        "client_ref": "ntf_test",
    }


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((200, {}), None),
        ((202, {}), None),
        ((409, {"error": "duplicate client_ref"}), None),
        ((500, {}), Retryable),
        ((503, {}), Retryable),
        ((429, {}), Retryable),
        ((401, {}), Retryable),  # our token: fixed by the operator, then the messages go out
        ((400, {"error": "bad number"}), Permanent),
        ((404, {}), Permanent),
        ((302, {}), Permanent),  # a redirect is not followed (a POST would turn into a GET)
        (1.0, Unreachable),  # no answer within the timeout
    ],
)
def test_the_sms_adapter_classifies_answers(
    sms_gateway: tuple[SmsGateway, HttpServer],
    answer: Answer | float,
    error: type[Exception] | None,
) -> None:
    gateway, server = sms_gateway
    gateway.script.append(answer)
    notifier = SmsGatewayNotifier(server.url + "/v1/send", SMS_TOKEN, timeout_s=0.3)
    if error is None:
        notifier.send(outgoing())
    else:
        with pytest.raises(error) as caught:
            notifier.send(outgoing())
        assert PHONE not in str(caught.value) and SMS_TOKEN not in str(caught.value)
    assert len(server.requests) == 1  # nothing followed, nothing repeated


def test_the_sms_adapter_cannot_reach_a_closed_port(
    sms_gateway: tuple[SmsGateway, HttpServer],
) -> None:
    _, server = sms_gateway
    url = server.url
    server.close()
    with pytest.raises(Unreachable):
        SmsGatewayNotifier(url + "/v1/send", SMS_TOKEN, timeout_s=1.0).send(outgoing())
    with pytest.raises(Permanent):
        SmsGatewayNotifier("file:///etc/passwd", SMS_TOKEN).send(outgoing())
    with pytest.raises(Permanent):
        SmsGatewayNotifier(url, SMS_TOKEN).send(outgoing(phone=None))


def test_an_sms_whose_answer_was_lost_reaches_the_resident_once(
    seeded: Seeded, sms_gateway: tuple[SmsGateway, HttpServer]
) -> None:
    gateway, server = sms_gateway
    gateway.lose_answers = 1
    message_id = seeded.new_code_message()
    deliverer = seeded.deliverer(SmsGatewayNotifier(server.url + "/v1/send", SMS_TOKEN))
    seeded.deliver(deliverer)
    assert seeded.row(message_id)["status"] == "queued"  # the gateway seemed down
    seeded.clock.advance(30_000)
    seeded.deliver(deliverer)
    row = seeded.row(message_id)
    assert (row["status"], row["attempts"], row["channel"]) == ("sent", 2, "sms")
    assert [r.body["client_ref"] for r in server.requests] == [message_id, message_id]
    assert [d["client_ref"] for d in gateway.delivered] == [message_id]  # one SMS
    grant = seeded.kettle_grant()
    assert code_of(seeded.keys, grant["id"], grant["code_counter"]) in gateway.delivered[0]["text"]


@dataclass
class WeChat:
    """WeChat's token and template message endpoints, as far as the adapter uses them."""

    valid: set[str] = field(default_factory=set)
    issued: int = 0
    errcodes: list[int] = field(default_factory=list)
    """Answers of template sends (before the token is checked)."""
    delivered: list[dict[str, Any]] = field(default_factory=list)
    credentials_ok: bool = True

    def __call__(self, request: Request) -> Answer | float:
        if request.path == "/cgi-bin/stable_token":
            body = request.body
            if not self.credentials_ok or (body["appid"], body["secret"]) != (
                "wx-app",
                WECHAT_SECRET,
            ):
                return (200, {"errcode": 40125, "errmsg": "invalid appsecret"})
            if body["force_refresh"] or not self.valid:
                self.issued += 1
                self.valid = {f"token-{self.issued}"}
            return (200, {"access_token": next(iter(self.valid)), "expires_in": 7200})
        if request.path == "/cgi-bin/message/template/send":
            if self.errcodes:
                return (200, {"errcode": self.errcodes.pop(0), "errmsg": "scripted"})
            if request.query.get("access_token", [""])[0] not in self.valid:
                return (200, {"errcode": 40001, "errmsg": "invalid credential"})
            key = (request.body["touser"], request.body["client_msg_id"])
            if key not in {(d["touser"], d["client_msg_id"]) for d in self.delivered}:
                self.delivered.append(request.body)
            return (200, {"errcode": 0, "errmsg": "ok", "msgid": len(self.delivered)})
        return (404, {})


@pytest.fixture
def wechat() -> Iterator[tuple[WeChat, HttpServer]]:
    fake = WeChat()
    server = HttpServer(fake)
    yield fake, server
    server.close()


def wechat_notifier(server: HttpServer, clock: FakeClock) -> WeChatTemplateNotifier:
    return WeChatTemplateNotifier(
        "wx-app", WECHAT_SECRET, templates=TEMPLATES, clock=clock, base_url=server.url
    )


def test_the_wechat_adapter_sends_a_template_message_and_keeps_its_token(
    wechat: tuple[WeChat, HttpServer],
) -> None:
    fake, server = wechat
    clock = FakeClock(wall_ms=T0)
    notifier = wechat_notifier(server, clock)
    notifier.send(outgoing("ntf_1"))
    notifier.send(outgoing("ntf_2"))
    assert fake.issued == 1  # one token for both
    first = fake.delivered[0]
    assert (first["touser"], first["template_id"], first["client_msg_id"]) == (
        OPENID,
        "tpl-new_code",
        "ntf_1",
    )
    assert first["data"]["first"]["value"] == "邻里：取件码是 04817263。"
    assert first["data"]["code"]["value"] == "04817263"
    assert all(WECHAT_SECRET not in r.path and not r.query.get("secret") for r in server.requests)
    clock.advance((7200 - 300) * 1000)  # the token is about to expire: asked for again
    notifier.send(outgoing("ntf_3"))
    assert sum(r.path.endswith("stable_token") for r in server.requests) == 2
    assert len(fake.delivered) == 3
    notifier.send(outgoing("ntf_3"))  # WeChat de-duplicates by openid and client_msg_id
    assert len(fake.delivered) == 3


def test_the_wechat_adapter_refreshes_a_refused_token_once(
    wechat: tuple[WeChat, HttpServer],
) -> None:
    fake, server = wechat
    notifier = wechat_notifier(server, FakeClock(wall_ms=T0))
    notifier.send(outgoing("ntf_1"))
    fake.valid = {"token-rotated-elsewhere"}  # another holder forced a refresh
    notifier.send(outgoing("ntf_2"))
    tokens = [r.body["force_refresh"] for r in server.requests if r.path.endswith("stable_token")]
    assert tokens == [False, True]
    assert [d["client_msg_id"] for d in fake.delivered] == ["ntf_1", "ntf_2"]

    fake.errcodes = [42001, 40001]  # refused again after the refresh: try later
    with pytest.raises(Retryable):
        notifier.send(outgoing("ntf_3"))


@pytest.mark.parametrize(
    ("errcode", "error"),
    [
        (-1, Retryable),
        (45009, Retryable),
        (43004, Permanent),
        (40003, Permanent),
        (40037, Permanent),
    ],
)
def test_the_wechat_adapter_classifies_errcodes(
    wechat: tuple[WeChat, HttpServer], errcode: int, error: type[Exception]
) -> None:
    fake, server = wechat
    fake.errcodes = [errcode]
    with pytest.raises(error, match=str(errcode)):
        wechat_notifier(server, FakeClock(wall_ms=T0)).send(outgoing())


def test_the_wechat_adapter_retries_when_its_credentials_are_refused(
    wechat: tuple[WeChat, HttpServer],
) -> None:
    fake, server = wechat
    fake.credentials_ok = False
    with pytest.raises(Retryable) as caught:
        wechat_notifier(server, FakeClock(wall_ms=T0)).send(outgoing())
    assert WECHAT_SECRET not in str(caught.value)
    with pytest.raises(Permanent, match="template"):
        wechat_notifier(server, FakeClock(wall_ms=T0)).send(outgoing(kind="birthday"))
    with pytest.raises(Permanent, match="openid"):
        wechat_notifier(server, FakeClock(wall_ms=T0)).send(outgoing(openid=None))


# --- the canary -----------------------------------------------------------------------------------


def test_no_code_phone_token_or_secret_in_any_log_record(
    seeded: Seeded,
    sms_gateway: tuple[SmsGateway, HttpServer],
    wechat: tuple[WeChat, HttpServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway, sms_server = sms_gateway
    fake, wechat_server = wechat
    grant = seeded.kettle_grant()
    code = code_of(seeded.keys, grant["id"], grant["code_counter"])
    gateway.script = [(500, {}), (400, {"error": f"bad number {PHONE}"})]
    fake.errcodes = [40001, 43004]
    sms = SmsGatewayNotifier(sms_server.url + "/v1/send", SMS_TOKEN, timeout_s=0.3)
    channels: dict[str, Notifier] = {
        "sms": sms,
        "wechat": wechat_notifier(wechat_server, seeded.clock),
    }
    log_notifier = LogNotifier(seeded.data_dir / LOG_FILE, seeded.clock)
    with caplog.at_level(logging.DEBUG):
        seeded.new_code_message()
        for _ in range(3):  # SMS: 500, then 400 (failed)
            seeded.deliver(seeded.deliverer(lambda c: channels[c]))
            seeded.clock.advance(60_000)
        with seeded.store.write() as db:
            db.execute(
                "UPDATE resident_profiles SET notify_channel = 'wechat', wechat_openid = ?",
                (OPENID,),
            )
        for n in range(3):  # WeChat: 40001 → refreshed → 43004 (failed); then sent
            seeded.queue("per_1", "item_to_collect", f"c{n}", item_id="itm_kettle")
            seeded.deliver(seeded.deliverer(lambda c: channels[c]))
        seeded.queue("per_1", "new_code", "again", grant_id=grant["id"])
        seeded.deliver(seeded.deliverer(log_notifier))
        seeded.deliver(seeded.deliverer(Recorder(seeded.clock, errors=[RuntimeError(code)])))
    texts = [
        text
        for record in caplog.records
        for text in (record.getMessage(), repr(record.args), str(record.exc_info))
    ]
    assert any("via log" in text and REDACTED in text for text in texts)
    for secret in (code, PHONE, OPENID, SMS_TOKEN, WECHAT_SECRET, "token-1", "token-2"):
        assert not any(secret in text for text in texts), "a secret reached a log record"
    failed = seeded.store.read("SELECT last_error FROM notifications WHERE last_error IS NOT NULL")
    for secret in (code, PHONE, OPENID):
        assert not any(secret in row["last_error"] for row in failed)


# --- settings and wiring --------------------------------------------------------------------------


SMS_SETTINGS = {"sms_url": "https://sms.example/v1/send", "sms_token": SMS_TOKEN}
WECHAT_SETTINGS = {
    **SMS_SETTINGS,
    "wechat_appid": "wx-app",
    "wechat_secret": WECHAT_SECRET,
    "wechat_templates": TEMPLATES,
}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"notify_channel": "sms"}, "LINLI_SMS_URL is not set"),
        ({"notify_channel": "sms", "sms_url": "https://sms.example"}, "LINLI_SMS_TOKEN is not set"),
        ({"notify_channel": "sms", **SMS_SETTINGS, "sms_token": "changeme"}, "placeholder"),
        ({"notify_channel": "sms", **SMS_SETTINGS, "sms_url": "http://sms.example"}, "https"),
        ({"notify_channel": "wechat", **SMS_SETTINGS}, "LINLI_WECHAT_APPID is not set"),
        ({"notify_channel": "wechat", **WECHAT_SETTINGS, "sms_url": None}, "LINLI_SMS_URL"),
        (
            {"notify_channel": "wechat", **WECHAT_SETTINGS, "wechat_templates": {"new_code": "t"}},
            "loan_due",
        ),
        ({"wechat_templates": {"birthday": "t"}}, "unknown kinds birthday"),
        ({"quiet_start": "22"}, "quiet_start"),
    ],
)
def test_a_channel_missing_its_settings_stops_start_up(
    settings: dict[str, Any], problem: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        CloudSettings(**settings)
    assert problem in str(caught.value)
    assert SMS_TOKEN not in str(caught.value) and WECHAT_SECRET not in str(caught.value)


def test_notify_jobs_route_each_channel(tmp_path: Path, seeded: Seeded) -> None:
    clock = FakeClock(wall_ms=T0)
    demo = CloudSettings(data_dir=tmp_path)
    assert demo.notify_channel == "log"
    assert isinstance(notifier_routing(demo, clock)("wechat"), LogNotifier)
    assert isinstance(
        notifier_routing(CloudSettings(notify_channel="sms", **SMS_SETTINGS), clock)("wechat"),
        SmsGatewayNotifier,
    )
    both = notifier_routing(CloudSettings(notify_channel="wechat", **WECHAT_SETTINGS), clock)
    assert isinstance(both("wechat"), WeChatTemplateNotifier)
    assert isinstance(both("sms"), SmsGatewayNotifier)
    settings = CloudSettings(notify_channel="wechat", **WECHAT_SETTINGS)
    assert SMS_TOKEN not in repr(settings) and WECHAT_SECRET not in repr(settings)
    assert SMS_TOKEN not in repr(both("sms")) and WECHAT_SECRET not in repr(both("wechat"))

    jobs = notify_jobs(
        seeded.store, seeded.keys, seeded.clock, CloudSettings(data_dir=seeded.data_dir)
    )
    assert [job.name for job in jobs] == ["notify_deliver", "notify_code_expiring"]
    message_id = seeded.new_code_message()
    assert jobs[0].run(T0) == 1
    assert [line["id"] for line in log_lines(seeded.data_dir / LOG_FILE)] == [message_id]


# --- kill -9 --------------------------------------------------------------------------------------


CHILD = """
import os, signal, sys
from pathlib import Path
from cloud_api.items.service import reserve
from cloud_api.keys import load_or_create_keys
from cloud_api.notify.adapters import LOG_FILE, LogNotifier
from cloud_api.notify.service import Deliverer
from cloud_api.store import Store
from linli.clock import FakeClock

data_dir, now_ms, action = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
store = Store(data_dir / "cloud.sqlite3")
keys = load_or_create_keys(data_dir / "secrets")
clock = FakeClock(wall_ms=now_ms)
deliverer = Deliverer(store, keys, clock, lambda channel: LogNotifier(data_dir / LOG_FILE, clock))
if action == "deliver":
    print(deliverer.deliver_due(now_ms))
elif action == "remind":
    print(deliverer.code_expiring_job(now_ms))
elif action == "reserve-and-die":
    with store.write() as db:
        reserve(db, keys, "itm_books", "per_1", now_ms)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_every_notification_crash_point_has_a_trial_here() -> None:
    notify_labels = {label for label in LABELS if label.startswith("notify.")}
    assert notify_labels == {"notify.queued", "notify.sent"}  # each killed in a test below


def child(data_dir: Path, now_ms: int, action: str, crash_at: str | None = None) -> int:
    """Run one process on the store; return its exit code (-9: killed)."""
    env = {k: v for k, v in os.environ.items() if k != "LINLI_CRASH_AT"}
    if crash_at:
        env["LINLI_CRASH_AT"] = crash_at
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), str(now_ms), action],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def lines_of(data_dir: Path, message_id: str) -> int:
    path = data_dir / LOG_FILE
    return sum(line["id"] == message_id for line in log_lines(path)) if path.exists() else 0


def status_of(data_dir: Path, message_id: str) -> str:
    store = Store(data_dir / "cloud.sqlite3")
    try:
        row = store.read_one("SELECT status FROM notifications WHERE id = ?", (message_id,))
        assert row is not None
        return str(row["status"])
    finally:
        store.close()


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[Path, str]:
    """A seeded store on disk, closed, with the kettle's new-code message queued."""
    seeded = seed_at(tmp_path, T0)
    message_id = seeded.new_code_message()
    seeded.store.close()
    return tmp_path, message_id


def test_a_crash_between_sending_and_marking_sends_once(prepared: tuple[Path, str]) -> None:
    data_dir, message_id = prepared
    assert child(data_dir, T0, "deliver", crash_at="notify.sent") == -signal.SIGKILL
    assert lines_of(data_dir, message_id) == 1  # the adapter wrote its line, then the kill
    assert status_of(data_dir, message_id) == "queued"  # not marked
    assert child(data_dir, T0 + CLAIM_LEASE_MS, "deliver") == 0  # sent again…
    assert lines_of(data_dir, message_id) == 1  # …and the log adapter recorded it once
    assert status_of(data_dir, message_id) == "sent"
    assert child(data_dir, T0 + 2 * CLAIM_LEASE_MS, "deliver") == 0
    assert lines_of(data_dir, message_id) == 1


def test_a_crash_between_queueing_and_sending_sends_once(prepared: tuple[Path, str]) -> None:
    data_dir, new_code = prepared
    # the job commits a reminder and dies before anything is sent
    expires = T0 + 48 * HOUR_MS
    remind_at = expires - 6 * HOUR_MS
    assert child(data_dir, remind_at, "remind", crash_at="notify.queued") == -signal.SIGKILL
    store = Store(data_dir / "cloud.sqlite3")
    row = store.read_one("SELECT id FROM notifications WHERE kind = 'code_expiring'")
    store.close()
    assert row is not None
    reminder = str(row["id"])
    assert status_of(data_dir, reminder) == "queued" and lines_of(data_dir, reminder) == 0
    assert child(data_dir, remind_at, "deliver") == 0
    assert child(data_dir, remind_at + CLAIM_LEASE_MS, "deliver") == 0
    assert (status_of(data_dir, reminder), lines_of(data_dir, reminder)) == ("sent", 1)
    assert status_of(data_dir, new_code) == "failed"  # queued 42 h ago: too late to send


def test_a_new_code_queued_by_a_process_that_died_is_sent_once(prepared: tuple[Path, str]) -> None:
    data_dir, _ = prepared
    assert child(data_dir, T0, "reserve-and-die") == -signal.SIGKILL
    store = Store(data_dir / "cloud.sqlite3")
    row = store.read_one(
        "SELECT n.id FROM notifications n JOIN grants g ON n.key = 'new_code:' || g.id"
        " WHERE g.item_id = 'itm_books'"
    )
    store.close()
    if row is None:  # before the reservation queued its own message (issue #8)
        pytest.fail("reserving an item queued no new-code message")
    message_id = str(row["id"])
    assert child(data_dir, T0, "deliver") == 0
    assert child(data_dir, T0 + CLAIM_LEASE_MS, "deliver") == 0
    assert (status_of(data_dir, message_id), lines_of(data_dir, message_id)) == ("sent", 1)
