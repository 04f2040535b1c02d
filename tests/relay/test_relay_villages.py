"""A hall that loses a village: its work for it still goes up, then the laptop drops what it held of it."""

from __future__ import annotations

import json
import time
import uuid

from click.testing import CliRunner
from http_helpers import login
from relay_helpers import SKEW_MS, close, make_hall, sync_round
from sync_helpers import OTHER_VILLAGE, VILLAGE, Device, statuses

from server.cli import cli
from server.relay.halls import late_work
from server.relay.node import hall_node, hall_status
from server.store import get_store


def held(app, village):
    """What a node holds of one village, collection by collection."""
    with app.app_context():
        store = get_store(app)
        return {name: sorted(d["id"] for d in store.find(name, {"village": village}, limit=10_000))
                for name in ("households", "visits")} | {
            "events": sorted(d["id"] for d in store.changes("events", 0, where={"village": village}, limit=10_000))}


def a_visit(device, household, village):
    return {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
            "form_id": "rumah_tangga_uji", "form_version": "1", "village": village, "household_id": household,
            "started_at": "2026-11-22T02:50:00Z", "ended_at": "2026-11-22T03:00:00Z", "answers": {"head_name": "Ujang"}}


def move_villages(central, hall_name, villages):
    client = central.test_client()
    response = client.put(f"/api/v1/relay/halls/{hall_name}/villages", json={"villages": villages},
                          headers=login(client, "admin"))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_hall_that_loses_a_village_sends_its_work_for_it_up_then_drops_it(tmp_path, central, monkeypatch):
    # budi's village came down from central before: history made elsewhere
    budi_central = Device(central.test_client(), "budi")
    earlier = str(uuid.uuid4())
    assert statuses(budi_central.push([budi_central.edit(earlier, {"head_name": "Lama"}, village=OTHER_VILLAGE)])) \
        == ["applied"]
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE, OTHER_VILLAGE])
    assert held(hall, OTHER_VILLAGE)["households"] == [earlier]
    # a day at the hall with the link down: work for both villages
    link.down = True
    budi = Device(hall.test_client(), "budi")
    ani = Device(hall.test_client(), "ani")
    lost_household = str(uuid.uuid4())
    made_for_lost = [budi.edit(lost_household, {"head_name": "Ujang"}, village=OTHER_VILLAGE),
                     a_visit(budi, lost_household, OTHER_VILLAGE)]
    assert statuses(budi.push(made_for_lost)) == ["applied", "applied"]
    kept_household = str(uuid.uuid4())
    assert statuses(ani.push([ani.edit(kept_household, {"head_name": "Siti"})])) == ["applied"]
    # meanwhile the central admin gives budi's village to another hall
    shown = move_villages(central, "balai", [VILLAGE])
    assert [entry["village"] for entry in shown["left_villages"]] == [OTHER_VILLAGE]

    # The link is back but the laptop's clock is an hour fast: nothing may go up, so nothing is dropped.
    link.down = False
    sync_round(hall, link, wall=lambda: int(time.time() * 1000) + 3_600_000)
    with hall.app_context():
        status = hall_status(get_store(hall))
    assert status["villages"] == [VILLAGE]
    assert status["left_scope"] == [OTHER_VILLAGE]
    assert [(k["village"], k["waiting_up"]) for k in status["keeping"]] == [(OTHER_VILLAGE, 2)]
    assert "(2 events, 0 files)" in status["keeping"][0]["message"]
    assert status["keeping"][0]["files_waiting_up"] == 0
    assert lost_household in held(hall, OTHER_VILLAGE)["households"]
    supervisor = hall.test_client()
    shown = supervisor.get("/api/v1/relay/status",
                           headers={**login(supervisor, "supervisor"), "Accept-Language": "id"}).get_json()
    assert shown["keeping"][0]["message"].startswith("Desa 32.04.06.2001")
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", hall.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY_FILE", hall.config["SECRET_KEY_FILE"])
    printed = CliRunner().invoke(cli, ["relay", "status"], env={"KUNJUNG_LANG": "en"}, catch_exceptions=False)
    assert "its data stays here until what was made here for it has reached the central server (2 events" \
        in printed.output

    with hall.app_context():
        node = hall_node(get_store(hall), skew_bound_ms=SKEW_MS, transport=link)
        items = [node._item(get_store(hall).get("events", event["id"])) for event in made_for_lost]
    # With the clock right, the work goes up (central takes it: made before the hall was told) and the
    # village is dropped from the laptop; the other village is untouched.
    report = sync_round(hall, link)
    assert report.refused_up == 0
    assert report.dropped == [OTHER_VILLAGE]
    with central.app_context():
        store = get_store(central)
        for event in made_for_lost:
            assert store.get("events", event["id"])["relayed_from"] == "balai"
        assert store.get("visits", made_for_lost[1]["id"]) is not None
    assert held(hall, OTHER_VILLAGE) == {"households": [], "visits": [], "events": []}
    assert held(hall, VILLAGE)["households"] == [kept_household]
    with hall.app_context():
        store = get_store(hall)
        assert store.get("users", "budi") is None  # budi served only the lost village
        assert store.find("devices", {"username": "budi"}) == []
        assert store.get("users", "ani") is not None
        status = hall_status(get_store(hall))
    assert status["left_scope"] == []
    assert status["keeping"] == []
    assert status["dropped"][-1]["village"] == OTHER_VILLAGE
    assert status["dropped"][-1]["households"] == 2
    assert status["dropped"][-1]["visits"] == 1
    assert status["dropped"][-1]["events"] == 3
    assert ani.pull_all()  # the hall's own officers still sync
    # Next round the hall says it holds the village no more: central closes the window for late work.
    sync_round(hall, link)
    halls = central.test_client()
    listed = halls.get("/api/v1/relay/halls", headers=login(halls, "admin")).get_json()["items"]
    assert listed[0]["left_villages"] == []
    again = node.upstream.call("POST", "events", {"node_id": node.node_id, "items": items})
    assert [r["code"] for r in again["results"]] == ["out_of_scope", "out_of_scope"]
    assert held(hall, OTHER_VILLAGE) == {"households": [], "visits": [], "events": []}
    printed = CliRunner().invoke(cli, ["relay", "status", "--json"], catch_exceptions=False)
    assert json.loads(printed.output)["dropped"][-1]["village"] == OTHER_VILLAGE
    close(hall)


