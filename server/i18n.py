"""Which language kunjung speaks to whom, and the message catalogue (server/translations) its words come from."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, Response, g, has_request_context, request
from flask_babel import Babel, Domain
from flask_babel.speaklater import LazyString
from marshmallow import fields
from werkzeug.datastructures import LanguageAccept
from werkzeug.wrappers import Request

__all__ = [
    "API_DEFAULT",
    "LANGUAGES",
    "LANGUAGE_COOKIE",
    "N_",
    "PAGE_DEFAULT",
    "TRANSLATIONS",
    "FlagsField",
    "_",
    "catalogue",
    "current_language",
    "force_language",
    "gettext",
    "install_i18n",
    "lazy_gettext",
    "ngettext",
    "remember_page_language",
    "translate_before_app",
    "translate_errors",
    "translate_flags",
    "translate_known",
    "use_page_language",
]

LANGUAGES = ("id", "en")
# Messages are written in English in the code (the msgids), so English needs no catalogue of its own.
SOURCE_LANGUAGE = "en"
# The API answers in English unless asked, so existing clients keep the messages they parse in logs and tests.
API_DEFAULT = "en"
# The web pages are for village officers and supervisors: Indonesian unless they switch.
PAGE_DEFAULT = "id"
LANGUAGE_COOKIE = "kunjung_lang"
LANGUAGE_SWITCH = "lang"  # ?lang=en on any page switches, and the cookie remembers it
TRANSLATIONS = Path(__file__).parent / "translations"
_FORCED: ContextVar[str | None] = ContextVar("kunjung_forced_language", default=None)
# Android before API 21 (and Java's Locale) still say "in" for Indonesian.
_ALIASES = {"in": "id"}


def _normal(language: str | None) -> str | None:
    """``id``, ``id-ID``, ``id_ID.UTF-8``, ``in`` → ``id``; anything kunjung does not speak → None."""
    if not language:
        return None
    primary = language.strip().replace("_", "-").split("-", 1)[0].split(".", 1)[0].lower()
    primary = _ALIASES.get(primary, primary)
    return primary if primary in LANGUAGES else None


@cache
def catalogue(language: str) -> NullTranslations:
    """Every ``*.po`` of one language, compiled in memory at first use.

    Compiling here rather than shipping ``.mo`` files keeps binaries out of git (parallel branches merge the
    text catalogues), and a fresh clone, a wheel or the Docker image needs no build step. Fuzzy entries are left
    out, so an unreviewed guess never reaches a user; the English msgid shows instead.
    """
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    files = sorted(folder.glob("*.po")) if folder.is_dir() else []
    if not files:
        return NullTranslations()
    merged: Translations | None = None
    for path in files:
        with path.open("rb") as handle:
            parsed = read_po(handle, locale=language)
        compiled = io.BytesIO()
        write_mo(compiled, parsed, use_fuzzy=False)
        compiled.seek(0)
        translations = Translations(compiled, domain="messages")
        if merged is None:
            merged = translations
        else:
            merged.merge(translations)
    assert merged is not None
    return merged


# --- choosing the language -------------------------------------------------------------------------------

def _header_language(accepted: LanguageAccept | None = None) -> str | None:
    """The best of id/en the request's Accept-Language names; ``*`` alone is no preference."""
    named = [(_ALIASES.get(value.split("-", 1)[0].lower(), value), quality)
             for value, quality in (request.accept_languages if accepted is None else accepted) if value != "*"]
    return _normal(LanguageAccept(named).best_match(LANGUAGES)) if named else None


# The web pages' URL prefix (server/web's blueprint): a request under it speaks as a page does.
PAGES_PREFIX = "/web"


