#!/usr/bin/env python3
"""Device simulator: officers' phones work offline and sync; replicas and server are checked against an oracle."""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import gzip
import http.client
import json
import math
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape

from forms import household_writes, validate_definition
from sync import HybridClock, Record, Write, make_stamp

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_VILLAGES = ROOT / "server" / "data" / "sample_villages.geojson"
HOUSEHOLD_FORM = "verval_keluarga"
WIB = dt.timezone(dt.timedelta(hours=7))  # Kabupaten Bandung keeps Western Indonesian Time
HOUR_MS = 3_600_000
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)
REQUEST_RETRIES = 8
PUSH_ATTEMPTS = 25
PUSH_PASSES = 4
MAX_PULL_PAGES = 100_000
HOT_HOUSEHOLDS = 3
PRESENT = ("1", "5")  # presence codes of people living in the household: only they answer the roster block


class SimError(RuntimeError):
    """The simulation could not go on (setup refused, a request failed every retry)."""


# -- transports ---------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def code(self) -> str | None:
        try:
            data = self.json()
        except ValueError:
            return None
        return data.get("code") if isinstance(data, dict) else None


class HttpTransport:
    """A running server over HTTP with urllib; safe to share between threads."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--url must be http(s)://host:port, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.name = self.base_url

    def send(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        # The scheme was checked in __init__: only http(s) URLs reach Request and urlopen.
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return Reply(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read(), dict(error.headers or {}))


class FlaskTransport:
    """An app in this process through Flask's test client, one client per thread (clients keep cookies)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.name = "in-process"
        self._local = threading.local()

    def send(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.app.test_client()
        response = client.open(path, method=method, query_string=query, data=body, headers=headers or {})
        return Reply(response.status_code, response.get_data(), dict(response.headers))


class Latencies:
    """Request durations by endpoint label, from every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, list[float]] = defaultdict(list)

    def add(self, label: str, seconds: float) -> None:
        with self._lock:
            self._seconds[label].append(seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            items = {label: sorted(values) for label, values in self._seconds.items()}
        return {label: {"count": len(values), "p50_ms": _ms(percentile(values, 50)),
                        "p95_ms": _ms(percentile(values, 95)), "p99_ms": _ms(percentile(values, 99)),
                        "max_ms": _ms(values[-1])}
                for label, values in sorted(items.items())}


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class Link:
    """The transport plus what every request records: its latency under an endpoint label."""

    def __init__(self, transport: Any, latencies: Latencies) -> None:
        self.transport = transport
        self.latencies = latencies
        self._lock = threading.Lock()
        self.server_errors: list[str] = []

    def send(self, method: str, path: str, label: str, *, query: dict[str, Any] | None = None,
             payload: Any = None, token: str | None = None, gzip_body: bool = False) -> Reply:
        headers = {"Accept": "application/json"}
        body = None
        if payload is not None:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
            if gzip_body:
                body = gzip.compress(body, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        start = time.perf_counter()
        try:
            reply = self.transport.send(method, path, query=query, body=body, headers=headers)
        finally:
            self.latencies.add(label, time.perf_counter() - start)
        if reply.status >= 500:
            with self._lock:
                self.server_errors.append(f"{label} answered {reply.status}: {reply.body[:200]!r}")
        return reply


class Session:
    """One login: its tokens, and requests that refresh an expired access token."""

    def __init__(self, link: Link, username: str, password: str, device_id: str | None = None) -> None:
        self.link = link
        self.username = username
        self.password = password
        self.device_id = device_id
        self.access: str | None = None
        self.refresh_token: str | None = None
        self.user: dict[str, Any] = {}
        self._lock = threading.Lock()

    def login(self) -> dict[str, Any]:
        body = {"username": self.username, "password": self.password, "app_version": "kunjung-sim/1"}
        if self.device_id:
            body["device_id"] = self.device_id
        for attempt in range(REQUEST_RETRIES):
            try:
                reply = self.link.send("POST", "/api/v1/auth/login", "POST /api/v1/auth/login", payload=body)
            except TRANSPORT_ERRORS:
                _backoff(attempt)
                continue
            if reply.status == 429 or reply.status >= 500:
                _backoff(attempt)
                continue
            if reply.status != 200:
                raise SimError(f"login of {self.username} answered {reply.status}: {reply.body[:300]!r}")
            data = reply.json()
            self.access, self.refresh_token, self.user = data["access_token"], data["refresh_token"], data["user"]
            return self.user
        raise SimError(f"login of {self.username} failed {REQUEST_RETRIES} times")

    def _refresh(self, used: str | None) -> None:
        with self._lock:
            if self.access != used:  # another thread refreshed already
                return
            reply = self.link.send("POST", "/api/v1/auth/refresh", "POST /api/v1/auth/refresh",
                                   token=self.refresh_token)
            if reply.status != 200:
                self.login()
                return
            data = reply.json()
            self.access, self.refresh_token = data["access_token"], data["refresh_token"]

    def attempt(self, method: str, path: str, label: str, **options: Any) -> Reply:
        """One request with this login's token (transport errors propagate); an expired token is refreshed once."""
        used = self.access
        reply = self.link.send(method, path, label, token=used, **options)
        if reply.status == 401 and reply.code == "token_expired":
            self._refresh(used)
            reply = self.link.send(method, path, label, token=self.access, **options)
        return reply

    def call(self, method: str, path: str, label: str, *, expect: Iterable[int] = (200,), **options: Any) -> Any:
        """The JSON answer of a request that must succeed; transport errors and 5xx are retried."""
        expect = tuple(expect)
        for attempt in range(REQUEST_RETRIES):
            try:
                reply = self.attempt(method, path, label, **options)
            except TRANSPORT_ERRORS:
                _backoff(attempt)
                continue
            if reply.status >= 500:
                _backoff(attempt)
                continue
            if reply.status in expect:
                return reply.json()
            raise SimError(f"{label} as {self.username} answered {reply.status}: {reply.body[:300]!r}")
        raise SimError(f"{label} as {self.username} failed {REQUEST_RETRIES} times")


def paged(session: Session, path: str, label: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every item of a paged list (``{"items", "next"}``), following ``next``."""
    items: list[dict[str, Any]] = []
    after = None
    while True:
        page = session.call("GET", path, label, query={**(query or {}), "limit": 1000,
                                                        **({"after": after} if after else {})})
        items.extend(page["items"])
        after = page["next"]
        if after is None:
            return items


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt))


# -- villages and points ----------------------------------------------------------------------

class Boundaries:
    """Village polygons from GeoJSON, for points a GPS would give inside or outside a village."""

    def __init__(self, collection: dict[str, Any]) -> None:
        self.names: dict[str, str] = {}
        self.shapes: dict[str, Any] = {}
        for feature in collection.get("features", []):
            code = feature["properties"]["code"]
            self.names[code] = feature["properties"].get("name", code)
            geometry = shape(feature["geometry"])
            shapely.prepare(geometry)
            self.shapes[code] = geometry

    def point(self, rng: random.Random, code: str, *, outside: bool) -> tuple[float, float]:
        """(lat, lon) inside the village, or clearly (over ~50 m) outside it."""
        geometry = self.shapes.get(code)
        if geometry is None:
            return round(-6.93 + rng.uniform(-0.02, 0.02), 6), round(107.70 + rng.uniform(-0.02, 0.02), 6)
        west, south, east, north = geometry.bounds
        margin = 0.02 if outside else 0.0
        for _ in range(10_000):
            lon = round(rng.uniform(west - margin, east + margin), 6)
            lat = round(rng.uniform(south - margin, north + margin), 6)
            candidate = shapely.Point(lon, lat)
            if outside:
                if not geometry.covers(candidate) and geometry.distance(candidate) > 0.0005:
                    return lat, lon
            elif geometry.covers(candidate) and geometry.boundary.distance(candidate) > 0.0002:
                return lat, lon
        raise SimError(f"no point found {'outside' if outside else 'inside'} {code}")


# -- households: Indonesian names, NIKs, No. KK and the form's codes -----------------------------

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
                      today: dt.date, make_id: Callable[[], str]) -> dict[str, Any]:
    """A first visit to a household of 1-6 people."""
    people = make_family(rng, rng.randint(1, 6), today)
    region = region_of(village)
    serials = rng.sample(range(1, 10_000), len(people))
    rows = [member_row(rng, make_id(), person, region, serial, today) for person, serial in zip(people, serials,
                                                                                            strict=True)]
    profile = new_profile(rng, village, village_name, people[0].name, today)
    return household_answers(rng, village=village, profile=profile, rows=rows, point=point, today=today,
                             result=rng.choice(("1",) * 9 + ("2",)))


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


# -- a device and its replica -------------------------------------------------------------------

@dataclass
class SentEvent:
    """One event a device made, as it last sent it, with every verdict the server gave."""

    body: dict[str, Any]
    kind: str
    household_id: str
    village: str
    writes: dict[str, Any]
    base: dict[str, list[str]]
    at: str
    order: int
    outside: bool | None = None
    state: str = "unsent"  # unsent -> acked | skewed (re-stamped to unsent) | rejected
    verdicts: list[str] = field(default_factory=list)
    unknown: bool = False  # sent once without hearing back: the server may have applied it
    ack_gen: int = -1
    confirmed: bool = False  # a pull made after the ack brought the household back
    restamps: int = 0

    @property
    def id(self) -> str:
        return self.body["id"]

    @property
    def stamp(self) -> str:
        return make_stamp(self.body["hlc"], self.body["device_id"], self.body["id"])


def pulled_writes(path: str, state: dict[str, Any], officers: dict[str, str]) -> list[Write]:
    """The head writes a pulled field shows: its heads in conflict, its equal heads, or its one value."""
    if "heads" in state:
        return [Write(path, head["value"], head["stamp"], officer=officers.get(head["stamp"], ""))
                for head in state["heads"]]
    stamps = state.get("head_stamps") or [state["stamp"]]
    return [Write(path, state["value"], stamp, officer=officers.get(stamp, "")) for stamp in stamps]


def merge_replica(household_id: str, pulled: dict[str, Any] | None, own: Iterable[SentEvent],
                  officer: str) -> Record:
    """A replica: the server's pulled record, then the device's own unconfirmed writes folded over it by sync/."""
    own = list(own)
    # The record holds one entry per stamp, so a stamp must name the same officer in every field:
    # conflict heads show theirs, and the device's own writes are its officer's.
    officers = {event.stamp: officer for event in own}
    if pulled is not None:
        for state in pulled["fields"].values():
            for head in state.get("heads", ()):
                officers.setdefault(head["stamp"], head.get("officer") or "")
    record = Record(household_id)
    if pulled is not None:
        for path, state in pulled["fields"].items():
            for write in pulled_writes(path, state, officers):
                record.apply(write)
    for event in own:
        for path, value in event.writes.items():
            held = record.fields.get(path)
            if held is not None and any(head.stamp == event.stamp for head in held.heads):
                continue
            record.apply(Write(path, value, event.stamp, frozenset(event.base.get(path, ())), officer))
    return record


def iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, WIB).isoformat(timespec="milliseconds")


def parse_iso_ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class Device:
    """An officer's phone: its login, clock, own events, pulled households and the replica it merges."""

    def __init__(self, sim: Simulation, index: int, username: str, password: str, fast: bool) -> None:
        self.sim = sim
        self.index = index
        self.rng = random.Random(f"{sim.config.seed}:{sim.run_tag}:device:{index}")
        self.device_id = f"sim-{sim.run_tag}-d{index:04d}"
        self.username = username
        self.session = Session(sim.link, username, password, self.device_id)
        self.fast = fast
        self.offset_ms = HOUR_MS if fast else 0
        self.clock = HybridClock(self.wall_ms)
        self.server_hlc_seen = "0000000000000-0000"
        self.villages: list[str] = []  # as the server last said; an admin may add or take one away
        self.home: list[str] = []  # the villages at login, where this officer makes visits and edits
        self.definition: Any = None
        self.form_version = ""
        self.cursor: str | None = None
        self.view: dict[str, dict[str, Any]] = {}
        self.events: list[SentEvent] = []
        self.by_household: dict[str, list[SentEvent]] = defaultdict(list)
        self.pull_gen = 0
        self.stats: Counter[str] = Counter()
        self.anomalies: list[str] = []
        self._replicas: dict[str, Record] = {}

    # clocks -----------------------------------------------------------------------------------
    def wall_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def _observe_server(self, server_hlc: str) -> None:
        self.clock.observe(server_hlc)
        self.server_hlc_seen = max(self.server_hlc_seen, server_hlc)

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # start ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Log in with the device id, fetch the household form, make the first full pull."""
        user = self.session.login()
        self.villages = self.home = sorted(user["villages"])
        if not self.villages:
            raise SimError(f"{self.username} has no village")
        forms = self.session.call("GET", "/api/v1/forms", "GET /api/v1/forms")
        listed = next((form for form in forms if form["form_id"] == HOUSEHOLD_FORM), None)
        if listed is None:
            raise SimError(f"{HOUSEHOLD_FORM} is not published to {self.username}; load the library forms")
        url = urllib.parse.urlparse(listed["url"]).path or \
            f"/api/v1/forms/{HOUSEHOLD_FORM}/versions/{listed['version']}"
        definition = self.session.call("GET", url, "GET /api/v1/forms/<id>/versions/<version>")
        self.definition = self.sim.parsed_definition(listed["hash"], definition)
        self.form_version = listed["version"]
        self.pull_all()

    # replica ----------------------------------------------------------------------------------
    def unconfirmed(self, household_id: str) -> list[SentEvent]:
        """This device's writes to the household that no pull has brought back yet."""
        return [event for event in self.by_household.get(household_id, ())
                if event.state != "rejected" and not event.confirmed]

    def replica(self, household_id: str) -> Record:
        """The household as this device holds it: the pulled record merged with its own unconfirmed writes."""
        cached = self._replicas.get(household_id)
        if cached is None:
            cached = self._replicas[household_id] = merge_replica(
                household_id, self.view.get(household_id), self.unconfirmed(household_id), self.username)
        return cached

    def village_of(self, household_id: str) -> str:
        pulled = self.view.get(household_id)
        if pulled is not None:
            return pulled["village"]
        return self.by_household[household_id][0].village

    def held(self) -> set[str]:
        """The households on this phone: those pulled, and its own new ones no pull has brought back yet."""
        return set(self.view) | {hid for hid in self.by_household if self.unconfirmed(hid)}

    def visible(self) -> list[str]:
        """This run's households the device holds, in its own villages."""
        return sorted(hid for hid in self.held()
                      if self.sim.is_run_household(hid) and self.village_of(hid) in self.home)

    @staticmethod
    def base_for(record: Record, paths: Iterable[str]) -> dict[str, list[str]]:
        """For each path, every stamp the device holds for it: what a new write there supersedes."""
        base = {}
        for path in paths:
            held = record.fields.get(path)
            if held is not None and held.heads:
                base[path] = sorted(head.stamp for head in held.heads)
        return base

    # offline work -----------------------------------------------------------------------------
    def play_round(self, number: int) -> None:
        """Work offline for a while, then sync: push everything pending, pull everything new."""
        config = self.sim.config
        for action in range(config.events_per_round):
            targets = self.visible()
            roll = self.rng.random()
            if not targets or (number == 0 and (action == 0 or roll < 0.7)) or roll < 0.25:
                self.new_visit()
            else:
                hot = targets[:HOT_HOUSEHOLDS]
                target = self.rng.choice(hot if self.rng.random() < 0.6 else targets)
                if roll < 0.45:
                    self.revisit(target)
                else:
                    self.edit(target)
        self.sync()

    def _geotag(self, village: str, outside: bool) -> tuple[tuple[float, float], dict[str, Any]]:
        point = self.sim.boundaries.point(self.rng, village, outside=outside)
        geotag = {"lat": point[0], "lon": point[1], "accuracy_m": round(self.rng.uniform(3, 25), 1),
                  "captured_at": iso_ms(self.wall_ms())}
        if self.rng.random() < 0.5:
            geotag["altitude_m"] = round(self.rng.uniform(650, 900), 1)
        return point, geotag

    def new_visit(self) -> None:
        village = self.rng.choice(self.home)
        household_id = self._new_id()
        self.sim.register_household(household_id)
        outside = self.rng.random() < self.sim.config.outside_rate
        point, geotag = self._geotag(village, outside)
        answers = new_visit_answers(self.rng, village, self.sim.village_name(village), point, self.today(),
                                    self._new_id)
        self._visit(household_id, village, answers, geotag, outside)

    def revisit(self, household_id: str) -> None:
        village = self.village_of(household_id)
        outside = self.rng.random() < self.sim.config.outside_rate
        point, geotag = self._geotag(village, outside)
        answers = revisit_answers(self.rng, self.replica(household_id), village, self.sim.village_name(village),
                                  point, self.today(), self._new_id)
        self._visit(household_id, village, answers, geotag, outside)

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.wall_ms() / 1000, dt.UTC).date()

    def _visit(self, household_id: str, village: str, answers: dict[str, Any], geotag: dict[str, Any],
               outside: bool) -> None:
        writes = household_writes(self.definition, answers)
        base = self.base_for(self.replica(household_id), writes)
        ended = self.wall_ms()
        body: dict[str, Any] = {
            "id": self._new_id(), "type": "visit", "device_id": self.device_id, "hlc": self.clock.now(),
            "form_id": HOUSEHOLD_FORM, "form_version": self.form_version, "village": village,
            "household_id": household_id, "geotag": geotag,
            "started_at": iso_ms(ended - self.rng.randint(8, 45) * 60_000), "ended_at": iso_ms(ended),
            "answers": answers,
        }
        if base:
            body["base"] = base
        self._record(SentEvent(body, "visit", household_id, village, writes, base, body["ended_at"],
                               len(self.events), outside=outside))

    def edit(self, household_id: str) -> None:
        record = self.replica(household_id)
        village = self.village_of(household_id)
        writes = edit_writes(self.rng, record, self.sim.village_name(village))
        base = self.base_for(record, writes)
        body: dict[str, Any] = {
            "id": self._new_id(), "type": "household_edit", "device_id": self.device_id, "hlc": self.clock.now(),
            "household_id": household_id, "village": village, "set": writes, "at": iso_ms(self.wall_ms()),
        }
        if base:
            body["base"] = base
        self._record(SentEvent(body, "household_edit", household_id, village, writes, base, body["at"],
                               len(self.events)))

    def _record(self, event: SentEvent) -> None:
        self.events.append(event)
        self.by_household[event.household_id].append(event)
        self._replicas.pop(event.household_id, None)
        self.stats["created"] += 1
        self.stats[f"created_{event.kind}"] += 1

    # push -------------------------------------------------------------------------------------
    def sync(self) -> None:
        """Push, then pull; the app first asks which villages its officer has now."""
        self.villages = sorted(self.session.call("GET", "/api/v1/auth/me", "GET /api/v1/auth/me")["villages"])
        self.push_pending()
        self.pull_all()

    def push_pending(self) -> None:
        """Send every unsent event in random order and batches; resend re-stamped ones after a clock fix."""
        config = self.sim.config
        for _ in range(PUSH_PASSES):
            pending = [event for event in self.events if event.state == "unsent"]
            if not pending:
                return
            self.rng.shuffle(pending)
            while pending:
                size = self.rng.randint(1, config.batch_max)
                batch, pending = pending[:size], pending[size:]
                acked = [event for event in self.events if event.state == "acked"]
                if acked and self.rng.random() < config.dup_rate:
                    # a phone that lost track of what it sent resends events the server has
                    for again in self.rng.sample(acked, min(len(acked), self.rng.randint(1, 2))):
                        batch.insert(self.rng.randint(0, len(batch)), again)
                        self.stats["resent_known"] += 1
                if self.rng.random() < config.dup_rate / 4:
                    batch.append(self.rng.choice(batch))
                    self.stats["repeated_in_batch"] += 1
                self._send(batch)
            self._restamp_skewed()
        left = [event.id for event in self.events if event.state == "unsent"]
        if left:
            raise SimError(f"{self.device_id}: {len(left)} events still unsent after {PUSH_PASSES} passes")

    def _fate(self) -> str | None:
        """Whether this request is lost on the way out, its reply lost on the way back, or neither."""
        if self.rng.random() >= self.sim.config.drop_rate:
            return None
        return self.rng.choice(("request", "reply", "reply"))

    def _send(self, batch: list[SentEvent]) -> None:
        body = {"device_id": self.device_id, "hlc": self.clock.now(), "events": [event.body for event in batch]}
        for attempt in range(PUSH_ATTEMPTS):
            fate = self._fate() if attempt < PUSH_ATTEMPTS - 5 else None
            if fate == "request":
                self.stats["lost_requests"] += 1
                continue
            self.stats["push_requests"] += 1
            self.stats["sent"] += len(batch)
            try:
                reply = self.session.attempt("POST", "/api/v1/sync/push", "POST /api/v1/sync/push", payload=body,
                                             gzip_body=self.sim.config.gzip)
            except TRANSPORT_ERRORS as error:
                self._unknown(batch, f"transport error {error!r}")
                _backoff(min(attempt, 4))
                continue
            if reply.status >= 500:
                self._unknown(batch, f"server answered {reply.status}")
                _backoff(min(attempt, 4))
                continue
            if reply.status != 200:
                raise SimError(f"{self.device_id}: push answered {reply.status}: {reply.body[:300]!r}")
            if fate == "reply":
                self._unknown(batch, None)
                self.stats["lost_replies"] += 1
                continue
            self._take(batch, reply.json())
            return
        raise SimError(f"{self.device_id}: a batch was never answered in {PUSH_ATTEMPTS} attempts")

    def _unknown(self, batch: list[SentEvent], why: str | None) -> None:
        for event in batch:
            event.unknown = True
        if why:
            self.stats["push_errors"] += 1

    def _take(self, batch: list[SentEvent], data: dict[str, Any]) -> None:
        results = data.get("results") or []
        if len(results) != len(batch):
            self.anomalies.append(f"push of {len(batch)} events answered {len(results)} results")
        self._observe_server(data["server_hlc"])
        for event, result in zip(batch, results, strict=False):
            if result.get("id") != event.id:
                self.anomalies.append(f"result for {result.get('id')} answered in the place of {event.id}")
                continue
            status = result.get("status")
            was_acked = event.state == "acked"
            if status == "applied":
                event.verdicts.append("applied")
                self.stats["applied"] += 1
                if was_acked:
                    self.anomalies.append(f"{event.id} applied again after it was acknowledged")
                self._ack(event)
            elif status == "duplicate":
                event.verdicts.append("duplicate")
                self.stats["duplicate"] += 1
                if not was_acked and not event.unknown:
                    self.anomalies.append(f"{event.id} answered duplicate though never applied")
                self._ack(event)
            else:
                code = result.get("code") or "?"
                event.verdicts.append(f"rejected:{code}")
                self.stats[f"rejected_{code}"] += 1
                if was_acked:
                    self.anomalies.append(f"{event.id} rejected ({code}) after it was acknowledged")
                elif code == "clock_skew":
                    event.state = "skewed"
                    self._correct_clock(result.get("server_time"))
                else:
                    event.state = "rejected"
                    self._replicas.pop(event.household_id, None)

    def _ack(self, event: SentEvent) -> None:
        if event.state != "acked":
            event.state = "acked"
            event.ack_gen = self.pull_gen

    def _correct_clock(self, server_time: str | None) -> None:
        """Set the phone's clock from the server's time, and restart its HLC above what the server showed."""
        drift = parse_iso_ms(server_time) - self.wall_ms() if server_time else 0
        if abs(drift) < 60_000:
            return  # corrected already by an earlier verdict of this batch
        self.offset_ms += drift
        # The old HLC ran an hour ahead and never goes back: start again above everything the server sent.
        self.clock = HybridClock(self.wall_ms, last=self.server_hlc_seen)
        self.fast = False
        self.stats["clock_corrections"] += 1

    def _restamp_skewed(self) -> None:
        """Give every skew-rejected event a new HLC (same id), oldest first, and point bases at the new stamps."""
        skewed = sorted((event for event in self.events if event.state == "skewed"), key=lambda e: e.order)
        if not skewed:
            return
        renamed: dict[str, str] = {}
        for event in skewed:
            old = event.stamp
            event.body = {**event.body, "hlc": self.clock.now()}
            renamed[old] = event.stamp
            event.state, event.unknown = "unsent", False
            event.restamps += 1
            self.stats["restamped"] += 1
        for event in self.events:
            if event.state == "acked" or not any(s in renamed for stamps in event.base.values() for s in stamps):
                continue
            event.base = {path: sorted(renamed.get(s, s) for s in stamps) for path, stamps in event.base.items()}
            event.body = {**event.body, "base": event.base}
        self._replicas.clear()

    # pull -------------------------------------------------------------------------------------
    def pull_all(self) -> None:
        """Pull pages until the server has nothing more; pulled households replace their old copies."""
        for _ in range(MAX_PULL_PAGES):
            self.pull_gen += 1
            generation = self.pull_gen
            query: dict[str, Any] = {"limit": self.sim.config.pull_limit}
            if self.cursor:
                query["since"] = self.cursor
            self.stats["pull_requests"] += 1
            data = self.session.call("GET", "/api/v1/sync/pull", "GET /api/v1/sync/pull", query=query)
            if self.rng.random() < self.sim.config.drop_rate / 2:
                self.stats["lost_pull_replies"] += 1
                continue  # the same cursor again brings the same page
            self.stats["pull_pages"] += 1
            self._observe_server(data["server_hlc"])
            for change in data["changes"]:
                self.stats["pull_changes"] += 1
                if change["type"] == "household":
                    self._pulled(change, generation)
                elif change["type"] == "left_scope":
                    self.stats["left_scope"] += 1
                    gone = change["village"]
                    for household_id in [h for h, c in self.view.items()
                                         if c["village"] == gone or c["village"].startswith(gone + ".")]:
                        del self.view[household_id]
                        self._replicas.pop(household_id, None)
            self.cursor = data["next"]
            if not data["has_more"]:
                return
        raise SimError(f"{self.device_id}: pull did not end in {MAX_PULL_PAGES} pages")

    def _pulled(self, change: dict[str, Any], generation: int) -> None:
        household_id = change["id"]
        self.view[household_id] = change
        self._replicas.pop(household_id, None)
        # A household pulled after an ack carries that write (or what superseded it): the server copy owns it now.
        for event in self.by_household.get(household_id, ()):
            if event.state == "acked" and not event.confirmed and event.ack_gen < generation:
                event.confirmed = True


# -- the oracle: a fold straight from the merge rule (DESIGN.md §2), sharing no code with sync/ ----

def canon(value: Any) -> Any:
    """A comparable form in which JSON-equal values are equal (1 == 1.0, true != 1, key order ignored)."""
    if value is None or isinstance(value, bool | str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", Fraction(value))
    if isinstance(value, list | tuple):
        return ("list", tuple(canon(item) for item in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((key, canon(item)) for key, item in value.items())))
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class Accepted:
    """An event the server accepted, as the oracle folds it."""

    id: str
    kind: str
    household_id: str
    village: str
    hlc: str
    device_id: str
    officer: str
    at: str
    writes: dict[str, Any]
    base: dict[str, list[str]]

    @property
    def stamp(self) -> str:
        return f"{self.hlc}/{self.device_id}/{self.id}"


def oracle_fold(events: list[Accepted]) -> dict[str, Any]:
    """``{"village", "fields": {path: pulled shape}, "conflicts": {path: heads}}`` by the rule text.

    A write supersedes the writes its base names; heads are the writes no write supersedes; the value is
    the greatest head's; a field is in conflict when its heads hold two or more distinct values.
    """
    unique = {event.id: event for event in events}
    by_path: dict[str, list[tuple[str, Any, Accepted]]] = defaultdict(list)
    named: dict[str, set[str]] = defaultdict(set)
    for event in unique.values():
        for path, value in event.writes.items():
            by_path[path].append((event.stamp, value, event))
            named[path].update(event.base.get(path, ()))
    fields: dict[str, Any] = {}
    conflicts: dict[str, list[dict[str, Any]]] = {}
    for path, writes in sorted(by_path.items()):
        heads = sorted((write for write in writes if write[0] not in named[path]), key=lambda write: write[0])
        if not heads:
            continue
        top = heads[-1]
        entry: dict[str, Any] = {"value": top[1], "stamp": top[0]}
        if len({canon(value) for _, value, _ in heads}) > 1:
            entry["heads"] = [{"value": value, "stamp": stamp, "officer": event.officer}
                              for stamp, value, event in heads]
            conflicts[path] = [{"value": value, "stamp": stamp, "officer": event.officer,
                                "device_id": event.device_id, "event_id": event.id, "at": event.at}
                               for stamp, value, event in heads]
        elif len(heads) > 1:
            entry["head_stamps"] = [stamp for stamp, _, _ in heads]
        fields[path] = entry
    creator = min(unique.values(), key=lambda event: event.stamp)
    return {"village": creator.village, "fields": fields, "conflicts": conflicts}


# -- the simulation ----------------------------------------------------------------------------

@dataclass
class Config:
    devices: int = 20
    rounds: int = 3
    events_per_round: int = 4
    seed: int = 1
    concurrency: int = 8
    drop_rate: float = 0.1
    dup_rate: float = 0.2
    outside_rate: float = 0.15
    skewed_devices: int | None = None
    batch_max: int = 6
    pull_limit: int = 50
    gzip: bool = False
    admin_user: str | None = None
    admin_password: str | None = None
    accounts: dict[str, Any] | None = None
    import_villages: bool = True
    villages_file: Path = SAMPLE_VILLAGES
    run_tag: str | None = None
    resolve_rate: float = 0.3
    reassign: int = 2


@dataclass
class Resolution:
    """A supervisor's resolution of one conflict: the value chosen over the heads it saw."""

    id: str
    household_id: str
    field: str
    value: Any
    heads: list[str]
    conflict_id: str


@dataclass
class Check:
    name: str
    compares: str
    failures: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "compares": self.compares, "checked": self.checked,
                "failures": len(self.failures), "examples": self.failures[:20]}


class Simulation:
    """Sets the accounts up, runs the devices round by round, and checks everything against the oracle."""

    def __init__(self, config: Config, transport: Any, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.transport = transport
        self.log = log or (lambda message: None)
        self.run_tag = config.run_tag or f"{config.seed % 10000:04d}{os.urandom(3).hex()}"
        self.latencies = Latencies()
        self.link = Link(transport, self.latencies)
        self.boundaries = Boundaries(json.loads(config.villages_file.read_text(encoding="utf-8")))
        self.rng = random.Random(f"{config.seed}:{self.run_tag}")
        self.devices: list[Device] = []
        self.supervisor: Session | None = None
        self.village_names: dict[str, str] = dict(self.boundaries.names)
        self._households: set[str] = set()
        self._lock = threading.Lock()
        self._definitions: dict[str, Any] = {}
        self.stages: dict[str, float] = {}
        self.device_errors: list[str] = []
        self.checks: list[Check] = []
        self.figures: dict[str, Any] = {}
        self.resolutions: list[Resolution] = []
        self.server_boundaries: set[str] = set()
        self.admin: Session | None = None
        self.reassigned: list[Device] = []
        self._resolver_rng = random.Random(f"{config.seed}:{self.run_tag}:supervisor")

    # shared state -----------------------------------------------------------------------------
    def register_household(self, household_id: str) -> None:
        with self._lock:
            self._households.add(household_id)

    def is_run_household(self, household_id: str) -> bool:
        with self._lock:
            return household_id in self._households

    def village_name(self, code: str) -> str:
        return self.village_names.get(code, code)

    def parsed_definition(self, digest: str, definition: dict[str, Any]) -> Any:
        with self._lock:
            parsed = self._definitions.get(digest)
        if parsed is None:
            parsed = validate_definition(definition)
            with self._lock:
                self._definitions.setdefault(digest, parsed)
        return parsed

    def _parallel(self, work: Callable[[Any], Any], items: list[Any], stage: str) -> list[Any]:
        started = time.perf_counter()
        results: list[Any] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            futures = {pool.submit(work, item): item for item in items}
            for future in concurrent.futures.as_completed(futures):
                try:
                    results.append(future.result())
                except Exception as error:  # noqa: BLE001 - one device's failure is reported, the others go on
                    self.device_errors.append(f"{stage}: {futures[future]!r}: {error}")
        self.stages[stage] = round(time.perf_counter() - started, 3)
        return results

    # setup ------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Import the boundaries and create the supervisor and officers, or take the given accounts."""
        started = time.perf_counter()
        config = self.config
        codes = sorted(self.boundaries.shapes)
        if config.accounts is None:
            if not config.admin_user or not config.admin_password:
                raise SimError("give an admin's credentials (--admin-user, --admin-password) or --accounts")
            admin = self.admin = Session(self.link, config.admin_user, config.admin_password)
            admin.login()
            if config.import_villages:
                report = admin.call("POST", "/api/v1/villages", "POST /api/v1/villages",
                                    payload=json.loads(config.villages_file.read_text(encoding="utf-8")))
                self.log(f"villages: {report['imported']} imported, {report['updated']} updated, "
                         f"{report['unchanged']} unchanged, {report['refused']} refused")
            known = {v["code"]: v for v in paged(admin, "/api/v1/villages", "GET /api/v1/villages")}
            codes = [code for code in codes if known.get(code, {}).get("has_boundary")]
            if not codes:
                raise SimError("no sample village has a boundary on the server; import them or drop --no-import")
            password = f"sim-{self.run_tag}-{self.rng.getrandbits(64):016x}"
            supervisor = f"sim-{self.run_tag}-sup"
            areas = sorted({code.rsplit(".", 1)[0] for code in codes})
            plan = [(supervisor, "supervisor", areas)]
            officers = []
            for index in range(config.devices):
                villages = [codes[index % len(codes)]]
                if index % 5 == 4 and len(codes) > 1:
                    villages.append(codes[(index + 1) % len(codes)])  # some officers cover two villages
                officers.append(f"sim-{self.run_tag}-o{index:04d}")
                plan.append((officers[-1], "officer", villages))

            def create(entry: tuple[str, str, list[str]]) -> None:
                username, role, villages = entry
                admin.call("POST", "/api/v1/users", "POST /api/v1/users", expect=(201,),
                           payload={"username": username, "password": password, "role": role,
                                    "villages": villages})

            self._parallel(create, plan, "create_users")
            if self.device_errors:
                raise SimError("; ".join(self.device_errors[:5]))
            accounts = {"supervisor": {"username": supervisor, "password": password},
                        "officers": [{"username": name, "password": password} for name in officers]}
        else:
            accounts = config.accounts
            accounts = {**accounts, "officers": accounts["officers"][:config.devices]}
        self.supervisor = Session(self.link, accounts["supervisor"]["username"], accounts["supervisor"]["password"])
        self.supervisor.login()
        self.server_boundaries = {village["code"] for village in paged(
            self.supervisor, "/api/v1/villages", "GET /api/v1/villages") if village["has_boundary"]}
        skewed = config.skewed_devices if config.skewed_devices is not None else max(1, len(accounts["officers"])
                                                                                      // 10)
        fast = set(self.rng.sample(range(len(accounts["officers"])), min(skewed, len(accounts["officers"]))))
        self.devices = [Device(self, index, account["username"], account["password"], index in fast)
                        for index, account in enumerate(accounts["officers"])]
        self.stages["setup"] = round(time.perf_counter() - started, 3)

    def play(self) -> None:
        """Every device logs in and pulls, then all work and sync round by round, concurrently; from the
        second round on the supervisor resolves conflicts while the devices push."""
        self._parallel(lambda device: device.start(), self.devices, "start")
        for number in range(self.config.rounds):
            if number in (1, 2):
                self.reassign(lend=number == 1)
            resolver, done = None, threading.Event()
            if number > 0 and self.config.resolve_rate > 0:
                resolver = threading.Thread(target=self._resolve_while, args=(done,), name="supervisor")
                resolver.start()
            self._parallel(lambda device, n=number: device.play_round(n), self.devices, f"round_{number}")
            done.set()
            if resolver is not None:
                resolver.join()
            self.log(f"round {number + 1}/{self.config.rounds} done")

    def reassign(self, *, lend: bool) -> None:
        """The admin lends some officers a neighbouring village (their next pulls bring its households),
        or takes it back (their next pulls say left_scope)."""
        if self.admin is None or not self.config.reassign:
            return
        if lend:
            codes = sorted(self.boundaries.shapes)
            self.reassigned = self.rng.sample(self.devices, min(self.config.reassign, len(self.devices)))
            for device in self.reassigned:
                extra = next((code for code in codes if code not in device.home), None)
                if extra is not None:
                    self.admin.call("PATCH", f"/api/v1/users/{device.username}", "PATCH /api/v1/users/<username>",
                                    payload={"villages": [*device.home, extra]})
        else:
            for device in self.reassigned:
                self.admin.call("PATCH", f"/api/v1/users/{device.username}", "PATCH /api/v1/users/<username>",
                                payload={"villages": device.home})

    def _resolve_while(self, done: threading.Event) -> None:
        """The supervisor at the village hall looks at the conflicts again and again while officers sync."""
        seen: set[str] = set()
        try:
            while True:
                self.resolve_some(seen)
                if done.wait(0.3):
                    return
        except Exception as error:  # noqa: BLE001 - reported as a failed run, the devices go on
            with self._lock:
                self.device_errors.append(f"supervisor: {error}")

    def resolve_some(self, seen: set[str]) -> None:
        """The supervisor picks a value for some open conflicts of this run it has not looked at yet."""
        assert self.supervisor is not None
        rng = self._resolver_rng
        for conflict in self._paged("/api/v1/conflicts", "GET /api/v1/conflicts"):
            if conflict["id"] in seen or not self.is_run_household(conflict["household_id"]):
                continue
            seen.add(conflict["id"])
            if rng.random() >= self.config.resolve_rate:
                continue
            heads = conflict["heads"]
            value = rng.choice([head["value"] for head in heads])
            payload = {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "value": value,
                       "heads": sorted(head["stamp"] for head in heads)}
            # a reply lost on the village hall's connection: the same resolution is sent again
            for _ in range(2 if rng.random() < self.config.drop_rate else 1):
                self.supervisor.call("POST", f"/api/v1/conflicts/{conflict['id']}/resolve",
                                     "POST /api/v1/conflicts/<id>/resolve", payload=payload)
            with self._lock:
                self.resolutions.append(Resolution(payload["id"], conflict["household_id"], conflict["field"],
                                                   value, payload["heads"], conflict["id"]))

    def final_pull(self) -> None:
        """Once nobody pushes any more, every device pulls to the end."""
        self._parallel(lambda device: device.sync(), self.devices, "final_pull")

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.setup()
        self.play()
        self.final_pull()
        report = self.verify()
        report["duration_s"] = round(time.perf_counter() - started, 3)
        return report

    # checking ---------------------------------------------------------------------------------
    def accepted(self) -> list[Accepted]:
        """Every event some device holds as applied (or answered duplicate of an applied one)."""
        return [Accepted(event.id, event.kind, event.household_id, event.village, event.body["hlc"],
                         device.device_id, device.username, event.at, event.writes, event.base)
                for device in self.devices for event in device.events if event.state == "acked"]

    def accepted_resolutions(self, histories: dict[str, Any]) -> list[Accepted]:
        """The supervisor's resolutions: value and heads as sent, HLC and node as the server stamped them."""
        assert self.supervisor is not None
        found = []
        for resolution in self.resolutions:
            body = histories.get(resolution.household_id) or {}
            entry = next((e for e in body.get("history", []) if e["event_id"] == resolution.id), None)
            if entry is not None:
                found.append(Accepted(resolution.id, "resolution", resolution.household_id, body["village"],
                                      entry["hlc"], entry["device_id"], self.supervisor.username,
                                      entry["received_at"], {resolution.field: resolution.value},
                                      {resolution.field: resolution.heads}))
        return found

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every household in the supervisor's scope, pulled from scratch."""
        assert self.supervisor is not None
        households: dict[str, dict[str, Any]] = {}
        cursor = None
        for _ in range(MAX_PULL_PAGES):
            query: dict[str, Any] = {"limit": 1000}
            if cursor:
                query["since"] = cursor
            data = self.supervisor.call("GET", "/api/v1/sync/pull", "GET /api/v1/sync/pull", query=query)
            for change in data["changes"]:
                if change["type"] == "household":
                    households[change["id"]] = change
            cursor = data["next"]
            if not data["has_more"]:
                return households
        raise SimError("the supervisor's pull did not end")

    def _paged(self, path: str, label: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        assert self.supervisor is not None
        return paged(self.supervisor, path, label, query)

    def verify(self) -> dict[str, Any]:
        started = time.perf_counter()
        assert self.supervisor is not None
        households = sorted({event.household_id for event in self.accepted()})
        histories: dict[str, Any] = {}

        def fetch(household_id: str) -> None:
            reply = self.supervisor.call("GET", f"/api/v1/households/{household_id}", "GET /api/v1/households/<id>",
                                         expect=(200, 404))
            histories[household_id] = reply if reply and "history" in reply else None

        self._parallel(fetch, households, "histories")
        accepted = self.accepted() + self.accepted_resolutions(histories)
        by_household: dict[str, list[Accepted]] = defaultdict(list)
        for event in accepted:
            by_household[event.household_id].append(event)
        oracle = {household_id: oracle_fold(events) for household_id, events in by_household.items()}
        snapshot = self.snapshot()
        run_households = set(by_household)
        conflicts = [c for c in self._paged("/api/v1/conflicts", "GET /api/v1/conflicts")
                     if c["household_id"] in run_households]
        visits = self._paged("/api/v1/visits", "GET /api/v1/visits")
        self.checks = [
            self.check_lost(histories),
            self.check_duplicated(accepted, histories, visits),
            self.check_replicas(snapshot),
            self.check_server_state(oracle, snapshot, histories),
            self.check_conflicts(oracle, conflicts, histories),
            self.check_geotags(accepted, visits),
            self.check_run(),
        ]
        self.stages["verify"] = round(time.perf_counter() - started, 3)
        self.figures = self._figures(accepted, oracle, conflicts, snapshot)
        return self.figures

    def check_lost(self, histories: dict[str, Any]) -> Check:
        check = Check("no_lost_events", "every event a device made ends applied exactly once (its verdicts on "
                      "the device) and is in the server's household history; so is every supervisor resolution")
        for device in self.devices:
            for anomaly in device.anomalies:
                check.fail(f"{device.device_id}: {anomaly}")
            for event in device.events:
                check.checked += 1
                where = f"{device.device_id} {event.kind} {event.id}"
                if event.state != "acked":
                    check.fail(f"{where} ended {event.state}: {event.verdicts}")
                    continue
                applied = event.verdicts.count("applied")
                if applied > 1:
                    check.fail(f"{where} was answered applied {applied} times")
                if applied == 0 and not event.unknown:
                    check.fail(f"{where} was never answered applied and no reply of it was lost")
                if event.restamps and not any(v == "rejected:clock_skew" for v in event.verdicts):
                    check.fail(f"{where} was re-stamped without a clock_skew verdict")
                history = histories.get(event.household_id) or {}
                if not any(entry["event_id"] == event.id for entry in history.get("history", [])):
                    check.fail(f"{where} is missing from the history of household {event.household_id}")
        for resolution in self.resolutions:
            check.checked += 1
            history = histories.get(resolution.household_id) or {}
            if not any(entry["event_id"] == resolution.id and entry["type"] == "resolution"
                       for entry in history.get("history", [])):
                check.fail(f"resolution {resolution.id} of conflict {resolution.conflict_id} is missing from the "
                           f"history of household {resolution.household_id}")
        return check

    def check_duplicated(self, accepted: list[Accepted], histories: dict[str, Any],
                         visits: list[dict[str, Any]]) -> Check:
        check = Check("no_duplicated_events", "each accepted event is listed once in its household's history "
                      "(with the HLC, device, writes and base the device sent) and each visit once in /visits")
        mine = {event.id: event for event in accepted}
        for household_id, body in sorted(histories.items()):
            check.checked += 1
            entries = body.get("history", []) if body else []
            counts = Counter(entry["event_id"] for entry in entries)
            for event_id, count in counts.items():
                if count > 1:
                    check.fail(f"household {household_id} lists event {event_id} {count} times")
            for entry in entries:
                event = mine.get(entry["event_id"])
                if event is None:
                    check.fail(f"household {household_id} lists event {entry['event_id']} that nobody in "
                               "this run had accepted")
                    continue
                if event.household_id != household_id or entry["hlc"] != event.hlc or \
                        entry["device_id"] != event.device_id or entry["officer"] != event.officer:
                    check.fail(f"event {event.id}: history says {entry['hlc']}/{entry['device_id']}/"
                               f"{entry['officer']}, the device sent {event.hlc}/{event.device_id}/{event.officer}")
                if canon(entry["writes"]) != canon(event.writes):
                    paths = sorted(set(entry["writes"]) ^ set(event.writes)) or sorted(
                        p for p in event.writes if canon(entry["writes"].get(p)) != canon(event.writes[p]))
                    check.fail(f"event {event.id}: the server's writes differ from the form's save_to at "
                               f"{paths[:5]}")
                if canon({p: sorted(s) for p, s in (entry.get("base") or {}).items() if s}) != canon(
                        {p: sorted(s) for p, s in event.base.items() if s}):
                    check.fail(f"event {event.id}: the server's base differs from the device's")
        listed = Counter(visit["id"] for visit in visits)
        for event in accepted:
            if event.kind == "visit" and listed[event.id] != 1:
                check.fail(f"visit {event.id} is listed {listed[event.id]} times in /api/v1/visits")
        return check

    def check_replicas(self, snapshot: dict[str, dict[str, Any]]) -> Check:
        check = Check("replicas_match_server", "after a final full pull, each device holds exactly the "
                      "households of the villages it has now (after lent villages were taken back), and its replica "
                      "(pulled records merged with its own writes by sync.Record) of each equals the supervisor's "
                      "fresh pull")
        server_canon: dict[str, Any] = {}
        merged: dict[str, Any] = {}

        def canon_replica(device: Device, household_id: str) -> Any:
            # Without unconfirmed writes a replica is a function of the pulled record alone: merge each
            # distinct record (by its exact JSON text) once, however many devices hold it.
            if device.unconfirmed(household_id) or household_id not in device.view:
                return canon(device.replica(household_id).to_pull()["fields"])
            text = json.dumps(device.view[household_id], sort_keys=True)
            if text not in merged:
                merged[text] = canon(merge_replica(household_id, device.view[household_id], (),
                                                   device.username).to_pull()["fields"])
            return merged[text]

        for device in self.devices:
            pending = [event.id for event in device.events if event.state != "rejected" and not event.confirmed]
            if pending:
                check.fail(f"{device.device_id} still holds {len(pending)} writes no pull confirmed, "
                           f"e.g. {pending[:3]}")
            expected = {hid for hid, change in snapshot.items() if change["village"] in device.villages}
            held = device.held()
            for household_id in sorted(expected - held):
                check.fail(f"{device.device_id} never pulled household {household_id}")
            for household_id in sorted(held - expected):
                check.fail(f"{device.device_id} holds household {household_id} the server does not show")
            for household_id in sorted(held & expected):
                check.checked += 1
                server = snapshot[household_id]["fields"]
                if household_id not in server_canon:
                    server_canon[household_id] = canon(server)
                if canon_replica(device, household_id) != server_canon[household_id]:
                    replica = device.replica(household_id).to_pull()["fields"]
                    paths = sorted(p for p in set(replica) | set(server)
                                   if canon(replica.get(p)) != canon(server.get(p)))
                    check.fail(f"{device.device_id} household {household_id} differs at {paths[:5]}")
                if device.village_of(household_id) != snapshot[household_id]["village"]:
                    check.fail(f"{device.device_id} household {household_id} is in another village")
        return check

    def check_server_state(self, oracle: dict[str, Any], snapshot: dict[str, dict[str, Any]],
                           histories: dict[str, Any]) -> Check:
        check = Check("server_matches_oracle", "the server's pulled state of every household (values, stamps, "
                      "conflict heads, equal heads) equals the oracle's fold of the accepted events, and "
                      "GET /households/<id> shows the same fields")
        for household_id, expected in sorted(oracle.items()):
            check.checked += 1
            pulled = snapshot.get(household_id)
            if pulled is None:
                check.fail(f"household {household_id} is not in the server's pull")
                continue
            if pulled["village"] != expected["village"]:
                check.fail(f"household {household_id}: village {pulled['village']}, oracle {expected['village']}")
            if canon(pulled["fields"]) != canon(expected["fields"]):
                paths = sorted(p for p in set(pulled["fields"]) | set(expected["fields"])
                               if canon(pulled["fields"].get(p)) != canon(expected["fields"].get(p)))
                check.fail(f"household {household_id} differs from the oracle at {paths[:5]}")
            shown = histories.get(household_id)
            if shown is not None and canon(shown["fields"]) != canon(pulled["fields"]):
                check.fail(f"household {household_id}: GET /households/<id> and the pull disagree")
        return check

    def check_conflicts(self, oracle: dict[str, Any], conflicts: list[dict[str, Any]],
                        histories: dict[str, Any]) -> Check:
        check = Check("conflicts_match_oracle", "the open conflicts of GET /api/v1/conflicts (field, village, "
                      "every head's value, stamp, officer, device, event and time) equal the oracle's")
        listed: dict[tuple[str, str], dict[str, Any]] = {}
        for conflict in conflicts:
            key = (conflict["household_id"], conflict["field"])
            if key in listed:
                check.fail(f"two open conflicts for {key}: {listed[key]['id']} and {conflict['id']}")
            listed[key] = conflict
        if len({conflict["id"] for conflict in conflicts}) != len(conflicts):
            check.fail("a conflict id is listed twice")
        expected = {(household_id, path): heads for household_id, state in oracle.items()
                    for path, heads in state["conflicts"].items()}
        check.checked = len(expected)
        for key in sorted(set(expected) - set(listed)):
            check.fail(f"the oracle has a conflict at {key} that the server does not list")
        for key in sorted(set(listed) - set(expected)):
            check.fail(f"the server lists a conflict at {key} that the oracle does not have")
        for key in sorted(set(listed) & set(expected)):
            conflict = listed[key]
            heads = [{k: head.get(k) for k in ("value", "stamp", "officer", "device_id", "event_id", "at")}
                     for head in conflict["heads"]]
            if canon(heads) != canon(expected[key]):
                check.fail(f"conflict {conflict['id']} at {key} has other heads than the oracle's")
            if conflict["village"] != oracle[key[0]]["village"]:
                check.fail(f"conflict {conflict['id']} at {key} names village {conflict['village']}")
        for household_id, body in histories.items():
            if body and body.get("open_conflicts") != len(oracle[household_id]["conflicts"]):
                check.fail(f"household {household_id} counts {body.get('open_conflicts')} open conflicts, the "
                           f"oracle {len(oracle[household_id]['conflicts'])}")
        return check

    def check_geotags(self, accepted: list[Accepted], visits: list[dict[str, Any]]) -> Check:
        check = Check("geotag_flags", "visits placed outside their village carry an outside_village flag with a "
                      "positive distance; visits placed inside carry none")
        flags = {visit["id"]: [f for f in visit.get("flags", []) if f.get("code") == "outside_village"]
                 for visit in visits}
        intended = {event.id: event.outside for device in self.devices for event in device.events}
        for event in accepted:
            if event.kind != "visit" or event.village not in self.boundaries.shapes or \
                    event.village not in self.server_boundaries:
                continue  # a village without a boundary: the server flags no_boundary, not a distance
            check.checked += 1
            found = flags.get(event.id, [])
            if intended.get(event.id) and not (found and found[0].get("distance_m", 0) > 0):
                check.fail(f"visit {event.id} was made outside {event.village} but is not flagged")
            if not intended.get(event.id) and found:
                check.fail(f"visit {event.id} was made inside {event.village} but is flagged {found}")
        return check

    def check_run(self) -> Check:
        check = Check("run_completed", "every device finished every round, and the server answered no 5xx")
        check.checked = len(self.devices)
        for error in self.device_errors:
            check.fail(error)
        for error in self.link.server_errors:
            check.fail(error)
        return check

    def _figures(self, accepted: list[Accepted], oracle: dict[str, Any], conflicts: list[dict[str, Any]],
                 snapshot: dict[str, Any]) -> dict[str, Any]:
        totals: Counter[str] = Counter()
        for device in self.devices:
            totals.update(device.stats)
        rejected = {key.removeprefix("rejected_"): count for key, count in sorted(totals.items())
                    if key.startswith("rejected_")}
        return {
            "ok": all(check.ok for check in self.checks),
            "server": self.transport.name,
            "seed": self.config.seed,
            "run_tag": self.run_tag,
            "devices": len(self.devices),
            "skewed_devices": sum(1 for device in self.devices if device.stats["clock_corrections"] or device.fast),
            "rounds": self.config.rounds,
            "households": len(oracle),
            "households_on_server": len(snapshot),
            "events": {
                "created": totals["created"], "visits": totals["created_visit"],
                "edits": totals["created_household_edit"],
                "accepted": sum(1 for event in accepted if event.kind != "resolution"),
                "resolutions_accepted": sum(1 for event in accepted if event.kind == "resolution"),
                "sent": totals["sent"], "applied": totals["applied"], "duplicate": totals["duplicate"],
                "rejected": rejected, "restamped": totals["restamped"],
                "resent_known": totals["resent_known"], "repeated_in_batch": totals["repeated_in_batch"],
            },
            "push": {"requests": totals["push_requests"], "lost_requests": totals["lost_requests"],
                     "lost_replies": totals["lost_replies"], "errors": totals["push_errors"],
                     "gzip": self.config.gzip},
            "pull": {"requests": totals["pull_requests"], "pages": totals["pull_pages"],
                     "lost_replies": totals["lost_pull_replies"], "changes": totals["pull_changes"],
                     "left_scope": totals["left_scope"]},
            "conflicts": {"server": len(conflicts),
                          "oracle": sum(len(state["conflicts"]) for state in oracle.values()),
                          "resolved_by_supervisor": len(self.resolutions)},
            "clock_corrections": totals["clock_corrections"],
            "reassigned_officers": len(self.reassigned),
            "stages_s": dict(self.stages),
            "latency_ms": self.latencies.summary(),
            "checks": {check.name: check.as_dict() for check in self.checks},
        }


# -- command line ------------------------------------------------------------------------------

def summary_text(figures: dict[str, Any]) -> str:
    events, push, pull = figures["events"], figures["push"], figures["pull"]
    rejected = ", ".join(f"{code} {count}" for code, count in events["rejected"].items()) or "none"
    lines = [
        f"kunjung device simulation against {figures['server']} (seed {figures['seed']}, run {figures['run_tag']})",
        f"  devices {figures['devices']} ({figures['skewed_devices']} with a fast clock), rounds {figures['rounds']}, "
        f"households {figures['households']}, took {figures.get('duration_s', 0):.1f} s",
        f"  events created {events['created']} (visits {events['visits']}, edits {events['edits']}); "
        f"sends that reached the server {events['sent']}, answered: applied {events['applied']}, "
        f"duplicate {events['duplicate']}, rejected {rejected}; re-stamped {events['restamped']}; "
        f"resent on purpose {events['resent_known'] + events['repeated_in_batch']}",
        f"  push requests {push['requests']} (lost requests {push['lost_requests']}, lost replies "
        f"{push['lost_replies']}), pull pages {pull['pages']} of {pull['requests']} requests, "
        f"{pull['changes']} changes",
        f"  open conflicts: server {figures['conflicts']['server']}, oracle {figures['conflicts']['oracle']}; "
        f"resolutions by the supervisor during the run {figures['conflicts']['resolved_by_supervisor']}; "
        f"officers lent a village {figures['reassigned_officers']}",
        "  latency (ms)                                 count      p50      p95      p99      max",
    ]
    for label, stats in figures["latency_ms"].items():
        lines.append(f"    {label:<42} {stats['count']:>7} {stats['p50_ms']:>8.1f} {stats['p95_ms']:>8.1f} "
                     f"{stats['p99_ms']:>8.1f} {stats['max_ms']:>8.1f}")
    lines.append("  checks:")
    for name, check in figures["checks"].items():
        verdict = "ok" if check["ok"] else f"FAILED ({check['failures']})"
        lines.append(f"    {name:<24} {verdict:<14} checked {check['checked']}")
        lines.extend(f"      - {example}" for example in check["examples"][:5])
    lines.append("ALL CHECKS PASSED" if figures["ok"] else "SOME CHECKS FAILED")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Simulate officers' phones against a kunjung server: offline visits and edits of the "
                    "shipped household form, conflicts, duplicates, lost replies, a fast clock, points in and "
                    "out of the village; then check every replica and the server against an oracle fold. "
                    "Exits 0 when every check passes, 1 when one fails, 2 when the run cannot start.")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)")
    parser.add_argument("--devices", type=int, default=20, help="officers, one phone each (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="offline periods, each ending in a sync")
    parser.add_argument("--events-per-round", type=int, default=4, help="visits and edits per device per round")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=16, help="devices working at once (threads)")
    parser.add_argument("--drop-rate", type=float, default=0.1, help="share of requests or replies lost")
    parser.add_argument("--dup-rate", type=float, default=0.2, help="share of batches that resend known events")
    parser.add_argument("--outside-rate", type=float, default=0.15, help="share of visits outside the village")
    parser.add_argument("--resolve-rate", type=float, default=0.3,
                        help="share of open conflicts the supervisor resolves during each round after the first")
    parser.add_argument("--reassign", type=int, default=2, help="officers lent another village in round 2 and "
                        "losing it in round 3 (needs the admin; 0: none)")
    parser.add_argument("--skewed", type=int, default=None, help="devices whose clock is an hour fast "
                        "(default: a tenth, at least one)")
    parser.add_argument("--batch-max", type=int, default=6, help="most events in one push")
    parser.add_argument("--pull-limit", type=int, default=50, help="page size of device pulls")
    parser.add_argument("--gzip", action="store_true", help="gzip push bodies")
    parser.add_argument("--admin-user", default="admin", help="admin who creates the accounts")
    parser.add_argument("--admin-password", default=None,
                        help="the admin's password (default: $KUNJUNG_SIM_ADMIN_PASSWORD)")
    parser.add_argument("--accounts", type=Path, default=None,
                        help='JSON {"supervisor": {"username", "password"}, "officers": [{...}, ...]}: use these '
                             "accounts instead of creating them (boundaries must be imported already)")
    parser.add_argument("--no-import-villages", action="store_true",
                        help="expect the sample boundaries to be imported already")
    parser.add_argument("--villages-file", type=Path, default=SAMPLE_VILLAGES, help="village boundaries GeoJSON")
    parser.add_argument("--run-tag", default=None, help="tag of this run's usernames and ids (default: random)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one reply")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.rounds < 1 or args.events_per_round < 1 or args.batch_max < 1:
        parser.error("--devices, --rounds, --events-per-round and --batch-max must be at least 1")
    for name in ("drop_rate", "dup_rate", "outside_rate", "resolve_rate"):
        if not 0 <= getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    return args


def config_from(args: argparse.Namespace) -> Config:
    accounts = json.loads(args.accounts.read_text(encoding="utf-8")) if args.accounts else None
    return Config(devices=len(accounts["officers"]) if accounts and args.devices > len(accounts["officers"])
                  else args.devices,
                  rounds=args.rounds, events_per_round=args.events_per_round, seed=args.seed,
                  concurrency=args.concurrency, drop_rate=args.drop_rate, dup_rate=args.dup_rate,
                  outside_rate=args.outside_rate, resolve_rate=args.resolve_rate, skewed_devices=args.skewed,
                  batch_max=args.batch_max, reassign=args.reassign,
                  pull_limit=args.pull_limit, gzip=args.gzip, admin_user=args.admin_user,
                  admin_password=args.admin_password or os.environ.get("KUNJUNG_SIM_ADMIN_PASSWORD"),
                  accounts=accounts, import_villages=not args.no_import_villages, villages_file=args.villages_file,
                  run_tag=args.run_tag)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        simulation = Simulation(config_from(args), HttpTransport(args.url, args.timeout), log)
        figures = simulation.run()
    except (SimError, ValueError, OSError, KeyError) as error:
        print(f"simulate_devices: {error}", file=sys.stderr)
        return 2
    print(summary_text(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
