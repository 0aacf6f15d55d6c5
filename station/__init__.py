"""Composition root (docs/decisions/0002): the demo, scenarios, embedded brokers, MQTT capture."""
