"""The XLSForm expression language: parsing, static type checks and evaluation of `relevant`, `constraint`, ...

The package's parts, from the bottom up: `values` (XPath 1.0 values, conversions and the
evaluation context), `types` (static types), `functions` (the function registry),
`nodes` (the tree and its compiler), `grammar` (the parser), `typecheck`, and
`expression` (a parsed expression, `parse`).
"""

from forms.expressions.expression import MAX_LENGTH, Expression, parse
from forms.expressions.functions import FUNCTION_NAMES, FUNCTIONS, Function
from forms.expressions.types import (
    ANY,
    BOOLEAN,
    DATE,
    DATETIME,
    GEOPOINT,
    NODESET,
    NUMBER,
    REPEAT,
    SELECT_MULTIPLE,
    STRING,
)
from forms.expressions.values import (
    MAX_DEPTH,
    Compiled,
    Context,
    ExpressionError,
    NodeSet,
    from_answer,
    to_number,
    to_string,
    truthy,
)

__all__ = [
    "ANY",
    "BOOLEAN",
    "DATE",
    "DATETIME",
    "FUNCTIONS",
    "FUNCTION_NAMES",
    "GEOPOINT",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "NODESET",
    "NUMBER",
    "REPEAT",
    "SELECT_MULTIPLE",
    "STRING",
    "Compiled",
    "Context",
    "Expression",
    "ExpressionError",
    "Function",
    "NodeSet",
    "from_answer",
    "parse",
    "to_number",
    "to_string",
    "truthy",
]
