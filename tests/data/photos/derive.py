"""Make the photo test set of the valuation terminal's usability check, reproducibly.

Two steps (the README beside ``tests/data`` says where every photograph comes from)::

    python tests/data/photos/derive.py import DIR   # originals/ from the unpacked packages in DIR
    python tests/data/photos/derive.py              # derived/ and manifest.json from originals/

``import`` reads the packages' own files (see :data:`SOURCES` for each path and licence), turns
them upright RGB or grey, downscales them to at most 640 px on the longest side (Lanczos) and
stores them as baseline JPEG, quality 90, with no metadata. DIR holds each package unpacked
under its own folder name::

    DIR/scikit-image/               unzip scikit_image-0.26.0-*.whl
    DIR/scikit-learn/               unzip scikit_learn-1.9.1-*.whl
    DIR/scipy/                      unzip scipy-1.9.3-*.whl
    DIR/pywavelets/                 unzip pywavelets-1.9.0-*.whl
    DIR/plasma-workspace-wallpapers/  dpkg-deb -x plasma-workspace-wallpapers_4%3a5.27.5-2_all.deb

(``pip download NAME==VERSION --no-deps --only-binary=:all:`` and Debian 12's
``apt-get download plasma-workspace-wallpapers`` fetch them.)

The default step derives, from each usable original, the variants the check must flag — every
one made by a fixed recipe, with fixed seeds, from the stored original downscaled to at most
480 px (Lanczos; to keep the folder near 3 MB), stored as JPEG quality 70:

- ``blurred``: Gaussian blur with σ = 0.5 % of the longest side (3.2 px at 640 px): a camera out of
  focus, or an item that moved.
- ``dark``: exposure lowered by 5 EV in linear light (gamma 2.2), requantised to 8 bits; no
  noise is added (a real under-exposed shot would also be noisy).
- ``bright``: exposure raised in linear light until the median pixel's brightest channel reaches
  white, and at least +2 EV: half of the frame blown out, as with a lamp or the sun in the frame.
- ``empty`` (synthetic, *not a photograph*): a flat surface of the original's mean colour with a
  15 % vignette and sensor-like noise (read noise σ = 2 levels plus shot noise), as an empty pan
  would look with that lighting.
- ``empty`` crops: a few texture-free regions (sky, a plain wall, an out-of-focus background) of
  the originals, at their own pixels. Real photographs of nothing in particular.

The manifest lists every file with its source, licence, role (``tuning`` or ``test``: a fixed
split of the originals, each derived file following its original), the problems the check is
expected to find (``expected``; empty for a usable shot) and the SHA-256 of its bytes.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
ORIGINALS = HERE / "originals"
DERIVED = HERE / "derived"
MANIFEST = HERE / "manifest.json"
MAX_SIDE = 640
ORIGINAL_QUALITY = 85
DERIVED_QUALITY = 70
DERIVED_MAX_SIDE = 480
BLUR_FRACTION = 0.005
DARK_EV = -5.0
BRIGHT_MIN_EV = 2.0
GAMMA = 2.2

SKIMAGE = ("scikit-image", "0.26.0", "skimage/data/_fetchers.py (the loader's docstring)")
SKLEARN = ("scikit-learn", "1.9.1", "sklearn/datasets/images/README.txt")
SCIPY = ("scipy", "1.9.3", "scipy/misc/_common.py (face's docstring)")
PYWT = ("pywavelets", "1.9.0", "pywt/data/_readers.py (ascent's docstring)")
KDE = (
    "plasma-workspace-wallpapers",
    "4:5.27.5-2 (Debian 12)",
    'usr/share/wallpapers/<name>/metadata.json ("License"); debian/copyright: GPL-2+',
)
KDE_IMAGE = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
PD = "public domain"


@dataclass(frozen=True)
class Source:
    """One photograph taken from a package."""

    name: str
    package: tuple[str, str, str]  # (name, version, where the licence is stated)
    path: str  # inside the unpacked package
    origin: str  # the photographer or camera, as the package documents it
    licence: str
    role: str  # tuning | test
    expected: tuple[str, ...] = ()  # the problems a correct check finds in it
    crop: tuple[int, int, int, int] | None = None  # of the 640 px image: keep only this
    loader: str = "image"  # image | scipy_face | npz


SOURCES: tuple[Source, ...] = (
    Source("astronaut", SKIMAGE, "skimage/data/astronaut.png", "NASA Great Images database (Eileen Collins)", f"{PD} (\"No known copyright restrictions, released into the public domain\")", "tuning"),
    Source("camera", SKIMAGE, "skimage/data/camera.png", "photographer Lav Varshney", "CC0", "tuning"),
    Source("chelsea", SKIMAGE, "skimage/data/chelsea.png", "photographer Stefan van der Walt", "CC0", "test"),
    Source("coffee", SKIMAGE, "skimage/data/coffee.png", "photographer Rachel Michetti (Pikolo Espresso Bar)", "CC0", "tuning"),
    Source("rocket", SKIMAGE, "skimage/data/rocket.jpg", "SpaceX (DSCOVR launch on Falcon 9)", f"{PD} (released by SpaceX)", "test"),
    Source("brick", SKIMAGE, "skimage/data/brick.png", "CC0Textures Bricks25, perspective-corrected, rotated and greyscaled by scikit-image", "CC0", "tuning"),
    Source("grass", SKIMAGE, "skimage/data/grass.png", "DeviantArt user linolafett (Grass-01), cropped and greyscaled by scikit-image", "CC0", "test"),
    Source("gravel", SKIMAGE, "skimage/data/gravel.png", "CC0Textures Gravel04, rescaled, cropped and greyscaled by scikit-image", "CC0", "tuning"),
    Source("coins", SKIMAGE, "skimage/data/coins.png", "Brooklyn Museum collection (Greek coins from Pompeii)", "no known copyright restrictions", "test"),
    Source("ihc", SKIMAGE, "skimage/data/ihc.png", "Center for Microscopy and Molecular Imaging (CMMI), microscope camera", "no known copyright restrictions", "tuning"),
    Source("retina", SKIMAGE, "skimage/data/retina.jpg", "fundus camera, Mikael Häggström (Wikimedia Commons)", "CC0 1.0", "test"),
    Source("text", SKIMAGE, "skimage/data/text.png", "Wikipedia File:Corner.png (handwriting on a board)", f"{PD} (\"No known copyright restrictions, released into the public domain\")", "test"),
    Source("clock_motion", SKIMAGE, "skimage/data/clock_motion.png", "photographer Stefan van der Walt; the camera moved horizontally during the exposure (real motion blur)", f"{PD} (released by the photographer)", "test", ("blurred",)),
    Source("china", SKLEARN, "sklearn/datasets/images/china.jpg", "Flickr user danielbuechele, retrieved by Robert Layton", "CC BY 2.0 (attribution: danielbuechele)", "tuning"),
    Source("flower", SKLEARN, "sklearn/datasets/images/flower.jpg", "Flickr user vultilion, retrieved by Robert Layton", "CC BY 2.0 (attribution: vultilion; the README also names danielbuechele)", "test"),
    Source("face", SCIPY, "scipy/misc/face.dat", "raccoon-procyon-lotor.jpg from public-domain-image.com", f"{PD} (per the source scipy names)", "tuning", loader="scipy_face"),
    Source("ascent", PYWT, "pywt/data/ascent.npz", "accent-to-the-top.jpg from public-domain-image.com", f"{PD} (per the source PyWavelets names)", "test", loader="npz"),
    Source("kde_bythewater", KDE, KDE_IMAGE.format("BytheWater"), "Maciej Wiklo; EXIF: Nokia N9", "LGPL-3.0", "tuning"),
    Source("kde_colorfulcups", KDE, KDE_IMAGE.format("ColorfulCups"), "Dmitri Popov; EXIF: Sony NEX-3N", "LGPL-3.0", "test"),
    Source("kde_eveningglow", KDE, KDE_IMAGE.format("EveningGlow"), "Ian Hex; no EXIF", "LGPL-3.0", "test"),
    Source("kde_fallenleaf", KDE, KDE_IMAGE.format("FallenLeaf"), "Martin Klapetek; EXIF: Canon EOS 70D", "LGPL-3.0", "tuning"),
    Source("kde_grey", KDE, KDE_IMAGE.format("Grey"), "Sigi Sagi; no EXIF", "LGPL-3.0", "tuning"),
    Source("kde_onestandsout", KDE, KDE_IMAGE.format("OneStandsOut"), "Risto Saukonpää; EXIF: Olympus E-M1", "LGPL-3.0", "test"),
    Source("kde_path", KDE, KDE_IMAGE.format("Path"), "Risto Saukonpää; EXIF: Olympus E-M1", "LGPL-3.0", "tuning"),
    Source("kde_kite_sky", KDE, KDE_IMAGE.format("Kite"), "Risto Saukonpää; EXIF: Olympus E-M1 (a crop of open sky)", "LGPL-3.0", "tuning", ("empty",), (99, 66, 232, 199)),
    Source("kde_summer_1am_sky", KDE, KDE_IMAGE.format("summer_1am"), "Risto Saukonpää; no EXIF (a crop of evening sky)", "LGPL-3.0", "tuning", ("empty",), (330, 99, 463, 232)),
    Source("kde_coldripple_fog", KDE, KDE_IMAGE.format("ColdRipple"), "Risto Saukonpää; EXIF: Olympus E-M1 (a crop of fog)", "LGPL-3.0", "test", ("empty",), (33, 0, 166, 133)),
    Source("kde_darkesthour_sky", KDE, KDE_IMAGE.format("DarkestHour"), "Risto Saukonpää; EXIF: Olympus E-M1 (a crop of night sky)", "LGPL-3.0", "test", ("empty",), (231, 0, 364, 133)),
)  # fmt: skip

EMPTY_CROPS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "china_sky": ("china", (350, 35, 492, 177)),
    "flower_bokeh": ("flower", (0, 140, 142, 282)),
    "clock_motion_wall": ("clock_motion", (0, 25, 100, 125)),
}
"""Texture-free regions of stored originals (boxes in their pixels), kept as real empty shots."""


# --- import -----------------------------------------------------------------------------------


def _load(source: Source, root: Path) -> Image.Image:
    path = root / source.package[0] / source.path
    if source.loader == "scipy_face":  # bz2 of raw 768×1024 RGB bytes (scipy.misc.face)
        pixels = np.frombuffer(bz2.decompress(path.read_bytes()), dtype=np.uint8)
        return Image.fromarray(pixels.reshape(768, 1024, 3), "RGB")
    if source.loader == "npz":  # a 512×512 grey array under "data" (pywt.data.ascent)
        with np.load(path, allow_pickle=False) as data:
            return Image.fromarray(np.asarray(data["data"]).astype(np.uint8), "L")
    with Image.open(path) as image:
        image.load()
        return image.copy()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    """Baseline JPEG of the pixels alone (a fresh image: no EXIF, ICC, comment)."""
    fresh = Image.frombytes(image.mode, image.size, image.tobytes())
    out = io.BytesIO()
    fresh.save(out, "JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return out.getvalue()


def import_originals(root: Path) -> None:
    """Write originals/ from the unpacked packages under ``root``."""
    ORIGINALS.mkdir(exist_ok=True)
    for source in SOURCES:
        image = _load(source, root)
        image = image.convert("L") if image.mode in ("L", "I", "I;16", "1") else image
        image = image.convert("RGB") if image.mode != "L" else image
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        if source.crop is not None:
            image = image.crop(source.crop)
        (ORIGINALS / f"{source.name}.jpg").write_bytes(_jpeg(image, ORIGINAL_QUALITY))
        print(f"originals/{source.name}.jpg {image.size[0]}×{image.size[1]}")


# --- derive -----------------------------------------------------------------------------------


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def _expose(image: Image.Image, ev: float) -> Image.Image:
    """Change the exposure by ``ev`` stops in linear light, clip, back to 8-bit gamma."""
    values = np.asarray(image, dtype=np.float64) / 255.0
    linear = np.clip(values**GAMMA * 2.0**ev, 0.0, 1.0)
    return Image.fromarray(np.round(linear ** (1 / GAMMA) * 255).astype(np.uint8), image.mode)


def blurred(image: Image.Image) -> tuple[Image.Image, str]:
    sigma = BLUR_FRACTION * max(image.size)
    return image.filter(ImageFilter.GaussianBlur(sigma)), f"Gaussian blur, sigma {sigma:.2f} px"


def dark(image: Image.Image) -> tuple[Image.Image, str]:
    return _expose(image, DARK_EV), f"exposure {DARK_EV:+.1f} EV in linear light (gamma {GAMMA})"


def bright(image: Image.Image) -> tuple[Image.Image, str]:
    values = np.asarray(image, dtype=np.float64) / 255.0
    brightest = values.max(axis=2) if values.ndim == 3 else values
    median = float(np.median(brightest**GAMMA))
    ev = max(BRIGHT_MIN_EV, math.log2(1.0 / max(median, 1e-6)))
    how = f"exposure {ev:+.2f} EV in linear light (gamma {GAMMA}): the median pixel at white"
    return _expose(image, ev), how


def empty_flat(image: Image.Image, name: str) -> tuple[Image.Image, str]:
    values = np.asarray(image, dtype=np.float64)
    colour = values.reshape(-1, values.shape[2] if values.ndim == 3 else 1).mean(axis=0)
    height, width = values.shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    radius2 = ((x - width / 2) / (width / 2)) ** 2 + ((y - height / 2) / (height / 2)) ** 2
    vignette = 1.0 - 0.15 * radius2 / 2.0
    base = vignette[:, :, None] * colour[None, None, :]
    rng = np.random.default_rng(_seed(name))
    noise = rng.normal(0.0, 1.0, base.shape) * np.sqrt(4.0 + 0.05 * base)
    pixels = np.clip(np.round(base + noise), 0, 255).astype(np.uint8)
    flat = Image.fromarray(pixels[:, :, 0] if image.mode == "L" else pixels, image.mode)
    how = (
        "synthetic, not a photograph: flat surface of the original's mean colour, 15 % vignette, "
        f"Gaussian read noise sigma 2 plus shot noise, numpy PCG64 seed sha256({name!r})[:8]"
    )
    return flat, how


def _entry(path: Path, **fields: object) -> dict[str, object]:
    with Image.open(path) as image:
        size = image.size
    data = path.read_bytes()
    return {
        "file": path.relative_to(HERE).as_posix(),
        **fields,
        "width": size[0],
        "height": size[1],
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def derive() -> None:
    """Write derived/ and manifest.json from originals/."""
    DERIVED.mkdir(exist_ok=True)
    for old in DERIVED.glob("*.jpg"):
        old.unlink()
    files: list[dict[str, object]] = []
    by_name = {source.name: source for source in SOURCES}
    for source in SOURCES:
        path = ORIGINALS / f"{source.name}.jpg"
        package, version, licence_where = source.package
        provenance = {
            "source_package": package,
            "package_version": version,
            "original_path": source.path,
            "origin": source.origin,
            "licence": source.licence,
            "licence_stated_in": licence_where,
        }
        how = f"downscaled to <= {MAX_SIDE} px (Lanczos), JPEG q{ORIGINAL_QUALITY}, no metadata"
        if source.crop is not None:
            how += f"; then cropped to {list(source.crop)}"
        files.append(
            _entry(
                path,
                kind="original",
                role=source.role,
                expected=list(source.expected),
                **provenance,
                derived_from=None,
                how=how,
            )
        )
        if source.expected:  # only usable originals get variants: their labels stay clean
            continue
        with Image.open(path) as stored:
            original = stored.convert(stored.mode)
        original.thumbnail((DERIVED_MAX_SIDE, DERIVED_MAX_SIDE), Image.Resampling.LANCZOS)
        variants = [
            ("blurred", *blurred(original)),
            ("dark", *dark(original)),
            ("bright", *bright(original)),
            ("empty", *empty_flat(original, source.name)),
        ]
        labels = {"blurred": "blurred", "dark": "too_dark", "bright": "too_bright"}
        for suffix, image, how in variants:
            out = DERIVED / f"{source.name}.{suffix}.jpg"
            out.write_bytes(_jpeg(image, DERIVED_QUALITY))
            files.append(
                _entry(
                    out,
                    kind="derived",
                    role=source.role,
                    expected=[labels.get(suffix, "empty")],
                    **provenance,
                    derived_from=f"originals/{source.name}.jpg",
                    how=how,
                )
            )
    for crop_name, (original_name, box) in EMPTY_CROPS.items():
        source = by_name[original_name]
        with Image.open(ORIGINALS / f"{original_name}.jpg") as stored:
            crop = stored.crop(box)
        out = DERIVED / f"{crop_name}.empty.jpg"
        out.write_bytes(_jpeg(crop, DERIVED_QUALITY))
        package, version, licence_where = source.package
        files.append(
            _entry(
                out,
                kind="derived",
                role=source.role,
                expected=["empty"],
                source_package=package,
                package_version=version,
                original_path=source.path,
                origin=source.origin,
                licence=source.licence,
                licence_stated_in=licence_where,
                derived_from=f"originals/{original_name}.jpg",
                how=f"crop {list(box)}: a texture-free region of a real photograph",
            )
        )
    manifest = {
        "about": (
            "Real photographs from packages, and variants derived from them, for the valuation "
            "terminal's photo usability check (tests/test_terminal_images.py). Regenerate with "
            "tests/data/photos/derive.py; provenance in tests/data/README."
        ),
        "recipes": {
            "blurred": f"Gaussian sigma = {BLUR_FRACTION} x longest side",
            "dark": f"{DARK_EV:+} EV, linear light, gamma {GAMMA}",
            "bright": f"median pixel to white, at least {BRIGHT_MIN_EV:+} EV",
            "empty": "synthetic flat + noise, or a texture-free crop of a real photograph",
        },
        "files": files,
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"{len(files)} files in manifest.json")


if __name__ == "__main__":
    if sys.argv[1:2] == ["import"] and len(sys.argv) == 3:
        import_originals(Path(sys.argv[2]))
    elif len(sys.argv) == 1:
        derive()
    else:
        raise SystemExit(__doc__)
