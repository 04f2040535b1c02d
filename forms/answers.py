"""Checking a visit's answers against its form definition: what to reject, what to flag, what the visit saves."""

# Field data cannot be collected twice: a household visited on foot may not be
# reachable again. So answers are rejected only when they cannot be stored safely
# or understood (wrong JSON shapes, unknown keys, keys MongoDB cannot hold); every
# judgement about the content (a failed constraint, a missing required answer, a
# choice not in the list) becomes a flag for the supervisor and the data is kept.

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from forms.definition import ROSTER, SELECT_TYPES, Definition, FieldRef
from forms.expressions import Context, ExpressionError, parse, truthy
from forms.identifiers import check_kk, check_nik

__all__ = ["MAX_STRING_LENGTH", "AnswerReport", "household_writes", "validate_answers"]

MAX_STRING_LENGTH = 10_000
# MongoDB stores integers as signed 64-bit; a bigger one would be silently turned into a double.
_INT64 = 2**63
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}.*", re.DOTALL)
_GEOPOINT_KEYS = frozenset({"lat", "lon", "accuracy_m", "altitude_m"})
_INVALID = object()


@dataclass
class AnswerReport:
    """The verdict on a visit's answers.

    `errors` (path -> messages) make the visit unacceptable; `flags` are kept with
    an accepted visit for review: `{"code", "path", "message", ...}`. `answers` is
    the normalised copy to store (a select_multiple as a list, whole-number
    integers as ints). The root path is "".
    """

    errors: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    flags: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    answers: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def _error(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def _flag(self, code: str, path: str, message: str, **extra: Any) -> None:
        self.flags.append({"code": code, "path": path, "message": message, **extra})


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether JSON nests deeper than `limit`, checked without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
    return False


# ---------------------------------------------------------------------------
# Shapes: what must be rejected


def _check_key(key: Any, path: str, report: AnswerReport) -> bool:
    if not isinstance(key, str):
        report._error(path, "field names must be strings")
        return False
    if key.startswith("$"):
        report._error(path, "field names cannot start with '$'")
        return False
    if "." in key or "\x00" in key:
        report._error(path, "field names cannot contain '.' or NUL")
        return False
    return True


def _string(value: Any, path: str, report: AnswerReport, what: str = "text") -> Any:
    if not isinstance(value, str):
        report._error(path, f"must be {what} (a JSON string), not {_json_type(value)}")
        return _INVALID
    if len(value) > MAX_STRING_LENGTH:
        report._error(path, f"is longer than {MAX_STRING_LENGTH} characters")
        return _INVALID
    return value


def _json_type(value: Any) -> str:
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


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    return isinstance(value, float) and math.isfinite(value)


def _check_value(ref: FieldRef, value: Any, path: str, report: AnswerReport, definition: Definition) -> Any:
    """The normalised answer, or _INVALID after recording why it cannot be stored."""
    kind = ref.type
    if value is None:
        return None
    if kind == "note":
        if value != "":
            report._error(path, "a note takes no answer")
            return _INVALID
        return value
    if kind == "text":
        return _string(value, path, report)
    if kind == "integer":
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            report._error(path, f"must be a whole number, not {_json_type(value)}")
            return _INVALID
        if not _finite_number(value):
            report._error(path, "is too large to store")
            return _INVALID
        return value
    if kind == "decimal":
        if not isinstance(value, int | float) or isinstance(value, bool):
            report._error(path, f"must be a number, not {_json_type(value)}")
            return _INVALID
        if not _finite_number(value):
            report._error(path, "must be a finite number that can be stored")
            return _INVALID
        return value
    if kind == "date":
        if _string(value, path, report, "a date text YYYY-MM-DD") is _INVALID:
            return _INVALID
        try:
            if not _DATE.fullmatch(value):
                raise ValueError
            dt.date.fromisoformat(value)
        except ValueError:
            report._error(path, "must be a date YYYY-MM-DD")
            return _INVALID
        return value
    if kind == "datetime":
        if _string(value, path, report, "an ISO-8601 date and time") is _INVALID:
            return _INVALID
        try:
            if not _DATETIME.fullmatch(value):
                raise ValueError
            dt.datetime.fromisoformat(value)
        except ValueError:
            report._error(path, "must be an ISO-8601 date and time, like 2025-01-31T09:30:00+07:00")
            return _INVALID
        return value
    if kind == "select_one":
        return _string(value, path, report, "a choice name")
    if kind == "select_multiple":
        return _check_select_multiple(value, path, report)
    if kind == "geopoint":
        return _check_geopoint(value, path, report)
    if kind == "calculate":
        if isinstance(value, str):
            return _string(value, path, report)
        if isinstance(value, bool) or _finite_number(value):
            return value
        if isinstance(value, int | float):
            report._error(path, "must be a finite number that can be stored")
            return _INVALID
        report._error(path, f"a calculated value must be a string, number or boolean, not {_json_type(value)}")
        return _INVALID
    if kind == "repeat":
        return _check_rows(ref, value, path, report, definition)
    report._error(path, f"a {kind} takes no answer")  # pragma: no cover - groups are refused by the caller
    return _INVALID  # pragma: no cover


def _check_select_multiple(value: Any, path: str, report: AnswerReport) -> Any:
    if isinstance(value, str):
        # ODK sends the chosen names separated by spaces.
        if _string(value, path, report) is _INVALID:
            return _INVALID
        return value.split()
    if not isinstance(value, list):
        report._error(path, f"must be a list of choice names, not {_json_type(value)}")
        return _INVALID
    ok = True
    for index, item in enumerate(value):
        if _string(item, f"{path}[{index}]", report, "a choice name") is _INVALID:
            ok = False
    return list(value) if ok else _INVALID


def _check_geopoint(value: Any, path: str, report: AnswerReport) -> Any:
    if not isinstance(value, Mapping):
        report._error(path, f"must be an object {{lat, lon, accuracy_m?, altitude_m?}}, not {_json_type(value)}")
        return _INVALID
    before = len(report.errors)
    for key in value:
        if key not in _GEOPOINT_KEYS:
            report._error(_join(path, str(key)), "is not part of a geopoint (lat, lon, accuracy_m, altitude_m)")
    limits = {"lat": (-90, 90), "lon": (-180, 180), "accuracy_m": (0, math.inf), "altitude_m": (-math.inf, math.inf)}
    for key, (low, high) in limits.items():
        if key not in value:
            if key in ("lat", "lon"):
                report._error(_join(path, key), "is required")
            continue
        number = value[key]
        if not isinstance(number, int | float) or isinstance(number, bool) or not math.isfinite(number):
            report._error(_join(path, key), "must be a finite number")
        elif not low <= number <= high:
            report._error(
                _join(path, key), "cannot be negative" if math.isinf(high) else f"must be between {low} and {high}"
            )
    return _INVALID if len(report.errors) > before else dict(value)


def _check_rows(ref: FieldRef, value: Any, path: str, report: AnswerReport, definition: Definition) -> Any:
    if not isinstance(value, list):
        report._error(path, f"a repeat must be a list of rows, not {_json_type(value)}")
        return _INVALID
    rows = []
    seen: dict[str, int] = {}
    ok = True
    for index, row in enumerate(value):
        row_path = f"{path}[{index}]"
        if not isinstance(row, Mapping):
            report._error(row_path, f"a repeat row must be an object, not {_json_type(row)}")
            ok = False
            continue
        row_id = row.get("_id")
        if not isinstance(row_id, str) or not _UUID.fullmatch(row_id):
            report._error(
                f"{row_path}._id", "every row needs an _id: a lowercase UUID like 0b0f6b1e-8a3e-4b53-9d3b-1f8f0a3b2c01"
            )
            ok = False
        elif row_id in seen:
            report._error(f"{row_path}._id", f"the same _id as row {seen[row_id]}")
            ok = False
        else:
            seen[row_id] = index
        normalised = _check_scope(definition, row, ref.name, row_path, report)
        if normalised is _INVALID:
            ok = False
        else:
            rows.append(normalised)
    return rows if ok else _INVALID


def _check_scope(
    definition: Definition, values: Mapping[str, Any], repeat: str | None, prefix: str, report: AnswerReport
) -> Any:
    allowed = {ref.name: ref for ref in definition.answer_fields(repeat)}
    normalised: dict[str, Any] = {}
    ok = True
    for key, value in values.items():
        path = _join(prefix, str(key))
        if repeat is not None and key == "_id":
            normalised[key] = value
            continue
        if not _check_key(key, path, report):
            ok = False
            continue
        ref = allowed.get(key)
        if ref is None:
            report._error(path, _misplaced(definition, key, repeat))
            ok = False
            continue
        checked = _check_value(ref, value, path, report, definition)
        if checked is _INVALID:
            ok = False
        else:
            normalised[key] = checked
    return normalised if ok else _INVALID


def _misplaced(definition: Definition, key: str, repeat: str | None) -> str:
    ref = definition.ref(key)
    if ref is None:
        return f"not a field of form {definition.form_id!r} version {definition.version!r}"
    if ref.type == "group":
        return "is a group; answer its fields by their own names"
    if ref.repeat is not None:
        return f"belongs in the rows of repeat {ref.repeat!r}"
    return f"is not a field of repeat {repeat!r}; answer it at the top level"


# ---------------------------------------------------------------------------
# Content: what to flag


def _expression_value(ref_type: str, value: Any) -> Any:
    """An answer as the expressions see it: dates as dates, so they compare and subtract."""
    if isinstance(value, str):
        try:
            if ref_type == "date":
                return dt.date.fromisoformat(value)
            if ref_type == "datetime":
                return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _expression_values(definition: Definition, values: Mapping[str, Any], repeat: str | None) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for ref in definition.answer_fields(repeat):
        if ref.name not in values:
            continue
        value = values[ref.name]
        if ref.type == "repeat" and isinstance(value, list):
            converted[ref.name] = [
                {"_id": row.get("_id"), **_expression_values(definition, row, ref.name)} for row in value
            ]
        else:
            converted[ref.name] = _expression_value(ref.type, value)
    return converted


class _Flagger:
    def __init__(self, definition: Definition, report: AnswerReport) -> None:
        self.definition = definition
        self.report = report

    def evaluate(self, field: Mapping[str, Any], key: str, ctx: Context, path: str) -> Any:
        """The expression's value, or None (after a flag) when it cannot be evaluated."""
        try:
            return parse(field[key]).evaluate(ctx)
        except ExpressionError as exc:
            self.report._flag("expression_error", path, f"the form's {key} could not be evaluated: {exc.message}")
            return None

    def is_true(self, field: Mapping[str, Any], key: str, ctx: Context, path: str, default: bool) -> bool:
        if not isinstance(field.get(key), str):
            return default
        result = self.evaluate(field, key, ctx, path)
        return default if result is None else truthy(result)

    def walk(
        self,
        fields: list[Mapping[str, Any]],
        values: Mapping[str, Any],
        expression_values: Mapping[str, Any],
        ctx: Context,
        prefix: str,
        relevant: bool,
    ) -> None:
        for field in fields:
            name, kind = field["name"], field["type"]
            path = _join(prefix, name)
            if kind == "group":
                here = relevant and self.is_true(field, "relevant", ctx, path, True)
                self.walk(field["fields"], values, expression_values, ctx, prefix, here)
                continue
            if kind == "repeat":
                rows = values.get(name) or []
                expression_rows = expression_values.get(name) or []
                for index, (row, expression_row) in enumerate(zip(rows, expression_rows, strict=True)):
                    row_ctx = ctx.with_row(name, expression_row)
                    row_path = f"{path}[{index}]"
                    here = relevant and self.is_true(field, "relevant", row_ctx, row_path, True)
                    self.walk(field["fields"], row, expression_row, row_ctx, row_path, here)
                continue
            if not relevant or not self.is_true(field, "relevant", ctx, path, True):
                continue
            value = values.get(name)
            if _is_empty(value):
                if field.get("required") is True and kind not in ("calculate", "note"):
                    self.report._flag("required_missing", path, "a required question was not answered")
                continue
            field_ctx = ctx.replace(current=expression_values.get(name))
            if kind in SELECT_TYPES:
                self.check_choices(field, value, field_ctx, path)
            if isinstance(field.get("constraint"), str):
                result = self.evaluate(field, "constraint", field_ctx, path)
                if result is not None and not truthy(result):
                    self.constraint_failed(field, path)
            if kind == "text":
                self.check_identifier(field, value, path)

    def check_choices(self, field: Mapping[str, Any], value: Any, ctx: Context, path: str) -> None:
        choices = {choice["name"]: choice for choice in self.definition.choices.get(field["list"], ())}
        chosen = value if isinstance(value, list) else [value]
        for name in chosen:
            choice = choices.get(name)
            if choice is None:
                self.report._flag(
                    "unknown_choice", path, f"{name!r} is not a choice of list {field['list']!r}", value=name
                )
                continue
            if isinstance(field.get("choice_filter"), str):
                kept = self.evaluate(field, "choice_filter", ctx.replace(choice=choice), path)
                if kept is not None and not truthy(kept):
                    self.report._flag(
                        "unknown_choice",
                        path,
                        f"{name!r} is not offered here: the form's choice filter leaves it out",
                        value=name,
                    )

    def constraint_failed(self, field: Mapping[str, Any], path: str) -> None:
        message = field.get("constraint_message")
        extra = {"constraint_message": dict(message)} if isinstance(message, Mapping) else {}
        text = "the answer does not meet the form's constraint"
        if extra:
            text = f"{text}: {message.get('en') or message.get('id')}"
        self.report._flag("constraint_failed", path, text, constraint=field["constraint"], **extra)

    def check_identifier(self, field: Mapping[str, Any], value: Any, path: str) -> None:
        # A text field declares itself a NIK or No. KK with an appearance token.
        tokens = str(field.get("appearance") or "").split()
        for token, check, code in (("nik", check_nik, "invalid_nik"), ("kk", check_kk, "invalid_kk")):
            if token in tokens:
                problems = check(value)
                if problems:
                    self.report._flag(code, path, "; ".join(problems))


def validate_answers(definition: Definition, answers: Any, *, today: dt.date | None = None) -> AnswerReport:
    """Checks a visit's answers: errors when they cannot be stored or understood, flags for review.

    Answer keys are field names (a group's fields are answered at the top level by
    their own names); a repeat is a list of rows `{"_id": "<uuid>", "<child>": value}`.
    Flags are computed only for answers without errors. `today` fixes today() for tests.
    """
    report = AnswerReport()
    if not isinstance(answers, Mapping):
        report._error("", f"answers must be an object, not {_json_type(answers)}")
        return report
    repeat_depth = max((len(ref.repeats) for ref in definition.iter_fields()), default=0)
    # Each repeat level adds a list and a row object; a geopoint or a selection adds one more.
    limit = 2 * repeat_depth + 2
    if _nesting_exceeds(answers, limit):
        report._error("", f"answers are nested more than {limit} levels deep; the form does not nest that far")
        return report
    normalised = _check_scope(definition, answers, None, "", report)
    if report.errors or normalised is _INVALID:
        return report
    report.answers = normalised
    expression_values = _expression_values(definition, normalised, None)
    ctx = Context(expression_values, repeat_of=definition.repeat_map, today=today)
    _Flagger(definition, report).walk(definition.data["fields"], normalised, expression_values, ctx, "", True)
    return report


def household_writes(definition: Definition, answers: Mapping[str, Any]) -> dict[str, Any]:
    """The household field writes a visit makes through save_to, for answered fields only.

    Top-level `save_to: "head_name"` gives `{"head_name": value}`; a roster row's
    `save_to: "name"` gives `{"members/<row _id>/name": value}`.
    """
    writes: dict[str, Any] = {}
    if not isinstance(answers, Mapping):
        return writes
    scratch = AnswerReport()
    for ref in definition.iter_fields():
        target = ref.field.get("save_to")
        if not isinstance(target, str) or ref.type in ("repeat", "group", "note"):
            continue
        if ref.repeat is None:
            sources = [(target, answers.get(ref.name))]
        elif len(ref.repeats) == 1:
            rows = answers.get(ref.repeat)
            sources = [
                (f"{ROSTER}/{row['_id']}/{target}", row.get(ref.name))
                for row in (rows if isinstance(rows, list) else [])
                if isinstance(row, Mapping) and isinstance(row.get("_id"), str) and _UUID.fullmatch(row["_id"])
            ]
        else:
            continue
        for path, value in sources:
            if _is_empty(value):
                continue
            checked = _check_value(ref, value, path, scratch, definition)
            if checked is not _INVALID and not _is_empty(checked):
                writes[path] = checked
    return writes
