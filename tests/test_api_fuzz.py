"""Schemathesis over every operation of the cloud's OpenAPI schema, as every role and anonymous.

For each operation and each caller (a resident, a social worker, a maintainer, nobody), requests
are generated from the schema: valid ones and ones that break it (schemathesis' positive and
negative modes), with path ids either generated or taken from the seeded state (so requests get
past the "no such thing" and reach the code behind it). Every answer must be:

- never a 5xx;
- a 4xx only with the one error body, ``{"code": str, "message": str, "field": str | null}``.

The schema is the app's own (``app.openapi()``), so a new operation is fuzzed the day it lands.
Runs are derandomized (the same examples every run) and bounded: about a minute for the whole
module; ``bench/api_fuzz.py`` runs the same checks with many more examples and reports latency.
It reuses ``tests/test_fuzz.py``'s cloud (``fuzz_cloud``: seeded, on a private Mosquitto, one
token per role) and the access matrix's seeded path values and route declarations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from conftest import CloudUnderTest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Err
from test_access_matrix import OPENAPI, ROUTES, add_matrix_alerts, seeded_path_values
from test_fuzz import fuzz_cloud  # noqa: F401 (the fixture: a seeded cloud and a token per role)

from cloud_api.access import Access
from cloud_api.seed import LOGINS
from cloud_api.store import Store

RESIDENT_1 = LOGINS[0]
SCHEMA = schemathesis.openapi.from_dict(OPENAPI)
ROLES: tuple[str | None, ...] = ("resident", "social_worker", "maintainer", "terminal", None)
"""Callers: a person of each role (a session), the valuation terminal (its token, and a
resident's ticket), and nobody."""
ACCESS: dict[tuple[str, str], Access | str] = {(m, p): a for m, p, a in ROUTES}
ERROR_KEYS = {"code", "message", "field"}


def _operation_order(operation: tuple[str, str]) -> tuple[bool, str, str]:
    method, path = operation
    # Sign-out last: it ends the session the later operations of that role would use.
    return (method == "DELETE" and path.endswith("/session"), path, method)


def _operations() -> list[tuple[str, str]]:
    found = []
    for result in SCHEMA.get_all_operations():
        if isinstance(result, Err):  # an operation schemathesis cannot read: say which
            raise result.err()
        found.append((result.ok().method.upper(), result.ok().path))
    return sorted(found, key=_operation_order)


OPERATIONS = _operations()

EXAMPLES_ADMITTED = 20
"""Examples per operation for a caller its access admits (public operations: every caller)."""
EXAMPLES_REFUSED = 4
"""Examples per operation for a caller refused before the request is read (401/403)."""


def is_admitted(method: str, path: str, role: str | None) -> bool:
    """Whether the route's declared access lets ``role`` in (anything outside /api/: yes)."""
    access = ACCESS.get((method, path))
    if not isinstance(access, Access) or access.scope == "public":
        return True
    return role is not None and role in access.roles


# --- one call, and what is wrong with its answer ---------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One answered request."""

    status: int
    elapsed_s: float
    problem: str | None


def problem_with(status: int, content: bytes, content_type: str) -> str | None:
    """What is wrong with an answer: a 5xx, or a 4xx without the one error body."""
    if status >= 500:
        return f"a server error {status}: {content[:300]!r}"
    if 400 <= status < 500:
        if not content_type.startswith("application/json"):
            return f"a {status} that is not JSON ({content_type!r}): {content[:200]!r}"
        try:
            body = json.loads(content)
        except ValueError:
            return f"a {status} whose body is not JSON: {content[:200]!r}"
        if not isinstance(body, dict) or not set(body) >= ERROR_KEYS:
            return f"a {status} without code/message/field: {content[:200]!r}"
        if not isinstance(body["code"], str) or not isinstance(body["message"], str):
            return f"a {status} whose code or message is not a string: {content[:200]!r}"
        if body["field"] is not None and not isinstance(body["field"], str):
            return f"a {status} whose field is neither a string nor null: {content[:200]!r}"
    return None


class ApiFuzz:
    """Generates and sends requests for the app's operations against a running cloud."""

    def __init__(self, base_url: str, tokens: dict[str | None, str], known: dict[str, str]):
        self.base_url = base_url
        self.tokens = tokens
        self.known = known
        self.session = requests.Session()
        self._strategies: dict[tuple[str, str], st.SearchStrategy[Case[Any]]] = {}

    def strategy(self, method: str, path: str) -> st.SearchStrategy[Case[Any]]:
        """Valid and invalid requests, path ids generated or taken from the seeded state."""
        if (method, path) not in self._strategies:
            operation = SCHEMA[path][method]
            names = [p["name"] for p in _parameters(method, path) if p["in"] == "path"]
            options = [
                operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
            ]
            if names and all(n in self.known for n in names):
                fixed = {n: self.known[n] for n in names}
                options += [
                    operation.as_strategy(
                        generation_mode=GenerationMode.POSITIVE, path_parameters=fixed
                    ),
                    operation.as_strategy(
                        generation_mode=GenerationMode.NEGATIVE, path_parameters=fixed
                    ),
                ]
            self._strategies[(method, path)] = st.one_of(options)
        return self._strategies[(method, path)]

    def call(self, case: Case[Any], role: str | None) -> Outcome:
        """Send the case as ``role`` (None: without a session) and judge the answer."""
        case.headers.pop("Authorization", None)  # generated from the security scheme
        if role == "terminal":
            case.headers["Authorization"] = f"Terminal {self.tokens['terminal']}"
            case.headers.setdefault("Linli-Ticket", self.tokens["ticket"])
        elif role is not None:
            case.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        started = time.perf_counter()
        response = case.call(base_url=self.base_url, session=self.session, timeout=10)
        elapsed = time.perf_counter() - started
        content_type = next(
            (v[0] for k, v in response.headers.items() if k.lower() == "content-type" and v), ""
        )
        found = problem_with(response.status_code, response.content, content_type)
        if found is not None:
            found += f"\n  as {role or 'anonymous'}: {case.as_curl_command(base_url=self.base_url)}"
        return Outcome(response.status_code, elapsed, found)


def _parameters(method: str, path: str) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = OPENAPI["paths"][path][method.lower()].get("parameters", [])
    return parameters


def terminal_credentials(cloud: CloudUnderTest) -> dict[str | None, str]:
    """The valuation terminal's caller: its token, and Auntie Wang's ticket from its kiosk."""
    terminal = f"{cloud.seed.terminal_id}:{cloud.seed.terminal_token}"
    at_kiosk = requests.post(
        f"{cloud.url}/api/v1/terminal/signin",
        json={"phone": RESIDENT_1.login, "pin": RESIDENT_1.secret},
        headers={"Authorization": f"Terminal {terminal}"},
        timeout=10,
    )
    assert at_kiosk.status_code == 200, at_kiosk.text
    return {"terminal": terminal, "ticket": at_kiosk.json()["ticket"]}


def known_path_values(store: Store) -> dict[str, str]:
    """Path ids that exist in the seeded state (the access matrix's)."""
    return {name: found.value for name, found in seeded_path_values(store).items()}


# --- the test ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_api(fuzz_cloud: tuple[CloudUnderTest, Any, dict[str, str]]) -> Iterator[ApiFuzz]:  # noqa: F811
    cloud, client, tokens = fuzz_cloud
    # The resident is Auntie Wang, who owns the seeded reservation, so her ids lead somewhere.
    now_ms = time.time_ns() // 1_000_000
    signed_in = client.post("/api/v1/session", json=RESIDENT_1.body(now_ms))
    assert signed_in.status_code == 200, signed_in.text
    by_role: dict[str | None, str] = {role: token for role, token in tokens.items()}
    by_role["resident"] = signed_in.json()["token"]
    by_role |= terminal_credentials(cloud)
    add_matrix_alerts(cloud.store)  # an alert and an on-call shift: their ids lead somewhere
    fuzz = ApiFuzz(cloud.url, by_role, known_path_values(cloud.store))
    yield fuzz
    fuzz.session.close()


@pytest.mark.parametrize("role", ROLES, ids=[r or "anonymous" for r in ROLES])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_never_answers_5xx_and_every_4xx_has_the_error_body(
    fuzz_api: ApiFuzz, method: str, path: str, role: str | None
) -> None:
    admitted = is_admitted(method, path, role)

    @settings(
        max_examples=EXAMPLES_ADMITTED if admitted else EXAMPLES_REFUSED,
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=fuzz_api.strategy(method, path))
    def answers_cleanly(case: Case[Any]) -> None:
        outcome = fuzz_api.call(case, role)
        assert outcome.problem is None, outcome.problem

    answers_cleanly()
