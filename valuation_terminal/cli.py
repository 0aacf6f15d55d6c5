"""``linli terminal``: the valuation terminal daemon; ``linli terminal calibrate``: the camera's
photo thresholds.

The daemon (:mod:`valuation_terminal.daemon`) takes its settings from ``linli terminal``'s
options where the parser has them, else from the environment (``LINLI_CLOUD_URL``,
``LINLI_TERMINAL_SCALE``, ``LINLI_TERMINAL_CAMERA``...: :data:`valuation_terminal.daemon.ENV`),
so ``linli terminal --broker-url ...`` keeps working with the settings in
``/etc/linli/terminal.env``.

``linli/cli.py`` asks this module for the options (:func:`register`, through ``importlib`` so
``linli`` imports no role package), as it dispatches to :func:`main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

OPTIONS: tuple[tuple[str, str], ...] = (
    ("--cloud-url", "the cloud's URL (env LINLI_CLOUD_URL)"),
    ("--token-file", "the terminal's HTTP token (default <data-dir>/secrets/terminal_token)"),
    ("--scale", "serial port of the scale, or 'sim' (env LINLI_TERMINAL_SCALE)"),
    ("--scale-format", "sics, and or continuous (env LINLI_TERMINAL_SCALE_FORMAT)"),
    ("--scale-baudrate", "the scale's baud rate (default 9600)"),
    ("--camera", "picamera2, opencv or sim (env LINLI_TERMINAL_CAMERA)"),
    (
        "--camera-options",
        "key=value,... e.g. sources=DIR for sim (env LINLI_TERMINAL_CAMERA_OPTIONS)",
    ),
    ("--kiosk-port", "the kiosk's port on 127.0.0.1 (default 8080)"),
    ("--crop", "left,top,right,bottom: the pan in the camera's frame"),
    ("--thresholds", "photo thresholds from linli terminal calibrate"),
)
"""``linli terminal``'s options besides ``--broker-url`` (each also an environment variable)."""


def register(terminal: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """Add ``linli terminal``'s options (:data:`OPTIONS`) and its ``calibrate`` sub-command."""
    from valuation_terminal.calibrate import add_arguments

    for flag, text in OPTIONS:
        terminal.add_argument(flag, default=None, help=text)
    actions = terminal.add_subparsers(dest="action")
    calibrate = actions.add_parser(
        "calibrate", parents=[common], help="measure a camera's photo thresholds"
    )
    add_arguments(calibrate)


def main(args: argparse.Namespace, data_dir: Path) -> int:
    """Run ``linli terminal`` (the daemon) or ``linli terminal calibrate``."""
    if getattr(args, "action", None) == "calibrate":
        from valuation_terminal.calibrate import calibrate_command

        return calibrate_command(args)
    from valuation_terminal.daemon import ConfigError, TerminalConfig, run

    try:
        config = TerminalConfig.from_args(args, data_dir)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    return run(config)
