"""Values of the expression language: XPath 1.0 conversions and comparisons, node-sets, the evaluation context."""

# Semantics follow XPath 1.0 as ODK (JavaRosa) applies it: an empty answer is '',
# a comparison with a number converts the other side to a number (NaN when it is
# not one, so `'' >= 15` is false), `div` by zero gives Infinity or NaN. Dates
# compare and subtract as days since 1970-01-01.

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = [
    "COMPARISONS",
    "EPOCH",
    "MAX_DEPTH",
    "Compiled",
    "Context",
    "ExpressionError",
    "NodeSet",
    "arithmetic",
    "compare",
    "date_number",
    "days",
    "from_answer",
    "is_date",
    "is_row",
    "item_string",
    "parse_date_text",
    "to_number",
    "to_string",
    "truthy",
]

# The compiler and the type checker recurse over the tree; bounding its depth keeps
# them far from Python's recursion limit whatever an admin writes.
MAX_DEPTH = 200

_XPATH_NUMBER = re.compile(r"[ \t\r\n]*-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[ \t\r\n]*")
EPOCH = dt.date(1970, 1, 1)


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; `position` is a 0-based offset when known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} (at position {position})")
        self.message = message
        self.position = position


class NodeSet:
    """Several values: the rows of a repeat, or one field of a repeat across its rows."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = tuple(items)

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeSet) and self.items == other.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return f"NodeSet({list(self.items)!r})"


# ---------------------------------------------------------------------------
# Conversions (XPath 1.0 string(), number(), boolean())


def is_row(value: Any) -> bool:
    return isinstance(value, Mapping)


def item_string(item: Any) -> str:
    # A repeat row is an element with children; its own text is empty.
    return "" if is_row(item) else to_string(item)


def _format_number(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == int(x) and abs(x) < 1e16:
        return str(int(x))
    text = repr(x)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text


def to_string(value: Any) -> str:
    """XPath string(): how a value reads as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _format_number(float(value))
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, NodeSet):
        return item_string(value.items[0]) if value.items else ""
    if value is None:
        return ""
    return str(value)


def days(value: dt.date | dt.datetime) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp() / 86400.0
    return float((value - EPOCH).days)


def parse_date_text(text: str) -> dt.date | dt.datetime | None:
    text = text.strip()
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return None
    if len(text) > 10 and text[10] in "Tt ":
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


def to_number(value: Any) -> float:
    """XPath number(): NaN when the value is not a number; dates become days since 1970-01-01."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        if _XPATH_NUMBER.fullmatch(value):
            return float(value)
        return math.nan
    if isinstance(value, dt.date):
        return days(value)
    if isinstance(value, NodeSet):
        return to_number(item_string(value.items[0])) if value.items else math.nan
    return math.nan


def truthy(value: Any) -> bool:
    """XPath boolean()."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    if isinstance(value, NodeSet):
        return bool(value.items)
    return value is not None


def is_date(value: Any) -> bool:
    return isinstance(value, dt.date)


def date_number(value: Any) -> float:
    """Days since the epoch, also for ISO date text, so `${dob} < '2000-01-01'` compares dates."""
    if isinstance(value, str):
        parsed = parse_date_text(value)
        if parsed is not None:
            return days(parsed)
    return to_number(value)


def from_answer(value: Any) -> Any:
    """Turns a stored answer into an expression value, as ODK reads its instance."""
    kind = value.__class__
    if kind is str or kind is float or kind is bool:
        # The usual answers first; to_number() would return a float unchanged.
        return value
    if value is None:
        return ""
    if kind is int:
        return to_number(value)
    if kind is list and value and value[0].__class__ is str:
        # A select_multiple answer, by far the usual list (a repeat's rows are objects).
        return " ".join(to_string(item) for item in value)
    if isinstance(value, str | bool | dt.date | NodeSet):
        return value
    if isinstance(value, int | float):
        return to_number(value)
    if isinstance(value, list | tuple):
        if value and all(is_row(item) for item in value):
            return NodeSet(value)
        # A select_multiple answer: ODK's value is the space-separated choice names.
        return " ".join(to_string(item) for item in value)
    if isinstance(value, Mapping):
        if "lat" in value and "lon" in value:
            # ODK's geopoint text: latitude, longitude, altitude, accuracy.
            parts = [value.get("lat"), value.get("lon"), value.get("altitude_m", 0), value.get("accuracy_m", 0)]
            return " ".join(to_string(from_answer(p)) for p in parts)
        return ""
    return to_string(value)


# ---------------------------------------------------------------------------
# Evaluation context


