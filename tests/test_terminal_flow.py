"""The kiosk's state machine (valuation_terminal/core/flow.py): every screen reachable, back and
cancel, the idle timeout forgets the resident, no confirmation without a stable weight and a
usable photo."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from importlib import resources

import pytest

from valuation_terminal.core import flow
from valuation_terminal.core.flow import (
    IDLE_TIMEOUT_MS,
    NEEDS,
    PHOTOS_MAX,
    PREVIOUS,
    SCREENS,
    AgeGiven,
    Back,
    Cancel,
    CategoryChosen,
    ConditionChosen,
    Confirmed,
    Described,
    Failed,
    ItemInside,
    LanguageChosen,
    Outcome,
    Photo,
    PhotosDone,
    PhotoTaken,
    PriceGiven,
    Problem,
    Resident,
    Session,
    SignedIn,
    SpaceChecked,
    StepRefused,
    Submitted,
    Valued,
    WeightStabilized,
    can_confirm,
    expire,
    inputs_for,
    new_session,
    step,
)
from valuation_terminal.core.rules import Correction, Demand, load_policy, value

POLICY = load_policy(
    resources.files("valuation_terminal").joinpath("policy/default.toml").read_text("utf-8")
)
DEMAND = Demand(1.0, "2026-W47")
RESIDENT = Resident("res_1", "Wang Fang", "ticket-secret", 10**13)
PHOTO_A = Photo("a" * 64, 1280, 960)
PHOTO_B = Photo("b" * 64, 1280, 960)


def _valued(session: Session) -> Valued:
    inputs = inputs_for(session, DEMAND)
    return Valued(inputs, value(POLICY, inputs))


def walk(until: str = "proposal", photos_min: int = 1) -> Session:
    """The happy path, one step per screen, up to ``until``."""
    s = new_session("t0", 0, photos_min=photos_min)
    steps: list[flow.Step] = [
        SignedIn(RESIDENT, "en"),
        SpaceChecked("M", True),
        WeightStabilized(412_300),
        PhotoTaken(PHOTO_A, True),
        *[PhotoTaken(Photo(f"{i:064x}", 10, 10), True) for i in range(photos_min - 1)],
        PhotosDone(),
        CategoryChosen("toys"),
        Described("LEGO bricks"),
        ConditionChosen("9成新"),
        AgeGiven(18),
        PriceGiven(None),
    ]
    now = 0
    for event in steps:
        if s.screen == until:
            return s
        now += 1000
        s = step(s, event, now)
    if until == "proposal":
        return s
    s = step(s, _valued(s), now)
    for event in (
        Confirmed("prp_" + "x" * 24),
        Submitted(Outcome("door_open", "Locker A", "12", "12345678")),
        ItemInside(),
    ):
        if s.screen == until:
            return s
        now += 1000
        s = step(s, event, now)
    assert s.screen == until
    return s


def test_the_happy_path_reaches_the_proposal_with_everything_it_needs() -> None:
    s = walk()
    assert s.screen == "proposal"
    assert (s.size, s.weight_mg, s.category, s.title, s.condition, s.age_months) == (
        "M",
        412_300,
        "toys",
        "LEGO bricks",
        "9成新",
        18,
    )
    assert s.language == "en"  # the account's language, nobody chose another at the kiosk
    inputs = inputs_for(s, DEMAND)
    assert (inputs.weight_g, inputs.photo_count, inputs.purchase_price_yuan) == (412, 1, None)
    assert not can_confirm(s)  # not valued yet
    s = step(s, _valued(s), 20_000)
    assert can_confirm(s)


def test_every_screen_is_reachable() -> None:
    """A breadth-first walk over a representative set of steps reaches every screen."""
    proposal_id = "prp_" + "y" * 24
    candidates: list[flow.Step] = [
        SignedIn(RESIDENT, "zh-CN"),
        SpaceChecked("S", False),
        SpaceChecked("M", True),
        SpaceChecked("L", None),
        WeightStabilized(800_000),
        PhotoTaken(PHOTO_A, True),
        PhotosDone(),
        CategoryChosen("books"),
        Described("novels"),
        ConditionChosen("全新"),
        AgeGiven(3),
        PriceGiven(30.0),
        Confirmed(proposal_id),
        Submitted(Outcome("door_open", "A", "3", "11112222")),
        Submitted(Outcome("queued")),
        ItemInside(),
        Back(),
    ]
    start = new_session("t", 0)
    seen = {start.screen}
    visited: set[tuple[object, ...]] = set()
    queue = deque([start])
    while queue:
        s = queue.popleft()
        options = list(candidates)
        if s.screen == "proposal" and s.valuation is None:
            options.append(_valued(s))
        for event in options:
            try:
                nxt = step(s, event, 1)
            except StepRefused:
                continue
            seen.add(nxt.screen)
            key = (nxt.screen, len(nxt.photos), nxt.valuation is not None, nxt.weight_mg)
            if key not in visited:
                visited.add(key)
                queue.append(nxt)
    assert seen == set(SCREENS)


@pytest.mark.parametrize("screen", [s for s in SCREENS if s in PREVIOUS])
def test_back_goes_to_the_previous_screen_and_keeps_what_was_entered(screen: str) -> None:
    s = walk(screen) if screen != "no_space" else _no_space()
    back = step(s, Back(), 99_000)
    assert back.screen == PREVIOUS[screen]  # type: ignore[index]
    assert back.resident == s.resident and back.photos == s.photos and back.size == s.size


def _no_space() -> Session:
    s = step(new_session("t", 0), SignedIn(RESIDENT, "zh-CN"), 1)
    return step(s, SpaceChecked("L", False), 2)


@pytest.mark.parametrize("screen", ["signin", "size", "sending", "dropoff", "submitted", "thanks"])
def test_screens_without_back(screen: str) -> None:
    s = _submitted() if screen == "submitted" else walk(screen)
    with pytest.raises(StepRefused):
        step(s, Back(), 99_000)


def _submitted() -> Session:
    s = walk("sending")
    return step(s, Submitted(Outcome("queued")), 50_000)


@pytest.mark.parametrize("screen", SCREENS)
def test_cancel_from_every_screen_starts_over_and_forgets_the_resident(screen: str) -> None:
    if screen == "no_space":
        s = _no_space()
    elif screen == "submitted":
        s = _submitted()
    else:
        s = walk(screen)
    fresh = step(s, Cancel("new-token"), 100_000)
    assert fresh.screen == "signin" and fresh.resident is None and fresh.token == "new-token"
    assert fresh.photos == () and fresh.weight_mg is None and fresh.proposal_id is None
    assert fresh.last_action_ms == 100_000


def test_cancel_before_signin_keeps_the_chosen_language_but_not_after() -> None:
    s = step(new_session("t", 0), LanguageChosen("en"), 1)
    assert step(s, Cancel("t2"), 2).language == "en"
    s = walk("weigh")
    assert step(s, Cancel("t2"), 2).language == "zh-CN"


def test_a_language_chosen_at_the_kiosk_wins_over_the_account() -> None:
    s = step(new_session("t", 0), LanguageChosen("en"), 1)
    s = step(s, SignedIn(RESIDENT, "zh-CN"), 2)
    assert s.language == "en"
    s = step(s, LanguageChosen("zh-CN"), 3)
    assert s.language == "zh-CN" and s.screen == "size"


@pytest.mark.parametrize("screen", ["size", "photos", "proposal", "dropoff", "submitted"])
def test_idle_timeout_returns_to_the_start_and_forgets_the_resident(screen: str) -> None:
    s = _submitted() if screen == "submitted" else walk(screen)
    timeout = flow.timeout_ms(s.screen)
    assert expire(s, s.last_action_ms + timeout - 1, "new") is s
    fresh = expire(s, s.last_action_ms + timeout, "new")
    assert fresh.screen == "signin" and fresh.resident is None and fresh.token == "new"
    assert fresh.language == "zh-CN"


def test_idle_timeout_is_two_minutes_and_counts_from_the_last_action() -> None:
    assert IDLE_TIMEOUT_MS == 120_000
    s = walk("photos")
    s = step(s, PhotoTaken(PHOTO_B, True), s.last_action_ms + 100_000)
    assert expire(s, s.last_action_ms + 119_999, "new").resident == RESIDENT
    assert expire(s, s.last_action_ms + 120_000, "new").resident is None


def test_an_unused_signin_screen_keeps_its_token() -> None:
    s = new_session("t", 0)
    assert expire(s, 10 * IDLE_TIMEOUT_MS, "new") is s
    s = step(s, LanguageChosen("en"), 1)
    assert expire(s, 1 + IDLE_TIMEOUT_MS, "new").language == "zh-CN"


def test_no_confirmation_without_a_stable_weight() -> None:
    s = walk()
    s = step(s, _valued(s), 1)
    no_weight = replace(s, weight_mg=None)
    assert not can_confirm(no_weight)
    with pytest.raises(StepRefused):
        step(no_weight, Confirmed("prp_" + "z" * 24), 2)
    with pytest.raises(StepRefused):
        inputs_for(no_weight, DEMAND)


def test_no_confirmation_without_a_usable_photo() -> None:
    s = walk("photos")
    s = step(s, PhotoTaken(PHOTO_A, False, ("blurred",)), 10)
    assert s.photos == ()
    assert s.problem == Problem("terminal.photos.retake", (("problems", "blurred"),))
    s = step(s, PhotosDone(), 11)
    assert s.screen == "photos" and s.problem is not None
    assert s.problem.key == "terminal.photos.need"
    s = walk()
    s = step(s, _valued(s), 1)
    with pytest.raises(StepRefused):
        step(replace(s, photos=()), Confirmed("prp_" + "z" * 24), 2)


def test_photos_min_from_the_cloud_is_enforced() -> None:
    s = walk("photos", photos_min=2)
    s = step(s, PhotoTaken(PHOTO_A, True), 1)
    assert step(s, PhotosDone(), 2).screen == "photos"
    s = step(s, PhotoTaken(PHOTO_B, True), 3)
    assert step(s, PhotosDone(), 4).screen == "category"


def test_an_empty_pan_is_not_a_weight() -> None:
    s = walk("weigh")
    s = step(s, WeightStabilized(1_200), 5)
    assert s.screen == "weigh" and s.weight_mg is None
    assert s.problem == Problem("terminal.weigh.empty")


def test_photos_are_limited_and_deduplicated() -> None:
    s = walk("photos")
    s = step(s, PhotoTaken(PHOTO_A, True), 1)
    s = step(s, PhotoTaken(PHOTO_A, True), 2)
    assert len(s.photos) == 1 and s.problem == Problem("terminal.photos.same")
    for i in range(PHOTOS_MAX - 1):
        s = step(s, PhotoTaken(Photo(f"{i + 7:064x}", 1, 1), True), 3 + i)
    assert len(s.photos) == PHOTOS_MAX
    with pytest.raises(StepRefused):
        step(s, PhotoTaken(PHOTO_B, True), 20)


def test_a_valuation_of_other_inputs_is_refused() -> None:
    s = walk()
    other = replace(s, category="books")
    with pytest.raises(StepRefused):
        step(s, _valued(other), 1)


def test_the_correction_travels_in_the_inputs() -> None:
    s = walk()
    inputs = inputs_for(s, DEMAND, Correction(1.1, 12))
    s = step(s, Valued(inputs, value(POLICY, inputs)), 1)
    assert s.valuation is not None and s.valuation[0].correction == Correction(1.1, 12)
    names = [f.name for f in s.valuation[1].factors]
    assert "correction" in names


def test_going_back_and_changing_an_answer_drops_the_old_valuation() -> None:
    s = walk()
    s = step(s, _valued(s), 1)
    s = step(s, Back(), 2)
    s = step(s, PriceGiven(10.0), 3)
    assert s.valuation is None and not can_confirm(s)
    s = step(s, _valued(s), 4)
    assert s.valuation is not None and s.valuation[0].purchase_price_yuan == 10.0


@pytest.mark.parametrize(
    ("screen", "event"),
    [
        ("signin", WeightStabilized(1_000_000)),
        ("size", Confirmed("prp_" + "q" * 24)),
        ("weigh", PhotoTaken(PHOTO_A, True)),
        ("photos", CategoryChosen("toys")),
        ("proposal", ItemInside()),
        ("sending", Back()),
        ("dropoff", Confirmed("prp_" + "q" * 24)),
        ("thanks", ItemInside()),
    ],
)
def test_steps_a_screen_does_not_allow_are_refused(screen: str, event: flow.Step) -> None:
    s = walk(screen)
    with pytest.raises(StepRefused):
        step(s, event, 99_000)


@pytest.mark.parametrize(
    "event",
    [ConditionChosen("7成新"), Described("   "), CategoryChosen("")],
)
def test_bad_values_are_refused(event: flow.Step) -> None:
    screen = {ConditionChosen: "condition", Described: "describe", CategoryChosen: "category"}
    s = walk(screen[type(event)])
    with pytest.raises(StepRefused):
        step(s, event, 99_000)


def test_bad_age_and_price_are_told_not_refused() -> None:
    s = step(walk("age"), AgeGiven(-1), 1)
    assert s.screen == "age" and s.problem == Problem("terminal.age.invalid")
    s = step(walk("price"), PriceGiven(0.0), 1)
    assert s.screen == "price" and s.problem == Problem("terminal.price.invalid")


def test_a_problem_shows_on_the_screen_and_the_next_step_clears_it() -> None:
    s = step(walk("weigh"), Failed(Problem("terminal.weigh.unstable")), 5)
    assert s.screen == "weigh" and s.problem == Problem("terminal.weigh.unstable")
    s = step(s, WeightStabilized(900_000), 6)
    assert s.problem is None


def test_outcomes_go_to_the_right_screen() -> None:
    s = walk("sending")
    assert step(s, Submitted(Outcome("door_open", "A", "1", "1")), 1).screen == "dropoff"
    assert step(s, Submitted(Outcome("go_to_locker", "A", "1", "1")), 1).screen == "dropoff"
    for kind in ("no_space", "queued", "refused", "needs_signin"):
        assert step(s, Submitted(Outcome(kind)), 1).screen == "submitted"  # type: ignore[arg-type]


def test_secrets_are_not_in_reprs() -> None:
    s = walk("sending")
    s = step(s, Submitted(Outcome("door_open", "A", "7", "87654321")), 1)
    text = repr(s)
    assert "ticket-secret" not in text and "87654321" not in text and s.token not in text


def test_needs_names_session_fields() -> None:
    fields = set(Session.__dataclass_fields__) | {"weight", "photos", "age"}
    for screen in SCREENS:
        assert NEEDS[screen] <= fields, screen
