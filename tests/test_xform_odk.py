"""kunjung's XForms in ODK's own form engine: every shipped form and the test XLSForms load, fill and read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree
from odk_engine import fill, leaves, needs_engine, sample_answers

from forms import validate_answers
from forms.definition import validate_definition
from forms.xform import (
    MEMBER_ROW_ID,
    SubmissionError,
    odk_expression,
    parse_xml,
    read_submission,
    xform_of,
    xlsform_of,
)
from forms.xlsform import xlsform_to_definition

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "forms" / "library").glob("*.json"))
XLSFORMS = ROOT / "tests" / "fixtures" / "xlsforms"


def library(path: Path):
    return validate_definition(json.loads(path.read_text()))


def _expected(definition, answers):
    """The kunjung answers the XForm answers should read back as (groups transparent, rows by index)."""
    out = {}
    for ref, value in answers.items():
        parts = ref.strip("/").split("/")[1:]
        names = [p.split("[")[0] for p in parts]
        leaf = names[-1]
        if isinstance(value, dict):
            value = {"lat": value["latitude"], "lon": value["longitude"], "altitude_m": float(value["altitude"]),
                     "accuracy_m": float(value["accuracy"])}
        rows = [(p.split("[")[0], int(p.split("[")[1].rstrip("]")) - 1) for p in parts if "[" in p]
        if rows:
            out.setdefault(rows[0][0], {}).setdefault(rows[0][1], {})[leaf] = value
        else:
            out[leaf] = value
    return out


@needs_engine
@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_every_shipped_form_loads_in_the_odk_engine_and_its_submission_reads_back(path):
    definition = library(path)
    answers, repeats = sample_answers(definition)
    result = fill(xform_of(definition).xml, answers, repeats=repeats)
    assert result["problems"] == []
    nodes = leaves(result)
    # bilingual labels: the default language is Indonesian, English is there too
    assert all(nodes[ref]["label"] for ref in answers)
    english = fill(xform_of(definition).xml, {}, language="English (en)")
    assert any(node["label"] and node["label"] != nodes.get(node["ref"], {}).get("label")
               for node in english["tree"] if node["ref"] in nodes)

    submission = read_submission(definition, parse_xml(result["xml"].encode()))
    assert (submission.form_id, submission.version) == (definition.form_id, definition.version)
    assert submission.instance_id.startswith("uuid:")
    # a question that is not relevant is left out of the submission, as in Collect
    expected = _expected(definition, {ref: v for ref, v in answers.items() if nodes[ref]["relevant"]})
    for name, value in expected.items():
        if isinstance(value, dict) and all(isinstance(k, int) for k in value):
            rows = submission.answers[name]
            assert len(rows) == len(value)
            for index, row in value.items():
                assert {k: v for k, v in rows[index].items() if k != "_id"} == row
                assert len(rows[index]["_id"]) == 36  # the row's stable id, made once by the form
        else:
            assert submission.answers[name] == value, name
    report = validate_answers(definition, submission.answers)
    assert report.errors == {}
    # What ODK's engine calls a constraint violation, kunjung flags (the server's checks may be stricter).
    flagged = {flag["path"].split(".")[-1] for flag in report.flags}
    violated = {ref.split("/")[-1] for ref in result["violations"]}
    assert violated <= flagged
    assert submission.new_household
    assert submission.household_id


def test_the_xform_is_fixed_per_version():
    definition = library(LIBRARY[0])
    first = xform_of(definition)
    again = xform_of(validate_definition(json.loads(LIBRARY[0].read_text())))
    assert first.xml == again.xml
    assert first.md5 == again.md5
    from forms import xform as module

    module._CACHE.clear()
    assert xform_of(definition).md5 == first.md5  # built again from nothing: the same bytes


def test_the_xform_declares_households_as_entities_and_metadata():
    definition = library(ROOT / "forms" / "library" / "kunjungan_pendampingan.json")
    xml = etree.fromstring(xform_of(definition).xml)
    ns = {"x": "http://www.w3.org/2002/xforms", "h": "http://www.w3.org/1999/xhtml",
          "entities": "http://www.opendatakit.org/xforms/entities"}
    entity = xml.find(".//x:instance/*/x:meta/x:entity", ns)
    assert entity.get("dataset") == "households"
    saved = {bind.get("{http://www.opendatakit.org/xforms/entities}saveto")
             for bind in xml.iterfind(".//x:bind", ns)} - {None}
    assert saved == {"head_name", "house_location"}
    instance = xml.find(".//x:instance[@id='households']", ns)
    assert instance.get("src") == "jr://file-csv/households.csv"
    names = [child.tag.split("}")[1] for child in xml.find(".//x:instance/*", ns)]
    assert {"start", "end", "deviceid", "username", "kstamp__head_name"} <= set(names)
    assert xml.find(".//x:bind[@nodeset='/kunjungan_pendampingan/meta/instanceID']", ns) is not None


def test_kunjung_functions_become_odk_xpath():
    assert odk_expression("valid-nik(.)").startswith("regex(string(.), '^[0-9]{6}")
    assert odk_expression("not(valid-kk(${a})) or ${b} = 'valid-nik(x)'").count("regex(") == 1
    assert odk_expression("${a} > 1") == "${a} > 1"


@needs_engine
@pytest.mark.parametrize("filename", ["tutorial.xls", "gps.xls", "group.xlsx", "repeat_date_test.xls"])
def test_the_test_xlsforms_load_in_the_odk_engine(filename):
    definition = validate_definition(xlsform_to_definition((XLSFORMS / filename).read_bytes(), filename))
    answers, repeats = sample_answers(definition, rows=1)
    result = fill(xform_of(definition).xml, answers, repeats=repeats)
    assert result["problems"] == []
    submission = read_submission(definition, parse_xml(result["xml"].encode()))
    assert validate_answers(definition, submission.answers).errors == {}


def test_a_roster_row_carries_its_id():
    definition = library(ROOT / "forms" / "library" / "household_verification.json")
    survey = xlsform_of(definition)["survey"]
    begin = next(i for i, row in enumerate(survey) if row["type"] == "begin_repeat")
    assert survey[begin + 1] == {"type": "calculate", "name": MEMBER_ROW_ID, "calculation": "once(uuid())"}


@pytest.mark.parametrize(("xml", "status"), [
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>', 400),
    (b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>', 400),
    (b"<a>" * 200 + b"</a>" * 200, 400),
    (b"<a><b></a>", 400),
    (b"not xml", 400),
])
def test_hostile_or_malformed_xml_is_refused_before_it_is_read(xml, status):
    with pytest.raises(SubmissionError) as refused:
        parse_xml(xml)
    assert refused.value.status == status
