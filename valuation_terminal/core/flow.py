"""The kiosk session as a state machine: which screen shows, which steps each screen allows.

A resident at the valuation terminal goes through one screen at a time::

    signin → size → weigh → photos → category → describe → condition → age → price
           → proposal → sending → dropoff (door open, waiting for the item) → thanks
                                → submitted (queued / no door free / refused / sign in again)
    size → no_space (no fitting door free today)

This module is pure (no clock, I/O or randomness): the kiosk adapter turns what happened — a
form posted, a stable weight, a photo checked, the cloud's answer — into a step, calls
:func:`step` with the time, and renders the session it gets back. What a step needs that is
random (a session token) or measured (a weight, a photo's hash) arrives inside the step.

- **One thing per screen**, and :data:`NEEDS` says what a screen needs of the session before it
  can show (the proposal needs a stable weight and at least ``photos_min`` usable photos):
  :func:`step` refuses a step that would reach a screen without it, so the kiosk cannot confirm
  a proposal without a stable weight and a usable photo, whatever is posted.
- **Back and cancel everywhere**: :class:`Back` returns to the previous screen keeping what was
  entered (up to the proposal; once confirmed there is no going back); :class:`Cancel` (shown as
  "cancel" before the confirmation, "finish" after it) starts over and forgets the resident.
- **Idle timeout**: a session left without a resident's action for :data:`IDLE_TIMEOUT_MS`
  (2 minutes) returns to the start and forgets the resident (:func:`expire`); the screens after
  the confirmation return sooner (:data:`SCREEN_TIMEOUT_MS`). Automatic page refreshes are not
  actions: only steps move ``last_action_ms``.

Example:
    >>> s = new_session("tok1", now_ms=0)
    >>> s = step(s, SignedIn(Resident("res_1", "Wang", "ticket", 10**12), "zh-CN"), 1_000)
    >>> s = step(s, SpaceChecked("M", True), 2_000)
    >>> s.screen, s.size
    ('weigh', 'M')
    >>> expire(s, 2_000 + IDLE_TIMEOUT_MS, "tok2").resident is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal, get_args

from valuation_terminal.core.rules import CONDITION_GRADES, Correction, Demand, Inputs, Proposal

__all__ = [
    "IDLE_TIMEOUT_MS",
    "NEEDS",
    "PHOTOS_MAX",
    "PREVIOUS",
    "SCREENS",
    "SCREEN_TIMEOUT_MS",
    "SIZES",
    "AgeGiven",
    "Back",
    "Cancel",
    "CategoryChosen",
    "ConditionChosen",
    "Confirmed",
    "Described",
    "Failed",
    "ItemInside",
    "LanguageChosen",
    "Outcome",
    "Photo",
    "PhotoTaken",
    "PhotosDone",
    "PriceGiven",
    "Problem",
    "Resident",
    "Screen",
    "Session",
    "SignedIn",
    "SpaceChecked",
    "Step",
    "StepRefused",
    "Submitted",
    "Valued",
    "WeightStabilized",
    "allowed",
    "can_confirm",
    "expire",
    "inputs_for",
    "new_session",
    "step",
]

Screen = Literal[
    "signin",
    "size",
    "no_space",
    "weigh",
    "photos",
    "category",
    "describe",
    "condition",
    "age",
    "price",
    "proposal",
    "sending",
    "dropoff",
    "submitted",
    "thanks",
]
SCREENS: Final[tuple[Screen, ...]] = get_args(Screen)
"""Every screen, in the order a resident meets them."""

Size = Literal["S", "M", "L"]
SIZES: Final[tuple[Size, ...]] = get_args(Size)
"""Compartment sizes, smallest first (the cloud's ``S``/``M``/``L``)."""

IDLE_TIMEOUT_MS: Final = 120_000
"""A session with no resident action for this long returns to the start (2 minutes)."""

SCREEN_TIMEOUT_MS: Final[Mapping[Screen, int]] = {
    "submitted": 60_000,
    "thanks": 45_000,  # WCAG 2.2.1: the 30 s warning must have at least 20 s to be read
}
"""Screens that return to the start sooner than :data:`IDLE_TIMEOUT_MS` (after the answer)."""

PHOTOS_MAX: Final = 6
"""The most photos a proposal carries."""

MIN_WEIGHT_MG: Final = 5_000
"""Below 5 g the pan is taken as empty (the lightest category starts at 30 g)."""

PREVIOUS: Final[Mapping[Screen, Screen]] = {
    "no_space": "size",
    "weigh": "size",
    "photos": "weigh",
    "category": "photos",
    "describe": "category",
    "condition": "describe",
    "age": "condition",
    "price": "age",
    "proposal": "price",
}
"""Where :class:`Back` goes from each screen; a screen not listed has no back (the first, and
every screen after the confirmation)."""

NEEDS: Final[Mapping[Screen, frozenset[str]]] = {
    "signin": frozenset(),
    "size": frozenset({"resident"}),
    "no_space": frozenset({"resident", "size"}),
    "weigh": frozenset({"resident", "size"}),
    "photos": frozenset({"resident", "size", "weight"}),
    "category": frozenset({"resident", "size", "weight", "photos"}),
    "describe": frozenset({"resident", "size", "weight", "photos", "category"}),
    "condition": frozenset({"resident", "size", "weight", "photos", "category", "title"}),
    "age": frozenset({"resident", "size", "weight", "photos", "category", "title", "condition"}),
    "price": frozenset(
        {"resident", "size", "weight", "photos", "category", "title", "condition", "age"}
    ),
    "proposal": frozenset(
        {"resident", "size", "weight", "photos", "category", "title", "condition", "age"}
    ),
    "sending": frozenset({"resident", "valuation", "proposal_id"}),
    "dropoff": frozenset({"resident", "proposal_id", "outcome"}),
    "submitted": frozenset({"resident", "proposal_id", "outcome"}),
    "thanks": frozenset({"resident", "proposal_id"}),
}
"""What each screen needs of the session before it can show (field names of :class:`Session`;
``photos`` means at least ``photos_min`` usable photos, ``weight`` a stable weight)."""


class StepRefused(ValueError):
    """A step this screen does not allow, or one that would reach a screen without what it
    needs. The session is unchanged; the message says why (for logs and tests, not residents)."""


# --- what the session holds ------------------------------------------------------------------


@dataclass(frozen=True)
class Resident:
    """The signed-in resident. The ticket is a credential: it is left out of ``repr``."""

    resident_id: str
    display_name: str
    ticket: str = field(repr=False)
    ticket_expires_ms: int


@dataclass(frozen=True)
class Photo:
    """One usable photo, prepared and stored by content hash."""

    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Problem:
    """Something to tell the resident on the current screen: a catalog key and its values."""

    key: str
    values: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)


