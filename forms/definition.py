"""The form-definition language: validating a JSON definition (modelled on XLSForm) and reading it."""

# Validation collects every problem, keyed by a path into the definition
# (`fields[3].fields[1].name`, `choices.yesno[2].name`), so an admin fixes a form
# in one round. Structure is checked with marshmallow schemas, one object at a
# time, so that the paths are ours; the semantic checks (names, choice lists,
# expressions, save_to) then run on whatever parts are well formed.

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from forms import attachments, fieldtypes
from forms import expressions as ex
from forms.expressions import Expression, ExpressionError
from forms.fieldtypes import FieldType, field_type
from sync.values import canonical_json

__all__ = [
    "FIELD_TYPES",
    "ROSTER",
    "Definition",
    "DefinitionError",
    "FieldRef",
    "MediaQuestion",
    "check_new_version",
    "definition_hash",
    "limit_errors",
    "media_answers",
    "media_question",
    "validate_definition",
]

#: The type names a field may have, in the registry's order (forms/fieldtypes.py declares each).
FIELD_TYPES = tuple(fieldtypes.FIELD_TYPES)
SELECT_TYPES = frozenset(name for name, ftype in fieldtypes.FIELD_TYPES.items() if ftype.takes_list)
EXPRESSION_KEYS = ("relevant", "constraint", "calculation", "choice_filter")
KNOWN_FIELD_KEYS = frozenset(
    {
        "type",
        "name",
        "label",
        "hint",
        "required",
        "relevant",
        "constraint",
        "constraint_message",
        "calculation",
        "default",
        "list",
        "list_file",
        "choice_filter",
        "appearance",
        "save_to",
        "parameters",
        "accept",
        "media",
        "fields",
    }
)

#: The household field a roster repeat saves to; its rows are members/<row _id>/<field>.
ROSTER = "members"
MAX_NAME_LENGTH = 64
MAX_NESTING = 32
# Far beyond any real form (each group level adds two), well within Python's recursion limit.
MAX_JSON_DEPTH = 4 * MAX_NESTING
RESERVED_NAMES = frozenset({"_id"})
_INT64 = 2**63  # the row id of a repeat row

#: A media question's `accept` list: at most this many entries, each this long.
MAX_ACCEPT = 50
MAX_ACCEPT_LENGTH = 100
_MEDIA_TYPE_PATTERN = re.compile(r"(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)")
_EXTENSION = re.compile(r"\.[a-z0-9][a-z0-9_+-]*")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOUSEHOLD_FIELD = re.compile(r"[a-z][a-z0-9_]*")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_WHITESPACE = re.compile(r"\s")

# A text default that looks like an expression is evaluated, as pyxform does for
# "dynamic defaults"; anything else is a literal value.
_DYNAMIC_DEFAULT = re.compile(r"\$\{|\(")

#: Problems reported at most: a form with more has a systematic fault, and the answer stays small.
MAX_ERRORS = 200
MORE_KEY = "…"


def limit_errors(errors: dict[str, list[str]], limit: int = MAX_ERRORS) -> dict[str, list[str]]:
    """The first `limit` messages, and under the key "…" how many more were found."""
    count = sum(len(messages) for messages in errors.values())
    if count <= limit:
        return errors
    kept: dict[str, list[str]] = {}
    left = limit
    for path, messages in errors.items():
        if left <= 0:
            break
        kept[path] = list(messages[:left])
        left -= len(kept[path])
    kept[MORE_KEY] = [f"… and {count - limit} more"]
    return kept


class DefinitionError(ValueError):
    """A definition that does not validate; `errors` maps a path into it to messages (the first MAX_ERRORS)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        count = sum(len(messages) for messages in errors.values())
        self.errors = errors = limit_errors(errors)
        first = next(iter(errors.items()), ("", [""]))
        where = first[0] or "definition"
        # one sentence each for one and for several, so the catalogue can say both (server/i18n.py)
        super().__init__(f"1 problem in the form definition; {where}: {first[1][0]}" if count == 1 else
                         f"{count} problems in the form definition; {where}: {first[1][0]}")


# ---------------------------------------------------------------------------
# Structure (marshmallow)


def _identifier(value: str) -> None:
    if len(value) > MAX_NAME_LENGTH or not _IDENTIFIER.fullmatch(value):
        raise ValidationError(
            f"must be an identifier: a letter or '_' followed by letters, digits or '_', "
            f"at most {MAX_NAME_LENGTH} characters"
        )


def _full_match(pattern: re.Pattern[str], message: str) -> Callable[[str], None]:
    # marshmallow's Regexp only anchors at the start.
    def check(value: str) -> None:
        if not pattern.fullmatch(value):
            raise ValidationError(message)

    return check


class Translated(fields.Field):
    """Text by language code, {"id": "...", "en": "..."}: Indonesian required, other languages optional."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise ValidationError('must be an object of texts by language, like {"id": "...", "en": "..."}')
        errors: dict[str, list[str]] = {}
        for language, text in value.items():
            if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
                errors[str(language)] = ["not a language code (like 'id' or 'en')"]
            elif not isinstance(text, str):
                errors[language] = ["must be a string"]
        if "id" not in errors and not (isinstance(value.get("id"), str) and value["id"].strip()):
            errors["id"] = ["the Indonesian text is required"]
        if errors:
            raise ValidationError(errors)
        return value


