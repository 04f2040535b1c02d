"""Exports of visits (CSV ZIP, XLSX, GeoJSON) parsed back, their filters, scope and record; household history."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
import uuid
import zipfile

import pytest
from http_helpers import login, make_user
from openpyxl import load_workbook
from sync_helpers import Device

from server.store import get_store

A, C, M = "32.04.05.2001", "32.04.06.2001", "73.71.01.1001"
CENTRES = {A: (-7.0, 107.6), C: (-7.1, 107.7), M: (-5.15, 119.43)}
CHOICES = {
    "family_status": [{"name": "0", "label": {"id": "KK sesuai", "en": "As registered"}},
                      {"name": "1", "label": {"id": "Keluarga induk", "en": "Parent family"}}],
    "assets": [{"name": "a", "label": {"id": "Tabung gas", "en": "Gas cylinder"}},
               {"name": "b", "label": {"id": "Kulkas", "en": "Refrigerator"}},
               {"name": "c", "label": {"id": "Sepeda motor", "en": "Motorcycle"}}],
    "sex": [{"name": "1", "label": {"id": "Laki-laki", "en": "Male"}},
            {"name": "2", "label": {"id": "Perempuan", "en": "Female"}}],
}


def label(id_text, en_text):
    return {"id": id_text, "en": en_text}


FIELDS = [
    {"type": "text", "name": "head_name", "label": label("Nama kepala keluarga", "Head of family"),
     "save_to": "head_name"},
    {"type": "integer", "name": "floor_area", "label": label("Luas lantai", "Floor area"), "constraint": ". > 0"},
    {"type": "group", "name": "block_housing", "label": label("Perumahan", "Housing"), "fields": [
        {"type": "select_one", "name": "family_status", "label": label("Status keluarga", "Family status"),
         "list": "family_status"},
        {"type": "select_multiple", "name": "assets", "label": label("Aset", "Assets"), "list": "assets"}]},
    {"type": "geopoint", "name": "house_location", "label": label("Lokasi rumah", "House location")},
    {"type": "text", "name": "notes", "label": label("Catatan", "Notes")},
    {"type": "repeat", "name": "members", "label": label("Anggota", "Members"), "save_to": "members", "fields": [
        {"type": "text", "name": "member_name", "label": label("Nama anggota", "Member name"), "save_to": "name"},
        {"type": "select_one", "name": "sex", "label": label("Jenis kelamin", "Sex"), "list": "sex",
         "save_to": "sex"}]},
]


def form(version, extra=()):
    return {"settings": {"form_id": "verval_exp", "version": version, "title": label("Verval", "Check"),
                         "default_language": "id"},
            "fields": [*FIELDS, *extra], "choices": CHOICES}


INCOME = {"type": "decimal", "name": "income", "label": label("Penghasilan", "Income")}
VISIT_COLUMNS = ["visit_id", "form_id", "form_version", "household_id", "village", "officer", "device_id",
                 "started_at", "ended_at", "received_at", "visit_date", "geotag_lat", "geotag_lon",
                 "geotag_accuracy_m", "review_state", "flags", "supersedes", "superseded_by"]


def publish(client, admin, definition):
    version = definition["settings"]["version"]
    assert client.post("/api/v1/forms", json=definition, headers=admin).status_code == 201
    assert client.post(f"/api/v1/forms/verval_exp/versions/{version}/publish", headers=admin).status_code == 200


def visit(device, village, when, answers, version="1"):
    lat, lon = CENTRES[village]
    return {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
            "form_id": "verval_exp", "form_version": version, "village": village, "household_id": str(uuid.uuid4()),
            "geotag": {"lat": lat, "lon": lon, "accuracy_m": 6, "captured_at": when},
            "started_at": when, "ended_at": when, "answers": answers}


def square(code):
    lat, lon = CENTRES[code]
    ring = [[lon - 0.01, lat - 0.01], [lon + 0.01, lat - 0.01], [lon + 0.01, lat + 0.01], [lon - 0.01, lat + 0.01],
            [lon - 0.01, lat - 0.01]]
    return {"type": "Feature", "properties": {"code": code, "name": code},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


M1, M2, M3 = (str(uuid.uuid4()) for _ in range(3))
FORMULA = '=HYPERLINK("http://contoh.invalid","klik")'


@pytest.fixture
def visits(app, client, users):
    make_user(app, "wayan", "officer", [M])
    make_user(app, "sup2", "supervisor", ["32.04.06"])
    admin = login(client, "admin")
    publish(client, admin, form("1"))
    publish(client, admin, form("2", [INCOME]))
    assert client.put("/api/v1/forms/verval_exp/assignment", json={"all": True}, headers=admin).status_code == 200
    boundaries = {"type": "FeatureCollection", "features": [square(code) for code in CENTRES]}
    assert client.post("/api/v1/villages", json=boundaries, headers=admin).status_code == 200
    ani, budi, wayan = Device(client, "ani"), Device(client, "budi"), Device(client, "wayan")
    seeded = {
        "e1": (ani, visit(ani, A, "2026-01-15T16:30:00Z", {
            "head_name": FORMULA, "floor_area": 36, "family_status": "1", "assets": ["a", "c"],
            "house_location": {"lat": -7.001, "lon": 107.601, "accuracy_m": 4}, "notes": "+62 812 3456",
            "members": [{"_id": M1, "member_name": "Siti", "sex": "2"},
                        {"_id": M2, "member_name": "-Budi", "sex": "1"}]})),
        "e2": (ani, visit(ani, A, "2026-01-16T03:00:00Z", {
            "head_name": "@SUM(A1)", "floor_area": -5, "family_status": "9", "notes": "\tTab"})),
        "e3": (budi, visit(budi, C, "2026-01-15T16:30:00Z", {"head_name": "Asep", "floor_area": 20})),
        "e4": (wayan, visit(wayan, M, "2026-01-15T16:30:00Z", {
            "head_name": "Andi", "floor_area": 48, "income": 1500000.5,
            "members": [{"_id": M3, "member_name": "Andi", "sex": "1"}]}, version="2")),
    }
    for device, event in seeded.values():
        result = device.push([event])["results"][0]
        assert result["status"] == "applied", result
    return {key: event for key, (_, event) in seeded.items()}


def fetch(client, user, path, **query):
    response = client.get(f"/api/v1/exports/{path}", headers=login(client, user), query_string=query)
    assert response.status_code == 200, response.get_data()[:500]
    return response


def csv_zip(client, user="admin", **query):
    archive = zipfile.ZipFile(io.BytesIO(fetch(client, user, "visits.csv.zip", **query).data))
    return {name: list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8-sig"))))
            for name in archive.namelist()}, archive


def by_id(rows, key="visit_id"):
    return {row[key]: row for row in rows}


def test_csv_zip_holds_one_csv_per_form_version_and_per_repeat(client, visits):
    files, archive = csv_zip(client)
    assert sorted(files) == ["verval_exp-1-members.csv", "verval_exp-1.csv", "verval_exp-2-members.csv",
                             "verval_exp-2.csv"]
    header = next(csv.reader(io.StringIO(archive.read("verval_exp-1.csv").decode("utf-8-sig"))))
    assert header == [*VISIT_COLUMNS, "head_name", "floor_area", "family_status", "assets", "house_location_lat",
                      "house_location_lon", "house_location_altitude_m", "house_location_accuracy_m", "notes"]
    main = by_id(files["verval_exp-1.csv"])
    e1, e2, e3 = visits["e1"], visits["e2"], visits["e3"]
    assert set(main) == {e1["id"], e2["id"], e3["id"]}
    row = main[e1["id"]]
    assert (row["household_id"], row["village"], row["officer"], row["form_version"]) == (
        e1["household_id"], A, "ani", "1")
    assert (row["geotag_lat"], row["geotag_lon"], row["geotag_accuracy_m"]) == ("-7.0", "107.6", "6")
    assert row["visit_date"] == "2026-01-15"  # 23:30 in WIB
    assert (row["floor_area"], row["family_status"], row["assets"]) == ("36", "1", "a c")
    assert (row["house_location_lat"], row["house_location_lon"], row["house_location_accuracy_m"]) == (
        "-7.001", "107.601", "4")
    assert (row["review_state"], row["flags"]) == ("pending", "")
    # text a spreadsheet would run as a formula is neutralised; numbers stay numbers
    assert row["head_name"] == "'" + FORMULA
    assert row["notes"] == "'+62 812 3456"
    assert main[e2["id"]]["head_name"] == "'@SUM(A1)"
    assert main[e2["id"]]["notes"] == "'\tTab"
    assert main[e2["id"]]["floor_area"] == "-5"
    assert set(main[e2["id"]]["flags"].split()) == {"constraint_failed", "unknown_choice"}
    assert main[e2["id"]]["family_status"] == "9"
    members = files["verval_exp-1-members.csv"]
    assert [(m["visit_id"], m["parent_row_id"], m["row_id"], m["member_name"], m["sex"]) for m in members] == [
        (e1["id"], "", M1, "Siti", "2"), (e1["id"], "", M2, "'-Budi", "1")]
    e4 = by_id(files["verval_exp-2.csv"])[visits["e4"]["id"]]
    assert (e4["income"], e4["visit_date"]) == ("1500000.5", "2026-01-16")  # 00:30 in WITA
    assert [m["row_id"] for m in files["verval_exp-2-members.csv"]] == [M3]


@pytest.mark.parametrize(("language", "expected"), [
    ("id", {"head": "Nama kepala keluarga", "status": "Keluarga induk", "assets": "Tabung gas; Sepeda motor",
            "sex": ["Perempuan", "Laki-laki"], "sex_header": "Jenis kelamin", "location": "Lokasi rumah (lat)"}),
    ("en", {"head": "Head of family", "status": "Parent family", "assets": "Gas cylinder; Motorcycle",
            "sex": ["Female", "Male"], "sex_header": "Sex", "location": "House location (lat)"}),
])
def test_choices_and_headers_as_labels(client, visits, language, expected):
    files, _ = csv_zip(client, labels=language)
    main = by_id(files["verval_exp-1.csv"])
    row = main[visits["e1"]["id"]]
    assert row[expected["head"]] == "'" + FORMULA
    assert row["visit_id"] == visits["e1"]["id"]  # the visit's own columns keep their names
    assert row[expected["location"]] == "-7.001"
    assert row["Status keluarga" if language == "id" else "Family status"] == expected["status"]
    assert row["Aset" if language == "id" else "Assets"] == expected["assets"]
    assert main[visits["e2"]["id"]]["Status keluarga" if language == "id" else "Family status"] == "9"
    assert [m[expected["sex_header"]] for m in files["verval_exp-1-members.csv"]] == expected["sex"]


def test_xlsx_has_a_sheet_per_version_and_repeat_with_neutralised_text_and_real_numbers(client, visits):
    workbook = load_workbook(io.BytesIO(fetch(client, "admin", "visits.xlsx").data))
    assert workbook.sheetnames == ["export", "verval_exp-1", "verval_exp-1-members", "verval_exp-2",
                                   "verval_exp-2-members"]
    sheet = workbook["verval_exp-1"]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    header, body = rows[0], {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert header[:len(VISIT_COLUMNS)] == VISIT_COLUMNS
    e1, e2 = body[visits["e1"]["id"]], body[visits["e2"]["id"]]
    assert e1["head_name"] == "'" + FORMULA
    assert e2["head_name"] == "'@SUM(A1)"
    assert (e1["floor_area"], e2["floor_area"], e1["geotag_lat"]) == (36, -5, -7.0)
    assert e1["assets"] == "a c"
    assert all(cell.data_type != "f" for ws in workbook.worksheets for row in ws.iter_rows() for cell in row)
    members = [list(r) for r in workbook["verval_exp-1-members"].iter_rows(values_only=True)]
    assert members[0] == ["visit_id", "parent_row_id", "row_id", "member_name", "sex"]
    assert [(r[0], r[2], r[3]) for r in members[1:]] == [(visits["e1"]["id"], M1, "Siti"),
                                                         (visits["e1"]["id"], M2, "'-Budi")]
    index = [list(r) for r in workbook["export"].iter_rows(values_only=True)]
    assert ["verval_exp-1", "verval_exp-1", None, 3] in [[*r[:2], r[2] or None, r[3]] for r in index if len(r) > 3]
    english = load_workbook(io.BytesIO(fetch(client, "admin", "visits.xlsx", labels="en").data))
    first = [list(r) for r in english["verval_exp-1"].iter_rows(values_only=True)]
    assert "Family status" in first[0]
    assert "Parent family" in [row[first[0].index("Family status")] for row in first[1:]]


def test_a_table_longer_than_a_sheet_goes_on_in_a_continuation_sheet(client, visits, monkeypatch):
    monkeypatch.setattr("server.exports.XLSX_MAX_ROWS", 2)
    workbook = load_workbook(io.BytesIO(fetch(client, "admin", "visits.xlsx", form_id="verval_exp").data))
    assert "verval_exp-1~2" in workbook.sheetnames
    ids = [r[0] for name in ("verval_exp-1", "verval_exp-1~2")
           for r in list(workbook[name].iter_rows(values_only=True))[1:]]
    assert sorted(ids) == sorted(visits[k]["id"] for k in ("e1", "e2", "e3"))
    assert next(workbook["verval_exp-1~2"].iter_rows(values_only=True))[0] == "visit_id"


def test_geojson_holds_the_visits_as_points_with_answers_and_flags(client, visits):
    response = fetch(client, "admin", "visits.geojson")
    assert response.mimetype == "application/geo+json"
    collection = json.loads(response.data)
    assert collection["type"] == "FeatureCollection"
    features = {f["id"]: f for f in collection["features"]}
    assert set(features) == {v["id"] for v in visits.values()}
    e1 = features[visits["e1"]["id"]]
    assert e1["geometry"] == {"type": "Point", "coordinates": [107.6, -7.0]}
    props = e1["properties"]
    assert (props["officer"], props["village"], props["head_name"], props["floor_area"]) == ("ani", A, FORMULA, 36)
    assert props["house_location"] == {"lat": -7.001, "lon": 107.601, "accuracy_m": 4}
    assert props["members"] == [{"_id": M1, "member_name": "Siti", "sex": "2"},
                                {"_id": M2, "member_name": "-Budi", "sex": "1"}]
    e2 = features[visits["e2"]["id"]]["properties"]
    assert e2["flagged"] is True
    assert set(e2["flag_codes"].split()) == {"constraint_failed", "unknown_choice"}
    assert {f["code"] for f in e2["flags"]} == {"constraint_failed", "unknown_choice"}
    english = {f["id"]: f for f in json.loads(fetch(client, "admin", "visits.geojson", labels="en").data)["features"]}
    assert english[visits["e1"]["id"]]["properties"]["family_status"] == "Parent family"
    assert english[visits["e1"]["id"]]["properties"]["members"][0]["sex"] == "Female"


def exported_ids(client, user="admin", **query):
    collection = json.loads(fetch(client, user, "visits.geojson", **query).data)
    return {f["id"] for f in collection["features"]}


def test_filters(client, visits):
    ids = {key: event["id"] for key, event in visits.items()}
    assert exported_ids(client, village=A) == {ids["e1"], ids["e2"]}
    assert exported_ids(client, village="32.04") == {ids["e1"], ids["e2"], ids["e3"]}
    assert exported_ids(client, officer="budi") == {ids["e3"]}
    assert exported_ids(client, form_id="nothing") == set()
    # a day is the village's own: 16:30 UTC on the 15th is still the 15th in WIB, already the 16th in WITA
    assert exported_ids(client, **{"from": "2026-01-16", "to": "2026-01-16"}) == {ids["e2"], ids["e4"]}
    assert exported_ids(client, **{"from": "2026-01-15T16:00:00Z", "to": "2026-01-15T17:00:00Z"}) == {
        ids["e1"], ids["e3"], ids["e4"]}
    supervisor = login(client, "supervisor")
    assert client.post(f"/api/v1/visits/{ids['e1']}/review", headers=supervisor,
                       json={"id": str(uuid.uuid4()), "state": "approved"}).status_code == 200
    assert exported_ids(client, review="approved") == {ids["e1"]}
    bad = client.get("/api/v1/exports/visits.csv.zip", headers=login(client, "admin"),
                     query_string={"from": "15/01/2026"})
    assert bad.status_code == 422
    assert "from" in bad.get_json()["errors"]


def test_exports_are_scoped(client, visits):
    ids = {key: event["id"] for key, event in visits.items()}
    assert exported_ids(client, "supervisor") == {ids["e1"], ids["e2"]}
    assert exported_ids(client, "sup2") == {ids["e3"]}
    files, _ = csv_zip(client, "sup2")
    assert [r["visit_id"] for r in files["verval_exp-1.csv"]] == [ids["e3"]]
    outside = client.get("/api/v1/exports/visits.csv.zip", headers=login(client, "sup2"), query_string={"village": A})
    assert outside.status_code == 404
    for path in ("visits.csv.zip", "visits.xlsx", "visits.geojson", "households-history.csv"):
        assert client.get(f"/api/v1/exports/{path}", headers=login(client, "ani")).status_code == 403


def test_an_area_filter_is_a_kemendagri_code_and_nothing_like_one(client, users):
    admin = login(client, "admin")
    for path in ("visits.csv.zip", "households-history.csv"):
        for village in ("32.04.05.2001\n", "3\u0662", "32.0", "32.04.05.2001 "):
            response = client.get(f"/api/v1/exports/{path}", headers=admin, query_string={"village": village})
            assert response.status_code == 422, (path, village)
            assert list(response.get_json()["errors"]) == ["village"]


def test_every_export_is_recorded_and_listed_for_admins(client, visits):
    assert fetch(client, "supervisor", "visits.csv.zip", village=A, labels="id").data
    assert fetch(client, "admin", "visits.geojson", officer="budi").data
    listed = client.get("/api/v1/exports", headers=login(client, "admin")).get_json()
    assert [(e["actor"], e["format"], e["status"]) for e in listed] == [
        ("admin", "geojson", "completed"), ("supervisor", "csv_zip", "completed")]
    assert listed[0]["filters"] == {"officer": "budi", "labels": "codes", "masked": True}
    assert (listed[0]["rows"], listed[1]["rows"], listed[1]["repeat_rows"]) == (1, 2, 2)
    assert listed[1]["filters"] == {"village": A, "labels": "id", "masked": True}
    assert listed[1]["role"] == "supervisor"
    assert listed[1]["at"] <= listed[1]["finished_at"]
    paged = client.get("/api/v1/exports", headers=login(client, "admin"),
                       query_string={"limit": 1, "after": listed[0]["id"]}).get_json()
    assert [e["id"] for e in paged] == [listed[1]["id"]]
    only = client.get("/api/v1/exports", headers=login(client, "admin"), query_string={"actor": "supervisor"})
    assert [e["format"] for e in only.get_json()] == ["csv_zip"]
    assert client.get("/api/v1/exports", headers=login(client, "supervisor")).status_code == 403


def test_an_export_left_unread_is_recorded_as_aborted(app, client, visits):
    response = client.get("/api/v1/exports/visits.geojson", headers=login(client, "admin"))
    chunks = response.iter_encoded()
    next(chunks)
    response.close()
    with app.app_context():
        (record,) = get_store().find("exports")
    assert record["status"] == "aborted"


# -- household history --------------------------------------------------------------------------
def test_household_history_gives_each_fields_value_before_and_after_each_change(client, visits):
    ani = Device(client, "ani")
    household = visits["e1"]["household_id"]
    ani.pull_all()
    edit = ani.edit(household, {"head_name": "Siti Aminah", "address": "Jl. Mawar"}, ani.base(household, "head_name"))
    assert ani.push([edit])["results"][0]["status"] == "applied"
    supervisor = login(client, "supervisor")
    body = client.get(f"/api/v1/households/{household}/history", headers=supervisor).get_json()
    assert [(h["type"], h["officer"], h["event_id"]) for h in body["history"]] == [
        ("visit", "ani", visits["e1"]["id"]), ("household_edit", "ani", edit["id"])]
    first = {c["field"]: (c["before"], c["after"]) for c in body["history"][0]["changes"]}
    assert first == {"head_name": (None, FORMULA), f"members/{M1}/name": (None, "Siti"),
                     f"members/{M1}/sex": (None, "2"), f"members/{M2}/name": (None, "-Budi"),
                     f"members/{M2}/sex": (None, "1")}
    assert body["history"][0]["at"] == "2026-01-15T16:30:00Z"
    second = {c["field"]: (c["before"], c["after"], c["changed"]) for c in body["history"][1]["changes"]}
    assert second == {"head_name": (FORMULA, "Siti Aminah", True), "address": (None, "Jl. Mawar", True)}
    assert body["history"][1]["device_id"] == ani.device_id

    as_csv = client.get(f"/api/v1/households/{household}/history", headers=supervisor,
                        query_string={"format": "csv"})
    assert as_csv.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(as_csv.data.decode("utf-8-sig"))))
    head = [r for r in rows if r["field"] == "head_name"]
    assert [(r["step"], r["type"], r["before"], r["after"]) for r in head] == [
        ("1", "visit", "", "'" + FORMULA), ("2", "household_edit", "'" + FORMULA, "Siti Aminah")]
    assert client.get(f"/api/v1/households/{household}/history", headers=login(client, "budi")).status_code == 404
    assert client.get("/api/v1/households/nope/history", headers=supervisor).status_code == 404


def test_the_history_of_every_household_in_scope_as_one_csv(client, visits):
    rows = list(csv.DictReader(io.StringIO(fetch(client, "supervisor", "households-history.csv").data.decode(
        "utf-8-sig"))))
    assert {r["household_id"] for r in rows} == {visits["e1"]["household_id"], visits["e2"]["household_id"]}
    assert {r["village"] for r in rows} == {A}
    listed = client.get("/api/v1/exports", headers=login(client, "admin")).get_json()
    assert (listed[0]["format"], listed[0]["rows"]) == ("history_csv", len(rows))


# -- memory ---------------------------------------------------------------------------------------
def seed_visits(store, start, count):
    """Visits written straight into the store, as many pushes would have left them."""
    with store.transaction() as tx:
        for n in range(start, start + count):
            tx.insert("visits", {
                "id": f"visit-{n:07d}", "village": A, "household_id": f"household-{n:07d}", "form_id": "verval_exp",
                "form_version": "1", "officer": "ani", "device_id": "phone-ani", "hlc": f"{1768494600000 + n}-0000",
                "started_at": "2026-01-15T16:20:00Z", "ended_at": "2026-01-15T16:30:00Z",
                "received_at": "2026-01-16T01:00:00.000Z", "geotag": {"lat": -7.0, "lon": 107.6, "accuracy_m": 6},
                "answers": {"head_name": f"Kepala keluarga nomor {n}", "floor_area": 30 + n % 50,
                            "family_status": "1", "assets": ["a", "c"], "notes": "Rumah di ujung gang, dekat masjid",
                            "house_location": {"lat": -7.001, "lon": 107.601, "accuracy_m": 4},
                            "members": [{"_id": str(uuid.UUID(int=2 * n)), "member_name": f"Anggota {n} A", "sex": "1"},
                                        {"_id": str(uuid.UUID(int=2 * n + 1)), "member_name": f"Anggota {n} B",
                                         "sex": "2"}]},
                "flags": [], "flagged": False, "flag_codes": [], "supersedes": None, "superseded_by": None,
                "review_state": "pending", "reviewed": False, "review": None, "review_record": None})


def streamed_peak(client, headers, target):
    """Stream the CSV ZIP export chunk by chunk to a file; the peak of memory allocated meanwhile."""
    response = client.get("/api/v1/exports/visits.csv.zip", headers=headers)
    tracemalloc.start()
    try:
        with open(target, "wb") as out:
            for chunk in response.iter_encoded():
                out.write(chunk)
        response.close()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_exporting_100000_visits_keeps_memory_flat(app, client, users, tmp_path):
    admin = login(client, "admin")
    publish(client, admin, form("1"))
    with app.app_context():
        store = get_store()
        seed_visits(store, 0, 10_000)
        # what holding the rows would cost: 10,000 visits read into memory at once
        tracemalloc.start()
        held = list(store.iterate("visits", {"form_id": "verval_exp"}))
        holding_10k = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del held
        peak_10k = streamed_peak(client, admin, tmp_path / "10k.zip")
        seed_visits(store, 10_000, 90_000)
    peak_100k = streamed_peak(client, admin, tmp_path / "100k.zip")
    # ten times the visits, not ten times the memory; and less than holding a tenth of them
    assert peak_100k < 1.5 * peak_10k + 1_000_000, (peak_10k, peak_100k)
    assert peak_100k < holding_10k, (peak_100k, holding_10k)
    assert peak_100k < 16_000_000, peak_100k
    with zipfile.ZipFile(tmp_path / "100k.zip") as archive:
        with archive.open("verval_exp-1.csv") as raw:
            visits = sum(1 for _ in csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig"))) - 1
        with archive.open("verval_exp-1-members.csv") as raw:
            members = sum(1 for _ in csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig"))) - 1
    assert (visits, members) == (100_000, 200_000)


# -- answer columns that meet metadata names ---------------------------------------------------------------
CLASHING = ["visit_id", "form_id", "form_version", "household_id", "village", "officer", "device_id", "started_at",
            "ended_at", "received_at", "visit_date", "geotag_lat", "geotag_lon", "geotag_accuracy_m", "review_state",
            "flags", "supersedes", "superseded_by", "accuracy_m", "flagged", "flag_codes"]


def clashing_form():
    fields = [{"type": "text", "name": name, "label": label(f"Isian {name}", f"Answer {name}")} for name in CLASHING]
    fields += [
        # geotag_lat, geotag_lon and geotag_accuracy_m are metadata columns: the geopoint's parts would meet them
        {"type": "geopoint", "name": "geotag", "label": label("Titik", "Point")},
        # two answers with the same label must not share a header when headers are labels
        {"type": "text", "name": "catatan", "label": label("Isian visit_date", "Answer visit_date")},
        {"type": "repeat", "name": "rows", "label": label("Baris", "Rows"), "fields": [
            {"type": "text", "name": "row_id", "label": label("Nomor", "Number")},
            {"type": "text", "name": "parent_row_id", "label": label("Induk", "Parent")}]},
    ]
    return {"settings": {"form_id": "bentrok", "version": "1", "title": label("Bentrok", "Clash"),
                         "default_language": "id"}, "fields": fields}


@pytest.fixture
def clash_visit(app, client, users):
    admin = login(client, "admin")
    assert client.post("/api/v1/forms", json=clashing_form(), headers=admin).status_code == 201
    assert client.post("/api/v1/forms/bentrok/versions/1/publish", headers=admin).status_code == 200
    assert client.put("/api/v1/forms/bentrok/assignment", json={"all": True}, headers=admin).status_code == 200
    ani = Device(client, "ani")
    answers = {name: f"jawaban {name}" for name in CLASHING}
    answers.update(geotag={"lat": -7.2, "lon": 107.5, "accuracy_m": 9}, catatan="catatan",
                   rows=[{"_id": M1, "row_id": "baris satu", "parent_row_id": "induk"}])
    event = {**visit(ani, A, "2026-01-15T02:00:00Z", answers), "form_id": "bentrok"}
    assert ani.push([event])["results"][0]["status"] == "applied"
    return event


def _no_repeats(headers):
    assert len(headers) == len(set(headers)), [h for h in headers if headers.count(h) > 1]


@pytest.mark.parametrize("labels", ["codes", "id"])
def test_no_export_repeats_a_column_name_when_a_field_is_named_like_a_metadata_column(client, clash_visit, labels):
    files, archive = csv_zip(client, form_id="bentrok", labels=labels)
    header = next(csv.reader(io.StringIO(archive.read("bentrok-1.csv").decode("utf-8-sig"))))
    repeat_header = next(csv.reader(io.StringIO(archive.read("bentrok-1-rows.csv").decode("utf-8-sig"))))
    _no_repeats(header)
    _no_repeats(repeat_header)
    workbook = load_workbook(io.BytesIO(fetch(client, "admin", "visits.xlsx", form_id="bentrok", labels=labels).data))
    sheet_header = list(next(workbook["bentrok-1"].iter_rows(values_only=True)))
    assert sheet_header == header
    assert list(next(workbook["bentrok-1-rows"].iter_rows(values_only=True))) == repeat_header
    row = files["bentrok-1.csv"][0]
    # the metadata keep their names and values; each answer is under its own column
    assert (row["visit_id"], row["visit_date"], row["officer"]) == (clash_visit["id"], "2026-01-15", "ani")
    if labels == "codes":
        assert header[:len(VISIT_COLUMNS)] == VISIT_COLUMNS
        for name in CLASHING:
            assert row[f"answer_{name}"] == f"jawaban {name}"
        assert (row["answer_geotag_lat"], row["answer_answer_geotag_lat"]) == ("jawaban geotag_lat", "-7.2")
        member = files["bentrok-1-rows.csv"][0]
        assert (member["row_id"], member["answer_row_id"], member["answer_parent_row_id"]) == (
            M1, "baris satu", "induk")
    else:
        assert row["Isian visit_date"] == "jawaban visit_date"
        assert row["Isian visit_date [catatan]"] == "catatan"


def test_geojson_names_answers_that_meet_metadata_names_as_the_csv_does(client, clash_visit):
    features = json.loads(fetch(client, "admin", "visits.geojson", form_id="bentrok").data)["features"]
    properties = features[0]["properties"]
    assert (properties["visit_date"], properties["accuracy_m"]) == ("2026-01-15", 6)
    for name in CLASHING:
        assert properties[f"answer_{name}"] == f"jawaban {name}"
    # answer_geotag_lat is the text field geotag_lat's column already, so the geopoint is prefixed twice
    assert properties["answer_answer_geotag"] == {"lat": -7.2, "lon": 107.5, "accuracy_m": 9}
    assert properties["rows"] == [{"_id": M1, "answer_row_id": "baris satu", "answer_parent_row_id": "induk"}]


def test_an_answer_the_form_hid_is_neither_exported_nor_written_to_the_household(app, client, users):
    admin = login(client, "admin")
    hidden = {"settings": {"form_id": "tersembunyi", "version": "1", "title": label("Uji", "Test"),
                           "default_language": "id"},
              "fields": [{"type": "select_one", "name": "result", "label": label("Hasil", "Result"), "list": "yn"},
                         {"type": "text", "name": "head_name", "label": label("Nama", "Name"),
                          "relevant": "${result} = '1'", "save_to": "head_name"}],
              "choices": {"yn": [{"name": "1", "label": label("Ya", "Yes")},
                                 {"name": "2", "label": label("Tidak", "No")}]}}
    assert client.post("/api/v1/forms", json=hidden, headers=admin).status_code == 201
    assert client.post("/api/v1/forms/tersembunyi/versions/1/publish", headers=admin).status_code == 200
    assert client.put("/api/v1/forms/tersembunyi/assignment", json={"all": True}, headers=admin).status_code == 200
    ani = Device(client, "ani")
    # the officer typed a name, then the household refused: the phone still sends the name
    event = {**visit(ani, A, "2026-01-15T02:00:00Z", {"result": "2", "head_name": "Siti"}), "form_id": "tersembunyi"}
    assert ani.push([event])["results"][0]["status"] == "applied"
    files, _ = csv_zip(client, form_id="tersembunyi")
    assert files["tersembunyi-1.csv"][0]["head_name"] == ""
    response = client.get(f"/api/v1/households/{event['household_id']}", headers=admin)
    assert response.status_code == 200
    assert "head_name" not in response.get_json()["fields"]