OutcomeKind = Literal["door_open", "go_to_locker", "no_space", "queued", "refused", "needs_signin"]


@dataclass(frozen=True)
class Outcome:
    """What became of a confirmed proposal, as the kiosk tells the resident.

    Attributes:
        kind: ``door_open`` (the cloud opened a door), ``go_to_locker`` (a grant, but the
            remote open did not happen: use the code), ``no_space`` (recorded, no door free),
            ``queued`` (the cloud cannot be reached: it waits in the queue), ``refused`` (the
            cloud refused it: ``error_code``), ``needs_signin`` (the ticket expired).
        locker_name: The locker of the grant.
        compartment: The door's label.
        code: The drop-off code, shown once on the kiosk (a credential: not in ``repr``).
        error_code: The cloud's error code when refused.
    """

    kind: OutcomeKind
    locker_name: str = ""
    compartment: str = ""
    code: str = field(default="", repr=False)
    error_code: str = ""


@dataclass(frozen=True)
class Session:
    """One resident's visit to the kiosk (immutable; :func:`step` returns a new one).

    ``token`` identifies the session and is the CSRF token of every form it shows; a new
    session (start, cancel, timeout) has a new token, so a form left from an earlier session
    is refused.
    """

    token: str = field(repr=False)
    started_ms: int
    last_action_ms: int
    screen: Screen = "signin"
    language: str = "zh-CN"
    language_chosen: bool = False
    resident: Resident | None = None
    size: Size | None = None
    space_known: bool = True
    weight_mg: int | None = None
    photos: tuple[Photo, ...] = ()
    category: str | None = None
    title: str | None = None
    condition: str | None = None
    age_months: int | None = None
    price_yuan: float | None = None
    price_given: bool = False
    valuation: tuple[Inputs, Proposal] | None = None
    proposal_id: str | None = None
    outcome: Outcome | None = None
    problem: Problem | None = None
    photos_min: int = 1

    def has(self, need: str) -> bool:
        """Whether the session has what :data:`NEEDS` calls ``need``."""
        if need == "weight":
            return self.weight_mg is not None
        if need == "photos":
            return len(self.photos) >= max(1, self.photos_min)
        if need == "age":
            return self.age_months is not None
        return getattr(self, need) is not None

    @property
    def back(self) -> Screen | None:
        """The screen :class:`Back` goes to, if any."""
        return PREVIOUS.get(self.screen)

    @property
    def is_confirmed(self) -> bool:
        """Confirmed: the proposal is in the durable queue; no going back."""
        return self.proposal_id is not None


