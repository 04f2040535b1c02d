"""A simulated ODK Collect session against kunjung's OpenRosa API, with the request shapes Collect sends."""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import re
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from http_helpers import login, make_user
from lxml import etree
from mongo_stand_in import STAND_IN_URL, StandIn, not_writable_primary, stand_in_store
from odk_engine import SAMPLE_POINT, fill, needs_engine, sample_answers

from forms import xform as xform_module
from forms.library import library_form
from server import forms_registry, ratelimit
from server.app_credentials import read_settings_payload
from server.blobs import blob_store
from server.blobs.attachments import collect_garbage
from server.cli import cli
from server.forms_registry import published_definition
from server.store import get_store

VILLAGE = "32.04.05.2001"
PUBLIC = "http://192.168.1.10:8000"
NS = {"x": "http://openrosa.org/xforms/xformsList", "m": "http://openrosa.org/xforms/xformsManifest",
      "r": "http://openrosa.org/http/response"}
FORM = "kunjungan_pendampingan"


def _odk_app(app_factory, backend="sqlite", stand_in=None, **settings):
    more = {"STORE": stand_in_store(stand_in), "DATABASE_URL": STAND_IN_URL} if backend != "sqlite" else {}
    application = app_factory(LOAD_LIBRARY_FORMS=True, PUBLIC_URL=PUBLIC, **more, **settings)
    make_user(application, "admin", "admin", password="kata sandi admin yang panjang")
    make_user(application, "ani", "officer", [VILLAGE])
    make_user(application, "budi", "officer", [VILLAGE])
    make_user(application, "sari", "supervisor", ["32.04.05"])
    return application


@pytest.fixture
def odk_app(app_factory):
    return _odk_app(app_factory)


@pytest.fixture(params=["sqlite", "mongo-stand-in[mongomock-ng]"])
def odk_backend_app(request, app_factory):
    """The OpenRosa scenario on each backend (the MongoDB one over its stand-in, not a MongoDB)."""
    return _odk_app(app_factory, request.param)


class Collect:
    """One phone running ODK Collect, set up from a scanned QR code."""

    def __init__(self, client, qr_text: str):
        self.client = client
        self.settings = read_settings_payload(qr_text)
        url = self.settings["general"]["server_url"]
        assert url.startswith(PUBLIC + "/key/")
        self.base = url[len(PUBLIC):]

    def headers(self, **more):
        return {"X-OpenRosa-Version": "1.0", "Date": "Mon, 07 Dec 2026 03:00:00 GMT",
                "User-Agent": "org.odk.collect.android/v2025.2.1", "Accept-Encoding": "gzip,deflate", **more}

    def get(self, url: str, **more):
        path = url[len(PUBLIC):] if url.startswith(PUBLIC) else url
        return self.client.get(path, headers=self.headers(**more))

    def form_list(self):
        response = self.get(f"{self.base}/formList")
        assert response.status_code == 200
        _openrosa_headers(response)
        forms = {}
        for item in etree.fromstring(response.data).iterfind("x:xform", NS):
            forms[item.findtext("x:formID", namespaces=NS)] = {
                child.tag.split("}")[1]: child.text for child in item}
        return forms

    def download(self, entry):
        xml = self.get(entry["downloadUrl"])
        assert xml.status_code == 200
        assert entry["hash"] == "md5:" + _md5(xml.data)
        files = {}
        if entry.get("manifestUrl"):
            manifest = self.get(entry["manifestUrl"])
            assert manifest.status_code == 200
            _openrosa_headers(manifest)
            for media in etree.fromstring(manifest.data).iterfind("m:mediaFile", NS):
                name = media.findtext("m:filename", namespaces=NS)
                assert media.get("type") == ("entityList" if name in ("households.csv", "members.csv") else None)
                body = self.get(media.findtext("m:downloadUrl", namespaces=NS))
                assert body.status_code == 200
                assert media.findtext("m:hash", namespaces=NS) == "md5:" + _md5(body.data)
                files[name] = body.data.decode() if name.endswith(".csv") else body.data
                if name == "households.csv":
                    assert media.findtext("m:integrityUrl", namespaces=NS).startswith(PUBLIC + self.base)
        return xml.data, files

    def submit(self, xml: str | bytes, files: dict[str, bytes] | None = None, incomplete: bool = False):
        probe = self.client.head(f"{self.base}/submission", headers=self.headers())
        assert probe.status_code == 204
        assert int(probe.headers["X-OpenRosa-Accept-Content-Length"]) > 0
        data = {"xml_submission_file": (io.BytesIO(xml.encode() if isinstance(xml, str) else xml),
                                        "instance.xml", "text/xml")}
        for name, content in (files or {}).items():
            data[name] = (io.BytesIO(content), name, "image/jpeg")
        if incomplete:
            data["*isIncomplete*"] = "yes"
        response = self.client.post(f"{self.base}/submission", data=data, headers=self.headers(),
                                    content_type="multipart/form-data")
        _openrosa_headers(response)
        root = etree.fromstring(response.data)
        assert root.tag == "{http://openrosa.org/http/response}OpenRosaResponse"
        return response.status_code, root.findtext("r:message", namespaces=NS)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - OpenRosa's hash


def _openrosa_headers(response):
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", response.headers["Date"])


def _credential(client, admin, username, device):
    response = client.post(f"/api/v1/users/{username}/collect-credentials", json={"device": device}, headers=admin)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["qr_png"]
    assert body["qr_svg"].lstrip().startswith("<svg")
    assert read_settings_payload(body["qr_text"]) == body["settings"]
    return body


def _counts(app):
    with app.app_context():
        store = get_store()
        return store.count("events"), store.count("visits"), store.count("households")


def _definition(app, form_id=FORM):
    with app.app_context():
        return published_definition(get_store(), form_id, library_form(form_id)["settings"]["version"])


def _edit(xml: str, *, new_id: str, deprecated: str) -> str:
    """What Collect sends after an officer edits a sent form: a new instanceID, the old one as deprecatedID."""
    return xml.replace(f"<instanceID>{deprecated}</instanceID>",
                       f"<instanceID>{new_id}</instanceID><deprecatedID>{deprecated}</deprecatedID>")


def _instance_id(xml: str) -> str:
    return re.search(r"<instanceID>([^<]+)</instanceID>", xml).group(1)


