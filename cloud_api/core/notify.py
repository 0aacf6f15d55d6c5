"""When a notification may go out, when it is tried again, and what it says (pure).

No I/O and no clock: every function takes the instant it decides for (``now_ms``, Unix epoch
milliseconds) and the community's offset from UTC. The service (``cloud_api/notify/service.py``)
reads the outbox and the clock, sends, and records what these functions decided
(docs/decisions/0017-notifications.md).

- **Quiet hours** (default 21:30–07:30 local time): a message that is not urgent and falls due
  inside them waits until they end. A window whose start is after its end spans midnight; equal
  start and end mean no quiet hours.
- **Back-off**: after the n-th failed attempt the next one comes 30 s, 2 min, 10 min, 1 h, then
  every 6 h later (quiet hours still apply). A message is given up after 10 attempts, or when it
  could not go out within 24 h of being queued: a code or a reminder a day late confuses more
  than it helps (the resident's page always shows the live codes).
- **Rendering**: kind (+ the grant's purpose, or the valuation's decision) → a catalog key
  ``notify.*`` (a contribution's decision: ``contribution.notify.*``, see
  :func:`contribution_values`; an alert to a member of staff: ``alert.notify.*``, see
  :func:`alert_values`), filled in the resident's language; a missing value is an
  error, never a ``{placeholder}`` left in a text sent to an elderly resident.

Example:
    >>> quiet = QuietHours.parse("21:30", "07:30")
    >>> quiet.is_quiet(1_800_000_000_000)  # 16:00 in UTC+8
    False
    >>> plan(attempts=0, created_ms=1_800_000_000_000, is_urgent=False,
    ...      now_ms=1_800_000_000_000, quiet=quiet)
    Attempt()
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from linli.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalog, t

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

COMMUNITY_OFFSET_MS = 8 * HOUR_MS
"""UTC+8, the community's time zone (``cloud_api.transparency.COMMUNITY_TZ``)."""

BACKOFF_MS: tuple[int, ...] = (30 * SECOND_MS, 2 * MINUTE_MS, 10 * MINUTE_MS, HOUR_MS)
"""The wait after the 1st, 2nd, 3rd and 4th failed attempt."""
BACKOFF_LATER_MS = 6 * HOUR_MS
"""The wait after every later failed attempt."""
MAX_ATTEMPTS = 10
GIVE_UP_MS = DAY_MS
"""Nothing goes out later than this after it was queued."""

REMINDER_LEAD_MS = 6 * HOUR_MS
"""A code is reminded of this long before it expires."""
MIN_NOTICE_MS = HOUR_MS
"""A reminder that quiet hours would delay to less than this before expiry is sent earlier."""
BEFORE_QUIET_MS = 15 * MINUTE_MS
"""How long before quiet hours start such an earlier reminder is due."""

REDACTED = "********"
"""What stands for a code in every text that is logged."""

KINDS = (
    "new_code",
    "code_expiring",
    "valuation_decision",
    "loan_due",
    "item_to_collect",
    "contribution_decision",
    "alert",
)
CODE_PURPOSES: Mapping[str, str] = {
    "pickup": "notify.new_code",
    "dropoff": "notify.new_code.dropoff",
    "return": "notify.new_code.return",
}
"""The message of a new code, by the grant's purpose (maintenance codes are not sent)."""
DECISIONS = ("approved", "rejected")
CONTRIBUTION_WHAT_CHARS = 24
"""A contribution's description is quoted in its message up to this many characters."""

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class RenderError(ValueError):
    """A message cannot be written: unknown kind, purpose or decision, or a value missing."""


# --- quiet hours --------------------------------------------------------------------------------


