"""Run the cloud's HTTP app in a background thread (for the demo and tests): real uvicorn, real
sockets, on 127.0.0.1 and a free port."""

from __future__ import annotations

import threading
import time

import uvicorn

from cloud_api.app import create_app
from cloud_api.settings import CloudSettings
from linli.clock import Clock


class CloudServer:
    """The cloud on a local port.

    Example:
        >>> server = CloudServer(CloudSettings(data_dir=tmp, port=0, broker_url=url)).start()
        >>> server.url
        'http://127.0.0.1:41234'
    """

    def __init__(self, settings: CloudSettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, clock=clock)
        config = uvicorn.Config(
            self.app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="cloud-http", daemon=True)

    def start(self, timeout_s: float = 20.0) -> CloudServer:
        """Start serving; return once the socket accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the cloud failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the cloud did not start in time")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        """The bound port (resolved when the settings asked for port 0)."""
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://{self.settings.host}:{self.port}"

    def stop(self) -> None:
        """Shut down (runs the lifespan's cleanup: bridge, store)."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
