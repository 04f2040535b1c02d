"""A hall's rounds with the central server: clocks, cuts mid-round, gap-free feeds, revocation, the CLI."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from click.testing import CliRunner
from http_helpers import login, make_user
from relay_helpers import close, make_hall, sync_round
from sync_helpers import OTHER_VILLAGE, VILLAGE, Device, statuses

from server.cli import cli
from server.relay.feed import feed_page
from server.relay.node import RelayError, hall_status, relay_state
from server.store import get_store
from server.syncing import cursor_codec


def household_state(app, household_id):
    with app.app_context():
        doc = get_store(app).get("households", household_id)
    return None if doc is None else doc["record"]


def event_ids(app):
    with app.app_context():
        return sorted(doc["id"] for doc in get_store(app).find("events", order_by="id", limit=10_000))


def test_a_hall_whose_clock_is_off_refuses_pushes_and_says_why_until_it_is_right(tmp_path, central, monkeypatch):
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE])
    ani = Device(hall.test_client(), "ani")
    ahead = lambda: int(time.time() * 1000) + 3_600_000  # noqa: E731 - the laptop runs an hour fast
    report = sync_round(hall, link, wall=ahead)
    assert report.clock_gap_ms < -3_000_000
    refused = ani.client.post("/api/v1/sync/push", headers=ani.headers,
                              json={"device_id": ani.device_id, "events": [ani.edit(str(uuid.uuid4()), {"x": 1})]})
    assert refused.status_code == 503
    assert refused.get_json()["code"] == "hall_clock_skew"
    assert "ahead" in refused.get_json()["message"]
    with hall.app_context():
        stored = relay_state(get_store(hall))["clock_refusal"]
    assert stored.startswith("The hall's clock is ")
    assert "Jam" not in stored
    in_indonesian = ani.client.post("/api/v1/sync/push", headers={**ani.headers, "Accept-Language": "id"},
                                    json={"device_id": ani.device_id, "events": []}).get_json()["message"]
    assert in_indonesian.startswith("Jam laptop balai")
    assert "lebih cepat" in in_indonesian
    supervisor = login(hall.test_client(), "supervisor")
    status = hall.test_client().get("/api/v1/relay/status", headers={**supervisor, "Accept-Language": "id"})
    assert status.status_code == 200, status.get_json()
    assert status.get_json()["clock_refusal"] == in_indonesian
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", hall.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY_FILE", hall.config["SECRET_KEY_FILE"])
    shown = CliRunner().invoke(cli, ["relay", "status"], env={"KUNJUNG_LANG": "id"}, catch_exceptions=False)
    assert in_indonesian in shown.output
    shown = CliRunner().invoke(cli, ["relay", "status"], env={"KUNJUNG_LANG": "en"}, catch_exceptions=False)
    assert stored in shown.output
    sync_round(hall, link)  # the clock was set right
    assert statuses(ani.push([ani.edit(str(uuid.uuid4()), {"head_name": "Siti"})])) == ["applied"]
    close(hall)


def test_a_round_cut_after_upstream_took_the_events_resends_them_as_duplicates(tmp_path, central):
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE])
    ani = Device(hall.test_client(), "ani")
    household = str(uuid.uuid4())
    ani.push([ani.edit(household, {"head_name": "Siti"}), ani.edit(household, {"notes": "pagi"})])
    link.lose_reply_of = "POST /api/v1/relay/events"
    with pytest.raises(RelayError):
        sync_round(hall, link)
    taken = household_state(central, household)
    assert taken is not None  # upstream took them; the hall never heard
    report = sync_round(hall, link)
    assert report.sent == 2
    assert report.sent_applied == 0  # both duplicate: nothing folded twice
    assert household_state(central, household) == taken
    with hall.app_context():
        assert relay_state(get_store(hall))["refused"] == []
    close(hall)


def test_a_round_cut_while_coming_down_resumes_from_the_last_page_taken(tmp_path, central):
    client = central.test_client()
    budi_at_central = Device(client, "supervisor")
    made = [budi_at_central.edit(str(uuid.uuid4()), {"head_name": f"H{n}"}) for n in range(7)]
    assert statuses(budi_at_central.push(made)) == ["applied"] * 7
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE])
    assert event_ids(hall) == sorted(e["id"] for e in made)
    # a hall made before those events, cut between feed pages, ends with every event once
    later = [budi_at_central.edit(str(uuid.uuid4()), {"head_name": f"L{n}"}) for n in range(5)]
    budi_at_central.push(later)
    from server.relay import node as node_module

    previous = node_module.DOWN_PAGE
    node_module.DOWN_PAGE = 2
    try:
        link.cut_after = 4  # hello, set-up, two feed pages; then the link drops
        with pytest.raises(RelayError):
            sync_round(hall, link)
        assert 0 < len(event_ids(hall)) - 7 < 5
        with hall.app_context():
            assert hall_status(get_store(hall))["waiting_down"] == 5  # as the round's hello found it
        link.down, link.cut_after = False, None
        sync_round(hall, link)
        with hall.app_context():
            assert hall_status(get_store(hall))["waiting_down"] == 0
    finally:
        node_module.DOWN_PAGE = previous
    assert event_ids(hall) == sorted(e["id"] for e in made + later)
    for event in later:
        assert household_state(hall, event["household_id"]) == household_state(central, event["household_id"])
    close(hall)


def test_the_feed_never_passes_an_event_still_being_written(central):
    """A push that took its sequence number but has not committed holds the feed back (on SQLite
    every other writer waits for it, so the feed is read directly, as the endpoint reads it)."""
    phone = Device(central.test_client(), "ani")
    first = phone.edit(str(uuid.uuid4()), {"head_name": "Awal"})
    phone.push([first])
    with central.app_context():
        store, codec = get_store(central), cursor_codec()

        def page(cursor):
            return feed_page(store, codec, peer="balai", villages=[VILLAGE], skip_node=None, node_id="central",
                             cursor=cursor, limit=100)

        start = page(None)
        assert [item["event"]["id"] for item in start["items"]] == [first["id"]]
        allocated, release = threading.Event(), threading.Event()

        def pause(seq):
            if threading.current_thread().name == "slow-push":
                allocated.set()
                assert release.wait(10)

        slow_event = phone.edit(str(uuid.uuid4()), {"head_name": "Lambat"})
        store.hooks.after_allocate = pause
        slow = threading.Thread(target=lambda: phone.push([slow_event]), name="slow-push")
        slow.start()
        try:
            assert allocated.wait(10)
            during = page(start["next"])
            assert during["items"] == []
        finally:
            release.set()
            slow.join(10)
            store.hooks.after_allocate = None
        after = page(during["next"])
    assert [item["event"]["id"] for item in after["items"]] == [slow_event["id"]]


def test_a_disabled_officer_or_revoked_device_stops_working_at_the_hall_on_its_next_round(tmp_path, central):
    make_user(central, "citra", "officer", [VILLAGE])
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE])
    hall_client = hall.test_client()
    ani = Device(hall_client, "ani")
    citra = Device(hall_client, "citra")
    central_client = central.test_client()
    Device(central_client, "ani", device_id=ani.device_id)  # the phone is known centrally too
    admin = login(central_client, "admin")
    assert central_client.patch("/api/v1/users/citra", json={"disabled": True}, headers=admin).status_code == 200
    make_user(central, "eka", "officer", [VILLAGE])
    sync_round(hall, link)
    eka = Device(hall_client, "eka")
    # eka moves to a village the hall does not serve: her account stops working here
    assert central_client.patch("/api/v1/users/eka", json={"villages": [OTHER_VILLAGE]},
                                headers=admin).status_code == 200
    assert central_client.post(f"/api/v1/users/ani/devices/{ani.device_id}/revoke",
                               headers=admin).status_code == 200
    sync_round(hall, link)
    assert ani.client.get("/api/v1/sync/pull", headers=ani.headers).status_code == 401
    assert citra.client.get("/api/v1/sync/pull", headers=citra.headers).status_code == 401
    assert eka.client.get("/api/v1/sync/pull", headers=eka.headers).status_code == 401
    refused = hall_client.post("/api/v1/auth/login", json={"username": "ani", "password": "correct horse battery",
                                                           "device_id": ani.device_id})
    assert refused.status_code == 403
    # budi works elsewhere: the hall never had his account
    assert hall_client.post("/api/v1/auth/login", json={"username": "budi",
                                                        "password": "correct horse battery"}).status_code == 401
    close(hall)


def test_a_hall_token_reaches_only_the_halls_villages(tmp_path, central):
    make_user(central, "dewi", "officer", [VILLAGE, OTHER_VILLAGE])
    hall, _link = make_hall(tmp_path, central, "balai", [VILLAGE])
    dewi = Device(hall.test_client(), "dewi")
    reply = dewi.push([dewi.edit(str(uuid.uuid4()), {"head_name": "X"}, village=OTHER_VILLAGE),
                       dewi.edit(str(uuid.uuid4()), {"head_name": "Y"})])
    assert statuses(reply) == ["rejected", "applied"]
    assert reply["results"][0]["code"] == "out_of_scope"
    close(hall)


def test_a_hall_that_gains_a_village_receives_its_history(tmp_path, central):
    budi = Device(central.test_client(), "budi")
    old = budi.edit(str(uuid.uuid4()), {"head_name": "Lama"}, village=OTHER_VILLAGE)
    budi.push([old])
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE])
    assert old["id"] not in event_ids(hall)
    with central.app_context():
        store = get_store(central)
        doc = store.get("relay_halls", "balai")
        store.put("relay_halls", {**doc, "villages": sorted([VILLAGE, OTHER_VILLAGE])})
    sync_round(hall, link)
    assert old["id"] in event_ids(hall)
    assert household_state(hall, old["household_id"]) == household_state(central, old["household_id"])
    close(hall)


def test_the_cli_makes_and_revokes_credentials_and_a_hall_reports_its_status(env, tmp_path):
    runner = CliRunner()
    made = runner.invoke(cli, ["relay", "credential", "--name", "balai", "--village", VILLAGE],
                         catch_exceptions=False)
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    assert token.startswith("khall.balai.")
    listed = runner.invoke(cli, ["relay", "halls"], catch_exceptions=False)
    assert "balai\tactive\tlast contact never" in listed.output
    assert runner.invoke(cli, ["relay", "revoke", "balai"]).exit_code == 0
    assert "revoked" in runner.invoke(cli, ["relay", "halls"]).output
    assert runner.invoke(cli, ["relay", "revoke", "nobody"]).exit_code != 0
    bad = runner.invoke(cli, ["relay", "credential", "--name", "b", "--village", "32.04"])
    assert bad.exit_code != 0
    assert "village" in bad.output
    # this store is no hall: status and sync say so
    status = runner.invoke(cli, ["relay", "status"])
    assert status.exit_code != 0
    assert "not a hall" in status.output
    unreachable = runner.invoke(cli, ["relay", "init", "--upstream", "http://127.0.0.1:9", "--credential", token])
    assert unreachable.exit_code != 0
    shown = runner.invoke(cli, ["relay", "status", "--json"], catch_exceptions=False)
    assert json.loads(shown.output)["last_error"]["code"] == "unreachable"


def test_a_hall_never_erases_only_the_central_server_does(tmp_path, central, monkeypatch):
    ani = Device(central.test_client(), "ani")
    household = str(uuid.uuid4())
    assert statuses(ani.push([ani.edit(household, {"head_name": "Siti"})])) == ["applied"]
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE])
    sync_round(hall, link)
    before = household_state(hall, household)
    assert before is not None
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", hall.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY_FILE", hall.config["SECRET_KEY_FILE"])
    refused = CliRunner().invoke(cli, ["erase-household", household, "--reason", "permintaan", "--yes"])
    assert refused.exit_code != 0
    assert "Only the central server erases" in refused.output
    assert "Siti" in json.dumps(before)
    assert household_state(hall, household) == before  # nothing was erased at the hall
    close(hall)
