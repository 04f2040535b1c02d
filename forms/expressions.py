"""The XLSForm expression language: parsing, static type checks and evaluation of `relevant`, `constraint`, ..."""

# Why lark: it is maintained, it takes the grammar as readable text, and its LALR(1)
# parser runs in linear time without backtracking or recursion, so no expression an
# admin uploads can make parsing slow or deep. The parse builds our own small node
# tree. The sync server evaluates every relevance, constraint and choice filter of
# every pushed visit, so each tree is compiled once into nested Python closures
# (see Node.compile); the nodes' own evaluate() walks the tree and is kept as the
# reference the closures are tested against. Python's eval is never involved.
# regex() goes through google-re2, whose automata match in linear time, so a
# catastrophic pattern such as `(a+)+$` cannot hang a sync request.
#
# Semantics follow XPath 1.0 as ODK (JavaRosa) applies it: an empty answer is '',
# a comparison with a number converts the other side to a number (NaN when it is
# not one, so `'' >= 15` is false), and/or short-circuit, `div` by zero gives
# Infinity or NaN. Dates compare and subtract as days since 1970-01-01.

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import re2
from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from forms.identifiers import check_kk, check_nik

__all__ = [
    "Compiled",
    "Context",
    "Expression",
    "ExpressionError",
    "NodeSet",
    "parse",
    "to_number",
    "to_string",
    "truthy",
]

MAX_LENGTH = 10_000
# The evaluator and the type checker recurse over the tree; bounding its depth keeps
# them far from Python's recursion limit whatever an admin writes.
MAX_DEPTH = 200

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr
        | or_expr "or" and_expr             -> or_op
?and_expr: eq_expr
         | and_expr "and" eq_expr           -> and_op
?eq_expr: rel_expr
        | eq_expr EQ_OP rel_expr            -> compare
?rel_expr: add_expr
         | rel_expr REL_OP add_expr         -> compare
?add_expr: mul_expr
         | add_expr ADD_OP mul_expr         -> arith
?mul_expr: unary
         | mul_expr MUL_OP unary            -> arith
?unary: primary
      | MINUS unary                         -> neg
?primary: NUMBER                            -> number
        | STRING                            -> string
        | REF                               -> ref
        | NAME                              -> name
        | DOT                               -> current
        | NAME "(" ")"                      -> call
        | NAME "(" args ")"                 -> call
        | "(" or_expr ")"
args: or_expr ("," or_expr)*

EQ_OP: "=" | "!="
REL_OP: "<=" | ">=" | "<" | ">"
ADD_OP: "+" | "-"
MINUS: "-"
MUL_OP: "*" | "div" | "mod"
DOT: "."
NUMBER: /[0-9]+(\.[0-9]*)?|\.[0-9]+/
STRING: /'[^']*'|"[^"]*"/
REF: /\$\{[^}]*\}/
NAME: /[A-Za-z_][A-Za-z0-9_\-]*(:[A-Za-z_][A-Za-z0-9_\-]*)?/

