"""The device–cloud contract and the small shared pieces beside it (pure: no broker, no network).

Refusal cases are generated from :data:`linli.contract.TOPICS`: a topic added to the registry gets
them all (and the test that every topic has an example fails until someone writes one).
"""

from __future__ import annotations

import json
import os
import stat
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import contract_examples as examples
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from linli.codes import derive_code, derive_device_code_key, hash_code, normalize_code
from linli.contract import (
    BY_NAME,
    MAX_PAYLOAD_BYTES,
    TOPICS,
    Ack,
    BadSignature,
    CommandBody,
    ConfigBody,
    ContractError,
    DeviceMismatch,
    MalformedPayload,
    PayloadTooLarge,
    SignedEnvelope,
    TopicSpec,
    UnknownTopic,
    UnsupportedVersion,
    canonical_json,
    decode,
    encode,
    parse_topic,
    public_key_bytes,
    sign_body,
    subscription,
    topic,
    verify_envelope,
)
from linli.contract.schema import contract_schemas
from linli.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalog, choose_language, t
from linli.identity import DeviceIdentity, IdentityError

DEVICE = "locker-a"
OTHER_DEVICE = "locker-b"
BOOT = "0123456789ab"
WALL_MS = 1_800_000_000_000
SECRET = b"s" * 32
CODE_IN_PAYLOAD = "87654321"
"""A code-like value slipped into bad payloads: no error message may repeat it."""

# A fixed signing key for the signed examples (deterministic: Ed25519 signatures are).
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_ID = "cloud-test"
TRUSTED = {KEY_ID: public_key_bytes(SIGNING_KEY)}


# --- one valid example per topic ----------------------------------------------------------------


def command_body(device_id: str = DEVICE, **changes: Any) -> CommandBody:
    return examples.command_body(device_id, WALL_MS, **changes)


def config_body(device_id: str = DEVICE) -> ConfigBody:
    return examples.config_body(device_id, WALL_MS)


EXAMPLES = examples.EXAMPLES


def example(spec: TopicSpec, device_id: str = DEVICE) -> dict[str, Any]:
    return examples.example(spec.name, device_id, SIGNING_KEY, KEY_ID, WALL_MS)


def payload_of(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def required_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if info.is_required()]


def test_every_topic_has_an_example() -> None:
    assert set(EXAMPLES) == set(BY_NAME), "add an example for each new topic to EXAMPLES"


def test_registry_is_consistent() -> None:
    names = [spec.name for spec in TOPICS]
    assert len(names) == len(set(names))
    for spec in TOPICS:
        assert spec.qos in (0, 1)
        # A device→cloud message names its device, so the decoder can refuse one device
        # speaking for another; a signed one names it inside its signed body.
        if spec.direction == "device_to_cloud":
            assert "device_id" in spec.model.model_fields, spec.name
            assert not spec.signed
        if spec.signed:
            assert spec.model is SignedEnvelope
    assert not BY_NAME["cmd"].retained, "a command must never be retained"
    assert BY_NAME["cmd"].signed and BY_NAME["cfg/desired"].signed
    assert BY_NAME["status"].retained and BY_NAME["state"].retained


# --- generated decode cases --------------------------------------------------------------------

Mutation = Callable[[TopicSpec], bytes]


def _with(spec: TopicSpec, **changes: Any) -> bytes:
    return payload_of(example(spec) | changes)


def _without(field: str) -> Mutation:
    def mutate(spec: TopicSpec) -> bytes:
        data = example(spec)
        del data[field]
        return payload_of(data)

    return mutate


def _wrong_type(field: str) -> Mutation:
    def mutate(spec: TopicSpec) -> bytes:
        value = example(spec)[field]
        wrong: object
        if isinstance(value, bool):
            wrong = "true"
        elif isinstance(value, int):
            wrong = str(value)
        elif isinstance(value, str):
            wrong = 12345
        elif isinstance(value, dict):
            wrong = [value]
        elif isinstance(value, list):
            wrong = {"0": value}
        else:  # None (a nullable field with no value in the example)
            wrong = [CODE_IN_PAYLOAD]
        return _with(spec, **{field: wrong})

    return mutate


def _too_large(spec: TopicSpec) -> bytes:
    data = example(spec)
    return payload_of(data)[:-1] + b', "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'


