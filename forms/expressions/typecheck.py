"""The static type checker: which operations the types of the referenced fields do not allow."""

from __future__ import annotations

from collections.abc import Callable

from forms.expressions.nodes import Binary, Call, ChoiceName, Current, Literal, Negate, Node, Ref
from forms.expressions.types import (
    ANY,
    BOOLEAN,
    INCOMPARABLE,
    MULTI,
    NOT_NUMERIC,
    NUMBER,
    STRING,
    WANTS,
    accepts,
)
from forms.expressions.values import COMPARISONS

__all__ = ["TypeEnv", "infer"]


class TypeEnv:
    """What the checker knows: `ref_type(name)` gives the static type of `${name}`, `current` that of `.`."""

    __slots__ = ("current", "errors", "ref_type")

    def __init__(self, ref_type: Callable[[str], str], current: str) -> None:
        self.ref_type = ref_type
        self.current = current
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)


def describe(node: Node, kind: str) -> str:
    """The node as an error message names it."""
    if isinstance(node, Ref):
        return f"${{{node.name}}} ({kind})"
    if isinstance(node, ChoiceName):
        return f"choice column '{node.name}'"
    if isinstance(node, Current):
        return f"'.' ({kind})"
    return f"a {kind}" if kind != ANY else "a value"


def infer(node: Node, env: TypeEnv) -> str:
    """The static type of the node's value; problems found on the way go to `env.errors`."""
    if isinstance(node, Literal):
        return STRING if isinstance(node.value, str) else NUMBER
    if isinstance(node, Ref):
        return env.ref_type(node.name)
    if isinstance(node, ChoiceName):
        return ANY
    if isinstance(node, Current):
        return env.current
    if isinstance(node, Negate):
        kind = infer(node.operand, env)
        if kind in NOT_NUMERIC:
            env.error(f"cannot negate {describe(node.operand, kind)}")
        return NUMBER
    if isinstance(node, Binary):
        return _binary(node, env)
    if isinstance(node, Call):
        return _call(node, env)
    raise AssertionError(f"no type rule for {type(node).__name__}")  # pragma: no cover


def _binary(node: Binary, env: TypeEnv) -> str:
    left, right = infer(node.left, env), infer(node.right, env)
    op = node.op
    if op in ("and", "or"):
        return BOOLEAN
    a, b = describe(node.left, left), describe(node.right, right)
    if op in ("=", "!="):
        for kind, text in ((left, a), (right, b)):
            if kind in MULTI:
                env.error(f"cannot compare {text} with '{op}': it has one value per repeat row")
        pair = {left, right}
        for odd, others in INCOMPARABLE:
            if odd in pair and pair & others:
                env.error(f"cannot compare {a} with {b}")
        return BOOLEAN
    for kind, text in ((left, a), (right, b)):
        if kind in NOT_NUMERIC:
            verb = "compare" if op in COMPARISONS else "do arithmetic on"
            env.error(f"cannot {verb} {text} with '{op}'")
    return BOOLEAN if op in COMPARISONS else NUMBER


def _call(node: Call, env: TypeEnv) -> str:
    kinds = [infer(arg, env) for arg in node.args]
    fn = node.function
    for index, (arg, kind) in enumerate(zip(node.args, kinds, strict=True)):
        wanted = fn.params[min(index, len(fn.params) - 1)]
        if not accepts(wanted, kind):
            env.error(f"{node.name}() cannot take {describe(arg, kind)} as argument {index + 1}: {WANTS[wanted]}")
    if fn.returns == "first":
        kind = kinds[0] if kinds else ANY
        return ANY if kind in MULTI else kind
    if fn.returns == "branches":
        branches = set(kinds[1:] if node.name == "if" else kinds)
        return branches.pop() if len(branches) == 1 else ANY
    return fn.returns
