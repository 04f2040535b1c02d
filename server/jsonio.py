"""Strict JSON reading for request bodies: UTF-8 only, no NaN/Infinity, bounded nesting."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class BadJSON(ValueError):
    """The body is not JSON kunjung accepts; the message says why, for the client."""


def _refuse_constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    # Iterative so that a hostile document cannot exhaust the Python stack here.
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def loads(data: bytes | str) -> Any:
    """Parse a request body, raising :class:`BadJSON` with a reason a client can act on."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadJSON(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadJSON(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BadJSON(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if _depth(value) > MAX_DEPTH:
        raise BadJSON(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    return value


def canonical(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces), for hashes and duplicate checks."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
