"""The pages' language, through server/i18n.py: Indonesian by default, English by the switch; form labels."""

from __future__ import annotations

from typing import Any

from ..i18n import LANGUAGE_COOKIE, LANGUAGES, PAGE_DEFAULT, current_language

COOKIE = LANGUAGE_COOKIE
DEFAULT_LANGUAGE = PAGE_DEFAULT

__all__ = ["COOKIE", "DEFAULT_LANGUAGE", "LANGUAGES", "label", "page_language"]


def page_language() -> str:
    """The language of this request's page (the blueprint marks its requests as pages)."""
    return current_language()


def label(text: Any, language: str | None = None) -> str:
    """A form's translated label (``{"id": …, "en": …}`` or plain text) in the page's language."""
    if isinstance(text, dict):
        language = language or page_language()
        return str(text.get(language) or text.get(DEFAULT_LANGUAGE) or next(iter(text.values()), ""))
    return "" if text is None else str(text)
