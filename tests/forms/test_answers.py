"""Tests of answer validation: what is rejected, what is flagged, and the household writes a visit makes."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forms.answers import MAX_STRING_LENGTH, household_writes, validate_answers
from forms.definition import validate_definition

TODAY = dt.date(2025, 3, 14)
SITI = "0b0f6b1e-8a3e-4b53-9d3b-1f8f0a3b2c01"
BUDI = "1c1f6b1e-8a3e-4b53-9d3b-1f8f0a3b2c02"

GOOD: dict[str, Any] = {
    "head_name": "Siti Aminah",
    "no_kk": "3204050101200001",
    "kecamatan": "3204050",
    "desa": "cibiru_hilir",
    "floor_area": 36.5,
    "bansos": ["pkh", "bpnt"],
    "pkh_since": "2019-06-01",
    "location": {"lat": -6.93, "lon": 107.72, "accuracy_m": 8, "altitude_m": 690},
    "members": [
        {"_id": SITI, "name": "Siti Aminah", "nik": "3204056107850001", "age": 39, "sex": "2", "pregnant": "2"},
        {"_id": BUDI, "name": "Budi", "nik": "3204052107150002", "age": 9, "sex": "1"},
    ],
    "member_count": 2,
    "thanks": None,
}


@pytest.fixture
def answers() -> dict[str, Any]:
    return copy.deepcopy(GOOD)


def report_for(definition, answers):
    return validate_answers(definition, answers, today=TODAY)


def codes(report) -> list[tuple[str, str]]:
    return [(flag["code"], flag["path"]) for flag in report.flags]


def test_good_answers_pass_without_flags(household_definition, answers):
    report = report_for(household_definition, answers)
    assert report.ok
    assert report.errors == {}
    assert report.flags == []
    assert report.answers["members"][1]["name"] == "Budi"


def test_an_empty_visit_is_stored_and_flagged(household_definition):
    report = report_for(household_definition, {})
    assert report.ok
    assert codes(report) == [("required_missing", "head_name")]


# ---------------------------------------------------------------------------
# Rejections


def test_answers_must_be_an_object(household_definition):
    for value in ([], "x", None, 3):
        assert validate_answers(household_definition, value).errors == {
            "": [f"answers must be an object, not {_kind(value)}"]
        }


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null", int: "a number"}[type(value)]


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("$where", "cannot start with '$'"),
        ("$set", "cannot start with '$'"),
        ("head.name", "cannot contain '.' or NUL"),
        ("head\x00name", "cannot contain '.' or NUL"),
        ("nope", "not a field of form 'verval_rumah_tangga' version '2025010101'"),
        ("rumah", "is a group"),
        ("age", "belongs in the rows of repeat 'members'"),
    ],
)
def test_bad_keys_are_rejected(household_definition, answers, key, words):
    answers[key] = "x"
    report = report_for(household_definition, answers)
    assert any(words in m for m in report.errors[key]), report.errors
    assert report.flags == []


def test_bad_keys_in_rows_are_rejected(household_definition, answers):
    answers["members"][0]["$inc"] = 1
    answers["members"][0]["head_name"] = "x"
    answers["members"][1]["a.b"] = 1
    errors = report_for(household_definition, answers).errors
    assert "cannot start with '$'" in errors["members[0].$inc"][0]
    assert "is not a field of repeat 'members'" in errors["members[0].head_name"][0]
    assert "cannot contain" in errors["members[1].a.b"][0]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("head_name", {"first": "Siti"}, "must be text (a JSON string), not an object"),
        ("head_name", 42, "must be text"),
        ("head_name", "x" * (MAX_STRING_LENGTH + 1), "longer than 10000"),
        ("floor_area", True, "must be a number, not a boolean"),
        ("floor_area", "36.5", "must be a number, not a string"),
        ("floor_area", float("inf"), "finite"),
        ("floor_area", float("nan"), "finite"),
        ("floor_area", 2**64, "finite"),
        ("member_count", {"n": 2}, "calculated value must be a string, number or boolean"),
        ("member_count", float("nan"), "finite"),
        ("pkh_since", "2024-02-30", "must be a date YYYY-MM-DD"),
        ("pkh_since", "01-06-2019", "must be a date YYYY-MM-DD"),
        ("pkh_since", 20190601, "a date text"),
        ("bansos", {"pkh": True}, "must be a list of choice names"),
        ("bansos", "x" * (MAX_STRING_LENGTH + 1), "longer than"),
        ("desa", 1, "must be a choice name"),
        ("desa", ["cibiru_hilir"], "must be a choice name"),
        ("thanks", "terima kasih", "a note takes no answer"),
        ("members", "Siti, Budi", "a repeat must be a list of rows, not a string"),
        ("members", {"_id": SITI}, "a repeat must be a list of rows"),
        ("location", "-6.93 107.72 690 8", "must be an object {lat, lon"),
    ],
)
def test_json_types_that_do_not_fit_are_rejected(household_definition, answers, key, value, words):
    answers[key] = value
    report = report_for(household_definition, answers)
    assert any(words in m for m in report.errors.get(key, [])), report.errors


@pytest.mark.parametrize(
    ("value", "words"),
    [(True, "not a boolean"), (3.5, "must be a whole number"), ("39", "not a string"), (2**63, "too large")],
)
def test_integer_answers(household_definition, answers, value, words):
    answers["members"][0]["age"] = value
    assert any(words in m for m in report_for(household_definition, answers).errors["members[0].age"])


def test_whole_numbers_sent_as_floats_are_integers(household_definition, answers):
    answers["members"][0]["age"] = 39.0
    report = report_for(household_definition, answers)
    assert report.ok
    assert report.answers["members"][0]["age"] == 39
    assert isinstance(report.answers["members"][0]["age"], int)


def test_select_multiple_items_must_be_strings(household_definition, answers):
    answers["bansos"] = ["pkh", 2]
    assert "bansos[1]" in report_for(household_definition, answers).errors


@pytest.mark.parametrize(
    ("point", "path", "words"),
    [
        ({"lon": 107.7}, "location.lat", "is required"),
        ({"lat": -6.9}, "location.lon", "is required"),
        ({"lat": 91, "lon": 107.7}, "location.lat", "between -90 and 90"),
        ({"lat": -6.9, "lon": -181}, "location.lon", "between -180 and 180"),
        ({"lat": float("nan"), "lon": 107.7}, "location.lat", "finite"),
        ({"lat": True, "lon": 107.7}, "location.lat", "finite"),
        ({"lat": "-6.9", "lon": 107.7}, "location.lat", "finite"),
        ({"lat": -6.9, "lon": 107.7, "accuracy_m": -1}, "location.accuracy_m", "cannot be negative"),
        ({"lat": -6.9, "lon": 107.7, "altitude_m": float("inf")}, "location.altitude_m", "finite"),
        ({"lat": -6.9, "lon": 107.7, "$gt": 1}, "location.$gt", "not part of a geopoint"),
    ],
)
def test_malformed_geopoints(household_definition, answers, point, path, words):
    answers["location"] = point
    errors = report_for(household_definition, answers).errors
    assert any(words in m for m in errors.get(path, [])), errors


@pytest.mark.parametrize(
    ("row", "path", "words"),
    [
        ("Siti", "members[1]", "a repeat row must be an object, not a string"),
        ([SITI], "members[1]", "must be an object"),
        ({"name": "Budi"}, "members[1]._id", "needs an _id"),
        ({"_id": "budi"}, "members[1]._id", "needs an _id"),
        ({"_id": BUDI.upper()}, "members[1]._id", "lowercase UUID"),
        ({"_id": 7}, "members[1]._id", "needs an _id"),
        ({"_id": SITI, "name": "Budi"}, "members[1]._id", "the same _id as row 0"),
    ],
)
def test_bad_repeat_rows(household_definition, answers, row, path, words):
    answers["members"][1] = row
    errors = report_for(household_definition, answers).errors
    assert any(words in m for m in errors.get(path, [])), errors


def test_deep_nesting_is_rejected_before_anything_else(household_definition):
    deep: Any = "x"
    for _ in range(50):
        deep = [deep]
    report = report_for(household_definition, {"members": deep})
    assert list(report.errors) == [""]
    assert "nested more than 4 levels" in report.errors[""][0]


def test_every_error_is_collected(household_definition, answers):
    answers.update({"$x": 1, "floor_area": "big", "nope": 2})
    answers["members"][0]["age"] = "tua"
    assert set(report_for(household_definition, answers).errors) == {"$x", "floor_area", "nope", "members[0].age"}


def test_accepted_shapes(household_definition, answers):
    answers.update(
        {
            "head_name": None,  # unanswered
            "bansos": "pkh  bpnt",  # ODK's space-separated form
            "location": {"lat": -90, "lon": 180},
            "thanks": "",
            "member_count": "2",
        }
    )
    answers["members"][0]["nik"] = None
    report = report_for(household_definition, answers)
    assert report.ok, report.errors
    assert report.answers["bansos"] == ["pkh", "bpnt"]


def test_datetime_answers():
    definition = validate_definition(_one_field({"type": "datetime", "name": "at", "label": {"id": "Waktu"}}))
    for good in ("2025-03-14T09:30:00+07:00", "2025-03-14T02:30:00Z", "2025-03-14T09:30:00.123", "2025-03-14 09:30"):
        assert validate_answers(definition, {"at": good}).ok, good
    for bad in ("2025-03-14", "kemarin", "2025-13-14T09:30:00", "2025-03-14T25:00"):
        assert "at" in validate_answers(definition, {"at": bad}).errors, bad


def _one_field(*fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "settings": {"form_id": "f", "version": "1", "title": {"id": "F"}, "default_language": "id"},
        "fields": list(fields),
        "choices": {"yesno": [{"name": "1", "label": {"id": "Ya"}}, {"name": "2", "label": {"id": "Tidak"}}]},
    }


# ---------------------------------------------------------------------------
# Flags


def test_constraint_failed_carries_the_forms_message(household_definition, answers):
    answers["floor_area"] = 0
    report = report_for(household_definition, answers)
    assert report.ok
    [flag] = report.flags
    assert flag["code"] == "constraint_failed"
    assert flag["path"] == "floor_area"
    assert flag["constraint_message"] == {"id": "Luas lantai tidak wajar", "en": "Implausible floor area"}
    # the form's own language (its default, "id") unless another of its languages is asked for
    assert "Luas lantai tidak wajar" in flag["message"]
    assert flag["constraint"] == ". > 0 and . < 10000"
    [english] = validate_answers(household_definition, answers, today=TODAY, language="en").flags
    assert "Implausible floor area" in english["message"]
    [unknown] = validate_answers(household_definition, answers, today=TODAY, language="jv").flags
    assert "Luas lantai tidak wajar" in unknown["message"]


def test_constraint_failed_in_a_repeat_row(household_definition, answers):
    answers["members"][1]["age"] = 130
    flag = report_for(household_definition, answers).flags[0]
    assert (flag["code"], flag["path"]) == ("constraint_failed", "members[1].age")
    assert "constraint_message" not in flag


def test_constraints_with_today(household_definition, answers):
    answers["pkh_since"] = "2025-03-15"  # tomorrow
    assert codes(report_for(household_definition, answers)) == [("constraint_failed", "pkh_since")]
    answers["pkh_since"] = "2025-03-14"
    assert codes(report_for(household_definition, answers)) == []


def test_required_missing(household_definition, answers):
    answers["head_name"] = ""
    del answers["members"][0]["age"]
    answers["members"][1]["name"] = None
    report = report_for(household_definition, answers)
    assert report.ok
    assert codes(report) == [
        ("required_missing", "head_name"),
        ("required_missing", "members[0].age"),
        ("required_missing", "members[1].name"),
    ]


def test_relevance_decides_required_and_constraints(household_definition, answers):
    # pkh_since is relevant only with PKH; pregnant only for women 10-54.
    answers["bansos"] = ["bpnt"]
    answers["pkh_since"] = "2099-01-01"  # would fail its constraint, but it is not relevant
    del answers["members"][0]["pregnant"]
    report = report_for(household_definition, answers)
    assert ("required_missing", "members[0].pregnant") in codes(report)
    assert ("constraint_failed", "pkh_since") not in codes(report)
    answers["members"][0]["age"] = 60
    assert codes(report_for(household_definition, answers)) == []
    answers["bansos"] = ["pkh"]
    del answers["pkh_since"]
    assert codes(report_for(household_definition, answers)) == [("required_missing", "pkh_since")]


def test_a_group_that_is_not_relevant_hides_its_fields(household_data, answers):
    household_data["fields"][4]["relevant"] = "${head_name} != 'kosong'"
    definition = validate_definition(household_data)
    answers["head_name"] = "kosong"
    answers["floor_area"] = -5
    answers["bansos"] = ["pkh"]
    del answers["pkh_since"]
    assert codes(report_for(definition, answers)) == []


def test_unknown_choices(household_definition, answers):
    answers["desa"] = "atlantis"
    answers["bansos"] = ["pkh", "kartu_prakerja", "bpnt", "x"]
    answers["members"][0]["sex"] = "3"
    report = report_for(household_definition, answers)
    assert report.ok
    assert codes(report) == [
        ("unknown_choice", "desa"),
        ("unknown_choice", "bansos"),
        ("unknown_choice", "bansos"),
        ("unknown_choice", "members[0].sex"),
    ]
    assert [flag["value"] for flag in report.flags] == ["atlantis", "kartu_prakerja", "x", "3"]


def test_choices_filtered_out_by_the_choice_filter(household_definition, answers):
    answers["desa"] = "mekarsaluyu"  # a village of the other kecamatan
    [flag] = report_for(household_definition, answers).flags
    assert flag["code"] == "unknown_choice"
    assert "choice filter" in flag["message"]


def test_invalid_nik_and_kk_by_appearance(household_definition, answers):
    answers["no_kk"] = "3204050101200000"
    answers["members"][1]["nik"] = "3204057207150002"
    report = report_for(household_definition, answers)
    assert ("invalid_kk", "no_kk") in codes(report)
    # The NIK field also has the valid-nik(.) constraint.
    assert ("invalid_nik", "members[1].nik") in codes(report)
    assert ("constraint_failed", "members[1].nik") in codes(report)
    nik_flag = next(f for f in report.flags if f["code"] == "invalid_nik")
    assert "birth day 72" in nik_flag["message"]


def test_expression_errors_are_flagged_not_raised():
    definition = validate_definition(
        _one_field(
            {"type": "text", "name": "pattern", "label": {"id": "Pola"}},
            {"type": "text", "name": "t", "label": {"id": "Teks"}, "constraint": "regex(., ${pattern})"},
            {"type": "text", "name": "d", "label": {"id": "Tanggal"}, "relevant": "date(${t}) < today()"},
        )
    )
    report = validate_answers(definition, {"pattern": "(a)\\1", "t": "aa", "d": "x"}, today=TODAY)
    assert report.ok
    assert codes(report) == [("expression_error", "t"), ("expression_error", "d")]
    assert "unsupported pattern" in report.flags[0]["message"]


def test_dates_in_answers_compare_as_dates():
    definition = validate_definition(
        _one_field(
            {"type": "date", "name": "dob", "label": {"id": "Lahir"}},
            {"type": "date", "name": "married", "label": {"id": "Nikah"}, "constraint": ". > ${dob}"},
        )
    )
    assert validate_answers(definition, {"dob": "1990-05-01", "married": "2012-01-01"}).flags == []
    flagged = validate_answers(definition, {"dob": "1990-05-01", "married": "1989-01-01"})
    assert codes(flagged) == [("constraint_failed", "married")]


def test_no_flags_when_answers_are_rejected(household_definition, answers):
    answers["head_name"] = ""
    answers["floor_area"] = "big"
    report = report_for(household_definition, answers)
    assert report.errors
    assert report.flags == []


# ---------------------------------------------------------------------------
# Household writes


def test_household_writes_from_top_level_and_roster_rows(household_definition, answers):
    assert household_writes(household_definition, answers) == {
        "head_name": "Siti Aminah",
        "no_kk": "3204050101200001",
        "floor_area": 36.5,
        f"members/{SITI}/name": "Siti Aminah",
        f"members/{BUDI}/name": "Budi",
        f"members/{SITI}/nik": "3204056107850001",
        f"members/{BUDI}/nik": "3204052107150002",
        f"members/{SITI}/age": 39,
        f"members/{BUDI}/age": 9,
        f"members/{SITI}/sex": "2",
        f"members/{BUDI}/sex": "1",
        "member_count": 2,
    }


def test_only_answered_fields_write(household_definition, answers):
    answers["head_name"] = ""
    del answers["no_kk"]
    answers["floor_area"] = None
    answers["members"][1] = {"_id": BUDI, "name": "Budi"}
    writes = household_writes(household_definition, answers)
    assert "head_name" not in writes
    assert "no_kk" not in writes
    assert "floor_area" not in writes
    assert f"members/{BUDI}/name" in writes
    assert f"members/{BUDI}/age" not in writes
    # Fields without save_to never write.
    assert not any(path.endswith("/pregnant") for path in writes)


def test_a_visit_whose_answers_cannot_be_stored_writes_nothing(household_definition, answers):
    # The server refuses such a visit whole, so none of its answers reaches the household.
    answers["members"].append({"name": "tanpa id"})
    answers["floor_area"] = {"$gt": 1}
    assert household_writes(household_definition, answers) == {}
    assert household_writes(household_definition, ["x"]) == {}


def test_household_writes_take_a_validated_report_as_it_is(household_definition, answers):
    report = validate_answers(household_definition, answers, today=TODAY)
    assert household_writes(household_definition, report) == household_writes(household_definition, answers)
    report.answers["head_name"] = "Changed after the check"
    assert household_writes(household_definition, report)["head_name"] == "Changed after the check"


def test_household_writes_normalise_values():
    definition = validate_definition(
        _one_field(
            {"type": "select_multiple", "name": "aid", "label": {"id": "Bantuan"}, "list": "yesno", "save_to": "aid"},
            {"type": "integer", "name": "n", "label": {"id": "N"}, "save_to": "n"},
        )
    )
    assert household_writes(definition, {"aid": "1 2", "n": 4.0}) == {"aid": ["1", "2"], "n": 4}


# ---------------------------------------------------------------------------
# Properties

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=15,
)
_KEYS = st.sampled_from(["head_name", "age", "members", "bansos", "location", "desa", "floor_area", "$x", "rumah"])


# The definition fixture is only read, so sharing it between examples is safe.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_KEYS, _JSON, max_size=6), _JSON)
def test_validation_never_raises(household_definition, answers, row_value):
    answers = dict(answers)
    answers.setdefault("members", [{"_id": SITI, "age": row_value}])
    report = validate_answers(household_definition, answers, today=TODAY)
    assert isinstance(report.errors, dict)
    if report.ok:
        household_writes(household_definition, answers)


# ---------------------------------------------------------------------------
# Answers to questions a relevant hides

HIDDEN_FORM = _one_field(
    {"type": "select_one", "name": "result", "label": {"id": "Hasil"}, "list": "yesno"},
    {"type": "text", "name": "head_nik", "label": {"id": "NIK"}, "relevant": "${result} = '1'", "save_to": "head_nik"},
    {"type": "group", "name": "housing", "label": {"id": "Rumah"}, "relevant": "${result} = '1'", "fields": [
        {"type": "integer", "name": "floor_area", "label": {"id": "Luas"}, "save_to": "floor_area"},
        {"type": "repeat", "name": "rooms", "label": {"id": "Kamar"}, "fields": [
            {"type": "text", "name": "room", "label": {"id": "Kamar"}}]},
    ]},
    {"type": "repeat", "name": "members", "label": {"id": "Anggota"}, "save_to": "members",
     "relevant": "${presence} != 'gone'", "fields": [
         {"type": "text", "name": "presence", "label": {"id": "Keberadaan"}},
         {"type": "text", "name": "name", "label": {"id": "Nama"}, "save_to": "name"},
         {"type": "integer", "name": "age", "label": {"id": "Umur"}, "save_to": "age", "relevant": "${name} != ''"},
         {"type": "group", "name": "work", "label": {"id": "Kerja"}, "relevant": "${age} >= 15", "fields": [
             {"type": "text", "name": "job", "label": {"id": "Pekerjaan"}, "save_to": "job"}]},
     ]},
)


def hidden_visit() -> dict[str, Any]:
    """A refusal (result 2) whose phone still sent what was typed before the answer changed."""
    return {
        "result": "2",
        "head_nik": "3204056107850001",
        "floor_area": 40,
        "rooms": [{"_id": SITI, "room": "depan"}],
        "members": [
            {"_id": SITI, "presence": "here", "name": "Siti", "age": 12, "job": "petani"},
            {"_id": BUDI, "presence": "gone", "name": "Budi", "age": 40, "job": "buruh"},
        ],
    }


def test_answers_hidden_by_relevant_are_left_out_of_the_stored_answers():
    definition = validate_definition(HIDDEN_FORM)
    sent = hidden_visit()
    report = validate_answers(definition, sent, today=TODAY)
    assert report.ok
    # a hidden field, a hidden group with a repeat inside, a hidden row, a hidden group inside a row
    assert report.answers == {"result": "2", "members": [{"_id": SITI, "presence": "here", "name": "Siti", "age": 12}]}
    assert sent == hidden_visit()  # what the device sent is not changed (the event keeps it)


def test_answers_hidden_by_relevant_never_reach_household_fields():
    definition = validate_definition(HIDDEN_FORM)
    expected = {f"members/{SITI}/name": "Siti", f"members/{SITI}/age": 12}
    assert household_writes(definition, hidden_visit(), today=TODAY) == expected
    assert household_writes(definition, validate_answers(definition, hidden_visit(), today=TODAY)) == expected
    shown = {**hidden_visit(), "result": "1"}
    writes = household_writes(definition, shown, today=TODAY)
    assert (writes["head_nik"], writes["floor_area"]) == ("3204056107850001", 40)
    assert validate_answers(definition, shown, today=TODAY).answers["rooms"] == [{"_id": SITI, "room": "depan"}]


def test_a_relevant_that_cannot_be_evaluated_keeps_the_answer():
    definition = validate_definition(_one_field(
        {"type": "text", "name": "kk", "label": {"id": "KK"}},
        {"type": "text", "name": "note", "label": {"id": "N"}, "relevant": "date(${kk}) > 0", "save_to": "note"},
    ))
    report = validate_answers(definition, {"kk": "bukan tanggal", "note": "tetap"}, today=TODAY)
    assert report.answers["note"] == "tetap"
    assert [flag["code"] for flag in report.flags] == ["expression_error"]
