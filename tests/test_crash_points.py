"""Every crash point, and SIGKILL at random times, on a real controller, cloud and Mosquitto
(issue #4, "Done when": "every crash label run in the suite").

Each trial (``tests/crash_rig.py``) enrols a fresh locker, reserves items in two of its
compartments, starts the controller daemon in a child process — armed with
``LINLI_CRASH_AT=<label>@N``, or killed by the test after a random delay — and plays the
resident at its Unix-socket keypad and at the doors of a physical world kept in files (every latch
energization fsynced to ``pulses.log`` before it happens). Whatever died is restarted unarmed; the
trial ends once the controller's outbox is empty and the cloud holds every event, and the
controller is stopped cleanly. It proves, for each of :data:`linli.crash.LABELS` at an instant
inside a pickup and for five random-time power cuts (fixed seed):

(a) the cloud holds exactly the events the controller generated, each once, none pending;
(b) no latch pulsed more often than its grant's accepted codes (and never more than twice);
(c) no latch pulsed after the ``door_opened`` that consumed its grant;
(d) the cloud settled each pickup once, as far as the controller reported it (item picked up and
    one posted hold once it reported the item gone; the grant consumed once it reported the door
    opened for it).

The cloud's crash point (``cloud.event_stored``) is run in the cloud's own process (``linli
cloud``), killed between committing an event and acknowledging it, and restarted.

Each crash point's trial also requires the physical world to agree (``crash_rig.check_world``):
no latch released again after its door was pulled open, and every pickup the resident completed
settled in the cloud (the random-time trials print it; their instants are not chosen). So does
:func:`test_a_pickup_while_the_controller_is_down_is_neither_reopened_nor_lost`: killed right
after the pulse and restarted 2 s later, while the resident opens the door, takes the item and
closes it. The restarted controller compares its first reading with the occupancy it persisted,
consumes the grant whose pulse was waiting (the same code is then refused as used), and tells the
cloud, which settles the pickup once. The same must hold when the restarted controller finds the
door still open with the item inside
(:func:`test_a_door_opened_while_the_controller_is_down_consumes_the_waiting_grant`), and when the
controller dies between persisting a sensed fact and recording its event
(:func:`test_a_crash_between_persisting_and_recording_a_sensed_fact_loses_nothing`: for a decision
that moves no latch the events are committed before the state, so the fact is seen again).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_system
from crash_rig import RigCloud, TrialResult, TrialSpec, run_trial

from linli.crash import LABELS, STATION_LABELS
from station.broker import mosquitto_binary

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

MISSING_MOSQUITTO = "mosquitto binary not installed (apt-get install mosquitto)"
PICKUPS = ("A1", "A3")
PICKUP_STEPS = {"code", "open", "take", "close", "again"}
"""The resident's phases inside a pickup (crash_rig.Resident.pick_up)."""

CRASH_AT: dict[str, int] = {
    # the state document with the grant's use counted; no event, no pulse yet (hits 1-3 are the
    # boot's bus reading and the two signed lists it receives)
    "state.persisted": 4,
    # the code entry's code_accepted and latch_pulsed committed (one transaction), not published,
    # the latch not yet energized (1 = booted)
    "outbox.appended": 2,
    # an event of the first pickup handed to MQTT, not yet marked sent (the boot publishes
    # `booted` one to four times: once per signed list that arrives before its ack)
    "evt.published": 6,
    "latch.before_pulse": 1,  # everything recorded; the latch not energized
    "latch.pulsed": 1,  # the latch energized; nothing after it ran (the door is free)
    "ack.received": 5,  # an ack of the first pickup arrived; the outbox not yet updated
    "ack.applied": 5,  # the outbox applied it; nothing after it ran
    # the cloud committed an event of the first pickup (and settled it); its ack never sent
    "cloud.event_stored": 6,
}
"""N of ``LINLI_CRASH_AT=label@N`` per crash point: an instant inside the first pickup."""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RigCloud]:
    """One private Mosquitto and one cloud process for every trial of this module."""
    if mosquitto_binary() is None:
        require_system(MISSING_MOSQUITTO)
    cloud = RigCloud(tmp_path_factory.mktemp("crash-rig")).start()
    yield cloud
    cloud.stop()


class WorldContradicts(AssertionError):
    """The physical world contradicts what the cloud settled (crash_rig.check_world)."""


