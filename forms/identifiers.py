"""Checks of Indonesian identifiers: NIK, No. KK and Kemendagri region (village / area) codes."""

# These checks say whether a value is well formed, not whether it exists: the
# region code lists change yearly (see /work/shared/domain/indonesia.md), so the
# shape is checked here and existence is left to the people who know the village.

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "NikInfo",
    "area_contains",
    "check_area_code",
    "check_kk",
    "check_nik",
    "check_village_code",
    "parse_nik",
]

# Province codes run from 11 (Aceh) to 96 (Papua Barat Daya); the pattern of the
# Kemendagri code itself only requires a first digit of 1-9.
PROVINCE_MIN, PROVINCE_MAX = 11, 96

# [0-9] rather than \d: \d also matches Arabic-Indic and other Unicode digits.
_SIXTEEN_DIGITS = re.compile(r"[0-9]{16}")
_VILLAGE_CODE = re.compile(r"[1-9][0-9]\.[0-9]{2}\.[0-9]{2}\.[123][0-9]{3}")
_AREA_CODE = re.compile(r"[1-9][0-9](\.[0-9]{2}(\.[0-9]{2}(\.[123][0-9]{3})?)?)?")

# February allows the 29th: the century of a NIK's year is unknown, so a leap year
# cannot be ruled out.
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class NikInfo:
    """What a well-formed NIK says: where it was first registered, the birth date and sex."""

    province: str
    regency: str
    kecamatan: str
    birth_day: int
    birth_month: int
    birth_yy: int  # two digits; the century is not recorded
    sex: Literal["female", "male"]
    serial: str

    @property
    def region(self) -> str:
        """The kecamatan's Kemendagri code, e.g. '32.04.05'."""
        return f"{self.province}.{self.regency}.{self.kecamatan}"


def _check_region(digits: str, what: str) -> list[str]:
    errors = []
    province, regency, kecamatan = int(digits[0:2]), digits[2:4], digits[4:6]
    if not PROVINCE_MIN <= province <= PROVINCE_MAX:
        errors.append(f"{what}: province code {digits[0:2]} is not between {PROVINCE_MIN} and {PROVINCE_MAX}")
    if regency == "00":
        errors.append(f"{what}: regency code cannot be 00")
    if kecamatan == "00":
        errors.append(f"{what}: kecamatan code cannot be 00")
    return errors


def _sixteen_digits(value: Any) -> str | None:
    if isinstance(value, str) and _SIXTEEN_DIGITS.fullmatch(value):
        return value
    return None


def check_nik(value: Any) -> list[str]:
    """Problems with a NIK (Nomor Induk Kependudukan); an empty list when it is well formed."""
    digits = _sixteen_digits(value)
    if digits is None:
        return ["NIK must be exactly 16 digits"]
    errors = _check_region(digits[0:6], "NIK digits 1-6")
    raw_day, month = int(digits[6:8]), int(digits[8:10])
    day = raw_day - 40 if raw_day > 40 else raw_day
    if not 1 <= month <= 12:
        errors.append(f"NIK digits 9-10: birth month {digits[8:10]} is not 01-12")
    if not (1 <= raw_day <= 31 or 41 <= raw_day <= 71):
        errors.append(f"NIK digits 7-8: birth day {digits[6:8]} is not 01-31 (men) or 41-71 (women)")
    elif 1 <= month <= 12 and day > _DAYS_IN_MONTH[month - 1]:
        errors.append(f"NIK digits 7-10: day {day} does not exist in month {month:02d}")
    if digits[12:16] == "0000":
        errors.append("NIK digits 13-16: serial number cannot be 0000")
    return errors


def parse_nik(value: Any) -> NikInfo | None:
    """The parts of a well-formed NIK, or None when check_nik finds a problem."""
    if check_nik(value):
        return None
    raw_day = int(value[6:8])
    return NikInfo(
        province=value[0:2],
        regency=value[2:4],
        kecamatan=value[4:6],
        birth_day=raw_day - 40 if raw_day > 40 else raw_day,
        birth_month=int(value[8:10]),
        birth_yy=int(value[10:12]),
        sex="female" if raw_day > 40 else "male",
        serial=value[12:16],
    )


def check_kk(value: Any) -> list[str]:
    """Problems with a family-card number (No. KK); an empty list when it is well formed."""
    digits = _sixteen_digits(value)
    if digits is None:
        return ["No. KK must be exactly 16 digits"]
    errors = _check_region(digits[0:6], "No. KK digits 1-6")
    if digits[12:16] == "0000":
        errors.append("No. KK digits 13-16: serial number cannot be 0000")
    return errors


def check_village_code(code: Any) -> list[str]:
    """Problems with a full Kemendagri village code such as '32.04.05.2001'."""
    if not isinstance(code, str) or not _VILLAGE_CODE.fullmatch(code):
        return ["village code must look like 32.04.05.2001 (province.regency.kecamatan.village)"]
    return []


def check_area_code(code: Any) -> list[str]:
    """Problems with a Kemendagri code of any level: '32', '32.04', '32.04.05' or '32.04.05.2001'."""
    if not isinstance(code, str) or not _AREA_CODE.fullmatch(code):
        return ["area code must look like 32, 32.04, 32.04.05 or 32.04.05.2001"]
    return []


def area_contains(area_code: str, village_code: str) -> bool:
    """Whether the village lies in the area, comparing whole dotted segments ('32.0' contains nothing)."""
    if check_area_code(area_code) or check_area_code(village_code):
        return False
    area, village = area_code.split("."), village_code.split(".")
    return len(area) <= len(village) and village[: len(area)] == area
