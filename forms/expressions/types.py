"""The static types of the expression language: what a field, a function argument or a result can be."""

# Field types map onto these (forms/fieldtypes.py); "nodeset" is a field of a repeat
# seen from outside its rows, "repeat" the repeat itself.

from __future__ import annotations

__all__ = [
    "ANY",
    "BOOLEAN",
    "DATE",
    "DATETIME",
    "GEOPOINT",
    "INCOMPARABLE",
    "MULTI",
    "NODESET",
    "NOT_NUMERIC",
    "NUMBER",
    "REPEAT",
    "SELECT_MULTIPLE",
    "STRING",
    "WANTS",
    "accepts",
]

STRING, NUMBER, BOOLEAN, DATE, DATETIME = "string", "number", "boolean", "date", "datetime"
GEOPOINT, SELECT_MULTIPLE, REPEAT, NODESET, ANY = "geopoint", "select_multiple", "repeat", "nodeset", "any"
#: several values at once
MULTI = frozenset({REPEAT, NODESET})
NOT_NUMERIC = frozenset({GEOPOINT, SELECT_MULTIPLE, REPEAT, NODESET})
# Equality that is always a mistake: a geopoint or a select_multiple is never a number or a date.
INCOMPARABLE = (
    (GEOPOINT, frozenset({NUMBER, DATE, DATETIME, BOOLEAN})),
    (SELECT_MULTIPLE, frozenset({NUMBER, DATE, DATETIME})),
)

#: What a function parameter accepts, as the type checker explains it.
WANTS = {
    "any": "any value",
    "scalar": "a single value, not a repeat",
    "number": "a number",
    "select": "a select answer or text",
    "nodeset": "a repeat or a field inside one",
    "numbers": "numbers or a field inside a repeat",
}


def accepts(wanted: str, kind: str) -> bool:
    """Whether a parameter of kind `wanted` (a WANTS key) takes a value of static type `kind`."""
    if kind == ANY or wanted == "any":
        return True
    if wanted == "scalar":
        return kind not in MULTI
    if wanted == "number":
        return kind not in NOT_NUMERIC
    if wanted == "select":
        return kind in {STRING, SELECT_MULTIPLE}
    if wanted == "nodeset":
        return kind in MULTI
    if wanted == "numbers":
        return kind not in {GEOPOINT, SELECT_MULTIPLE, REPEAT}
    return True  # pragma: no cover - every kind is listed above
