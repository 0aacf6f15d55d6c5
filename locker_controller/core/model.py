"""The controller's state and the events and commands of its core, as frozen dataclasses.

Inputs (events, past tense) are what adapters enqueue: a code entered at a keypad, a signed command
or configuration from MQTT, a door or occupancy sensor edge, the end of a latch pulse, a timer
tick. Outputs (commands, imperative) are what adapters carry out, in order: persist first, then
record events in the outbox, then move a latch. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from linli.contract.models import Door, Grant, GrantPurpose, Latch, Occupancy, Size

PULSE_RETRY_WINDOW_MS = 5 * 60 * 1000
"""A code may pulse its latch a second time within this window (a resident who was too slow)."""
MAX_PULSES_PER_GRANT = 2
COOLDOWN_MS = 2_000
"""No compartment pulses again within this many milliseconds."""
DOOR_OPEN_AFTER_PULSE_MS = 60_000
"""A door that opens this long after a pulse still counts as opened by it."""
MAX_PULSE_MS = 2_000
"""Absolute bound on one pulse, whatever a configuration says."""
REPLAY_WINDOW = 64
SYNCED_FOR_MS = 60 * 60 * 1000
HOLDOVER_FOR_MS = 7 * 24 * 60 * 60 * 1000


# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compartment:
    """One compartment: the three axes, the maintenance flag and its content epoch."""

    name: str
    size: Size = "M"
    pulse_ms: int = 500
    latch: Latch = "unknown"
    door: Door = "unknown"
    occupancy: Occupancy = "unknown"
    needs_attention: bool = False
    epoch: int = 0
    last_pulse_mono_ms: int | None = None
    opened_by: str | None = None
    """Grant or command id whose pulse this compartment is waiting on, or whose door is open."""
    opened_purpose: GrantPurpose | None = None


@dataclass(frozen=True)
class GrantUse:
    """How often a grant pulsed its latch, and whether a door opening has consumed it."""

    pulses: int = 0
    first_pulse_wall_ms: int = 0
    is_consumed: bool = False


@dataclass(frozen=True)
class ReplayWindow:
    """Anti-replay window over per-device command sequence numbers (IPsec style).

    A sequence number is accepted once, and only if it is within ``size`` of the highest accepted.

    Example:
        >>> w = ReplayWindow().accept(5)
        >>> w.check(5), w.check(4), ReplayWindow(highest=100).check(30)
        ('duplicate', None, 'outside_window')
    """

    highest: int = 0
    seen: frozenset[int] = frozenset()
    size: int = REPLAY_WINDOW

    def check(self, seq: int) -> str | None:
        """Return None if ``seq`` may be accepted, else the reason it may not."""
        if seq in self.seen:
            return "duplicate"
        if seq <= self.highest - self.size:
            return "outside_window"
        return None

    def accept(self, seq: int) -> ReplayWindow:
        """Return the window after accepting ``seq`` (call :meth:`check` first)."""
        highest = max(self.highest, seq)
        seen = frozenset(s for s in (*self.seen, seq) if s > highest - self.size)
        return ReplayWindow(highest=highest, seen=seen, size=self.size)


@dataclass(frozen=True)
class TimeState:
    """What the controller knows of the true time.

    ``offset_ms`` maps this boot's monotonic clock to signed cloud time; ``floor_wall_ms`` is the
    latest trusted time ever seen (persisted), below which the controller's time never goes.
    """

    floor_wall_ms: int = 0
    offset_ms: int | None = None
    synced_at_mono_ms: int | None = None


@dataclass(frozen=True)
class Identity:
    """Fixed at start-up: who this controller is and which keys it trusts."""

    device_id: str
    cloud_keys: Mapping[str, bytes]
    code_hash_key: bytes = field(repr=False)


@dataclass(frozen=True)
class ControllerState:
    """Everything the core decides from. Durable parts are persisted before any latch moves."""

    identity: Identity
    compartments: Mapping[str, Compartment]
    cfg_version: int = 0
    cfg_issued_at_ms: int = 0
    grants: Mapping[str, Grant] = field(default_factory=dict)
    """Grants by code hash."""
    uses: Mapping[str, GrantUse] = field(default_factory=dict)
    retired: Mapping[str, Grant] = field(default_factory=dict)
    """Consumed grants the cloud has since dropped from the list, by code hash, kept until they
    expire so a resident re-entering a used code is told it was used (not that it is wrong)."""
    window: ReplayWindow = ReplayWindow()
    time: TimeState = TimeState()
    refused_inputs: int = 0


# --- events (inputs) ------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeEntered:
    """A resident entered a code on an input channel (keypad, kiosk, local command)."""

    channel: str
    code: str = field(repr=False)


@dataclass(frozen=True)
class CommandArrived:
    """A payload arrived on ``cmd``."""

    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class ConfigArrived:
    """A payload arrived on ``cfg/desired``."""

    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class DoorSensed:
    """The door sensor of a compartment changed."""

    compartment: str
    is_open: bool


@dataclass(frozen=True)
class OccupancySensed:
    """The item sensor of a compartment changed (or a resident answered at the kiosk)."""

    compartment: str
    is_present: bool


@dataclass(frozen=True)
class PulseEnded:
    """A latch output was switched off after its pulse."""

    compartment: str


@dataclass(frozen=True)
class Ticked:
    """A timer tick."""


Input = (
    CodeEntered
    | CommandArrived
    | ConfigArrived
    | DoorSensed
    | OccupancySensed
    | PulseEnded
    | Ticked
)


# --- commands (outputs) ---------------------------------------------------------------------


@dataclass(frozen=True)
class PulseLatch:
    """Energize one latch for ``pulse_ms`` (bounded by :data:`MAX_PULSE_MS`), then switch it off."""

    compartment: str
    pulse_ms: int


@dataclass(frozen=True)
class RecordEvent:
    """Append an event to the outbox (the adapter stamps boot id, seq and times)."""

    type: str
    compartment: str | None = None
    grant_id: str | None = None
    cmd_id: str | None = None
    reason: str | None = None
    data: Mapping[str, str | int | bool | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplyToCommand:
    """Publish a command's result on ``res``."""

    cmd_id: str | None
    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class ReportConfig:
    """Publish (retained) what configuration is applied, or why one was refused."""

    status: Literal["applied", "refused"]
    refused_version: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PublishState:
    """Publish (retained) every compartment's state."""


@dataclass(frozen=True)
class ShowMessage:
    """Tell the resident at an input channel what happened (a catalog key and its values)."""

    channel: str
    key: str
    values: Mapping[str, str] = field(default_factory=dict)


Output = PulseLatch | RecordEvent | ReplyToCommand | ReportConfig | PublishState | ShowMessage
