"""The device client (server/client) against the app through Flask's test client, and its HTTP transport."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import random
import threading
import time
import tracemalloc
import typing
import uuid

import orjson
import pytest
from http_helpers import PASSWORD, login, make_user

from forms import validate_definition
from forms.library import LIBRARY_FILES
from scripts.simulator.households import new_visit_answers
from server.client import (
    ACKED,
    PENDING,
    REJECTED,
    ClientError,
    DeviceClient,
    FlaskTransport,
    HttpTransport,
    Interner,
    Replica,
    Reply,
    RetryPolicy,
    Session,
    Unreachable,
    field_stamps,
    kept_json,
)
from server.store import get_store

FORM = "verval_keluarga"
VILLAGE, OTHER = "32.04.05.2001", "32.04.05.2002"
HOUR_MS = 3_600_000


class Scripted:
    """Forwards requests to ``inner``; ``fail(path, *faults)`` makes the next requests to ``path`` fail, in
    order: an int answers that status without forwarding, "lost_reply" forwards and then times out,
    "refused" never reaches the server, "expired" answers 401 token_expired."""

    def __init__(self, inner):
        self.inner = inner
        self.name = "scripted"
        self.faults: dict[str, list] = {}
        self.seen: list[tuple[str, str]] = []

    def fail(self, path, *faults):
        self.faults.setdefault(path, []).extend(faults)

    def send(self, method, path, *, query=None, body=None, headers=None):
        self.seen.append((method, path))
        pending = self.faults.get(path)
        fault = pending.pop(0) if pending else None
        if fault == "refused":
            raise ConnectionRefusedError("refused")
        if fault == "expired":
            return Reply(401, json.dumps({"code": "token_expired", "message": "", "errors": {}}).encode(), {})
        if isinstance(fault, int):
            return Reply(fault, json.dumps({"code": "unavailable", "message": "", "errors": {}}).encode(),
                         {"retry-after": "1"})
        reply = self.inner.send(method, path, query=query, body=body, headers=headers)
        if fault == "lost_reply":
            raise TimeoutError("the reply never came")
        return reply


@pytest.fixture
def field_app(app_factory):
    application = app_factory(LOAD_LIBRARY_FORMS=True, MAX_BATCH_EVENTS=4)
    make_user(application, "admin", "admin")
    make_user(application, "ani", "officer", [VILLAGE])
    make_user(application, "budi", "officer", [VILLAGE])
    make_user(application, "citra", "officer", [VILLAGE, OTHER])
    return application


def make_session(transport, username="ani", device_id=None, **options):
    sleeps = options.pop("sleeps", [])
    return Session(transport, username, PASSWORD, device_id=device_id or f"phone-{username}",
                   retry=RetryPolicy(attempts=options.pop("attempts", 5)), sleep=sleeps.append, **options)


def make_device(transport, username="ani", **options):
    device = DeviceClient(make_session(transport, username, sleeps=options.pop("sleeps", [])), **options)
    device.login()
    return device


def definition_of(device):
    listed = next(form for form in device.forms() if form["form_id"] == FORM)
    return listed["version"], validate_definition(device.definition(FORM, listed["version"]))


def visit(device, household_id=None, village=VILLAGE, seed=1):
    version, definition = definition_of(device)
    rng = random.Random(seed)
    answers = new_visit_answers(rng, village, "Cileunyi Kulon", (-6.93, 107.675), dt.date.today(),
                                lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)), size=2, result="1")
    return device.visit(definition=definition, form_id=FORM, form_version=version, village=village,
                        household_id=household_id or str(uuid.uuid4()), answers=answers,
                        geotag={"lat": -6.93, "lon": 107.675, "accuracy_m": 5, "captured_at": device.now_iso()})


def stored_event(app, event_id):
    with app.app_context():
        return get_store().get("events", event_id)


def history(app, household_id):
    client = app.test_client()
    body = client.get(f"/api/v1/households/{household_id}", headers=login(client, "admin")).get_json()
    return body["history"]


# -- the token pair ---------------------------------------------------------------------------


def test_login_refresh_and_logout_through_the_token_pair(field_app):
    session = make_session(FlaskTransport(field_app))
    user = session.login()
    assert (user["username"], user["villages"]) == ("ani", [VILLAGE])
    assert session.call("GET", "/api/v1/auth/me")["device_id"] == "phone-ani"
    first_access, first_refresh = session.access_token, session.refresh_token
    session.refresh()
    assert session.access_token != first_access
    assert session.refresh_token != first_refresh
    assert session.call("GET", "/api/v1/auth/me")["username"] == "ani"
    token = session.access_token
    session.logout()
    assert session.access_token is None
    with pytest.raises(ClientError) as raised:
        session.request("GET", "/api/v1/auth/me", token=token)
    assert (raised.value.status, raised.value.code) == (401, "token_revoked")


def test_an_expired_access_token_is_refreshed_once_and_the_request_repeated(field_app):
    transport = Scripted(FlaskTransport(field_app))
    session = make_session(transport)
    session.login()
    before = session.access_token
    transport.fail("/api/v1/auth/me", "expired")
    assert session.call("GET", "/api/v1/auth/me")["username"] == "ani"
    assert session.access_token != before
    assert transport.seen.count(("POST", "/api/v1/auth/refresh")) == 1
    assert transport.seen.count(("GET", "/api/v1/auth/me")) == 2


def test_wrong_credentials_are_not_retried(field_app):
    transport = Scripted(FlaskTransport(field_app))
    session = Session(transport, "ani", "not the password", device_id="phone-ani")
    with pytest.raises(ClientError) as raised:
        session.login()
    assert (raised.value.status, raised.value.code) == (401, "invalid_credentials")
    assert transport.seen == [("POST", "/api/v1/auth/login")]


def test_a_server_that_never_answers_is_unreachable_after_every_attempt(field_app):
    transport = Scripted(FlaskTransport(field_app))
    transport.fail("/api/v1/auth/login", *["refused"] * 5)
    sleeps = []
    session = make_session(transport, sleeps=sleeps)
    with pytest.raises(Unreachable):
        session.login()
    assert len(transport.seen) == 5
    # full jitter under a doubling cap
    assert all(0 <= pause <= min(2.0, 0.05 * 2**n) for n, pause in enumerate(sleeps))


# -- push and pull ----------------------------------------------------------------------------


def test_a_visit_and_an_edit_are_pushed_then_pulled_into_the_replica(field_app):
    device = make_device(FlaskTransport(field_app))
    made = visit(device)
    assert made.base == {}
    report = device.push()
    assert (report.applied, report.unsent) == (1, 0)
    assert (made.state, made.verdicts, made.confirmed) == (ACKED, ["applied"], False)
    pulled = device.pull()
    assert pulled.households == 1
    assert made.confirmed
    copy = device.replica.get(made.household_id)
    assert copy.village == VILLAGE
    assert field_stamps(copy.fields["head_name"]) == [made.stamp]
    # the edit's base names what the device holds for the field
    edit = device.edit(household_id=made.household_id, village=VILLAGE, writes={"head_name": "H. Asep"})
    assert edit.base == {"head_name": [made.stamp]}
    assert edit.device_seq == made.device_seq + 1
    device.sync()
    state = device.replica.get(made.household_id).fields["head_name"]
    assert state == {"value": "H. Asep", "stamp": edit.stamp}
    assert [entry["event_id"] for entry in history(field_app, made.household_id)] == [made.id, edit.id]
    assert device.server_hlc >= edit.hlc


def test_two_phones_conflict_and_a_write_naming_both_heads_resolves_it(field_app):
    transport = FlaskTransport(field_app)
    ani, budi = make_device(transport, "ani"), make_device(transport, "budi")
    made = visit(ani)
    ani.sync()
    budi.pull()
    left = ani.edit(household_id=made.household_id, village=VILLAGE, writes={"head_name": "H. Asep"})
    right = budi.edit(household_id=made.household_id, village=VILLAGE, writes={"head_name": "Asep, S.Pd."})
    assert left.base == right.base == {"head_name": [made.stamp]}
    ani.sync()
    budi.sync()
    ani.pull()
    state = ani.replica.get(made.household_id).fields["head_name"]
    assert sorted(head["stamp"] for head in state["heads"]) == sorted([left.stamp, right.stamp])
    # the record the device builds shows the conflict; its next write supersedes both heads
    assert ani.record(made.household_id).fields["head_name"].in_conflict
    fix = ani.edit(household_id=made.household_id, village=VILLAGE, writes={"head_name": "Asep"})
    assert fix.base == {"head_name": sorted([left.stamp, right.stamp])}
    ani.sync()
    assert ani.replica.get(made.household_id).fields["head_name"] == {"value": "Asep", "stamp": fix.stamp}


def test_the_replica_folds_its_own_unconfirmed_writes_over_the_pulled_copy(field_app):
    device = make_device(FlaskTransport(field_app))
    made = visit(device)
    device.sync()
    first = device.edit(household_id=made.household_id, village=VILLAGE, writes={"address": "Kp. Babakan"})
    second = device.edit(household_id=made.household_id, village=VILLAGE, writes={"address": "Kp. Cibiru"})
    # offline: the second edit saw the first, so it supersedes it rather than conflicting with it
    assert second.base == {"address": [first.stamp]}
    assert device.record(made.household_id).get("address") == "Kp. Cibiru"
    assert not device.record(made.household_id).fields["address"].in_conflict
    device.sync()
    assert device.replica.get(made.household_id).fields["address"] == {"value": "Kp. Cibiru",
                                                                        "stamp": second.stamp}


def test_a_push_is_retried_after_a_503_and_a_lost_reply_without_doubling(field_app):
    transport = Scripted(FlaskTransport(field_app))
    sleeps = []
    device = make_device(transport, sleeps=sleeps)
    made = visit(device)
    transport.fail("/api/v1/sync/push", 503, "lost_reply")
    report = device.push()
    assert report.unsent == 0
    # the 503 was not applied; the lost reply was, so the third try answers duplicate
    assert made.verdicts == ["duplicate"]
    assert made.unknown
    assert made.state == ACKED
    assert device.anomalies == []
    assert device.stats["push_failures"] == 2
    assert sleeps[0] == 1.0  # Retry-After of the 503
    assert [entry["event_id"] for entry in history(field_app, made.household_id)] == [made.id]


def test_a_fast_clock_is_corrected_and_its_events_restamped_under_new_ids_keeping_device_seq(field_app):
    device = make_device(FlaskTransport(field_app), wall_ms=lambda: time.time_ns() // 1_000_000 + HOUR_MS)
    made = visit(device)
    edit = device.edit(household_id=made.household_id, village=VILLAGE, writes={"head_name": "H. Asep"})
    assert edit.base == {"head_name": [made.stamp]}
    stamps, sequences = (made.hlc, edit.hlc), (made.device_seq, edit.device_seq)
    first_ids = (made.id, edit.id)
    report = device.push()
    # a new id naming the first, so that no two nodes hold two bodies under one id (docs/relay.md)
    assert made.id != first_ids[0]
    assert edit.id != first_ids[1]
    assert (made.body["restamp_of"], edit.body["restamp_of"]) == first_ids
    assert report.rejected == {"clock_skew": 2}
    assert (report.restamped, report.applied, report.unsent) == (2, 2, 0)
    assert device.stats["clock_corrections"] == 1
    assert abs(device.wall_ms() - time.time_ns() // 1_000_000) < 60_000
    assert (made.device_seq, edit.device_seq) == sequences
    assert made.hlc < stamps[0]
    assert edit.hlc < stamps[1]
    assert made.hlc < edit.hlc
    assert made.verdicts == edit.verdicts == ["rejected:clock_skew", "applied"]
    # the edit's base followed its visit to the new stamp, as the server stored it
    assert edit.base == {"head_name": [made.stamp]}
    stored = {entry["event_id"]: entry for entry in history(field_app, made.household_id)}
    assert stored[edit.id]["base"] == {"head_name": [made.stamp]}
    assert stored[made.id]["hlc"] == made.hlc
    # the server keeps the device's order, which the re-stamp did not change
    assert [stored_event(field_app, e.id)["engine"]["device_seq"] for e in (made, edit)] == list(sequences)
    assert [stored_event(field_app, e.id)["body"]["restamp_of"] for e in (made, edit)] == list(first_ids)
    assert all(stored_event(field_app, old) is None for old in first_ids)  # the refused bodies were never kept


def test_every_event_carries_the_next_device_seq():
    session = Session(Scripted(None), "ani", PASSWORD, device_id="phone-ani")
    first, later = DeviceClient(session), DeviceClient(session, device_seq_start=41)
    for device in (first, later):
        for n in range(3):
            device.edit(household_id="h1", village=VILLAGE, writes={"phone": f"08{n}"})
    assert [event.body["device_seq"] for event in first.events] == [1, 2, 3]
    assert [event.body["device_seq"] for event in later.events] == [41, 42, 43]
    assert later.next_seq == 44


def test_a_rejected_event_keeps_its_reason_and_is_not_sent_again(field_app):
    transport = Scripted(FlaskTransport(field_app))
    device = make_device(transport)
    outside = device.edit(household_id=str(uuid.uuid4()), village=OTHER, writes={"head_name": "Ujang"})
    report = device.push()
    assert report.rejected == {"out_of_scope": 1}
    assert outside.state == REJECTED
    assert outside.result["code"] == "out_of_scope"
    pushes = transport.seen.count(("POST", "/api/v1/sync/push"))
    device.push()
    assert transport.seen.count(("POST", "/api/v1/sync/push")) == pushes
    assert outside.household_id not in device.held()


def test_a_batch_too_large_for_the_server_is_split(field_app):
    device = make_device(FlaskTransport(field_app), batch_size=10)
    made = visit(device)
    device.sync()
    for n in range(9):
        device.edit(household_id=made.household_id, village=VILLAGE, writes={"phone": f"0812000{n}"})
    report = device.push()
    assert (report.applied, report.unsent) == (9, 0)
    assert report.requests >= 3  # the server takes 4 at most: 10 -> 5 + 5 -> 2 + 3 + 2 + 3, or so
    assert device.replica.get(made.household_id) is not None


def test_pull_pages_through_a_small_limit(field_app):
    writer = make_device(FlaskTransport(field_app), "budi")
    for seed in range(5):
        visit(writer, seed=seed)
    writer.push()
    reader = make_device(FlaskTransport(field_app), pull_limit=2)
    report = reader.pull()
    assert report.households == len(reader.replica) == 5
    shipped = len(LIBRARY_FILES)
    assert report.other["form"] == shipped  # the shipped forms come through the pull too
    assert report.pages == -(-(5 + shipped) // 2)  # every change, 2 a page
    assert reader.pull().households == 0  # the cursor moved past everything


def tampered(cursor, **changes):
    """The cursor with its state edited and its signature kept, as a device that rewrites it would send."""
    payload, _, signature = cursor.partition(".")
    state = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    state.update(changes)
    edited = base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{edited}.{signature}"


def stale_copy():
    """A household the device holds that the server never had (a copy pulled from another node, say)."""
    return {"type": "household", "id": str(uuid.uuid4()), "village": VILLAGE,
            "fields": {"head_name": {"value": "Gone", "stamp": f"1763790000000-0000/old-phone/{uuid.uuid4()}"}}}


def test_a_tampered_cursor_starts_a_fresh_pull_that_replaces_the_copy(field_app):
    writer = make_device(FlaskTransport(field_app), "budi")
    kept = visit(writer)
    writer.push()
    transport = Scripted(FlaskTransport(field_app))
    device = make_device(transport)
    device.pull()
    own = device.edit(household_id=str(uuid.uuid4()), village=VILLAGE, writes={"head_name": "Baru"})
    stale = stale_copy()
    device.replica.take(stale)
    forged = tampered(device.cursor, s=0)  # rewound: everything again, under the old signature
    client = field_app.test_client()
    answer = client.get("/api/v1/sync/pull", query_string={"since": forged},
                        headers=login(client, "ani", device_id="phone-ani"))
    assert (answer.status_code, answer.get_json()["code"]) == (400, "invalid_cursor")
    device.cursor = forged
    report = device.pull()
    assert report.fresh_starts == 1
    assert device.stats["copies_replaced"] == 1
    assert ("GET", "/api/v1/sync/pull") in transport.seen
    # the copy is what a pull from nothing brings: the stale household is gone, the real one is there
    assert stale["id"] not in device.replica
    from_nothing = make_device(FlaskTransport(field_app), "citra")
    from_nothing.pull()
    assert set(device.replica) == {kept.household_id} == set(from_nothing.replica)
    assert device.replica.get(kept.household_id).digest == from_nothing.replica.get(kept.household_id).digest
    # the device's own unsent write is not part of the copy and stays
    assert own.household_id in device.held()
    assert device.cursor not in (None, forged)
    assert device.pull().households == 0  # the new cursor is a real one: nothing new since


def test_a_fresh_pull_cut_short_keeps_the_old_copy_until_it_ends(field_app):
    writer = make_device(FlaskTransport(field_app), "budi")
    made = [visit(writer, seed=seed) for seed in range(3)]
    writer.push()
    transport = Scripted(FlaskTransport(field_app))
    device = make_device(transport, pull_limit=1)
    device.pull()
    stale = stale_copy()
    device.replica.take(stale)
    forged = device.cursor = tampered(device.cursor, u="budi")
    # refused, then the first page of the fresh pull, then the link goes for every attempt of the second
    transport.fail("/api/v1/sync/pull", None, None, *["refused"] * 5)
    with pytest.raises(Unreachable):
        device.pull()
    assert stale["id"] in device.replica  # the old copy is still the device's
    assert device.cursor == forged
    report = device.pull()
    assert report.fresh_starts == 0  # it went on with the fresh pull it had begun
    assert set(device.replica) == {event.household_id for event in made}
    assert device.stats["copies_replaced"] == 1


def test_a_restarted_app_keeps_its_counter_clock_events_and_copy(field_app):
    transport = FlaskTransport(field_app)
    device = make_device(transport)
    made = visit(device)
    device.sync()
    sent = device.edit(household_id=made.household_id, village=VILLAGE, writes={"phone": "0812"})
    unsent = device.edit(household_id=made.household_id, village=VILLAGE, writes={"head_name": "H. Asep"})
    device.send([sent])  # the app is closed with one event unsent
    saved = device.save()

    # the phone's clock went back an hour while the app was closed
    behind = lambda: time.time_ns() // 1_000_000 - HOUR_MS  # noqa: E731
    again = DeviceClient.load(make_session(transport), saved, wall_ms=behind)
    assert again.next_seq == device.next_seq == 4
    assert again.cursor == device.cursor
    assert [event.id for event in again.pending()] == [unsent.id]
    assert {hid: held.digest for hid, held in again.replica.items()} == \
        {hid: held.digest for hid, held in device.replica.items()}
    assert again.record(made.household_id).to_pull() == device.record(made.household_id).to_pull()
    later = again.edit(household_id=made.household_id, village=VILLAGE, writes={"address": "RT 02"})
    assert later.device_seq == 4
    assert later.hlc > unsent.hlc  # the restored clock never stamps below what it issued
    again.login()
    assert again.push().applied == 2
    assert again.pull().households == 1
    assert again.events[1].state == ACKED
    assert [stored_event(field_app, e.id)["engine"]["device_seq"] for e in again.events] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="phone-budi"):
        DeviceClient.load(make_session(transport, "budi"), saved)


def test_a_village_taken_away_leaves_the_replica(field_app):
    device = make_device(FlaskTransport(field_app), "citra")
    here, there = visit(device, village=VILLAGE), visit(device, village=OTHER, seed=2)
    device.sync()
    assert {here.household_id, there.household_id} <= set(device.replica)
    client = field_app.test_client()
    assert client.patch("/api/v1/users/citra", headers=login(client, "admin"),
                        json={"villages": [VILLAGE]}).status_code == 200
    report = device.pull()
    assert report.left_scope == [OTHER]
    assert there.household_id not in device.replica
    assert here.household_id in device.replica


def test_an_unreachable_push_leaves_the_events_pending_for_later(field_app):
    transport = Scripted(FlaskTransport(field_app))
    device = make_device(transport)
    made = visit(device)
    transport.fail("/api/v1/sync/push", *["refused"] * 5)
    with pytest.raises(Unreachable):
        device.push()
    assert made.state == PENDING
    assert made.unknown
    assert device.push().applied == 1  # the link came back


def test_kept_json_holds_only_its_own_bytes():
    household = {"id": "h1", "village": VILLAGE,
                 "fields": {f"field_{n}": {"value": "x" * 200, "stamp": f"1763790000000-{n:04d}/p/e{n}"}
                            for n in range(40)}}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [kept_json(household) for _ in range(200)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert orjson.loads(kept[0]) == household
    # each copy costs its length and a bytes object's header, not the encoder's working buffer
    assert held < 1.1 * sum(len(item) for item in kept) + 200 * 64


def test_replicas_share_one_copy_of_an_equal_household():
    interner = Interner()
    left, right, alone = Replica(interner), Replica(interner), Replica()
    change = {"type": "household", "id": "h1", "village": VILLAGE,
              "fields": {"head_name": {"value": "Asep", "stamp": "1763790000000-0000/p/e1"}}}
    assert left.take(change) is right.take(json.loads(json.dumps(change)))
    assert alone.take(change) is not left.get("h1")
    changed = {**change, "fields": {"head_name": {"value": "Ujang", "stamp": "1763790000001-0000/p/e2"}}}
    assert right.take(changed) is not left.get("h1")
    assert len(interner) == 2
    assert left.drop_area("32.04.05") == ["h1"]
    assert "h1" not in left


# -- over real HTTP ---------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: typing.ClassVar[set] = set()
    close_after: typing.ClassVar[bool] = False
    lock: typing.ClassVar[threading.Lock] = threading.Lock()
    busy: typing.ClassVar[int] = 0
    most_busy: typing.ClassVar[int] = 0

    def do_GET(self):
        handler = type(self)
        handler.connections.add(self.client_address)
        if self.path.startswith("/slow"):
            with handler.lock:
                handler.busy += 1
                handler.most_busy = max(handler.most_busy, handler.busy)
            time.sleep(0.1)
            with handler.lock:
                handler.busy -= 1
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # an idle keep-alive connection closed by the server without saying so
        self.close_connection = type(self).close_after

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    _Handler.connections = set()
    _Handler.close_after = False
    _Handler.busy = _Handler.most_busy = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_http_transport_keeps_connections_alive_and_replaces_a_closed_one(http_server):
    transport = HttpTransport(f"http://127.0.0.1:{http_server.server_address[1]}/prefix", timeout=5)
    assert transport.send("GET", "/a", query={"x": "1 2"}).json() == {"path": "/prefix/a?x=1+2"}
    transport.send("GET", "/b")
    assert len(_Handler.connections) == 1
    _Handler.close_after = True
    transport.send("GET", "/c")
    time.sleep(0.1)
    # the pooled connection is dead now: the next request goes out on a new one, without an error
    reply = transport.send("GET", "/d")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert len(_Handler.connections) == 2
    transport.close()


def test_requests_beyond_max_connections_wait_for_one_and_the_wait_is_timed(http_server):
    waits = []
    transport = HttpTransport(f"http://127.0.0.1:{http_server.server_address[1]}", timeout=5, pool_size=2,
                              max_connections=2, observe_wait=waits.append)
    took = []

    def one(n):
        began = time.perf_counter()
        assert transport.send("GET", f"/slow/{n}").status == 200
        took.append(time.perf_counter() - began)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _Handler.most_busy == 2  # never more than two at the server
    assert len(_Handler.connections) == 2  # over two kept-alive connections
    assert len(waits) == 6
    assert sorted(waits)[-1] >= 0.15  # the last ones waited for two requests before them
    assert max(took) >= max(waits) + 0.1  # a request's time counts its wait
    transport.close()
    with pytest.raises(ValueError, match="max_connections"):
        HttpTransport("http://127.0.0.1:1", max_connections=0)


def test_the_http_transport_refuses_other_schemes():
    with pytest.raises(ValueError, match="http"):
        HttpTransport("ftp://example.org")
