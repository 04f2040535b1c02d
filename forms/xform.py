"""ODK XForms of kunjung's form definitions (built by pyxform), and Collect's submissions read back as answers."""

# A definition is turned into the XLSForm it would have been (sheets as lists of rows)
# and pyxform builds the XForm from that, so Collect gets exactly what ODK's own tools
# make. A form that saves to the household also declares the household as an ODK entity
# (entity list `households`): Collect picks one from `households.csv`, prefills the saved
# questions from it, and sends the writes back in the submission. The entity list's
# `__version` cannot name kunjung's stamps, so every saved field has a hidden property
# `kstamp__<field>` (the stamps of its heads) that the form copies into a hidden
# question: the submission's writes then carry a real `base`, and two officers editing
# one household offline make a conflict, never a silent overwrite. A form with the household
# roster declares each roster row as an entity of a second list, `members` (entities in a
# repeat, pyxform >= 4), so a revisit updates the members it prefilled.

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from pyxform.xls2xform import convert

from forms.definition import Definition

__all__ = [
    "HOUSEHOLD_LIST",
    "MEMBER_ROW_ID",
    "STAMP_PREFIX",
    "Submission",
    "SubmissionError",
    "XForm",
    "kept_xform",
    "read_submission",
    "stamp_property",
    "xform_of",
]

#: The entity list of households, and the file Collect downloads it as.
HOUSEHOLD_LIST = "households"
#: Hidden question names the generated form adds (the household picked, the new id, the label).
PICK = "kunjung_household"
NEW_ID = "kunjung_new_household"
HOUSEHOLD_ID = "kunjung_household_id"
LABEL = "kunjung_household_label"
#: A roster row's id in the XForm (an answer row's `_id`).
MEMBER_ROW_ID = "kunjung_row_id"
#: The household's members, a second list Collect downloads (`members.csv`): rows prefill the roster.
MEMBER_LIST = "members"
MEMBER_COUNT = "kunjung_member_count"
NEW_MEMBERS = "kunjung_new_members"
ROW_INDEX = "kunjung_row_index"
ROW_MEMBER = "kunjung_row_member"
ROW_HOUSEHOLD = "kunjung_row_household"
MEMBER_LABEL = "kunjung_member_label"
MEMBER_STAMP_PREFIX = "kmstamp__"
#: members.csv carries a member field's value as `kmval__<field>`: its `name` column is the member's id.
MEMBER_VALUE_PREFIX = "kmval__"
_NEW_MEMBERS_LABEL = {"id": "Jumlah anggota keluarga baru yang akan ditambahkan",
                      "en": "Number of new family members to add"}
STAMP_PREFIX = "kstamp__"
META_QUESTIONS = (("start", "start"), ("end", "end"), ("deviceid", "deviceid"), ("username", "username"))
#: Entity properties ODK reserves or pyxform refuses: such household fields are not saved by Collect.
_RESERVED_PROPERTIES = frozenset({"name", "label"})

LANGUAGE_NAMES = {"id": "Indonesian", "en": "English"}

_XLSFORM_TYPE = {"text": "text", "integer": "integer", "decimal": "decimal", "date": "date",
                 "datetime": "dateTime", "geopoint": "geopoint", "note": "note", "calculate": "calculate",
                 # media: the answer is the file's name; Collect sends the file with the submission
                 "image": "image", "audio": "audio", "video": "video", "file": "file"}

_PICK_LABEL = {"id": "Rumah tangga yang dikunjungi (kosongkan untuk rumah tangga baru)",
               "en": "Household visited (leave empty for a new household)"}


# kunjung's own functions, unknown to ODK, as the nearest XPath Collect runs (the form
# check on the phone is looser: the region codes are checked by the server, which flags).
_NIK = ("^[0-9]{6}(0[1-9]|[12][0-9]|3[01]|4[1-9]|[56][0-9]|7[01])(0[1-9]|1[0-2])[0-9]{2}"
        "([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})$")