class StrictBoolean(fields.Field):
    """true or false; marshmallow's Boolean would also take "yes", and "no" is a truthy string."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value


class SettingsSchema(Schema):
    class Meta:
        unknown = INCLUDE

    form_id = fields.String(required=True, validate=_identifier)
    version = fields.String(
        required=True, validate=_full_match(_VERSION, "must be 1-64 letters, digits, '.', '_' or '-'")
    )
    title = Translated(required=True)
    default_language = fields.String(
        required=True, validate=_full_match(_LANGUAGE, "must be a language code like 'id'")
    )


def _known_type(kind: str) -> None:
    # Read from the registry at each check, so that the registry alone says which types exist.
    if kind not in fieldtypes.FIELD_TYPES:
        raise ValidationError("must be one of: " + ", ".join(fieldtypes.FIELD_TYPES))


class FieldSchema(Schema):
    class Meta:
        unknown = INCLUDE

    type = fields.String(
        required=True, validate=_known_type
    )
    name = fields.String(required=True, validate=_identifier)
    label = Translated()
    hint = Translated()
    required = StrictBoolean()
    relevant = fields.String()
    constraint = fields.String()
    constraint_message = Translated()
    calculation = fields.String()
    default = fields.Raw(allow_none=True)
    list_ = fields.String(data_key="list", validate=_identifier)
    list_file = fields.String()
    media = fields.Raw()
    choice_filter = fields.String()
    appearance = fields.String()
    save_to = fields.String()
    parameters = fields.Dict(keys=fields.String())
    accept = fields.List(fields.String(validate=validate.Length(min=1, max=MAX_ACCEPT_LENGTH)),
                         validate=validate.Length(min=1, max=MAX_ACCEPT))
    children = fields.Raw(data_key="fields")


class ChoiceSchema(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    label = Translated(required=True)


# ---------------------------------------------------------------------------
# The validated definition


@dataclass(frozen=True)
class FieldRef:
    """A field with where it sits: its path in the definition and its enclosing repeats (outermost first)."""

    path: str
    field: Mapping[str, Any]
    repeats: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.field["name"]

    @property
    def type(self) -> str:
        return self.field["type"]

    @property
    def ftype(self) -> FieldType:
        """The field's type as the registry declares it."""
        return field_type(self.field["type"])

    @property
    def repeat(self) -> str | None:
        """The nearest repeat the field is in, or None at the top level."""
        return self.repeats[-1] if self.repeats else None


@dataclass(frozen=True)
class MediaQuestion:
    """What a media question takes: the kind of file, its accepted media types and extensions, its limits.

    `media_types` are patterns (`image/*`, `application/pdf`) and `extensions` lower-case with
    their dot (`.pdf`); a file is accepted when its type matches a pattern or its name ends in
    one of the extensions (as an HTML `accept` list). `drawn` is the appearance that makes an
    image on the screen (signature, draw, annotate), or None for a photo or picked file.
    """

    name: str
    path: str
    kind: str
    media_types: tuple[str, ...]
    extensions: tuple[str, ...] = ()
    max_pixels: int | None = None
    drawn: str | None = None
    repeats: tuple[str, ...] = ()

    def accepts(self, media_type: str | None, filename: str | None = None) -> bool:
        """Whether a file of this media type (as sniffed from its bytes) and name answers the question."""
        if media_type and any(fieldtypes.media_type_matches(media_type, p) for p in self.media_types):
            return True
        if filename and self.extensions:
            lowered = filename.lower()
            return any(lowered.endswith(extension) for extension in self.extensions)
        return False


def _media_question(ref: FieldRef) -> MediaQuestion | None:
    media = ref.ftype.media
    if media is None:
        return None
    accept = ref.field.get("accept")
    media_types, extensions = media.media_types, ()
    if isinstance(accept, list) and accept:
        tokens = [token.strip().lower() for token in accept]
        media_types = tuple(token for token in tokens if "/" in token)
        extensions = tuple(token for token in tokens if token.startswith("."))
    parameters = ref.field.get("parameters") or {}
    max_pixels = parameters.get("max-pixels")
    tokens = set(str(ref.field.get("appearance") or "").split())
    drawn = next((token for token in ref.ftype.appearances if token in tokens), None)
    return MediaQuestion(ref.name, ref.path, media.kind, media_types, extensions,
                         max_pixels if isinstance(max_pixels, int) else None, drawn, ref.repeats)


