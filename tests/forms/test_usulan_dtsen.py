"""The shipped DTSEN proposal form: a new household, a correction and an objection as a village operator files them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from forms.answers import household_writes, validate_answers
from forms.definition import validate_definition
from forms.household import DECILE, household_field_catalog
from forms.identifiers import check_kk, check_nik
from forms.library import library_form, library_forms

TODAY = dt.date(2026, 3, 2)
NO_KK = "3204051503150004"
HEAD_NIK = "3204051201820001"  # a man born 12 January 1982, registered in kecamatan 32.04.05


def definition():
    return validate_definition(library_form("usulan_dtsen"))


def flags_at(report: Any, path: str) -> set[str]:
    return {flag["code"] for flag in report.flags if flag["path"] == path}


def family(**answers: Any) -> dict[str, Any]:
    return {
        "proposal_date": TODAY.isoformat(),
        "proposal_source": "operator_desa",
        "no_kk": NO_KK,
        "head_nik": HEAD_NIK,
        "head_name": "Asep Saepudin",
        "address": "Kp. Sukamaju No. 12",
        "rt": "003",
        "rw": "002",
        "member_count": 4,
        "house_location": {"lat": -7.0326, "lon": 107.5312, "accuracy_m": 6.5},
        "house_photo": "rumah.jpg",
        **answers,
    }


def new_household() -> dict[str, Any]:
    return family(proposal_type="baru", kk_photo="kk.jpg", ktp_photo="ktp.jpg",
                  new_conditions=["tidak_bekerja", "rumah_tidak_layak"],
                  new_reason="Pak Asep buruh tani harian sejak 2024, rumah berdinding bilik bambu dan bocor.")


def correction() -> dict[str, Any]:
    return family(proposal_type="perbaikan", kk_photo="kk.jpg", ktp_photo="ktp.jpg",
                  correction_fields=["anggota_keluarga", "desil"],
                  correction_details="Anak ketiga lahir Januari 2026 belum tercatat; desil 6 tidak sesuai kondisi.")


def objection() -> dict[str, Any]:
    return family(proposal_type="sanggahan", proposal_source="musyawarah", objection_reason="mampu",
                  objection_explanation="Keluarga memiliki mobil dan toko bangunan di jalan desa.")


def test_the_proposal_form_is_shipped_after_the_other_three():
    assert [form["settings"]["form_id"] for form in library_forms()][-1] == "usulan_dtsen"
    assert library_form("usulan_dtsen")["settings"]["title"] == {
        "id": "Usulan Pemutakhiran DTSEN (operator desa)", "en": "DTSEN update proposal (village operator)"}


def test_the_test_identifiers_are_well_formed():
    assert check_kk(NO_KK) == []
    assert check_nik(HEAD_NIK) == []


@pytest.mark.parametrize("answers", [new_household, correction, objection], ids=lambda make: make.__name__)
def test_an_operator_files_each_kind_of_proposal_without_flags(answers):
    report = validate_answers(definition(), answers(), today=TODAY)
    assert report.errors == {}
    assert report.flags == []


def test_an_objection_needs_its_reason_and_explanation():
    answers = objection()
    del answers["objection_reason"], answers["objection_explanation"]
    report = validate_answers(definition(), answers, today=TODAY)
    assert flags_at(report, "objection_reason") == {"required_missing"}
    assert flags_at(report, "objection_explanation") == {"required_missing"}
    answers["objection_reason"] = "pindah_agama"
    answers["objection_explanation"] = "mampu"
    report = validate_answers(definition(), answers, today=TODAY)
    assert flags_at(report, "objection_reason") == {"unknown_choice"}
    assert flags_at(report, "objection_explanation") == {"constraint_failed"}  # a reason, not a word


def test_a_new_household_is_not_asked_the_objection_and_an_objection_not_the_new_households_reason():
    report = validate_answers(definition(), new_household(), today=TODAY)
    assert "objection_reason" not in {flag["path"] for flag in report.flags}
    answers = objection()
    answers.pop("house_location")
    answers["objection_reason"] = "pindah"  # the family moved away: there is no house to stand in front of
    assert validate_answers(definition(), answers, today=TODAY).flags == []
    answers["objection_reason"] = "mampu"
    assert flags_at(validate_answers(definition(), answers, today=TODAY), "house_location") == {"required_missing"}


def test_a_proposal_carries_the_house_front_kk_and_ktp_photos():
    from forms.definition import media_question

    usulan = definition()
    assert [(q.name, q.kind) for q in usulan.media_questions()] == [
        ("house_photo", "image"), ("kk_photo", "image"), ("ktp_photo", "image")]
    assert media_question(usulan, "ktp_photo").max_pixels == 1600
    answers = new_household()
    del answers["house_photo"], answers["kk_photo"], answers["ktp_photo"]
    report = validate_answers(usulan, answers, today=TODAY)
    assert {flag["path"] for flag in report.flags if flag["code"] == "required_missing"} == {
        "house_photo", "kk_photo", "ktp_photo"}
    # an objection is not asked for the family's cards, and one saying the family moved not for the house
    answers = objection()
    answers["objection_reason"] = "pindah"
    del answers["house_photo"], answers["house_location"]
    assert validate_answers(usulan, answers, today=TODAY).flags == []


def test_a_correction_says_what_is_wrong_and_what_is_right():
    answers = correction()
    answers["correction_fields"] = []
    del answers["correction_details"]
    report = validate_answers(definition(), answers, today=TODAY)
    assert flags_at(report, "correction_fields") == {"required_missing"}
    assert flags_at(report, "correction_details") == {"required_missing"}


def test_identity_by_name_by_address_is_checked():
    answers = new_household()
    answers["no_kk"] = "1234"
    answers["head_nik"] = "3204051213820001"  # birth month 13
    answers["rt"] = "3"
    answers["rw"] = "000"
    answers["proposal_date"] = (TODAY + dt.timedelta(days=1)).isoformat()
    report = validate_answers(definition(), answers, today=TODAY)
    assert flags_at(report, "no_kk") == {"constraint_failed", "invalid_kk"}
    assert flags_at(report, "head_nik") == {"constraint_failed", "invalid_nik"}
    assert flags_at(report, "rt") == {"constraint_failed"}
    assert flags_at(report, "rw") == {"constraint_failed"}
    assert flags_at(report, "proposal_date") == {"constraint_failed"}


def test_a_proposal_writes_the_familys_identity_to_the_household_and_nothing_of_the_register_alone():
    writes = household_writes(definition(), new_household())
    assert writes == {"no_kk": NO_KK, "head_nik": HEAD_NIK, "head_name": "Asep Saepudin",
                      "address": "Kp. Sukamaju No. 12",
                      "house_location": {"lat": -7.0326, "lon": 107.5312, "accuracy_m": 6.5}}
    # rt/rw stay answers (the register's fields), and the decile stays BPS's
    catalog = household_field_catalog([validate_definition(form) for form in library_forms()])
    assert catalog.field(DECILE).read_only
    assert catalog.check(DECILE, 3) != []
    assert catalog.check("rt", "3") == ["must be a number from 001 to 999, three digits"]

