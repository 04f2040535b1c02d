"""Equivalence of the fast paths with the plain ones: compiled expressions, answer short paths, the flag walk."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_evaluator import interpret
from test_library import TODAY as LIBRARY_TODAY
from test_library import definition, household_visit

from forms import answers as answers_module
from forms.answers import AnswerReport, household_writes, validate_answers
from forms.definition import ROSTER, SELECT_TYPES, Definition, validate_definition
from forms.expressions import FUNCTIONS, Context, ExpressionError, NodeSet, parse, truthy
from forms.identifiers import check_kk, check_nik

TODAY = dt.date(2025, 3, 14)
NOW = dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.UTC)


def _outcome(evaluate: Any) -> tuple[Any, ...]:
    """What an evaluation gives, comparable across evaluators: the value with its type, or the error."""
    try:
        value = evaluate()
    except ExpressionError as exc:
        return ("error", exc.message, exc.position)
    except Exception as exc:  # noqa: BLE001 - any other failure must be the same too
        return ("raised", type(exc).__name__, str(exc))
    return ("value", type(value).__name__, repr(value))


# ---------------------------------------------------------------------------
# Compiled expressions against the tree-walking evaluator

_ATOMS = st.sampled_from(
    ["${a}", "${b}", "${d}", "${rows}", "${rv}", ".", "1", "0", "2.5", "-1", "'x'", "''", "'1'", "'a b'",
     "'2024-01-02'", "'2024-01-02T10:00:00'", "'%Y-%m-%d %a'", "kec", "n"]
)  # fmt: skip
_OPERATORS = st.sampled_from(["+", "-", "*", "div", "mod", "=", "!=", "<", "<=", ">", ">=", "and", "or"])
# uuid() differs at every call, so no two evaluations can agree on it.
_CALLABLE = sorted(name for name in FUNCTIONS if name != "uuid")


def _call(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def arguments(name: str) -> st.SearchStrategy[str]:
        fn = FUNCTIONS[name]
        most = fn.max_args if fn.max_args is not None else fn.min_args + 2
        return st.lists(inner, min_size=fn.min_args, max_size=most).map(lambda args: f"{name}({', '.join(args)})")

    return st.sampled_from(_CALLABLE).flatmap(arguments)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(inner, _OPERATORS, inner, st.booleans()).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})" if t[3] else f"{t[0]} {t[1]} {t[2]}"
    )
    # The compiled form specialises comparisons with a literal and regex() with a literal pattern.
    with_literal = st.tuples(inner, _OPERATORS, st.sampled_from(["'1'", "'b'", "''", "'2024-01-02'", "1", "2.5"])).map(
        " ".join
    )
    literal_regex = st.tuples(inner, st.sampled_from(["'^a'", "'[0-9]+$'", "'^(x|y)?$'"])).map(
        lambda t: f"regex({t[0]}, {t[1]})"
    )
    return binary | with_literal | _call(inner) | binary | inner.map(lambda e: f"-{e}") | literal_regex


_EXPRESSIONS = st.recursive(_ATOMS, _extend, max_leaves=10)
_VALUES = st.sampled_from(
    [None, "", "3", "abc", "a", "1", "1 2", "2024-01-01", "2024-01-01T08:00:00+07:00", 3, 3.5, -0.0, 0, 10**400,
     float("nan"), float("inf"), True, False, ["1", "2"], [], dt.date(2024, 1, 2),
     dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC), {"lat": -6.9, "lon": 107.6}, {"accuracy_m": 3},
     [{"_id": "r", "rv": "1"}], "3204056107850001", "3204050101200001"]
)  # fmt: skip
_CHOICES = st.sampled_from([None, {"name": "a", "kec": "1", "n": 2}, {"name": "b", "kec": 1.0, "n": "x"}])


@st.composite
def _contexts(draw: st.DrawFn) -> Context:
    rows = [{"_id": f"r{index}", "rv": draw(_VALUES)} for index in range(draw(st.integers(0, 3)))]
    values = {"a": draw(_VALUES), "b": draw(_VALUES), "d": draw(_VALUES), "rows": rows}
    in_row = rows and draw(st.booleans())
    return Context(
        values,
        current=draw(_VALUES),
        rows=[("rows", rows[0])] if in_row else [],
        repeat_of={"a": None, "b": None, "d": None, "rows": None, "rv": "rows"},
        choice=draw(_CHOICES),
        today=TODAY,
        now=NOW,
    )


@settings(max_examples=1000, deadline=None)
@given(_EXPRESSIONS, _contexts())
def test_compiled_expressions_evaluate_as_the_tree_walker_does(text, context):
    try:
        expression = parse(text)
    except ExpressionError:
        return
    compiled = _outcome(lambda: expression.evaluate(context))
    assert compiled == _outcome(lambda: interpret(expression, context)), text


@pytest.mark.parametrize(
    "text",
    [
        "${a} = '1' or ${a} = '5'",
        "${a} < 'b' or ${a} >= '2024-01-01' or ${a} = 1",
        "string-length(${a}) and ${b} or sum(${rv})",
        "not(${a}) or not(string-length(${b})) or not(${a} = 1)",
        "if(string-length(${a}), 'yes', 'no') = if(${a} = 1, 'yes', 'no')",
        ". >= 1 and . <= 40",
        ". <= today()",
        "${a} = ${b}",
        "${a} < ${b}",
        "${a} != 3",
        "not(selected(., '0') and count-selected(.) > 1)",
        "if(${a}, ${b}, 'no')",
        "coalesce(${a}, ${b}, 'none')",
        "once(${a})",
        "regex(., '^[0-9]{4}$')",
        "regex(., ${b})",
        "kec = ${a}",
        "${rv} = '1'",
        "count(${rows}) + sum(${rv})",
        "${a} * 2 div ${b} mod 3 - -${b}",
        "valid-nik(.) and valid-kk(${b})",
    ],
)
@pytest.mark.parametrize(
    ("a", "b", "current"),
    [
        ("1", "1", "1"),
        ("5", 5, 4),
        (7, 3.0, 41.0),
        ("", None, ""),
        (dt.date(2024, 1, 1), "2024-01-01", dt.date(2030, 1, 1)),
        (True, "x", ["0", "1"]),
        (float("nan"), float("nan"), "1 0"),
        ("3204056107850001", "3204050101200001", "0123"),
    ],
)
def test_compiled_fast_paths_agree_on_the_usual_values(text, a, b, current):
    expression = parse(text)
    rows = [{"_id": "r0", "rv": "1"}, {"_id": "r1", "rv": 2}]
    contexts = [
        Context(
            {"a": a, "b": b, "rows": rows},
            current=current,
            rows=[("rows", rows[1])] if in_row else [],
            repeat_of={"a": None, "b": None, "rows": None, "rv": "rows"},
            choice=choice,
            today=TODAY,
        )
        for in_row in (False, True)
        for choice in (None, {"kec": "1"})
    ]
    for context in contexts:
        compiled = _outcome(lambda context=context: expression.evaluate(context))
        assert compiled == _outcome(lambda context=context: interpret(expression, context))


def test_boolean_functions_return_python_bools():
    # The compiled and/or/not/if skip truthy() on values these functions give.
    samples = ["", "1", "abc", 0.0, 2.0, True, NodeSet(["x"])]
    for name, fn in FUNCTIONS.items():
        if fn.returns != "boolean" or fn.lazy:
            continue
        for value in samples:
            args = [value] * fn.min_args
            assert type(fn.impl(Context(), args)) is bool, name


# ---------------------------------------------------------------------------
# The flag walk against a plain reference: the straightforward walk the fast one replaced

FORM: dict[str, Any] = {
    "settings": {"form_id": "equivalence", "version": "1", "title": {"id": "Uji"}, "default_language": "id"},
    "choices": {
        "yn": [{"name": "1", "label": {"id": "Ya"}, "grp": "a"}, {"name": "2", "label": {"id": "Tidak"}, "grp": "b"}],
        "abc": [
            {"name": "a", "label": {"id": "A"}, "n": 1},
            {"name": "b", "label": {"id": "B"}, "n": 2},
            {"name": "c", "label": {"id": "C"}, "n": 3},
        ],
    },
    "fields": [
        {"type": "date", "name": "d", "label": {"id": "D"}, "required": True,
         "constraint": ". <= today() and . > '2000-01-01'"},
        {"type": "datetime", "name": "t", "label": {"id": "T"}, "relevant": "${d} != ''",
         "constraint": "decimal-date-time(.) > 0"},
        {"type": "integer", "name": "n", "label": {"id": "N"}, "save_to": "n", "constraint": ". >= 0 and . <= 40",
         "constraint_message": {"id": "N salah", "en": "Wrong N"}},
        {"type": "decimal", "name": "x", "label": {"id": "X"}, "save_to": "x",
         "constraint": ". div ${n} < 10 and . mod 2 != 1"},
        {"type": "select_one", "name": "s", "label": {"id": "S"}, "list": "yn", "required": True, "save_to": "s",
         "choice_filter": "grp = 'a' or ${n} > 3"},
        {"type": "select_multiple", "name": "m", "label": {"id": "M"}, "list": "abc", "save_to": "m",
         "choice_filter": "n <= ${n}", "constraint": "not(selected(., 'a') and count-selected(.) > 1)"},
        {"type": "select_one", "name": "plain", "label": {"id": "P"}, "list": "abc", "required": True},
        {"type": "select_multiple", "name": "plains", "label": {"id": "PS"}, "list": "abc"},
        {"type": "geopoint", "name": "g", "label": {"id": "G"}, "save_to": "g", "constraint": "string-length(.) > 5"},
        {"type": "calculate", "name": "c", "calculation": "1 + 1", "constraint": ". != 'bad'", "save_to": "c"},
        {"type": "text", "name": "nik", "label": {"id": "NIK"}, "appearance": "numbers nik", "save_to": "nik",
         "constraint": "valid-nik(.)"},
        {"type": "text", "name": "kk", "label": {"id": "KK"}, "appearance": "kk", "required": True},
        {"type": "text", "name": "e1", "label": {"id": "E1"}, "relevant": "date(${kk}) > 0", "required": True},
        {"type": "text", "name": "e2", "label": {"id": "E2"}, "relevant": "date(${kk}) > 0"},
        {"type": "text", "name": "e3", "label": {"id": "E3"}, "relevant": "${d} < today()", "required": True},
        {"type": "group", "name": "grp", "label": {"id": "G"}, "relevant": "${s} = '1' or count(${rows}) >= ${n}",
         "fields": [
             {"type": "text", "name": "gt", "label": {"id": "GT"}, "required": True,
              "constraint": "regex(., concat('^', ${kk}))"},
             {"type": "group", "name": "inner", "label": {"id": "I"}, "relevant": "${s} = '1'", "fields": [
                 {"type": "note", "name": "nt", "label": {"id": "Catatan"}, "relevant": "${s} = '1'"},
                 {"type": "text", "name": "it", "label": {"id": "IT"}, "relevant": "${s} = '1'", "required": True},
             ]},
         ]},
        {"type": "repeat", "name": "rows", "label": {"id": "R"}, "save_to": "members", "relevant": "${rv} != 'skip'",
         "fields": [
             {"type": "text", "name": "rv", "label": {"id": "RV"}, "save_to": "rv", "required": True,
              "constraint": "${rv} != ${gt}"},
             {"type": "integer", "name": "age", "label": {"id": "A"}, "relevant": "${rv} != 'noage'",
              "constraint": ". >= 0 and . < sum(${age}) + 1", "save_to": "age"},
             {"type": "date", "name": "born", "label": {"id": "B"}, "constraint": ". < ${d}", "save_to": "born"},
             {"type": "select_one", "name": "rs", "label": {"id": "RS"}, "list": "abc", "save_to": "rs",
              "relevant": "${rv} != 'noage'", "choice_filter": "n < ${age} or date(${rv}) = 1"},
             {"type": "select_one", "name": "rp", "label": {"id": "RP"}, "list": "yn", "required": True,
              "relevant": "${rv} != 'noage'"},
             {"type": "geopoint", "name": "loc", "label": {"id": "L"}, "save_to": "loc", "relevant": "date(${rv}) > 0"},
             {"type": "group", "name": "rg", "label": {"id": "RG"}, "relevant": "${age} > 3", "fields": [
                 {"type": "text", "name": "rgt", "label": {"id": "RGT"}, "required": True,
                  "constraint": "format-date(${born}, '%Y') = '2000'"},
             ]},
             {"type": "repeat", "name": "sub", "label": {"id": "Sub"}, "relevant": "${age} != 9", "fields": [
                 {"type": "text", "name": "sv", "label": {"id": "SV"}, "required": True,
                  "constraint": "${sv} != ${rv} and count(${sub}) < 3"},
                 {"type": "integer", "name": "sn", "label": {"id": "SN"}, "relevant": "${sv} != ''",
                  "constraint": ". < ${age} and max(${sn}) < 100"},
             ]},
         ]},
    ],
}  # fmt: skip


def _row_id(index: int) -> str:
    return f"{index:08x}-8a3e-4b53-9d3b-1f8f0a3b2c01"


_TEXTS = st.sampled_from(["abc", "z", "skip", "noage", "2024-01-01", "3204056107850001", "3204050101200001", "0", ""])
_ANSWERS = {
    "date": st.sampled_from(["2024-01-01", "1999-12-31", "2030-01-01", "2025-03-14", "2000-06-01"]),
    "datetime": st.sampled_from(["2024-01-01T10:00:00", "2024-01-01T10:00:00+07:00", "1960-01-01 00:00"]),
    "integer": st.sampled_from([0, 1, 3, 4, 9, 40, 41, 99, -1]),
    "decimal": st.sampled_from([0, 0.5, 3.25, 7, -1.5, 1e6]),
    "text": _TEXTS,
    "select_one": st.sampled_from(["1", "2", "a", "b", "c", "9", ""]),
    "select_multiple": st.lists(st.sampled_from(["a", "b", "c", "1", "x"]), max_size=3) | st.just("a c"),
    "geopoint": st.sampled_from([{"lat": -6.9, "lon": 107.6}, {"lat": 1, "lon": 2, "accuracy_m": 5}]),
    "calculate": st.sampled_from(["bad", 2, 2.5, True, ""]),
    "note": st.just(""),
}


@st.composite
def _scope_answers(draw: st.DrawFn, definition: Definition, repeat: str | None, depth: int = 0) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for ref in definition.answer_fields(repeat):
        if not draw(st.integers(0, 5)):
            continue  # unanswered
        if ref.type == "repeat":
            count = draw(st.integers(0, 3 - depth))
            answers[ref.name] = [
                {"_id": _row_id(10 * depth + index), **draw(_scope_answers(definition, ref.name, depth + 1))}
                for index in range(count)
            ]
        else:
            answers[ref.name] = draw(st.none() | _ANSWERS[ref.type])
    return answers


_DEFINITION = validate_definition(FORM)


@settings(max_examples=300, deadline=None)
@given(_scope_answers(_DEFINITION, None))
def test_flags_and_kept_answers_are_those_of_the_plain_walk(answers):
    report = validate_answers(_DEFINITION, copy.deepcopy(answers), today=TODAY)
    assert report.errors == {}
    flags, kept = _reference_flags(_DEFINITION, _normalised(_DEFINITION, answers), TODAY)
    assert report.flags == flags
    assert report.answers == kept
    assert household_writes(_DEFINITION, report) == _reference_writes(_DEFINITION, kept)
    assert household_writes(_DEFINITION, answers, today=TODAY) == _reference_writes(_DEFINITION, kept)


@pytest.mark.parametrize("visit", ["household", "refused", "wrong"])
def test_the_shipped_household_form_flags_as_the_plain_walk_does(visit):
    household = definition("verval_keluarga")
    answers = household_visit()
    if visit == "refused":
        kept = {"village_code", "sls_code", "sls_name", "address", "head_name", "family_status", "member_count",
                "no_kk", "visit_date", "house_location", "house_photo"}  # fmt: skip
        answers = {key: value for key, value in answers.items() if key in kept}
        answers["visit_result"] = "4"
    if visit == "wrong":
        answers["floor_material"] = "10"
        answers["sls_code"] = "12"
        answers["members"][0].update(presence="9", age=131, member_nik="3204051203800000", id_documents=["0", "1"])
        answers["members"][1].update(sex="2", age=30, pregnant=None, work_hours=0)
        del answers["members"][2]["member_name"]
    report = validate_answers(household, answers, today=LIBRARY_TODAY)
    assert report.errors == {}
    assert (report.flags != []) == (visit == "wrong")
    flags, kept = _reference_flags(household, _normalised(household, answers), LIBRARY_TODAY)
    assert report.flags == flags
    assert report.answers == kept
    assert household_writes(household, answers, today=LIBRARY_TODAY) == _reference_writes(household, kept)


_UNCONDITIONAL: dict[int, Definition] = {}


def _normalised(definition: Definition, answers: Mapping[str, Any]) -> dict[str, Any]:
    """The answers normalised as validate_answers does, with nothing left out for relevance."""
    if id(definition) not in _UNCONDITIONAL:
        data = copy.deepcopy(definition.to_dict())
        stack = list(data["fields"])
        while stack:
            field = stack.pop()
            field.pop("relevant", None)
            stack.extend(field.get("fields", ()))
        _UNCONDITIONAL[id(definition)] = validate_definition(data)
    report = validate_answers(_UNCONDITIONAL[id(definition)], copy.deepcopy(answers))
    assert report.ok, report.errors
    return report.answers


def _reference_flags(
    definition: Definition, answers: Mapping[str, Any], today: dt.date
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The flags as the straightforward walk computes them, interpreting each expression where it is met,
    and the answers it keeps: those of the fields the relevants leave shown."""
    flags: list[dict[str, Any]] = []

    def flag(code: str, path: str, message: str, **extra: Any) -> None:
        flags.append({"code": code, "path": path, "message": message, **extra})

    def evaluate(field: Mapping[str, Any], key: str, ctx: Context, path: str) -> Any:
        try:
            return interpret(parse(field[key]), ctx)
        except ExpressionError as exc:
            flag("expression_error", path, f"the form's {key} could not be evaluated: {exc.message}")
            return None

    def is_true(field: Mapping[str, Any], ctx: Context, path: str) -> bool:
        if not isinstance(field.get("relevant"), str):
            return True
        result = evaluate(field, "relevant", ctx, path)
        return True if result is None else truthy(result)

    def walk(fields: list[Any], values: Mapping[str, Any], converted: Mapping[str, Any], ctx: Context, prefix: str,
             relevant: bool, kept: dict[str, Any]) -> None:  # fmt: skip
        for field in fields:
            name, kind = field["name"], field["type"]
            path = f"{prefix}.{name}" if prefix else name
            if kind == "group":
                walk(field["fields"], values, converted, ctx, prefix, relevant and is_true(field, ctx, path), kept)
                continue
            if kind == "repeat":
                kept_rows = []
                for index, (row, converted_row) in enumerate(
                    zip(values.get(name) or [], converted.get(name) or [], strict=True)
                ):
                    row_ctx = ctx.with_row(name, converted_row)
                    row_path = f"{path}[{index}]"
                    if relevant and is_true(field, row_ctx, row_path):
                        kept_rows.append({"_id": row["_id"]})
                        walk(field["fields"], row, converted_row, row_ctx, row_path, True, kept_rows[-1])
                if relevant and name in values:
                    kept[name] = kept_rows
                continue
            if not relevant or not is_true(field, ctx, path):
                continue
            if name in values:
                kept[name] = values[name]
            value = values.get(name)
            if value is None or value == "" or value == []:
                if field.get("required") is True and kind not in ("calculate", "note"):
                    flag("required_missing", path, "a required question was not answered")
                continue
            field_ctx = ctx.replace(current=converted.get(name))
            if kind in SELECT_TYPES:
                choices = {choice["name"]: choice for choice in definition.choices.get(field["list"], ())}
                for chosen in value if isinstance(value, list) else [value]:
                    if chosen not in choices:
                        flag("unknown_choice", path, f"{chosen!r} is not a choice of list {field['list']!r}",
                             value=chosen)  # fmt: skip
                    elif isinstance(field.get("choice_filter"), str):
                        offered = evaluate(field, "choice_filter", field_ctx.replace(choice=choices[chosen]), path)
                        if offered is not None and not truthy(offered):
                            flag("unknown_choice", path,
                                 f"{chosen!r} is not offered here: the form's choice filter leaves it out",
                                 value=chosen)  # fmt: skip
            if isinstance(field.get("constraint"), str):
                result = evaluate(field, "constraint", field_ctx, path)
                if result is not None and not truthy(result):
                    message = field.get("constraint_message")
                    extra = {"constraint_message": dict(message)} if isinstance(message, Mapping) else {}
                    text = "the answer does not meet the form's constraint"
                    if extra:
                        text = f"{text}: {message.get('en') or message.get('id')}"
                    flag("constraint_failed", path, text, constraint=field["constraint"], **extra)
            if kind == "text":
                tokens = str(field.get("appearance") or "").split()
                for token, check, code in (("nik", check_nik, "invalid_nik"), ("kk", check_kk, "invalid_kk")):
                    problems = check(value) if token in tokens else []
                    if problems:
                        flag(code, path, "; ".join(problems))

    converted = _converted(definition, answers, None)
    ctx = Context(converted, repeat_of=definition.repeat_map, today=today)
    kept: dict[str, Any] = {}
    walk(definition.data["fields"], answers, converted, ctx, "", True, kept)
    return flags, kept


