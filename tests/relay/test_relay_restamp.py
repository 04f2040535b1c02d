"""Re-stamped events across nodes: a new id naming the old one (``restamp_of``), never two bodies under one id."""

from __future__ import annotations

import importlib.util
import json
import time
import uuid
from pathlib import Path

import pytest
from http_helpers import login, make_user
from relay_helpers import close, make_hall, node_app, sync_round
from sync_helpers import VILLAGE, Device, listed, publish_household_form, statuses

from server.relay.node import relay_state
from server.store import get_store
from sync import Record

_spec = importlib.util.spec_from_file_location("relay_reference_restamp",
                                               Path(__file__).parents[1] / "sync" / "reference.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


@pytest.fixture
def central(tmp_path):
    app = node_app(tmp_path, "central")
    make_user(app, "admin", "admin")
    make_user(app, "ani", "officer", [VILLAGE])
    publish_household_form(app.test_client())
    yield app
    close(app)


def ahead_hlc(minutes: int, counter: int = 1) -> str:
    return f"{int(time.time() * 1000) + minutes * 60_000:013d}-{counter:04d}"


def record_of(app, household_id):
    with app.app_context():
        store = get_store(app)
        doc = store.get("households", household_id)
        events = [d["engine"] for d in store.find("events", {"household_id": household_id}, order_by="seq")]
    return Record.from_document(doc["record"]), events


def test_an_event_restamped_at_one_node_travels_as_a_new_event_and_both_nodes_keep_one_write(tmp_path, central):
    # The hall's bound is tighter than central's: an event central took is too far ahead for the hall.
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE], CLOCK_SKEW_SECONDS=60)
    household = str(uuid.uuid4())
    at_central = Device(central.test_client(), "ani", device_id="phone-ani")
    at_hall = Device(hall.test_client(), "ani", device_id="phone-ani")
    first = {"id": str(uuid.uuid4()), "type": "household_edit", "device_id": "phone-ani", "hlc": ahead_hlc(3),
             "device_seq": 1, "household_id": household, "village": VILLAGE, "set": {"head_name": "Siti"}}
    assert statuses(at_central.push([first])) == ["applied"]
    refused = at_hall.push([first])["results"][0]
    assert refused["code"] == "clock_skew"
    again = {**first, "id": str(uuid.uuid4()), "restamp_of": first["id"], "hlc": ahead_hlc(0)}
    assert statuses(at_hall.push([again])) == ["applied"]
    report = sync_round(hall, link)
    assert report.sent_applied == 1
    assert report.received_applied == 1
    central_record, central_events = record_of(central, household)
    hall_record, hall_events = record_of(hall, household)
    assert sorted(e["id"] for e in central_events) == sorted(e["id"] for e in hall_events) == sorted(
        [first["id"], again["id"]])
    state = central_record.fields["head_name"]
    assert not state.in_conflict
    assert len(state.heads) == 1  # one write of the pair stands; the device order hides the other
    assert central_record.to_pull() == hall_record.to_pull()
    expected = reference.ref_fold(central_events)
    assert expected["fields"]["head_name"]["stamp"] == state.stamp
    assert not expected["fields"]["head_name"]["conflict"]
    close(hall)


def test_restamping_under_the_same_id_is_refused_upstream_and_the_hall_shows_why(tmp_path, central):
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE], CLOCK_SKEW_SECONDS=60)
    household = str(uuid.uuid4())
    at_central = Device(central.test_client(), "ani", device_id="phone-ani")
    at_hall = Device(hall.test_client(), "ani", device_id="phone-ani")
    first = {"id": str(uuid.uuid4()), "type": "household_edit", "device_id": "phone-ani", "hlc": ahead_hlc(3),
             "device_seq": 1, "household_id": household, "village": VILLAGE, "set": {"head_name": "Siti"}}
    at_central.push([first])
    assert at_hall.push([first])["results"][0]["code"] == "clock_skew"
    assert statuses(at_hall.push([{**first, "hlc": ahead_hlc(0)}])) == ["applied"]  # an older client
    report = sync_round(hall, link)
    assert report.refused_up == 1
    assert report.refused_down == 1
    with hall.app_context():
        refused = relay_state(get_store(hall))["refused"]
    assert {(r["direction"], r["code"]) for r in refused} == {("up", "id_reused"), ("down", "id_reused")}
    close(hall)


def test_restamp_of_must_name_another_event(central):
    phone = Device(central.test_client(), "ani")
    event = phone.edit(str(uuid.uuid4()), {"head_name": "Siti"})
    event["restamp_of"] = event["id"]
    result = phone.push([event])["results"][0]
    assert result["code"] == "invalid"
    assert "restamp_of" in result["errors"]


def visit_body(household: str, hlc: str, **extra) -> dict:
    # no geotag: the visit carries the no_geotag flag, so it is in the review queue too
    return {"id": str(uuid.uuid4()), "type": "visit", "device_id": "phone-ani", "hlc": hlc, "device_seq": 1,
            "form_id": "rumah_tangga_uji", "form_version": "1", "village": VILLAGE, "household_id": household,
            "started_at": "2026-11-22T02:50:00Z", "ended_at": "2026-11-22T03:00:00Z",
            "answers": {"head_name": "Siti"}, **extra}


