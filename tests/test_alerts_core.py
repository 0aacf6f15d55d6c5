"""The pure part of alerts (cloud_api/core/alerts.py): rules, clocks, codes, escalation.

Each function fed a table of cases; the working-day arithmetic also as a hypothesis property.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_api.core import alerts as core
from cloud_api.core.alerts import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    RULES,
    AlertStateError,
    Cleared,
    ClockView,
    Opened,
    add_working_days,
    auto_level,
    cause_key,
    choose_recipient,
    clock_of,
    due_at,
    duration_parts,
    event_signals,
    is_offline_due,
    is_older_event,
    local_day_bounds,
    next_status,
    telemetry_signals,
    tracking_code,
)
from cloud_api.core.notify import alert_values, placeholders
from cloud_api.transparency import COMMUNITY_TZ
from linli.i18n import LANGUAGES, catalog


def local(text: str) -> int:
    """An instant from a local (UTC+8) ``YYYY-MM-DD HH:MM``."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=COMMUNITY_TZ)
    return int(moment.timestamp() * 1000)


def local_text(wall_ms: int) -> str:
    moment = datetime.fromtimestamp(wall_ms / 1000, UTC).astimezone(COMMUNITY_TZ)
    return moment.strftime("%a %Y-%m-%d %H:%M")


# --- rules ----------------------------------------------------------------------------------------


def test_every_alarm_reason_of_the_contract_is_a_rule_or_says_why_not() -> None:
    assert core.alarm_reasons_covered() == core.CONTRACT_REASONS
    assert not set(core.ALARM_RULES) & set(core.NOT_ALERTS)
    assert set(core.ALARM_RULES.values()) <= set(RULES)


@pytest.mark.parametrize(
    ("rule", "severity"),
    [
        ("door_ajar", "yellow"),
        ("item_at_risk", "red"),
        ("door_forced", "red"),
        ("jammed", "red"),
        ("board_unreachable", "red"),
        ("stale_grant_list", "yellow"),
        ("output_forced_off", "red"),
        ("latch_fault", "red"),
        ("code_guessing", "blue"),
        ("under_voltage", "yellow"),
        ("disk", "yellow"),
        ("offline", "yellow"),
    ],
)
def test_the_rules_of_the_issue_have_their_severity(rule: str, severity: str) -> None:
    assert RULES[rule].severity == severity


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_rule_severity_status_and_action_has_words(language: str) -> None:
    words = catalog(language)
    needed = (
        [f"alert.rule.{rule}" for rule in RULES]
        + [f"alert.severity.{s}" for s in core.SEVERITIES]
        + [f"alert.severity_help.{s}" for s in core.SEVERITIES]
        + [f"alert.status.{s}" for s in core.STATUSES]
        + [
            f"alert.action.{a}"
            for a in ("opened", "acknowledged", "escalated", "resolved", "cleared", "recurred")
        ]
        + ["alert.action.raised"]
    )
    assert [key for key in needed if key not in words] == []


@pytest.mark.parametrize(
    ("event", "reason", "data", "expected"),
    [
        ("alarm", "door_ajar", {}, (Opened("door_ajar", "yellow", "A2"),)),
        ("alarm", "door_ajar", {"item_at_risk": False}, (Opened("door_ajar", "yellow", "A2"),)),
        ("alarm", "door_ajar", {"item_at_risk": True}, (Opened("item_at_risk", "red", "A2"),)),
        ("alarm", "door_forced", {"occupancy": "present"}, (Opened("door_forced", "red", "A2"),)),
        ("alarm", "jammed", {"pulses": 2}, (Opened("jammed", "red", "A2"),)),
        ("alarm", "bus_unreachable", {}, (Opened("board_unreachable", "red", "A2"),)),
        ("alarm", "grant_list_stale", {}, (Opened("stale_grant_list", "yellow", "A2"),)),
        ("alarm", "output_forced_off", {}, (Opened("output_forced_off", "red", "A2"),)),
        ("alarm", "latch_fault", {}, (Opened("latch_fault", "red", "A2"),)),
        ("alarm", "code_guessing", {"failures": 10}, (Opened("code_guessing", "blue", "A2"),)),
        ("alarm", "dropoff_empty", {}, ()),
        ("alarm", "item_left_behind", {}, ()),
        (
            "alarm_cleared",
            "door_ajar",
            {},
            (Cleared("door_ajar", "A2"), Cleared("item_at_risk", "A2")),
        ),
        ("alarm_cleared", "jammed", {}, (Cleared("jammed", "A2"),)),
        ("alarm_cleared", "bus_unreachable", {}, (Cleared("board_unreachable", "A2"),)),
        ("alarm_cleared", "occupancy_unexplained", {}, ()),  # this rule never clears by itself
        ("door_opened", None, {}, ()),
        ("alarm", None, {}, ()),
    ],
)
def test_what_an_event_means(
    event: str, reason: str | None, data: dict[str, object], expected: tuple[object, ...]
) -> None:
    assert event_signals(event, reason, "A2", data) == expected


