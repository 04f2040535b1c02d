"""Form files: which files a definition needs, what each must hold, pulldata() over an attached CSV."""

from __future__ import annotations

import json

import pytest

from forms.answers import household_writes, validate_answers
from forms.attachments import CsvLookup, check_form_file, form_files, media_problems, media_type_of, search_source
from forms.definition import DefinitionError, validate_definition
from forms.expressions import Context, ExpressionError, parse
from forms.household import household_field_catalog

DESA = b"name,label,kepala\n3204052001,Sukamaju,Ujang\n3204052002,Mekarsari,Iis\n3204052001,Ganda,Lain\n"


def form(*fields, choices=None):
    return {"settings": {"form_id": "f", "version": "1", "title": {"id": "F"}, "default_language": "id"},
            "fields": list(fields), "choices": choices or {}}


def test_a_definition_names_its_choice_files_lookups_and_label_media():
    definition = validate_definition(form(
        {"type": "select_one", "name": "desa", "label": {"id": "Desa"}, "list_file": "desa.csv",
         "parameters": {"value": "kode", "label": "nama"}, "choice_filter": "kecamatan = '3204050'",
         "save_to": "desa"},
        {"type": "calculate", "name": "kepala", "calculation": "pulldata('kepala', 'nama', 'kode', ${desa})"},
        {"type": "select_one", "name": "kondisi", "label": {"id": "Kondisi"}, "list": "kondisi",
         "appearance": "search('rumah', 'matches', 'kode', ${desa})",
         "media": {"image": {"id": "kondisi.jpg", "en": "condition.jpg"}, "audio": {"id": "kondisi.mp3"}}},
        {"type": "select_multiple", "name": "titik", "label": {"id": "Titik"}, "list_file": "titik.geojson"},
        choices={"kondisi": [{"name": "1", "label": {"id": "Layak"}, "media": {"image": {"id": "layak_kecil.png"},
                                                                           "big-image": {"id": "layak.png"}}}]},
    ))
    files = definition.form_files()
    assert list(files) == ["desa.csv", "kepala.csv", "rumah.csv", "kondisi.jpg", "condition.jpg", "kondisi.mp3",
                           "titik.geojson", "layak_kecil.png", "layak.png"]
    assert files["desa.csv"].purpose == "choices"
    assert files["kepala.csv"].paths == ("fields[1].calculation",)
    assert files["rumah.csv"].purposes == ("lookup",)
    assert files["condition.jpg"].paths == ("fields[2].media.image.en",)
    assert files["layak.png"].paths == ("choices.kondisi[0].media.big-image.id",)
    assert files["titik.geojson"].media_type == "application/geo+json"
    assert form_files(definition) == files
    # a choice from a file is taken as sent (the server has no list to check it against)
    report = validate_answers(definition, {"desa": "3204052001", "kondisi": "1", "titik": ["a", "b"]})
    assert report.errors == {}
    assert report.flags == []
    assert household_writes(definition, {"desa": "3204052001"}) == {"desa": "3204052001"}
    assert household_field_catalog([definition]).check("desa", "anything") == []


def test_file_selects_media_and_lookups_are_refused_where_they_are_wrong():
    with pytest.raises(DefinitionError) as bad:
        validate_definition(form(
            {"type": "select_one", "name": "a", "label": {"id": "A"}, "list_file": "desa.xlsx"},
            {"type": "select_one", "name": "b", "label": {"id": "B"}, "list_file": "../desa.csv"},
            {"type": "select_one", "name": "c", "label": {"id": "C"}, "list": "l", "list_file": "c.csv"},
            {"type": "text", "name": "d", "label": {"id": "D"}, "list_file": "d.csv",
             "media": {"image": {"id": "d.mp3"}, "smell": {"id": "d.x"}}},
            {"type": "select_one", "name": "e", "label": {"id": "E"}, "list": "l", "parameters": {"value": "kode"}},
            {"type": "select_one", "name": "f", "label": {"id": "F"}, "list": "l", "appearance": "search(${d})"},
            {"type": "calculate", "name": "g", "calculation": "pulldata(${d}, 'a', 'b', 'c')"},
            choices={"l": [{"name": "1", "label": {"id": "Satu"}, "media": {"image": {"id": "a/b.png"}}}]},
        ))
    errors = bad.value.errors
    assert "a choice file is a .csv, .xml or .geojson" in errors["fields[0].list_file"][0]
    assert "without '/'" in errors["fields[1].list_file"][0]
    assert "not both" in errors["fields[2].list_file"][0]
    assert "only select_one and select_multiple" in errors["fields[3].list_file"][0]
    assert errors["fields[3].media.image.id"] == ["image label media must be image/* files, not audio/mpeg"]
    assert "label media are" in errors["fields[3].media.smell"][0]
    assert "only with a list_file" in errors["fields[4].parameters.value"][0]
    assert "search()'s first argument" in errors["fields[5].appearance"][0]
    assert "pulldata()'s first argument" in errors["fields[6].calculation"][0]
    assert "without '/'" in errors["choices.l[0].media.image.id"][0]