COMMON_CASES: list[tuple[str, Mutation, type[ContractError], str]] = [
    ("empty", lambda spec: b"", MalformedPayload, "malformed"),
    ("not-json", lambda spec: b"{v: 1, device_id: locker-a", MalformedPayload, "malformed"),
    ("not-utf8", lambda spec: b'{"v": 1, "x": "\xff\xfe"}', MalformedPayload, "malformed"),
    ("json-array", lambda spec: payload_of([example(spec)]), MalformedPayload, "malformed"),
    ("json-string", lambda spec: b'"v"', MalformedPayload, "malformed"),
    ("json-null", lambda spec: b"null", MalformedPayload, "malformed"),
    ("deeply-nested", lambda spec: b"[" * 100_000 + b"]" * 100_000, MalformedPayload, "malformed"),
    ("version-2", lambda spec: _with(spec, v=2), UnsupportedVersion, "unsupported_version"),
    ("version-0", lambda spec: _with(spec, v=0), UnsupportedVersion, "unsupported_version"),
    ("version-missing", _without("v"), UnsupportedVersion, "unsupported_version"),
    ("version-string", lambda spec: _with(spec, v="1"), UnsupportedVersion, "unsupported_version"),
    ("version-true", lambda spec: _with(spec, v=True), UnsupportedVersion, "unsupported_version"),
    ("version-float", lambda spec: _with(spec, v=1.0), UnsupportedVersion, "unsupported_version"),
    ("extra-field", lambda spec: _with(spec, code=CODE_IN_PAYLOAD), MalformedPayload, "malformed"),
    ("too-large", _too_large, PayloadTooLarge, "too_large"),
]


def _cases() -> list[Any]:
    params = []
    for spec in TOPICS:
        for name, mutate, error, reason in COMMON_CASES:
            params.append(pytest.param(spec, mutate, error, reason, id=f"{spec.name}-{name}"))
        for field in required_fields(spec.model):
            params.append(
                pytest.param(
                    spec,
                    _without(field),
                    MalformedPayload,
                    "malformed",
                    id=f"{spec.name}-missing-{field}",
                )
            )
            params.append(
                pytest.param(
                    spec,
                    _wrong_type(field),
                    MalformedPayload,
                    "malformed",
                    id=f"{spec.name}-wrong-type-{field}",
                )
            )
    return params


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_example_round_trips(spec: TopicSpec) -> None:
    data = example(spec)
    message = decode(spec.model, payload_of(data), DEVICE)
    assert message.model_dump(mode="json") == data
    assert decode(spec.model, encode(message), DEVICE) == message


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_payload_of_exactly_the_limit_is_accepted(spec: TopicSpec) -> None:
    payload = payload_of(example(spec))
    padded = payload + b" " * (MAX_PAYLOAD_BYTES - len(payload))
    assert len(padded) == MAX_PAYLOAD_BYTES
    assert decode(spec.model, padded, DEVICE) == decode(spec.model, payload, DEVICE)


@pytest.mark.parametrize(("spec", "mutate", "error", "reason"), _cases())
def test_decode_refuses(
    spec: TopicSpec, mutate: Mutation, error: type[ContractError], reason: str
) -> None:
    payload = mutate(spec)
    with pytest.raises(error) as caught:
        decode(spec.model, payload, DEVICE)
    assert type(caught.value) is error
    assert caught.value.reason == reason
    assert CODE_IN_PAYLOAD not in str(caught.value), "errors never repeat a payload's contents"


@pytest.mark.parametrize(
    "spec", [s for s in TOPICS if "device_id" in s.model.model_fields], ids=lambda s: s.name
)
def test_decode_refuses_a_device_speaking_for_another(spec: TopicSpec) -> None:
    payload = payload_of(example(spec, OTHER_DEVICE))
    assert decode(spec.model, payload).device_id == OTHER_DEVICE  # type: ignore[attr-defined]
    with pytest.raises(DeviceMismatch) as caught:
        decode(spec.model, payload, DEVICE)
    assert caught.value.reason == "wrong_device"


def test_every_contract_error_is_a_value_error_with_a_reason() -> None:
    errors = [UnknownTopic, PayloadTooLarge, MalformedPayload, UnsupportedVersion, DeviceMismatch]
    reasons = {e("x").reason for e in [*errors, BadSignature]}
    assert len(reasons) == 6
    for error in errors:
        assert issubclass(error, ContractError) and issubclass(error, ValueError)
    assert ContractError("x", reason="custom").reason == "custom"


