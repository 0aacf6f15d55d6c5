"""Camera adapters of the valuation terminal: one small port, three ways to fill it.

The camera is mounted above the scale, looking down at the pan (so the crop of
:func:`valuation_terminal.core.images.prepare` keeps faces out). The kiosk asks for a
:class:`Shot`, checks it (:func:`~valuation_terminal.core.images.check`) and asks for a retake
when it is blurred, badly exposed or empty.

- :class:`Picamera2Camera`: a Raspberry Pi camera module through ``picamera2``, which only
  Raspberry Pi OS provides (``apt install python3-picamera2``; the PyPI package cannot load
  libcamera elsewhere). Imported when the adapter is built, never at module import.
- :class:`OpenCVCamera`: a USB (UVC) camera through OpenCV (``pip install 'linli[usb-camera]'``,
  which brings ``opencv-python-headless``). Also imported when built.
- :class:`SimCamera`: photographs from files, written into a folder as a camera would write
  them (a real JPEG with the EXIF a camera adds), for the demo and the tests. Asked for
  explicitly (``kind="sim"``): a missing camera library is an error, never a silent fallback.

Example:
    >>> from pathlib import Path
    >>> import tempfile
    >>> photos = Path("tests/data/photos/originals")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     camera = open_camera("sim", sources=[photos / "coffee.jpg"], out_dir=Path(out))
    ...     shot = camera.capture()
    ...     camera.close()
    ...     (shot.image.size, shot.path.suffix)
    ((600, 400), '.jpg')
"""

from __future__ import annotations

import inspect
import io
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from linli.clock import Clock, SystemClock

__all__ = [
    "Camera",
    "CameraConfigError",
    "CameraError",
    "CameraUnavailable",
    "CaptureFailed",
    "OpenCVCamera",
    "Picamera2Camera",
    "Shot",
    "SimCamera",
    "open_camera",
]

log = logging.getLogger(__name__)

KINDS = ("picamera2", "opencv", "sim")
"""The camera kinds :func:`open_camera` knows, as written in the terminal's configuration."""

PICAMERA2_MISSING = (
    "picamera2 is not available here ({reason}). It comes with Raspberry Pi OS: "
    "'sudo apt install python3-picamera2', and a virtualenv made with --system-site-packages. "
    "On a machine without a Pi camera use kind 'opencv' (USB camera) or 'sim'."
)


class CameraError(Exception):
    """Root of every camera error."""


class CameraUnavailable(CameraError, ConnectionError):
    """The camera cannot be opened: its library is absent, or no camera answers there."""


class CaptureFailed(CameraError):
    """The camera is open but delivered no frame this time; retrying may succeed."""


class CameraConfigError(CameraError, ValueError):
    """The configuration names an unknown camera kind or gives it options it does not take."""


@dataclass(frozen=True)
class Shot:
    """One photograph from the camera.

    Attributes:
        image: The picture, RGB.
        captured_ms: Wall-clock time of the capture, Unix epoch milliseconds.
        path: The file the camera wrote, or ``None`` when it only delivered pixels.
    """

    image: Image.Image
    captured_ms: int
    path: Path | None


class Camera(Protocol):
    """A camera, as the valuation terminal uses it (no inheritance needed)."""

    camera_id: str

    def capture(self) -> Shot:
        """Take one photograph.

        Raises:
            CaptureFailed: no frame this time (retryable).
            CameraError: the camera is closed or broken.
        """
        ...

    def close(self) -> None:
        """Release the camera (idempotent)."""
        ...


