"""Every question type and column pyxform accepts either imports or is refused naming the sheet, the row and why."""

# The types and columns are read from the installed pyxform (its question type
# dictionary and its aliases), and each workbook is first converted by pyxform
# itself: only what pyxform accepts is asked of kunjung. So a pyxform release that
# adds a type or a column makes this test ask about it.

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import openpyxl
import pytest
from pyxform import aliases
from pyxform.errors import PyXFormError
from pyxform.question_type_dictionary import QUESTION_TYPE_DICT
from pyxform.xls2xform import convert

from forms.attachments import check_form_file
from forms.definition import media_question, validate_definition
from forms.xlsform import XLSFormError, import_xlsform

HEADER = ["type", "name", "label", "calculation"]
CHOICES = [["list_name", "name", "label"], ["ya_tidak", "1", "Ya"], ["ya_tidak", "2", "Tidak"]]
EXTERNAL = [["list_name", "name", "label"], ["desa", "1", "Sukamaju"], ["ya_tidak", "1", "Ya"]]
WHERE = re.compile(r"(survey|choices|settings)!\d+")


def workbook(survey: list[list[Any]], choices: list[list[Any]] | None = CHOICES,
             settings: list[list[Any]] | None = None, **sheets: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in {"survey": survey, "choices": choices, "settings": settings, **sheets}.items():
        if rows is None:
            continue
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def pyxform_accepts(data: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert(xlsform=data, file_type=".xlsx")
    except (PyXFormError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def outcome(data: bytes) -> tuple[str, Any]:
    """("imported", the import) or ("refused", its errors), checking that a refusal says where and why."""
    try:
        result = import_xlsform(data, "reference.xlsx")
    except XLSFormError as exc:
        errors = exc.errors
    else:
        return "imported", result
    assert errors
    for where, messages in errors.items():
        assert WHERE.fullmatch(where), where
        for message in messages:
            assert len(message) > 15, (where, message)  # a reason, not a bare code
    return "refused", errors


# --- question types ------------------------------------------------------------------------------------


def _type_cases() -> list[str]:
    names = set(QUESTION_TYPE_DICT) | set(getattr(aliases, "_type_alias_map", {}))
    cases = sorted(names)
    for command in sorted(aliases.select):
        if command in aliases.select_from_file:
            cases += [f"{command} desa.csv", f"{command} desa.xml", f"{command} desa.geojson"]
        else:
            cases += [f"{command} ya_tidak", f"{command} ya_tidak or_other"]
    return cases


def _rows_for(type_: str) -> list[tuple[list[list[Any]], dict[str, list[list[Any]]]]]:
    """Row shapes to try, the first pyxform accepts being the one asked of kunjung."""
    shapes = [[type_, "b", "B", None], [type_, "b", "B", "1"], [type_, None, None, None], [type_, "b", None, None],
              [f"{type_} ya_tidak", "b", "B", None]]
    extra = {"external_choices": EXTERNAL} if "external" in type_ else {}
    cases = [([HEADER, ["text", "a", "A", None], row], extra) for row in shapes]
    # background-geopoint records where the device is when another question is answered
    cases.append(([[*HEADER, "trigger"], ["text", "a", "A", None, None], [type_, "b", None, None, "${a}"]], extra))
    return cases


TYPE_CASES = _type_cases()


@pytest.mark.parametrize("type_", TYPE_CASES)
def test_each_pyxform_question_type_imports_or_is_refused_with_sheet_row_and_reason(type_):
    for survey, extra in _rows_for(type_):
        data = workbook(survey, **extra)
        if pyxform_accepts(data):
            break
    else:
        pytest.skip(f"pyxform refuses every row shape tried for {type_!r}")
    kind, result = outcome(data)
    if kind == "refused":
        # The row, and why: the type kunjung lacks, or what the row misses (a calculate's calculation).
        assert list(result) == ["survey!3"], result
        return
    names = {field["name"] for field in result.definition["fields"]}
    if "b" not in names and not any(name.startswith("generated_note_name") for name in names):
        # Skipped rows are metadata the visit envelope already records, or are said to be skipped.
        assert type_.lower() in {"start", "end", "today", "deviceid", "imei", "username", "start-geopoint",
                                 "audit", "device id", "start time", "end time", "get start time", "get end time",
                                 "get today", "get device id", "uri:username", "uri:deviceid"} \
            or "survey!3" in result.warnings, (type_, result.warnings)


# Types whose outcome is part of the contract, not only "imports or says why".
EXPECTED = {
    "photo": "image", "image": "image", "add photo prompt": "image", "q picture": "image", "q image": "image",
    "audio": "audio", "add audio prompt": "audio", "video": "video", "q video": "video", "file": "file",
    "add file prompt": "file", "select_one_from_file desa.csv": "select_one",
    "select_multiple_from_file desa.xml": "select_multiple", "select one from file desa.geojson": "select_one",
}


@pytest.mark.parametrize("type_", sorted(EXPECTED))
def test_media_and_file_selects_import_as_their_kunjung_types(type_):
    kind, result = outcome(workbook([HEADER, [type_, "b", "B", None]]))
    assert kind == "imported", result
    field = result.definition["fields"][0]
    assert field["type"] == EXPECTED[type_]
    if "from_file" in type_ or "from file" in type_:
        assert field["list_file"] == type_.rsplit(" ", 1)[1]


@pytest.mark.parametrize("type_", ["barcode", "geotrace", "geoshape", "range", "rank ya_tidak", "osm",
                                   "background-audio", "xml-external desa", "csv-external desa",
                                   "select_one_external desa", "time", "hidden", "acknowledge"])
def test_types_kunjung_lacks_are_refused_with_a_reason(type_):
    data = workbook([HEADER, ["text", "a", "A", None], [type_, "b", "B", None]], external_choices=EXTERNAL)
    kind, errors = outcome(data)
    assert kind == "refused"
    assert list(errors) == ["survey!3"]
    message = errors["survey!3"][0]
    assert f"'{type_}'" in message
    assert "not supported" in message or "not collected" in message or "use" in message


# --- columns ---------------------------------------------------------------------------------------------

COLUMN_VALUES = {
    "relevant": "${a} != ''", "relevance": "${a} != ''", "required": "yes", "constraint": ". != 'x'",
    "constraint_message": "Jawaban salah", "constraining_message": "Jawaban salah", "calculation": "concat('a')",
    "calculate": "concat('a')", "appearance": "multiline", "read_only": "yes", "readonly": "yes",
    "image": "b.png", "big-image": "b_besar.png", "audio": "b.mp3", "video": "b.mp4", "count": "2",
    "repeat_count": "2", "jr:count": "2", "autoplay": "audio", "rows": "3", "noapperrorstring": "Aplikasi tidak ada",
    "no_app_error_string": "Aplikasi tidak ada", "requiredmsg": "Wajib diisi", "required_message": "Wajib diisi",
    "hint": "Petunjuk", "guidance_hint": "Panduan", "default": "x", "choice_filter": "name != ''",
    "parameters": "rows=3", "trigger": "${a}", "compact_tag": "b", "save_to": "nama_b", "body::accept": ".pdf",
    "sms_field": "b", "sms_option": "b", "sms_separator": "+", "sms_allow_media": "yes",
    "sms_date_format": "%Y", "sms_datetime_format": "%Y", "sms_response": "ok",
}


def _column_cases() -> list[str]:
    known = set(aliases.survey_header) | set(aliases.TRANSLATABLE_SURVEY_COLUMNS) | {
        "hint", "guidance_hint", "default", "choice_filter", "parameters", "trigger", "body::accept"}
    # command, tag, value and caption rename core columns: asked in the header test below
    known -= {"command", "tag", "value", "caption", "body", "jr:constraintMsg", "jr:requiredMsg"}
    cases = sorted(c for c in known if isinstance(c, str))
    cases += [f"{column}::Indonesian (id)" for column in ("label", "hint", "image", "audio", "video", "big-image",
                                                         "constraint_message", "required_message", "guidance_hint")]
    return cases


@pytest.mark.parametrize("column", _column_cases())
def test_each_pyxform_survey_column_imports_or_is_refused_with_sheet_row_and_reason(column):
    base = column.split("::")[0]
    value = COLUMN_VALUES.get(base, "x")
    if column.startswith(("body::", "bind::", "control::")):
        base = column.split("::", 1)[1]
        value = COLUMN_VALUES.get(column, COLUMN_VALUES.get(base, "x"))
    type_, value = ("photo", "max-pixels=1024") if base == "parameters" else ("text", value)
    if base == "big-image":
        type_ = "note"
    data = workbook([["type", "name", "label", column], ["text", "a", "A", None], [type_, "b", "B", value]])
    if not pyxform_accepts(data):
        pytest.skip(f"pyxform refuses {column}={value!r} on a {type_}")
    kind, result = outcome(data)
    if kind == "refused":
        text = " ".join(m for messages in result.values() for m in messages)
        assert base.split(":")[-1].lower() in text.lower() or column in text, result
        return
    baseline = import_xlsform(workbook([["type", "name", "label"], ["text", "a", "A"], [type_, "b", "B"]]), "r.xlsx")
    field = next(f for f in result.definition["fields"] if f["name"] == "b")
    before = next(f for f in baseline.definition["fields"] if f["name"] == "b")
    advice = " ".join(m for messages in result.warnings.values() for m in messages)
    # Used (the field changes), or said to be ignored on the header row.
    assert field != before or column in advice, (field, result.warnings)


def test_the_column_aliases_of_type_name_and_label_import():
    data = workbook([["command", "value", "caption"], ["text", "b", "Nama"]])
    assert pyxform_accepts(data)
    kind, result = outcome(data)
    assert kind == "imported", result
    assert result.definition["fields"] == [{"type": "text", "name": "b", "label": {"id": "Nama"}}]


@pytest.mark.parametrize("column", sorted(set(aliases.TRANSLATABLE_CHOICES_COLUMNS) | set(aliases.list_header)))
def test_each_pyxform_choices_column_imports_or_is_refused(column):
    values = {"image": "a.png", "big-image": "a_besar.png", "audio": "a.mp3", "video": "a.mp4"}
    header = ["list_name", "name", "label"]
    if column in header or aliases.list_header.get(column) in ("name", "list_name", "label"):
        header = [column if aliases.list_header.get(column) == part or part == column else part
                  for part in ("list_name", "name", "label")]
        row = ["ya_tidak", "1", "Ya"]
    else:
        header.append(column)
        row = ["ya_tidak", "1", "Ya", values.get(column, "x")]
    data = workbook([HEADER, ["select_one ya_tidak", "b", "B", None]], [header, row])
    if not pyxform_accepts(data):
        pytest.skip(f"pyxform refuses the choices column {column}")
    kind, result = outcome(data)
    if kind == "refused":
        return
    choice = result.definition["choices"]["ya_tidak"][0]
    assert choice["name"] == "1"
    if column in values:
        assert choice["media"] == {column: {"id": values[column]}}


SETTINGS = ["form_title", "form_id", "version", "default_language", "instance_name", "style", "public_key",
            "submission_url", "auto_send", "auto_delete", "allow_choice_duplicates", "namespaces",
            "clean_text_values", "omit_instanceID", "prefix", "delimiter", "set_form_id", "set_form_title"]


@pytest.mark.parametrize("setting", SETTINGS)
def test_each_pyxform_setting_imports_or_is_refused_with_the_row(setting):
    values = {"version": "2026.1", "default_language": "Indonesian (id)", "auto_send": "true",
              "auto_delete": "false", "allow_choice_duplicates": "no", "clean_text_values": "yes",
              "omit_instanceID": "no", "instance_name": "concat('b', ${b})", "style": "pages",
              "namespaces": 'esri="http://esri.com/xforms"', "submission_url": "https://contoh.id/submission"}
    data = workbook([HEADER, ["text", "b", "B", None]], settings=[[setting], [values.get(setting, "formulir")]])
    if not pyxform_accepts(data):
        pytest.skip(f"pyxform refuses the setting {setting}")
    kind, result = outcome(data)
    if kind == "imported" and setting not in ("form_title", "form_id", "version", "default_language",
                                              "set_form_id", "set_form_title"):
        assert any(setting in m for messages in result.warnings.values() for m in messages), result.warnings


# --- a form as written in the field ---------------------------------------------------------------------


def test_a_real_world_form_with_photos_video_and_an_external_choice_csv_imports():
    survey = [
        ["type", "name", "label::Indonesian (id)", "label::English (en)", "hint::Indonesian (id)", "required",
         "relevant", "appearance", "parameters", "calculation", "image::Indonesian (id)", "audio::English (en)"],
        ["start", "start"], ["end", "end"], ["deviceid", "deviceid"],
        ["begin group", "identitas", "Identitas", "Identity", None, None, None, "field-list"],
        ["select_one_from_file desa.csv", "desa", "Desa", "Village", "Pilih desa", "yes", None, "minimal"],
        ["calculate", "nama_desa", None, None, None, None, None, None, None,
         "pulldata('desa', 'label', 'name', ${desa})"],
        ["text", "nama_kk", "Nama kepala keluarga", "Head of the family", None, "yes"],
        ["end group"],
        ["photo", "foto_rumah", "Foto depan rumah", "Front of the house", "Seluruh rumah terlihat", "yes", None,
         None, "max-pixels=1280", None, "contoh_rumah.jpg"],
        ["image", "foto_kk", "Foto KK", "Family card", None, None, "${nama_kk} != ''", "annotate", "max-pixels=1600"],
        ["image", "ttd", "Tanda tangan", "Signature", None, None, None, "signature"],
        ["video", "video_rumah", "Video keliling rumah", "Video around the house", None, None, None, None, None,
         None, None, "petunjuk_video.mp3"],
        ["audio", "catatan_suara", "Catatan suara", "Voice note", None, None, None, None, "quality=voice-only"],
        ["select_one kondisi", "kondisi", "Kondisi rumah", "House condition", None, "yes"],
        ["geopoint", "lokasi", "Lokasi", "Location", None, "yes", None, None, "capture-accuracy=10"],
    ]
    choices = [["list_name", "name", "label::Indonesian (id)", "label::English (en)", "image::Indonesian (id)"],
               ["kondisi", "layak", "Layak huni", "Fit to live in", "layak.jpg"],
               ["kondisi", "tidak_layak", "Tidak layak huni", "Not fit to live in", "tidak_layak.jpg"]]
    settings = [["form_id", "version", "form_title", "default_language", "instance_name"],
                ["verifikasi_rumah", "2026.12", "Verifikasi rumah", "Indonesian (id)",
                 "concat(${nama_kk}, ' ', ${desa})"]]
    data = workbook(survey, choices, settings)
    assert pyxform_accepts(data)
    kind, result = outcome(data)
    assert kind == "imported", result
    definition = validate_definition(result.definition)
    files = definition.form_files()
    assert {name: file.purposes for name, file in files.items()} == {
        "desa.csv": ("choices", "lookup"), "contoh_rumah.jpg": ("media",), "petunjuk_video.mp3": ("media",),
        "layak.jpg": ("media",), "tidak_layak.jpg": ("media",)}
    assert media_question(definition, "foto_rumah").max_pixels == 1280
    assert media_question(definition, "foto_kk").drawn == "annotate"
    assert media_question(definition, "ttd").drawn == "signature"
    assert media_question(definition, "video_rumah").kind == "video"
    assert definition.field("catatan_suara")["parameters"] == {"quality": "voice-only"}
    # the village list a field team keeps in a spreadsheet, exported as CSV
    book = openpyxl.Workbook()
    sheet = book.active
    for row in (["name", "label", "kecamatan"], ["3204052001", "Sukamaju", "Cangkuang"],
                ["3204052002", "Mekarsari", "Cangkuang"]):
        sheet.append(row)
    csv_text = "\n".join(",".join(str(cell.value) for cell in row) for row in sheet.iter_rows()) + "\n"
    assert check_form_file("desa.csv", csv_text.encode(), "choices") == []
    assert check_form_file("desa.csv", b"kode,nama\n1,a\n", "choices") == [
        "has no column 'name', 'label' (it has: kode, nama)"]
    # what is dropped is said, by row (the metadata rows the visit envelope records are dropped silently):
    # only the instance name, since kunjung names a visit by its household
    dropped = {where: m for where, messages in result.warnings.items() for m in messages if "ignored" in m}
    assert dropped == {"settings!2": "setting 'instance_name' is not used by kunjung; ignored"}