%ignore /[ \t\r\n\u00a0]+/
"""

_REF_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_XPATH_NUMBER = re.compile(r"[ \t\r\n]*-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[ \t\r\n]*")
_EPOCH = dt.date(1970, 1, 1)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Static types used by the definition checks. Field types map onto them; "nodeset"
# is a field of a repeat seen from outside its rows, "repeat" the repeat itself.
STRING, NUMBER, BOOLEAN, DATE, DATETIME = "string", "number", "boolean", "date", "datetime"
GEOPOINT, SELECT_MULTIPLE, REPEAT, NODESET, ANY = "geopoint", "select_multiple", "repeat", "nodeset", "any"
_MULTI = frozenset({REPEAT, NODESET})
_NOT_NUMERIC = frozenset({GEOPOINT, SELECT_MULTIPLE, REPEAT, NODESET})


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


def _is_row(value: Any) -> bool:
    return isinstance(value, Mapping)


def _item_string(item: Any) -> str:
    # A repeat row is an element with children; its own text is empty.
    return "" if _is_row(item) else to_string(item)


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
        return _item_string(value.items[0]) if value.items else ""
    if value is None:
        return ""
    return str(value)


def _days(value: dt.date | dt.datetime) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp() / 86400.0
    return float((value - _EPOCH).days)


def _parse_date_text(text: str) -> dt.date | dt.datetime | None:
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
        return _days(value)
    if isinstance(value, NodeSet):
        return to_number(_item_string(value.items[0])) if value.items else math.nan
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


def _is_date(value: Any) -> bool:
    return isinstance(value, dt.date)


def _date_number(value: Any) -> float:
    """Days since the epoch, also for ISO date text, so `${dob} < '2000-01-01'` compares dates."""
    if isinstance(value, str):
        parsed = _parse_date_text(value)
        if parsed is not None:
            return _days(parsed)
    return to_number(value)


def _from_answer(value: Any) -> Any:
    """Turns a stored answer into an expression value, as ODK reads its instance."""
    kind = value.__class__
    if kind is str or kind is float:
        # The usual answers first; to_number() would return a float unchanged.
        return value
    if value is None:
        return ""
    if isinstance(value, str | bool | dt.date | NodeSet):
        return value
    if isinstance(value, int | float):
        return to_number(value)
    if isinstance(value, list | tuple):
        if value and all(_is_row(item) for item in value):
            return NodeSet(value)
        # A select_multiple answer: ODK's value is the space-separated choice names.
        return " ".join(to_string(item) for item in value)
    if isinstance(value, Mapping):
        if "lat" in value and "lon" in value:
            # ODK's geopoint text: latitude, longitude, altitude, accuracy.
            parts = [value.get("lat"), value.get("lon"), value.get("altitude_m", 0), value.get("accuracy_m", 0)]
            return " ".join(to_string(_from_answer(p)) for p in parts)
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

    __slots__ = ("choice", "current", "now", "repeat_of", "rows", "today", "values")

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
    ) -> None:
        self.values: Mapping[str, Any] = values if values is not None else {}
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
                return _from_answer(row.get(name))
        if owner is not None:
            return NodeSet([_from_answer(row.get(name)) for row in self._rows_of(owner)])
        return _from_answer(self.values.get(name))

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
                rows.extend(row for row in value if _is_row(row))
        return rows

    def current_value(self) -> Any:
        return _from_answer(self.current)

    def today_date(self) -> dt.date:
        return self.today if self.today is not None else dt.date.today()

    def now_datetime(self) -> dt.datetime:
        if self.now is not None:
            return self.now
        return dt.datetime.now().astimezone()


#: An expression compiled for one context at a time: what Expression.evaluate runs.
Compiled = Callable[[Context], Any]


# ---------------------------------------------------------------------------
# Nodes


class Node:
    __slots__ = ("depth", "position")

    def __init__(self, position: int, children: Sequence[Node] = ()) -> None:
        self.position = position
        self.depth = 1 + max((child.depth for child in children), default=0)
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression is nested more than {MAX_DEPTH} levels deep", position)

    def children(self) -> Sequence[Node]:
        return ()

    def evaluate(self, ctx: Context) -> Any:  # pragma: no cover - every node overrides it
        raise NotImplementedError

    def compile(self) -> Compiled:  # pragma: no cover - every node overrides it
        """A closure computing what evaluate() does, with the dispatch on node types done once."""
        raise NotImplementedError

    @property
    def always_bool(self) -> bool:
        """Whether the value is always a Python bool, so that truthy() can be skipped."""
        return False

    def infer(self, env: _TypeEnv) -> str:  # pragma: no cover - every node overrides it
        raise NotImplementedError

    def describe(self, kind: str) -> str:
        return f"a {kind}" if kind != ANY else "a value"


class Literal(Node):
    __slots__ = ("value",)

    def __init__(self, position: int, value: str | float) -> None:
        super().__init__(position)
        self.value = value

    def evaluate(self, ctx: Context) -> Any:
        return self.value

    def compile(self) -> Compiled:
        value = self.value
        return lambda ctx: value

    def infer(self, env: _TypeEnv) -> str:
        return STRING if isinstance(self.value, str) else NUMBER


class Ref(Node):
    __slots__ = ("name",)

    def __init__(self, position: int, name: str) -> None:
        super().__init__(position)
        self.name = name

    def evaluate(self, ctx: Context) -> Any:
        return ctx.resolve(self.name)

    def compile(self) -> Compiled:
        name = self.name
        return lambda ctx: ctx.resolve(name)

    def infer(self, env: _TypeEnv) -> str:
        return env.ref_type(self.name)

    def describe(self, kind: str) -> str:
        return f"${{{self.name}}} ({kind})"


class ChoiceName(Node):
    """A bare name: in a choice_filter, a column of the choice being filtered."""

    __slots__ = ("name",)

    def __init__(self, position: int, name: str) -> None:
        super().__init__(position)
        self.name = name

    def evaluate(self, ctx: Context) -> Any:
        if ctx.choice is None:
            raise ExpressionError(f"'{self.name}' is not a field reference; write ${{{self.name}}}", self.position)
        return _from_answer(ctx.choice.get(self.name))

    def compile(self) -> Compiled:
        name, position = self.name, self.position

        def choice_column(ctx: Context) -> Any:
            choice = ctx.choice
            if choice is None:
                raise ExpressionError(f"'{name}' is not a field reference; write ${{{name}}}", position)
            return _from_answer(choice.get(name))

        return choice_column

    def infer(self, env: _TypeEnv) -> str:
        return ANY

    def describe(self, kind: str) -> str:
        return f"choice column '{self.name}'"


class Current(Node):
    __slots__ = ()

    def evaluate(self, ctx: Context) -> Any:
        return ctx.current_value()

    def compile(self) -> Compiled:
        return _compiled_current

    def infer(self, env: _TypeEnv) -> str:
        return env.current

    def describe(self, kind: str) -> str:
        return f"'.' ({kind})"


class Negate(Node):
    __slots__ = ("operand",)

    def __init__(self, position: int, operand: Node) -> None:
        super().__init__(position, (operand,))
        self.operand = operand

    def children(self) -> Sequence[Node]:
        return (self.operand,)

    def evaluate(self, ctx: Context) -> Any:
        return -to_number(self.operand.evaluate(ctx))

    def compile(self) -> Compiled:
        operand = self.operand.compile()
        return lambda ctx: -to_number(operand(ctx))

    def infer(self, env: _TypeEnv) -> str:
        kind = self.operand.infer(env)
        if kind in _NOT_NUMERIC:
            env.error(f"cannot negate {self.operand.describe(kind)}")
        return NUMBER


class Binary(Node):
    __slots__ = ("left", "op", "right")

    def __init__(self, position: int, op: str, left: Node, right: Node) -> None:
        super().__init__(position, (left, right))
        self.op = op
        self.left = left
        self.right = right

    def children(self) -> Sequence[Node]:
        return (self.left, self.right)

    def evaluate(self, ctx: Context) -> Any:
        op = self.op
        if op == "and":
            return truthy(self.left.evaluate(ctx)) and truthy(self.right.evaluate(ctx))
        if op == "or":
            return truthy(self.left.evaluate(ctx)) or truthy(self.right.evaluate(ctx))
        left, right = self.left.evaluate(ctx), self.right.evaluate(ctx)
        if op in _COMPARISONS:
            return _compare(op, left, right)
        return _arithmetic(op, to_number(left), to_number(right))

    @property
    def always_bool(self) -> bool:
        return self.op in _COMPARISONS or self.op in ("and", "or")

    def compile(self) -> Compiled:
        op = self.op
        left, right = self.left.compile(), self.right.compile()
        if op in ("and", "or"):
            return _compile_logic(op, left, right, self.left.always_bool and self.right.always_bool)
        if op in _COMPARISONS:
            return _compile_comparison(op, left, right, self.right)
        return _compile_arithmetic(op, left, right)

    def infer(self, env: _TypeEnv) -> str:
        left, right = self.left.infer(env), self.right.infer(env)
        op = self.op
        if op in ("and", "or"):
            return BOOLEAN
        a, b = self.left.describe(left), self.right.describe(right)
        if op in ("=", "!="):
            for kind, text in ((left, a), (right, b)):
                if kind in _MULTI:
                    env.error(f"cannot compare {text} with '{op}': it has one value per repeat row")
            pair = {left, right}
            for odd, others in _INCOMPARABLE:
                if odd in pair and pair & others:
                    env.error(f"cannot compare {a} with {b}")
            return BOOLEAN
        for kind, text in ((left, a), (right, b)):
            if kind in _NOT_NUMERIC:
                verb = "compare" if op in _COMPARISONS else "do arithmetic on"
                env.error(f"cannot {verb} {text} with '{op}'")
        return BOOLEAN if op in _COMPARISONS else NUMBER


class Call(Node):
    __slots__ = ("args", "function", "name")

    def __init__(self, position: int, name: str, args: Sequence[Node]) -> None:
        super().__init__(position, args)
        self.name = name
        self.args = tuple(args)
        self.function = _FUNCTIONS[name]

    def children(self) -> Sequence[Node]:
        return self.args

    def evaluate(self, ctx: Context) -> Any:
        fn = self.function
        if fn.lazy:
            return fn.impl(ctx, self.args)
        return fn.impl(ctx, [arg.evaluate(ctx) for arg in self.args])

    @property
    def always_bool(self) -> bool:
        # Every function declared to return a boolean returns a Python bool.
        return self.function.returns == BOOLEAN

    def compile(self) -> Compiled:
        fn = self.function
        args = [arg.compile() for arg in self.args]
        if fn.compile is not None:
            special = fn.compile(self.args, args)
            if special is not None:
                return special
        if fn.lazy:  # pragma: no cover - every lazy function has its compile
            raise AssertionError(f"{self.name}() has no compiled form")
        return _compile_call(fn.impl, args)

    def infer(self, env: _TypeEnv) -> str:
        kinds = [arg.infer(env) for arg in self.args]
        fn = self.function
        for index, (arg, kind) in enumerate(zip(self.args, kinds, strict=True)):
            wanted = fn.params[min(index, len(fn.params) - 1)]
            if not _accepts(wanted, kind):
                env.error(f"{self.name}() cannot take {arg.describe(kind)} as argument {index + 1}: {_WANTS[wanted]}")
        if fn.returns == "first":
            kind = kinds[0] if kinds else ANY
            return ANY if kind in _MULTI else kind
        if fn.returns == "branches":
            branches = set(kinds[1:] if self.name == "if" else kinds)
            return branches.pop() if len(branches) == 1 else ANY
        return fn.returns


# ---------------------------------------------------------------------------
# Operators

_COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">="})
# Equality that is always a mistake: a geopoint or a select_multiple is never a number or a date.
_INCOMPARABLE = (
    (GEOPOINT, frozenset({NUMBER, DATE, DATETIME, BOOLEAN})),
    (SELECT_MULTIPLE, frozenset({NUMBER, DATE, DATETIME})),
)


def _compare_scalars(op: str, a: Any, b: Any) -> bool:
    if op in ("=", "!="):
        if isinstance(a, bool) or isinstance(b, bool):
            equal = truthy(a) == truthy(b)
        elif _is_date(a) or _is_date(b):
            equal = _date_number(a) == _date_number(b)
        elif isinstance(a, int | float) or isinstance(b, int | float):
            equal = to_number(a) == to_number(b)
        else:
            equal = to_string(a) == to_string(b)
        return equal if op == "=" else not equal
    if _is_date(a) or _is_date(b):
        x, y = _date_number(a), _date_number(b)
    else:
        x, y = to_number(a), to_number(b)
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    if op == ">":
        return x > y
    return x >= y


def _compare(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, NodeSet) or isinstance(b, NodeSet):
        # XPath compares a node-set with a boolean as a whole, otherwise node by node.
        if isinstance(a, bool) or isinstance(b, bool):
            return _compare_scalars(op, truthy(a), truthy(b))
        left = [_item_string(i) for i in a.items] if isinstance(a, NodeSet) else [a]
        right = [_item_string(i) for i in b.items] if isinstance(b, NodeSet) else [b]
        return any(_compare_scalars(op, x, y) for x in left for y in right)
    return _compare_scalars(op, a, b)


_PYTHON_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PYTHON_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


def _compiled_current(ctx: Context) -> Any:
    return _from_answer(ctx.current)


def _compile_logic(op: str, left: Compiled, right: Compiled, both_bool: bool) -> Compiled:
    if op == "and":
        if both_bool:
            return lambda ctx: left(ctx) and right(ctx)
        return lambda ctx: truthy(left(ctx)) and truthy(right(ctx))
    if both_bool:
        return lambda ctx: left(ctx) or right(ctx)
    return lambda ctx: truthy(left(ctx)) or truthy(right(ctx))


def _compile_comparison(op: str, left: Compiled, right: Compiled, right_node: Node) -> Compiled:
    # Where _compare_scalars would convert nothing (text = text, number with number,
    # date with date), Python's own operator gives the same answer without the checks.
    test = _PYTHON_COMPARISONS[op]
    equality = op in ("=", "!=")
    if isinstance(right_node, Literal):
        literal = right_node.value
        fast: type | None = None
        if isinstance(literal, float):
            fast = float
        elif equality:
            fast = str

        def compare_literal(ctx: Context) -> bool:
            value = left(ctx)
            if value.__class__ is fast:
                return test(value, literal)
            return _compare(op, value, literal)

        return compare_literal

    def compare(ctx: Context) -> bool:
        a = left(ctx)
        b = right(ctx)
        kind = a.__class__
        if kind is b.__class__ and (kind is float or kind is dt.date or (equality and kind is str)):
            return test(a, b)
        return _compare(op, a, b)

    return compare


def _compile_arithmetic(op: str, left: Compiled, right: Compiled) -> Compiled:
    fn = _PYTHON_ARITHMETIC.get(op)

    def arithmetic(ctx: Context) -> float:
        a = left(ctx)
        b = right(ctx)
        if fn is not None:
            return fn(to_number(a), to_number(b))
        return _arithmetic(op, to_number(a), to_number(b))

    return arithmetic


def _arithmetic(op: str, x: float, y: float) -> float:
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


# ---------------------------------------------------------------------------
# Functions


@dataclass(frozen=True)
class _Function:
    min_args: int
    max_args: int | None
    impl: Callable[[Context, Any], Any]
    params: tuple[str, ...] = ("any",)
    returns: str = ANY
    lazy: bool = False
    #: Given the argument nodes and their compiled closures, a closure doing the call, or
    #: None for the general one; required where `lazy`, since impl takes nodes.
    compile: Callable[[Sequence[Node], list[Compiled]], Compiled | None] | None = None


_WANTS = {
    "any": "any value",
    "scalar": "a single value, not a repeat",
    "number": "a number",
    "select": "a select answer or text",
    "nodeset": "a repeat or a field inside one",
    "numbers": "numbers or a field inside a repeat",
}


def _accepts(wanted: str, kind: str) -> bool:
    if kind == ANY or wanted == "any":
        return True
    if wanted == "scalar":
        return kind not in _MULTI
    if wanted == "number":
        return kind not in _NOT_NUMERIC
    if wanted == "select":
        return kind in {STRING, SELECT_MULTIPLE}
    if wanted == "nodeset":
        return kind in _MULTI
    if wanted == "numbers":
        return kind not in {GEOPOINT, SELECT_MULTIPLE, REPEAT}
    return True  # pragma: no cover - every kind is listed above


def _items(value: Any) -> list[Any]:
    if isinstance(value, NodeSet):
        return [_item_string(item) for item in value.items]
    return [value]


def _fn_if(ctx: Context, args: Sequence[Node]) -> Any:
    return args[1].evaluate(ctx) if truthy(args[0].evaluate(ctx)) else args[2].evaluate(ctx)


def _fn_coalesce(ctx: Context, args: Sequence[Node]) -> Any:
    value: Any = ""
    for arg in args:
        value = arg.evaluate(ctx)
        if to_string(value) != "":
            return value
    return value


def _fn_once(ctx: Context, args: Sequence[Node]) -> Any:
    current = ctx.current_value()
    return current if to_string(current) != "" else args[0].evaluate(ctx)


def _compile_if(nodes: Sequence[Node], args: list[Compiled]) -> Compiled:
    condition, yes, no = args
    if nodes[0].always_bool:
        return lambda ctx: yes(ctx) if condition(ctx) else no(ctx)
    return lambda ctx: yes(ctx) if truthy(condition(ctx)) else no(ctx)


def _compile_coalesce(nodes: Sequence[Node], args: list[Compiled]) -> Compiled:
    def coalesce(ctx: Context) -> Any:
        value: Any = ""
        for arg in args:
            value = arg(ctx)
            if to_string(value) != "":
                return value
        return value

    return coalesce


def _compile_once(nodes: Sequence[Node], args: list[Compiled]) -> Compiled:
    (first,) = args

    def once(ctx: Context) -> Any:
        current = ctx.current_value()
        return current if to_string(current) != "" else first(ctx)

    return once


def _compile_not(nodes: Sequence[Node], args: list[Compiled]) -> Compiled:
    (arg,) = args
    if nodes[0].always_bool:
        return lambda ctx: not arg(ctx)
    return lambda ctx: not truthy(arg(ctx))


def _compile_call(impl: Callable[[Context, Any], Any], args: list[Compiled]) -> Compiled:
    if not args:
        return lambda ctx: impl(ctx, [])
    if len(args) == 1:
        (only,) = args
        return lambda ctx: impl(ctx, [only(ctx)])
    if len(args) == 2:
        first, second = args
        return lambda ctx: impl(ctx, [first(ctx), second(ctx)])
    return lambda ctx: impl(ctx, [arg(ctx) for arg in args])


def _selected_names(value: Any) -> list[str]:
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
        return _EPOCH + dt.timedelta(days=math.floor(value))
    text = to_string(value).strip()
    if text == "":
        return ""
    parsed = _parse_date_text(text)
    if parsed is None:
        raise ExpressionError(f"{function}(): cannot read {text[:40]!r} as a date")
    return parsed


def _fn_date(ctx: Context, args: list[Any]) -> Any:
    value = _to_date(args[0], "date")
    return value.date() if isinstance(value, dt.datetime) else value


def _fn_decimal_date_time(ctx: Context, args: list[Any]) -> float:
    value = _to_date(args[0], "decimal-date-time")
    return math.nan if isinstance(value, str) else _days(value)


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
def _compile_regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "unsupported pattern"
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ExpressionError(f"regex(): unsupported pattern {pattern[:60]!r}: {detail}") from None


def _fn_regex(ctx: Context, args: list[Any]) -> bool:
    return _compile_regex(to_string(args[1])).search(to_string(args[0])) is not None


def _compile_regex_call(nodes: Sequence[Node], args: list[Compiled]) -> Compiled | None:
    if not isinstance(nodes[1], Literal):
        return None
    # The parser has already compiled a literal pattern, so this cannot fail.
    pattern = _compile_regex(to_string(nodes[1].value))
    text = args[0]
    return lambda ctx: pattern.search(to_string(text(ctx))) is not None


def _fn_selected_at(ctx: Context, args: list[Any]) -> str:
    names = _selected_names(args[0])
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


_FUNCTIONS: dict[str, _Function] = {
    "if": _Function(3, 3, _fn_if, ("scalar", "any", "any"), "branches", lazy=True, compile=_compile_if),
    "coalesce": _Function(2, None, _fn_coalesce, ("scalar",), "branches", lazy=True, compile=_compile_coalesce),
    "once": _Function(1, 1, _fn_once, ("scalar",), "first", lazy=True, compile=_compile_once),
    "not": _Function(1, 1, lambda ctx, a: not truthy(a[0]), ("any",), BOOLEAN, compile=_compile_not),
    "true": _Function(0, 0, lambda ctx, a: True, (), BOOLEAN),
    "false": _Function(0, 0, lambda ctx, a: False, (), BOOLEAN),
    "boolean": _Function(1, 1, lambda ctx, a: truthy(a[0]), ("any",), BOOLEAN),
    "boolean-from-string": _Function(1, 1, lambda ctx, a: to_string(a[0]) in ("true", "1"), ("scalar",), BOOLEAN),
    "selected": _Function(2, 2, lambda ctx, a: to_string(a[1]) in _selected_names(a[0]), ("select", "scalar"), BOOLEAN),
    "count-selected": _Function(1, 1, lambda ctx, a: float(len(_selected_names(a[0]))), ("select",), NUMBER),
    "selected-at": _Function(2, 2, _fn_selected_at, ("select", "number"), STRING),
    "count": _Function(1, 1, _fn_count, ("nodeset",), NUMBER),
    "sum": _Function(1, 1, _fn_sum, ("numbers",), NUMBER),
    "max": _Function(1, None, _extreme(max), ("numbers",), NUMBER),
    "min": _Function(1, None, _extreme(min), ("numbers",), NUMBER),
    "indexed-repeat": _Function(3, 3, _fn_indexed_repeat, ("nodeset", "nodeset", "number"), ANY),
    "string-length": _Function(0, 1, _fn_string_length, ("scalar",), NUMBER),
    "concat": _Function(0, None, _fn_concat, ("any",), STRING),
    "join": _Function(2, None, _fn_join, ("scalar", "any"), STRING),
    "substr": _Function(2, 3, _fn_substr, ("scalar", "number", "number"), STRING),
    "substring": _Function(2, 3, _fn_substring, ("scalar", "number", "number"), STRING),
    "contains": _Function(2, 2, _two_strings(lambda s, t: t in s), ("scalar", "scalar"), BOOLEAN),
    "starts-with": _Function(2, 2, _two_strings(str.startswith), ("scalar", "scalar"), BOOLEAN),
    "ends-with": _Function(2, 2, _two_strings(str.endswith), ("scalar", "scalar"), BOOLEAN),
    "normalize-space": _Function(0, 1, _fn_normalize_space, ("scalar",), STRING),
    "translate": _Function(3, 3, _fn_translate, ("scalar",), STRING),
    "string": _Function(1, 1, lambda ctx, a: to_string(a[0]), ("scalar",), STRING),
    "number": _Function(1, 1, lambda ctx, a: to_number(a[0]), ("number",), NUMBER),
    "int": _Function(1, 1, _fn_int, ("number",), NUMBER),
    "round": _Function(1, 2, _fn_round, ("number",), NUMBER),
    "floor": _Function(1, 1, _math(_floor), ("number",), NUMBER),
    "ceiling": _Function(1, 1, _math(_ceiling), ("number",), NUMBER),
    "abs": _Function(1, 1, _math(abs), ("number",), NUMBER),
    "pow": _Function(2, 2, _math(math.pow), ("number",), NUMBER),
    "sqrt": _Function(1, 1, _math(math.sqrt), ("number",), NUMBER),
    "regex": _Function(2, 2, _fn_regex, ("scalar", "scalar"), BOOLEAN, compile=_compile_regex_call),
    "today": _Function(0, 0, _fn_today, (), DATE),
    "now": _Function(0, 0, _fn_now, (), DATETIME),
    "date": _Function(1, 1, _fn_date, ("number",), DATE),
    "decimal-date-time": _Function(1, 1, _fn_decimal_date_time, ("number",), NUMBER),
    "format-date": _Function(2, 2, _fn_format_date, ("number", "scalar"), STRING),
    "format-date-time": _Function(2, 2, _fn_format_date, ("number", "scalar"), STRING),
    "uuid": _Function(0, 0, _fn_uuid, (), STRING),
    # kunjung extensions, unknown to ODK Collect (forms using them run on kunjung devices):
    # valid-nik(x) is true when x is a well-formed NIK and valid-kk(x) when it is a
    # well-formed No. KK, by the checks in forms/identifiers.py; empty is not valid.
    "valid-nik": _Function(1, 1, lambda ctx, a: not check_nik(to_string(a[0])), ("scalar",), BOOLEAN),
    "valid-kk": _Function(1, 1, lambda ctx, a: not check_kk(to_string(a[0])), ("scalar",), BOOLEAN),
}

FUNCTION_NAMES = frozenset(_FUNCTIONS)


# ---------------------------------------------------------------------------
# Parsing


class _Builder:
    """Lark callbacks that build nodes while the LALR parser reduces."""

    def number(self, children: list[Token]) -> Node:
        token = children[0]
        return Literal(token.start_pos or 0, float(token))

    def string(self, children: list[Token]) -> Node:
        token = children[0]
        return Literal(token.start_pos or 0, str(token)[1:-1])

    def ref(self, children: list[Token]) -> Node:
        token = children[0]
        name = str(token)[2:-1]
        if not _REF_NAME.fullmatch(name):
            raise ExpressionError(f"invalid field reference {str(token)[:70]!r}", token.start_pos)
        return Ref(token.start_pos or 0, name)

    def name(self, children: list[Token]) -> Node:
        token = children[0]
        return ChoiceName(token.start_pos or 0, str(token))

    def current(self, children: list[Token]) -> Node:
        return Current(children[0].start_pos or 0)

    def neg(self, children: list[Any]) -> Node:
        return Negate(children[0].start_pos or 0, children[1])

    def args(self, children: list[Node]) -> list[Node]:
        return list(children)

    def call(self, children: list[Any]) -> Node:
        token: Token = children[0]
        args: list[Node] = children[1] if len(children) > 1 else []
        name = str(token)
        position = token.start_pos or 0
        fn = _FUNCTIONS.get(name)
        if fn is None:
            raise ExpressionError(f"unknown function {name}()", position)
        if len(args) < fn.min_args or (fn.max_args is not None and len(args) > fn.max_args):
            raise ExpressionError(f"{name}() takes {_arity(fn)}, not {len(args)}", position)
        if name == "regex" and isinstance(args[1], Literal):
            try:
                _compile_regex(to_string(args[1].value))
            except ExpressionError as exc:
                raise ExpressionError(exc.message, args[1].position) from None
        return Call(position, name, args)

    def compare(self, children: list[Any]) -> Node:
        left, op, right = children
        return Binary(op.start_pos or 0, str(op), left, right)

    arith = compare

    def and_op(self, children: list[Node]) -> Node:
        return Binary(children[0].position, "and", children[0], children[1])

    def or_op(self, children: list[Node]) -> Node:
        return Binary(children[0].position, "or", children[0], children[1])


def _arity(fn: _Function) -> str:
    if fn.max_args == fn.min_args:
        count = fn.min_args
        return "no arguments" if count == 0 else f"{count} argument{'s' if count != 1 else ''}"
    if fn.max_args is None:
        return f"at least {fn.min_args} argument{'s' if fn.min_args != 1 else ''}"
    return f"{fn.min_args} to {fn.max_args} arguments"


_PARSER = Lark(GRAMMAR, parser="lalr", lexer="contextual", transformer=_Builder(), maybe_placeholders=False)

_TOKEN_HINTS = {
    "&": "use 'and'",
    "|": "use 'or'",
    "==": "use '='",
    "/": "use 'div'",
    "%": "use 'mod'",
    # Spreadsheets like to "correct" quotes.
    "\u2018": "use straight quotes ' or \"",
    "\u2019": "use straight quotes ' or \"",
    "\u201c": "use straight quotes ' or \"",
    "\u201d": "use straight quotes ' or \"",
}


def _syntax_error(text: str, exc: UnexpectedInput) -> ExpressionError:
    if isinstance(exc, UnexpectedCharacters):
        position = exc.pos_in_stream
        char = text[position] if position < len(text) else ""
        hint = _TOKEN_HINTS.get(char)
        if char == "$":
            hint = "write field references as ${name}"
        return ExpressionError(f"unexpected character {char!r}" + (f"; {hint}" if hint else ""), position)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        value = str(token)
        hint = _TOKEN_HINTS.get(value)
        if value == "=" and token.start_pos and text[token.start_pos - 1 : token.start_pos] == "=":
            hint = _TOKEN_HINTS["=="]
        message = f"unexpected {value!r}" + (f"; {hint}" if hint else "")
        return ExpressionError(message, token.start_pos)
    if isinstance(exc, UnexpectedToken | UnexpectedEOF):
        return ExpressionError("unexpected end of expression", len(text))
    return ExpressionError("cannot parse expression", getattr(exc, "pos_in_stream", None))  # pragma: no cover


class _TypeEnv:
    __slots__ = ("current", "errors", "ref_type")

    def __init__(self, ref_type: Callable[[str], str], current: str) -> None:
        self.ref_type = ref_type
        self.current = current
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)


class Expression:
    """A parsed expression: what it refers to, and how to evaluate it."""

    __slots__ = ("_compiled", "functions", "names", "references", "root", "text", "uses_current")

    def __init__(self, text: str, root: Node) -> None:
        self.text = text
        self.root = root
        self._compiled: Compiled | None = None
        refs: set[str] = set()
        names: set[str] = set()
        functions: set[str] = set()
        uses_current = False
        for node in _walk(root):
            if isinstance(node, Ref):
                refs.add(node.name)
            elif isinstance(node, ChoiceName):
                names.add(node.name)
            elif isinstance(node, Call):
                functions.add(node.name)
            elif isinstance(node, Current):
                uses_current = True
        #: field names referenced as ${name}
        self.references: frozenset[str] = frozenset(refs)
        #: bare names: columns of the choice list, meaningful only in a choice_filter
        self.names: frozenset[str] = frozenset(names)
        self.functions: frozenset[str] = frozenset(functions)
        self.uses_current = uses_current

    @property
    def compiled(self) -> Compiled:
        """The expression as a closure taking a Context; compiled on first use, then kept."""
        compiled = self._compiled
        if compiled is None:
            # Two threads may both compile; they build equivalent closures.
            compiled = self._compiled = self.root.compile()
        return compiled

    def evaluate(self, context: Context | Mapping[str, Any] | None = None) -> Any:
        """The value: str, float, bool, datetime.date/datetime, or a NodeSet."""
        ctx = context if isinstance(context, Context) else Context(context)
        return self.compiled(ctx)

    def interpret(self, context: Context | Mapping[str, Any] | None = None) -> Any:
        """What evaluate() gives, by walking the tree: the reference the compiled form is tested against."""
        ctx = context if isinstance(context, Context) else Context(context)
        return self.root.evaluate(ctx)

    def evaluate_bool(self, context: Context | Mapping[str, Any] | None = None) -> bool:
        return truthy(self.evaluate(context))

    def type_errors(self, ref_type: Callable[[str], str], current: str = ANY) -> list[str]:
        """Operations the static types of the referenced fields do not allow.

        `ref_type(name)` gives the static type of `${name}` where the expression is
        used (see the type constants in this module); `current` the type of `.`.
        """
        env = _TypeEnv(ref_type, current)
        self.root.infer(env)
        return env.errors

    def result_type(self, ref_type: Callable[[str], str], current: str = ANY) -> str:
        return self.root.infer(_TypeEnv(ref_type, current))

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def _walk(root: Node) -> Iterator[Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children())


def parse(text: str) -> Expression:
    """Parses an expression, raising ExpressionError(message, position) when it is not valid."""
    if not isinstance(text, str):
        raise ExpressionError("an expression must be a string")
    return _parse_cached(text)


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Expression:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        raise ExpressionError("expression is empty", 0)
    try:
        root = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, ExpressionError):
            raise exc.orig_exc from None
        raise  # pragma: no cover - a bug in the builder, not in the input
    return Expression(text, root)