class Picamera2Camera:
    """A Raspberry Pi camera module (CSI ribbon cable) through ``picamera2``.

    Wiring: the camera's ribbon in the Pi's CAM/DISP port (contacts towards the HDMI side on a
    Pi 4; CAM0/CAM1 on a Pi 5), mounted above the pan, looking down.

    Example (on a Pi)::

        camera = Picamera2Camera(index=0, size=(2304, 1296))
        shot = camera.capture()
        camera.close()

    Raises:
        CameraUnavailable: ``picamera2`` cannot be imported (any machine but Raspberry Pi OS),
            or no camera module answers at ``index``.
    """

    def __init__(
        self,
        camera_id: str = "picamera2:0",
        *,
        index: int = 0,
        size: tuple[int, int] = (2304, 1296),
        clock: Clock | None = None,
    ) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:  # ModuleNotFoundError for picamera2 itself or for libcamera
            raise CameraUnavailable(PICAMERA2_MISSING.format(reason=exc)) from exc
        self.camera_id = camera_id
        self._clock = clock or SystemClock()
        try:
            self._camera: Any = Picamera2(index)
            config = self._camera.create_still_configuration(
                main={"size": size, "format": "RGB888"}
            )
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraUnavailable(f"no Pi camera module at index {index}: {exc}") from exc
        self._closed = False
        log.info("camera %s open: picamera2 index %d, %dx%d", camera_id, index, *size)

    def capture(self) -> Shot:
        if self._closed:
            raise CameraError(f"camera {self.camera_id} is closed")
        try:
            image = self._camera.capture_image("main")
        except (RuntimeError, OSError, TimeoutError) as exc:
            raise CaptureFailed(f"camera {self.camera_id} gave no frame: {exc}") from exc
        return Shot(image.convert("RGB"), self._clock.now().wall_ms, None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._camera.stop()
            self._camera.close()


class OpenCVCamera:
    """A USB (UVC) camera through OpenCV's ``VideoCapture``.

    Example::

        camera = OpenCVCamera(device=0, size=(1920, 1080))   # /dev/video0
        shot = camera.capture()
        camera.close()

    Args:
        camera_id: The name thresholds are calibrated under.
        device: A device index (``0`` is ``/dev/video0``) or a path or URL OpenCV can open.
        size: The frame size to ask the camera for (it may choose another).
        flush_frames: Frames read and dropped before each capture: a UVC camera queues a few
            frames, and the oldest may predate the item being laid on the pan.
        clock: Where capture times come from.

    Raises:
        CameraUnavailable: OpenCV is not installed, or nothing opens at ``device``.
    """

    def __init__(
        self,
        camera_id: str = "opencv:0",
        *,
        device: int | str = 0,
        size: tuple[int, int] | None = (1920, 1080),
        flush_frames: int = 4,
        clock: Clock | None = None,
    ) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise CameraUnavailable(
                f"OpenCV is not installed ({exc}): pip install 'linli[usb-camera]' "
                "(opencv-python-headless)"
            ) from exc
        self._cv2: Any = cv2
        self.camera_id = camera_id
        self._clock = clock or SystemClock()
        self._flush = flush_frames
        self._capture: Any = cv2.VideoCapture(device)
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraUnavailable(f"no camera opens at {device!r}")
        if size is not None:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        self._closed = False
        log.info("camera %s open: OpenCV device %r", camera_id, device)

    def capture(self) -> Shot:
        if self._closed:
            raise CameraError(f"camera {self.camera_id} is closed")
        for _ in range(self._flush):
            self._capture.grab()
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise CaptureFailed(f"camera {self.camera_id} gave no frame")
        rgb = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)
        return Shot(Image.fromarray(rgb), self._clock.now().wall_ms, None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._capture.release()


class SimCamera:
    """A camera that photographs from files: each capture takes the next source photograph
    (cycling through ``sources``), writes it into ``out_dir`` as a camera would (a JPEG named by
    sequence number, with the EXIF a camera adds: make, model, time) and returns it.

    :meth:`queue` chooses the next shots (a blurred one, then a sharp one) to play a retake.

    Example:
        >>> from pathlib import Path
        >>> import tempfile
        >>> photos = Path("tests/data/photos")
        >>> with tempfile.TemporaryDirectory() as out:
        ...     camera = SimCamera([photos / "originals/coffee.jpg"], Path(out))
        ...     camera.queue(photos / "derived/coffee.blurred.jpg")
        ...     [camera.capture().path.name for _ in range(2)]
        ['sim-000001.jpg', 'sim-000002.jpg']
    """

    def __init__(
        self,
        sources: Sequence[Path | str],
        out_dir: Path | str,
        *,
        camera_id: str = "sim",
        quality: int = 92,
        clock: Clock | None = None,
    ) -> None:
        paths = [Path(source) for source in sources]
        if not paths:
            raise CameraConfigError("a simulated camera needs at least one source photograph")
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise CameraUnavailable(f"source photographs not found: {', '.join(missing)}")
        self.camera_id = camera_id
        self._sources = paths
        self._next = 0
        self._queued: deque[Path] = deque()
        self._out_dir = Path(out_dir)
        self._out_dir.mkdir(parents=True, exist_ok=True)
        self._quality = quality
        self._clock = clock or SystemClock()
        self._count = 0
        self._closed = False

    def queue(self, path: Path | str) -> None:
        """Make ``path`` the photograph of the next capture (after those already queued)."""
        source = Path(path)
        if not source.is_file():
            raise CameraUnavailable(f"source photograph not found: {source}")
        self._queued.append(source)

    def capture(self) -> Shot:
        if self._closed:
            raise CameraError(f"camera {self.camera_id} is closed")
        if self._queued:
            source = self._queued.popleft()
        else:
            source = self._sources[self._next]
            self._next = (self._next + 1) % len(self._sources)
        now = self._clock.now()
        try:
            with Image.open(source) as opened:
                pixels = opened.convert("RGB")
        except OSError as exc:
            raise CaptureFailed(f"cannot read source photograph {source}: {exc}") from exc
        self._count += 1
        path = self._out_dir / f"{self.camera_id}-{self._count:06d}.jpg"
        exif = Image.Exif()
        exif[0x010F] = "Linli"  # Make
        exif[0x0110] = "SimCamera"  # Model
        exif[0x0132] = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(now.wall_ms / 1000))
        out = io.BytesIO()
        pixels.save(out, "JPEG", quality=self._quality, exif=exif)
        path.write_bytes(out.getvalue())
        with Image.open(path) as written:
            image = written.convert("RGB")
        return Shot(image, now.wall_ms, path)

    def close(self) -> None:
        self._closed = True


def open_camera(kind: str, **options: Any) -> Camera:
    """Build the camera the configuration names.

    Args:
        kind: ``picamera2``, ``opencv`` or ``sim``.
        **options: The adapter's keyword arguments (``index``, ``device``, ``size``,
            ``sources``, ``out_dir``, ``camera_id``, ``clock``...).

    Raises:
        CameraConfigError: an unknown kind, or options the adapter does not take.
        CameraUnavailable: the camera or its library is not there.
    """
    adapters: dict[str, type[Picamera2Camera] | type[OpenCVCamera] | type[SimCamera]] = {
        "picamera2": Picamera2Camera,
        "opencv": OpenCVCamera,
        "sim": SimCamera,
    }
    if kind not in adapters:
        raise CameraConfigError(f"unknown camera kind {kind!r}: choose one of {', '.join(KINDS)}")
    adapter = adapters[kind]
    try:
        inspect.signature(adapter).bind(**options)
    except TypeError as exc:
        raise CameraConfigError(f"camera kind {kind!r}: {exc}") from exc
    return adapter(**options)