# --- topics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_topic_round_trip(spec: TopicSpec) -> None:
    value = topic(DEVICE, spec.name)
    assert value == f"linli/v1/{DEVICE}/{spec.name}"
    assert parse_topic(value) == (DEVICE, spec)
    assert subscription(spec.name) == f"linli/v1/+/{spec.name}"


@pytest.mark.parametrize(
    "value",
    [
        "linli/v1/locker-a/nope",
        "linli/v1/locker-a/cfg",
        "linli/v1/locker-a/evt/extra",
        "linli/v1/locker-a/",
        "linli/v1/locker-a",
        "linli/v1//evt",
        "linli/v1/Locker-A/evt",
        "linli/v1/+/evt",
        "linli/v1/#/evt",
        "linli/v1/../evt",
        "linli/v1/a/evt",
        "linli/v1/-locker/evt",
        "linli/v1/locker_a/evt",
        "linli/v1/" + "a" * 64 + "/evt",
        "linli/v2/locker-a/evt",
        "other/v1/locker-a/evt",
        "/linli/v1/locker-a/evt",
        "LINLI/v1/locker-a/evt",
        "",
    ],
)
def test_parse_topic_refuses(value: str) -> None:
    with pytest.raises(UnknownTopic) as caught:
        parse_topic(value)
    assert caught.value.reason == "unknown_topic"


@pytest.mark.parametrize(
    ("device_id", "name"),
    [
        ("locker-a", "nope"),
        ("locker-a", "cfg"),
        ("Locker-A", "evt"),
        ("+", "evt"),
        ("#", "evt"),
        ("..", "evt"),
        ("locker/a", "evt"),
        ("a" * 64, "evt"),
        ("", "evt"),
    ],
)
def test_topic_refuses(device_id: str, name: str) -> None:
    with pytest.raises(UnknownTopic):
        topic(device_id, name)


def test_longest_device_id_is_accepted() -> None:
    device_id = "a" * 63
    assert parse_topic(topic(device_id, "evt"))[0] == device_id


# --- envelopes ------------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    body = command_body()
    payload = sign_body(SIGNING_KEY, KEY_ID, body)
    verified = verify_envelope(payload, TRUSTED, kind="cmd")
    assert CommandBody.model_validate(verified) == body
    config = config_body()
    verified_cfg = verify_envelope(sign_body(SIGNING_KEY, KEY_ID, config), TRUSTED, kind="cfg")
    assert ConfigBody.model_validate(verified_cfg) == config


def _envelope() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sign_body(SIGNING_KEY, KEY_ID, command_body()))
    return data


def _flip_first_char(sig: str) -> str:
    return ("B" if sig[0] != "B" else "C") + sig[1:]


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        pytest.param(
            lambda e: e | {"body": e["body"] | {"compartment": "A1"}}, BadSignature, id="body"
        ),
        pytest.param(
            lambda e: e | {"body": e["body"] | {"device_id": OTHER_DEVICE}},
            BadSignature,
            id="body-device",
        ),
        pytest.param(
            lambda e: e | {"body": e["body"] | {"expires_at_ms": WALL_MS + 10**9}},
            BadSignature,
            id="body-expiry",
        ),
        pytest.param(lambda e: e | {"sig": _flip_first_char(e["sig"])}, BadSignature, id="sig"),
        pytest.param(lambda e: e | {"sig": "A" * 86}, BadSignature, id="sig-zero"),
        pytest.param(lambda e: e | {"key_id": "cloud-other"}, BadSignature, id="unknown-key"),
        pytest.param(lambda e: e | {"sig": e["sig"][:-1]}, MalformedPayload, id="sig-short"),
        pytest.param(lambda e: e | {"sig": "+" * 86}, MalformedPayload, id="sig-not-b64url"),
        pytest.param(lambda e: {k: v for k, v in e.items() if k != "sig"}, MalformedPayload, id="no-sig"),
        pytest.param(lambda e: e | {"extra": 1}, MalformedPayload, id="extra-field"),
        pytest.param(lambda e: e | {"body": [e["body"]]}, MalformedPayload, id="body-not-object"),
        pytest.param(lambda e: e["body"], MalformedPayload, id="bare-body"),
        pytest.param(lambda e: e | {"v": 2}, UnsupportedVersion, id="version"),
    ],
)  # fmt: skip
def test_verify_refuses_tampering(
    tamper: Callable[[dict[str, Any]], object], error: type[ContractError]
) -> None:
    with pytest.raises(error):
        verify_envelope(payload_of(tamper(_envelope())), TRUSTED, kind="cmd")


