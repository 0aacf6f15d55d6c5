"""``linli demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from station.demo import run


def main(args: argparse.Namespace, data_dir: Path) -> int:
    """Run the demo (optionally one scenario)."""
    return run(data_dir, args.scenario, args.broker, args.http_port)
