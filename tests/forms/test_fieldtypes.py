"""The field-type registry: one declaration per type, read by the validator, the importer, the checks and exports."""

from __future__ import annotations

import pytest
from test_xlsform import workbook

from forms import fieldtypes
from forms.answers import household_writes, validate_answers
from forms.definition import FIELD_TYPES, DefinitionError, validate_definition
from forms.fieldtypes import FIELD_TYPES as REGISTRY
from forms.fieldtypes import Cells, FieldType, field_type, xlsform_names
from forms.xlsform import XLSFormError, import_xlsform


def form(*fields):
    return {"settings": {"form_id": "f", "version": "1", "title": {"id": "F"}, "default_language": "id"},
            "fields": list(fields),
            "choices": {"yn": [{"name": "1", "label": {"id": "Ya"}}, {"name": "2", "label": {"id": "Tidak"}}]}}


def test_the_definition_language_has_exactly_the_registrys_types():
    assert tuple(REGISTRY) == FIELD_TYPES
    for name, ftype in REGISTRY.items():
        assert ftype.name == name
        assert ftype.container == (name in ("group", "repeat"))
        assert ftype.container or ftype.check is not None, name


def test_no_xlsform_name_belongs_to_two_types():
    seen: dict[str, str] = {}
    for ftype in REGISTRY.values():
        for alias in (*ftype.xlsform, *ftype.xlsform_constrained, *ftype.xlsform_list_commands):
            assert alias == alias.lower().strip(), alias
            assert seen.setdefault(alias, ftype.name) == ftype.name, alias
    assert xlsform_names()["gps"] == (field_type("geopoint"), None)
    assert xlsform_names()["percentage"][0].name == "integer"


def test_geopoint_declares_four_export_columns_and_its_cells():
    geopoint = field_type("geopoint")
    assert geopoint.column_names("lokasi") == ["lokasi_lat", "lokasi_lon", "lokasi_altitude_m", "lokasi_accuracy_m"]
    assert geopoint.column_names("Lokasi", labels=True)[0] == "Lokasi (lat)"
    point = {"lat": -6.9, "lon": 107.6, "accuracy_m": 5}
    assert geopoint.cells(point, {}, Cells()) == (-6.9, 107.6, None, 5)
    assert geopoint.property(point, {}, Cells()) == point
    assert field_type("text").column_names("nama") == ["nama"]


def test_select_cells_are_codes_or_the_choice_texts():
    field = {"type": "select_multiple", "list": "yn"}
    texts = Cells(lambda list_name, code: {"1": "Ya", "2": "Tidak"}.get(code, code))
    assert field_type("select_multiple").cells(["1", "2"], field, Cells()) == ("1 2",)
    assert field_type("select_multiple").cells(["1", "9"], field, texts) == ("Ya; 9",)
    assert field_type("select_one").cells("2", {"list": "yn"}, texts) == ("Tidak",)
    # a list or an object in a one-column cell is canonical JSON
    assert field_type("calculate").cells({"b": 1, "a": [1, 2]}, {}, Cells()) == ('{"a":[1,2],"b":1}',)


def test_parameters_are_those_the_type_declares():
    location = {"type": "geopoint", "name": "lokasi", "label": {"id": "Lokasi"}}
    ok = validate_definition(form({**location, "parameters": {"capture-accuracy": 5, "warning-accuracy": 12.5}}))
    assert ok.field("lokasi")["parameters"] == {"capture-accuracy": 5, "warning-accuracy": 12.5}
    with pytest.raises(DefinitionError) as bad:
        validate_definition(form({**location, "parameters": {"capture-accuracy": -1, "max-pixels": 1024}},
                                 {"type": "text", "name": "t", "label": {"id": "T"}, "parameters": {"rows": 3}}))
    assert bad.value.errors == {
        "fields[0].parameters.capture-accuracy": ["must be a number above 0"],
        "fields[0].parameters.max-pixels": [
            "a geopoint has no parameter 'max-pixels' (it takes: capture-accuracy, warning-accuracy)"],
        "fields[1].parameters.rows": ["a text has no parameter 'rows' (it takes: none)"],
    }


def test_the_xlsform_parameters_column_keeps_declared_parameters_and_warns_of_others():
    survey = [["type", "name", "label", "parameters"],
              ["geopoint", "lokasi", "Lokasi", "capture-accuracy=5 warning-accuracy=10"],
              ["text", "nama", "Nama", "rows=3"],
              ["geopoint", "titik", "Titik", ""]]
    result = import_xlsform(workbook(survey), "f.xlsx")
    fields = {f["name"]: f for f in result.definition["fields"]}
    assert fields["lokasi"]["parameters"] == {"capture-accuracy": 5, "warning-accuracy": 10}
    assert "parameters" not in fields["nama"]
    assert "parameter 'rows' is not used by kunjung for a text; ignored" in result.warnings["survey!3"]
    broken = [["type", "name", "label", "parameters"], ["geopoint", "lokasi", "Lokasi", "capture-accuracy=far"]]
    with pytest.raises(XLSFormError) as caught:
        import_xlsform(workbook(broken), "f.xlsx")
    assert caught.value.errors == {"survey!2": ["parameters: capture-accuracy='far' must be a number above 0"]}


def test_a_type_added_to_the_registry_is_known_everywhere_at_once(monkeypatch):
    # "barcode" is refused by the importer today; declared in the registry, the validator, the
    # importer, the answer checks, household writes and the export cells all take it.
    barcode = FieldType("barcode", "string", xlsform=("barcode",), check=REGISTRY["text"].check,
                        short=REGISTRY["text"].short, default_problem=REGISTRY["text"].default_problem)
    monkeypatch.setitem(fieldtypes.FIELD_TYPES, "barcode", barcode)
    survey = [["type", "name", "label", "save_to", "constraint"],
              ["barcode", "kode", "Kode", "code", "string-length(.) = 4"]]
    definition = validate_definition(import_xlsform(workbook(survey), "f.xlsx").definition)
    assert definition.field("kode")["type"] == "barcode"
    report = validate_answers(definition, {"kode": "12345"})
    assert report.ok
    assert [flag["code"] for flag in report.flags] == ["constraint_failed"]
    assert validate_answers(definition, {"kode": 5}).errors == {"kode": ["must be text (a JSON string), not a number"]}
    assert household_writes(definition, {"kode": "1234"}) == {"code": "1234"}
    assert barcode.cells("1234", definition.field("kode"), Cells()) == ("1234",)


def test_the_expression_type_of_a_field_drives_the_type_checks():
    with pytest.raises(DefinitionError) as caught:
        validate_definition(form({"type": "geopoint", "name": "g", "label": {"id": "G"}},
                                 {"type": "integer", "name": "n", "label": {"id": "N"}, "relevant": "${g} + 1 > 2"}))
    assert caught.value.errors == {"fields[1].relevant": ["cannot do arithmetic on ${g} (geopoint) with '+'"]}
