"""Helpers for the browser tests: Debian's chromium driven by Playwright, axe-core, phone pages.

Imported by tests as ``from browser import ...`` (``tests/`` is on ``sys.path``); the fixtures
that use these helpers live in ``tests/browser_fixtures.py``.

The browser is the system's chromium (``apt-get install chromium fonts-noto-cjk``, which
``.ci/run`` does), launched by its path: Playwright's own downloaded browsers are never installed
nor used. axe-core is vendored in ``tests/data/axe/`` (version and provenance in its README), so
the accessibility rules need no network and do not change under the tests' feet.

Example::

    page = new_phone_page(browser, locale="en")
    page.goto(url)
    assert not axe_violations(page), format_violations(axe_violations(page))
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from conftest import require_system
from playwright.sync_api import Browser, Page, ViewportSize

AXE_JS = Path(__file__).resolve().parent / "data" / "axe" / "axe.min.js"
"""The vendored axe-core (``tests/data/axe/README.md`` records where it came from)."""

SYSTEM_CHROMIUM = "/usr/bin/chromium"
MISSING_CHROMIUM = "chromium not installed (apt-get install chromium)"

PHONE_VIEWPORT: ViewportSize = {"width": 390, "height": 844}
"""A common phone's CSS viewport (iPhone 12-15 class)."""
PHONE_SCALE = 2
DESKTOP_VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
"""A desk's browser window (the consoles are surveyed at both widths)."""
VIEWPORTS: dict[str, ViewportSize] = {"desktop": DESKTOP_VIEWPORT, "phone": PHONE_VIEWPORT}
LANG_BUTTON = {"zh-CN": "lang-zh", "en": "lang-en"}
"""The ``data-testid`` of each language's button on every page."""
DEFAULT_TIMEOUT_MS = 10_000

WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa")
"""axe rule tags: WCAG 2.0, 2.1 and 2.2 at levels A and AA."""
BLOCKING_IMPACTS = ("serious", "critical")

MIN_TARGET_PX = 44
"""Smallest touch target, CSS px (WCAG 2.5.5 AAA, Apple's and Android's guidance)."""
MIN_FONT_PX = 18
"""Smallest body text, CSS px: many of our residents are elderly."""

SECRET_SELECTOR = "[data-testid=code-digits]"
"""Elements whose text is a secret (the 8-digit code). The helpers never return their text, nor
the text or HTML of an element around them, so no test report can show a code."""
HIDDEN = "(hidden: shows a code)"

# A JavaScript expression: ``shown(el, text)`` is ``text`` (trimmed, 40 characters at most), or
# HIDDEN when ``el`` is, is inside or holds a secret element. ``secret`` is the selector.
_SHOWN = f"""
const shown = (el, text) => (el.closest(secret) || el.querySelector(secret))
    ? "{HIDDEN}" : (text || "").trim().slice(0, 40);
"""


