"""The resident pages over real HTTP (no browser: tests/test_pages_browser.py drives Chromium).

- cookies: the session and the sign-in token are Secure, HttpOnly, SameSite=Strict;
- CSRF: every form posted without its token (or with another session's) gets 403 and changes
  nothing;
- language: an explicit choice (cookie, then account) wins over Accept-Language; zh-CN default;
- the catalog: every key in both languages, every key a template uses exists, and a page
  rendered in the pseudo-locale shows no text that did not come from the catalog or the store;
- nothing secret in a URL: the code page's address names only the grant.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from conftest import CloudUnderTest, module_cloud

from cloud_api.seed import LOGINS
from linli.i18n import LANGUAGES, catalog

WANG = LOGINS[0]
TEMPLATES = Path(__file__).resolve().parent.parent / "cloud_api" / "pages" / "templates"
PAGES = ["/app", "/app/items", "/app/items/itm_books", "/app/history", "/app/loans"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudUnderTest]:
    """A seeded cloud for the module (the pages only read, but for the posts tested)."""
    with module_cloud(tmp_path_factory, "pages") as running:
        yield running


def cookie_named(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of the cookie ``name`` the response sets."""
    for header in response.headers.get_list("set-cookie"):
        attributes = cookie_attributes(header)
        if attributes["name"] == name:
            return attributes
    raise AssertionError(f"no {name} cookie set")


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    parts = [p.strip() for p in set_cookie.split(";")]
    name, _, value = parts[0].partition("=")
    attributes = {"name": name, "value": value}
    for part in parts[1:]:
        key, _, val = part.partition("=")
        attributes[key.lower()] = val.lower() if val else "true"
    return attributes


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the form has no csrf field"
    return found.group(1)


def sign_in(site: CloudUnderTest, login: object = WANG, language: str | None = None) -> str:
    """Sign in through the form; return the session cookie's value."""
    page = httpx.get(f"{site.url}/signin")
    token = csrf_of(page.text)
    cookies = f"linli_csrf={token}" + (f"; linli_lang={language}" if language else "")
    done = httpx.post(
        f"{site.url}/signin",
        data={"phone": login.login, "pin": login.secret, "csrf": token},  # type: ignore[attr-defined]
        headers={"cookie": cookies},
    )
    assert done.status_code == 303 and done.headers["location"] == "/app", done.text[:500]
    return cookie_named(done, "linli_session")["value"]


def get(
    site: CloudUnderTest, path: str, session: str, language: str | None = None
) -> httpx.Response:
    cookie = f"linli_session={session}" + (f"; linli_lang={language}" if language else "")
    return httpx.get(f"{site.url}{path}", headers={"cookie": cookie})


def test_cookies_are_secure_httponly_and_strict(site: CloudUnderTest) -> None:
    page = httpx.get(f"{site.url}/signin")
    csrf_cookie = cookie_named(page, "linli_csrf")
    token = csrf_of(page.text)
    assert csrf_cookie["value"] == token
    done = httpx.post(
        f"{site.url}/signin",
        data={"phone": WANG.login, "pin": WANG.secret, "csrf": token},
        headers={"cookie": f"linli_csrf={token}"},
    )
    session = cookie_named(done, "linli_session")
    for cookie in (csrf_cookie, session):
        assert cookie["secure"] == "true"
        assert cookie["httponly"] == "true"
        assert cookie["samesite"] == "strict"
        assert cookie["path"] == "/"
    assert int(session["max-age"]) == 12 * 3600
    assert "content-security-policy" in page.headers
    assert page.headers["x-frame-options"] == "DENY"


def test_a_sign_in_without_its_token_is_refused_and_creates_no_session(
    site: CloudUnderTest,
) -> None:
    before = site.store.read("SELECT COUNT(*) FROM sessions")[0][0]
    for data, cookie in (
        ({"phone": WANG.login, "pin": WANG.secret}, ""),
        ({"phone": WANG.login, "pin": WANG.secret, "csrf": "a" * 40}, "linli_csrf=" + "b" * 40),
        ({"phone": WANG.login, "pin": WANG.secret, "csrf": "a" * 40}, ""),
    ):
        refused = httpx.post(f"{site.url}/signin", data=data, headers={"cookie": cookie})
        assert refused.status_code == 403
        assert (
            "set-cookie" not in refused.headers
            or "linli_session" not in refused.headers["set-cookie"]
        )
    assert site.store.read("SELECT COUNT(*) FROM sessions")[0][0] == before