@needs_engine
def test_a_collect_session_from_qr_code_to_a_supervisor_conflict(odk_backend_app):
    odk_app = odk_backend_app
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    settings = ani.settings["general"]
    assert settings["form_update_mode"] == "match_exactly"
    assert settings["delete_send"] is True
    assert settings["autosend"] != "off"
    assert settings["protocol"] == "odk_default"
    assert settings["metadata_username"] == "ani"

    forms = ani.form_list()
    assert set(forms) == {"verval_keluarga", "puskesos_pengaduan", FORM, "usulan_dtsen"}
    assert forms[FORM]["version"] == library_form(FORM)["settings"]["version"]
    only = ani.get(f"{ani.base}/formList?formID={FORM}")
    assert len(etree.fromstring(only.data).findall("x:xform", NS)) == 1
    xform, files = ani.download(forms[FORM])
    assert list(files) == ["households.csv"]
    assert files["households.csv"].splitlines()[0].startswith("name,label,__version,")

    # a first visit to a new household, filled in ODK's engine
    definition = _definition(odk_app)
    answers, repeats = sample_answers(definition, {"head_name": "Siti Aminah", "visit_date": "2026-12-01",
                                                   "next_visit_date": "2030-01-15"})
    filled = fill(xform, answers, repeats=repeats, attachments=files)
    first = filled["xml"]
    status, text = ani.submit(first, files={"foto_rumah.jpg": b"\xff\xd8\xff fake jpeg"})
    assert status == 201, text
    visit_id = _instance_id(first)
    with odk_app.app_context():
        visit = get_store().get("visits", visit_id)
    assert visit["officer"] == "ani"
    assert visit["device_id"] == "hp-ani-odk"  # the credential's device, never the XML's deviceid
    assert visit["answers"]["head_name"] == "Siti Aminah"
    assert visit["geotag"]["lat"] == SAMPLE_POINT["latitude"]
    household_id = visit["household_id"]
    supervisor = login(client, "sari")
    assert client.get(f"/api/v1/visits/{visit_id}", headers=supervisor).status_code == 200

    # resent (Collect lost the answer): success, nothing added
    before = _counts(odk_app)
    assert ani.submit(first)[0] == 201
    assert _counts(odk_app) == before
    # the same instanceID with other XML: 409, nothing changed
    other = first.replace("Siti Aminah", "Siti Lain")
    assert ani.submit(other)[0] == 409
    assert _counts(odk_app) == before

    # edited after sending: the new instance supersedes the old
    edited_id = f"uuid:{uuid.uuid4()}"
    status, text = ani.submit(_edit(first, new_id=edited_id, deprecated=visit_id))
    assert status == 201, text
    with odk_app.app_context():
        assert get_store().get("visits", visit_id)["superseded_by"] == edited_id

    # two officers edit the household offline from their own phones
    budi = Collect(client, _credential(client, admin, "budi", "hp-budi-odk")["qr_text"])
    downloads = [phone.download(phone.form_list()[FORM]) for phone in (ani, budi)]
    rows = list(csv.DictReader(io.StringIO(downloads[0][1]["households.csv"])))
    assert [row["name"] for row in rows] == [household_id]
    assert rows[0]["head_name"] == "Siti Aminah"
    assert rows[0]["kstamp__head_name"]  # the hidden stamps the form copies into the submission
    sent = []
    for phone, (xml, files), name in ((ani, downloads[0], "Siti Aminah binti Ahmad"),
                                      (budi, downloads[1], "Siti Aminah Rahayu")):
        answers, repeats = sample_answers(definition, {"visit_date": "2026-12-02", "next_visit_date": "2030-01-15"})
        answers.pop(f"/{FORM}/head_name")
        filled = fill(xml, {f"/{FORM}/kunjung_household": household_id, **answers,
                            f"/{FORM}/head_name": name}, repeats=repeats, attachments=files)
        assert f"<kstamp__head_name>{rows[0]['kstamp__head_name']}</kstamp__head_name>" in filled["xml"]
        assert 'update="true"' in filled["xml"]
        sent.append(phone.submit(filled["xml"]))
    assert [status for status, _ in sent] == [201, 201]
    conflicts = client.get(f"/api/v1/conflicts?village={VILLAGE}", headers=supervisor).get_json()["items"]
    assert [(c["household_id"], c["field"]) for c in conflicts] == [(household_id, "head_name")]
    assert {head["value"] for head in conflicts[0]["heads"]} == {"Siti Aminah binti Ahmad", "Siti Aminah Rahayu"}
    # each write named the stamp its phone had downloaded: a real base, not a guess from __version
    history = client.get(f"/api/v1/households/{household_id}/history", headers=supervisor).get_json()["history"]
    assert [entry["base"].get("head_name") for entry in history[-2:]] == [[rows[0]["kstamp__head_name"]]] * 2
    assert {entry["device_id"] for entry in history[-2:]} == {"hp-ani-odk", "hp-budi-odk"}

    # integrity: a household Collect holds that is gone for the caller is reported deleted
    gone = ani.get(f"{ani.base}/datasets/households/integrity?id={household_id},{uuid.uuid4()}")
    states = {e.get("id"): e.findtext("deleted") for e in etree.fromstring(gone.data).iter("entity")}
    assert states[household_id] == "false"
    assert sorted(states.values()) == ["false", "true"]