_KK = "^[0-9]{12}([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})$"
_ODK_EQUIVALENTS = {"valid-nik": _NIK, "valid-kk": _KK}
_KUNJUNG_CALL = re.compile(r"(valid-nik|valid-kk)\s*\(")


def odk_expression(text: str) -> str:
    """An expression with kunjung's own functions rewritten as ODK XPath (`valid-nik(x)` as a regex);
    text inside string literals is left alone."""
    out, index, quote = [], 0, None
    while index < len(text):
        char = text[index]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        else:
            match = _KUNJUNG_CALL.match(text, index)
            if match and (index == 0 or not re.match(r"[A-Za-z0-9_:.-]", text[index - 1])):
                end, depth, inner = match.end(), 1, None
                while end < len(text) and depth:
                    if inner:
                        inner = None if text[end] == inner else inner
                    elif text[end] in "'\"":
                        inner = text[end]
                    elif text[end] == "(":
                        depth += 1
                    elif text[end] == ")":
                        depth -= 1
                    end += 1
                argument = odk_expression(text[match.end():end - 1])
                out.append(f"regex(string({argument}), '{_ODK_EQUIVALENTS[match.group(1)]}')")
                index = end
                continue
        out.append(char)
        index += 1
    return "".join(out)


def stamp_property(household_field: str) -> str:
    """The hidden entity property that carries a saved field's stamps."""
    return STAMP_PREFIX + household_field


def _language_column(column: str, language: str) -> str:
    return f"{column}::{LANGUAGE_NAMES.get(language, language)} ({language})"


def _translated(row: dict[str, str], column: str, text: Any) -> None:
    if isinstance(text, Mapping):
        for language, value in text.items():
            if isinstance(value, str) and value:
                row[_language_column(column, language)] = value
    elif isinstance(text, str) and text:
        row[_language_column(column, "id")] = text


def _media(row: dict[str, str], media: Any) -> None:
    """Label media (`{"image": {"id": "rumah.jpg"}}`) as XLSForm's image/big-image/audio/video columns."""
    if isinstance(media, Mapping):
        for kind, names in media.items():
            _translated(row, str(kind), names)


def _entity_lookup(household_field: str) -> str:
    return f"instance('{HOUSEHOLD_LIST}')/root/item[name=${{{PICK}}}]/{household_field}"


def member_stamp_property(member_field: str) -> str:
    """The hidden property of members.csv, and the roster question, that carry a member field's stamps."""
    return MEMBER_STAMP_PREFIX + member_field


def roster_fields(definition: Definition) -> dict[str, str]:
    """Roster question name -> the member field it saves (`members/<row>/<field>`), when the form has a roster."""
    roster = definition.roster
    if roster is None:
        return {}
    return {ref.name: ref.field["save_to"] for ref in definition.iter_fields()
            if ref.repeat == roster and ref.type != "repeat" and ref.field.get("save_to")}


def member_value_property(member_field: str) -> str:
    return MEMBER_VALUE_PREFIX + member_field


def _member_of_row(column: str) -> str:
    # the row's member in members.csv: the household's n-th member for the roster's n-th row
    return (f"instance('{MEMBER_LIST}')/root/item[household = ${{{PICK}}}]"
            f"[position() = position(current()/..)]/{column}")


def saves_household(definition: Definition) -> bool:
    """Whether the form writes household fields (then Collect sees households as entities)."""
    return bool(definition.save_to_map)


def saved_top_fields(definition: Definition) -> dict[str, str]:
    """Question name -> the household field it saves, for questions outside repeats that Collect can save."""
    out = {}
    for ref in definition.iter_fields():
        target = ref.field.get("save_to")
        if target and ref.repeat is None and ref.type != "repeat" and target not in _RESERVED_PROPERTIES:
            out[ref.name] = target
    return out