def media_question(definition: Definition, path: str) -> MediaQuestion | None:
    """Whether the question at `path` is a media question, and what it takes; None when it is not one.

    `path` is how an answer is found in a visit: the field's name, or inside repeats each
    enclosing repeat's name and the row's id before it (`members/<row id>/foto_ktp`). A path whose
    repeats do not match the field's, or an unknown name, is None, as is a question of another type.
    """
    if not isinstance(path, str) or not path:
        return None
    parts = path.split("/")
    ref = definition.ref(parts[-1])
    if ref is None or ref.ftype.media is None:
        return None
    if len(parts) > 1:
        given = parts[:-1]
        if len(given) != 2 * len(ref.repeats) or tuple(given[0::2]) != ref.repeats or not all(given[1::2]):
            return None
    return definition.derived("media_questions", _media_questions).get(ref.name)


def media_answers(definition: Definition, answers: Any) -> list[tuple[str, MediaQuestion, str]]:
    """Every file a visit's answers name: (path, question, file name), paths as `media_question` takes them.

    Answers that are not file names (checked by the answers' own validation) are left out; so are
    rows without an `_id`, whose path cannot be written.
    """
    questions = definition.derived("media_questions", _media_questions)
    found: list[tuple[str, MediaQuestion, str]] = []
    if not questions or not isinstance(answers, Mapping):
        return found
    # Every pushed visit is searched: each scope is asked for the form's few media questions and
    # repeats by name, rather than each of its answers being looked up among them.
    repeats = definition.derived("repeat_names", _repeat_names)
    stack: list[tuple[str, Mapping[str, Any]]] = [("", answers)]
    while stack:
        prefix, scope = stack.pop()
        for name, question in questions.items():
            if name in scope:
                value = scope[name]
                if fieldtypes.check_file_name(value) is None:
                    found.append((f"{prefix}{name}", question, value))
        for name in repeats:
            value = scope.get(name)
            if isinstance(value, list):
                for row in value:
                    row_id = row.get("_id") if isinstance(row, Mapping) else None
                    if isinstance(row_id, str) and row_id and "/" not in row_id:
                        stack.append((f"{prefix}{name}/{row_id}/", row))
    found.sort(key=lambda item: item[0])
    return found


def _repeat_names(definition: Definition) -> tuple[str, ...]:
    return tuple(ref.name for ref in definition.iter_fields() if ref.type == "repeat")


def _media_questions(definition: Definition) -> dict[str, MediaQuestion]:
    found = {}
    for ref in definition.iter_fields():
        question = _media_question(ref)
        if question is not None:
            found[ref.name] = question
    return found


