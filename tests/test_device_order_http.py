"""A phone's own writes in its own order, through HTTP; and a store from merge rule 1 folded again on upgrade."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from http_helpers import login, make_user
from sync_helpers import VILLAGE, Device, households_in, listed, publish_household_form, statuses

from server.cli import cli
from server.store import get_store, raw_store

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def app(backend_app):
    """Every scenario here runs on SQLite and on the MongoDB stand-in."""
    return backend_app


@pytest.fixture
def field(app, client, users):
    make_user(app, "citra", "officer", [VILLAGE])
    publish_household_form(client)
    return app


def visit(device: Device, household: str, answers: dict, **extra) -> dict:
    event = {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
             "form_id": "rumah_tangga_uji", "form_version": "1", "village": VILLAGE, "household_id": household,
             "geotag": {"lat": -7.0, "lon": 107.6, "accuracy_m": 8, "captured_at": "2026-11-22T03:00:00Z"},
             "started_at": "2026-11-22T02:50:00Z", "ended_at": "2026-11-22T03:00:00Z", "answers": answers}
    event.update(extra)
    return event


def head_name(device: Device, household: str) -> dict:
    return households_in(device.pull_all())[household]["fields"]["head_name"]


@pytest.mark.parametrize("with_seq", [True, False], ids=["device_seq", "hlc-only"])
def test_three_visits_by_one_phone_without_base_leave_the_last_standing_not_a_conflict(client, field, with_seq):
    ani = Device(client, "ani")
    household = str(uuid.uuid4())
    names = ["Siti", "Siti Aminah", "Siti Aminah Putri"]
    events = [visit(ani, household, {"head_name": name}, **({"device_seq": n} if with_seq else {}))
              for n, name in enumerate(names, start=1)]
    # sent in one batch, in the opposite order: the phone's own order decides, not arrival
    assert statuses(ani.push(list(reversed(events)))) == ["applied"] * 3
    state = head_name(ani, household)
    assert state["value"] == "Siti Aminah Putri"
    assert "heads" not in state
    assert "head_stamps" not in state
    assert listed(client, "/api/v1/conflicts", login(client, "supervisor")) == []


def test_an_edit_restamped_after_clock_skew_keeps_its_device_seq_and_beats_the_older_accepted_edit(client, field):
    ani = Device(client, "ani", clock_offset_ms=60_000)  # a minute fast: still accepted
    household = str(uuid.uuid4())
    assert statuses(ani.push([ani.edit(household, {"head_name": "Lama"}, device_seq=1)])) == ["applied"]
    ani.offset = 3_600_000  # then an hour fast: refused
    later = ani.edit(household, {"head_name": "Baru"}, device_seq=2)
    assert ani.push([later])["results"][0]["code"] == "clock_skew"
    ani.offset = 0  # the phone takes the server's time and stamps the edit again, below the first one
    restamped = {**later, "hlc": ani.hlc()}
    first_hlc = head_name(ani, household)["stamp"].split("/")[0]
    assert restamped["hlc"] < first_hlc
    assert statuses(ani.push([restamped])) == ["applied"]
    state = head_name(ani, household)
    assert state["value"] == "Baru"
    assert "heads" not in state


def test_without_device_seq_a_restamped_edit_is_ordered_by_its_hlc(client, field):
    """A client that sends no counter is ordered by its clock: the re-stamped edit is the older one."""
    ani = Device(client, "ani", clock_offset_ms=60_000)
    household = str(uuid.uuid4())
    ani.push([ani.edit(household, {"head_name": "Lama"})])
    ani.offset = 0
    assert statuses(ani.push([ani.edit(household, {"head_name": "Baru"})])) == ["applied"]
    assert head_name(ani, household)["value"] == "Lama"


def test_two_phones_editing_offline_still_conflict_and_a_reinstalled_app_is_a_new_phone(client, field):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    ani.push([ani.edit(household, {"head_name": "Versi Ani"}, device_seq=1)])
    citra.push([citra.edit(household, {"head_name": "Versi Citra"}, device_seq=1)])
    assert len(head_name(ani, household)["heads"]) == 2
    # ani reinstalls the app: a new device id, whose counter starts again; it saw neither write
    reinstalled = Device(client, "ani")
    reinstalled.push([reinstalled.edit(household, {"head_name": "Versi Ani lagi"}, device_seq=1)])
    values = sorted(h["value"] for h in head_name(ani, household)["heads"])
    assert values == ["Versi Ani", "Versi Ani lagi", "Versi Citra"]


def test_a_resolution_supersedes_exactly_the_heads_it_names_not_a_later_write_of_the_same_phone(client, field):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    ani.push([ani.edit(household, {"head_name": "Versi Ani"}, device_seq=1)])
    citra.push([citra.edit(household, {"head_name": "Versi Citra"}, device_seq=1)])
    supervisor = login(client, "supervisor")
    [conflict] = listed(client, "/api/v1/conflicts", supervisor)
    seen = [h["stamp"] for h in conflict["heads"]]
    ani.push([ani.edit(household, {"head_name": "Versi Ani 2"}, device_seq=2)])  # offline, before the resolution
    body = {"id": str(uuid.uuid4()), "value": "Disepakati", "heads": seen}
    resolved = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", json=body, headers=supervisor)
    # ani's first write is superseded by her own second one already: still a write of this field
    assert resolved.status_code == 200, resolved.get_json()
    assert sorted(h["value"] for h in resolved.get_json()["heads"]) == ["Disepakati", "Versi Ani 2"]


def test_a_resolution_naming_something_that_is_no_stamp_is_refused_with_the_path(client, field):
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    ani.push([ani.edit(household, {"head_name": "A"})])
    citra.push([citra.edit(household, {"head_name": "C"})])
    supervisor = login(client, "supervisor")
    [conflict] = listed(client, "/api/v1/conflicts", supervisor)
    response = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=supervisor,
                           json={"id": str(uuid.uuid4()), "value": "x", "heads": ["not a stamp"]})
    assert response.status_code == 422
    assert "heads[0]" in response.get_json()["errors"]


# -- upgrading a store of merge rule 1 ------------------------------------------------------------------------
def load_rule_1_store(store) -> dict:
    """Write the fixture's documents as kunjung stored them under merge rule 1."""
    fixture = json.loads((FIXTURES / "store_merge_rule_1.json").read_text(encoding="utf-8"))
    for collection in ("events", "households", "conflicts", "visits"):
        for doc in fixture[collection]:
            store.insert(collection, copy.deepcopy(doc))
    store.delete("server_state", "record_format")  # a store of that release had no marker
    return fixture


