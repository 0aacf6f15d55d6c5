"""``linli demo --scenario valuation`` (issue #9): an item given at the kiosk, dropped into a
simulated locker and approved by a social worker, end to end on a private Mosquitto.

The scenario (station/scenarios.py ``run_valuation``) drives the real kiosk over HTTP, the
simulated scale and camera, the physics simulator at the door, and the real cloud; its verdict
comes from the ledger's rows, the item over HTTP, the controller and the broker. These tests run
it, and show that its checks fail when what they check is wrong: a ledger with the credit missing
or doubled, a capture without the open command or the door's closing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import terminal_station

from cloud_api import ledger
from cloud_api.core.ledger import TransferRequest
from cloud_api.keys import load_or_create_keys
from cloud_api.seed import seed_demo
from cloud_api.store import Store
from linli.cli import build_parser
from linli.codes import derive_code
from station import kiosk_driver
from station.demo import SCENARIOS, start_station
from station.scenarios import Check, Gift, ledger_checks, mqtt_checks, run_valuation

ITEM = "itm_gift"
WANG = "mem:per_1"
ZHANG = "per_3"


def failed(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if not c.ok]


# --- the scenario, end to end -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("mosquitto_bin")
def test_the_valuation_scenario_passes_and_its_mqtt_checks_can_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station = start_station(tmp_path / "station", broker_kind="mosquitto", capture=True)
    try:
        assert run_valuation(station) == 0
        assert station.terminal is not None and station.capture is not None
        (row,) = station.terminal.kiosk.queue.all()
        assert row.state == "done" and row.answer is not None
        grant = row.answer["grant"]
        device_id, compartment = grant["device_id"], grant["compartment"]
        keys = station.seed.identities[device_id].cloud_keys
        messages = station.capture.messages()
        services = station.cloud.app.state.services
        issued = services.store.read_one(
            "SELECT code_counter FROM grants WHERE id = ?", (grant["grant_id"],)
        )
        assert issued is not None
        code = derive_code(services.keys.code_secret, grant["grant_id"], issued["code_counter"])
    finally:
        station.stop()
    out = capsys.readouterr().out
    assert "Valuation scenario: 18 of 18 checks passed." in out, out
    assert "[FAIL]" not in out
    # Neither the drop-off code nor Auntie Wang's phone or PIN is printed.
    wang = station.seed.logins[0]
    assert code not in out and wang.login not in out and wang.secret not in out
    assert re.search(r"\b\d{8}\b", out) is None

    # The same real capture passes, and fails without the open command or the door's closing.
    assert failed(mqtt_checks(messages, device_id, compartment, grant["grant_id"], keys)) == []
    without_open = [m for m in messages if m.topic != f"linli/v1/{device_id}/cmd"]
    assert failed(mqtt_checks(without_open, device_id, compartment, grant["grant_id"], keys)) == [
        "one signed open command for the door and grant seen on the broker",
        "the locker answered the open command ok",
    ]
    not_closed = [m for m in messages if b'"door_closed"' not in m.payload]
    assert failed(mqtt_checks(not_closed, device_id, compartment, grant["grant_id"], keys)) == [
        "door opened, item seen inside, door closed (events of the grant, in order)"
    ]
    # An open command signed by a key the locker does not pin is not the cloud's.
    forged = {"other": bytes(32)}
    assert "one signed open command for the door and grant seen on the broker" in failed(
        mqtt_checks(messages, device_id, compartment, grant["grant_id"], forged)
    )
    # A door sent twice is seen twice.
    (open_cmd,) = [m for m in messages if m.topic == f"linli/v1/{device_id}/cmd"]
    twice = [*messages, replace(open_cmd, received_at=open_cmd.received_at + 1)]
    assert failed(mqtt_checks(twice, device_id, compartment, grant["grant_id"], keys)) == [
        "one signed open command for the door and grant seen on the broker"
    ]


@pytest.mark.slow
@pytest.mark.usefixtures("mosquitto_bin")
def test_a_step_the_kiosk_refuses_stops_the_scenario_with_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station = start_station(tmp_path / "station", broker_kind="mosquitto", capture=True)
    try:
        assert run_valuation(station, Gift(category="spaceships")) == 1
    finally:
        station.stop()
    out = capsys.readouterr().out
    assert (
        "[FAIL] the resident's steps at the kiosk and the locker: after 'category' the kiosk"
        " shows 'category', not 'describe'" in out
    )
    assert "Valuation scenario stopped: 1 of 2 checks passed." in out


def _linli(*args: str) -> list[str]:
    return [sys.executable, "-m", "linli.cli", "--log-level", "WARNING", *args]


@pytest.mark.slow
@pytest.mark.usefixtures("mosquitto_bin")
def test_linli_demo_scenario_valuation_exits_zero(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        _linli(
            "demo", "--scenario", "valuation", "--broker", "mosquitto", "--data-dir", str(tmp_path)
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Valuation scenario: 18 of 18 checks passed." in result.stdout
    assert "she approves it again: HTTP 409" in result.stdout
    assert time.monotonic() - started < 60


def test_linli_knows_the_scenarios_the_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    for scenario in SCENARIOS:
        assert build_parser().parse_args(["demo", "--scenario", scenario]).scenario == scenario
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--scenario", "nothing"])
    listed = re.search(r"choose from (.*)\)", capsys.readouterr().err)
    assert listed is not None
    assert re.findall(r"'([a-z]+)'", listed.group(1)) == list(SCENARIOS)


def test_the_kiosk_driver_is_the_stations() -> None:
    assert terminal_station.KioskDriver is kiosk_driver.KioskDriver


# --- the ledger checks on a real store --------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """The demo's store (Auntie Wang has 50 points), no item given yet."""
    running = Store(tmp_path / "cloud.sqlite3")
    running.migrate()
    seed_demo(running, load_or_create_keys(tmp_path / "secrets"), 1_700_000_000_000)
    yield running
    running.close()


