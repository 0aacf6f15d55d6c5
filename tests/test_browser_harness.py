"""The browser-test harness itself (tests/browser.py, tests/browser_fixtures.py), on static HTML.

Proves, before any page of ours is judged by it, that:

- the vendored axe-core is the file its README records (sha256), so a changed file is noticed;
- axe finds known serious and critical violations (an image without a text alternative, an
  input without a label) and reports none on a clean page, in Chinese and in English;
- the phone page is what the fixture promises (viewport, touch, locale);
- Chinese text renders with a real CJK font (the glyph has width, and chromium drew it from a
  Noto CJK face, not a fallback box);
- the layout checks (touch targets, small text, horizontal overflow) find what they should;
- Playwright's event loop does not leak into other tests (``asyncio.run`` still works).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import browser
import pytest
from browser import (
    AXE_JS,
    DEFAULT_TIMEOUT_MS,
    PHONE_VIEWPORT,
    axe_violations,
    body_font_px,
    format_violations,
    horizontal_overflow_px,
    layout_width_px,
    small_targets,
    small_text,
    wider_than_viewport,
)
from playwright.sync_api import Error, Page, Route

AXE_README = Path(AXE_JS).with_name("README.md")

CLEAN_ZH = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>登录 · 邻里</title>
<style>
  body { font-size: 20px; margin: 0; padding: 16px; font-family: sans-serif; }
  label, input, button { display: block; min-height: 48px; font-size: 20px; width: 100%;
                         box-sizing: border-box; }
  button { background: #1a5e20; color: #fff; border: 0; }
</style></head>
<body><main>
  <h1>登录</h1>
  <form method="post" action="/signin">
    <label for="phone">手机号</label><input id="phone" name="phone" inputmode="tel">
    <label for="pin">密码</label><input id="pin" name="pin" type="password">
    <button type="submit">登录</button>
  </form>
</main></body></html>"""

CLEAN_EN = (
    CLEAN_ZH.replace('lang="zh-CN"', 'lang="en"')
    .replace("登录 · 邻里", "Sign in · Linli")
    .replace("登录", "Sign in")
    .replace("手机号", "Phone number")
    .replace("密码", "PIN")
)


def test_vendored_axe_matches_the_sha256_in_its_readme() -> None:
    recorded = re.search(r"File sha256 \| `([0-9a-f]{64})`", AXE_README.read_text("utf-8"))
    assert recorded, f"{AXE_README} records no file sha256"
    actual = hashlib.sha256(AXE_JS.read_bytes()).hexdigest()
    assert actual == recorded.group(1), (
        f"{AXE_JS} changed (sha256 {actual}); record its provenance in {AXE_README.name}"
    )
    version = re.search(r"`axe-core` (\d+\.\d+\.\d+)", AXE_README.read_text("utf-8"))
    assert version, "the README names no version"
    assert AXE_JS.read_text("utf-8").startswith(f"/*! axe v{version.group(1)}")


def test_the_phone_page_is_a_phone(phone_page: Page) -> None:
    phone_page.set_content(CLEAN_ZH)
    seen = phone_page.evaluate(
        """() => ({width: innerWidth, height: innerHeight, dpr: devicePixelRatio,
                   touch: navigator.maxTouchPoints, language: navigator.language})"""
    )
    touch_points = seen.pop("touch")
    assert seen == {
        "width": PHONE_VIEWPORT["width"],
        "height": PHONE_VIEWPORT["height"],
        "dpr": 2,
        "language": "zh-CN",
    }
    assert touch_points >= 1
    # The default timeout is the fixture's, not Playwright's 30 s.
    with pytest.raises(Exception, match=f"Timeout {DEFAULT_TIMEOUT_MS // 10}ms"):
        phone_page.wait_for_selector("#absent", timeout=DEFAULT_TIMEOUT_MS // 10)


@pytest.mark.parametrize("html", [CLEAN_ZH, CLEAN_EN], ids=["zh-CN", "en"])
def test_axe_reports_nothing_on_a_clean_page(phone_page: Page, html: str) -> None:
    phone_page.set_content(html)
    every_impact = ("minor", "moderate", "serious", "critical")
    found = axe_violations(phone_page, impacts=every_impact)
    assert found == [], format_violations(found)


def test_axe_reports_an_image_without_alt_and_an_unlabelled_input(phone_page: Page) -> None:
    broken = CLEAN_ZH.replace(
        "<h1>登录</h1>", '<h1>登录</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
    ).replace('<label for="pin">密码</label>', "")
    phone_page.set_content(broken)

    found = axe_violations(phone_page)

    by_rule = {v["id"]: v for v in found}
    assert set(by_rule) >= {"image-alt", "label"}, format_violations(found)
    assert by_rule["image-alt"]["impact"] == "critical"
    assert by_rule["label"]["nodes"][0]["target"] == ["#pin"]
    report = format_violations(found, where="signin: ")
    assert "signin: image-alt [critical]" in report
    assert "at #pin" in report
    # Filtering by impact: nothing "minor" here.
    assert axe_violations(phone_page, impacts=("minor",)) == []


def test_axe_runs_on_a_page_whose_csp_forbids_scripts(phone_page: Page) -> None:
    # Our pages send "script-src 'none'": axe must still run, and the CSP must still hold.
    def serve(route: Route) -> None:
        route.fulfill(
            body=CLEAN_EN.replace(
                "<main>", '<main><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
            ),
            content_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": "default-src 'self'; img-src data:; script-src 'none'"
            },
        )

    phone_page.route("http://linli.test/", serve)
    phone_page.goto("http://linli.test/")

    assert [v["id"] for v in axe_violations(phone_page)] == ["image-alt"]
    with pytest.raises(Error, match="Content Security Policy"):
        phone_page.add_script_tag(content="window.ran = true")


