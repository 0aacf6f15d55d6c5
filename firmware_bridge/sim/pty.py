"""A simulated serial device on a pseudo-terminal, at a stable path that can be unplugged.

The host side opens ``path`` exactly as it would open ``/dev/serial/by-id/usb-...``: a symbolic
link to the pty's slave end. The device side reads the master end on its own thread and answers
with real bytes, optionally paced at the line's baud rate (a pty itself moves bytes instantly).
:meth:`PtyDevice.unplug` closes the master and removes the link — the host's next read or write
fails as on a pulled USB adapter — and :meth:`PtyDevice.replug` creates a new pty behind the
same path, as udev does when the adapter returns.

Example:
    >>> device = PtyDevice(tmp_path / "ttyKerong", on_bytes=board.receive, baudrate=19200)
    >>> device.start()
    >>> SerialTransport(str(device.path), baudrate=19200).exchange(...)
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path


class PtyDevice:
    """The device end of a serial line: bytes in through ``on_bytes``, bytes out through ``write``.

    Args:
        path: where the host finds the port (a symlink to the current pty slave).
        on_bytes: called on the device thread with every chunk the host wrote.
        baudrate: when ``pace`` is set, writes take the wire time of 10 bits per byte.
        pace: emulate the line's speed (benchmarks, timing-sensitive tests).
    """

    def __init__(
        self,
        path: Path,
        on_bytes: Callable[[bytes], None],
        *,
        baudrate: int = 9600,
        pace: bool = False,
    ) -> None:
        self.path = path
        self.baudrate = baudrate
        self.pace = pace
        self._on_bytes = on_bytes
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.received = 0
        self.sent = 0
        self.last_rx_mono: float = 0.0
        self.last_tx_mono: float = 0.0

    def start(self) -> PtyDevice:
        """Plug in: create the pty and the link, start answering."""
        self._plug()
        self._thread = threading.Thread(target=self._run, name=f"pty:{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and remove the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.unplug()

    def unplug(self) -> None:
        """Pull the adapter: the link goes and the host's open port fails on its next use."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None

    def replug(self) -> None:
        """Plug the adapter back in: a new pty behind the same path."""
        self.unplug()
        self._plug()

    @property
    def is_plugged(self) -> bool:
        """Whether the port exists now."""
        return self._master is not None

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: bytes are bytes
        with self._lock:
            self._master, self._slave = master, slave
            tmp = self.path.with_name(self.path.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(os.ttyname(slave))
            tmp.replace(self.path)

    def write(self, data: bytes) -> None:
        """Send bytes to the host (paced at the baud rate when asked); dropped while unplugged."""
        if self.pace:
            time.sleep(len(data) * 10 / self.baudrate)
        with self._lock:
            master = self._master
            if master is None:
                return
            # Stamped before the write: the host may read the reply, wait its silence and send
            # the next request before this thread runs again (a loaded machine), and a stamp
            # taken after would make that request look too early. Before, it is never late.
            written_mono = time.monotonic()
            try:
                os.write(master, data)
            except OSError:
                return
        self.sent += len(data)
        self.last_tx_mono = written_mono

    def _run(self) -> None:
        while not self._stop.is_set():
            master = self._master
            if master is None:
                time.sleep(0.01)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(master, 4096)
            except (OSError, ValueError):
                time.sleep(0.01)  # unplugged under us, or no host has the slave open yet
                continue
            if not data:
                continue
            self.received += len(data)
            self.last_rx_mono = time.monotonic()
            if self.pace:
                time.sleep(len(data) * 10 / self.baudrate)
            self._on_bytes(data)