def credit(store: Store, key: str, points: int) -> None:
    with store.write() as db:
        ledger.SqlLedger(db).transfer(
            TransferRequest(
                key=key,
                kind="valuation_credit",
                debit=ledger.ISSUANCE,
                credit=WANG,
                amount=points,
                actor=ZHANG,
                refs=(("item", ITEM),),
            ),
            1_700_000_001_000,
        )


@pytest.mark.parametrize(
    ("credits", "expected_failures"),
    [
        pytest.param([7], [], id="credited-once"),
        pytest.param(
            [],
            [
                "balance rose by exactly the proposed points",
                "exactly one valuation credit for the item, to the donor",
            ],
            id="credit-missing",
        ),
        pytest.param(
            [7, 7],
            [
                "balance rose by exactly the proposed points",
                "exactly one valuation credit for the item, to the donor",
            ],
            id="credit-doubled",
        ),
        pytest.param(
            [8],
            [
                "balance rose by exactly the proposed points",
                "exactly one valuation credit for the item, to the donor",
            ],
            id="other-points",
        ),
    ],
)
def test_the_ledger_checks_fail_when_the_credit_is_missing_or_doubled(
    store: Store, credits: list[int], expected_failures: list[str]
) -> None:
    for n, points in enumerate(credits):
        credit(store, f"credit:{ITEM}" + (f":again-{n}" if n else ""), points)
    with store.snapshot() as db:
        checks = ledger_checks(db, WANG, ITEM, 7, posted_before=50)
    assert failed(checks) == expected_failures
    assert len(checks) == 3


def test_the_ledger_checks_see_a_snapshot_that_disagrees_with_the_transfers(store: Store) -> None:
    credit(store, f"credit:{ITEM}", 7)
    with store.write() as db:  # a balance edited behind the ledger's back
        db.execute("UPDATE account_balances SET posted = posted + 7 WHERE account_id = ?", (WANG,))
    with store.snapshot() as db:
        checks = ledger_checks(db, WANG, ITEM, 7, posted_before=50)
    assert failed(checks) == [
        "balance rose by exactly the proposed points",
        "balance snapshot equals the balance recomputed from the transfers",
    ]


def test_a_check_prints_its_verdict() -> None:
    assert str(Check("x", True, "seen")) == "[PASS] x: seen"
    assert str(Check("y", False)) == "[FAIL] y"
