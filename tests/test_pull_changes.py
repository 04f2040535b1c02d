"""Household changes encoded once and served to every device that pulls them (server.pull.HouseholdChanges)."""

from __future__ import annotations

import uuid

import orjson
import pytest
from http_helpers import make_user
from sync_helpers import VILLAGE, Device, households_in

from server.pull import HouseholdChanges
from server.store import get_store
from server.syncing import pull_service
from sync import pull_of_document


@pytest.fixture
def app(backend_app):
    return backend_app


@pytest.fixture
def field(app, client, users):
    make_user(app, "citra", "officer", [VILLAGE])
    return app


def test_devices_of_one_village_pull_one_encoding_and_a_change_is_never_served_stale(app, client, field):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    ani.push([ani.edit(household, {"head_name": "Siti"})])
    with app.app_context():
        cache = pull_service().households
        misses = cache.misses
    assert households_in(ani.pull_all())[household]["fields"]["head_name"]["value"] == "Siti"
    assert households_in(citra.pull_all())[household]["fields"]["head_name"]["value"] == "Siti"
    assert cache.misses == misses + 1  # the second device was served the first one's encoding
    assert cache.hits >= 1
    citra.push([citra.edit(household, {"head_name": "Siti Aminah"}, base=citra.base(household, "head_name"))])
    pulled = households_in(ani.pull_all())[household]
    assert pulled["fields"]["head_name"]["value"] == "Siti Aminah"
    with app.app_context():
        stored = get_store().get("households", household)
    assert pulled == orjson.loads(orjson.dumps(pull_of_document(stored["record"])))


def _doc(n: int, seq: int, text: str = "x") -> dict:
    record = {"format": 2, "id": f"h{n}", "village": VILLAGE, "created": None, "devices": ["d"],
              "events": [["0000000000001-0000", 0, "e1", None, "ani", None, "device"]], "floors": [],
              "fields": {"head_name": {"heads": [[0, text]]}}}
    return {"id": f"h{n}", "seq": seq, "village": VILLAGE, "record": record}


def test_the_encodings_kept_stay_within_their_bound_the_least_recently_used_leaving_first():
    one = len(orjson.dumps(pull_of_document(_doc(0, 1, "a" * 1000)["record"]))) + HouseholdChanges.ENTRY_OVERHEAD
    cache = HouseholdChanges(max_bytes=3 * one)
    identity = ("store", "epoch")
    for n in range(3):
        cache.change(identity, _doc(n, n + 1, "a" * 1000))
    cache.change(identity, _doc(0, 1, "a" * 1000))  # used again: now the most recent
    cache.change(identity, _doc(3, 4, "a" * 1000))  # pushes out the least recently used, h1
    assert cache._bytes <= cache.max_bytes
    misses = cache.misses
    cache.change(identity, _doc(0, 1, "a" * 1000))
    assert cache.misses == misses
    cache.change(identity, _doc(1, 2, "a" * 1000))
    assert cache.misses == misses + 1


def test_another_seq_or_another_epoch_is_another_household_state():
    cache = HouseholdChanges()
    first = cache.change(("store", "epoch"), _doc(0, 1, "Siti"))
    later = cache.change(("store", "epoch"), _doc(0, 2, "Ani"))
    restored = cache.change(("store", "epoch-after-restore"), _doc(0, 1, "Budi"))
    assert [orjson.loads(orjson.dumps([f]))[0]["fields"]["head_name"]["value"] for f in (first, later, restored)] == [
        "Siti", "Ani", "Budi"]