def chromium_path() -> str:
    """The chromium executable: ``$LINLI_CHROMIUM``, else Debian's, else ``chromium`` on PATH.

    Skips the calling test when none exists, or fails it when LINLI_REQUIRE_SYSTEM=1 (CI).
    """
    candidates = [os.environ.get("LINLI_CHROMIUM"), SYSTEM_CHROMIUM, shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    require_system(MISSING_CHROMIUM)
    raise AssertionError("unreachable: require_system skips or fails")  # pragma: no cover


def new_phone_page(
    browser: Browser,
    *,
    locale: str = "zh-CN",
    width: int = PHONE_VIEWPORT["width"],
    height: int = PHONE_VIEWPORT["height"],
    base_url: str | None = None,
    **context_options: Any,
) -> Page:
    """A page in a fresh context (no cookies) that looks like a phone: touch, mobile, 2× pixels.

    ``context_options`` go to ``Browser.new_context`` (``storage_state=`` to start signed in).
    Close the page with ``page.context.close()``.
    """
    context = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=PHONE_SCALE,
        is_mobile=True,
        has_touch=True,
        locale=locale,
        base_url=base_url,
        **context_options,
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    return context.new_page()


# --- axe-core ----------------------------------------------------------------------------------

_AXE_RUN = """
async ([tags, secret, HIDDEN]) => {
    const hidden = (el) => el && (el.closest(secret) || el.querySelector(secret));
    const results = await axe.run(document, {
        runOnly: {type: "tag", values: tags},
        resultTypes: ["violations"],
        elementRef: true,
    });
    return results.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        helpUrl: v.helpUrl,
        nodes: v.nodes.map((n) => ({
            target: n.target,
            html: hidden(n.element) ? HIDDEN : n.html,
            impact: n.impact,
            summary: hidden(n.element) ? HIDDEN : n.failureSummary,
        })),
    }));
}
"""


@functools.cache
def _axe_source() -> str:
    return AXE_JS.read_text("utf-8")


def axe_violations(
    page: Page, impacts: Sequence[str] = BLOCKING_IMPACTS, tags: Sequence[str] = WCAG_TAGS
) -> list[dict[str, Any]]:
    """Run the vendored axe-core on the page; return its violations of these impacts.

    Each violation is a dict with ``id``, ``impact``, ``help``, ``helpUrl`` and ``nodes`` (each
    with ``target``, ``html``, ``impact``, ``summary``), as axe reports them; a node showing a
    code (:data:`SECRET_SELECTOR`) has its HTML and summary hidden.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol, not added as a <script>: our pages' CSP
        # (script-src 'none') would refuse a script tag, and the test must not weaken it.
        page.evaluate(_axe_source() + "\n;undefined")
    found: list[dict[str, Any]] = page.evaluate(_AXE_RUN, [list(tags), SECRET_SELECTOR, HIDDEN])
    return [v for v in found if v["impact"] in impacts]


def format_violations(violations: Iterable[dict[str, Any]], where: str = "") -> str:
    """One line per violation: rule id, impact, help text, first offending element, count."""
    lines = []
    for v in violations:
        nodes = v.get("nodes") or [{}]
        target = " ".join(str(t) for t in nodes[0].get("target", ["?"]))
        more = f" (+{len(nodes) - 1} more)" if len(nodes) > 1 else ""
        lines.append(f"{where}{v['id']} [{v['impact']}] {v['help']} at {target}{more}")
    return "\n".join(lines) or "no violations"


# --- layout checks -----------------------------------------------------------------------------

_SMALL_TARGETS = (
    """
([minPx, secret]) => {
"""
    + _SHOWN
    + """
    const visible = (el) => {
        const s = getComputedStyle(el);
        const r = el.getBoundingClientRect();
        return s.visibility !== "hidden" && s.display !== "none" && r.width > 0 && r.height > 0;
    };
    const describe = (el) => {
        let d = el.tagName.toLowerCase();
        for (const a of ["data-testid", "name", "type", "href"]) {
            if (el.hasAttribute(a)) d += `[${a}="${el.getAttribute(a)}"]`;
        }
        return d;
    };
    // Off the page to the side (a skip link waiting for focus) is not visible.
    const offPage = (r) => r.right + scrollX <= 0
        || r.left + scrollX >= document.documentElement.scrollWidth;
    const small = [];
    const controls = document.querySelectorAll(
        "a[href], button, input:not([type=hidden]), select, textarea, summary, [role=button]");
    for (const el of controls) {
        if (!visible(el) || offPage(el.getBoundingClientRect())) continue;
        let r = el.getBoundingClientRect();
        // A checkbox or radio is operated through its label: the label is the target.
        if (el.matches("input[type=checkbox], input[type=radio]") && el.labels && el.labels[0]) {
            r = el.labels[0].getBoundingClientRect();
        }
        if (r.width + 0.5 < minPx || r.height + 0.5 < minPx) {
            const text = el.innerText || el.value || el.getAttribute("aria-label");
            small.push({element: describe(el), text: shown(el, text),
                        width: Math.round(r.width * 10) / 10, height: Math.round(r.height * 10) / 10});
        }
    }
    return small;
}
"""
)

_SMALL_TEXT = (
    """
([minPx, secret]) => {
"""
    + _SHOWN
    + """
    const small = [];
    const seen = new Set();
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent.trim();
        const el = node.parentElement;
        if (!text || !el || seen.has(el)) continue;
        if (el.closest("script, style, noscript, template, [hidden], [aria-hidden=true]")) continue;
        const s = getComputedStyle(el);
        const r = el.getBoundingClientRect();
        if (s.visibility === "hidden" || s.display === "none" || r.width === 0) continue;
        seen.add(el);
        const size = parseFloat(s.fontSize);
        if (size + 0.01 < minPx) {
            small.push({element: el.tagName.toLowerCase() + (el.className ? "." + el.className : ""),
                        text: shown(el, text), font_px: size});
        }
    }
    return small;
}
"""
)


def small_targets(page: Page, min_px: int = MIN_TARGET_PX) -> list[dict[str, Any]]:
    """Visible links, buttons and form controls smaller than ``min_px`` × ``min_px`` CSS px.

    A checkbox or radio button is measured by its label (which operates it); an element off the
    page to the side (a skip link until it has focus) is left out. Each entry names the element
    (tag, ``data-testid``, ``name``, ``type``, ``href``), its text and its size.
    """
    found: list[dict[str, Any]] = page.evaluate(_SMALL_TARGETS, [min_px, SECRET_SELECTOR])
    return found


def small_text(page: Page, min_px: int = MIN_FONT_PX) -> list[dict[str, Any]]:
    """Visible text whose computed font size is under ``min_px`` CSS px (one entry per element)."""
    found: list[dict[str, Any]] = page.evaluate(_SMALL_TEXT, [min_px, SECRET_SELECTOR])
    return found


def body_font_px(page: Page) -> float:
    """The computed font size of ``<body>``, CSS px."""
    return float(page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)"))


def layout_width_px(page: Page) -> int:
    """The layout viewport's width (``documentElement.clientWidth``), CSS px.

    On a phone it is the screen's width only when the page has ``<meta name="viewport"
    content="width=device-width">``; without it the browser lays the page out 980 px wide and
    shrinks it.
    """
    return int(page.evaluate("() => document.documentElement.clientWidth"))


def horizontal_overflow_px(page: Page) -> float:
    """How far the page is wider than its layout viewport (> 1 means it scrolls sideways).

    Measured against ``clientWidth``, not ``innerWidth``: a mobile browser zooms out to show
    content wider than the screen, and ``innerWidth`` then grows with the content and hides the
    overflow. Meaningful on a phone only together with :func:`layout_width_px`.
    """
    return float(
        page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


_WIDER_THAN_VIEWPORT = (
    """
