"""One message catalog for every page and kiosk: Simplified Chinese by default, English available.

The explicit choice (a resident's account setting or a cookie) wins over ``Accept-Language``
(docs/decisions/0009-language.md).

Example:
    >>> t("code.refused.expired", "en")
    'This code has expired. Please ask for a new one.'
    >>> choose_language(None, "en-GB,en;q=0.9")
    'en'
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

DEFAULT_LANGUAGE = "zh-CN"
LANGUAGES = ("zh-CN", "en")
PSEUDO = "x-pseudo"
"""A test locale: every catalog text in English wrapped in ⟦…⟧, so a page rendered in it shows
at once any text that did not come from the catalog (a hard-coded string)."""


@cache
def catalog(language: str) -> dict[str, str]:
    """Load the catalog of one language: ``{language}.json`` and its parts ``{language}.*.json``
    (one part per area, e.g. ``en.console.json``), merged; a key defined twice is an error."""
    if language not in LANGUAGES:
        raise KeyError(f"no catalog for {language!r}")
    files = resources.files(__package__)
    parts = sorted(
        entry.name
        for entry in files.iterdir()
        if entry.name.startswith(f"{language}.")
        and entry.name.endswith(".json")
        and entry.name != f"{language}.json"
    )
    names = [f"{language}.json", *parts]
    data: dict[str, str] = {}
    for name in names:
        part: dict[str, str] = json.loads(files.joinpath(name).read_text(encoding="utf-8"))
        twice = data.keys() & part.keys()
        if twice:
            raise ValueError(f"catalog keys defined twice ({name}): {sorted(twice)[:5]}")
        data.update(part)
    return data


def t(key: str, language: str = DEFAULT_LANGUAGE, **values: object) -> str:
    """Translate ``key``; fall back to the default language, then to the key itself."""
    if language == PSEUDO:
        return "⟦" + t(key, "en", **values) + "⟧"
    text = catalog(language if language in LANGUAGES else DEFAULT_LANGUAGE).get(key)
    if text is None:
        text = catalog(DEFAULT_LANGUAGE).get(key, key)
    return text.format(**values) if values else text


def choose_language(explicit: str | None, accept_language: str | None) -> str:
    """Pick the language: an explicit supported choice first, then Accept-Language, then zh-CN."""
    if explicit in LANGUAGES or explicit == PSEUDO:
        return explicit
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip().lower()))
    for negative_quality, _, tag in sorted(ranked):
        if negative_quality >= 0:
            continue
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE
