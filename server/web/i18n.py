"""The pages' language: Indonesian by default, English by the switch (a cookie), and gettext in templates."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
COOKIE = "kunjung_lang"


def page_language() -> str:
    """The language of this request's pages: the switch's cookie, else Indonesian."""
    chosen = getattr(g, "web_language", None)
    if chosen is None:
        chosen = request.cookies.get(COOKIE)
        chosen = chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE
        g.web_language = chosen
    return chosen


def _plain_gettext(text: str, **values: Any) -> str:
    return text % values if values else text


def install_language(app: Flask) -> None:
    """gettext for the templates: the app's catalogue when there is one, else the message itself."""
    translate = _plain_gettext
    app.jinja_env.globals.setdefault("_", translate)
    app.jinja_env.globals.setdefault("gettext", translate)


def label(text: Any, language: str | None = None) -> str:
    """A form's translated label (``{"id": …, "en": …}`` or plain text) in the page's language."""
    if isinstance(text, dict):
        language = language or page_language()
        return str(text.get(language) or text.get(DEFAULT_LANGUAGE) or next(iter(text.values()), ""))
    return "" if text is None else str(text)
