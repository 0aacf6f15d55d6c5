"""A valuation terminal built from real parts, for the kiosk tests and the bench.

- the scale: :class:`~firmware_bridge.sim.scale.ScaleSim` on a pseudo-terminal, read by the
  real :class:`~firmware_bridge.scale.SerialScale` (MT-SICS bytes);
- the camera: :class:`~valuation_terminal.camera.SimCamera` on the real photographs of
  ``tests/data/photos`` (a blurred one can be queued for a retake);
- the queue (SQLite), its sender, the cloud client, and the kiosk on 127.0.0.1 over HTTP.

:class:`KioskDriver` is the resident's finger: it reads the page, keeps the form's CSRF token,
and posts what a button or a form would post. It lives in :mod:`station.kiosk_driver` (the
demo's valuation scenario drives the kiosk with it) and is re-exported here for the tests and the
bench.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware_bridge.scale import SerialScale
from firmware_bridge.sim.scale import ScaleSim
from station.kiosk_driver import CSRF, SCREEN, KioskDriver
from valuation_terminal.camera import SimCamera
from valuation_terminal.client import TerminalClient
from valuation_terminal.kiosk import Kiosk
from valuation_terminal.queue import ProposalQueue, Sender

__all__ = [
    "BLURRED",
    "CSRF",
    "PHOTOS",
    "SCREEN",
    "SHARP",
    "KioskDriver",
    "TerminalStation",
    "start_terminal",
]

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
SHARP = [
    PHOTOS / "originals" / name for name in ("coffee.jpg", "kde_colorfulcups.jpg", "china.jpg")
]
BLURRED = PHOTOS / "derived" / "coffee.blurred.jpg"


@dataclass
class TerminalStation:
    """The terminal's parts, running."""

    kiosk: Kiosk
    queue: ProposalQueue
    sender: Sender
    client: TerminalClient
    scale_sim: ScaleSim
    scale: SerialScale
    camera: SimCamera
    data_dir: Path

    def stop(self) -> None:
        self.kiosk.stop()
        self.sender.stop()
        self.scale.close()
        self.scale_sim.stop()
        self.camera.close()
        self.queue.close()


def start_terminal(
    data_dir: Path,
    cloud_url: str,
    token: str,
    *,
    now_ms: Callable[[], int] | None = None,
    settle_s: float = 0.2,
    start_sender: bool = True,
) -> TerminalStation:
    """Build and start a terminal talking to the cloud at ``cloud_url``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    scale_sim = ScaleSim(data_dir / "ttyScale", "sics", settle_s=settle_s, noise_mg=0).start()
    scale = SerialScale.open(str(scale_sim.path), "sics", poll_s=0.02)
    camera = SimCamera(SHARP, data_dir / "shots")
    client = TerminalClient(cloud_url, "terminal-1", token, data_dir)
    queue = ProposalQueue(data_dir)
    sender = Sender(queue, client)
    if start_sender:
        sender.start()
    options = {} if now_ms is None else {"now_ms": now_ms}
    kiosk = Kiosk(
        client=client,
        queue=queue,
        sender=sender,
        scale=scale,
        camera=camera,
        **options,  # type: ignore[arg-type]
    ).start()
    return TerminalStation(kiosk, queue, sender, client, scale_sim, scale, camera, data_dir)
