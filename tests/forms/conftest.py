"""Fixtures for the form-language tests: a small household verification form with a members roster."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from forms.definition import Definition, validate_definition

HOUSEHOLD_FORM: dict[str, Any] = {
    "settings": {
        "form_id": "verval_rumah_tangga",
        "version": "2025010101",
        "title": {"id": "Verifikasi Rumah Tangga", "en": "Household verification"},
        "default_language": "id",
    },
    "fields": [
        {
            "type": "text",
            "name": "head_name",
            "label": {"id": "Nama kepala keluarga", "en": "Name of the head of family"},
            "required": True,
            "save_to": "head_name",
        },
        {
            "type": "text",
            "name": "no_kk",
            "label": {"id": "Nomor KK", "en": "Family card number"},
            "appearance": "numbers kk",
            "constraint": "regex(., '^[0-9]{16}$')",
            "constraint_message": {"id": "No. KK harus 16 digit", "en": "No. KK must be 16 digits"},
            "save_to": "no_kk",
        },
        {
            "type": "select_one",
            "name": "kecamatan",
            "label": {"id": "Kecamatan", "en": "District"},
            "list": "kecamatan",
        },
        {
            "type": "select_one",
            "name": "desa",
            "label": {"id": "Desa", "en": "Village"},
            "list": "desa",
            "choice_filter": "kecamatan = ${kecamatan}",
        },
        {
            "type": "group",
            "name": "rumah",
            "label": {"id": "Perumahan", "en": "Housing"},
            "fields": [
                {
                    "type": "decimal",
                    "name": "floor_area",
                    "label": {"id": "Luas lantai (m²)", "en": "Floor area (m²)"},
                    "constraint": ". > 0 and . < 10000",
                    "constraint_message": {"id": "Luas lantai tidak wajar", "en": "Implausible floor area"},
                    "save_to": "floor_area",
                },
                {
                    "type": "select_multiple",
                    "name": "bansos",
                    "label": {"id": "Bantuan yang diterima", "en": "Aid received"},
                    "list": "bansos",
                },
                {
                    "type": "date",
                    "name": "pkh_since",
                    "label": {"id": "Menerima PKH sejak", "en": "Receiving PKH since"},
                    "relevant": "selected(${bansos}, 'pkh')",
                    "required": True,
                    "constraint": ". <= today()",
                },
            ],
        },
        {
            "type": "geopoint",
            "name": "location",
            "label": {"id": "Lokasi rumah", "en": "House location"},
        },
        {
            "type": "repeat",
            "name": "members",
            "label": {"id": "Anggota keluarga", "en": "Family members"},
            "save_to": "members",
            "fields": [
                {
                    "type": "text",
                    "name": "name",
                    "label": {"id": "Nama", "en": "Name"},
                    "required": True,
                    "save_to": "name",
                },
                {
                    "type": "text",
                    "name": "nik",
                    "label": {"id": "NIK", "en": "NIK"},
                    "appearance": "numbers nik",
                    "constraint": "valid-nik(.)",
                    "constraint_message": {"id": "NIK tidak valid", "en": "Invalid NIK"},
                    "save_to": "nik",
                },
                {
                    "type": "integer",
                    "name": "age",
                    "label": {"id": "Umur", "en": "Age"},
                    "required": True,
                    "constraint": ". >= 0 and . <= 120",
                    "save_to": "age",
                },
                {
                    "type": "select_one",
                    "name": "sex",
                    "label": {"id": "Jenis kelamin", "en": "Sex"},
                    "list": "sex",
                    "save_to": "sex",
                },
                {
                    "type": "select_one",
                    "name": "pregnant",
                    "label": {"id": "Sedang hamil?", "en": "Pregnant?"},
                    "list": "yesno",
                    "relevant": "${sex} = '2' and ${age} >= 10 and ${age} <= 54",
                    "required": True,
                },
            ],
        },
        {
            "type": "calculate",
            "name": "member_count",
            "calculation": "count(${members})",
            "save_to": "member_count",
        },
        {
            "type": "note",
            "name": "thanks",
            "label": {"id": "Terima kasih", "en": "Thank you"},
        },
    ],
    "choices": {
        "yesno": [
            {"name": "1", "label": {"id": "Ya", "en": "Yes"}},
            {"name": "2", "label": {"id": "Tidak", "en": "No"}},
        ],
        "sex": [
            {"name": "1", "label": {"id": "Laki-laki", "en": "Male"}},
            {"name": "2", "label": {"id": "Perempuan", "en": "Female"}},
        ],
        "bansos": [
            {"name": "pkh", "label": {"id": "PKH", "en": "Family Hope Programme"}},
            {"name": "bpnt", "label": {"id": "Sembako/BPNT", "en": "Food aid"}},
            {"name": "blt_dd", "label": {"id": "BLT Dana Desa", "en": "Village fund cash aid"}},
        ],
        "kecamatan": [
            {"name": "3204050", "label": {"id": "Cileunyi", "en": "Cileunyi"}},
            {"name": "3204060", "label": {"id": "Cimenyan", "en": "Cimenyan"}},
        ],
        "desa": [
            {"name": "cibiru_hilir", "label": {"id": "Cibiru Hilir"}, "kecamatan": "3204050"},
            {"name": "cileunyi_kulon", "label": {"id": "Cileunyi Kulon"}, "kecamatan": "3204050"},
            {"name": "mekarsaluyu", "label": {"id": "Mekarsaluyu"}, "kecamatan": "3204060"},
        ],
    },
}


@pytest.fixture
def household_data() -> dict[str, Any]:
    """The household form as JSON, a fresh copy each test may change."""
    return copy.deepcopy(HOUSEHOLD_FORM)


@pytest.fixture
def household_definition(household_data: dict[str, Any]) -> Definition:
    return validate_definition(household_data)
