"""The valuation terminal's daemon: the composition of its parts.

``linli terminal`` builds, from its configuration (:class:`TerminalConfig`), and in this order:
the scale, the camera, the cloud client (with the context cached on disk), the durable proposal
queue and its sender thread, the kiosk page on ``127.0.0.1:<kiosk_port>``, and the device's
presence on the broker (``status``: online, offline, lost — as today). SIGTERM (or SIGINT)
stops them in the reverse order: the kiosk stops taking taps, an attempt under way finishes,
the queue is closed (what it holds is on disk), ``offline`` is published.

**Simulation is asked for, never fallen back to**: the scale is a serial port (``--scale
/dev/ttyUSB0 --scale-format sics``) or ``sim``; the camera is ``picamera2``, ``opencv`` or
``sim``. Nothing configured is an error that says what to write, before anything starts: a
terminal whose camera library is missing must not quietly photograph test files.

Every setting has a command-line option and an environment variable (``/etc/linli/terminal.env``
for the systemd unit): see :data:`ENV`.

Example:
    $ LINLI_CLOUD_URL=https://cloud.example LINLI_TERMINAL_SCALE=/dev/ttyUSB0 \\
      LINLI_TERMINAL_SCALE_FORMAT=sics LINLI_TERMINAL_CAMERA=picamera2 linli terminal
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linli import __version__
from linli.broker import BrokerAddress
from linli.identity import DeviceIdentity, IdentityError
from linli.ids import new_boot_id

__all__ = ["ENV", "ConfigError", "TerminalConfig", "TerminalDaemon", "run"]

log = logging.getLogger(__name__)

ENV: Mapping[str, str] = {
    "cloud_url": "LINLI_CLOUD_URL",
    "token_file": "LINLI_TERMINAL_TOKEN_FILE",
    "scale": "LINLI_TERMINAL_SCALE",
    "scale_format": "LINLI_TERMINAL_SCALE_FORMAT",
    "scale_baudrate": "LINLI_TERMINAL_SCALE_BAUDRATE",
    "camera": "LINLI_TERMINAL_CAMERA",
    "camera_options": "LINLI_TERMINAL_CAMERA_OPTIONS",
    "kiosk_port": "LINLI_TERMINAL_KIOSK_PORT",
    "crop": "LINLI_TERMINAL_CROP",
    "thresholds": "LINLI_TERMINAL_THRESHOLDS",
    "broker_url": "LINLI_BROKER_URL",
}
"""Each setting's environment variable (a command-line option, when given, wins)."""

