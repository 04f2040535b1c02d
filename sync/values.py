"""Field values: which Python values are JSON values, and when two of them are JSON-equal."""

from __future__ import annotations

import json
import math
from collections.abc import Hashable
from fractions import Fraction
from typing import Any

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
