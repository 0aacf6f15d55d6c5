"""``linli terminal``: the valuation terminal daemon.

The foundation gives the terminal its place in the system (its identity, birth and last will on
``status``) so maintainers see it online; camera, scale, rules and the kiosk are issue #9.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from linli import __version__
from linli.broker import BrokerAddress
from linli.identity import DeviceIdentity, IdentityError
from linli.ids import new_boot_id
from locker_controller.link import DeviceLink, DeviceSession


def main(args: argparse.Namespace, data_dir: Path) -> int:
    """Connect as a terminal and stay online until stopped."""
    try:
        identity = DeviceIdentity.load(data_dir / "identity.json")
    except IdentityError as exc:
        raise SystemExit(str(exc)) from None
    broker = BrokerAddress.from_url(
        args.broker_url or os.environ.get("LINLI_BROKER_URL", "mqtt://127.0.0.1:1883"),
        os.environ.get("LINLI_BROKER_USERNAME"),
        os.environ.get("LINLI_BROKER_PASSWORD"),
    )
    keepalive_s = int(os.environ.get("LINLI_KEEPALIVE_S", "10"))
    session = DeviceSession(identity.device_id, "terminal", new_boot_id(), __version__, keepalive_s)
    link = DeviceLink(session, broker, lambda message: None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    link.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        link.stop()
    return 0
