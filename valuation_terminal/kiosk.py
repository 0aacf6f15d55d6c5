"""The kiosk: the valuation terminal's touchscreen page, served on 127.0.0.1 only.

A browser in kiosk mode on the terminal's own screen shows ``http://127.0.0.1:<port>/``. Each
screen is server-rendered HTML (Jinja2, autoescaped) with plain form posts: no JavaScript, so the
page works in any browser the Pi ships, and a strict Content-Security-Policy forbids scripts
altogether. The session is the pure state machine of :mod:`valuation_terminal.core.flow`; this
module turns form posts into its steps, doing what a step needs on the way — signing in at the
cloud, asking for space, reading the scale, taking and checking a photo, valuing, queueing the
confirmed proposal durably and making the first attempt to submit it — and renders the screen
the session is on.

**One session at a time**: the terminal has one screen and one resident in front of it. Every
form carries the session's token as its CSRF token (a form left from an earlier session, or a
post from any other page, is refused with 403 and changes nothing); the request's ``Host`` must
be the kiosk's own address and an ``Origin``, if sent, its own origin.

**Accessibility** (as the resident pages, docs/decisions/0018): base text 20 px, line height
1.6, contrast ≥ 4.5:1, targets ≥ 44 px and primary buttons 56 px, a skip link, a label on every
input, ``lang`` on the page and on each language button, a visible focus ring, one thing per
screen. A choice (size, category, condition) is one tap on a large button. Every screen has the
language switch (中文 / English) and, until the proposal is confirmed, "back" and "cancel".

**Waiting** for the door to be used is an HTTP ``Refresh`` header (no JavaScript): each refresh
of the drop-off screen asks the cloud whether the locker saw the item inside. Every screen also
refreshes just after its idle timeout, so an abandoned session — a name, a drop-off code — leaves
the screen, not only at the next touch.

**A time limit is announced** (WCAG 2.2.1, "extend"): :data:`IDLE_WARNING_MS` before the
timeout, a warning appears on the screen — revealed by a CSS animation delay, so the page is not
reloaded and nothing typed is lost — saying in how many seconds the screen returns to the start,
with one large button, "I need more time", which counts as a touch (as often as wanted). The
refresh is a header, not a ``<meta http-equiv="refresh">``: axe-core's ``meta-refresh`` rule
flags every timed ``<meta>`` refresh, warned or not, while this warning is what the success
criterion asks for (tests/test_terminal_browser.py checks it in the browser).

Example:
    >>> kiosk = Kiosk(client=client, queue=queue, sender=sender, scale=scale, camera=camera)
    >>> kiosk.start().url
    'http://127.0.0.1:8080/'
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from linli.i18n import LANGUAGES, PSEUDO, t
from valuation_terminal.camera import Camera, CameraError
from valuation_terminal.client import CloudRefused, CloudUnavailable, TerminalClient
from valuation_terminal.core import flow
from valuation_terminal.core.explain import ExplainError, Reason, explain
from valuation_terminal.core.flow import (
    SIZES,
    Outcome,
    Photo,
    Problem,
    Resident,
    Session,
    StepRefused,
)
from valuation_terminal.core.images import DEFAULT, Box, PhotoError, Thresholds, check, prepare
from valuation_terminal.core.rules import (
    CONDITION_GRADES,
    Correction,
    Demand,
    Inputs,
    Policy,
    PolicyError,
    Proposal,
    load_policy,
    value,
)
from valuation_terminal.queue import (
    Attempt,
    ProposalQueue,
    QueueError,
    Sender,
    new_proposal_id,
    proposal_body,
)
from valuation_terminal.scale import (
    Scale,
    ScaleError,
    ScaleOverload,
    ScaleUnstable,
)

__all__ = ["HOST", "Kiosk", "KioskResponse"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
"""The kiosk listens here and nowhere else: the screen is on this machine."""

MAX_FORM_BYTES = 16 * 1024
WEIGH_TIMEOUT_S = 8.0
DROPOFF_POLL_S = 1.5
"""The drop-off screen asks the cloud at most this often."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": under it a browser sends ``Origin: null`` with a same-origin form post
    # (Fetch, "serializing a request origin"), which the origin check below must refuse. The
    # kiosk links nowhere else, so "same-origin" gives nothing away.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

