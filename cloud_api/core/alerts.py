"""Alerts that reach a person: rules, severities, response clocks, tracking codes (pure).

No I/O and no clock: every function takes the instant it decides for (``now_ms``, Unix epoch
milliseconds). The service (``cloud_api/alerts/service.py``) reads device messages and the store,
and records what these functions decide (docs/decisions/0022-alerts.md).

- **Rules** (:data:`RULES`) are data: a rule id, its severity, what opens it and what clears it.
  :func:`event_signals` says what a controller's ``alarm`` / ``alarm_cleared`` event means,
  :func:`telemetry_signals` what a ``tele`` message means; ``offline`` comes from the device's
  status after a grace (:func:`is_offline_due`). Every alarm reason of the contract is either a
  rule's trigger or named in :data:`NOT_ALERTS` with the reason it is not one.
- **One live alert per cause**: :func:`cause_key` = rule + device + compartment.
- **Severity and response clocks**, the community practice's three colours: red within 24 h,
  yellow within 3 working days (Monday to Friday in UTC+8, :data:`HOLIDAYS` excluded), blue
  within 7 days (:func:`due_at`). Acknowledging stops the clock (:func:`clock_of`).
- **Tracking codes** readable over the phone: ``R-1123-007`` (:func:`tracking_code`).
- **Escalation**: a red alert not acknowledged within 30 min goes up a level, and any alert not
  acknowledged by its due time goes up one more (:func:`auto_level`); level *n* is told to the
  person on call at rank *n* (:func:`choose_recipient`).

Example:
    >>> event_signals("alarm", "door_ajar", "A2", {"item_at_risk": True})
    (Opened(rule='item_at_risk', severity='red', compartment='A2', figure=None),)
    >>> tracking_code("red", 1_800_000_000_000, 7)
    'R-0115-007'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Literal, get_args

from linli.contract.models import AlarmReason

Severity = Literal["red", "yellow", "blue"]
SEVERITIES: tuple[Severity, ...] = ("red", "yellow", "blue")
"""Most urgent first."""
STATUSES = ("open", "acknowledged", "resolved")
ACTIONS = ("acknowledge", "escalate", "resolve")

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

UTC_OFFSET_MS = 8 * HOUR_MS
"""The community's offset from UTC (``cloud_api.transparency.COMMUNITY_TZ``, no daylight saving)."""

HOLIDAYS: tuple[date, ...] = ()
"""Public holidays (local dates) that are not working days for the yellow clock. A data seam:
empty today; a deployment that wants the State Council's calendar (and its make-up working
Saturdays, which this model does not have) fills it from a reviewed file, year by year."""

RED_UNACKNOWLEDGED_MS = 30 * MINUTE_MS
"""A red alert nobody acknowledged within this long goes to the next person on call."""
OFFLINE_GRACE_MS = 5 * MINUTE_MS
"""A device offline or lost for less than this pages nobody (a restart takes seconds)."""
DISK_YELLOW_BELOW_PCT = 10.0
DISK_RED_BELOW_PCT = 3.0
UNDER_VOLTAGE_BITS = (1 << 0) | (1 << 16)
"""``vcgencmd get_throttled``: bit 0 under-voltage now, bit 16 under-voltage since boot."""
NOTE_MAX_CHARS = 500


@dataclass(frozen=True)
class Rule:
    """One alert rule.

    Attributes:
        id: the rule's name (``door_ajar``), kept in ``alerts.rule``.
        severity: its colour; ``disk`` opens yellow or red by the figure.
        opens: what opens it (for people: the decision record and the console's help).
        clears: what clears the condition (None: only a person, by resolving it).
        source: ``event`` (a controller alarm), ``telemetry`` or ``status``.
    """

    id: str
    severity: Severity
    opens: str
    clears: str | None
    source: Literal["event", "telemetry", "status"]


