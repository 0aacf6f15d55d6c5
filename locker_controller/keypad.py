"""A local keypad stand-in: a Unix socket in the controller's data directory.

Where a real locker reads a USB keypad (issue #11), the demo and bench use this: ``linli locker
code`` connects to ``keypad.sock`` (mode 0600: only the local owner), sends the code on one line,
and receives what the resident would see, translated. The code is never logged or echoed.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from pathlib import Path
from typing import Protocol

from linli.i18n import t
from locker_controller.core.model import ShowMessage

log = logging.getLogger(__name__)

CHANNEL = "local"


class CodeSink(Protocol):
    """What the keypad needs from the controller."""

    def submit_code(self, code: str, channel: str, timeout_s: float = 10.0) -> ShowMessage | None:
        """Enter a code; return what to show."""
        ...


class LocalKeypad:
    """Serve one controller's keypad socket.

    Example:
        >>> keypad = LocalKeypad(daemon, data_dir / "keypad.sock").start()
        >>> enter_code(data_dir / "keypad.sock", "12345678")
    """

    def __init__(self, controller: CodeSink, path: Path, language: str = "zh-CN") -> None:
        self._controller = controller
        self._path = path
        self._language = language
        self._server: socketserver.UnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LocalKeypad:
        """Bind the socket (owner-only) and serve in a background thread."""
        controller, language = self._controller, self._language

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(256)
                try:
                    code = str(json.loads(line)["code"])
                except (ValueError, KeyError, TypeError):
                    self.wfile.write(b'{"key":"malformed"}\n')
                    return
                shown = controller.submit_code(code, CHANNEL)
                key = shown.key if shown else "timeout"
                values = dict(shown.values) if shown else {}
                reply = {"key": key, "text": t(key, language, **values)}
                self.wfile.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")

        self._path.unlink(missing_ok=True)
        self._server = socketserver.UnixStreamServer(str(self._path), Handler)
        self._path.chmod(0o600)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._path.unlink(missing_ok=True)


def enter_code(path: Path, code: str, timeout_s: float = 15.0) -> dict[str, str]:
    """Send a code to a controller's keypad socket; return ``{"key", "text"}``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(json.dumps({"code": code}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    reply: dict[str, str] = json.loads(data)
    return reply