def test_pulldata_reads_the_first_row_with_the_key_and_says_when_the_file_is_not_at_hand():
    expression = parse("pulldata('desa', 'kepala', 'name', ${desa})")
    assert expression.lookups == frozenset({"desa"})
    assert expression.type_errors(lambda name: "string") == []
    lookup = CsvLookup({"desa.csv": DESA})
    assert expression.evaluate(Context({"desa": "3204052001"}, lookup=lookup)) == "Ujang"
    assert expression.evaluate(Context({"desa": "9"}, lookup=lookup)) == ""
    assert lookup("desa", "nope", "name", "3204052001") == ""
    assert lookup("lain", "kepala", "name", "3204052001") == ""
    with pytest.raises(ExpressionError, match=r"desa\.csv"):
        expression.evaluate(Context({"desa": "3204052001"}))
    with pytest.raises(ExpressionError, match="takes 4"):
        parse("pulldata('desa', 'kepala')")
    loads = []
    lazy = CsvLookup({"desa.csv": lambda: loads.append(1) or DESA})
    assert lazy("desa", "label", "name", "3204052002") == "Mekarsari"
    assert lazy("desa", "kepala", "name", "3204052002") == "Iis"
    assert loads == [1]  # read once


def test_a_visit_is_checked_with_pulldata_over_the_attached_file():
    definition = validate_definition(form(
        {"type": "text", "name": "desa", "label": {"id": "Desa"}},
        {"type": "text", "name": "kepala", "label": {"id": "Kepala desa"},
         "constraint": ". = pulldata('desa', 'kepala', 'name', ${desa})"},
    ))
    assert list(definition.form_files()) == ["desa.csv"]
    answers = {"desa": "3204052002", "kepala": "Ujang"}
    unattached = validate_answers(definition, answers)
    assert [flag["code"] for flag in unattached.flags] == ["expression_error"]
    definition.attach_lookup(CsvLookup({"desa.csv": DESA}))
    assert [flag["code"] for flag in validate_answers(definition, answers).flags] == ["constraint_failed"]
    assert validate_answers(definition, {**answers, "kepala": "Iis"}).flags == []


def test_choice_files_are_read_before_they_are_kept():
    assert check_form_file("desa.csv", DESA, "choices") == []
    assert check_form_file("desa.csv", "\ufeffname,label::Indonesian (id)\n1,Satu\n".encode(), "choices") == []
    assert check_form_file("desa.csv", b"name,label\n", "choices") == ["has no choices"]
    assert check_form_file("desa.csv", b"", "choices") == ["is empty"]
    assert "UTF-8" in check_form_file("desa.csv", "name,label\n1,D\xe9sa\n".encode("latin-1"), "choices")[0]
    assert check_form_file("desa.csv", b"kode,nama\n1,a\n", "choices", value_column="kode",
                           label_column="nama") == []
    assert check_form_file("desa.csv", b"kode,nama\n1,a\n", "lookup") == []
    xml = b"<root><item><name>1</name><label>Satu</label></item><item><name>2</name><label>Dua</label></item></root>"
    assert check_form_file("desa.xml", xml, "choices") == []
    assert "has no column 'label'" in check_form_file("desa.xml", b"<root><item><name>1</name></item></root>",
                                                      "choices")[0]
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><root><item><name>&a;</name></item></root>'
    assert "DOCTYPE" in check_form_file("desa.xml", bomb, "choices")[0]
    assert "not XML" in check_form_file("desa.xml", b"<root>", "choices")[0]
    features = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "t1", "geometry": {"type": "Point", "coordinates": [107.6, -7.0]},
         "properties": {"title": "Titik 1"}}]}
    assert check_form_file("titik.geojson", json.dumps(features).encode(), "choices") == []
    assert "FeatureCollection" in check_form_file("titik.geojson", b'{"type": "Feature"}', "choices")[0]
    untitled = {**features, "features": [{**features["features"][0], "properties": {"nama": "Titik 1"}}]}
    assert "has no column 'title'" in check_form_file("titik.geojson", json.dumps(untitled).encode(), "choices")[0]
    assert check_form_file("titik.geojson", json.dumps(untitled).encode(), "choices", label_column="nama") == []
    assert check_form_file("rumah.jpg", b"\xff\xd8\xff", "media") == []


def test_media_types_and_search_sources():
    assert media_type_of("a.CSV") == "text/csv"
    assert media_type_of("b.jpg") == "image/jpeg"
    assert media_type_of("c.unknownthing") == "application/octet-stream"
    assert search_source("quick search('desa', 'matches', 'kode', ${x})") == "desa"
    assert search_source("minimal") is None
    assert search_source("search(desa)") == ""


def test_a_big_image_without_its_small_image_is_refused():
    # ODK shows the big image when the small one is tapped: pyxform refuses one without the other too.
    problems = media_problems({"big-image": {"id": "besar.png", "en": "big.png"}, "image": {"id": "kecil.png"}},
                              "fields[0].media")
    assert problems == {
        "fields[0].media.big-image.en": ["a big-image needs an image in the same language, shown first"]}
