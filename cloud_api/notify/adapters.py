"""Notifier adapters: the log (the demo), a generic SMS gateway, WeChat template messages.

Each is idempotent on the message id, which turns the outbox's at-least-once delivery into
exactly once for the resident (docs/decisions/0017-notifications.md):

- :class:`LogNotifier` appends one JSON line per message id to
  ``<data_dir>/notifications.log.jsonl`` and skips an id already there;
- :class:`SmsGatewayNotifier` sends the id as ``client_ref``, for the gateway to de-duplicate;
- :class:`WeChatTemplateNotifier` sends it as ``client_msg_id`` (WeChat sends one message per
  openid and ``client_msg_id`` within 10 min; the deliverer retries after 2 min at most).

HTTP goes through the standard library (``urllib.request``), with redirects refused: urllib
would turn a redirected POST into a GET without its body and report success. No phone, openid,
code, token or secret appears in a log record or an error message; WeChat's access token is
the one value that travels in a URL, as its API requires (its secret never does: the token is
asked for with a POST, ``/cgi-bin/stable_token``).

Example:
    >>> sms = SmsGatewayNotifier("https://sms.example/v1/send", token)
    >>> sms.send(message)  # POST {"to": ..., "text": ..., "client_ref": message.id}
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cloud_api.notify.service import Notifier, Outgoing, Permanent, Retryable, Unreachable
from cloud_api.settings import CloudSettings
from linli.clock import Clock

log = logging.getLogger(__name__)

LOG_FILE = "notifications.log.jsonl"
TIMEOUT_S = 10.0


# --- the log ------------------------------------------------------------------------------------


class LogNotifier:
    """The demo's channel: the log, and a file that records each message id once.

    Logs ``notification <id> <kind> to <person> via log: <redacted text>`` at INFO (never the
    code) and appends ``{"id", "person_id", "kind", "channel", "at_ms"}`` as one fsynced line.
    A message id already in the file is not written or logged again. A line cut short by a
    crash is ignored, and the next line starts on a fresh line.

    Example:
        >>> notifier = LogNotifier(data_dir / "notifications.log.jsonl", clock)
    """

    channel = "log"

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: set[str] = set()
        self._read_to = 0

    def send(self, message: Outgoing) -> None:
        """Record the message unless its id is recorded already."""
        with self._lock:
            if message.id in self._recorded():
                log.info("notification %s already recorded in %s", message.id, self.path.name)
                return
            line = {
                "id": message.id,
                "person_id": message.person_id,
                "kind": message.kind,
                "channel": self.channel,
                "at_ms": self._clock.now().wall_ms,
            }
            self._append(json.dumps(line, sort_keys=True).encode() + b"\n")
            self._ids.add(message.id)
        log.info(
            "notification %s %s to %s via log: %s",
            message.id,
            message.kind,
            message.person_id,
            message.redacted,
        )

    def recorded(self) -> set[str]:
        """The message ids in the file."""
        with self._lock:
            return set(self._recorded())

    def _recorded(self) -> set[str]:
        """The ids in the file, reading only what was appended since the last look."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._read_to)
                data = handle.read()
        except FileNotFoundError:
            return self._ids
        complete, newline, partial = data.rpartition(b"\n")
        if newline:
            for raw in complete.split(b"\n"):
                self._ids.update(_id_of(raw))  # a line cut short by a crash has none
            self._read_to += len(complete) + 1
        # A last line without its newline: cut short by a crash, or whole but for the newline
        # (then it counts: the next line starts on a fresh line and the file keeps it).
        self._ids.update(_id_of(partial))
        return self._ids

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not self.path.exists()
        with open(self.path, "ab") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size:
                with open(self.path, "rb") as reader:
                    reader.seek(size - 1)
                    if reader.read(1) != b"\n":
                        line = b"\n" + line  # end the line a crash cut short
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        if is_new:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


def _id_of(raw: bytes) -> set[str]:
    try:
        line = json.loads(raw)
    except ValueError:
        return set()
    return {line["id"]} if isinstance(line, dict) and isinstance(line.get("id"), str) else set()


