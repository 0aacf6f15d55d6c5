"""JSON Schema export of every message of the contract (``linli contract schema``)."""

from __future__ import annotations

from pydantic import BaseModel

from linli.contract.models import CommandBody, ConfigBody
from linli.contract.topics import TOPICS


def contract_schemas() -> dict[str, object]:
    """Return one JSON Schema per topic, plus the signed bodies, keyed by name."""
    schemas: dict[str, object] = {}
    for spec in TOPICS:
        schema = spec.model.model_json_schema()
        # decode() refuses a payload without "v" (the model's default is for building messages).
        schema["required"] = ["v", *(f for f in schema.get("required", []) if f != "v")]
        schemas[spec.name] = {
            "direction": spec.direction,
            "qos": spec.qos,
            "retained": spec.retained,
            "signed": spec.signed,
            "description": spec.description,
            "schema": schema,
        }
    bodies: tuple[type[BaseModel], ...] = (CommandBody, ConfigBody)
    for model in bodies:
        schemas[f"body:{model.model_fields['kind'].default}"] = {
            "schema": model.model_json_schema()
        }
    return schemas
