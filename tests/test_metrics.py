"""``GET /metrics`` on the real app (uvicorn, SQLite, a private Mosquitto): the token, the text
format, Prometheus naming, values after real device messages and API calls, nothing personal in
the body, and a Grafana dashboard that asks only for metrics the cloud exposes.

Docs: docs/decisions/0023-metrics.md, deploy/grafana/README.md.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from conftest import CloudUnderTest, require_system
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import ValidationError

from cloud_api import ledger
from cloud_api.grants.service import code_of
from cloud_api.seed import COMMUNITY, LOGINS
from cloud_api.settings import CloudSettings
from linli.contract import Event, Status, Telemetry, encode, topic
from station.scenarios import wait_for

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "linli-dashboard.json"
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"
TOKEN = secrets.token_hex(24)
BOOT = "e" * 12
DEVICE = "locker-a"

NAME = re.compile(r"^linli_[a-z][a-z0-9_]*[a-z0-9]$")
LABELS = frozenset(
    {"device", "compartment", "community", "role", "status", "kind", "severity", "reason"}
    | {"method", "route", "section", "version", "le"}
)
"""Every label the cloud may use: low-cardinality, and none names a person."""
UNITS = ("_seconds", "_celsius", "_bytes", "_ratio")
"""Base-unit suffixes; ``_timestamp_seconds`` for points in time."""
COUNTED = ("_ms", "_milliseconds", "_percent", "_pct", "_kelvin", "_minutes", "_hours", "_days")
"""Suffixes that are not base units (Prometheus conventions: seconds, ratios 0-1)."""
EXPECTED = {
    "linli_build_info": "gauge",
    "linli_http_requests": "counter",
    "linli_http_request_duration_seconds": "histogram",
    "linli_device_up": "gauge",
    "linli_device_last_seen_timestamp_seconds": "gauge",
    "linli_device_event_gaps": "gauge",
    "linli_device_outbox_depth": "gauge",
    "linli_device_cpu_temperature_celsius": "gauge",
    "linli_device_under_voltage": "gauge",
    "linli_device_under_voltage_since_boot": "gauge",
    "linli_device_grant_list_age_seconds": "gauge",
    "linli_device_clock_trusted": "gauge",
    "linli_device_uptime_seconds": "gauge",
    "linli_device_guarded": "gauge",
    "linli_device_disk_free_ratio": "gauge",
    "linli_device_messages_refused": "counter",
    "linli_compartment_latch_actuations": "counter",
    "linli_compartment_occupied": "gauge",
    "linli_compartment_needs_attention": "gauge",
    "linli_items": "gauge",
    "linli_item_transitions": "counter",
    "linli_reservations_live": "gauge",
    "linli_valuations_awaiting_approval": "gauge",
    "linli_points_issued": "counter",
    "linli_points_redeemed": "counter",
    "linli_points_held": "gauge",
    "linli_cases_open": "gauge",
    "linli_notifications": "gauge",
    "linli_alerts_open": "gauge",
    "linli_residents_active": "gauge",
    "linli_metrics_section_ok": "gauge",
}


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def metered(make_cloud: Any) -> CloudUnderTest:
    """A seeded cloud with a metrics token."""
    cloud: CloudUnderTest = make_cloud(metrics_token=TOKEN)
    return cloud


def get_metrics(cloud: CloudUnderTest, **headers: str) -> httpx.Response:
    return httpx.get(f"{cloud.url}/metrics", headers=headers, timeout=10)


def scrape(cloud: CloudUnderTest) -> dict[str, Any]:
    """``{family name: family}`` of one authorised scrape, parsed by prometheus_client."""
    response = get_metrics(cloud, Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.text
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def samples(families: dict[str, Any]) -> Iterator[Sample]:
    for family in families.values():
        yield from family.samples


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float | None:
    """The one sample named so whose labels include ``labels`` (None if there is none)."""
    found = [
        s.value
        for s in samples(families)
        if s.name == sample_name and labels.items() <= s.labels.items()
    ]
    assert len(found) <= 1, f"{sample_name} {labels} matches {len(found)} samples"
    return found[0] if found else None


def publish(cloud: CloudUnderTest, device_id: str, name: str, payloads: list[bytes]) -> None:
    """Publish as a device on its own topic (the private broker takes anonymous clients)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{device_id}-{time.time()}")
    client.connect(cloud.broker.host, cloud.broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic(device_id, name), payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def latch_pulsed(seq: int, compartment: str) -> bytes:
    return encode(
        Event(
            device_id=DEVICE,
            boot_id=BOOT,
            seq=seq,
            type="latch_pulsed",
            mono_ms=seq * 100,
            wall_ms=int(time.time() * 1000),
            trust="synced",
            compartment=compartment,
        )
    )


def stored_events(cloud: CloudUnderTest) -> int:
    row = cloud.store.read_one(
        "SELECT COUNT(*) FROM device_events WHERE device_id = ? AND boot_id = ?", (DEVICE, BOOT)
    )
    assert row is not None
    return int(row[0])


def open_alerts(cloud: CloudUnderTest, severity: str) -> int:
    row = cloud.store.read_one(
        "SELECT COUNT(*) FROM alerts WHERE community_id = ? AND severity = ?"
        " AND status != 'resolved'",
        (COMMUNITY, severity),
    )
    assert row is not None
    return int(row[0])


def sample_names(families: dict[str, Any]) -> set[str]:
    """Every series name the families expose, samples or not (a counter ``x`` is ``x_total``,
    a histogram ``x_bucket``, ``x_sum`` and ``x_count``)."""
    names = set()
    for family in families.values():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{part}" for part in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def dashboard_expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression in the dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, item in node.items():
            if key in ("expr", "definition") and isinstance(item, str):
                yield item
            elif key == "query" and isinstance(item, dict) and isinstance(item.get("query"), str):
                yield item["query"]
            else:
                yield from dashboard_expressions(item)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_expressions(item)


# --- the token ----------------------------------------------------------------------------------


def test_metrics_refuse_a_caller_without_the_token(metered: CloudUnderTest) -> None:
    refused = [
        get_metrics(metered),
        get_metrics(metered, Authorization=f"Bearer {secrets.token_hex(24)}"),  # same length
        get_metrics(metered, Authorization=f"Bearer {TOKEN[:-1]}"),
        get_metrics(metered, Authorization=f"Basic {TOKEN}"),
        get_metrics(metered, Authorization="Bearer"),
        get_metrics(metered, Authorization=f"{TOKEN}"),
        httpx.get(
            f"{metered.url}/metrics",
            headers=[(b"Authorization", b"Bearer \xff\xfe" + TOKEN.encode())],
        ),
    ]
    for response in refused:
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert "linli_" not in response.text
    answered = get_metrics(metered, Authorization=f"Bearer {TOKEN}")
    assert answered.status_code == 200
    assert answered.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert get_metrics(metered, Authorization=f"bearer {TOKEN}").status_code == 200
    # Not part of the API: not in the OpenAPI document (nor the access matrix it feeds).
    paths = httpx.get(f"{metered.url}/openapi.json").json()["paths"]
    assert "/metrics" not in paths


def test_metrics_are_off_without_a_configured_token(cloud: CloudUnderTest) -> None:
    assert get_metrics(cloud).status_code == 404
    assert get_metrics(cloud, Authorization=f"Bearer {TOKEN}").status_code == 404
    assert get_metrics(cloud, Authorization="Bearer").status_code == 404


@pytest.mark.parametrize(
    "token", ["changeme", "x" * 31, "a" * 20 + " " + "b" * 20, "é" * 40, "\t" + "c" * 40]
)
def test_a_weak_or_malformed_token_stops_start_up(tmp_path: Path, token: str) -> None:
    with pytest.raises(ValidationError, match="LINLI_METRICS_TOKEN") as raised:
        CloudSettings(data_dir=tmp_path, metrics_token=token)
    assert token not in str(raised.value)  # never echoed
    assert CloudSettings(data_dir=tmp_path, metrics_token="").metrics_token == ""
    assert CloudSettings(data_dir=tmp_path, metrics_token=TOKEN).metrics_token == TOKEN


# --- format, names, values ------------------------------------------------------------------------


def test_the_scrape_parses_and_every_name_follows_the_conventions(
    metered: CloudUnderTest,
) -> None:
    httpx.get(f"{metered.url}/healthz")  # so the API families have samples too
    families = scrape(metered)
    assert {name: families[name].type for name in EXPECTED if name in families} == EXPECTED
    for name, family in families.items():
        assert NAME.match(name), name
        assert family.documentation, f"{name} has no help text"
        assert not name.endswith(COUNTED), f"{name}: not a base unit"
        assert not name.endswith("_total"), f"{name}: _total belongs to counter samples only"
        if "temperature" in name:
            assert name.endswith("_celsius"), name
        if "timestamp" in name or name.endswith(("_age", "_uptime", "_duration")):
            assert name.endswith(UNITS), name
        for sample in family.samples:
            assert set(sample.labels) <= LABELS, f"{sample.name}: {sorted(sample.labels)}"
            if family.type == "counter":
                assert sample.name == f"{name}_total", sample.name
                assert sample.value >= 0
    # Every device and compartment of the seed has its series; nothing invents others.
    devices = {r["id"] for r in metered.store.read("SELECT id FROM devices")}
    assert {s.labels["device"] for s in families["linli_device_up"].samples} == devices
    compartments = {
        (r["device_id"], r["name"])
        for r in metered.store.read("SELECT device_id, name FROM compartments")
    }
    pulses = families["linli_compartment_latch_actuations"].samples
    assert {(s.labels["device"], s.labels["compartment"]) for s in pulses} == compartments


def test_values_follow_real_device_messages_api_calls_and_the_store(
    metered: CloudUnderTest,
) -> None:
    cloud = metered
    before = scrape(cloud)
    assert value(before, "linli_device_up", device=DEVICE) == 0  # enrolled, never seen
    assert value(before, "linli_device_cpu_temperature_celsius", device=DEVICE) is None
    assert (
        value(before, "linli_compartment_latch_actuations_total", device=DEVICE, compartment="A1")
        == 0
    )

    # A device comes online, reports its health and pulses a latch twice (one message twice).
    figures: dict[str, Any] = {
        "device_id": DEVICE,
        "boot_id": BOOT,
        "uptime_s": 3600,
        "outbox_depth": 3,
        "grant_list_age_s": 125,
        "clock_trust": "holdover",
        "guarded": False,
        "cpu_temp_c": 61.5,
        "throttled": 0x50000,  # under-voltage since boot (bit 16), not now (bit 0 clear)
    }
    if "disk_free_pct" in Telemetry.model_fields:  # the optional field issue #10 adds
        figures["disk_free_pct"] = 42.0
    status = Status(
        device_id=DEVICE, state="online", role="locker", boot_id=BOOT, version="0.1.0",
        keepalive_s=3600,
    )  # fmt: skip
    publish(cloud, DEVICE, "status", [encode(status)])
    publish(cloud, DEVICE, "tele", [encode(Telemetry(**figures))])
    publish(
        cloud, DEVICE, "evt", [latch_pulsed(1, "A1"), latch_pulsed(2, "A1"), latch_pulsed(1, "A1")]
    )
    wait_for("both pulses stored", lambda: stored_events(cloud) == 2)
    wait_for(
        "the telemetry applied",
        lambda: value(scrape(cloud), "linli_device_uptime_seconds", device=DEVICE) == 3600,
    )
    sent_at = time.time()

    # API calls: one to a route with a path parameter (refused: no session), one that no
    # route matches, and a scrape (never counted).
    assert httpx.get(f"{cloud.url}/api/v1/items/itm_kettle").status_code == 401
    assert httpx.get(f"{cloud.url}/no/such/page/{secrets.token_hex(4)}").status_code == 404
    assert httpx.get(f"{cloud.url}/static/console.css").status_code == 200
    assert httpx.get(f"{cloud.url}/static/{secrets.token_hex(4)}.css").status_code == 404

    after = scrape(cloud)
    one = {"device": DEVICE, "role": "locker", "community": COMMUNITY}
    assert value(after, "linli_device_up", **one) == 1
    seen = value(after, "linli_device_last_seen_timestamp_seconds", **one)
    assert seen is not None and sent_at - 30 < seen <= sent_at + 1
    assert value(after, "linli_device_outbox_depth", **one) == 3
    assert value(after, "linli_device_cpu_temperature_celsius", **one) == 61.5
    assert value(after, "linli_device_under_voltage", **one) == 0
    assert value(after, "linli_device_under_voltage_since_boot", **one) == 1
    assert value(after, "linli_device_grant_list_age_seconds", **one) == 125
    assert value(after, "linli_device_clock_trusted", **one) == 1
    assert value(after, "linli_device_guarded", **one) == 0
    if "disk_free_pct" in figures:
        assert value(after, "linli_device_disk_free_ratio", **one) == pytest.approx(0.42)
    assert value(after, "linli_device_up", device="locker-b") == 0
    assert value(after, "linli_device_cpu_temperature_celsius", device="locker-b") is None
    assert value(after, "linli_device_event_gaps", **one) == 0
    pulses = "linli_compartment_latch_actuations_total"
    assert value(after, pulses, device=DEVICE, compartment="A1", community=COMMUNITY) == 2
    assert value(after, pulses, device=DEVICE, compartment="A2") == 0

    # A third pulse after a gap (seq 4 without 3): counted, and the gap is open.
    publish(cloud, DEVICE, "evt", [latch_pulsed(4, "A1")])
    wait_for("the third pulse stored", lambda: stored_events(cloud) == 3)
    later = scrape(cloud)
    assert value(later, pulses, device=DEVICE, compartment="A1") == 3
    assert value(later, "linli_device_event_gaps", **one) == 1

    # The API: the route template and the status, never the raw path; /metrics not counted.
    requests = "linli_http_requests_total"
    item_route = {"method": "GET", "route": "/api/v1/items/{item_id}", "status": "401"}
    assert (value(before, requests, **item_route) or 0) == 0
    assert value(after, requests, **item_route) == 1
    assert value(after, requests, method="GET", route="unmatched", status="404") == 1
    assert value(after, requests, method="GET", route="/static/{path}", status="200") == 1
    assert value(after, requests, method="GET", route="/static/{path}", status="404") == 1
    routes = {s.labels["route"] for s in after["linli_http_requests"].samples}
    assert "/metrics" not in routes and not any("itm_kettle" in r for r in routes)
    assert (
        value(
            after,
            "linli_http_request_duration_seconds_count",
            method="GET",
            route="/api/v1/items/{item_id}",
        )
        == 1
    )
    assert (
        value(
            after,
            "linli_http_request_duration_seconds_bucket",
            route="/api/v1/items/{item_id}",
            le="+Inf",
        )
        == 1
    )

    # Business figures against the store of the seed.
    c = {"community": COMMUNITY}
    for row in cloud.store.read("SELECT status, COUNT(*) AS n FROM items GROUP BY status"):
        assert value(after, "linli_items", status=row["status"], **c) == row["n"]
    assert value(after, "linli_items", status="on_loan", **c) == 0  # every status, 0 included
    live = cloud.store.read_one(
        "SELECT COUNT(*) FROM items WHERE status IN ('reserved', 'collecting')"
    )[0]  # type: ignore[index]
    assert live >= 1
    assert value(after, "linli_reservations_live", **c) == live
    held = cloud.store.read_one(
        "SELECT SUM(amount) FROM transfers t WHERE phase = 'pending'"
        " AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)"
    )[0]  # type: ignore[index]
    assert held > 0
    assert value(after, "linli_points_held", **c) == held
    residents = sum(1 for login in LOGINS if login.role == "resident")
    assert value(after, "linli_residents_active", **c) == residents
    credited = 50 * residents  # the seed credits each resident 50 points
    assert value(after, "linli_points_issued_total", kind="valuation_credit", **c) == credited
    assert value(after, "linli_points_issued_total", kind="time_credit", **c) == 0
    assert value(after, "linli_points_redeemed_total", **c) == 0
    reserved = cloud.store.read_one(
        "SELECT COUNT(*) FROM item_history WHERE to_status = 'reserved'"
    )[0]  # type: ignore[index]
    assert value(after, "linli_item_transitions_total", status="reserved", **c) == reserved
    red_before = open_alerts(cloud, "red")

    # Ledger movements and an alert, written by the real code and SQL, show at the next scrape.
    now_ms = int(time.time() * 1000)
    with cloud.store.write() as db:
        ledger.transfer(
            db, key="metrics-test-time", debit=ledger.ISSUANCE, credit="mem:per_2", amount=7,
            kind="time_credit", actor="staff:per_3", now_ms=now_ms,
        )  # fmt: skip
        ledger.transfer(
            db, key="metrics-test-spend", debit="mem:per_2", credit=ledger.REDEMPTION, amount=4,
            kind="redemption", actor="person:per_2", now_ms=now_ms,
        )  # fmt: skip
        for alert_id, severity, status in (("alr_1", "red", "open"), ("alr_2", "red", "resolved")):
            db.execute(
                "INSERT INTO alerts (id, community_id, tracking_code, rule, severity, cause_key,"
                " status, opened_ms, due_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                (alert_id, COMMUNITY, f"T-{alert_id}", "ajar", severity, f"ajar:{alert_id}",
                 status, now_ms, now_ms + 86_400_000),
            )  # fmt: skip
    last = scrape(cloud)
    assert value(last, "linli_points_issued_total", kind="time_credit", **c) == 7
    assert value(last, "linli_points_issued_total", kind="valuation_credit", **c) == credited
    assert value(last, "linli_points_redeemed_total", **c) == 4
    # Alerts: as the store has them, whoever opened them (the telemetry's under-voltage since
    # boot may open one too); read until a scrape and the store agree on every severity.
    assert open_alerts(cloud, "red") == red_before + 1
    wait_for(
        "the scrape and the store agree on open alerts",
        lambda: all(
            value(scrape(cloud), "linli_alerts_open", severity=s, **c) == open_alerts(cloud, s)
            for s in ("red", "yellow", "blue")
        ),
    )
    assert value(last, "linli_metrics_section_ok", section="devices") == 1
    assert value(last, "linli_metrics_section_ok", section="business") == 1


