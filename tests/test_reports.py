"""Coverage and work figures and the review queue, on a seeded dataset whose answers are worked out by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from http_helpers import login, make_user
from sync_helpers import Device, listed

from server.reporting import zone_name
from server.store import get_store

A, B, C, M = "32.04.05.2001", "32.04.05.2002", "32.04.06.2001", "73.71.01.1001"
WIB, WITA = timezone(timedelta(hours=7)), timezone(timedelta(hours=8))
CENTRES = {A: (-7.0, 107.6), B: (-7.05, 107.65), C: (-7.1, 107.7), M: (-5.15, 119.43)}

LISTS = {"family_status": [{"name": "0", "label": {"id": "KK sesuai", "en": "As registered"}},
                           {"name": "1", "label": {"id": "Keluarga induk", "en": "Parent family"}}]}
VERVAL = {
    "settings": {"form_id": "verval_mini", "version": "1", "title": {"id": "Verval", "en": "Check"},
                 "default_language": "id"},
    "fields": [
        {"type": "text", "name": "head_name", "label": {"id": "Nama", "en": "Name"}, "required": True,
         "save_to": "head_name"},
        {"type": "integer", "name": "floor_area", "label": {"id": "Luas", "en": "Area"}, "constraint": ". > 0"},
        {"type": "select_one", "name": "family_status", "label": {"id": "Status", "en": "Status"},
         "list": "family_status"},
    ],
    "choices": LISTS,
}
PENDAMPINGAN = {
    "settings": {"form_id": "pendampingan_mini", "version": "1", "title": {"id": "Pendampingan", "en": "Follow-up"},
                 "default_language": "id"},
    "fields": [{"type": "text", "name": "catatan", "label": {"id": "Catatan", "en": "Notes"}}],
    "choices": {},
}


def square(code):
    lat, lon = CENTRES[code]
    ring = [[lon - 0.01, lat - 0.01], [lon + 0.01, lat - 0.01], [lon + 0.01, lat + 0.01], [lon - 0.01, lat + 0.01],
            [lon - 0.01, lat - 0.01]]
    return {"type": "Feature", "properties": {"code": code, "name": f"Desa {code}"},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def iso(moment):
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def visit(device, village, household, when, answers, form="verval_mini", lat_shift=0.0, **extra):
    lat, lon = CENTRES[village]
    event = {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
             "form_id": form, "form_version": "1", "village": village, "household_id": household,
             "geotag": {"lat": lat + lat_shift, "lon": lon, "accuracy_m": 5, "captured_at": when},
             "started_at": when, "ended_at": when, "answers": answers}
    event.update(extra)
    return event


def pushed(device, event):
    result = device.push([event])["results"][0]
    assert result["status"] == "applied", result
    return event


@pytest.fixture
def world(app, client, users):
    """Four villages (three in WIB, one in WITA), imported households, visits, devices and a conflict."""
    for name, role, areas in (("dedi", "officer", [B]), ("eka", "officer", [A]), ("wayan", "officer", [M]),
                              ("sup2", "supervisor", ["32.04.06"])):
        make_user(app, name, role, areas)
    admin = login(client, "admin")
    for form in (VERVAL, PENDAMPINGAN):
        form_id = form["settings"]["form_id"]
        assert client.post("/api/v1/forms", json=form, headers=admin).status_code == 201
        assert client.post(f"/api/v1/forms/{form_id}/versions/1/publish", headers=admin).status_code == 200
        assert client.put(f"/api/v1/forms/{form_id}/assignment", json={"all": True}, headers=admin).status_code == 200
    boundaries = {"type": "FeatureCollection", "features": [square(code) for code in CENTRES]}
    assert client.post("/api/v1/villages", json=boundaries, headers=admin).status_code == 200
    register = [("a1", A), ("a2", A), ("a3", A), ("b1", B), ("b2", B), ("c1", C), ("m1", M), ("m2", M)]
    rows = [{"no_kk": f"{code[:2]}{code[3:5]}{code[6:8]}010120{n + 1:04d}", "nama": f"Kepala {key}", "kode_desa": code}
            for n, (key, code) in enumerate(register)]
    report = client.post("/api/v1/households/import", headers=admin, json={"rows": rows}).get_json()
    assert report["created"] == 8, report
    households = {h["fields"]["head_name"]["value"].split()[-1]: h["id"]
                  for h in listed(client, "/api/v1/households", admin)}
    now = datetime.now(UTC)
    ani, dedi, budi, wayan = (Device(client, name) for name in ("ani", "dedi", "budi", "wayan"))

    def good(key):  # the register's name: a visit that confirms it opens no conflict
        return {"head_name": f"Kepala {key}", "floor_area": 30, "family_status": "0"}

    v = {
        # 16:30 UTC is 23:30 in WIB but already 00:30 the next day in WITA; 17:30 UTC is past midnight in WIB
        "v1": pushed(ani, visit(ani, A, households["a1"], "2026-01-15T16:30:00Z", good("a1"))),
        "v2": pushed(ani, visit(ani, A, households["a1"], "2026-01-15T17:30:00Z", {"catatan": "ok"},
                                form="pendampingan_mini")),
        "v3": pushed(ani, visit(ani, A, households["a2"], iso(now - timedelta(days=2)),
                                {**good("a2"), "floor_area": -3})),
        "v4": pushed(ani, visit(ani, A, str(uuid.uuid4()), iso(now - timedelta(days=20)),
                                {**good("new"), "family_status": "9"}, lat_shift=0.05)),
        "v5": pushed(dedi, visit(dedi, B, households["b1"], "2026-01-15T16:30:00Z", good("b1"))),
        "v6": pushed(budi, visit(budi, C, households["c1"], iso(now - timedelta(days=2)), good("c1"))),
        "v7": pushed(wayan, visit(wayan, M, households["m1"], "2026-01-15T16:30:00Z", good("m1"))),
    }
    # a revision that no supervisor asked for: counted once, and flagged
    v["v8"] = pushed(wayan, visit(wayan, M, households["m1"], "2026-01-15T16:45:00Z", good("m1"),
                                   supersedes=v["v7"]["id"]))
    # ani and eka both change a3's head's name from the same base: a conflict
    eka = Device(client, "eka")
    ani.pull_all()
    eka.pull_all()
    base = ani.base(households["a3"], "head_name")
    ani.push([ani.edit(households["a3"], {"head_name": "Versi Ani"}, base)])
    eka.push([eka.edit(households["a3"], {"head_name": "Versi Eka"}, base)])
    # a phone whose clock runs an hour fast has its events refused, and the skew noted
    fast = Device(client, "dedi", device_id="phone-dedi-fast", clock_offset_ms=3_600_000)
    assert fast.push([fast.edit(households["b2"], {"address": "x"}, village=B)])["results"][0]["code"] == "clock_skew"
    # budi's phone last synced ten days ago; fajar's logged in five days ago and never synced
    make_user(app, "fajar", "officer", [A])
    Device(client, "fajar", device_id="phone-fajar")
    with app.app_context():
        store = get_store()
        budi_phone = store.get("devices", f"budi/{budi.device_id}")
        store.put("devices", {**budi_phone, "last_sync_at": iso(now - timedelta(days=10, hours=1))})
        fajar_phone = store.get("devices", "fajar/phone-fajar")
        store.put("devices", {**fajar_phone, "first_seen_at": iso(now - timedelta(days=5, hours=1))})
    return {"households": households, "visits": v, "now": now,
            "devices": {"ani": ani.device_id, "dedi": dedi.device_id, "budi": budi.device_id}}


def local_day(text, zone):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(zone).date().isoformat()


def get(client, user, path, **query):
    response = client.get(path, headers=login(client, user), query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_coverage_per_village_counts_households_visits_and_local_days(client, world):
    v = world["visits"]
    body = get(client, "admin", "/api/v1/reports/coverage", days=7)
    by_village = {row["village"]: row for row in body["villages"]}
    assert sorted(by_village) == [A, B, C, M]
    recent_day = local_day(v["v3"]["ended_at"], WIB)
    old_day = local_day(v["v4"]["ended_at"], WIB)
    # A: a1, a2, a3 imported and a household first met on v4's visit; a1 twice, a2 recently, v4's 20 days ago
    assert by_village[A] | {"visits_by_form_day": None} == {
        "village": A, "name": f"Desa {A}", "time_zone": "WIB", "utc_offset": "+07:00", "households_known": 4,
        "households_visited": 3, "households_not_visited": 1, "households_visited_recently": 1, "visits": 4,
        "visits_by_form_day": None}
    assert by_village[A]["visits_by_form_day"] == sorted([
        {"form_id": "pendampingan_mini", "date": "2026-01-16", "visits": 1},
        {"form_id": "verval_mini", "date": "2026-01-15", "visits": 1},
        {"form_id": "verval_mini", "date": recent_day, "visits": 1},
        {"form_id": "verval_mini", "date": old_day, "visits": 1}], key=lambda d: (d["form_id"], d["date"]))
    assert (by_village[B]["households_known"], by_village[B]["households_visited"],
            by_village[B]["households_visited_recently"]) == (2, 1, 0)
    assert by_village[B]["visits_by_form_day"] == [{"form_id": "verval_mini", "date": "2026-01-15", "visits": 1}]
    assert (by_village[C]["households_known"], by_village[C]["households_visited"],
            by_village[C]["households_visited_recently"]) == (1, 1, 1)
    # M is in WITA: 16:30 UTC is the next day there; the revision replaces v7, so one visit
    assert by_village[M]["time_zone"] == "WITA"
    m = by_village[M]
    assert (m["households_known"], m["households_visited"], m["visits"]) == (2, 1, 1)
    assert by_village[M]["visits_by_form_day"] == [{"form_id": "verval_mini", "date": "2026-01-16", "visits": 1}]
    assert body["totals"] == {"households_known": 9, "households_visited": 6, "households_not_visited": 3,
                              "households_visited_recently": 2, "visits": 7}
    # over 30 days, v4's household counts as recent too
    wide = {r["village"]: r for r in get(client, "admin", "/api/v1/reports/coverage", days=30)["villages"]}
    assert wide[A]["households_visited_recently"] == 2


def test_coverage_is_scoped(client, world):
    supervisor = get(client, "supervisor", "/api/v1/reports/coverage")
    assert [row["village"] for row in supervisor["villages"]] == [A, B]
    one = get(client, "supervisor", "/api/v1/reports/coverage", village=B)
    assert [row["village"] for row in one["villages"]] == [B]
    assert [row["village"] for row in get(client, "sup2", "/api/v1/reports/coverage")["villages"]] == [C]
    response = client.get("/api/v1/reports/coverage", headers=login(client, "sup2"), query_string={"village": A})
    assert response.status_code == 404
    assert client.get("/api/v1/reports/coverage", headers=login(client, "ani")).status_code == 403


def test_officer_figures(app, client, world):
    body = get(client, "admin", "/api/v1/reports/officers", days=7)
    officers = {o["officer"]: o for o in body["officers"]}
    assert sorted(officers) == ["ani", "budi", "dedi", "eka", "fajar", "wayan"]
    ani = officers["ani"]
    assert (ani["visits"], ani["visits_recent"], ani["flagged_visits"]) == (4, 1, 2)
    assert ani["flags"] == {"constraint_failed": 1, "outside_village": 1, "unknown_choice": 1}
    assert ani["villages_visited"] == [A]
    assert ani["assigned"] == [A]
    with app.app_context():
        phone = get_store().get("devices", f"ani/{world['devices']['ani']}")
    assert ani["last_sync_at"] == phone["last_sync_at"]
    assert [d["device_id"] for d in ani["devices"]] == [world["devices"]["ani"]]
    assert (officers["wayan"]["visits"], officers["wayan"]["flags"]) == (1, {"supersedes_unrequested": 1})
    assert (officers["dedi"]["visits"], officers["dedi"]["flagged_visits"]) == (1, 0)
    assert sorted(d["device_id"] for d in officers["dedi"]["devices"]) == sorted(
        [world["devices"]["dedi"], "phone-dedi-fast"])
    assert (officers["eka"]["visits"], officers["budi"]["visits_recent"]) == (0, 1)
    scoped = get(client, "supervisor", "/api/v1/reports/officers")
    assert sorted(o["officer"] for o in scoped["officers"]) == ["ani", "dedi", "eka", "fajar"]
    only = get(client, "supervisor", "/api/v1/reports/officers", officer="ani")
    assert [o["officer"] for o in only["officers"]] == ["ani"]


def test_devices_not_synced_and_clocks_skewed(client, world):
    body = get(client, "admin", "/api/v1/reports/devices", stale_days=3)
    stale = {(d["username"], d["device_id"]): d for d in body["not_synced"]}
    assert set(stale) == {("budi", world["devices"]["budi"]), ("fajar", "phone-fajar")}
    assert stale[("budi", world["devices"]["budi"])]["days_since_sync"] == 10
    assert stale[("fajar", "phone-fajar")]["last_sync_at"] is None
    assert stale[("fajar", "phone-fajar")]["days_since_sync"] == 5
    assert [(d["username"], d["device_id"]) for d in body["clock_skewed"]] == [("dedi", "phone-dedi-fast")]
    assert 3_500_000 < body["clock_skewed"][0]["skew_ms"] <= 3_600_000
    assert get(client, "admin", "/api/v1/reports/devices", stale_days=6)["not_synced"][0]["username"] == "budi"
    supervisor = get(client, "supervisor", "/api/v1/reports/devices")
    assert [d["username"] for d in supervisor["not_synced"]] == ["fajar"]
    assert [d["device_id"] for d in supervisor["clock_skewed"]] == ["phone-dedi-fast"]
    sup2 = get(client, "sup2", "/api/v1/reports/devices")
    assert ([d["username"] for d in sup2["not_synced"]], sup2["clock_skewed"]) == (["budi"], [])


def test_review_queue_lists_conflicts_then_flagged_visits_with_filters_and_pages(client, world):
    v = world["visits"]
    flagged = sorted([v["v3"]["id"], v["v4"]["id"], v["v8"]["id"]])
    whole = get(client, "admin", "/api/v1/reports/review-queue")
    assert [i["kind"] for i in whole["items"]] == ["conflict", "visit", "visit", "visit"]
    assert whole["items"][0]["household_id"] == world["households"]["a3"]
    assert whole["items"][0]["field"] == "head_name"
    assert [i["id"] for i in whole["items"][1:]] == flagged
    assert whole["totals"] == {"conflicts": 1, "visits": 3}
    assert whole["next"] is None
    first = get(client, "admin", "/api/v1/reports/review-queue", limit=2)
    second = get(client, "admin", "/api/v1/reports/review-queue", limit=2, after=first["next"])
    assert [i["id"] for i in first["items"] + second["items"]] == [i["id"] for i in whole["items"]]
    assert second["next"] is None
    outside = get(client, "admin", "/api/v1/reports/review-queue", kind="visit", flag="outside_village")
    assert ([i["id"] for i in outside["items"]], outside["totals"]) == ([v["v4"]["id"]], {"visits": 1})
    in_m = get(client, "admin", "/api/v1/reports/review-queue", kind="visit", village=M)
    assert [i["id"] for i in in_m["items"]] == [v["v8"]["id"]]
    assert in_m["items"][0]["flag_codes"] == ["supersedes_unrequested"]
    # a reviewed visit leaves the pending queue
    supervisor = login(client, "supervisor")
    reviewed = client.post(f"/api/v1/visits/{v['v3']['id']}/review", headers=supervisor,
                           json={"id": str(uuid.uuid4()), "state": "approved"})
    assert reviewed.status_code == 200
    mine = get(client, "supervisor", "/api/v1/reports/review-queue")
    assert [i["id"] for i in mine["items"]] == [whole["items"][0]["id"], v["v4"]["id"]]
    approved = get(client, "supervisor", "/api/v1/reports/review-queue", kind="visit", review="approved")
    assert [i["id"] for i in approved["items"]] == [v["v3"]["id"]]
    assert get(client, "sup2", "/api/v1/reports/review-queue")["items"] == []
    assert client.get("/api/v1/reports/review-queue", headers=login(client, "ani")).status_code == 403
    bad = client.get("/api/v1/reports/review-queue", headers=supervisor, query_string={"after": "nonsense"})
    assert bad.status_code == 400


def test_time_zone_table_by_province():
    expected = {"11": "WIB", "36": "WIB", "51": "WITA", "53": "WITA", "61": "WIB", "62": "WIB", "63": "WITA",
                "65": "WITA", "71": "WITA", "76": "WITA", "81": "WIT", "82": "WIT", "91": "WIT", "97": "WIT"}
    assert {province: zone_name(f"{province}.01.01.2001") for province in expected} == expected


def test_the_figures_are_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in ("/api/v1/reports/coverage", "/api/v1/reports/officers", "/api/v1/reports/devices",
                 "/api/v1/reports/review-queue", "/api/v1/households/import",
                 "/api/v1/households/{household_id}/history"):
        assert path in paths