@pytest.mark.parametrize(
    ("throttled", "disk", "age", "expected"),
    [
        (0, None, None, (Cleared("under_voltage"),)),
        (1, None, None, (Opened("under_voltage", "yellow", figure=1),)),
        (0x10000, None, None, (Opened("under_voltage", "yellow", figure=0x10000),)),
        (0x50005, None, None, (Opened("under_voltage", "yellow", figure=0x50005),)),
        (0x4, None, None, (Cleared("under_voltage"),)),  # throttled, but not under-voltage
        (None, 10.0, None, (Cleared("disk"),)),
        (None, 9.9, None, (Opened("disk", "yellow", figure=9.9),)),
        (None, 3.0, None, (Opened("disk", "yellow", figure=3.0),)),
        (None, 2.9, None, (Opened("disk", "red", figure=2.9),)),
        (None, None, 3600, (Cleared("stale_grant_list"),)),
        (None, None, 3601, (Opened("stale_grant_list", "yellow", figure=3601),)),
        (None, None, None, ()),
    ],
)
def test_what_telemetry_means(
    throttled: int | None, disk: float | None, age: int | None, expected: tuple[object, ...]
) -> None:
    found = telemetry_signals(
        throttled=throttled, disk_free_pct=disk, grant_list_age_s=age, stale_after_s=3600
    )
    assert found == expected


def test_one_cause_per_rule_device_and_compartment() -> None:
    assert cause_key("jammed", "locker-a", "A1") != cause_key("jammed", "locker-a", "A2")
    assert cause_key("jammed", "locker-a", "A1") != cause_key("jammed", "locker-b", "A1")
    assert cause_key("offline", "locker-a", None) == "offline:locker-a:-"


@pytest.mark.parametrize(
    ("status", "since_s", "expected"),
    [
        ("offline", 299, False),
        ("offline", 301, True),
        ("lost", 301, True),
        ("online", 3600, False),
        ("never_seen", 3600, False),
    ],
)
def test_offline_only_after_the_grace(status: str, since_s: int, expected: bool) -> None:
    now = 1_800_000_000_000
    assert is_offline_due(status, now - since_s * 1000, now, core.OFFLINE_GRACE_MS) is expected
    assert is_offline_due(status, None, now, core.OFFLINE_GRACE_MS) is False


def test_a_replayed_event_is_older_only_within_its_boot() -> None:
    assert is_older_event(("b1", 5), ("b1", 5))
    assert is_older_event(("b1", 4), ("b1", 5))
    assert not is_older_event(("b1", 6), ("b1", 5))
    assert not is_older_event(("b2", 1), ("b1", 5))
    assert not is_older_event(("b1", 1), None)


# --- response clocks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opened", "due"),
    [
        ("2027-01-15 18:00", "Wed 2027-01-20 18:00"),  # Friday evening: the next Wednesday
        ("2027-01-16 10:00", "Wed 2027-01-20 10:00"),  # Saturday
        ("2027-01-17 23:59", "Wed 2027-01-20 23:59"),  # Sunday
        ("2027-01-18 09:00", "Thu 2027-01-21 09:00"),  # Monday
        ("2027-01-20 00:00", "Mon 2027-01-25 00:00"),  # Wednesday midnight
    ],
)
def test_yellow_is_due_three_working_days_later(opened: str, due: str) -> None:
    assert local_text(due_at("yellow", local(opened))) == due