def new_session(
    token: str, now_ms: int, language: str = "zh-CN", *, photos_min: int = 1
) -> Session:
    """A fresh session at the sign-in screen."""
    if photos_min < 1:
        raise ValueError(f"photos_min must be at least 1, not {photos_min}")
    return Session(
        token=token,
        started_ms=now_ms,
        last_action_ms=now_ms,
        language=language,
        photos_min=photos_min,
    )


# --- steps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LanguageChosen:
    """The resident pressed a language button (any screen)."""

    language: str


@dataclass(frozen=True)
class Back:
    """Back to the previous screen, keeping what was entered."""


@dataclass(frozen=True)
class Cancel:
    """Start over and forget the resident; ``token`` is the new session's."""

    token: str


@dataclass(frozen=True)
class Failed:
    """Something to tell the resident, staying on the same screen (a cloud or scale problem)."""

    problem: Problem


@dataclass(frozen=True)
class SignedIn:
    """The cloud accepted the phone and PIN. ``language`` is the account's (used unless the
    resident chose one at the kiosk in this session)."""

    resident: Resident
    language: str


@dataclass(frozen=True)
class SpaceChecked:
    """The resident chose a size and the cloud said whether a fitting door is free
    (``None``: the cloud could not be asked; the resident may go on)."""

    size: Size
    free: bool | None


@dataclass(frozen=True)
class WeightStabilized:
    """The scale gave a stable weight."""

    milligrams: int


@dataclass(frozen=True)
class PhotoTaken:
    """A photo was taken and checked; only a usable one is kept (``problems`` otherwise)."""

    photo: Photo
    usable: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhotosDone:
    """The resident has taken enough photos."""


@dataclass(frozen=True)
class CategoryChosen:
    category: str


@dataclass(frozen=True)
class Described:
    """A short title (the kiosk fills in the category's name when the resident skips)."""

    title: str


@dataclass(frozen=True)
class ConditionChosen:
    condition: str


@dataclass(frozen=True)
class AgeGiven:
    age_months: int


@dataclass(frozen=True)
class PriceGiven:
    """The declared purchase price in yuan, or ``None`` when skipped."""

    price_yuan: float | None


@dataclass(frozen=True)
class Valued:
    """The engine's proposal for the session's inputs (shown on the proposal screen)."""

    inputs: Inputs
    proposal: Proposal


@dataclass(frozen=True)
class Confirmed:
    """The resident confirmed; ``proposal_id`` is the idempotency key the kiosk chose."""

    proposal_id: str


@dataclass(frozen=True)
class Submitted:
    """The first attempt to submit is over (or the proposal is queued)."""

    outcome: Outcome


@dataclass(frozen=True)
class ItemInside:
    """The cloud says the locker saw the item inside."""


Step = (
    LanguageChosen
    | Back
    | Cancel
    | Failed
    | SignedIn
    | SpaceChecked
    | WeightStabilized
    | PhotoTaken
    | PhotosDone
    | CategoryChosen
    | Described
    | ConditionChosen
    | AgeGiven
    | PriceGiven
    | Valued
    | Confirmed
    | Submitted
    | ItemInside
)