def parse_hh_mm(text: str) -> int:
    """Minutes after local midnight of ``"HH:MM"`` (24-hour clock).

    Example:
        >>> parse_hh_mm("07:30")
        450
    """
    match = _HH_MM.match(text)
    if match is None:
        raise ValueError(f"not a time of day as HH:MM: {text!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclass(frozen=True)
class QuietHours:
    """A daily window of local time in which messages that are not urgent wait.

    Attributes:
        start_min, end_min: minutes after local midnight; ``start_min > end_min`` spans
            midnight; equal means no quiet hours.
        utc_offset_ms: the community's offset from UTC.
    """

    start_min: int
    end_min: int
    utc_offset_ms: int = COMMUNITY_OFFSET_MS

    def __post_init__(self) -> None:
        for minute in (self.start_min, self.end_min):
            if not 0 <= minute < 24 * 60:
                raise ValueError(f"{minute} is not a minute of the day")

    @classmethod
    def parse(cls, start: str, end: str, utc_offset_ms: int = COMMUNITY_OFFSET_MS) -> QuietHours:
        """Quiet hours from ``"HH:MM"`` strings (``("21:30", "07:30")``)."""
        return cls(parse_hh_mm(start), parse_hh_mm(end), utc_offset_ms)

    def _local(self, wall_ms: int) -> tuple[int, int]:
        """(local midnight as local ms, minute of the local day) of an instant."""
        local_ms = wall_ms + self.utc_offset_ms
        return local_ms - local_ms % DAY_MS, (local_ms % DAY_MS) // MINUTE_MS

    def is_quiet(self, wall_ms: int) -> bool:
        """Whether ``wall_ms`` falls inside quiet hours."""
        _, minute = self._local(wall_ms)
        if self.start_min == self.end_min:
            return False
        if self.start_min < self.end_min:
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min

    def end_after(self, wall_ms: int) -> int:
        """When the quiet hours around ``wall_ms`` end (``wall_ms`` itself if not quiet)."""
        if not self.is_quiet(wall_ms):
            return wall_ms
        midnight, _ = self._local(wall_ms)
        end = midnight + self.end_min * MINUTE_MS
        if end <= wall_ms + self.utc_offset_ms:
            end += DAY_MS
        return end - self.utc_offset_ms

    def start_before(self, wall_ms: int) -> int:
        """When the quiet hours around ``wall_ms`` began (``wall_ms`` itself if not quiet)."""
        if not self.is_quiet(wall_ms):
            return wall_ms
        midnight, _ = self._local(wall_ms)
        start = midnight + self.start_min * MINUTE_MS
        if start > wall_ms + self.utc_offset_ms:
            start -= DAY_MS
        return start - self.utc_offset_ms

    def defer(self, wall_ms: int, *, is_urgent: bool) -> int:
        """When a message due at ``wall_ms`` may go out: urgent ones at once, others after
        quiet hours."""
        return wall_ms if is_urgent else self.end_after(wall_ms)


DEFAULT_QUIET_HOURS = QuietHours(21 * 60 + 30, 7 * 60 + 30)


# --- attempts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """Send the message now."""


@dataclass(frozen=True)
class Defer:
    """Quiet hours: the message waits until ``until_ms``."""

    until_ms: int


@dataclass(frozen=True)
class GiveUp:
    """The message will not be sent (``reason`` is recorded as its last error)."""

    reason: str


Plan = Attempt | Defer | GiveUp


def plan(
    *, attempts: int, created_ms: int, is_urgent: bool, now_ms: int, quiet: QuietHours
) -> Plan:
    """What to do with a queued message that is due at ``now_ms``.

    Args:
        attempts: attempts started so far (an attempt counts when it starts, so a message that
            crashes the process each time it is sent is still given up).
        created_ms: when it was queued.
        is_urgent: urgent messages ignore quiet hours.
        now_ms: the instant of the decision.
        quiet: the community's quiet hours.
    """
    if attempts >= MAX_ATTEMPTS:
        return GiveUp(f"gave up after {attempts} attempts")
    if now_ms - created_ms >= GIVE_UP_MS:
        return GiveUp("not sent within 24 h of being queued")
    until = quiet.defer(now_ms, is_urgent=is_urgent)
    return Defer(until) if until != now_ms else Attempt()


def backoff_ms(attempts: int) -> int:
    """The wait after the ``attempts``-th failed attempt (1-based).

    Example:
        >>> [backoff_ms(n) // 1000 for n in (1, 2, 3, 4, 5, 9)]
        [30, 120, 600, 3600, 21600, 21600]
    """
    if attempts < 1:
        raise ValueError("back-off follows a failed attempt")
    return BACKOFF_MS[attempts - 1] if attempts <= len(BACKOFF_MS) else BACKOFF_LATER_MS


def retry_at(
    *, attempts: int, created_ms: int, is_urgent: bool, now_ms: int, quiet: QuietHours
) -> int | None:
    """When to try again after the ``attempts``-th attempt failed at ``now_ms`` and may be
    retried; None: give up (10 attempts made, or the retry would come 24 h or more after the
    message was queued)."""
    if attempts >= MAX_ATTEMPTS:
        return None
    at = quiet.defer(now_ms + backoff_ms(attempts), is_urgent=is_urgent)
    return at if at - created_ms < GIVE_UP_MS else None


def reminder_at(valid_until_ms: int, quiet: QuietHours) -> int:
    """When to remind a resident that a code expires at ``valid_until_ms``.

    Normally 6 h before. If that falls in quiet hours that would delay the reminder to less than
    1 h before expiry (a code expiring at 05:00 would be reminded at 07:30, too late), the
    reminder is due 15 min before those quiet hours start, the evening before.
    """
    at = valid_until_ms - REMINDER_LEAD_MS
    if quiet.end_after(at) <= valid_until_ms - MIN_NOTICE_MS:
        return at
    return quiet.start_before(at) - BEFORE_QUIET_MS


# --- texts --------------------------------------------------------------------------------------


def catalog_key(kind: str, *, purpose: str | None = None, decision: str | None = None) -> str:
    """The catalog key of a message.

    Example:
        >>> catalog_key("new_code", purpose="return")
        'notify.new_code.return'
    """
    if kind == "new_code":
        if purpose is None or purpose not in CODE_PURPOSES:
            raise RenderError(f"no message for a code with purpose {purpose!r}")
        return CODE_PURPOSES[purpose]
    if kind == "valuation_decision":
        if decision not in DECISIONS:
            raise RenderError(f"no message for a valuation decision {decision!r}")
        return f"notify.valuation_decision.{decision}"
    if kind == "contribution_decision":
        if decision not in DECISIONS:
            raise RenderError(f"no message for a contribution decision {decision!r}")
        return f"contribution.notify.{decision}"
    if kind == "alert":
        return "alert.notify.escalated" if decision == "escalated" else "alert.notify.opened"
    if kind not in KINDS:
        raise RenderError(f"unknown notification kind {kind!r}")
    return f"notify.{kind}"


def contribution_values(params: Mapping[str, object]) -> tuple[str, dict[str, str]]:
    """The catalog key and values of a ``contribution_decision`` message, from its params alone
    (queued by ``cloud_api.contributions.service``: decision, hours, description, points, reason).

    The description (the provider's own words) is quoted up to
    :data:`CONTRIBUTION_WHAT_CHARS` characters, to keep the message one SMS long.

    Raises:
        KeyError: a parameter is missing.
        RenderError: the decision is neither approved nor rejected.

    Example:
        >>> contribution_values({"decision": "approved", "hours": 2.5, "points": 45,
        ...                      "description": "陪王阿姨看病", "reason": "ok"})
        ('contribution.notify.approved', {'hours': '2.5', 'what': '陪王阿姨看病', 'points': '45', 'reason': 'ok'})
    """
    key = catalog_key("contribution_decision", decision=str(params["decision"]))
    what = " ".join(str(params["description"]).split())
    if len(what) > CONTRIBUTION_WHAT_CHARS:
        what = what[: CONTRIBUTION_WHAT_CHARS - 1] + "…"
    hours = float(str(params["hours"]))
    return key, {
        "hours": f"{hours:g}",
        "what": what,
        "points": str(int(str(params["points"]))),
        "reason": str(params["reason"]),
    }


def alert_values(
    alert: Mapping[str, object], locker: str | None, level: int, language: str
) -> tuple[str, dict[str, str]]:
    """The catalog key and values of an ``alert`` message to a member of staff: severity,
    tracking code, rule, locker, compartment and the response deadline, in ``language`` (never a
    code or a phone: the alert holds neither).

    Args:
        alert: the alert's row (``severity``, ``tracking_code``, ``rule``, ``compartment``,
            ``due_ms``).
        locker: the device's display name (None: the alert concerns no device).
        level: the escalation level the message is for (0: the alert was opened).

    Example:
        >>> alert_values({"severity": "red", "tracking_code": "R-0115-001", "rule": "jammed",
        ...               "compartment": "A2", "due_ms": 1_800_000_000_000}, "1号柜", 0, "en")[1]
        {'severity': 'Red', 'tracking': 'R-0115-001', 'rule': 'door jammed', 'locker': '1号柜', 'compartment': 'A2', 'due': '15 Jan 16:00'}
    """
    key = catalog_key("alert", decision="escalated" if level > 0 else None)
    return key, {
        "severity": t(f"alert.severity.{alert['severity']}", language),
        "tracking": str(alert["tracking_code"]),
        "rule": t(f"alert.rule.{alert['rule']}", language),
        "locker": locker or "—",
        "compartment": str(alert["compartment"] or "—"),
        "due": format_time(int(str(alert["due_ms"])), language),
    }


def _template(key: str, language: str) -> str:
    text = catalog(language if language in LANGUAGES else DEFAULT_LANGUAGE).get(key)
    if text is None:
        text = catalog(DEFAULT_LANGUAGE).get(key)
    if text is None:
        raise RenderError(f"the catalog has no message {key}")
    return text


def placeholders(key: str, language: str) -> frozenset[str]:
    """The names a message needs filled in (``{item}``, ``{code}``…)."""
    return frozenset(
        name for _, name, _, _ in string.Formatter().parse(_template(key, language)) if name
    )


def render(key: str, values: Mapping[str, str], language: str) -> str:
    """The text of message ``key`` in ``language`` (zh-CN when the language is unknown).

    Raises:
        RenderError: a value the message needs is missing.
    """
    missing = placeholders(key, language) - set(values)
    if missing:
        raise RenderError(f"{key} needs {', '.join(sorted(missing))}")
    return t(key, language, **values)


def format_time(wall_ms: int, language: str, utc_offset_ms: int = COMMUNITY_OFFSET_MS) -> str:
    """A date and time of day for a message: ``11月24日 18:30`` or ``24 Nov 18:30`` (local).

    Example:
        >>> format_time(1_800_000_000_000, "en")
        '15 Jan 16:00'
    """
    local = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=wall_ms + utc_offset_ms)
    if language == "en":
        return f"{local.day} {_MONTHS_EN[local.month - 1]} {local:%H:%M}"
    return f"{local.month}月{local.day}日 {local:%H:%M}"
