"""One versioned pydantic model per message of the device–cloud contract (docs/contract.md).

Models are frozen and forbid extra fields. Times are integer milliseconds since the Unix epoch
(``*_ms``); ``mono_ms`` is a device's monotonic clock within one boot. Signed bodies
(:class:`CommandBody`, :class:`ConfigBody`) travel inside :class:`SignedEnvelope`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from linli.ids import COMPARTMENT_PATTERN, DEVICE_ID_PATTERN

CONTRACT_VERSION: Literal[1] = 1

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
CompartmentName = Annotated[str, StringConstraints(pattern=COMPARTMENT_PATTERN)]
ShortId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
BootId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{12}$")]
Reason = Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z_]+$")]
Millis = Annotated[int, Field(ge=0, le=10**14)]
HexHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

Latch = Literal["locked", "unlocked", "unknown"]
Door = Literal["closed", "open", "unknown"]
Occupancy = Literal["present", "absent", "unknown"]
Trust = Literal["synced", "holdover", "untrusted"]
Role = Literal["locker", "terminal"]
GrantPurpose = Literal["dropoff", "pickup", "return", "maintenance"]
Size = Literal["S", "M", "L"]

EventType = Literal[
    "booted",
    "code_accepted",
    "code_refused",
    "latch_pulsed",
    "door_opened",
    "door_closed",
    "occupancy_changed",
    "grant_consumed",
    "unlock_unanswered",
    "alarm",
    "alarm_cleared",
]
CommandName = Literal["open", "open_all", "clear_attention", "publish_state"]
LockWord = Literal["locked", "unlocking", "unlocked", "open", "jammed", "unknown"]
"""Home Assistant's lock vocabulary, derived from the three axes for display only."""
AlarmReason = Literal[
    "door_forced",
    "door_ajar",
    "jammed",
    "output_forced_off",
    "latch_fault",
    "bus_unreachable",
    "dropoff_empty",
    "item_left_behind",
    "occupancy_unexplained",
    "impossible_transition",
    "grant_list_stale",
    "code_guessing",
    "guess_budget_spent",
]
"""Reasons of ``alarm`` events (docs/contract.md, "Alarms")."""


class Message(BaseModel):
    """Base of every message: contract version and the sending or target device."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1] = CONTRACT_VERSION
    device_id: DeviceId


class Status(Message):
    """``status`` (retained): birth ``online``, clean shutdown ``offline``, last will ``lost``."""

    state: Literal["online", "offline", "lost"]
    role: Role
    boot_id: BootId
    version: Annotated[str, StringConstraints(max_length=32)]
    keepalive_s: Annotated[int, Field(ge=1, le=3600)]
    """The device's MQTT keepalive; it also sends telemetry at least every ``keepalive_s / 2``,
    so the cloud can call it lost after 1.5 × keepalive of silence without waiting for the
    broker's last will (Mosquitto 2.0.11 checks keepalives only every ~6 s)."""