_RULES = (
    Rule("door_ajar", "yellow", "alarm door_ajar (a door open over 120 s)", "alarm_cleared door_ajar (closed)", "event"),
    Rule("item_at_risk", "red", "alarm door_ajar with data.item_at_risk (an item inside an open door)", "alarm_cleared door_ajar (closed)", "event"),
    Rule("door_forced", "red", "alarm door_forced (opened while locked, no pulse explains it)", "alarm_cleared door_forced (after clear_attention)", "event"),
    Rule("jammed", "red", "alarm jammed (two pulses never followed by an opening)", "alarm_cleared jammed (after clear_attention)", "event"),
    Rule("board_unreachable", "red", "alarm bus_unreachable (the bank refuses codes)", "alarm_cleared bus_unreachable (readings back)", "event"),
    Rule("output_forced_off", "red", "alarm output_forced_off (an output stayed on: safety)", "alarm_cleared output_forced_off (after clear_attention)", "event"),
    Rule("latch_fault", "red", "alarm latch_fault (a latch released by itself: safety)", "alarm_cleared latch_fault (after clear_attention)", "event"),
    Rule("stale_grant_list", "yellow", "alarm grant_list_stale, or telemetry grant_list_age_s over the bound", "alarm_cleared grant_list_stale, or a fresh list in telemetry", "event"),
    Rule("code_guessing", "blue", "alarm code_guessing (10 failed entries, the bank backs off)", "alarm_cleared code_guessing (a quiet hour)", "event"),
    Rule("guessing_guarded", "blue", "alarm guess_budget_spent (codes need the phone's last four digits)", "alarm_cleared guess_budget_spent", "event"),
    Rule("occupancy_unexplained", "blue", "alarm occupancy_unexplained (an item came or went behind a closed door)", None, "event"),
    Rule("impossible_transition", "blue", "alarm impossible_transition (the controller met a state it declares impossible: a bug)", None, "event"),
    Rule("under_voltage", "yellow", "telemetry throttled with bit 0 or bit 16 (under-voltage now or since boot)", "telemetry throttled without either bit", "telemetry"),
    Rule("disk", "yellow", "telemetry disk_free_pct below 10 % (red below 3 %)", "telemetry disk_free_pct at 10 % or more", "telemetry"),
    Rule("offline", "yellow", "status offline or lost for longer than the grace (5 min)", "status online, or the device heard again", "status"),
)  # fmt: skip
RULES: Mapping[str, Rule] = MappingProxyType({rule.id: rule for rule in _RULES})

ALARM_RULES: Mapping[str, str] = MappingProxyType(
    {
        "door_ajar": "door_ajar",  # item_at_risk when data.item_at_risk is true
        "door_forced": "door_forced",
        "jammed": "jammed",
        "bus_unreachable": "board_unreachable",
        "output_forced_off": "output_forced_off",
        "latch_fault": "latch_fault",
        "grant_list_stale": "stale_grant_list",
        "code_guessing": "code_guessing",
        "guess_budget_spent": "guessing_guarded",
        "occupancy_unexplained": "occupancy_unexplained",
        "impossible_transition": "impossible_transition",
    }
)
"""Alarm reason (docs/contract.md, "Alarms") → the rule it opens."""

NOT_ALERTS: Mapping[str, str] = MappingProxyType(
    {
        "dropoff_empty": "a case for the social worker (settlement opens it with the grant)",
        "item_left_behind": "a case for the social worker (settlement opens it with the grant)",
    }
)
"""Alarm reasons that open no alert, and why: they concern a resident's item, not the bank."""

SEVERITY_LETTER: Mapping[str, str] = MappingProxyType({"red": "R", "yellow": "Y", "blue": "B"})
_SEVERITY_RANK: dict[str, int] = {severity: rank for rank, severity in enumerate(SEVERITIES)}


def is_more_severe(severity: str, than: str) -> bool:
    """Whether ``severity`` is more urgent than ``than`` (red > yellow > blue)."""
    return _SEVERITY_RANK[severity] < _SEVERITY_RANK[than]


def cause_key(rule: str, device_id: str | None, compartment: str | None) -> str:
    """What makes two alerts the same cause (one live alert each): rule, device, compartment.

    Example:
        >>> cause_key("jammed", "locker-a", "A2"), cause_key("offline", "locker-a", None)
        ('jammed:locker-a:A2', 'offline:locker-a:-')
    """
    return f"{rule}:{device_id or '-'}:{compartment or '-'}"


