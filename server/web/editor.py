"""The in-page form editor's model: a definition as XLSForm rows (survey, choices, settings), back again through
the XLSForm importer (so errors come back by sheet and row, as the API's upload reports them), and the difference
between two definitions."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import openpyxl

# The survey columns the editor shows, as (key, XLSForm header); translatable ones have a column per language.
SURVEY_COLUMNS = (
    ("type", "type"), ("name", "name"), ("label_id", "label::Indonesian (id)"), ("label_en", "label::English (en)"),
    ("hint_id", "hint::Indonesian (id)"), ("hint_en", "hint::English (en)"), ("required", "required"),
    ("relevant", "relevant"), ("constraint", "constraint"),
    ("constraint_message_id", "constraint_message::Indonesian (id)"),
    ("constraint_message_en", "constraint_message::English (en)"), ("calculation", "calculation"),
    ("default", "default"), ("choice_filter", "choice_filter"), ("appearance", "appearance"), ("save_to", "save_to"),
    ("parameters", "parameters"),
)
CHOICE_COLUMNS = (("list_name", "list_name"), ("name", "name"), ("label_id", "label::Indonesian (id)"),
                  ("label_en", "label::English (en)"))
SETTINGS_COLUMNS = (("form_id", "form_id"), ("version", "version"), ("title_id", "form_title::Indonesian (id)"),
                    ("title_en", "form_title::English (en)"), ("default_language", "default_language"))
CONTAINERS = {"group": "group", "repeat": "repeat"}
MAX_ROWS = 2000


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def _field_rows(fields: list[Mapping[str, Any]], choices: Mapping[str, Any]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for field in fields:
        kind = field.get("type", "")
        row = {key: "" for key, _ in SURVEY_COLUMNS}
        row["name"] = _text(field.get("name"))
        for key in ("label", "hint", "constraint_message"):
            texts = field.get(key)
            if isinstance(texts, Mapping):
                row[f"{key}_id"], row[f"{key}_en"] = _text(texts.get("id")), _text(texts.get("en"))
            elif texts is not None:
                row[f"{key}_id"] = _text(texts)
        row["required"] = "yes" if field.get("required") else ""
        for key in ("relevant", "constraint", "calculation", "default", "choice_filter", "appearance", "save_to"):
            row[key] = _text(field.get(key))
        if isinstance(field.get("parameters"), Mapping):
            row["parameters"] = " ".join(f"{k}={_text(v)}" for k, v in field["parameters"].items())
        if kind in CONTAINERS:
            row["type"] = f"begin {kind}"
            rows.append(row)
            rows.extend(_field_rows(field.get("fields") or [], choices))
            end = {key: "" for key, _ in SURVEY_COLUMNS}
            end["type"] = f"end {kind}"
            rows.append(end)
            continue
        row["type"] = f"{kind} {field['list']}" if field.get("list") else kind
        rows.append(row)
    return rows


def definition_rows(data: Mapping[str, Any]) -> dict[str, Any]:
    """A definition as the editor's three tables."""
    settings = data.get("settings") or {}
    title = settings.get("title") or {}
    choice_rows = []
    for list_name, listed in (data.get("choices") or {}).items():
        for choice in listed:
            label = choice.get("label") or {}
            choice_rows.append({"list_name": list_name, "name": _text(choice.get("name")),
                                "label_id": _text(label.get("id") if isinstance(label, Mapping) else label),
                                "label_en": _text(label.get("en") if isinstance(label, Mapping) else "")})
    return {"survey": _field_rows(data.get("fields") or [], data.get("choices") or {}), "choices": choice_rows,
            "settings": {"form_id": _text(settings.get("form_id")), "version": _text(settings.get("version")),
                         "title_id": _text(title.get("id")), "title_en": _text(title.get("en")),
                         "default_language": _text(settings.get("default_language") or "id")}}


