"""Pushes through HTTP on the MongoDB stand-in: concurrent pushes, the server clock, and a
server's errors answered as a device can act on (never a 500), with nothing lost or doubled.

The stand-in is mongomock-ng answering as a replica set with transactions (tests/mongo_stand_in.py),
not a MongoDB; tests that inject its errors say so in their names.
"""

from __future__ import annotations

import datetime
import threading
import uuid

import mongomock_ng
import pytest
from http_helpers import make_user
from mongo_stand_in import (
    STAND_IN_URL,
    STANDALONE,
    StandIn,
    no_such_transaction,
    not_writable_primary,
    stand_in_store,
    unknown_commit_result,
)
from sync_helpers import OTHER_VILLAGE, VILLAGE, Device, statuses

from server.clock import stored_hlc
from server.storage import StoreMisconfigured
from server.store import get_store, raw_store


@pytest.fixture(params=["mongo-stand-in[mongomock-ng]"])
def stand_in_app(app_factory):
    """An app on a MongoDB store over the stand-in (the test id says so), with three officers."""
    stand_in = StandIn()
    app = app_factory(STORE=stand_in_store(stand_in), DATABASE_URL=STAND_IN_URL)
    raw_store(app).hooks.sleep = lambda seconds: None
    make_user(app, "ani", "officer", [VILLAGE])
    make_user(app, "citra", "officer", [VILLAGE])
    make_user(app, "budi", "officer", [OTHER_VILLAGE])
    return app, stand_in


def _pause_first_allocation_of(store, thread_name):
    """Hold the named thread's push between taking its first sequence number and committing."""
    paused, release = threading.Event(), threading.Event()

    def hook(seq):
        if threading.current_thread().name == thread_name and not paused.is_set():
            paused.set()
            assert release.wait(10)

    store.hooks.after_allocate = hook
    return paused, release


def _push_in_thread(app, device_user, events_for, name):
    client = app.test_client()
    device = Device(client, device_user)
    replies: dict = {}
    thread = threading.Thread(target=lambda: replies.update(reply=device.push(events_for(device))), name=name)
    return thread, replies


def test_two_officers_pushing_at_once_do_not_conflict_on_the_server_clock(stand_in_app):
    """The clock is a $max outside the push's transaction: pushes about different households
    never collide, however they interleave."""
    app, stand_in = stand_in_app
    store = raw_store(app)
    paused, release = _pause_first_allocation_of(store, "ani-push")
    ani_household, budi_household = str(uuid.uuid4()), str(uuid.uuid4())
    thread, ani_reply = _push_in_thread(app, "ani", lambda d: [d.edit(ani_household, {"head_name": "Ani"})],
                                        "ani-push")
    thread.start()
    assert paused.wait(10)
    budi = Device(app.test_client(), "budi")
    budi_event = budi.edit(budi_household, {"head_name": "Budi"}, village=OTHER_VILLAGE)
    budi_reply = budi.push([budi_event])
    release.set()
    thread.join(10)
    assert statuses(budi_reply) == ["applied"]
    assert statuses(ani_reply["reply"]) == ["applied"]
    assert stand_in.conflicts == 0
    assert stand_in.aborted_on_server == 0
    with app.app_context():
        clock = stored_hlc(get_store())
        events = get_store().find("events", order_by="-hlc", limit=5)
    assert len(events) == 2
    assert clock >= max(e["hlc"] for e in events)
    assert clock >= max(budi_reply["server_hlc"], ani_reply["reply"]["server_hlc"])


def test_two_officers_pushing_to_one_household_at_once_one_is_judged_again_and_both_are_kept(stand_in_app):
    """The stand-in does detect conflicts: the same interleaving on one household conflicts once."""
    app, stand_in = stand_in_app
    store = raw_store(app)
    household = str(uuid.uuid4())
    citra = Device(app.test_client(), "citra")
    citra.push([citra.edit(household, {"rt": "003"})])
    paused, release = _pause_first_allocation_of(store, "ani-push")
    thread, ani_reply = _push_in_thread(app, "ani", lambda d: [d.edit(household, {"head_name": "Ani"})],
                                        "ani-push")
    thread.start()
    assert paused.wait(10)
    citra_reply = citra.push([citra.edit(household, {"address": "Jl. Melati 2"})])
    release.set()
    thread.join(10)
    assert statuses(citra_reply) == ["applied"]
    assert statuses(ani_reply["reply"]) == ["applied"]
    assert stand_in.conflicts >= 1
    with app.app_context():
        fields = get_store().get("households", household)["record"]["fields"]
        assert {"head_name", "address", "rt"} <= set(fields)
        assert get_store().count("events") == 3