def test_the_body_names_no_person_phone_or_code(metered: CloudUnderTest) -> None:
    httpx.get(f"{metered.url}/api/v1/items/itm_kettle")
    body = get_metrics(metered, Authorization=f"Bearer {TOKEN}").text
    people = [r["id"] for r in metered.store.read("SELECT id FROM people")]
    phones = [r["phone"] for r in metered.store.read("SELECT phone FROM resident_profiles")]
    codes = [
        code_of(metered.keys, r["id"], r["code_counter"])
        for r in metered.store.read("SELECT id, code_counter FROM grants")
    ]
    logins = [login.login for login in LOGINS]
    assert people and phones and codes
    for secret in [*people, *phones, *codes, *logins]:
        assert not re.search(rf"(?<![0-9A-Za-z_]){re.escape(secret)}(?![0-9A-Za-z_])", body), (
            "the metrics name a person, a phone, a login or a code"
        )
    assert TOKEN not in body


# --- the dashboard and the scrape configuration ----------------------------------------------


def test_the_dashboard_asks_only_for_metrics_the_cloud_exposes(metered: CloudUnderTest) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["community"]["type"] == "query"
    expressions = list(dashboard_expressions(dashboard))
    assert len(expressions) >= 20
    families = scrape(metered)
    exposed = sample_names(families)
    per_community = {
        name
        for family in families.values()
        if any("community" in sample.labels for sample in family.samples)
        for name in sample_names({family.name: family})
    }
    assert "linli_device_up" in per_community and "linli_http_requests_total" not in per_community
    used = {name for expr in expressions for name in re.findall(r"\blinli_[a-z0-9_]+", expr)}
    assert used - exposed == set(), "the dashboard asks for metrics /metrics does not expose"
    # Every panel queries the Prometheus data source variable; the community filter is applied
    # to every per-community metric.
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            for name in set(re.findall(r"\blinli_[a-z0-9_]+", target["expr"])) & per_community:
                assert "$community" in target["expr"], f"{panel['title']}: {name} unfiltered"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic_ in ("online", "offline", "temperature", "under-voltage", "outbox", "grant list",
                   "rated life", "items in", "points issued", "approvals", "alerts",
                   "request rate", "error rate", "p99"):  # fmt: skip
        assert topic_ in titles, topic_


def test_promtool_accepts_the_scrape_and_the_scrape_configuration(
    metered: CloudUnderTest, tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_system("promtool is missing (apt-get install prometheus)")
        return
    httpx.get(f"{metered.url}/healthz")
    body = get_metrics(metered, Authorization=f"Bearer {TOKEN}").text
    linted = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    token_file = tmp_path / "linli-metrics.token"
    token_file.write_text(TOKEN)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        PROMETHEUS_YML.read_text().replace("/etc/prometheus/linli-metrics.token", str(token_file))
    )
    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
