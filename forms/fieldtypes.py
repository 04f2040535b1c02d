"""The field types of the form language, each declared once: its XLSForm names, value check, expression type, export.

Everything that differs from one field type to another is read from its `FieldType` here:
the definition validator (which types exist, what each needs: a label, a choice list, a
calculation; whether it may be saved to a household field; its literal defaults and its
parameters), the XLSForm importer (type names and aliases, parameters), the answer checks
(`check` and its fast `short` path, identifier flags from appearance tokens, the value
expressions see), the household field catalog, and the exports (columns and cell values for
CSV/XLSX, the GeoJSON property).

Adding a type is one `FieldType(...)` entry in `FIELD_TYPES`. The media types (image, audio,
video, file) are declared the same way; their `media` says which files answer them. A media
answer is the attachment's file name, as ODK sends it; the file itself travels apart (uploads),
and an export writes its cell through the `Cells.media` hook.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forms import expressions as ex
from forms.identifiers import check_kk, check_nik
from sync.values import canonical_json

__all__ = [
    "CONTAINER",
    "FIELD_TYPES",
    "INVALID",
    "MAX_STRING_LENGTH",
    "MEDIA_TYPES",
    "UNSURE",
    "Cells",
    "ErrorSink",
    "FieldType",
    "IdentifierCheck",
    "Media",
    "Parameter",
    "check_file_name",
    "field_type",
    "json_type",
    "media_type_matches",
    "scalar_cells",
    "xlsform_names",
]

MAX_STRING_LENGTH = 10_000
# MongoDB stores integers as signed 64-bit; a bigger one would be silently turned into a double.
_INT64 = 2**63

#: What a value check returns for a value that cannot be stored (after reporting why).
INVALID: Any = object()
#: What a short path returns when the value needs the full check.
UNSURE: Any = object()

#: Where a value check reports a problem: (path, message).
ErrorSink = Callable[[str, str], None]

CONTAINER = frozenset({"group", "repeat"})

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}.*", re.DOTALL)
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}")


def json_type(value: Any) -> str:
    """How a JSON value's type is named in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    return isinstance(value, float) and math.isfinite(value)


# ---------------------------------------------------------------------------
# Parts of a declaration


@dataclass(frozen=True)
class Parameter:
    """A parameter a type accepts (XLSForm `parameters` column, definition key `parameters`).

    `kind` is "number" (a finite number > 0), "integer" (a whole number > 0), "boolean",
    "choice" (one of `values`) or "column" (a column name of an attached file); XLSForm gives
    text, which `read` turns into the JSON value the definition keeps.
    """

    name: str
    kind: str
    description: str
    values: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why a definition's value cannot be this parameter's, or None."""
        if self.kind == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < _INT64
            return None if ok else "must be a whole number above 0"
        if self.kind == "choice":
            return None if value in self.values else "must be one of: " + ", ".join(self.values)
        if self.kind == "column":
            ok = isinstance(value, str) and _COLUMN.fullmatch(value) is not None
            return None if ok else "must be a column name (letters, digits, '_', '-', ':' or '.')"
        if self.kind == "number":
            ok = isinstance(value, int | float) and not isinstance(value, bool) and _finite_number(value) and value > 0
            return None if ok else "must be a number above 0"
        if self.kind == "boolean":
            return None if isinstance(value, bool) else "must be true or false"
        return None  # pragma: no cover - every kind is listed above

    def read(self, text: str) -> Any:
        """The value of an XLSForm parameter's text; ValueError when it is not one."""
        if self.kind in ("number", "integer"):
            value = float(text)
            if value.is_integer():
                value = int(value)
        elif self.kind in ("choice", "column"):
            value = text.strip()
        elif text.strip().lower() in ("true", "yes", "1"):
            value = True
        elif text.strip().lower() in ("false", "no", "0"):
            value = False
        else:
            raise ValueError(text)
        if self.problem(value):
            raise ValueError(text)
        return value


@dataclass(frozen=True)
class IdentifierCheck:
    """An appearance token that makes the answer an identifier: problems become the flag `code`."""

    token: str
    check: Callable[[Any], list[str]]
    code: str


