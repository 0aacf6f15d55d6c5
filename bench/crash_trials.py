"""Crash trials (issue #4, "Done when"): ≥ 500 kill -9 trials of a real controller, each checked.

Each trial is ``tests/crash_rig.run_trial`` (read its docstring): a fresh locker enrolled in the
cloud, two of its four compartments reserved for pickups, the controller daemon in a child process
with its Unix-socket keypad and a lock bus that fsyncs every latch energization to ``pulses.log``
before it happens, a resident who enters each code, pulls the door once the latch released, takes
the item, shuts the door and enters the code once more. Whatever dies is restarted unarmed; the
trial ends when the controller's outbox is empty and the cloud holds every event, then the
controller is stopped cleanly and checked. One private Mosquitto and one cloud process (``linli
cloud``) serve every trial; the cloud is restarted only around its own crash point.

Per trial, with a seeded ``random.Random``:

- three in four trials arm a crash point: a label of ``linli.crash.STATION_LABELS`` (uniform) and
  ``N`` uniform in ``1..TYPICAL_HITS[label]`` (how often a two-pickup trial reaches it; an ``N``
  past the hits of that trial leaves it alive, counted as *not reached*);
- one in four is a power cut at a random time: SIGKILL 0.1–1.6 s after the controller's first start
  (its boot and both pickups take about 1.3 s);
- the dead controller stays down 0 s (half the trials) or 0–2 s (systemd's ``RestartSec`` is 2 s);
- the resident waits 0.3–2 s at most for the controller to register each step (she does not know
  it died).

It prints the trials run, per crash point how often it was armed and reached (and what the
resident was doing then), the violations of invariants (a)–(d) (must be 0; each listed with its
trial directory, kept), what the physical world contradicts (``c-world``: a latch released again
after its door was pulled open; ``d-world``: a pickup the resident completed that the cloud did not
settle), the observations, median and p99 of recovery (a restart → the controller's outbox empty)
and the total time. Exit status 1 if any invariant was violated or the rig failed.

Run from the repository root (needs the ``mosquitto`` binary; about 3–4 s per trial on the 2-core
machine, so 500 trials take ~30 min)::

    .venv/bin/python bench/crash_trials.py [--trials 500] [--seed 1] [--keep]
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from crash_rig import COMPARTMENTS, RigCloud, TrialResult, TrialSpec, run_trial

from linli.crash import STATION_LABELS
from station.broker import mosquitto_binary

TYPICAL_HITS: dict[str, int] = {
    "state.persisted": 22,
    "outbox.appended": 11,
    "evt.published": 19,
    "latch.before_pulse": 2,
    "latch.pulsed": 2,
    "ack.received": 19,
    "ack.applied": 19,
    "cloud.event_stored": 19,
}
"""Hits of each crash point in one two-pickup trial without a crash (traced: 15 events in 11
commits, 2 pulses, 23 state changes, 20 publishes and acks, re-sends included), rounded down."""
RANDOM_SHARE = 0.25
RANDOM = "random SIGKILL"
KEEP_WORLD_SAMPLES = 3


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (as the other benches compute it)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pick(index: int, rng: random.Random) -> TrialSpec:
    """The trial ``index``: a crash point and N, or a random-time SIGKILL."""
    compartments = tuple(rng.sample([name for name, _ in COMPARTMENTS], 2))
    seed = rng.randrange(2**31)
    restart_delay_s = 0.0 if rng.random() < 0.5 else round(rng.uniform(0.0, 2.0), 3)
    pause_s = round(rng.uniform(0.3, 2.0), 3)
    crash_at, kill_after_s, name = None, None, f"t{index:04d}-kill"
    if rng.random() < RANDOM_SHARE:
        kill_after_s = round(rng.uniform(0.1, 1.6), 3)
    else:
        label = rng.choice(sorted(STATION_LABELS))
        crash_at, name = f"{label}@{rng.randint(1, TYPICAL_HITS[label])}", f"t{index:04d}-{label}"
    return TrialSpec(
        name=name,
        crash_at=crash_at,
        kill_after_s=kill_after_s,
        compartments=compartments,
        seed=seed,
        restart_delay_s=restart_delay_s,
        pause_s=pause_s,
    )


def kind_of(result: TrialResult) -> str:
    """The crash point a trial armed, or :data:`RANDOM`."""
    return result.spec.label or RANDOM


def report(results: list[TrialResult], rig_errors: list[str], elapsed_s: float, seed: int) -> int:
    """Print the summary; return the exit status."""
    print(f"\nCrash trials: {len(results)} trials run (seed {seed})")
    print("\nPer crash point: armed, reached (the process died there), resident's phase then")
    armed: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    phases: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        kind = kind_of(r)
        armed[kind] += 1
        hit = r.crashed_at_label if r.spec.label else bool(r.deaths)
        if hit:
            reached[kind] += 1
            phases[kind][(r.crash_phase or "?").split()[0]] += 1
    for kind in [*sorted(STATION_LABELS), RANDOM]:
        where = ", ".join(f"{p} {n}" for p, n in phases[kind].most_common())
        print(f"  {kind:<20} armed {armed[kind]:>4}  reached {reached[kind]:>4}   {where}")
    deaths = sum(len(r.deaths) for r in results)
    print(f"  processes killed in all: {deaths}")

    violating = [r for r in results if r.violations]
    count = sum(len(r.violations) for r in results)
    print(f"\nInvariant violations (a)-(d): {count} in {len(violating)} trials (must be 0)")
    for r in violating:
        print(f"  {r.summary()}\n    kept in {r.rig_dir}")
        for line in r.violations:
            print(f"    {line}")
    print(f"Rig errors: {len(rig_errors)}")
    for line in rig_errors:
        print(f"  {line}")

    print("\nWhat the physical world contradicts (not (a)-(d); see tests/crash_rig.check_world):")
    for tag in ("(c-world)", "(d-world)"):
        trials = [r for r in results if any(w.startswith(tag) for w in r.world)]
        by_kind = Counter(kind_of(r) for r in trials)
        detail = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
        print(f"  {tag:<10} {len(trials):>4} trials   {detail}")
        for r in trials[:2]:
            print(f"    e.g. {r.spec.name} ({r.spec.crash_at or 'SIGKILL'}): {r.world[0]}")
    observed: Counter[str] = Counter()
    for r in results:
        observed.update({o.split(":")[0] for o in r.observations})
    print("Observations (trials): " + ", ".join(f"{k} {n}" for k, n in sorted(observed.items())))

    recovery = [ms for r in results for ms in r.recovery_ms]
    if recovery:
        print(
            f"\nRecovery (restart → controller's outbox empty): n={len(recovery)},"
            f" median {statistics.median(recovery):.0f} ms, p99 {percentile(recovery, 0.99):.0f} ms,"
            f" max {max(recovery):.0f} ms"
        )
    durations = [r.duration_s for r in results]
    print(
        f"Trial time: median {statistics.median(durations):.2f} s, p99"
        f" {percentile(durations, 0.99):.2f} s"
    )
    print(f"Total time: {elapsed_s / 60:.1f} min ({elapsed_s:.0f} s)")
    return 1 if violating or rig_errors else 0


def main(argv: list[str] | None = None) -> int:
    """Run the trials and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep every trial's directory")
    parser.add_argument("--dir", type=Path, default=None, help="where trials go (default: /tmp)")
    args = parser.parse_args(argv)
    if mosquitto_binary() is None:
        print("needs the mosquitto binary (apt-get install mosquitto)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    base = args.dir or Path(tempfile.mkdtemp(prefix="crash-trials-", dir="/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"crash trials: {args.trials} trials, seed {args.seed}, in {base}", flush=True)
    rng = random.Random(args.seed)
    started = time.monotonic()
    cloud = RigCloud(base).start()
    results: list[TrialResult] = []
    rig_errors: list[str] = []
    world_kept = 0
    try:
        for index in range(args.trials):
            spec = pick(index, rng)
            rig_dir = base / spec.name
            try:
                result = run_trial(cloud, spec, rig_dir)
            except Exception as exc:  # a rig failure: report it, keep the directory, go on
                rig_errors.append(f"{spec.name}: {type(exc).__name__}: {exc} ({rig_dir})")
                traceback.print_exc()
                if not cloud.is_alive():
                    cloud.spawn()
                continue
            results.append(result)
            keep = args.keep or bool(result.violations)
            if result.world and world_kept < KEEP_WORLD_SAMPLES:
                keep, world_kept = True, world_kept + 1
            if not keep:
                shutil.rmtree(rig_dir, ignore_errors=True)
            if result.violations:
                print(f"VIOLATION {result.summary()}", flush=True)
            if (index + 1) % 25 == 0:
                bad = sum(1 for r in results if r.violations)
                print(
                    f"  {index + 1}/{args.trials} trials, {bad} with violations,"
                    f" {len(rig_errors)} rig errors, {time.monotonic() - started:.0f} s",
                    flush=True,
                )
    finally:
        cloud.stop()
    return report(results, rig_errors, time.monotonic() - started, args.seed)


if __name__ == "__main__":
    sys.exit(main())
