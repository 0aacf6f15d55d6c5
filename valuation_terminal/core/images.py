"""Photo usability and the photo we keep: is a shot of the pan sharp, exposed, and of something?

The valuation terminal's camera looks down at the scale's pan. Before a shot is kept the kiosk
asks :func:`check` whether it is usable, and tells the resident what to fix when it is not
(``problems``, in the order the resident should fix them). A usable shot goes through
:func:`prepare`: cropped to the pan (faces stay out of frame), stripped of every metadata block,
downscaled and encoded as JPEG, and stored by the SHA-256 of those bytes.

Pure: numpy and Pillow only, no camera, file or clock; images arrive as ``PIL.Image.Image`` and
leave as bytes.

**What is measured** (:func:`measure`), on the shot resized to a fixed working size
(:data:`WORKING_SIDE` pixels on the longest side), so a number means the same at any camera
resolution:

- ``blur``: the variance of the 3×3 Laplacian (``[[0,1,0],[1,-4,1],[0,1,0]]``) of the grey image,
  *exposure-normalised*: multiplied by ``(128 / mean_luma)²`` (the mean held at 16 or above), i.e.
  the Laplacian variance the frame would have at a mean luminance of 128. An under-exposed frame
  of a sharp item has proportionally smaller pixel differences; normalising keeps it from being
  judged blurred, and it is judged on its own problem (``too_dark``). ``laplacian_var`` keeps the
  raw value.
- ``mean_luma``: mean ITU-R 601 luma, 0–255.
- ``clipped_bright``: the fraction of pixels with any channel at 250 or above (blown out: the
  detail there is gone). Over-exposure is judged on this fraction, not on the mean: a white item
  on a white pan is bright but not over-exposed, while a frame with half of it blown out is.
- ``clipped_dark``: the fraction of pixels with luma at 5 or below (reported, not judged).
- ``structure``: "is anything there?" — the standard deviation of a band-pass of the grey image
  (a 3×3 box mean minus a 31×31 box mean), divided by the mean luma (held at 16 or above). The
  band removes pixel noise (finer) and uneven lighting (coarser), and the division removes
  exposure: an empty pan, however lit and however noisy the sensor, stays below about 0.015;
  a photograph of an item gives 0.08 and more (measured on ``tests/data/photos``).

**Judging** (:func:`judge`, :func:`check`) compares the measures with a camera's
:class:`Thresholds`: ``empty`` when ``structure < empty_max``, ``too_dark`` when
``mean_luma < dark_max``, ``too_bright`` when ``clipped_bright >= bright_min``, ``blurred`` when
``blur < blur_min``. Every problem that holds is reported, in the order of :data:`PROBLEMS`
(fix the light first, then place the item, then hold still): the kiosk shows the first.

**Calibrating** (:func:`calibrate`) chooses each threshold from labelled example measures taken
with the installed camera: in log space, the cut between the two classes with the fewest
examples on the wrong side, and among equal cuts the midpoint of the widest gap (so, for classes
that separate, the geometric mean of the closest pair across the gap).

Example:
    >>> from PIL import Image
    >>> flat = Image.new("RGB", (640, 480), (128, 128, 128))
    >>> check(flat, DEFAULT).problems
    ('empty', 'blurred')
    >>> prepared = prepare(flat, Box(0, 0, 320, 240), max_side=160)
    >>> (prepared.width, prepared.height, len(prepared.sha256))
    (160, 120, 64)
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

__all__ = [
    "DEFAULT",
    "PROBLEMS",
    "WORKING_SIDE",
    "Box",
    "Measures",
    "PhotoError",
    "Prepared",
    "Thresholds",
    "Usability",
    "calibrate",
    "check",
    "judge",
    "measure",
    "prepare",
]

WORKING_SIDE = 384
"""Longest side, in pixels, of the image every measure is taken on."""

PROBLEMS: tuple[str, ...] = ("too_dark", "too_bright", "empty", "blurred")
"""Every problem a shot can have, in the order they are reported and should be fixed: the light
first (a blown-out frame also looks empty and blurred, a black one shows nothing), then the item
(nothing to be sharp without one), then stillness and focus."""

CLIP_HIGH = 250
"""A channel at or above this value is blown out."""

CLIP_LOW = 5
"""A luma at or below this value is crushed to black."""

_MEAN_FLOOR = 16.0
"""Normalising by a mean below this would amplify sensor noise, not detail."""

_LUMA = np.array([0.299, 0.587, 0.114])
THRESHOLDS_KIND = "linli.photo-thresholds"


class PhotoError(ValueError):
    """A photo or a parameter of it cannot be used: a crop box outside the image, a thresholds
    file that is not one, too few calibration examples."""


class Box(NamedTuple):
    """A crop rectangle in pixels of the image as displayed: ``left, top`` included, ``right,
    bottom`` excluded (Pillow's convention). For the terminal's cameras, which write no EXIF
    orientation, that is the sensor's pixel grid.

    Example:
        >>> Box(100, 50, 1180, 910).width
        1080
    """

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True)
class Measures:
    """What :func:`measure` found in one shot (see the module docstring for each measure).

    Attributes:
        blur: Exposure-normalised variance of the Laplacian; low means blurred.
        laplacian_var: The raw variance of the Laplacian, before normalising.
        mean_luma: Mean luma, 0–255.
        clipped_bright: Fraction of pixels with a channel at 250 or above.
        clipped_dark: Fraction of pixels with a luma at 5 or below.
        structure: Exposure-normalised band-pass contrast; near 0 means nothing in frame.
        width: Width of the shot measured, in its own pixels.
        height: Height of the shot measured, in its own pixels.
    """

    blur: float
    laplacian_var: float
    mean_luma: float
    clipped_bright: float
    clipped_dark: float
    structure: float
    width: int
    height: int


@dataclass(frozen=True)
class Thresholds:
    """The limits a shot from one camera must meet; :func:`calibrate` makes them at install time.

    Attributes:
        blur_min: A shot whose ``blur`` is below this is blurred.
        dark_max: A shot whose ``mean_luma`` (0–255) is below this is too dark.
        bright_min: A shot whose ``clipped_bright`` fraction is at or above this is too bright.
        empty_max: A shot whose ``structure`` is below this shows nothing: the pan is empty.
        camera_id: The camera these were calibrated for.

    Example:
        >>> Thresholds.from_json(DEFAULT.to_json()) == DEFAULT
        True
    """

    blur_min: float
    dark_max: float
    bright_min: float
    empty_max: float
    camera_id: str

    def __post_init__(self) -> None:
        for name in ("blur_min", "dark_max", "bright_min", "empty_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PhotoError(f"threshold {name} must be a number, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise PhotoError(f"threshold {name} must be a positive number, not {value!r}")
        if not 0 < self.dark_max < 255:
            raise PhotoError(f"dark_max is a mean luma between 0 and 255, not {self.dark_max}")
        if not 0 < self.bright_min <= 1:
            raise PhotoError(f"bright_min is a fraction of pixels, not {self.bright_min}")
        if not isinstance(self.camera_id, str) or not self.camera_id:
            raise PhotoError("camera_id must be a non-empty string")

    def to_json(self) -> str:
        """The thresholds as a small JSON document (what ``linli terminal calibrate`` writes)."""
        return json.dumps({"kind": THRESHOLDS_KIND, "version": 1, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Thresholds:
        """Read thresholds written by :meth:`to_json`.

        Raises:
            PhotoError: not JSON, not a thresholds document, or a value out of range.
        """
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PhotoError(f"thresholds are not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("kind") != THRESHOLDS_KIND:
            raise PhotoError(f"not a thresholds document (kind must be {THRESHOLDS_KIND!r})")
        if data.get("version") != 1:
            raise PhotoError(f"unknown thresholds version {data.get('version')!r}")
        fields = ("blur_min", "dark_max", "bright_min", "empty_max", "camera_id")
        missing = [name for name in fields if name not in data]
        if missing:
            raise PhotoError(f"thresholds lack {', '.join(missing)}")
        return cls(**{name: data[name] for name in fields})


DEFAULT = Thresholds(
    blur_min=120.0, dark_max=36.0, bright_min=0.2, empty_max=0.034, camera_id="default"
)
"""Thresholds for a camera not calibrated yet: close to what :func:`calibrate` chooses on the
tuning half of ``tests/data/photos`` (see its manifest), rounded. Calibrate each camera."""


@dataclass(frozen=True)
class Usability:
    """The verdict on one shot.

    Attributes:
        ok: ``True`` when the shot has no problem.
        problems: The problems found, in the order of :data:`PROBLEMS`.
        measures: What the verdict was based on.
    """

    ok: bool
    problems: tuple[str, ...]
    measures: Measures


@dataclass(frozen=True)
class Prepared:
    """A shot ready to keep: JPEG bytes without metadata, and their content hash.

    Attributes:
        jpeg: The JPEG file's bytes.
        sha256: Hex SHA-256 of ``jpeg`` (the photo's name in storage).
        width: Width in pixels.
        height: Height in pixels.
    """

    jpeg: bytes = field(repr=False)
    sha256: str
    width: int
    height: int


# --- measuring --------------------------------------------------------------------------------


def _working_rgb(image: Image.Image) -> NDArray[np.float64]:
    """The image as RGB floats, resized to WORKING_SIDE on its longest side."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    if width < 1 or height < 1:
        raise PhotoError("an image without pixels cannot be measured")
    scale = WORKING_SIDE / max(width, height)
    size = (max(3, round(width * scale)), max(3, round(height * scale)))
    resized = rgb.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64)


def _box_mean(grey: NDArray[np.float64], radius: int) -> NDArray[np.float64]:
    """Mean over a (2·radius+1)² window around each pixel (edges repeated), by summed areas."""
    size = 2 * radius + 1
    padded = np.pad(grey, radius, mode="edge")
    summed = np.pad(padded.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    window = summed[size:, size:] - summed[:-size, size:] - summed[size:, :-size]
    window += summed[:-size, :-size]
    result: NDArray[np.float64] = window / (size * size)
    return result


def measure(image: Image.Image) -> Measures:
    """Measure sharpness, exposure and content of a shot (any Pillow mode, any size).

    Example:
        >>> from PIL import Image
        >>> m = measure(Image.new("L", (50, 40), 200))
        >>> (m.blur, round(m.mean_luma), m.structure, m.width, m.height)
        (0.0, 200, 0.0, 50, 40)
    """
    rgb = _working_rgb(image)
    grey: NDArray[np.float64] = rgb @ _LUMA
    mean = float(grey.mean())
    reference = max(mean, _MEAN_FLOOR)
    laplacian = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    )
    laplacian_var = float(laplacian.var())
    band = _box_mean(grey, 1) - _box_mean(grey, 15)
    return Measures(
        blur=laplacian_var * (128.0 / reference) ** 2,
        laplacian_var=laplacian_var,
        mean_luma=mean,
        clipped_bright=float((rgb.max(axis=2) >= CLIP_HIGH).mean()),
        clipped_dark=float((grey <= CLIP_LOW).mean()),
        structure=float(band.std()) / reference,
        width=image.size[0],
        height=image.size[1],
    )


def judge(measures: Measures, thresholds: Thresholds) -> Usability:
    """Compare measures with a camera's thresholds (the pure half of :func:`check`)."""
    found = {
        "empty": measures.structure < thresholds.empty_max,
        "too_dark": measures.mean_luma < thresholds.dark_max,
        "too_bright": measures.clipped_bright >= thresholds.bright_min,
        "blurred": measures.blur < thresholds.blur_min,
    }
    problems = tuple(problem for problem in PROBLEMS if found[problem])
    return Usability(ok=not problems, problems=problems, measures=measures)


def check(image: Image.Image, thresholds: Thresholds) -> Usability:
    """Is this shot usable with this camera's thresholds? Every problem found, in order.

    Example:
        >>> from PIL import Image
        >>> check(Image.new("RGB", (64, 48), (3, 3, 3)), DEFAULT).problems
        ('too_dark', 'empty', 'blurred')
    """
    return judge(measure(image), thresholds)


# --- keeping ----------------------------------------------------------------------------------


def prepare(
    image: Image.Image, crop: Box | None, max_side: int = 1280, quality: int = 85
) -> Prepared:
    """Crop to the pan, drop every metadata block, downscale and encode as JPEG.

    The image is first turned upright by its EXIF orientation (if any), so ``crop`` is in pixels
    of the image as displayed. Only pixels are carried over into a new image: no EXIF (GPS,
    camera serial, time), ICC profile, XMP, comment or text chunk reaches the JPEG. The same
    input gives the same bytes (baseline JPEG, 4:2:0, no optimisation pass).

    Args:
        image: The shot.
        crop: The pan's rectangle, or ``None`` for the whole frame.
        max_side: The longest side after downscaling (never upscaled).
        quality: JPEG quality, 1–95.

    Raises:
        PhotoError: the box is empty or outside the image, or a parameter is out of range.
    """
    if max_side < 1:
        raise PhotoError(f"max_side must be at least 1, not {max_side}")
    if not 1 <= quality <= 95:
        raise PhotoError(f"JPEG quality is 1 to 95, not {quality}")
    upright = ImageOps.exif_transpose(image)
    if crop is not None:
        left, top, right, bottom = crop
        width, height = upright.size
        if not (0 <= left < right <= width and 0 <= top < bottom <= height):
            raise PhotoError(
                f"crop box {tuple(crop)} is empty or outside the {width}×{height} image"
            )
        upright = upright.crop((left, top, right, bottom))
    rgb = upright.convert("RGB")
    # A new image from the pixel bytes alone: nothing of image.info survives.
    pixels = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    width, height = pixels.size
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = pixels.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    pixels.save(out, "JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    jpeg = out.getvalue()
    return Prepared(
        jpeg=jpeg,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        width=pixels.size[0],
        height=pixels.size[1],
    )


# --- calibrating ------------------------------------------------------------------------------


def _cut(low: Iterable[float], high: Iterable[float], floor: float) -> float:
    """The threshold between a class that should fall below and one that should stay above.

    In log space (values held at ``floor`` or above): the cut with the fewest examples on the
    wrong side; among equal cuts, the middle of the widest gap.

    Example:
        >>> round(_cut([10.0, 20.0], [80.0, 200.0], floor=1.0), 3)
        40.0
    """
    lows = [math.log(max(value, floor)) for value in low]
    highs = [math.log(max(value, floor)) for value in high]
    if not lows or not highs:
        raise PhotoError("calibration needs examples on both sides of every threshold")
    values = sorted(set(lows + highs))
    best: tuple[int, float, float] | None = None  # (errors, -gap, cut)
    for below, above in itertools.pairwise(values):
        cut = (below + above) / 2
        errors = sum(value >= cut for value in lows) + sum(value < cut for value in highs)
        candidate = (errors, -(above - below), cut)
        if best is None or candidate < best:
            best = candidate
    if best is None:  # every example has the same value: no cut can tell them apart
        raise PhotoError("the two classes have identical measures: nothing to calibrate on")
    return math.exp(best[2])


def calibrate(
    good: Sequence[Measures],
    bad_blur: Sequence[Measures],
    bad_dark: Sequence[Measures],
    empty: Sequence[Measures],
    camera_id: str,
    *,
    bad_bright: Sequence[Measures] = (),
) -> Thresholds:
    """Choose a camera's thresholds from measures of labelled example shots.

    - ``blur_min`` separates ``bad_blur`` (below) from ``good``. (A very dark shot may also come
      out blurred: quantisation eats fine detail. It is reported too dark first.)
    - ``dark_max`` separates ``bad_dark`` from ``good``.
    - ``bright_min`` separates ``good`` from ``bad_bright``; without over-exposed examples it is
      :data:`DEFAULT`'s (an installer rarely can blow out the pan on purpose).
    - ``empty_max`` separates ``empty`` from every shot with an item (``good``, ``bad_blur``,
      ``bad_dark``): a blurred or dark item is still an item.

    Each cut is chosen as :func:`_cut` says: in log space, fewest errors, widest gap.

    Raises:
        PhotoError: a class without examples, or classes that cannot be told apart at all.

    Example:
        >>> from PIL import Image, ImageFilter
        >>> noise = Image.effect_noise((200, 200), 60)
        >>> t = calibrate(
        ...     [measure(noise)],
        ...     [measure(noise.filter(ImageFilter.GaussianBlur(3)))],
        ...     [measure(noise.point(lambda v: v // 8))],
        ...     [measure(Image.new("L", (200, 200), 128))],
        ...     "cam0",
        ... )
        >>> check(noise, t).ok, t.camera_id
        (True, 'cam0')
    """
    for name, examples in (("good", good), ("blurred", bad_blur), ("dark", bad_dark)):
        if not examples:
            raise PhotoError(f"calibration needs at least one {name} example")
    if not empty:
        raise PhotoError("calibration needs at least one empty example")
    items = [*good, *bad_blur, *bad_dark]
    bright_min = DEFAULT.bright_min
    if bad_bright:
        bright_min = min(
            1.0,
            _cut([m.clipped_bright for m in good], [m.clipped_bright for m in bad_bright], 1e-3),
        )
    return Thresholds(
        blur_min=_cut([m.blur for m in bad_blur], [m.blur for m in good], 1e-3),
        dark_max=_cut([m.mean_luma for m in bad_dark], [m.mean_luma for m in good], 0.5),
        bright_min=bright_min,
        empty_max=_cut([m.structure for m in empty], [m.structure for m in items], 1e-5),
        camera_id=camera_id,
    )