CONDITION_KEYS: Mapping[str, str] = {
    "全新": "terminal.condition.new",
    "9成新以上": "terminal.condition.like_new",
    "9成新": "terminal.condition.very_good",
    "8成新": "terminal.condition.good",
    "below": "terminal.condition.below",
}
"""Each condition grade's catalog key (the grades themselves are Chinese words)."""

REFRESH_S: Mapping[str, int] = {"sending": 1, "dropoff": 2}
"""Screens that refresh while waiting for something."""

IDLE_WARNING_MS = 30_000
"""The idle warning shows this long before a screen returns to the start (WCAG 2.2.1 asks for
at least 20 s)."""
WARNING_STEP_S = 5
WARNING_MAX_S = 90
"""The stylesheet reveals the warning after 0, 5, …, 90 s (``.idle-in-<s>``); the page shows it
at the step before it is due (early by less than :data:`WARNING_STEP_S`), never late."""

PROBLEM_SEPARATOR = {"zh-CN": "、", "en": ", "}

_env = Environment(
    loader=PackageLoader("valuation_terminal", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def data(value: object) -> Markup:
    """A value (not catalog text), marked for the pseudo-locale test."""
    return Markup('<span class="data">{}</span>').format(value)


@dataclass(frozen=True)
class KioskResponse:
    """One HTTP answer of the kiosk."""

    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Idle:
    """A page's timing: it refreshes after ``refresh_s``; its idle warning shows after
    ``warn_in_s`` (``None``: not on this page) and says the screen returns to the start
    ``seconds`` later."""

    refresh_s: int
    warn_in_s: int | None
    seconds: int
    is_quiet: bool = False
    """On a start screen nobody touched: shown only while a field has focus (someone typing),
    so a kiosk waiting for its next resident does not keep flashing a warning."""


@dataclass(frozen=True)
class _Context:
    """The cloud's context as the kiosk values with it."""

    policy: Policy
    snapshot_id: str
    factors: Mapping[str, float]
    corrections: Mapping[str, Correction]
    photos_min: int

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> _Context:
        demand = raw["demand"]
        enabled = bool(raw.get("corrections_enabled"))
        corrections = {
            str(category): Correction.from_json(item)
            for category, item in (raw.get("corrections") or {}).items()
        }
        return cls(
            policy=load_policy(str(raw["policy_text"])),
            snapshot_id=str(demand["snapshot_id"]),
            factors={str(k): float(v) for k, v in (demand.get("factors") or {}).items()},
            corrections=corrections if enabled else {},
            photos_min=max(1, int(raw.get("photos_min") or 1)),
        )

    def demand(self, category: str) -> Demand:
        return Demand(self.factors.get(category, 1.0), self.snapshot_id)


class Kiosk:
    """The kiosk's pages and their HTTP server on ``127.0.0.1:port``.

    Args:
        client: The cloud client.
        queue: The durable proposal queue.
        sender: The queue's sender (the kiosk makes each proposal's first attempt with it).
        scale: The scale (``stable_weight`` is read when the resident presses "weigh").
        camera: The camera looking down at the pan.
        thresholds: The camera's photo thresholds (``linli terminal calibrate``).
        crop: The pan's rectangle in the camera's frame, or ``None``.
        port: 0 picks a free port.
        now_ms: Wall clock in ms (injected for tests).
        weigh_timeout_s: How long "weigh" waits for a stable weight.
    """

    def __init__(
        self,
        *,
        client: TerminalClient,
        queue: ProposalQueue,
        sender: Sender,
        scale: Scale,
        camera: Camera,
        thresholds: Thresholds = DEFAULT,
        crop: Box | None = None,
        port: int = 0,
        now_ms: Callable[[], int] = _wall_ms,
        weigh_timeout_s: float = WEIGH_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.queue = queue
        self.sender = sender
        self.scale = scale
        self.camera = camera
        self.thresholds = thresholds
        self.crop = crop
        self.port = port
        self.weigh_timeout_s = weigh_timeout_s
        self._now_ms = now_ms
        self._lock = threading.RLock()
        self._context: _Context | None = None
        self._context_raw: Mapping[str, Any] | None = None
        self._photos: dict[str, bytes] = {}
        self._last_poll = 0.0
        self._session = flow.new_session(secrets.token_urlsafe(24), now_ms())
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        cached = client.cached_context()
        if cached is not None:
            self._use_context(cached)

    # --- running -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The page's address (once started)."""
        return f"http://{HOST}:{self.port}/"

    @property
    def session(self) -> Session:
        """The current session (for tests and the bench)."""
        return self._session

    def start(self) -> Kiosk:
        """Serve on ``127.0.0.1:port`` on a thread."""
        kiosk = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "linli-kiosk"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                # The request line holds no secret (forms are posted), but stay quiet anyway.
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_FORM_BYTES:
                    response = KioskResponse(413, b"too large", "text/plain")
                    self.close_connection = True
                else:
                    body = self.rfile.read(length) if length else b""
                    response = kiosk.handle(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for name, text in {**SECURITY_HEADERS, **response.headers}.items():
                    self.send_header(name, text)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_HEAD = _serve

        self._server = ThreadingHTTPServer((HOST, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="kiosk-http", daemon=True
        )
        self._thread.start()
        log.info("kiosk on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- context -------------------------------------------------------------------------------

    def _use_context(self, raw: Mapping[str, Any]) -> None:
        if raw is self._context_raw:
            return
        try:
            self._context = _Context.parse(raw)
            self._context_raw = raw
        except (KeyError, TypeError, ValueError, PolicyError) as exc:
            log.error("the cloud's context cannot be used: %s", exc)

    def refresh_context(self) -> None:
        """Fetch the context (the cached one if the cloud does not answer)."""
        raw = self.client.context()
        if raw is not None:
            self._use_context(raw)

    # --- HTTP ----------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> KioskResponse:
        """Answer one request (``headers`` with lower-case names)."""
        path = urllib.parse.urlsplit(target).path
        if headers.get("host") not in (f"{HOST}:{self.port}", f"localhost:{self.port}"):
            return KioskResponse(421, b"misdirected request", "text/plain")
        if method in ("GET", "HEAD"):
            if path == "/":
                return self._page()
            if path == "/static/kiosk.css":
                css = resources.files("valuation_terminal").joinpath("static/kiosk.css")
                return KioskResponse(200, css.read_bytes(), "text/css; charset=utf-8")
            if path.startswith("/photo/") and path.endswith(".jpg"):
                jpeg = self._photos.get(path[len("/photo/") : -len(".jpg")])
                if jpeg is not None:
                    return KioskResponse(200, jpeg, "image/jpeg")
            return self._error(404, "page.error.not_found")
        if method == "POST" and path == "/act":
            return self._post(headers, body)
        return self._error(405 if path in ("/", "/act") else 404, "page.error.not_found")

    def _post(self, headers: Mapping[str, str], body: bytes) -> KioskResponse:
        origin = headers.get("origin")
        if origin is not None and origin not in (
            f"http://{HOST}:{self.port}",
            f"http://localhost:{self.port}",
        ):
            return self._error(403, "page.error.forbidden")
        try:
            form = {
                k: v[0]
                for k, v in urllib.parse.parse_qs(
                    body.decode("utf-8"), keep_blank_values=True, max_num_fields=20
                ).items()
            }
        except (UnicodeDecodeError, ValueError):
            return self._error(400, "page.error.forbidden")
        with self._lock:
            self._expire()
            submitted = form.get("csrf", "")
            if not hmac.compare_digest(submitted.encode(), self._session.token.encode()):
                return self._error(403, "page.error.forbidden")
            try:
                self._act(form.get("action", ""), form)
            except StepRefused as exc:
                log.info("kiosk: %s", exc)  # a stale page's button: show the current screen
        return KioskResponse(303, b"", "text/plain", {"Location": "/"})

    def _error(self, status: int, message: str) -> KioskResponse:
        with self._lock:
            idle = self._idle()
            html = self._render("error.html", message=message, back=False, cancel=None, idle=idle)
        return KioskResponse(status, html.encode(), headers={"Refresh": f"{idle.refresh_s}; url=/"})

    # --- the session -----------------------------------------------------------------------------

    def _step(self, event: flow.Step) -> None:
        before = self._session
        self._session = flow.step(before, event, self._now_ms())
        if self._session.token != before.token or self._session.resident is None:
            self._photos.clear()
        else:
            kept = {p.sha256 for p in self._session.photos}
            for sha in list(self._photos):
                if sha not in kept:
                    del self._photos[sha]

    def _fail(self, key: str, **values: str) -> None:
        self._step(flow.Failed(Problem(key, tuple(values.items()))))

    def _expire(self) -> None:
        fresh = flow.expire(self._session, self._now_ms(), secrets.token_urlsafe(24))
        if fresh is not self._session:
            self._session = fresh
            self._photos.clear()

    def _act(self, action: str, form: Mapping[str, str]) -> None:
        s = self._session
        if action == "language":
            language = form.get("language", "")
            if language not in (*LANGUAGES, PSEUDO):
                raise StepRefused(f"unknown language {language!r}")
            self._step(flow.LanguageChosen(language))
        elif action == "still_here":  # "I need more time": a touch, in the same language
            self._step(flow.LanguageChosen(s.language))
        elif action == "cancel":
            self._step(flow.Cancel(secrets.token_urlsafe(24)))
        elif action == "back":
            self._step(flow.Back())
        elif action == "signin":
            self._signin(form.get("phone", "").strip(), form.get("pin", "").strip())
        elif action == "size":
            self._size(form.get("size", ""))
        elif action == "weigh":
            self._weigh()
        elif action == "photo":
            self._photo()
        elif action == "photos_done":
            self._step(flow.PhotosDone())
        elif action == "category":
            category = form.get("category", "")
            if self._context is None or category not in self._context.policy.categories:
                raise StepRefused(f"unknown category {category!r}")
            self._step(flow.CategoryChosen(category))
        elif action == "describe":
            title = " ".join(form.get("title", "").split()) or self._category_name(s.category)
            self._step(flow.Described(title))
        elif action == "condition":
            self._step(flow.ConditionChosen(form.get("condition", "")))
        elif action == "age":
            self._age(form.get("years", ""), form.get("months", ""))
        elif action in ("price", "price_skip"):
            self._price(None if action == "price_skip" else form.get("price", ""))
        elif action == "confirm":
            self._confirm()
        else:
            raise StepRefused(f"unknown action {action!r}")

    def _signin(self, phone: str, pin: str) -> None:
        if self._session.screen != "signin":
            raise StepRefused("not on the sign-in screen")
        if not (phone and pin.isdigit() and len(pin) == 6):
            self._fail("terminal.signin.failed")
            return
        try:
            signin = self.client.signin(phone, pin)
        except CloudRefused as exc:
            self._fail(
                "terminal.signin.throttled" if exc.code == "throttled" else "terminal.signin.failed"
            )
            return
        except CloudUnavailable:
            self._fail("terminal.unavailable")
            return
        self.refresh_context()
        if self._context is None:
            self._fail("terminal.not_ready")
            return
        now = self._now_ms()
        if self.queue.renew_ticket(signin.resident_id, signin.ticket, now):
            self.sender.wake()  # proposals waiting for this resident to sign in again
        self._session = replace(self._session, photos_min=self._context.photos_min)
        self._step(
            flow.SignedIn(
                Resident(
                    signin.resident_id,
                    signin.display_name,
                    signin.ticket,
                    signin.ticket_expires_ms,
                ),
                signin.language if signin.language in LANGUAGES else "zh-CN",
            )
        )

    def _ticket(self) -> str:
        if self._session.resident is None:
            raise StepRefused("no resident")
        return self._session.resident.ticket

    def _size(self, size: str) -> None:
        if size not in SIZES:
            raise StepRefused(f"unknown size {size!r}")
        if flow.SpaceChecked not in flow.allowed(self._session.screen):
            raise StepRefused("not choosing a size")
        try:
            free: bool | None = self.client.space(self._ticket(), size).free
        except CloudRefused as exc:
            if exc.code in ("ticket_expired", "ticket_invalid"):
                self._step(flow.Cancel(secrets.token_urlsafe(24)))
                self._fail("terminal.signin.again")
                return
            free = None
        except CloudUnavailable:
            free = None
        self._step(flow.SpaceChecked(size, free))

    def _weigh(self) -> None:
        if self._session.screen != "weigh":
            raise StepRefused("not weighing")
        try:
            weight = self.scale.stable_weight(timeout_s=self.weigh_timeout_s)
        except ScaleUnstable:
            self._fail("terminal.weigh.unstable")
            return
        except ScaleOverload:
            self._fail("terminal.weigh.overload")
            return
        except ScaleError as exc:
            log.warning("the scale failed: %s", exc)
            self._fail("terminal.weigh.fault")
            return
        self._step(flow.WeightStabilized(weight.milligrams))

    def _photo(self) -> None:
        if self._session.screen != "photos":
            raise StepRefused("not taking photos")
        try:
            shot = self.camera.capture()
            usability = check(shot.image, self.thresholds)
            prepared = prepare(shot.image, self.crop) if usability.ok else None
        except (CameraError, OSError, PhotoError) as exc:
            log.warning("the camera failed: %s", exc)
            self._fail("terminal.photos.camera_fault")
            return
        if prepared is None:
            self._step(flow.PhotoTaken(Photo("", 0, 0), False, usability.problems))
            return
        self._photos[prepared.sha256] = prepared.jpeg
        self._step(flow.PhotoTaken(Photo(prepared.sha256, prepared.width, prepared.height), True))

    def _age(self, years: str, months: str) -> None:
        try:
            y = int(years or "0")
            m = int(months or "0")
        except ValueError:
            self._fail("terminal.age.invalid")
            return
        if not (0 <= y <= 99 and 0 <= m <= 11):
            self._fail("terminal.age.invalid")
            return
        self._step(flow.AgeGiven(y * 12 + m))

    def _price(self, raw: str | None) -> None:
        price: float | None = None
        if raw is not None:
            text = raw.strip().replace("¥", "").replace("元", "").replace(",", "")
            if text:
                try:
                    price = float(text)
                except ValueError:
                    self._fail("terminal.price.invalid")
                    return
                if not (price > 0 and price < 1e9):
                    self._fail("terminal.price.invalid")
                    return
        self._step(flow.PriceGiven(price))
        self._value()

    def _value(self) -> None:
        context = self._context
        s = self._session
        if context is None or s.category is None:
            raise StepRefused("no context to value with")
        inputs = flow.inputs_for(s, context.demand(s.category), context.corrections.get(s.category))
        self._step(flow.Valued(inputs, value(context.policy, inputs)))

    def _confirm(self) -> None:
        s = self._session
        if not flow.can_confirm(s):
            raise StepRefused("nothing to confirm")
        assert s.valuation is not None and s.resident is not None and s.size is not None
        assert s.category is not None and s.title is not None and s.weight_mg is not None
        inputs, proposal = s.valuation
        pid = new_proposal_id()
        photos = {p.sha256: self._photos[p.sha256] for p in s.photos}
        body = proposal_body(
            pid,
            title=s.title,
            category=s.category,
            size=s.size,
            inputs=inputs,
            proposal=proposal,
            photos=[p.sha256 for p in s.photos],
            weight_mg=s.weight_mg,
        )
        try:  # durable before the kiosk says anything
            self.queue.enqueue(
                pid, s.resident.resident_id, s.resident.ticket, body, photos, now_ms=self._now_ms()
            )
        except (QueueError, OSError) as exc:
            log.error("the proposal could not be queued: %s", exc)
            self._fail("terminal.error.queue")
            return
        self._step(flow.Confirmed(pid))
        attempt = self.sender.attempt(pid, open_now=True)
        if attempt.is_unavailable and attempt.state == "submitted":
            # The POST left but its answer did not come back (a timeout, a dropped connection):
            # ask once more while the resident is here. The cloud answers a proposal it has
            # with its first answer (and opens nothing twice).
            attempt = self.sender.attempt(pid, open_now=True)
        self.sender.wake()
        self._step(flow.Submitted(_outcome(attempt)))

    def _poll_dropoff(self) -> None:
        s = self._session
        if s.screen != "dropoff" or s.proposal_id is None:
            return
        if time.monotonic() - self._last_poll < DROPOFF_POLL_S:
            return
        self._last_poll = time.monotonic()
        try:
            status = self.client.proposal_status(s.proposal_id)
        except (CloudRefused, CloudUnavailable) as exc:
            log.info("drop-off status not known: %s", exc)
            return
        if status.get("status") not in (None, "proposed", "awaiting_dropoff"):
            self._session = flow.step(s, flow.ItemInside(), s.last_action_ms)

    # --- rendering -------------------------------------------------------------------------------

    def _page(self) -> KioskResponse:
        with self._lock:
            self._expire()
            self._poll_dropoff()
            s = self._session
            idle = self._idle()
            html = self._render(f"{s.screen}.html", idle=idle, **self._values(s))
        return KioskResponse(200, html.encode(), headers={"Refresh": f"{idle.refresh_s}; url=/"})

    def _idle(self) -> _Idle:
        """When this screen refreshes, and when its idle warning shows."""
        s = self._session
        timeout = flow.timeout_ms(s.screen)
        # A start screen nobody touched never expires: it is reloaded after a full timeout only
        # to clear what may have been typed, and warns before that while someone types.
        is_quiet = flow.expire(s, s.last_action_ms + timeout, "") is s
        idle_ms = 0 if is_quiet else max(0, self._now_ms() - s.last_action_ms)
        left_ms = max(0, timeout - idle_ms)
        # Just after the timeout (a second's margin), so the refresh finds the session expired.
        refresh_s = REFRESH_S.get(s.screen, -(-left_ms // 1000) + 1)
        warn_s = round(max(0, left_ms - IDLE_WARNING_MS) / 1000)
        if warn_s > WARNING_MAX_S:  # not on this page: the refresh brings it
            return _Idle(min(refresh_s, warn_s - WARNING_MAX_S + 1), None, 0)
        warn_s -= warn_s % WARNING_STEP_S
        return _Idle(refresh_s, warn_s, max(1, round(left_ms / 1000) - warn_s), is_quiet)

    def _category_name(self, category: str | None) -> str:
        if self._context is None or category is None:
            return category or ""
        entry = self._context.policy.categories.get(category)
        if entry is None:
            return category
        return entry.name_zh if self._session.language == "zh-CN" else entry.name_en

    def _values(self, s: Session) -> dict[str, Any]:
        values: dict[str, Any] = {
            "sizes": SIZES,
            "space_known": s.space_known,
            "photos": s.photos,
            "photos_min": s.photos_min,
            "photos_max": flow.PHOTOS_MAX,
            "wanted": self._context.policy.photos_wanted if self._context else 3,
            "grams": "" if s.weight_mg is None else f"{s.weight_mg / 1000:g}",
            "title": s.title,
            "category_name": self._category_name(s.category),
            "outcome": s.outcome,
            "conditions": [(grade, CONDITION_KEYS[grade]) for grade in CONDITION_GRADES],
            "years": "" if s.age_months is None else s.age_months // 12,
            "months": "" if s.age_months is None else s.age_months % 12,
            "price": "" if s.price_yuan is None else f"{s.price_yuan:g}",
        }
        if self._context is not None:
            language_zh = s.language == "zh-CN"
            values["categories"] = [
                (key, c.name_zh if language_zh else c.name_en)
                for key, c in self._context.policy.categories.items()
            ]
        if s.screen == "proposal" and s.valuation is not None:
            inputs, proposal = s.valuation
            reasons = self._reasons(inputs, proposal)
            values.update(
                proposal=proposal,
                factors=[
                    _shown_factor(f.name, f.value, reasons[n] if reasons else None)
                    for n, f in enumerate(proposal.factors)
                ],
                abstention=reasons[0] if proposal.abstained and reasons else None,
                confidence=f"{proposal.confidence * 100:.0f}",
                recycling=inputs.condition == "below",
                photo_count=inputs.photo_count,
                condition_key=CONDITION_KEYS[inputs.condition],
                age_years=inputs.age_months // 12,
                age_months=inputs.age_months % 12,
                price=None
                if inputs.purchase_price_yuan is None
                else f"{inputs.purchase_price_yuan:g}",
            )
        return values

    def _reasons(self, inputs: Inputs, proposal: Proposal) -> tuple[Reason, ...]:
        """Each factor's reason (or the abstention's) as a catalog key and its values."""
        context = self._context
        if context is None or context.policy.version != proposal.policy_version:
            return ()  # the policy changed under the session: say less rather than wrong
        try:
            return explain(proposal, inputs, context.policy)
        except ExplainError as exc:
            log.error("the proposal cannot be explained: %s", exc)
            return ()

    def _render(self, template: str, **values: Any) -> str:
        s = self._session
        language = s.language

        def translate(key: str, **items: Any) -> Markup | str:
            if not items:
                return t(key, language)
            return escape(t(key, language)).format(**items)

        problem = None
        if s.problem is not None:
            problem = self._problem_text(s.problem, translate)
        context: dict[str, Any] = {
            "back": s.back is not None,
            "cancel": None
            if s.screen == "signin" and not s.language_chosen
            else ("terminal.finish" if s.is_confirmed else "terminal.cancel"),
            **values,
        }
        return _env.get_template(template).render(
            _=translate,
            data=data,
            reason_values=_reason_values,
            lang=language if language in LANGUAGES else "en",
            language=language,
            screen=s.screen,
            resident=s.resident,
            csrf=s.token,
            confirmed=s.is_confirmed,
            problem=problem,
            **context,
        )

    def _problem_text(
        self, problem: Problem, translate: Callable[..., Markup | str]
    ) -> Markup | str:
        values = problem.as_dict()
        if problem.key == "terminal.photos.retake":
            first = values.get("problems", "").split(",")[0]
            return translate(problem.key, problem=translate(f"terminal.photos.problem.{first}"))
        if values:
            return translate(problem.key, **{k: data(v) for k, v in values.items()})
        return translate(problem.key)


def _reason_values(reason: Reason) -> dict[str, Markup]:
    """A reason's values, each marked as a value for the pseudo-locale test."""
    return {name: data(text) for name, text in reason.values.items()}


def _shown_factor(name: str, factor_value: float, reason: Reason | None) -> dict[str, Any]:
    """A factor as the proposal screen lists it: its name, its value written for people, and
    its reason (a catalog key and values, :mod:`valuation_terminal.core.explain`), said in the
    page's language."""
    if name in ("depreciation", "condition", "demand", "correction", "bulk_rate"):
        shown = f"× {round(factor_value, 3):g}"
    elif reason is not None and reason.key == "valuation.reason.reference.bulk":
        shown = f"{round(factor_value, 3):g} kg"
    else:
        shown = f"{round(factor_value, 2):g}"
    return {"name": name, "shown": shown, "reason": reason}


def _outcome(attempt: Attempt) -> Outcome:
    """What the kiosk tells the resident after the first attempt."""
    if attempt.state == "done" and attempt.answer is not None:
        grant = attempt.answer.get("grant")
        if isinstance(grant, dict) and attempt.code:
            return Outcome(
                "door_open" if grant.get("opened") else "go_to_locker",
                locker_name=str(grant.get("locker_name") or ""),
                compartment=str(grant.get("label") or grant.get("compartment") or ""),
                code=attempt.code,
            )
        return Outcome("no_space")
    if attempt.state == "needs_signin":
        return Outcome("needs_signin", error_code=attempt.error_code or "")
    if attempt.state == "refused":
        return Outcome("refused", error_code=attempt.error_code or "")
    return Outcome("queued")
