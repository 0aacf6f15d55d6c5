"""Time and skills contributions: the rule as a table of cases, then the flow over the real HTTP
app — recorded, confirmed by the other party, approved by a social worker, credited exactly once.

The rule is ``cloud_api.core.contributions`` with the published policy
(``cloud_api/policy/contributions.toml``, read as package data). The flow runs on a seeded cloud
on a private Mosquitto (conftest's ``cloud``), with the contribution routes installed on the
running app (``cloud_api.contributions.router.install``; a no-op once the app serves them):
residents ``per_1`` (Auntie Wang) and ``per_2`` (Uncle Li), 50 points each (12 of per_1's held
by the seeded reservation); social workers ``per_3`` (zhang) and ``per_5`` (chen); and, where a
test needs it, a second community with a resident and a social worker of its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import CloudUnderTest

from cloud_api.accounts.service import hash_secret, seal_totp_secret
from cloud_api.contributions.router import install
from cloud_api.contributions.service import default_policy, policy_text
from cloud_api.core.contributions import (
    MULTIPLIER_FACTORS,
    ContributionError,
    InvalidTransition,
    Policy,
    PolicyError,
    Valuation,
    load_policy,
    next_status,
    recompute,
    value_skill,
    value_time,
)
from cloud_api.core.notify import RenderError, catalog_key, contribution_values, render
from cloud_api.ledger import SqlLedger
from cloud_api.seed import LOGINS, DemoLogin
from linli.i18n import LANGUAGES, catalog

RESIDENT_1, RESIDENT_2, ZHANG, _MAINTAINER, CHEN = LOGINS
POLICY = default_policy()

# --- the rule: a table of cases --------------------------------------------------------------

TIME_CASES = [
    # hours, intensity, slot, points, why
    (1, "standard", "daytime", 10, "the base rate"),
    (2.5, "heavy", "evening", 45, "2.5 × 1.5 × 1.2 × 10"),
    (0.25, "light", "daytime", 2, "the least entry: 0.25 × 0.8 × 10"),
    (1.75, "light", "evening", 17, "16.8 rounds to 17"),
    (1.25, "standard", "daytime", 13, "12.5 rounds half up"),
    (0.75, "standard", "weekend", 9, "0.75 × 1.2 × 10"),
    (12, "standard", "holiday", 180, "the longest entry"),
    (12, "heavy", "night", 240, "270 clamped to max_points"),
]


@pytest.mark.parametrize(("hours", "intensity", "slot", "points", "why"), TIME_CASES)
def test_time_points(hours: float, intensity: str, slot: str, points: int, why: str) -> None:
    valuation = value_time(POLICY, hours=hours, intensity=intensity, slot=slot)
    assert valuation.points == points, why
    names = [f.name for f in valuation.factors]
    assert names == ["hours", "intensity", "slot", "base_rate", "clamp", "rounding"]
    raw = math.prod(f.value for f in valuation.factors if f.name in MULTIPLIER_FACTORS)
    assert valuation.factors[-2].value == min(240.0, max(1.0, raw))
    assert valuation.policy_version == POLICY.version


SKILL_CASES = [
    # hours, skill, certified, points, why
    (1, "haircut", False, 15, "the base rate"),
    (1.5, "sewing", False, 23, "22.5 rounds half up"),
    (0.5, "tutoring", True, 11, "0.5 × 15 × 1.2 × 1.25 = 11.25"),
    (2, "appliance_repair", True, 56, "2 × 15 × 1.5 × 1.25 = 56.25"),
    (2, "appliance_repair", False, 45, "no certificate: 1.0"),
    (12, "appliance_repair", True, 300, "337.5 clamped to max_points"),
]


@pytest.mark.parametrize(("hours", "skill", "certified", "points", "why"), SKILL_CASES)
def test_skill_points(hours: float, skill: str, certified: bool, points: int, why: str) -> None:
    valuation = value_skill(POLICY, hours=hours, skill=skill, is_certified=certified)
    assert valuation.points == points, why
    names = [f.name for f in valuation.factors]
    assert names == ["hours", "base_rate", "scarcity", "certification", "clamp", "rounding"]
    certification = next(f for f in valuation.factors if f.name == "certification")
    assert certification.value == (POLICY.skill.certification if certified else 1.0)


ERROR_CASES = [
    # hours, intensity, slot, code
    (0, "standard", "daytime", "invalid_hours"),
    (-1, "standard", "daytime", "invalid_hours"),
    (0.2, "standard", "daytime", "invalid_hours"),  # below the least entry
    (0.3, "standard", "daytime", "invalid_hours"),  # not quarter hours: refused, not rounded
    (2.1, "standard", "daytime", "invalid_hours"),
    (12.25, "standard", "daytime", "invalid_hours"),
    (math.nan, "standard", "daytime", "invalid_hours"),
    (math.inf, "standard", "daytime", "invalid_hours"),
    (True, "standard", "daytime", "invalid_hours"),
    ("2", "standard", "daytime", "invalid_hours"),
    (1, "extreme", "daytime", "unknown_intensity"),
    (1, "Standard", "daytime", "unknown_intensity"),
    (1, "standard", "midnight", "unknown_slot"),
]


@pytest.mark.parametrize(("hours", "intensity", "slot", "code"), ERROR_CASES)
def test_time_inputs_the_rule_refuses(hours: Any, intensity: str, slot: str, code: str) -> None:
    with pytest.raises(ContributionError) as refused:
        value_time(POLICY, hours=hours, intensity=intensity, slot=slot)
    assert refused.value.code == code
    assert refused.value.field == code.removeprefix("unknown_").removeprefix("invalid_")


def test_an_unknown_skill_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ContributionError, match="haircut") as refused:
        value_skill(POLICY, hours=1, skill="juggling", is_certified=False)
    assert (refused.value.code, refused.value.field) == ("unknown_skill", "skill")


def test_points_never_fall_as_hours_rise_and_stay_within_bounds() -> None:
    """Every quarter hour of every choice: monotonic in hours, within [min, max]."""
    quarters = [q / 4 for q in range(1, 49)]
    for intensity in POLICY.time.intensities:
        for slot in POLICY.time.slots:
            points = [
                value_time(POLICY, hours=h, intensity=intensity, slot=slot).points for h in quarters
            ]
            assert points == sorted(points), (intensity, slot)
            assert POLICY.time.min_points <= points[0] and points[-1] <= POLICY.time.max_points
    for skill in POLICY.skill.skills:
        for certified in (False, True):
            points = [
                value_skill(POLICY, hours=h, skill=skill, is_certified=certified).points
                for h in quarters
            ]
            assert points == sorted(points), (skill, certified)
            assert POLICY.skill.min_points <= points[0] and points[-1] <= POLICY.skill.max_points


def test_a_stored_valuation_is_recomputed_equal_from_the_policy_text() -> None:
    for valuation in (
        value_time(POLICY, hours=3.5, intensity="heavy", slot="weekend"),
        value_skill(POLICY, hours=0.75, skill="digital_help", is_certified=True),
    ):
        stored = valuation.to_json()
        assert Valuation.from_json(stored) == valuation
        assert recompute(policy_text(), stored["inputs"]) == valuation


def _policy(**replace: str) -> str:
    """The published policy's text with lines replaced (``old line`` → ``new line``)."""
    text = policy_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


