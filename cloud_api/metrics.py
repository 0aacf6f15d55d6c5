"""``GET /metrics``: devices, the community's business and the API in the Prometheus text format.

Everything is read at scrape time (no background thread), by one custom collector on a private
``CollectorRegistry`` per app (never the global default registry: several apps run in one test
process), rendered with ``prometheus_client.generate_latest``. The route answers only a caller
with ``Authorization: Bearer <LINLI_METRICS_TOKEN>`` (compared in constant time); without a
configured token it does not exist (404). Decision and names: docs/decisions/0023-metrics.md.

What one scrape costs: a handful of aggregate queries in one read transaction, plus the rows
appended since the previous scrape to three append-only tables (``device_events``,
``transfers``, ``item_history``), whose running totals are kept here (:class:`RunningTotals`).
Labels stay low-cardinality and name no person: device, compartment, community, role, and words
from fixed vocabularies (statuses, kinds, severities, refusal reasons, route templates).

Example:
    >>> install_metrics(app, settings.metrics_token)   # in create_app
    >>> httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
    '# HELP linli_device_up ...'
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_api.cases import CASE_KINDS
from cloud_api.core.items import STATUSES as ITEM_STATUSES
from cloud_api.core.ledger import CAPPED_KINDS
from cloud_api.errors import error_body
from linli import __version__

if TYPE_CHECKING:
    from cloud_api.deps import Services

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic Prometheus text format, which ``generate_latest`` writes."""
METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404): never the raw path."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method labels kept as they are; any other method is counted as ``other``."""
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds of the request duration histogram (seconds; ``+Inf`` is added)."""

SEVERITIES = ("red", "yellow", "blue")
NOTIFICATION_STATUSES = ("queued", "sent", "failed")
LIVE_RESERVATION = ("reserved", "collecting")
"""Item statuses of a live reservation: reserved, or its door opened and not yet settled."""
UNDER_VOLTAGE_NOW = 1 << 0
UNDER_VOLTAGE_SINCE_BOOT = 1 << 16
"""Bits of ``vcgencmd get_throttled`` (docs: /work/shared/design/hardware.md, "Raspberry Pi
health signals"), reported by the controller as telemetry ``throttled``."""
TRUSTED_CLOCK = frozenset({"synced", "holdover"})
"""Trust values under which the device stamps events with trusted time (``holdover`` carries
signed time forward; only ``untrusted`` is not)."""


# --- the API: requests and durations ------------------------------------------------------------


class HttpStats:
    """Requests by ``(method, route, status)`` and their durations by ``(method, route)``.

    Written by :class:`HttpMetricsMiddleware` on the event loop, read by scrapes on the thread
    pool: every access holds one lock.
    """

    def __init__(self, buckets_s: tuple[float, ...] = DURATION_BUCKETS_S) -> None:
        self._lock = threading.Lock()
        self._buckets_s = buckets_s
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its duration."""
        method = method if method in METHODS else "other"
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            counts, total = self._durations.setdefault(
                (method, route), ([0] * (len(self._buckets_s) + 1), [0.0])
            )
            index = next(
                (i for i, bound in enumerate(self._buckets_s) if seconds <= bound),
                len(self._buckets_s),
            )
            counts[index] += 1
            total[0] += seconds

    def families(self) -> Iterator[Metric]:
        """The two families as they stand."""
        requests = CounterMetricFamily(
            "linli_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        durations = HistogramMetricFamily(
            "linli_http_request_duration_seconds",
            "Time from a request's arrival to its response's headers, by method and route.",
            labels=["method", "route"],
        )
        with self._lock:
            for (method, route, status), count in sorted(self._requests.items()):
                requests.add_metric([method, route, status], count)
            for (method, route), (counts, total) in sorted(self._durations.items()):
                cumulative, buckets = 0, []
                for bound, count in zip((*self._buckets_s, float("inf")), counts, strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                durations.add_metric([method, route], buckets, total[0])
        yield requests
        yield durations


class HttpMetricsMiddleware:
    """Pure ASGI middleware: counts each HTTP request by its matched route *template*.

    The route is ``scope["route"].path`` after routing (``/api/v1/items/{item_id}``, never the
    raw path), or ``unmatched``: the labels stay bounded whatever is asked. The duration ends
    when the response's headers are sent, so a long-lived stream (server-sent events) counts
    its time to first byte, not its lifetime. ``/metrics`` itself is not counted. WebSocket and
    lifespan scopes pass through untouched.
    """

    def __init__(self, app: ASGIApp, stats: HttpStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        entry_root = str(scope.get("root_path", ""))
        answered: list[tuple[int, float]] = []

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start" and not answered:
                answered.append((int(message["status"]), time.perf_counter() - started))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except BaseException:
            if not answered:
                answered.append((500, time.perf_counter() - started))
            raise
        finally:
            route = route_template(scope, entry_root)
            if route != METRICS_PATH and answered:
                status, seconds = answered[0]
                self.stats.observe(str(scope.get("method", "")), route, status, seconds)


def route_template(scope: Scope, entry_root: str = "") -> str:
    """The path template of the route that handled a request, or :data:`UNMATCHED`.

    A route sets ``scope["route"]``; a mounted app (``/static``) may not, but its mount
    appended its path to ``root_path``: that gives ``/static/{path}``.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    mounted = str(scope.get("root_path", ""))
    if mounted != entry_root and mounted.startswith(entry_root):
        return mounted[len(entry_root) :] + "/{path}"
    return UNMATCHED


# --- running totals over append-only tables ----------------------------------------------------


class RunningTotals:
    """Sums over an append-only table, brought up to date with the rows added since last time.

    Each scrape reads ``MAX(rowid)`` (one b-tree lookup) and aggregates only the rows between the
    previous one and it; the first scrape after start reads them all once. Rows of these tables
    are never updated or deleted, so a rowid, once counted, stays counted. If the last counted
    row no longer has the key it had (the file was restored, or rebuilt by ``VACUUM``, which may
    renumber rowids), the totals are counted again from the start.

    Args:
        table: the table (a rowid table).
        key_columns: columns that identify a row (checked at the last counted rowid).
        query: ``SELECT <label columns...>, <amount> ... WHERE <t>.rowid > ? AND <t>.rowid <= ?
            GROUP BY <label columns>``: the labels of each group and what to add to its total.
    """

    def __init__(self, table: str, key_columns: str, query: str) -> None:
        self._table = table
        self._key_columns = key_columns
        self._query = query
        self._lock = threading.Lock()
        self._through = 0
        self._sentinel: tuple[Any, ...] | None = None
        self._totals: dict[tuple[str, ...], float] = {}

    def update(self, db: sqlite3.Connection) -> Mapping[tuple[str, ...], float]:
        """Add the rows appended since the previous call; return every total (a copy)."""
        with self._lock:
            row = db.execute(f"SELECT MAX(rowid) FROM {self._table}").fetchone()  # noqa: S608
            top = int(row[0] or 0)
            if top < self._through or self._sentinel != self._key_at(db, self._through):
                self._through, self._totals = 0, {}
            if top > self._through:
                for found in db.execute(self._query, (self._through, top)):
                    *labels, amount = tuple(found)
                    key = tuple(str(label) for label in labels)
                    self._totals[key] = self._totals.get(key, 0) + float(amount or 0)
                self._through = top
            self._sentinel = self._key_at(db, self._through)
            return dict(self._totals)

    def _key_at(self, db: sqlite3.Connection, rowid: int) -> tuple[Any, ...] | None:
        if rowid == 0:
            return None
        found = db.execute(
            f"SELECT {self._key_columns} FROM {self._table} WHERE rowid = ?",  # noqa: S608
            (rowid,),
        ).fetchone()
        return None if found is None else tuple(found)


def _latch_pulses() -> RunningTotals:
    return RunningTotals(
        "device_events",
        "device_id, boot_id, seq",
        "SELECT device_id, compartment, COUNT(*) FROM device_events"
        " WHERE rowid > ? AND rowid <= ? AND type = 'latch_pulsed' AND compartment IS NOT NULL"
        " GROUP BY device_id, compartment",
    )


def _points_moved() -> RunningTotals:
    # Posted transfers only ('single' at once, or 'post' resolving a hold, which carries the
    # hold's accounts, amount and kind). The member's community labels the flow: the credited
    # member for an issuance, the debited one for a redemption.
    capped = ", ".join(f"'{kind}'" for kind in sorted(CAPPED_KINDS))
    return RunningTotals(
        "transfers",
        "id",
        "SELECT p.community_id, t.kind, SUM(t.amount) FROM transfers t"  # noqa: S608 (constants)
        " JOIN accounts a ON a.id = CASE WHEN t.kind = 'redemption' THEN t.debit_account"
        " ELSE t.credit_account END"
        " JOIN people p ON p.id = a.person_id"
        " WHERE t.rowid > ? AND t.rowid <= ? AND t.phase IN ('single', 'post')"
        f" AND t.kind IN ('redemption', {capped}) GROUP BY p.community_id, t.kind",
    )


def _item_transitions() -> RunningTotals:
    return RunningTotals(
        "item_history",
        "item_id, at_ms, to_status",
        "SELECT i.community_id, h.to_status, COUNT(*) FROM item_history h"
        " JOIN items i ON i.id = h.item_id WHERE h.rowid > ? AND h.rowid <= ?"
        " GROUP BY i.community_id, h.to_status",
    )


# --- the collector ------------------------------------------------------------------------------


class LinliCollector(Collector):
    """Reads the store and the device service's memory at scrape time.

    Args:
        services: returns the app's services, or None before the app has started.
        http: the API's request figures.
    """

    def __init__(self, services: Callable[[], Services | None], http: HttpStats) -> None:
        self._services = services
        self._http = http
        self._latch_pulses = _latch_pulses()
        self._points = _points_moved()
        self._transitions = _item_transitions()
        self._failing: set[str] = set()

    def collect(self) -> Iterable[Metric]:
        """Every family: build info, the API, then devices and business (one read each)."""
        info = GaugeMetricFamily(
            "linli_build_info", "The running cloud's version (always 1).", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        yield from self._http.families()
        services = self._services()
        if services is None:
            return
        ok = GaugeMetricFamily(
            "linli_metrics_section_ok",
            "1 if this scrape read the section, 0 if reading it failed (see the cloud's log).",
            labels=["section"],
        )
        for section, read in (("devices", self._devices), ("business", self._business)):
            try:
                families = list(read(services))
            except Exception:
                if section not in self._failing:  # an outage is logged when it starts ...
                    log.exception("metrics: reading %s failed", section)
                    self._failing.add(section)
                ok.add_metric([section], 0)
                continue
            if section in self._failing:  # ... and when it ends
                log.info("metrics: reading %s works again", section)
                self._failing.discard(section)
            ok.add_metric([section], 1)
            yield from families
        yield ok

    # --- devices ---------------------------------------------------------------------------------

    def _devices(self, services: Services) -> Iterator[Metric]:
        device_service = services.devices
        telemetry = dict(device_service.telemetry)  # one C-level copy: the bridge thread writes
        refused = dict(device_service.refused)
        with services.store.snapshot() as db:
            devices = db.execute(
                "SELECT id, community_id, role, status, last_seen_ms FROM devices ORDER BY id"
            ).fetchall()
            compartments = db.execute(
                "SELECT c.device_id, c.name, c.occupancy, c.needs_attention, d.community_id"
                " FROM compartments c JOIN devices d ON d.id = c.device_id"
                " ORDER BY c.device_id, c.name"
            ).fetchall()
            gaps = dict(
                db.execute(
                    "SELECT device_id, COUNT(*) FROM event_heads"
                    " WHERE MAX(highest_seq, expected_seq) > contiguous_seq GROUP BY device_id"
                ).fetchall()
            )
            pulses = self._latch_pulses.update(db)

        labels = ["device", "role", "community"]
        up = GaugeMetricFamily(
            "linli_device_up",
            "1 if the device is online, 0 if offline, lost or never seen.",
            labels=labels,
        )
        last_seen = GaugeMetricFamily(
            "linli_device_last_seen_timestamp_seconds",
            "When the cloud last heard from the device (Unix time).",
            labels=labels,
        )
        event_gaps = GaugeMetricFamily(
            "linli_device_event_gaps",
            "Boots of the device whose events the cloud does not hold contiguously.",
            labels=labels,
        )
        tele = {
            name: GaugeMetricFamily(f"linli_device_{name}", help_text, labels=labels)
            for name, help_text in (
                ("outbox_depth", "Events the device holds that the cloud has not acknowledged."),
                ("cpu_temperature_celsius", "The device's CPU temperature."),
                ("under_voltage", "1 if the Pi reports under-voltage now (throttled bit 0)."),
                (
                    "under_voltage_since_boot",
                    "1 if the Pi has seen under-voltage since it booted (throttled bit 16).",
                ),
                ("grant_list_age_seconds", "Time since the cloud signed the device's grant list."),
                ("clock_trusted", "1 if the device's clock is trusted (synced or holdover)."),
                ("uptime_seconds", "Time since the device's software started."),
                ("guarded", "1 if the guess budget is spent: codes need the phone's last digits."),
                ("disk_free_ratio", "Free fraction of the device's data file system (0-1)."),
            )
        }
        for row in devices:
            values = [row["id"], row["role"], row["community_id"]]
            up.add_metric(values, 1 if row["status"] == "online" else 0)
            event_gaps.add_metric(values, gaps.get(row["id"], 0))
            figures = telemetry.get(row["id"], {})
            heard_ms = max(int(row["last_seen_ms"] or 0), _number(figures.get("received_ms")) or 0)
            if heard_ms:
                last_seen.add_metric(values, heard_ms / 1000)
            for name, value in _telemetry_values(figures).items():
                tele[name].add_metric(values, value)
        yield up
        yield last_seen
        yield event_gaps
        yield from tele.values()

        per_compartment = ["device", "compartment", "community"]
        actuations = CounterMetricFamily(
            "linli_compartment_latch_actuations",
            "Latch pulses the device reported (latch_pulsed events): relay wear, rated ~100 000.",
            labels=per_compartment,
        )
        occupied = GaugeMetricFamily(
            "linli_compartment_occupied",
            "1 if an item is sensed inside, 0 if empty; absent while the occupancy is unknown.",
            labels=per_compartment,
        )
        attention = GaugeMetricFamily(
            "linli_compartment_needs_attention",
            "1 if the compartment raised an alarm a maintainer has not cleared.",
            labels=per_compartment,
        )
        for row in compartments:  # known compartments only: a device cannot invent labels
            values = [row["device_id"], row["name"], row["community_id"]]
            actuations.add_metric(values, pulses.get((row["device_id"], row["name"]), 0))
            if row["occupancy"] in ("present", "absent"):
                occupied.add_metric(values, 1 if row["occupancy"] == "present" else 0)
            attention.add_metric(values, 1 if row["needs_attention"] else 0)
        yield actuations
        yield occupied
        yield attention

        refusals = CounterMetricFamily(
            "linli_device_messages_refused",
            "Device messages refused since the cloud started, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(refused.items()):
            refusals.add_metric([reason], count)
        yield refusals

    # --- business --------------------------------------------------------------------------------

    def _business(self, services: Services) -> Iterator[Metric]:
        with services.store.snapshot() as db:
            communities = [r[0] for r in db.execute("SELECT id FROM communities ORDER BY id")]
            items = _grouped(db, "SELECT community_id, status, COUNT(*) FROM items GROUP BY 1, 2")
            held = dict(
                db.execute(
                    "SELECT p.community_id, SUM(b.pending_debits) FROM account_balances b"
                    " JOIN accounts a ON a.id = b.account_id JOIN people p ON p.id = a.person_id"
                    " WHERE a.kind = 'member' GROUP BY p.community_id"
                ).fetchall()
            )
            cases = _grouped(
                db,
                "SELECT community_id, kind, COUNT(*) FROM cases WHERE status = 'open'"
                " GROUP BY 1, 2",
            )
            notifications = _grouped(
                db,
                "SELECT p.community_id, n.status, COUNT(*) FROM notifications n"
                " JOIN people p ON p.id = n.person_id GROUP BY 1, 2",
            )
            alerts = _grouped(
                db,
                "SELECT community_id, severity, COUNT(*) FROM alerts WHERE status != 'resolved'"
                " GROUP BY 1, 2",
            )
            residents = dict(
                db.execute(
                    "SELECT community_id, COUNT(*) FROM people WHERE role = 'resident'"
                    " AND status = 'active' GROUP BY community_id"
                ).fetchall()
            )
            points = self._points.update(db)
            transitions = self._transitions.update(db)

        yield _by_community(
            GaugeMetricFamily(
                "linli_items", "Items by lifecycle status.", labels=["community", "status"]
            ),
            communities,
            ITEM_STATUSES,
            items,
        )
        yield _by_community(
            CounterMetricFamily(
                "linli_item_transitions",
                "Items that entered each status (pending_approval: a donation put in a locker;"
                " picked_up / on_loan: taken out).",
                labels=["community", "status"],
            ),
            communities,
            ITEM_STATUSES,
            transitions,
        )
        live = GaugeMetricFamily(
            "linli_reservations_live",
            "Items reserved and not yet taken (reserved or collecting).",
            labels=["community"],
        )
        waiting = GaugeMetricFamily(
            "linli_valuations_awaiting_approval",
            "Items in a locker waiting for a social worker's valuation decision.",
            labels=["community"],
        )
        held_family = GaugeMetricFamily(
            "linli_points_held",
            "Points held by pending reservations (holds not yet posted or voided).",
            labels=["community"],
        )
        active = GaugeMetricFamily(
            "linli_residents_active", "Residents whose account is active.", labels=["community"]
        )
        for community in communities:
            live.add_metric(
                [community], sum(items.get((community, s), 0) for s in LIVE_RESERVATION)
            )
            waiting.add_metric([community], items.get((community, "pending_approval"), 0))
            held_family.add_metric([community], held.get(community) or 0)
            active.add_metric([community], residents.get(community, 0))
        yield live
        yield waiting
        issued = CounterMetricFamily(
            "linli_points_issued",
            "Points credited to members by valuation, time, skill and subsidy (posted).",
            labels=["community", "kind"],
        )
        redeemed = CounterMetricFamily(
            "linli_points_redeemed",
            "Points members spent on items (posted redemptions).",
            labels=["community"],
        )
        for community in communities:
            for kind in sorted(CAPPED_KINDS):
                issued.add_metric([community, kind], points.get((community, kind), 0))
            redeemed.add_metric([community], points.get((community, "redemption"), 0))
        yield issued
        yield redeemed
        yield held_family
        yield _by_community(
            GaugeMetricFamily(
                "linli_cases_open", "Open cases by kind.", labels=["community", "kind"]
            ),
            communities,
            CASE_KINDS,
            cases,
        )
        yield _by_community(
            GaugeMetricFamily(
                "linli_notifications",
                "Notifications to residents by delivery status.",
                labels=["community", "status"],
            ),
            communities,
            NOTIFICATION_STATUSES,
            notifications,
        )
        yield _by_community(
            GaugeMetricFamily(
                "linli_alerts_open",
                "Alerts not yet resolved (open or acknowledged), by severity.",
                labels=["community", "severity"],
            ),
            communities,
            SEVERITIES,
            alerts,
        )
        yield active


def _grouped(db: sqlite3.Connection, sql: str) -> dict[tuple[str, ...], float]:
    return {(str(a), str(b)): float(n) for a, b, n in db.execute(sql).fetchall()}


def _by_community(
    family: GaugeMetricFamily | CounterMetricFamily,
    communities: list[str],
    words: Iterable[str],
    counts: Mapping[tuple[str, ...], float],
) -> Metric:
    """Fill ``family`` with a sample per community and word (0 where nothing is counted), and
    any other word the store holds for a known community."""
    known = set(communities)
    keys = {(c, w) for c in communities for w in words}
    keys |= {key for key in counts if len(key) == 2 and key[0] in known}
    for key in sorted(keys):
        family.add_metric(list(key), counts.get(key, 0))
    return family


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _telemetry_values(figures: Mapping[str, object]) -> dict[str, float]:
    """The latest telemetry of a device as metric values (absent figures are left out)."""
    values: dict[str, float] = {}
    for name, field, scale in (
        ("outbox_depth", "outbox_depth", 1.0),
        ("cpu_temperature_celsius", "cpu_temp_c", 1.0),
        ("grant_list_age_seconds", "grant_list_age_s", 1.0),
        ("uptime_seconds", "uptime_s", 1.0),
        ("disk_free_ratio", "disk_free_pct", 0.01),
    ):
        number = _number(figures.get(field))
        if number is not None:
            values[name] = number * scale
    throttled = figures.get("throttled")
    if isinstance(throttled, int) and not isinstance(throttled, bool):
        values["under_voltage"] = 1 if throttled & UNDER_VOLTAGE_NOW else 0
        values["under_voltage_since_boot"] = 1 if throttled & UNDER_VOLTAGE_SINCE_BOOT else 0
    trust = figures.get("clock_trust")
    if isinstance(trust, str):
        values["clock_trusted"] = 1 if trust in TRUSTED_CLOCK else 0
    guarded = figures.get("guarded")
    if isinstance(guarded, bool):
        values["guarded"] = 1 if guarded else 0
    return values


# --- the route ----------------------------------------------------------------------------------


def metrics_registry(services: Callable[[], Services | None], http: HttpStats) -> CollectorRegistry:
    """A private registry holding the one :class:`LinliCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LinliCollector(services, http))
    return registry


def is_authorized(header: str | None, token: str) -> bool:
    """Whether ``Authorization`` is ``Bearer <token>``, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def install_metrics(app: FastAPI, token: str) -> None:
    """Count every HTTP request and serve ``GET /metrics`` (404 when ``token`` is empty)."""
    stats = HttpStats()
    registry = metrics_registry(lambda: getattr(app.state, "services", None), stats)
    app.state.metrics = registry
    app.add_middleware(HttpMetricsMiddleware, stats=stats)

    @app.get(METRICS_PATH, include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not token:
            return JSONResponse(error_body("not_found", "Not Found"), status_code=404)
        if not is_authorized(request.headers.get("authorization"), token):
            return JSONResponse(
                error_body("not_authenticated", "a bearer token is needed"),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)
