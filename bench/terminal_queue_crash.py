"""Kill -9 trials of the terminal's proposal queue (issue #9, item 4); the suite runs 4.

Each trial, on a fresh data directory, against the real cloud (seeded, under uvicorn, with a
private Mosquitto): 1–3 child processes confirm proposals the way the kiosk does (photos and
row committed, then ``confirmed`` printed, then the kiosk's own attempt or the sender thread's)
and are SIGKILLed at a random moment in 0–0.6 s; a last child drains the queue. Then: every
confirmed proposal is ``done``, the cloud recorded each exactly once and nothing the queue does
not hold, no photo file is left, no credential reached the logs (tests/terminal_queue_rig.py).

Run: ``.venv/bin/python bench/terminal_queue_crash.py [--trials 100] [--seed 1]``. Needs
``mosquitto``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import CloudUnderTest
from terminal_queue_rig import Target, run_trials

from station.broker import MosquittoBroker
from valuation_terminal.client import TerminalClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker(Path(tmp) / "mosquitto") as broker:
        cloud = CloudUnderTest(Path(tmp) / "cloud", broker.info)
        try:
            client = TerminalClient(
                cloud.url, "terminal-1", cloud.seed.terminal_token, Path(tmp) / "t"
            )
            ticket = client.signin("13800000001", "246810").ticket

            def accepted() -> dict[str, int]:
                rows = cloud.store.read(
                    "SELECT proposal_key, COUNT(*) AS n FROM valuations GROUP BY proposal_key"
                )
                return {row["proposal_key"]: row["n"] for row in rows}

            target = Target(cloud.url, "terminal-1", cloud.seed.terminal_token, ticket, accepted)
            started = time.monotonic()
            result = run_trials(Path(tmp) / "trials", target, args.trials, seed=args.seed)
            elapsed = time.monotonic() - started
        finally:
            cloud.stop()
    print(f"trials: {result.trials} in {elapsed:.0f} s")
    print(f"kills (SIGKILL at random): {result.kills}")
    print(f"proposals confirmed before a kill: {result.confirmed}")
    print(f"proposals the cloud recorded (each exactly once): {result.accepted}")
    print(
        f"sent again after a kill, answered with the first answer (200): {result.resent_after_kill}"
    )
    print(f"problems: {len(result.problems)}")
    for problem in result.problems[:20]:
        print("  ", problem)
    sys.exit(1 if result.problems else 0)


if __name__ == "__main__":
    main()
