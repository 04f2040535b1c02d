"""The relay through HTTP: hall credentials, the hello, the feed and the upload on the central server."""

from __future__ import annotations

import uuid

import pytest
from http_helpers import login, make_user
from relay_helpers import close, make_credential, make_hall, node_app, sync_round
from sync_helpers import OTHER_VILLAGE, VILLAGE, Device, publish_household_form, statuses

from server.relay.node import MERGE_RULE, RelayError
from server.store import get_store


def hello(client, token, node="hall-node-1", **extra):
    body = {"node_id": node, "merge_rule": MERGE_RULE, "time_ms": 1, **extra}
    return client.post("/api/v1/relay/hello", json=body, headers={"Authorization": f"Bearer {token}"})


def test_a_credential_is_shown_once_stored_hashed_and_only_admins_make_one(central):
    client = central.test_client()
    officer = login(client, "ani")
    assert client.post("/api/v1/relay/halls", json={"name": "balai", "villages": [VILLAGE]},
                       headers=officer).status_code == 403
    token = make_credential(central, "balai", [VILLAGE])
    with central.app_context():
        stored = get_store(central).get("relay_halls", "balai")
    assert token.split(".")[-1] not in str(stored)
    listed = client.get("/api/v1/relay/halls", headers=login(client, "admin")).get_json()["items"]
    assert [h["name"] for h in listed] == ["balai"]
    assert "secret_hash" not in listed[0]
    again = client.post("/api/v1/relay/halls", json={"name": "balai", "villages": [VILLAGE]},
                        headers=login(client, "admin"))
    assert again.status_code == 409
    bad = client.post("/api/v1/relay/halls", json={"name": "x y", "villages": ["32.04"]},
                      headers=login(client, "admin"))
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]) == {"name", "villages"}


def test_hello_binds_the_credential_to_one_node_and_revocation_cuts_it_off(central):
    client = central.test_client()
    token = make_credential(central, "balai", [VILLAGE])
    first = hello(client, token)
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["villages"] == [VILLAGE]
    assert first.get_json()["merge_rule"] == MERGE_RULE
    assert hello(client, token, node="another-laptop").status_code == 403
    assert hello(client, token + "x").status_code == 401
    assert hello(client, "khall.nobody.secret").status_code == 401
    assert client.get("/api/v1/relay/events", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    headers = {"Authorization": f"Bearer {token}", "X-Kunjung-Node": "hall-node-1"}
    assert client.get("/api/v1/relay/events", headers=headers).status_code == 200
    admin = login(client, "admin")
    assert client.post("/api/v1/relay/halls/balai/revoke", headers=admin).status_code == 200
    assert client.get("/api/v1/relay/events", headers=headers).status_code == 401
    assert hello(client, token).status_code == 401


def test_the_feed_carries_events_of_the_halls_villages_only_with_their_verdicts(central):
    client = central.test_client()
    ani, budi = Device(client, "ani"), Device(client, "budi")
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    assert statuses(ani.push([ani.edit(mine, {"head_name": "Siti"})])) == ["applied"]
    assert statuses(budi.push([budi.edit(theirs, {"head_name": "Joko"}, village=OTHER_VILLAGE)])) == ["applied"]
    token = make_credential(central, "balai", [VILLAGE])
    assert hello(client, token).status_code == 200
    headers = {"Authorization": f"Bearer {token}", "X-Kunjung-Node": "hall-node-1"}
    page = client.get("/api/v1/relay/events", headers=headers, query_string={"limit": 1}).get_json()
    events = [item["event"] for item in page["items"]]
    assert [e["household_id"] for e in events] == [mine]
    assert events[0]["officer"] == "ani"
    assert events[0]["device_id"] == ani.device_id
    assert events[0]["received_by"].startswith("server-")
    assert events[0]["flags"] == []
    rest = client.get("/api/v1/relay/events", headers=headers, query_string={"since": page["next"]}).get_json()
    assert rest["items"] == []
    assert rest["has_more"] is False
    forged = client.get("/api/v1/relay/events", headers=headers, query_string={"since": page["next"][:-2] + "xx"})
    assert forged.status_code == 400
    assert forged.get_json()["code"] == "invalid_cursor"


def test_an_upload_outside_the_halls_villages_is_refused_per_event(tmp_path, central):
    hall, _link = make_hall(tmp_path, central, "balai", [VILLAGE])
    client = central.test_client()
    budi = Device(client, "budi")
    budi.push([budi.edit(str(uuid.uuid4()), {"head_name": "Joko"}, village=OTHER_VILLAGE)])
    with central.app_context():
        foreign = get_store(central).find("events", order_by="id", limit=10)
    token = make_credential(central, "balai2", [VILLAGE])
    assert hello(client, token, node="n2").status_code == 200
    headers = {"Authorization": f"Bearer {token}", "X-Kunjung-Node": "n2"}
    item = {"event": {k: v for k, v in foreign[0].items() if k != "seq"}}
    body = {"node_id": "n2", "items": [item, {"event": "nonsense"}, None]}
    reply = client.post("/api/v1/relay/events", json=body, headers=headers)
    assert reply.status_code == 200, reply.get_json()
    results = reply.get_json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * 3
    assert [r["code"] for r in results] == ["out_of_scope", "invalid", "invalid"]
    close(hall)


def test_a_week_at_the_hall_arrives_upstream_after_one_reconnect_and_a_resolution_comes_back(tmp_path, central):
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE])
    link.down = True  # the hall's internet is gone for the week
    hall_client = hall.test_client()
    ani = Device(hall_client, "ani")
    other = Device(hall_client, "supervisor")
    households = [str(uuid.uuid4()) for _ in range(5)]
    events = [ani.edit(h, {"head_name": f"Kepala {n}"}) for n, h in enumerate(households)]
    assert statuses(ani.push(events)) == ["applied"] * 5
    # a second device writes the same field of the first household without having seen ani's: a conflict
    assert statuses(other.push([other.edit(households[0], {"head_name": "Lain"})])) == ["applied"]
    with pytest.raises(RelayError) as cut:
        sync_round(hall, link)
    assert cut.value.code == "unreachable"
    link.down = False
    report = sync_round(hall, link)
    assert report.sent == 6
    assert report.sent_applied == 6
    assert report.refused_up == 0
    client = central.test_client()
    sup = login(client, "supervisor")
    conflicts = client.get("/api/v1/conflicts", headers=sup).get_json()["items"]
    assert len(conflicts) == 1
    with central.app_context():
        stored = get_store(central).get("events", events[0]["id"])
    assert stored["officer"] == "ani"
    assert stored["device_id"] == ani.device_id
    assert stored["relayed_from"] == "balai"
    conflict = conflicts[0]
    heads = [h["stamp"] for h in conflict["heads"]]
    resolved = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=sup,
                           json={"id": str(uuid.uuid4()), "value": "Siti", "heads": heads})
    assert resolved.status_code == 200, resolved.get_json()
    again = sync_round(hall, link)
    assert again.received_applied == 1
    assert again.sent == 0
    pulled = {c["id"]: c for c in ani.pull_all() if c["type"] == "household"}
    assert pulled[households[0]]["fields"]["head_name"]["value"] == "Siti"
    assert "heads" not in pulled[households[0]]["fields"]["head_name"]
    halls = client.get("/api/v1/relay/halls", headers=login(client, "admin")).get_json()["items"]
    assert halls[0]["last_contact_at"]
    assert halls[0]["received_events"] == 6
    assert halls[0]["waiting_down"] >= 0
    close(hall)