POLICY_ERRORS = [
    # (old line, new line), what the error names
    (('version = "2026-11-1"', ""), "version: missing"),
    (("step = 1 ", "step = 0 "), "step: must be ≥ 1"),
    (("max = 12", "max = 25"), "hours.max: at most 24"),
    (("min = 0.25", "min = 0.3"), "hours.min: 0.3 is not a multiple"),
    (("max = 12", "max = 0.1"), "hours.min: 0.25 is greater than hours.max"),
    (("max_points = 240", "max_points = 0"), "time.min_points: 1 is greater than max_points 0"),
    (("base_rate = 10 ", "base_rate = -10 "), "time.base_rate: must be > 0"),
    (("weight = 0.8", "weight = 0"), "time.intensity.light.weight: must be > 0"),
    (("weight = 0.8", 'weight = "0.8"'), "time.intensity.light.weight: must be a number"),
    (("weight = 0.8", "weigth = 0.8"), "time.intensity.light.weigth: unknown field"),
    (("[time.slots.night]", "[time.slots.Night]"), "time.slots.Night: a name is lower case"),
    (("certification = 1.25", "certification = 0.9"), "skill.certification: must be ≥ 1"),
    (("scarcity = 1.0", "scarcity = -1"), "skill.skills.haircut.scarcity: must be > 0"),
    (('name_zh = "理发"', 'name_zh = ""'), "skill.skills.haircut.name_zh: must be a non-empty"),
    (("[skill]", "[skills]"), "skills: unknown field"),
    (("[hours]", "hours = 3\n[hourz]"), "hourz: unknown field"),
    (("step = 1 ", "step = [1 "), "not valid TOML"),
]


