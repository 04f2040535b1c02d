"""The household field catalog: which fields a household edit may write, and which values each takes."""

from __future__ import annotations

import copy

import pytest

from forms.definition import validate_definition
from forms.household import (
    HOUSEHOLD_STATUSES,
    MEMBER_STATUSES,
    REGISTER_FIELDS,
    UNKNOWN_FIELD,
    household_field_catalog,
)
from forms.library import library_forms

SITI = "0b0f6b1e-8a3e-4b53-9d3b-1f8f0a3b2c01"
NIK = "3204056107850001"
KK = "3204050101200001"


@pytest.fixture(scope="module")
def library():
    return household_field_catalog([validate_definition(data) for data in library_forms()])


def test_a_malformed_nik_written_by_a_household_edit_is_refused(library):
    # The security review's case: head_nik "not-a-nik" was applied.
    assert library.check("head_nik", "not-a-nik") == ["NIK must be exactly 16 digits"]
    assert library.check("head_nik", NIK) == []
    assert library.check(f"members/{SITI}/nik", "3204051203800000") != []
    assert library.check(f"members/{SITI}/nik", NIK) == []
    assert library.check("no_kk", "1234") == ["No. KK must be exactly 16 digits"]
    assert library.check("no_kk", KK) == []


def test_a_field_nothing_declares_is_unknown(library):
    for path in ("favourite_colour", f"members/{SITI}/favourite_colour", "members", f"members/{SITI}",
                 f"members/{SITI.upper()}/name", "$where", "head_name.first", "", None, 3):
        assert library.check(path, "x") == [UNKNOWN_FIELD], path
    assert "head_name" in library
    assert "favourite_colour" not in library


def test_status_marks_of_households_and_members(library):
    for status in HOUSEHOLD_STATUSES:
        assert library.check("status", status) == []
    for status in MEMBER_STATUSES:
        assert library.check(f"members/{SITI}/status", status) == []
    assert library.check("status", "deceased") != []  # a household moves or is a duplicate; a person dies
    assert library.check(f"members/{SITI}/status", "gone") == ["'gone' is not a choice of this field"]
    assert library.check(f"members/{SITI}/status", 1) != []


def test_the_registers_own_fields_are_known_with_their_checks():
    catalog = household_field_catalog([])
    assert set(catalog.household) == {*REGISTER_FIELDS, "status"}
    assert set(catalog.members) == {"status"}
    assert catalog.check("rt", "003") == []
    assert catalog.check("rt", "3") == ["must be a number from 001 to 999, three digits"]
    assert catalog.check("rw", "000") != []
    assert catalog.check("head_name", "x" * 501) == ["is longer than 500 characters"]
    assert catalog.check("house_location", {"lat": -6.9, "lon": 107.6}) == []
    assert catalog.check("house_location", {"lat": 95, "lon": 107.6}) == ["lat: must be between -90 and 90"]
    assert catalog.check("house_location", "-6.9 107.6") != []
    assert catalog.check("head_name", None) == []  # a field may be cleared


def test_values_are_checked_by_the_declaring_field_type_and_choice_list(library):
    assert library.check("floor_area", 36) == []
    assert library.check("floor_area", "36") == ["must be a number, not a string"]
    assert library.check("floor_area", float("nan")) != []
    assert library.check("member_count", 2**63) == ["is too large to store"]
    assert library.check("floor_material", "2") == []
    assert library.check("floor_material", "99") == ["'99' is not a choice of this field"]
    assert library.check("assets", ["a", "n"]) == []
    assert library.check("assets", ["a", "zz"]) == ["'zz' is not a choice of this field"]
    # stored as a visit stores it: a list, not ODK's space-separated text
    assert library.check("assets", "a n") == ["must be a list of choice names, as a visit stores it"]
    assert library.check(f"members/{SITI}/birth_date", "1985-07-21") == []
    assert library.check(f"members/{SITI}/birth_date", "21/07/1985") == ["must be a date YYYY-MM-DD"]
    assert library.check("head_name", {"$gt": ""}) != []


def test_a_field_declared_by_two_versions_takes_what_either_takes():
    data = copy.deepcopy(library_forms()[0])
    first = validate_definition(data)
    data["settings"]["version"] = "2027.1"
    stack = list(data["fields"])
    while stack:
        field = stack.pop()
        stack.extend(field.get("fields", ()))
        if field["name"] == "floor_area":
            field["type"] = "text"  # not a valid new version, but the catalog does not judge versions
    second = validate_definition(data)
    both = household_field_catalog([first, second])
    assert both.check("floor_area", "luas") == []
    assert both.check("floor_area", 36) == []
    assert household_field_catalog([first]).check("floor_area", "luas") != []
    assert both.field("floor_area").types == ("decimal", "text")
    assert len(both.field("floor_area").sources) == 2


def test_roster_fields_come_from_the_rows_of_the_roster_only():
    definition = validate_definition({
        "settings": {"form_id": "roster", "version": "1", "title": {"id": "R"}, "default_language": "id"},
        "fields": [
            {"type": "text", "name": "alamat", "label": {"id": "Alamat"}, "save_to": "address"},
            {"type": "repeat", "name": "orang", "label": {"id": "Orang"}, "save_to": "members", "fields": [
                {"type": "text", "name": "nama", "label": {"id": "Nama"}, "save_to": "name"},
                {"type": "text", "name": "nik", "label": {"id": "NIK"}, "appearance": "numbers nik", "save_to": "nik"},
                {"type": "note", "name": "catatan", "label": {"id": "Catatan"}}]},
        ],
    })
    catalog = household_field_catalog([definition])
    assert set(catalog.members) == {"name", "nik", "status"}
    assert catalog.check(f"members/{SITI}/nik", "123") == ["NIK must be exactly 16 digits"]
    assert catalog.check("name", "Siti") == [UNKNOWN_FIELD]  # a member field, not a household one
    assert catalog.check(f"members/{SITI}/address", "Jl.") == [UNKNOWN_FIELD]


def test_check_writes_keys_every_problem_by_path(library):
    problems = library.check_writes({"head_name": "Siti", "head_nik": "not-a-nik", "hobby": "catur",
                                     f"members/{SITI}/status": "moved"})
    assert problems == {"head_nik": ["NIK must be exactly 16 digits"], "hobby": [UNKNOWN_FIELD]}