def test_a_primary_stepping_down_under_a_push_is_retried_and_applies_once_injected_fault(stand_in_app):
    app, stand_in = stand_in_app
    ani = Device(app.test_client(), "ani")
    stand_in.inject("insert_many", not_writable_primary, collection="events", in_transaction=True)
    event = ani.edit(str(uuid.uuid4()), {"head_name": "Sekali"})
    assert statuses(ani.push([event])) == ["applied"]
    with app.app_context():
        assert get_store().count("events") == 1
    assert statuses(ani.push([event])) == ["duplicate"]


def test_a_push_that_keeps_conflicting_answers_409_and_its_clock_was_stored_first_injected_fault(stand_in_app):
    app, stand_in = stand_in_app
    ani = Device(app.test_client(), "ani")
    event = ani.edit(str(uuid.uuid4()), {"head_name": "Nanti"})
    stand_in.inject("commit", no_such_transaction, times=1000)
    body = ani.push([event], expect=409)
    assert body["code"] == "conflict"
    assert set(body) >= {"code", "message", "errors", "request_id"}
    with app.app_context():
        assert get_store().count("events") == 0
        assert stored_hlc(get_store()) >= event["hlc"]  # the clock is never below what was received
    stand_in.faults.clear()
    assert statuses(ani.push([event])) == ["applied"]


def test_the_connection_drops_as_the_server_commits_and_the_resend_is_a_duplicate_injected_fault(stand_in_app,
                                                                                                  monkeypatch):
    """503 while the outcome is unknown; the device resends; nothing is doubled, and a pull shows the
    household once the unit's pending mark has expired."""
    app, stand_in = stand_in_app
    store = raw_store(app)
    ani = Device(app.test_client(), "ani")
    household = str(uuid.uuid4())
    event = ani.edit(household, {"head_name": "Mungkin"})
    stand_in.inject("commit", unknown_commit_result, times=store.commit_retry.attempts, applied=True)
    body = ani.push([event], expect=503)
    assert body["code"] == "unavailable"
    assert statuses(ani.push([event])) == ["duplicate"]
    with app.app_context():
        assert get_store().count("events") == 1
    later = mongomock_ng.utcnow() + datetime.timedelta(seconds=store.pending_lease + 1)
    monkeypatch.setattr(mongomock_ng, "utcnow", lambda: later)
    pulled = [c for c in ani.pull_all() if c["type"] == "household"]
    assert [c["id"] for c in pulled] == [household]


def test_a_standalone_mongod_stops_start_up_with_a_message_saying_what_to_do_on_the_stand_in(app_factory):
    store = stand_in_store(StandIn(topology=STANDALONE))
    with pytest.raises(StoreMisconfigured, match="KUNJUNG_MONGO_ALLOW_STANDALONE"):
        app_factory(STORE=store, DATABASE_URL=STAND_IN_URL)


def test_a_standalone_mongod_accepted_by_setting_serves_pushes_without_transactions_on_the_stand_in(app_factory):
    stand_in = StandIn(topology=STANDALONE)
    app = app_factory(STORE=stand_in_store(stand_in, allow_standalone=True), DATABASE_URL=STAND_IN_URL)
    make_user(app, "ani", "officer", [VILLAGE])
    ani = Device(app.test_client(), "ani")
    assert statuses(ani.push([ani.edit(str(uuid.uuid4()), {"head_name": "Tunggal"})])) == ["applied"]
    assert stand_in.started == []


def test_the_allow_standalone_setting_reaches_the_store(app_factory):
    app = app_factory(DATABASE_URL="mongodb://127.0.0.1:9/kunjung", MONGO_ALLOW_STANDALONE=True,
                      STORE_OPTIONS={"timeout_ms": 50})
    assert raw_store(app).allow_standalone is True