def test_axe_can_run_twice_on_a_page(phone_page: Page) -> None:
    phone_page.set_content(CLEAN_EN)
    assert axe_violations(phone_page) == []
    assert axe_violations(phone_page) == []  # injected once, run again


def test_chinese_text_renders_with_a_cjk_font(phone_page: Page) -> None:
    phone_page.set_content(
        '<html lang="zh-CN"><body style="font-size:20px"><p><span id="c">邻</span>'
        '<span id="tofu">\U0010fffd</span></p></body></html>'
    )
    width = phone_page.evaluate("document.getElementById('c').getBoundingClientRect().width")
    assert width > 0

    # Which font chromium actually drew the character from (a missing glyph would come from a
    # last-resort font, or show as a box): ask the DevTools protocol.
    cdp = phone_page.context.new_cdp_session(phone_page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#c"})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    cdp.detach()
    assert any("CJK" in f["familyName"] and f["glyphCount"] >= 1 for f in fonts), fonts


def test_layout_checks_find_small_targets_small_text_and_overflow(phone_page: Page) -> None:
    phone_page.set_content(
        """<html lang="en"><meta name="viewport" content="width=device-width">
        <body style="font-size:20px; margin:0">
        <p>Fine text <a href="/x" style="display:inline-block; min-height:48px; min-width:48px">ok</a></p>
        <a href="#main" style="position:absolute; left:-999px">s</a>
        <a href="/tiny" data-testid="tiny">x</a>
        <small>fine print</small>
        <input type="hidden" name="csrf" value="t">
        <label style="display:block; min-height:48px"><input type="checkbox" name="agree"> I agree</label>
        <div style="width:600px">wide</div>
        </body></html>"""
    )
    targets = small_targets(phone_page)
    assert [t["element"] for t in targets] == ['a[data-testid="tiny"][href="/tiny"]'], targets
    assert targets[0]["height"] < 44

    text = small_text(phone_page)
    assert [t["text"] for t in text] == ["fine print"], text
    assert body_font_px(phone_page) == 20

    assert layout_width_px(phone_page) == PHONE_VIEWPORT["width"]
    assert horizontal_overflow_px(phone_page) == 600 - PHONE_VIEWPORT["width"]


def test_a_page_without_a_viewport_meta_is_laid_out_wide(phone_page: Page) -> None:
    # Such a page shows no scroll bar but shrinks everything: the width check catches it.
    phone_page.set_content(
        '<html lang="en"><body><div style="width:600px">wide</div></body></html>'
    )
    assert layout_width_px(phone_page) > PHONE_VIEWPORT["width"]
    assert horizontal_overflow_px(phone_page) <= 1


def test_no_helper_returns_the_text_of_a_code(phone_page: Page) -> None:
    # The code is small, faint and too wide: every helper reports it, none shows its digits.
    phone_page.set_content(
        """<html lang="en"><meta name="viewport" content="width=device-width">
        <title>Code</title><body style="font-size:20px"><main>
        <a href="/x" style="font-size:10px; color:#bbb"><p data-testid="code-digits"
           style="width:600px">1234 5678</p></a></main></body></html>"""
    )
    found = {
        "axe": axe_violations(phone_page),
        "targets": small_targets(phone_page),
        "text": small_text(phone_page),
        "wide": wider_than_viewport(phone_page),
    }
    assert all(found.values()), found
    assert "color-contrast" in {v["id"] for v in found["axe"]}
    shown = repr(found) + format_violations(found["axe"])
    assert "1234" not in shown and "5678" not in shown
    assert browser.HIDDEN in shown


def test_chromium_path_skips_without_chromium_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(browser, "SYSTEM_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("LINLI_CHROMIUM", raising=False)
    monkeypatch.delenv("LINLI_REQUIRE_SYSTEM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        browser.chromium_path()
    monkeypatch.setenv("LINLI_REQUIRE_SYSTEM", "1")
    with pytest.raises(pytest.fail.Exception, match="forbids skipping"):
        browser.chromium_path()

    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LINLI_CHROMIUM", str(fake))
    assert browser.chromium_path() == str(fake)


def test_playwright_loop_does_not_leak_into_other_tests() -> None:
    # Runs after the browser tests above in this module: asyncio must still work here.
    assert asyncio._get_running_loop() is None
    assert asyncio.run(asyncio.sleep(0, result="ran")) == "ran"