def agree_with_the_world(result: TrialResult) -> None:
    """Raise :class:`WorldContradicts` if the world contradicts the cloud (c-world, d-world)."""
    if result.world:
        raise WorldContradicts("\n".join(result.world))


def run(rig: RigCloud, spec: TrialSpec, tmp_path: Path) -> TrialResult:
    """Run one trial; print what happened (shown when the test fails)."""
    result = run_trial(rig, spec, tmp_path / "rig")
    print(result.summary())
    for record in result.records:
        print(f"  {record.pickup.compartment}: {record.replies} then {record.probe}")
    return result


def test_every_crash_point_has_a_trial() -> None:
    assert set(CRASH_AT) == set(STATION_LABELS)
    assert {label for label in LABELS if label.startswith("notify.")} == set(LABELS) - set(
        STATION_LABELS
    )  # and those are tried in tests/test_notify.py


@pytest.mark.parametrize("label", sorted(STATION_LABELS))
def test_a_crash_at_every_point_loses_nothing_and_opens_nothing_twice(
    rig: RigCloud, label: str, tmp_path: Path
) -> None:
    crash_at = f"{label}@{CRASH_AT[label]}"
    spec = TrialSpec(name=f"point-{label}", crash_at=crash_at, compartments=PICKUPS)
    result = run(rig, spec, tmp_path)

    assert result.crashed_at_label, f"{crash_at} was never reached: {result.summary()}"
    phase = result.crash_phase or ""
    assert phase.split()[0] in PICKUP_STEPS, f"{crash_at} fell outside a pickup ({phase!r})"
    assert result.violations == []
    assert all(record.opened for record in result.records)  # every pickup reached its door
    agree_with_the_world(result)


@pytest.mark.parametrize("trial", range(5))
def test_a_power_cut_at_a_random_time_loses_nothing_and_opens_nothing_twice(
    rig: RigCloud, trial: int, tmp_path: Path
) -> None:
    rng = random.Random(4004 + trial)
    spec = TrialSpec(
        name=f"random-{trial}",
        kill_after_s=round(rng.uniform(0.25, 1.35), 3),  # boot and both pickups: ~1.3 s
        compartments=PICKUPS,
        seed=trial,
    )
    result = run(rig, spec, tmp_path)

    assert [d.exit_code for d in result.deaths] == [-9]  # the one power cut, nothing else
    assert result.violations == []


def test_a_pickup_while_the_controller_is_down_is_neither_reopened_nor_lost(
    rig: RigCloud, tmp_path: Path
) -> None:
    spec = TrialSpec(
        name="down-during-pickup",
        crash_at="latch.pulsed@1",
        compartments=("A2",),
        restart_delay_s=2.0,
        pause_s=0.5,
    )
    result = run(rig, spec, tmp_path)

    assert result.crashed_at_label
    (record,) = result.records
    assert record.took  # the world moved on while the controller was down
    assert result.violations == []  # (a)-(d) hold: what was reported is consistent
    agree_with_the_world(result)


def test_a_door_opened_while_the_controller_is_down_consumes_the_waiting_grant(
    rig: RigCloud, tmp_path: Path
) -> None:
    spec = TrialSpec(
        name="door-open-at-restart",
        crash_at="latch.pulsed@1",
        compartments=("A4",),
        restart_delay_s=0.5,  # she pulls the door at once; the restarted controller finds it open
    )
    result = run(rig, spec, tmp_path)

    assert result.crashed_at_label
    (record,) = result.records
    assert record.opened and record.took
    assert result.violations == []
    agree_with_the_world(result)


def test_a_crash_between_persisting_and_recording_a_sensed_fact_loses_nothing(
    rig: RigCloud, tmp_path: Path
) -> None:
    contradictions: list[str] = []
    # In a one-pickup trial the item's debounced departure is the 8th to 10th state change
    # (before it: the boot's reading, two signed lists, the code, the door's edge and settling,
    # the item's edge, and the pulse's end, whose moment varies).
    for n in (8, 9, 10):
        spec = TrialSpec(
            name=f"sensed-fact-{n}",
            crash_at=f"state.persisted@{n}",
            compartments=("A1",),
            restart_delay_s=1.0,  # she shuts the door while it is down
        )
        result = run(rig, spec, tmp_path / f"n{n}")
        assert result.crashed_at_label
        assert result.violations == []
        contradictions.extend(result.world)
    if contradictions:
        raise WorldContradicts("\n".join(contradictions))