class Definition:
    """A validated form definition: the JSON as given, plus lookups over its fields."""

    def __init__(self, data: Mapping[str, Any], refs: list[FieldRef], warnings: dict[str, list[str]]) -> None:
        self.data = data
        self.warnings = warnings
        self._refs = refs
        self._by_name = {ref.name: ref for ref in refs}
        self._answered_in: dict[str | None, list[FieldRef]] = {}
        for ref in refs:
            if ref.type != "group":
                self._answered_in.setdefault(ref.repeat, []).append(ref)
        self._derived: dict[str, Any] = {}
        #: pulldata() over the version's attached CSV files (expressions.Context.lookup), once attached
        self.lookup: Callable[[str, str, str, str], str] | None = None

    def attach_lookup(self, lookup: Callable[[str, str, str, str], str] | None) -> Definition:
        """Give pulldata() the version's attached files (the server does, when it loads a published version)."""
        self.lookup = lookup
        return self

    # settings
    @property
    def form_id(self) -> str:
        return self.data["settings"]["form_id"]

    @property
    def version(self) -> str:
        return self.data["settings"]["version"]

    @property
    def title(self) -> Mapping[str, str]:
        return self.data["settings"]["title"]

    @property
    def default_language(self) -> str:
        return self.data["settings"]["default_language"]

    @property
    def choices(self) -> Mapping[str, list[Mapping[str, Any]]]:
        return self.data.get("choices") or {}

    @cached_property
    def hash(self) -> str:
        return definition_hash(self.data)

    # fields
    def iter_fields(self) -> Iterator[FieldRef]:
        """Every field in document order, groups and repeats before their children."""
        return iter(self._refs)

    def field(self, name: str) -> Mapping[str, Any] | None:
        ref = self._by_name.get(name)
        return ref.field if ref else None

    def ref(self, name: str) -> FieldRef | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def repeat_of(self, name: str) -> str | None:
        """The nearest repeat the named field is in (None at the top level or for an unknown name)."""
        ref = self._by_name.get(name)
        return ref.repeat if ref else None

    @cached_property
    def repeat_map(self) -> dict[str, str | None]:
        """Field name -> its nearest repeat, for every field (expressions.Context's repeat_of)."""
        return {ref.name: ref.repeat for ref in self._refs}

    def answer_fields(self, repeat: str | None = None) -> list[FieldRef]:
        """The fields answered directly in the top level (None) or in a row of `repeat`.

        Groups are transparent: their children are answered by name alongside the
        group's siblings. Nested repeats appear as one list-valued answer.
        """
        return list(self._answered_in.get(repeat, ()))

    @cached_property
    def roster(self) -> str | None:
        """The name of the repeat whose rows are household members, if the form has one."""
        for ref in self._refs:
            if ref.type == "repeat" and ref.field.get("save_to") == ROSTER:
                return ref.name
        for ref in self._refs:
            if ref.repeat is not None and ref.type != "repeat" and ref.field.get("save_to"):
                return ref.repeat
        return None

    @cached_property
    def save_to_map(self) -> dict[str, str]:
        """Field name -> household path it writes: 'head_name', or 'members/{row}/name' in the roster."""
        targets = {}
        for ref in self._refs:
            target = ref.field.get("save_to")
            if not target or ref.type == "repeat":
                continue
            targets[ref.name] = f"{ROSTER}/{{row}}/{target}" if ref.repeat else target
        return targets

    def form_files(self) -> dict[str, attachments.FormFile]:
        """The files this version needs beside its definition (forms.attachments.form_files), by name."""
        return self.derived("form_files", attachments.form_files)

    def media_questions(self) -> list[MediaQuestion]:
        """Every media question (image, audio, video, file), in document order."""
        return list(self.derived("media_questions", _media_questions).values())

    def choice_names(self, list_name: str) -> frozenset[str]:
        return frozenset(choice["name"] for choice in self.choices.get(list_name, ()))

    def expression(self, name: str, key: str) -> Expression | None:
        """The parsed expression under `key` (relevant, constraint, ...) of a field, or None."""
        field = self.field(name)
        if field is None:
            return None
        text = field.get(key)
        if key == "default":
            if not is_dynamic_default(text):
                return None
        elif not isinstance(text, str) or not text.strip():
            return None
        return ex.parse(text)

    def derived(self, key: str, build: Callable[[Definition], Any]) -> Any:
        """`build(self)`, worked out on first use and then kept under `key`.

        How other modules keep what they precompute from a definition (answers.py its
        compiled expressions and per-field checks): a validated definition is never changed.
        """
        try:
            return self._derived[key]
        except KeyError:
            # Two threads may both build it; either result is the same.
            value = self._derived[key] = build(self)
            return value

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.data))

    def __repr__(self) -> str:
        return f"Definition({self.form_id!r}, version={self.version!r}, fields={len(self._refs)})"


def is_dynamic_default(value: Any) -> bool:
    """Whether a default is an expression (`today()`, `${x}`) rather than a literal."""
    return isinstance(value, str) and bool(_DYNAMIC_DEFAULT.search(value))


# ---------------------------------------------------------------------------
# Validation


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        messages = self.errors.setdefault(path, [])
        if message not in messages:
            messages.append(message)

    def add_marshmallow(self, prefix: str, errors: Mapping[Any, Any]) -> None:
        # Schemas validate one object at a time, so marshmallow's keys are field names.
        for key, value in errors.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping):
                self.add_marshmallow(path, value)
            else:
                for message in value if isinstance(value, list) else [value]:
                    self.add(path, str(message))


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def validate_definition(data: Any) -> Definition:
    """Validates a definition, raising DefinitionError with every problem found; returns the Definition."""
    errors = _Errors()
    warnings = _Errors()
    if not isinstance(data, Mapping):
        raise DefinitionError({"": ["a form definition must be a JSON object"]})
    not_json = _json_problems(data)
    if not_json:
        # Checked first: what follows copies and hashes the definition recursively.
        raise DefinitionError(not_json)
    data = copy.deepcopy(dict(data))

    settings = data.get("settings")
    if settings is None:
        errors.add("settings", "Missing data for required field.")
    elif not isinstance(settings, Mapping):
        errors.add("settings", "must be an object")
    else:
        errors.add_marshmallow("settings", SettingsSchema().validate(settings))
        _warn_english(warnings, "settings.title", settings.get("title"))

    choices = data.get("choices", {})
    if not isinstance(choices, Mapping):
        errors.add("choices", "must be an object mapping a list name to its choices")
        choices = {}
    else:
        _check_choices(choices, errors, warnings)

    refs: list[FieldRef] = []
    top = data.get("fields")
    if top is None:
        errors.add("fields", "Missing data for required field.")
    else:
        _walk_fields(top, "fields", (), (), 0, refs, errors, warnings)

    _check_semantics(refs, choices, errors, warnings)
    if errors.errors:
        raise DefinitionError(errors.errors)
    return Definition(data, refs, warnings.errors)


