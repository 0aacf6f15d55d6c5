"""Start and stop a private MQTT broker for the demo and for tests.

Two brokers are supported:

* **Mosquitto** (preferred): the system binary, run as a child process with a config
  written into a private data directory. It is the broker of production, and the only
  one whose retained messages and last wills behave as the contract expects.
* **amqtt** (fallback, pure Python, ``pip install linli[demo]``): run in a thread with
  its own event loop. Known limits: retained messages leak to clients that never
  subscribed to them, and a last will never fires when a client's TCP connection dies
  silently, because amqtt does not enforce keepalive.

Both listen on 127.0.0.1 only and allow anonymous clients: they are for one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

logger = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
_LOG_TAIL_LINES = 20
_STOP_TIMEOUT_S = 5.0
_MOSQUITTO_READY_LINE = " running"  # "mosquitto version 2.0.11 running", after the listeners opened
MOSQUITTO_KEEPALIVE_CHECK_S = 6
"""How often Mosquitto 2.0.x checks keepalives, in seconds.

Its ``keepalive__check()`` runs only when ``last_check + 5 < now`` (whole seconds), so a
client that dies silently is dropped, and its last will sent, up to this much later than
1.5 x keepalive: measured on 2.0.11 with keepalive 1, 3, 4, 6, 10 s, the will came after
5.3, 5.7, 11.7, 11.6, 17.6 s.
"""
_AMQTT_LIMITS = (
    "amqtt limits: retained messages leak to clients that never subscribed to them, "
    "and a last will never fires when a client's TCP connection dies silently "
    "(no keepalive enforcement); offline detection must not rely on the last will"
)


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that is free on ``host`` right now.

    Args:
        host: The address to probe.

    Returns:
        A port number the kernel just handed out; another process may take it later.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def mosquitto_binary() -> str | None:
    """Return the path of the ``mosquitto`` executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    sbin = Path("/usr/sbin/mosquitto")
    return str(sbin) if sbin.is_file() and os.access(sbin, os.X_OK) else None


class BrokerError(RuntimeError):
    """A broker failed to start or stop.

    The message says what failed and ends with the tail of the broker's log.

    Attributes:
        log_tail: The last lines of the broker's log ("" when there was none).
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        """Build the error.

        Args:
            message: What failed.
            log_tail: The last lines of the broker's log.
        """
        text = message
        if log_tail:
            text = f"{message}\n--- broker log (tail) ---\n{log_tail}"
        super().__init__(text)
        self.log_tail = log_tail


@dataclass(frozen=True)
class BrokerInfo:
    """Where a running broker listens.

    Attributes:
        host: The listening address (always 127.0.0.1 here).
        port: The listening TCP port.
        kind: "mosquitto" or "amqtt".
    """

    host: str
    port: int
    kind: str

    @property
    def url(self) -> str:
        """The broker as an ``mqtt://host:port`` URL."""
        return f"mqtt://{self.host}:{self.port}"


