"""Reading a published policy table (TOML already parsed into dicts): each field checked, and a
clear error naming the field at fault. Shared by the valuation rules
(``valuation_terminal/core/rules.py``) and the time-and-skills rules
(``cloud_api/core/contributions.py``). Pure.

Example:
    >>> number({"rate": 5}, "rate", "time.")
    5.0
    >>> number({"rate": "x"}, "rate", "time.")
    Traceback (most recent call last):
    ...
    linli.policy_table.PolicyError: time.rate: must be a number, not 'x'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "PolicyError",
    "fraction",
    "get",
    "integer",
    "known",
    "number",
    "points_bounds",
    "positive",
    "round_half_up",
    "table",
    "text",
]


class PolicyError(ValueError):
    """A policy text that cannot be used; the message names the field (``categories.toys.floor``)."""


def get(data: Mapping[str, Any], key: str, where: str) -> Any:
    """``data[key]``, or an error naming ``where + key`` as missing."""
    if key not in data:
        raise PolicyError(f"{where}{key}: missing")
    return data[key]


def table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """A sub-table."""
    found = get(data, key, where)
    if not isinstance(found, dict):
        raise PolicyError(f"{where}{key}: must be a table")
    return found


def known(data: Mapping[str, Any], where: str, names: set[str]) -> None:
    """Refuse a field not in ``names`` (a typo must not pass silently)."""
    for key in data:
        if key not in names:
            raise PolicyError(f"{where}{key}: unknown field")


def number(data: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    """A finite number (not a boolean); ``default`` when given and the field is absent."""
    if default is not None and key not in data:
        return default
    raw = get(data, key, where)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise PolicyError(f"{where}{key}: must be a number, not {raw!r}")
    return float(raw)


def positive(data: Mapping[str, Any], key: str, where: str) -> float:
    """A number > 0."""
    found = number(data, key, where)
    if found <= 0:
        raise PolicyError(f"{where}{key}: must be > 0, not {found:g}")
    return found


def fraction(data: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    """A number in [0, 1]."""
    found = number(data, key, where, default)
    if not 0 <= found <= 1:
        raise PolicyError(f"{where}{key}: must be between 0 and 1, not {found:g}")
    return found


def integer(data: Mapping[str, Any], key: str, where: str) -> int:
    """An integer (not a boolean)."""
    raw = get(data, key, where)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise PolicyError(f"{where}{key}: must be an integer, not {raw!r}")
    return raw


def text(data: Mapping[str, Any], key: str, where: str) -> str:
    """A non-empty string."""
    raw = get(data, key, where)
    if not isinstance(raw, str) or not raw.strip():
        raise PolicyError(f"{where}{key}: must be a non-empty string")
    return raw


def points_bounds(data: Mapping[str, Any], where: str, step: int) -> tuple[int, int]:
    """``min_points`` and ``max_points``: 0 ≤ min ≤ max, both multiples of ``step`` (so rounding
    to the step never leaves the bounds)."""
    lo, hi = integer(data, "min_points", where), integer(data, "max_points", where)
    if lo < 0:
        raise PolicyError(f"{where}min_points: must be ≥ 0")
    if lo > hi:
        raise PolicyError(f"{where}min_points: {lo} is greater than max_points {hi}")
    for key, found in (("min_points", lo), ("max_points", hi)):
        if found % step:
            raise PolicyError(f"{where}{key}: {found} is not a multiple of step {step}")
    return lo, hi


def round_half_up(x: float, step: int) -> int:
    """``x`` to a multiple of ``step``, halves up (12.5 → 13 with step 1).

    Example:
        >>> round_half_up(12.5, 1), round_half_up(12.4999999999, 1), round_half_up(7.5, 5)
        (13, 13, 10)
    """
    # round(…, 9) first: 12.5 computed as 12.499999999 must still round up
    return math.floor(round(x / step, 9) + 0.5) * step