class Context:
    """What an expression can see: answers by field name, `.`, the repeat rows in scope, and the clock.

    `rows` lists the repeat rows the expression sits in, outermost first, as
    `(repeat_name, row)`; `repeat_of` maps each field (and each nested repeat) to
    the repeat it belongs to, so that a sibling in the same row resolves to that
    row's value and a repeat field seen from outside resolves to all its rows.
    """

    __slots__ = ("choice", "current", "lookup", "now", "repeat_of", "rows", "today", "values")

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        current: Any = None,
        rows: Sequence[tuple[str, Mapping[str, Any]]] = (),
        repeat_of: Mapping[str, str | None] | None = None,
        choice: Mapping[str, Any] | None = None,
        today: dt.date | None = None,
        now: dt.datetime | None = None,
        lookup: Callable[[str, str, str, str], str] | None = None,
    ) -> None:
        self.values: Mapping[str, Any] = values if values is not None else {}
        #: pulldata(source, column, key column, key): the value from the form's attached `<source>.csv`
        self.lookup = lookup
        self.current = current
        self.rows = tuple(rows)
        self.repeat_of: Mapping[str, str | None] = repeat_of if repeat_of is not None else {}
        self.choice = choice
        self.today = today
        self.now = now

    def replace(self, **changes: Any) -> Context:
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        values = fields.pop("values")
        return Context(values, **fields)

    def with_row(self, repeat: str, row: Mapping[str, Any]) -> Context:
        return self.replace(rows=(*self.rows, (repeat, row)))

    def resolve(self, name: str) -> Any:
        """The value of `${name}` here."""
        owner = self.repeat_of.get(name)
        for repeat, row in reversed(self.rows):
            if owner == repeat or (owner is None and name in row):
                return from_answer(row.get(name))
        if owner is not None:
            return NodeSet([from_answer(row.get(name)) for row in self._rows_of(owner)])
        return from_answer(self.values.get(name))

    def _rows_of(self, repeat: str, _depth: int = 0) -> list[Mapping[str, Any]]:
        outer = self.repeat_of.get(repeat)
        if outer is None or _depth > MAX_DEPTH:
            containers: list[Mapping[str, Any]] = [self.values]
        else:
            in_scope = [row for name, row in self.rows if name == outer]
            containers = in_scope[-1:] if in_scope else self._rows_of(outer, _depth + 1)
        rows: list[Mapping[str, Any]] = []
        for container in containers:
            value = container.get(repeat)
            if isinstance(value, list | tuple):
                rows.extend(row for row in value if is_row(row))
        return rows

    def current_value(self) -> Any:
        return from_answer(self.current)

    def today_date(self) -> dt.date:
        return self.today if self.today is not None else dt.date.today()

    def now_datetime(self) -> dt.datetime:
        if self.now is not None:
            return self.now
        return dt.datetime.now().astimezone()


#: An expression compiled for one context at a time: what Expression.evaluate runs.
Compiled = Callable[[Context], Any]


# ---------------------------------------------------------------------------
# Comparison and arithmetic

COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">="})


def _compare_scalars(op: str, a: Any, b: Any) -> bool:
    if op in ("=", "!="):
        if isinstance(a, bool) or isinstance(b, bool):
            equal = truthy(a) == truthy(b)
        elif is_date(a) or is_date(b):
            equal = date_number(a) == date_number(b)
        elif isinstance(a, int | float) or isinstance(b, int | float):
            equal = to_number(a) == to_number(b)
        else:
            equal = to_string(a) == to_string(b)
        return equal if op == "=" else not equal
    if is_date(a) or is_date(b):
        x, y = date_number(a), date_number(b)
    else:
        x, y = to_number(a), to_number(b)
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    if op == ">":
        return x > y
    return x >= y


def compare(op: str, a: Any, b: Any) -> bool:
    """An XPath comparison (`=`, `<`, ...) of two values, node-sets compared node by node."""
    if isinstance(a, NodeSet) or isinstance(b, NodeSet):
        # XPath compares a node-set with a boolean as a whole, otherwise node by node.
        if isinstance(a, bool) or isinstance(b, bool):
            return _compare_scalars(op, truthy(a), truthy(b))
        left = [item_string(i) for i in a.items] if isinstance(a, NodeSet) else [a]
        right = [item_string(i) for i in b.items] if isinstance(b, NodeSet) else [b]
        return any(_compare_scalars(op, x, y) for x in left for y in right)
    return _compare_scalars(op, a, b)


def arithmetic(op: str, x: float, y: float) -> float:
    """XPath `+ - * div mod` on numbers."""
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "div":
        if y == 0:
            if x == 0 or math.isnan(x):
                return math.nan
            return math.copysign(math.inf, x) * math.copysign(1.0, y)
        return x / y
    # mod: XPath takes the sign of the dividend, like C's fmod.
    if y == 0 or math.isnan(x) or math.isnan(y) or math.isinf(x):
        return math.nan
    return math.fmod(x, y)

