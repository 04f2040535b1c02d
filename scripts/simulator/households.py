"""Households as officers meet them: Indonesian names, NIKs, No. KK, families and the household form's answers.

The simulator and the bench both fill the shipped ``verval_keluarga`` form from here, so there is one
generator of identities and answers. Every function takes its ``random.Random``, so a seed repeats a run.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sync import Record

PRESENT = ("1", "5")  # presence codes of people living in the household: only they answer the roster block

MALE = ("Asep", "Ujang", "Dedi", "Agus", "Budi", "Cecep", "Dadang", "Eko", "Hendra", "Iwan", "Rahmat", "Yayan",
        "Deden", "Ade", "Wawan", "Jajang", "Ruhiyat", "Engkos", "Mamat", "Tatang", "Dodi", "Yusuf", "Ahmad")
FEMALE = ("Euis", "Siti", "Neng", "Iis", "Dewi", "Rina", "Nani", "Yanti", "Lilis", "Tati", "Wati", "Ratna",
          "Nur", "Imas", "Eneng", "Cucu", "Entin", "Yuyun", "Nining", "Popon", "Aisyah", "Rahma")
SECOND = ("Saepudin", "Komariah", "Kurniawan", "Nurhaliza", "Hidayat", "Setiawan", "Suryana", "Rohmat",
          "Sulaeman", "Permana", "Gunawan", "Rahayu", "Lestari", "Maryati", "Sumarni", "Supriatna", "Mulyana",
          "Nurjanah", "Fauzi", "Ramdani", "Sopandi", "Kusnadi", "Hasanah", "Rosita")
KAMPUNG = ("Sukamaju", "Cibiru", "Babakan", "Cipadung", "Sindanglaya", "Cigending", "Pasir Impun", "Cikoneng",
           "Mekarsari", "Sukasari", "Cilengkrang", "Cijambe")


@dataclass
class Person:
    name: str
    female: bool
    birth: dt.date
    relation: str
    marital: str
    presence: str = "1"
    nik: str | None = None


def age_on(birth: dt.date, today: dt.date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def born(rng: random.Random, age: int, today: dt.date) -> dt.date:
    """A birth date that makes a person ``age`` today."""
    try:
        birthday = today.replace(year=today.year - age)
    except ValueError:  # 29 February
        birthday = today.replace(year=today.year - age, day=28)
    birth = birthday - dt.timedelta(days=rng.randint(0, 360))
    while age_on(birth, today) < age:
        birth -= dt.timedelta(days=1)
    return birth


def nik(region: str, birth: dt.date, *, female: bool, serial: int) -> str:
    """A NIK as Dukcapil builds it: region, DDMMYY with 40 added to the day for women, a serial."""
    day = birth.day + (40 if female else 0)
    return f"{region}{day:02d}{birth.month:02d}{birth.year % 100:02d}{serial:04d}"


def no_kk(rng: random.Random, region: str, today: dt.date) -> str:
    issued = today - dt.timedelta(days=rng.randint(30, 15 * 365))
    return f"{region}{issued.day:02d}{issued.month:02d}{issued.year % 100:02d}{rng.randint(1, 9999):04d}"


def region_of(village: str) -> str:
    return village.replace(".", "")[:6]


def full_name(rng: random.Random, female: bool) -> str:
    return f"{rng.choice(FEMALE if female else MALE)} {rng.choice(SECOND)}"


def make_family(rng: random.Random, size: int, today: dt.date) -> list[Person]:
    """1-6 people: a head, usually a spouse, children and sometimes a widowed grandmother."""
    if size == 1:
        female = rng.random() < 0.4
        return [Person(full_name(rng, female), female, born(rng, rng.randint(24, 80), today), "1",
                       rng.choice(("1", "3", "4")))]
    head_age = rng.randint(26, 68)
    wife_age = max(19, head_age - rng.randint(-3, 8))
    people = [Person(full_name(rng, False), False, born(rng, head_age, today), "1", "2"),
              Person(full_name(rng, True), True, born(rng, wife_age, today), "2", "2")]
    children = size - 2
    if size == 6 and head_age <= 55:
        people.append(Person(full_name(rng, True), True, born(rng, min(95, head_age + rng.randint(24, 30)), today),
                             "6", "4"))
        children -= 1
    for _ in range(children):
        age = rng.randint(0, max(0, min(wife_age - 18, 30)))
        female = rng.random() < 0.5
        people.append(Person(full_name(rng, female), female, born(rng, age, today), "3",
                             "2" if age >= 22 and rng.random() < 0.3 else "1"))
    return people


def _schooling(rng: random.Random, age: int) -> dict[str, Any]:
    if age < 7:
        return {"school_participation": "1"}
    if age <= 18:
        level, grade, certificate = (("3", age - 6, "23") if age <= 12 else ("8", age - 12, "3") if age <= 15
                                     else (rng.choice(("13", "15")), min(3, age - 15), "8"))
        return {"school_participation": "2", "education_level": level, "highest_grade": max(1, min(8, grade)),
                "highest_certificate": certificate}
    if age >= 65 and rng.random() < 0.3:
        return {"school_participation": "1"}
    level, grade = rng.choice((("3", 6), ("8", 3), ("13", 3), ("15", 3), ("19", 4)))
    return {"school_participation": "3", "education_level": level, "highest_grade": grade,
            "highest_certificate": level}


def member_row(rng: random.Random, member_id: str, person: Person, region: str, serial: int,
               today: dt.date) -> dict[str, Any]:
    """One roster row, answering exactly what the form asks of this person."""
    age = age_on(person.birth, today)
    row: dict[str, Any] = {
        "_id": member_id,
        "member_name": person.name,
        "member_nik": person.nik or nik(region, person.birth, female=person.female, serial=serial),
        "presence": person.presence,
        "sex": "2" if person.female else "1",
        "birth_date": person.birth.isoformat(),
        "age": age,
        "marital_status": person.marital,
        "relation_to_head": person.relation,
    }
    if person.presence not in PRESENT:
        return row
    if person.female and 10 <= age <= 54:
        row["pregnant"] = "1" if person.marital == "2" and age < 40 and rng.random() < 0.1 else "2"
    row["id_documents"] = ["1", "4"] if age >= 17 else ["1", "2"] if age >= 1 else ["1"]
    if age >= 5:
        row.update(_schooling(rng, age))
        worked = 18 <= age <= 64 and rng.random() < 0.65
        row["worked_last_week"] = "1" if worked else "2"
        if worked:
            row.update({"work_hours": rng.randint(8, 60), "work_industry": str(rng.randint(1, 26)),
                        "work_status": str(rng.randint(1, 8))})
    for difficulty in ("seeing", "hearing", "walking", "hands", "learning", "behaviour", "communicating",
                       "self_care", "remembering"):
        row[f"difficulty_{difficulty}"] = "4" if age < 60 or rng.random() < 0.7 else rng.choice(("2", "3"))
    row["sad_frequency"] = rng.choice(("3", "4", "4", "4"))
    row["chronic_illness"] = ["1"] if age < 45 or rng.random() < 0.6 else sorted(rng.sample(
        ["2", "3", "6", "13"], rng.randint(1, 2)), key=int)
    row["health_insurance"] = rng.choice((["1"], ["1"], ["2"], ["4"], ["0"]))
    return row


@dataclass
class Profile:
    """What a household answers in the location block."""

    sls_code: str
    sls_name: str
    address: str
    head_name: str
    family_status: str
    no_kk: str


def new_profile(rng: random.Random, village: str, village_name: str, head: str, today: dt.date) -> Profile:
    rt, rw = rng.randint(1, 12), rng.randint(1, 6)
    kampung = rng.choice(KAMPUNG)
    return Profile(f"{rt:02d}{rw:02d}", f"RT {rt:03d} RW {rw:03d} Kampung {kampung}",
                   f"Kp. {kampung} RT {rt:03d}/RW {rw:03d}, Desa {village_name}", head,
                   rng.choice(("0", "0", "0", "1", "2")), no_kk(rng, region_of(village), today))


def household_answers(rng: random.Random, *, village: str, profile: Profile, rows: list[dict[str, Any]],
                      point: tuple[float, float], today: dt.date, result: str = "1") -> dict[str, Any]:
    """The whole household verification form: location, enumeration, housing, roster, programmes."""
    present = [row for row in rows if row["presence"] in PRESENT]
    answers: dict[str, Any] = {
        "village_code": village, "sls_code": profile.sls_code, "sls_name": profile.sls_name,
        "address": profile.address, "head_name": profile.head_name, "family_status": profile.family_status,
        "member_count": max(1, len(present)), "no_kk": profile.no_kk,
        "visit_date": (today - dt.timedelta(days=rng.randint(0, 2))).isoformat(), "visit_result": result,
        "house_location": {"lat": point[0], "lon": point[1], "accuracy_m": round(rng.uniform(3, 25), 1)},
        # The file name a phone gives the photo it took (ODK names it by the time in milliseconds).
        "house_photo": f"{rng.randint(10**12, 2 * 10**12)}.jpg",
    }
    if result not in ("1", "2"):
        return answers
    respondent = rng.choice(present) if present else rows[0]
    lighting = rng.choice(("1", "1", "1", "2", "3", "4"))
    toilet = rng.choice(("1", "1", "2", "3", "6"))
    answers.update({
        "respondent_name": respondent["member_name"],
        "respondent_phone": f"08{rng.choice(('12', '13', '21', '52', '57', '77'))}{rng.randint(10**6, 10**8 - 1)}",
        "building_status": rng.choice(("1", "1", "1", "2", "3")),
        "floor_area": round(rng.uniform(18, 120), 1),
        "floor_material": str(rng.randint(1, 9)), "wall_material": str(rng.randint(1, 7)),
        "roof_material": str(rng.randint(1, 8)), "drinking_water": str(rng.randint(1, 11)),
        "lighting_source": lighting, "cooking_fuel": str(rng.randint(1, 12)), "toilet_facility": toilet,
        "sewage_disposal": str(rng.randint(1, 6)),
        "members": rows,
        "assets": sorted(rng.sample("abcdefghijklmn", rng.randint(0, 5))),
        "owns_land": rng.choice(("1", "2")), "owns_other_house": rng.choice(("1", "2", "2")),
        "internet_access": str(rng.randint(0, 3)), "bank_account": str(rng.randint(1, 4)),
        "notes": rng.choice(("", "Responden ramah.", "Kepala keluarga sedang bekerja di sawah.",
                             "Rumah sulit dijangkau saat hujan.")),
    })
    for programme in ("sembako", "pkh", "blt_dana_desa", "electricity_subsidy", "regional_aid",
                      "fertiliser_subsidy", "lpg_subsidy"):
        answers[f"programme_{programme}"] = rng.choice(("1", "2", "2"))
    if lighting == "1":
        answers["electricity_power"] = str(rng.randint(1, 5))
    if toilet != "6":
        answers["toilet_type"] = str(rng.randint(1, 4))
    if not answers["notes"]:
        del answers["notes"]
    if not answers["assets"]:
        del answers["assets"]
    if result == "2":
        # an incomplete interview leaves optional answers out
        answers.pop("respondent_phone", None)
    return answers


def new_visit_answers(rng: random.Random, village: str, village_name: str, point: tuple[float, float],
                      today: dt.date, make_id: Callable[[], str], *, size: int | None = None,
                      result: str | None = None) -> dict[str, Any]:
    """A first visit to a household of ``size`` people (1-6 at random), interviewed with ``result``
    (``"1"`` complete, ``"2"`` partly; at random, mostly complete, when not given)."""
    people = make_family(rng, size if size is not None else rng.randint(1, 6), today)
    region = region_of(village)
    serials = rng.sample(range(1, 10_000), len(people))
    rows = [member_row(rng, make_id(), person, region, serial, today) for person, serial in zip(people, serials,
                                                                                            strict=True)]
    profile = new_profile(rng, village, village_name, people[0].name, today)
    return household_answers(rng, village=village, profile=profile, rows=rows, point=point, today=today,
                             result=result or rng.choice(("1",) * 9 + ("2",)))


def revisit_answers(rng: random.Random, record: Record, village: str, village_name: str,
                    point: tuple[float, float], today: dt.date, make_id: Callable[[], str]) -> dict[str, Any]:
    """A follow-up visit, prefilled from the household as the device holds it (as ODK Entities do)."""
    values = record.values()
    people: list[tuple[str, Person]] = []
    for member_id, fields in sorted(record.members().items()):
        if not isinstance(fields.get("name"), str):
            continue
        female = fields.get("sex") == "2"
        try:
            birth = dt.date.fromisoformat(fields["birth_date"])
        except (KeyError, TypeError, ValueError):
            birth = born(rng, rng.randint(5, 60), today)
        people.append((member_id, Person(
            fields["name"], female, birth, str(fields.get("relation_to_head", "8")),
            str(fields.get("marital_status", "1")), str(fields.get("presence", "1")),
            fields.get("nik") if isinstance(fields.get("nik"), str) else None)))
    region = region_of(village)
    if not people:
        people = [(make_id(), person) for person in make_family(rng, rng.randint(1, 4), today)]
    present = [person for _, person in people if person.presence in PRESENT]
    if len(present) >= 2 and rng.random() < 0.15:
        rng.choice(present[1:]).presence = rng.choice(("2", "3"))  # died or moved away since the last visit
    if rng.random() < 0.15:
        people.append((make_id(), Person(full_name(rng, rng.random() < 0.5), rng.random() < 0.5,
                                         born(rng, 0, today), rng.choice(("3", "5")), "1", "5")))
    serials = rng.sample(range(1, 10_000), len(people))
    rows = [member_row(rng, member_id, person, region, serial, today)
            for (member_id, person), serial in zip(people, serials, strict=True)]
    fresh = new_profile(rng, village, village_name, people[0][1].name, today)
    profile = Profile(*(values.get(key) if isinstance(values.get(key), str) else getattr(fresh, key)
                        for key in ("sls_code", "sls_name", "address", "head_name", "family_status", "no_kk")))
    return household_answers(rng, village=village, profile=profile, rows=rows, point=point, today=today,
                             result=rng.choice(("1",) * 8 + ("2", "4")))


def _variant(seed: str, index: int, options: list[Any]) -> Any:
    """One of a few values fixed per household, so two officers sometimes type the same correction."""
    return options[(sum(map(ord, seed)) + index) % len(options)]


def edit_writes(rng: random.Random, record: Record, village_name: str) -> dict[str, Any]:
    """One or two corrections an officer makes at the door: a name, an address, a phone, a member's status."""
    values = record.values()
    members = [member_id for member_id, fields in sorted(record.members().items()) if "name" in fields]
    writes: dict[str, Any] = {}
    for _ in range(rng.choice((1, 1, 2))):
        kind = rng.choice(("head_name", "head_name", "address", "phone", "presence", "marital", "member_name")
                          if members else ("head_name", "address", "phone"))
        pick = rng.randint(0, 2)
        if kind == "head_name":
            base = str(values.get("head_name") or full_name(rng, False)).removeprefix("H. ").split(",")[0]
            writes["head_name"] = _variant(record.id, pick, [f"H. {base}", f"{base}, S.Pd.", base.upper()])
        elif kind == "address":
            kampung = _variant(record.id, pick, list(KAMPUNG))
            writes["address"] = f"Kp. {kampung} RT {pick + 1:03d}/RW 002, Desa {village_name}"
        elif kind == "phone":
            writes["phone"] = _variant(record.id, pick, ["081322456789", "085721334455", "087822001122"])
        else:
            member_id = rng.choice(members)
            if kind == "presence":
                writes[f"members/{member_id}/presence"] = rng.choice(("1", "2", "3"))
            elif kind == "marital":
                writes[f"members/{member_id}/marital_status"] = rng.choice(("1", "2", "3", "4"))
            else:
                name = str(record.members()[member_id]["name"]).split(" ")[0]
                writes[f"members/{member_id}/name"] = f"{name} {_variant(member_id, pick, list(SECOND))}"
    return writes


