"""What every resident page needs: the cookie session, CSRF tokens, the language, and rendering.

- **Session**: the same session tokens as the API (``sessions`` table, 12 h), carried in a cookie
  ``linli_session`` that is ``Secure``, ``HttpOnly`` and ``SameSite=Strict``; never in a URL.
- **CSRF**: every form carries a hidden ``csrf`` field. Signed in, it is an HMAC of the session
  token under :attr:`CloudKeys.page_secret` (nothing to store); on the sign-in form, before any
  session, it is a random value also set in the ``linli_csrf`` cookie (double submit). A post
  without the right token is refused with 403 and changes nothing.
- **Language**: the explicit choice (the ``linli_lang`` cookie, or the signed-in resident's
  account setting) wins over ``Accept-Language`` (docs/decisions/0009-language.md).
- **Rendering**: Jinja2 with autoescaping; every text comes from the shared catalog through
  ``_()``; values from the store are wrapped in ``<span class="data">`` so the pseudo-locale test
  can tell them from hard-coded text.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from cloud_api.accounts.service import Person
from cloud_api.errors import NotAuthenticated
from cloud_api.transparency import COMMUNITY_TZ
from linli.i18n import DEFAULT_LANGUAGE, LANGUAGES, PSEUDO, choose_language, t

SESSION_COOKIE = "linli_session"
CSRF_COOKIE = "linli_csrf"
LANG_COOKIE = "linli_lang"
SESSION_MAX_AGE_S = 12 * 60 * 60
LANG_MAX_AGE_S = 365 * 24 * 60 * 60

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

CONSOLE_SCRIPT_HEADERS = SECURITY_HEADERS | {
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"].replace(
        "script-src 'none'", "script-src 'self'; connect-src 'self'"
    )
}
"""A console page that runs our own script (the maintainer's live view: ``/static/live.js``,
server-sent events to the same origin). No inline script, no other origin, still no framing."""

_env = Environment(
    loader=PackageLoader("cloud_api.pages", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class PageRedirect(Exception):
    """Leave the page for another (signing in, mostly)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class CsrfRefused(Exception):
    """A form was posted without its CSRF token (HTTP 403)."""


def language_of(request: Request, person: Person | None = None) -> str:
    """The page's language: the cookie's explicit choice, the account's, Accept-Language."""
    explicit = request.cookies.get(LANG_COOKIE)
    if explicit not in (*LANGUAGES, PSEUDO) and person is not None:
        explicit = person.language
    return choose_language(explicit, request.headers.get("accept-language"))


def signed_in(request: Request, role: str, signin_path: str) -> tuple[Person, str]:
    """The person of ``role`` behind the session cookie and the cookie's token, or a redirect
    to ``signin_path``."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise PageRedirect(signin_path)
    services = request.app.state.services
    try:
        person: Person = services.accounts.person_for(token, services.clock.now().wall_ms)
    except NotAuthenticated:
        raise PageRedirect(signin_path) from None
    if person.role != role:
        raise PageRedirect(signin_path)
    return person, token


def signed_in_resident(request: Request) -> tuple[Person, str]:
    """The resident behind the session cookie, or a redirect to sign in."""
    return signed_in(request, "resident", "/signin")


def signin_form(
    request: Request, template: str, problem: str | None = None, status_code: int = 200
) -> HTMLResponse:
    """A sign-in page with a fresh double-submit CSRF token (in the form and its cookie)."""
    token = new_signin_csrf()
    response = render(
        request,
        template,
        language_of(request),
        csrf=token,
        problem=problem,
        status_code=status_code,
    )
    set_cookie(response, CSRF_COOKIE, token, 3600)
    return response


def csrf_for(request: Request, token: str) -> str:
    """The CSRF token of a session (no state: an HMAC of the session token)."""
    secret: bytes = request.app.state.services.keys.page_secret
    return hmac.new(secret, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()[:40]


def check_csrf(request: Request, token: str, submitted: str | None) -> None:
    """Refuse a signed-in form post whose CSRF token is missing or wrong."""
    if not submitted or not hmac.compare_digest(submitted, csrf_for(request, token)):
        raise CsrfRefused


def check_signin_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a sign-in post whose token does not match its cookie (double submit)."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not submitted or not cookie or not hmac.compare_digest(submitted, cookie):
        raise CsrfRefused


def new_signin_csrf() -> str:
    """A fresh token for the sign-in form and its cookie."""
    return secrets.token_hex(20)


def set_cookie(response: Any, name: str, value: str, max_age: int) -> None:
    """A cookie the pages set: Secure, HttpOnly, SameSite=Strict, whole site."""
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


def local_time(wall_ms: int, language: str) -> str:
    """A time as residents read it, in the community's zone: ``11月24日 18:30`` / ``24 Nov 18:30``."""
    moment = datetime.fromtimestamp(wall_ms / 1000, UTC).astimezone(COMMUNITY_TZ)
    if language == DEFAULT_LANGUAGE:
        return f"{moment.month}月{moment.day}日 {moment:%H:%M}"
    return f"{moment.day} {_MONTHS_EN[moment.month - 1]} {moment:%H:%M}"


def data(value: object, testid: str | None = None) -> Markup:
    """A value from the store, marked as data (not catalog text) for the pseudo-locale test."""
    if testid is not None:
        return Markup('<span class="data" data-testid="{}">{}</span>').format(testid, value)
    return Markup('<span class="data">{}</span>').format(value)


def number(value: int) -> str:
    """An integer with thousands separators (both languages write 1,234)."""
    return f"{value:,}"


def render(
    request: Request,
    template: str,
    language: str,
    *,
    status_code: int = 200,
    person: Person | None = None,
    staff: Person | None = None,
    csrf: str = "",
    scripts: bool = False,
    **context: Any,
) -> HTMLResponse:
    """Render a page with the catalog, the formatters and the security headers (``scripts``:
    the page may load our own scripts, :data:`CONSOLE_SCRIPT_HEADERS`)."""

    def translate(key: str, **values: Any) -> Markup | str:
        # The catalog's text is escaped, then values are put in, each escaped unless it is
        # already markup (a value wrapped by ``data()``).
        if not values:
            return t(key, language)
        return escape(t(key, language)).format(**values)

    html = _env.get_template(template).render(
        _=translate,
        lang=language if language in LANGUAGES else "en",
        language=language,
        person=person,
        staff=staff,
        csrf=csrf,
        path=request.url.path,
        time=lambda ms: local_time(ms, language),
        number=number,
        data=data,
        **context,
    )
    headers = CONSOLE_SCRIPT_HEADERS if scripts else SECURITY_HEADERS
    return HTMLResponse(html, status_code=status_code, headers=headers)


def language_chosen(
    request: Request, person: Person | None, language: str, to: str
) -> RedirectResponse:
    """After a language button: keep a signed-in person's choice on their account, and anyone's
    in a cookie (the pseudo-locale only in the cookie), then go to ``to``."""
    if person is not None and language in LANGUAGES:
        request.app.state.services.accounts.set_language(person, language)
    response = redirect(to)
    if language in (*LANGUAGES, PSEUDO):
        set_cookie(response, LANG_COOKIE, language, LANG_MAX_AGE_S)
    return response


def redirect(location: str) -> RedirectResponse:
    """A 303 after a form post (the browser then GETs the page)."""
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)
