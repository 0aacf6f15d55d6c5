"""A simulated locker bank: the real controller daemon on gpiozero's MockFactory, wired to the
door and occupancy simulator. Simulation is chosen here, explicitly, never as a fallback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hardware.gpio import board_by_name
from linli.broker import BrokerAddress
from linli.clock import Clock
from linli.identity import DeviceIdentity
from locker_controller.daemon import LockerDaemon
from locker_controller.gpio import GpioLockBus
from locker_controller.sim import LockerSimulator, simulation_factory


@dataclass
class SimulatedLocker:
    """A running controller and the physics around it."""

    daemon: LockerDaemon
    sim: LockerSimulator
    data_dir: Path

    def stop(self) -> None:
        """Stop the daemon (outputs off, offline status)."""
        self.daemon.stop()


def start_simulated_locker(
    identity: DeviceIdentity,
    data_dir: Path,
    broker: BrokerAddress,
    *,
    board_name: str = "gpio-4",
    items: set[str] | None = None,
    keepalive_s: int = 10,
    telemetry_every_ms: int | None = None,
    clock: Clock | None = None,
    start: bool = True,
) -> SimulatedLocker:
    """Build (and by default start) a controller on a simulated GPIO bank."""
    board = board_by_name(board_name)
    factory = simulation_factory()
    sim = LockerSimulator(board, factory, items=items)
    data_dir.mkdir(parents=True, exist_ok=True)
    identity.save(data_dir / "identity.json")
    daemon = LockerDaemon(
        identity,
        board.compartment_names(),
        lambda deliver: GpioLockBus(board, factory, deliver),
        data_dir,
        broker,
        clock=clock,
        keepalive_s=keepalive_s,
        telemetry_every_ms=telemetry_every_ms,
    )
    sim.attach()
    if start:
        daemon.start()
    return SimulatedLocker(daemon=daemon, sim=sim, data_dir=data_dir)