def language_before_app(environ: Mapping[str, Any]) -> str:
    """The language of an answer made before the app sees the request (the body guard, server/middleware.py).

    It is what the app would choose from the request alone: a web page's request goes by ``?lang=``, then the
    language cookie, else Indonesian; any other request (the API, Collect's /key/ paths) by Accept-Language,
    else English. The user's own setting counts only once they are signed in, and the guard answers before
    the token or session is read, so it is not used here.
    """
    seen = Request(dict(environ), shallow=True)  # shallow: the body is never touched
    if seen.path == PAGES_PREFIX or seen.path.startswith(PAGES_PREFIX + "/"):
        return (_normal(seen.args.get(LANGUAGE_SWITCH)) or _normal(seen.cookies.get(LANGUAGE_COOKIE))
                or PAGE_DEFAULT)
    return _header_language(seen.accept_languages) or API_DEFAULT


def translate_before_app(text: str, environ: Mapping[str, Any]) -> str:
    """``text`` in the language :func:`language_before_app` chooses for this request."""
    with force_language(language_before_app(environ)):
        return translate_known(text)


def _user_language() -> str | None:
    user = getattr(g, "kunjung_user", None)
    return _normal(user.get("language")) if isinstance(user, dict) else None


def _page_language() -> str:
    return (_normal(request.args.get(LANGUAGE_SWITCH)) or _normal(request.cookies.get(LANGUAGE_COOKIE))
            or _user_language() or PAGE_DEFAULT)


def _api_language() -> str:
    return _header_language() or _user_language() or API_DEFAULT


def _command_line_language() -> str:
    """The CLI speaks what the shell asks for: KUNJUNG_LANG, then the POSIX locale variables; else English."""
    for name in ("KUNJUNG_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        for part in os.environ.get(name, "").split(":"):
            found = _normal(part)
            if found:
                return found
    return API_DEFAULT


def current_language() -> str:
    """``id`` or ``en`` for what is being said now (see docs/protocol.md "Language" for the order)."""
    forced = _FORCED.get()
    if forced:
        return forced
    if has_request_context():
        if getattr(g, "kunjung_pages", False):
            return _page_language()
        return _api_language()
    return _command_line_language()


def use_page_language() -> str:
    """For a web page's request (call it in the pages' ``before_request``): Indonesian unless switched."""
    g.kunjung_pages = True
    return _page_language()


def remember_page_language(response: Response) -> Response:
    """Keeps a ``?lang=`` switch in a cookie (call it in the pages' ``after_request``)."""
    chosen = _normal(request.args.get(LANGUAGE_SWITCH)) if has_request_context() else None
    if chosen:
        response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600, samesite="Lax", httponly=True,
                            secure=request.is_secure)
    return response


@contextlib.contextmanager
def force_language(language: str) -> Iterator[str]:
    """Speak one language inside the block, whatever the request or shell asked (a form's own language, say)."""
    token = _FORCED.set(_normal(language) or API_DEFAULT)
    try:
        yield _FORCED.get() or API_DEFAULT
    finally:
        _FORCED.reset(token)


# --- saying it -------------------------------------------------------------------------------------------

def gettext(message: str, /, **params: Any) -> str:
    """``message`` (English, with ``%(name)s`` placeholders) in the current language, filled with ``params``."""
    text = catalogue(current_language()).gettext(message)
    return text % params if params else text


_ = gettext


def ngettext(singular: str, plural: str, count: int, /, **params: Any) -> str:
    text = catalogue(current_language()).ngettext(singular, plural, count)
    return text % {"count": count, **params}


def lazy_gettext(message: str, /, **params: Any) -> LazyString:
    """For messages defined at import time (module constants, schema field messages): translated when used."""
    return LazyString(gettext, message, **params)


def N_(message: str) -> str:  # the name pybabel looks for
    """Marks a message for the catalogue without translating it here (it is looked up when shown)."""
    return message


