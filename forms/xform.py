"""ODK XForms of kunjung's form definitions (built by pyxform), and Collect's submissions read back as answers."""

# A definition is turned into the XLSForm it would have been (sheets as lists of rows)
# and pyxform builds the XForm from that, so Collect gets exactly what ODK's own tools
# make. A form that saves to the household also declares the household as an ODK entity
# (entity list `households`): Collect picks one from `households.csv`, prefills the saved
# questions from it, and sends the writes back in the submission. The entity list's
# `__version` cannot name kunjung's stamps, so every saved field has a hidden property
# `kstamp__<field>` (the stamps of its heads) that the form copies into a hidden
# question: the submission's writes then carry a real `base`, and two officers editing
# one household offline make a conflict, never a silent overwrite.

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from forms.definition import Definition

__all__ = [
    "HOUSEHOLD_LIST",
    "MEMBER_ROW_ID",
    "STAMP_PREFIX",
    "Submission",
    "SubmissionError",
    "XForm",
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


def _entity_lookup(household_field: str) -> str:
    return f"instance('{HOUSEHOLD_LIST}')/root/item[name=${{{PICK}}}]/{household_field}"


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

    def build(self) -> dict[str, Any]:
        d = self.definition
        for kind, name in META_QUESTIONS:
            self.survey.append({"type": kind, "name": name})
        if self.saves:
            self.survey.append({"type": f"select_one_from_file {HOUSEHOLD_LIST}.csv", "name": PICK})
            _translated(self.survey[-1], "label", _PICK_LABEL)
            self.survey.append({"type": "calculate", "name": NEW_ID, "calculation": "once(uuid())"})
            self.survey.append({"type": "calculate", "name": HOUSEHOLD_ID,
                                "calculation": f"if(${{{PICK}}} = '', ${{{NEW_ID}}}, ${{{PICK}}})"})
            for target in self.saved.values():
                self.survey.append({"type": "calculate", "name": stamp_property(target),
                                    "calculation": _entity_lookup(stamp_property(target))})
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
        return sheets

    def _fields(self, fields: Iterable[Mapping[str, Any]], *, in_repeat: bool) -> None:
        for spec in fields:
            kind = spec["type"]
            if kind in ("group", "repeat"):
                row = {"type": f"begin_{kind}", "name": spec["name"]}
                self._common(row, spec)
                self.survey.append(row)
                if kind == "repeat":
                    self.survey.append({"type": "calculate", "name": MEMBER_ROW_ID, "calculation": "once(uuid())"})
                self._fields(spec.get("fields") or (), in_repeat=in_repeat or kind == "repeat")
                self.survey.append({"type": f"end_{kind}", "name": spec["name"]})
                continue
            if kind in ("select_one", "select_multiple"):
                row = {"type": f"{kind} {spec['list']}", "name": spec["name"]}
            else:
                row = {"type": _XLSFORM_TYPE[kind], "name": spec["name"]}
            self._common(row, spec)
            target = self.saved.get(spec["name"]) if not in_repeat else None
            if target:
                row["save_to"] = target
                if not spec.get("calculation"):
                    # Prefilled from the household picked, and again when another one is picked;
                    # the officer may still change the answer.
                    row["calculation"] = _entity_lookup(target)
                    row["trigger"] = f"${{{PICK}}}"
            self.survey.append(row)

    @staticmethod
    def _common(row: dict[str, str], spec: Mapping[str, Any]) -> None:
        _translated(row, "label", spec.get("label"))
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
                for key, value in item.items():
                    if key not in ("name", "label") and value is not None:
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


_CACHE: OrderedDict[tuple[str, str, str], XForm] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 128


def xform_of(definition: Definition) -> XForm:
    """The XForm of a definition. Deterministic (the same definition always gives the same bytes),
    so a published version's XForm and md5 never change; kept by the definition's hash."""
    key = (definition.form_id, definition.version, definition.hash)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    from pyxform.xls2xform import convert  # imported on first use: pyxform loads slowly

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
    built = XForm(definition.form_id, definition.version, xml, hashlib.md5(xml).hexdigest(),  # noqa: S324 - OpenRosa's hash
                  saves_household(definition), saved_top_fields(definition))
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


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


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
    for count, _element in enumerate(root.iter(), 1):
        if count > MAX_ELEMENTS:
            raise SubmissionError(400, f"The submission has more than {MAX_ELEMENTS} elements.")
    for element in root.iter():
        depth = sum(1 for _ in element.iterancestors())
        if depth > MAX_DEPTH:
            raise SubmissionError(400, f"The submission nests deeper than {MAX_DEPTH} levels.")
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


def _answers(definition: Definition, element: etree._Element, fields: Iterable[Mapping[str, Any]],
             into: dict[str, Any], path: str) -> None:
    for spec in fields:
        name, kind = spec["name"], spec["type"]
        if kind == "group":
            _answers(definition, _child(element, name), spec.get("fields") or (), into, path) \
                if _child(element, name) is not None else None
            continue
        if kind == "repeat":
            rows = []
            for index, row_element in enumerate(c for c in element if _local(c.tag) == name):
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
        text = _text(_child(element, name))
        if text:
            into[name] = _value(kind, text, f"{path}{name}")


def read_submission(definition: Definition, root: etree._Element) -> Submission:
    """The answers and envelope of a submission of `definition` (SubmissionError for one that does not fit)."""
    form_id, version = submission_form(root)
    meta = _child(root, "meta")
    instance_id = _text(_child(meta, "instanceID"))
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
    if saves_household(definition):
        picked = _text(_child(root, PICK))
        sub.household_id = picked or _text(_child(root, HOUSEHOLD_ID)) or _text(_child(root, NEW_ID)) or None
        sub.new_household = not picked
        entity = _child(meta, "entity")
        if entity is not None and entity.get("id"):
            sub.household_id = entity.get("id")
        if not sub.new_household:
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
    if saves:
        etree.SubElement(root, PICK).text = household_id if picked else ""
        etree.SubElement(root, NEW_ID).text = "" if picked else household_id
        etree.SubElement(root, HOUSEHOLD_ID).text = household_id
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
