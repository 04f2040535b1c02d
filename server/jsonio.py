"""Strict JSON reading for request bodies: UTF-8 only, no NaN/Infinity, bounded nesting."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 64


class BadJSON(ValueError):
    """The body is not JSON kunjung accepts; the message says why, for the client."""


def _refuse_constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadJSON(f"the number {text[:40]} is too large to hold")
    return value


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
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadJSON(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BadJSON(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except BadJSON:
        raise
    except ValueError:
        # Python refuses to turn digit strings past sys.get_int_max_str_digits() into int; the
        # only other ValueErrors here are the two above. 64-bit bounds are judged per value later.
        raise BadJSON(f"a number has more than {sys.get_int_max_str_digits():,} digits") from None
    if _depth(value) > MAX_DEPTH:
        raise BadJSON(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    # Valid UTF-8 bytes can still spell a lone surrogate as an escape (\ud800), which no
    # store can hold; only look closer when such an escape appears at all.
    if "\\u" in data and re.search(r"\\u[dD][89a-fA-F]", data):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadJSON("the JSON holds a lone surrogate escape (\\ud800-\\udfff), which is not text") from None
    return value


INT64 = 2**63


def storage_problems(value: Any, path: str = "", max_text: int | None = None) -> dict[str, list[str]]:
    """What in a JSON value no store may hold safely: keys that start with ``$`` or hold ``.``
    or NUL (MongoDB reads them as operators or paths), integers beyond 64 bits, and with
    ``max_text`` strings longer than that."""
    problems: dict[str, list[str]] = {}
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if not isinstance(key, str) or key.startswith("$") or "." in key or "\x00" in key:
                    problems.setdefault(where or "_schema", []).append(
                        f"key {str(key)[:64]!r} may not start with '$' or contain '.' or NUL")
                    continue
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
        elif isinstance(item, int) and not isinstance(item, bool) and not -INT64 <= item < INT64:
            problems.setdefault(where, []).append("integer out of the 64-bit range")
        elif isinstance(item, str) and max_text is not None and len(item) > max_text:
            problems.setdefault(where, []).append(f"text longer than {max_text:,} characters")
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