def rows_from_form(form: Any) -> dict[str, Any]:
    """The three tables as the editor's page posted them (``survey-<i>-<key>``, ``choices-<i>-<key>``)."""
    def table(prefix: str, columns: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
        given = (form.get(f"{prefix}-count") or "0").strip()
        count = min(int(given), MAX_ROWS) if given.isdigit() else 0  # a page posts a number; anything else: none
        rows = []
        for index in range(count):
            row = {key: (form.get(f"{prefix}-{index}-{key}") or "").strip() for key, _ in columns}
            if any(row.values()):
                rows.append(row)
        return rows

    return {"survey": table("survey", SURVEY_COLUMNS), "choices": table("choices", CHOICE_COLUMNS),
            "settings": {key: (form.get(f"settings-{key}") or "").strip() for key, _ in SETTINGS_COLUMNS}}


def blank(columns: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {key: "" for key, _ in columns}


def xlsx_bytes(tables: Mapping[str, Any]) -> bytes:
    """The tables as an XLSForm workbook (survey, choices, settings)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for sheet_name, columns, rows in (("survey", SURVEY_COLUMNS, tables["survey"]),
                                      ("choices", CHOICE_COLUMNS, tables["choices"]),
                                      ("settings", SETTINGS_COLUMNS, [tables["settings"]])):
        sheet = book.create_sheet(sheet_name)
        sheet.append([header for _, header in columns])
        for number, row in enumerate(rows, start=2):
            for column, (key, _) in enumerate(columns, start=1):
                value = row.get(key, "")
                if value:
                    cell = sheet.cell(row=number, column=column, value=value)
                    # openpyxl would store a text starting with "=" as a formula; it is text here.
                    cell.data_type = "s"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def next_version(version: str) -> str:
    """A version name after ``version``: its last number one higher (2026.1 → 2026.2), else ``.1`` added."""
    head, dot, tail = version.rpartition(".")
    if tail.isdigit():
        return f"{head}{dot}{int(tail) + 1}"
    return f"{version}.1"


def row_errors(errors: Mapping[str, list[str]]) -> dict[str, Any]:
    """Errors by where they belong in the editor: ``survey`` row index → messages, ``choices`` likewise, and
    ``other`` for the settings and the form as a whole."""
    out: dict[str, Any] = {"survey": {}, "choices": {}, "other": []}
    for where, messages in errors.items():
        sheet, _, row = where.partition("!")
        if sheet in ("survey", "choices") and row.isdigit() and int(row) >= 2:
            out[sheet].setdefault(int(row) - 2, []).extend(messages)  # the header is row 1
        else:
            out["other"].extend(f"{where}: {m}" for m in messages)
    return out


def _flat(fields: list[Mapping[str, Any]], into: dict[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    for field in fields:
        into[field["name"]] = {k: v for k, v in field.items() if k != "fields"}
        _flat(field.get("fields") or [], into)
    return into


def difference(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What changed from ``before`` (the published version) to ``after``, question by question and list by list."""
    if before is None:
        return []
    changes: list[dict[str, Any]] = []
    old, new = _flat(before.get("fields") or [], {}), _flat(after.get("fields") or [], {})
    for name in new:
        if name not in old:
            changes.append({"what": "question", "name": name, "change": "added"})
        elif old[name] != new[name]:
            keys = sorted(k for k in set(old[name]) | set(new[name]) if old[name].get(k) != new[name].get(k))
            changes.append({"what": "question", "name": name, "change": "changed",
                            "details": [{"key": k, "before": old[name].get(k), "after": new[name].get(k)}
                                        for k in keys]})
    changes.extend({"what": "question", "name": name, "change": "removed"} for name in old if name not in new)
    if list(old) != [n for n in new if n in old] and not any(c["change"] == "removed" for c in changes):
        changes.append({"what": "order", "name": "", "change": "reordered"})
    old_choices, new_choices = before.get("choices") or {}, after.get("choices") or {}
    for list_name in sorted(set(old_choices) | set(new_choices)):
        if old_choices.get(list_name) != new_choices.get(list_name):
            change = ("added" if list_name not in old_choices else
                      "removed" if list_name not in new_choices else "changed")
            changes.append({"what": "choices", "name": list_name, "change": change})
    if (before.get("settings") or {}).get("title") != (after.get("settings") or {}).get("title"):
        changes.append({"what": "title", "name": "", "change": "changed"})
    return changes