_ANYWHERE: Final[frozenset[type]] = frozenset({LanguageChosen, Cancel, Failed})

ALLOWED: Final[Mapping[Screen, frozenset[type]]] = {
    "signin": frozenset({SignedIn}),
    "size": frozenset({SpaceChecked}),
    "no_space": frozenset({Back, SpaceChecked}),
    "weigh": frozenset({Back, WeightStabilized}),
    "photos": frozenset({Back, PhotoTaken, PhotosDone}),
    "category": frozenset({Back, CategoryChosen}),
    "describe": frozenset({Back, Described}),
    "condition": frozenset({Back, ConditionChosen}),
    "age": frozenset({Back, AgeGiven}),
    "price": frozenset({Back, PriceGiven}),
    "proposal": frozenset({Back, Valued, Confirmed}),
    "sending": frozenset({Submitted}),
    "dropoff": frozenset({ItemInside}),
    "submitted": frozenset(),
    "thanks": frozenset(),
}
"""The steps each screen allows besides :class:`LanguageChosen`, :class:`Cancel`, :class:`Failed`."""


def allowed(screen: Screen) -> frozenset[type]:
    """Every step type ``screen`` allows."""
    return ALLOWED[screen] | _ANYWHERE


def can_confirm(session: Session) -> bool:
    """Whether the proposal shown may be confirmed: everything the proposal screen needs, a
    valuation of exactly these inputs, and not confirmed already."""
    return (
        session.screen == "proposal"
        and all(session.has(need) for need in NEEDS["proposal"])
        and session.valuation is not None
        and session.proposal_id is None
    )


def inputs_for(session: Session, demand: Demand, correction: Correction | None = None) -> Inputs:
    """The engine's inputs for what the session measured and the resident declared, with the
    category's demand snapshot and learned correction (``None`` when corrections are off).

    Raises:
        StepRefused: the session lacks something the proposal needs.
    """
    missing = sorted(need for need in NEEDS["proposal"] if not session.has(need))
    if missing:
        raise StepRefused(f"cannot value yet: missing {', '.join(missing)}")
    assert session.category is not None and session.condition is not None
    assert session.age_months is not None and session.weight_mg is not None
    return Inputs(
        category=session.category,
        condition=session.condition,
        age_months=session.age_months,
        weight_g=round(session.weight_mg / 1000),
        photo_count=len(session.photos),
        demand=demand,
        purchase_price_yuan=session.price_yuan,
        correction=correction,
    )


def _go(session: Session, screen: Screen, now_ms: int, **changes: object) -> Session:
    moved = replace(session, **changes, screen=screen, last_action_ms=now_ms, problem=None)  # type: ignore[arg-type]
    missing = sorted(need for need in NEEDS[screen] if not moved.has(need))
    if missing:
        raise StepRefused(f"{screen} needs {', '.join(missing)}")
    return moved


def _stay(session: Session, now_ms: int, problem: Problem | None, **changes: object) -> Session:
    return replace(session, **changes, last_action_ms=now_ms, problem=problem)  # type: ignore[arg-type]


def _resident_of(session: Session) -> Resident:
    if session.resident is None:  # NEEDS makes this unreachable past sign-in
        raise StepRefused("no resident is signed in")
    return session.resident