@dataclass(frozen=True)
class Media:
    """Which files answer a media type: its kind and the media types (patterns like `image/*`) it takes."""

    kind: str
    media_types: tuple[str, ...]


@dataclass(frozen=True)
class Cells:
    """How an export writes answers: choices as codes, or as their texts through `choice_text(list, code)`;
    a media answer (a file name) as itself, or as what `media(file name, field)` makes of it (the
    file's relative path in the export or its URL; an export binds it per visit with
    `dataclasses.replace`)."""

    choice_text: Callable[[str, str], str] | None = None
    media: Callable[[str, Mapping[str, Any]], Any] | None = None


def _json_cell(value: Any) -> Any:
    return canonical_json(value) if isinstance(value, list | dict) else value


def scalar_cells(value: Any, definition_field: Mapping[str, Any], how: Cells) -> tuple[Any, ...]:
    """One cell: the value itself, a list or an object as canonical JSON."""
    return (_json_cell(value),)


def _property(ftype: FieldType, value: Any, definition_field: Mapping[str, Any], how: Cells) -> Any:
    return ftype.cells(value, definition_field, how)[0]


@dataclass(frozen=True)
class FieldType:
    """One field type of the form language. See the module's docstring for who reads what."""

    name: str
    #: the static type of its answers in expressions (forms.expressions.types)
    expression_type: str
    #: XLSForm type names (lower case, single spaces) that are this type; pyxform's aliases included
    xlsform: tuple[str, ...] = ()
    #: XLSForm names of this type that bring a constraint of their own (`phone number`)
    xlsform_constrained: Mapping[str, str] = field(default_factory=dict)
    #: XLSForm commands written `<command> <list name>` (select_one yes_no)
    xlsform_list_commands: tuple[str, ...] = ()
    #: appearance tokens that mean something to the server, with what they mean (others pass to devices)
    appearances: Mapping[str, str] = field(default_factory=dict)
    #: appearance tokens that make the answer an identifier whose problems are flagged
    identifiers: tuple[IdentifierCheck, ...] = ()
    #: parameters the type accepts, by name
    parameters: Mapping[str, Parameter] = field(default_factory=dict)
    #: the answer's check: the value to store, or INVALID after reporting why to the sink
    check: Callable[[Any, str, ErrorSink], Any] | None = None
    #: a fast path: what `check` would return for a well-formed value, or UNSURE
    short: Callable[[Any], Any] | None = None
    #: a stored answer as expressions see it (dates as dates)
    to_expression: Callable[[Any], Any] | None = None
    #: why a literal default cannot be an answer (value, field, choices), or None when it can
    default_problem: Callable[[Any, Mapping[str, Any], Mapping[Any, Any]], str | None] | None = None
    #: export sub-columns: `house_location_lat`, ...; empty for one column named after the field
    columns: tuple[str, ...] = ()
    #: an answer's export cells (one per column, or one): (value, field, Cells) -> cells
    cells: Callable[[Any, Mapping[str, Any], Cells], tuple[Any, ...]] = scalar_cells
    #: an answer as a GeoJSON property, when not its one cell
    geojson: Callable[[Any, Mapping[str, Any], Cells], Any] | None = None
    label_required: bool = True
    takes_list: bool = False
    needs_calculation: bool = False
    #: whether `required` means anything (a calculate or a note is never answered by a person)
    requirable: bool = True
    #: whether its answer can be saved to a household field (`save_to`)
    saves_to_household: bool = True
    #: whether exports give it a column (a note has nothing to export)
    exported: bool = True
    #: for a media type: which files answer it (its answer is the file's name)
    media: Media | None = None

    @property
    def container(self) -> bool:
        return self.name in CONTAINER

    def column_names(self, base: str, *, labels: bool = False) -> list[str]:
        """The export column names of a field whose column is called `base` (its name, or its label)."""
        if not self.columns:
            return [base]
        if labels:
            return [f"{base} ({part})" for part in self.columns]
        return [f"{base}_{part}" for part in self.columns]

    def property(self, value: Any, definition_field: Mapping[str, Any], how: Cells) -> Any:
        """The answer as a GeoJSON property."""
        if self.geojson is not None:
            return self.geojson(value, definition_field, how)
        return _property(self, value, definition_field, how)