@needs_engine
def test_bad_requests_are_refused_with_an_openrosa_message_and_nothing_stored(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    forms = ani.form_list()
    xform, files = ani.download(forms[FORM])
    definition = _definition(odk_app)
    answers, repeats = sample_answers(definition)
    good = fill(xform, answers, repeats=repeats, attachments=files)["xml"]
    before = _counts(odk_app)

    def refused(xml, expect):
        status, text = ani.submit(xml)
        assert status == expect, text
        assert _counts(odk_app) == before

    refused("<not xml", 400)
    refused('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><r>&b;</r>', 400)
    refused(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', 400)
    refused("<r>" + "<a>" * 100 + "</a>" * 100 + "</r>", 400)
    refused(good.replace(f'id="{FORM}"', 'id="no_such_form"'), 404)
    refused(good.replace(f'version="{library_form(FORM)["settings"]["version"]}"', 'version="1999.1"'), 404)
    refused(re.sub(r"<members_met>[^<]*</members_met>", "<members_met>banyak</members_met>", good), 400)
    refused(re.sub(r"<instanceID>[^<]*</instanceID>", "", good), 400)
    # no XML part at all, and not multipart
    response = client.post(f"{ani.base}/submission", data={"other": (io.BytesIO(b"x"), "x.txt")},
                           headers=ani.headers(), content_type="multipart/form-data")
    assert response.status_code == 400
    response = client.post(f"{ani.base}/submission", data=good, headers=ani.headers(), content_type="text/xml")
    assert response.status_code == 415
    # Collect always says X-OpenRosa-Version
    assert client.get(f"{ani.base}/formList").status_code == 400
    # an unknown token, then a revoked device: 401 at once
    assert client.get("/key/" + "x" * 43 + "/formList", headers=ani.headers()).status_code == 401
    assert client.post("/api/v1/users/ani/devices/hp-ani-odk/revoke", headers=admin).status_code == 200
    assert ani.get(f"{ani.base}/formList").status_code == 401
    response = client.post(f"{ani.base}/submission", headers=ani.headers(), content_type="multipart/form-data",
                           data={"xml_submission_file": (io.BytesIO(good.encode()), "i.xml", "text/xml")})
    assert response.status_code == 401
    assert etree.fromstring(response.data).findtext("r:message", namespaces=NS)
    assert _counts(odk_app) == before


def _openrosa_refusal(response, status):
    """An answer Collect can read: the status, OpenRosa's headers and an OpenRosaResponse message (never JSON)."""
    assert response.status_code == status, response.data
    _openrosa_headers(response)
    assert response.mimetype == "text/xml"
    root = etree.fromstring(response.data)
    assert root.tag == "{http://openrosa.org/http/response}OpenRosaResponse"
    text = root.findtext("r:message", namespaces=NS)
    assert text
    assert root.find("r:message", NS).get("nature") == "error"
    return text


def test_refusals_made_before_the_views_answer_collect_in_openrosa_xml(app_factory):
    odk_app = _odk_app(app_factory, MAX_BODY_BYTES=64 * 1024, MAX_DECOMPRESSED_BYTES=256 * 1024)
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    before = _counts(odk_app)
    photo = b"\xff\xd8\xff" + b"\x00" * (100 * 1024)  # a photo past the body limit, in one post

    def posted():
        return {"xml_submission_file": (io.BytesIO(b"<data/>"), "instance.xml", "text/xml"),
                "foto.jpg": (io.BytesIO(photo), "foto.jpg", "image/jpeg")}

    # the body guard: a declared Content-Length over the limit, answered before a byte is read
    response = client.post(f"{ani.base}/submission", data=posted(), headers=ani.headers(),
                           content_type="multipart/form-data")
    assert "65536" in _openrosa_refusal(response, 413)
    assert response.headers["Connection"] == "close"
    assert response.headers["X-Request-ID"]
    # ... in the language Collect asks for
    response = client.post(f"{ani.base}/submission", data=posted(), content_type="multipart/form-data",
                           headers=ani.headers(**{"Accept-Language": "id-ID"}))
    text = _openrosa_refusal(response, 413)
    assert response.headers["Content-Language"] == "id"
    assert "65536" in text
    assert "larger than" not in text
    # a chunked body (no Content-Length), refused when reading passes the limit
    body = b"--b\r\nContent-Disposition: form-data; name=\"foto.jpg\"; filename=\"foto.jpg\"\r\n\r\n" + photo
    response = client.post(f"{ani.base}/submission", input_stream=io.BytesIO(body + b"\r\n--b--\r\n"),
                           headers=ani.headers(**{"Content-Type": "multipart/form-data; boundary=b",
                                                  "Transfer-Encoding": "chunked"}),
                           environ_overrides={"wsgi.input_terminated": True})
    _openrosa_refusal(response, 413)
    # a gzip body that inflates past its limit, and an encoding the guard does not take
    response = client.post(f"{ani.base}/submission", data=gzip.compress(b"\x00" * (1024 * 1024)),
                           headers=ani.headers(**{"Content-Encoding": "gzip"}), content_type="multipart/form-data")
    assert "262144" in _openrosa_refusal(response, 413)
    response = client.post(f"{ani.base}/submission", data=b"x", content_type="multipart/form-data",
                           headers=ani.headers(**{"Content-Encoding": "br"}))
    _openrosa_refusal(response, 415)
    response = client.post(f"{ani.base}/submission", data=b"x", content_type="multipart/form-data",
                           headers=ani.headers(), environ_overrides={"CONTENT_LENGTH": "lots"})
    _openrosa_refusal(response, 400)
    # routing: a method no view takes, and paths no view has
    response = client.patch(f"{ani.base}/submission", data=b"x", headers=ani.headers())
    _openrosa_refusal(response, 405)
    assert "POST" in response.headers["Allow"]
    _openrosa_refusal(client.get(ani.base, headers=ani.headers()), 404)
    _openrosa_refusal(client.get("/key/", headers=ani.headers()), 404)
    # a token that names no credential
    _openrosa_refusal(client.get("/key/" + "x" * 43 + "/formList", headers=ani.headers()), 401)
    response = client.head("/key/" + "x" * 43 + "/submission", headers=ani.headers())
    assert response.status_code == 401
    assert response.mimetype == "text/xml"
    _openrosa_headers(response)
    assert _counts(odk_app) == before
    # the same refusals elsewhere keep the JSON shape: the path decides
    response = client.post("/api/v1/sync/push", data=photo, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["code"] == "too_large"
    response = client.patch("/api/v1/auth/login", json={})
    assert response.status_code == 405
    assert response.get_json()["code"] == "method_not_allowed"


def test_a_disabled_user_or_a_replaced_credential_stops_working(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    first = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    assert first.get(f"{first.base}/formList").status_code == 200
    second = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    assert first.get(f"{first.base}/formList").status_code == 401
    assert second.get(f"{second.base}/formList").status_code == 200
    assert client.patch("/api/v1/users/ani", json={"disabled": True}, headers=admin).status_code == 200
    assert second.get(f"{second.base}/formList").status_code == 401


def test_only_admins_and_the_officers_supervisor_make_credentials(odk_app):
    client = odk_app.test_client()
    make_user(odk_app, "lain", "supervisor", ["32.04.06"])
    assert client.post("/api/v1/users/ani/collect-credentials", json={"device": "hp"},
                       headers=login(client, "lain")).status_code == 404
    assert client.post("/api/v1/users/ani/collect-credentials", json={"device": "hp"},
                       headers=login(client, "budi")).status_code == 403
    assert client.post("/api/v1/users/ani/collect-credentials", json={"device": "hp"},
                       headers=login(client, "sari")).status_code == 201
    assert client.post("/api/v1/users/ani/collect-credentials", json={"device": "../x"},
                       headers=login(client, "sari")).status_code == 422


def test_collect_qr_command_prints_the_settings_or_writes_png_and_svg(odk_app, tmp_path, monkeypatch):
    from server import cli as cli_module

    monkeypatch.setattr(cli_module, "create_app", lambda: odk_app)
    runner = CliRunner()
    done = runner.invoke(cli, ["collect-qr", "ani", "--device", "hp-ani-02", "--json"])
    assert done.exit_code == 0, done.output
    settings = json.loads(done.stdout)
    assert settings["general"]["server_url"].startswith(PUBLIC + "/key/")
    done = runner.invoke(cli, ["collect-qr", "ani", "--device", "hp-ani-03", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "collect-ani-hp-ani-03.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (tmp_path / "collect-ani-hp-ani-03.svg").read_text()
    assert runner.invoke(cli, ["collect-qr", "admin", "--device", "hp"]).exit_code != 0


def test_the_xform_served_is_the_one_built_for_the_version(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    entry = ani.form_list()[FORM]
    xml = ani.get(entry["downloadUrl"])
    assert xml.data == xform_module.xform_of(_definition(odk_app)).xml
    again = ani.get(entry["downloadUrl"], **{"If-None-Match": xml.headers["ETag"]})
    assert again.status_code == 304


PHOTO_FORM = {
    "settings": {"form_id": "foto_rumah", "version": "1", "title": {"id": "Foto rumah", "en": "House photo"},
                 "default_language": "id"},
    "fields": [
        {"type": "text", "name": "head_name", "label": {"id": "Nama kepala keluarga", "en": "Head's name"},
         "required": True, "save_to": "head_name"},
        {"type": "image", "name": "house_photo", "label": {"id": "Foto rumah", "en": "Photo of the house"},
         "parameters": {"max-pixels": 1024}},
        {"type": "geopoint", "name": "house_location", "label": {"id": "Lokasi rumah", "en": "House location"}},
    ],
}
# the smallest JPEG the media sniffer knows: its magic number and an end marker
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"


def _publish(client, admin, definition):
    form_id = definition["settings"]["form_id"]
    assert client.post("/api/v1/forms", json=definition, headers=admin).status_code == 201
    version = definition["settings"]["version"]
    assert client.post(f"/api/v1/forms/{form_id}/versions/{version}/publish", headers=admin).status_code == 200
    assert client.put(f"/api/v1/forms/{form_id}/assignment", json={"all": True}, headers=admin).status_code == 200


@needs_engine
def test_a_photo_taken_in_collect_reaches_the_visit_even_over_two_posts(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    _publish(client, admin, PHOTO_FORM)
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    entry = ani.form_list()["foto_rumah"]
    xform, files = ani.download(entry)
    assert b'mediatype="image/*"' in xform
    filled = fill(xform, {"/foto_rumah/head_name": "Siti",
                          "/foto_rumah/house_photo": {"name": "rumah.jpg", "type": "image/jpeg",
                                                      "base64": base64.b64encode(JPEG).decode()},
                          "/foto_rumah/house_location": SAMPLE_POINT}, attachments=files)
    assert "<house_photo>rumah.jpg</house_photo>" in filled["xml"]
    assert filled["files"]["rumah.jpg"]["name"] == "rumah.jpg"  # the engine serialised the photo too
    visit_id = _instance_id(filled["xml"])
    # Collect splits a large post: the XML first with *isIncomplete*, then the XML again with the photo
    assert ani.submit(filled["xml"], incomplete=True)[0] == 201
    with odk_app.app_context():
        assert get_store().get("visits", visit_id) is None  # the visit waits for the last part
    status, text = ani.submit(filled["xml"], files={"rumah.jpg": JPEG})
    assert status == 201, text
    sari = login(client, "sari")
    assert client.get(f"/api/v1/visits/{visit_id}", headers=sari).status_code == 200
    with odk_app.app_context():
        visit = get_store().get("visits", visit_id)
    assert [(a["path"], a["sha256"], a["held"]) for a in visit["attachments"]] == [
        ("house_photo", hashlib.sha256(JPEG).hexdigest(), True)]
    assert "attachments_missing" not in {flag["code"] for flag in visit["flags"]}
    photo = client.get(f"/api/v1/visits/{visit_id}/attachments/house_photo", headers=sari)
    assert photo.status_code == 200
    assert photo.data == JPEG
    # the photo resent with the XML changes nothing; the XML alone again neither
    before = _counts(odk_app)
    assert ani.submit(filled["xml"], files={"rumah.jpg": JPEG})[0] == 201
    assert ani.submit(filled["xml"])[0] == 201
    assert _counts(odk_app) == before


@needs_engine
def test_a_revisit_in_collect_updates_the_households_members_instead_of_adding_them(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    entry = ani.form_list()["verval_keluarga"]
    xform, files = ani.download(entry)
    assert set(files) == {"households.csv", "members.csv"}
    definition = _definition(odk_app, "verval_keluarga")
    answers, _ = sample_answers(definition, {"visit_result": "1", "member_name": "Anggota"}, rows=2)
    first = fill(xform, answers, attachments=files)["xml"]
    # every roster row declares its member as an entity of the list `members`: new ones are created
    made = _member_entities(first)
    assert len(made) == 2
    assert [(entity["create"], entity["update"]) for entity in made] == [("true", "false")] * 2
    assert ani.submit(first)[0] == 201
    with odk_app.app_context():
        household_id = get_store().get("visits", _instance_id(first))["household_id"]

    def members():
        fields = client.get(f"/api/v1/households/{household_id}", headers=admin).get_json()["fields"]
        return {path.split("/")[1] for path in fields if path.startswith("members/")}

    known = members()
    assert len(known) == 2
    xform, files = ani.download(entry)
    rows = list(csv.DictReader(io.StringIO(files["members.csv"])))
    assert {row["name"] for row in rows} == known
    assert all(row["household"] == household_id and row["kmstamp__name"] for row in rows)
    # the revisit: the household picked, its two members prefilled, no new one; the first renamed
    answers, _ = sample_answers(definition, {"visit_result": "1"}, rows=0)
    answers = {ref: value for ref, value in answers.items() if "/members[" not in ref}
    revisit = fill(xform, {"/verval_keluarga/kunjung_household": household_id, **answers,
                           "/verval_keluarga/members[1]/member_name": "Siti Rahayu"}, attachments=files)
    assert [n["value"] for n in revisit["tree"] if n["ref"] == "/verval_keluarga/members[2]/member_name"] == [
        rows[1]["kmval__name"]]  # prefilled from members.csv
    # the known members' rows update their entities, on the version members.csv gave
    assert [(e["id"], e["create"], e["update"], e["baseVersion"]) for e in _member_entities(revisit["xml"])] == [
        (row["name"], "false", "true", row["__version"]) for row in rows]
    assert {e["id"] for e in made} == known  # the ids the rows were created with are the members' ids
    assert ani.submit(revisit["xml"])[0] == 201
    assert members() == known  # the same two members, not four
    # Collect asks which members it holds are gone: none of the household's, any other id
    gone = ani.get(f"{ani.base}/datasets/members/integrity?id={','.join(sorted(known))},{uuid.uuid4()}")
    _openrosa_headers(gone)
    assert [e.findtext("deleted") for e in etree.fromstring(gone.data).iter("entity")] == ["false", "false", "true"]
    fields = client.get(f"/api/v1/households/{household_id}", headers=admin).get_json()["fields"]
    first_member = sorted(known)[0]
    assert fields[f"members/{first_member}/name"]["value"] == "Siti Rahayu"
    assert "heads" not in fields[f"members/{first_member}/name"]
    history = client.get(f"/api/v1/households/{household_id}/history", headers=admin).get_json()["history"]
    stamp = next(row["kmstamp__name"] for row in rows if row["name"] == first_member)
    assert history[-1]["base"][f"members/{first_member}/name"] == [stamp]  # the member's stamp came along


def _member_entities(xml: str) -> list[dict[str, str]]:
    root = etree.fromstring(xml.encode())
    return [dict(entity.attrib) for entity in root.iter("{*}entity") if entity.get("dataset") == "members"]


DESA_CSV = (b"name,label,kepala_desa\n"
            b"3204052001,Sukamaju,Ujang Rahmat\n"
            b"3204052002,Mekarsari,Iis Sumiati\n")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def _files_workbook() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    survey = book.active
    survey.title = "survey"
    for row in (
        ["type", "name", "label::Indonesian (id)", "label::English (en)", "calculation", "image::Indonesian (id)"],
        ["select_one_from_file desa.csv", "desa", "Desa", "Village"],
        ["calculate", "kepala_desa", None, None, "pulldata('desa', 'kepala_desa', 'name', ${desa})"],
        ["image", "foto_rumah", "Foto depan rumah", "Front of the house", None, "contoh_rumah.png"],
    ):
        survey.append(row)
    settings = book.create_sheet("settings")
    settings.append(["form_id", "version", "form_title", "default_language"])
    settings.append(["pemeriksaan_rumah", "2026.3", "Pemeriksaan rumah", "Indonesian (id)"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@needs_engine
def test_a_forms_own_files_reach_collect_through_its_manifest(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    created = client.post("/api/v1/forms", headers=admin, content_type="multipart/form-data", data={
        "file": (io.BytesIO(_files_workbook()), "pemeriksaan_rumah.xlsx"),
        "files": [(io.BytesIO(DESA_CSV), "desa.csv"), (io.BytesIO(PNG), "contoh_rumah.png")]})
    assert created.status_code == 201, created.get_json()
    assert client.post("/api/v1/forms/pemeriksaan_rumah/versions/2026.3/publish", headers=admin).status_code == 200
    assert client.put("/api/v1/forms/pemeriksaan_rumah/assignment", json={"all": True},
                      headers=admin).status_code == 200
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    entry = ani.form_list()["pemeriksaan_rumah"]
    manifest = ani.get(entry["manifestUrl"])
    listed = {m.findtext("m:filename", namespaces=NS): m.findtext("m:hash", namespaces=NS)
              for m in etree.fromstring(manifest.data).iterfind("m:mediaFile", NS)}
    assert listed.pop("households.csv").startswith("md5:")  # every visit is about a household
    assert listed == {"desa.csv": "md5:" + _md5(DESA_CSV), "contoh_rumah.png": "md5:" + _md5(PNG)}
    xform, files = ani.download(entry)
    assert files["desa.csv"].encode() == DESA_CSV
    assert files["contoh_rumah.png"] == PNG
    filled = fill(xform, {"/pemeriksaan_rumah/desa": "3204052002"}, attachments={"desa.csv": DESA_CSV.decode()})
    options = {n["ref"]: n.get("options") for n in filled["tree"]}["/pemeriksaan_rumah/desa"]
    assert options == ["3204052001", "3204052002"]  # the choices came from the form's own CSV
    status, text = ani.submit(filled["xml"])
    assert status == 201, text


# -- offline entities: Collect's branches (baseVersion, trunkVersion, branchId) ----------------------
OFFLINE_FORM = {
    "settings": {"form_id": "catat_rumah", "version": "1", "title": {"id": "Catat rumah", "en": "Record a house"},
                 "default_language": "id"},
    "fields": [
        {"type": "text", "name": "head_name", "label": {"id": "Nama kepala keluarga", "en": "Head's name"},
         "required": True, "save_to": "head_name"},
        {"type": "geopoint", "name": "house_location", "label": {"id": "Lokasi rumah", "en": "House location"}},
    ],
}


def _phone_list(households_csv: str, rows: list[dict[str, str]]) -> str:
    """households.csv as Collect holds it on the phone: the server's rows, its own offline versions in
    place of theirs, and the `__trunkVersion` / `__branchId` columns Collect keeps per entity."""
    table = list(csv.DictReader(io.StringIO(households_csv)))
    header = [*next(csv.reader(io.StringIO(households_csv))), "__trunkVersion", "__branchId"]
    mine = {row["name"]: row for row in rows}
    out = io.StringIO()
    writer = csv.DictWriter(out, header, restval="", lineterminator="\n")
    writer.writeheader()
    for row in [r for r in table if r["name"] not in mine] + rows:
        writer.writerow(row)
    return out.getvalue()


def _offline_visit(xform, files, name, household_id=None):
    # the household is picked first: picking it prefills the saved questions, which the officer then edits
    picked = {"/catat_rumah/kunjung_household": household_id} if household_id else {}
    answers = {**picked, "/catat_rumah/head_name": name, "/catat_rumah/house_location": SAMPLE_POINT}
    xml = fill(xform, answers, attachments=files)["xml"]
    assert f"<head_name>{name}</head_name>" in xml
    return xml


def _entity(xml: str) -> dict[str, str]:
    root = etree.fromstring(xml.encode())
    return dict(root.find("{*}meta/{*}entity").attrib)


def _household(app, household_id):
    with app.app_context():
        return get_store().get("households", household_id)


def _head_name(client, headers, household_id):
    body = client.get(f"/api/v1/households/{household_id}", headers=headers).get_json()
    return body["fields"]["head_name"]["value"], body["open_conflicts"]


@needs_engine
def test_a_household_registered_offline_and_revisited_offline_converges_when_the_revisit_arrives_first(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    _publish(client, admin, OFFLINE_FORM)
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    xform, files = ani.download(ani.form_list()["catat_rumah"])
    created = _offline_visit(xform, files, "Siti Aminah")
    household_id = _entity(created)["id"]
    assert _entity(created)["create"] == "true"
    # Collect keeps the new household as version 1 of a branch of its own, and the revisit updates it
    branch = str(uuid.uuid4())
    on_phone = _phone_list(files["households.csv"], [{"name": household_id, "label": "Siti Aminah",
                                                      "__version": "1", "head_name": "Siti Aminah",
                                                      "__branchId": branch}])
    revisit = _offline_visit(xform, {**files, "households.csv": on_phone}, "Siti Aminah binti Ahmad", household_id)
    entity = _entity(revisit)
    assert (entity["update"], entity["baseVersion"], entity["trunkVersion"], entity["branchId"]) == (
        "true", "1", "", branch)

    # the phone's network sends the revisit first: accepted, and held until the registration comes
    before = _counts(odk_app)
    status, text = ani.submit(revisit)
    assert status == 201, text
    assert _counts(odk_app) == before
    assert _household(odk_app, household_id) is None
    assert ani.submit(revisit)[0] == 201  # Collect retrying is still one held submission
    status, text = ani.submit(created)
    assert status == 201, text
    sari = login(client, "sari")
    assert _head_name(client, sari, household_id) == ("Siti Aminah binti Ahmad", 0)
    history = client.get(f"/api/v1/households/{household_id}/history", headers=sari).get_json()["history"]
    assert [entry["event_id"] for entry in history] == [_instance_id(created), _instance_id(revisit)]
    for visit in (created, revisit):
        assert client.get(f"/api/v1/visits/{_instance_id(visit)}", headers=sari).status_code == 200
    # both resent after the fact: nothing added
    before = _counts(odk_app)
    assert [ani.submit(xml)[0] for xml in (revisit, created)] == [201, 201]
    assert _counts(odk_app) == before


@needs_engine
def test_two_offline_revisits_arriving_in_reverse_order_keep_the_phones_order_and_a_stale_branch_conflicts(
        odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    _publish(client, admin, OFFLINE_FORM)
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    budi = Collect(client, _credential(client, admin, "budi", "hp-budi-odk")["qr_text"])
    xform, files = ani.download(ani.form_list()["catat_rumah"])
    registered = _offline_visit(xform, files, "Siti Aminah")
    assert ani.submit(registered)[0] == 201
    household_id = _entity(registered)["id"]
    sari = login(client, "sari")

    # both phones download the household; ani revisits it twice without a signal
    xform, files = ani.download(ani.form_list()["catat_rumah"])
    _, budi_files = budi.download(budi.form_list()["catat_rumah"])
    row = next(csv.DictReader(io.StringIO(files["households.csv"])))
    version, branch = int(row["__version"]), str(uuid.uuid4())
    first = _offline_visit(xform, {**files, "households.csv": _phone_list(files["households.csv"], [
        {**row, "__trunkVersion": str(version), "__branchId": branch}])}, "Siti Aminah binti Ahmad", household_id)
    second = _offline_visit(xform, {**files, "households.csv": _phone_list(files["households.csv"], [
        {**row, "__version": str(version + 1), "head_name": "Siti Aminah binti Ahmad",
         "__trunkVersion": str(version), "__branchId": branch}])}, "Hj. Siti Aminah binti Ahmad", household_id)
    assert (_entity(first)["baseVersion"], _entity(second)["baseVersion"]) == (str(version), str(version + 1))
    assert _entity(second)["trunkVersion"] == str(version)

    # the second arrives first: it waits, then follows the first; the phone's last word stands
    assert ani.submit(second)[0] == 201
    assert _head_name(client, sari, household_id) == ("Siti Aminah", 0)
    assert ani.submit(first)[0] == 201
    assert _head_name(client, sari, household_id) == ("Hj. Siti Aminah binti Ahmad", 0)

    # budi's revisit was made on the version both downloaded: its stamps name the value ani replaced,
    # so it meets ani's branch as a conflict for the supervisor, never a silent overwrite
    budi_row = next(csv.DictReader(io.StringIO(budi_files["households.csv"])))
    stale = _offline_visit(xform, {**budi_files, "households.csv": _phone_list(budi_files["households.csv"], [
        {**budi_row, "__trunkVersion": budi_row["__version"], "__branchId": str(uuid.uuid4())}])},
        "Siti Rahayu", household_id)
    server_version = _household(odk_app, household_id)["seq"]
    assert int(_entity(stale)["baseVersion"]) < server_version
    assert budi.submit(stale)[0] == 201
    conflicts = client.get(f"/api/v1/conflicts?village={VILLAGE}", headers=sari).get_json()["items"]
    assert [(c["household_id"], c["field"]) for c in conflicts] == [(household_id, "head_name")]
    assert {head["value"] for head in conflicts[0]["heads"]} == {"Hj. Siti Aminah binti Ahmad", "Siti Rahayu"}
    # and its visit says the versions disagreed, apart from the conflict: ani's own branch never does
    behind = _flags(client, sari, stale, "collect_version_behind")
    assert [(flag["base_version"], flag["server_version"]) for flag in behind] == [
        (int(_entity(stale)["baseVersion"]), server_version)]
    assert _flags(client, sari, first, "collect_version_behind") == []
    assert _flags(client, sari, second, "collect_version_behind") == []


def _flags(client, headers, xml, code):
    visit = client.get(f"/api/v1/visits/{_instance_id(xml)}", headers=headers).get_json()
    return [flag for flag in visit["flags"] if flag["code"] == code]


ADDRESS_FORM = {
    "settings": {"form_id": "catat_alamat", "version": "1", "title": {"id": "Catat alamat", "en": "Record an address"},
                 "default_language": "id"},
    "fields": [
        {"type": "text", "name": "address", "label": {"id": "Alamat", "en": "Address"}, "save_to": "address"},
        {"type": "geopoint", "name": "house_location", "label": {"id": "Lokasi rumah", "en": "House location"}},
    ],
}


@needs_engine
def test_an_offline_update_on_an_old_version_of_other_fields_is_flagged_behind_but_makes_no_conflict(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    _publish(client, admin, OFFLINE_FORM)
    _publish(client, admin, ADDRESS_FORM)
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    budi = Collect(client, _credential(client, admin, "budi", "hp-budi-odk")["qr_text"])
    xform, files = ani.download(ani.form_list()["catat_rumah"])
    registered = _offline_visit(xform, files, "Siti Aminah")
    assert ani.submit(registered)[0] == 201
    household_id = _entity(registered)["id"]
    sari = login(client, "sari")
    xform, files = ani.download(ani.form_list()["catat_rumah"])
    address_form, budi_files = budi.download(budi.form_list()["catat_alamat"])
    assert ani.submit(_offline_visit(xform, files, "Siti Aminah binti Ahmad", household_id))[0] == 201
    # budi, on the version before ani's revisit, only notes the address: the versions disagree, no field does
    budi_row = next(csv.DictReader(io.StringIO(budi_files["households.csv"])))
    noted = fill(address_form, {"/catat_alamat/kunjung_household": household_id,
                                "/catat_alamat/address": "Jl. Melati 3", "/catat_alamat/house_location": SAMPLE_POINT},
                 attachments={**budi_files, "households.csv": _phone_list(budi_files["households.csv"], [
                     {**budi_row, "__trunkVersion": budi_row["__version"], "__branchId": str(uuid.uuid4())}])})["xml"]
    assert _entity(noted)["baseVersion"] == budi_row["__version"]
    assert budi.submit(noted)[0] == 201
    assert _head_name(client, sari, household_id) == ("Siti Aminah binti Ahmad", 0)  # no conflict
    [behind] = _flags(client, sari, noted, "collect_version_behind")
    assert behind["base_version"] == int(budi_row["__version"])
    assert behind["server_version"] > behind["base_version"]
    assert behind["message"].startswith("Made in ODK Collect on version")
    bahasa = client.get(f"/api/v1/visits/{_instance_id(noted)}", headers={**sari, "Accept-Language": "id"}).get_json()
    assert next(f for f in bahasa["flags"] if f["code"] == "collect_version_behind")["message"].startswith("Dibuat")


# -- a submission and its files as one unit --------------------------------------------------------
def _photo_visit(client, admin):
    _publish(client, admin, PHOTO_FORM)
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    xform, files = ani.download(ani.form_list()["foto_rumah"])
    filled = fill(xform, {"/foto_rumah/head_name": "Siti",
                          "/foto_rumah/house_photo": {"name": "rumah.jpg", "type": "image/jpeg",
                                                      "base64": base64.b64encode(JPEG).decode()},
                          "/foto_rumah/house_location": SAMPLE_POINT}, attachments=files)
    return ani, filled["xml"]


def _attachment_docs(app, visit_id):
    with app.app_context():
        return get_store().find("attachments", {"visit_id": visit_id})


@needs_engine
def test_a_store_failure_after_the_visit_leaves_its_photo_to_the_resend_never_half_held(app_factory):
    stand_in = StandIn()
    odk_app = _odk_app(app_factory, "mongo", stand_in)
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani, xml = _photo_visit(client, admin)
    visit_id = _instance_id(xml)
    digest = hashlib.sha256(JPEG).hexdigest()

    def unnamed_blobs():
        with odk_app.app_context():
            return collect_garbage(get_store(), blob_store(), grace_seconds=0, dry_run=True).blobs

    # the store fails while the visit is written: nothing is taken, and the photo's bytes, stored
    # first, are named by nothing, so garbage collection takes them
    stand_in.inject("insert_many", not_writable_primary, collection="events", in_transaction=True, times=1000)
    status, text = ani.submit(xml, files={"rumah.jpg": JPEG})
    assert status in (409, 503), text  # either way Collect keeps the form and sends it again
    assert _counts(odk_app)[:2] == (0, 0)
    assert _attachment_docs(odk_app, visit_id) == []
    assert unnamed_blobs() == [digest]
    stand_in.faults.clear()

    # the store fails after the visit, while its photo is marked held: Collect is told to send again
    stand_in.inject("update_one", not_writable_primary, collection="attachments", in_transaction=True, times=1000)
    status, text = ani.submit(xml, files={"rumah.jpg": JPEG})
    assert status in (409, 503), text  # either way Collect keeps the form and sends it again
    assert [doc["held"] for doc in _attachment_docs(odk_app, visit_id)] == [False]
    stand_in.faults.clear()

    # Collect's resend completes the unit: the photo is held and served, and nothing is left over
    status, text = ani.submit(xml, files={"rumah.jpg": JPEG})
    assert status == 201, text
    assert [doc["held"] for doc in _attachment_docs(odk_app, visit_id)] == [True]
    photo = client.get(f"/api/v1/visits/{visit_id}/attachments/house_photo", headers=login(client, "sari"))
    assert photo.data == JPEG
    assert unnamed_blobs() == []
    assert _counts(odk_app)[:2] == (1, 1)


@needs_engine
def test_a_split_submission_refused_at_its_last_part_leaves_no_stash_and_its_files_to_garbage(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani, xml = _photo_visit(client, admin)
    visit_id = _instance_id(xml)
    assert ani.submit(xml, incomplete=True, files={"rumah.jpg": JPEG})[0] == 201
    with odk_app.app_context():
        assert get_store().count("collect_parts") == 1
    # the last part cannot be taken (the form was archived meanwhile, say)
    assert client.post("/api/v1/forms/foto_rumah/archive", headers=admin).status_code == 200
    status, _text = ani.submit(xml)
    assert status == 403
    with odk_app.app_context():
        assert get_store().get("visits", visit_id) is None
        assert get_store().count("collect_parts") == 0
        assert collect_garbage(get_store(), blob_store(), grace_seconds=0, dry_run=True).blobs == [
            hashlib.sha256(JPEG).hexdigest()]


@needs_engine
def test_files_no_question_of_the_submission_names_are_ignored_and_nothing_of_them_stored(odk_app):
    """As ODK Central does (lib/model/query/submission-attachments.js): the attachments a submission
    expects are the file names its binary fields hold, each matched to the post's part of that field
    name; any other part is ignored, its bytes never stored, and the submission taken."""
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani, xml = _photo_visit(client, admin)
    visit_id = _instance_id(xml)
    stray = {"catatan.txt": b"a note no question asks for", "lain.jpg": JPEG[:-2] + b"\x00\xff\xd9",
             "audit.csv": b"event,node,start\n"}

    def blobs():
        with odk_app.app_context():
            return sorted(blob.sha256 for blob in blob_store().list())

    # a split post whose part carries only files no question names: nothing kept for the last part
    assert ani.submit(xml, incomplete=True, files=stray)[0] == 201
    assert blobs() == []
    with odk_app.app_context():
        assert get_store().count("collect_parts") == 0
    # the last post carries the photo among them: the visit names and holds the photo alone
    status, text = ani.submit(xml, files={**stray, "rumah.jpg": JPEG})
    assert status == 201, text
    assert blobs() == [hashlib.sha256(JPEG).hexdigest()]
    assert [(doc["path"], doc["filename"], doc["held"]) for doc in _attachment_docs(odk_app, visit_id)] == [
        ("house_photo", "rumah.jpg", True)]
    with odk_app.app_context():
        visit = get_store().get("visits", visit_id)
    assert [entry["filename"] for entry in visit["attachments"]] == ["rumah.jpg"]
    assert "attachments_missing" not in {flag["code"] for flag in visit["flags"]}


@needs_engine
def test_a_part_is_matched_by_its_field_name_as_central_matches_it(odk_app):
    """A client that names the part after the answer but gives its file another name (some send the
    phone's own path) is matched by the field name; a part whose field name no answer holds is not,
    whatever its file name."""
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani, xml = _photo_visit(client, admin)
    visit_id = _instance_id(xml)
    other = JPEG[:-2] + b"\x01\xff\xd9"
    data = {"xml_submission_file": (io.BytesIO(xml.encode()), "instance.xml", "text/xml"),
            "foto": (io.BytesIO(other), "rumah.jpg", "image/jpeg"),  # the file name alone is not a match
            "rumah.jpg": (io.BytesIO(JPEG), "IMG_20261207_0900.jpg", "image/jpeg")}
    response = client.post(f"{ani.base}/submission", data=data, headers=ani.headers(),
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.data
    with odk_app.app_context():
        assert sorted(blob.sha256 for blob in blob_store().list()) == [hashlib.sha256(JPEG).hexdigest()]
    assert [(doc["filename"], doc["sha256"], doc["held"]) for doc in _attachment_docs(odk_app, visit_id)] == [
        ("rumah.jpg", hashlib.sha256(JPEG).hexdigest(), True)]


# -- a published version's XForm is the one phones hold ---------------------------------------------
def _generator_changed(monkeypatch):
    """pyxform (or forms/xform.py) upgraded: from now on the same definition builds other bytes."""
    real = xform_module.convert

    def convert(*args, **kwargs):
        result = real(*args, **kwargs)
        result.xform = result.xform + "<!-- a newer generator -->"
        return result

    monkeypatch.setattr(xform_module, "convert", convert)
    monkeypatch.setattr(xform_module, "_CACHE", OrderedDict())  # nothing built before counts


def test_phones_keep_a_published_versions_xform_and_md5_when_the_generator_changes(odk_app, monkeypatch):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    _publish(client, admin, PHOTO_FORM)
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    entry = ani.form_list()["foto_rumah"]
    served = ani.get(entry["downloadUrl"])
    assert entry["hash"] == "md5:" + _md5(served.data)

    _generator_changed(monkeypatch)
    with odk_app.app_context():
        definition = published_definition(get_store(), "foto_rumah", "1")
    assert xform_module.xform_of(definition).md5 != _md5(served.data)  # the generator does write other bytes now
    again = ani.form_list()["foto_rumah"]
    assert again["hash"] == entry["hash"]
    assert ani.get(again["downloadUrl"]).data == served.data
    assert ani.get(again["downloadUrl"], **{"If-None-Match": served.headers["ETag"]}).status_code == 304

    # a version published after the upgrade is given the new generator's bytes, fixed from then on
    assert client.post("/api/v1/forms", json={**PHOTO_FORM, "settings": {**PHOTO_FORM["settings"], "version": "2"}},
                       headers=admin).status_code == 201
    assert client.post("/api/v1/forms/foto_rumah/versions/2/publish", headers=admin).status_code == 200
    listed = {item.findtext("x:version", namespaces=NS): item.findtext("x:hash", namespaces=NS)
              for item in etree.fromstring(ani.get(f"{ani.base}/formList?formID=foto_rumah").data
                                           ).iterfind("x:xform", NS)}
    newer = ani.get(f"{ani.base}/forms/foto_rumah/versions/2/form.xml").data
    assert newer.endswith(b"<!-- a newer generator -->")
    assert listed == {"2": "md5:" + _md5(newer)}


def test_a_version_published_before_xforms_were_stored_keeps_the_xform_first_served(odk_app, monkeypatch):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    _publish(client, admin, PHOTO_FORM)
    with odk_app.app_context():
        # a store written by an older kunjung: published versions without a stored XForm
        get_store().delete(forms_registry.XFORMS, "foto_rumah@1")
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    entry = ani.form_list()["foto_rumah"]
    first = ani.get(entry["downloadUrl"]).data
    with odk_app.app_context():
        kept = get_store().get(forms_registry.XFORMS, "foto_rumah@1")
    assert kept["md5"] == _md5(first)  # stored by the first read
    assert kept["xml"].encode() == first

    _generator_changed(monkeypatch)
    again = ani.form_list()["foto_rumah"]
    assert again["hash"] == entry["hash"] == "md5:" + _md5(first)
    assert ani.get(again["downloadUrl"]).data == first


# -- guessing tokens ---------------------------------------------------------------------------------
def test_a_laptop_guessing_app_credential_tokens_is_answered_429_in_openrosa_xml(app_factory, monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(ratelimit, "wall_seconds", lambda: now[0])
    app = _odk_app(app_factory, LOGIN_RATE_LIMIT=2, LOGIN_RATE_WINDOW_SECONDS=600)  # 10 failed tokens per address
    client = app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    guesser = {"REMOTE_ADDR": "203.0.113.66"}
    phone = {"X-OpenRosa-Version": "1.0"}

    def guess():
        return client.get(f"/key/{uuid.uuid4().hex}{uuid.uuid4().hex}/formList", headers=phone, environ_base=guesser)

    assert [guess().status_code for _ in range(10)] == [401] * 10
    limited = guess()
    assert limited.status_code == 429
    _openrosa_headers(limited)
    retry = int(limited.headers["Retry-After"])
    assert 0 < retry <= 600
    refusal = etree.fromstring(limited.data)
    assert refusal.tag == "{http://openrosa.org/http/response}OpenRosaResponse"
    assert refusal.find("r:message", NS).get("nature") == "error"
    # a right token from that address waits too (else guessing would go on), the same in a submission
    assert client.get(f"{ani.base}/formList", headers=phone, environ_base=guesser).status_code == 429
    assert client.post(f"{ani.base}/submission", headers=phone, environ_base=guesser).status_code == 429
    # officers at other addresses are not held up
    assert set(ani.form_list()) >= {FORM}
    # Collect in Indonesian hears it in Indonesian
    said = client.get(f"{ani.base}/formList", headers={**phone, "Accept-Language": "id"}, environ_base=guesser)
    assert said.status_code == 429
    assert "coba lagi" in etree.fromstring(said.data).findtext("r:message", namespaces=NS)
    # the window over, the address may try again
    now[0] += retry
    assert guess().status_code == 401


# -- the backlog: a held update whose earlier submission never comes ----------------------------------
def _held_revisit_of_a_registration_that_never_comes(odk_app):
    """ani registers a household offline and revisits it; the phone is lost before the registration is sent."""
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    _publish(client, admin, OFFLINE_FORM)
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    xform, files = ani.download(ani.form_list()["catat_rumah"])
    created = _offline_visit(xform, files, "Siti Aminah")
    household_id = _entity(created)["id"]
    on_phone = _phone_list(files["households.csv"], [{"name": household_id, "label": "Siti Aminah",
                                                      "__version": "1", "head_name": "Siti Aminah",
                                                      "__branchId": str(uuid.uuid4())}])
    revisit = _offline_visit(xform, {**files, "households.csv": on_phone}, "Siti Aminah binti Ahmad", household_id)
    assert ani.submit(revisit)[0] == 201
    assert _household(odk_app, household_id) is None  # held
    return client, ani, household_id, revisit


def _days_later(monkeypatch, days):
    from server import collect

    later = datetime.now(UTC) + timedelta(days=days)
    monkeypatch.setattr(collect, "held_clock", lambda: later)


def test_a_revisit_held_for_a_registration_that_never_comes_is_taken_in_after_five_days_flagged(
        odk_app, monkeypatch):
    from server import cli as cli_module

    client, _ani, household_id, revisit = _held_revisit_of_a_registration_that_never_comes(odk_app)
    monkeypatch.setattr(cli_module, "create_app", lambda: odk_app)
    runner = CliRunner()
    _days_later(monkeypatch, 4)
    done = runner.invoke(cli, ["collect-backlog"])
    assert done.exit_code == 0, done.output
    assert _household(odk_app, household_id) is None  # four days: it waits on

    _days_later(monkeypatch, 6)
    done = runner.invoke(cli, ["collect-backlog"])
    assert done.exit_code == 0, done.output
    assert _instance_id(revisit) in done.output
    assert "1 held submission(s)" in done.output
    sari = login(client, "sari")
    assert _head_name(client, sari, household_id) == ("Siti Aminah binti Ahmad", 0)
    visit = client.get(f"/api/v1/visits/{_instance_id(revisit)}", headers=sari).get_json()
    [forced] = [flag for flag in visit["flags"] if flag["code"] == "collect_forced"]
    assert forced["waited_for"] == f"{household_id}|create"
    assert "6 days" in forced["message"]
    listed = client.get(f"/api/v1/visits?village={VILLAGE}&flag=collect_forced", headers=sari).get_json()["items"]
    assert [item["id"] for item in listed] == [_instance_id(revisit)]
    with odk_app.app_context():
        assert get_store().count("collect_held") == 0
    # run again: nothing is left to take in
    done = runner.invoke(cli, ["collect-backlog", "--days", "0"])
    assert "0 held submission(s)" in done.output


def test_the_server_takes_in_long_held_updates_on_its_own_while_phones_keep_sending(odk_app, monkeypatch):
    from server import collect

    client, _ani, household_id, revisit = _held_revisit_of_a_registration_that_never_comes(odk_app)
    admin = login(client, "admin", "kata sandi admin yang panjang")
    budi = Collect(client, _credential(client, admin, "budi", "hp-budi-odk")["qr_text"])
    xform, files = budi.download(budi.form_list()["catat_rumah"])
    monkeypatch.setattr(collect, "_backlog_checked", [0.0])
    _days_later(monkeypatch, 6)
    assert budi.submit(_offline_visit(xform, files, "Wayan Sudira"))[0] == 201  # some other household's visit
    assert _household(odk_app, household_id) is not None
    sari = login(client, "sari")
    flags = client.get(f"/api/v1/visits/{_instance_id(revisit)}", headers=sari).get_json()["flags"]
    assert "collect_forced" in {flag["code"] for flag in flags}


# -- members follow their branch too ------------------------------------------------------------------
@needs_engine
def test_two_offline_renames_of_a_member_arriving_in_reverse_order_keep_the_phones_order(odk_app):
    client = odk_app.test_client()
    admin = login(client, "admin", "kata sandi admin yang panjang")
    ani = Collect(client, _credential(client, admin, "ani", "hp-ani-odk")["qr_text"])
    entry = ani.form_list()["verval_keluarga"]
    xform, files = ani.download(entry)
    definition = _definition(odk_app, "verval_keluarga")
    answers, _ = sample_answers(definition, {"visit_result": "1", "member_name": "Anggota"}, rows=2)
    first = fill(xform, answers, attachments=files)["xml"]
    assert ani.submit(first)[0] == 201
    with odk_app.app_context():
        household_id = get_store().get("visits", _instance_id(first))["household_id"]
    xform, files = ani.download(entry)
    rows = list(csv.DictReader(io.StringIO(files["members.csv"])))
    member, version, branch = rows[0], int(rows[0]["__version"]), str(uuid.uuid4())
    answers, _ = sample_answers(definition, {"visit_result": "1"}, rows=0)
    answers = {ref: value for ref, value in answers.items() if "/members[" not in ref}

    def renamed(name, on_phone):
        # the member keeps its place in the list: the roster's n-th row is the household's n-th member
        members = _phone_list(files["members.csv"], [on_phone if row["name"] == on_phone["name"] else row
                                                     for row in rows])
        return fill(xform, {"/verval_keluarga/kunjung_household": household_id, **answers,
                            "/verval_keluarga/members[1]/member_name": name},
                    attachments={**files, "members.csv": members})["xml"]

    # offline, ani renames the first member twice: Collect counts the member's own branch
    once = renamed("Siti Rahayu", {**member, "__trunkVersion": str(version), "__branchId": branch})
    twice = renamed("Hj. Siti Rahayu", {**member, "__version": str(version + 1), "kmval__name": "Siti Rahayu",
                                        "__trunkVersion": str(version), "__branchId": branch})
    [entity] = [e for e in _member_entities(twice) if e["id"] == member["name"]]
    assert (entity["baseVersion"], entity["trunkVersion"], entity["branchId"]) == (
        str(version + 1), str(version), branch)
    assert "branchId" not in _entity(twice) or not _entity(twice)["branchId"]  # the household has no branch

    # the second arrives first: held for the member's earlier step, though the household would not wait
    before = _counts(odk_app)
    assert ani.submit(twice)[0] == 201
    assert _counts(odk_app) == before
    assert ani.submit(once)[0] == 201
    fields = client.get(f"/api/v1/households/{household_id}", headers=admin).get_json()
    assert fields["fields"][f"members/{member['name']}/name"]["value"] == "Hj. Siti Rahayu"
    assert fields["open_conflicts"] == 0
    sari = login(client, "sari")
    for xml in (once, twice):
        assert client.get(f"/api/v1/visits/{_instance_id(xml)}", headers=sari).status_code == 200