def _converted(definition: Definition, values: Mapping[str, Any], repeat: str | None) -> dict[str, Any]:
    """Answers as expressions see them: dates as dates; each row led by its _id."""
    converted: dict[str, Any] = {}
    for ref in definition.answer_fields(repeat):
        if ref.name not in values:
            continue
        value = values[ref.name]
        if ref.type == "repeat" and isinstance(value, list):
            value = [{"_id": row.get("_id"), **_converted(definition, row, ref.name)} for row in value]
        elif isinstance(value, str) and ref.type in ("date", "datetime"):
            with contextlib.suppress(ValueError):
                value = (dt.date if ref.type == "date" else dt.datetime).fromisoformat(value)
        converted[ref.name] = value
    return converted


def _reference_writes(definition: Definition, answers: Mapping[str, Any]) -> dict[str, Any]:
    """What normalised answers write: each answered save_to field as it is."""
    writes: dict[str, Any] = {}
    for ref in definition.iter_fields():
        target = ref.field.get("save_to")
        if not isinstance(target, str) or ref.type in ("repeat", "group", "note") or len(ref.repeats) > 1:
            continue
        if ref.repeat is None:
            sources = [(target, answers.get(ref.name))]
        else:
            sources = [(f"{ROSTER}/{row['_id']}/{target}", row.get(ref.name)) for row in answers.get(ref.repeat) or []]
        for path, value in sources:
            if value is not None and value != "" and value != []:
                writes[path] = value
    return writes


