"""500 kill -9 trials of the cloud API while it writes points (issue #6); the suite runs 50.

Each trial: ``linli cloud`` on a seeded store and a private Mosquitto, a client writing mixed
movements (refunds with partial reversals, holds posted or voided, penalties, large refunds
approved by a second social worker) and logging every HTTP 2xx, SIGKILL at a random moment in
0.05–0.6 s, then the store is checked with the API down: every acknowledged write present, no
half transaction, ``ledger verify`` clean (tests/ledger_crash_rig.py).

Run: ``.venv/bin/python bench/ledger_crash.py [--trials 500] [--seed 1]``. Needs ``mosquitto``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ledger_crash_rig import run_trials

from station.broker import MosquittoBroker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker(Path(tmp) / "mosquitto") as broker:
        started = time.monotonic()
        result = run_trials(
            Path(tmp) / "cloud",
            f"mqtt://{broker.info.host}:{broker.info.port}",
            args.trials,
            seed=args.seed,
        )
        elapsed = time.monotonic() - started
    print(
        f"{result['trials']} kill -9 trials, {result['acknowledged_writes']} acknowledged writes,"
        f" 0 lost, 0 half transactions, ledger verify clean after every trial ({elapsed:.0f} s)"
    )


if __name__ == "__main__":
    main()