# ---------------------------------------------------------------------------
# Value checks


def _string(value: Any, path: str, error: ErrorSink, what: str = "text") -> Any:
    if not isinstance(value, str):
        error(path, f"must be {what} (a JSON string), not {json_type(value)}")
        return INVALID
    if len(value) > MAX_STRING_LENGTH:
        error(path, f"is longer than {MAX_STRING_LENGTH} characters")
        return INVALID
    return value


def _check_text(value: Any, path: str, error: ErrorSink) -> Any:
    return _string(value, path, error)


def _check_note(value: Any, path: str, error: ErrorSink) -> Any:
    if value != "":
        error(path, "a note takes no answer")
        return INVALID
    return value


def _check_integer(value: Any, path: str, error: ErrorSink) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        error(path, f"must be a whole number, not {json_type(value)}")
        return INVALID
    if not _finite_number(value):
        error(path, "is too large to store")
        return INVALID
    return value


def _check_decimal(value: Any, path: str, error: ErrorSink) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        error(path, f"must be a number, not {json_type(value)}")
        return INVALID
    if not _finite_number(value):
        error(path, "must be a finite number that can be stored")
        return INVALID
    return value


def _check_date(value: Any, path: str, error: ErrorSink) -> Any:
    if _string(value, path, error, "a date text YYYY-MM-DD") is INVALID:
        return INVALID
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        dt.date.fromisoformat(value)
    except ValueError:
        error(path, "must be a date YYYY-MM-DD")
        return INVALID
    return value


def _check_datetime(value: Any, path: str, error: ErrorSink) -> Any:
    if _string(value, path, error, "an ISO-8601 date and time") is INVALID:
        return INVALID
    try:
        if not _DATETIME.fullmatch(value):
            raise ValueError
        dt.datetime.fromisoformat(value)
    except ValueError:
        error(path, "must be an ISO-8601 date and time, like 2025-01-31T09:30:00+07:00")
        return INVALID
    return value


def _check_select_one(value: Any, path: str, error: ErrorSink) -> Any:
    return _string(value, path, error, "a choice name")


def _check_select_multiple(value: Any, path: str, error: ErrorSink) -> Any:
    if isinstance(value, str):
        # ODK sends the chosen names separated by spaces.
        if _string(value, path, error) is INVALID:
            return INVALID
        return value.split()
    if not isinstance(value, list):
        error(path, f"must be a list of choice names, not {json_type(value)}")
        return INVALID
    ok = True
    for index, item in enumerate(value):
        if _string(item, f"{path}[{index}]", error, "a choice name") is INVALID:
            ok = False
    return list(value) if ok else INVALID


_GEOPOINT_LIMITS = {
    "lat": (-90, 90),
    "lon": (-180, 180),
    "accuracy_m": (0, math.inf),
    "altitude_m": (-math.inf, math.inf),
}


def _check_geopoint(value: Any, path: str, error: ErrorSink) -> Any:
    if not isinstance(value, Mapping):
        error(path, f"must be an object {{lat, lon, accuracy_m?, altitude_m?}}, not {json_type(value)}")
        return INVALID
    problems = 0

    def count(where: str, message: str) -> None:
        nonlocal problems
        problems += 1
        error(where, message)

    for key in value:
        if key not in _GEOPOINT_LIMITS:
            count(_join(path, str(key)), "is not part of a geopoint (lat, lon, accuracy_m, altitude_m)")
    for key, (low, high) in _GEOPOINT_LIMITS.items():
        if key not in value:
            if key in ("lat", "lon"):
                count(_join(path, key), "is required")
            continue
        number = value[key]
        if not isinstance(number, int | float) or isinstance(number, bool) or not math.isfinite(number):
            count(_join(path, key), "must be a finite number")
        elif not low <= number <= high:
            count(_join(path, key), "cannot be negative" if math.isinf(high) else f"must be between {low} and {high}")
    return INVALID if problems else dict(value)


