"""Time and skills as points: a published, versioned rule, and the lifecycle of a contribution.

From the time-bank practice (时间银行): a resident who gives hours (keeping an elderly neighbour
company, volunteering at the station) or uses a skill (a haircut, a repair, tutoring) earns
points once both parties have confirmed it and a social worker has approved it (points.md,
"Valuation": "hours × weight for intensity and special time slots; skills weighted by scarcity
and certification"). This module is pure: no I/O, clock or randomness, so a stored contribution
can be recomputed from its stored inputs and the policy text of its version, and must come out
equal.

The rule (every parameter is policy, see ``cloud_api/policy/contributions.toml``)::

    time:   raw = hours × intensity_weight × slot_weight × time.base_rate
    skill:  raw = hours × skill.base_rate × scarcity_s × certification (1 when not certified)
    points = round_to(step, clamp(min_points, max_points, raw))        (per kind)

- ``hours`` is bounded (policy ``[hours]``, 0.25–12 h per entry) and counted in quarter hours:
  2.3 h is refused, not rounded, so the resident's own record and the points agree.
- ``round_to`` rounds half up, as the valuation rules do; the policy refuses ``min_points`` /
  ``max_points`` that are not multiples of ``step``, so rounding never leaves the bounds.
- An unknown intensity, time slot or skill is a :class:`ContributionError` naming the field,
  never a silent default.

The lifecycle (:func:`next_status`)::

    proposed ──both parties confirmed──▶ confirmed ──approve──▶ approved (credited once)
    proposed | confirmed ──reject──▶ rejected          proposed | confirmed ──withdraw──▶ withdrawn

Example (the default policy is package data of ``cloud_api``)::

    text = resources.files("cloud_api").joinpath("policy/contributions.toml").read_text()
    valuation = value_time(load_policy(text), hours=2.5, intensity="heavy", slot="evening")
    valuation.points, [(f.name, f.value) for f in valuation.factors]
    # 45, [('hours', 2.5), ('intensity', 1.5), ('slot', 1.2), ('base_rate', 10.0), ...]
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from linli import policy_table as pt
from linli.policy_table import PolicyError

__all__ = [
    "ACTIONS",
    "KINDS",
    "LEDGER_KINDS",
    "MULTIPLIER_FACTORS",
    "STATUSES",
    "Choice",
    "ContributionError",
    "Factor",
    "HoursRule",
    "Inputs",
    "InvalidTransition",
    "Policy",
    "PolicyError",
    "SkillInputs",
    "SkillRule",
    "TimeInputs",
    "TimeRule",
    "Valuation",
    "check_hours",
    "inputs_from_json",
    "load_policy",
    "next_status",
    "recompute",
    "value",
    "value_skill",
    "value_time",
]

Kind = Literal["time", "skill"]
KINDS: tuple[Kind, ...] = ("time", "skill")
LEDGER_KINDS: Mapping[str, str] = MappingProxyType({"time": "time_credit", "skill": "skill_credit"})
"""The ledger kind a contribution of each kind is credited with (``cloud_api.core.ledger``)."""

STATUSES: tuple[str, ...] = ("proposed", "confirmed", "approved", "rejected", "withdrawn")
ACTIONS: tuple[str, ...] = ("both_confirmed", "approve", "reject", "withdraw")
_TRANSITIONS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("proposed", "both_confirmed"): "confirmed",
        ("confirmed", "approve"): "approved",
        ("proposed", "reject"): "rejected",
        ("confirmed", "reject"): "rejected",
        ("proposed", "withdraw"): "withdrawn",
        ("confirmed", "withdraw"): "withdrawn",
    }
)

MULTIPLIER_FACTORS: frozenset[str] = frozenset(
    {"hours", "intensity", "slot", "base_rate", "scarcity", "certification"}
)
"""The factors whose product is the value before clamp and rounding."""

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_HOURS_PER_ENTRY = 24.0
"""No policy may allow more than a day in one entry."""


class ContributionError(ValueError):
    """Inputs the rule cannot value: hours out of bounds or not in quarter hours, an unknown
    intensity, slot or skill. ``field`` names the input at fault, ``code`` is a stable string.

    Example:
        >>> ContributionError("unknown skill 'juggling'", field="skill", code="unknown_skill").code
        'unknown_skill'
    """

    def __init__(self, message: str, *, field: str, code: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code


class InvalidTransition(ValueError):
    """An action that is not valid in a contribution's status (HTTP 409)."""

    code = "invalid_transition"