# Sentences other libraries write into kunjung's answers (werkzeug's error descriptions, marshmallow's field
# messages). They are catalogued here so translate_known can say them in Indonesian too.
THIRD_PARTY_MESSAGES = [
    N_("The browser (or proxy) sent a request that this server could not understand."),
    N_("The server could not verify that you are authorized to access the URL requested. You either supplied "
       "the wrong credentials (e.g. a bad password), or your browser doesn't understand how to supply the "
       "credentials required."),
    N_("You don't have the permission to access the requested resource. It is either read-protected or not "
       "readable by the server."),
    N_("The requested URL was not found on the server. If you entered the URL manually please check your "
       "spelling and try again."),
    N_("The method is not allowed for the requested URL."),
    N_("The resource identified by the request is only capable of generating response entities which have "
       "content characteristics not acceptable according to the accept headers sent in the request."),
    N_("A conflict happened while processing the request. The resource might have been modified while the "
       "request was being processed."),
    N_("The precondition on the request for the URL failed positive evaluation."),
    N_("The data value transmitted exceeds the capacity limit."),
    N_("The server does not support the media type transmitted in the request."),
    N_("The request was well-formed but was unable to be followed due to semantic errors."),
    N_("This request is required to be conditional; try using \"If-Match\" or \"If-Unmodified-Since\"."),
    N_("This user has exceeded an allotted request count. Try again later."),
    N_("The server encountered an internal error and was unable to complete your request. Either the server is "
       "overloaded or there is an error in the application."),
    N_("The server is temporarily unable to service your request due to maintenance downtime or capacity "
       "problems. Please try again later."),
    N_("Missing data for required field."),
    N_("Field may not be null."),
    N_("Invalid value."),
    N_("Invalid type."),
    N_("Invalid input type."),
    N_("Unknown field."),
    N_("Not a valid boolean."),
    N_("Not a valid date."),
    N_("Not a valid datetime."),
    N_("Not a valid time."),
    N_("Not a valid mapping type."),
    N_("Not a valid email address."),
    N_("Not a valid integer."),
    N_("Not a valid list."),
    N_("Not a valid number."),
    N_("Number too large."),
    N_("Not a valid string."),
    N_("Not a valid utf-8 string."),
    N_("Not a valid URL."),
    N_("Not a valid UUID."),
    N_("Special numeric values (nan or infinity) are not permitted."),
    # said by the body guard (server/middleware.py) before the app sees the request
    N_("Content-Length is not a number."),
    N_("Only gzip request bodies are accepted (Content-Encoding: gzip)."),
    N_("The body is not valid gzip."),
    N_("The body inflates past the limit of %(limit)s bytes."),
    N_("The gzip body is truncated."),
]
# Their sentences with a value inside, as templates: the value is found in the English and put in the Indonesian.
THIRD_PARTY_TEMPLATES = [
    N_("Must be one of: %(choices)s."),
    N_("Shorter than minimum length %(min)s."),
    N_("Longer than maximum length %(max)s."),
    N_("Length must be between %(min)s and %(max)s."),
    N_("Length must be %(equal)s."),
    N_("Must be greater than or equal to %(min)s and less than or equal to %(max)s."),
    N_("Must be greater than or equal to %(min)s."),
    N_("Must be less than or equal to %(max)s."),
    N_("Must be greater than %(min)s."),
    N_("Must be less than %(max)s."),
    N_("\"%(input)s\" cannot be formatted as a date."),
    N_("\"%(input)s\" cannot be formatted as a datetime."),
]
# Sentences of the pure engines (sync/, forms/), which may not import the server: they write English, and
# these entries (with forms/messages.py, forms/' own list) let an answer carry them in Indonesian. A changed
# sentence there is simply shown in English until its entry here follows (tests/test_i18n.py checks every
# entry still occurs in those sources, and that every sentence of forms/ has one).
ENGINE_MESSAGES = [
    N_("the event is not valid"),
    N_("an event must be a JSON object"),
    N_("must be an object"),
    N_("must be an HLC string: 13 digits, '-', 4 digits"),
    N_("only a server-made event (origin server) erases"),
    N_("an erasure writes nothing"),
    N_("the event's HLC is not above every stamp its base names; re-stamp it with a newer clock"),
    N_("field names must be strings"),
    N_("field names cannot start with '$'"),
    N_("field names cannot contain '.' or NUL"),
    N_("is a group; answer its fields by their own names"),
    N_("a required question was not answered"),
    N_("the answer does not meet the form's constraint"),
    N_("NIK must be exactly 16 digits"),
    N_("NIK digits 13-16: serial number cannot be 0000"),
    N_("No. KK must be exactly 16 digits"),
    N_("No. KK digits 13-16: serial number cannot be 0000"),
    N_("village code must look like 32.04.05.2001 (province.regency.kecamatan.village)"),
    N_("area code must look like 32, 32.04, 32.04.05 or 32.04.05.2001"),
    N_("must be a number above 0"),
    N_("must be true or false"),
    N_("is too large to store"),
    N_("must be a finite number that can be stored"),
    N_("must be a date YYYY-MM-DD"),
    N_("must be an ISO-8601 date and time, like 2025-01-31T09:30:00+07:00"),
    N_("must be a finite number"),
    N_("cannot be negative"),
    N_("must be a whole number"),
    N_("must be a number"),
    N_("must be a choice name"),
    N_("null"),
    N_("a boolean"),
    N_("a number"),
    N_("a string"),
    N_("a list"),
    N_("an object"),
    # a household edit's writes (forms/household.py)
    N_("unknown household field"),
    N_("is set by the household register import only; propose a correction (usulan) instead"),
    N_("must be a list of choice names, as a visit stores it"),
    N_("must be a number from 001 to 999, three digits"),
    # form definitions (forms/definition.py)
    N_('must be an object of texts by language, like {"id": "...", "en": "..."}'),
    N_("not a language code (like 'id' or 'en')"),
    N_("must be a string"),
    N_("must be 1-64 letters, digits, '.', '_' or '-'"),
    N_("must be a language code like 'id'"),
    N_("must be an object mapping a list name to its choices"),
    N_("must be a non-empty list of choices"),
    N_("must be an object with a name and a label"),
    N_("choice names cannot contain spaces"),
    N_("extra choice properties must be strings, numbers or booleans"),
    N_("must be a list of fields"),
    N_("must contain at least one field"),
    N_("a label is required for this type of field"),
    N_("only a group or a repeat has fields"),
    N_("the household roster cannot be inside another repeat"),
    N_("member fields can only be saved from the roster's own rows, not a nested repeat"),
    N_("a new version needs a version different from the previous one"),
    # a Collect submission's XML (forms/xform.py) and a form's files (forms/fieldtypes.py, forms/attachments.py)
    N_("The submission XML declares a DTD or entities, which are refused."),
    N_("An answer does not fit its question."),
    N_("The submission has no meta/instanceID."),
    N_("The submission's instanceID is not a usable id."),
    N_("must be like uuid:0b8f5c2e-…"),
    N_("A roster row has no id."),
    N_("a geopoint is 'latitude longitude [altitude [accuracy]]'"),
    N_("must be a file name without surrounding spaces"),
    N_("is empty"),
    N_("has no choices"),
    N_("a choice or lookup file is .csv, .xml or .geojson"),
]
ENGINE_TEMPLATES = [
    N_("event is about %(household)s, not %(record)s"),
    N_("event %(event)s was received before with other content"),
    N_("event %(event)s was received with other content"),
    N_("event %(event)s was received with village %(village)s"),
    N_("%(stamp)s is not older than the event's HLC %(hlc)s"),
    N_("a %(type)s takes no answer"),
    N_("a repeat must be a list of rows, not %(kind)s"),
    N_("a repeat row must be an object, not %(kind)s"),
    N_("the same _id as row %(row)s"),
    N_("not a field of form %(form)s version %(version)s"),
    N_("belongs in the rows of repeat %(repeat)s"),
    N_("is not a field of repeat %(repeat)s; answer it at the top level"),
    N_("the form's %(rule)s could not be evaluated: %(problem)s"),
    N_("%(value)s is not a choice of list %(list)s"),
    N_("%(value)s is not offered here: the form's choice filter leaves it out"),
    N_("the answer does not meet the form's constraint: %(message)s"),
    N_("answers must be an object, not %(kind)s"),
    N_("answers are nested more than %(limit)s levels deep; the form does not nest that far"),
    N_("%(what)s: province code %(code)s is not between %(low)s and %(high)s"),
    N_("%(what)s: regency code cannot be 00"),
    N_("%(what)s: kecamatan code cannot be 00"),
    N_("NIK digits 9-10: birth month %(month)s is not 01-12"),
    N_("NIK digits 7-8: birth day %(day)s is not 01-31 (men) or 41-71 (women)"),
    N_("NIK digits 7-10: day %(day)s does not exist in month %(month)s"),
    N_("must be %(what)s (a JSON string), not %(kind)s"),
    N_("is longer than %(limit)s characters"),
    N_("must be a whole number, not %(kind)s"),
    N_("must be a number, not %(kind)s"),
    N_("must be a list of choice names, not %(kind)s"),
    N_("must be an object {lat, lon, accuracy_m?, altitude_m?}, not %(kind)s"),
    N_("must be between %(low)s and %(high)s"),
    N_("a calculated value must be a string, number or boolean, not %(kind)s"),
    N_("%(value)s is not a choice of this field"),
    N_("must be from %(low)s to %(high)s"),
    N_("must be one of: %(choices)s"),
    N_("list name %(problem)s"),
    N_("duplicate choice name %(name)s (first at %(path)s)"),
    N_("%(name)s is reserved for the row id of a repeat"),
    N_("a %(kind)s needs its fields"),
    N_("groups and repeats are nested more than %(limit)s deep"),
    N_("unknown choice list %(list)s"),
    N_("only select_one and select_multiple have a %(key)s"),
    N_("a %(kind)s field needs a calculation"),
    N_("a %(kind)s has no value, so no default"),
    N_("cannot parse expression: %(problem)s"),
    N_("refers to ${%(name)s}, which is not a field of this form"),
    N_("refers to ${%(name)s}, which is a group and has no value"),
    N_("'%(name)s' is not a column of choice list %(list)s"),
    N_("'%(name)s' is not a field reference; write ${%(name)s}"),
    N_("a repeat can only save to %(roster)s, the household roster"),
    N_("%(roster)s is the household roster; only a repeat saves to it"),
    N_("%(first)s already saves to %(namespace)s field %(target)s"),
    N_("a new version must keep form_id %(form)s"),
    N_("The submission XML is larger than %(limit)s bytes."),
    N_("The submission is not well-formed XML: %(problem)s"),
    N_("The submission has more than %(limit)s elements."),
    N_("The submission nests deeper than %(limit)s levels."),
    N_("must be the attachment's file name (a string), not %(kind)s"),
    N_("a file name is at most %(limit)s bytes"),
    N_("is %(size)s bytes; a form file is at most %(limit)s"),
    N_("has no column %(missing)s (it has: %(columns)s)"),
    N_("is not UTF-8 text (byte %(byte)s)"),
    N_("is not a CSV file: %(problem)s"),
    N_("is not a CSV file (row %(row)s): %(problem)s"),
    N_("has more than %(limit)s rows"),
    N_("has more than %(limit)s items"),
    N_("has more than %(limit)s features"),
    N_("is not XML: %(problem)s"),
    N_("is not JSON: %(problem)s (line %(line)s)"),
    N_("feature %(index)s is not a GeoJSON Feature with a geometry"),
]
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]")