# --- HTTP ---------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a redirected POST would be re-sent as a GET without its body."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post_json(
    url: str,
    body: Mapping[str, Any],
    *,
    what: str,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` as JSON; return (HTTP status, body). Raise :class:`Unreachable` when no
    answer came. Error messages name ``what``, never the URL (it may hold a token)."""
    if not url.startswith(("https://", "http://")):
        raise Permanent(f"{what}: not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        url,
        data=json.dumps(body, ensure_ascii=False).encode(),
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                answer = exc.read()
            except (OSError, http.client.HTTPException):
                answer = b""
        return exc.code, answer
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else exc
        raise Unreachable(f"{what} could not be reached ({type(reason).__name__})") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"{what} did not answer ({type(exc).__name__})") from exc


# --- SMS ----------------------------------------------------------------------------------------


class SmsGatewayNotifier:
    """A generic SMS gateway: ``POST <url>`` with ``{"to", "text", "client_ref"}`` as JSON and
    ``Authorization: Bearer <token>``.

    ``client_ref`` is the message id: a gateway that has it already must not send it again
    (and may answer 2xx or 409). 2xx and 409 are success; 5xx, 408, 425, 429 and no answer are
    :class:`Retryable`; 401 and 403 too (our token, not the message, is wrong: once it is fixed
    the waiting messages go out); any other answer is :class:`Permanent`.

    Example:
        >>> SmsGatewayNotifier("https://sms.example/v1/send", token).send(message)
    """

    channel = "sms"
    RETRY_STATUSES = frozenset({401, 403, 408, 425, 429})

    def __init__(self, url: str, token: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self._url = url
        self._token = token
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return "SmsGatewayNotifier()"

    def send(self, message: Outgoing) -> None:
        """Send one SMS."""
        if not message.phone:
            raise Permanent("the resident has no phone number on file")
        status, _ = _post_json(
            self._url,
            {"to": message.phone, "text": message.text, "client_ref": message.id},
            what="the SMS gateway",
            timeout_s=self._timeout_s,
            headers={"Authorization": f"Bearer {self._token}"},
        )
        if 200 <= status < 300 or status == 409:
            return
        if status >= 500 or status in self.RETRY_STATUSES:
            raise Retryable(f"the SMS gateway answered HTTP {status}")
        raise Permanent(f"the SMS gateway refused the message (HTTP {status})")


# --- WeChat -------------------------------------------------------------------------------------


class WeChatTemplateNotifier:
    """An official account's template messages.

    The access token comes from ``POST <base>/cgi-bin/stable_token`` (appid and secret in the
    body) and is kept until 5 min before it expires. A message is
    ``POST <base>/cgi-bin/message/template/send?access_token=…`` with ``touser`` (the openid),
    ``template_id`` (by kind), ``client_msg_id`` (the message id) and ``data``: ``first`` (the
    whole text) and one field per value of the text (``item``, ``code``, ``locker``,
    ``compartment``, ``until``, ``points``, ``reason``, ``due``).

    errcode 40001, 40014, 42001 (token invalid or expired): a new token, and the message once
    more. -1 (busy), 45009 and 45011 (rate limits), and a refused credential are
    :class:`Retryable`; any other errcode (openid invalid, not subscribed, template invalid…) is
    :class:`Permanent`.

    Example:
        >>> WeChatTemplateNotifier(appid, secret, templates={"new_code": "T1"}, clock=clock)
    """

    channel = "wechat"
    TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
    RETRY_ERRCODES = frozenset({-1, 45009, 45011})
    TOKEN_MARGIN_S = 300

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        templates: Mapping[str, str],
        clock: Clock,
        base_url: str = "https://api.weixin.qq.com",
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._appid = appid
        self._secret = secret
        self._templates = dict(templates)
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_until_mono_ms = 0

    def __repr__(self) -> str:
        return f"WeChatTemplateNotifier(appid={self._appid!r})"

    def send(self, message: Outgoing) -> None:
        """Send one template message."""
        template_id = self._templates.get(message.kind)
        if not template_id:
            raise Permanent(f"no WeChat template for {message.kind}")
        if not message.openid:
            raise Permanent("the resident has no WeChat openid")
        data = {"first": {"value": message.text}}
        data.update({name: {"value": value} for name, value in message.values.items()})
        body = {
            "touser": message.openid,
            "template_id": template_id,
            "client_msg_id": message.id,
            "data": data,
        }
        for is_retry in (False, True):
            token = self._access_token(force=is_retry)
            errcode = self._call(
                f"/cgi-bin/message/template/send?access_token={quote(token, safe='')}", body
            ).get("errcode", 0)
            if errcode == 0:
                return
            if errcode in self.TOKEN_ERRCODES and not is_retry:
                log.info(
                    "WeChat refused the access token (errcode %s); asking for a new one", errcode
                )
                continue
            break
        if errcode in self.RETRY_ERRCODES or errcode in self.TOKEN_ERRCODES:
            raise Retryable(f"WeChat could not take the template message now (errcode {errcode})")
        raise Permanent(f"WeChat refused the template message (errcode {errcode})")

    def _access_token(self, *, force: bool) -> str:
        with self._lock:
            now = self._clock.now().mono_ms
            if self._token is not None and not force and now < self._token_until_mono_ms:
                return self._token
            answer = self._call(
                "/cgi-bin/stable_token",
                {
                    "grant_type": "client_credential",
                    "appid": self._appid,
                    "secret": self._secret,
                    "force_refresh": force,
                },
            )
            token = answer.get("access_token")
            if not isinstance(token, str) or not token:
                # our credential (or the server's IP allow-list): not the message's fault
                raise Retryable(
                    f"WeChat refused the app's credentials (errcode {answer.get('errcode')})"
                )
            expires_s = int(answer.get("expires_in") or 7200)
            keep_s = (
                expires_s - self.TOKEN_MARGIN_S
                if expires_s > 2 * self.TOKEN_MARGIN_S
                else expires_s // 2
            )
            self._token = token
            self._token_until_mono_ms = now + keep_s * 1000
            return token

    def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        status, raw = _post_json(
            self._base_url + path, body, what="WeChat", timeout_s=self._timeout_s
        )
        if status >= 500 or status == 429:
            raise Retryable(f"WeChat answered HTTP {status}")
        if not 200 <= status < 300:
            raise Permanent(f"WeChat answered HTTP {status}")
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise Retryable("WeChat's answer is not a JSON object")
        errcode = answer.get("errcode", 0)
        answer["errcode"] = errcode if isinstance(errcode, int) else -1
        return answer


# --- routing ------------------------------------------------------------------------------------


def notifier_routing(settings: CloudSettings, clock: Clock) -> Callable[[str], Notifier]:
    """The notifier for each resident's channel, as the settings configure them.

    ``log``: the log for everyone. ``sms``: SMS for everyone. ``wechat``: WeChat for residents
    who chose it (and have an openid: the deliverer checks), SMS for everyone else.
    """
    if settings.notify_channel == "log":
        demo = LogNotifier(settings.data_dir / LOG_FILE, clock)
        return lambda wanted: demo
    if not (settings.sms_url and settings.sms_token):
        raise SystemExit(f"LINLI_NOTIFY_CHANNEL={settings.notify_channel} needs the SMS settings")
    sms = SmsGatewayNotifier(settings.sms_url, settings.sms_token)
    if settings.notify_channel == "sms":
        return lambda wanted: sms
    if not (settings.wechat_appid and settings.wechat_secret):
        raise SystemExit("LINLI_NOTIFY_CHANNEL=wechat needs the WeChat settings")
    wechat = WeChatTemplateNotifier(
        settings.wechat_appid,
        settings.wechat_secret,
        templates=settings.wechat_templates,
        clock=clock,
        base_url=settings.wechat_base_url,
    )
    return lambda wanted: wechat if wanted == "wechat" else sms
