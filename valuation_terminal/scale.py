"""The scale port: what the valuation terminal needs from a weighing scale, and nothing more.

The terminal weighs an item before it proposes a valuation. It asks for one *stable* weight
(:meth:`Scale.stable_weight`), may tare a container or zero an empty pan, and closes the scale
when it stops. How the weight travels (RS232 through a USB adapter, which of three line
formats) is the adapter's business (:class:`firmware_bridge.scale.SerialScale`); a test passes
any object with these methods, no inheritance needed.

This module is pure: no serial port, thread or clock.

Example:
    >>> def weigh(scale: Scale) -> float:
    ...     return scale.stable_weight(timeout_s=5.0).grams
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Scale",
    "ScaleError",
    "ScaleFault",
    "ScaleOverload",
    "ScaleUnavailable",
    "ScaleUnstable",
    "StableWeight",
]


@dataclass(frozen=True)
class StableWeight:
    """One weight the scale called stable and that several consecutive readings agreed on.

    Attributes:
        grams: The weight in grams (for display and arithmetic; ``milligrams / 1000``).
        milligrams: The weight in whole milligrams, exact as the scale sent it (compare this).
        is_net: ``True`` when a tare is subtracted, ``False`` for the gross weight.
        readings: How many consecutive stable readings agreed on it.

    Example:
        >>> StableWeight.from_milligrams(1234500, is_net=False, readings=3).grams
        1234.5
    """

    grams: float
    milligrams: int
    is_net: bool
    readings: int

    @classmethod
    def from_milligrams(cls, milligrams: int, *, is_net: bool, readings: int) -> StableWeight:
        """Build a weight from whole milligrams (``grams`` is derived, never given twice)."""
        return cls(milligrams / 1000, milligrams, is_net, readings)


class ScaleError(Exception):
    """Root of every scale error."""


class ScaleUnstable(ScaleError, TimeoutError):
    """No stable weight within the timeout: the load kept moving, or the scale stayed silent."""


class ScaleOverload(ScaleError):
    """The load is above the scale's capacity: take it off."""


class ScaleFault(ScaleError):
    """The scale reported an error, an underload, or cannot do what was asked.

    Attributes:
        kind: What went wrong, in one word: ``syntax``, ``transmission``, ``logical``, ``busy``
            (MT-SICS ``ES``/``ET``/``EL``/``I``), ``unstable``, ``range``, ``underload``,
            ``unit``, ``timeout``, ``unsupported``...
        detail: The scale's own words, or ours.

    Example:
        >>> str(ScaleFault("unsupported", "this format has no tare command"))
        'unsupported: this format has no tare command'
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


class ScaleUnavailable(ScaleError, ConnectionError):
    """The scale cannot be reached: unplugged adapter, missing device, port owned by another."""


class Scale(Protocol):
    """A weighing scale, as the valuation terminal uses it."""

    def stable_weight(self, timeout_s: float = 10.0) -> StableWeight:
        """Wait for the next stable weight.

        Raises:
            ScaleUnstable: no stable weight within ``timeout_s``.
            ScaleOverload: the load is above capacity.
            ScaleFault: the scale reported an error or an underload.
            ScaleUnavailable: the scale cannot be reached.
        """
        ...

    def tare(self) -> None:
        """Subtract the load on the pan from later weights (they become net).

        Raises:
            ScaleFault: refused (unstable, out of range) or not supported by the scale.
            ScaleUnavailable: the scale cannot be reached.
        """
        ...

    def zero(self) -> None:
        """Set the empty pan to zero (clears a tare; later weights are gross).

        Raises:
            ScaleFault: refused (unstable, out of the zero range) or not supported.
            ScaleUnavailable: the scale cannot be reached.
        """
        ...

    def close(self) -> None:
        """Release the scale."""
        ...