def _json_problems(data: Any) -> dict[str, list[str]]:
    """What no store may hold: values that are not plain JSON (NaN, non-string keys, other types), keys a
    store reads as operators or paths ('$', '.'), integers beyond 64 bits, or absurdly deep nesting."""
    problems = _Errors()
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack and len(problems.errors) < 20:
        value, path, depth = stack.pop()
        if isinstance(value, Mapping | list) and depth > MAX_JSON_DEPTH:
            problems.add(path, f"nested more than {MAX_JSON_DEPTH} levels deep")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.add(path, f"object keys must be strings, not {key!r}")
                elif key.startswith("$") or "." in key or "\x00" in key:
                    # A store reads such a key as an operator or a path (as for events).
                    problems.add(path, f"key {key[:64]!r} may not start with '$' or contain '.' or NUL")
                else:
                    stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.add(path, "numbers must be finite (JSON has no NaN or Infinity)")
        elif isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            problems.add(path, "integers must fit in 64 bits to be stored")
        elif not (value is None or isinstance(value, str | int | float | bool)):
            problems.add(path, f"{type(value).__name__} is not a JSON value")
    return problems.errors


def _warn_english(warnings: _Errors, path: str, text: Any) -> None:
    if isinstance(text, Mapping) and "id" in text and not text.get("en"):
        warnings.add(path, "no English text ('en'); it is recommended")


def _check_choices(choices: Mapping[Any, Any], errors: _Errors, warnings: _Errors) -> None:
    for list_name, items in choices.items():
        prefix = f"choices.{list_name}"
        try:
            _identifier(list_name) if isinstance(list_name, str) else _identifier("")
        except ValidationError as exc:
            errors.add(prefix, f"list name {exc.messages[0]}")
        if not isinstance(items, list) or not items:
            errors.add(prefix, "must be a non-empty list of choices")
            continue
        seen: dict[str, int] = {}
        for index, choice in enumerate(items):
            path = f"{prefix}[{index}]"
            if not isinstance(choice, Mapping):
                errors.add(path, "must be an object with a name and a label")
                continue
            errors.add_marshmallow(path, ChoiceSchema().validate(choice))
            _warn_english(warnings, f"{path}.label", choice.get("label"))
            name = choice.get("name")
            if isinstance(name, str):
                if _WHITESPACE.search(name):
                    # select_multiple answers are space-separated choice names.
                    errors.add(f"{path}.name", "choice names cannot contain spaces")
                if name in seen:
                    errors.add(f"{path}.name", f"duplicate choice name {name!r} (first at {prefix}[{seen[name]}])")
                else:
                    seen[name] = index
            if "media" in choice:
                for where, messages in attachments.media_problems(choice["media"], f"{path}.media").items():
                    for message in messages:
                        errors.add(where, message)
            for key, value in choice.items():
                if key not in ("name", "label", "media") and not _is_scalar(value):
                    errors.add(f"{path}.{key}", "extra choice properties must be strings, numbers or booleans")


def _walk_fields(
    items: Any,
    prefix: str,
    repeats: tuple[str, ...],
    groups: tuple[str, ...],
    depth: int,
    refs: list[FieldRef],
    errors: _Errors,
    warnings: _Errors,
) -> None:
    if not isinstance(items, list):
        errors.add(prefix, "must be a list of fields")
        return
    if not items:
        errors.add(prefix, "must contain at least one field")
        return
    for index, field in enumerate(items):
        path = f"{prefix}[{index}]"
        if not isinstance(field, Mapping):
            errors.add(path, "must be an object")
            continue
        problems = FieldSchema().validate(field)
        errors.add_marshmallow(path, problems)
        kind, name = field.get("type"), field.get("name")
        kind_ok = "type" not in problems
        for key in field:
            if key not in KNOWN_FIELD_KEYS:
                warnings.add(f"{path}.{key}", "unknown key; kunjung ignores it")
        if kind_ok and field_type(kind).label_required and "label" not in field:
            errors.add(f"{path}.label", "a label is required for this type of field")
        _warn_english(warnings, f"{path}.label", field.get("label"))
        if name in RESERVED_NAMES:
            errors.add(f"{path}.name", f"{name!r} is reserved for the row id of a repeat")
        # A badly spelt name is already an error; keeping the field known avoids a
        # second error at every expression that refers to it.
        if kind_ok and isinstance(name, str):
            refs.append(FieldRef(path, field, repeats, groups))
        label = name if isinstance(name, str) else f"<{path}>"
        if (kind_ok and field_type(kind).container) or (not kind_ok and "fields" in field):
            if "fields" not in field:
                errors.add(f"{path}.fields", f"a {kind} needs its fields")
            elif depth + 1 >= MAX_NESTING:
                errors.add(f"{path}.fields", f"groups and repeats are nested more than {MAX_NESTING} deep")
            else:
                inner_repeats = (*repeats, label) if kind == "repeat" else repeats
                inner_groups = (*groups, label) if kind == "group" else groups
                _walk_fields(
                    field["fields"], f"{path}.fields", inner_repeats, inner_groups, depth + 1, refs, errors, warnings
                )
        elif "fields" in field:
            errors.add(f"{path}.fields", "only a group or a repeat has fields")