#: The longest attachment file name kept (file systems allow 255 bytes).
MAX_FILE_NAME = 255
_BAD_FILE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_file_name(value: Any) -> str | None:
    """Why `value` cannot be an attachment's file name (a name, never a path), or None."""
    if not isinstance(value, str):
        return f"must be the attachment's file name (a string), not {json_type(value)}"
    if not value or value.strip() != value:
        return "must be a file name without surrounding spaces"
    if len(value.encode("utf-8")) > MAX_FILE_NAME:
        return f"a file name is at most {MAX_FILE_NAME} bytes"
    if value in (".", "..") or _BAD_FILE_NAME.search(value):
        return "must be a file name, without '/', '\\' or control characters"
    return None


def _check_media(value: Any, path: str, error: ErrorSink) -> Any:
    problem = check_file_name(value)
    if problem:
        error(path, problem)
        return INVALID
    return value


def _check_calculate(value: Any, path: str, error: ErrorSink) -> Any:
    if isinstance(value, str):
        return _string(value, path, error)
    if isinstance(value, bool) or _finite_number(value):
        return value
    if isinstance(value, int | float):
        error(path, "must be a finite number that can be stored")
        return INVALID
    error(path, f"a calculated value must be a string, number or boolean, not {json_type(value)}")
    return INVALID


# ---------------------------------------------------------------------------
# Short paths: a well-formed answer normalised without the full check


def _short_text(value: Any) -> Any:
    if value.__class__ is str and len(value) <= MAX_STRING_LENGTH:
        return value
    return UNSURE


def _short_integer(value: Any) -> Any:
    if value.__class__ is int and -_INT64 <= value < _INT64:
        return value
    return UNSURE


def _short_decimal(value: Any) -> Any:
    kind = value.__class__
    if (kind is int and -_INT64 <= value < _INT64) or (kind is float and math.isfinite(value)):
        return value
    return UNSURE


def _short_date(value: Any) -> Any:
    if value.__class__ is str and _DATE.fullmatch(value):
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return UNSURE
        return value
    return UNSURE


def _short_datetime(value: Any) -> Any:
    if value.__class__ is str and len(value) <= MAX_STRING_LENGTH and _DATETIME.fullmatch(value):
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            return UNSURE
        return value
    return UNSURE


def _short_select_multiple(value: Any) -> Any:
    kind = value.__class__
    if kind is list:
        for item in value:
            if item.__class__ is not str or len(item) > MAX_STRING_LENGTH:
                return UNSURE
        return list(value)
    if kind is str and len(value) <= MAX_STRING_LENGTH:
        return value.split()
    return UNSURE


def _short_media(value: Any) -> Any:
    return value if value.__class__ is str and check_file_name(value) is None else UNSURE


def _short_note(value: Any) -> Any:
    return value if value.__class__ is str and value == "" else UNSURE


def _short_calculate(value: Any) -> Any:
    kind = value.__class__
    if (
        (kind is str and len(value) <= MAX_STRING_LENGTH)
        or kind is bool
        or (kind is int and -_INT64 <= value < _INT64)
        or (kind is float and math.isfinite(value))
    ):
        return value
    return UNSURE


def _short_geopoint(value: Any) -> Any:
    if value.__class__ is not dict or "lat" not in value or "lon" not in value:
        return UNSURE
    for key, number in value.items():
        limits = _GEOPOINT_LIMITS.get(key)
        kind = number.__class__
        # Ints only within 64 bits: the full check's isfinite() raises on huge ones.
        if limits is None or not (
            (kind is float and math.isfinite(number)) or (kind is int and -_INT64 <= number < _INT64)
        ):
            return UNSURE
        if not limits[0] <= number <= limits[1]:
            return UNSURE
    return dict(value)


# ---------------------------------------------------------------------------
# What expressions see


def _date_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return value
    return value


def _datetime_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


