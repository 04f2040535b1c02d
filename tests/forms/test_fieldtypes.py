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
            "type geopoint has no parameter 'max-pixels' (it takes: capture-accuracy, warning-accuracy)"],
        "fields[1].parameters.rows": ["type text has no parameter 'rows' (it takes: none)"],
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
    assert "parameter 'rows' is not used by kunjung for type text; ignored" in result.warnings["survey!3"]
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


# --- media questions ---------------------------------------------------------------------------------


def _media_form():
    return form(
        {"type": "image", "name": "foto_rumah", "label": {"id": "Foto depan rumah"}, "required": True,
         "parameters": {"max-pixels": 1024}},
        {"type": "image", "name": "ttd", "label": {"id": "Tanda tangan"}, "appearance": "signature"},
        {"type": "audio", "name": "catatan", "label": {"id": "Catatan suara"}, "parameters": {"quality": "low"}},
        {"type": "video", "name": "rekaman", "label": {"id": "Video"}},
        {"type": "file", "name": "dokumen", "label": {"id": "Dokumen"}, "accept": ["application/pdf", ".docx"]},
        {"type": "repeat", "name": "anggota", "label": {"id": "Anggota"}, "fields": [
            {"type": "image", "name": "foto_ktp", "label": {"id": "Foto KTP"}}]},
        {"type": "text", "name": "nama", "label": {"id": "Nama"}},
    )


def test_media_types_are_declared_with_their_kind_and_files():
    for name, family in (("image", "image/*"), ("audio", "audio/*"), ("video", "video/*"), ("file", "*/*")):
        ftype = field_type(name)
        assert ftype.media is not None
        assert ftype.media.kind == name
        assert ftype.media.media_types == (family,)
        assert not ftype.saves_to_household
        assert ftype.exported
        assert ftype.requirable
    assert field_type("text").media is None
    names = xlsform_names()
    assert names["photo"][0].name == names["q picture"][0].name == "image"
    assert names["add file prompt"][0].name == "file"
    assert set(field_type("image").appearances) == {"signature", "draw", "annotate"}


def test_a_media_definition_validates_and_answers_say_which_files_they_take():
    from forms.definition import media_question

    definition = validate_definition(_media_form())
    photo = media_question(definition, "foto_rumah")
    assert (photo.kind, photo.max_pixels, photo.drawn, photo.media_types) == ("image", 1024, None, ("image/*",))
    assert photo.accepts("image/jpeg", "1.jpg")
    assert not photo.accepts("application/zip", "1.jpg")
    assert media_question(definition, "ttd").drawn == "signature"
    document = media_question(definition, "dokumen")
    assert document.media_types == ("application/pdf",)
    assert document.extensions == (".docx",)
    assert document.accepts("application/pdf")
    assert document.accepts("application/zip", "Surat.DOCX")
    assert not document.accepts("image/png", "scan.png")
    assert media_question(definition, "catatan").accepts("audio/ogg; codecs=opus")
    # inside a repeat: by name, or with the repeat and the row id
    assert media_question(definition, "anggota/r1/foto_ktp").repeats == ("anggota",)
    assert media_question(definition, "foto_ktp").kind == "image"
    for wrong in ("nama", "tidak_ada", "anggota/foto_ktp", "lain/r1/foto_ktp", "", "anggota//foto_ktp"):
        assert media_question(definition, wrong) is None, wrong
    assert [q.name for q in definition.media_questions()] == ["foto_rumah", "ttd", "catatan", "rekaman",
                                                              "dokumen", "foto_ktp"]


def test_the_files_a_visit_names_are_listed_with_their_paths_and_questions():
    from forms.definition import media_answers, media_question

    definition = validate_definition(_media_form())
    row = "0b0f6b1e-8a3e-4b53-9d3b-1f8f0a3b2c01"
    answers = {"foto_rumah": "1.jpg", "ttd": "../x.png", "nama": "1.jpg", "catatan": None,
               "anggota": [{"_id": row, "foto_ktp": "ktp.png"}, {"foto_ktp": "lost.png"}, "junk"]}
    found = media_answers(definition, answers)
    assert [(path, question.name, name) for path, question, name in found] == [
        (f"anggota/{row}/foto_ktp", "foto_ktp", "ktp.png"), ("foto_rumah", "foto_rumah", "1.jpg")]
    # each path is one media_question answers for
    assert all(media_question(definition, path) == question for path, question, _ in found)
    assert media_answers(definition, "not answers") == []


