"""Strict JSON reading for request bodies (UTF-8 only, no NaN/Infinity, bounded nesting) and fast JSON writing."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

from .i18n import N_, gettext

MAX_DEPTH = 64

# Python's decoder says what is wrong in English; the client reads it in its own language, so
# each of the decoder's messages (by its opening words, the same in the C and Python scanners)
# becomes a phrase of the catalogue.
_DECODER_PROBLEMS = (
    ("Expecting value", N_("a value is missing")),
    ("Expecting ',' delimiter", N_("a comma is missing")),
    ("Expecting ':' delimiter", N_("a colon is missing")),
    ("Expecting property name", N_("a name in double quotes is expected")),
    ("Unterminated string", N_("a string is not closed")),
    ("Invalid control character", N_("a string holds a control character")),
    ("Invalid \\", N_("a string holds an invalid escape")),
    ("Extra data", N_("more follows the end of the JSON value")),
    ("Unexpected UTF-8 BOM", N_("the body starts with a byte order mark")),
)


class BadJSON(ValueError):
    """The body is not JSON kunjung accepts; the message says why, for the client."""


def _refuse_constant(name: str) -> Any:
    raise BadJSON(gettext("%(name)s is not a JSON number", name=name))


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadJSON(gettext("the number %(number)s is too large to hold", number=text[:40]))
    return value


def _depth(value: Any, level: int = 1) -> int:
    """How deep containers nest (a scalar: 0), counted up to MAX_DEPTH + 1; only containers are
    visited, and the recursion stops there, so a hostile document cannot exhaust the stack."""
    if value.__class__ is not dict and value.__class__ is not list:
        return 0
    deepest = level
    for child in value.values() if value.__class__ is dict else value:
        kind = child.__class__
        if kind is dict or kind is list:
            if level > MAX_DEPTH:
                return level + 1
            found = _depth(child, level + 1)
            if found > deepest:
                deepest = found
    return deepest


# orjson reads integers beyond 64 bits as floats, where the stdlib keeps them exact (and the
# per-value checks then refuse them): a body with such a run of 19 digits anywhere is read by the
# stdlib. Found by mapping every digit to "0" and searching for nineteen of them: a tenth of the
# time a regular expression took, which was twice orjson's whole parse.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGITS = b"0" * 19


def _fast_loads(data: bytes | str) -> tuple[bool, Any]:
    """(True, value) when orjson reads the body as the stdlib path below would, else (False, None).

    orjson refuses everything the stdlib path refuses (invalid UTF-8, NaN and Infinity, numbers
    too large for a float, lone surrogates, control characters, and more), and more besides; a
    body it refuses is read again by the stdlib path, whose message the client gets.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _LONG_DIGITS in raw.translate(_DIGITS_AS_ZERO):
        return False, None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, None
    if _depth(value) > MAX_DEPTH:
        raise BadJSON(gettext("the JSON is nested deeper than %(depth)s levels", depth=MAX_DEPTH))
    return True, value


def loads(data: bytes | str) -> Any:
    """Parse a request body, raising :class:`BadJSON` with a reason a client can act on."""
    done, value = _fast_loads(data)
    if done:
        return value
    return _stdlib_loads(data)


def _decoder_problem(message: str) -> str:
    for opening, phrase in _DECODER_PROBLEMS:
        if message.startswith(opening):
            return gettext(phrase)
    return gettext("the JSON cannot be read")


def _stdlib_loads(data: bytes | str) -> Any:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadJSON(gettext("the body is not valid UTF-8 (byte %(byte)s)", byte=exc.start)) from None
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadJSON(gettext("the JSON is nested deeper than %(depth)s levels", depth=MAX_DEPTH)) from None
    except json.JSONDecodeError as exc:
        raise BadJSON(gettext("the body is not valid JSON: %(problem)s at line %(line)s column %(column)s",
                              problem=_decoder_problem(exc.msg), line=exc.lineno, column=exc.colno)) from None
    except BadJSON:
        raise
    except ValueError:
        # Python refuses to turn digit strings past sys.get_int_max_str_digits() into int; the
        # only other ValueErrors here are the two above. 64-bit bounds are judged per value later.
        raise BadJSON(gettext("a number has more than %(digits)s digits",
                              digits=format(sys.get_int_max_str_digits(), ","))) from None
    if _depth(value) > MAX_DEPTH:
        raise BadJSON(gettext("the JSON is nested deeper than %(depth)s levels", depth=MAX_DEPTH))
    # Valid UTF-8 bytes can still spell a lone surrogate as an escape (\ud800), which no
    # store can hold; only look closer when such an escape appears at all.
    if "\\u" in data and re.search(r"\\u[dD][89a-fA-F]", data):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadJSON("the JSON holds a lone surrogate escape (\\ud800-\\udfff), which is not text") from None
    return value


INT64 = 2**63


def _storable(value: Any, max_text: int | None) -> bool:
    """Whether :func:`storage_problems` finds nothing, without naming paths (every pushed event
    is checked, and nearly all are fine; only a refused one is walked again for its messages)."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = item.__class__
        if kind is str:
            if max_text is not None and len(item) > max_text:
                return False
        elif kind is dict:
            for key, child in item.items():
                if key.__class__ is not str or key.startswith("$") or "." in key or "\x00" in key:
                    return False
                if child.__class__ is not str or (max_text is not None and len(child) > max_text):
                    push(child)
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not -INT64 <= item < INT64:
                return False
        elif kind is not float and kind is not bool and item is not None:
            return False  # anything else: the full walk says what
    return True


def storage_problems(value: Any, path: str = "", max_text: int | None = None) -> dict[str, list[str]]:
    """What in a JSON value no store may hold safely: keys that start with ``$`` or hold ``.``
    or NUL (MongoDB reads them as operators or paths), integers beyond 64 bits, and with
    ``max_text`` strings longer than that."""
    if _storable(value, max_text):
        return {}
    problems: dict[str, list[str]] = {}
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if not isinstance(key, str) or key.startswith("$") or "." in key or "\x00" in key:
                    problems.setdefault(where or "_schema", []).append(
                        gettext("key %(key)r may not start with '$' or contain '.' or NUL", key=str(key)[:64]))
                    continue
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
        elif isinstance(item, int) and not isinstance(item, bool) and not -INT64 <= item < INT64:
            problems.setdefault(where, []).append(gettext("integer out of the 64-bit range"))
        elif isinstance(item, str) and max_text is not None and len(item) > max_text:
            problems.setdefault(where, []).append(gettext("text longer than %(limit)s characters",
                                                                  limit=format(max_text, ",")))
        if len(problems) >= 20:
            break
    return problems


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON answers through orjson: a page of a first sync is megabytes of JSON."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return orjson.dumps(obj, default=self.default, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
        except TypeError:  # integers beyond 64 bits, say, in what a test client sends
            return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Any:
        obj = self._prepare_response_obj(args, kwargs)
        body = orjson.dumps(obj, default=self.default, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        return self._app.response_class(body, mimetype=self.mimetype)
