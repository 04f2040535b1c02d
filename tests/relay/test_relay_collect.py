"""ODK Collect through the hall: app credentials come down by their hash, submissions go up as events."""

from __future__ import annotations

import base64

import pytest
from http_helpers import login, make_user
from media_helpers import jpeg
from odk_engine import SAMPLE_POINT, fill, needs_engine, sample_answers
from relay_helpers import close, make_hall, node_app, sync_round
from sync_helpers import VILLAGE, publish_household_form
from test_openrosa import PHOTO_FORM, PUBLIC, Collect, _credential, _generator_changed, _instance_id, _md5, _publish

from server.app_credentials import token_hash
from server.forms_registry import published_definition
from server.store import get_store

FORM = "rumah_tangga_uji"


@pytest.fixture
def central(tmp_path):
    app = node_app(tmp_path, "central", PUBLIC_URL=PUBLIC)
    make_user(app, "admin", "admin")
    make_user(app, "supervisor", "supervisor", ["32.04.05"])
    make_user(app, "ani", "officer", [VILLAGE])
    publish_household_form(app.test_client())
    yield app
    close(app)


def filled_visit(app, phone: Collect, head_name: str) -> str:
    xform, files = phone.download(phone.form_list()[FORM])
    with app.app_context():
        definition = published_definition(get_store(app), FORM, "1")
    answers, repeats = sample_answers(definition, {"head_name": head_name})
    return fill(xform, answers, repeats=repeats, attachments=files)["xml"]


@needs_engine
def test_a_collect_phone_submits_at_the_hall_offline_and_the_visit_reaches_central(tmp_path, central):
    client = central.test_client()
    credential = _credential(client, login(client, "admin"), "ani", "hp-ani-odk")
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE], PUBLIC_URL=PUBLIC)
    phone = Collect(hall.test_client(), credential["qr_text"])  # the phone on the hall's Wi-Fi
    link.down = True  # central is out of reach while the officer works
    xml = filled_visit(hall, phone, "Siti")
    status, text = phone.submit(xml)
    assert status == 201, text
    visit_id = _instance_id(xml)
    with central.app_context():
        assert get_store(central).get("visits", visit_id) is None
    link.down = False
    report = sync_round(hall, link)
    assert report.sent_applied >= 1
    with central.app_context():
        visit = get_store(central).get("visits", visit_id)
        event = get_store(central).get("events", visit_id)
    assert visit["officer"] == "ani"
    assert visit["device_id"] == "hp-ani-odk"
    assert visit["answers"]["head_name"] == "Siti"
    assert event["received_by"] != "central"  # the hall received it, and says so
    close(hall)


@needs_engine
def test_a_credential_revoked_centrally_stops_working_at_the_hall_after_the_next_round(tmp_path, central):
    client = central.test_client()
    admin = login(client, "admin")
    credential = _credential(client, admin, "ani", "hp-ani-odk")
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE], PUBLIC_URL=PUBLIC)
    phone = Collect(hall.test_client(), credential["qr_text"])
    assert FORM in phone.form_list()
    token = phone.base.removeprefix("/key/")
    with hall.app_context():
        held = get_store(hall).get("app_credentials", token_hash(token))  # its SHA-256, never the token
        assert get_store(hall).count("app_credentials") == 1
    assert (held["username"], held["device_id"]) == ("ani", "hp-ani-odk")
    assert token not in str(held)
    devices = client.get("/api/v1/users/ani/devices", headers=admin)
    assert devices.status_code == 200, devices.get_json()
    revoked = client.post("/api/v1/users/ani/devices/hp-ani-odk/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.get_json()
    assert phone.get(f"{phone.base}/formList").status_code == 200  # the hall has not heard yet
    sync_round(hall, link)
    refused = phone.get(f"{phone.base}/formList")
    assert refused.status_code == 401
    assert b"OpenRosaResponse" in refused.data
    with hall.app_context():
        assert get_store(hall).get("app_credentials", token_hash(token)) is None  # dropped at the hall
    close(hall)


@needs_engine
def test_a_hall_whose_clock_is_off_refuses_collect_submissions_in_the_openrosa_shape(tmp_path, central):
    import time

    client = central.test_client()
    credential = _credential(client, login(client, "admin"), "ani", "hp-ani-odk")
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE], PUBLIC_URL=PUBLIC)
    phone = Collect(hall.test_client(), credential["qr_text"])
    xml = filled_visit(hall, phone, "Siti")
    sync_round(hall, link, wall=lambda: int(time.time() * 1000) + 3_600_000)
    status, text = phone.submit(xml)
    assert status == 503
    assert text.startswith("The hall's clock is ")
    with hall.app_context():
        assert get_store(hall).get("visits", _instance_id(xml)) is None
    sync_round(hall, link)
    assert phone.submit(xml)[0] == 201
    close(hall)


@needs_engine
def test_a_collect_photo_taken_at_the_hall_offline_reaches_central_with_its_visit(tmp_path, central):
    client = central.test_client()
    admin = login(client, "admin")
    _publish(client, admin, PHOTO_FORM)
    credential = _credential(client, admin, "ani", "hp-ani-odk")
    hall, link = make_hall(tmp_path, central, "balai", [VILLAGE], PUBLIC_URL=PUBLIC)
    phone = Collect(hall.test_client(), credential["qr_text"])
    link.down = True  # central is out of reach while the officer works
    photo = jpeg(640, 480, "sienna")
    xform, files = phone.download(phone.form_list()["foto_rumah"])
    filled = fill(xform, {"/foto_rumah/head_name": "Siti",
                          "/foto_rumah/house_photo": {"name": "rumah.jpg", "type": "image/jpeg",
                                                      "base64": base64.b64encode(photo).decode()},
                          "/foto_rumah/house_location": SAMPLE_POINT}, attachments=files)
    status, text = phone.submit(filled["xml"], files={"rumah.jpg": photo})
    assert status == 201, text
    visit_id = _instance_id(filled["xml"])
    link.down = False
    report = sync_round(hall, link)
    assert (report.sent_applied, report.files_sent, report.files_refused) == (1, 1, 0)
    supervisor = login(client, "supervisor")
    shown = client.get(f"/api/v1/visits/{visit_id}", headers=supervisor).get_json()
    assert [(a["path"], a["held"]) for a in shown["attachments"]] == [("house_photo", True)]
    assert "attachments_missing" not in [flag["code"] for flag in shown["flags"]]
    got = client.get(f"/api/v1/visits/{visit_id}/attachments/house_photo", headers=supervisor)
    assert got.status_code == 200
    assert got.data == photo  # byte-exact


def test_a_phone_moving_between_the_hall_and_central_sees_one_xform_even_if_the_halls_generator_differs(
        tmp_path, central, monkeypatch):
    client = central.test_client()
    credential = _credential(client, login(client, "admin"), "ani", "hp-ani-odk")
    at_central = Collect(client, credential["qr_text"]).form_list()[FORM]
    _generator_changed(monkeypatch)  # the hall runs another pyxform than central did when it published
    hall, _link = make_hall(tmp_path, central, "balai", [VILLAGE], PUBLIC_URL=PUBLIC)
    phone = Collect(hall.test_client(), credential["qr_text"])
    at_hall = phone.form_list()[FORM]
    assert at_hall["hash"] == at_central["hash"]
    assert "md5:" + _md5(phone.get(at_hall["downloadUrl"]).data) == at_central["hash"]
    close(hall)
