"""``linli terminal calibrate``: choose the photo thresholds of the installed camera.

Run once at install time, with the camera in its final place above the pan and the pan light
as it will be. Two forms:

- **From folders** of sample shots, one folder per kind (each shot: ``.jpg``, ``.jpeg`` or
  ``.png``)::

      linli terminal calibrate --good DIR --blurred DIR --dark DIR --empty DIR \\
          [--bright DIR] --camera-id pan-cam --out thresholds.json

- **From the camera**: the installer is asked, step by step, to clear the pan, lay an item,
  move it while shots are taken, and turn the pan light off; each step takes ``--shots``
  photographs, kept under ``--capture-dir`` for the record::

      linli terminal calibrate --camera picamera2 --shots 5 --out thresholds.json

Each threshold is the cut between the labelled kinds chosen by
:func:`valuation_terminal.core.images.calibrate`; the command prints the thresholds and how each
sample shot is judged with them, and writes the JSON that
:meth:`~valuation_terminal.core.images.Thresholds.from_json` reads. Exit status: 0 written,
1 the samples cannot be told apart (nothing written), 2 a folder or camera is missing.

Wiring (``linli/cli.py``)::

    calibrate = terminal_sub.add_parser("calibrate", help="choose the camera's photo thresholds")
    add_arguments(calibrate)
    ...
    return calibrate_command(args)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from valuation_terminal.camera import Camera, CameraError, open_camera
from valuation_terminal.core.images import (
    Measures,
    PhotoError,
    Thresholds,
    calibrate,
    judge,
    measure,
)

__all__ = ["STEPS", "add_arguments", "build_parser", "calibrate_command"]

SUFFIXES = {".jpg", ".jpeg", ".png"}

STEPS: tuple[tuple[str, str, str], ...] = (
    ("empty", "empty", "Clear the pan completely (nothing on it), then press Enter."),
    ("good", "good", "Lay an item with fine detail (a book, a printed box) on the pan, keep the "
     "light on, then press Enter."),
    ("blurred", "blurred", "Keep the item on the pan and slide it slowly to and fro while the "
     "shots are taken; press Enter to start."),
    ("dark", "dark", "Leave the item on the pan and switch the pan light off (or cover it), "
     "then press Enter."),
)  # fmt: skip
"""The camera form's steps: (folder and argument name, class, what the installer is asked)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the calibrate command's arguments to ``parser``."""
    folders = parser.add_argument_group("from folders of sample shots")
    for name, _, _ in STEPS:
        folders.add_argument(f"--{name}", type=Path, default=None, help=f"{name} shots")
    folders.add_argument("--bright", type=Path, default=None, help="over-exposed shots")
    camera = parser.add_argument_group("from the camera")
    camera.add_argument("--camera", choices=["picamera2", "opencv"], default=None)
    camera.add_argument("--device", default="0", help="OpenCV device index or path")
    camera.add_argument("--shots", type=int, default=5, help="shots per step")
    camera.add_argument("--capture-dir", type=Path, default=None, help="where shots are kept")
    parser.add_argument("--camera-id", default=None, help="name of the camera calibrated")
    parser.add_argument("--out", type=Path, required=True, help="thresholds JSON to write")


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser (``python -m valuation_terminal.calibrate``)."""
    parser = argparse.ArgumentParser(
        prog="linli terminal calibrate", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    return parser


def _shots_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    shots = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if not shots:
        raise FileNotFoundError(f"no .jpg, .jpeg or .png shot in {folder}")
    return shots


def _measure_folder(folder: Path) -> list[Measures]:
    measures = []
    for path in _shots_in(folder):
        with Image.open(path) as image:
            measures.append(measure(image))
    return measures


def _capture_steps(
    camera: Camera, shots: int, capture_dir: Path, ask: Callable[[str], object]
) -> dict[str, Path]:
    """Walk the installer through the steps; return the folder of each step's shots."""
    folders: dict[str, Path] = {}
    for number, (name, _, instruction) in enumerate(STEPS, start=1):
        ask(f"Step {number}/{len(STEPS)} ({name}): {instruction}")
        folder = capture_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(1, shots + 1):
            shot = camera.capture()
            shot.image.save(folder / f"{name}-{index:03d}.png")
        folders[name] = folder
    return folders


def calibrate_command(
    args: argparse.Namespace,
    *,
    camera: Camera | None = None,
    ask: Callable[[str], object] = input,
) -> int:
    """Run ``linli terminal calibrate``; see the module docstring.

    Args:
        args: Parsed by a parser that :func:`add_arguments` filled.
        camera: A camera already open (tests pass a :class:`~valuation_terminal.camera.SimCamera`);
            otherwise ``--camera`` opens one, or the folders are used.
        ask: Shows an instruction and returns when the installer is ready.
    """
    camera_id: str | None = args.camera_id
    try:
        if camera is not None or args.camera is not None:
            if camera is None:
                device = int(args.device) if str(args.device).isdigit() else args.device
                options = {"device": device} if args.camera == "opencv" else {}
                camera = open_camera(args.camera, **options)
            try:
                capture_dir = args.capture_dir or args.out.parent / "calibration-shots"
                folders = _capture_steps(camera, args.shots, capture_dir, ask)
            finally:
                camera.close()
            camera_id = camera_id or camera.camera_id
        else:
            missing = [f"--{name}" for name, _, _ in STEPS if getattr(args, name) is None]
            if missing:
                print(f"calibrate needs --camera, or {', '.join(missing)}", file=sys.stderr)
                return 2
            folders = {name: getattr(args, name) for name, _, _ in STEPS}
        if args.bright is not None:
            folders["bright"] = args.bright
        samples = {name: _measure_folder(folder) for name, folder in folders.items()}
    except (FileNotFoundError, CameraError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    try:
        thresholds = calibrate(
            samples["good"],
            samples["blurred"],
            samples["dark"],
            samples["empty"],
            camera_id or "default",
            bad_bright=samples.get("bright", ()),
        )
    except PhotoError as exc:
        print(f"calibrate: {exc}; nothing written", file=sys.stderr)
        return 1
    _report(thresholds, samples)
    _write(args.out, thresholds)
    print(f"wrote {args.out}")
    return 0


def _report(thresholds: Thresholds, samples: dict[str, list[Measures]]) -> None:
    expected = {"good": None, "blurred": "blurred", "dark": "too_dark", "bright": "too_bright"}
    expected["empty"] = "empty"
    print(
        f"camera {thresholds.camera_id}: blur_min {thresholds.blur_min:.1f}, "
        f"dark_max {thresholds.dark_max:.1f}, bright_min {thresholds.bright_min:.3f}, "
        f"empty_max {thresholds.empty_max:.4f}"
    )
    for name, measures in samples.items():
        problem = expected[name]
        verdicts = [judge(m, thresholds) for m in measures]
        right = sum(v.ok if problem is None else problem in v.problems for v in verdicts)
        print(f"  {name:8} {right}/{len(verdicts)} judged as expected")


def _write(path: Path, thresholds: Thresholds) -> None:
    """Write the file whole or not at all (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(thresholds.to_json(), "utf-8")
    temporary.replace(path)


if __name__ == "__main__":
    sys.exit(calibrate_command(build_parser().parse_args()))