# --- what a device message means ------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """The condition of ``rule`` holds (opens an alert unless one is live for the cause).

    ``figure`` is the measured value that triggered it (disk %, throttled bits, list age)."""

    rule: str
    severity: Severity
    compartment: str | None = None
    figure: float | int | None = None


@dataclass(frozen=True)
class Cleared:
    """The condition of ``rule`` is over (the live alert shows "condition cleared")."""

    rule: str
    compartment: str | None = None


Signal = Opened | Cleared


def event_signals(
    event_type: str,
    reason: str | None,
    compartment: str | None,
    data: Mapping[str, object],
) -> tuple[Signal, ...]:
    """What a controller event means for alerts (nothing for events that are not alarms).

    A ``door_ajar`` alarm with ``data.item_at_risk`` true is the red ``item_at_risk``; its
    ``alarm_cleared door_ajar`` (closing the door) clears either.
    """
    if event_type not in ("alarm", "alarm_cleared") or reason is None:
        return ()
    rule = ALARM_RULES.get(reason)
    if rule is None:
        return ()
    if event_type == "alarm_cleared":
        if RULES[rule].clears is None:
            return ()
        if reason == "door_ajar":
            return (Cleared("door_ajar", compartment), Cleared("item_at_risk", compartment))
        return (Cleared(rule, compartment),)
    if reason == "door_ajar" and data.get("item_at_risk") is True:
        rule = "item_at_risk"
    return (Opened(rule, RULES[rule].severity, compartment),)


def disk_severity(free_pct: float) -> Severity | None:
    """The ``disk`` rule's severity for a free-space figure (None: enough space).

    Example:
        >>> disk_severity(12.0), disk_severity(9.9), disk_severity(2.5)
        (None, 'yellow', 'red')
    """
    if free_pct < DISK_RED_BELOW_PCT:
        return "red"
    if free_pct < DISK_YELLOW_BELOW_PCT:
        return "yellow"
    return None


def telemetry_signals(
    *,
    throttled: int | None,
    disk_free_pct: float | None,
    grant_list_age_s: int | None,
    stale_after_s: int,
) -> tuple[Signal, ...]:
    """What a telemetry message means for alerts. A figure the device does not report (None)
    says nothing: its rule is neither opened nor cleared.

    Example:
        >>> telemetry_signals(throttled=0x10000, disk_free_pct=None, grant_list_age_s=30,
        ...                   stale_after_s=3600)
        (Opened(rule='under_voltage', severity='yellow', compartment=None, figure=65536), Cleared(rule='stale_grant_list', compartment=None))
    """
    signals: list[Signal] = []
    if throttled is not None:
        if throttled & UNDER_VOLTAGE_BITS:
            signals.append(Opened("under_voltage", "yellow", figure=throttled))
        else:
            signals.append(Cleared("under_voltage"))
    if disk_free_pct is not None:
        severity = disk_severity(disk_free_pct)
        signals.append(
            Cleared("disk") if severity is None else Opened("disk", severity, figure=disk_free_pct)
        )
    if grant_list_age_s is not None:
        if grant_list_age_s > stale_after_s:
            signals.append(Opened("stale_grant_list", "yellow", figure=grant_list_age_s))
        else:
            signals.append(Cleared("stale_grant_list"))
    return tuple(signals)


def is_offline_due(status: str, status_ms: int | None, now_ms: int, grace_ms: int) -> bool:
    """Whether a device's status has been ``offline`` or ``lost`` for longer than the grace."""
    return status in ("offline", "lost") and status_ms is not None and now_ms - status_ms > grace_ms


def is_older_event(event: tuple[str, int], than: tuple[str, int] | None) -> bool:
    """Whether ``event`` (boot, seq) came before ``than`` in the same boot: a re-sent or
    replayed event that must not clear an alert a later event opened."""
    return than is not None and event[0] == than[0] and event[1] <= than[1]


# --- response clocks ------------------------------------------------------------------------------


def _local(wall_ms: int, utc_offset_ms: int) -> datetime:
    """The local wall time of an instant, as a naive datetime (no daylight saving in UTC+8)."""
    return datetime(1970, 1, 1) + timedelta(milliseconds=wall_ms + utc_offset_ms)


def _instant(local: datetime, utc_offset_ms: int) -> int:
    return (local - datetime(1970, 1, 1)) // timedelta(milliseconds=1) - utc_offset_ms


