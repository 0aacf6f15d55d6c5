"""The weekly report, pure: weeks, the figures of one week from the rows the store holds, and
the report's bar charts as SVG text (docs/reports.md says what each figure means and why).

Everything here is computed from immutable facts: an item's status history
(``item_history``), the ledger's transfers, the lockers' ``occupancy_changed`` events, residents
and contributions. The adapter (:mod:`cloud_api.reports`) reads the rows; nothing here opens a
file, reads a clock or knows SQL.

A **week** is an ISO week in the community's time zone (China: UTC+8), Monday 00:00 to the next
Monday 00:00, written ``2026-W47``. A **rate** is a fraction with its numerator and denominator;
with nothing to divide by it is ``None`` (shown as "—"), never a division by zero.

Example:
    >>> from datetime import timedelta, timezone
    >>> tz = timezone(timedelta(hours=8))
    >>> week = parse_week("2026-W01", tz)
    >>> week.label, week.end_ms - week.start_ms == WEEK_MS
    ('2026-W01', True)
    >>> rate(0, 0) is None, rate(1, 4)
    (True, 0.25)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from html import escape

from cloud_api.core.ledger import CAPPED_KINDS, REDEMPTION, REVERSAL

HOUR_MS = 60 * 60 * 1000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
WEEK_PATTERN = r"^[0-9]{4}-W[0-9]{2}$"
"""How a week is written: ISO year, ``-W``, ISO week number (``2026-W07``)."""
CHART_WEEKS = 8
"""How many weeks the charts show, ending with the report's week."""

ON_OFFER = frozenset({"listed", "reserved", "collecting"})
"""Statuses of an item on offer in a locker: listed, or reserved and not yet taken."""
TAKEN = frozenset({"picked_up", "on_loan"})
"""Statuses an item reaches when a resident took it out of the locker."""
RESERVATION_LIVE = frozenset({"reserved", "collecting"})
"""Statuses of an item while a reservation of it runs."""
NOT_COUNTED_CONTRIBUTIONS = frozenset({"rejected", "withdrawn"})
"""Contributions that do not count as taking part (refused, or taken back by their provider)."""


class WeekError(ValueError):
    """A week that is not written ``YYYY-Www`` or does not exist (``2026-W60``)."""


# --- weeks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Week:
    """One ISO week in the community's time zone: ``[start_ms, end_ms)``."""

    year: int
    number: int
    start_ms: int
    end_ms: int

    @property
    def label(self) -> str:
        """``2026-W07``."""
        return f"{self.year}-W{self.number:02d}"

    @property
    def short(self) -> str:
        """``W07`` (the charts' axis)."""
        return f"W{self.number:02d}"


def _week_from_monday(monday: date, tz: tzinfo) -> Week:
    start = datetime(monday.year, monday.month, monday.day, tzinfo=tz)
    end = start + timedelta(days=7)
    year, number, _ = monday.isocalendar()
    return Week(year, number, int(start.timestamp() * 1000), int(end.timestamp() * 1000))


def parse_week(text: str, tz: tzinfo) -> Week:
    """The week written ``YYYY-Www``.

    Raises:
        WeekError: not that form, or no such week in that ISO year.
    """
    if not re.fullmatch(WEEK_PATTERN, text):
        raise WeekError("a week is written YYYY-Www, for example 2026-W07")
    year, number = int(text[:4]), int(text[6:])
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise WeekError(f"{year} has no week {number}") from None
    return _week_from_monday(monday, tz)


def week_of(wall_ms: int, tz: tzinfo) -> Week:
    """The week a moment falls in."""
    day = datetime.fromtimestamp(wall_ms / 1000, UTC).astimezone(tz).date()
    return _week_from_monday(day - timedelta(days=day.weekday()), tz)


def shift(week: Week, weeks: int, tz: tzinfo) -> Week:
    """The week ``weeks`` later (earlier when negative)."""
    monday = date.fromisocalendar(week.year, week.number, 1) + timedelta(weeks=weeks)
    return _week_from_monday(monday, tz)


def last_full_week(now_ms: int, tz: tzinfo) -> Week:
    """The last week that has ended: the report's default."""
    return shift(week_of(now_ms, tz), -1, tz)


def weeks_ending(week: Week, count: int, tz: tzinfo) -> list[Week]:
    """``count`` weeks ending with ``week``, oldest first."""
    return [shift(week, n, tz) for n in range(1 - count, 1)]


# --- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemRow:
    """An item of the community as it is now."""

    id: str
    donor_id: str | None
    status: str
    created_ms: int