# ---------------------------------------------------------------------------
# Answer short paths against the full checks

_TRICKY = [
    None, "", " ", "x", "x" * 10_000, "x" * 10_001, "2024-02-29", "2023-02-29", "2024-1-01", "2024-01-01T10:00",
    "2024-01-01 10:00:00+07:00", "2024-01-01T25:00", "a b", 0, 1, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1,
    10**400, 1.0, 1.5, -0.0, float("nan"), float("inf"), True, False, [], ["a"], ["a", 1], ["x" * 10_001], [None],
    {}, {"lat": 1, "lon": 2}, {"lat": 1.5, "lon": -180, "accuracy_m": 0, "altitude_m": -5}, {"lat": 91, "lon": 0},
    {"lat": 1, "lon": 2, "accuracy_m": -1}, {"lat": 1, "lon": 2, "altitude_m": 10**400}, {"lat": 1},
    {"lat": True, "lon": 2}, {"lat": 1, "lon": 2, "x": 1}, {"lat": 1, "lon": float("nan")}, {"lat": 2**63, "lon": 1},
]  # fmt: skip
_TYPES = ["text", "integer", "decimal", "date", "datetime", "select_one", "select_multiple", "geopoint", "note",
          "calculate"]  # fmt: skip


@pytest.mark.parametrize("kind", _TYPES)
def test_short_paths_normalise_as_the_full_checks_do(kind):
    field: dict[str, Any] = {"type": kind, "name": "f"}
    if kind != "calculate":
        field["label"] = {"id": "F"}
    if kind in SELECT_TYPES:
        field["list"] = "abc"
    if kind == "calculate":
        field["calculation"] = "1"
    definition = validate_definition({**FORM, "fields": [field]})
    ref = definition.ref("f")
    for value in _TRICKY:
        expected_report = AnswerReport()
        expected = _outcome(
            lambda value=value, report=expected_report: answers_module._check_value(ref, value, "f", report, definition)
        )
        if expected[0] == "raised":
            assert _outcome(lambda value=value: validate_answers(definition, {"f": value})) == expected
            continue
        report = validate_answers(definition, {"f": value})
        assert report.errors == expected_report.errors, value
        if not expected_report.errors:
            normalised = answers_module._check_value(ref, value, "f", AnswerReport(), definition)
            assert _same(report.answers["f"], normalised), value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=2),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3),
    max_leaves=20,
)


def _depth(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + max((_depth(child) for child in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(child) for child in value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_JSON, st.integers(0, 6))
def test_nesting_limit_is_the_depth_of_containers(value, limit):
    assert answers_module._nesting_exceeds(value, limit) == (_depth(value) > limit)
