"""The function registry of the expression language: each function's arity, parameter and result types, code."""

# regex() goes through google-re2, whose automata match in linear time, so a
# catastrophic pattern such as `(a+)+$` cannot hang a sync request.

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import re2

from forms.expressions.types import ANY, BOOLEAN, DATE, DATETIME, NUMBER, STRING
from forms.expressions.values import (
    EPOCH,
    Context,
    ExpressionError,
    NodeSet,
    days,
    item_string,
    parse_date_text,
    to_number,
    to_string,
    truthy,
)
from forms.identifiers import check_kk, check_nik

__all__ = ["FUNCTIONS", "FUNCTION_NAMES", "Function", "compile_regex", "selected_names"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Function:
    """A function: its arity, the kinds of its parameters (types.WANTS keys; the last repeats) and its result.

    `returns` is a static type, or "first" (the type of the first argument) or "branches"
    (the common type of the branches). A `lazy` function decides which arguments to
    evaluate, so it has no `impl`: the compiler builds it (nodes.py).
    """

    min_args: int
    max_args: int | None
    impl: Callable[[Context, list[Any]], Any] | None
    params: tuple[str, ...] = ("any",)
    returns: str = ANY
    lazy: bool = False


def _items(value: Any) -> list[Any]:
    if isinstance(value, NodeSet):
        return [item_string(item) for item in value.items]
    return [value]


def selected_names(value: Any) -> list[str]:
    return to_string(value).split()

def _fn_count(ctx: Context, args: list[Any]) -> float:
    value = args[0]
    if isinstance(value, NodeSet):
        return float(len(value))
    if value == "":
        return 0.0
    raise ExpressionError("count() needs a repeat or a field inside a repeat")


def _fn_sum(ctx: Context, args: list[Any]) -> float:
    total = 0.0
    for item in _items(args[0]):
        if item == "":
            continue
        total += to_number(item)
    return total


def _extreme(pick: Callable[[list[float]], float]) -> Callable[[Context, list[Any]], float]:
    def impl(ctx: Context, args: list[Any]) -> float:
        numbers = [to_number(item) for arg in args for item in _items(arg) if item != ""]
        if not numbers or any(math.isnan(n) for n in numbers):
            return math.nan
        return pick(numbers)

    return impl


def _fn_string_length(ctx: Context, args: list[Any]) -> float:
    value = args[0] if args else ctx.current_value()
    return float(len(to_string(value)))


def _fn_concat(ctx: Context, args: list[Any]) -> str:
    return "".join(to_string(item) for arg in args for item in _items(arg))


def _fn_join(ctx: Context, args: list[Any]) -> str:
    return to_string(args[0]).join(to_string(item) for arg in args[1:] for item in _items(arg))


def _fn_substr(ctx: Context, args: list[Any]) -> str:
    # ODK's substr(): 0-based start, optional exclusive end.
    text = to_string(args[0])
    start = to_number(args[1])
    end = to_number(args[2]) if len(args) > 2 else float(len(text))
    if math.isnan(start) or math.isnan(end):
        return ""
    lo = max(0, min(len(text), int(max(start, -1e9))))
    hi = max(0, min(len(text), int(min(end, 1e9))))
    return text[lo:hi]


def _fn_substring(ctx: Context, args: list[Any]) -> str:
    # XPath substring(): 1-based positions, rounded, optional length.
    text = to_string(args[0])
    start = _xpath_round(to_number(args[1]))
    stop = start + _xpath_round(to_number(args[2])) if len(args) > 2 else math.inf
    return "".join(ch for index, ch in enumerate(text, 1) if start <= index < stop)


def _xpath_round(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return x
    return float(math.floor(x + 0.5))


def _fn_round(ctx: Context, args: list[Any]) -> float:
    x = to_number(args[0])
    if len(args) == 1 or math.isnan(x) or math.isinf(x):
        return _xpath_round(x)
    digits = to_number(args[1])
    if math.isnan(digits) or math.isinf(digits):
        return math.nan
    # ODK rounds half away from zero to the given number of places.
    places = max(-300, min(300, int(digits)))
    try:
        return float(Decimal(repr(x)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
    except InvalidOperation:
        return x


def _fn_int(ctx: Context, args: list[Any]) -> float:
    x = to_number(args[0])
    return x if math.isnan(x) or math.isinf(x) else float(math.trunc(x))


def _math(fn: Callable[..., float]) -> Callable[[Context, list[Any]], float]:
    def impl(ctx: Context, args: list[Any]) -> float:
        numbers = [to_number(arg) for arg in args]
        try:
            return float(fn(*numbers))
        except OverflowError:
            return math.inf
        except (ValueError, ZeroDivisionError):
            return math.nan

    return impl


def _floor(x: float) -> float:
    return x if math.isnan(x) or math.isinf(x) else float(math.floor(x))


def _ceiling(x: float) -> float:
    return x if math.isnan(x) or math.isinf(x) else float(math.ceil(x))


def _to_date(value: Any, function: str) -> dt.date | dt.datetime | str:
    """A date or datetime from a value, or '' for an empty one."""
    if isinstance(value, NodeSet):
        value = value.items[0] if value.items else ""
    if isinstance(value, dt.date):
        return value
    if isinstance(value, bool):
        raise ExpressionError(f"{function}(): cannot make a date from a boolean")
    if isinstance(value, int | float):
        if math.isnan(value):
            return ""
        if math.isinf(value) or abs(value) > 2_900_000:
            raise ExpressionError(f"{function}(): {to_string(value)} days is out of range")
        return EPOCH + dt.timedelta(days=math.floor(value))
    text = to_string(value).strip()
    if text == "":
        return ""
    parsed = parse_date_text(text)
    if parsed is None:
        raise ExpressionError(f"{function}(): cannot read {text[:40]!r} as a date")
    return parsed


def _fn_date(ctx: Context, args: list[Any]) -> Any:
    value = _to_date(args[0], "date")
    return value.date() if isinstance(value, dt.datetime) else value


def _fn_decimal_date_time(ctx: Context, args: list[Any]) -> float:
    value = _to_date(args[0], "decimal-date-time")
    return math.nan if isinstance(value, str) else days(value)


_FORMAT_CODE = re.compile(r"%(.)", re.DOTALL)


def _fn_format_date(ctx: Context, args: list[Any]) -> str:
    value = _to_date(args[0], "format-date")
    if isinstance(value, str):
        return ""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())

    def code(match: re.Match[str]) -> str:
        c = match.group(1)
        table = {
            "Y": f"{moment.year:04d}",
            "y": f"{moment.year % 100:02d}",
            "m": f"{moment.month:02d}",
            "n": str(moment.month),
            "b": _MONTHS[moment.month - 1],
            "d": f"{moment.day:02d}",
            "e": str(moment.day),
            "a": _WEEKDAYS[moment.weekday()],
            "H": f"{moment.hour:02d}",
            "h": str(moment.hour),
            "M": f"{moment.minute:02d}",
            "S": f"{moment.second:02d}",
            "3": f"{moment.microsecond // 1000:03d}",
            "%": "%",
        }
        return table.get(c, match.group(0))

    return _FORMAT_CODE.sub(code, to_string(args[1]))


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "unsupported pattern"
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ExpressionError(f"regex(): unsupported pattern {pattern[:60]!r}: {detail}") from None


def _fn_regex(ctx: Context, args: list[Any]) -> bool:
    return compile_regex(to_string(args[1])).search(to_string(args[0])) is not None


def _fn_selected_at(ctx: Context, args: list[Any]) -> str:
    names = selected_names(args[0])
    index = to_number(args[1])
    if math.isnan(index) or math.isinf(index) or not 0 <= int(index) < len(names):
        return ""
    return names[int(index)]


def _fn_indexed_repeat(ctx: Context, args: list[Any]) -> Any:
    items = args[0].items if isinstance(args[0], NodeSet) else (args[0],)
    index = to_number(args[2])
    if math.isnan(index) or math.isinf(index) or not 1 <= int(index) <= len(items):
        return ""
    return items[int(index) - 1]


def _fn_normalize_space(ctx: Context, args: list[Any]) -> str:
    value = args[0] if args else ctx.current_value()
    return " ".join(re.split(r"[ \t\r\n]+", to_string(value).strip(" \t\r\n"))) if to_string(value) else ""


def _fn_translate(ctx: Context, args: list[Any]) -> str:
    text, source, target = (to_string(a) for a in args)
    table: dict[str, str | None] = {}
    for index, ch in enumerate(source):
        table.setdefault(ch, target[index] if index < len(target) else None)
    return "".join(ch if ch not in table else (table[ch] or "") for ch in text)


def _two_strings(test: Callable[[str, str], bool]) -> Callable[[Context, list[Any]], bool]:
    return lambda ctx, args: test(to_string(args[0]), to_string(args[1]))


def _fn_now(ctx: Context, args: list[Any]) -> dt.datetime:
    return ctx.now_datetime()


def _fn_today(ctx: Context, args: list[Any]) -> dt.date:
    return ctx.today_date()


def _fn_uuid(ctx: Context, args: list[Any]) -> str:
    return str(uuid.uuid4())



def _fn_pulldata(ctx: Context, args: list[Any]) -> str:
    if ctx.lookup is None:
        # Where the attached file is not at hand, the lookup cannot be made: say so, never guess "".
        raise ExpressionError(f"pulldata() needs the form's attached file {to_string(args[0])}.csv")
    return ctx.lookup(to_string(args[0]), to_string(args[1]), to_string(args[2]), to_string(args[3]))


FUNCTIONS: dict[str, Function] = {
    "if": Function(3, 3, None, ("scalar", "any", "any"), "branches", lazy=True),
    "coalesce": Function(2, None, None, ("scalar",), "branches", lazy=True),
    "once": Function(1, 1, None, ("scalar",), "first", lazy=True),
    "not": Function(1, 1, lambda ctx, a: not truthy(a[0]), ("any",), BOOLEAN),
    "true": Function(0, 0, lambda ctx, a: True, (), BOOLEAN),
    "false": Function(0, 0, lambda ctx, a: False, (), BOOLEAN),
    "boolean": Function(1, 1, lambda ctx, a: truthy(a[0]), ("any",), BOOLEAN),
    "boolean-from-string": Function(1, 1, lambda ctx, a: to_string(a[0]) in ("true", "1"), ("scalar",), BOOLEAN),
    "selected": Function(2, 2, lambda ctx, a: to_string(a[1]) in selected_names(a[0]), ("select", "scalar"), BOOLEAN),
    "count-selected": Function(1, 1, lambda ctx, a: float(len(selected_names(a[0]))), ("select",), NUMBER),
    "selected-at": Function(2, 2, _fn_selected_at, ("select", "number"), STRING),
    "count": Function(1, 1, _fn_count, ("nodeset",), NUMBER),
    "sum": Function(1, 1, _fn_sum, ("numbers",), NUMBER),
    "max": Function(1, None, _extreme(max), ("numbers",), NUMBER),
    "min": Function(1, None, _extreme(min), ("numbers",), NUMBER),
    "indexed-repeat": Function(3, 3, _fn_indexed_repeat, ("nodeset", "nodeset", "number"), ANY),
    "string-length": Function(0, 1, _fn_string_length, ("scalar",), NUMBER),
    "concat": Function(0, None, _fn_concat, ("any",), STRING),
    "join": Function(2, None, _fn_join, ("scalar", "any"), STRING),
    "substr": Function(2, 3, _fn_substr, ("scalar", "number", "number"), STRING),
    "substring": Function(2, 3, _fn_substring, ("scalar", "number", "number"), STRING),
    "contains": Function(2, 2, _two_strings(lambda s, t: t in s), ("scalar", "scalar"), BOOLEAN),
    "starts-with": Function(2, 2, _two_strings(str.startswith), ("scalar", "scalar"), BOOLEAN),
    "ends-with": Function(2, 2, _two_strings(str.endswith), ("scalar", "scalar"), BOOLEAN),
    "normalize-space": Function(0, 1, _fn_normalize_space, ("scalar",), STRING),
    "translate": Function(3, 3, _fn_translate, ("scalar",), STRING),
    "string": Function(1, 1, lambda ctx, a: to_string(a[0]), ("scalar",), STRING),
    "number": Function(1, 1, lambda ctx, a: to_number(a[0]), ("number",), NUMBER),
    "int": Function(1, 1, _fn_int, ("number",), NUMBER),
    "round": Function(1, 2, _fn_round, ("number",), NUMBER),
    "floor": Function(1, 1, _math(_floor), ("number",), NUMBER),
    "ceiling": Function(1, 1, _math(_ceiling), ("number",), NUMBER),
    "abs": Function(1, 1, _math(abs), ("number",), NUMBER),
    "pow": Function(2, 2, _math(math.pow), ("number",), NUMBER),
    "sqrt": Function(1, 1, _math(math.sqrt), ("number",), NUMBER),
    "regex": Function(2, 2, _fn_regex, ("scalar", "scalar"), BOOLEAN),
    "today": Function(0, 0, _fn_today, (), DATE),
    "now": Function(0, 0, _fn_now, (), DATETIME),
    "date": Function(1, 1, _fn_date, ("number",), DATE),
    "decimal-date-time": Function(1, 1, _fn_decimal_date_time, ("number",), NUMBER),
    "format-date": Function(2, 2, _fn_format_date, ("number", "scalar"), STRING),
    "format-date-time": Function(2, 2, _fn_format_date, ("number", "scalar"), STRING),
    "uuid": Function(0, 0, _fn_uuid, (), STRING),
    # pulldata('desa', 'nama', 'kode', ${kode}): the `nama` column of the row of the form's attached
    # desa.csv whose `kode` is ${kode} ("" when none is); the first argument is a quoted name (grammar.py).
    "pulldata": Function(4, 4, _fn_pulldata, ("scalar",), STRING),
    # kunjung extensions, unknown to ODK Collect (forms using them run on kunjung devices):
    # valid-nik(x) is true when x is a well-formed NIK and valid-kk(x) when it is a
    # well-formed No. KK, by the checks in forms/identifiers.py; empty is not valid.
    "valid-nik": Function(1, 1, lambda ctx, a: not check_nik(to_string(a[0])), ("scalar",), BOOLEAN),
    "valid-kk": Function(1, 1, lambda ctx, a: not check_kk(to_string(a[0])), ("scalar",), BOOLEAN),
}

FUNCTION_NAMES = frozenset(FUNCTIONS)