def test_central_takes_a_halls_late_work_for_a_lost_village_only_if_received_before_it_was_told():
    hall = {"id": "balai", "node_id": "node-balai", "villages": [VILLAGE],
            "left_villages": [{"village": OTHER_VILLAGE, "left_at": "2026-12-01T08:00:00.000Z",
                               "told_at": "2026-12-03T08:00:00.000Z"}]}
    allowed = late_work(hall, skew_bound_ms=60_000)

    def event(received_at, village=OTHER_VILLAGE, received_by="node-balai"):
        return {"village": village, "received_at": received_at, "received_by": received_by}

    assert allowed(event("2026-12-02T17:00:00.000Z"))  # a day after the change, before the hall heard
    assert allowed(event("2026-12-03T08:00:59.000Z"))  # within the clocks' bound of being told
    assert not allowed(event("2026-12-03T08:01:01.000Z"))
    assert not allowed(event("2026-12-02T17:00:00.000Z", received_by="node-other"))  # not the hall's own
    assert not allowed(event("2026-12-02T17:00:00.000Z", village="32.04.07.2001"))  # never the hall's
    assert not allowed(event(None))
    untold = late_work({**hall, "left_villages": [{"village": OTHER_VILLAGE, "left_at": "2026-12-01T08:00:00.000Z",
                                                   "told_at": None}]}, skew_bound_ms=60_000)
    assert untold(event("2026-12-09T00:00:00.000Z"))


