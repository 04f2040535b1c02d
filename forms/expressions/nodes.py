"""The expression tree and its compiler: each node becomes a Python closure over a Context, built once."""

# The sync server evaluates every relevance, constraint and choice filter of every
# pushed visit, so each tree is compiled once into nested closures, with the dispatch
# on node types (and, where the operand types allow, on value types) done at compile
# time. Python's eval is never involved. The tests check the closures against a plain
# tree-walking evaluator (tests/forms/reference_evaluator.py).

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Sequence
from typing import Any

from forms.expressions.functions import FUNCTIONS, Function, compile_regex
from forms.expressions.types import BOOLEAN
from forms.expressions.values import (
    COMPARISONS,
    MAX_DEPTH,
    Compiled,
    Context,
    ExpressionError,
    arithmetic,
    compare,
    from_answer,
    to_number,
    to_string,
    truthy,
)

__all__ = ["Binary", "Call", "ChoiceName", "Current", "Literal", "Negate", "Node", "Ref"]


class Node:
    __slots__ = ("depth", "position")

    def __init__(self, position: int, children: Sequence[Node] = ()) -> None:
        self.position = position
        self.depth = 1 + max((child.depth for child in children), default=0)
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression is nested more than {MAX_DEPTH} levels deep", position)

    def children(self) -> Sequence[Node]:
        return ()

    def compile(self) -> Compiled:  # pragma: no cover - every node overrides it
        """A closure computing the node's value in a context."""
        raise NotImplementedError

    @property
    def always_bool(self) -> bool:
        """Whether the value is always a Python bool, so that truthy() can be skipped."""
        return False


class Literal(Node):
    __slots__ = ("value",)

    def __init__(self, position: int, value: str | float) -> None:
        super().__init__(position)
        self.value = value

    def compile(self) -> Compiled:
        value = self.value
        return lambda ctx: value


class Ref(Node):
    """`${name}`: a field's answer."""

    __slots__ = ("name",)

    def __init__(self, position: int, name: str) -> None:
        super().__init__(position)
        self.name = name

    def compile(self) -> Compiled:
        name = self.name
        return lambda ctx: ctx.resolve(name)


def not_a_reference(name: str) -> str:
    return f"'{name}' is not a field reference; write ${{{name}}}"


class ChoiceName(Node):
    """A bare name: in a choice_filter, a column of the choice being filtered."""

    __slots__ = ("name",)

    def __init__(self, position: int, name: str) -> None:
        super().__init__(position)
        self.name = name

    def compile(self) -> Compiled:
        name, position = self.name, self.position

        def choice_column(ctx: Context) -> Any:
            choice = ctx.choice
            if choice is None:
                raise ExpressionError(not_a_reference(name), position)
            return from_answer(choice.get(name))

        return choice_column


class Current(Node):
    """`.`: the answer being checked."""

    __slots__ = ()

    def compile(self) -> Compiled:
        return _compiled_current


class Negate(Node):
    __slots__ = ("operand",)

    def __init__(self, position: int, operand: Node) -> None:
        super().__init__(position, (operand,))
        self.operand = operand

    def children(self) -> Sequence[Node]:
        return (self.operand,)

    def compile(self) -> Compiled:
        operand = self.operand.compile()
        return lambda ctx: -to_number(operand(ctx))


class Binary(Node):
    __slots__ = ("left", "op", "right")

    def __init__(self, position: int, op: str, left: Node, right: Node) -> None:
        super().__init__(position, (left, right))
        self.op = op
        self.left = left
        self.right = right

    def children(self) -> Sequence[Node]:
        return (self.left, self.right)

    @property
    def always_bool(self) -> bool:
        return self.op in COMPARISONS or self.op in ("and", "or")

    def compile(self) -> Compiled:
        op = self.op
        left, right = self.left.compile(), self.right.compile()
        if op in ("and", "or"):
            return _compile_logic(op, left, right, self.left.always_bool and self.right.always_bool)
        if op in COMPARISONS:
            return _compile_comparison(op, left, right, self.right)
        return _compile_arithmetic(op, left, right)