def _check_semantics(refs: list[FieldRef], choices: Mapping[Any, Any], errors: _Errors, warnings: _Errors) -> None:
    by_name: dict[str, FieldRef] = {}
    for ref in refs:
        first = by_name.get(ref.name)
        if first is not None:
            errors.add(
                f"{ref.path}.name",
                f"duplicate field name {ref.name!r} (first at {first.path}); names are unique in a form",
            )
        else:
            by_name[ref.name] = ref

    used_lists: set[str] = set()
    for ref in refs:
        field, kind, ftype = ref.field, ref.type, ref.ftype
        if ftype.takes_list:
            list_name = field.get("list")
            if "list_file" in field:
                _check_list_file(ref, errors)
            elif list_name is None:
                errors.add(f"{ref.path}.list", f"a {kind} needs the name of its choice list (or a list_file)")
            elif isinstance(list_name, str):
                used_lists.add(list_name)
                if list_name not in choices:
                    errors.add(f"{ref.path}.list", f"unknown choice list {list_name!r}")
        else:
            for key in ("list", "list_file", "choice_filter"):
                if key in field:
                    errors.add(f"{ref.path}.{key}", f"only select_one and select_multiple have a {key}")
        if "media" in field:
            for where, messages in attachments.media_problems(field["media"], f"{ref.path}.media").items():
                for message in messages:
                    errors.add(where, message)
        if attachments.search_source(field.get("appearance")) == "":
            errors.add(f"{ref.path}.appearance", "search()'s first argument is the quoted name of the form's "
                                                 "attached CSV file without '.csv': search('desa')")
        if ftype.needs_calculation and not (
            isinstance(field.get("calculation"), str) and field["calculation"].strip()
        ):
            errors.add(f"{ref.path}.calculation", f"a {kind} field needs a calculation")
        if ftype.container and "default" in field:
            errors.add(f"{ref.path}.default", f"a {kind} has no value, so no default")
        _check_parameters(ref, errors)
        _check_accept(ref, errors)
    for list_name in choices:
        if list_name not in used_lists:
            warnings.add(f"choices.{list_name}", "no select uses this choice list")

    _check_expressions(refs, by_name, choices, errors)
    _check_defaults(refs, choices, errors)
    _check_cycles(refs, by_name, errors)
    _check_save_to(refs, errors)


def _static_type(user: FieldRef, target: FieldRef) -> str:
    if target.type == "repeat":
        return ex.REPEAT
    if target.repeat is not None and target.repeat not in user.repeats and target.repeat != user.name:
        return ex.NODESET
    return target.ftype.expression_type


def _choice_columns(choices: Mapping[Any, Any], list_name: Any) -> set[str]:
    columns = {"name", "label"}
    items = choices.get(list_name) if isinstance(list_name, str) else None
    if isinstance(items, list):
        for choice in items:
            if isinstance(choice, Mapping):
                columns.update(key for key in choice if isinstance(key, str))
    return columns


def _check_expressions(
    refs: list[FieldRef], by_name: dict[str, FieldRef], choices: Mapping[Any, Any], errors: _Errors
) -> None:
    for ref in refs:
        for key in (*EXPRESSION_KEYS, "default"):
            text = ref.field.get(key)
            if key == "default":
                if not is_dynamic_default(text):
                    continue
            elif not isinstance(text, str):
                continue
            path = f"{ref.path}.{key}"
            try:
                expression = ex.parse(text)
            except ExpressionError as exc:
                errors.add(path, f"cannot parse expression: {exc}")
                continue
            unknown = sorted(name for name in expression.references if name not in by_name)
            for name in unknown:
                errors.add(path, f"refers to ${{{name}}}, which is not a field of this form")
            for name in sorted(expression.references - set(unknown)):
                if by_name[name].type == "group":
                    errors.add(path, f"refers to ${{{name}}}, which is a group and has no value")
            if key == "choice_filter" and "list_file" in ref.field:
                pass  # the file's columns are known once it is attached (forms.attachments checks it)
            elif key == "choice_filter":
                columns = _choice_columns(choices, ref.field.get("list"))
                for name in sorted(expression.names - columns):
                    errors.add(path, f"'{name}' is not a column of choice list {ref.field.get('list')!r}")
            else:
                for name in sorted(expression.names):
                    errors.add(path, f"'{name}' is not a field reference; write ${{{name}}}")
            if unknown:
                continue

            def ref_type(name: str, user: FieldRef = ref) -> str:
                return _static_type(user, by_name[name])

            for message in expression.type_errors(ref_type, ref.ftype.expression_type):
                errors.add(path, message)