def test_verify_refuses_another_key_and_the_wrong_kind() -> None:
    payload = sign_body(SIGNING_KEY, KEY_ID, command_body())
    other = Ed25519PrivateKey.generate()
    with pytest.raises(BadSignature):
        verify_envelope(payload, {KEY_ID: public_key_bytes(other)}, kind="cmd")
    with pytest.raises(BadSignature):
        verify_envelope(payload, {}, kind="cmd")
    with pytest.raises(BadSignature):
        verify_envelope(payload, {KEY_ID: b"short"}, kind="cmd")
    # A command replayed as a configuration, and the other way round.
    with pytest.raises(BadSignature):
        verify_envelope(payload, TRUSTED, kind="cfg")
    cfg = sign_body(SIGNING_KEY, KEY_ID, config_body())
    with pytest.raises(BadSignature):
        verify_envelope(cfg, TRUSTED, kind="cmd")
    # A signed body that names no kind at all.
    kindless = sign_body(SIGNING_KEY, KEY_ID, {"device_id": DEVICE})
    with pytest.raises(BadSignature):
        verify_envelope(kindless, TRUSTED, kind="cmd")


def test_verify_refuses_non_envelopes() -> None:
    not_envelopes = [
        encode(Ack(device_id=DEVICE, boot_id=BOOT, seq=1)),
        b'{"v": 1}',
        b"",
        b"[]",
        b"garbage",
    ]
    for payload in not_envelopes:
        with pytest.raises(MalformedPayload):
            verify_envelope(payload, TRUSTED, kind="cmd")


def test_canonical_json_is_key_order_independent() -> None:
    a = {"b": 1, "a": {"y": [1, 2], "x": "邻里"}, "c": None}
    b = {"c": None, "a": {"x": "邻里", "y": [1, 2]}, "b": 1}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == '{"a":{"x":"邻里","y":[1,2]},"b":1,"c":null}'.encode()
    assert canonical_json({"a": [1, 2]}) != canonical_json({"a": [2, 1]})


def test_a_reordered_envelope_still_verifies() -> None:
    envelope = _envelope()
    reordered = {k: envelope[k] for k in reversed(list(envelope))}
    reordered["body"] = {k: envelope["body"][k] for k in reversed(list(envelope["body"]))}
    assert verify_envelope(payload_of(reordered), TRUSTED, kind="cmd") == envelope["body"]


# --- JSON Schema export ---------------------------------------------------------------------


def _schema_models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {spec.name: spec.model for spec in TOPICS}
    return models | {"body:cmd": CommandBody, "body:cfg": ConfigBody}


def test_schema_has_one_entry_per_topic_and_signed_body() -> None:
    schemas = contract_schemas()
    assert set(schemas) == set(_schema_models())
    json.dumps(schemas)  # serializable as the CLI prints it
    for spec in TOPICS:
        entry = schemas[spec.name]
        assert isinstance(entry, dict)
        assert (entry["direction"], entry["qos"], entry["retained"], entry["signed"]) == (
            spec.direction,
            spec.qos,
            spec.retained,
            spec.signed,
        )