class Call(Node):
    __slots__ = ("args", "function", "name")

    def __init__(self, position: int, name: str, args: Sequence[Node]) -> None:
        super().__init__(position, args)
        self.name = name
        self.args = tuple(args)
        self.function: Function = FUNCTIONS[name]

    def children(self) -> Sequence[Node]:
        return self.args

    @property
    def always_bool(self) -> bool:
        # Every function declared to return a boolean returns a Python bool.
        return self.function.returns == BOOLEAN

    def compile(self) -> Compiled:
        args = [arg.compile() for arg in self.args]
        special = _SPECIAL_CALLS.get(self.name)
        if special is not None:
            compiled = special(self.args, args)
            if compiled is not None:
                return compiled
        impl = self.function.impl
        if impl is None:  # pragma: no cover - every lazy function has its compiled form
            raise AssertionError(f"{self.name}() has no compiled form")
        return _compile_call(impl, args)


# ---------------------------------------------------------------------------
# Compiling operators

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
    return from_answer(ctx.current)


def _compile_logic(op: str, left: Compiled, right: Compiled, both_bool: bool) -> Compiled:
    if op == "and":
        if both_bool:
            return lambda ctx: left(ctx) and right(ctx)
        return lambda ctx: truthy(left(ctx)) and truthy(right(ctx))
    if both_bool:
        return lambda ctx: left(ctx) or right(ctx)
    return lambda ctx: truthy(left(ctx)) or truthy(right(ctx))


def _compile_comparison(op: str, left: Compiled, right: Compiled, right_node: Node) -> Compiled:
    # Where compare() would convert nothing (text = text, number with number, date
    # with date), Python's own operator gives the same answer without the checks.
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
            return compare(op, value, literal)

        return compare_literal

    def compare_values(ctx: Context) -> bool:
        a = left(ctx)
        b = right(ctx)
        kind = a.__class__
        if kind is b.__class__ and (kind is float or kind is dt.date or (equality and kind is str)):
            return test(a, b)
        return compare(op, a, b)

    return compare_values


def _compile_arithmetic(op: str, left: Compiled, right: Compiled) -> Compiled:
    fn = _PYTHON_ARITHMETIC.get(op)

    def compute(ctx: Context) -> float:
        a = left(ctx)
        b = right(ctx)
        if fn is not None:
            return fn(to_number(a), to_number(b))
        return arithmetic(op, to_number(a), to_number(b))

    return compute


# ---------------------------------------------------------------------------
# Compiling calls: the lazy functions, and eager ones with a faster form


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


def _compile_regex_call(nodes: Sequence[Node], args: list[Compiled]) -> Compiled | None:
    if not isinstance(nodes[1], Literal):
        return None
    # The parser has already compiled a literal pattern, so this cannot fail.
    pattern = compile_regex(to_string(nodes[1].value))
    text = args[0]
    # Visits of one village answer the same codes again and again: a short text's outcome is kept
    # (a bounded memo per pattern; the outcome of a literal pattern on a text never changes).
    outcomes: dict[str, bool] = {}

    def matches(ctx: Context) -> bool:
        value = to_string(text(ctx))
        found = outcomes.get(value)
        if found is None:
            found = pattern.search(value) is not None
            if len(value) <= _MEMO_TEXT:
                if len(outcomes) >= _MEMO_ENTRIES:
                    outcomes.clear()
                outcomes[value] = found
        return found

    return matches


_MEMO_TEXT = 64
_MEMO_ENTRIES = 4096


#: Given the argument nodes and their closures, the closure of the call, or None for the general one.
_SPECIAL_CALLS: dict[str, Callable[[Sequence[Node], list[Compiled]], Compiled | None]] = {
    "if": _compile_if,
    "coalesce": _compile_coalesce,
    "once": _compile_once,
    "not": _compile_not,
    "regex": _compile_regex_call,
}


def _compile_call(impl: Callable[[Context, list[Any]], Any], args: list[Compiled]) -> Compiled:
    if not args:
        return lambda ctx: impl(ctx, [])
    if len(args) == 1:
        (only,) = args
        return lambda ctx: impl(ctx, [only(ctx)])
    if len(args) == 2:
        first, second = args
        return lambda ctx: impl(ctx, [first(ctx), second(ctx)])
    return lambda ctx: impl(ctx, [arg(ctx) for arg in args])