@pytest.mark.parametrize(
    "path",
    [
        "/app/items/itm_books/reserve",
        "/app/language",
        "/signout",
        "/app/codes/x/open",
        "/app/loans/itm_books/return",
    ],
)
def test_every_signed_in_form_without_its_token_gets_403_and_changes_nothing(
    site: CloudUnderTest, path: str
) -> None:
    session = sign_in(site)
    other = sign_in(site)  # another session's token is no good either
    other_token = csrf_of(get(site, "/app", other).text)
    # The notification thread delivers queued messages (and records its run) on its own clock:
    # not this request's doing.
    ignored = {"sessions", "notifications", "job_runs"}
    before = {t: r for t, r in site.store.dump().items() if t not in ignored}
    for form in ({"language": "en"}, {"language": "en", "csrf": other_token}):
        refused = httpx.post(
            f"{site.url}{path}", data=form, headers={"cookie": f"linli_session={session}"}
        )
        assert refused.status_code == 403, (path, refused.status_code)
    after = {t: r for t, r in site.store.dump().items() if t not in ignored}
    assert after == before
    assert get(site, "/app", session).status_code == 200  # still signed in


def test_the_problem_form_without_its_token_gets_403(site: CloudUnderTest) -> None:
    session = sign_in(site)
    refused = httpx.post(
        f"{site.url}/app/items/itm_kettle/problem",
        data={"problem": "damaged"},
        files={"photo": ("p.png", b"\x89PNG\r\n\x1a\n" + b"0" * 10, "image/png")},
        headers={"cookie": f"linli_session={session}"},
    )
    assert refused.status_code == 403
    assert site.store.read("SELECT COUNT(*) FROM uploads")[0][0] == 0


def test_pages_need_a_resident_session(site: CloudUnderTest) -> None:
    for path in PAGES:
        response = httpx.get(f"{site.url}{path}")
        assert response.status_code == 303 and response.headers["location"] == "/signin"
    forged = httpx.get(f"{site.url}/app", headers={"cookie": "linli_session=forged"})
    assert forged.status_code == 303


def test_the_explicit_language_wins_over_accept_language(site: CloudUnderTest) -> None:
    session = sign_in(site)
    english_browser = {"accept-language": "en-GB,en;q=0.9"}
    default = httpx.get(f"{site.url}/signin")
    assert '<html lang="zh-CN">' in default.text
    assert '<html lang="en">' in httpx.get(f"{site.url}/signin", headers=english_browser).text
    chosen = httpx.get(
        f"{site.url}/signin", headers=english_browser | {"cookie": "linli_lang=zh-CN"}
    )
    assert '<html lang="zh-CN">' in chosen.text
    assert "可用积分" in get(site, "/app", session).text
    assert "Points you can use" in get(site, "/app", session, "en").text


