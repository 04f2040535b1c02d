"""A plain tree-walking evaluator of expressions: the reference the compiled closures are checked against."""

# It follows the node tree one node at a time, with no specialisation: every operator
# goes through values.compare / values.arithmetic and every call through the function's
# own implementation (the lazy if/coalesce/once are spelt out here). The compiler
# (forms/expressions/nodes.py) must give the same value, or raise the same error, in
# every context.

from __future__ import annotations

from typing import Any

from forms.expressions import Context, Expression, ExpressionError
from forms.expressions.nodes import Binary, Call, ChoiceName, Current, Literal, Negate, Node, Ref, not_a_reference
from forms.expressions.values import arithmetic, compare, from_answer, to_number, to_string, truthy


def interpret(expression: Expression, context: Context | dict[str, Any] | None = None) -> Any:
    """What expression.evaluate(context) gives, by walking the tree."""
    ctx = context if isinstance(context, Context) else Context(context)
    return _walk(expression.root, ctx)


def _walk(node: Node, ctx: Context) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Ref):
        return ctx.resolve(node.name)
    if isinstance(node, ChoiceName):
        if ctx.choice is None:
            raise ExpressionError(not_a_reference(node.name), node.position)
        return from_answer(ctx.choice.get(node.name))
    if isinstance(node, Current):
        return ctx.current_value()
    if isinstance(node, Negate):
        return -to_number(_walk(node.operand, ctx))
    if isinstance(node, Binary):
        if node.op == "and":
            return truthy(_walk(node.left, ctx)) and truthy(_walk(node.right, ctx))
        if node.op == "or":
            return truthy(_walk(node.left, ctx)) or truthy(_walk(node.right, ctx))
        left, right = _walk(node.left, ctx), _walk(node.right, ctx)
        if node.op in ("=", "!=", "<", "<=", ">", ">="):
            return compare(node.op, left, right)
        return arithmetic(node.op, to_number(left), to_number(right))
    if isinstance(node, Call):
        return _call(node, ctx)
    raise AssertionError(f"unknown node {node!r}")


def _call(node: Call, ctx: Context) -> Any:
    args = node.args
    if node.name == "if":
        return _walk(args[1], ctx) if truthy(_walk(args[0], ctx)) else _walk(args[2], ctx)
    if node.name == "coalesce":
        value: Any = ""
        for arg in args:
            value = _walk(arg, ctx)
            if to_string(value) != "":
                return value
        return value
    if node.name == "once":
        current = ctx.current_value()
        return current if to_string(current) != "" else _walk(args[0], ctx)
    impl = node.function.impl
    assert impl is not None, node.name
    return impl(ctx, [_walk(arg, ctx) for arg in args])
