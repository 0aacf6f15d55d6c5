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

from hardware.capabilities import GPIO_CAPABILITIES, Capabilities
from linli.contract.models import AlarmReason, Door, Grant, GrantPurpose, Latch, Occupancy, Size
from locker_controller.core.throttle import Throttle

PULSE_RETRY_WINDOW_MS = 5 * 60 * 1000
"""A code may pulse its latch a second time within this window (a resident who was too slow)."""
MAX_PULSES_PER_GRANT = 2
COOLDOWN_MS = 2_000
"""No compartment pulses again within this many milliseconds."""
DOOR_OPEN_AFTER_PULSE_MS = 60_000
"""A door that opens this long after a pulse still counts as opened by it; a pulse not followed
by an opening within it is *unanswered*."""
MAX_PULSE_MS = 2_000
"""Absolute bound on energized time: an output still on this long after its pulse began is forced
off and alarmed. Configured pulses are at most 1500 ms (the contract), so the board's or adapter's
own timer always ends a healthy pulse first."""
ENERGIZED_MS_PER_MINUTE = 6_000
"""Cap on one latch's energized time in any 60 s (coil heating; a stuck or attacked input)."""
DOOR_DEBOUNCE_MS = 50
"""A door reading counts once it has held this long (reed switches bounce; solenoid inrush
couples spikes into long sensor wires)."""
ITEM_DEBOUNCE_MS = 300
"""An item reading counts once it has held this long (a hand passing an infrared beam)."""
AJAR_AFTER_MS = 120_000
"""A door open longer than this raises ``door_ajar``."""
JAMMED_AFTER_UNANSWERED = 2
"""On a board without latch feedback, this many unanswered pulses in a row mean a jammed latch
(one unanswered pulse is usually a resident who did not pull in time)."""
UNREACHABLE_AFTER_FAILURES = 3
"""Consecutive failed bus readings after which every sensed axis becomes unknown."""
REPLAY_WINDOW = 64
SYNCED_FOR_MS = 60 * 60 * 1000
HOLDOVER_FOR_MS = 7 * 24 * 60 * 60 * 1000
FLOOR_EVERY_MS = 10 * 60 * 1000
"""While time is trusted, the persisted floor is raised to the trusted time this often."""


# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compartment:
    """One compartment: the three axes, the maintenance flag, its content epoch, and what the
    core remembers to judge the next reading (pulse in progress, pending authorization, debounce).
    """

    name: str
    size: Size = "M"
    pulse_ms: int = 500
    latch: Latch = "unknown"
    door: Door = "unknown"
    occupancy: Occupancy = "unknown"
    attention: AlarmReason | None = None
    """Why the compartment is out of use until a maintainer clears it (None: in use)."""
    epoch: int = 0
    last_pulse_mono_ms: int | None = None
    opened_by: str | None = None
    """Grant or command id whose pulse this compartment is waiting on, or whose door is open."""
    opened_purpose: GrantPurpose | None = None
    energized_since_mono_ms: int | None = None
    """When the current pulse began; None when the core believes the output is off."""
    energized_log: tuple[tuple[int, int], ...] = ()
    """(start, duration) of the pulses of the last minute, for :data:`ENERGIZED_MS_PER_MINUTE`."""
    unanswered_pulses: int = 0
    door_since_mono_ms: int | None = None
    """When the door was last seen to open (for ``door_ajar``)."""
    is_ajar: bool = False
    door_raw: bool | None = None
    """Latest undebounced door reading (True = open), and since when it has held."""
    door_raw_mono_ms: int = 0
    item_raw: bool | None = None
    item_raw_mono_ms: int = 0
    restored: tuple[str | None, GrantPurpose | None, Occupancy] | None = None
    """From before a restart (persisted): the authorization a pulse was waiting on, its purpose,
    and the last occupancy — compared once with the first reading after start-up, so a pickup
    or drop-off done while the controller was down is neither lost nor opened again."""

    @property
    def needs_attention(self) -> bool:
        """Out of use until a maintainer clears it."""
        return self.attention is not None


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
    capabilities: Capabilities = GPIO_CAPABILITIES
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
    bus_failures: int = 0
    """Consecutive failed bus readings."""
    open_all: tuple[str, ...] = ()
    """Compartments a maintenance "open all" still has to pulse, one latch at a time."""
    open_all_by: str | None = None
    stale_after_ms: int = 3_600_000
    """The configured bound on the grant list's age (``ConfigBody.stale_after_s``)."""
    throttle: Throttle = field(default_factory=Throttle)
    """Back-off and guess budget of code entries (docs/security.md)."""
    raised: frozenset[AlarmReason] = frozenset()
    """Bank-wide alarms raised and not yet cleared (grant list stale, guessing)."""


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
class CompartmentReading:
    """One compartment in a lock-bus reading; None where the board cannot sense it."""

    door_open: bool | None = None
    latch_released: bool | None = None
    item_present: bool | None = None
    is_energized: bool | None = None


@dataclass(frozen=True)
class BusRead:
    """A reading of every compartment of the lock bus (polled, or asked for by :class:`ReadBus`)."""

    compartments: Mapping[str, CompartmentReading]


@dataclass(frozen=True)
class BusReadFailed:
    """The lock bus did not answer a reading (timeout, unplugged adapter, corrupt frames)."""

    reason: str


@dataclass(frozen=True)
class UnlockUnanswered:
    """An unlock was sent but the board never confirmed it (it may or may not have fired)."""

    compartment: str


@dataclass(frozen=True)
class Ticked:
    """A timer tick (the daemon also wakes at :func:`~locker_controller.core.decide.next_deadline`)."""


Input = (
    CodeEntered
    | CommandArrived
    | ConfigArrived
    | DoorSensed
    | OccupancySensed
    | PulseEnded
    | BusRead
    | BusReadFailed
    | UnlockUnanswered
    | Ticked
)


# --- commands (outputs) ---------------------------------------------------------------------


@dataclass(frozen=True)
class PulseLatch:
    """Energize one latch for ``pulse_ms`` (bounded by :data:`MAX_PULSE_MS`), then switch it off.

    ``authorized_by`` names the one authorization this pulse spends (a code entry of a grant, or
    a command id), so a test can prove no two pulses share one.
    """

    compartment: str
    pulse_ms: int
    authorized_by: str = ""


@dataclass(frozen=True)
class SwitchAllOff:
    """Switch every latch output off now (an output found on past its bound)."""


@dataclass(frozen=True)
class ReadBus:
    """Read every compartment now and deliver a :class:`BusRead` (or :class:`BusReadFailed`)."""


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


Output = (
    PulseLatch
    | SwitchAllOff
    | ReadBus
    | RecordEvent
    | ReplyToCommand
    | ReportConfig
    | PublishState
    | ShowMessage
)
