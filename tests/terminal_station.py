"""A valuation terminal built from real parts, for the kiosk tests and the bench.

- the scale: :class:`~firmware_bridge.sim.scale.ScaleSim` on a pseudo-terminal, read by the
  real :class:`~firmware_bridge.scale.SerialScale` (MT-SICS bytes);
- the camera: :class:`~valuation_terminal.camera.SimCamera` on the real photographs of
  ``tests/data/photos`` (a blurred one can be queued for a retake);
- the queue (SQLite), its sender, the cloud client, and the kiosk on 127.0.0.1 over HTTP.

:class:`KioskDriver` is the resident's finger: it reads the page, keeps the form's CSRF token,
and posts what a button or a form would post.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from firmware_bridge.scale import SerialScale
from firmware_bridge.sim.scale import ScaleSim
from valuation_terminal.camera import SimCamera
from valuation_terminal.client import TerminalClient
from valuation_terminal.kiosk import Kiosk
from valuation_terminal.queue import ProposalQueue, Sender

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
SHARP = [
    PHOTOS / "originals" / name for name in ("coffee.jpg", "kde_colorfulcups.jpg", "china.jpg")
]
BLURRED = PHOTOS / "derived" / "coffee.blurred.jpg"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SCREEN = re.compile(r'<body data-screen="([a-z_]+)">')


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


class KioskDriver:
    """Drives the kiosk over HTTP as the resident's taps would."""

    def __init__(self, kiosk: Kiosk | str) -> None:
        url = kiosk if isinstance(kiosk, str) else kiosk.url
        self.http = httpx.Client(base_url=url, follow_redirects=True, timeout=30)
        self.html = ""
        self.status = 0
        self.page()

    def close(self) -> None:
        self.http.close()

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.html)
        assert found, "no form on the page"
        return found.group(1)

    @property
    def screen(self) -> str:
        found = SCREEN.search(self.html)
        return found.group(1) if found else ""

    def page(self) -> str:
        response = self.http.get("/")
        self.status, self.html = response.status_code, response.text
        return self.html

    def post(self, action: str, *, csrf: str | None = None, **fields: str) -> str:
        data = {"action": action, **fields}
        token = self.csrf if csrf is None else csrf
        if token:
            data["csrf"] = token
        response = self.http.post("/act", data=data)
        self.status, self.html = response.status_code, response.text
        return self.html

    def wait_for(self, screen: str, timeout_s: float = 20.0) -> str:
        """Reload (as the page's refresh does) until ``screen`` shows."""
        deadline = time.monotonic() + timeout_s
        while self.screen != screen:
            assert time.monotonic() < deadline, f"still on {self.screen}, not {screen}"
            time.sleep(0.3)
            self.page()
        return self.html