class CompartmentState(BaseModel):
    """The three axes of one compartment, plus the maintenance flag and content epoch."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    latch: Latch
    door: Door
    occupancy: Occupancy
    needs_attention: bool = False
    epoch: Annotated[int, Field(ge=0)] = 0
    lock: LockWord = "unknown"
    """Derived for display (Home Assistant's words); decisions use the axes."""
    attention: Reason | None = None
    """Why ``needs_attention`` is set (an alarm reason), until a maintainer clears it."""


class State(Message):
    """``state`` (retained): every compartment of a locker bank."""

    boot_id: BootId
    compartments: dict[CompartmentName, CompartmentState]
    wall_ms: Millis


class Event(Message):
    """``evt``: one thing that happened, in order, identified by ``(boot_id, seq)``.

    ``seq`` starts at 1 for every boot. ``mono_ms`` orders events within a boot even when the
    wall clock is wrong; ``trust`` says how far the device trusted ``wall_ms`` at the time.
    """

    boot_id: BootId
    seq: Annotated[int, Field(ge=1)]
    type: EventType
    mono_ms: Annotated[int, Field(ge=0)]
    wall_ms: Millis
    trust: Trust
    compartment: CompartmentName | None = None
    grant_id: ShortId | None = None
    cmd_id: ShortId | None = None
    reason: Reason | None = None
    data: dict[Annotated[str, StringConstraints(max_length=32)], str | int | bool | None] = Field(
        default_factory=dict, max_length=16
    )


class Ack(Message):
    """``ack`` (cloud→device): every event of ``boot_id`` up to ``seq`` is stored by the cloud."""

    boot_id: BootId
    seq: Annotated[int, Field(ge=0)]


class Telemetry(Message):
    """``tele`` (QoS0): health figures."""

    boot_id: BootId
    uptime_s: Annotated[int, Field(ge=0)]
    outbox_depth: Annotated[int, Field(ge=0)]
    grant_list_age_s: int | None = None
    cfg_version: Annotated[int, Field(ge=0)] = 0
    refused_inputs: Annotated[int, Field(ge=0)] = 0
    clock_trust: Trust | None = None
    guarded: bool | None = None
    """The guess budget is spent: codes are checked only with the phone's last four digits."""
    cpu_temp_c: float | None = None
    throttled: int | None = None
    disk_free_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    """Free space of the file system holding the device's data directory (its state document and
    outbox), in percent of its size; None when it cannot be read. The cloud alerts below 10 %
    (red below 3 %): a full card loses events."""
    reported_through_ms: Millis | None = None
    """Every event this device recorded before this (trusted) wall time is acknowledged by the
    cloud: the wall time of the oldest unacknowledged event, or the current trusted time when none
    is waiting. None while the device's clock is untrusted (the cloud cannot use it then), and
    while an event stamped with an untrusted wall time awaits its acknowledgement."""


class CommandResult(Message):
    """``res``: what became of a command, by command id (``cmd_id`` may be absent if unreadable)."""

    cmd_id: ShortId | None
    ok: bool
    reason: Reason | None = None


class ConfigReport(Message):
    """``cfg/reported`` (retained): the configuration the device applied, or why it refused one."""

    status: Literal["applied", "refused"]
    applied_version: Annotated[int, Field(ge=0)]
    refused_version: int | None = None
    reason: Reason | None = None
    grants: Annotated[int, Field(ge=0)] = 0
    grant_list_age_s: Annotated[int, Field(ge=0)] | None = None
    """Seconds since the cloud last signed the applied list (its ``issued_at_ms``)."""


# --- signed bodies --------------------------------------------------------------------------


class CommandBody(Message):
    """The signed body of a ``cmd``.

    ``seq`` is a per-device counter the cloud increments for every command; devices accept each
    ``seq`` once within a sliding window (docs/decisions/0011-delivery-and-acks.md).
    """

    kind: Literal["cmd"] = "cmd"
    id: ShortId
    seq: Annotated[int, Field(ge=1)]
    name: CommandName
    compartment: CompartmentName | None = None
    grant_id: ShortId | None = None
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None
    issued_at_ms: Millis
    expires_at_ms: Millis


class Grant(BaseModel):
    """One grant in a controller's list: who may open what, when, and for which content."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    grant_id: ShortId
    compartment: CompartmentName
    purpose: GrantPurpose
    valid_from_ms: Millis
    valid_until_ms: Millis
    code_hash: HexHash
    epoch: Annotated[int, Field(ge=0)]
    guard_hash: HexHash | None = None
    """The keyed hash of the code followed by the last four digits of the phone it was sent to
    (:func:`linli.codes.guard_hash`), checked instead of the code alone while the bank is guarded
    against guessing (docs/security.md). None when the grant's holder has no phone on file."""


class CompartmentPolicy(BaseModel):
    """What the cloud says about one compartment: its size and its latch's pulse bound."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    size: Size
    pulse_ms: Annotated[int, Field(ge=50, le=1500)] = 500
    """The controller forces any output off at 2000 ms whatever happens (``MAX_PULSE_MS``);
    configured pulses stay below it so the board's own timer always ends them first."""


class ConfigBody(Message):
    """The signed body of ``cfg/desired``: versioned compartment policy, grants and revocations."""

    kind: Literal["cfg"] = "cfg"
    version: Annotated[int, Field(ge=1)]
    issued_at_ms: Millis
    compartments: dict[CompartmentName, CompartmentPolicy]
    grants: list[Grant] = Field(max_length=1000)
    revoked: list[ShortId] = Field(default_factory=list, max_length=1000)
    stale_after_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 3600
    """The policy bound on the list's age: past it the controller raises ``grant_list_stale``
    (unexpired grants keep working). The cloud re-signs the list every few minutes."""


class SignedEnvelope(BaseModel):
    """A signed payload: ``sig`` is Ed25519 over the canonical JSON of ``body``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1] = CONTRACT_VERSION
    key_id: Annotated[str, StringConstraints(max_length=64)]
    body: dict[str, object]
    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{86}$")]