def shown_visits(app, who: str) -> dict[str, list[str]]:
    """The visit ids a supervisor (or admin) is shown in the visit list, the review queue and an export."""
    client = app.test_client()
    headers = login(client, who)
    visits = [v["id"] for v in listed(client, "/api/v1/visits", headers)]
    queue = client.get("/api/v1/reports/review-queue", headers=headers, query_string={"kind": "visit"}).get_json()
    exported = client.get("/api/v1/exports/visits.geojson", headers=headers)
    assert exported.status_code == 200, exported.get_data()[:300]
    return {"visits": sorted(visits), "queue": sorted(item["id"] for item in queue["items"]),
            "queue_total": [queue["totals"]["visits"]],
            "export": sorted(f["id"] for f in json.loads(exported.data)["features"])}


def test_a_node_holding_a_visit_under_both_ids_shows_it_once_and_every_node_the_same_one(tmp_path, central):
    make_user(central, "supervisor", "supervisor", ["32.04.05"])
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE], CLOCK_SKEW_SECONDS=60)
    household = str(uuid.uuid4())
    at_central = Device(central.test_client(), "ani", device_id="phone-ani")
    at_hall = Device(hall.test_client(), "ani", device_id="phone-ani")
    first = visit_body(household, ahead_hlc(3))
    assert statuses(at_central.push([first])) == ["applied"]
    assert at_hall.push([first])["results"][0]["code"] == "clock_skew"
    again = {**first, "id": str(uuid.uuid4()), "restamp_of": first["id"], "hlc": ahead_hlc(0)}
    assert statuses(at_hall.push([again])) == ["applied"]
    assert shown_visits(hall, "supervisor")["visits"] == [again["id"]]
    sync_round(hall, link)
    # each node holds both visits and both events, and shows one: the one whose write stands
    # (same device and device_seq: the greater HLC, here the first)
    for app in (central, hall):
        with app.app_context():
            store = get_store(app)
            assert all(store.get("visits", v["id"]) for v in (first, again))
            assert all(store.get("events", v["id"]) for v in (first, again))
        assert shown_visits(app, "supervisor") == {"visits": [first["id"]], "queue": [first["id"]],
                                                   "queue_total": [1], "export": [first["id"]]}
    assert shown_visits(central, "admin")["queue_total"] == [1]
    client = hall.test_client()
    # the hidden one is still there by its own id (a link to it keeps working)
    assert client.get(f"/api/v1/visits/{again['id']}", headers=login(client, "supervisor")).status_code == 200
    close(hall)


@pytest.mark.parametrize("together", [False, True], ids=["two pushes", "one batch"])
def test_a_restamp_pushed_to_a_node_that_holds_the_first_id_is_shown_once(central, together):
    # the first id reached this node another way (a hall sent it up after the phone lost the answer),
    # or the phone that lost the answer to its first push sends both again in one batch
    make_user(central, "supervisor", "supervisor", ["32.04.05"])
    phone = Device(central.test_client(), "ani", device_id="phone-ani")
    household = str(uuid.uuid4())
    first = visit_body(household, ahead_hlc(0))
    again = {**first, "id": str(uuid.uuid4()), "restamp_of": first["id"], "hlc": ahead_hlc(1)}
    if together:
        assert statuses(phone.push([first, again])) == ["applied", "applied"]
    else:
        assert statuses(phone.push([first])) == ["applied"]
        assert statuses(phone.push([again])) == ["applied"]
    # here the re-stamp's HLC is the greater, so its write stands and it is the one shown
    assert shown_visits(central, "supervisor") == {"visits": [again["id"]], "queue": [again["id"]],
                                                   "queue_total": [1], "export": [again["id"]]}


def test_visit_totals_with_no_village_or_flag_filter_count_a_restamped_visit_once(central):
    # an admin's totals read every village: the hidden re-stamp is counted through its own declared query
    from server.visits import count_visits

    phone = Device(central.test_client(), "ani", device_id="phone-ani")
    first = visit_body(str(uuid.uuid4()), ahead_hlc(0))
    again = {**first, "id": str(uuid.uuid4()), "restamp_of": first["id"], "hlc": ahead_hlc(1)}
    other = visit_body(str(uuid.uuid4()), ahead_hlc(0))
    for visit in (first, again, other):
        assert statuses(phone.push([visit])) == ["applied"]
    with central.app_context():
        store = get_store(central)
        assert store.count("visits") == 3
        assert count_visits(store, {}) == 2
        assert count_visits(store, {"officer": "ani", "review_state": "pending"}) == 2
        assert count_visits(store, {"officer": "budi"}) == 0
        assert count_visits(store, {}, flag="any") == 2


def review_state(app, visit_id):
    with app.app_context():
        visit = get_store(app).get("visits", visit_id)
    return visit.get("review_state"), bool(visit.get("restamp_hidden"))


