"""A visit with a photo, a signature and an audio note: from the device, over a link that drops, to the export."""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile

import pytest
from http_helpers import PASSWORD, login, make_user
from media_helpers import entry, jpeg, png, publish_media_form, wav
from openpyxl import load_workbook

from forms import validate_definition
from server.client import DeviceClient, FlaskTransport, Reply, RetryPolicy, Session
from server.client.attachments import Outbox, describe

VILLAGE = "32.04.05.2001"


class DroppingLink:
    """A phone's link that, now and then, drops an upload's PATCH part-way: the server gets a prefix of
    the body and the phone gets no answer."""

    name = "dropping"

    def __init__(self, inner: FlaskTransport, seed: int):
        self.inner = inner
        self.rng = random.Random(seed)
        self.drops = 0

    def send(self, method, path, *, query=None, body=None, headers=None) -> Reply:
        if method == "PATCH" and body and self.rng.random() < 0.6:
            cut = self.rng.randint(0, len(body) - 1)
            client = self.inner.app.test_client()
            client.open(path, method="PATCH", input_stream=io.BytesIO(body[:cut]),
                        headers={**(headers or {}), "Content-Length": str(len(body))})
            self.drops += 1
            raise ConnectionResetError("the link dropped")
        return self.inner.send(method, path, query=query, body=body, headers=headers)


@pytest.fixture
def field_app(app):
    make_user(app, "admin", "admin")
    make_user(app, "ani", "officer", [VILLAGE])
    make_user(app, "sari", "supervisor", ["32.04.05"])
    publish_media_form(app.test_client())
    return app


def test_a_visit_with_photo_signature_and_audio_goes_from_device_to_export(field_app, tmp_path):
    link = DroppingLink(FlaskTransport(field_app), seed=7)
    session = Session(link, "ani", PASSWORD, device_id="hp-ani-01", retry=RetryPolicy(attempts=20),
                      sleep=lambda seconds: None)
    device = DeviceClient(session)
    device.login()
    definition = validate_definition(device.definition("verifikasi_foto", "1"))

    files = {"rumah.jpg": jpeg(1024, 768), "ttd.png": png(), "suara.wav": wav(4.0)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    household = "5d6f2a90-1c3b-4e7d-8a2f-0e9b4c6d1a23"
    visit_id = "0b8f5c2e-4a51-4d3a-9b1e-6f0d2c7a9e11"
    device.new_id = lambda: visit_id
    outbox = Outbox(session, chunk_size=64 * 1024)
    local = [outbox.add(describe(visit_id, path, str(tmp_path / name)))
             for path, name in (("foto_rumah", "rumah.jpg"), ("tanda_tangan", "ttd.png"),
                                ("catatan_suara", "suara.wav"))]
    device.visit(definition=definition, form_id="verifikasi_foto", form_version="1", village=VILLAGE,
                 household_id=household, answers={"head_name": "Siti Aminah", "foto_rumah": "rumah.jpg",
                                                  "tanda_tangan": "ttd.png", "catatan_suara": "suara.wav"},
                 geotag={"lat": -6.93, "lon": 107.675, "accuracy_m": 5, "captured_at": device.now_iso()},
                 attachments=[f.entry() for f in local])

    report = device.push()
    assert report.applied == 1
    device.pull()
    assert {m["path"] for m in device.attachments_missing} == {"foto_rumah", "tanda_tangan", "catatan_suara"}
    assert outbox.forget_held(device.attachments_missing, [visit_id]) == []  # nothing is deleted yet

    assert outbox.upload_all([visit_id]) == 3
    assert outbox.refused == []
    assert link.drops > 0  # the link did drop part-way through uploads
    device.pull()
    assert device.attachments_missing == []
    assert len(outbox.forget_held(device.attachments_missing, [visit_id])) == 3
    assert not any((tmp_path / name).exists() for name in files)  # deleted only once the server held them

    client = field_app.test_client()
    supervisor = login(client, "sari")
    shown = client.get(f"/api/v1/visits/{visit_id}", headers=supervisor).get_json()
    assert "attachments_missing" not in [f["code"] for f in shown["flags"]]

    exported = client.get("/api/v1/exports/visits.csv.zip", headers=supervisor)
    assert exported.status_code == 200
    with zipfile.ZipFile(io.BytesIO(exported.get_data())) as archive:
        for name, data in files.items():
            assert archive.read(f"media/{visit_id}/{name}") == data
        table = next(n for n in archive.namelist() if n.startswith("verifikasi_foto") and n.endswith(".csv"))
        rows = list(csv.DictReader(io.StringIO(archive.read(table).decode("utf-8-sig"))))
    assert rows[0]["foto_rumah"] == f"media/{visit_id}/rumah.jpg"
    assert rows[0]["tanda_tangan"] == f"media/{visit_id}/ttd.png"
    assert rows[0]["catatan_suara"] == f"media/{visit_id}/suara.wav"

    workbook = load_workbook(io.BytesIO(client.get("/api/v1/exports/visits.xlsx", headers=supervisor).get_data()))
    sheet = next(s for s in workbook.worksheets if s.title.startswith("verifikasi_foto"))
    headers = [cell.value for cell in sheet[1]]
    cell = sheet.cell(row=2, column=headers.index("foto_rumah") + 1)
    assert cell.value == "rumah.jpg"
    assert cell.hyperlink.target == f"http://localhost/api/v1/visits/{visit_id}/attachments/foto_rumah"

    features = json.loads(client.get("/api/v1/exports/visits.geojson", headers=supervisor).get_data())["features"]
    assert features[0]["properties"]["catatan_suara"] == \
        f"http://localhost/api/v1/visits/{visit_id}/attachments/catatan_suara"
    assert client.get(features[0]["properties"]["foto_rumah"].removeprefix("http://localhost"),
                      headers=supervisor).get_data() == files["rumah.jpg"]


def test_an_export_names_a_file_not_arrived_by_its_name_only(field_app):
    client = field_app.test_client()
    session = Session(FlaskTransport(field_app), "ani", PASSWORD, device_id="hp-ani-02", sleep=lambda s: None)
    device = DeviceClient(session)
    device.login()
    definition = validate_definition(device.definition("verifikasi_foto", "1"))
    photo = jpeg()
    made = device.visit(definition=definition, form_id="verifikasi_foto", form_version="1", village=VILLAGE,
                        household_id="5d6f2a90-1c3b-4e7d-8a2f-0e9b4c6d1a24", answers={"foto_rumah": "rumah.jpg"},
                        attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")])
    device.push()
    exported = client.get("/api/v1/exports/visits.csv.zip", headers=login(client, "sari"))
    with zipfile.ZipFile(io.BytesIO(exported.get_data())) as archive:
        assert not [n for n in archive.namelist() if n.startswith("media/")]
        table = next(n for n in archive.namelist() if n.startswith("verifikasi_foto"))
        rows = list(csv.DictReader(io.StringIO(archive.read(table).decode("utf-8-sig"))))
    assert rows[0]["visit_id"] == made.id
    assert rows[0]["foto_rumah"] == "rumah.jpg"
    assert "attachments_missing" in rows[0]["flags"]