def _can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = _LOG_TAIL_LINES, offset: int = 0) -> str:
    """Return the last ``lines`` lines of ``path`` after byte ``offset`` ("" if unreadable)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:])


class _Broker:
    """What both brokers share: the listening address and the context-manager protocol."""

    kind = ""

    def __init__(self, port: int | None) -> None:
        self._port = port
        self._info: BrokerInfo | None = None

    @property
    def info(self) -> BrokerInfo:
        """Where the broker listens.

        Raises:
            BrokerError: The broker is not running.
        """
        if self._info is None:
            raise BrokerError(f"{self.kind} broker is not running")
        return self._info

    def start(self, timeout_s: float = 10.0) -> BrokerInfo:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc``, wait, SIGKILL if it does not exit; reap it either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("mosquitto pid %d ignored SIGTERM; sending SIGKILL", proc.pid)
            proc.kill()
            proc.wait()


class MosquittoBroker(_Broker):
    """A private Mosquitto process listening on 127.0.0.1.

    Everything it writes stays in ``data_dir``: ``mosquitto.conf``, ``mosquitto.log``,
    ``mosquitto.out`` (its stdout and stderr) and, with persistence, ``mosquitto.db``.
    Message size and packet size are left unlimited (Mosquitto's default), so 1 MB
    payloads pass.

    Example:
        >>> with MosquittoBroker(tmp_path) as broker:  # doctest: +SKIP
        ...     client.connect(broker.info.host, broker.info.port)
    """

    kind = "mosquitto"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        persistence: bool = False,
        extra_config: str = "",
    ) -> None:
        """Describe the broker; nothing runs until :meth:`start`.

        Args:
            data_dir: A directory for the config, log and database (created if missing).
            port: The TCP port; a free one is picked at start when None.
            persistence: Keep retained messages and sessions in ``mosquitto.db`` across restarts.
            extra_config: Lines appended verbatim to the generated config.
        """
        super().__init__(port)
        self.data_dir = Path(data_dir)
        self.persistence = persistence
        self.extra_config = extra_config
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def conf_path(self) -> Path:
        """The generated config file."""
        return self.data_dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        """Mosquitto's log file."""
        return self.data_dir / "mosquitto.log"

    @property
    def pid(self) -> int | None:
        """The process id of the running broker, or None."""
        return self._proc.pid if self._proc is not None else None

    def _config(self, port: int) -> str:
        # Run as root, Mosquitto drops privileges to the `mosquitto` user and then can write
        # neither the log nor the database in our directory. `user` set to the current user
        # keeps it as us (root stays root); when not root, Mosquitto ignores the option.
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [
            "# Written by station.broker: a private broker for one machine.",
            f"listener {port} {LOCALHOST}",
            "allow_anonymous true",
            f"user {user}",
            "max_keepalive 65535",
            # Nagle's algorithm on the broker's sockets, with delayed ACKs, held each event's
            # acknowledgement ~90 ms (bench/pickup_path.py); off, as in deploy/mosquitto/linli.conf.
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.data_dir}/",
            self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def _log_tail(self, log_offset: int = 0) -> str:
        parts = [_tail(self.log_path, offset=log_offset), _tail(self.data_dir / "mosquitto.out")]
        return "\n".join(p for p in parts if p)

    def start(self, timeout_s: float = 10.0) -> BrokerInfo:
        """Write the config, spawn ``mosquitto -c``, and wait until it accepts connections.

        Args:
            timeout_s: How long to wait for the listener.

        Returns:
            Where the broker listens.

        Raises:
            BrokerError: The binary is missing, or Mosquitto exited or did not become
                ready in time (the message ends with its log tail).
        """
        if self._proc is not None:
            return self.info
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto binary not found (apt-get install mosquitto)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A port picked once is kept, so a restarted broker is where its clients expect it.
        port = self._port = self._port or free_port()
        self.conf_path.write_text(self._config(port), encoding="utf-8")
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0

        with (self.data_dir / "mosquitto.out").open("ab") as out:
            proc = subprocess.Popen(
                [binary, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _terminate, proc)
        where = f"{LOCALHOST}:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            code = proc.poll()
            if code is not None:
                self.stop()
                raise BrokerError(
                    f"mosquitto exited with code {code} while starting on {where}",
                    self._log_tail(log_offset),
                )
            # The "running" line rules out a port held by someone else: our TCP connect
            # could succeed against their listener while ours failed to bind.
            running = _MOSQUITTO_READY_LINE in _tail(self.log_path, offset=log_offset)
            if running and _can_connect(LOCALHOST, port):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"mosquitto did not accept connections on {where} within {timeout_s} s",
                    self._log_tail(log_offset),
                )
            time.sleep(0.02)
        self._info = BrokerInfo(LOCALHOST, port, self.kind)
        logger.info("mosquitto pid %d listening on %s (data in %s)", proc.pid, where, self.data_dir)
        return self._info

    def stop(self) -> None:
        """Stop the broker: SIGTERM, wait, SIGKILL as a fallback. Safe to call twice."""
        proc, self._proc, self._info = self._proc, None, None
        if proc is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _terminate(proc)
        logger.info("mosquitto pid %d stopped (exit code %s)", proc.pid, proc.returncode)


class _ThreadLogHandler(logging.Handler):
    """Keeps the last records that one thread logged (amqtt logs on module loggers)."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.records: deque[str] = deque(maxlen=_LOG_TAIL_LINES)
        self.addFilter(lambda record: record.threadName == thread_name)

    def emit(self, record: logging.LogRecord) -> None:
        # The message only: a traceback would crowd out the other lines of the tail.
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def _amqtt_config(port: int) -> dict[str, Any]:
    # Explicit on purpose: without a config amqtt binds 0.0.0.0:1883 and loads the event
    # and packet logging plugins and the $SYS plugin. The `plugins` dict is amqtt 0.12's
    # recommended form; the older `auth` section is deprecated.
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{LOCALHOST}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


def _closing_amqtt_broker_class() -> type[Any]:
    """Return amqtt's Broker, patched to close every TCP connection it accepted.

    amqtt 0.12.1 never closes a connection that ends before CONNECT (a port probe, a
    client giving up): ``Broker._client_connected`` returns without closing the writer,
    and the transport's "unclosed transport" ResourceWarning surfaces later, at garbage
    collection, in whatever test runs then.
    """
    from amqtt.broker import Broker  # optional dependency: linli[demo]

    class ClosingBroker(Broker):  # type: ignore[misc]
        async def stream_connected(
            self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
        ) -> None:
            try:
                await super().stream_connected(reader, writer, listener_name)
            finally:
                writer.close()  # idempotent

    return ClosingBroker


class AmqttBroker(_Broker):
    """An amqtt broker in a thread of its own, with its own event loop, on 127.0.0.1.

    See the module docstring for amqtt's limits: use it only when Mosquitto is absent.
    """

    kind = "amqtt"

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        """Describe the broker; nothing runs until :meth:`start`.

        Args:
            data_dir: Unused (amqtt keeps everything in memory); accepted so both brokers
                are built alike.
            port: The TCP port; a free one is picked at start when None.
        """
        super().__init__(port)
        self.data_dir = data_dir
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._log_handler: _ThreadLogHandler | None = None

    @property
    def pid(self) -> int | None:
        """This process's id while the broker runs (it lives in a thread), else None."""
        return os.getpid() if self._thread is not None else None

    def start(self, timeout_s: float = 10.0) -> BrokerInfo:
        """Start the broker thread and wait until the port accepts connections.

        Args:
            timeout_s: How long to wait for the listener.

        Returns:
            Where the broker listens.

        Raises:
            BrokerError: amqtt is not installed, failed to start (for example the port is
                taken), or did not become ready in time.
        """
        if self._thread is not None:
            return self.info
        port = self._port = self._port or free_port()
        where = f"{LOCALHOST}:{port}"
        name = f"amqtt-broker-{port}"
        self._ready.clear()
        self._startup_error = None
        self._log_handler = _ThreadLogHandler(name)
        logging.getLogger("amqtt").addHandler(self._log_handler)
        self._thread = threading.Thread(target=self._run, args=(port,), name=name, daemon=True)
        self._thread.start()

        if not self._ready.wait(timeout_s):
            tail = self._log_tail()
            self.stop()
            raise BrokerError(f"amqtt did not start on {where} within {timeout_s} s", tail)
        if self._startup_error is not None:
            error, tail = self._startup_error, self._log_tail()
            self.stop()
            raise BrokerError(f"amqtt failed to start on {where}: {error}", tail) from error
        # No TCP probe here: Broker.start() returns once asyncio's server listens, and a
        # connection closed before CONNECT makes amqtt log an ERROR ("No data from ...").
        self._info = BrokerInfo(LOCALHOST, port, self.kind)
        logger.info("amqtt listening on %s (in thread %s)", where, name)
        return self._info

    def _log_tail(self) -> str:
        return "\n".join(self._log_handler.records) if self._log_handler else ""

    def _run(self, port: int) -> None:
        asyncio.run(self._serve(port))

    async def _serve(self, port: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            broker = _closing_amqtt_broker_class()(_amqtt_config(port))  # inside the loop
            await broker.start()
        except Exception as exc:  # reported to start() in the caller's thread
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop_requested.wait()
        await broker.shutdown()

    def stop(self) -> None:
        """Shut the broker down and join its thread. Safe to call twice."""
        thread, self._thread, self._info = self._thread, None, None
        if thread is None:
            return
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop_requested.set)
        thread.join(_STOP_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("amqtt thread %s still running after %s s", thread.name, _STOP_TIMEOUT_S)
        if self._log_handler is not None:
            logging.getLogger("amqtt").removeHandler(self._log_handler)
            self._log_handler = None
        self._loop = self._stop_requested = None
        logger.info("amqtt broker %s stopped", thread.name)


def start_embedded_broker(
    data_dir: Path, prefer: str = "auto", *, port: int | None = None
) -> MosquittoBroker | AmqttBroker:
    """Start a private broker: Mosquitto when installed, amqtt otherwise.

    Args:
        data_dir: A directory for the broker's files.
        prefer: "auto" (Mosquitto if the binary exists, else amqtt), "mosquitto" or "amqtt".
        port: The TCP port; a free one when None.

    Returns:
        The started broker; call ``stop()`` (or use it as a context manager) when done.

    Raises:
        ValueError: ``prefer`` is not one of the three choices.
        BrokerError: The broker could not start.
    """
    if prefer not in {"auto", "mosquitto", "amqtt"}:
        raise ValueError(f"prefer must be 'auto', 'mosquitto' or 'amqtt', not {prefer!r}")
    broker: MosquittoBroker | AmqttBroker
    if prefer == "mosquitto" or (prefer == "auto" and mosquitto_binary() is not None):
        broker = MosquittoBroker(data_dir, port)
    else:
        if prefer == "auto":
            logger.warning("mosquitto not installed: using the amqtt broker. %s", _AMQTT_LIMITS)
        else:
            logger.warning("using the amqtt broker as asked. %s", _AMQTT_LIMITS)
        broker = AmqttBroker(data_dir, port)
    broker.start()
    return broker
