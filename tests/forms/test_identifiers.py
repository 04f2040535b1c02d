"""Tests of the NIK, No. KK and Kemendagri region-code checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forms.identifiers import (
    NikInfo,
    area_contains,
    check_area_code,
    check_kk,
    check_nik,
    check_village_code,
    parse_nik,
)

WOMAN = "3204056107850001"  # Kab. Bandung, Kec. 05; born 21-07-1985 (61 = 21 + 40)
MAN = "3204052107850002"


def test_a_woman_born_21_july_1985_in_3204xx():
    assert check_nik(WOMAN) == []
    assert parse_nik(WOMAN) == NikInfo(
        province="32",
        regency="04",
        kecamatan="05",
        birth_day=21,
        birth_month=7,
        birth_yy=85,
        sex="female",
        serial="0001",
    )
    assert parse_nik(WOMAN).region == "32.04.05"


def test_a_man():
    assert check_nik(MAN) == []
    info = parse_nik(MAN)
    assert info is not None
    assert (info.sex, info.birth_day, info.birth_month, info.birth_yy) == ("male", 21, 7, 85)


@pytest.mark.parametrize(
    ("nik", "words"),
    [
        ("3204056113850001", "birth month 13"),  # bad month
        ("3204056100850001", "birth month 00"),
        ("3204057207850001", "birth day 72"),  # day 72
        ("3204050007850001", "birth day 00"),
        ("3204053207850001", "birth day 32"),
        ("3204054007850001", "birth day 40"),
        ("3204053102850001", "day 31 does not exist in month 02"),
        ("3204057102850001", "day 31 does not exist in month 02"),  # a woman born 31 February
        ("3204053104850001", "day 31 does not exist in month 04"),
        ("3204056107850000", "serial number cannot be 0000"),
        ("0104056107850001", "province code 01"),
        ("9904056107850001", "province code 99"),
        ("3200056107850001", "regency code cannot be 00"),
        ("3204006107850001", "kecamatan code cannot be 00"),
    ],
)
def test_malformed_niks_say_what_is_wrong(nik, words):
    errors = check_nik(nik)
    assert any(words in error for error in errors), errors
    assert parse_nik(nik) is None


def test_february_29_is_allowed_since_the_century_is_unknown():
    # yy = 00: 2000 was a leap year and 1900 was not; the NIK cannot say which.
    assert check_nik("3204052902000001") == []
    assert check_nik("3204056902000001") == []  # a woman
    assert check_nik("3204053002000001") != []


@pytest.mark.parametrize(
    "value",
    [
        "320405610785001",  # 15 digits
        "32040561078500011",  # 17 digits
        "32040561O7850001",  # a letter O for a zero
        "3204 0561 0785 0001",
        "3204056107850001\n",
        "٣٢٠٤٠٥٦١٠٧٨٥٠٠٠١",  # Arabic-Indic digits are digits to \d, not to a NIK
        "",
        None,
        3204056107850001,
    ],
)
def test_a_nik_is_exactly_sixteen_ascii_digits(value):
    assert check_nik(value) == ["NIK must be exactly 16 digits"]
    assert parse_nik(value) is None


def test_kk():
    assert check_kk("3204050101200001") == []
    assert any("serial" in e for e in check_kk("3204050101200000"))
    assert any("regency" in e for e in check_kk("3200050101200001"))
    assert any("province" in e for e in check_kk("0904050101200001"))
    assert check_kk("320405010120001") == ["No. KK must be exactly 16 digits"]
    assert check_kk("32040501012000a1") == ["No. KK must be exactly 16 digits"]


@pytest.mark.parametrize("code", ["32.04.05.2001", "11.01.01.1001", "94.71.03.3005"])
def test_village_codes(code):
    assert check_village_code(code) == []
    assert check_area_code(code) == []


@pytest.mark.parametrize(
    "code",
    [
        "32.04.05",
        "32.04.05.4001",
        "32.04.05.0001",
        "02.04.05.2001",
        "32.4.05.2001",
        "3204052001",
        "32.04.05.2001 ",
        None,
    ],
)
def test_malformed_village_codes(code):
    assert check_village_code(code) != []


@pytest.mark.parametrize("code", ["32", "32.04", "32.04.05", "32.04.05.2001"])
def test_area_codes_of_every_level(code):
    assert check_area_code(code) == []


@pytest.mark.parametrize("code", ["3", "32.", "32.4", "32.04.5", "32.04.05.20", "32-04", "", 32, "32.04.05.2001.1"])
def test_malformed_area_codes(code):
    assert check_area_code(code) != []


@pytest.mark.parametrize(
    ("area", "village", "inside"),
    [
        ("32", "32.04.05.2001", True),
        ("32.04", "32.04.05.2001", True),
        ("32.04.05", "32.04.05.2001", True),
        ("32.04.05.2001", "32.04.05.2001", True),
        ("32.04.06", "32.04.05.2001", False),
        ("33", "32.04.05.2001", False),
        ("32.04.05.2001", "32.04.05", False),
        ("32.0", "32.04.05.2001", False),  # segments, not characters
        ("32.04.0", "32.04.05.2001", False),
        ("bogus", "32.04.05.2001", False),
    ],
)
def test_area_contains_compares_whole_segments(area, village, inside):
    assert area_contains(area, village) is inside


@given(st.one_of(st.text(max_size=20), st.from_regex(r"[0-9]{16}", fullmatch=True), st.integers(), st.none()))
def test_checks_never_raise(value):
    for check in (check_nik, check_kk, check_village_code, check_area_code):
        assert isinstance(check(value), list)
    info = parse_nik(value)
    assert info is None or check_nik(value) == []