def _walk_objects(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object schema in a schema and its $defs."""
    found = [schema]
    for sub in schema.get("$defs", {}).values():
        found.extend(_walk_objects(sub))
    return found


@pytest.mark.parametrize("name", list(_schema_models()))
def test_schema_matches_the_model(name: str) -> None:
    model = _schema_models()[name]
    entry = contract_schemas()[name]
    assert isinstance(entry, dict)
    schema = entry["schema"]
    assert schema["type"] == "object"
    assert set(schema["properties"]) == set(model.model_fields)
    assert schema["additionalProperties"] is False  # extra fields are refused
    for sub in _walk_objects(schema):
        assert sub["type"] == "object"
        assert "properties" in sub
        assert sub["additionalProperties"] is False
    expected = set(required_fields(model))
    if name in BY_NAME:
        # decode() refuses a payload without "v" (UnsupportedVersion), so the published
        # schema must not call it optional.
        expected.add("v")
    assert set(schema["required"]) == expected


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_schema_required_agrees_with_the_decoder(spec: TopicSpec) -> None:
    """A field the schema calls optional may be left out; one it requires may not."""
    entry = contract_schemas()[spec.name]
    assert isinstance(entry, dict)
    required = set(entry["schema"]["required"])
    for field in example(spec):
        if field in required:
            with pytest.raises(ContractError):
                decode(spec.model, _without(field)(spec), DEVICE)
        else:
            decode(spec.model, _without(field)(spec), DEVICE)


# --- codes ----------------------------------------------------------------------------------


def test_derive_code_is_eight_digits_and_deterministic() -> None:
    code = derive_code(SECRET, "grt_1")
    assert len(code) == 8 and code.isascii() and code.isdigit()
    assert derive_code(SECRET, "grt_1") == code
    assert derive_code(SECRET, "grt_1", 0) == code


def test_derive_code_keeps_leading_zeros() -> None:
    codes = [derive_code(SECRET, f"grt_{i}") for i in range(200)]
    assert all(len(c) == 8 and c.isdigit() for c in codes)
    assert any(c.startswith("0") for c in codes)


def test_derive_code_differs_by_grant_counter_and_secret() -> None:
    base = derive_code(SECRET, "grt_1")
    assert derive_code(SECRET, "grt_2") != base
    assert derive_code(SECRET, "grt_1", 1) != base
    assert derive_code(SECRET, "grt_1", 2) != derive_code(SECRET, "grt_1", 1)
    assert derive_code(b"t" * 32, "grt_1") != base
    assert len({derive_code(SECRET, f"grt_{i}") for i in range(100)}) == 100


def test_derive_code_requires_a_long_secret() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        derive_code(b"s" * 31, "grt_1")
    with pytest.raises(ValueError):
        derive_code(b"", "grt_1")
    assert derive_code(b"s" * 64, "grt_1").isdigit()


@pytest.mark.parametrize(
    ("entered", "expected"),
    [
        ("12345678", "12345678"),
        ("1234 5678", "12345678"),
        ("1234-5678", "12345678"),
        (" 1234 5678 ", "12345678"),
        ("00000000", "00000000"),
        ("1234567", None),
        ("123456789", None),
        ("1234567a", None),
        ("abcdefgh", None),
        ("１２３４５６７８", None),  # full-width digits
        ("١٢٣٤٥٦٧٨", None),  # Arabic-Indic digits
        ("¹²³⁴⁵⁶⁷⁸", None),  # superscripts (str.isdigit says True)
        ("+1234567", None),
        ("1234_5678", None),
        ("1234\t5678", None),
        ("", None),
    ],
)
def test_normalize_code(entered: str, expected: str | None) -> None:
    assert normalize_code(entered) == expected


@settings(database=None)
@given(st.text(max_size=20))
def test_normalize_code_returns_eight_ascii_digits_or_none(entered: str) -> None:
    result = normalize_code(entered)
    assert result is None or (len(result) == 8 and all(c in string.digits for c in result))


def test_hash_code_differs_per_device_key() -> None:
    key_a = derive_device_code_key(SECRET, DEVICE)
    key_b = derive_device_code_key(SECRET, OTHER_DEVICE)
    assert len(key_a) == 32 and key_a != key_b
    assert derive_device_code_key(SECRET, DEVICE) == key_a
    code = derive_code(SECRET, "grt_1")
    digest = hash_code(key_a, code)
    assert len(digest) == 64 and all(c in string.hexdigits for c in digest)
    assert hash_code(key_a, code) == digest
    assert hash_code(key_b, code) != digest
    assert hash_code(key_a, derive_code(SECRET, "grt_2")) != digest
    assert code not in digest


# --- i18n -----------------------------------------------------------------------------------


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    zh, en = catalog("zh-CN"), catalog("en")
    assert set(zh) == set(en)
    assert zh  # not empty
    for key in zh:
        assert isinstance(zh[key], str) and isinstance(en[key], str)
        assert zh[key].strip() and en[key].strip(), key
        assert _placeholders(zh[key]) == _placeholders(en[key]), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_renders(language: str) -> None:
    for key, text in catalog(language).items():
        values = {name: "X" for name in _placeholders(text)}
        rendered = t(key, language, **values)
        assert "{" not in rendered, key


def test_t_falls_back() -> None:
    assert t("code.prompt", "en") == catalog("en")["code.prompt"]
    assert t("code.prompt", "fr") == catalog(DEFAULT_LANGUAGE)["code.prompt"]
    assert t("no.such.key", "en") == "no.such.key"
    assert t("unit.points", "en", n=5) == "5 points"
    assert t("unit.points", n=5) == "5 积分"


@pytest.mark.parametrize(
    ("explicit", "accept", "expected"),
    [
        ("en", "zh-CN,zh;q=0.9", "en"),
        ("zh-CN", "en-GB,en;q=0.9", "zh-CN"),
        (None, "en-GB,en;q=0.9", "en"),
        ("fr", "en", "en"),  # an unsupported explicit choice does not count
        (None, "zh;q=0.5, en;q=0.9", "en"),
        (None, "en;q=0.5, zh-TW;q=0.8", "zh-CN"),
        (None, "fr, de;q=0.9, en;q=0.1", "en"),
        (None, "en;q=0", "zh-CN"),
        (None, "zh-TW", "zh-CN"),
        (None, "zh-HK,en;q=0.5", "zh-CN"),
        (None, "zh-Hans-CN", "zh-CN"),
        (None, "EN-us", "en"),
        (None, "fr, de", "zh-CN"),
        (None, "", "zh-CN"),
        (None, None, "zh-CN"),
        (None, ";;;,,q=", "zh-CN"),
        (None, "en;q=abc", "zh-CN"),
    ],
)
def test_choose_language(explicit: str | None, accept: str | None, expected: str) -> None:
    assert choose_language(explicit, accept) == expected


# --- device identity ------------------------------------------------------------------------

CLOUD_KEY = bytes(range(100, 132))
CODE_KEY = bytes(range(200, 232))


def _identity() -> DeviceIdentity:
    return DeviceIdentity(
        device_id=DEVICE, cloud_keys={"cloud-1": CLOUD_KEY}, code_hash_key=CODE_KEY
    )


def test_identity_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "identity.json"
    identity = _identity()
    identity.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DeviceIdentity.load(path) == identity
    assert [p.name for p in path.parent.iterdir()] == ["identity.json"]  # no temp file left
    assert CODE_KEY.hex() not in repr(identity)


def test_identity_save_narrows_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "identity.json"
    path.write_text("{}")
    path.chmod(0o644)
    _identity().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DeviceIdentity.load(path) == _identity()


def _identity_json(**changes: object) -> str:
    data: dict[str, object] = {
        "device_id": DEVICE,
        "cloud_keys": {"cloud-1": CLOUD_KEY.hex()},
        "code_hash_key": CODE_KEY.hex(),
    }
    return json.dumps(data | changes)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(_identity_json()[:-20], id="truncated-json"),
        pytest.param(b"\xff" + CODE_KEY, id="not-utf8"),
        pytest.param("[]", id="json-array"),
        pytest.param(_identity_json(cloud_keys={"cloud-1": CLOUD_KEY.hex()[:-2]}), id="short-cloud-key"),
        pytest.param(_identity_json(cloud_keys={"cloud-1": CLOUD_KEY.hex() + "00"}), id="long-cloud-key"),
        pytest.param(_identity_json(code_hash_key=CODE_KEY.hex()[:32]), id="short-code-key"),
        pytest.param(_identity_json(code_hash_key="zz" + CODE_KEY.hex()), id="code-key-not-hex"),
        pytest.param(_identity_json(cloud_keys={}), id="no-cloud-keys"),
        pytest.param(_identity_json(cloud_keys=[CLOUD_KEY.hex()]), id="cloud-keys-list"),
        pytest.param(_identity_json(cloud_keys={"cloud-1": 5}), id="cloud-key-number"),
        pytest.param(_identity_json(device_id="Locker_A"), id="bad-device-id"),
        pytest.param(_identity_json(device_id="../etc"), id="device-id-path"),
        pytest.param(_identity_json(device_id=None), id="device-id-null"),
        pytest.param(json.dumps({"device_id": DEVICE}), id="no-keys"),
        pytest.param("directory", id="a-directory"),
    ],
)  # fmt: skip
def test_identity_load_refuses(tmp_path: Path, content: str | bytes | None) -> None:
    path = tmp_path / "identity.json"
    if content == "directory":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(IdentityError) as caught:
        DeviceIdentity.load(path)
    message = f"{caught.value} {caught.value!r}"
    for secret in (CLOUD_KEY.hex(), CODE_KEY.hex(), CLOUD_KEY.hex()[:-2], CODE_KEY.hex()[:32]):
        assert secret not in message
    assert str(path) in str(caught.value)


def test_identity_file_is_not_world_readable_even_with_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "identity.json"
        _identity().save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