# ---------------------------------------------------------------------------
# Literal defaults (a default that is an expression is checked as one by the validator)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _scalar_default(value: Any, definition_field: Mapping[str, Any], choices: Mapping[Any, Any]) -> str | None:
    return None if _is_scalar(value) else "a default must be a string, number or boolean"


def _integer_default(value: Any, definition_field: Mapping[str, Any], choices: Mapping[Any, Any]) -> str | None:
    if not _is_scalar(value):
        return "a default must be a string, number or boolean"
    ok = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value) is not None
    )
    return None if ok else "must be a whole number"


def _decimal_default(value: Any, definition_field: Mapping[str, Any], choices: Mapping[Any, Any]) -> str | None:
    if not _is_scalar(value):
        return "a default must be a string, number or boolean"
    ok = (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, str) and not math.isnan(ex.to_number(value))
    )
    return None if ok else "must be a number"


def _date_default(kind: str) -> Callable[[Any, Mapping[str, Any], Mapping[Any, Any]], str | None]:
    def problem(value: Any, definition_field: Mapping[str, Any], choices: Mapping[Any, Any]) -> str | None:
        if not _is_scalar(value):
            return "a default must be a string, number or boolean"
        if not isinstance(value, str):
            return "must be an ISO-8601 date text"
        try:
            dt.date.fromisoformat(value) if kind == "date" else dt.datetime.fromisoformat(value)
        except ValueError:
            return "must be an ISO-8601 date (YYYY-MM-DD)" if kind == "date" else "must be an ISO-8601 date and time"
        return None

    return problem


def _media_default(value: Any, definition_field: Mapping[str, Any], choices: Mapping[Any, Any]) -> str | None:
    # An answer names a file the phone made; a default would name one nobody sent.
    return f"{definition_field['type']} questions take no default (the answer is a file the device sends)"


def _choice_default(value: Any, definition_field: Mapping[str, Any], choices: Mapping[Any, Any]) -> str | None:
    if definition_field["type"] == "select_multiple" and isinstance(value, list):
        # The same shape as its answers: a list of choice names.
        if not all(isinstance(item, str) for item in value):
            return "a select_multiple default must be a list of choice names"
        value = " ".join(value)
    if not _is_scalar(value):
        return "a default must be a string, number or boolean"
    if not isinstance(value, str):
        return "must be a choice name"
    list_name = definition_field.get("list")
    items = choices.get(list_name) if isinstance(list_name, str) else None
    names = {c.get("name") for c in items or () if isinstance(c, Mapping)}
    missing = [name for name in value.split() if name not in names]
    if missing:
        return f"{missing[0]!r} is not a choice of list {list_name!r}"
    return None


# ---------------------------------------------------------------------------
# Export cells


def _select_one_cells(value: Any, definition_field: Mapping[str, Any], how: Cells) -> tuple[Any, ...]:
    if value is None or how.choice_text is None:
        return (_json_cell(value),)
    return (how.choice_text(definition_field.get("list", ""), value),)


def _select_multiple_cells(value: Any, definition_field: Mapping[str, Any], how: Cells) -> tuple[Any, ...]:
    if value is None:
        return (None,)
    picked = value if isinstance(value, list) else [value]
    if how.choice_text is None:
        return (" ".join(str(v) for v in picked),)
    # Labels hold spaces, so they are joined with "; " where codes are joined with spaces;
    # a code not in the list (flagged unknown_choice) is shown as sent.
    choice_text, list_name = how.choice_text, definition_field.get("list", "")
    return ("; ".join(str(choice_text(list_name, v)) for v in picked),)


_GEOPOINT_COLUMNS = ("lat", "lon", "altitude_m", "accuracy_m")


def _geopoint_cells(value: Any, definition_field: Mapping[str, Any], how: Cells) -> tuple[Any, ...]:
    point = value if isinstance(value, Mapping) else {}
    return tuple(point.get(part) for part in _GEOPOINT_COLUMNS)


def _geopoint_property(value: Any, definition_field: Mapping[str, Any], how: Cells) -> Any:
    return value


