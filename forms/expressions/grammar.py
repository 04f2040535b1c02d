"""The grammar of the expression language (XLSForm / ODK XPath) and the parser that builds the node tree."""

# Why lark: it is maintained, it takes the grammar as readable text, and its LALR(1)
# parser runs in linear time without backtracking or recursion, so no expression an
# admin uploads can make parsing slow or deep. The parse builds our own small node
# tree (nodes.py) while it reduces.

from __future__ import annotations

import re
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from forms.expressions.functions import FUNCTIONS, Function, compile_regex
from forms.expressions.nodes import Binary, Call, ChoiceName, Current, Literal, Negate, Node, Ref
from forms.expressions.values import ExpressionError, to_string

# The name of an attached CSV file without its suffix: what pulldata() and search() name.
_LOOKUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}")

__all__ = ["GRAMMAR", "parse_tree"]

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
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise ExpressionError(f"unknown function {name}()", position)
        if len(args) < fn.min_args or (fn.max_args is not None and len(args) > fn.max_args):
            raise ExpressionError(f"{name}() takes {_arity(fn)}, not {len(args)}", position)
        if name == "pulldata" and not (isinstance(args[0], Literal) and isinstance(args[0].value, str)
                                       and _LOOKUP_NAME.fullmatch(args[0].value)):
            raise ExpressionError("pulldata()'s first argument names the form's attached CSV file without "
                                  "'.csv', quoted: pulldata('desa', 'nama', 'kode', ${kode})", args[0].position)
        if name == "regex" and isinstance(args[1], Literal):
            try:
                compile_regex(to_string(args[1].value))
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


def _arity(fn: Function) -> str:
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



def parse_tree(text: str) -> Node:
    """The node tree of an expression; ExpressionError(message, position) when it is not valid."""
    try:
        return _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, ExpressionError):
            raise exc.orig_exc from None
        raise  # pragma: no cover - a bug in the builder, not in the input
