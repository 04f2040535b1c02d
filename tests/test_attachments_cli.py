"""The command line's care of attachment files: backup copies them, gc-attachments removes unnamed ones."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from click.testing import CliRunner
from http_helpers import make_app

from server import forms_registry
from server.blobs.disk import DiskBlobStore
from server.cli import cli
from server.config import ConfigError
from server.storage import open_store
from server.store import COLLECTIONS, get_store, raw_store


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_backup_copies_blobs_and_restore_brings_them_back(env, tmp_path):
    assert run("init").exit_code == 0
    blobs = DiskBlobStore(f"{tmp_path}/live.db-blobs")
    photo = b"\xff\xd8\xff photo of a house"
    blobs.put_bytes(photo)
    result = run("backup", str(tmp_path / "copies" / "b.db"))
    assert result.exit_code == 0, result.output
    assert "1 new attachment file(s) copied" in result.output
    copy = DiskBlobStore(tmp_path / "copies" / "b.db-blobs")
    assert copy.read(digest(photo)) == photo
    assert copy.path(digest(photo)).stat().st_mode & 0o077 == 0
    blobs.delete(digest(photo))
    result = run("restore", "--yes", str(tmp_path / "copies" / "b.db"))
    assert result.exit_code == 0, result.output
    assert blobs.read(digest(photo)) == photo


def test_gc_removes_only_files_no_visit_names_after_the_grace_period(env, tmp_path):
    assert run("init").exit_code == 0
    store = open_store(env["KUNJUNG_DATABASE_URL"], COLLECTIONS)
    store.ensure_schema()
    blobs = DiskBlobStore(f"{tmp_path}/live.db-blobs")
    named, thumb, orphan = b"named photo", b"its thumbnail", b"nobody names me"
    for data in (named, thumb, orphan):
        blobs.put_bytes(data)
    store.insert("attachments", {"id": "v1/foto", "visit_id": "v1", "device_id": "hp", "held": True,
                                 "sha256": digest(named), "thumbnail_sha256": digest(thumb)})
    blobs.create_partial("a" * 32)
    blobs.append_partial("a" * 32, 0, [b"half a file"])
    os.utime(blobs.partials_dir / ("a" * 32 + ".part"), (1577836800, 1577836800))  # nothing sent since 2020
    store.insert("uploads", {"id": "a" * 32, "created_at": "2020-01-01T00:00:00Z"})

    dry = run("gc-attachments", "--grace-hours", "0", "--dry-run")
    assert f"would remove {digest(orphan)}" in dry.output
    assert "1 unfinished upload(s)" in dry.output
    assert blobs.exists(digest(orphan))
    assert blobs.partial_info("a" * 32).size == len(b"half a file")

    young = run("gc-attachments")  # the orphan is younger than a day; the upload is years old
    assert young.exit_code == 0, young.output
    assert "kept 1 unnamed file(s) younger than 24 h" in young.output
    assert blobs.exists(digest(orphan))
    assert blobs.partial_info("a" * 32) is None
    assert store.get("uploads", "a" * 32) is None

    result = run("gc-attachments", "--grace-hours", "0")
    assert result.exit_code == 0, result.output
    assert "removed 1 file(s)" in result.output
    assert not blobs.exists(digest(orphan))
    assert blobs.exists(digest(named))
    assert blobs.exists(digest(thumb))
    store.close()


def test_gc_keeps_the_files_of_form_versions_and_backup_copies_them(env, tmp_path):
    assert run("init").exit_code == 0
    app = make_app(tmp_path, DATABASE_URL=env["KUNJUNG_DATABASE_URL"], SECRET_KEY_FILE=env["KUNJUNG_SECRET_KEY_FILE"])
    choices = b"name,label\n3204052001,Sukamaju\n"
    definition = {"settings": {"form_id": "dengan_berkas", "version": "1", "title": {"id": "Dengan berkas"},
                               "default_language": "id"},
                  "fields": [{"type": "select_one", "name": "desa", "label": {"id": "Desa"}, "list_file": "desa.csv"}]}
    with app.app_context():
        forms_registry.create_draft(get_store(), forms_registry.Submission(definition, files={"desa.csv": choices}),
                                    actor="admin")
        forms_registry.publish(get_store(), "dengan_berkas", "1", actor="admin")
    raw_store(app).close()
    blobs = DiskBlobStore(f"{tmp_path}/live.db-blobs")
    orphan = b"nobody names me"
    blobs.put_bytes(orphan)

    result = run("gc-attachments", "--grace-hours", "0")
    assert result.exit_code == 0, result.output
    assert "removed 1 file(s)" in result.output
    assert not blobs.exists(digest(orphan))
    assert blobs.read(digest(choices)) == choices

    result = run("backup", str(tmp_path / "copies" / "b.db"))
    assert result.exit_code == 0, result.output
    assert DiskBlobStore(tmp_path / "copies" / "b.db-blobs").read(digest(choices)) == choices


def test_several_app_hosts_refuse_to_start_with_files_on_a_local_disk(env, tmp_path, monkeypatch):
    """Uploads under way live in the blob backend: several hosts need one every host reaches."""
    monkeypatch.setenv("KUNJUNG_APP_HOSTS", "3")
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "KUNJUNG_APP_HOSTS is 3" in str(result.exception)
    assert "KUNJUNG_BLOB_DIR_SHARED" in str(result.exception)
    # a folder alone is not enough: the admin says it is one volume every host mounts
    monkeypatch.setenv("KUNJUNG_BLOB_DIR", str(tmp_path / "shared-blobs"))
    assert isinstance(CliRunner().invoke(cli, ["init"]).exception, ConfigError)
    with pytest.raises(ConfigError, match="KUNJUNG_APP_HOSTS is 2"):
        make_app(tmp_path, APP_HOSTS=2)
    monkeypatch.setenv("KUNJUNG_BLOB_DIR_SHARED", "true")
    assert run("init").exit_code == 0


def test_several_app_hosts_start_on_mongodb_whose_gridfs_every_host_reaches(tmp_path):
    from http_helpers import make_mongo_stand_in_app

    application = make_mongo_stand_in_app(tmp_path, APP_HOSTS=4)
    raw_store(application).close()
    with pytest.raises(ConfigError, match="KUNJUNG_APP_HOSTS is 4"):
        make_mongo_stand_in_app(tmp_path, APP_HOSTS=4, BLOB_DIR=str(tmp_path / "local-blobs"))


def test_gc_sweeps_what_crashes_and_abandoned_uploads_left_after_the_grace_period(env, tmp_path):
    """A worker killed between writing an upload's partial and its document, a phone that gave up a
    video halfway, and an older server's form file chunks that no form file names: gone after the
    grace period; an upload still resuming, a day after it began, is kept."""
    import time

    assert run("init").exit_code == 0
    store = open_store(env["KUNJUNG_DATABASE_URL"], COLLECTIONS)
    store.ensure_schema()
    blobs = DiskBlobStore(f"{tmp_path}/live.db-blobs")
    two_days_ago = time.time() - 48 * 3600
    crashed, fresh_crash, abandoned, resuming = "c" * 32, "d" * 32, "e" * 32, "f" * 32
    for partial in (crashed, fresh_crash, abandoned, resuming):
        blobs.create_partial(partial)
        blobs.append_partial(partial, 0, [b"half a video"])
    for partial in (crashed, abandoned):
        os.utime(blobs.partials_dir / f"{partial}.part", (two_days_ago, two_days_ago))
    for upload in (abandoned, resuming):  # both began two days ago; one was sent to a minute ago
        store.insert("uploads", {"id": upload, "created_at": "2026-12-06T00:00:00Z"})
    legacy = b"name,label\n1,Sukamaju\n"
    store.insert("form_files", {"id": "lama@1/desa.csv", "form_id": "lama", "version": "1", "name": "desa.csv",
                                "sha256": digest(legacy), "chunks": 1})
    store.insert("form_file_chunks", {"id": f"{digest(legacy)}:0", "data": base64.b64encode(legacy).decode()})
    store.insert("form_file_chunks", {"id": f"{digest(b'dropped')}:0", "data": "eA=="})

    first = run("gc-attachments")
    assert first.exit_code == 0, first.output
    assert "removed 1 partial upload(s) no upload names and 0 form file chunk(s)" in first.output
    assert "1 unfinished upload(s)" in first.output
    assert [p.partial_id for p in blobs.partials()] == [fresh_crash, resuming]
    assert store.get("uploads", abandoned) is None
    assert store.get("uploads", resuming) is not None
    # the unnamed chunk carries no time: this sweep marks it, one after the grace period removes it
    marked = store.get("form_file_chunks", f"{digest(b'dropped')}:0")
    assert marked["orphan_since"] > time.time() - 60
    # the named one was moved into the blob store at start-up, as always, not swept
    assert store.get("form_file_chunks", f"{digest(legacy)}:0") is None
    assert blobs.read(digest(legacy)) == legacy
    store.put("form_file_chunks", {**marked, "orphan_since": two_days_ago})

    dry = run("gc-attachments", "--dry-run")
    assert "would remove 0 partial upload(s) no upload names and 1 form file chunk(s)" in dry.output
    assert store.get("form_file_chunks", f"{digest(b'dropped')}:0") is not None
    second = run("gc-attachments")
    assert "and 1 form file chunk(s) no form file names" in second.output
    assert store.get("form_file_chunks", f"{digest(b'dropped')}:0") is None
    assert [p.partial_id for p in blobs.partials()] == [fresh_crash, resuming]
    store.close()


def test_a_chunk_an_older_server_names_again_during_a_rolling_upgrade_loses_its_mark(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/k.db", COLLECTIONS)
    store.ensure_schema()
    chunk = {"id": f"{digest(b'x')}:0", "data": "eA=="}
    store.insert("form_file_chunks", chunk)
    assert forms_registry.sweep_legacy_chunks(store, grace_seconds=3600, clock=lambda: 1000.0) == []
    assert store.get("form_file_chunks", chunk["id"])["orphan_since"] == 1000.0
    # the older server wrote the file's document after its chunks
    store.insert("form_files", {"id": "lama@1/x.csv", "form_id": "lama", "version": "1", "name": "x.csv",
                                "sha256": digest(b"x"), "chunks": 1})
    assert forms_registry.sweep_legacy_chunks(store, grace_seconds=3600, clock=lambda: 9000.0) == []
    assert "orphan_since" not in store.get("form_file_chunks", chunk["id"])
    store.delete("form_files", "lama@1/x.csv")
    assert forms_registry.sweep_legacy_chunks(store, grace_seconds=3600, clock=lambda: 9100.0) == []
    assert forms_registry.sweep_legacy_chunks(store, grace_seconds=3600, clock=lambda: 12800.0) == [chunk["id"]]
    assert store.get("form_file_chunks", chunk["id"]) is None
    store.close()
