"""A TCP gate in front of a real server: the network between the terminal and the cloud, with
the failures a test needs.

Bytes are relayed unchanged both ways. :meth:`TcpGate.close` stops listening (connections are
refused: the cloud is "down"), :meth:`TcpGate.open` listens again on the same port, and
:attr:`TcpGate.drop_responses` makes the next N connections deliver the request to the server,
wait for the server's whole answer, and then close the client's connection without it (the
answer is lost on the way back: the server *did* act).

Example:
    >>> gate = TcpGate("127.0.0.1", cloud_port).start()
    >>> gate.close(); ...; gate.open()
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpGate:
    """Relays ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.drop_responses = 0
        self.connections = 0
        self.drop_at: set[int] = set()
        """Connection numbers (counted from 1, see :attr:`connections`) whose answer is lost."""
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpGate:
        self.open()
        return self

    def open(self) -> None:
        """Accept connections (again, on the same port)."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Refuse connections (those under way finish)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(5)

    stop = close

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                drop = self.drop_responses > 0 or self.connections in self.drop_at
                if self.drop_responses > 0:
                    self.drop_responses -= 1
            threading.Thread(target=self._relay, args=(client, drop), daemon=True).start()

    def _relay(self, client: socket.socket, drop: bool) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=30)
        except OSError:
            client.close()
            return

        def pump(source: socket.socket, sink: socket.socket, deliver: bool) -> None:
            try:
                while data := source.recv(65536):
                    if deliver:
                        sink.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)

        up = threading.Thread(target=pump, args=(client, upstream, True), daemon=True)
        up.start()
        pump(upstream, client, not drop)
        up.join(30)
        client.close()
        upstream.close()