def next_status(status: str, action: str) -> str:
    """The status a contribution moves to by ``action``.

    Raises:
        InvalidTransition: the action is not valid in ``status`` (e.g. approving before both
            parties confirmed, or after a rejection).

    Example:
        >>> next_status("confirmed", "approve")
        'approved'
        >>> next_status("rejected", "approve")
        Traceback (most recent call last):
        cloud_api.core.contributions.InvalidTransition: a contribution that is rejected cannot be approved
    """
    found = _TRANSITIONS.get((status, action))
    if found is None:
        wording = {
            "both_confirmed": "confirmed",
            "approve": "approved",
            "reject": "rejected",
            "withdraw": "withdrawn",
        }.get(action, action)
        raise InvalidTransition(f"a contribution that is {status} cannot be {wording}")
    return found


# --- policy --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """One named choice of the rule (an intensity, a time slot, a skill) and its weight."""

    name: str
    name_zh: str
    name_en: str
    weight: float


@dataclass(frozen=True)
class HoursRule:
    """Bounds of one entry's hours and their step (quarter hours)."""

    min_hours: float
    max_hours: float
    step_hours: float


@dataclass(frozen=True)
class TimeRule:
    """Time given: ``hours × intensity × slot × base_rate``, bounded to the points range."""

    base_rate: float
    min_points: int
    max_points: int
    intensities: Mapping[str, Choice]
    slots: Mapping[str, Choice]


@dataclass(frozen=True)
class SkillRule:
    """A skill used: ``hours × base_rate × scarcity × certification``, bounded."""

    base_rate: float
    certification: float
    min_points: int
    max_points: int
    skills: Mapping[str, Choice]


@dataclass(frozen=True)
class Policy:
    """A versioned contributions rule (parsed from TOML by :func:`load_policy`)."""

    version: str
    step: int
    hours: HoursRule
    time: TimeRule
    skill: SkillRule


# --- inputs and the answer -----------------------------------------------------------------------


@dataclass(frozen=True)
class TimeInputs:
    """Hours given, how demanding, and when."""

    hours: float
    intensity: str
    slot: str
    kind: Literal["time"] = "time"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hours": self.hours,
            "intensity": self.intensity,
            "slot": self.slot,
        }


@dataclass(frozen=True)
class SkillInputs:
    """Hours of a skill, and whether a certificate for it was shown."""

    hours: float
    skill: str
    is_certified: bool
    kind: Literal["skill"] = "skill"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hours": self.hours,
            "skill": self.skill,
            "certified": self.is_certified,
        }


Inputs = TimeInputs | SkillInputs


def inputs_from_json(data: Mapping[str, Any]) -> Inputs:
    """Stored inputs (``to_json``) back as :class:`TimeInputs` or :class:`SkillInputs`."""
    if data["kind"] == "time":
        return TimeInputs(float(data["hours"]), str(data["intensity"]), str(data["slot"]))
    if data["kind"] == "skill":
        return SkillInputs(float(data["hours"]), str(data["skill"]), bool(data["certified"]))
    raise ValueError(f"unknown contribution kind {data['kind']!r}")


@dataclass(frozen=True)
class Factor:
    """One step of the rule: its name, the value it contributed, and why."""

    name: str
    value: float
    reason: str


