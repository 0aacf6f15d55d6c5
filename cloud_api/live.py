"""The live view's hub: device changes, told on the MQTT worker thread, wake waiting event streams.

``DeviceService`` tells its listeners (``devices.listen(hub)``) after each applied device message,
on the bridge's one worker thread, which must never wait on a browser. The hub only counts: a
version per device, bumped under a lock, and a wake-up for each stream waiting on that device,
handed to the stream's event loop with ``loop.call_soon_threadsafe`` (an ``asyncio.Event`` may be
set only from its own loop). The stream then reads the store itself and sends what changed, so
changes that arrive together are read once, and a slow browser never holds up the ingest.

Why an event and not polling a counter: a poll every *p* ms adds *p*/2 ms on average and *p* at
worst, and wakes every stream *1000/p* times a second whether anything changed or not; the
wake-up costs one loop callback per change (bench/live_view.py measures the whole path,
docs/performance.md).

Example:
    >>> hub = LiveHub()
    >>> devices.listen(hub)                     # DeviceService, in the app's lifespan
    >>> async with hub.watch("locker-a") as watch:
    ...     while await watch.changed(timeout_s=0.5) is not None: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)

WAKES_ON = frozenset({"state", "evt", "status", "tele", "lost", "heard_again", "res"})
"""What a device said (or how it went) that may change the live view: its compartments
(``state``, and ``evt`` for the cloud's facts), its liveness (``status``, ``tele``, ``lost``,
``heard_again``) and a command's result (``res``)."""


class Watch:
    """One stream's interest in one device (made by :meth:`LiveHub.watch`)."""

    def __init__(self, hub: LiveHub, device_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.device_id = device_id
        self._hub = hub
        self._loop = loop
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Wake the stream (any thread)."""
        # A closed loop (the server stopped) raises RuntimeError: nobody waits any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._event.set)

    async def changed(self, timeout_s: float) -> bool | None:
        """Wait until the device changed (True), ``timeout_s`` passed (False) or the hub closed
        (None). A change told while the stream was busy is not lost: it is kept until here."""
        if self._hub.is_closed:
            return None
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return None if self._hub.is_closed else False
        self._event.clear()
        return None if self._hub.is_closed else True


class LiveHub:
    """Versions per device and the streams waiting on them; a :data:`DeviceListener`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._watches: dict[str, set[Watch]] = {}
        self.is_closed = False

    def __call__(self, device_id: str, what: str, message: object) -> None:
        """The device listener: wake the device's streams if ``what`` may change their view."""
        if what in WAKES_ON:
            self.changed(device_id)

    def changed(self, device_id: str) -> int:
        """Note that a device changed and wake its streams; return its new version."""
        with self._lock:
            version = self._versions.get(device_id, 0) + 1
            self._versions[device_id] = version
            watches = list(self._watches.get(device_id, ()))
        for watch in watches:
            watch.wake()
        return version

    def version(self, device_id: str) -> int:
        """How many changes of this device the hub was told of since it started."""
        with self._lock:
            return self._versions.get(device_id, 0)

    def watching(self, device_id: str) -> int:
        """How many streams watch this device now."""
        with self._lock:
            return len(self._watches.get(device_id, ()))

    @asynccontextmanager
    async def watch(self, device_id: str) -> AsyncIterator[Watch]:
        """Watch a device from the running event loop, until the block ends."""
        watch = Watch(self, device_id, asyncio.get_running_loop())
        with self._lock:
            self._watches.setdefault(device_id, set()).add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                watches = self._watches.get(device_id)
                if watches is not None:
                    watches.discard(watch)
                    if not watches:
                        del self._watches[device_id]

    def close(self) -> None:
        """End every stream (the app is stopping): each wakes and finishes its response."""
        with self._lock:
            self.is_closed = True
            watches = [w for group in self._watches.values() for w in group]
        for watch in watches:
            watch.wake()
        if watches:
            log.info("live view: ended %d streams", len(watches))