SCALE_FORMATS = ("sics", "and", "continuous")
CAMERA_KINDS = ("picamera2", "opencv", "sim")
SIM_SCALE_GRAMS = 500.0
"""The load a simulated scale starts with, so that "weigh" answers at once in a demo."""


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and says what to write."""


def _parse_options(text: str) -> dict[str, str]:
    """``key=value,key=value`` → a dict (``sources=a.jpg:b.jpg,camera_id=pan``)."""
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"camera option {part!r}: write key=value")
        options[key.strip()] = value.strip()
    return options


def _parse_crop(text: str) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        left, top, right, bottom = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"crop {text!r}: write left,top,right,bottom in pixels") from None
    if not (0 <= left < right and 0 <= top < bottom):
        raise ConfigError(f"crop {text!r}: an empty or negative rectangle")
    return left, top, right, bottom


@dataclass(frozen=True)
class TerminalConfig:
    """The daemon's settings, checked once at start-up (:meth:`from_args`).

    Attributes:
        data_dir: Identity, token, queue, photos, cached context, thresholds.
        cloud_url: The cloud's root URL.
        token_file: The terminal's HTTP token (``<data_dir>/secrets/terminal_token``).
        scale: A serial port path or pyserial URL, or ``sim``.
        scale_format: ``sics``, ``and`` or ``continuous`` (a real scale).
        scale_baudrate: The scale's line speed.
        camera: ``picamera2``, ``opencv`` or ``sim``.
        camera_options: The camera adapter's options (``index``, ``device``, ``size=WxH``,
            ``sources`` (paths or folders, ``:``-separated; ``sim``), ``camera_id``).
        kiosk_port: The kiosk's port on 127.0.0.1.
        crop: The pan's rectangle in the camera's frame, or ``None`` (whole frame).
        thresholds: The camera's calibrated thresholds (``linli terminal calibrate``), or
            ``None`` (``<data_dir>/thresholds.json`` if present, else uncalibrated defaults).
        broker_url: ``mqtt://host:port`` for the presence.
    """

    data_dir: Path
    cloud_url: str
    scale: str
    camera: str
    token_file: Path
    scale_format: str = "sics"
    scale_baudrate: int = 9600
    camera_options: Mapping[str, str] = field(default_factory=dict)
    kiosk_port: int = 8080
    crop: tuple[int, int, int, int] | None = None
    thresholds: Path | None = None
    broker_url: str = "mqtt://127.0.0.1:1883"

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, data_dir: Path, environ: Mapping[str, str] = os.environ
    ) -> TerminalConfig:
        """The settings from the command line (``linli terminal``'s options, where the parser
        has them) and the environment (:data:`ENV`).

        Raises:
            ConfigError: a setting missing or unusable; the message says what to write.
        """

        def get(name: str, default: str = "") -> str:
            given = getattr(args, name, None)
            if given is not None and given != "":
                return str(given)
            return environ.get(ENV[name], default)

        cloud_url = get("cloud_url")
        if not cloud_url:
            raise ConfigError(f"give the cloud's URL: --cloud-url or {ENV['cloud_url']}")
        scale = get("scale")
        if not scale:
            raise ConfigError(
                "choose the scale explicitly: --scale /dev/ttyUSB0 --scale-format sics (a real"
                f" scale) or --scale sim (simulated); env {ENV['scale']}"
            )
        scale_format = get("scale_format", "sics")
        if scale_format not in SCALE_FORMATS:
            raise ConfigError(f"scale format {scale_format!r}: one of {', '.join(SCALE_FORMATS)}")
        camera = get("camera")
        if not camera:
            raise ConfigError(
                "choose the camera explicitly: --camera picamera2 (a Pi camera), opencv (USB)"
                f" or sim (photographs from files); env {ENV['camera']}"
            )
        if camera not in CAMERA_KINDS:
            raise ConfigError(f"camera {camera!r}: one of {', '.join(CAMERA_KINDS)}")
        try:
            port = int(get("kiosk_port", "8080"))
            baudrate = int(get("scale_baudrate", "9600"))
        except ValueError as exc:
            raise ConfigError(f"a number is needed: {exc}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"kiosk port {port} is not a port")
        thresholds = get("thresholds")
        return cls(
            data_dir=data_dir,
            cloud_url=cloud_url,
            scale=scale,
            camera=camera,
            token_file=Path(get("token_file") or data_dir / "secrets" / "terminal_token"),
            scale_format=scale_format,
            scale_baudrate=baudrate,
            camera_options=_parse_options(get("camera_options")),
            kiosk_port=port,
            crop=_parse_crop(get("crop")),
            thresholds=Path(thresholds) if thresholds else None,
            broker_url=get("broker_url", "mqtt://127.0.0.1:1883"),
        )


def _camera_options(config: TerminalConfig) -> dict[str, Any]:
    """The camera adapter's keyword arguments from the configured strings."""
    options: dict[str, Any] = {}
    for key, text in config.camera_options.items():
        if key == "size":
            width, _, height = text.lower().partition("x")
            try:
                options[key] = (int(width), int(height))
            except ValueError:
                raise ConfigError(f"camera size {text!r}: write WIDTHxHEIGHT") from None
        elif key == "sources":
            paths: list[Path] = []
            for part in filter(None, text.split(os.pathsep)):
                path = Path(part)
                if path.is_dir():
                    paths += sorted(
                        p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                    )
                else:
                    paths.append(path)
            options[key] = paths
        elif key in ("index", "flush_frames") or (key == "device" and text.isdigit()):
            options[key] = int(text)
        else:
            options[key] = text
    if config.camera == "sim":
        options.setdefault("out_dir", config.data_dir / "shots")
    return options


