"""Checking a visit's answers against its form definition: what to reject, what to flag, what the visit saves."""

# Field data cannot be collected twice: a household visited on foot may not be
# reachable again. So answers are rejected only when they cannot be stored safely
# or understood (wrong JSON shapes, unknown keys, keys MongoDB cannot hold); every
# judgement about the content (a failed constraint, a missing required answer, a
# choice not in the list) becomes a flag for the supervisor and the data is kept.
#
# The sync server runs this for every pushed visit, so what can be worked out from
# the definition alone (each scope's fields, their checks, compiled expressions,
# choice lookups, save_to targets) is worked out once per definition (_Plan), and
# the common well-formed answers take short paths that yield what the full checks would.

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from forms.definition import ROSTER, Definition, FieldRef
from forms.expressions import Compiled, Context, ExpressionError, from_answer, parse, truthy
from forms.fieldtypes import INVALID, MAX_STRING_LENGTH, UNSURE, FieldType, IdentifierCheck, field_type, json_type

__all__ = ["MAX_STRING_LENGTH", "AnswerReport", "household_writes", "validate_answers"]

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SCALARS = frozenset({str, int, float, bool, type(None)})


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


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether JSON nests deeper than `limit`, checked one level at a time without recursion."""
    level = [value]
    depth = 1
    while level:
        deeper: list[Any] = []
        for item in level:
            kind = item.__class__
            if kind in _SCALARS:
                continue
            if kind is dict:  # what parsed JSON holds; any other mapping takes the general test
                children: Any = item.values()
            elif isinstance(item, Mapping):
                children = item.values()
            elif isinstance(item, list):
                children = item
            else:
                continue
            if depth > limit:
                return True
            deeper.extend(children)
        level = deeper
        depth += 1
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


def _check_value(ref: FieldRef, value: Any, path: str, report: AnswerReport, definition: Definition) -> Any:
    """The normalised answer, or INVALID after recording why it cannot be stored."""
    if value is None:
        return None
    if ref.type == "repeat":
        return _check_rows(ref, value, path, report, definition)
    check = ref.ftype.check
    if check is None:  # pragma: no cover - groups are refused by the caller
        report._error(path, f"a {ref.type} takes no answer")
        return INVALID
    return check(value, path, report._error)


def _check_rows(ref: FieldRef, value: Any, path: str, report: AnswerReport, definition: Definition) -> Any:
    if not isinstance(value, list):
        report._error(path, f"a repeat must be a list of rows, not {json_type(value)}")
        return INVALID
    rows = []
    seen: dict[str, int] = {}
    ok = True
    for index, row in enumerate(value):
        row_path = f"{path}[{index}]"
        if not isinstance(row, Mapping):
            report._error(row_path, f"a repeat row must be an object, not {json_type(row)}")
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
        if normalised is INVALID:
            ok = False
        else:
            rows.append(normalised)
    return rows if ok else INVALID


def _check_scope(
    definition: Definition, values: Mapping[str, Any], repeat: str | None, prefix: str, report: AnswerReport
) -> Any:
    plan = _plan(definition)
    allowed = plan.allowed.get(repeat, {})
    shortcuts = plan.shortcuts.get(repeat, {})
    normalised: dict[str, Any] = {}
    ok = True
    for key, value in values.items():
        if repeat is not None and key == "_id":
            normalised[key] = value
            continue
        if key.__class__ is str:
            shortcut = shortcuts.get(key)
            if shortcut is not None:
                # Most answers are text: its short path inlined.
                if shortcut is _SHORT_TEXT and value.__class__ is str and len(value) <= MAX_STRING_LENGTH:
                    normalised[key] = value
                    continue
                checked = None if value is None else shortcut(value)
                if checked is not UNSURE:
                    normalised[key] = checked
                    continue
        path = _join(prefix, str(key))
        if not _check_key(key, path, report):
            ok = False
            continue
        ref = allowed.get(key)
        if ref is None:
            report._error(path, _misplaced(definition, key, repeat))
            ok = False
            continue
        checked = _check_value(ref, value, path, report, definition)
        if checked is INVALID:
            ok = False
        else:
            normalised[key] = checked
    return normalised if ok else INVALID


def _misplaced(definition: Definition, key: str, repeat: str | None) -> str:
    ref = definition.ref(key)
    if ref is None:
        return f"not a field of form {definition.form_id!r} version {definition.version!r}"
    if ref.type == "group":
        return "is a group; answer its fields by their own names"
    if ref.repeat is not None:
        return f"belongs in the rows of repeat {ref.repeat!r}"
    return f"is not a field of repeat {repeat!r}; answer it at the top level"


def _no_short_path(value: Any) -> Any:
    return UNSURE


def _short_path(ftype: FieldType) -> Callable[[Any], Any]:
    return ftype.short or _no_short_path


_SHORT_TEXT = _short_path(field_type("text"))


# ---------------------------------------------------------------------------
# The plan: what a definition asks of every visit, worked out once


# Functions whose value can change from one call to the next.
_VOLATILE = frozenset({"now", "today", "uuid"})


class _Rule:
    """One expression of a field (relevant, constraint, choice_filter), compiled.

    `shared`: a relevant whose value in a scope is the same for every field that has it
    (the scope's answers are fixed and it calls nothing volatile), so a scope computes it
    once; forms repeat one relevant over many fields.
    """

    __slots__ = ("key", "run", "shared")

    def __init__(self, key: str, run: Compiled, shared: bool) -> None:
        self.key = key
        self.run = run
        self.shared = shared


def _rule(field: Mapping[str, Any], key: str) -> _Rule | None:
    text = field.get(key)
    if not isinstance(text, str):
        return None
    try:
        expression = parse(text)
    except ExpressionError as exc:
        # A validated definition parses; should one not, each evaluation is flagged as before.
        message, position = exc.message, exc.position

        def unparsable(ctx: Context) -> Any:
            raise ExpressionError(message, position)

        return _Rule(key, unparsable, False)
    shared = key == "relevant" and not expression.functions & _VOLATILE
    return _Rule(key, expression.compiled, shared)


class _Item:
    """A field of the definition as the flag walk meets it."""

    __slots__ = (
        "children",
        "choice_filter",
        "choices",
        "constraint",
        "field",
        "identifiers",
        "kind",
        "name",
        "relevant",
        "required",
        "uses_current",
    )

    def __init__(self, field: Mapping[str, Any], choices: Mapping[str, list[Mapping[str, Any]]]) -> None:
        self.field = field
        self.name: str = field["name"]
        self.kind: str = field["type"]
        ftype = field_type(self.kind)
        self.relevant = _rule(field, "relevant")
        self.children = [_Item(child, choices) for child in field["fields"]] if ftype.container else []
        self.required = field.get("required") is True and ftype.requirable
        self.constraint = _rule(field, "constraint")
        self.choices: dict[str, Mapping[str, Any]] | None = None
        self.choice_filter: _Rule | None = None
        # Choices kept in a file (list_file) are the device's: any name is taken as sent.
        if ftype.takes_list and "list" in field:
            self.choices = {choice["name"]: choice for choice in choices.get(field["list"], ())}
            self.choice_filter = _rule(field, "choice_filter")
        self.uses_current = self.choice_filter is not None or self.constraint is not None
        # A field declares itself a NIK or No. KK with an appearance token its type knows.
        tokens = str(field.get("appearance") or "").split()
        self.identifiers: list[IdentifierCheck] = [check for check in ftype.identifiers if check.token in tokens]


class _Write:
    """A field with save_to: where its answer goes in the household."""

    __slots__ = ("name", "repeat", "target")

    def __init__(self, ref: FieldRef, target: str) -> None:
        self.name = ref.name
        self.repeat = ref.repeat
        self.target = target


class _Plan:
    """What validate_answers and household_writes need of a definition, worked out once and kept on it."""

    def __init__(self, definition: Definition) -> None:
        repeat_depth = max((len(ref.repeats) for ref in definition.iter_fields()), default=0)
        # Each repeat level adds a list and a row object; a geopoint or a selection adds one more.
        self.limit = 2 * repeat_depth + 2
        scopes = [None, *(ref.name for ref in definition.iter_fields() if ref.type == "repeat")]
        self.allowed: dict[str | None, dict[str, FieldRef]] = {}
        self.shortcuts: dict[str | None, dict[str, Callable[[Any], Any]]] = {}
        # Per scope, its answers in definition order as (name, is a repeat, conversion for expressions),
        # for _expression_values.
        self.answers: dict[str | None, list[tuple[str, bool, Callable[[Any], Any] | None]]] = {}
        for scope in scopes:
            refs = definition.answer_fields(scope)
            self.allowed[scope] = {ref.name: ref for ref in refs}
            self.shortcuts[scope] = {ref.name: _short_path(ref.ftype) for ref in refs}
            self.answers[scope] = [(ref.name, ref.type == "repeat", ref.ftype.to_expression) for ref in refs]
        self.items = [_Item(field, definition.choices) for field in definition.data["fields"]]
        self.writes = [
            _Write(ref, ref.field["save_to"])
            for ref in definition.iter_fields()
            if isinstance(ref.field.get("save_to"), str)
            and ref.ftype.saves_to_household
            and len(ref.repeats) <= 1
        ]


def _plan(definition: Definition) -> _Plan:
    return definition.derived("answers._Plan", _Plan)


# ---------------------------------------------------------------------------
# Content: what to flag


def _expression_values(
    plan: _Plan, values: Mapping[str, Any], repeat: str | None, converted: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The answers of a scope as expressions see them (each row led by its _id), added to `converted`."""
    converted = {} if converted is None else converted
    for name, is_repeat, convert in plan.answers.get(repeat, ()):
        if name not in values:
            continue
        value = values[name]
        if is_repeat and isinstance(value, list):
            converted[name] = [_expression_values(plan, row, name, {"_id": row.get("_id")}) for row in value]
        elif convert is not None:
            converted[name] = convert(value)
        else:
            converted[name] = value
    return converted


class _Scope(Context):
    """The context of one scope of a visit: the top level or a repeat row.

    It remembers what each ${name} resolved to, since the answers do not change while
    they are checked. The walk sets `current` and `choice` in place around the
    expressions that see them, rather than copying the context for each.
    """

    __slots__ = ("_resolved", "relevance")

    def __init__(
        self,
        values: Mapping[str, Any],
        rows: tuple[tuple[str, Mapping[str, Any]], ...],
        repeat_of: Mapping[str, str | None],
        today: dt.date | None,
        lookup: Any = None,
    ) -> None:
        super().__init__(values, rows=rows, repeat_of=repeat_of, today=today, lookup=lookup)
        self._resolved: dict[str, Any] = {}
        #: the shared relevant rules' outcomes here, by compiled expression (see _Flagger.relevance)
        self.relevance: dict[Compiled, bool | ExpressionError] = {}

    def resolve(self, name: str) -> Any:
        resolved = self._resolved
        if name in resolved:
            return resolved[name]
        value = resolved[name] = Context.resolve(self, name)
        return value


class _Flagger:
    """The walk over a visit's answers that flags what is relevant and notes what is not.

    What a `relevant` hides (a field, a group's fields, a repeat row) is noted in `hidden` and
    `hidden_rows` while the walk runs, and removed afterwards by `drop_hidden`: the
    expressions of the walk see the answers as the device sent them.
    """

    def __init__(self, report: AnswerReport, languages: tuple[str | None, ...] = ()) -> None:
        self.report = report
        self.languages = languages  # the form's texts are said in the first of these it has
        self.hidden: list[tuple[dict[str, Any], str]] = []
        self.hidden_rows: dict[int, tuple[list[Any], set[int]]] = {}

    def hide(self, item: _Item, values: Mapping[str, Any]) -> None:
        if item.kind == "group":
            for child in item.children:
                self.hide(child, values)
        elif item.name in values:
            self.hidden.append((values, item.name))  # type: ignore[arg-type]

    def drop_hidden(self) -> None:
        """Removes the answers the walk found hidden: they were never asked."""
        for values, name in self.hidden:
            values.pop(name, None)
        for rows, indexes in self.hidden_rows.values():
            rows[:] = [row for index, row in enumerate(rows) if index not in indexes]

    def evaluate(self, rule: _Rule, ctx: Context, prefix: str, name: str) -> Any:
        """The expression's value, or None (after a flag) when it cannot be evaluated."""
        try:
            return rule.run(ctx)
        except ExpressionError as exc:
            self.expression_error(rule, exc, _join(prefix, name))
            return None

    def expression_error(self, rule: _Rule, exc: ExpressionError, path: str) -> None:
        self.report._flag("expression_error", path, f"the form's {rule.key} could not be evaluated: {exc.message}")

    def relevance(self, rule: _Rule, ctx: _Scope) -> bool | ExpressionError:
        """Whether a relevant rule holds in the scope, or why it cannot be evaluated.

        A field whose relevant cannot be evaluated is taken as relevant, after a flag.
        """
        try:
            result = rule.run(ctx)
            outcome: bool | ExpressionError = True if result is None else truthy(result)
        except ExpressionError as exc:
            outcome = exc
        if rule.shared:
            ctx.relevance[rule.run] = outcome
        return outcome

    def walk(
        self,
        items: list[_Item],
        values: Mapping[str, Any],
        expression_values: Mapping[str, Any],
        ctx: _Scope,
        prefix: str,
    ) -> None:
        """Flags the relevant fields of `items`; a field that is not relevant has nothing to flag, and is noted."""
        shared = ctx.relevance
        for item in items:
            name, kind, relevant = item.name, item.kind, item.relevant
            if kind == "repeat":
                rows = values.get(name) or []
                expression_rows = expression_values.get(name) or []
                path = _join(prefix, name)
                for index, (row, expression_row) in enumerate(zip(rows, expression_rows, strict=True)):
                    row_ctx = _Scope(ctx.values, (*ctx.rows, (name, expression_row)), ctx.repeat_of, ctx.today,
                                     ctx.lookup)
                    row_path = f"{path}[{index}]"
                    if relevant is not None:
                        here = self.relevance(relevant, row_ctx)
                        if here is False:
                            self.hidden_rows.setdefault(id(rows), (rows, set()))[1].add(index)
                            continue
                        if here is not True:
                            self.expression_error(relevant, here, row_path)
                    self.walk(item.children, row, expression_row, row_ctx, row_path)
                continue
            if relevant is not None:
                here = shared.get(relevant.run)
                if here is None:
                    here = self.relevance(relevant, ctx)
                if here is False:
                    self.hide(item, values)
                    continue
                if here is not True:
                    self.expression_error(relevant, here, _join(prefix, name))
            if kind == "group":
                self.walk(item.children, values, expression_values, ctx, prefix)
                continue
            value = values.get(name)
            # `not value` first: answered is the usual case, and then nothing else is compared.
            if not value and (value is None or value == "" or value == []):
                if item.required:
                    self.report._flag("required_missing", _join(prefix, name), "a required question was not answered")
                continue
            choices = item.choices
            if not item.uses_current:
                # The common select: only whether the answer is in the list.
                if choices is not None and (
                    not all(n in choices for n in value) if isinstance(value, list) else value not in choices
                ):
                    self.check_choices(item, value, ctx, prefix)
            else:
                # `.` is the answer as ${name} reads here: the scope's own converted answer, taken
                # directly rather than through ctx.resolve's search of the rows.
                ctx.current = from_answer(expression_values.get(name))
                if choices is not None:
                    self.check_choices(item, value, ctx, prefix)
                if item.constraint is not None:
                    result = self.evaluate(item.constraint, ctx, prefix, name)
                    if result is not None and not truthy(result):
                        self.constraint_failed(item.field, _join(prefix, name))
                ctx.current = None
            if item.identifiers:
                for identifier in item.identifiers:
                    problems = identifier.check(value)
                    if problems:
                        self.report._flag(identifier.code, _join(prefix, name), "; ".join(problems))

    def check_choices(self, item: _Item, value: Any, ctx: _Scope, prefix: str) -> None:
        choices = item.choices or {}
        chosen = value if isinstance(value, list) else [value]
        for name in chosen:
            choice = choices.get(name)
            if choice is None:
                self.report._flag(
                    "unknown_choice",
                    _join(prefix, item.name),
                    f"{name!r} is not a choice of list {item.field['list']!r}",
                    value=name,
                )
                continue
            if item.choice_filter is not None:
                ctx.choice = choice
                kept = self.evaluate(item.choice_filter, ctx, prefix, item.name)
                ctx.choice = None
                if kept is not None and not truthy(kept):
                    self.report._flag(
                        "unknown_choice",
                        _join(prefix, item.name),
                        f"{name!r} is not offered here: the form's choice filter leaves it out",
                        value=name,
                    )

    def constraint_failed(self, field: Mapping[str, Any], path: str) -> None:
        message = field.get("constraint_message")
        extra = {"constraint_message": dict(message)} if isinstance(message, Mapping) else {}
        text = "the answer does not meet the form's constraint"
        if extra:
            said = next((message[lang] for lang in self.languages if lang in message), None)
            text = f"{text}: {said if said is not None else next(iter(message.values()), '')}"
        self.report._flag("constraint_failed", path, text, constraint=field["constraint"], **extra)


def validate_answers(definition: Definition, answers: Any, *, today: dt.date | None = None,
                     language: str | None = None) -> AnswerReport:
    """Checks a visit's answers: errors when they cannot be stored or understood, flags for review.

    Answer keys are field names (a group's fields are answered at the top level by
    their own names); a repeat is a list of rows `{"_id": "<uuid>", "<child>": value}`.
    Flags are computed only for answers without errors. `today` fixes today() for tests.
    A failed constraint's message is the form's own text in `language` when the form has it, else in the
    form's default language; the flag carries every language's text as `constraint_message`.

    The answers returned (`report.answers`) leave out what the form's `relevant`s hide: a
    field whose relevant is false, the fields of a hidden group, a repeat row whose
    relevant is false there. Relevance is judged on the answers as sent, in one pass.
    """
    report = AnswerReport()
    if not isinstance(answers, Mapping):
        report._error("", f"answers must be an object, not {json_type(answers)}")
        return report
    plan = _plan(definition)
    limit = plan.limit
    if _nesting_exceeds(answers, limit):
        report._error("", f"answers are nested more than {limit} levels deep; the form does not nest that far")
        return report
    normalised = _check_scope(definition, answers, None, "", report)
    if report.errors or normalised is INVALID:
        return report
    report.answers = normalised
    expression_values = _expression_values(plan, normalised, None)
    # today() is read once per visit, not once per expression that calls it.
    ctx = _Scope(expression_values, (), definition.repeat_map, today if today is not None else dt.date.today(),
                 definition.lookup)
    flagger = _Flagger(report, (language, definition.default_language))
    flagger.walk(plan.items, normalised, expression_values, ctx, "")
    flagger.drop_hidden()
    return report


def household_writes(
    definition: Definition, answers: Mapping[str, Any] | AnswerReport, *, today: dt.date | None = None
) -> dict[str, Any]:
    """The household field writes a visit makes through save_to: its answered, relevant fields.

    Top-level `save_to: "head_name"` gives `{"head_name": value}`; a roster row's
    `save_to: "name"` gives `{"members/<row _id>/name": value}`. Give the AnswerReport of
    validate_answers to use its checked answers as they are; raw answers are checked first,
    and answers that cannot be stored (the visit is refused) write nothing. An answer hidden
    by a `relevant` is never written, whether it was sent or not.
    """
    report = answers if isinstance(answers, AnswerReport) else validate_answers(definition, answers, today=today)
    writes: dict[str, Any] = {}
    if not report.ok:
        return writes
    checked = report.answers
    # Top-level fields read the answers themselves, with no path prefix.
    identified: dict[str | None, list[tuple[str, Mapping[str, Any]]]] = {None: [("", checked)]}
    for write in _plan(definition).writes:
        rows = identified.get(write.repeat)
        if rows is None:
            rows = identified[write.repeat] = _identified_rows(checked.get(write.repeat))
        name = write.name
        for row_prefix, row in rows:
            value = row.get(name)
            if value is not None and value != "" and value != []:
                writes[row_prefix + write.target] = value
    return writes


def _identified_rows(rows: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """The rows of a repeat answer that have a well-formed _id, with the prefix of their household paths."""
    if not isinstance(rows, list):
        return []
    return [
        (f"{ROSTER}/{row['_id']}/", row)
        for row in rows
        if isinstance(row, Mapping) and isinstance(row.get("_id"), str) and _UUID.fullmatch(row["_id"])
    ]