def _media_cells(value: Any, definition_field: Mapping[str, Any], how: Cells) -> tuple[Any, ...]:
    if value is None or how.media is None or not isinstance(value, str):
        return (_json_cell(value),)
    return (how.media(value, definition_field),)


def media_type_matches(media_type: str, pattern: str) -> bool:
    """Whether `image/jpeg` matches `image/*`, `*/*` or itself (case-insensitive, parameters ignored)."""
    kind = media_type.split(";", 1)[0].strip().lower()
    pattern = pattern.strip().lower()
    if pattern in ("*/*", kind):
        return True
    return pattern.endswith("/*") and kind.startswith(pattern[:-1]) and "/" in kind


def _no_cells(value: Any, definition_field: Mapping[str, Any], how: Cells) -> tuple[Any, ...]:
    return ()


# ---------------------------------------------------------------------------
# The registry

#: The media kinds by type name: the files each takes unless a question's `accept` narrows them.
MEDIA_TYPES: dict[str, Media] = {
    "image": Media("image", ("image/*",)),
    "audio": Media("audio", ("audio/*",)),
    "video": Media("video", ("video/*",)),
    # A complaint's document may be a PDF, a scan or an office file: any file unless `accept` says.
    "file": Media("file", ("*/*",)),
}


def _media_type(name: str, expression_type: str = ex.STRING, **declared: Any) -> FieldType:
    return FieldType(
        name,
        expression_type,
        check=_check_media,
        short=_short_media,
        default_problem=_media_default,
        cells=_media_cells,
        saves_to_household=False,
        media=MEDIA_TYPES[name],
        **declared,
    )


_SELECT_PARAMETERS = {
    "randomize": Parameter("randomize", "boolean", "the device shows the choices in a random order"),
    "value": Parameter("value", "column", "the column of the choice file that holds the choice names"),
    "label": Parameter("label", "column", "the column of the choice file that holds the labels"),
}

_IDENTIFIERS = (
    IdentifierCheck("nik", check_nik, "invalid_nik"),
    IdentifierCheck("kk", check_kk, "invalid_kk"),
)