class TerminalDaemon:
    """The terminal's parts, built from a :class:`TerminalConfig`; :meth:`start`, :meth:`stop`.

    Attributes (after :meth:`start`):
        kiosk: The kiosk (its ``url``).
        scale_sim: The simulated scale, with ``--scale sim`` (the demo places loads on it).
    """

    def __init__(self, config: TerminalConfig, identity: DeviceIdentity) -> None:
        self.config = config
        self.identity = identity
        self.scale_sim: Any = None
        self._stack: list[tuple[str, Any]] = []
        self.kiosk: Any = None

    def start(self) -> TerminalDaemon:
        """Build and start every part; on a failure, stop what was started and raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from firmware_bridge.scale import SerialScale
        from valuation_terminal.camera import CameraError, open_camera
        from valuation_terminal.client import TerminalClient, load_token
        from valuation_terminal.core.images import DEFAULT, Box, PhotoError, Thresholds
        from valuation_terminal.kiosk import Kiosk
        from valuation_terminal.queue import ProposalQueue, Sender
        from valuation_terminal.scale import ScaleError

        config = self.config
        token = load_token(config.token_file)
        thresholds = DEFAULT
        path = config.thresholds or config.data_dir / "thresholds.json"
        if path.exists():
            try:
                thresholds = Thresholds.from_json(path.read_text(encoding="utf-8"))
            except PhotoError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        elif config.thresholds is not None:
            raise ConfigError(f"no thresholds file at {path}: run linli terminal calibrate")
        else:
            log.warning("the camera is not calibrated: default photo thresholds (%s)", path)

        if config.scale == "sim":
            from firmware_bridge.sim.scale import ScaleSim

            sim = ScaleSim(config.data_dir / "ttyScaleSim", "sics", settle_s=0.3).start()
            sim.place(SIM_SCALE_GRAMS)
            self.scale_sim = sim
            self._stack.append(("simulated scale", sim.stop))
            log.warning("the scale is SIMULATED (%s): no real weight is read", sim.path)
            port, fmt = str(sim.path), "sics"
        else:
            port, fmt = config.scale, config.scale_format
        try:
            scale = SerialScale.open(port, fmt, baudrate=config.scale_baudrate)  # type: ignore[arg-type]
        except ScaleError as exc:
            raise ConfigError(f"the scale at {port} cannot be opened: {exc}") from None
        self._stack.append(("scale", scale.close))

        try:
            camera = open_camera(config.camera, **_camera_options(config))
        except CameraError as exc:
            raise ConfigError(str(exc)) from None
        self._stack.append(("camera", camera.close))
        if config.camera == "sim":
            log.warning("the camera is SIMULATED: photographs come from files")

        client = TerminalClient(config.cloud_url, self.identity.device_id, token, config.data_dir)
        queue = ProposalQueue(config.data_dir)
        self._stack.append(("queue", queue.close))
        sender = Sender(queue, client).start()
        self._stack.append(("sender", sender.stop))
        counts = queue.counts()
        if counts:
            log.info("proposal queue: %s", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))

        self.kiosk = Kiosk(
            client=client,
            queue=queue,
            sender=sender,
            scale=scale,
            camera=camera,
            thresholds=thresholds,
            crop=Box(*config.crop) if config.crop else None,
            port=config.kiosk_port,
        )
        threading.Thread(target=self.kiosk.refresh_context, name="context", daemon=True).start()
        self.kiosk.start()
        self._stack.append(("kiosk", self.kiosk.stop))

        from locker_controller.link import DeviceLink, DeviceSession

        broker = BrokerAddress.from_url(
            config.broker_url,
            os.environ.get("LINLI_BROKER_USERNAME"),
            os.environ.get("LINLI_BROKER_PASSWORD"),
        )
        keepalive_s = int(os.environ.get("LINLI_KEEPALIVE_S", "10"))
        session = DeviceSession(
            self.identity.device_id, "terminal", new_boot_id(), __version__, keepalive_s
        )
        link = DeviceLink(session, broker, lambda message: None, keepalive_s=keepalive_s)
        link.start()
        self._stack.append(("presence", link.stop))
        log.info("terminal %s ready: kiosk on %s", self.identity.device_id, self.kiosk.url)

    def stop(self) -> None:
        """Stop every started part, the last started first."""
        while self._stack:
            name, stop = self._stack.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping the %s failed", name)


def run(config: TerminalConfig, *, stop: threading.Event | None = None) -> int:
    """Run the daemon until SIGTERM / SIGINT (or ``stop``); 0 on a clean stop."""
    try:
        identity = DeviceIdentity.load(config.data_dir / "identity.json")
    except IdentityError as exc:
        raise SystemExit(str(exc)) from None
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        daemon = TerminalDaemon(config, identity).start()
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        daemon.stop()
    return 0