@dataclass(frozen=True)
class Valuation:
    """Points for a contribution and how they came about.

    Attributes:
        points: The points the provider is credited with once approved.
        factors: Every factor in the order applied: hours, then intensity, slot, base_rate
            (time) or base_rate, scarcity, certification (skill), then clamp and rounding.
        policy_version: The policy's version, for recomputation.
        inputs: The inputs valued, for recomputation.
    """

    points: int
    factors: tuple[Factor, ...]
    policy_version: str
    inputs: Inputs

    def to_json(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "factors": [
                {"name": f.name, "value": f.value, "reason": f.reason} for f in self.factors
            ],
            "policy_version": self.policy_version,
            "inputs": self.inputs.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Valuation:
        return cls(
            points=int(data["points"]),
            factors=tuple(
                Factor(str(f["name"]), float(f["value"]), str(f["reason"])) for f in data["factors"]
            ),
            policy_version=str(data["policy_version"]),
            inputs=inputs_from_json(data["inputs"]),
        )


# --- the rule ------------------------------------------------------------------------------------


def check_hours(policy: Policy, hours: object) -> float:
    """``hours`` as a float if the policy accepts it for one entry.

    Raises:
        ContributionError: not a finite number, out of the policy's bounds, or not a whole
            number of steps (quarter hours): ``code`` ``invalid_hours``, ``field`` ``hours``.

    Example:
        >>> check_hours(load_policy(EXAMPLE_POLICY), 1.75)
        1.75
    """
    rule = policy.hours
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not math.isfinite(hours):
        raise ContributionError(
            f"hours must be a number, not {hours!r}", field="hours", code="invalid_hours"
        )
    if not rule.min_hours <= hours <= rule.max_hours:
        raise ContributionError(
            f"hours must be between {rule.min_hours:g} and {rule.max_hours:g} per entry,"
            f" not {hours:g} (record a longer day as several entries)",
            field="hours",
            code="invalid_hours",
        )
    steps = hours / rule.step_hours
    if abs(steps - round(steps)) > 1e-9:
        raise ContributionError(
            f"hours are counted in steps of {rule.step_hours:g} h: {hours:g} is not",
            field="hours",
            code="invalid_hours",
        )
    return float(hours)


def _choice(table: Mapping[str, Choice], name: str, what: str, field: str) -> Choice:
    found = table.get(name)
    if found is None:
        raise ContributionError(
            f"unknown {what} {name!r}; the policy knows {', '.join(sorted(table))}",
            field=field,
            code=f"unknown_{field}",
        )
    return found


def _bounded(policy: Policy, inputs: Inputs, factors: list[Factor], lo: int, hi: int) -> Valuation:
    raw = math.prod(f.value for f in factors)
    clamped = min(float(hi), max(float(lo), raw))
    factors.append(
        Factor(
            "clamp",
            clamped,
            f"{raw:.2f} within {lo}–{hi}"
            if clamped == raw
            else f"{raw:.2f} clamped to {clamped:g}",
        )
    )
    points = pt.round_half_up(clamped, policy.step)
    factors.append(Factor("rounding", float(points), f"{clamped:.2f} to a step of {policy.step}"))
    return Valuation(points, tuple(factors), policy.version, inputs)


def value_time(policy: Policy, *, hours: float, intensity: str, slot: str) -> Valuation:
    """Points for ``hours`` of help at ``intensity`` in time ``slot`` (module docstring).

    Raises:
        ContributionError: hours out of bounds or not in quarter hours; unknown intensity or
            slot (``field`` ``intensity`` / ``slot``).
    """
    checked = check_hours(policy, hours)
    rule = policy.time
    how = _choice(rule.intensities, intensity, "intensity", "intensity")
    when = _choice(rule.slots, slot, "time slot", "slot")
    factors = [
        Factor("hours", checked, f"{checked:g} h"),
        Factor("intensity", how.weight, f"{how.name}: {how.name_en}"),
        Factor("slot", when.weight, f"{when.name}: {when.name_en}"),
        Factor("base_rate", rule.base_rate, f"{rule.base_rate:g} points per hour of help"),
    ]
    inputs = TimeInputs(checked, intensity, slot)
    return _bounded(policy, inputs, factors, rule.min_points, rule.max_points)


def value_skill(policy: Policy, *, hours: float, skill: str, is_certified: bool) -> Valuation:
    """Points for ``hours`` of ``skill``, weighted by its scarcity and a certificate shown.

    Raises:
        ContributionError: hours out of bounds or not in quarter hours; unknown skill.
    """
    checked = check_hours(policy, hours)
    rule = policy.skill
    what = _choice(rule.skills, skill, "skill", "skill")
    certification = rule.certification if is_certified else 1.0
    factors = [
        Factor("hours", checked, f"{checked:g} h"),
        Factor("base_rate", rule.base_rate, f"{rule.base_rate:g} points per hour of a skill"),
        Factor("scarcity", what.weight, f"{what.name}: {what.name_en}"),
        Factor(
            "certification",
            certification,
            "certificate shown" if is_certified else "no certificate: not applied",
        ),
    ]
    inputs = SkillInputs(checked, skill, is_certified)
    return _bounded(policy, inputs, factors, rule.min_points, rule.max_points)


def value(policy: Policy, inputs: Inputs) -> Valuation:
    """:func:`value_time` or :func:`value_skill`, by the kind of ``inputs``."""
    if isinstance(inputs, TimeInputs):
        return value_time(policy, hours=inputs.hours, intensity=inputs.intensity, slot=inputs.slot)
    return value_skill(
        policy, hours=inputs.hours, skill=inputs.skill, is_certified=inputs.is_certified
    )


def recompute(policy_text: str, stored_inputs: Mapping[str, Any]) -> Valuation:
    """Recompute a stored contribution from its policy version's text and its stored inputs."""
    return value(load_policy(policy_text), inputs_from_json(stored_inputs))


# --- policy parsing ------------------------------------------------------------------------------


def _choices(table: Mapping[str, Any], key: str, where: str, weight: str) -> Mapping[str, Choice]:
    found = pt.table(table, key, where)
    if not found:
        raise PolicyError(f"{where}{key}: must name at least one choice")
    choices = {}
    for name, entry in found.items():
        at = f"{where}{key}.{name}."
        if not _KEY.match(name):
            raise PolicyError(f"{where}{key}.{name}: a name is lower case letters, digits and _")
        if not isinstance(entry, dict):
            raise PolicyError(f"{where}{key}.{name}: must be a table")
        pt.known(entry, at, {"name_zh", "name_en", weight})
        choices[name] = Choice(
            name,
            pt.text(entry, "name_zh", at),
            pt.text(entry, "name_en", at),
            pt.positive(entry, weight, at),
        )
    return MappingProxyType(choices)


def _hours(data: Mapping[str, Any]) -> HoursRule:
    table = pt.table(data, "hours", "")
    pt.known(table, "hours.", {"min", "max", "step"})
    lo, hi = pt.positive(table, "min", "hours."), pt.positive(table, "max", "hours.")
    step = pt.positive(table, "step", "hours.")
    if lo > hi:
        raise PolicyError(f"hours.min: {lo:g} is greater than hours.max {hi:g}")
    if hi > MAX_HOURS_PER_ENTRY:
        raise PolicyError(f"hours.max: at most {MAX_HOURS_PER_ENTRY:g} h in one entry")
    for key, number in (("min", lo), ("max", hi)):
        steps = number / step
        if abs(steps - round(steps)) > 1e-9:
            raise PolicyError(f"hours.{key}: {number:g} is not a multiple of hours.step {step:g}")
    return HoursRule(lo, hi, step)


def load_policy(text: str) -> Policy:
    """Parse a policy from TOML text; raise :class:`PolicyError` naming the field at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}") from exc
    pt.known(data, "", {"version", "step", "hours", "time", "skill"})
    version = pt.text(data, "version", "")
    step = pt.integer(data, "step", "")
    if step < 1:
        raise PolicyError("step: must be ≥ 1")
    hours = _hours(data)

    time = pt.table(data, "time", "")
    pt.known(time, "time.", {"base_rate", "min_points", "max_points", "intensity", "slots"})
    time_lo, time_hi = pt.points_bounds(time, "time.", step)
    time_rule = TimeRule(
        base_rate=pt.positive(time, "base_rate", "time."),
        min_points=time_lo,
        max_points=time_hi,
        intensities=_choices(time, "intensity", "time.", "weight"),
        slots=_choices(time, "slots", "time.", "weight"),
    )

    skill = pt.table(data, "skill", "")
    pt.known(skill, "skill.", {"base_rate", "certification", "min_points", "max_points", "skills"})
    skill_lo, skill_hi = pt.points_bounds(skill, "skill.", step)
    certification = pt.number(skill, "certification", "skill.")
    if certification < 1:
        raise PolicyError(
            f"skill.certification: must be ≥ 1 (a certificate never lowers points), not {certification:g}"
        )
    skill_rule = SkillRule(
        base_rate=pt.positive(skill, "base_rate", "skill."),
        certification=certification,
        min_points=skill_lo,
        max_points=skill_hi,
        skills=_choices(skill, "skills", "skill.", "scarcity"),
    )
    return Policy(version=version, step=step, hours=hours, time=time_rule, skill=skill_rule)


EXAMPLE_POLICY = """
version = "example"
step = 1
[hours]
min = 0.25
max = 12
step = 0.25
[time]
base_rate = 10
min_points = 1
max_points = 240
[time.intensity.standard]
name_zh = "一般"
name_en = "Standard"
weight = 1.0
[time.slots.daytime]
name_zh = "白天"
name_en = "Daytime"
weight = 1.0
[skill]
base_rate = 15
certification = 1.25
min_points = 1
max_points = 300
[skill.skills.haircut]
name_zh = "理发"
name_en = "Haircut"
scarcity = 1.0
"""
"""A minimal policy for the examples in docstrings (the published one is package data)."""