def test_media_definitions_are_refused_where_they_are_wrong():
    with pytest.raises(DefinitionError) as bad:
        validate_definition(form(
            {"type": "image", "name": "a", "label": {"id": "A"}, "parameters": {"max-pixels": 10.5},
             "accept": ["video/mp4", "png", ".png"], "default": "x.jpg", "save_to": "foto"},
            {"type": "audio", "name": "b", "label": {"id": "B"}, "parameters": {"quality": "best"}},
            {"type": "text", "name": "c", "label": {"id": "C"}, "accept": [".pdf"]},
            {"type": "file", "name": "d", "label": {"id": "D"}, "accept": []},
        ))
    errors = bad.value.errors
    assert errors["fields[0].parameters.max-pixels"] == ["must be a whole number above 0"]
    assert errors["fields[0].accept[0]"] == ["type image takes only image/*"]
    assert "extension" in errors["fields[0].accept[1]"][0]
    assert "fields[0].accept[2]" not in errors
    assert "take no default" in errors["fields[0].default"][0]
    assert errors["fields[0].save_to"] == ["type image has no value to save"]
    assert errors["fields[1].parameters.quality"] == ["must be one of: voice-only, low, normal, external"]
    assert "only a media question" in errors["fields[2].accept"][0]
    assert "fields[3].accept" in errors


def test_a_media_answer_is_the_attachment_file_name():
    definition = validate_definition(_media_form())
    row = {"_id": "0b0f6b1e-8a3e-4b53-9d3b-1f8f0a3b2c01", "foto_ktp": "ktp.png"}
    ok = validate_answers(definition, {"foto_rumah": "1712345678901.jpg", "dokumen": "surat keterangan.pdf",
                                       "anggota": [row]})
    assert ok.ok, ok.errors
    assert ok.answers["foto_rumah"] == "1712345678901.jpg"
    for bad in ("../etc/passwd", "a/b.jpg", "a\\b.jpg", "", " x.jpg", "x" * 256, 5, "..", "a\x00.jpg"):
        report = validate_answers(definition, {"foto_rumah": bad})
        assert report.errors.get("foto_rumah"), bad
    assert fieldtypes.check_file_name("ok.jpg") is None


def test_a_media_cell_is_the_file_name_or_what_the_export_hook_makes_of_it():
    image = field_type("image")
    assert image.cells("1.jpg", {}, Cells()) == ("1.jpg",)
    assert image.cells(None, {}, Cells(media=lambda name, f: 1 / 0)) == (None,)
    linked = Cells(media=lambda name, f: f"media/v1/{name}")
    assert image.cells("1.jpg", {"name": "foto"}, linked) == ("media/v1/1.jpg",)
    assert image.property("1.jpg", {}, linked) == "media/v1/1.jpg"


def test_xlsform_media_questions_import_with_their_parameters_appearances_and_accept():
    survey = [["type", "name", "label", "appearance", "parameters", "body::accept"],
              ["photo", "foto_rumah", "Foto rumah", None, "max-pixels=1024", None],
              ["image", "ttd", "Tanda tangan", "signature", None, None],
              ["audio", "suara", "Suara", None, "quality=voice-only", None],
              ["video", "video", "Video", None, None, None],
              ["file", "dokumen", "Dokumen", None, None, "application/pdf, .docx"],
              ["image", "gambar", "Gambar", None, "max-pixels=large", None]]
    with pytest.raises(XLSFormError) as bad:
        import_xlsform(workbook(survey), "f.xlsx")
    assert list(bad.value.errors) == ["survey!7"]
    assert "max-pixels" in bad.value.errors["survey!7"][0]
    result = import_xlsform(workbook(survey[:-1]), "f.xlsx")
    fields = {f["name"]: f for f in result.definition["fields"]}
    assert fields["foto_rumah"] == {"type": "image", "name": "foto_rumah", "label": {"id": "Foto rumah"},
                                    "parameters": {"max-pixels": 1024}}
    assert fields["ttd"]["appearance"] == "signature"
    assert fields["suara"]["parameters"] == {"quality": "voice-only"}
    assert fields["dokumen"]["accept"] == ["application/pdf", ".docx"]
    assert fields["video"]["type"] == "video"
