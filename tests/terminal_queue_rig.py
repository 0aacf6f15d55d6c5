"""Kill -9 the terminal's proposal queue at random while it takes and sends proposals.

Shared by tests/test_terminal_queue.py (a handful of trials) and bench/terminal_queue_crash.py
(many). One trial, on a fresh data directory:

1. a child process (this file, ``child``) opens the queue and its sender thread, then confirms
   proposals one after another the way the kiosk does — photos and row committed by
   :meth:`ProposalQueue.enqueue`, then ``confirmed <id>`` printed, then (every other one) the
   kiosk's own first attempt with ``open_now=true`` — while the sender thread submits the rest;
2. the parent SIGKILLs it at a random moment (1–3 times, each child confirming more);
3. a last child drains the queue with nothing to confirm;
4. the parent checks: every proposal confirmed before a kill is ``done``, none is refused or
   pending, the cloud accepted each exactly once (one item per ``proposal_id``) and accepted
   nothing the queue does not hold, no photo file is left, and no ticket reached the logs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Target:
    """The cloud the children talk to, and how to ask it what it accepted."""

    url: str
    device_id: str
    token: str
    ticket: str
    accepted: Callable[[], dict[str, int]]
    """proposal_id → how many items the cloud created for it."""


@dataclass
class TrialResult:
    trials: int = 0
    kills: int = 0
    confirmed: int = 0
    accepted: int = 0
    resent_after_kill: int = 0
    problems: list[str] = field(default_factory=list)


def _spawn(data_dir: Path, target: Target, count: int, seed: int) -> subprocess.Popen[str]:
    env = dict(os.environ, LINLI_TERMINAL_TICKET=target.ticket, LINLI_TERMINAL_TOKEN=target.token)
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "terminal_queue_rig.py"),
            "child",
            "--data-dir",
            str(data_dir),
            "--cloud",
            target.url,
            "--device-id",
            target.device_id,
            "--count",
            str(count),
            "--seed",
            str(seed),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class _Lines:
    """Reads a child's stdout and stderr on threads, so a kill never loses what was printed."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.out: list[str] = []
        self.err = io.StringIO()
        self.ready = threading.Event()
        assert process.stdout is not None and process.stderr is not None
        self._streams = (process.stdout, process.stderr)
        self._threads = [
            threading.Thread(target=self._read_out, args=(process.stdout,), daemon=True),
            threading.Thread(target=self._read_err, args=(process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_out(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self.out.append(line.strip())
            if line.startswith("ready"):
                self.ready.set()

    def _read_err(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self.err.write(line)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(10)
        for stream in self._streams:
            stream.close()


def run_trial(data_dir: Path, target: Target, rng: random.Random, result: TrialResult) -> None:
    """One trial (see the module's docstring); problems are appended to ``result``."""
    confirmed: set[str] = set()
    logs: list[str] = []
    for _ in range(rng.randint(1, 3)):
        child = _spawn(data_dir, target, rng.randint(3, 8), rng.randrange(1 << 30))
        lines = _Lines(child)
        if not lines.ready.wait(30):
            child.kill()
            result.problems.append("a child did not start")
            return
        time.sleep(rng.uniform(0.0, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        lines.join()
        result.kills += 1
        confirmed |= {line.split()[1] for line in lines.out if line.startswith("confirmed ")}
        logs.append(lines.err.getvalue())
    drain = _spawn(data_dir, target, 0, 0)
    lines = _Lines(drain)
    try:
        drain.wait(120)
    except subprocess.TimeoutExpired:
        drain.kill()
        result.problems.append("the queue did not drain in 120 s")
    lines.join()
    logs.append(lines.err.getvalue())
    if not any(line.startswith("drained") for line in lines.out):
        result.problems.append(f"drain run: {lines.out[-3:]} {lines.err.getvalue()[-500:]}")
        return

    from valuation_terminal.queue import ProposalQueue

    queue = ProposalQueue(data_dir)
    rows = {row.proposal_id: row for row in queue.all()}
    queue.close()
    accepted = target.accepted()
    result.trials += 1
    result.confirmed += len(confirmed)
    result.accepted += sum(1 for pid in rows if pid in accepted)
    for pid in sorted(confirmed - set(rows)):
        result.problems.append(f"{data_dir.name}: confirmed {pid} is not in the queue")
    for pid, row in rows.items():
        if row.state != "done":
            result.problems.append(f"{data_dir.name}: {pid} is {row.state} ({row.error_code})")
        if accepted.get(pid) != 1:
            result.problems.append(f"{data_dir.name}: the cloud created {pid} {accepted.get(pid)}×")
    strangers = {pid for pid in accepted if pid.startswith("prp_rig") and pid not in rows}
    strangers = {pid for pid in strangers if pid.startswith(f"prp_rig{_tag(data_dir)}")}
    for pid in sorted(strangers):
        result.problems.append(f"{data_dir.name}: the cloud holds {pid}, the queue does not")
    left = [p.name for p in (data_dir / "photos").iterdir()]
    if left:
        result.problems.append(f"{data_dir.name}: photo files left: {left[:3]}")
    text = "".join(logs)
    if target.ticket in text or target.token in text:
        result.problems.append(f"{data_dir.name}: a credential reached the logs")
    result.resent_after_kill += text.count("submitted (HTTP 200")


def _tag(data_dir: Path) -> str:
    """A short tag of the data directory, in every proposal id of its trial."""
    import hashlib

    return hashlib.sha256(str(data_dir).encode()).hexdigest()[:6]


def run_trials(root: Path, target: Target, trials: int, *, seed: int) -> TrialResult:
    """``trials`` trials under ``root``."""
    rng = random.Random(seed)
    result = TrialResult()
    for n in range(trials):
        run_trial(root / f"trial-{n:04d}", target, rng, result)
    return result


# --- the child -------------------------------------------------------------------------------


def _jpeg(rng: random.Random) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (48, 36))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256))] * (48 * 36))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def child(args: argparse.Namespace) -> int:
    import hashlib
    import logging

    from valuation_terminal.client import TerminalClient
    from valuation_terminal.core.rules import Demand, Inputs, load_policy, value
    from valuation_terminal.queue import ProposalQueue, Sender, proposal_body

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    data_dir = Path(args.data_dir)
    ticket = os.environ["LINLI_TERMINAL_TICKET"]
    client = TerminalClient(
        args.cloud, args.device_id, os.environ["LINLI_TERMINAL_TOKEN"], data_dir, timeout_s=3
    )
    queue = ProposalQueue(data_dir)
    sender = Sender(queue, client).start()
    rng = random.Random(args.seed)
    context = client.context() if args.count else None
    print("ready", flush=True)
    if context is not None:
        policy = load_policy(context["policy_text"])
        snapshot = context["demand"]
        categories = sorted(policy.categories)
        tag = _tag(data_dir)
        for i in range(args.count):
            pid = f"prp_rig{tag}{args.seed:010d}{i:04d}"
            category = rng.choice(categories)
            lo, hi = policy.categories[category].weight_range_g
            weight_mg = rng.randint(lo, hi) * 1000
            jpegs = [_jpeg(rng) for _ in range(rng.randint(1, 3))]
            photos = {hashlib.sha256(j).hexdigest(): j for j in jpegs}
            inputs = Inputs(
                category=category,
                condition=rng.choice(["全新", "9成新以上", "9成新", "8成新"]),
                age_months=rng.randint(0, 60),
                weight_g=weight_mg // 1000,
                photo_count=len(photos),
                demand=Demand(
                    float(snapshot["factors"].get(category, 1.0)), str(snapshot["snapshot_id"])
                ),
            )
            body = proposal_body(
                pid,
                title=f"rig item {i}",
                category=category,
                size=rng.choice(["S", "M", "L"]),
                inputs=inputs,
                proposal=value(policy, inputs),
                photos=list(photos),
                weight_mg=weight_mg,
            )
            queue.enqueue(pid, "rig-resident", ticket, body, photos)
            print(f"confirmed {pid}", flush=True)
            if i % 2 == 0:
                sender.attempt(pid, open_now=True)
            else:
                sender.wake()
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        counts = queue.counts()
        if not any(counts.get(s, 0) for s in ("queued", "photos_uploaded", "submitted")):
            break
        sender.wake()
        time.sleep(0.05)
    sender.stop()
    print("drained", json.dumps(queue.counts()), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["child"])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cloud", required=True)
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    sys.exit(child(parser.parse_args()))
