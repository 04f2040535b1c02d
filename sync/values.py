"""Field values: which Python values are JSON values, and when two of them are JSON-equal."""

from __future__ import annotations

import json
import math
from collections.abc import Hashable
from fractions import Fraction
from typing import Any

import orjson

MAX_DEPTH = 32

JsonValue = Any


def check_json_value(value: object, where: str = "value", depth: int = 0) -> None:
    """ValueError unless ``value`` is JSON: null, bool, finite number, string, list, str-keyed dict.

    Strings must be encodable as UTF-8 (no lone surrogates) because every store and
    every device must be able to hold them; nesting is bounded to keep folding cheap.
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    kind = value.__class__
    # The common answers first: ASCII text cannot hold a lone surrogate (isascii is a flag test).
    if kind is str and value.isascii():
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a JSON number")
        return
    if isinstance(value, str):
        _check_text(value, where)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_json_value(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: object key {key!r} is not a string")
            _check_text(key, where)
            check_json_value(item, f"{where}.{key}", depth + 1)
        return
    raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: string is not valid Unicode (lone surrogate)") from None


def json_key(value: JsonValue) -> Hashable:
    """A hashable key equal for JSON-equal values.

    Numbers compare by mathematical value (1 == 1.0) but never equal booleans, and
    objects ignore key order: this is what "JSON-equal values don't conflict" means.
    """
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", Fraction(value))
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(json_key(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((key, json_key(item)) for key, item in value.items()))
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def same_json(left: JsonValue, right: JsonValue) -> bool:
    """Whether two JSON values are JSON-equal."""
    return json_key(left) == json_key(right)


def canonical_json(value: JsonValue) -> str:
    """Compact JSON text with sorted keys: equal texts for equal documents."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# Where orjson's JSON differs from canonical_json's: floats below 1e-4 in magnitude, which
# Python's repr writes as 1e-05 and orjson as 0.00001 or 1e-5, and NaN or infinity, which orjson
# writes as null where canonical_json refuses them. Text, keys, key order (code points), integers
# and every other float are spelt alike (tests/test_jsonio.py compares them). Bytes holding any of
# those spellings anywhere, in a string too, are encoded again by the stdlib: that costs only time.
_NUMBER_BYTES = frozenset(b"0123456789.-")
_BEFORE_VALUE = frozenset(b":,[")


def _may_differ(text: bytes) -> bool:
    # Plain substring searches: a regular expression over every body was slower than the stdlib.
    if b"null" in text or b"0.0000" in text:
        return True
    at = text.find(b"e-")
    while at != -1:
        # An exponent ends a number, which orjson's compact JSON starts right after ":", "," or "[";
        # an "e-" inside an id ("…427e-9fe4…") has a letter or a quote before its digits.
        start = at - 1
        while start >= 0 and text[start] in _NUMBER_BYTES:
            start -= 1
        if start < at - 1 and (start < 0 or text[start] in _BEFORE_VALUE):
            return True
        at = text.find(b"e-", at + 2)
    return False


def canonical_bytes(value: Any) -> bytes:
    """:func:`canonical_json` of ``value`` as UTF-8, the very same bytes, made by orjson when
    that gives them (five times faster; every pushed event is hashed this way)."""
    try:
        fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        fast = None  # integers beyond 64 bits, say: the stdlib says what is wrong, or spells them
    if fast is not None and not _may_differ(fast):
        return fast
    return canonical_json(value).encode("utf-8")
