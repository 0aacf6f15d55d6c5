"""docs/contract.md documents every topic of the registry, with its QoS and retention."""

from __future__ import annotations

from pathlib import Path

from linli.contract import TOPICS

DOC = (Path(__file__).resolve().parent.parent / "docs" / "contract.md").read_text(encoding="utf-8")


def test_every_topic_is_documented_with_its_qos_and_retention() -> None:
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in DOC.splitlines()
        if line.startswith("| `linli/v1/")
    }
    for spec in TOPICS:
        row = rows.get(f"linli/v1/{{device_id}}/{spec.name}")
        assert row is not None, f"{spec.name} missing from docs/contract.md"
        cells = [c.strip() for c in row.split("|")]
        assert cells[2] == spec.direction.replace("_to_", "→").replace("device", "device")
        assert cells[3] == str(spec.qos)
        assert (cells[4] in ("yes",)) == spec.retained
