"""Checks of Indonesian identifiers: NIK, No. KK and Kemendagri region (village / area) codes."""

# These checks say whether a value is well formed, not whether it exists: the
# region code lists change yearly (Permendagri on region codes, see docs/domain.md),
# so the shape is checked here and existence is left to the people who know the village.

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import marshmallow as ma

__all__ = [
    "AREA_LEVELS",
    "Area",
    "AreaCode",
    "NikInfo",
    "area_contains",
    "check_area_code",
    "check_kk",
    "check_nik",
    "check_village_code",
    "outermost",
    "parse_nik",
]

# Province codes run from 11 (Aceh) to 96 (Papua Barat Daya); the pattern of the
# Kemendagri code itself only requires a first digit of 1-9.
PROVINCE_MIN, PROVINCE_MAX = 11, 96

# [0-9] rather than \d: \d also matches Arabic-Indic and other Unicode digits.
_SIXTEEN_DIGITS = re.compile(r"[0-9]{16}")
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


AREA_LEVELS = ("province", "regency", "kecamatan", "village")
_AREA_EXAMPLES = {"province": "32", "regency": "32.04", "kecamatan": "32.04.05", "village": "32.04.05.2001"}


@dataclass(frozen=True, order=True)
class Area:
    """A Kemendagri region: a province, regency, kecamatan or village, by its dotted code.

    This is the one place that knows the code's shape and what "inside" means: an area
    contains itself and every code that extends it by whole dotted segments, so
    ``32.04.05`` contains ``32.04.05.2001`` and ``32.0`` contains nothing (it is no code).
    """

    code: str

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _AREA_CODE.fullmatch(self.code):
            raise ValueError(f"{self.code!r} is not a Kemendagri code like 32, 32.04, 32.04.05 or 32.04.05.2001")

    @classmethod
    def parse(cls, text: Any, *, levels: Iterable[str] = AREA_LEVELS) -> Area:
        """The area named by ``text``; ValueError, with an example, unless it is a code of one of ``levels``."""
        allowed = tuple(levels)
        try:
            area = cls(text)
        except ValueError:
            area = None
        if area is None or area.level not in allowed:
            examples = " or ".join(f"a {level} code ({_AREA_EXAMPLES[level]})" for level in allowed)
            raise ValueError(f"{text!r} is not {examples}")
        return area

    @classmethod
    def is_code(cls, text: Any, *, levels: Iterable[str] = AREA_LEVELS) -> bool:
        """Whether ``text`` parses as an area of one of ``levels``."""
        try:
            cls.parse(text, levels=levels)
        except ValueError:
            return False
        return True

    @property
    def level(self) -> str:
        return AREA_LEVELS[self.code.count(".")]

    @property
    def is_village(self) -> bool:
        return self.level == "village"

    @property
    def prefix(self) -> str:
        """What every code strictly inside this area starts with (``32.04.`` for ``32.04``)."""
        return self.code + "."

    def contains(self, other: Area | str | None) -> bool:
        """Whether ``other`` (an area or a code) is this area or lies inside it; False for a non-code."""
        code = other.code if isinstance(other, Area) else other
        if not isinstance(code, str):
            return False
        if code == self.code:
            return True
        return code.startswith(self.prefix) and _AREA_CODE.fullmatch(code) is not None

    def overlaps(self, other: Area) -> bool:
        """Whether the two areas share any village: one contains the other."""
        return self.contains(other) or other.contains(self)

    def __str__(self) -> str:
        return self.code


def outermost(areas: Iterable[Area]) -> tuple[Area, ...]:
    """The areas not inside another of them, sorted and without repeats: ``32.04`` absorbs ``32.04.05.2001``."""
    unique = sorted(set(areas))
    return tuple(a for a in unique if not any(b != a and b.contains(a) for b in unique))


class AreaCode(ma.fields.String):
    """The marshmallow field of a Kemendagri code of the given ``levels`` (every level by default).

    It loads as the code string, checked by :class:`Area`, so every schema refuses the same
    things: a trailing newline, non-ASCII digits, a partial segment.
    """

    def __init__(self, *, levels: Iterable[str] = AREA_LEVELS, **kwargs: Any) -> None:
        self.levels = tuple(levels)
        examples = ", ".join(_AREA_EXAMPLES[level] for level in self.levels)
        metadata = {"description": f"Kemendagri code ({examples})", **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return Area.parse(text, levels=self.levels).code
        except ValueError as error:
            raise ma.ValidationError(str(error)) from None


def check_village_code(code: Any) -> list[str]:
    """Problems with a full Kemendagri village code such as '32.04.05.2001'."""
    if not Area.is_code(code, levels=("village",)):
        return ["village code must look like 32.04.05.2001 (province.regency.kecamatan.village)"]
    return []


def check_area_code(code: Any) -> list[str]:
    """Problems with a Kemendagri code of any level: '32', '32.04', '32.04.05' or '32.04.05.2001'."""
    if not Area.is_code(code):
        return ["area code must look like 32, 32.04, 32.04.05 or 32.04.05.2001"]
    return []


def area_contains(area_code: str, village_code: str) -> bool:
    """Whether the village lies in the area, comparing whole dotted segments ('32.0' contains nothing)."""
    try:
        return Area(area_code).contains(Area(village_code))
    except ValueError:
        return False