def test_public_holidays_are_not_working_days() -> None:
    holidays = (date(2027, 1, 18), date(2027, 1, 19))  # Monday and Tuesday off
    due = add_working_days(local("2027-01-15 18:00"), 3, holidays=holidays)
    assert local_text(due) == "Fri 2027-01-22 18:00"
    assert core.HOLIDAYS == ()  # the seam is empty today


def test_red_and_blue_clocks() -> None:
    opened = local("2027-01-15 18:00")
    assert due_at("red", opened) == opened + 24 * HOUR_MS
    assert due_at("blue", opened) == opened + 7 * DAY_MS
    with pytest.raises(ValueError, match="severity"):
        due_at("green", opened)


@given(st.integers(min_value=1_600_000_000_000, max_value=2_200_000_000_000))
def test_yellow_due_is_after_opening_and_exactly_three_weekdays_on(opened: int) -> None:
    due = due_at("yellow", opened)
    assert due >= opened
    start = datetime.fromtimestamp(opened / 1000, UTC).astimezone(COMMUNITY_TZ)
    end = datetime.fromtimestamp(due / 1000, UTC).astimezone(COMMUNITY_TZ)
    assert end.time() == start.time()  # the same time of day
    assert end.weekday() < 5  # due on a working day
    days = (end.date() - start.date()).days
    weekdays = [start.date() + timedelta(days=n) for n in range(1, days + 1)]
    assert sum(d.weekday() < 5 for d in weekdays) == 3
    assert days <= 5


def test_the_clock_runs_until_acknowledged_then_stays() -> None:
    due = 10 * HOUR_MS
    running = clock_of(due_ms=due, acknowledged_ms=None, resolved_ms=None, now_ms=4 * HOUR_MS)
    assert running == ClockView(due, None, 6 * HOUR_MS, None)
    late = clock_of(due_ms=due, acknowledged_ms=None, resolved_ms=None, now_ms=12 * HOUR_MS)
    assert late == ClockView(due, None, None, 2 * HOUR_MS)
    for now in (5 * HOUR_MS, 11 * HOUR_MS, 100 * HOUR_MS):
        stopped = clock_of(due_ms=due, acknowledged_ms=3 * MINUTE_MS, resolved_ms=None, now_ms=now)
        assert stopped == ClockView(due, 3 * MINUTE_MS, due - 3 * MINUTE_MS, None)
    resolved = clock_of(due_ms=due, acknowledged_ms=None, resolved_ms=11 * HOUR_MS, now_ms=50)
    assert resolved == ClockView(due, 11 * HOUR_MS, None, HOUR_MS)
    assert resolved.to_json() == {
        "due_ms": due,
        "stopped_ms": 11 * HOUR_MS,
        "remaining_ms": None,
        "overdue_ms": HOUR_MS,
    }


@pytest.mark.parametrize(
    ("ms", "parts"),
    [
        (0, (0, 0, 0)),
        (1, (0, 0, 1)),
        (3 * MINUTE_MS, (0, 0, 3)),
        (5 * HOUR_MS + 12 * MINUTE_MS, (0, 5, 12)),
        (DAY_MS + 6 * HOUR_MS, (1, 6, 0)),
        (-5, (0, 0, 0)),
    ],
)
def test_durations(ms: int, parts: tuple[int, int, int]) -> None:
    assert duration_parts(ms) == parts


# --- escalation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "after_ms", "level"),
    [
        ("red", 29 * MINUTE_MS, 0),
        ("red", 30 * MINUTE_MS, 1),
        ("red", DAY_MS, 2),
        ("yellow", 30 * MINUTE_MS, 0),
        ("yellow", 3 * DAY_MS, 1),
        ("blue", 6 * DAY_MS, 0),
        ("blue", 7 * DAY_MS, 1),
    ],
)
def test_unacknowledged_alerts_go_up(severity: str, after_ms: int, level: int) -> None:
    opened = local("2027-01-18 09:00")  # a Monday: yellow is due Thursday 09:00
    due = due_at(severity, opened)
    assert auto_level(severity, opened_ms=opened, due_ms=due, now_ms=opened + after_ms) == level


