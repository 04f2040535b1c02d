"""Erasure and retention of the files of visits: photos and their thumbnails go, an erased file is refused on
upload and never reported missing; photos of visits reviewed long ago go with their raw bodies."""

from __future__ import annotations

import io
import uuid
import zipfile

from click.testing import CliRunner
from http_helpers import login
from media_helpers import create_upload, entry, jpeg, media_visit, publish_media_form, sha, upload
from sync_helpers import Device

from server.blobs import blob_store
from server.cli import cli
from server.store import get_store


def photo_visit(device, household_id, photo, name="Siti Foto"):
    return media_visit(device, household_id, answers={"head_name": name, "foto_rumah": "rumah.jpg"},
                       attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")])


def test_erasing_a_household_erases_its_photos_and_thumbnails(app, client, users):
    publish_media_form(client)
    admin = login(client, "admin")
    ani = Device(client, "ani")
    household, photo = str(uuid.uuid4()), jpeg(color="navy")
    first = photo_visit(ani, household, photo)
    assert ani.push([first])["results"][0]["status"] == "applied"
    assert upload(client, ani.headers, first["id"], "foto_rumah", photo, filename="rumah.jpg").status_code == 204
    thumb = client.get(f"/api/v1/visits/{first['id']}/thumbnails/foto_rumah", headers=admin)
    assert thumb.status_code == 200
    late = photo_visit(ani, household, photo)  # made offline with the same photo, pushed after the erasure

    erased = client.post(f"/api/v1/households/{household}/erase", json={"reason": "permintaan"}, headers=admin)
    assert erased.status_code == 200, erased.get_json()
    assert erased.get_json()["households"][0]["attachments"] == 1
    with app.app_context():
        blobs = blob_store()
        assert not blobs.exists(sha(photo))
        assert not blobs.exists(sha(thumb.data))
    assert client.get(f"/api/v1/visits/{first['id']}/attachments/foto_rumah", headers=admin).status_code == 404
    assert client.get(f"/api/v1/visits/{first['id']}/thumbnails/foto_rumah", headers=admin).status_code == 404

    assert ani.push([late])["results"][0]["status"] == "applied"
    pulled = client.get("/api/v1/sync/pull", headers=ani.headers).get_json()
    assert pulled["attachments_missing"] == []  # never asked for again
    for visit_id in (first["id"], late["id"]):
        refused = create_upload(client, ani.headers, visit_id, "foto_rumah", photo, filename="rumah.jpg")
        assert refused.status_code == 422
        assert refused.get_json()["code"] == "erased_file"
        got = client.get(f"/api/v1/visits/{visit_id}", headers=admin).get_json()
        assert got["answers"] == {}
        assert "attachments_missing" not in got.get("flag_codes", [])
    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/v1/exports/visits.csv.zip", headers=admin).data))
    assert not [name for name in archive.namelist() if name.startswith("media/")]
    assert "Siti Foto" not in "".join(archive.read(name).decode("utf-8") for name in archive.namelist())
    with app.app_context():
        assert not blob_store().exists(sha(photo))


def test_retention_removes_photos_of_visits_reviewed_long_ago(app, client, users, monkeypatch):
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY", app.config["SECRET_KEY"])
    monkeypatch.setenv("KUNJUNG_LOAD_LIBRARY_FORMS", "false")
    publish_media_form(client)
    ani = Device(client, "ani")
    photo = jpeg(color="olive")
    old = photo_visit(ani, str(uuid.uuid4()), photo, name="Rahmat")
    ani.push([old])
    assert upload(client, ani.headers, old["id"], "foto_rumah", photo, filename="rumah.jpg").status_code == 204
    supervisor = login(client, "supervisor")
    client.post(f"/api/v1/visits/{old['id']}/review", headers=supervisor,
                json={"id": str(uuid.uuid4()), "state": "approved", "comment": None})
    with app.app_context():
        store = get_store()
        doc = store.get("visits", old["id"])
        store.put("visits", {**doc, "review": {**doc["review"], "at": "2020-01-01T00:00:00.000Z"}})
    dry = CliRunner().invoke(cli, ["apply-retention"], catch_exceptions=False)
    assert "1 attachments" in dry.output, dry.output
    with app.app_context():
        assert blob_store().exists(sha(photo))
    done = CliRunner().invoke(cli, ["apply-retention", "--yes"], catch_exceptions=False)
    assert "removed the raw bodies of 1 visits, 1 attachments" in done.output, done.output
    with app.app_context():
        assert not blob_store().exists(sha(photo))
    admin = login(client, "admin")
    assert client.get(f"/api/v1/visits/{old['id']}/attachments/foto_rumah", headers=admin).status_code == 404
    assert client.get(f"/api/v1/visits/{old['id']}", headers=admin).get_json()["answers"]["head_name"] == "Rahmat"
    assert client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"] == []