@dataclass(frozen=True)
class HistoryRow:
    """One change of an item's status (``item_history``), in the order recorded."""

    item_id: str
    at_ms: int
    from_status: str
    to_status: str
    actor: str | None = None
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class TransferRow:
    """One ledger transfer (the fields the report reads)."""

    kind: str
    phase: str
    amount: int
    created_ms: int
    debit: str
    credit: str


@dataclass(frozen=True)
class OccupancyRow:
    """A compartment's reported occupancy change (``occupancy_changed``)."""

    device_id: str
    compartment: str
    at_ms: int
    occupancy: str


@dataclass(frozen=True)
class ResidentRow:
    """A resident: when the account was opened and whether it is active now."""

    id: str
    created_ms: int
    is_active: bool


@dataclass(frozen=True)
class ContributionRow:
    """A time or skill contribution: who gave it, when it was recorded, its status."""

    provider_id: str
    created_ms: int
    status: str


@dataclass(frozen=True)
class ReportRows:
    """What the report reads from one community's store.

    ``history`` must hold every change of the items up to the end of the last week reported
    (the status at a week's start is read from it); ``occupancy`` every occupancy change in the
    weeks reported and, per compartment, at least the last one before them.
    """

    items: tuple[ItemRow, ...] = ()
    history: tuple[HistoryRow, ...] = ()
    transfers: tuple[TransferRow, ...] = ()
    occupancy: tuple[OccupancyRow, ...] = ()
    compartments: tuple[tuple[str, str], ...] = ()
    """Every compartment of the community's lockers, as (device id, name)."""
    current_occupancy: tuple[tuple[str, str, str], ...] = ()
    """(device id, name, occupancy now): used for a compartment that never reported a change."""
    reporting_since: tuple[tuple[str, int], ...] = ()
    """(device id, wall time of its first event): a locker's compartments count from then on
    (before it was installed, or before it ever reported, its hours are not the community's)."""
    residents: tuple[ResidentRow, ...] = ()
    contributions: tuple[ContributionRow, ...] = ()


# --- figures -----------------------------------------------------------------------------------