class _Builder:
    def __init__(self, definition: Definition):
        self.definition = definition
        self.survey: list[dict[str, str]] = []
        self.saves = saves_household(definition)
        self.saved = saved_top_fields(definition) if self.saves else {}
        self.members = roster_fields(definition) if self.saves else {}
        self.roster = definition.roster if self.members else None

    def build(self) -> dict[str, Any]:
        d = self.definition
        for kind, name in META_QUESTIONS:
            self.survey.append({"type": kind, "name": name})
        # Every visit is about a household: one picked from households.csv, or a new one.
        self.survey.append({"type": f"select_one_from_file {HOUSEHOLD_LIST}.csv", "name": PICK})
        _translated(self.survey[-1], "label", _PICK_LABEL)
        self.survey.append({"type": "calculate", "name": NEW_ID, "calculation": "once(uuid())"})
        self.survey.append({"type": "calculate", "name": HOUSEHOLD_ID,
                            "calculation": f"if(${{{PICK}}} = '', ${{{NEW_ID}}}, ${{{PICK}}})"})
        if self.saves:
            for target in self.saved.values():
                self.survey.append({"type": "calculate", "name": stamp_property(target),
                                    "calculation": _entity_lookup(stamp_property(target))})
            if self.roster:
                # Declares members.csv as the secondary instance `members` (a repeat may already be called
                # that, so not a csv-external of the same name); never shown.
                self.survey.append({"type": f"select_one_from_file {MEMBER_LIST}.csv", "name": "kunjung_members",
                                    "relevant": "false()", "label::Indonesian (id)": "-"})
                self.survey.append({"type": "calculate", "name": MEMBER_COUNT,
                                    "calculation": f"count(instance('{MEMBER_LIST}')/root/item"
                                                   f"[household = ${{{PICK}}}])"})
        self._fields(d.data["fields"], in_repeat=False)
        sheets: dict[str, Any] = {
            "survey": self.survey,
            "settings": [{"form_id": d.form_id, "version": d.version, "form_title": d.title.get(d.default_language)
                          or d.title.get("id") or d.form_id,
                          "default_language": f"{LANGUAGE_NAMES.get(d.default_language, d.default_language)} "
                                              f"({d.default_language})"}],
        }
        choices = self._choices()
        if choices:
            sheets["choices"] = choices
        if self.saves:
            label = next((name for name, target in self.saved.items() if target == "head_name"), None)
            self.survey.append({"type": "calculate", "name": LABEL,
                                "calculation": f"${{{label}}}" if label else f"${{{HOUSEHOLD_ID}}}"})
            sheets["entities"] = [{"list_name": HOUSEHOLD_LIST, "entity_id": f"${{{HOUSEHOLD_ID}}}",
                                   "create_if": f"${{{PICK}}} = ''", "update_if": f"${{{PICK}}} != ''",
                                   "label": f"${{{LABEL}}}"}]
            if self.roster:
                # each roster row is a member entity: a known member's row updates it, a new row makes one
                sheets["entities"].append({"list_name": MEMBER_LIST, "entity_id": f"${{{MEMBER_ROW_ID}}}",
                                           "create_if": f"${{{ROW_MEMBER}}} = ''",
                                           "update_if": f"${{{ROW_MEMBER}}} != ''",
                                           "label": f"${{{MEMBER_LABEL}}}"})
        return sheets

    def _fields(self, fields: Iterable[Mapping[str, Any]], *, in_repeat: bool) -> None:
        for spec in fields:
            kind = spec["type"]
            if kind in ("group", "repeat"):
                roster = kind == "repeat" and spec["name"] == self.roster
                if roster:
                    # The household's known members come first, one row each, then the new ones the
                    # officer adds: each known row keeps its member's id, so a revisit updates members.
                    counted = {"type": "integer", "name": NEW_MEMBERS, "required": "yes", "default": "0",
                               "constraint": ". >= 0 and . <= 40"}
                    _translated(counted, "label", _NEW_MEMBERS_LABEL)
                    if spec.get("relevant"):
                        counted["relevant"] = odk_expression(spec["relevant"])
                    self.survey.append(counted)
                row = {"type": f"begin_{kind}", "name": spec["name"]}
                self._common(row, spec)
                if roster:
                    row["repeat_count"] = f"${{{MEMBER_COUNT}}} + ${{{NEW_MEMBERS}}}"
                self.survey.append(row)
                if roster:
                    self.survey.append({"type": "calculate", "name": ROW_INDEX, "calculation": "position(..)"})
                    self.survey.append({"type": "calculate", "name": ROW_MEMBER, "calculation": _member_of_row("name")})
                    self.survey.append({"type": "calculate", "name": MEMBER_ROW_ID,
                                        "calculation": f"if(${{{ROW_MEMBER}}} != '', ${{{ROW_MEMBER}}}, once(uuid()))"})
                    for target in self.members.values():
                        self.survey.append({"type": "calculate", "name": member_stamp_property(target),
                                            "calculation": _member_of_row(member_stamp_property(target))})
                    # the member entity's household, and its label (the member's name when the roster asks it)
                    self.survey.append({"type": "calculate", "name": ROW_HOUSEHOLD,
                                        "save_to": self._save_to(MEMBER_LIST, "household"),
                                        "calculation": f"${{{HOUSEHOLD_ID}}}"})
                    named = next((name for name, target in self.members.items() if target == "name"), None)
                    self.survey.append({"type": "calculate", "name": MEMBER_LABEL,
                                        "calculation": f"${{{named}}}" if named else f"${{{MEMBER_ROW_ID}}}"})
                elif kind == "repeat":
                    self.survey.append({"type": "calculate", "name": MEMBER_ROW_ID, "calculation": "once(uuid())"})
                self._fields(spec.get("fields") or (), in_repeat=in_repeat or kind == "repeat")
                self.survey.append({"type": f"end_{kind}", "name": spec["name"]})
                continue
            if kind in ("select_one", "select_multiple") and spec.get("list_file"):
                row = {"type": f"{kind}_from_file {spec['list_file']}", "name": spec["name"]}
            elif kind in ("select_one", "select_multiple"):
                row = {"type": f"{kind} {spec['list']}", "name": spec["name"]}
            else:
                row = {"type": _XLSFORM_TYPE[kind], "name": spec["name"]}
            self._common(row, spec)
            target = self.saved.get(spec["name"]) if not in_repeat else None
            member = self.members.get(spec["name"]) if in_repeat else None
            if member and not spec.get("default") and not spec.get("calculation"):
                # a known member's answer, set when the row is made
                row["default"] = _member_of_row(member_value_property(member))
            if member:
                row["save_to"] = self._save_to(MEMBER_LIST, member_value_property(member))  # the member entity's
            if target:
                row["save_to"] = self._save_to(HOUSEHOLD_LIST, target)
                if not spec.get("calculation"):
                    # Prefilled from the household picked, and again when another one is picked;
                    # the officer may still change the answer.
                    row["calculation"] = _entity_lookup(target)
                    row["trigger"] = f"${{{PICK}}}"
            self.survey.append(row)

    def _save_to(self, entity_list: str, prop: str) -> str:
        # with two entity declarations pyxform wants each property named with its list
        return f"{entity_list}#{prop}" if self.roster else prop

    @staticmethod
    def _common(row: dict[str, str], spec: Mapping[str, Any]) -> None:
        _translated(row, "label", spec.get("label"))
        _media(row, spec.get("media"))
        accept = spec.get("accept")
        if isinstance(accept, list) and accept:
            row["body::accept"] = ",".join(str(item) for item in accept)
        _translated(row, "hint", spec.get("hint"))
        _translated(row, "constraint_message", spec.get("constraint_message"))
        if spec.get("required"):
            row["required"] = "yes"
        for key in ("relevant", "constraint", "calculation", "choice_filter", "appearance"):
            value = spec.get(key)
            if isinstance(value, str) and value.strip():
                row[key] = value if key == "appearance" else odk_expression(value)
        default = spec.get("default")
        if isinstance(default, list):
            row["default"] = " ".join(str(item) for item in default)
        elif isinstance(default, bool):
            row["default"] = "true" if default else "false"
        elif default is not None:
            row["default"] = str(default)
        parameters = spec.get("parameters")
        if isinstance(parameters, Mapping) and parameters:
            row["parameters"] = " ".join(f"{key}={value}" for key, value in parameters.items())

    def _choices(self) -> list[dict[str, str]]:
        rows = []
        for list_name, items in self.definition.choices.items():
            for item in items:
                row = {"list_name": list_name, "name": str(item["name"])}
                _translated(row, "label", item.get("label"))
                _media(row, item.get("media"))
                for key, value in item.items():
                    if key not in ("name", "label", "media") and value is not None:
                        row[key] = str(value)
                rows.append(row)
        return rows


