"""The durable part of the controller's state, as a plain JSON-able document, and back.

What survives a restart: the applied configuration (grants, compartment policy), every grant's
uses, each compartment's content epoch and attention flag (only a maintainer clears it), the
command replay window and the time floor, the code throttle (back-off and the guesses of the last
24 hours: a power cut must not reset a guesser's count) and the bank-wide alarms raised. Latch, door and occupancy are *not* restored: after a
restart they are unknown until sensors say otherwise, and no pulse is in progress (every output
was switched off at start-up).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hardware.capabilities import GPIO_CAPABILITIES, Capabilities
from linli.contract.models import Grant
from locker_controller.core.model import (
    Compartment,
    ControllerState,
    GrantUse,
    Identity,
    ReplayWindow,
    TimeState,
)
from locker_controller.core.throttle import Backoff, Throttle

DOCUMENT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 1 lacked the throttle, the raised alarms and the list's age bound: defaults."""


def to_document(state: ControllerState) -> dict[str, Any]:
    """Serialize the durable part of ``state``."""
    return {
        "document_version": DOCUMENT_VERSION,
        "cfg_version": state.cfg_version,
        "cfg_issued_at_ms": state.cfg_issued_at_ms,
        "grants": [g.model_dump(mode="json") for g in state.grants.values()],
        "retired": [g.model_dump(mode="json") for g in state.retired.values()],
        "uses": {
            gid: [u.pulses, u.first_pulse_wall_ms, u.is_consumed] for gid, u in state.uses.items()
        },
        "compartments": {
            c.name: {
                "size": c.size,
                "pulse_ms": c.pulse_ms,
                "epoch": c.epoch,
                "attention": c.attention,
                "occupancy": c.occupancy,
                "opened_by": c.opened_by,
                "opened_purpose": c.opened_purpose,
            }
            for c in state.compartments.values()
        },
        "window": {"highest": state.window.highest, "seen": sorted(state.window.seen)},
        "time_floor_ms": state.time.floor_wall_ms,
        "stale_after_ms": state.stale_after_ms,
        "raised": sorted(state.raised),
        "throttle": {
            "bank": [state.throttle.bank.failures, state.throttle.bank.last_failure_ms],
            "channels": {
                name: [b.failures, b.last_failure_ms] for name, b in state.throttle.channels.items()
            },
            "guesses": [list(g) for g in state.throttle.guesses],
        },
    }


def from_document(
    identity: Identity,
    compartment_names: list[str],
    document: dict[str, Any] | None,
    capabilities: Capabilities = GPIO_CAPABILITIES,
) -> ControllerState:
    """Rebuild state at start-up from the persisted document (or from nothing, first boot).

    Compartments wired in the board definition but unknown to the document start with defaults;
    the axes start ``unknown``.
    """
    compartments = {name: Compartment(name=name) for name in compartment_names}
    if not document:
        return ControllerState(
            identity=identity, compartments=compartments, capabilities=capabilities
        )
    if document.get("document_version") not in READABLE_VERSIONS:
        raise ValueError(f"unsupported state document version {document.get('document_version')}")
    for name, saved in document["compartments"].items():
        if name in compartments:
            compartments[name] = replace(
                compartments[name],
                size=saved["size"],
                pulse_ms=int(saved["pulse_ms"]),
                epoch=int(saved["epoch"]),
                attention=saved.get("attention"),
                restored=(
                    saved.get("opened_by"),
                    saved.get("opened_purpose"),
                    saved.get("occupancy", "unknown"),
                ),
            )
    grants = [Grant.model_validate(g) for g in document["grants"]]
    retired = [Grant.model_validate(g) for g in document["retired"]]
    uses = {
        gid: GrantUse(pulses=int(p), first_pulse_wall_ms=int(t), is_consumed=bool(c))
        for gid, (p, t, c) in document["uses"].items()
    }
    window = document["window"]
    return ControllerState(
        identity=identity,
        compartments=compartments,
        capabilities=capabilities,
        cfg_version=int(document["cfg_version"]),
        cfg_issued_at_ms=int(document["cfg_issued_at_ms"]),
        grants={g.code_hash: g for g in grants},
        retired={g.code_hash: g for g in retired},
        uses=uses,
        window=ReplayWindow(highest=int(window["highest"]), seen=frozenset(window["seen"])),
        time=TimeState(floor_wall_ms=int(document["time_floor_ms"])),
        stale_after_ms=int(document.get("stale_after_ms", 3_600_000)),
        raised=frozenset(document.get("raised", ())),
        throttle=_throttle(document.get("throttle")),
    )


def _throttle(saved: dict[str, Any] | None) -> Throttle:
    if not saved:
        return Throttle()
    failures, last_ms = saved["bank"]
    return Throttle(
        bank=Backoff(int(failures), int(last_ms)),
        channels={str(name): Backoff(int(f), int(t)) for name, (f, t) in saved["channels"].items()},
        guesses=tuple((int(t), int(n)) for t, n in saved["guesses"]),
    )
