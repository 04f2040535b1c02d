"""A parsed expression: what it refers to, its compiled form and its static type checks; `parse` makes one."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from forms.expressions.grammar import parse_tree
from forms.expressions.nodes import Call, ChoiceName, Current, Node, Ref
from forms.expressions.typecheck import TypeEnv, infer
from forms.expressions.types import ANY
from forms.expressions.values import Compiled, Context, ExpressionError, truthy

__all__ = ["MAX_LENGTH", "Expression", "parse"]

MAX_LENGTH = 10_000


class Expression:
    """A parsed expression: what it refers to, and how to evaluate it."""

    __slots__ = ("_compiled", "functions", "lookups", "names", "references", "root", "text", "uses_current")

    def __init__(self, text: str, root: Node) -> None:
        self.text = text
        self.root = root
        self._compiled: Compiled | None = None
        refs: set[str] = set()
        names: set[str] = set()
        functions: set[str] = set()
        lookups: set[str] = set()
        uses_current = False
        for node in _walk(root):
            if isinstance(node, Ref):
                refs.add(node.name)
            elif isinstance(node, ChoiceName):
                names.add(node.name)
            elif isinstance(node, Call):
                functions.add(node.name)
                if node.name == "pulldata":
                    lookups.add(node.args[0].value)
            elif isinstance(node, Current):
                uses_current = True
        #: field names referenced as ${name}
        self.references: frozenset[str] = frozenset(refs)
        #: bare names: columns of the choice list, meaningful only in a choice_filter
        self.names: frozenset[str] = frozenset(names)
        self.functions: frozenset[str] = frozenset(functions)
        #: the attached CSV files pulldata() reads, by name without '.csv'
        self.lookups: frozenset[str] = frozenset(lookups)
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

    def evaluate_bool(self, context: Context | Mapping[str, Any] | None = None) -> bool:
        return truthy(self.evaluate(context))

    def type_errors(self, ref_type: Callable[[str], str], current: str = ANY) -> list[str]:
        """Operations the static types of the referenced fields do not allow.

        `ref_type(name)` gives the static type of `${name}` where the expression is
        used (forms.expressions.types); `current` the type of `.`.
        """
        env = TypeEnv(ref_type, current)
        infer(self.root, env)
        return env.errors

    def result_type(self, ref_type: Callable[[str], str], current: str = ANY) -> str:
        return infer(self.root, TypeEnv(ref_type, current))

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
    return Expression(text, parse_tree(text))
