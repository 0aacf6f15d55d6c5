"""Deterministic crash points: ``LINLI_CRASH_AT=<label>`` kills the process at that instant.

Crash tests must hit the dangerous instants (between a persist and a pulse, between committing an
event and publishing it, between storing an event and acknowledging it), not idle time. Each such
boundary calls :func:`crash_point` with a label from :data:`LABELS`; when the environment names
that label the process sends itself ``SIGKILL`` — no ``finally``, no atexit, no flush, exactly
what a power cut or the OOM killer does.

``LINLI_CRASH_AT=label@N`` crashes at the N-th time the label is reached (counted from 1 in this
process), so a test can let a boot record its ``booted`` event and die at the pulse after it.

Example:
    $ LINLI_CRASH_AT=latch.before_pulse linli locker run --gpio simulated
"""

from __future__ import annotations

import os
import signal
import sys

LABELS: dict[str, str] = {
    "state.persisted": "the controller's state document was written; no output carried out yet",
    "outbox.appended": "an event is committed to the outbox; not yet published",
    "evt.published": "an event was handed to the MQTT client; not yet marked sent",
    "latch.before_pulse": "state persisted and events committed; the latch not yet energized",
    "latch.pulsed": "the lock bus accepted the pulse; nothing after it has run",
    "ack.received": "a cloud acknowledgement arrived; the outbox not yet updated",
    "ack.applied": "the outbox applied a cloud acknowledgement",
    "cloud.event_stored": "the cloud committed a device event; its acknowledgement not yet sent",
    "notify.queued": "a notification is committed to the outbox; not yet sent",
    "notify.sent": "the notifier accepted a message; not yet marked sent",
}
"""Every crash point, and the instant it stands for (docs/architecture.md, "Crash points")."""

STATION_LABELS: frozenset[str] = frozenset(
    label for label in LABELS if not label.startswith("notify.")
)
"""The crash points of a pickup through the station (controller, broker, cloud ingest), which the
station crash rig arms (tests/crash_rig.py, bench/crash_trials.py); the ``notify.*`` points are
the cloud's notification deliverer, tried in tests/test_notify.py."""


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    label, _, nth = spec.partition("@")
    if label not in LABELS:
        raise SystemExit(f"LINLI_CRASH_AT names an unknown crash point {label!r}")
    return label, int(nth) if nth else 1


_TARGET = _parse(os.environ.get("LINLI_CRASH_AT"))
_hits: dict[str, int] = {}


def crash_point(label: str) -> None:
    """Kill this process with ``SIGKILL`` if ``LINLI_CRASH_AT`` names ``label`` (and its count)."""
    if _TARGET is None or _TARGET[0] != label:
        return
    _hits[label] = _hits.get(label, 0) + 1
    if _hits[label] == _TARGET[1]:
        sys.stderr.write(f"LINLI_CRASH_AT: crashing at {label}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
