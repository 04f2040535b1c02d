"""XLSForm import: pyxform's own test workbooks and small workbooks built here, errors named by sheet!row."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import openpyxl
import pytest

from forms.definition import DefinitionError, validate_definition
from forms.xlsform import (
    FILE_KEY,
    XLSFormError,
    import_xlsform,
    translate_errors,
    xlsform_to_definition,
    xlsform_to_definition_with_rows,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "xlsforms"


def workbook(survey: list[list], choices: list[list] | None = None, settings: list[list] | None = None,
             **other_sheets: list[list]) -> bytes:
    """An .xlsx built in memory; each sheet is a list of rows, the first row being the header."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    sheets = {"survey": survey, "choices": choices, "settings": settings, **other_sheets}
    for name, rows in sheets.items():
        if rows is None:
            continue
        sheet = book.create_sheet(name)
        for number, row in enumerate(rows, start=1):
            for column, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(row=number, column=column, value=value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def refused(data: bytes, filename: str = "form.xlsx") -> dict[str, list[str]]:
    with pytest.raises(XLSFormError) as caught:
        xlsform_to_definition(data, filename)
    return caught.value.errors


SETTINGS = [["form_id", "version", "form_title::Indonesian (id)", "form_title::English (en)", "default_language"],
            ["survei_contoh", "2026.1", "Survei contoh", "Sample survey", "Indonesian (id)"]]


# --- pyxform's own workbooks --------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["tutorial.xls", "gps.xls", "group.xlsx", "repeat_date_test.xls"])
def test_pyxform_workbooks_import_into_valid_definitions(filename):
    data = (FIXTURES / filename).read_bytes()
    definition = xlsform_to_definition(data, filename)
    validate_definition(definition)
    assert definition["settings"]["form_id"]
    assert definition["fields"]


def test_tutorial_keeps_repeat_relevance_and_constraints():
    definition = xlsform_to_definition((FIXTURES / "tutorial.xls").read_bytes(), "tutorial.xls")
    assert definition["settings"]["form_id"] == "tutorial"
    [member] = definition["fields"]
    assert member["type"] == "repeat"
    assert member["name"] == "member"
    by_name = {f["name"]: f for f in member["fields"]}
    assert by_name["relationship_to_household_head"] == {
        "type": "select_one",
        "name": "relationship_to_household_head",
        "label": {"id": "What is the relationship of (NAME) to the head of the household?"},
        "list": "relationships",
    }
    assert by_name["age_in_years"]["relevant"] == "${older_than_five}='yes'"
    assert by_name["age_in_years"]["constraint"] == ". >= 5"
    assert [c["name"] for c in definition["choices"]["yes_no"]] == ["yes", "no"]


def test_group_xlsx_is_english_only_so_english_is_its_default_language():
    result = xlsform_to_definition_with_rows((FIXTURES / "group.xlsx").read_bytes(), "group.xlsx")
    definition = result.definition
    assert definition["settings"]["default_language"] == "en"
    family, father = definition["fields"]
    # The validator needs Indonesian text; an English-only form shows its English text, with a warning.
    assert family["label"] == {"id": "What's your family name?", "en": "What's your family name?"}
    assert any("Indonesian" in m for m in result.warnings["survey!2"])
    assert father["type"] == "group"
    phone, age = father["fields"]
    # pyxform's "phone number" is text that only takes digits.
    assert phone["type"] == "text"
    assert phone["constraint"] == r"regex(., '^\d*$')"
    assert age["type"] == "integer"
    assert result.rows["fields[1].fields[1]"] == "survey!5"


def test_gps_is_a_geopoint_and_the_form_id_comes_from_the_file_name():
    result = xlsform_to_definition_with_rows((FIXTURES / "gps.xls").read_bytes(), "gps.xls")
    assert result.definition["fields"] == [{"type": "geopoint", "name": "location", "label": {"id": "GPS"}}]
    assert result.definition["settings"]["form_id"] == "gps"
    assert any("form_id" in m for m in result.warnings["settings"])


def test_repeat_date_test_names_its_notes_and_warns_about_what_it_drops():
    result = xlsform_to_definition_with_rows((FIXTURES / "repeat_date_test.xls").read_bytes(),
                                             "repeat_date_test.xls")
    fields = result.definition["fields"]
    assert [f["name"] for f in fields] == ["generated_note_name_2", "repeat_count", "repeat_test",
                                           "generated_note_name_8"]
    assert fields[2]["type"] == "repeat"
    assert any("repeat_count" in m for m in result.warnings["survey!1"])
    # Image-only choices keep their picture, and their code stands in for the text label.
    assert result.definition["choices"]["a_b"][0] == {"name": "a", "label": {"id": "a"},
                                                      "media": {"image": {"id": "a.jpg"}}}
    assert "choices!20" not in result.warnings
    assert validate_definition(result.definition).form_files()["a.jpg"].purpose == "media"


def test_choice_filter_workbook_is_refused_for_its_duplicate_choice_names():
    # It relies on allow_choice_duplicates ('king' is a county of two states); kunjung's answers are choice
    # names, so names must be unique in a list.
    errors = refused((FIXTURES / "choice_filter_test.xlsx").read_bytes(), "choice_filter_test.xlsx")
    assert list(errors) == ["choices!6"]
    assert "'king'" in errors["choices!6"][0]
    assert "choices!4" in errors["choices!6"][0]


def test_choice_filter_workbook_without_duplicates_keeps_the_filter_and_the_extra_column():
    book = openpyxl.load_workbook(FIXTURES / "choice_filter_test.xlsx")
    book["choices"]["B6"] = "king_tx"
    out = io.BytesIO()
    book.save(out)
    definition = xlsform_to_definition(out.getvalue(), "choice_filter_test.xlsx")
    validate_definition(definition)
    assert definition["settings"]["form_id"] == "cascading_selects1"
    county = definition["fields"][1]
    assert county["choice_filter"] == "${state}=cf"
    assert definition["choices"]["counties"][0] == {"name": "king", "label": {"id": "King"}, "cf": "washington"}


def test_widgets_is_refused_naming_sheet_row_and_each_type_kunjung_lacks_but_not_media():
    errors = refused((FIXTURES / "widgets.xls").read_bytes(), "widgets.xls")
    # image, audio and video (rows 13-15) are media questions now; what stays refused says why.
    assert not {"survey!13", "survey!14", "survey!15"} & set(errors)
    assert "'barcode'" in errors["survey!12"][0]
    assert "'time'" in errors["survey!6"][0]
    assert "'trigger'" in errors["survey!9"][0]


def test_loop_is_refused_naming_sheet_row_and_type():
    errors = refused((FIXTURES / "loop.xlsx").read_bytes(), "loop.xlsx")
    assert list(errors) == ["survey!3"]
    assert "begin loop over toilet_type" in errors["survey!3"][0]


def test_fixture_files_carry_their_licence_and_source():
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    assert "XLSForm/pyxform" in readme
    assert "Redistribution and use in source and binary forms" in (
        FIXTURES / "LICENSE-pyxform.txt").read_text(encoding="utf-8")


# --- workbooks built here ------------------------------------------------------------------------


BILINGUAL_SURVEY = [
    ["type", "name", "label::Indonesian (id)", "label::English (en)", "hint::Indonesian (id)",
     "hint::English (en)", "required", "relevant", "constraint", "constraint_message::Indonesian (id)",
     "constraint_message::English (en)", "calculation", "default", "choice_filter", "appearance", "save_to"],
    ["text", "head_name", "Nama kepala keluarga", "Name of the head of the family", None, None, "yes", None,
     None, None, None, None, None, None, None, "head_name"],
    ["begin group", "housing", "Perumahan", "Housing", None, None, None, None, None, None, None, None, None,
     None, "field-list", None],
    ["decimal", "floor_area", "Luas lantai", "Floor area", "Dalam m²", "In m²", "TRUE()", None, ". > 0",
     "Harus lebih dari 0", "Must be more than 0", None, None, None, None, "floor_area"],
    ["select_one province", "province", "Provinsi", "Province", None, None, "true", None, None, None, None, None,
     None, None, None, None],
    ["select_one regency", "regency", "Kabupaten/kota", "Regency or city", None, None, None, None, None, None,
     None, None, None, "province = ${province}", "minimal", None],
    ["end group", None, None, None, None, None, None, None, None, None, None, None, None, None, None, None],
    ["begin repeat", "members", "Anggota keluarga", "Family members", None, None, None, None, None, None, None,
     None, None, None, None, "members"],
    ["text", "member_name", "Nama", "Name", None, None, "yes", None, None, None, None, None, None, None, None,
     "name"],
    ["integer", "age", "Umur", "Age", None, None, "no", None, ". >= 0", None, None, None, "0", None, None, None],
    ["select_one yes_no", "pregnant", "Sedang hamil?", "Pregnant?", None, None, None, "${age} >= 10", None, None,
     None, None, None, None, None, None],
    ["end repeat", None, None, None, None, None, None, None, None, None, None, None, None, None, None, None],
    ["calculate", "member_total", None, None, None, None, None, None, None, None, None, "count(${members})",
     None, None, None, None],
]
BILINGUAL_CHOICES = [
    ["list_name", "name", "label::Indonesian (id)", "label::English (en)", "province"],
    ["province", "32", "Jawa Barat", "West Java", None],
    ["province", "33", "Jawa Tengah", "Central Java", None],
    [None, None, None, None, None],
    ["regency", "3204", "Kabupaten Bandung", "Bandung Regency", "32"],
    ["regency", "3301", "Kabupaten Cilacap", "Cilacap Regency", "33"],
    ["yes_no", "1", "Ya", "Yes", None],
    ["yes_no", "2", "Tidak", "No", None],
]


def bilingual() -> bytes:
    return workbook(BILINGUAL_SURVEY, BILINGUAL_CHOICES, SETTINGS)


def test_bilingual_workbook_with_group_repeat_and_choice_filter():
    result = xlsform_to_definition_with_rows(bilingual(), "contoh.xlsx")
    definition = result.definition
    assert definition["settings"] == {
        "form_id": "survei_contoh",
        "version": "2026.1",
        "title": {"id": "Survei contoh", "en": "Sample survey"},
        "default_language": "id",
    }
    head, housing, members, total = definition["fields"]
    assert head == {"type": "text", "name": "head_name",
                    "label": {"id": "Nama kepala keluarga", "en": "Name of the head of the family"},
                    "required": True, "save_to": "head_name"}
    assert housing["type"] == "group"
    assert housing["appearance"] == "field-list"
    floor_area, province, regency = housing["fields"]
    assert floor_area == {
        "type": "decimal", "name": "floor_area", "label": {"id": "Luas lantai", "en": "Floor area"},
        "hint": {"id": "Dalam m²", "en": "In m²"}, "required": True, "constraint": ". > 0",
        "constraint_message": {"id": "Harus lebih dari 0", "en": "Must be more than 0"}, "save_to": "floor_area",
    }
    assert province["list"] == "province"
    assert regency["choice_filter"] == "province = ${province}"
    assert regency["appearance"] == "minimal"
    assert members["type"] == "repeat"
    assert members["save_to"] == "members"
    name, age, pregnant = members["fields"]
    assert name["save_to"] == "name"
    assert "required" not in age
    assert age["default"] == "0"
    assert pregnant["relevant"] == "${age} >= 10"
    assert total == {"type": "calculate", "name": "member_total", "calculation": "count(${members})"}
    # The extra choice column is kept so that the choice_filter can read it.
    assert definition["choices"]["regency"][0] == {
        "name": "3204", "label": {"id": "Kabupaten Bandung", "en": "Bandung Regency"}, "province": "32",
    }
    assert definition["choices"]["province"][0] == {"name": "32", "label": {"id": "Jawa Barat", "en": "West Java"}}
    validated = validate_definition(definition)
    assert validated.roster == "members"
    assert validated.save_to_map["member_name"] == "members/{row}/name"
    assert validated.warnings == {}


def test_every_json_path_maps_back_to_its_sheet_and_row():
    rows = xlsform_to_definition_with_rows(bilingual(), "contoh.xlsx").rows
    assert rows["fields[0]"] == "survey!2"
    assert rows["fields[1]"] == "survey!3"
    assert rows["fields[1].fields[2]"] == "survey!6"
    assert rows["fields[2].fields[2]"] == "survey!11"
    assert rows["fields[3]"] == "survey!13"
    # The blank row 4 of the choices sheet still counts.
    assert rows["choices.regency[0]"] == "choices!5"
    assert rows["choices.yes_no[1]"] == "choices!8"
    assert rows["settings"] == "settings!2"


def test_translate_errors_names_sheet_row_and_column():
    rows = xlsform_to_definition_with_rows(bilingual(), "contoh.xlsx").rows
    translated = translate_errors({
        "fields[1].fields[2].choice_filter": ["unknown field ${nope}"],
        "fields[2].fields[1]": ["bad"],
        "choices.regency[1].name": ["duplicate"],
        "choices['yes_no'][0].label": ["missing en"],
        "settings.version": ["must not be empty"],
        "somewhere.else": ["kept"],
    }, rows)
    assert translated == {
        "survey!6": ["choice_filter: unknown field ${nope}"],
        "survey!10": ["bad"],
        "choices!6": ["name: duplicate"],
        "choices!7": ["label: missing en"],
        "settings!2": ["version: must not be empty"],
        "somewhere.else": ["kept"],
    }


def test_validator_errors_come_back_keyed_by_sheet_and_row():
    survey = [["type", "name", "label", "constraint"],
              ["integer", "age", "Umur", ". >= 0"],
              ["integer", "weight", "Berat", "${no_such_field} > 1"]]
    data = workbook(survey, settings=SETTINGS)
    definition = xlsform_to_definition(data, "x.xlsx")
    with pytest.raises(DefinitionError):
        validate_definition(definition)
    with pytest.raises(XLSFormError) as caught:
        import_xlsform(data, "x.xlsx")
    errors = caught.value.errors
    assert list(errors) == ["survey!3"]
    assert "no_such_field" in " ".join(errors["survey!3"])


def test_import_xlsform_returns_a_validated_import():
    result = import_xlsform(bilingual(), "contoh.xlsx")
    assert result.definition["settings"]["form_id"] == "survei_contoh"
    assert result.warnings == {}


def test_import_xlsform_keys_the_validators_warnings_by_sheet_and_row_too():
    survey = [["type", "name", "label", "constraint message"], ["integer", "n", "Jumlah", "Harus angka"]]
    choices = [["list_name", "name", "label::Indonesian (id)", "label::English (en)"], ["unused", "1", "Ya", "Yes"]]
    result = import_xlsform(workbook(survey, choices), "peringatan.xlsx")
    assert result.definition["fields"][0]["constraint_message"] == {"id": "Harus angka"}
    assert any("English" in m for m in result.warnings["survey!2"])
    assert any("no select uses" in m for m in result.warnings["choices!2"])


def test_plain_label_goes_to_the_default_language_and_other_languages_are_dropped():
    survey = [["type", "name", "label", "label:english", "label::Français (fr)"],
              ["text", "a", "Nama", "Name", "Nom"]]
    result = xlsform_to_definition_with_rows(workbook(survey), "bahasa.xlsx")
    assert result.definition["fields"][0]["label"] == {"id": "Nama", "en": "Name"}
    assert any("Français" in m for m in result.warnings["survey!1"])
    # Two columns for English are ambiguous.
    assert "survey!1" in refused(workbook([["type", "name", "label::en", "label:English (en)"],
                                           ["text", "a", "A", "B"]]))


def test_legacy_column_names_are_understood():
    survey = [["type", "name", "label", "bind:relevant", "bind:constraint", "bind:jr:constraintMsg",
               "calculate"],
              ["integer", "n", "Jumlah", "1 = 1", ". > 0", "Lebih dari nol", None],
              ["calculate", "double", None, None, None, None, "${n} * 2"]]
    choices = [["list name", "name", "label"], ["yn", "1", "Ya"]]
    definition = xlsform_to_definition(workbook(survey, choices), "lama.xlsx")
    n, double = definition["fields"]
    assert n["relevant"] == "1 = 1"
    assert n["constraint"] == ". > 0"
    assert n["constraint_message"] == {"id": "Lebih dari nol"}
    assert double["calculation"] == "${n} * 2"
    assert definition["choices"] == {"yn": [{"name": "1", "label": {"id": "Ya"}}]}


def test_select_aliases_or_other_and_multiple_defaults():
    survey = [["type", "name", "label", "default"],
              ["select one from fuel", "fuel", "Bahan bakar", None],
              ["select all that apply from fuel or_other", "fuels", "Semua bahan bakar", "1 2"],
              ["select_multiple  fuel", "spaced", "Spasi ganda", None]]
    choices = [["list_name", "name", "label"], ["fuel", "1", "Listrik"], ["fuel", "2", "Elpiji"]]
    result = xlsform_to_definition_with_rows(workbook(survey, choices), "bahan.xlsx")
    fuel, fuels, other, spaced = result.definition["fields"]
    assert fuel["type"] == "select_one"
    assert fuels["type"] == "select_multiple"
    assert fuels["default"] == "1 2"
    assert other["name"] == "fuels_other"
    assert other["relevant"] == "selected(${fuels}, 'other')"
    assert result.rows["fields[2]"] == "survey!3"
    assert result.definition["choices"]["fuel"][-1]["name"] == "other"
    assert spaced["list"] == "fuel"
    validate_definition(result.definition)


def test_metadata_rows_are_skipped():
    survey = [["type", "name", "label"],
              ["start", "start", None], ["end", "end", None], ["today", "today", None],
              ["deviceid", "deviceid", None], ["phonenumber", "phone", None],
              ["text", "a", "A"]]
    result = xlsform_to_definition_with_rows(workbook(survey), "meta.xlsx")
    assert [f["name"] for f in result.definition["fields"]] == ["a"]
    assert result.rows["fields[0]"] == "survey!7"
    assert "phonenumber" in result.warnings["survey!6"][0]


@pytest.mark.parametrize("type_", [
    "barcode", "signature", "background-audio", "osm", "geotrace", "geoshape", "range",
    "rank fruit", "acknowledge", "time", "select_one_from_file villages.txt", "select_multiple_from_file",
    "select_one_external fruit", "begin loop over fruit", "hidden", "xml-external", "guess_what",
])
def test_unsupported_types_are_refused_naming_sheet_row_and_type(type_):
    survey = [["type", "name", "label"], ["text", "a", "A"], [type_, "b", "B"]]
    errors = refused(workbook(survey, [["list_name", "name", "label"], ["fruit", "1", "Apel"]]))
    assert list(errors) == ["survey!3"]
    assert f"'{type_}'" in errors["survey!3"][0]


def test_duplicate_name_is_refused_with_sheet_row_and_name():
    survey = [["type", "name", "label"],
              ["text", "name", "Nama"],
              ["begin repeat", "members", "Anggota"],
              [None, None, None],
              ["text", "name", "Nama anggota"],
              ["end repeat", None, None]]
    errors = refused(workbook(survey))
    assert list(errors) == ["survey!5"]
    assert "'name'" in errors["survey!5"][0]
    assert "survey!2" in errors["survey!5"][0]


def test_duplicate_choice_is_refused_with_sheet_row_and_name():
    choices = [["list_name", "name", "label"], ["yn", "1", "Ya"], ["yn", "1", "Tidak"]]
    errors = refused(workbook([["type", "name", "label"], ["select_one yn", "q", "Q"]], choices))
    assert list(errors) == ["choices!3"]
    assert "'1'" in errors["choices!3"][0]


def test_a_select_without_a_list_is_refused():
    errors = refused(workbook([["type", "name", "label"], ["select_one", "q", "Q"]]))
    assert "needs the name of its choice list" in errors["survey!2"][0]


def test_unknown_choice_list_is_refused_with_sheet_row_and_list_name():
    survey = [["type", "name", "label"], ["text", "a", "A"], ["select_one floors", "floor", "Lantai"]]
    errors = refused(workbook(survey, [["list_name", "name", "label"], ["walls", "1", "Tembok"]]))
    assert list(errors) == ["survey!3"]
    assert "'floors'" in errors["survey!3"][0]


@pytest.mark.parametrize(("survey", "where", "words"), [
    ([["begin group", "g", "G"], ["text", "a", "A"]], "survey!2", "has no 'end group'"),
    ([["text", "a", "A"], ["end group", None, None]], "survey!3", "without a matching"),
    ([["begin repeat", "r", "R"], ["text", "a", "A"], ["end group", None, None]], "survey!4", "closes"),
    ([["begin group", "g", "G"], ["begin repeat", "r", "R"], ["end repeat", None, None]], "survey!2", "has no"),
])
def test_unbalanced_groups_are_refused_with_the_row(survey, where, words):
    errors = refused(workbook([["type", "name", "label"], *survey]))
    assert where in errors
    assert words in errors[where][0]


def test_missing_settings_sheet_takes_form_id_from_the_file_name():
    result = xlsform_to_definition_with_rows(workbook([["type", "name", "label"], ["text", "a", "A"]]),
                                             "Survei Rumah Tangga 2026 (v2).xlsx")
    settings = result.definition["settings"]
    assert settings["form_id"] == "survei_rumah_tangga_2026_v2"
    assert settings["version"] == "1"
    assert settings["default_language"] == "id"
    assert settings["title"] == {"id": "survei_rumah_tangga_2026_v2"}
    assert len(result.warnings["settings"]) == 2
    validate_definition(result.definition)


def test_settings_form_id_wins_and_a_digit_led_file_name_gets_a_prefix():
    survey = [["type", "name", "label"], ["text", "a", "A"]]
    assert xlsform_to_definition(workbook(survey), "2026.xlsx")["settings"]["form_id"] == "form_2026"
    settings = [["form_id", "version"], ["mine", 3]]
    assert xlsform_to_definition(workbook(survey, settings=settings), "2026.xlsx")["settings"] == {
        "form_id": "mine", "version": "3", "title": {"id": "mine"}, "default_language": "id",
    }


def test_unsupported_default_language_is_refused_at_the_settings_row():
    errors = refused(workbook([["type", "name", "label"], ["text", "a", "A"]],
                              settings=[["form_id", "default_language"], ["f", "French (fr)"]]))
    assert "French (fr)" in errors["settings!2"][0]


def test_conditional_required_is_refused():
    errors = refused(workbook([["type", "name", "label", "required"], ["text", "a", "A", "${b} = 1"]]))
    assert "survey!2" in errors


def test_a_nameless_group_is_reported_once():
    errors = refused(workbook([["type", "name", "label"], ["begin group", None, "G"], ["text", "a", "A"],
                               ["end group", None, None]]))
    assert list(errors) == ["survey!2"]
    assert "no name" in errors["survey!2"][0]


def test_label_default_is_the_plain_label():
    survey = [["type", "name", "label::default", "label::English (en)"], ["text", "a", "Nama", "Name"]]
    assert xlsform_to_definition(workbook(survey), "f.xlsx")["fields"][0]["label"] == {"id": "Nama", "en": "Name"}


def test_rows_without_type_or_name_are_refused():
    errors = refused(workbook([["type", "name", "label"], [None, "a", "A"], ["text", None, "B"]]))
    assert "no type" in errors["survey!2"][0]
    assert "no name" in errors["survey!3"][0]


def test_choice_without_name_is_refused():
    errors = refused(workbook([["type", "name", "label"], ["select_one yn", "q", "Q"]],
                              [["list_name", "name", "label"], ["yn", None, "Ya"], ["yn", "2", "Tidak"]]))
    assert "no name" in errors["choices!2"][0]


def test_a_lone_sheet_of_any_name_is_the_survey():
    book = openpyxl.Workbook()
    book.active.title = "Sheet1"
    book.active.append(["type", "name", "label"])
    book.active.append(["integer", "n", "N"])
    out = io.BytesIO()
    book.save(out)
    result = xlsform_to_definition_with_rows(out.getvalue(), "lone.xlsx")
    assert result.definition["fields"][0]["name"] == "n"
    assert result.rows["fields[0]"] == "Sheet1!2"


def test_missing_survey_sheet_and_type_column_are_refused():
    errors = refused(workbook(None, choices=[["list_name", "name", "label"], ["a", "1", "A"]],
                              settings=[["form_id"], ["f"]]))
    assert "survey" in errors
    errors = refused(workbook([["name", "label"], ["a", "A"]]))
    assert "type" in errors["survey!1"][0]


def test_files_that_are_not_workbooks_are_refused():
    assert FILE_KEY in refused(b"type,name,label\ntext,a,A\n", "form.csv")
    assert FILE_KEY in refused(b"PK\x03\x04 not really a zip", "broken.xlsx")
    assert FILE_KEY in refused(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 not really an xls", "broken.xls")


def test_the_error_message_summarises_the_first_problem():
    with pytest.raises(XLSFormError, match=r"survey!3: .*'barcode'"):
        xlsform_to_definition(workbook([["type", "name", "label"], ["text", "a", "A"], ["barcode", "p", "P"]]),
                              "f.xlsx")


# --- hostile workbooks: bounded while reading ------------------------------------------------------


def _with_part(data: bytes, name: str, change) -> bytes:
    """The workbook with one part's XML changed by `change(text) -> text`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == name:
                content = change(content.decode("utf-8")).encode("utf-8")
            target.writestr(item, content)
    return out.getvalue()


SMALL = [["type", "name", "label"], ["text", "nama", "Nama"], ["integer", "umur", "Umur"]]


@pytest.mark.parametrize("part", ["xl/worksheets/sheet1.xml", "xl/styles.xml", "[Content_Types].xml"])
def test_any_part_that_declares_a_doctype_is_refused(part):
    dtd = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'

    def declare(text: str) -> str:
        if text.startswith("<?xml"):
            end = text.index("?>") + 2
            return text[:end] + dtd + text[end:]
        return dtd + text

    data = _with_part(workbook(SMALL), part, declare)
    assert any("DOCTYPE" in m for m in refused(data)[FILE_KEY])


def test_a_doctype_later_in_a_part_than_its_root_is_text_not_a_dtd():
    data = _with_part(workbook(SMALL), "xl/worksheets/sheet1.xml",
                      lambda text: text.replace("<t>Nama</t>", "<t>&lt;!DOCTYPE is text here</t>", 1))
    assert xlsform_to_definition(data, "form.xlsx")["fields"][0]["name"] == "nama"


def test_xlsx_rows_cells_and_columns_are_bounded(monkeypatch):
    monkeypatch.setattr("forms.xlsform.MAX_ROWS", 1)
    assert list(refused(workbook(SMALL))) == ["survey!3"]
    monkeypatch.setattr("forms.xlsform.MAX_ROWS", 10)
    monkeypatch.setattr("forms.xlsform.MAX_CELLS", 5)
    assert "more than 5 filled cells" in refused(workbook(SMALL))["survey!2"][0]
    monkeypatch.setattr("forms.xlsform.MAX_CELLS", 1000)
    monkeypatch.setattr("forms.xlsform.MAX_COLUMNS", 2)
    assert "more than 2 columns" in refused(workbook(SMALL))["survey!1"][0]


def test_xls_rows_and_cells_are_bounded_too(monkeypatch):
    data = (FIXTURES / "tutorial.xls").read_bytes()
    monkeypatch.setattr("forms.xlsform.MAX_ROWS", 3)
    errors = refused(data, "tutorial.xls")
    assert len(errors) == 1
    assert "more than 3 rows" in next(iter(errors.values()))[0]
    monkeypatch.setattr("forms.xlsform.MAX_ROWS", 10_000)
    monkeypatch.setattr("forms.xlsform.MAX_CELLS", 20)
    assert "filled cells" in next(iter(refused(data, "tutorial.xls").values()))[0]


def test_a_file_larger_than_an_xlsform_is_refused_unread(monkeypatch):
    monkeypatch.setattr("forms.xlsform.MAX_FILE_BYTES", 1000)
    assert "at most 1,000 bytes" in refused(workbook(SMALL))[FILE_KEY][0]


def test_a_part_that_inflates_too_far_is_refused_before_it_is_read():
    out = io.BytesIO()
    source = zipfile.ZipFile(io.BytesIO(workbook(SMALL)))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr("xl/media/padding.bin", b"\0" * (3 * 2**20))
    assert "inflates" in refused(out.getvalue())[FILE_KEY][0]