@cache
def _template_patterns(language: str) -> list[tuple[re.Pattern[str], str]]:
    """Every catalogued message with placeholders as a pattern over its English, the most specific first."""
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    templates: set[str] = set()
    for path in sorted(folder.glob("*.po")) if folder.is_dir() else []:
        with path.open("rb") as handle:
            templates.update(m.id for m in read_po(handle) if isinstance(m.id, str) and _PLACEHOLDER.search(m.id))
    patterns = []
    for template in templates:
        pieces = _PLACEHOLDER.split(template)
        regex, named = "", set()
        for index, piece in enumerate(pieces):
            if index % 2 == 0:
                regex += re.escape(piece)
            else:  # a value said twice is the same value both times
                regex += f"(?P={piece})" if piece in named else f"(?P<{piece}>.+?)"
                named.add(piece)
        literal = sum(len(piece) for piece in pieces[::2])
        patterns.append((literal, re.compile(f"^{regex}$", re.DOTALL), template))
    patterns.sort(key=lambda entry: (-entry[0], entry[2]))
    return [(pattern, template) for _literal, pattern, template in patterns]


def translate_known(text: Any) -> str:
    """``text`` in the current language when the catalogue knows it (whole, or as a template); else as it is.

    For sentences made elsewhere (a library, a stored message) that reach an answer already formatted.
    """
    return _known_in(str(text), current_language())  # a lazy message becomes its words now