def xlsform_of(definition: Definition) -> dict[str, Any]:
    """The XLSForm sheets (lists of rows) equivalent to the definition, in pyxform's dict shape."""
    return _Builder(definition).build()


@dataclass(frozen=True)
class XForm:
    """A generated XForm: its text, md5 (as formList and Collect compare it) and what it saves."""

    form_id: str
    version: str
    xml: bytes
    md5: str
    saves_household: bool
    saved: Mapping[str, str]
    #: roster question -> member field it saves, when the form prefills its roster from members.csv
    members: Mapping[str, str] = field(default_factory=dict)


_CACHE: OrderedDict[tuple[str, str, str], XForm] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 128


def kept_xform(definition: Definition, xml: bytes, md5: str) -> XForm:
    """The XForm of a definition with the bytes (and md5) it was given when its version was published:
    what it saves is read from the definition, its text is never built again."""
    saves = saves_household(definition)
    return XForm(definition.form_id, definition.version, xml, md5, saves, saved_top_fields(definition),
                 roster_fields(definition) if saves else {})


def xform_of(definition: Definition) -> XForm:
    """The XForm the generator builds for a definition now. Deterministic for one generator (the same
    definition gives the same bytes; kept by the definition's hash), but pyxform or this module may
    write other bytes tomorrow: what Collect is served is the copy stored when the version was
    published (server/forms_registry.py), never this again."""
    key = (definition.form_id, definition.version, definition.hash)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    sheets = xlsform_of(definition)
    headers = {}
    for sheet, rows in sheets.items():
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        headers[f"{sheet}_header"] = [columns]
    result = convert({**sheets, **headers, "fallback_form_name": definition.form_id}, form_name=definition.form_id,
                     warnings=[])
    xml = result.xform.encode("utf-8")
    built = kept_xform(definition, xml, hashlib.md5(xml).hexdigest())  # noqa: S324 - OpenRosa's hash
    with _CACHE_LOCK:
        _CACHE[key] = built
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return built


