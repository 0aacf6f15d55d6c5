"""Delivering the outbox: the notifier port, the deliverer and its scheduled jobs.

A message is queued in the same transaction as its cause (:func:`cloud_api.notify.outbox.enqueue`)
and delivered later, **at least once**: the deliverer claims it (an attempt counted, a lease of
2 min), renders it, hands it to the notifier for the resident's channel, and only then marks it
``sent``. A crash after the notifier accepted a message and before it was marked (crash point
``notify.sent``) sends it again once the lease has passed; every adapter takes the message id as
an idempotency key (the log's file, the SMS gateway's ``client_ref``, WeChat's
``client_msg_id``), which makes the resident receive it **exactly once**
(docs/decisions/0017-notifications.md).

No code is stored: a message about a code carries its grant's id, and the code is derived when
the text is written. Logs get :attr:`Outgoing.redacted` (the code as ``********``); phones and
openids go to the adapter and nowhere else.

Example:
    >>> deliverer = Deliverer(store, keys, clock, lambda channel: LogNotifier(path, clock))
    >>> deliverer.deliver_due(clock.now().wall_ms)
    1
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloud_api.core.notify import (
    DAY_MS,
    MINUTE_MS,
    REDACTED,
    REMINDER_LEAD_MS,
    Attempt,
    Defer,
    GiveUp,
    QuietHours,
    RenderError,
    alert_values,
    catalog_key,
    contribution_values,
    format_time,
    plan,
    reminder_at,
    render,
    retry_at,
)
from cloud_api.grants.service import code_of
from cloud_api.keys import CloudKeys
from cloud_api.notify.outbox import enqueue
from cloud_api.scheduler import Job, Scheduler
from cloud_api.settings import CloudSettings
from cloud_api.store import StorePort
from cloud_api.transparency import COMMUNITY_TZ
from linli.clock import Clock
from linli.crash import crash_point
from linli.i18n import DEFAULT_LANGUAGE

log = logging.getLogger(__name__)

_offset = COMMUNITY_TZ.utcoffset(None)
assert _offset is not None  # a fixed offset
COMMUNITY_OFFSET_MS = int(_offset.total_seconds() * 1000)
CLAIM_LEASE_MS = 2 * MINUTE_MS
"""A claimed message not marked within this long (the process died) is due again."""
BATCH_SIZE = 20
"""Messages handled by one run of :meth:`Deliverer.deliver_due`."""
NO_VALUE = "—"


# --- errors and the port ------------------------------------------------------------------------


class NotifyError(Exception):
    """The root of notification errors. Messages never carry a code, phone, openid or token."""


class Retryable(NotifyError):
    """May succeed later: the gateway is down or busy, a timeout, our credential refused."""


class Unreachable(Retryable, ConnectionError):
    """The gateway could not be reached or did not answer in time."""


class Permanent(NotifyError):
    """Will not succeed as it stands: the message or its resident cannot be served."""


class Obsolete(Permanent):
    """What the message was about no longer holds (its code was used, revoked or expired)."""


@dataclass(frozen=True)
class Outgoing:
    """One message, ready for a notifier.

    Attributes:
        id: the message id: the idempotency key every adapter passes on.
        person_id, kind, language: whom, what (``new_code``…) and in which language.
        channel: the notifier's channel (``log``, ``sms``, ``wechat``).
        text: what the resident reads (it may hold a code: never log it).
        redacted: the text with any code replaced by ``********``: the only text to log.
        values: the values the text was filled with (WeChat templates' data; may hold a code).
        phone, openid: where to send; for the adapter only, never logged.
    """

    id: str
    person_id: str
    kind: str
    channel: str
    language: str
    text: str = field(repr=False)
    redacted: str
    values: Mapping[str, str] = field(repr=False)
    phone: str | None = field(default=None, repr=False)
    openid: str | None = field(default=None, repr=False)


class Notifier(Protocol):
    """Where messages go (an adapter per channel: ``cloud_api/notify/adapters.py``).

    ``send`` returns once the channel accepted the message, and raises :class:`Retryable` or
    :class:`Permanent` otherwise. It must be idempotent on ``message.id``: a message may be
    handed over again after a crash.
    """

    @property
    def channel(self) -> str:
        """The channel recorded for messages this notifier accepted."""
        ...

    def send(self, message: Outgoing) -> None:
        """Hand the message to the channel."""
        ...


NotifierFor = Callable[[str], Notifier]
"""The resident's channel (``sms``, ``wechat``) → the notifier that serves it."""


# --- the deliverer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    id: str
    person_id: str
    kind: str
    params: Mapping[str, Any]
    is_urgent: bool
    attempts: int
    """Attempts started, this one included."""
    created_ms: int


class Deliverer:
    """Sends due messages from the outbox, retries them, gives up on them.

    Every change to a message is its own short write transaction; no transaction is held while
    a notifier waits on the network.
    """

    def __init__(
        self,
        store: StorePort,
        keys: CloudKeys,
        clock: Clock,
        notifier_for_channel: NotifierFor,
        *,
        quiet: QuietHours | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock
        self._notifier_for = notifier_for_channel
        self._quiet = quiet or QuietHours(21 * 60 + 30, 7 * 60 + 30, COMMUNITY_OFFSET_MS)
        self._batch_size = batch_size
        self._failing: set[str] = set()
        """Channels in an outage: logged once when it starts and once when it ends."""

    def deliver_due(self, now_ms: int) -> int:
        """Handle up to one batch of due messages, oldest first; return how many changed."""
        handled = 0
        for _ in range(self._batch_size):
            claimed = self._claim(now_ms)
            if claimed is None:
                break
            handled += 1
            if isinstance(claimed, _Claimed):
                self._attempt(claimed, now_ms)
        return handled

    def code_expiring_job(self, now_ms: int) -> int:
        """Queue a reminder for each active pickup code of a resident that is about to expire.

        Due 6 h before expiry (earlier when quiet hours would push it too close: see
        :func:`cloud_api.core.notify.reminder_at`), only for codes issued before that moment,
        once per grant (``code_expiring:<grant id>``). Returns how many were queued.
        """
        queued = 0
        with self._store.write() as db:
            rows = db.execute(
                "SELECT g.id, g.person_id, g.valid_until_ms, g.created_ms FROM grants g"
                " JOIN people p ON p.id = g.person_id WHERE g.status = 'active'"
                " AND g.purpose = 'pickup' AND p.role = 'resident' AND g.valid_until_ms > ?"
                " AND g.valid_until_ms <= ?",
                (now_ms, now_ms + REMINDER_LEAD_MS + DAY_MS),
            ).fetchall()
            for row in rows:
                at = reminder_at(row["valid_until_ms"], self._quiet)
                if not row["created_ms"] < at <= now_ms:
                    continue
                if enqueue(
                    db,
                    person_id=row["person_id"],
                    kind="code_expiring",
                    key=f"code_expiring:{row['id']}",
                    params={"grant_id": row["id"]},
                    now_ms=now_ms,
                ):
                    queued += 1
        if queued:
            crash_point("notify.queued")
        return queued

    # claiming ----------------------------------------------------------------------------------

    def _claim(self, now_ms: int) -> _Claimed | str | None:
        """Take the oldest due message: an attempt (claimed), or the id of one deferred or given
        up; None when nothing is due."""
        with self._store.write() as db:
            row = db.execute(
                "SELECT * FROM notifications WHERE status = 'queued' AND next_attempt_ms <= ?"
                " ORDER BY next_attempt_ms, created_ms, id LIMIT 1",
                (now_ms,),
            ).fetchone()
            if row is None:
                return None
            decision = plan(
                attempts=row["attempts"],
                created_ms=row["created_ms"],
                is_urgent=bool(row["is_urgent"]),
                now_ms=now_ms,
                quiet=self._quiet,
            )
            if isinstance(decision, Defer):
                db.execute(
                    "UPDATE notifications SET next_attempt_ms = ? WHERE id = ?",
                    (decision.until_ms, row["id"]),
                )
                log.debug("notification %s waits for the end of quiet hours", row["id"])
                return str(row["id"])
            if isinstance(decision, GiveUp):
                _set_failed(db, row["id"], row["attempts"], decision.reason)
                log.warning(
                    "notification %s %s given up: %s", row["id"], row["kind"], decision.reason
                )
                return str(row["id"])
            assert isinstance(decision, Attempt)
            db.execute(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt_ms = ? WHERE id = ?",
                (now_ms + CLAIM_LEASE_MS, row["id"]),
            )
        try:
            params = json.loads(row["params"])
        except ValueError:
            params = None
        return _Claimed(
            id=row["id"],
            person_id=row["person_id"],
            kind=row["kind"],
            params=params if isinstance(params, dict) else {},
            is_urgent=bool(row["is_urgent"]),
            attempts=row["attempts"] + 1,
            created_ms=row["created_ms"],
        )

    # one attempt -------------------------------------------------------------------------------

    def _attempt(self, claimed: _Claimed, now_ms: int) -> None:
        try:
            message, notifier = self._compose(claimed, now_ms)
        except Permanent as exc:
            self._fail(claimed, str(exc))
            return
        try:
            notifier.send(message)
        except Retryable as exc:
            self._outage(message.channel, exc)
            self._retry(claimed, message.channel, now_ms, str(exc))
        except Permanent as exc:
            self._fail(claimed, str(exc), channel=message.channel)
        except Exception as exc:
            # an adapter's bug: its message may quote what it was given, so only its type and
            # where it was raised are logged
            log.error(
                "notification %s: unexpected %s in the %s notifier\n%s",
                claimed.id,
                type(exc).__name__,
                message.channel,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            self._retry(claimed, message.channel, now_ms, f"unexpected {type(exc).__name__}")
        else:
            crash_point("notify.sent")
            self._recovered(message.channel)
            self._mark_sent(claimed, message.channel)

    def _mark_sent(self, claimed: _Claimed, channel: str) -> None:
        sent_ms = self._clock.now().wall_ms
        with self._store.write() as db:
            changed = db.execute(
                "UPDATE notifications SET status = 'sent', sent_ms = ?, channel = ?,"
                " last_error = NULL WHERE id = ? AND status = 'queued' AND attempts = ?",
                (sent_ms, channel, claimed.id, claimed.attempts),
            ).rowcount
        if changed:
            log.debug("notification %s %s sent via %s", claimed.id, claimed.kind, channel)
        else:
            log.warning("notification %s was sent, but its claim had been taken over", claimed.id)

    def _retry(self, claimed: _Claimed, channel: str, now_ms: int, error: str) -> None:
        at = retry_at(
            attempts=claimed.attempts,
            created_ms=claimed.created_ms,
            is_urgent=claimed.is_urgent,
            now_ms=now_ms,
            quiet=self._quiet,
        )
        if at is None:
            self._fail(
                claimed, f"gave up after {claimed.attempts} attempts: {error}", channel=channel
            )
            return
        with self._store.write() as db:
            db.execute(
                "UPDATE notifications SET next_attempt_ms = ?, last_error = ?, channel = ?"
                " WHERE id = ? AND status = 'queued' AND attempts = ?",
                (at, error, channel, claimed.id, claimed.attempts),
            )
        log.debug(
            "notification %s attempt %d failed (%s); next in %d s",
            claimed.id,
            claimed.attempts,
            error,
            (at - now_ms) // 1000,
        )

    def _fail(self, claimed: _Claimed, error: str, *, channel: str | None = None) -> None:
        with self._store.write() as db:
            _set_failed(db, claimed.id, claimed.attempts, error, channel)
        level = logging.INFO if error.startswith("obsolete") else logging.WARNING
        log.log(level, "notification %s %s not sent: %s", claimed.id, claimed.kind, error)

    def _outage(self, channel: str, exc: NotifyError) -> None:
        if channel not in self._failing:
            self._failing.add(channel)
            log.warning("notifications via %s are failing: %s", channel, exc)

    def _recovered(self, channel: str) -> None:
        if channel in self._failing:
            self._failing.discard(channel)
            log.info("notifications via %s work again", channel)

    # composing ---------------------------------------------------------------------------------

    def _compose(self, claimed: _Claimed, now_ms: int) -> tuple[Outgoing, Notifier]:
        """The message as the resident will read it, and the notifier for their channel."""
        with self._store.snapshot() as db:
            person = db.execute(
                # A resident's profile, or a member of staff's contact (alerts, issue #10).
                "SELECT p.language, COALESCE(r.phone, s.phone) AS phone,"
                " COALESCE(r.notify_channel, s.notify_channel) AS notify_channel,"
                " COALESCE(r.wechat_openid, s.wechat_openid) AS wechat_openid FROM people p"
                " LEFT JOIN resident_profiles r ON r.person_id = p.id"
                " LEFT JOIN staff_contacts s ON s.person_id = p.id WHERE p.id = ?",
                (claimed.person_id,),
            ).fetchone()
            if person is None:
                raise Permanent("no such person")
            language = person["language"] or DEFAULT_LANGUAGE
            try:
                key, values = self._values(db, claimed, language, now_ms)
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, RenderError):
                    raise Permanent(str(exc)) from exc
                raise Permanent(f"malformed {claimed.kind} parameters") from exc
        wanted = person["notify_channel"] or "sms"
        if wanted == "wechat" and not person["wechat_openid"]:
            wanted = "sms"  # no openid yet: WeChat cannot reach them
        notifier = self._notifier_for(wanted)
        try:
            text = render(key, values, language)
            shown = dict(values, code=REDACTED) if "code" in values else values
            redacted = render(key, shown, language)
        except RenderError as exc:
            raise Permanent(str(exc)) from exc
        if "code" in values:
            redacted = redacted.replace(values["code"], REDACTED)
        message = Outgoing(
            id=claimed.id,
            person_id=claimed.person_id,
            kind=claimed.kind,
            channel=notifier.channel,
            language=language,
            text=text,
            redacted=redacted,
            values=values,
            phone=person["phone"],
            openid=person["wechat_openid"],
        )
        return message, notifier

    def _values(
        self, db: sqlite3.Connection, claimed: _Claimed, language: str, now_ms: int
    ) -> tuple[str, dict[str, str]]:
        """The catalog key and the values of a message, read from the store now."""
        params = claimed.params
        if claimed.kind in ("new_code", "code_expiring"):
            grant = db.execute(
                "SELECT g.*, d.name AS locker FROM grants g JOIN devices d ON d.id = g.device_id"
                " WHERE g.id = ?",
                (params["grant_id"],),
            ).fetchone()
            if grant is None:
                raise Permanent("no such grant")
            if grant["person_id"] != claimed.person_id:
                raise Permanent("the grant is someone else's")  # a code goes to its holder only
            if grant["status"] != "active":
                raise Obsolete(f"obsolete: the grant is {grant['status']}")
            if grant["valid_until_ms"] <= now_ms:
                raise Obsolete("obsolete: the code has expired")
            values = {
                "locker": grant["locker"],
                "compartment": grant["compartment"],
                "until": format_time(grant["valid_until_ms"], language, COMMUNITY_OFFSET_MS),
            }
            if grant["item_id"] is not None:
                values["item"] = _item(db, grant["item_id"])["title"]
            if claimed.kind == "code_expiring":
                return catalog_key("code_expiring"), values
            values["code"] = code_of(self._keys, grant["id"], grant["code_counter"])
            return catalog_key("new_code", purpose=grant["purpose"]), values
        if claimed.kind == "contribution_decision":
            return contribution_values(params)
        if claimed.kind == "alert":
            alert = db.execute(
                "SELECT a.*, d.name AS locker FROM alerts a LEFT JOIN devices d"
                " ON d.id = a.device_id WHERE a.id = ?",
                (params["alert_id"],),
            ).fetchone()
            if alert is None:
                raise Permanent("no such alert")
            if alert["status"] == "resolved":
                raise Obsolete("obsolete: the alert is resolved")
            return alert_values(dict(alert), alert["locker"], int(params["level"]), language)
        item = _item(db, params["item_id"])
        values = {
            "item": item["title"],
            "locker": item["locker"] or NO_VALUE,
            "compartment": item["compartment"] or NO_VALUE,
        }
        if claimed.kind == "valuation_decision":
            values["points"] = str(int(params.get("points") or 0))
            values["reason"] = str(params.get("reason") or NO_VALUE)
            return catalog_key("valuation_decision", decision=params.get("decision")), values
        if claimed.kind == "loan_due":
            due_ms = params.get("due_ms") or item["due_ms"]
            if due_ms is None:
                raise Permanent("the loan has no due time")
            values["due"] = format_time(int(due_ms), language, COMMUNITY_OFFSET_MS)
        return catalog_key(claimed.kind), values


def _item(db: sqlite3.Connection, item_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute(
        "SELECT i.title, i.compartment, i.due_ms, d.name AS locker FROM items i"
        " LEFT JOIN devices d ON d.id = i.device_id WHERE i.id = ?",
        (item_id,),
    ).fetchone()
    if row is None:
        raise Permanent("no such item")
    return row


def _set_failed(
    db: sqlite3.Connection, message_id: str, attempts: int, error: str, channel: str | None = None
) -> None:
    db.execute(
        "UPDATE notifications SET status = 'failed', last_error = ?, channel = COALESCE(?, channel)"
        " WHERE id = ? AND status = 'queued' AND attempts = ?",
        (error, channel, message_id, attempts),
    )


# --- wiring -------------------------------------------------------------------------------------


def quiet_hours_of(settings: CloudSettings) -> QuietHours:
    """The community's quiet hours from the settings."""
    return QuietHours.parse(settings.quiet_start, settings.quiet_end, COMMUNITY_OFFSET_MS)


def notify_jobs(
    store: StorePort, keys: CloudKeys, clock: Clock, settings: CloudSettings
) -> list[Job]:
    """The notification jobs: deliver due messages, queue reminders of expiring codes."""
    from cloud_api.notify.adapters import notifier_routing  # the adapters import this module

    deliverer = Deliverer(
        store, keys, clock, notifier_routing(settings, clock), quiet=quiet_hours_of(settings)
    )
    return [
        Job("notify_deliver", settings.jobs_every_s, deliverer.deliver_due),
        Job("notify_code_expiring", max(settings.jobs_every_s, 60.0), deliverer.code_expiring_job),
    ]


class NotifyWorker:
    """Runs the notification jobs on a thread of their own.

    A notifier waits on the network (up to its timeout, 10 s, per message): run on the MQTT
    worker, like the domain jobs, it would hold up device messages meanwhile.

    Example:
        >>> worker = NotifyWorker(Scheduler(store, clock, notify_jobs(...)), 1.0).start()
        >>> worker.stop()
    """

    def __init__(self, scheduler: Scheduler, every_s: float) -> None:
        self.scheduler = scheduler
        self._every_s = every_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="linli-notify", daemon=True)

    def start(self) -> NotifyWorker:
        """Start the thread."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.wait(self._every_s):
            self.scheduler.run_due()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the run in progress (before the store is closed)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
