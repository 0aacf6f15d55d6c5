"""The cloud API killed with SIGKILL at random while it writes points, 30 times: after each kill
every acknowledged write is in the store, no transaction is half done, and ``ledger verify``
passes (tests/ledger_crash_rig.py; 500 trials in bench/ledger_crash.py)."""

from __future__ import annotations

from pathlib import Path

from ledger_crash_rig import run_trials

from station.broker import BrokerInfo

TRIALS = 30


def test_kill_9_at_random_loses_no_acknowledged_write_and_leaves_no_half_transaction(
    tmp_path: Path, mosquitto: BrokerInfo
) -> None:
    broker_url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    result = run_trials(tmp_path / "cloud", broker_url, TRIALS, seed=20261123)
    assert result["trials"] == TRIALS
    assert result["acknowledged_writes"] > TRIALS  # the client really wrote between kills