def is_working_day(day: date, holidays: Sequence[date] = HOLIDAYS) -> bool:
    """Monday to Friday, and not a public holiday."""
    return day.weekday() < 5 and day not in holidays


def add_working_days(
    wall_ms: int,
    days: int,
    *,
    holidays: Sequence[date] = HOLIDAYS,
    utc_offset_ms: int = UTC_OFFSET_MS,
) -> int:
    """The same local time of day ``days`` working days later.

    Days are counted from the day after ``wall_ms``'s local day; weekends and holidays are
    skipped, so a yellow alert raised on Friday at 18:00 is due on Wednesday at 18:00, and one
    raised on Saturday at 10:00 on Wednesday at 10:00.

    Example:
        >>> friday_1800 = 1_800_007_200_000  # 2027-01-15 18:00 UTC+8, a Friday
        >>> (add_working_days(friday_1800, 3) - friday_1800) // DAY_MS
        5
    """
    if days < 0:
        raise ValueError("working days are counted forward")
    local = _local(wall_ms, utc_offset_ms)
    counted = 0
    while counted < days:
        local += timedelta(days=1)
        if is_working_day(local.date(), holidays):
            counted += 1
    return _instant(local, utc_offset_ms)


def due_at(
    severity: str,
    opened_ms: int,
    *,
    holidays: Sequence[date] = HOLIDAYS,
    utc_offset_ms: int = UTC_OFFSET_MS,
) -> int:
    """When an alert opened at ``opened_ms`` must have been responded to.

    Example:
        >>> (due_at("red", 0) // HOUR_MS, due_at("blue", 0) // DAY_MS)
        (24, 7)
    """
    if severity == "red":
        return opened_ms + DAY_MS
    if severity == "yellow":
        return add_working_days(opened_ms, 3, holidays=holidays, utc_offset_ms=utc_offset_ms)
    if severity == "blue":
        return opened_ms + 7 * DAY_MS
    raise ValueError(f"unknown severity {severity!r}")


@dataclass(frozen=True)
class ClockView:
    """An alert's response clock at one instant.

    Attributes:
        due_ms: when a response is due.
        stopped_ms: when it stopped (acknowledged, or resolved unacknowledged); None: running.
        remaining_ms: time left (at the stop, or now), when not past due.
        overdue_ms: how far past due (at the stop, or now), when past due.
    """

    due_ms: int
    stopped_ms: int | None
    remaining_ms: int | None
    overdue_ms: int | None

    def to_json(self) -> dict[str, int | None]:
        """The ``clock`` of an alert in the API."""
        return {
            "due_ms": self.due_ms,
            "stopped_ms": self.stopped_ms,
            "remaining_ms": self.remaining_ms,
            "overdue_ms": self.overdue_ms,
        }


def clock_of(
    *,
    due_ms: int,
    acknowledged_ms: int | None,
    resolved_ms: int | None,
    now_ms: int,
) -> ClockView:
    """The response clock: it runs until the alert is acknowledged (or resolved without being
    acknowledged), then stays where it stopped however much time passes.

    Example:
        >>> clock_of(due_ms=10_000, acknowledged_ms=4_000, resolved_ms=None, now_ms=99_000)
        ClockView(due_ms=10000, stopped_ms=4000, remaining_ms=6000, overdue_ms=None)
    """
    stopped = acknowledged_ms if acknowledged_ms is not None else resolved_ms
    at = stopped if stopped is not None else now_ms
    if at <= due_ms:
        return ClockView(due_ms, stopped, due_ms - at, None)
    return ClockView(due_ms, stopped, None, at - due_ms)