def test_a_store_of_merge_rule_1_is_folded_again_at_start_up_and_the_closed_conflict_is_reported(
        app, client, users, app_factory, caplog):
    with app.app_context():
        fixture = load_rule_1_store(get_store())
    [household] = fixture["households"]
    [old_conflict] = fixture["conflicts"]
    assert household["record"]["format"] == 1
    assert old_conflict["field"] == "head_name"

    caplog.set_level("WARNING", logger="kunjung.upgrade")
    upgraded = app_factory(STORE=raw_store(app))  # the new release starting on that store
    assert "1 conflicts closed" in caplog.text
    with upgraded.app_context():
        store = get_store()
        doc = store.get("households", household["id"])
        assert doc["record"]["format"] == 2
        assert doc["open_conflicts"] == 0
        assert store.get("conflicts", old_conflict["id"])["open"] is False
        visit = store.get("visits", fixture["visits"][0]["id"])
        assert visit["review_record"]["format"] == 2
        assert visit["review_state"] == "approved"
        [entry] = [a for a in store.find("audit", order_by="-at") if a["action"] == "records_upgraded"]
    assert entry["details"]["households"] == 1
    assert entry["details"]["reviews"] == 1
    assert entry["details"]["closed"] == [{"household_id": household["id"], "field": "head_name",
                                           "conflict_id": old_conflict["id"]}]

    client = upgraded.test_client()
    supervisor = login(client, "supervisor")
    detail = client.get(f"/api/v1/households/{household['id']}", headers=supervisor).get_json()
    assert detail["fields"]["head_name"]["value"] == "Siti Aminah Putri"
    assert "heads" not in detail["fields"]["head_name"]
    assert listed(client, "/api/v1/conflicts", supervisor) == []
    # a second start finds nothing to do and says nothing
    caplog.clear()
    app_factory(STORE=raw_store(app))
    assert "folded again" not in caplog.text


def test_rebuild_households_names_a_household_of_the_older_format_and_fix_brings_it_up(app_factory, monkeypatch):
    app = app_factory()  # the embedded store: the command opens it by its URL
    with app.app_context():
        store = get_store()
        fixture = load_rule_1_store(store)
        store.put("server_state", {"id": "record_format", "format": 2})  # as if the start-up had not run
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY", app.config["SECRET_KEY"])
    [household] = fixture["households"]
    found = CliRunner().invoke(cli, ["rebuild-households"])
    assert found.exit_code == 1, found.output
    assert f"{household['id']} ({VILLAGE}): stored in an older record format" in found.output
    fixed = CliRunner().invoke(cli, ["rebuild-households", "--fix"])
    assert "1 fixed" in fixed.output, fixed.output
    again = CliRunner().invoke(cli, ["rebuild-households"])
    assert again.exit_code == 0
    assert "1 households checked, 0 differ" in again.output
