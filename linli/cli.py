"""The ``linli`` command: one entry point, a sub-command per role.

The CLI is a composition root: it parses arguments and hands over to the role package by name
(``importlib``), so ``linli`` itself keeps importing only the standard library, pydantic and
cryptography, and a locker's Pi never imports the cloud.

Every sub-command honours ``--data-dir`` / ``LINLI_DATA_DIR`` (default ``./linli-data``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from linli import __version__


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("LINLI_DATA_DIR") or "./linli-data")


def build_parser() -> argparse.ArgumentParser:
    """All sub-commands and their options."""
    parser = argparse.ArgumentParser(prog="linli", description="Linli (邻里) sharing station")
    parser.add_argument("--version", action="version", version=f"linli {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("LINLI_LOG_LEVEL", "INFO"))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,  # so a nested sub-command's default cannot erase a given value
        help="data directory (env LINLI_DATA_DIR, default ./linli-data)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", parents=[common], help="the whole system, simulated hardware")
    demo.add_argument("--scenario", choices=["pickup", "valuation"], default=None)
    demo.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto")
    demo.add_argument("--http-port", type=int, default=0, help="0 picks a free port")

    cloud = sub.add_parser("cloud", parents=[common], help="run the cloud API")
    cloud.add_argument("--host", default=None)
    cloud.add_argument("--port", type=int, default=None)
    cloud.add_argument("--broker-url", default=None, help="mqtt://host:port (env LINLI_BROKER_URL)")

    locker = sub.add_parser("locker", parents=[common], help="run or use a locker controller")
    locker_sub = locker.add_subparsers(dest="action")
    run = locker_sub.add_parser("run", parents=[common], help="run the controller daemon")
    run.add_argument("--board", default=os.environ.get("LINLI_BOARD", "gpio-4"))
    run.add_argument(
        "--gpio",
        choices=["lgpio", "simulated"],
        default=os.environ.get("LINLI_GPIO"),
        help="GPIO backend; 'simulated' must be asked for explicitly (env LINLI_GPIO)",
    )
    run.add_argument(
        "--port",
        default=os.environ.get("LINLI_BUS_PORT"),
        help="serial port of an RS485 bank (kerong-4, modbus-4): a path or pyserial URL",
    )
    run.add_argument("--broker-url", default=None)
    locker_sub.add_parser("code", parents=[common], help="enter a code at the local keypad")

    bus = sub.add_parser("bus", parents=[common], help="installer tools for RS485 lock boards")
    bus_sub = bus.add_subparsers(dest="action", required=True)
    for action, text in (
        ("scan", "print each board that answers, as 'board N'"),
        ("selftest", "pulse one latch once; record polarity, capabilities, raw replies, RTT"),
    ):
        tool = bus_sub.add_parser(action, parents=[common], help=text)
        tool.add_argument("--port", required=True, help="device path or pyserial URL")
        tool.add_argument("--protocol", choices=["kerong", "modbus"], required=True)
        tool.add_argument("--baudrate", type=int, default=0, help="0: the protocol's default")
        if action == "scan":
            tool.add_argument("--addresses", default=None, help="e.g. 0-15 or 1-247")
        else:
            tool.add_argument("--board", type=int, required=True, help="board number / unit")
            tool.add_argument(
                "--channel", type=int, required=True, help="Kerong lock 1-16, Modbus relay 0-7"
            )
            tool.add_argument("--report", default=None, help="where to write the JSON record")

    scale = sub.add_parser("scale", parents=[common], help="installer tools for serial scales")
    scale_sub = scale.add_subparsers(dest="action", required=True)
    read = scale_sub.add_parser("read", parents=[common], help="read the scale's weight")
    read.add_argument("--port", required=True, help="device path or pyserial URL")
    read.add_argument("--format", choices=["and", "continuous", "sics"], default="sics")
    read.add_argument("--baudrate", type=int, default=9600)
    read.add_argument("--count", type=int, default=1, help="stable readings to print")

    terminal = sub.add_parser("terminal", parents=[common], help="run the valuation terminal")
    terminal.add_argument("--broker-url", default=None)
    _role_arguments("valuation_terminal.cli", terminal, common)

    db = sub.add_parser("db", parents=[common], help="the cloud store")
    db.add_argument("action", choices=["migrate"])

    ledger = sub.add_parser("ledger", parents=[common], help="the points ledger")
    ledger_sub = ledger.add_subparsers(dest="action", required=True)
    ledger_sub.add_parser(
        "verify",
        parents=[common],
        help="recompute balances, holds, reversals, limits, chain and roots; exit 1 on a mismatch",
    )
    sign = ledger_sub.add_parser(
        "sign-day", parents=[common], help="sign and record the daily Merkle root"
    )
    sign.add_argument("--day", default=None, help="YYYY-MM-DD (default: today, community time)")

    contract = sub.add_parser("contract", help="the device–cloud contract")
    contract.add_argument("action", choices=["schema"])
    return parser


def _role_arguments(
    module: str, parser: argparse.ArgumentParser, common: argparse.ArgumentParser
) -> None:
    """Let a role's CLI module add its own options (skipped where its extra is not installed:
    that command cannot run on this machine anyway)."""
    try:
        role = importlib.import_module(module)
    except ModuleNotFoundError:
        return
    role.register(parser, common)


def main(argv: list[str] | None = None) -> int:
    """Run the ``linli`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "contract":
        import json

        from linli.contract.schema import contract_schemas

        print(json.dumps(contract_schemas(), indent=2, ensure_ascii=False))
        return 0
    data_dir = _data_dir(getattr(args, "data_dir", None))
    target = {
        "demo": "station.cli",
        "cloud": "cloud_api.cli",
        "db": "cloud_api.cli",
        "locker": "locker_controller.cli",
        "terminal": "valuation_terminal.cli",
        "ledger": "cloud_api.ledger_verify",
        "bus": "firmware_bridge.cli",
        "scale": "firmware_bridge.cli",
    }[args.command]
    try:
        module = importlib.import_module(target)
    except ImportError as exc:
        extra = {
            "station.cli": "demo",
            "cloud_api.cli": "cloud",
            "cloud_api.ledger_verify": "cloud",
            "firmware_bridge.cli": "locker",
        }.get(target, args.command)
        print(
            f"linli {args.command} needs the [{extra}] extra: pip install 'linli[{extra}]' ({exc})",
            file=sys.stderr,
        )
        return 2
    result: int = module.main(args, data_dir)
    return result


if __name__ == "__main__":
    sys.exit(main())