def duration_parts(ms: int) -> tuple[int, int, int]:
    """(days, hours, minutes) of a duration, minutes rounded up (a minute left is still a minute).

    Example:
        >>> duration_parts(5 * HOUR_MS + 12 * MINUTE_MS), duration_parts(30 * HOUR_MS + 1)
        ((0, 5, 12), (1, 6, 1))
    """
    minutes = max(0, -(-ms // MINUTE_MS))
    return minutes // (24 * 60), minutes % (24 * 60) // 60, minutes % 60


# --- escalation and who is told -------------------------------------------------------------------


def auto_level(severity: str, *, opened_ms: int, due_ms: int, now_ms: int) -> int:
    """The escalation level an alert nobody acknowledged has reached by ``now_ms``: red goes up
    one level after 30 min, and every alert one more once past its due time.

    Example:
        >>> auto_level("red", opened_ms=0, due_ms=DAY_MS, now_ms=31 * MINUTE_MS)
        1
        >>> auto_level("yellow", opened_ms=0, due_ms=DAY_MS, now_ms=DAY_MS)
        1
    """
    level = 0
    if severity == "red" and now_ms - opened_ms >= RED_UNACKNOWLEDGED_MS:
        level += 1
    if now_ms >= due_ms:
        level += 1
    return level


def choose_recipient(
    roster: Sequence[tuple[int, str]], level: int, fallback: Sequence[str]
) -> str | None:
    """Who is told of an alert at escalation ``level``.

    Args:
        roster: (rank, person id) of the people on call now, in roster order (a rank held twice:
            the first listed wins).
        level: the alert's escalation level (0 on opening).
        fallback: the community's maintainers, for an empty roster.

    Returns:
        The person at rank ``level``; with nobody at that rank, rank 0 (the first person on call
        hears again); with nobody on call, the first maintainer; None when there is no one.

    Example:
        >>> choose_recipient([(0, "per_4"), (1, "per_6")], 1, ["per_4"])
        'per_6'
        >>> choose_recipient([(0, "per_4")], 2, []), choose_recipient([], 0, ["per_7"])
        ('per_4', 'per_7')
    """
    by_rank: dict[int, str] = {}
    for rank, person in roster:
        by_rank.setdefault(rank, person)
    if level in by_rank:
        return by_rank[level]
    if by_rank:
        return by_rank[min(by_rank)]
    return fallback[0] if fallback else None


# --- actions --------------------------------------------------------------------------------------


class AlertStateError(ValueError):
    """An action the alert's status does not allow; ``code`` is the API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def next_status(status: str, action: str) -> str:
    """The status after a person's action.

    ``acknowledge``: open → acknowledged; ``escalate``: open or acknowledged, unchanged (the
    level rises); ``resolve``: open or acknowledged → resolved.

    Raises:
        AlertStateError: ``already_resolved``, ``already_acknowledged``.
        ValueError: an unknown action or status.

    Example:
        >>> next_status("open", "acknowledge"), next_status("acknowledged", "resolve")
        ('acknowledged', 'resolved')
    """
    if action not in ACTIONS or status not in STATUSES:
        raise ValueError(f"unknown action {action!r} or status {status!r}")
    if status == "resolved":
        raise AlertStateError("already_resolved", "the alert is already resolved")
    if action == "acknowledge":
        if status == "acknowledged":
            raise AlertStateError("already_acknowledged", "the alert is already acknowledged")
        return "acknowledged"
    if action == "resolve":
        return "resolved"
    return status


# --- tracking codes -------------------------------------------------------------------------------


def local_day_bounds(wall_ms: int, utc_offset_ms: int = UTC_OFFSET_MS) -> tuple[int, int]:
    """[start, end) of the local day of ``wall_ms``, as instants."""
    local_ms = wall_ms + utc_offset_ms
    start = local_ms - local_ms % DAY_MS - utc_offset_ms
    return start, start + DAY_MS


def tracking_code(
    severity: str, opened_ms: int, sequence: int, utc_offset_ms: int = UTC_OFFSET_MS
) -> str:
    """``R-1123-007``: the severity's letter, the local month and day, the day's sequence (three
    digits, more past 999). Short enough to read over the phone; letters are never O or I.

    Example:
        >>> tracking_code("yellow", 1_800_000_000_000, 12)
        'Y-0115-012'
    """
    if sequence < 1:
        raise ValueError("sequences start at 1")
    local = datetime.fromtimestamp((opened_ms + utc_offset_ms) / 1000, UTC)
    return f"{SEVERITY_LETTER[severity]}-{local:%m%d}-{sequence:03d}"


def alarm_reasons_covered() -> frozenset[str]:
    """Every alarm reason this module has a word for (a rule, or a reason it is not an alert)."""
    return frozenset(ALARM_RULES) | frozenset(NOT_ALERTS)


CONTRACT_REASONS: frozenset[str] = frozenset(get_args(AlarmReason))
"""The alarm reasons of the contract (``linli.contract.AlarmReason``)."""
