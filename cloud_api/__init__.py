"""The cloud: FastAPI app, SQLite store, per-domain services, MQTT bridge (docs/architecture.md)."""
