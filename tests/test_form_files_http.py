"""Files that travel with a form version over HTTP: upload with the XLSForm or one by one, publish, download."""

from __future__ import annotations

import base64
import hashlib
import io

import openpyxl
import pytest
from http_helpers import login, make_app, make_user

from forms import validate_answers
from server import forms_registry
from server.blobs import blob_store
from server.store import get_store, raw_store

FORMS = "/api/v1/forms"
VERSION_URL = f"{FORMS}/pemeriksaan_rumah/versions/2026.3"

DESA_CSV = (b"name,label::Indonesian (id),label::English (en),kecamatan,kepala_desa\n"
            b"3204052001,Sukamaju,Sukamaju,3204050,Ujang Rahmat\n"
            b"3204052002,Mekarsari,Mekarsari,3204050,Iis Sumiati\n")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def survey_workbook() -> bytes:
    """A form as field teams write them: photos, a signature, a video, villages from a CSV, a pulldata()
    lookup, and a picture beside a label in each language."""
    book = openpyxl.Workbook()
    survey = book.active
    survey.title = "survey"
    for row in (
        ["type", "name", "label::Indonesian (id)", "label::English (en)", "required", "appearance", "parameters",
         "calculation", "constraint", "image::Indonesian (id)", "image::English (en)", "body::accept"],
        ["select_one_from_file desa.csv", "desa", "Desa", "Village", "yes"],
        ["calculate", "kepala_desa", None, None, None, None, None, "pulldata('desa', 'kepala_desa', 'name', ${desa})"],
        ["image", "foto_rumah", "Foto depan rumah", "Front of the house", "yes", None, "max-pixels=1024", None, None,
         "contoh_rumah.png", "example_house.png"],
        ["image", "tanda_tangan", "Tanda tangan responden", "Respondent's signature", None, "signature"],
        ["video", "video_lingkungan", "Video lingkungan", "Video of the surroundings"],
        ["file", "surat", "Surat pendukung", "Supporting letter", None, None, None, None, None, None, None,
         "application/pdf,.docx"],
        ["text", "catatan", "Catatan", "Notes", None, None, None, None, "string-length(.) < 500"],
    ):
        survey.append(row)
    choices = book.create_sheet("choices")
    choices.append(["list_name", "name", "label"])
    choices.append(["ya_tidak", "1", "Ya"])
    settings = book.create_sheet("settings")
    settings.append(["form_id", "version", "form_title", "default_language"])
    settings.append(["pemeriksaan_rumah", "2026.3", "Pemeriksaan rumah", "Indonesian (id)"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def send(client, headers, files=(), url=FORMS, method="post"):
    data = {"file": (io.BytesIO(survey_workbook()), "pemeriksaan_rumah.xlsx"),
            "files": [(io.BytesIO(content), name) for name, content in files]}
    return getattr(client, method)(url, headers=headers, content_type="multipart/form-data", data=data)


@pytest.fixture
def app(backend_app):
    """Every scenario here on SQLite and on the MongoDB stand-in."""
    return backend_app


@pytest.fixture
def admin(client, users):
    return login(client, "admin")


def test_a_real_world_form_with_photos_video_and_a_choice_file_goes_from_upload_to_a_device(client, admin):
    created = send(client, admin, [("desa.csv", DESA_CSV), ("contoh_rumah.png", PNG)])
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    # nothing of the workbook is dropped (the warnings are advice: English titles, an unused list)
    assert not [m for ms in body["warnings"].values() for m in ms if "ignored" in m or "not supported" in m]
    files = {entry["name"]: entry for entry in body["files"]}
    assert files["desa.csv"]["purpose"] == "choices"
    assert files["desa.csv"]["md5"] == hashlib.md5(DESA_CSV, usedforsecurity=False).hexdigest()
    assert files["contoh_rumah.png"]["present"] is True
    assert files["example_house.png"] == {**files["example_house.png"], "present": False, "purpose": "media"}

    definition = client.get(VERSION_URL, headers=admin).get_json()
    fields = {f["name"]: f for f in definition["fields"]}
    assert fields["desa"]["list_file"] == "desa.csv"
    assert fields["foto_rumah"]["media"] == {"image": {"id": "contoh_rumah.png", "en": "example_house.png"}}
    assert fields["foto_rumah"]["parameters"] == {"max-pixels": 1024}
    assert fields["surat"]["accept"] == ["application/pdf", ".docx"]

    # publishing waits for every file, and says which are missing
    refused = client.post(f"{VERSION_URL}/publish", headers=admin)
    assert refused.status_code == 422
    assert refused.get_json()["code"] == "form_files_missing"
    assert list(refused.get_json()["errors"]) == ["example_house.png"]
    assert "example_house.png" in refused.get_json()["message"]

    put = client.put(f"{VERSION_URL}/files/example_house.png", headers=admin, data=PNG + b"en",
                     content_type="image/png")
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["md5"] == hashlib.md5(PNG + b"en", usedforsecurity=False).hexdigest()
    assert client.post(f"{VERSION_URL}/publish", headers=admin).status_code == 200
    client.put(f"{FORMS}/pemeriksaan_rumah/assignment", headers=admin, json={"villages": ["32.04.05.2001"]})

    # a device of an assigned village lists the files and downloads each once
    officer = login(client, "ani")
    listed = client.get(f"{VERSION_URL}/files", headers=officer)
    assert listed.status_code == 200
    assert {entry["name"] for entry in listed.get_json()} == {"desa.csv", "contoh_rumah.png", "example_house.png"}
    download = client.get(f"{VERSION_URL}/files/desa.csv", headers=officer)
    assert download.status_code == 200
    assert download.data == DESA_CSV
    assert download.headers["ETag"] == f'"{hashlib.md5(DESA_CSV, usedforsecurity=False).hexdigest()}"'
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"].startswith("attachment")
    again = client.get(f"{VERSION_URL}/files/desa.csv", headers={**officer, "If-None-Match": download.headers["ETag"]})
    assert again.status_code == 304
    assert again.data == b""
    # an officer of another village reads nothing, nor does a name that is a path
    assert client.get(f"{VERSION_URL}/files/desa.csv", headers=login(client, "budi")).status_code == 404
    assert client.get(f"{VERSION_URL}/files/..%2Fdesa.csv", headers=officer).status_code == 404
    # a published version's files never change
    assert client.put(f"{VERSION_URL}/files/desa.csv", headers=admin, data=DESA_CSV).status_code == 409
    assert client.delete(f"{VERSION_URL}/files/desa.csv", headers=admin).status_code == 409


def test_the_server_evaluates_pulldata_against_the_attached_csv(app, client, admin):
    files = [("desa.csv", DESA_CSV), ("contoh_rumah.png", PNG), ("example_house.png", PNG)]
    assert send(client, admin, files).status_code == 201
    assert client.post(f"{VERSION_URL}/publish", headers=admin).status_code == 200
    with app.app_context():
        definition = forms_registry.published_definition(get_store(), "pemeriksaan_rumah", "2026.3")
        assert definition.lookup("desa", "kepala_desa", "name", "3204052002") == "Iis Sumiati"
        assert definition.lookup("desa", "kepala_desa", "name", "9999") == ""
        report = validate_answers(definition, {"desa": "3204052001", "kepala_desa": "Ujang Rahmat",
                                               "foto_rumah": "1765100000000.jpg"})
    assert report.errors == {}
    assert report.flags == []


def stored_count(app, collection):
    with app.app_context():
        return get_store().count(collection)


def stored_blobs(app):
    return {blob.sha256 for blob in blob_store(app).list()}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_files_are_checked_before_anything_is_stored(app, client, admin):
    wrong = send(client, admin, [("desa.csv", b"kode,nama\n1,Sukamaju\n"), ("lain.csv", b"a\n1\n"),
                                 ("contoh_rumah.png", b"")])
    assert wrong.status_code == 422
    errors = wrong.get_json()["errors"]
    assert wrong.get_json()["code"] == "invalid_form_file"
    assert "has no column 'name', 'label'" in errors["desa.csv"][0]
    assert "does not use this file" in errors["lain.csv"][0]
    assert errors["contoh_rumah.png"] == ["is empty"]
    assert client.get(VERSION_URL, headers=admin).status_code == 404
    assert stored_count(app, "form_files") == 0

    assert send(client, admin).status_code == 201
    latin1 = client.put(f"{VERSION_URL}/files/desa.csv", headers=admin, data="name,label\n1,Désa\n".encode("latin-1"))
    assert latin1.status_code == 422
    assert "UTF-8" in latin1.get_json()["errors"]["desa.csv"][0]
    assert client.put(f"{VERSION_URL}/files/nope.csv", headers=admin, data=DESA_CSV).status_code == 422
    assert client.put(f"{FORMS}/other/versions/1/files/desa.csv", headers=admin, data=DESA_CSV).status_code == 404
    officer = login(client, "ani")
    assert client.put(f"{VERSION_URL}/files/desa.csv", headers=officer, data=DESA_CSV).status_code == 403
    # a draft's files are the admin's only
    assert client.get(f"{VERSION_URL}/files", headers=officer).status_code == 404


def test_the_same_bytes_are_stored_once_and_a_draft_file_can_be_removed(app, client, admin):
    files = [("desa.csv", DESA_CSV), ("contoh_rumah.png", PNG), ("example_house.png", PNG)]
    assert send(client, admin, files).status_code == 201
    assert stored_blobs(app) == {digest(DESA_CSV), digest(PNG)}  # the two pictures are the same bytes
    assert stored_count(app, "form_file_chunks") == 0
    listed = client.get(f"{VERSION_URL}/files", headers=admin).get_json()
    assert all(entry["present"] for entry in listed)
    assert client.delete(f"{VERSION_URL}/files/example_house.png", headers=admin).status_code == 204
    assert client.delete(f"{VERSION_URL}/files/example_house.png", headers=admin).status_code == 404
    assert client.post(f"{VERSION_URL}/publish", headers=admin).get_json()["errors"] == {
        "example_house.png": ["not uploaded; the form needs it (media: fields[2].media.image.en)"]}
    # replacing the draft keeps its files
    replaced = send(client, admin, [("example_house.png", PNG)], url=VERSION_URL, method="put")
    assert replaced.status_code == 200, replaced.get_json()
    assert all(entry["present"] for entry in replaced.get_json()["files"])
    assert stored_blobs(app) == {digest(DESA_CSV), digest(PNG)}


def test_the_library_does_not_publish_a_form_whose_files_it_cannot_ship(app):
    needs_file = {"settings": {"form_id": "dengan_berkas", "version": "1", "title": {"id": "Dengan berkas"},
                               "default_language": "id"},
                  "fields": [{"type": "select_one", "name": "desa", "label": {"id": "Desa"}, "list_file": "desa.csv"}]}
    with app.app_context():
        [outcome] = forms_registry.load_library(get_store(), definitions=[needs_file])
        assert not outcome.published
        assert outcome.reason == "needs files the library cannot ship: desa.csv"
        assert get_store().get("form_versions", "dengan_berkas@1") is None


def write_files_as_before_the_blob_store(app, form_id, version, files):
    """What a server before the move to the blob store wrote for a version's files: a document naming
    its chunks, and the bytes base64-encoded in form_file_chunks (1 MiB pieces)."""
    piece = 2**20
    with app.app_context():
        store = get_store()
        for name, content in files.items():
            sha = digest(content)
            count = max(1, -(-len(content) // piece))
            for index in range(count):
                store.put("form_file_chunks", {"id": f"{sha}:{index}", "data": base64.b64encode(
                    content[index * piece:(index + 1) * piece]).decode()})
            old = store.get("form_files", f"{form_id}@{version}/{name}")
            store.put("form_files", {**old, "chunks": count})
            blob_store(app).delete(sha)


def test_a_store_written_before_the_blob_store_serves_its_form_files_after_upgrade(tmp_path):
    app = make_app(tmp_path)
    make_user(app, "admin", "admin")
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    client = app.test_client()
    admin = login(client, "admin")
    big = PNG + bytes(range(256)) * 5000  # more than one old chunk
    files = {"desa.csv": DESA_CSV, "contoh_rumah.png": PNG, "example_house.png": big}
    assert send(client, admin, list(files.items())).status_code == 201
    assert client.post(f"{VERSION_URL}/publish", headers=admin).status_code == 200
    client.put(f"{FORMS}/pemeriksaan_rumah/assignment", headers=admin, json={"villages": ["32.04.05.2001"]})
    write_files_as_before_the_blob_store(app, "pemeriksaan_rumah", "2026.3", files)
    assert stored_count(app, "form_file_chunks") == 1 + 1 + 2
    assert stored_blobs(app) == set()
    raw_store(app).close()

    upgraded = make_app(tmp_path)  # start-up moves the bytes
    assert stored_count(upgraded, "form_file_chunks") == 0
    assert stored_blobs(upgraded) == {digest(content) for content in files.values()}
    client = upgraded.test_client()
    officer = login(client, "ani")
    for name, content in files.items():
        download = client.get(f"{VERSION_URL}/files/{name}", headers=officer)
        assert download.status_code == 200
        assert download.data == content
        etag = f'"{hashlib.md5(content, usedforsecurity=False).hexdigest()}"'
        assert download.headers["ETag"] == etag
        assert client.get(f"{VERSION_URL}/files/{name}",
                          headers={**officer, "If-None-Match": etag}).status_code == 304
    with upgraded.app_context():  # pulldata() reads the moved CSV
        definition = forms_registry.published_definition(get_store(), "pemeriksaan_rumah", "2026.3")
        assert definition.lookup("desa", "kepala_desa", "name", "3204052002") == "Iis Sumiati"
    raw_store(upgraded).close()
    again = make_app(tmp_path)  # a second start-up has nothing left to move
    assert stored_blobs(again) == {digest(content) for content in files.values()}
    raw_store(again).close()