def test_a_review_made_on_the_hidden_twin_lands_on_the_visit_shown(central):
    # a supervisor follows an old link to the first id, which this node hides behind its re-stamp
    make_user(central, "supervisor", "supervisor", ["32.04.05"])
    phone = Device(central.test_client(), "ani", device_id="phone-ani")
    household = str(uuid.uuid4())
    first = visit_body(household, ahead_hlc(0))
    again = {**first, "id": str(uuid.uuid4()), "restamp_of": first["id"], "hlc": ahead_hlc(1)}
    for visit in (first, again):
        assert statuses(phone.push([visit])) == ["applied"]
    client = central.test_client()
    supervisor = login(client, "supervisor")
    review = {"id": str(uuid.uuid4()), "state": "needs_revision", "comment": "Foto rumah belum ada"}
    reviewed = client.post(f"/api/v1/visits/{first['id']}/review", json=review, headers=supervisor)
    assert reviewed.status_code == 200, reviewed.get_json()
    assert reviewed.get_json()["id"] == again["id"]
    assert review_state(central, again["id"]) == ("needs_revision", False)
    assert review_state(central, first["id"]) == ("pending", True)
    # the review queue (pending visits) no longer lists the pair, and the officer's phone gets the review
    assert shown_visits(central, "supervisor")["queue"] == []
    pulled = {c["id"]: c for c in phone.pull_all() if c["type"] == "visit"}
    assert pulled[again["id"]]["review"]["state"] == "needs_revision"
    assert client.post(f"/api/v1/visits/{first['id']}/review", json=review, headers=supervisor).status_code == 200


def test_a_review_of_one_twin_follows_the_visit_every_node_shows(tmp_path, central):
    # the hall shows the re-stamp and its supervisor reviews it there; central shows the first id, whose
    # write stands: the review must be on the first id's visit at both nodes once they hold both
    make_user(central, "supervisor", "supervisor", ["32.04.05"])
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE], CLOCK_SKEW_SECONDS=60)
    household = str(uuid.uuid4())
    at_central = Device(central.test_client(), "ani", device_id="phone-ani")
    at_hall = Device(hall.test_client(), "ani", device_id="phone-ani")
    first = visit_body(household, ahead_hlc(3))
    assert statuses(at_central.push([first])) == ["applied"]
    assert at_hall.push([first])["results"][0]["code"] == "clock_skew"
    again = {**first, "id": str(uuid.uuid4()), "restamp_of": first["id"], "hlc": ahead_hlc(0)}
    assert statuses(at_hall.push([again])) == ["applied"]
    client = hall.test_client()
    review = {"id": str(uuid.uuid4()), "state": "approved", "comment": None}
    reviewed = client.post(f"/api/v1/visits/{again['id']}/review", json=review, headers=login(client, "supervisor"))
    assert reviewed.status_code == 200, reviewed.get_json()
    assert review_state(hall, again["id"]) == ("approved", False)
    report = sync_round(hall, link)
    assert report.refused_up == 0
    assert report.refused_down == 0
    for app in (central, hall):
        assert review_state(app, first["id"]) == ("approved", False)
        assert shown_visits(app, "supervisor")["queue"] == []
    assert review_state(central, again["id"])[1] is True
    assert review_state(hall, again["id"])[1] is True
    pulled = {c["id"]: c for c in at_central.pull_all() if c["type"] == "visit"}
    assert pulled[first["id"]]["review"]["state"] == "approved"
    close(hall)


def test_a_resolution_naming_the_hidden_twin_supersedes_the_visit_shown(central):
    # the supervisor saw the conflict before the re-stamp arrived: the heads she names are the first id's
    make_user(central, "supervisor", "supervisor", ["32.04.05"])
    phone = Device(central.test_client(), "ani", device_id="phone-ani")
    other = Device(central.test_client(), "ani", device_id="phone-ani-2")
    household = str(uuid.uuid4())
    first = visit_body(household, ahead_hlc(0))
    assert statuses(phone.push([first])) == ["applied"]
    assert statuses(other.push([other.edit(household, {"head_name": "Lain"})])) == ["applied"]
    client = central.test_client()
    supervisor = login(client, "supervisor")
    conflict = client.get("/api/v1/conflicts", headers=supervisor).get_json()["items"][0]
    seen = [head["stamp"] for head in conflict["heads"]]
    again = {**first, "id": str(uuid.uuid4()), "restamp_of": first["id"], "hlc": ahead_hlc(1)}
    assert statuses(phone.push([again])) == ["applied"]
    now = client.get("/api/v1/conflicts", headers=supervisor).get_json()["items"][0]
    assert any(again["id"] in head["stamp"] for head in now["heads"])
    resolved = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=supervisor,
                           json={"id": str(uuid.uuid4()), "value": "Siti Aminah", "heads": seen})
    assert resolved.status_code == 200, resolved.get_json()
    assert resolved.get_json()["in_conflict"] is False
    assert resolved.get_json()["value"] == "Siti Aminah"
    assert client.get("/api/v1/conflicts", headers=supervisor).get_json()["items"] == []
    fields = {c["id"]: c for c in phone.pull_all() if c["type"] == "household"}[household]["fields"]
    assert fields["head_name"]["value"] == "Siti Aminah"
    assert "heads" not in fields["head_name"]
