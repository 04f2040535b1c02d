"""Visits with forms and geotags, supervisor reviews, conflict resolution and household history, through HTTP."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner
from http_helpers import login, make_user
from sync_helpers import VILLAGE, Device, households_in, listed, statuses

from server.cli import cli
from server.store import get_store

FORM = {
    "settings": {"form_id": "verval_mini", "version": "1", "title": {"id": "Verval mini", "en": "Mini check"},
                 "default_language": "id"},
    "fields": [
        {"type": "text", "name": "head_name", "label": {"id": "Nama kepala keluarga", "en": "Head of family"},
         "required": True, "save_to": "head_name"},
        {"type": "integer", "name": "floor_area", "label": {"id": "Luas lantai", "en": "Floor area"},
         "constraint": ". > 0", "save_to": "floor_area"},
        {"type": "repeat", "name": "members", "label": {"id": "Anggota", "en": "Members"}, "save_to": "members",
         "fields": [{"type": "text", "name": "member_name", "label": {"id": "Nama", "en": "Name"},
                     "save_to": "name"}]},
    ],
    "choices": {},
}

# A square village around (-7.0, 107.6), about 2.2 km a side.
BOUNDARY = {"type": "FeatureCollection", "features": [{
    "type": "Feature", "properties": {"code": VILLAGE, "name": "Desa Contoh"},
    "geometry": {"type": "Polygon", "coordinates": [[[107.59, -7.01], [107.61, -7.01], [107.61, -6.99],
                                                      [107.59, -6.99], [107.59, -7.01]]]}}]}



@pytest.fixture
def app(backend_app):
    """Every scenario here runs on SQLite and on the MongoDB stand-in."""
    return backend_app

@pytest.fixture
def setup(app, client, users):
    return prepare(app, client)


def prepare(app, client):
    """Users, the mini form published to all villages, and the village boundary."""
    make_user(app, "citra", "officer", [VILLAGE])
    admin = login(client, "admin")
    assert client.post("/api/v1/forms", json=FORM, headers=admin).status_code == 201
    assert client.post("/api/v1/forms/verval_mini/versions/1/publish", headers=admin).status_code == 200
    assert client.put("/api/v1/forms/verval_mini/assignment", json={"all": True}, headers=admin).status_code == 200
    imported = client.post("/api/v1/villages", json=BOUNDARY, headers=admin)
    assert imported.status_code in (200, 201), imported.get_json()
    return app


def visit(device: Device, household: str, answers: dict, *, lat=-7.0, lon=107.6, **extra) -> dict:
    event = {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
             "form_id": "verval_mini", "form_version": "1", "village": VILLAGE, "household_id": household,
             "geotag": {"lat": lat, "lon": lon, "accuracy_m": 8, "captured_at": "2026-11-22T03:00:00Z"},
             "started_at": "2026-11-22T02:50:00Z", "ended_at": "2026-11-22T03:00:00Z", "answers": answers}
    event.update(extra)
    return event


def test_a_visit_writes_its_save_to_fields_into_the_household(client, setup):
    ani = Device(client, "ani")
    household, member = str(uuid.uuid4()), str(uuid.uuid4())
    reply = ani.push([visit(ani, household, {"head_name": "Siti", "floor_area": 36,
                                             "members": [{"_id": member, "member_name": "Rahmat"}]})])
    assert statuses(reply) == ["applied"]
    assert "flags" not in reply["results"][0]
    fields = households_in(ani.pull_all())[household]["fields"]
    assert fields["head_name"]["value"] == "Siti"
    assert fields["floor_area"]["value"] == 36
    assert fields[f"members/{member}/name"]["value"] == "Rahmat"


def test_a_visit_outside_the_village_is_accepted_and_flagged_with_the_distance(client, setup):
    ani = Device(client, "ani")
    # 0.01 degree of longitude east of the boundary at latitude -7: about 1.1 km
    reply = ani.push([visit(ani, str(uuid.uuid4()), {"head_name": "Jauh"}, lon=107.62)])
    result = reply["results"][0]
    assert result["status"] == "applied"
    flag = next(f for f in result["flags"] if f["code"] == "outside_village")
    assert 1050 < flag["distance_m"] < 1160
    supervisor = login(client, "supervisor")
    flagged = listed(client, "/api/v1/visits", supervisor, flag="outside_village")
    assert [v["id"] for v in flagged] == [result["id"]]


def test_failed_constraint_and_missing_answer_are_flagged_not_rejected(client, setup):
    ani = Device(client, "ani")
    result = ani.push([visit(ani, str(uuid.uuid4()), {"floor_area": -3})])["results"][0]
    assert result["status"] == "applied"
    assert {"constraint_failed", "required_missing"} <= {f["code"] for f in result["flags"]}


@pytest.mark.parametrize(("change", "path"), [
    ({"form_version": "99"}, "form_version"),
    ({"answers": {"floor_area": {"$gt": 0}}}, "answers.floor_area"),
    ({"answers": {"$where": "1"}}, "answers"),
    ({"geotag": {"lat": 91, "lon": 107.6, "accuracy_m": 5, "captured_at": "2026-11-22T03:00:00Z"}}, "geotag"),
    ({"village": "3204052001"}, "village"),
])
def test_a_visit_that_cannot_be_stored_is_rejected_with_the_path(client, setup, change, path):
    ani = Device(client, "ani")
    event = visit(ani, str(uuid.uuid4()), {"head_name": "X"})
    event.update(change)
    result = ani.push([event])["results"][0]
    assert result["status"] == "rejected"
    assert result["code"] == "invalid"
    assert any(key == path or key.startswith(path) for key in result["errors"]), result["errors"]


def test_a_review_reaches_the_officer_on_the_next_pull_and_a_revision_supersedes(client, setup):
    ani = Device(client, "ani")
    household = str(uuid.uuid4())
    first = visit(ani, household, {"head_name": "Siti"})
    ani.push([first])
    ani.pull_all()
    supervisor = login(client, "supervisor")
    review = {"id": str(uuid.uuid4()), "state": "needs_revision", "comment": "Luas lantai belum diisi"}
    reviewed = client.post(f"/api/v1/visits/{first['id']}/review", json=review, headers=supervisor)
    assert reviewed.status_code == 200
    assert reviewed.get_json()["review_state"] == "needs_revision"
    again = client.post(f"/api/v1/visits/{first['id']}/review", json=review, headers=supervisor)
    assert again.status_code == 200  # idempotent by the client-made id
    reused = client.post(f"/api/v1/visits/{first['id']}/review", json={**review, "state": "approved"},
                         headers=supervisor)
    assert reused.status_code == 409
    pulled = [c for c in ani.pull_all() if c["type"] == "visit"]
    assert len(pulled) == 1
    assert pulled[0]["id"] == first["id"]
    assert pulled[0]["review"]["state"] == "needs_revision"
    assert pulled[0]["review"]["comment"] == "Luas lantai belum diisi"
    assert pulled[0]["review"]["by"] == "supervisor"
    revision = visit(ani, household, {"head_name": "Siti", "floor_area": 40}, supersedes=first["id"])
    result = ani.push([revision])["results"][0]
    assert result["status"] == "applied"
    assert "flags" not in result
    earlier = client.get(f"/api/v1/visits/{first['id']}", headers=supervisor).get_json()
    assert earlier["superseded_by"] == revision["id"]
    # an officer may not review, nor see another officer's visit
    assert client.post(f"/api/v1/visits/{first['id']}/review", json={**review, "id": str(uuid.uuid4())},
                       headers=ani.headers).status_code == 403
    assert client.get(f"/api/v1/visits/{first['id']}", headers=login(client, "citra")).status_code == 404


def test_supervisor_of_another_kecamatan_cannot_review(app, client, setup):
    make_user(app, "sup2", "supervisor", ["32.04.06"])
    ani = Device(client, "ani")
    event = visit(ani, str(uuid.uuid4()), {"head_name": "Siti"})
    ani.push([event])
    response = client.post(f"/api/v1/visits/{event['id']}/review", headers=login(client, "sup2"),
                           json={"id": str(uuid.uuid4()), "state": "approved"})
    assert response.status_code == 404


def _conflict(client, ani, citra, household):
    ani.push([ani.edit(household, {"head_name": "Awal"})])
    ani.pull_all()
    citra.pull_all()
    base = ani.base(household, "head_name")
    ani.push([ani.edit(household, {"head_name": "Versi Ani"}, base)])
    citra.push([citra.edit(household, {"head_name": "Versi Citra"}, base)])
    conflicts = listed(client, "/api/v1/conflicts", login(client, "supervisor"))
    assert len(conflicts) == 1
    return conflicts[0]


def test_supervisor_resolves_a_conflict_once_however_often_the_request_is_sent(client, setup):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    conflict = _conflict(client, ani, citra, household)
    supervisor = login(client, "supervisor")
    body = {"id": str(uuid.uuid4()), "value": "Versi Citra", "heads": [h["stamp"] for h in conflict["heads"]]}
    resolved = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", json=body, headers=supervisor)
    assert resolved.status_code == 200, resolved.get_json()
    assert resolved.get_json()["value"] == "Versi Citra"
    assert resolved.get_json()["in_conflict"] is False
    repeat = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", json=body, headers=supervisor)
    assert repeat.get_json() == resolved.get_json()
    assert listed(client, "/api/v1/conflicts", supervisor) == []
    fields = households_in(ani.pull_all())[household]["fields"]
    assert fields["head_name"]["value"] == "Versi Citra"
    assert "heads" not in fields["head_name"]
    assert client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=ani.headers,
                       json={**body, "id": str(uuid.uuid4())}).status_code == 403


def test_a_resolution_racing_a_new_offline_write_leaves_the_field_in_conflict(client, setup):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    conflict = _conflict(client, ani, citra, household)
    seen = [h["stamp"] for h in conflict["heads"]]
    # citra, still offline, edits again over her own value
    citra.push([citra.edit(household, {"head_name": "Versi Citra 2"},
                           {"head_name": [h["stamp"] for h in conflict["heads"] if h["officer"] == "citra"]})])
    supervisor = login(client, "supervisor")
    body = {"id": str(uuid.uuid4()), "value": "Versi Ani", "heads": seen}
    resolved = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", json=body, headers=supervisor).get_json()
    assert resolved["in_conflict"] is True
    assert resolved["conflict_id"] != conflict["id"]
    assert sorted(h["value"] for h in resolved["heads"]) == ["Versi Ani", "Versi Citra 2"]
    open_now = listed(client, "/api/v1/conflicts", supervisor)
    assert [c["id"] for c in open_now] == [resolved["conflict_id"]]


def test_resolution_naming_unknown_heads_is_422(client, setup):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    conflict = _conflict(client, ani, citra, str(uuid.uuid4()))
    response = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=login(client, "supervisor"),
                           json={"id": str(uuid.uuid4()), "value": "x",
                                 "heads": ["1763790000000-0001/ghost/event-1"]})
    assert response.status_code == 422
    assert "heads" in response.get_json()["errors"]


def test_household_history_lists_every_change(client, setup):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    ani.push([visit(ani, household, {"head_name": "Siti"})])
    citra.push([citra.edit(household, {"address": "RT 03"})])
    body = client.get(f"/api/v1/households/{household}", headers=login(client, "supervisor")).get_json()
    assert [(h["type"], h["officer"]) for h in body["history"]] == [("visit", "ani"), ("household_edit", "citra")]
    assert body["history"][0]["writes"] == {"head_name": "Siti"}
    # one shape of a household's history, here and at /history
    history = client.get(f"/api/v1/households/{household}/history", headers=login(client, "supervisor")).get_json()
    assert history["history"] == body["history"]
    assert body["history"][1]["changes"] == [{"field": "address", "before": None, "after": "RT 03", "changed": True,
                                              "in_conflict": False}]
    assert body["fields"]["address"]["value"] == "RT 03"
    assert client.get(f"/api/v1/households/{household}", headers=login(client, "budi")).status_code == 404
    households = listed(client, "/api/v1/households", login(client, "supervisor"), village=VILLAGE)
    assert [h["id"] for h in households] == [household]
    assert client.get("/api/v1/households", headers=login(client, "budi"),
                      query_string={"village": VILLAGE}).status_code == 404


def test_rebuild_households_finds_no_difference_then_reports_a_tampered_one(app_factory, monkeypatch):
    """Through the CLI, which opens the store by URL: so on SQLite."""
    app = app_factory()
    client = app.test_client()
    for name, role, villages in (("admin", "admin", []), ("supervisor", "supervisor", ["32.04.05"]),
                                 ("ani", "officer", [VILLAGE])):
        make_user(app, name, role, villages)
    prepare(app, client)

    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    _conflict(client, ani, citra, household)
    ani.push([visit(ani, str(uuid.uuid4()), {"head_name": "Lain"})])
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY", app.config["SECRET_KEY"])
    clean = CliRunner().invoke(cli, ["rebuild-households"])
    assert clean.exit_code == 0, clean.output
    assert "2 households checked, 0 differ" in clean.output
    with app.app_context():
        store = get_store()
        doc = store.get("households", household)
        doc["record"]["fields"]["head_name"]["heads"] = doc["record"]["fields"]["head_name"]["heads"][:1]
        store.put("households", doc)
    dirty = CliRunner().invoke(cli, ["rebuild-households"])
    assert dirty.exit_code == 1
    assert household in dirty.output
    fixed = CliRunner().invoke(cli, ["rebuild-households", "--fix"])
    assert "1 fixed" in fixed.output
    assert CliRunner().invoke(cli, ["rebuild-households"]).exit_code == 0


@pytest.mark.parametrize("value", [{"$set": 1}, 2**70, "x" * 20_000])
def test_a_resolution_value_no_store_can_hold_is_422(client, setup, value):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    conflict = _conflict(client, ani, citra, str(uuid.uuid4()))
    response = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=login(client, "supervisor"),
                           json={"id": str(uuid.uuid4()), "value": value,
                                 "heads": [h["stamp"] for h in conflict["heads"]]})
    assert response.status_code == 422
    assert response.get_json()["code"] == "invalid"
    assert len(listed(client, "/api/v1/conflicts", login(client, "supervisor"))) == 1


def test_resolutions_reviews_and_imports_are_server_events_stamped_by_the_node_above_their_base(app, client, setup):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    conflict = _conflict(client, ani, citra, household)
    supervisor = login(client, "supervisor")
    heads = [h["stamp"] for h in conflict["heads"]]
    resolution = {"id": str(uuid.uuid4()), "value": "Versi Ani", "heads": heads}
    assert client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", json=resolution,
                       headers=supervisor).status_code == 200
    seen = visit(ani, str(uuid.uuid4()), {"head_name": "Siti"})
    ani.push([seen])
    review = {"id": str(uuid.uuid4()), "state": "approved"}
    assert client.post(f"/api/v1/visits/{seen['id']}/review", json=review, headers=supervisor).status_code == 200
    rows = [{"no_kk": "3204050101200001", "nama": "Dari Register", "kode_desa": VILLAGE}]
    assert client.post("/api/v1/households/import", json={"rows": rows},
                       headers=login(client, "admin")).get_json()["created"] == 1
    with app.app_context():
        store = get_store()
        node = store.get("server_state", "node")["device_id"]
        made = {doc["type"]: doc for doc in store.iterate("events") if doc["type"] in ("resolution", "review",
                                                                                        "import")}
    assert set(made) == {"resolution", "review", "import"}
    for doc in made.values():
        engine = doc["engine"]
        assert (engine["origin"], engine["device_id"], doc["device_id"]) == ("server", node, node)
        assert doc["received_at"] == engine["at"]
    assert made["resolution"]["engine"]["base"] == {"head_name": sorted(heads)}
    assert made["resolution"]["engine"]["hlc"] > max(h.split("/")[0] for h in heads)
    assert made["review"]["visit_id"] == seen["id"]
    assert made["review"]["engine"]["set"]["review"]["at"] == made["review"]["engine"]["at"]


def test_visits_filtered_by_flag_page_like_every_list_and_match_the_review_queue(client, setup):
    ani = Device(client, "ani")
    far = [visit(ani, str(uuid.uuid4()), {"head_name": f"Jauh {n}"}, lon=107.62) for n in range(3)]
    near = visit(ani, str(uuid.uuid4()), {"head_name": "Dekat"})
    ani.push([*far, near])
    supervisor = login(client, "supervisor")
    pages, after, found = 0, None, []
    while True:
        body = client.get("/api/v1/visits", headers=supervisor, query_string={
            "flag": "outside_village", "limit": 1, **({"after": after} if after else {})}).get_json()
        pages += 1
        found.extend(v["id"] for v in body["items"])
        after = body["next"]
        if after is None:
            break
    assert sorted(found) == sorted(v["id"] for v in far)
    assert found == sorted(found)
    assert pages == 3
    queue = client.get("/api/v1/reports/review-queue", headers=supervisor,
                       query_string={"kind": "visit", "flag": "outside_village"}).get_json()
    assert [item["id"] for item in queue["items"]] == found
    assert queue["totals"]["visits"] == 3
    # officers see only their own, whatever they ask for
    citra = login(client, "citra")
    assert listed(client, "/api/v1/visits", citra, officer="ani") == []
    assert len(listed(client, "/api/v1/visits", ani.headers)) == 4


def test_a_batch_stores_each_visit_before_its_event_and_one_revision_of_two_wins_in_push_order(app, client, setup):
    # A store without transactions, cut short between the two, must never hold an event without its visit:
    # the push writes every visit of a batch first, then the events.
    ani = Device(client, "ani")
    households = [str(uuid.uuid4()) for _ in range(4)]
    batch = [visit(ani, household, {"head_name": f"Kepala {n}", "floor_area": 30 + n})
             for n, household in enumerate(households)]
    assert statuses(ani.push(batch)) == ["applied"] * 4
    with app.app_context():
        store = get_store()
        events = [store.get("events", event["id"]) for event in batch]
        visits = [store.get("visits", event["id"]) for event in batch]
    assert [v["household_id"] for v in visits] == households
    assert max(v["seq"] for v in visits) < min(e["seq"] for e in events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)  # each kind in push order
    # Two revisions of one visit in one batch: both are kept, the later names itself on the visit it replaces.
    first = batch[0]
    revisions = [visit(ani, households[0], {"head_name": name, "floor_area": 31}, supersedes=first["id"])
                 for name in ("Siti A.", "Siti B.")]
    assert statuses(ani.push(revisions)) == ["applied", "applied"]
    with app.app_context():
        assert get_store().get("visits", first["id"])["superseded_by"] == revisions[1]["id"]
