"""``linli cloud`` (serve the API) and ``linli db migrate``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cloud_api.settings import CloudSettings
from cloud_api.store import Store


def main(args: argparse.Namespace, data_dir: Path) -> int:
    """Run a cloud sub-command."""
    if args.command == "db":
        store = Store(data_dir / "cloud.sqlite3")
        before = store.schema_version()
        after = store.migrate()
        store.close()
        print(f"store {data_dir / 'cloud.sqlite3'}: schema version {before} -> {after}")
        return 0
    import uvicorn

    from cloud_api.app import create_app

    overrides: dict[str, object] = {"data_dir": data_dir}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.broker_url:
        overrides["broker_url"] = args.broker_url
    settings = CloudSettings(**overrides)  # type: ignore[arg-type]
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(
        "LINLI_BEHIND_TLS"
    ):
        print(
            "warning: serving beyond localhost without TLS; put a TLS proxy in front (deploy/README.md)"
        )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0