@pytest.mark.parametrize(("change", "message"), POLICY_ERRORS, ids=[m for _, m in POLICY_ERRORS])
def test_a_bad_policy_is_refused_naming_the_field(change: tuple[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace(".", r"\.")):
        load_policy(_policy(**{change[0]: change[1]}))


def test_points_bounds_must_be_multiples_of_the_step() -> None:
    with pytest.raises(PolicyError, match=r"time\.min_points: 1 is not a multiple of step 5"):
        load_policy(_policy(**{"step = 1 ": "step = 5 "}))


def test_the_published_policy_parses_and_names_every_choice_in_both_languages() -> None:
    policy: Policy = load_policy(policy_text())
    choices = [*policy.time.intensities.values(), *policy.time.slots.values()]
    choices += list(policy.skill.skills.values())
    assert len(choices) == 3 + 5 + 7
    assert all(c.name_zh and c.name_en and c.weight > 0 for c in choices)


LIFECYCLE = [
    ("proposed", "both_confirmed", "confirmed"),
    ("confirmed", "approve", "approved"),
    ("proposed", "reject", "rejected"),
    ("confirmed", "reject", "rejected"),
    ("proposed", "withdraw", "withdrawn"),
    ("confirmed", "withdraw", "withdrawn"),
    ("proposed", "approve", None),  # approve before both confirmed
    ("rejected", "approve", None),
    ("approved", "approve", None),
    ("withdrawn", "approve", None),
    ("approved", "reject", None),
    ("approved", "withdraw", None),
    ("rejected", "withdraw", None),
    ("confirmed", "both_confirmed", None),
]


@pytest.mark.parametrize(("status", "action", "to"), LIFECYCLE)
def test_the_lifecycle(status: str, action: str, to: str | None) -> None:
    if to is None:
        with pytest.raises(InvalidTransition, match=f"that is {status} cannot"):
            next_status(status, action)
    else:
        assert next_status(status, action) == to


# --- the message -----------------------------------------------------------------------------

MESSAGE = {
    "decision": "approved",
    "hours": 2.5,
    "description": "陪王阿姨去社区医院复诊，帮她排队挂号、拿药，再送她回家里休息",
    "points": 45,
    "reason": "王阿姨已确认",
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("decision", ["approved", "rejected"])
def test_the_decision_message_fills_every_placeholder(language: str, decision: str) -> None:
    key, values = contribution_values(MESSAGE | {"decision": decision})
    assert key == f"contribution.notify.{decision}"
    text = render(key, values, language)
    assert "{" not in text and "}" not in text
    assert "2.5" in text and "陪王阿姨去社区医院" in text
    assert len(values["what"]) <= 24 and values["what"].endswith("…")  # one SMS, not a letter
    assert ("45" in text) == (decision == "approved")
    assert ("王阿姨已确认" in text) == (decision == "rejected")


def test_every_contribution_message_is_reachable_and_nothing_else_is_invented() -> None:
    reachable = {catalog_key("contribution_decision", decision=d) for d in ("approved", "rejected")}
    for language in LANGUAGES:
        assert {k for k in catalog(language) if k.startswith("contribution.")} == reachable
    with pytest.raises(RenderError):
        contribution_values(MESSAGE | {"decision": "maybe"})


# --- over the real HTTP app ------------------------------------------------------------------


class Client:
    """One signed-in person talking to the app."""

    def __init__(self, cloud: CloudUnderTest, login: DemoLogin | str) -> None:
        """Sign ``login`` in, or share the session of a token (a staff authenticator code is
        accepted once, so concurrent clients of one worker share one session)."""
        self.http = httpx.Client(base_url=cloud.url, timeout=30)
        if isinstance(login, str):
            self.token = login
        else:
            response = self.http.post("/api/v1/session", json=login.body(int(time.time() * 1000)))
            assert response.status_code == 200, response.text
            self.token = str(response.json()["token"])
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.http.post(f"/api/v1{path}", **kwargs)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/api/v1{path}", params=params)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def people(cloud: CloudUnderTest) -> Iterator[dict[str, Client]]:
    app = cloud.server.app
    install(app, app.state.services)
    clients = {
        name: Client(cloud, login)
        for name, login in (
            ("wang", RESIDENT_1),
            ("li", RESIDENT_2),
            ("zhang", ZHANG),
            ("chen", CHEN),
        )
    }
    yield clients
    for client in clients.values():
        client.close()


def balance(cloud: CloudUnderTest, person_id: str) -> int:
    with cloud.store.snapshot() as db:
        return SqlLedger(db).account(f"mem:{person_id}").posted


def credits_of(cloud: CloudUnderTest, contribution_id: str) -> list[Any]:
    return cloud.store.read(
        "SELECT kind, amount, credit_account, actor, refs FROM transfers WHERE idempotency_key = ?",
        (f"contribution:{contribution_id}",),
    )


def time_body(**more: Any) -> dict[str, Any]:
    return {
        "kind": "time",
        "description": "帮李叔叔买菜 Shopping for Uncle Li",
        "hours": 2,
        "intensity": "standard",
        "slot": "daytime",
    } | more


def recorded(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/contributions", body)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def confirmed(people: dict[str, Client], body: dict[str, Any] | None = None) -> str:
    """Auntie Wang gave 2 h to the community (20 points); chen confirmed it for the community."""
    made = recorded(people["wang"], body or time_body())
    response = people["chen"].post(f"/contributions/{made['id']}/confirm")
    assert response.json()["status"] == "confirmed", response.text
    return str(made["id"])


def test_recorded_confirmed_approved_credits_the_provider_exactly_once(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    wang, li, zhang = people["wang"], people["li"], people["zhang"]
    before = balance(cloud, "per_1")
    made = recorded(wang, time_body(beneficiary_id="per_2"))
    assert (made["status"], made["points"], made["provider_id"]) == ("proposed", 20, "per_1")
    assert made["provider_confirmed_ms"] is not None and made["beneficiary_confirmed_ms"] is None
    assert [f["name"] for f in made["breakdown"]["factors"]][:4] == [
        "hours",
        "intensity",
        "slot",
        "base_rate",
    ]
    assert made["breakdown"]["policy_version"] == POLICY.version
    assert "created_by" not in made  # who did what is for staff
    cid = made["id"]

    early = zhang.post(f"/contributions/{cid}/approve", {"reason": "too early"})
    assert (early.status_code, early.json()["code"]) == (409, "invalid_transition")
    again = wang.post(f"/contributions/{cid}/confirm")
    assert (again.status_code, again.json()["code"]) == (409, "already_confirmed")

    confirmation = li.post(f"/contributions/{cid}/confirm")
    assert confirmation.status_code == 200, confirmation.text
    assert confirmation.json()["status"] == "confirmed"
    assert balance(cloud, "per_1") == before  # confirmed is not credited

    approved = zhang.post(f"/contributions/{cid}/approve", {"reason": "李叔叔确认了"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["credit"]["status"] == "recorded"
    assert balance(cloud, "per_1") == before + 20

    twice = zhang.post(f"/contributions/{cid}/approve", {"reason": "again"})
    assert (twice.status_code, twice.json()["code"]) == (409, "invalid_transition")
    assert balance(cloud, "per_1") == before + 20
    (credit,) = credits_of(cloud, cid)
    assert (credit["kind"], credit["amount"], credit["credit_account"], credit["actor"]) == (
        "time_credit",
        20,
        "mem:per_1",
        "per_3",
    )
    assert credit["refs"] == f'[["contribution", "{cid}"]]'

    seen = wang.get(f"/contributions/{cid}").json()
    assert (seen["status"], seen["reason"]) == ("approved", "李叔叔确认了")
    staff_view = zhang.get(f"/contributions/{cid}").json()
    assert (staff_view["decided_by"], staff_view["beneficiary_confirmed_by"]) == ("per_3", "per_2")
    (message,) = cloud.store.read(
        "SELECT person_id, kind, params FROM notifications WHERE key = ?",
        (f"contribution_decision:{cid}",),
    )
    assert (message["person_id"], message["kind"]) == ("per_1", "contribution_decision")
    movements = wang.get("/me/ledger").json()["movements"]
    assert [(m["kind"], m["points"], m["for"]) for m in movements[:1]] == [
        ("time_credit", 20, {"contribution": cid})
    ]


def test_the_decision_message_is_delivered(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    cid = confirmed(people)
    assert (
        people["zhang"].post(f"/contributions/{cid}/approve", {"reason": "ok"}).status_code == 200
    )
    deadline = time.monotonic() + 15
    while True:
        row = cloud.store.read_one(
            "SELECT status, last_error FROM notifications WHERE key = ?",
            (f"contribution_decision:{cid}",),
        )
        assert row is not None
        if row["status"] != "queued":
            break
        assert time.monotonic() < deadline, "the decision was not delivered"
        time.sleep(0.05)
    assert (row["status"], row["last_error"]) == ("sent", None)


def test_two_approvals_at_once_credit_once(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    before = balance(cloud, "per_1")
    cid = confirmed(people)
    workers = [people["zhang"], Client(cloud, people["zhang"].token)]
    start = threading.Barrier(len(workers))
    answers: list[int] = []

    def approve(client: Client) -> None:
        start.wait()
        answers.append(client.post(f"/contributions/{cid}/approve", {"reason": "ok"}).status_code)

    threads = [threading.Thread(target=approve, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    workers[1].close()
    assert sorted(answers) == [200, 409]
    assert balance(cloud, "per_1") == before + 20
    assert len(credits_of(cloud, cid)) == 1


def test_approve_after_reject_is_refused_and_credits_nothing(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    before = balance(cloud, "per_1")
    cid = confirmed(people)
    no_reason = people["zhang"].post(f"/contributions/{cid}/reject", {})
    assert (no_reason.status_code, no_reason.json()["field"]) == (422, "body.reason")
    rejected = people["zhang"].post(f"/contributions/{cid}/reject", {"reason": "没有记录"})
    assert rejected.json()["status"] == "rejected", rejected.text
    approve = people["zhang"].post(f"/contributions/{cid}/approve", {"reason": "changed my mind"})
    assert (approve.status_code, approve.json()["code"]) == (409, "invalid_transition")
    assert balance(cloud, "per_1") == before
    assert credits_of(cloud, cid) == []
    message = cloud.store.read_one(
        "SELECT params FROM notifications WHERE key = ?", (f"contribution_decision:{cid}",)
    )
    assert message is not None and '"decision": "rejected"' in message["params"]


def test_a_social_worker_may_not_approve_what_they_recorded_or_vouched_for(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    wang, zhang, chen = people["wang"], people["zhang"], people["chen"]
    before = balance(cloud, "per_1")
    # zhang records hours for Auntie Wang, who is not online: she confirms later herself.
    made = recorded(zhang, time_body(on_behalf_of="per_1"))
    cid = made["id"]
    assert (made["provider_id"], made["created_by"]) == ("per_1", "per_3")
    assert made["provider_confirmed_ms"] is None
    assert zhang.post(f"/contributions/{cid}/confirm").json()["status"] == "proposed"
    waits = chen.post(f"/contributions/{cid}/confirm")
    assert (waits.status_code, waits.json()["code"]) == (409, "awaiting_provider")
    assert wang.post(f"/contributions/{cid}/confirm").json()["status"] == "confirmed"
    own = zhang.post(f"/contributions/{cid}/approve", {"reason": "mine"})
    assert (own.status_code, own.json()["code"]) == (403, "forbidden")
    assert balance(cloud, "per_1") == before
    assert chen.post(f"/contributions/{cid}/approve", {"reason": "ok"}).status_code == 200
    assert balance(cloud, "per_1") == before + 20

    # chen confirmed this one for the community: zhang approves it, not chen.
    other = confirmed(people)
    vouched = chen.post(f"/contributions/{other}/approve", {"reason": "mine"})
    assert (vouched.status_code, vouched.json()["code"]) == (403, "forbidden")
    assert zhang.post(f"/contributions/{other}/approve", {"reason": "ok"}).status_code == 200
    assert balance(cloud, "per_1") == before + 40


def test_above_the_threshold_a_second_worker_approves_and_the_provider_is_credited_once(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    before = balance(cloud, "per_1")
    made = recorded(
        people["wang"], time_body(hours=12, intensity="heavy", slot="night", beneficiary_id="per_2")
    )
    assert made["points"] > 200  # above the second-approver threshold
    assert people["li"].post(f"/contributions/{made['id']}/confirm").json()["status"] == "confirmed"
    path = f"/contributions/{made['id']}/approve"
    first = people["zhang"].post(path, {"reason": "a long night"})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "awaiting_second_approver"
    again = people["zhang"].post(path, {"reason": "a long night"})  # the same worker: still one
    assert again.json()["status"] == "awaiting_second_approver"
    assert balance(cloud, "per_1") == before
    assert people["wang"].get(f"/contributions/{made['id']}").json()["status"] == "confirmed"
    second = people["chen"].post(path, {"reason": "agreed"})
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "approved"
    assert balance(cloud, "per_1") == before + made["points"]
    late = people["zhang"].post(path, {"reason": "again"})
    assert (late.status_code, late.json()["code"]) == (409, "invalid_transition")
    assert balance(cloud, "per_1") == before + made["points"]
    (request,) = cloud.store.read(
        "SELECT requested_by, decided_by, status FROM ledger_requests WHERE key = ?",
        (f"contribution:{made['id']}",),
    )
    assert (request["requested_by"], request["decided_by"], request["status"]) == (
        "per_3",
        "per_5",
        "approved",
    )


def test_time_credits_count_against_the_workers_daily_cap(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    zhang = people["zhang"]
    cid = confirmed(people, time_body(hours=12, intensity="standard", slot="daytime"))  # 120
    for n in range(9):  # 1800 points of valuation credits
        movement = {"key": f"cap:{n}", "kind": "valuation_credit", "amount": 200, "member": "per_2"}
        assert zhang.post("/ledger/movements", movement).status_code == 200
    assert zhang.post(f"/contributions/{cid}/approve", {"reason": "ok"}).status_code == 200
    over = zhang.post(
        "/ledger/movements",
        {"key": "cap:9", "kind": "valuation_credit", "amount": 100, "member": "per_2"},
    )
    assert (over.status_code, over.json()["code"]) == (422, "insider_cap")  # 1920 + 100 > 2000
    report = zhang.get("/ledger/issuance").json()
    assert [r["issued"] for r in report if r["worker"] == "per_3"] == [1920]


def test_the_provider_withdraws_before_a_decision(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    wang, li = people["wang"], people["li"]
    made = recorded(wang, time_body(beneficiary_id="per_2"))
    cid = made["id"]
    not_theirs = li.post(f"/contributions/{cid}/withdraw", {"reason": "not mine"})
    assert (not_theirs.status_code, not_theirs.json()["code"]) == (403, "forbidden")
    withdrawn = wang.post(f"/contributions/{cid}/withdraw", {"reason": "写错了"})
    assert withdrawn.json()["status"] == "withdrawn", withdrawn.text
    late = li.post(f"/contributions/{cid}/confirm")
    assert (late.status_code, late.json()["code"]) == (409, "invalid_transition")
    approve = people["zhang"].post(f"/contributions/{cid}/approve", {"reason": "ok"})
    assert (approve.status_code, approve.json()["code"]) == (409, "invalid_transition")


def test_a_skill_for_a_neighbour_is_credited_as_skill_credit(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    body = {
        "kind": "skill",
        "description": "修好了李叔叔的电饭煲",
        "hours": 2,
        "skill": "appliance_repair",
        "certified": True,
        "beneficiary_id": "per_2",
    }
    made = recorded(people["wang"], body)
    assert made["points"] == 56
    assert people["li"].post(f"/contributions/{made['id']}/confirm").status_code == 200
    assert (
        people["zhang"].post(f"/contributions/{made['id']}/approve", {"reason": "ok"}).status_code
        == 200
    )
    (credit,) = credits_of(cloud, made["id"])
    assert (credit["kind"], credit["amount"]) == ("skill_credit", 56)


def test_lists_are_paginated_and_residents_see_only_their_own(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    wang, li, zhang = people["wang"], people["li"], people["zhang"]
    for n in range(3):
        recorded(wang, time_body(description=f"值守 {n}"))
    to_li = recorded(wang, time_body(beneficiary_id="per_2"))
    li_own = recorded(li, time_body(description="Uncle Li's own"))
    confirmed_id = confirmed(people)

    page = zhang.get("/contributions", limit=2, offset=0).json()
    assert (page["total"], len(page["contributions"]), page["limit"]) == (6, 2, 2)
    rest = zhang.get("/contributions", limit=2, offset=2).json()["contributions"]
    rest += zhang.get("/contributions", limit=2, offset=4).json()["contributions"]
    ids = {c["id"] for c in page["contributions"] + rest}
    assert len(ids) == 6
    only = zhang.get("/contributions", status="confirmed").json()
    assert [c["id"] for c in only["contributions"]] == [confirmed_id]
    assert zhang.get("/contributions", kind="skill").json()["total"] == 0

    seen_by_li = {c["id"] for c in li.get("/contributions").json()["contributions"]}
    assert seen_by_li == {to_li["id"], li_own["id"]}  # given or received, nothing else
    assert li.get(f"/contributions/{confirmed_id}").status_code == 404
    assert li.get(f"/contributions/{to_li['id']}").status_code == 200
    assert wang.get("/contributions").json()["total"] == 5
    assert zhang.get("/contributions", status="maybe").status_code == 422


BAD_BODIES = [
    # body, status, code, field
    ({"kind": "time"}, 422, "invalid_request", "body.description"),
    (time_body(kind="chores"), 422, "invalid_request", "body.kind"),
    (time_body(hours=0), 422, "invalid_request", "body.hours"),
    (time_body(hours=25), 422, "invalid_request", "body.hours"),
    (time_body(hours=0.3), 422, "invalid_hours", "hours"),
    (time_body(hours=12.5), 422, "invalid_hours", "hours"),
    (time_body(hours="two"), 422, "invalid_request", "body.hours"),
    (time_body(intensity="extreme"), 422, "unknown_intensity", "intensity"),
    (time_body(slot="midnight"), 422, "unknown_slot", "slot"),
    (time_body(intensity=None), 422, "invalid", "intensity"),
    (time_body(skill="haircut"), 422, "invalid", "skill"),
    (time_body(certified=True), 422, "invalid", "certified"),
    (time_body(intensity="DROP TABLE"), 422, "invalid_request", "body.intensity"),
    (
        {"kind": "skill", "description": "x", "hours": 1, "skill": "juggling"},
        422,
        "unknown_skill",
        "skill",
    ),
    ({"kind": "skill", "description": "x", "hours": 1}, 422, "invalid", "skill"),
    (
        {"kind": "skill", "description": "x", "hours": 1, "skill": "haircut", "slot": "night"},
        422,
        "invalid",
        "slot",
    ),
    (time_body(description=""), 422, "invalid_request", "body.description"),
    (time_body(description="x" * 201), 422, "invalid_request", "body.description"),
    (time_body(points=500), 422, "invalid_request", "body.points"),  # points are not declared
    (time_body(beneficiary_id="per_1"), 422, "provider_is_beneficiary", "beneficiary_id"),
    (time_body(beneficiary_id="per_3"), 404, "not_found", "beneficiary_id"),  # a worker
    (time_body(beneficiary_id="per_nobody"), 404, "not_found", "beneficiary_id"),
    (time_body(on_behalf_of="per_2"), 403, "forbidden", None),
]


def test_bad_input_gets_a_clear_error_and_changes_nothing(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    wang = people["wang"]
    before = cloud.store.dump()
    problems = []
    for body, status, code, field in BAD_BODIES:
        response = wang.post("/contributions", body)
        got = (response.status_code, response.json().get("code"), response.json().get("field"))
        if got != (status, code, field):
            problems.append(f"{body}: expected {(status, code, field)}, got {got} {response.text}")
    for raw in (b'{"kind": "time", "hours": Infinity}', b"[]", b"not json", b""):
        response = wang.post(
            "/contributions", content=raw, headers={"Content-Type": "application/json"}
        )
        if response.status_code != 422:
            problems.append(f"{raw!r}: {response.status_code} {response.text}")
    worker = people["zhang"].post("/contributions", time_body())  # whom for?
    if (worker.status_code, worker.json()["field"]) != (422, "on_behalf_of"):
        problems.append(f"a worker naming no resident: {worker.status_code} {worker.text}")
    nan = people["zhang"].post(
        "/contributions/ctb_none/approve",
        content=b'{"reason": NaN}',
        headers={"Content-Type": "application/json"},
    )
    if nan.status_code != 422:
        problems.append(f"approve with NaN: {nan.status_code}")
    assert not problems, "\n".join(problems)
    after = cloud.store.dump()
    for table in ("contributions", "transfers", "notifications", "ledger_requests"):
        assert after[table] == before[table], table


# --- another community -----------------------------------------------------------------------

RIVER = "river-side"
RIVER_RESIDENT = DemoLogin("resident", "River resident", "13900000019", "864213")
RIVER_WORKER = DemoLogin(
    "social_worker",
    "River worker",
    "river-sw2",
    "river-social-worker",
    totp_secret="JBSWY3DPEHPK3PXS",
)


def add_river_side(cloud: CloudUnderTest) -> None:
    """A second community with one resident and one social worker, as the seed makes ours."""
    now = int(time.time() * 1000)
    with cloud.store.write() as db:
        db.execute("INSERT INTO communities (id, name) VALUES (?, 'River Side')", (RIVER,))
        for person_id, login in (("per_river_r", RIVER_RESIDENT), ("per_river_w", RIVER_WORKER)):
            is_resident = login.role == "resident"
            db.execute(
                "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
                " totp_secret, created_ms) VALUES (?,?,?,?,?,?,?,?)",
                (
                    person_id,
                    RIVER,
                    login.role,
                    login.name,
                    person_id if is_resident else login.login,
                    hash_secret(login.secret),
                    None
                    if is_resident
                    else seal_totp_secret(cloud.keys, person_id, login.totp_secret or ""),
                    now,
                ),
            )
            if is_resident:
                db.execute(
                    "INSERT INTO resident_profiles (person_id, phone) VALUES (?, ?)",
                    (person_id, login.login),
                )
                SqlLedger(db).open_account(
                    f"mem:{person_id}", "member", limit=0, person_id=person_id, name=login.name
                )


def test_another_communitys_contribution_is_not_found(
    cloud: CloudUnderTest, people: dict[str, Client]
) -> None:
    add_river_side(cloud)
    cid = confirmed(people)
    river_worker, river_resident = Client(cloud, RIVER_WORKER), Client(cloud, RIVER_RESIDENT)
    try:
        before = cloud.store.dump()
        for client, method, path, body in (
            (river_worker, "GET", f"/contributions/{cid}", None),
            (river_worker, "POST", f"/contributions/{cid}/approve", {"reason": "x"}),
            (river_worker, "POST", f"/contributions/{cid}/reject", {"reason": "x"}),
            (river_worker, "POST", f"/contributions/{cid}/confirm", None),
            (river_worker, "POST", "/contributions", time_body(on_behalf_of="per_1")),
            (river_resident, "GET", f"/contributions/{cid}", None),
            (river_resident, "POST", f"/contributions/{cid}/withdraw", {"reason": "x"}),
            (river_resident, "POST", "/contributions", time_body(beneficiary_id="per_2")),
        ):
            response = client.http.request(method, f"/api/v1{path}", json=body)
            assert (response.status_code, response.json()["code"]) == (404, "not_found"), (
                method,
                path,
                response.text,
            )
        assert cloud.store.dump() == before
        assert river_worker.get("/contributions").json()["total"] == 0
        # Their own: a resident of theirs gives to their community; nothing of ours in it.
        theirs = recorded(river_resident, time_body())
        listed = river_worker.get("/contributions").json()
        assert [c["id"] for c in listed["contributions"]] == [theirs["id"]]
        assert "per_1" not in str(listed) and cid not in str(listed)
    finally:
        river_worker.close()
        river_resident.close()


def test_maintainers_are_not_admitted(cloud: CloudUnderTest, people: dict[str, Client]) -> None:
    liu = Client(cloud, _MAINTAINER)
    try:
        assert liu.get("/contributions").status_code == 403
        assert liu.post("/contributions", time_body(on_behalf_of="per_1")).status_code == 403
    finally:
        liu.close()


def test_install_is_idempotent(cloud: CloudUnderTest) -> None:
    app = cloud.server.app
    install(app, app.state.services)
    service = app.state.services.contributions
    paths_before = len(app.openapi()["paths"])
    install(app, app.state.services)
    assert app.state.services.contributions is service
    app.openapi_schema = None
    assert len(app.openapi()["paths"]) == paths_before
