"""A simulated locker bank: the real controller daemon on simulated hardware, chosen by board name.

- ``gpio-4``: the GPIO lock bus on gpiozero's MockFactory, wired to the door and occupancy
  simulator (:mod:`locker_controller.sim`).
- ``kerong-4`` / ``modbus-4``: the real serial adapter (:mod:`firmware_bridge.lockbus`) on a
  pseudo-terminal, with a lock-control board simulated byte for byte at the other end
  (:mod:`firmware_bridge.sim.boards`).

Simulation is chosen here, explicitly, never as a fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hardware.gpio import BOARDS as GPIO_BOARDS
from hardware.gpio import board_by_name
from hardware.serial_boards import BANKS as SERIAL_BANKS
from hardware.serial_boards import bank_by_name
from linli.broker import BrokerAddress
from linli.clock import Clock
from linli.identity import DeviceIdentity
from locker_controller.core.model import Input
from locker_controller.daemon import LockerDaemon
from locker_controller.lockbus import LockBus
from locker_controller.sim import LockerSimulator, SimulatedBank, simulation_factory

SIMULATED_BOARDS = (*GPIO_BOARDS, *SERIAL_BANKS)


@dataclass
class SimulatedWiring:
    """A simulated bank and how to put a lock bus on it.

    Attributes:
        sim: the physics and the knobs (doors, items, jams, faults).
        names: compartment names in wiring order.
        make_bus: builds the controller's lock bus (the daemon calls it with its inbox).
        attach: call once the bus exists (GPIO inputs take their level from the simulator).
        stop: release the simulated hardware (after the daemon stopped).
    """

    sim: SimulatedBank
    names: list[str]
    make_bus: Callable[[Callable[[Input], None]], LockBus]
    attach: Callable[[], None]
    stop: Callable[[], None]


def simulated_wiring(board_name: str, data_dir: Path, items: set[str] | None) -> SimulatedWiring:
    """The simulated hardware of board ``board_name`` (GPIO, or a serial bank on a pty)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if board_name in SERIAL_BANKS:
        from firmware_bridge.lockbus import open_lock_bus
        from firmware_bridge.sim.boards import KerongBoardSim, ModbusBoardSim

        bank = bank_by_name(board_name)
        kind = KerongBoardSim if bank.protocol == "kerong" else ModbusBoardSim
        board_sim = kind(bank, data_dir / "ttyRS485", items=items).start()
        return SimulatedWiring(
            sim=board_sim,  # type: ignore[arg-type]
            names=bank.compartment_names(),
            make_bus=lambda deliver: open_lock_bus(bank, str(board_sim.path), deliver),
            attach=lambda: None,
            stop=board_sim.stop,
        )
    board = board_by_name(board_name)
    factory = simulation_factory()
    gpio_sim = LockerSimulator(board, factory, items=items)

    def make_gpio_bus(deliver: Callable[[Input], None]) -> LockBus:
        from locker_controller.gpio import GpioLockBus

        return GpioLockBus(board, factory, deliver)

    def stop_gpio() -> None:
        for c in board.compartments:  # released reed switches: inputs close without waiting
            factory.pin(c.door_pin).drive_high()
        factory.close()

    return SimulatedWiring(
        gpio_sim, board.compartment_names(), make_gpio_bus, gpio_sim.attach, stop_gpio
    )


@dataclass
class SimulatedLocker:
    """A running controller and the physics around it."""

    daemon: LockerDaemon
    sim: SimulatedBank
    data_dir: Path
    wiring: SimulatedWiring

    def stop(self) -> None:
        """Stop the daemon (outputs off, offline status), then the simulated hardware."""
        self.daemon.stop()
        self.wiring.stop()


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
    """Build (and by default start) a controller on a simulated bank."""
    data_dir.mkdir(parents=True, exist_ok=True)
    identity.save(data_dir / "identity.json")
    wiring = simulated_wiring(board_name, data_dir, items)
    daemon = LockerDaemon(
        identity,
        wiring.names,
        wiring.make_bus,
        data_dir,
        broker,
        clock=clock,
        keepalive_s=keepalive_s,
        telemetry_every_ms=telemetry_every_ms,
    )
    wiring.attach()
    if start:
        daemon.start()
    return SimulatedLocker(daemon=daemon, sim=wiring.sim, data_dir=data_dir, wiring=wiring)