def step(session: Session, event: Step, now_ms: int) -> Session:
    """Apply one step at ``now_ms``; return the new session.

    Raises:
        StepRefused: the current screen does not allow this step, or its values are refused
            (an unknown size or condition, a negative age or price, a photo over the limit).
    """
    if type(event) not in allowed(session.screen):
        raise StepRefused(f"{type(event).__name__} is not allowed on {session.screen}")
    match event:
        case LanguageChosen(language):
            return replace(session, language=language, language_chosen=True, last_action_ms=now_ms)
        case Cancel(token):
            return new_session(
                token,
                now_ms,
                session.language if not session.resident else "zh-CN",
                photos_min=session.photos_min,
            )
        case Failed(problem):
            return _stay(session, now_ms, problem)
        case Back():
            back = session.back
            if back is None:
                raise StepRefused(f"{session.screen} has no back")
            return _go(session, back, now_ms)
        case SignedIn(resident, language):
            chosen = session.language if session.language_chosen else language
            return _go(session, "size", now_ms, resident=resident, language=chosen)
        case SpaceChecked(size, free):
            if size not in SIZES:
                raise StepRefused(f"unknown size {size!r}")
            if free is False:
                return _go(session, "no_space", now_ms, size=size)
            return _go(session, "weigh", now_ms, size=size, space_known=free is not None)
        case WeightStabilized(milligrams):
            if milligrams < MIN_WEIGHT_MG:
                return _stay(session, now_ms, Problem("terminal.weigh.empty"))
            return _go(session, "photos", now_ms, weight_mg=milligrams, valuation=None)
        case PhotoTaken(photo, usable, problems):
            if len(session.photos) >= PHOTOS_MAX:
                raise StepRefused(f"at most {PHOTOS_MAX} photos")
            if not usable:
                return _stay(
                    session,
                    now_ms,
                    Problem("terminal.photos.retake", (("problems", ",".join(problems)),)),
                )
            if any(p.sha256 == photo.sha256 for p in session.photos):
                return _stay(session, now_ms, Problem("terminal.photos.same"))
            return _stay(session, now_ms, None, photos=(*session.photos, photo), valuation=None)
        case PhotosDone():
            if not session.has("photos"):
                return _stay(
                    session,
                    now_ms,
                    Problem("terminal.photos.need", (("n", str(session.photos_min)),)),
                )
            return _go(session, "category", now_ms)
        case CategoryChosen(category):
            if not category:
                raise StepRefused("empty category")
            return _go(session, "describe", now_ms, category=category, valuation=None)
        case Described(title):
            title = " ".join(title.split())
            if not title:
                raise StepRefused("empty title")
            return _go(session, "condition", now_ms, title=title[:80])
        case ConditionChosen(condition):
            if condition not in CONDITION_GRADES:
                raise StepRefused(f"unknown condition {condition!r}")
            return _go(session, "age", now_ms, condition=condition, valuation=None)
        case AgeGiven(age_months):
            if age_months < 0:
                return _stay(session, now_ms, Problem("terminal.age.invalid"))
            return _go(session, "price", now_ms, age_months=age_months, valuation=None)
        case PriceGiven(price_yuan):
            if price_yuan is not None and not price_yuan > 0:
                return _stay(session, now_ms, Problem("terminal.price.invalid"))
            return _go(
                session,
                "proposal",
                now_ms,
                price_yuan=price_yuan,
                price_given=price_yuan is not None,
                valuation=None,
            )
        case Valued(inputs, proposal):
            if inputs != inputs_for(session, inputs.demand, inputs.correction):
                raise StepRefused("the valuation is not of this session's inputs")
            return replace(session, valuation=(inputs, proposal))
        case Confirmed(proposal_id):
            if not can_confirm(session):
                raise StepRefused("nothing to confirm: no valuation of complete inputs")
            return _go(session, "sending", now_ms, proposal_id=proposal_id)
        case Submitted(outcome):
            _resident_of(session)
            if outcome.kind in ("door_open", "go_to_locker"):
                return _go(session, "dropoff", now_ms, outcome=outcome)
            return _go(session, "submitted", now_ms, outcome=outcome)
        case ItemInside():
            return _go(session, "thanks", now_ms)
    raise StepRefused(f"unknown step {event!r}")  # pragma: no cover - the match is exhaustive


def timeout_ms(screen: Screen) -> int:
    """How long ``screen`` waits for a resident's action before returning to the start."""
    return SCREEN_TIMEOUT_MS.get(screen, IDLE_TIMEOUT_MS)


def expire(session: Session, now_ms: int, token: str) -> Session:
    """The session, or a fresh one (with ``token``) if it was left idle too long.

    The sign-in screen of a session nobody used keeps its token (a form on screen stays valid).
    """
    idle = now_ms - session.last_action_ms
    if idle < timeout_ms(session.screen):
        return session
    if session.screen == "signin" and not session.language_chosen and session.problem is None:
        return session
    return new_session(token, now_ms, photos_min=session.photos_min)
