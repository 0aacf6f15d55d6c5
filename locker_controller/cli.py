"""``linli locker run`` (the controller daemon) and ``linli locker code`` (the local keypad)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linli.broker import BrokerAddress
from linli.i18n import t
from linli.identity import DeviceIdentity, IdentityError

log = logging.getLogger(__name__)


def _pin_factory(backend: str | None) -> object:
    """The GPIO pin factory named in settings. Simulation must be asked for; no fallback."""
    if backend == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if backend == "simulated":
        from locker_controller.sim import simulation_factory

        log.warning("GPIO is SIMULATED (gpiozero MockFactory): no real latch will move")
        return simulation_factory()
    raise SystemExit("choose the GPIO backend explicitly: --gpio lgpio (a Pi) or --gpio simulated")


def _lock_bus(args: argparse.Namespace) -> tuple[list[str], Callable[..., Any]]:
    """Compartment names and the lock-bus factory of the board named in the arguments.

    A serial bank (``kerong-4``, ``modbus-4``) needs ``--port``; a GPIO board needs ``--gpio``.
    A bad board map stops here, before any relay moves.
    """
    from hardware.gpio import BoardDefinitionError, board_by_name
    from hardware.serial_boards import BANKS, BankDefinitionError, bank_by_name

    if args.board in BANKS:
        from firmware_bridge.lockbus import open_lock_bus

        try:
            bank = bank_by_name(args.board)
        except BankDefinitionError as exc:
            raise SystemExit(str(exc)) from None
        if not args.port:
            raise SystemExit(f"{args.board} is an RS485 bank: give its serial port with --port")
        port = args.port
        return bank.compartment_names(), lambda deliver: open_lock_bus(bank, port, deliver)
    from locker_controller.gpio import GpioLockBus

    try:
        board = board_by_name(args.board)
    except BoardDefinitionError as exc:
        raise SystemExit(str(exc)) from None
    factory = _pin_factory(args.gpio)
    return board.compartment_names(), lambda deliver: GpioLockBus(board, factory, deliver)  # type: ignore[arg-type]


def main(args: argparse.Namespace, data_dir: Path) -> int:
    """Run a locker sub-command."""
    if args.action == "code":
        from locker_controller.keypad import enter_code

        code = getpass.getpass(t("code.prompt", os.environ.get("LINLI_LANGUAGE", "zh-CN")) + ": ")
        try:
            reply = enter_code(data_dir / "keypad.sock", code)
        except OSError as exc:
            print(
                f"no controller keypad at {data_dir / 'keypad.sock'} ({exc.strerror})",
                file=sys.stderr,
            )
            return 2
        print(reply["text"])
        return 0 if reply["key"] == "code.accepted" else 1
    if args.action != "run":
        print("usage: linli locker {run,code} --data-dir DIR", file=sys.stderr)
        return 2

    from locker_controller.daemon import LockerDaemon
    from locker_controller.keypad import LocalKeypad

    try:
        identity = DeviceIdentity.load(data_dir / "identity.json")
        names, make_bus = _lock_bus(args)
    except IdentityError as exc:
        raise SystemExit(str(exc)) from None
    broker = BrokerAddress.from_url(
        args.broker_url or os.environ.get("LINLI_BROKER_URL", "mqtt://127.0.0.1:1883"),
        os.environ.get("LINLI_BROKER_USERNAME"),
        os.environ.get("LINLI_BROKER_PASSWORD"),
    )
    daemon = LockerDaemon(
        identity,
        names,
        make_bus,
        data_dir,
        broker,
        keepalive_s=int(os.environ.get("LINLI_KEEPALIVE_S", "10")),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    daemon.start()
    keypad = LocalKeypad(daemon, data_dir / "keypad.sock").start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        keypad.stop()
        daemon.stop()
    return 0
