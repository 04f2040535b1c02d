"""Household pull views: the JSON a pull sends for each household, kept by the store beside it
(server/pull_views.py, Store.encoded_changes), always exactly what the household's record pulls as."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from typing import Any

import orjson
import pytest
from http_helpers import login, make_user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongo_stand_in import StandIn
from sync_helpers import VILLAGE, Device, households_in

from server.households import HOUSEHOLDS, write_households
from server.privacy.masking import mask_household
from server.pull_views import MASKED, VERSION, VIEWS, WHOLE, encode_pull_views
from server.storage import open_store
from server.store import COLLECTIONS, get_store
from sync import fold, format_hlc, pull_of_document

NIK = "3204051203850001"
KK = "3204050101090007"
MEMBERS = ("0b6c7d1e-2f30-4a41-8b52-c3d4e5f60718", "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d")
# Household fields a visit writes, identifiers among them (masked for supervisors), and roster fields.
PATHS = ("head_name", "head_nik", "no_kk", "address", *(f"members/{m}/{f}" for m in MEMBERS for f in ("name", "nik")))
VALUES = st.sampled_from(["Siti", "Budi", NIK, KK, "3204", 1, 1.0, True, None, {"rt": 1, "rw": 2}, [1, "a"]])
PHONES = (("hp-1", "siti"), ("hp-10", "budi"), ("tab-a", "rina"))


@st.composite
def households(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    """A household's events: phones writing its fields (with or without what they had seen), conflicts
    between them, server erasures of a member or of everything."""
    household = str(draw(st.uuids()))
    events: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 12))):
        device, officer = draw(st.sampled_from(PHONES))
        made: dict[str, Any] = {"id": f"ev-{n}", "device_id": device, "hlc": format_hlc(1_763_790_000_000 + 10 * n, 0),
                                "officer": officer, "household_id": household, "village": VILLAGE, "set": {}}
        if n and draw(st.integers(0, 9)) == 0:
            made.update(device_id="server-1", officer="supervisor", origin="server",
                        erase=[draw(st.sampled_from(["*", f"members/{MEMBERS[0]}/*", "head_nik"]))])
        else:
            paths = draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=4, unique=True))
            made["set"] = {path: draw(VALUES) for path in paths}
        events.append(made)
    return household, events


@contextlib.contextmanager
def _stores():
    """A fresh SQLite store and a MongoDB stand-in with the application's collections."""
    with tempfile.TemporaryDirectory() as tmp:
        stores = [open_store(f"sqlite:///{tmp}/kunjung.db", COLLECTIONS),
                  open_store("mongodb://stand-in/kunjung", COLLECTIONS, client=StandIn())]
        for store in stores:
            store.ensure_schema()
        try:
            yield stores
        finally:
            stores[0].close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(households(), min_size=1, max_size=4, unique_by=lambda drawn: drawn[0]))
def test_the_views_a_store_keeps_are_the_bytes_pull_of_document_and_the_masks_make_of_the_stored_household(
        histories: list[tuple[str, list[dict[str, Any]]]]) -> None:
    with _stores() as stores:
        for store in stores:
            def write(tx, store=store):
                stored = tx.get_many(HOUSEHOLDS, [household for household, _ in histories])
                write_households(tx, [(fold(events, household, check=False), stored.get(household, {}),
                                       stored[household]["seq"] if household in stored else None)
                                      for household, events in histories])
            store.unit_of_work(write)
            for view in VIEWS:
                for seq, household, encoded in store.encoded_changes(HOUSEHOLDS, view, 0):
                    doc = store.get(HOUSEHOLDS, household)
                    change = pull_of_document(doc["record"])
                    assert encoded == orjson.dumps(change if view == WHOLE else mask_household(change))
                    assert seq == doc["seq"]
            assert len(store.encoded_changes(HOUSEHOLDS, WHOLE, 0)) == len({h for h, _ in histories})


def test_a_household_of_an_older_record_format_has_no_views_until_upgraded():
    assert encode_pull_views({"id": "h1", "record": {"format": 1, "id": "h1"}}) is None
    assert encode_pull_views({"id": "h1"}) is None


@pytest.fixture
def app(backend_app):
    return backend_app


@pytest.fixture
def field(app, client, users):
    make_user(app, "citra", "officer", [VILLAGE])
    return app


def _pulled_by(client, headers) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/sync/pull", headers=headers, query_string={"limit": 500})
    assert response.status_code == 200, response.get_json()
    return households_in(response.get_json()["changes"])


