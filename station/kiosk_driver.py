"""The resident's finger on the valuation kiosk: its pages driven over HTTP, as taps would.

The kiosk (:mod:`valuation_terminal.kiosk`) is server-rendered HTML with plain form posts and no
JavaScript, so a person's tap is exactly one ``POST /act`` carrying the button's ``action``, the
form's fields and the page's CSRF token, followed by the redirect to ``/``. :class:`KioskDriver`
does just that and keeps the page it landed on; the screen's name is read from
``<body data-screen="...">``. It is used by the demo's valuation scenario
(:func:`station.scenarios.run_valuation`), the kiosk tests and the bench.

Needs ``httpx`` (a development dependency: the tests and the bench use the client it keeps as
:attr:`KioskDriver.http`).

Example:
    >>> kiosk = KioskDriver("http://127.0.0.1:8080/")
    >>> kiosk.post("signin", phone="13800000001", pin="246810")
    >>> kiosk.screen
    'size'
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from valuation_terminal.kiosk import Kiosk

__all__ = ["CSRF", "SCREEN", "KioskDriver"]

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
"""The session's token, carried by every form of the page."""
SCREEN = re.compile(r'<body data-screen="([a-z_]+)">')
"""The screen a page shows."""


class KioskDriver:
    """Drives the kiosk over HTTP as the resident's taps would.

    Args:
        kiosk: The running kiosk, or its URL.

    Attributes:
        http: The HTTP client (base URL the kiosk's; redirects followed).
        html: The last page received.
        status: Its HTTP status.
    """

    def __init__(self, kiosk: Kiosk | str) -> None:
        url = kiosk if isinstance(kiosk, str) else kiosk.url
        self.http = httpx.Client(base_url=url, follow_redirects=True, timeout=30)
        self.html = ""
        self.status = 0
        self.page()

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    @property
    def csrf(self) -> str:
        """The CSRF token of the page's forms."""
        found = CSRF.search(self.html)
        assert found, "no form on the page"
        return found.group(1)

    @property
    def screen(self) -> str:
        """The name of the screen shown (``""`` for a page that is not a screen)."""
        found = SCREEN.search(self.html)
        return found.group(1) if found else ""

    def page(self) -> str:
        """Load the page (``GET /``), as the browser does after each post and each refresh."""
        response = self.http.get("/")
        self.status, self.html = response.status_code, response.text
        return self.html

    def post(self, action: str, *, csrf: str | None = None, **fields: str) -> str:
        """Press the button ``action`` with the form's ``fields``; return the page landed on.

        ``csrf`` overrides the page's token (``""`` sends none).
        """
        data = {"action": action, **fields}
        token = self.csrf if csrf is None else csrf
        if token:
            data["csrf"] = token
        response = self.http.post("/act", data=data)
        self.status, self.html = response.status_code, response.text
        return self.html

    def wait_for(self, screen: str, timeout_s: float = 20.0) -> str:
        """Reload (as the page's refresh does) until ``screen`` shows."""
        deadline = time.monotonic() + timeout_s
        while self.screen != screen:
            assert time.monotonic() < deadline, f"still on {self.screen}, not {screen}"
            time.sleep(0.3)
            self.page()
        return self.html
