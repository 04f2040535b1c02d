"""The shipped forms: each validates, a realistic visit passes without flags, and wrong answers are flagged."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from importlib import resources
from typing import Any

import pytest

from forms.answers import household_writes, validate_answers
from forms.definition import Definition, validate_definition
from forms.identifiers import check_kk, check_nik
from forms.library import LIBRARY_FILES, library_form, library_forms

# today() is fixed so that ages, "not in the future" and "not before today" checks do not drift.
TODAY = dt.date(2026, 3, 2)
REGION = "320405"  # NIK / KK region of kecamatan 32.04.05 (Kabupaten Bandung)


def nik(birth: dt.date, *, female: bool, serial: int) -> str:
    """A NIK as Dukcapil builds it: region, DDMMYY with 40 added to the day for women, serial."""
    day = birth.day + (40 if female else 0)
    return f"{REGION}{day:02d}{birth.month:02d}{birth.year % 100:02d}{serial:04d}"


def born(age: int, month: int, day: int) -> dt.date:
    """A birth date that makes a person `age` on TODAY (birthdays chosen before 2 March)."""
    return dt.date(TODAY.year - age, month, day)


def row_id() -> str:
    return str(uuid.uuid4())


def definition(form_id: str) -> Definition:
    return validate_definition(library_form(form_id))


def flags_at(report: Any, path: str) -> set[str]:
    return {flag["code"] for flag in report.flags if flag["path"] == path}


# --- the forms themselves --------------------------------------------------------------------------


def test_library_has_the_four_forms_in_order():
    ids = [form["settings"]["form_id"] for form in library_forms()]
    assert ids == ["verval_keluarga", "puskesos_pengaduan", "kunjungan_pendampingan", "usulan_dtsen"]


@pytest.mark.parametrize("form", library_forms(), ids=lambda form: form["settings"]["form_id"])
def test_each_shipped_form_validates_without_warnings(form):
    validated = validate_definition(form)
    assert validated.warnings == {}
    assert validated.default_language == "id"
    # released versions are the release's year and its number; forms changed since the first release moved on
    assert validated.version == {"verval_keluarga": "2026.2", "usulan_dtsen": "2026.2"}.get(validated.form_id, "2026.1")


@pytest.mark.parametrize("filename", LIBRARY_FILES)
def test_every_text_has_indonesian_and_english(filename):
    form = json.loads(resources.files("forms.library").joinpath(filename).read_text(encoding="utf-8"))

    def texts(node: Any) -> list[dict]:
        found = []
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("label", "hint", "constraint_message", "title"):
                    found.append(value)
                else:
                    found.extend(texts(value))
        elif isinstance(node, list):
            for item in node:
                found.extend(texts(item))
        return found

    every = texts(form)
    assert every
    for text in every:
        assert set(text) == {"id", "en"}
        assert text["id"].strip()
        assert text["en"].strip()


def test_library_forms_are_fresh_copies():
    first = library_forms()
    first[0]["fields"].clear()
    assert library_forms()[0]["fields"]


def test_library_form_by_id():
    assert library_form("puskesos_pengaduan")["settings"]["title"]["id"] == "Pengaduan dan Rujukan Puskesos"
    with pytest.raises(KeyError):
        library_form("tidak_ada")


def test_household_form_uses_the_official_regsosek_codes():
    choices = library_form("verval_keluarga")["choices"]

    def names(list_name: str) -> list[str]:
        return [choice["name"] for choice in choices[list_name]]

    assert names("floor") == [str(n) for n in range(1, 10)]
    assert names("wall") == [str(n) for n in range(1, 8)]
    assert names("roof") == [str(n) for n in range(1, 9)]
    assert names("drinking_water") == [str(n) for n in range(1, 12)]
    assert names("cooking_fuel") == [str(n) for n in range(1, 13)]
    assert names("visit_result") == ["1", "2", "3", "4", "5"]
    assert names("family_status") == ["0", "1", "2"]
    assert names("sex") == ["1", "2"]
    assert names("health_insurance") == ["0", "1", "2", "4", "8", "99"]
    by_code = {choice["name"]: choice["label"]["id"] for choice in choices["roof"]}
    # The unverified pair (see forms/library/NOTES.md): OpenSID's order.
    assert by_code["5"] == "Kayu/sirap"
    assert by_code["6"] == "Bambu"
    assert {c["name"]: c["label"]["id"] for c in choices["cooking_fuel"]}["12"] == "Tidak memasak di rumah"


def test_household_form_saves_to_household_and_member_fields():
    validated = definition("verval_keluarga")
    assert validated.roster == "members"
    targets = validated.save_to_map
    assert targets["head_name"] == "head_name"
    assert targets["no_kk"] == "no_kk"
    assert targets["floor_material"] == "floor_material"
    assert targets["member_nik"] == "members/{row}/nik"
    assert targets["member_name"] == "members/{row}/name"
    assert validated.field("no_kk")["constraint"] == "valid-kk(.)"
    assert validated.field("member_nik")["constraint"] == "valid-nik(.)"


# --- a realistic household visit -------------------------------------------------------------------

HEAD_BIRTH, WIFE_BIRTH, SON_BIRTH, DAUGHTER_BIRTH = born(44, 1, 12), born(40, 2, 25), born(17, 2, 2), born(9, 1, 9)
NO_KK = f"{REGION}1503150004"


def member(name: str, birth: dt.date, *, female: bool, serial: int, relation: str, marital: str,
           **answers: Any) -> dict[str, Any]:
    return {
        "_id": row_id(),
        "member_nik": nik(birth, female=female, serial=serial),
        "member_name": name,
        "presence": "1",
        "sex": "2" if female else "1",
        "birth_date": birth.isoformat(),
        "age": TODAY.year - birth.year - ((TODAY.month, TODAY.day) < (birth.month, birth.day)),
        "marital_status": marital,
        "relation_to_head": relation,
        **{f"difficulty_{d}": "4" for d in ("seeing", "hearing", "walking", "hands", "learning", "behaviour",
                                             "communicating", "self_care", "remembering")},
        "sad_frequency": "4",
        **answers,
    }


def household_visit() -> dict[str, Any]:
    members = [
        member("Asep Saepudin", HEAD_BIRTH, female=False, serial=1, relation="1", marital="2",
               id_documents=["1", "4"], school_participation="3", education_level="3", highest_grade=8,
               highest_certificate="3", worked_last_week="1", work_hours=45, work_industry="1", work_status="6",
               chronic_illness=["2"], health_insurance=["1"]),
        member("Euis Komariah", WIFE_BIRTH, female=True, serial=2, relation="2", marital="2", pregnant="2",
               id_documents=["1", "4"], school_participation="3", education_level="8", highest_grade=8,
               highest_certificate="8", worked_last_week="1", work_hours=20, work_industry="12",
               work_status="1", chronic_illness=["1"], health_insurance=["1"]),
        member("Dede Kurniawan", SON_BIRTH, female=False, serial=3, relation="3", marital="1",
               id_documents=["1", "4"], school_participation="2", education_level="15", highest_grade=2,
               highest_certificate="8", worked_last_week="2", chronic_illness=["1"], health_insurance=["1"]),
        member("Siti Nurhaliza", DAUGHTER_BIRTH, female=True, serial=4, relation="3", marital="1",
               id_documents=["1", "2"], school_participation="2", education_level="3", highest_grade=4,
               highest_certificate="23", worked_last_week="2", chronic_illness=["4"], health_insurance=["1"]),
    ]
    return {
        "village_code": "32.04.05.2001",
        "sls_code": "0003",
        "sls_name": "RT 003 RW 002 Kampung Sukamaju",
        "address": "Kp. Sukamaju RT 003/RW 002, Desa Sukamaju",
        "head_name": "Asep Saepudin",
        "family_status": "0",
        "member_count": 4,
        "no_kk": NO_KK,
        "visit_date": (TODAY - dt.timedelta(days=1)).isoformat(),
        "visit_result": "1",
        "respondent_name": "Euis Komariah",
        "respondent_phone": "081322456789",
        "building_status": "1",
        "floor_area": 42.5,
        "floor_material": "2",
        "wall_material": "1",
        "roof_material": "2",
        "drinking_water": "2",
        "lighting_source": "1",
        "electricity_power": "1",
        "cooking_fuel": "4",
        "toilet_facility": "1",
        "toilet_type": "1",
        "sewage_disposal": "1",
        "members": members,
        "programme_sembako": "1",
        "programme_pkh": "1",
        "programme_blt_dana_desa": "2",
        "programme_electricity_subsidy": "1",
        "programme_regional_aid": "2",
        "programme_fertiliser_subsidy": "2",
        "programme_lpg_subsidy": "1",
        "assets": ["i", "j", "n"],
        "owns_land": "2",
        "owns_other_house": "2",
        "internet_access": "3",
        "bank_account": "4",
        "house_location": {"lat": -7.0326, "lon": 107.5312, "accuracy_m": 6.5},
        "house_photo": "1765100000001.jpg",
        "kk_photo": "1765100000002.jpg",
        "notes": "Ibu Euis menjawab; Pak Asep sedang di sawah.",
    }


def test_the_test_identifiers_are_well_formed():
    visit = household_visit()
    assert check_kk(visit["no_kk"]) == []
    for row in visit["members"]:
        assert check_nik(row["member_nik"]) == []
    # Women's NIKs carry the birth day plus 40.
    assert visit["members"][1]["member_nik"][6:8] == str(WIFE_BIRTH.day + 40)
    assert [row["age"] for row in visit["members"]] == [44, 40, 17, 9]


def test_a_filled_household_visit_has_no_errors_and_no_flags():
    report = validate_answers(definition("verval_keluarga"), household_visit(), today=TODAY)
    assert report.errors == {}
    assert report.flags == []


def test_a_household_visit_writes_household_and_member_fields():
    visit = household_visit()
    writes = household_writes(definition("verval_keluarga"), visit)
    first = visit["members"][0]["_id"]
    assert writes["head_name"] == "Asep Saepudin"
    assert writes["no_kk"] == NO_KK
    assert writes["floor_material"] == "2"
    assert writes[f"members/{first}/nik"] == visit["members"][0]["member_nik"]
    assert writes[f"members/{first}/name"] == "Asep Saepudin"
    assert sum(1 for path in writes if path.startswith("members/") and path.endswith("/name")) == 4


def test_a_refused_visit_needs_only_the_location_block():
    visit = household_visit()
    kept = {"village_code", "sls_code", "sls_name", "address", "head_name", "family_status", "member_count",
            "no_kk", "visit_date", "house_location", "house_photo"}
    refused = {key: value for key, value in visit.items() if key in kept}
    refused["visit_result"] = "4"
    report = validate_answers(definition("verval_keluarga"), refused, today=TODAY)
    assert report.errors == {}
    assert report.flags == []


def test_the_household_visit_asks_for_the_house_photo_and_optionally_the_family_card():
    from forms.definition import media_question

    verval = definition("verval_keluarga")
    house, card = media_question(verval, "house_photo"), media_question(verval, "kk_photo")
    assert (house.kind, house.max_pixels, card.kind) == ("image", 1280, "image")
    assert verval.field("house_photo")["required"] is True
    assert "required" not in verval.field("kk_photo")
    visit = household_visit()
    del visit["house_photo"], visit["kk_photo"]
    report = validate_answers(verval, visit, today=TODAY)
    assert [(flag["path"], flag["code"]) for flag in report.flags] == [("house_photo", "required_missing")]
    # the photos are the visit's own: nothing about them is saved to the household
    assert not {"house_photo", "kk_photo"} & set(household_writes(verval, household_visit()))


def test_a_wrong_code_is_flagged():
    visit = household_visit()
    visit["floor_material"] = "10"
    visit["members"][2]["presence"] = "9"
    report = validate_answers(definition("verval_keluarga"), visit, today=TODAY)
    assert report.errors == {}
    assert flags_at(report, "floor_material") == {"unknown_choice"}
    assert flags_at(report, "members[2].presence") == {"unknown_choice"}


@pytest.mark.parametrize("bad", ["3204053213800001", "320405120380000", "0004051203800001", "3204051203800000"])
def test_a_bad_nik_is_flagged(bad):
    visit = household_visit()
    visit["members"][0]["member_nik"] = bad
    report = validate_answers(definition("verval_keluarga"), visit, today=TODAY)
    assert report.errors == {}
    assert flags_at(report, "members[0].member_nik") == {"constraint_failed", "invalid_nik"}


def test_a_bad_no_kk_is_flagged():
    visit = household_visit()
    visit["no_kk"] = "1234"
    report = validate_answers(definition("verval_keluarga"), visit, today=TODAY)
    assert flags_at(report, "no_kk") == {"constraint_failed", "invalid_kk"}


def test_household_constraints_and_skips_are_checked():
    visit = household_visit()
    visit["floor_area"] = 0
    visit["members"][0]["health_insurance"] = ["0", "1"]
    del visit["members"][1]["pregnant"]
    visit["lighting_source"] = "4"  # no PLN meter, so 307b is not asked even though it is answered
    report = validate_answers(definition("verval_keluarga"), visit, today=TODAY)
    assert flags_at(report, "floor_area") == {"constraint_failed"}
    assert flags_at(report, "members[0].health_insurance") == {"constraint_failed"}
    assert flags_at(report, "members[1].pregnant") == {"required_missing"}
    assert flags_at(report, "electricity_power") == set()
    assert len(report.flags) == 3


def test_pregnancy_is_asked_only_of_women_aged_10_to_54():
    visit = household_visit()
    for row in visit["members"]:
        row.pop("pregnant", None)
    report = validate_answers(definition("verval_keluarga"), visit, today=TODAY)
    # Only the wife (40) is asked; the daughter (9) and the men are not.
    assert [flag["path"] for flag in report.flags] == ["members[1].pregnant"]


def test_a_visit_answer_of_the_wrong_shape_is_an_error():
    visit = household_visit()
    visit["members"][0]["age"] = "empat puluh"
    report = validate_answers(definition("verval_keluarga"), visit, today=TODAY)
    assert "members[0].age" in report.errors


# --- Puskesos complaint and follow-up visit --------------------------------------------------------


def complaint() -> dict[str, Any]:
    return {
        "complaint_date": TODAY.isoformat(),
        "channel": "kunjungan_rumah",
        "complainant_name": "Euis Komariah",
        "complainant_nik": nik(WIFE_BIRTH, female=True, serial=2),
        "complainant_relation": "anggota_keluarga",
        "complainant_phone": "+6281322456789",
        "head_name": "Asep Saepudin",
        "no_kk": NO_KK,
        "beneficiary_name": "Asep Saepudin",
        "beneficiary_nik": nik(HEAD_BIRTH, female=False, serial=1),
        "category": "kesehatan",
        "description": "Pak Asep sesak napas sejak seminggu; kartu KIS tidak aktif sehingga ditolak di Puskesmas.",
        "urgency": "tinggi",
        "referral_target": ["bpjs_kesehatan", "puskesmas"],
        "referral_notes": "Reaktivasi PBI-JK lewat Dinas Sosial, lalu diantar ke Puskesmas Soreang.",
        "status": "2",
        "follow_up_date": (TODAY + dt.timedelta(days=7)).isoformat(),
        "location": {"lat": -7.0321, "lon": 107.5308, "accuracy_m": 9},
    }


def follow_up_visit() -> dict[str, Any]:
    return {
        "visit_date": TODAY.isoformat(),
        "officer_role": "puskesos",
        "head_name": "Asep Saepudin",
        "purpose": ["tindak_lanjut_pengaduan", "pemantauan"],
        "members_met": 3,
        "condition_change": "membaik",
        "condition_description": "Pak Asep sudah berobat di Puskesmas dan kembali bekerja di sawah.",
        "services_accessed": ["pbi_jk", "puskesmas"],
        "problems_found": ["pendidikan"],
        "problem_description": "Dede terancam putus sekolah karena biaya praktik SMK.",
        "agreed_actions": "Mengajukan PIP untuk Dede melalui sekolah; cek ulang status PKH bulan depan.",
        "referral_made": "1",
        "next_visit_date": (TODAY + dt.timedelta(days=30)).isoformat(),
        "house_location": {"lat": -7.0326, "lon": 107.5312, "accuracy_m": 5},
    }


@pytest.mark.parametrize(("form_id", "answers"), [("puskesos_pengaduan", complaint),
                                                  ("kunjungan_pendampingan", follow_up_visit)])
def test_a_filled_visit_has_no_errors_and_no_flags(form_id, answers):
    report = validate_answers(definition(form_id), answers(), today=TODAY)
    assert report.errors == {}
    assert report.flags == []


def test_complaint_follow_up_cannot_be_in_the_past_while_the_case_is_open():
    answers = complaint()
    answers["follow_up_date"] = (TODAY - dt.timedelta(days=1)).isoformat()
    report = validate_answers(definition("puskesos_pengaduan"), answers, today=TODAY)
    assert flags_at(report, "follow_up_date") == {"constraint_failed"}
    closed = copy.deepcopy(complaint())
    closed["status"] = "4"
    del closed["follow_up_date"]
    assert validate_answers(definition("puskesos_pengaduan"), closed, today=TODAY).flags == []


def test_complaint_wrong_codes_and_bad_nik_are_flagged():
    answers = complaint()
    answers["category"] = "pajak"
    answers["beneficiary_nik"] = "32040512038"
    answers["referral_target"] = ["tidak_dirujuk", "puskesmas"]
    report = validate_answers(definition("puskesos_pengaduan"), answers, today=TODAY)
    assert flags_at(report, "category") == {"unknown_choice"}
    assert flags_at(report, "beneficiary_nik") == {"constraint_failed", "invalid_nik"}
    assert flags_at(report, "referral_target") == {"constraint_failed"}


def test_complaint_other_category_needs_its_description():
    answers = complaint()
    answers["category"] = "lainnya"
    report = validate_answers(definition("puskesos_pengaduan"), answers, today=TODAY)
    assert flags_at(report, "category_other") == {"required_missing"}


def test_follow_up_visit_checks_dates_and_exclusive_choices():
    answers = follow_up_visit()
    answers["next_visit_date"] = (TODAY - dt.timedelta(days=3)).isoformat()
    answers["services_accessed"] = ["tidak_ada", "pkh"]
    answers["problems_found"] = ["tidak_ada"]
    answers["officer_role"] = "camat"
    report = validate_answers(definition("kunjungan_pendampingan"), answers, today=TODAY)
    assert flags_at(report, "next_visit_date") == {"constraint_failed"}
    assert flags_at(report, "services_accessed") == {"constraint_failed"}
    assert flags_at(report, "officer_role") == {"unknown_choice"}
    # With no problem found, the description is not asked (it was answered, but is not relevant).
    assert flags_at(report, "problem_description") == set()