def test_officers_pull_the_whole_household_and_supervisors_its_masks_as_the_stored_record_pulls(app, client, field):
    ani = Device(client, "ani")
    household = str(uuid.uuid4())
    ani.push([ani.edit(household, {"head_name": "Siti", "head_nik": NIK, "no_kk": KK})])
    with app.app_context():
        change = pull_of_document(get_store().get(HOUSEHOLDS, household)["record"])
    officer = _pulled_by(client, ani.headers)[household]
    supervisor = _pulled_by(client, login(client, "supervisor"))[household]
    assert officer == orjson.loads(orjson.dumps(change))
    assert officer["fields"]["head_nik"]["value"] == NIK
    assert supervisor == orjson.loads(orjson.dumps(mask_household(change)))
    assert supervisor["fields"]["head_nik"]["value"] == {"masked": NIK[:6]}
    assert supervisor["fields"]["head_name"]["value"] == "Siti"


def test_a_household_written_again_is_pulled_as_written_never_as_it_was(app, client, field):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    ani.push([ani.edit(household, {"head_name": "Siti"})])
    assert households_in(ani.pull_all())[household]["fields"]["head_name"]["value"] == "Siti"
    assert households_in(citra.pull_all())[household]["fields"]["head_name"]["value"] == "Siti"
    citra.push([citra.edit(household, {"head_name": "Siti Aminah"}, base=citra.base(household, "head_name"))])
    pulled = households_in(ani.pull_all())[household]
    assert pulled["fields"]["head_name"]["value"] == "Siti Aminah"
    with app.app_context():
        store = get_store()
        stored = store.get(HOUSEHOLDS, household)
        assert [encoded for _, id, encoded in store.encoded_changes(HOUSEHOLDS, MASKED, 0) if id == household] == [
            orjson.dumps(mask_household(pull_of_document(stored["record"])))]
    assert pulled == orjson.loads(orjson.dumps(pull_of_document(stored["record"])))


# The views of one household as version 1 of the views spells them. Stores keep views across
# upgrades, so a kunjung that spells them otherwise must raise server.pull_views.VERSION (start-up
# then encodes every stored household again) and pin its new spelling here.
PINNED_VERSION = 1
PINNED = (
    b'{"type":"household","id":"h-pinned","village":"32.04.05.2001","fields":{"head_name":{"value":"Siti A.",'
    b'"stamp":"1763790000010-0000/hp-2/ev-2","heads":[{"value":"Siti","stamp":"1763790000000-0000/hp-1/ev-1",'
    b'"officer":"siti"},{"value":"Siti A.","stamp":"1763790000010-0000/hp-2/ev-2","officer":"budi"}]},'
    b'"head_nik":{"value":"3204051203850001","stamp":"1763790000000-0000/hp-1/ev-1"}}}',
    b'{"type":"household","id":"h-pinned","village":"32.04.05.2001","fields":{"head_name":{"value":"Siti A.",'
    b'"stamp":"1763790000010-0000/hp-2/ev-2","heads":[{"value":"Siti","stamp":"1763790000000-0000/hp-1/ev-1",'
    b'"officer":"siti"},{"value":"Siti A.","stamp":"1763790000010-0000/hp-2/ev-2","officer":"budi"}]},'
    b'"head_nik":{"value":{"masked":"320405"},"stamp":"1763790000000-0000/hp-1/ev-1"}}}',
)


def test_views_spelt_otherwise_than_the_stored_ones_come_with_a_new_views_version():
    events = [{"id": "ev-1", "device_id": "hp-1", "hlc": format_hlc(1_763_790_000_000, 0), "officer": "siti",
               "household_id": "h-pinned", "village": VILLAGE, "set": {"head_name": "Siti", "head_nik": NIK}},
              {"id": "ev-2", "device_id": "hp-2", "hlc": format_hlc(1_763_790_000_010, 0), "officer": "budi",
               "household_id": "h-pinned", "village": VILLAGE, "set": {"head_name": "Siti A."}}]
    record = orjson.loads(orjson.dumps(fold(events, "h-pinned", check=False).to_document()))
    made = encode_pull_views({"id": "h-pinned", "village": VILLAGE, "record": record, "seq": 1})
    assert (made == PINNED) == (VERSION == PINNED_VERSION), (
        "the stored pull views are spelt otherwise now: raise server.pull_views.VERSION and pin the new bytes here")
