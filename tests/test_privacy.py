"""Personal data through HTTP and the CLI: audited reads, masks per role, a data-subject request walked
from search to erasure, household erasure, retention."""

from __future__ import annotations

import io
import json
import sqlite3
import uuid
import zipfile

import pytest
from click.testing import CliRunner
from http_helpers import login, make_user
from sync_helpers import Device, households_in, listed

from server.cli import cli
from server.store import get_store
from server.villages import import_villages

A, B = "32.04.05.2001", "32.04.05.2002"
CENTRES = {A: (-7.0, 107.6), B: (-7.05, 107.65)}
NAMESPACE = uuid.UUID("6f1c8f0e-3b7a-5d2e-9a41-6b756e6a756e")
KK1, KK2, KK3 = "3204050101200001", "3204050101200002", "3204050201200003"
SITI, RAHMAT, DEWI = "3204054107900001", "3204051507750003", "3204054202850002"
BUDI, SARI = "3204051201820001", "3204054305880004"  # members of the first household; Budi asks to be erased
BUDI_NAME = "Budi Santoso Wibisono"
M_BUDI, M_SARI = str(uuid.uuid4()), str(uuid.uuid4())

FORM = {
    "settings": {"form_id": "keluarga_uji", "version": "1", "title": {"id": "Keluarga (uji)", "en": "Family (test)"},
                 "default_language": "id"},
    "fields": [
        {"type": "text", "name": "notes", "label": {"id": "Catatan", "en": "Notes"}, "save_to": "notes"},
        {"type": "text", "name": "reported_nik", "label": {"id": "NIK terlapor", "en": "Reported NIK"},
         "appearance": "numbers nik"},
        {"type": "repeat", "name": "members", "label": {"id": "Anggota", "en": "Members"}, "save_to": "members",
         "fields": [
             {"type": "text", "name": "member_name", "label": {"id": "Nama", "en": "Name"}, "save_to": "name"},
             {"type": "text", "name": "member_nik", "label": {"id": "NIK", "en": "NIK"},
              "appearance": "numbers nik", "save_to": "nik"},
             {"type": "text", "name": "relation", "label": {"id": "Hubungan", "en": "Relation"},
              "save_to": "relation"}]},
    ],
    "choices": {},
}


def hid(village, no_kk):
    return str(uuid.uuid5(NAMESPACE, f"{village}/{no_kk}"))


H1, H2, H3 = hid(A, KK1), hid(A, KK2), hid(B, KK3)