def _bound_headers(client, central, name="balai"):
    token = make_credential(central, name, [VILLAGE])
    assert hello(client, token, node=f"node-{name}").status_code == 200
    return {"Authorization": f"Bearer {token}", "X-Kunjung-Node": f"node-{name}"}


def test_hostile_uploads_get_the_one_error_shape_or_a_verdict_never_a_500(central):
    client = central.test_client()
    ani = Device(client, "ani")
    held = ani.edit(str(uuid.uuid4()), {"head_name": "Siti"})
    ani.push([held])
    with central.app_context():
        stored = {k: v for k, v in get_store(central).get("events", held["id"]).items() if k != "seq"}
    headers = _bound_headers(client, central)
    node = headers["X-Kunjung-Node"]
    assert client.post("/api/v1/relay/events", json={"node_id": node, "items": []}).status_code == 401
    malformed = client.post("/api/v1/relay/events", data=b"{", headers={**headers, "Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert client.post("/api/v1/relay/events", json={"node_id": node, "items": {}}, headers=headers).status_code == 422
    too_many = client.post("/api/v1/relay/events", json={"node_id": node, "items": [None] * 1001}, headers=headers)
    assert too_many.status_code == 413
    assert client.post("/api/v1/relay/events", json={"node_id": "other", "items": []},
                       headers=headers).status_code == 422
    forged = {**stored, "body": {**stored["body"], "set": {"head_name": "Palsu"}}}  # the held hash, another body
    dollar = {**stored, "id": str(uuid.uuid4()), "body": {"$where": 1}}
    bad_geotag = {"event": {**stored, "id": str(uuid.uuid4()), "type": "visit"},
                  "visit": {"id": "x", "household_id": stored["household_id"], "village": VILLAGE,
                            "geotag": {"lat": 200, "lon": 0}}}
    unknown_key = {**stored, "id": str(uuid.uuid4()), "extra": 1}
    items = [{"event": forged}, {"event": dollar}, bad_geotag, {"event": unknown_key}, {"event": stored},
             {"event": {**stored, "engine": {"id": stored["id"], "village": VILLAGE}}}]
    reply = client.post("/api/v1/relay/events", json={"node_id": node, "items": items}, headers=headers)
    assert reply.status_code == 200, reply.get_json()
    results = reply.get_json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * 4 + ["duplicate", "duplicate"]
    assert [r["code"] for r in results[:4]] == ["id_reused", "invalid", "invalid", "invalid"]
    feed = client.get("/api/v1/relay/events", headers=headers, query_string={"since": "x" * 9000})
    assert feed.status_code == 400
    assert client.get("/api/v1/relay/events", headers=headers, query_string={"limit": 0}).status_code == 422


def test_a_central_server_on_the_mongodb_stand_in_takes_a_halls_events(tmp_path):
    from mongo_stand_in import STAND_IN_URL, stand_in_store

    central = node_app(tmp_path, "central-mongo", STORE=stand_in_store(None), DATABASE_URL=STAND_IN_URL)
    make_user(central, "admin", "admin")
    make_user(central, "ani", "officer", [VILLAGE])
    make_user(central, "supervisor", "supervisor", ["32.04.05"])
    publish_household_form(central.test_client())
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE])
    try:
        ani = Device(hall.test_client(), "ani")
        household = str(uuid.uuid4())
        ani.push([ani.edit(household, {"head_name": "Siti"})])
        sup = Device(central.test_client(), "supervisor")
        sup.push([sup.edit(household, {"notes": "dari pusat"})])
        report = sync_round(hall, link)
        assert (report.sent_applied, report.received_applied) == (1, 1)
        with central.app_context(), hall.app_context():
            assert get_store(central).get("households", household)["record"] == \
                get_store(hall).get("households", household)["record"]
    finally:
        close(hall, central)