def _check_parameters(ref: FieldRef, errors: _Errors) -> None:
    parameters = ref.field.get("parameters")
    if not isinstance(parameters, Mapping):
        return  # absent, or already refused by the schema
    accepted = ref.ftype.parameters
    for name, value in parameters.items():
        parameter = accepted.get(name)
        path = f"{ref.path}.parameters.{name}"
        if parameter is None:
            known = ", ".join(accepted) if accepted else "none"
            errors.add(path, f"type {ref.type} has no parameter {name!r} (it takes: {known})")
            continue
        problem = parameter.problem(value)
        if problem:
            errors.add(path, problem)
        elif name in ("value", "label") and ref.ftype.takes_list and "list_file" not in ref.field:
            errors.add(path, f"the {name} parameter names a column of a choice file: only with a list_file")


def _check_list_file(ref: FieldRef, errors: _Errors) -> None:
    path = f"{ref.path}.list_file"
    name = ref.field["list_file"]
    if "list" in ref.field:
        errors.add(path, "a select takes its choices from a list or from a file, not both")
    if not isinstance(name, str):
        return  # refused by the schema
    problem = fieldtypes.check_file_name(name)
    if problem:
        errors.add(path, problem)
    elif not name.lower().endswith(attachments.CHOICE_FILE_SUFFIXES):
        errors.add(path, "a choice file is a .csv, .xml or .geojson file attached to the form")


def _check_accept(ref: FieldRef, errors: _Errors) -> None:
    accept = ref.field.get("accept")
    if accept is None:
        return
    media = ref.ftype.media
    path = f"{ref.path}.accept"
    if media is None:
        errors.add(path, "only a media question (image, audio, video, file) has an accept list")
        return
    if not isinstance(accept, list):
        return  # refused by the schema
    for index, token in enumerate(accept):
        if not isinstance(token, str):
            continue
        lowered = token.strip().lower()
        if _EXTENSION.fullmatch(lowered):
            continue
        if not _MEDIA_TYPE_PATTERN.fullmatch(lowered):
            errors.add(f"{path}[{index}]", "must be a media type (image/jpeg, image/*) or an extension (.pdf)")
        elif not any(fieldtypes.media_type_matches(lowered, pattern) for pattern in media.media_types):
            errors.add(f"{path}[{index}]", f"type {ref.type} takes only {', '.join(media.media_types)}")


def _check_defaults(refs: list[FieldRef], choices: Mapping[Any, Any], errors: _Errors) -> None:
    for ref in refs:
        value = ref.field.get("default")
        check = ref.ftype.default_problem
        if value is None or check is None or is_dynamic_default(value):
            continue
        problem = check(value, ref.field, choices)
        if problem:
            errors.add(f"{ref.path}.default", problem)


def _dependencies(ref: FieldRef) -> dict[str, set[str]]:
    """References of the expressions that produce the field's value, by key."""
    deps: dict[str, set[str]] = {}
    for key in ("calculation", "default"):
        text = ref.field.get(key)
        if key == "calculation" and not isinstance(text, str):
            continue
        if key == "default" and not is_dynamic_default(text):
            continue
        try:
            deps[key] = set(ex.parse(text).references)
        except ExpressionError:
            continue
    return deps