([secret]) => {
"""
    + _SHOWN
    + """
    const limit = document.documentElement.clientWidth + 1;
    const sticksOut = (el) => el.getBoundingClientRect().right + scrollX > limit;
    const found = [];
    for (const el of document.body.querySelectorAll("*")) {
        if (!sticksOut(el) || [...el.children].some(sticksOut)) continue;
        const s = getComputedStyle(el);
        if (s.display === "none" || s.visibility === "hidden") continue;
        let d = el.tagName.toLowerCase();
        if (el.id) d += "#" + el.id;
        if (el.classList.length) d += "." + [...el.classList].join(".");
        for (const a of ["data-testid", "name", "href"]) {
            if (el.hasAttribute(a)) d += `[${a}="${el.getAttribute(a)}"]`;
        }
        const r = el.getBoundingClientRect();
        found.push({element: d, text: shown(el, el.innerText),
                    right_px: Math.round(r.right + scrollX), width_px: Math.round(r.width)});
    }
    return found;
}
"""
)


def wider_than_viewport(page: Page) -> list[dict[str, Any]]:
    """The innermost visible elements reaching past the layout viewport's right edge (what to fix
    when :func:`horizontal_overflow_px` is over 1)."""
    found: list[dict[str, Any]] = page.evaluate(_WIDER_THAN_VIEWPORT, [SECRET_SELECTOR])
    return found
