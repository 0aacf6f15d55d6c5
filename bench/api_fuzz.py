"""Big schemathesis run over every operation of the cloud's API, as every role and anonymous.

The suite (``tests/test_api_fuzz.py``) runs a few dozen examples per operation and caller; this
runs many more with the same generators and the same checks, against a seeded cloud on real
uvicorn and a private Mosquitto: never a 5xx, and every 4xx carries ``{"code", "message",
"field"}``. Problems are collected (not stopped at) and printed with a curl line to reproduce.

Figures: operations × callers × examples; answers by status class, overall and per operation;
median and p99 request latency (client-side, one keep-alive connection).

Run: ``.venv/bin/python bench/api_fuzz.py [--examples 200] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx
from conftest import CloudUnderTest
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import Case
from test_api_fuzz import (
    OPERATIONS,
    ROLES,
    ApiFuzz,
    Outcome,
    is_admitted,
    known_path_values,
    terminal_credentials,
)

from cloud_api.seed import LOGINS
from station.broker import MosquittoBroker


def sign_in_all(url: str) -> dict[str | None, str]:
    """A token per role: Auntie Wang (resident), Zhang (social worker), Liu (maintainer)."""
    tokens: dict[str | None, str] = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for login in LOGINS[:4]:
            response = client.post("/api/v1/session", json=login.body(time.time_ns() // 10**6))
            response.raise_for_status()
            tokens.setdefault(login.role, response.json()["token"])
    return tokens


def run(
    fuzz: ApiFuzz, method: str, path: str, role: str | None, examples: int, seed_value: int
) -> list[Outcome]:
    """Every outcome of ``examples`` generated requests (problems recorded, not raised)."""
    outcomes: list[Outcome] = []

    @seed(seed_value)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=fuzz.strategy(method, path))
    def one(case: Case[Any]) -> None:
        outcomes.append(fuzz.call(case, role))

    one()
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--examples", type=int, default=200, help="per operation and caller")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    latencies: list[float] = []
    classes: Counter[str] = Counter()
    per_operation: dict[str, Counter[str]] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="linli-api-fuzz-") as tmp:
        base = Path(tmp)
        with MosquittoBroker(base / "mosquitto") as broker:
            cloud = CloudUnderTest(base / "cloud", broker.info)
            try:
                tokens = sign_in_all(cloud.url) | terminal_credentials(cloud)
                fuzz = ApiFuzz(cloud.url, tokens, known_path_values(cloud.store))
                started = time.perf_counter()
                for method, path in OPERATIONS:
                    label = f"{method} {path}"
                    counts = per_operation.setdefault(label, Counter())
                    for role in ROLES:
                        examples = args.examples if is_admitted(method, path, role) else 10
                        for outcome in run(fuzz, method, path, role, examples, args.seed):
                            latencies.append(outcome.elapsed_s)
                            status_class = f"{outcome.status // 100}xx"
                            classes[status_class] += 1
                            counts[status_class] += 1
                            if outcome.problem is not None:
                                problems.append(f"{label}: {outcome.problem}")
                wall_s = time.perf_counter() - started
            finally:
                cloud.stop()
                fuzz.session.close()

    ordered = sorted(latencies)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"{len(OPERATIONS)} operations x {len(ROLES)} callers, up to {args.examples} examples"
        f" each (10 for a caller refused before the request is read), seed {args.seed}"
    )
    print(f"{len(latencies)} requests in {wall_s:.1f} s ({len(latencies) / wall_s:.0f}/s)")
    print("by status class: " + ", ".join(f"{k} {v}" for k, v in sorted(classes.items())))
    print(
        f"latency: median {statistics.median(ordered) * 1000:.2f} ms,"
        f" p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.2f} ms,"
        f" max {ordered[-1] * 1000:.2f} ms"
    )
    print("\nper operation:")
    width = max(len(label) for label in per_operation)
    for label, counts in per_operation.items():
        print(
            f"  {label.ljust(width)}  "
            + "  ".join(f"{k} {v:5d}" for k, v in sorted(counts.items()))
        )
    print(f"\nproblems: {len(problems)}")
    for line in problems[:20]:
        print("  " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
