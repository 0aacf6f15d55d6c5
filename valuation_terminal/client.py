"""The terminal's HTTP client of the cloud (``docs/terminal-api.md``), on the standard library.

Every request carries ``Authorization: Terminal <device_id>:<token>``; a request made for a
resident also carries ``Linli-Ticket``. Each request times out after ``timeout_s`` (5 s): the
resident is waiting at the kiosk.

**Errors.** Two kinds, under :class:`CloudError`:

- :class:`CloudRefused`: the cloud answered a 4xx with its JSON body ``{code, message,
  field}`` (``code`` is what callers branch on: ``bad_credentials``, ``ticket_expired``,
  ``photo_missing``...; a 429 also has ``retry_after_s``). Retrying the same request will not
  help (except ``throttled``, later).
- :class:`CloudUnavailable`: no answer worth reading — refused connection, timeout, a 5xx, a
  body that is not the contract's JSON. Retry later; the request may or may not have reached
  the cloud.

Nothing here logs a phone, PIN, ticket, token or code; an error's message holds the cloud's
``code`` and ``message`` only.

**The context** (``GET /context``: the policy text, the demand snapshot, the corrections) is
cached in ``<data_dir>/context.json`` (written atomically: temporary file, fsync, rename) so the
terminal values items with the last context it has when the cloud is down.

Example:
    >>> client = TerminalClient("http://127.0.0.1:8000", "terminal-1", token, data_dir)
    >>> signin = client.signin("13800000001", "123456")
    >>> client.space(signin.ticket, "M")
    Space(free=True, size='M')
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "API_PREFIX",
    "CloudError",
    "CloudRefused",
    "CloudUnavailable",
    "Space",
    "TerminalClient",
    "TerminalSignIn",
    "load_token",
]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/terminal"
CONTEXT_FILE = "context.json"
MAX_RESPONSE_BYTES = 1 << 20


class CloudError(Exception):
    """Root of the client's errors."""