def test_who_is_told() -> None:
    roster = [(0, "per_4"), (1, "per_6"), (1, "per_7")]
    assert choose_recipient(roster, 0, ["per_9"]) == "per_4"
    assert choose_recipient(roster, 1, ["per_9"]) == "per_6"  # a rank held twice: the first
    assert choose_recipient(roster, 5, ["per_9"]) == "per_4"  # past the roster's end: rank 0
    assert choose_recipient([(1, "per_6")], 0, ["per_9"]) == "per_6"  # no rank 0: the first on call
    assert choose_recipient([], 2, ["per_9", "per_8"]) == "per_9"  # nobody on call: a maintainer
    assert choose_recipient([], 0, []) is None


@pytest.mark.parametrize(
    ("status", "action", "result"),
    [
        ("open", "acknowledge", "acknowledged"),
        ("open", "escalate", "open"),
        ("open", "resolve", "resolved"),
        ("acknowledged", "acknowledge", "already_acknowledged"),
        ("acknowledged", "escalate", "acknowledged"),
        ("acknowledged", "resolve", "resolved"),
        ("resolved", "acknowledge", "already_resolved"),
        ("resolved", "escalate", "already_resolved"),
        ("resolved", "resolve", "already_resolved"),
    ],
)
def test_what_each_action_does(status: str, action: str, result: str) -> None:
    if result.startswith("already"):
        with pytest.raises(AlertStateError) as refused:
            next_status(status, action)
        assert refused.value.code == result
    else:
        assert next_status(status, action) == result
    with pytest.raises(ValueError, match="unknown"):
        next_status(status, "snooze")


# --- tracking codes -------------------------------------------------------------------------------


def test_tracking_codes_are_short_and_local() -> None:
    assert tracking_code("red", local("2027-11-23 09:00"), 7) == "R-1123-007"
    assert tracking_code("yellow", local("2027-11-23 23:59"), 12) == "Y-1123-012"
    assert tracking_code("blue", local("2027-11-24 00:00"), 1) == "B-1124-001"
    assert tracking_code("red", local("2027-11-24 00:00"), 1234) == "R-1124-1234"
    with pytest.raises(ValueError, match="start at 1"):
        tracking_code("red", 0, 0)
    assert re.fullmatch(r"[RYB]-\d{4}-\d{3,}", tracking_code("blue", 0, 5))


def test_local_days() -> None:
    start, end = local_day_bounds(local("2027-11-23 23:59"))
    assert (start, end) == (local("2027-11-23 00:00"), local("2027-11-24 00:00"))
    assert local_day_bounds(local("2027-11-24 00:00"))[0] == end


def test_the_offset_is_the_communitys() -> None:
    offset = COMMUNITY_TZ.utcoffset(None)
    assert offset is not None and offset.total_seconds() * 1000 == core.UTC_OFFSET_MS


# --- the message ----------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("level", [0, 2])
def test_the_alert_message_names_everything_and_no_code(language: str, level: int) -> None:
    alert = {
        "severity": "red",
        "tracking_code": "R-1123-007",
        "rule": "jammed",
        "compartment": "A2",
        "due_ms": local("2027-11-24 09:00"),
    }
    key, values = alert_values(alert, "1号柜 Locker A", level, language)
    assert key == ("alert.notify.escalated" if level else "alert.notify.opened")
    assert placeholders(key, language) == set(values)
    assert "code" not in values  # the deliverer treats a "code" value as a secret to redact
    text = catalog(language)[key].format(**values)
    for part in ("R-1123-007", "1号柜 Locker A", "A2", catalog(language)["alert.rule.jammed"]):
        assert part in text
    assert catalog(language)["alert.severity.red"] in text
    assert ("11月24日 09:00" if language == "zh-CN" else "24 Nov 09:00") in text