# ---------------------------------------------------------------------------
# Submissions

#: Refused before parsing: a DTD is how entity expansion and external entities get in.
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
MAX_XML_BYTES = 10 * 2**20
MAX_DEPTH = 64
MAX_ELEMENTS = 100_000
_PARSER_OPTIONS = {"resolve_entities": False, "no_network": True, "load_dtd": False, "dtd_validation": False,
                   "huge_tree": False, "remove_pis": True}


class SubmissionError(ValueError):
    """A submission kunjung cannot take: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, errors: Mapping[str, list[str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = dict(errors or {})


@dataclass
class Submission:
    """What a submission says, in kunjung's terms: the envelope, the answers and the household writes' base."""

    form_id: str
    version: str
    instance_id: str
    deprecated_id: str | None = None
    household_id: str | None = None
    new_household: bool = False
    answers: dict[str, Any] = field(default_factory=dict)
    base: dict[str, list[str]] = field(default_factory=dict)
    started_at: str | None = None
    ended_at: str | None = None
    geotag: dict[str, Any] | None = None
    device_reported: str | None = None
    #: The household entity's offline bookkeeping as Collect sends it (ODK entities spec 2024.1).
    entity: EntityVersions | None = None
    #: The same for each known member a roster row updates (the `members` list), by member id.
    member_entities: dict[str, EntityVersions] = field(default_factory=dict)


@dataclass(frozen=True)
class EntityVersions:
    """What a submission's `meta/entity` says of the version it was made on: `baseVersion` (the local
    version updated), `trunkVersion` (the last server version the phone had) and `branchId` (one run of
    offline updates on one phone)."""

    create: bool
    update: bool
    base_version: int | None
    trunk_version: int | None
    branch_id: str | None

    def needs(self, household_id: str) -> str | None:
        """The key of the earlier submission of the same branch this one waits for, or None when it
        starts from a server version (as Central's _computeBaseVersion decides)."""
        if not self.update or not self.branch_id or self.base_version is None:
            return None
        if self.base_version == 1 and self.trunk_version is None:
            return f"{household_id}|create"  # the branch began with a create made offline
        if self.base_version == self.trunk_version:
            return None
        return f"{household_id}|{self.branch_id}|{self.base_version - 1}"

    def provides(self, household_id: str) -> str | None:
        """The key later submissions of the branch wait for once this one is applied."""
        if self.update and self.branch_id and self.base_version is not None:
            return f"{household_id}|{self.branch_id}|{self.base_version}"
        if self.create:
            return f"{household_id}|create"
        return None


def _version_number(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() and len(text.strip()) < 19 else None


def entity_versions(entity: etree._Element) -> EntityVersions:
    branch = (entity.get("branchId") or "").strip()[:128] or None
    return EntityVersions(create=entity.get("create") in ("1", "true"), update=entity.get("update") in ("1", "true"),
                          base_version=_version_number(entity.get("baseVersion")),
                          trunk_version=_version_number(entity.get("trunkVersion")), branch_id=branch)


def _local(tag: Any) -> str:
    # lxml spells a namespaced tag "{uri}name"; comments and processing instructions have no str tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def parse_xml(data: bytes) -> etree._Element:
    """The root of a submission's XML, refusing hostile or malformed XML (SubmissionError 400/413)."""
    if len(data) > MAX_XML_BYTES:
        raise SubmissionError(413, f"The submission XML is larger than {MAX_XML_BYTES} bytes.")
    if _DTD.search(data):
        raise SubmissionError(400, "The submission XML declares a DTD or entities, which are refused.")
    parser = etree.XMLParser(**_PARSER_OPTIONS)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as problem:
        raise SubmissionError(400, f"The submission is not well-formed XML: {str(problem)[:200]}") from None
    count = depth = 0
    for event, _element in etree.iterwalk(root, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue
        count += 1
        if count > MAX_ELEMENTS:
            raise SubmissionError(400, f"The submission has more than {MAX_ELEMENTS} elements.")
        if depth > MAX_DEPTH:
            raise SubmissionError(400, f"The submission nests deeper than {MAX_DEPTH} levels.")
        depth += 1
    return root


def submission_form(root: etree._Element) -> tuple[str, str]:
    """The form id and version a submission names (its root's `id` and `version`)."""
    form_id = root.get("id") or _local(root.tag)
    version = root.get("version") or ""
    return form_id, version


def _child(element: etree._Element | None, name: str) -> etree._Element | None:
    if element is None:
        return None
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: etree._Element | None) -> str:
    if element is None:
        return ""
    return (element.text or "").strip()


def _geopoint(text: str, path: str) -> dict[str, Any]:
    parts = text.split()
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) < 2 or len(numbers) > 4:
        raise SubmissionError(400, "An answer does not fit its question.",
                              {path: ["a geopoint is 'latitude longitude [altitude [accuracy]]'"]})
    point: dict[str, Any] = {"lat": numbers[0], "lon": numbers[1]}
    if len(numbers) > 2:
        point["altitude_m"] = numbers[2]
    if len(numbers) > 3:
        point["accuracy_m"] = numbers[3]
    return point


def _value(kind: str, text: str, path: str) -> Any:
    def misfit(what: str) -> SubmissionError:
        return SubmissionError(400, "An answer does not fit its question.", {path: [f"must be {what}"]})

    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]{1,18}", text):
            raise misfit("a whole number")
        return int(text)
    if kind == "decimal":
        try:
            number = float(text)
        except ValueError:
            raise misfit("a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise misfit("a finite number")
        return number
    if kind == "select_multiple":
        return text.split()
    if kind == "geopoint":
        return _geopoint(text, path)
    if kind == "date":
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise misfit("a date YYYY-MM-DD")
        return text
    return text


def _children(element: etree._Element) -> dict[str, list[etree._Element]]:
    """An element's children by local name, read once (a form's answers are looked up by name)."""
    out: dict[str, list[etree._Element]] = {}
    for child in element:
        out.setdefault(_local(child.tag), []).append(child)
    return out


def _answers(definition: Definition, element: etree._Element, fields: Iterable[Mapping[str, Any]],
             into: dict[str, Any], path: str) -> None:
    children = _children(element)
    for spec in fields:
        name, kind = spec["name"], spec["type"]
        found = children.get(name)
        if kind == "group":
            if found:
                _answers(definition, found[0], spec.get("fields") or (), into, path)
            continue
        if kind == "repeat":
            rows = []
            for index, row_element in enumerate(found or ()):
                row: dict[str, Any] = {}
                row_id = _text(_child(row_element, MEMBER_ROW_ID))
                if row_id:
                    row["_id"] = row_id
                _answers(definition, row_element, spec.get("fields") or (), row, f"{path}{name}[{index}].")
                rows.append(row)
            if rows:
                into[name] = rows
            continue
        if kind == "note":
            continue
        text = _text(found[0]) if found else ""
        if text:
            into[name] = _value(kind, text, f"{path}{name}")


def _roster_parent(root: etree._Element, definition: Definition) -> etree._Element:
    """The element the roster's rows sit in (the root, or the groups around the roster)."""
    ref = definition.ref(definition.roster or "")
    element = root
    for group in ref.groups if ref is not None else ():
        element = _child(element, group) if _child(element, group) is not None else element
    return element


def instance_id_of(root: etree._Element) -> str:
    """The submission's meta/instanceID as sent ('' when it has none)."""
    return _text(_child(_child(root, "meta"), "instanceID"))


def read_submission(definition: Definition, root: etree._Element) -> Submission:
    """The answers and envelope of a submission of `definition` (SubmissionError for one that does not fit)."""
    form_id, version = submission_form(root)
    meta = _child(root, "meta")
    instance_id = instance_id_of(root)
    if not instance_id:
        raise SubmissionError(400, "The submission has no meta/instanceID.", {"meta.instanceID": ["missing"]})
    if len(instance_id) > 128 or not re.fullmatch(r"[A-Za-z0-9._:-]+", instance_id):
        raise SubmissionError(400, "The submission's instanceID is not a usable id.",
                              {"meta.instanceID": ["must be like uuid:0b8f5c2e-…"]})
    deprecated = _text(_child(meta, "deprecatedID")) or None
    sub = Submission(form_id, version, instance_id, deprecated_id=deprecated)
    _answers(definition, root, definition.data["fields"], sub.answers, "")
    sub.started_at = _text(_child(root, "start")) or None
    sub.ended_at = _text(_child(root, "end")) or None
    sub.device_reported = _text(_child(root, "deviceid")) or None
    picked = _text(_child(root, PICK))
    sub.household_id = picked or _text(_child(root, HOUSEHOLD_ID)) or _text(_child(root, NEW_ID)) or None
    sub.new_household = not picked
    entity = _child(meta, "entity")
    if entity is not None and entity.get("id"):
        sub.household_id = entity.get("id")
        sub.entity = entity_versions(entity)
    if saves_household(definition) and not sub.new_household:
        for target in saved_top_fields(definition).values():
            stamps = _text(_child(root, stamp_property(target))).split()
            if stamps:
                sub.base[target] = stamps
    for ref in definition.iter_fields():
        if ref.type == "geopoint" and ref.repeat is None and isinstance(sub.answers.get(ref.name), dict):
            sub.geotag = dict(sub.answers[ref.name])
            break
    if definition.roster and sub.answers.get(definition.roster):
        for index, row in enumerate(sub.answers[definition.roster]):
            if "_id" not in row:
                raise SubmissionError(400, "A roster row has no id.",
                                      {f"{definition.roster}[{index}].{MEMBER_ROW_ID}": ["missing"]})
        if saves_household(definition):
            # a known member's row carries the stamps of the member's fields, as a household's does
            rows = [c for c in _roster_parent(root, definition) if _local(c.tag) == definition.roster]
            for row_element in rows:
                row_id = _text(_child(row_element, MEMBER_ROW_ID))
                if not _text(_child(row_element, ROW_MEMBER)):
                    continue
                member_entity = _child(_child(row_element, "meta"), "entity")
                if member_entity is not None and member_entity.get("id") == row_id:
                    sub.member_entities[row_id] = entity_versions(member_entity)
                for target in roster_fields(definition).values():
                    stamps = _text(_child(row_element, member_stamp_property(target))).split()
                    if stamps:
                        sub.base[f"members/{row_id}/{target}"] = stamps
    return sub



def _xml_value(kind: str, value: Any) -> str:
    if kind == "select_multiple" and isinstance(value, list):
        return " ".join(str(item) for item in value)
    if kind == "geopoint" and isinstance(value, Mapping):
        return " ".join(str(value.get(key, 0)) for key in ("lat", "lon", "altitude_m", "accuracy_m"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def submission_xml(definition: Definition, answers: Mapping[str, Any], *, instance_id: str,
                   household_id: str | None = None, picked: bool = False,
                   base: Mapping[str, list[str]] | None = None, deprecated_id: str | None = None) -> bytes:
    """The XML Collect would send for `answers` (kunjung's shape) of this form: what `read_submission`
    reads back. For tools that submit without a form engine (the bench, load tests)."""
    root = etree.Element(definition.form_id, id=definition.form_id, version=definition.version)
    saves = saves_household(definition)
    etree.SubElement(root, PICK).text = household_id if picked else ""
    etree.SubElement(root, NEW_ID).text = "" if picked else household_id
    etree.SubElement(root, HOUSEHOLD_ID).text = household_id
    if saves:
        for target in saved_top_fields(definition).values():
            etree.SubElement(root, stamp_property(target)).text = " ".join((base or {}).get(target, ()))

    def add(parent: etree._Element, fields: Iterable[Mapping[str, Any]], values: Mapping[str, Any]) -> None:
        for spec in fields:
            name, kind = spec["name"], spec["type"]
            if kind == "group":
                add(etree.SubElement(parent, name), spec.get("fields") or (), values)
            elif kind == "repeat":
                for row in values.get(name) or ():
                    element = etree.SubElement(parent, name)
                    etree.SubElement(element, MEMBER_ROW_ID).text = row.get("_id", "")
                    add(element, spec.get("fields") or (), row)
            elif kind != "note":
                value = values.get(name)
                etree.SubElement(parent, name).text = "" if value is None else _xml_value(kind, value)

    add(root, definition.data["fields"], answers)
    meta = etree.SubElement(root, "meta")
    if saves:
        entity = etree.SubElement(meta, "entity", dataset=HOUSEHOLD_LIST, id=household_id or "",
                                  create="false" if picked else "true", update="true" if picked else "false")
        etree.SubElement(entity, "label").text = household_id
    etree.SubElement(meta, "instanceID").text = instance_id
    if deprecated_id:
        etree.SubElement(meta, "deprecatedID").text = deprecated_id
    return etree.tostring(root, xml_declaration=False, encoding="utf-8")
