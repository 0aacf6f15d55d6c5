"""Property-based fuzzing of "bad input gets a clear error and changes nothing".

- Cloud ingest: any payload on any topic of a known or unknown device never raises, and a payload
  the contract refuses leaves the store exactly as it was.
- Controller core: any command or configuration payload that is not validly signed never
  pulses and changes nothing but the refused-input counter.
- HTTP: random bodies, ids and tokens never get a 5xx.
The big versions of these runs belong in bench/; these are sized to a few seconds each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import CloudUnderTest, RecordingPublisher, require_system
from contract_examples import valid_payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_api.devices.service import DeviceService
from cloud_api.keys import CloudKeys, load_or_create_keys
from cloud_api.seed import LOGINS, seed_demo
from cloud_api.store import Store
from linli.clock import FakeClock
from linli.contract import BY_NAME, TOPICS, ContractError, decode
from locker_controller.core.decide import decide
from locker_controller.core.model import (
    CommandArrived,
    Compartment,
    ConfigArrived,
    ControllerState,
    Identity,
    PulseLatch,
)
from station.broker import MosquittoBroker, mosquitto_binary

NOW_MS = 1_800_000_000_000

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid payload with one field (possibly nested in ``body``) replaced, dropped or added."""
    obj = json.loads(valid)
    target = obj["body"] if "body" in obj and draw(st.booleans()) else obj
    keys = sorted(target)
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "add" or not keys:
        target[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    else:
        key = draw(st.sampled_from(keys))
        if action == "drop":
            del target[key]
        else:
            target[key] = draw(json_values)
    return json.dumps(obj, allow_nan=True).encode()


def payloads(name: str, keys: CloudKeys) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
        mutated(valid_payload(name, "locker-a", keys, NOW_MS)),
    )


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DeviceService, Store]]:
    base = tmp_path_factory.mktemp("fuzz-cloud")
    store = Store(base / "cloud.sqlite3")
    store.migrate()
    keys = load_or_create_keys(base / "secrets")
    seed_demo(store, keys, NOW_MS)
    service = DeviceService(store, keys, RecordingPublisher(), FakeClock(wall_ms=NOW_MS))
    yield service, store
    store.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_cloud_ingest_never_raises_and_refused_input_changes_nothing(
    ingest: tuple[DeviceService, Store], data: st.DataObject
) -> None:
    service, store = ingest
    spec = data.draw(st.sampled_from([s for s in TOPICS if s.direction == "device_to_cloud"]))
    device_id = data.draw(st.sampled_from(["locker-a", "locker-b", "no-such-device"]))
    keys: CloudKeys = service._keys
    payload = data.draw(payloads(spec.name, keys))
    before = store.dump()
    service.handle(f"linli/v1/{device_id}/{spec.name}", payload)
    try:
        decode(spec.model, payload, device_id)
        is_valid = device_id != "no-such-device" and bool(payload)
    except ContractError:
        is_valid = False
    if not is_valid:
        assert store.dump() == before


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_controller_never_pulses_for_anything_not_validly_signed(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    keys = _controller_keys(tmp_path_factory)
    state = ControllerState(
        identity=Identity(
            device_id="locker-a", cloud_keys={keys.key_id: keys.public_key}, code_hash_key=b"k" * 32
        ),
        compartments={
            n: Compartment(name=n, latch="locked", door="closed", occupancy="present")
            for n in ("A1", "A2")
        },
    )
    name = data.draw(st.sampled_from(["cmd", "cfg/desired"]))
    payload = data.draw(payloads(name, keys))
    event = CommandArrived(payload) if name == "cmd" else ConfigArrived(payload)
    new_state, outputs = decide(state, event, FakeClock(wall_ms=NOW_MS).now())
    if _is_validly_signed(payload, keys, name):
        return  # a mutation that happened to keep the signed body intact: not bad input
    assert not any(isinstance(o, PulseLatch) for o in outputs)
    assert new_state.compartments == state.compartments
    assert new_state.window == state.window and new_state.grants == state.grants
    assert new_state.cfg_version == state.cfg_version and new_state.time == state.time


_KEYS: dict[str, CloudKeys] = {}


def _controller_keys(factory: pytest.TempPathFactory) -> CloudKeys:
    if "k" not in _KEYS:
        _KEYS["k"] = load_or_create_keys(factory.mktemp("fuzz-keys"))
    return _KEYS["k"]


def _is_validly_signed(payload: bytes, keys: CloudKeys, name: str) -> bool:
    from linli.contract import verify_envelope

    try:
        verify_envelope(
            payload, {keys.key_id: keys.public_key}, kind="cmd" if name == "cmd" else "cfg"
        )
    except ContractError:
        return False
    return BY_NAME[name].signed


# --- HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_cloud(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CloudUnderTest, httpx.Client, dict[str, str]]]:
    if mosquitto_binary() is None:
        require_system("mosquitto binary not installed (apt-get install mosquitto)")
    base: Path = tmp_path_factory.mktemp("fuzz-http")
    with MosquittoBroker(base / "mosquitto") as broker:
        cloud = CloudUnderTest(base / "cloud", broker.info)
        try:
            with httpx.Client(base_url=cloud.url, timeout=10) as client:
                tokens = {
                    login.role: client.post(
                        "/api/v1/session", json=login.body(int(time.time() * 1000))
                    ).json()["token"]
                    for login in LOGINS
                }
                yield cloud, client, tokens
        finally:
            cloud.stop()


ids = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=json_values,
    identifier=ids,
    role=st.sampled_from(["resident", "maintainer", "social_worker", None, "garbage"]),
    route=st.sampled_from(["session", "open", "item", "events", "command", "me", "pickups"]),
)
def test_http_never_answers_bad_input_with_a_5xx(
    fuzz_cloud: tuple[CloudUnderTest, httpx.Client, dict[str, str]],
    body: Any,
    identifier: str,
    role: str | None,
    route: str,
) -> None:
    _, client, tokens = fuzz_cloud
    headers = {}
    if role == "garbage":
        headers["Authorization"] = "Bearer x" + identifier.encode("utf-8", "replace").hex()[:60]
    elif role is not None:
        headers["Authorization"] = f"Bearer {tokens[role]}"
    segment = quote(identifier, safe="") or "x"  # every byte of the id reaches the route
    if route == "session":
        response = client.post(
            "/api/v1/session",
            content=json.dumps(body, allow_nan=True),
            headers=headers | {"Content-Type": "application/json"},
        )
    elif route == "open":
        response = client.post(
            f"/api/v1/me/pickups/{segment}/open",
            content=json.dumps(body, allow_nan=True),
            headers=headers | {"Content-Type": "application/json"},
        )
    elif route == "item":
        response = client.get(f"/api/v1/items/{segment}", headers=headers)
    elif route == "events":
        response = client.get(f"/api/v1/devices/{segment}/events", headers=headers)
    elif route == "command":
        response = client.get(f"/api/v1/commands/{segment}", headers=headers)
    elif route == "me":
        response = client.get("/api/v1/me", headers=headers)
    else:
        response = client.get("/api/v1/me/pickups", headers=headers)
    assert response.status_code < 500, (route, response.status_code, response.text[:300])


@pytest.mark.parametrize(
    "content",
    [b"Infinity", b'{"login": NaN, "secret": "246810"}', b'{"login": "x", "secret": -Infinity}'],
    ids=["infinity", "nan-login", "infinite-secret"],
)
def test_non_finite_numbers_are_refused_not_a_500(
    fuzz_cloud: tuple[CloudUnderTest, httpx.Client, dict[str, str]], content: bytes
) -> None:
    _, client, _ = fuzz_cloud
    response = client.post(
        "/api/v1/session", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_a_refused_body_is_never_echoed_back(
    fuzz_cloud: tuple[CloudUnderTest, httpx.Client, dict[str, str]],
) -> None:
    _, client, _ = fuzz_cloud
    response = client.post("/api/v1/session", json={"secret": "135790-secret-pin", "extra": 1})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.login", "body.extra"]
    assert "135790-secret-pin" not in response.text