def _check_cycles(refs: list[FieldRef], by_name: dict[str, FieldRef], errors: _Errors) -> None:
    deps = {ref.name: _dependencies(ref) for ref in refs if by_name.get(ref.name) is ref}
    graph = {
        name: sorted({target for targets in keys.values() for target in targets if target in deps})
        for name, keys in deps.items()
    }
    order = {ref.name: index for index, ref in enumerate(refs)}
    for component in _strongly_connected(graph):
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        members = sorted(component, key=order.__getitem__)
        cycle = " → ".join(f"${{{name}}}" for name in [*members, members[0]]) if len(members) > 1 else None
        for name in members:
            ref = by_name[name]
            for key, targets in deps[name].items():
                if targets & set(members):
                    message = (
                        f"refers to itself (${{{name}}})"
                        if cycle is None
                        else f"circular reference among calculations and defaults: {cycle}"
                    )
                    errors.add(f"{ref.path}.{key}", message)


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion (forms can have thousands of fields)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child_index = work.pop()
            if child_index == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = graph[node]
            if child_index < len(children):
                work.append((node, child_index + 1))
                child = children[child_index]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _check_save_to(refs: list[FieldRef], errors: _Errors) -> None:
    rosters: dict[str, str] = {}  # repeat name -> its path, in document order
    repeat_paths = {ref.name: ref.path for ref in refs if ref.type == "repeat"}
    targets: dict[tuple[str, str], str] = {}
    for ref in refs:
        target = ref.field.get("save_to")
        if not isinstance(target, str):
            continue
        path = f"{ref.path}.save_to"
        if ref.type == "repeat":
            if target != ROSTER:
                errors.add(path, f"a repeat can only save to {ROSTER!r}, the household roster")
            elif ref.repeats:
                errors.add(path, "the household roster cannot be inside another repeat")
            else:
                rosters.setdefault(ref.name, ref.path)
            continue
        if not ref.ftype.saves_to_household:
            errors.add(path, f"type {ref.type} has no value to save")
            continue
        if len(target) > MAX_NAME_LENGTH or not _HOUSEHOLD_FIELD.fullmatch(target):
            errors.add(
                path,
                f"must be a household field name: snake_case, at most {MAX_NAME_LENGTH} characters, no '$', '.' or NUL",
            )
            continue
        if ref.repeat is None:
            namespace = "household"
            if target == ROSTER:
                errors.add(path, f"{ROSTER!r} is the household roster; only a repeat saves to it")
                continue
        else:
            namespace = "member"
            if len(ref.repeats) > 1:
                errors.add(path, "member fields can only be saved from the roster's own rows, not a nested repeat")
                continue
            rosters.setdefault(ref.repeat, repeat_paths[ref.repeat])
        first = targets.get((namespace, target))
        if first is not None:
            errors.add(path, f"{first} already saves to {namespace} field {target!r}")
        else:
            targets[(namespace, target)] = ref.path
    if len(rosters) > 1:
        first_name, *others = rosters
        for name in others:
            errors.add(
                rosters[name],
                f"only one repeat can be the household roster, and {first_name!r} ({rosters[first_name]}) already is",
            )


# ---------------------------------------------------------------------------
# Hashes and versions


def definition_hash(data: Any) -> str:
    """sha256 (hex) of the definition's canonical JSON (sync.values.canonical_json), as UTF-8."""
    if isinstance(data, Definition):
        data = data.data
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def _field_index(data: Any) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """name -> (path, type, enclosing repeats), read leniently from a definition or its JSON."""
    if isinstance(data, Definition):
        return {ref.name: (ref.path, ref.type, ref.repeats) for ref in data.iter_fields()}
    found: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    stack: list[tuple[Any, str, tuple[str, ...], int]] = []
    if isinstance(data, Mapping):
        stack.append((data.get("fields"), "fields", (), 0))
    while stack:
        items, prefix, repeats, depth = stack.pop()
        if not isinstance(items, list) or depth > MAX_NESTING:
            continue
        for index, field in enumerate(items):
            if not isinstance(field, Mapping):
                continue
            name, kind = field.get("name"), field.get("type")
            if isinstance(name, str) and isinstance(kind, str):
                found.setdefault(name, (f"{prefix}[{index}]", kind, repeats))
                inner = (*repeats, name) if kind == "repeat" else repeats
                stack.append((field.get("fields"), f"{prefix}[{index}].fields", inner, depth + 1))
    return found


def _settings(data: Any) -> Mapping[str, Any]:
    if isinstance(data, Definition):
        return data.data["settings"]
    settings = data.get("settings") if isinstance(data, Mapping) else None
    return settings if isinstance(settings, Mapping) else {}


def _placement(repeat: str | None) -> str:
    return f"in repeat {repeat!r}" if repeat else "outside any repeat"


def check_new_version(previous: Any, new: Any) -> dict[str, list[str]]:
    """Problems with publishing `new` after `previous` (definitions or their JSON), keyed by path in `new`.

    ODK's rule: a new version may add and remove fields but not change the type of
    a field it keeps, since answers already collected would no longer fit; a field
    also keeps its place inside or outside a repeat, for the same reason.
    """
    errors = _Errors()
    old_settings, new_settings = _settings(previous), _settings(new)
    if old_settings.get("form_id") != new_settings.get("form_id"):
        errors.add("settings.form_id", f"a new version must keep form_id {old_settings.get('form_id')!r}")
    if old_settings.get("version") == new_settings.get("version"):
        errors.add("settings.version", "a new version needs a version different from the previous one")
    old_fields = _field_index(previous)
    for name, (path, kind, repeats) in _field_index(new).items():
        if name not in old_fields:
            continue
        _, old_kind, old_repeats = old_fields[name]
        if kind != old_kind:
            errors.add(
                f"{path}.type",
                f"field {name!r} was {old_kind} in the previous version; a new version cannot change a "
                "field's type (add a field with a new name instead)",
            )
        old_repeat = old_repeats[-1] if old_repeats else None
        new_repeat = repeats[-1] if repeats else None
        if old_repeat != new_repeat:
            errors.add(
                f"{path}.name",
                f"field {name!r} was {_placement(old_repeat)} and is now {_placement(new_repeat)}; "
                "its answers would change shape (use a new name)",
            )
    return errors.errors
