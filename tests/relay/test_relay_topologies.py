"""Random histories through random topologies of phones, village halls and the central server.

Phones edit and visit households, sync with whichever node they reach (the central server, a
hall, another hall: a phone that moves), supervisors resolve conflicts and review visits at any
node, and hall links go down for long stretches and come back. However events travelled, every
node ends holding, for each household, the fold that the reference fold (tests/sync/reference.py,
written from the rule text) gives for the events it holds, and the halls hold the same events as
the central server for their villages.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

from http_helpers import PASSWORD, login, make_user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_helpers import close, make_hall, node_app, sync_round
from sync_helpers import HOUSEHOLD_FORM, publish_household_form

from server.relay.node import RelayError
from server.store import get_store
from sync import HybridClock, Record

_spec = importlib.util.spec_from_file_location("relay_reference", Path(__file__).parents[1] / "sync" / "reference.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

V1, V2 = "32.04.05.2001", "32.04.05.2002"
HOUSEHOLDS = {"h0": V1, "h1": V1, "h2": V2}
HOUSEHOLD_IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"kunjung-relay-test/{name}")) for name in HOUSEHOLDS}
FIELDS = ("head_name", "notes")
NODES = ("central", "h1", "h2")
PHONES = {"ani": [V1], "dewi": [V1, V2], "budi": [V2]}
HALL_VILLAGES = {"h1": {V1}, "h2": {V1, V2}}


class Phone:
    """A phone: its pending events, its view of households (the stamps it pulled), its HLC, a login per node."""

    def __init__(self, username: str):
        self.username = username
        self.device_id = f"phone-{username}"
        self.clock = HybridClock(lambda: int(__import__("time").time() * 1000))
        self.seq = 0
        self.pending: list[dict[str, Any]] = []
        self.view: dict[str, dict[str, list[str]]] = {}
        self.logins: dict[str, dict[str, str]] = {}
        self.cursors: dict[str, str | None] = {}
        self.made: list[str] = []

    def write(self, household: str, field: str, value: str, visit: bool) -> None:
        household_id, village = HOUSEHOLD_IDS[household], HOUSEHOLDS[household]
        base = {field: stamps} if (stamps := self.view.get(household_id, {}).get(field)) else {}
        self.seq += 1
        event: dict[str, Any] = {"id": str(uuid.uuid4()), "device_id": self.device_id, "hlc": self.clock.now(),
                                 "device_seq": self.seq, "household_id": household_id, "village": village}
        if visit:
            event.update(type="visit", form_id=HOUSEHOLD_FORM["settings"]["form_id"], form_version="1",
                         answers={field: value}, base=base)
        else:
            event.update(type="household_edit", set={field: value}, base=base)
        if not base:
            del event["base"]
        self.pending.append(event)
        self.made.append(event["id"])

    def sync(self, name: str, app: Any) -> None:
        client = app.test_client()
        if name not in self.logins:
            response = client.post("/api/v1/auth/login", json={"username": self.username, "password": PASSWORD,
                                                               "device_id": self.device_id})
            assert response.status_code == 200, response.get_json()
            self.logins[name] = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
        headers = self.logins[name]
        if self.pending:
            reply = client.post("/api/v1/sync/push", headers=headers,
                                json={"device_id": self.device_id, "events": self.pending})
            assert reply.status_code == 200, reply.get_json()
            kept = []
            for event, result in zip(self.pending, reply.get_json()["results"], strict=True):
                if result["status"] == "rejected":
                    # Only a village this node does not serve for the phone is a reason to try elsewhere.
                    assert result["code"] == "out_of_scope", result
                    kept.append(event)
            self.pending = kept
            self.clock.observe(reply.get_json()["server_hlc"])
        while True:
            query = {"limit": 500, **({"since": self.cursors[name]} if self.cursors.get(name) else {})}
            body = client.get("/api/v1/sync/pull", headers=headers, query_string=query).get_json()
            for change in body["changes"]:
                if change["type"] == "household":
                    self.view[change["id"]] = {
                        path: sorted({state["stamp"], *state.get("head_stamps", []),
                                      *(head["stamp"] for head in state.get("heads", []))})
                        for path, state in change["fields"].items()}
            self.cursors[name] = body["next"]
            self.clock.observe(body["server_hlc"])
            if not body["has_more"]:
                return


def engine_view(record: Record) -> dict[str, Any]:
    fields = {path: {"value": state.value, "stamp": state.stamp, "conflict": state.in_conflict,
                     "erased": state.erased, "heads": [(w.stamp, w.value, w.officer) for w in state.heads]}
              for path, state in record.fields.items() if state.heads}
    return {"id": record.id if record.created else None, "village": record.village, "erased": list(record.erased),
            "fields": fields}


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def held(app: Any) -> dict[str, list[dict[str, Any]]]:
    with app.app_context():
        docs = get_store(app).find("events", order_by="id", limit=100_000)
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["household_id"], []).append(doc)
    return out


def check_node(app: Any) -> dict[str, Any]:
    """Every household the node holds is the reference fold of the events it holds; returns the views."""
    views = {}
    with app.app_context():
        store = get_store(app)
        for household_id, docs in held(app).items():
            folding = [doc["engine"] for doc in docs if doc["type"] != "review"]
            doc = store.get("households", household_id)
            assert doc is not None
            record = Record.from_document(doc["record"])
            assert as_json(engine_view(record)) == as_json(reference.ref_fold(folding))
            views[household_id] = engine_view(record)
            reviews = {d["visit_id"] for d in docs if d["type"] == "review"}
            for visit_id in reviews:
                visit = store.get("visits", visit_id)
                expected = Record(visit_id)
                for review in (d for d in docs if d["type"] == "review" and d["visit_id"] == visit_id):
                    expected.apply_event(review["engine"], check=False)
                assert visit["review_state"] == expected.get("review")["state"]
                views[visit_id] = engine_view(expected)
    return views


def resolve_or_review(app: Any, n: int, review: bool) -> None:
    client = app.test_client()
    headers = login(client, "supervisor")
    if review:
        visits = client.get("/api/v1/visits", headers=headers).get_json()["items"]
        if visits:
            state = ("approved", "needs_revision", "rejected")[n % 3]
            response = client.post(f"/api/v1/visits/{visits[n % len(visits)]['id']}/review", headers=headers,
                                   json={"id": str(uuid.uuid4()), "state": state, "comment": f"c{n}"})
            assert response.status_code == 200, response.get_json()
        return
    conflicts = client.get("/api/v1/conflicts", headers=headers).get_json()["items"]
    if conflicts:
        conflict = conflicts[n % len(conflicts)]
        response = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=headers,
                               json={"id": str(uuid.uuid4()), "value": f"resolved {n}",
                                     "heads": [head["stamp"] for head in conflict["heads"]]})
        assert response.status_code == 200, response.get_json()


steps = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from(sorted(PHONES)), st.sampled_from(sorted(HOUSEHOLDS)),
              st.sampled_from(FIELDS), st.booleans()),
    st.tuples(st.just("sync"), st.sampled_from(sorted(PHONES)), st.sampled_from(NODES)),
    st.tuples(st.just("round"), st.sampled_from(("h1", "h2"))),
    st.tuples(st.just("link"), st.sampled_from(("h1", "h2")), st.booleans()),
    st.tuples(st.just("supervise"), st.sampled_from(NODES), st.booleans()),
), min_size=4, max_size=40)


def run_history(tmp: Path, history: list[tuple[Any, ...]]) -> None:
    central = node_app(tmp, "central")
    apps: dict[str, Any] = {"central": central}
    try:
        make_user(central, "admin", "admin")
        make_user(central, "supervisor", "supervisor", ["32.04.05"])
        for username, villages in PHONES.items():
            make_user(central, username, "officer", villages)
        publish_household_form(central.test_client())
        apps["h1"], link1 = make_hall(tmp, central, "h1", sorted(HALL_VILLAGES["h1"]))
        apps["h2"], link2 = make_hall(tmp, central, "h2", sorted(HALL_VILLAGES["h2"]))
        links = {"h1": link1, "h2": link2}
        phones = {name: Phone(name) for name in PHONES}
        for n, step in enumerate(history):
            if step[0] == "write":
                if HOUSEHOLDS[step[2]] in PHONES[step[1]]:  # an officer visits the villages assigned to her
                    phones[step[1]].write(step[2], step[3], f"{step[3]} {n}", step[4])
            elif step[0] == "sync":
                if set(PHONES[step[1]]) & HALL_VILLAGES.get(step[2], set(PHONES[step[1]])):
                    phones[step[1]].sync(step[2], apps[step[2]])
            elif step[0] == "round":
                try:
                    sync_round(apps[step[1]], links[step[1]])
                except RelayError:
                    assert links[step[1]].down
            elif step[0] == "link":
                links[step[1]].down = step[2]
            else:
                resolve_or_review(apps[step[1]], n, step[2])
        # The links come back; every phone reaches the central server once; the halls catch up.
        for link in links.values():
            link.down = False
        for phone in phones.values():
            phone.sync("central", central)
            assert phone.pending == []
        for name in ("h1", "h2", "h1"):
            sync_round(apps[name], links[name])
        # Conflicts the history left are resolved at a hall and centrally, and travel too.
        resolve_or_review(apps["h2"], len(history), review=False)
        sync_round(apps["h2"], links["h2"])
        resolve_or_review(central, len(history) + 1, review=False)
        for name in ("h1", "h2", "h1", "h2"):
            sync_round(apps[name], links[name])
        views = {name: check_node(app) for name, app in apps.items()}
        central_events = held(central)
        made = {event_id for phone in phones.values() for event_id in phone.made}
        assert made <= {doc["id"] for docs in central_events.values() for doc in docs}
        for hall, villages in HALL_VILLAGES.items():
            hall_events = held(apps[hall])
            expected = {hid: sorted(d["id"] for d in docs) for hid, docs in central_events.items()
                        if docs[0]["village"] in villages}
            assert {hid: sorted(d["id"] for d in docs) for hid, docs in hall_events.items()} == expected
            for key, view in views[hall].items():
                assert as_json(view) == as_json(views["central"][key])
    finally:
        close(*apps.values())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps)
def test_every_node_ends_with_the_reference_fold_of_what_it_holds(history):
    with tempfile.TemporaryDirectory() as tmp:
        run_history(Path(tmp), history)


def test_a_week_long_outage_with_a_phone_moving_between_halls():
    history: list[tuple[Any, ...]] = [("link", "h1", True), ("link", "h2", True)]
    for day in range(7):
        history += [("write", "ani", "h0", "head_name", day % 2 == 0), ("sync", "ani", "h1"),
                    ("write", "dewi", "h0", "head_name", False), ("sync", "dewi", "h1" if day % 2 else "h2"),
                    ("write", "dewi", "h2", "notes", True), ("sync", "dewi", "h2"),
                    ("write", "budi", "h2", "notes", False), ("sync", "budi", "central"),
                    ("round", "h1"), ("supervise", "h2", day % 3 == 0)]
    history += [("link", "h1", False), ("round", "h1"), ("supervise", "central", False), ("link", "h2", False)]
    with tempfile.TemporaryDirectory() as tmp:
        run_history(Path(tmp), history)