def test_a_village_the_hall_regains_before_dropping_it_is_simply_kept(tmp_path, central):
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE, OTHER_VILLAGE])
    link.down = True
    budi = Device(hall.test_client(), "budi")
    household = str(uuid.uuid4())
    assert statuses(budi.push([budi.edit(household, {"head_name": "Ujang"}, village=OTHER_VILLAGE)])) == ["applied"]
    move_villages(central, "balai", [VILLAGE])
    link.down = False
    sync_round(hall, link, wall=lambda: int(time.time() * 1000) + 3_600_000)  # kept: nothing went up
    move_villages(central, "balai", [VILLAGE, OTHER_VILLAGE])
    report = sync_round(hall, link)
    assert report.dropped == []
    assert report.sent_applied == 1
    assert held(hall, OTHER_VILLAGE)["households"] == [household]
    with hall.app_context():
        status = hall_status(get_store(hall))
    assert status["left_scope"] == []
    assert status["keeping"] == []
    close(hall)


def test_the_cli_gives_a_hall_other_villages_and_remembers_the_one_it_lost(env, tmp_path):
    runner = CliRunner()
    made = runner.invoke(cli, ["relay", "credential", "--name", "balai", "--village", VILLAGE,
                               "--village", OTHER_VILLAGE], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    moved = runner.invoke(cli, ["relay", "villages", "balai", "--village", VILLAGE], catch_exceptions=False)
    assert moved.exit_code == 0, moved.output
    assert f"hall balai for {VILLAGE}" in moved.output
    refused = runner.invoke(cli, ["relay", "villages", "balai", "--village", "nowhere"])
    assert refused.exit_code != 0
    unknown = runner.invoke(cli, ["relay", "villages", "no-such-hall", "--village", VILLAGE])
    assert unknown.exit_code != 0
    listed = runner.invoke(cli, ["relay", "halls"], catch_exceptions=False)
    assert listed.output.split("\t")[-1].strip() == VILLAGE


def test_the_background_rounds_drop_a_lost_village_with_its_photos(tmp_path, central, monkeypatch):
    # a photo of the lost village is on the laptop's disk; the rounds gunicorn runs (no request around
    # them) remove it with its records once the village's work has gone up
    from media_helpers import entry, jpeg, media_visit, publish_media_form, upload

    from server.blobs import blob_store
    from server.relay import start_background_relay

    publish_media_form(central.test_client())
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE, OTHER_VILLAGE])
    budi = Device(hall.test_client(), "budi")
    photo = jpeg()
    visit = media_visit(budi, answers={"head_name": "Ujang", "foto_rumah": "rumah.jpg"},
                        attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")], village=OTHER_VILLAGE)
    assert statuses(budi.push([visit])) == ["applied"]
    sent = upload(budi.client, budi.headers, visit["id"], "foto_rumah", photo, filename="rumah.jpg")
    assert sent.status_code == 204, sent.get_json()
    digest = entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")["sha256"]
    with hall.app_context():
        assert blob_store(hall).exists(digest)
    move_villages(central, "balai", [VILLAGE])
    monkeypatch.setattr("server.relay.node.transport_for", lambda url: link)
    hall.config.update(RELAY_BACKGROUND=True, RELAY_INTERVAL_SECONDS=0.2)
    runner = start_background_relay(hall)
    assert runner is not None
    try:
        deadline = time.monotonic() + 60
        while True:
            with hall.app_context():
                status = hall_status(get_store(hall))
            if status["dropped"]:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    finally:
        runner.stop.set()
        runner.thread.join(30)
    assert status["dropped"][-1]["attachments"] == 1
    assert status["last_error"] is None
    with hall.app_context():
        store = get_store(hall)
        assert store.find("attachments", {"visit_id": visit["id"]}) == []
        assert store.get("visits", visit["id"]) is None
        assert not blob_store(hall).exists(digest)
    with central.app_context():
        assert get_store(central).get("visits", visit["id"]) is not None  # the visit went up first
    close(hall)