FIELD_TYPES: dict[str, FieldType] = {
    ftype.name: ftype
    for ftype in (
        FieldType(
            "text",
            ex.STRING,
            xlsform=("text", "string", "add text prompt", "q string"),
            xlsform_constrained={"phone number": r"regex(., '^\d*$')"},
            appearances={
                "nik": "the answer is a NIK: flagged invalid_nik when malformed",
                "kk": "the answer is a No. KK: flagged invalid_kk when malformed",
            },
            identifiers=_IDENTIFIERS,
            check=_check_text,
            short=_short_text,
            default_problem=_scalar_default,
        ),
        FieldType(
            "integer",
            ex.NUMBER,
            xlsform=("integer", "int", "add integer prompt", "q int"),
            xlsform_constrained={
                "percentage": "0 <= . and . <= 100",
                "number of days in last month": "0 <= . and . <= 31",
                "number of days in last six months": "0 <= . and . <= 183",
                "number of days in last year": "0 <= . and . <= 365",
            },
            check=_check_integer,
            short=_short_integer,
            default_problem=_integer_default,
        ),
        FieldType(
            "decimal",
            ex.NUMBER,
            xlsform=("decimal", "add decimal prompt", "q decimal"),
            check=_check_decimal,
            short=_short_decimal,
            default_problem=_decimal_default,
        ),
        FieldType(
            "date",
            ex.DATE,
            xlsform=("date", "add date prompt", "q date"),
            check=_check_date,
            short=_short_date,
            to_expression=_date_value,
            default_problem=_date_default("date"),
        ),
        FieldType(
            "datetime",
            ex.DATETIME,
            xlsform=("datetime", "date time", "add datetime prompt", "add date time prompt", "q datetime",
                     "q date time"),
            check=_check_datetime,
            short=_short_datetime,
            to_expression=_datetime_value,
            default_problem=_date_default("datetime"),
        ),
        FieldType(
            "select_one",
            ex.STRING,
            xlsform_list_commands=("select_one", "select one", "select one from", "select1", "select one using",
                                   "add select one prompt using", "q select1"),
            parameters=_SELECT_PARAMETERS,
            check=_check_select_one,
            short=_short_text,
            default_problem=_choice_default,
            cells=_select_one_cells,
            takes_list=True,
        ),
        FieldType(
            "select_multiple",
            ex.SELECT_MULTIPLE,
            xlsform_list_commands=("select_multiple", "select multiple", "select all that apply",
                                   "select all that apply from", "select multiple from", "select multiple using",
                                   "add select multiple prompt using", "q select"),
            parameters=_SELECT_PARAMETERS,
            check=_check_select_multiple,
            short=_short_select_multiple,
            default_problem=_choice_default,
            cells=_select_multiple_cells,
            takes_list=True,
        ),
        FieldType(
            "geopoint",
            ex.GEOPOINT,
            xlsform=("geopoint", "gps", "location", "add location prompt", "q geopoint", "q location"),
            parameters={
                "capture-accuracy": Parameter("capture-accuracy", "number",
                                              "metres: the device records the point once it is this accurate"),
                "warning-accuracy": Parameter("warning-accuracy", "number",
                                              "metres: the device warns while the fix is less accurate"),
            },
            check=_check_geopoint,
            short=_short_geopoint,
            default_problem=_scalar_default,
            columns=_GEOPOINT_COLUMNS,
            cells=_geopoint_cells,
            geojson=_geopoint_property,
        ),
        _media_type(
            "image",
            xlsform=("image", "photo", "add image prompt", "add photo prompt", "q picture", "q image"),
            appearances={
                "signature": "the image is a signature drawn on the screen",
                "draw": "the image is drawn on the screen",
                "annotate": "the image is a photo or picture drawn on",
            },
            parameters={
                "max-pixels": Parameter("max-pixels", "integer",
                                        "the device scales the image down to at most this many pixels "
                                        "on its longer side"),
            },
        ),
        _media_type(
            "audio",
            xlsform=("audio", "add audio prompt", "q audio"),
            parameters={
                "quality": Parameter("quality", "choice", "the recording quality the device uses",
                                     ("voice-only", "low", "normal", "external")),
            },
        ),
        _media_type("video", xlsform=("video", "add video prompt", "q video")),
        _media_type("file", xlsform=("file", "add file prompt")),
        FieldType(
            "note",
            ex.STRING,
            xlsform=("note", "add note prompt", "q note"),
            check=_check_note,
            short=_short_note,
            default_problem=_scalar_default,
            requirable=False,
            saves_to_household=False,
            exported=False,
            cells=_no_cells,
        ),
        FieldType(
            "calculate",
            ex.ANY,
            xlsform=("calculate", "add calculate prompt", "q calculate"),
            check=_check_calculate,
            short=_short_calculate,
            default_problem=_scalar_default,
            label_required=False,
            needs_calculation=True,
            requirable=False,
        ),
        # Containers: a group's fields are answered by their own names; a repeat's answer is its rows,
        # checked by forms.answers, and only the household roster (save_to "members") saves one.
        FieldType("group", ex.ANY, label_required=False, saves_to_household=False, exported=False,
                  requirable=False, cells=_no_cells),
        FieldType("repeat", ex.REPEAT, label_required=False, saves_to_household=False, exported=False,
                  requirable=False, cells=_no_cells),
    )
}


def field_type(name: str) -> FieldType:
    """The type called `name`; KeyError for an unknown one."""
    return FIELD_TYPES[name]


def xlsform_names() -> dict[str, tuple[FieldType, str | None]]:
    """Every XLSForm question name (lower case) of a type without a list: the type and the constraint it adds."""
    names: dict[str, tuple[FieldType, str | None]] = {}
    for ftype in FIELD_TYPES.values():
        for alias in ftype.xlsform:
            names[alias] = (ftype, None)
        for alias, constraint in ftype.xlsform_constrained.items():
            names[alias] = (ftype, constraint)
    return names