def square(code):
    lat, lon = CENTRES[code]
    ring = [[lon - 0.01, lat - 0.01], [lon + 0.01, lat - 0.01], [lon + 0.01, lat + 0.01], [lon - 0.01, lat + 0.01],
            [lon - 0.01, lat - 0.01]]
    return {"type": "Feature", "properties": {"code": code, "name": code},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


@pytest.fixture
def world(app, client, users, monkeypatch):
    """Villages, the test form, a register of three families and the admin's grant to see numbers whole."""
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY", app.config["SECRET_KEY"])
    monkeypatch.setenv("KUNJUNG_LOAD_LIBRARY_FORMS", "false")
    make_user(app, "citra", "officer", [B])
    with app.app_context():
        assert import_villages(get_store(), [square(code) for code in CENTRES]).counts["refused"] == 0
    admin = login(client, "admin")
    assert client.post("/api/v1/forms", json=FORM, headers=admin).status_code == 201
    assert client.post("/api/v1/forms/keluarga_uji/versions/1/publish", headers=admin).status_code == 200
    assert client.put("/api/v1/forms/keluarga_uji/assignment", json={"all": True}, headers=admin).status_code == 200
    rows = [{"no_kk": KK1, "nik": SITI, "nama": "Siti Aminah", "alamat": "Jl. Mawar 1", "kode_desa": A},
            {"no_kk": KK2, "nik": RAHMAT, "nama": "Rahmat Hidayat", "alamat": "Dusun Krajan", "kode_desa": A},
            {"no_kk": KK3, "nik": DEWI, "nama": "Dewi Lestari", "alamat": "Kp. Babakan", "kode_desa": B}]
    response = client.post("/api/v1/households/import", headers=admin, json={"rows": rows})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["created"] == 3, response.get_json()
    return admin


def visit(device, village, household_id, answers):
    lat, lon = CENTRES[village]
    when = "2026-11-20T03:00:00Z"
    return {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
            "form_id": "keluarga_uji", "form_version": "1", "village": village, "household_id": household_id,
            "geotag": {"lat": lat, "lon": lon, "accuracy_m": 5, "captured_at": when}, "started_at": when,
            "ended_at": when, "answers": answers}


def roster(*rows):
    return [{"_id": member, "member_name": name, "member_nik": nik, "relation": relation}
            for member, name, nik, relation in rows]


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def fields_of(client, headers, household_id):
    response = client.get(f"/api/v1/households/{household_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["fields"]


def everything_stored(app):
    """Every row of every table of the embedded store, as text: what a disk holds."""
    path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        # The table names come from sqlite_master itself.
        reads = (f'SELECT * FROM "{table}"' for table in tables)  # noqa: S608
        return "\n".join(repr(row) for read in reads for row in db.execute(read))


def answers_of_every_read(client, headers, households, visit_ids):
    """The text of every answer the server gives about these households and visits."""
    texts = [client.get(path, headers=headers).get_data(as_text=True) for path in (
        "/api/v1/households?limit=1000", "/api/v1/visits?limit=1000", "/api/v1/conflicts",
        "/api/v1/reports/review-queue", "/api/v1/exports/visits.geojson", "/api/v1/exports/households-history.csv")]
    for household_id in households:
        for path in (f"/api/v1/households/{household_id}", f"/api/v1/households/{household_id}/history",
                     f"/api/v1/households/{household_id}/history?format=csv"):
            texts.append(client.get(path, headers=headers).get_data(as_text=True))
    for visit_id in visit_ids:
        texts.append(client.get(f"/api/v1/visits/{visit_id}", headers=headers).get_data(as_text=True))
    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/v1/exports/visits.csv.zip", headers=headers).data))
    texts.extend(archive.read(name).decode("utf-8") for name in archive.namelist())
    return "\n".join(texts)


# -- the data-subject request ----------------------------------------------------------------------------
def test_a_data_subject_request_from_search_to_erasure(app, client, world):
    admin = world
    assert client.patch("/api/v1/users/admin", json={"see_identifiers": True}, headers=admin).status_code == 200
    ani = Device(client, "ani")
    first = visit(ani, A, H1, {"notes": "Rumah bersih", "members": roster(
        (M_BUDI, BUDI_NAME, BUDI, "anak"), (M_SARI, "Sari Wulandari", SARI, "istri"))})
    complaint = visit(ani, A, H2, {"notes": "Laporan tetangga", "reported_nik": BUDI})
    assert [r["status"] for r in ani.push([first, complaint])["results"]] == ["applied", "applied"]
    ani.pull_all()
    assert ani.known[H1]["fields"][f"members/{M_BUDI}/nik"]["value"] == BUDI  # officers: whole, own villages
    # Made offline before the erasure, pushed after it.
    late = visit(ani, A, H1, {"notes": "Kunjungan ulang", "members": roster((M_BUDI, BUDI_NAME, BUDI, "anak"))})
    before = {household_id: fields_of(client, admin, household_id) for household_id in (H2, H3)}
    sari_before = {path: state for path, state in fields_of(client, admin, H1).items() if M_SARI in path}

    # 1. find the person by NIK
    found = client.post("/api/v1/households/search", json={"nik": BUDI}, headers=admin)
    assert found.status_code == 200, found.get_json()
    assert [(i["household_id"], i["roles"]) for i in found.get_json()["items"]] == [
        (H1, [{"as": "member", "member_id": M_BUDI}])]

    # 2. export what is held, through the API and the CLI
    held = client.post("/api/v1/people/export", json={"nik": BUDI}, headers=admin).get_json()
    assert held["households"][0]["values"][f"members/{M_BUDI}/name"] == BUDI_NAME
    assert sorted(v["visit_id"] for v in held["visits"]) == sorted([first["id"], complaint["id"]])
    printed = run("export-person", BUDI)
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["households"][0]["household_id"] == H1

    # 3. erase it (the CLI asks first; "n" keeps everything)
    assert run("erase-person", BUDI, "--reason", "permintaan subjek data 12/2026", input="n\n").exit_code != 0
    assert BUDI_NAME in json.dumps(fields_of(client, admin, H1))
    erased = run("erase-person", BUDI, "--reason", "permintaan subjek data 12/2026", "--yes")
    assert erased.exit_code == 0, erased.output
    assert f"household {H1}: erased members/{M_BUDI}/*" in erased.output

    # the next sync: the phone that held him drops him, resends what it had, sends what it made offline
    changes = ani.pull_all()
    pulled = households_in(changes)[H1]
    assert pulled["erased"] == [f"members/{M_BUDI}/*"]
    assert all(state["value"] is None and state.get("erased") for path, state in pulled["fields"].items()
               if M_BUDI in path)
    assert [r["status"] for r in ani.push([first, late])["results"]] == ["duplicate", "applied"]
    fresh = Device(client, "ani")
    fresh_pull = json.dumps(fresh.pull_all())
    assert BUDI not in fresh_pull
    assert BUDI_NAME not in fresh_pull
    assert SARI in fresh_pull  # his sister-in-law stays

    # no answer, pull, export or stored row holds him any more
    reads = answers_of_every_read(client, admin, [H1, H2, H3], [first["id"], complaint["id"], late["id"]])
    assert BUDI not in reads
    assert BUDI_NAME not in reads
    assert "Sari Wulandari" in reads
    assert client.post("/api/v1/households/search", json={"nik": BUDI}, headers=admin).get_json()["items"] == []
    assert client.post("/api/v1/people/export", json={"nik": BUDI}, headers=admin).get_json() == {
        "nik": BUDI, "households": [], "visits": []}
    stored = everything_stored(app)
    assert BUDI not in stored
    assert BUDI_NAME not in stored
    # the complaint's answers mentioned him: they went whole; what it saved to its own household stays
    assert client.get(f"/api/v1/visits/{complaint['id']}", headers=admin).get_json()["answers"] == {}
    # every other household is as it was; so is the rest of his own household
    assert {household_id: fields_of(client, admin, household_id) for household_id in (H2, H3)} == before
    assert {path: state for path, state in fields_of(client, admin, H1).items() if M_SARI in path} == sari_before
    assert run("rebuild-households").exit_code == 0

    # the audit log shows who did what, about him, without his number
    entries = client.post("/api/v1/audit/person", json={"nik": BUDI}, headers=admin).get_json()["items"]
    operator = next(e for e in entries if e["action"] == "person_erased")["actor"]
    assert operator.startswith("cli")
    assert [(e["action"], e["actor"]) for e in reversed(entries)] == [
        ("household_searched", "admin"), ("person_exported", "admin"), ("person_exported", operator),
        ("person_erased", operator), ("household_searched", "admin"), ("person_exported", "admin")]
    assert entries[2]["details"]["reason"] == "permintaan subjek data 12/2026"
    assert BUDI not in json.dumps(client.get("/api/v1/audit?limit=1000", headers=admin).get_json())
    pulls = client.get("/api/v1/audit", query_string={"household": H1, "action": "pull"}, headers=admin).get_json()
    assert pulls
    assert all(H1 in e["details"]["households"] for e in pulls)
    history = client.get(f"/api/v1/households/{H1}/history", headers=admin).get_json()["history"]
    assert history[-2]["type"] == "erasure"
    assert history[-2]["note"].startswith("erased on ")
    assert history[-2]["note"].endswith(f"by {operator}")


# -- masks per role ----------------------------------------------------------------------------------------
def test_supervisors_and_exports_see_masks_until_granted(client, world):
    admin = world
    supervisor = login(client, "supervisor")
    masked = fields_of(client, supervisor, H1)
    assert masked["no_kk"]["value"] == {"masked": KK1[:6]}
    assert masked["head_nik"]["value"] == {"masked": SITI[:6]}
    assert masked["head_name"]["value"] == "Siti Aminah"
    items = listed(client, "/api/v1/households", supervisor)
    assert KK1 not in json.dumps(items)
    assert SITI not in json.dumps(items)
    history = client.get(f"/api/v1/households/{H1}/history?format=csv", headers=supervisor).get_data(as_text=True)
    assert KK1 not in history
    assert f"{KK1[:6]}**********" in history
    # officers verify numbers against the card: whole, in their own villages
    assert fields_of(client, login(client, "ani"), H1)["no_kk"]["value"] == KK1
    # the admin's own exports are masked too until granted
    geo = client.get("/api/v1/exports/households-history.csv", headers=admin).get_data(as_text=True)
    assert SITI not in geo
    assert f"{SITI[:6]}**********" in geo

    # seeing one household whole is an explicit, recorded act
    revealed = client.post(f"/api/v1/households/{H1}/reveal", headers=supervisor)
    assert revealed.status_code == 200
    assert revealed.get_json()["identifiers"] == {"no_kk": KK1, "head_nik": SITI}
    log = client.get("/api/v1/audit", query_string={"household": H1}, headers=admin).get_json()
    assert [e["action"] for e in log if e["actor"] == "supervisor"][:3] == [
        "identifiers_revealed", "household_history_exported", "household_read"]

    # a grant through the users API, recorded
    granted = client.patch("/api/v1/users/supervisor", json={"see_identifiers": True}, headers=admin)
    assert granted.status_code == 200
    assert granted.get_json()["see_identifiers"] is True
    assert fields_of(client, login(client, "supervisor"), H1)["no_kk"]["value"] == KK1
    assert client.get("/api/v1/audit?action=identifiers_grant_changed", headers=admin).get_json()[0]["target"] == \
        "supervisor"
    assert client.patch("/api/v1/users/supervisor", json={"see_identifiers": "ya"}, headers=admin).status_code == 422


def test_a_mask_written_back_is_refused_per_event(client, world):
    hall = Device(client, "supervisor")
    hall.pull_all()
    assert hall.known[H1]["fields"]["no_kk"]["value"] == {"masked": KK1[:6]}
    back = hall.edit(H1, {"no_kk": {"masked": KK1[:6]}, "head_name": "Siti A."}, base=hall.base(H1, "no_kk"))
    fine = hall.edit(H2, {"head_name": "Rahmat H."})
    results = hall.push([back, fine])["results"]
    assert [(r["status"], r.get("code")) for r in results] == [("rejected", "invalid"), ("applied", None)]
    assert "set.no_kk" in results[0]["errors"]
    assert fields_of(client, login(client, "ani"), H1)["no_kk"]["value"] == KK1


def test_reads_are_recorded_and_the_log_filters(client, world):
    admin = world
    ani = Device(client, "ani")
    made = visit(ani, A, H1, {"notes": "Baik"})
    ani.push([made])
    ani.pull_all()
    client.get(f"/api/v1/visits/{made['id']}", headers=ani.headers)
    client.get(f"/api/v1/households/{H2}", headers=ani.headers)
    log = client.get("/api/v1/audit", query_string={"actor": "ani"}, headers=admin).get_json()
    actions = [e["action"] for e in log]
    assert actions[:3] == ["household_read", "visit_read", "pull"]
    assert {H1, H2} <= set(next(e for e in log if e["action"] == "pull")["details"]["households"])
    assert client.get("/api/v1/audit", query_string={"actor": "ani", "from": "2000-01-01", "to": "2000-12-31"},
                      headers=admin).get_json() == []
    assert client.get("/api/v1/audit", query_string={"from": "kemarin"}, headers=admin).status_code == 422
    assert client.get("/api/v1/audit", query_string={"household": H2, "actor": "ani"},
                      headers=admin).get_json()[0]["action"] == "household_read"
    # a search keeps the number's keyed hash, never the number
    client.post("/api/v1/households/search", json={"no_kk": KK2}, headers=ani.headers)
    searched = client.get("/api/v1/audit?action=household_searched", headers=admin).get_json()[0]
    assert searched["details"]["found"] == [H2]
    assert KK2 not in json.dumps(searched)
    assert len(searched["person"]) == 64


def test_bad_requests_get_the_error_shape(client, world):
    admin = world
    ani = login(client, "ani")
    for body in ({"nik": "12345"}, {"nik": BUDI, "no_kk": KK1}, {}, {"nik": ["x"]}):
        response = client.post("/api/v1/households/search", json=body, headers=admin)
        assert response.status_code == 422
        assert set(response.get_json()) >= {"code", "message", "errors"}
    assert client.post("/api/v1/people/erase", json={"nik": BUDI, "reason": "x"}, headers=ani).status_code == 403
    assert client.post("/api/v1/people/export", json={"nik": BUDI}, headers=ani).status_code == 403
    assert client.post(f"/api/v1/households/{H1}/erase", json={}, headers=admin).status_code == 422
    assert client.post("/api/v1/households/nope/erase", json={"reason": "r"}, headers=admin).status_code == 404
    assert client.post(f"/api/v1/households/{H3}/reveal", headers=ani).status_code == 404  # not her village


def test_only_the_central_server_erases(app, client, world):
    app.config["CENTRAL"] = False
    response = client.post(f"/api/v1/households/{H1}/erase", json={"reason": "r"}, headers=world)
    assert response.status_code == 409
    assert response.get_json()["code"] == "not_central"


# -- a household erased ------------------------------------------------------------------------------------
def test_erasing_a_household_reaches_devices_and_late_writes(app, client, world):
    admin = world
    ani = Device(client, "ani")
    first = visit(ani, A, H1, {"notes": "Siti sakit", "members": roster((M_SARI, "Sari Wulandari", SARI, "istri"))})
    ani.push([first])
    ani.pull_all()
    late = ani.edit(H1, {"notes": "Pindah ke kota"}, base=ani.base(H1, "notes"))
    supervisor = login(client, "supervisor")
    review = client.post(f"/api/v1/visits/{first['id']}/review", headers=supervisor,
                         json={"id": str(uuid.uuid4()), "state": "approved", "comment": "ok"})
    assert review.status_code == 200
    response = client.post(f"/api/v1/households/{H1}/erase", json={"reason": "keluarga meminta"}, headers=admin)
    assert response.status_code == 200, response.get_json()
    summary = response.get_json()["households"][0]
    assert (summary["erase"], summary["visits"]) == (["*"], 1)

    pulled = households_in(ani.pull_all())[H1]
    assert pulled["erased"] == ["*"]
    assert all(state["value"] is None for state in pulled["fields"].values())
    assert [r["status"] for r in ani.push([first, late])["results"]] == ["duplicate", "applied"]
    again = client.post("/api/v1/households/import", headers=admin, json={"rows": [
        {"no_kk": KK1, "nik": SITI, "nama": "Siti Aminah", "alamat": "Jl. Mawar 1", "kode_desa": A}]})
    assert again.get_json()["unchanged"] == 1, again.get_json()  # the register brings nothing back
    stored = everything_stored(app)
    for text in ("Siti Aminah", SITI, KK1, "Siti sakit", "Pindah ke kota", SARI):
        assert text not in stored, text
    assert fields_of(client, admin, H2)["head_name"]["value"] == "Rahmat Hidayat"
    got = client.get(f"/api/v1/visits/{first['id']}", headers=admin).get_json()
    assert got["answers"] == {}
    assert got["review_state"] == "approved"
    assert got["geotag"] is None
    history = client.get(f"/api/v1/households/{H1}/history", headers=admin).get_json()["history"]
    assert [e["type"] for e in history][-2:] == ["erasure", "household_edit"]
    assert history[-2]["note"].endswith("by admin")
    assert history[-2]["erase"] == ["*"]
    entry = client.get("/api/v1/audit?action=household_erased", headers=admin).get_json()[0]
    assert (entry["actor"], entry["household"], entry["details"]["reason"]) == ("admin", H1, "keluarga meminta")
    assert run("rebuild-households").exit_code == 0
    # the CLI erases too, after asking
    assert run("erase-household", H2, "--reason", "r", input="n\n").exit_code != 0
    done = run("erase-household", H2, "--reason", "pindah", "--yes")
    assert done.exit_code == 0
    assert f"erased household {H2}" in done.output
    assert "Rahmat Hidayat" not in everything_stored(app)
    assert run("erase-household", "nope", "--reason", "r", "--yes").exit_code == 1


# -- retention ---------------------------------------------------------------------------------------------
def test_apply_retention_dry_run_then_yes(app, client, world, monkeypatch):
    ani = Device(client, "ani")
    old, fresh = visit(ani, A, H1, {"notes": "Lama"}), visit(ani, A, H2, {"notes": "Baru"})
    ani.push([old, fresh])
    supervisor = login(client, "supervisor")
    for made in (old, fresh):
        client.post(f"/api/v1/visits/{made['id']}/review", headers=supervisor,
                    json={"id": str(uuid.uuid4()), "state": "approved", "comment": None})
    with app.app_context():
        store = get_store()
        doc = store.get("visits", old["id"])
        store.put("visits", {**doc, "review": {**doc["review"], "at": "2020-01-01T00:00:00.000Z"}})
        entry = store.find("audit", order_by="at", limit=1)[0]
        store.put("audit", {**entry, "at": "2019-01-01T00:00:00.000Z"})
    monkeypatch.setenv("KUNJUNG_RAW_BODY_RETENTION_DAYS", "30")
    dry = run("apply-retention")
    assert dry.exit_code == 0, dry.output
    assert "dry run: would remove the raw bodies of 1 visits" in dry.output
    assert old["id"] in dry.output
    assert "1 audit entries" in dry.output
    with app.app_context():
        assert "body" in get_store().get("events", old["id"])
    done = run("apply-retention", "--yes")
    assert "removed the raw bodies of 1 visits, 0 attachments and 1 audit entries" in done.output
    with app.app_context():
        store = get_store()
        assert "body" not in store.get("events", old["id"])
        assert "body" in store.get("events", fresh["id"])
    assert ani.push([old])["results"][0]["status"] == "duplicate"
    assert client.get(f"/api/v1/visits/{old['id']}", headers=world).get_json()["answers"] == {"notes": "Lama"}
    assert "0 visits" in run("apply-retention").output


# -- both backends -----------------------------------------------------------------------------------------
def test_erasure_search_and_audit_hold_on_both_backends(backend_app):
    client = backend_app.test_client()
    for name, role, villages in (("admin", "admin", []), ("ani", "officer", [A]), ("supervisor", "supervisor",
                                                                                  ["32.04.05"])):
        make_user(backend_app, name, role, villages)
    with backend_app.app_context():
        assert import_villages(get_store(), [square(A)]).counts["refused"] == 0
    admin = login(client, "admin")
    rows = [{"no_kk": KK1, "nik": SITI, "nama": "Siti Aminah", "kode_desa": A},
            {"no_kk": KK2, "nik": RAHMAT, "nama": "Rahmat Hidayat", "kode_desa": A}]
    assert client.post("/api/v1/households/import", headers=admin, json={"rows": rows}).status_code == 200
    ani = Device(client, "ani")
    edit = ani.edit(H1, {"head_name": "Siti A."})
    assert ani.push([edit])["results"][0]["status"] == "applied"
    ani.pull_all()
    found = client.post("/api/v1/households/search", json={"nik": SITI}, headers=login(client, "supervisor"))
    assert found.get_json()["items"][0]["household"]["fields"]["head_nik"]["value"] == {"masked": SITI[:6]}
    assert client.post(f"/api/v1/households/{H1}/erase", json={"reason": "r"}, headers=admin).status_code == 200
    assert households_in(ani.pull_all())[H1]["erased"] == ["*"]
    assert ani.push([edit])["results"][0]["status"] == "duplicate"
    assert client.post("/api/v1/households/search", json={"nik": SITI}, headers=admin).get_json()["items"] == []
    assert fields_of(client, admin, H2)["head_nik"]["value"] == RAHMAT
    actions = [e["action"] for e in client.get("/api/v1/audit", query_string={"household": H1},
                                                headers=admin).get_json()]
    assert "household_erased" in actions
    assert "pull" in actions
    assert client.post("/api/v1/audit/person", json={"nik": SITI}, headers=admin).get_json()["items"][0][
        "action"] == "household_searched"


def test_a_mask_anywhere_in_answers_or_writes_is_refused_and_only_a_whole_mask_counts():
    from types import MappingProxyType

    from server.privacy.masking import marker_errors

    rows = [{"_id": "r1", "nik": "3204"}, {"_id": "r2", "nik": {"masked": "320405"}}]
    assert list(marker_errors({"answers": {"members": rows, "note": "ok"}})) == ["answers.members.1.nik"]
    assert list(marker_errors({"set": {"no_kk": {"masked": "3204"}}})) == ["set.no_kk"]
    # a dict that also holds other keys is data, not a mask; nothing at all to refuse in plain answers
    assert marker_errors({"answers": {"x": {"masked": "1", "other": 2}, "y": [1, 2.5, True, None]}}) == {}
    # a mapping of another kind is walked as well, not waved through
    assert list(marker_errors({"set": MappingProxyType({"nik": MappingProxyType({"masked": "32"})})})) == ["set.nik"]