def test_the_language_choice_is_kept_on_the_account(site: CloudUnderTest) -> None:
    session = sign_in(site, LOGINS[1])
    token = csrf_of(get(site, "/app", session).text)
    switched = httpx.post(
        f"{site.url}/app/language",
        data={"language": "en", "csrf": token, "back": "/app/items"},
        headers={"cookie": f"linli_session={session}"},
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/app/items"
    assert cookie_named(switched, "linli_lang")["value"] == "en"
    row = site.store.read_one("SELECT language FROM people WHERE id = 'per_2'")
    assert row is not None and row["language"] == "en"
    # Without the cookie (another phone), the account's choice applies.
    assert '<html lang="en">' in get(site, "/app", session).text
    back = httpx.post(
        f"{site.url}/app/language",
        data={"language": "zh-CN", "csrf": token, "back": "https://evil.example/"},
        headers={"cookie": f"linli_session={session}"},
    )
    assert back.headers["location"] == "/app"  # never sent off the site


def test_the_code_is_on_its_page_and_never_in_a_url(site: CloudUnderTest) -> None:
    session = sign_in(site)
    home = get(site, "/app", session)
    links = re.findall(r'href="(/app/codes/[^"]+)"', home.text)
    assert links
    page = get(site, links[0], session)
    digits = re.search(
        r'data-testid="code-digits"[^>]*><span class="data">(\d{4}) (\d{4})<', page.text
    )
    assert digits, page.text[:1500]
    code = digits.group(1) + digits.group(2)
    assert code not in links[0]
    assert all(code not in href for href in re.findall(r'(?:href|action)="([^"]+)"', page.text))
    # Another resident cannot see it.
    other = sign_in(site, LOGINS[1])
    assert get(site, links[0], other).status_code == 404


# --- the catalog --------------------------------------------------------------------------------


def test_every_catalog_key_exists_in_both_languages() -> None:
    keys = [set(catalog(language)) for language in LANGUAGES]
    assert keys[0] == keys[1], keys[0] ^ keys[1]
    for language in LANGUAGES:
        assert all(text.strip() for text in catalog(language).values())


def test_every_key_a_template_uses_is_in_the_catalog() -> None:
    used: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""_\(\s*["']([a-z0-9_.]+)["']""", template.read_text()))
    assert used, "no catalog key found in the templates"
    missing = {key for key in used if key not in catalog("en") and not key.endswith(".")}
    assert not missing, missing


class TextNodes(HTMLParser):
    """The page's visible text (and labelling attributes) as lines, with each value from the
    store (an element of class ``data``) replaced by ``§``."""

    SKIP: ClassVar[set[str]] = {"script", "style", "title"}
    VOID: ClassVar[set[str]] = {"input", "img", "meta", "link", "br", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.parts: list[str] = []

    def _in_data(self) -> bool:
        return any(is_data for _, is_data in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        is_data = "data" in (values.get("class") or "").split() or tag in self.SKIP
        if not self._in_data():
            if is_data and tag not in self.SKIP:
                self.parts.append("§")
            elif not is_data:
                self.parts.append("\n")
                for name in ("aria-label", "alt", "placeholder", "title"):
                    if values.get(name):
                        self.parts.append(f"{values[name]}\n")
        if tag not in self.VOID:
            self.stack.append((tag, is_data))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            open_tag, _ = self.stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, text: str) -> None:
        if not self._in_data():
            self.parts.append(text.replace("\n", " "))

    def lines(self) -> list[str]:
        return [line.strip() for line in "".join(self.parts).split("\n") if line.strip()]


ALLOWED_BARE = {"中文", "English", "·", "⟧", "⟦"}
"""Text allowed outside the catalog: the language names (each in its own language, by design,
wrapped like any other) and separators."""


@pytest.mark.parametrize("path", ["/signin", *PAGES, "/app/codes/{grant}"])
def test_the_pseudo_locale_finds_no_hard_coded_text(site: CloudUnderTest, path: str) -> None:
    if path == "/signin":
        html = httpx.get(f"{site.url}/signin", headers={"cookie": "linli_lang=x-pseudo"}).text
    else:
        session = sign_in(site)
        if "{grant}" in path:
            home = get(site, "/app", session).text
            path = re.findall(r'href="(/app/codes/[^"]+)"', home)[0]
        html = get(site, path, session, "x-pseudo").text
    parser = TextNodes()
    parser.feed(html)
    lines = parser.lines()
    assert lines, "nothing visible on the page"
    bare = []
    for line in lines:
        rest = re.sub(r"⟦[^⟦⟧]*⟧", "", line)  # catalog text (values inside it allowed)
        for word in ALLOWED_BARE:
            rest = rest.replace(word, "")
        if not re.fullmatch(r"[\s§·+\-0-9,:]*", rest):
            bare.append(line)
    assert not bare, f"hard-coded text on {path}: {bare}"


# --- a social worker reads a code by phone ---------------------------------------------------------


def test_a_social_worker_reads_a_code_by_phone_and_it_is_recorded(site: CloudUnderTest) -> None:
    zhang = next(login for login in LOGINS if login.login == "zhang")
    page = httpx.get(f"{site.url}/staff/signin")
    token = csrf_of(page.text)
    body = zhang.body(int(time.time() * 1000))
    done = httpx.post(
        f"{site.url}/staff/signin",
        data={"login": "zhang", "password": zhang.secret, "totp": body["totp"], "csrf": token},
        headers={"cookie": f"linli_csrf={token}"},
    )
    assert done.status_code == 303, done.text[:300]
    session = cookie_named(done, "linli_session")["value"]
    cookie = {"cookie": f"linli_session={session}"}
    start = httpx.get(f"{site.url}/staff/read-code", headers=cookie)
    form_token = csrf_of(start.text)
    found = httpx.post(
        f"{site.url}/staff/read-code/search", data={"q": "0001", "csrf": form_token}, headers=cookie
    )
    link = re.search(r'href="(/staff/residents/per_1/codes)"', found.text)
    assert link, found.text[:1000]
    codes = httpx.get(f"{site.url}{link.group(1)}", headers=cookie)
    action = re.search(r'action="(/staff/codes/[^"]+/read)"', codes.text)
    assert action and 'data-testid="code-digits"' not in codes.text  # digits only when read out
    refused = httpx.post(f"{site.url}{action.group(1)}", data={"reason": "x"}, headers=cookie)
    assert refused.status_code == 403
    before = site.store.read("SELECT COUNT(*) FROM code_readouts")[0][0]
    read = httpx.post(
        f"{site.url}{action.group(1)}",
        data={"reason": "Auntie Wang phoned; identity checked", "csrf": form_token},
        headers=cookie,
    )
    assert read.status_code == 200
    digits = re.search(r'data-testid="code-digits"><span class="data">(\d{4} \d{4})<', read.text)
    assert digits
    rows = site.store.read("SELECT worker_id, person_id, reason FROM code_readouts")
    assert len(rows) == before + 1
    assert tuple(rows[-1]) == ("per_3", "per_1", "Auntie Wang phoned; identity checked")
    assert digits.group(1).replace(" ", "") not in action.group(1)


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_no_page_leaves_a_placeholder_unfilled(site: CloudUnderTest, language: str) -> None:
    session = sign_in(site)
    home = get(site, "/app", session, language).text
    code_page = re.findall(r'href="(/app/codes/[^"]+)"', home)[0]
    for path in [*PAGES, code_page]:
        html = get(site, path, session, language).text
        assert not re.search(r"\{[a-z_]+\}", html), (
            path,
            re.findall(r".{30}\{[a-z_]+\}.{10}", html),
        )
    signin = httpx.get(f"{site.url}/signin", headers={"cookie": f"linli_lang={language}"}).text
    assert not re.search(r"\{[a-z_]+\}", signin)