def rate(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when there is nothing to divide by."""
    if denominator <= 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class WeeklyFigures:
    """The figures of one week (docs/reports.md defines each)."""

    week: str
    start_ms: int
    end_ms: int
    items_in: int = 0
    items_out: int = 0
    points_issued: int = 0
    points_redeemed: int = 0
    points_returned: int = 0
    compartment_hours: float = 0.0
    occupied_hours: float = 0.0
    compartment_utilization: float | None = None
    participants: int = 0
    active_residents: int = 0
    participation_rate: float | None = None
    items_available: int = 0
    resource_utilization: float | None = None
    reservations_ended: int = 0
    reservations_unfulfilled: int = 0
    mismatch_rate: float | None = None
    notes: tuple[str, ...] = field(default=())
    """Machine words for what the reader should know (``partial``: the week has not ended)."""


def figures_json(figures: WeeklyFigures) -> dict[str, object]:
    """The figures as JSON-ready data (hours to 0.1, rates to 4 decimals or null)."""
    data = asdict(figures)
    for name in ("compartment_hours", "occupied_hours"):
        data[name] = round(float(data[name]), 1)
    for name in (
        "compartment_utilization",
        "participation_rate",
        "resource_utilization",
        "mismatch_rate",
    ):
        value = data[name]
        data[name] = None if value is None else round(float(value), 4)
    data["notes"] = list(figures.notes)
    return data


def _by_item(history: Iterable[HistoryRow]) -> dict[str, list[HistoryRow]]:
    grouped: dict[str, list[HistoryRow]] = {}
    for row in history:
        grouped.setdefault(row.item_id, []).append(row)
    for rows in grouped.values():
        rows.sort(key=lambda r: r.at_ms)  # stable: equal times keep their recorded order
    return grouped


def status_at(item: ItemRow, rows: Sequence[HistoryRow], at_ms: int) -> str | None:
    """The item's status just before ``at_ms`` (None: it did not exist yet).

    The last change before ``at_ms`` says it; before the first change the item was in that
    change's ``from_status`` (empty for a new item: it did not exist); an item with no history
    at all has been as it is now since it was created.
    """
    before = [r for r in rows if r.at_ms < at_ms]
    if before:
        return before[-1].to_status
    if rows:
        return rows[0].from_status or None
    return item.status if item.created_ms < at_ms else None


def _reserver(row: HistoryRow) -> str | None:
    """Who a reservation is for: the resident a worker acted for, or the resident who did it."""
    return row.on_behalf_of or row.actor


def _pickups_and_ends(
    rows: Sequence[HistoryRow], start_ms: int, end_ms: int
) -> tuple[list[str | None], int, int]:
    """Walk one item's history: who took it in the week (one entry per pickup), how many of its
    reservations ended in the week, and how many of those ended without a pickup."""
    taken_by: list[str | None] = []
    ended = unfulfilled = 0
    reserver: str | None = None
    for row in rows:
        if row.from_status == "listed" and row.to_status == "reserved":
            reserver = _reserver(row)
        if not start_ms <= row.at_ms < end_ms:
            continue
        if row.from_status in RESERVATION_LIVE and row.to_status in TAKEN:
            taken_by.append(reserver)
            ended += 1
        elif row.from_status == "reserved" and row.to_status == "listed":
            ended += 1  # expired or cancelled: the code was not used
            unfulfilled += 1
    return taken_by, ended, unfulfilled


def _occupied_ms(rows: ReportRows, start_ms: int, end_ms: int) -> tuple[float, float]:
    """(compartment-ms, occupied compartment-ms) of ``[start_ms, end_ms)``."""
    if end_ms <= start_ms:
        return 0.0, 0.0
    events: dict[tuple[str, str], list[OccupancyRow]] = {}
    for event in rows.occupancy:
        events.setdefault((event.device_id, event.compartment), []).append(event)
    now = {(d, c): o for d, c, o in rows.current_occupancy}
    since_of = dict(rows.reporting_since)
    total = occupied = 0.0
    for place in rows.compartments:
        reporting_ms = since_of.get(place[0])
        if reporting_ms is None or reporting_ms >= end_ms:
            continue  # not reporting yet in this range: its hours are nobody's
        begin_ms = max(start_ms, reporting_ms)
        total += end_ms - begin_ms
        changes = sorted(events.get(place, ()), key=lambda e: e.at_ms)
        before = [e for e in changes if e.at_ms < begin_ms]
        if before:
            state = before[-1].occupancy
        elif changes:
            # A change reported: before the first one, it was the other way round.
            state = {"present": "absent", "absent": "present"}.get(changes[0].occupancy, "unknown")
        else:
            state = now.get(place, "unknown")
        since = begin_ms
        for event in changes:
            if event.at_ms < begin_ms:
                continue
            if event.at_ms >= end_ms:
                break
            if state == "present":
                occupied += event.at_ms - since
            state, since = event.occupancy, event.at_ms
        if state == "present":
            occupied += end_ms - since
    return total, occupied


def weekly_figures(week: Week, rows: ReportRows, now_ms: int) -> WeeklyFigures:
    """The figures of ``week`` from ``rows`` (a week not over yet is counted up to ``now_ms``)."""
    start, end = week.start_ms, week.end_ms
    by_item = _by_item(rows.history)
    items = {item.id: item for item in rows.items}
    in_week = [r for r in rows.history if start <= r.at_ms < end]

    dropped = [
        r
        for r in in_week
        if (r.from_status, r.to_status) == ("awaiting_dropoff", "pending_approval")
    ]
    participants: set[str] = set()
    for r in dropped:
        donor = items[r.item_id].donor_id if r.item_id in items else None
        if donor:
            participants.add(donor)
    for r in in_week:
        if (r.from_status, r.to_status) == ("listed", "reserved"):
            reserver = _reserver(r)
            if reserver:
                participants.add(reserver)

    items_out = ended = unfulfilled = available = 0
    for item_id, history in by_item.items():
        taken_by, item_ended, item_unfulfilled = _pickups_and_ends(history, start, end)
        items_out += len(taken_by)
        participants.update(p for p in taken_by if p)
        ended += item_ended
        unfulfilled += item_unfulfilled
        item = items.get(item_id)
        if item is not None and (
            status_at(item, history, start) in ON_OFFER
            or any(start <= r.at_ms < end and r.to_status in ON_OFFER for r in history)
        ):
            available += 1
    for item in rows.items:  # items never moved since they were listed (no history at all)
        if item.id not in by_item and item.status in ON_OFFER and item.created_ms < end:
            available += 1

    participants.update(
        c.provider_id
        for c in rows.contributions
        if start <= c.created_ms < end and c.status not in NOT_COUNTED_CONTRIBUTIONS
    )
    active = {r.id for r in rows.residents if r.is_active and r.created_ms < end}
    taking_part = participants & active

    members = {f"mem:{r.id}" for r in rows.residents}
    issued = redeemed = returned = 0
    for t in rows.transfers:
        if not start <= t.created_ms < end or t.phase not in ("single", "post"):
            continue
        if t.kind in CAPPED_KINDS and t.credit in members:
            issued += t.amount
        elif t.kind == "redemption" and t.debit in members:
            redeemed += t.amount
        elif t.credit in members and (
            t.kind == "refund" or (t.kind == REVERSAL and t.debit == REDEMPTION)
        ):
            returned += t.amount

    counted_until = min(end, max(now_ms, start))
    compartment_ms, occupied_ms = _occupied_ms(rows, start, counted_until)
    return WeeklyFigures(
        week=week.label,
        start_ms=start,
        end_ms=end,
        items_in=len(dropped),
        items_out=items_out,
        points_issued=issued,
        points_redeemed=redeemed,
        points_returned=returned,
        compartment_hours=compartment_ms / HOUR_MS,
        occupied_hours=occupied_ms / HOUR_MS,
        compartment_utilization=rate(occupied_ms, compartment_ms),
        participants=len(taking_part),
        active_residents=len(active),
        participation_rate=rate(len(taking_part), len(active)),
        items_available=available,
        resource_utilization=rate(items_out, available),
        reservations_ended=ended,
        reservations_unfulfilled=unfulfilled,
        mismatch_rate=rate(unfulfilled, ended),
        notes=("partial",) if now_ms < end else (),
    )


# --- charts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One series of a bar chart: its name (catalog text) and one value per category."""

    name: str
    values: tuple[int, ...]


SERIES_FILLS = ("#0b5cad", "#8a5a00")
"""Bar colours: both at least 3:1 against white (WCAG 1.4.11), and told apart by the legend's
words and the table beside the chart, never by colour alone."""


def bar_chart_svg(
    *,
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    width: int = 640,
    height: int = 280,
) -> str:
    """A grouped bar chart as an inline SVG element (no script, no style attribute: the pages'
    CSP allows neither).

    The ``<svg>`` has ``role="img"`` and is named by its ``<title>`` (``aria-labelledby``);
    category labels and values carry ``class="data"`` (values from the store, for the
    pseudo-locale check). All text is escaped here.
    """
    left, right, bottom = 48, 8, 34
    top = 20 + 26 * len(series)  # one legend line per series above the bars
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((v for s in series for v in s.values), default=0)
    scale = plot_h / highest if highest > 0 else 0.0
    n = max(len(categories), 1)
    group_w = plot_w / n
    bar_w = group_w * 0.8 / max(len(series), 1)
    title_id = f"{chart_id}-title"
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" role="img" aria-labelledby="{escape(title_id)}"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
    ]
    for index, s in enumerate(series):
        fill = SERIES_FILLS[index % len(SERIES_FILLS)]
        y = 4 + 26 * index
        parts.append(f'<rect x="{left}" y="{y}" width="18" height="18" fill="{fill}"/>')
        parts.append(
            f'<text x="{left + 24}" y="{y + 15}" font-size="18" fill="#1a1a1a">'
            f"{escape(s.name)}</text>"
        )
    base_y = top + plot_h
    parts.append(
        f'<line x1="{left}" y1="{base_y}" x2="{left + plot_w}" y2="{base_y}"'
        ' stroke="#4a4a4a" stroke-width="1"/>'
    )
    parts.append(
        f'<text class="data" x="{left - 6}" y="{top + 5}" font-size="15" text-anchor="end"'
        f' fill="#4a4a4a">{highest:,}</text>'
    )
    parts.append(
        f'<text class="data" x="{left - 6}" y="{base_y}" font-size="15" text-anchor="end"'
        ' fill="#4a4a4a">0</text>'
    )
    for i, category in enumerate(categories):
        group_x = left + i * group_w + group_w * 0.1
        for j, s in enumerate(series):
            value = s.values[i] if i < len(s.values) else 0
            h = value * scale
            x = group_x + j * bar_w
            fill = SERIES_FILLS[j % len(SERIES_FILLS)]
            parts.append(
                f'<rect x="{x:.1f}" y="{base_y - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}"'
                f' fill="{fill}"/>'
            )
            parts.append(
                f'<text class="data" x="{x + (bar_w - 2) / 2:.1f}" y="{base_y - h - 4:.1f}"'
                f' font-size="14" text-anchor="middle" fill="#1a1a1a">{value:,}</text>'
            )
        parts.append(
            f'<text class="data" x="{left + i * group_w + group_w / 2:.1f}" y="{base_y + 20}"'
            f' font-size="15" text-anchor="middle" fill="#1a1a1a">{escape(category)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


__all__ = [
    "CHART_WEEKS",
    "WEEK_PATTERN",
    "ContributionRow",
    "HistoryRow",
    "ItemRow",
    "OccupancyRow",
    "ReportRows",
    "ResidentRow",
    "Series",
    "TransferRow",
    "Week",
    "WeekError",
    "WeeklyFigures",
    "bar_chart_svg",
    "figures_json",
    "last_full_week",
    "parse_week",
    "rate",
    "shift",
    "status_at",
    "week_of",
    "weekly_figures",
    "weeks_ending",
]