class CloudRefused(CloudError):
    """The cloud refused the request with its JSON error body (a 4xx).

    Attributes:
        status: The HTTP status.
        code: The contract's error code (``ticket_expired``, ``photo_missing``...).
        message: The cloud's words (never a credential).
        field: The field at fault, if any.
        retry_after_s: For ``throttled``: how long to wait.

    Example:
        >>> str(CloudRefused(401, "ticket_expired", "sign in again"))
        '401 ticket_expired: sign in again'
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str = "",
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if message else f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s


class CloudUnavailable(CloudError, ConnectionError):
    """The cloud gave no usable answer (unreachable, timeout, 5xx, not the contract's JSON)."""


@dataclass(frozen=True)
class TerminalSignIn:
    """A resident signed in at this terminal. The ticket is a credential: not in ``repr``."""

    resident_id: str
    display_name: str
    language: str
    ticket: str = field(repr=False)
    ticket_expires_ms: int


@dataclass(frozen=True)
class Space:
    """Whether a door fitting ``size`` is free (``size``: the smallest free fitting one)."""

    free: bool
    size: str | None


def load_token(path: Path) -> str:
    """The terminal's HTTP token from its file (written at enrolment, mode 0600).

    Raises:
        SystemExit: the file is missing, empty, or readable by others.
    """
    try:
        mode = path.stat().st_mode & 0o777
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise SystemExit(f"no terminal token at {path}: enrol this terminal first") from None
    if mode & 0o077:
        raise SystemExit(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    if not token:
        raise SystemExit(f"{path} is empty: enrol this terminal again")
    return token


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class TerminalClient:
    """The cloud's terminal API, as one terminal sees it.

    Args:
        base_url: The cloud's root (``http://127.0.0.1:8000``); the API prefix is added.
        device_id: This terminal's device id (``terminal-1``).
        token: This terminal's HTTP token (:func:`load_token`).
        data_dir: Where the context is cached (``context.json``).
        timeout_s: Per request.
    """

    def __init__(
        self,
        base_url: str,
        device_id: str,
        token: str,
        data_dir: Path,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"the cloud URL must be http(s)://host[:port], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self._authorization = f"Terminal {device_id}:{token}"
        self.data_dir = data_dir
        self.timeout_s = timeout_s
        # No proxy from the environment: the terminal talks to its cloud directly.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"TerminalClient({self.base_url!r}, {self.device_id!r})"

    # --- the endpoints ---------------------------------------------------------------------

    def signin(self, phone: str, pin: str) -> TerminalSignIn:
        """``POST /signin``. Raises :class:`CloudRefused` ``bad_credentials`` / ``throttled``."""
        _, body = self._request("POST", "/signin", json_body={"phone": phone, "pin": pin})
        try:
            return TerminalSignIn(
                resident_id=str(body["resident_id"]),
                display_name=str(body["display_name"]),
                language=str(body.get("language") or "zh-CN"),
                ticket=str(body["ticket"]),
                ticket_expires_ms=int(body["ticket_expires_ms"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CloudUnavailable(f"sign-in answer is not the contract's: {exc}") from None

    def space(self, ticket: str, size: str) -> Space:
        """``GET /space?size=`` — whether a fitting door is free."""
        query = urllib.parse.urlencode({"size": size})
        _, body = self._request("GET", f"/space?{query}", ticket=ticket)
        free = body.get("free")
        if not isinstance(free, bool):
            raise CloudUnavailable("space answer is not the contract's")
        fitting = body.get("size")
        return Space(free, None if fitting is None else str(fitting))

    def fetch_context(self) -> dict[str, Any]:
        """``GET /context``, cached to ``<data_dir>/context.json`` before it is returned."""
        _, body = self._request("GET", "/context")
        for key in ("policy_version", "policy_text", "demand"):
            if key not in body:
                raise CloudUnavailable(f"context answer lacks {key}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(
            self.data_dir / CONTEXT_FILE, json.dumps(body, ensure_ascii=False).encode()
        )
        return body

    def cached_context(self) -> dict[str, Any] | None:
        """The last context fetched, or ``None`` if there is none (or it is unreadable)."""
        try:
            data = json.loads((self.data_dir / CONTEXT_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("the cached context is unreadable: %s", exc)
            return None
        return data if isinstance(data, dict) else None

    def context(self) -> dict[str, Any] | None:
        """A fresh context if the cloud answers, else the cached one (``None``: never had one)."""
        try:
            return self.fetch_context()
        except CloudError as exc:
            log.info("context from cache: %s", exc)
            return self.cached_context()

    def put_photo(self, ticket: str, sha256: str, jpeg: bytes) -> bool:
        """``PUT /photos/{sha256}``; ``True`` if the cloud stored it now, ``False`` if it had it."""
        status, _ = self._request(
            "PUT",
            f"/photos/{urllib.parse.quote(sha256, safe='')}",
            ticket=ticket,
            raw_body=jpeg,
            content_type="image/jpeg",
        )
        return status == 201

    def submit(self, ticket: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /proposals``: the status (201 new, 200 the same again) and the answer."""
        return self._request("POST", "/proposals", ticket=ticket, json_body=body)

    def proposal_status(self, proposal_id: str) -> dict[str, Any]:
        """``GET /proposals/{proposal_id}``: the item's status (``pending_approval`` once the
        locker saw it inside)."""
        _, body = self._request("GET", f"/proposals/{urllib.parse.quote(proposal_id, safe='')}")
        return body

    # --- the wire ----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        ticket: str | None = None,
        json_body: dict[str, Any] | None = None,
        raw_body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        if ticket is not None:
            headers["Linli-Ticket"] = ticket
        data: bytes | None = raw_body
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        elif content_type is not None:
            headers["Content-Type"] = content_type
        url = self.base_url + API_PREFIX + path
        # the scheme is checked in __init__ (http or https only)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        where = f"{method} {API_PREFIX}{path.split('?')[0]}"
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status = int(response.status)
                payload = response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                payload = exc.read(MAX_RESPONSE_BYTES)
            except OSError:
                payload = b""
            finally:
                exc.close()
            if 400 <= status < 500:
                raise self._refusal(status, payload, exc.headers.get("Retry-After")) from None
            raise CloudUnavailable(f"{where}: HTTP {status}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CloudUnavailable(f"{where}: {reason}") from None
        try:
            body = json.loads(payload) if payload else {}
        except ValueError:
            raise CloudUnavailable(f"{where}: HTTP {status} with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise CloudUnavailable(f"{where}: HTTP {status} with a body that is not an object")
        return status, body

    @staticmethod
    def _refusal(status: int, payload: bytes, retry_after: str | None) -> CloudError:
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            return CloudUnavailable(f"HTTP {status} without the contract's error body")
        retry: float | None = None
        raw_retry = body.get("retry_after_s", retry_after)
        if raw_retry is not None:
            try:
                retry = float(raw_retry)
            except (TypeError, ValueError):
                retry = None
        field_name = body.get("field")
        return CloudRefused(
            status,
            body["code"],
            str(body.get("message") or ""),
            None if field_name is None else str(field_name),
            retry,
        )