def _known_in(text: str, language: str) -> str:
    if language == SOURCE_LANGUAGE or not text:
        return text
    translations = catalogue(language)
    said = translations.gettext(text)
    if said != text:
        return said
    for pattern, template in _template_patterns(language):
        found = pattern.match(text)
        if found:
            # a value may itself be a catalogued word ("a string"); a %r value was found quoted already
            values = {name: translations.gettext(value) for name, value in found.groupdict().items()}
            return _PLACEHOLDER.sub(lambda m: f"%({m.group(1)})s", translations.gettext(template)) % values
    return text


def translate_errors(errors: Mapping[str, Any] | None) -> dict[str, Any]:
    """An answer's ``errors`` (path → messages) with every message through translate_known."""
    return {path: [translate_known(m) if isinstance(m, str) else m for m in messages]
            if isinstance(messages, list) else messages for path, messages in (errors or {}).items()}


def translate_flags(flags: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Review flags as stored (English, the form's own texts beside) in the language of this answer.

    A failed constraint's message is the form's own ``constraint_message`` in the asked language when the
    form has it; else it stays in the form's default language, as stored.
    """
    if not flags:
        return flags
    language = current_language()
    shown = []
    for flag in flags:
        message = flag.get("message")
        own = flag.get("constraint_message")
        if isinstance(own, Mapping) and isinstance(own.get(language), str):
            message = gettext("the answer does not meet the form's constraint: %(message)s", message=own[language])
        elif isinstance(message, str):
            # the language found once for all these flags, not again for each message
            message = _known_in(message, language)
        shown.append({**flag, "message": message})
    return shown


class FlagsField(fields.List):
    """A list of review flags in a response schema, said in the answer's language (translate_flags)."""

    def __init__(self, **kwargs: Any):
        super().__init__(fields.Dict(), **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return super()._serialize(translate_flags(value) if isinstance(value, list) else value, attr, obj, **kwargs)


class _CatalogueDomain(Domain):
    """Flask-Babel's domain reading kunjung's in-memory catalogue, so Jinja's ``_()`` and ours agree."""

    def get_translations(self) -> NullTranslations:
        return catalogue(current_language())


class _Babel(Babel):
    @property
    def domain_instance(self) -> Domain:  # type: ignore[override]
        return _DOMAIN


_DOMAIN = _CatalogueDomain()


def install_i18n(app: Flask) -> None:
    """Flask-Babel on the app: Jinja's ``_``/``gettext`` and ``flask_babel.get_locale()`` follow kunjung's choice."""
    _Babel(app, locale_selector=current_language, default_locale=API_DEFAULT)


def languages_with_catalogue() -> Iterable[str]:
    return [language for language in LANGUAGES if language != SOURCE_LANGUAGE]
