"""Files of visits through the hall: photos taken at the hall reach central byte-exact, resumably; photos
of visits made elsewhere come down to the hall; a hall sends only the files of visits it received."""

from __future__ import annotations

import io
import json
import os
import re

import pytest
from click.testing import CliRunner
from http_helpers import PASSWORD, login, make_user
from media_helpers import TUS, entry, jpeg, media_visit, metadata, publish_media_form, sha, upload
from PIL import Image
from relay_helpers import Link, close, make_hall, sync_round
from sync_helpers import OTHER_VILLAGE, VILLAGE, Device

import server.relay.files as relay_files
from server.blobs import blob_store
from server.cli import cli
from server.clock import node_device_id
from server.relay.node import NODE_HEADER, RelayError, hall_status, relay_state
from server.store import get_store


@pytest.fixture
def media_central(central):
    publish_media_form(central.test_client())
    return central


def noisy_jpeg(width: int = 1000, height: int = 700) -> bytes:
    """A photo that does not compress away: about a megabyte, so that it goes in several pieces."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "JPEG", quality=95)
    return out.getvalue()


def photo_visit(device, photo: bytes, village: str = VILLAGE):
    return media_visit(device, village=village, answers={"head_name": "Siti Aminah", "foto_rumah": "rumah.jpg"},
                       attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")])


def collect_at(app, username: str, photo: bytes, village: str = VILLAGE) -> dict:
    """An officer's visit with a photo, pushed and its photo uploaded (tus) where ``app`` runs."""
    client = app.test_client()
    phone = Device(client, username)
    visit = photo_visit(phone, photo, village)
    assert phone.push([visit])["results"][0]["status"] == "applied"
    done = upload(client, phone.headers, visit["id"], "foto_rumah", photo, filename="rumah.jpg")
    assert done.status_code == 204, done.get_json()
    return visit


def shown(app, visit_id: str, username: str = "supervisor") -> tuple[dict, bytes | None]:
    """The visit as a supervisor there sees it, and its photo's bytes (None while it has not arrived)."""
    client = app.test_client()
    headers = login(client, username)
    visit = client.get(f"/api/v1/visits/{visit_id}", headers=headers)
    assert visit.status_code == 200, visit.get_json()
    photo = client.get(f"/api/v1/visits/{visit_id}/attachments/foto_rumah", headers=headers)
    return visit.get_json(), (photo.get_data() if photo.status_code == 200 else None)


def flag_codes(visit: dict) -> list[str]:
    return [flag["code"] for flag in visit["flags"]]


class PatchLog(Link):
    """The hall's link, noting the bytes of every PATCH it delivers; ``cut_patch`` delivers only the
    first half of the body of that PATCH (counted from 1) and then drops the connection, as a cut
    in the middle of the body does: the server keeps what arrived, the hall never hears."""

    def __init__(self, app):
        super().__init__(app)
        self.patched: list[tuple[int, int]] = []  # (offset, bytes delivered)
        self.cut_patch: int | None = None
        self.ranges: list[str] = []

    def send(self, method, path, **kwargs):
        if method != "PATCH" or self.down:
            reply = super().send(method, path, **kwargs)
            if method == "GET" and path.startswith("/api/v1/relay/files/"):
                self.ranges.append(kwargs["headers"].get("Range"))  # delivered and answered
            return reply
        body = kwargs["body"]
        if self.cut_patch is not None and len(self.patched) + 1 == self.cut_patch:
            self.cut_patch = None
            half = body[:len(body) // 2]
            self.inner.send(method, path, **{**kwargs, "body": half})
            self.patched.append((int(kwargs["headers"]["Upload-Offset"]), len(half)))
            raise ConnectionResetError("the link dropped in the middle of the body")
        reply = super().send(method, path, **kwargs)
        self.patched.append((int(kwargs["headers"]["Upload-Offset"]), len(body)))
        return reply


def test_a_photo_taken_at_the_hall_while_central_is_down_reaches_central_byte_exact(tmp_path, media_central):
    hall, link = make_hall(tmp_path, media_central, "balai", [VILLAGE])
    link.down = True  # the hall's internet is out while the officer works
    photo = jpeg()
    visit = collect_at(hall, "ani", photo)
    with hall.app_context():
        waiting = hall_status(get_store(hall))
    assert (waiting["waiting_up"], waiting["files_waiting_up"]) == (1, 1)
    with pytest.raises(RelayError):
        sync_round(hall, link)
    link.down = False
    report = sync_round(hall, link)
    assert (report.sent_applied, report.files_sent, report.files_refused) == (1, 1, 0)
    at_central, got = shown(media_central, visit["id"])
    assert got == photo  # byte-exact
    assert "attachments_missing" not in flag_codes(at_central)
    assert [(a["path"], a["held"], a["sha256"]) for a in at_central["attachments"]] == [
        ("foto_rumah", True, sha(photo))]
    with media_central.app_context():
        assert blob_store(media_central).read(sha(photo)) == photo
        held = get_store(media_central).get("attachments", f"{visit['id']}/foto_rumah")
    assert (held["device_id"], held["officer"]) == (visit["device_id"], "ani")  # the phone's, not the hall's
    with hall.app_context():
        done = hall_status(get_store(hall))
    assert (done["waiting_up"], done["files_waiting_up"], done["files_refused"]) == (0, 0, [])
    again = sync_round(hall, link)
    assert (again.sent, again.files_sent) == (0, 0)  # nothing goes twice
    close(hall)


def test_a_visit_reaches_central_flagged_until_its_photo_arrives_at_the_hall(tmp_path, media_central):
    hall, link = make_hall(tmp_path, media_central, "balai", [VILLAGE])
    client = hall.test_client()
    phone = Device(client, "ani")
    photo = jpeg(color="olive")
    visit = photo_visit(phone, photo)
    phone.push([visit])  # the photo is still on the phone
    assert sync_round(hall, link).files_sent == 0
    at_central, got = shown(media_central, visit["id"])
    assert got is None
    assert "attachments_missing" in flag_codes(at_central)
    assert [a["held"] for a in at_central["attachments"]] == [False]
    with hall.app_context():
        assert hall_status(get_store(hall))["files_waiting_up"] == 1
    assert upload(client, phone.headers, visit["id"], "foto_rumah", photo, filename="rumah.jpg").status_code == 204
    assert sync_round(hall, link).files_sent == 1
    at_central, got = shown(media_central, visit["id"])
    assert got == photo
    assert "attachments_missing" not in flag_codes(at_central)
    close(hall)


def test_a_round_cut_mid_file_resumes_without_resending_finished_bytes(tmp_path, media_central, monkeypatch):
    monkeypatch.setattr(relay_files, "PIECE", 128 * 1024)
    hall = make_hall(tmp_path, media_central, "balai", [VILLAGE])[0]
    link = PatchLog(media_central)
    photo = noisy_jpeg()
    assert len(photo) > 4 * relay_files.PIECE
    visit = collect_at(hall, "ani", photo)
    link.cut_patch = 3  # the third piece is cut half-way
    with pytest.raises(RelayError):
        sync_round(hall, link)
    assert shown(media_central, visit["id"])[1] is None
    cut_at = sum(size for _, size in link.patched)
    assert 2 * relay_files.PIECE < cut_at < 3 * relay_files.PIECE
    link.down = False
    report = sync_round(hall, link)
    assert report.files_sent == 1
    # Every byte went once: each piece started where the one before stopped, the cut one included.
    offsets = [offset for offset, _ in link.patched]
    assert offsets == sorted(set(offsets))
    assert link.patched[3][0] == cut_at
    assert sum(size for _, size in link.patched) == len(photo)
    assert shown(media_central, visit["id"])[1] == photo
    close(hall)


def hall_headers(hall) -> dict[str, str]:
    """What the hall laptop sends upstream: its credential and its node id."""
    with hall.app_context():
        store = get_store(hall)
        return {"Authorization": f"Bearer {relay_state(store)['credential']}", NODE_HEADER: node_device_id(store)}


def test_a_hall_credential_cannot_upload_files_of_visits_it_did_not_relay(tmp_path, media_central):
    make_user(media_central, "citra", "officer", [OTHER_VILLAGE])
    hall = make_hall(tmp_path, media_central, "balai", [VILLAGE])[0]
    photo = jpeg(color="maroon")
    elsewhere = collect_at(media_central, "citra", jpeg(color="navy"), OTHER_VILLAGE)  # not the hall's village
    phone = Device(media_central.test_client(), "ani")
    direct = photo_visit(phone, photo)  # of its village, but pushed to central directly
    assert phone.push([direct])["results"][0]["status"] == "applied"
    client, headers = media_central.test_client(), {**hall_headers(hall), **TUS}

    def create(visit, data):
        return client.post("/api/v1/relay/uploads", headers={
            **headers, "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(sha256=sha(data), filename="rumah.jpg", event_id=visit["id"],
                                        path="foto_rumah")})

    with media_central.app_context():
        before = get_store(media_central).count("uploads")
    outside = create(elsewhere, jpeg(color="navy"))
    assert outside.status_code == 404, outside.get_json()
    assert outside.get_json()["code"] == "not_found"
    not_relayed = create(direct, photo)
    assert not_relayed.status_code == 403, not_relayed.get_json()
    assert not_relayed.get_json()["code"] == "not_your_visit"
    assert client.post("/api/v1/relay/uploads", headers={"Authorization": "Bearer khall.balai.wrong", **TUS,
                                                         "Upload-Length": "10"}).status_code == 401
    with media_central.app_context():
        assert get_store(media_central).count("uploads") == before  # nothing half-made
    assert shown(media_central, direct["id"])[1] is None
    # Nor can it read a file of a village it does not cover.
    read = client.get(f"/api/v1/relay/files/{elsewhere['id']}/foto_rumah", headers=hall_headers(hall))
    assert read.status_code == 404
    close(hall)


def test_a_file_that_fails_centrals_checks_is_refused_and_shown_at_the_hall(tmp_path, media_central, monkeypatch):
    hall, link = make_hall(tmp_path, media_central, "balai", [VILLAGE])
    photo = jpeg(color="purple")
    visit = collect_at(hall, "ani", photo)
    media_central.config["MAX_IMAGE_BYTES"] = len(photo) - 1  # central takes smaller photos than the hall
    media_central.extensions.pop("kunjung.uploads", None)
    report = sync_round(hall, link)
    assert (report.files_sent, report.files_refused) == (0, 1)
    with hall.app_context():
        status = hall_status(get_store(hall))
    assert [(f["visit_id"], f["path"], f["direction"], f["code"]) for f in status["files_refused"]] == [
        (visit["id"], "foto_rumah", "up", "file_too_large")]
    assert status["files_waiting_up"] == 0
    with media_central.app_context():
        assert not blob_store(media_central).exists(sha(photo))
    close(hall)


def test_a_photo_of_a_visit_made_centrally_comes_down_to_the_hall_resumably(tmp_path, media_central, monkeypatch):
    monkeypatch.setattr(relay_files, "PIECE", 128 * 1024)
    hall = make_hall(tmp_path, media_central, "balai", [VILLAGE])[0]
    photo = noisy_jpeg()
    visit = collect_at(media_central, "ani", photo)  # a phone that synced with central directly
    link = PatchLog(media_central)
    link.cut_after = 6  # hello, set-up, the feed, then the first pieces of the photo
    with pytest.raises(RelayError):
        sync_round(hall, link)
    at_hall, got = shown(hall, visit["id"])
    assert got is None
    assert "attachments_missing" in flag_codes(at_hall)
    with hall.app_context():
        assert hall_status(get_store(hall))["files_waiting_down"] == 1
    asked = list(link.ranges)
    assert len(asked) == 3  # the link dropped after three pieces
    assert asked[0] == f"bytes=0-{relay_files.PIECE - 1}"
    link.down, link.cut_after = False, None
    report = sync_round(hall, link)
    assert report.files_received == 1
    resumed = link.ranges[len(asked)]
    assert resumed == f"bytes={len(asked) * relay_files.PIECE}-{(len(asked) + 1) * relay_files.PIECE - 1}"
    at_hall, got = shown(hall, visit["id"])
    assert got == photo  # a supervisor at the hall sees the photo
    assert "attachments_missing" not in flag_codes(at_hall)
    with hall.app_context():
        assert hall_status(get_store(hall))["files_waiting_down"] == 0
    assert sync_round(hall, link).files_received == 0
    with media_central.app_context():
        audit = get_store(media_central).find("audit", limit=1000)
    downloads = [a for a in audit if a.get("action") == "attachment_downloaded" and a.get("actor") == "hall:balai"]
    assert len(downloads) == 1  # one download, however many ranges it took
    close(hall)


def test_the_status_command_shows_files_waiting_to_go_up(tmp_path, media_central, monkeypatch):
    hall, link = make_hall(tmp_path, media_central, "balai", [VILLAGE])
    link.down = True
    collect_at(hall, "ani", jpeg())
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", hall.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY_FILE", hall.config["SECRET_KEY_FILE"])
    shown_en = CliRunner().invoke(cli, ["relay", "status"], env={"KUNJUNG_LANG": "en"}, catch_exceptions=False)
    assert "files waiting to go up: 1; to come down: 0" in shown_en.output
    shown_id = CliRunner().invoke(cli, ["relay", "status"], env={"KUNJUNG_LANG": "id"}, catch_exceptions=False)
    assert "berkas menunggu dikirim ke atas: 1" in shown_id.output
    as_json = CliRunner().invoke(cli, ["relay", "status", "--json"], catch_exceptions=False)
    assert json.loads(as_json.output)["files_waiting_up"] == 1
    supervisor = login(hall.test_client(), "supervisor")
    status = hall.test_client().get("/api/v1/relay/status", headers=supervisor).get_json()
    assert (status["files_waiting_up"], status["files_waiting_down"]) == (1, 0)
    close(hall)


def test_the_halls_page_shows_files_waiting_to_go_up_and_those_refused(tmp_path, media_central):
    hall, link = make_hall(tmp_path, media_central, "balai", [VILLAGE])
    collect_at(hall, "ani", jpeg(color="gray"))
    browser = hall.test_client()
    form = browser.get("/web/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
    signed = browser.post("/web/login", data={"username": "supervisor", "password": PASSWORD, "csrf_token": csrf})
    assert signed.status_code == 302
    assert 'href="/web/hall"' in browser.get("/web/").get_data(as_text=True)  # the menu links it at a hall
    page = browser.get("/web/hall").get_data(as_text=True)
    assert re.search(r'id="files-waiting-up">1<', page)
    assert re.search(r'id="waiting-up">1<', page)
    media_central.config["MAX_IMAGE_BYTES"] = 100  # central refuses the photo
    media_central.extensions.pop("kunjung.uploads", None)
    sync_round(hall, link)
    browser.set_cookie("kunjung_lang", "id")
    page = browser.get("/web/hall").get_data(as_text=True)
    assert re.search(r'id="files-waiting-up">0<', page)
    assert "file_too_large" in page
    assert "Berkas menunggu dikirim ke atas" in page
    central_browser = media_central.test_client()  # central is no hall: no such page, no menu entry
    form = central_browser.get("/web/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
    central_browser.post("/web/login", data={"username": "supervisor", "password": PASSWORD, "csrf_token": csrf})
    assert 'href="/web/hall"' not in central_browser.get("/web/").get_data(as_text=True)
    assert central_browser.get("/web/hall").status_code == 404
    close(hall)


def test_a_credential_revoked_mid_round_stops_the_round_and_leaves_the_photo_waiting(tmp_path, media_central):
    from server.relay.halls import revoke_hall

    hall = make_hall(tmp_path, media_central, "balai", [VILLAGE])[0]
    collect_at(hall, "ani", jpeg(color="khaki"))

    class Revoking(Link):
        """The admin revokes the hall (a stolen laptop) just as its round reaches the photo."""

        def send(self, method, path, **kwargs):
            if path == "/api/v1/relay/uploads":
                with media_central.app_context():
                    revoke_hall(get_store(media_central), "balai", actor="admin")
            return super().send(method, path, **kwargs)

    with pytest.raises(RelayError) as stopped:
        sync_round(hall, Revoking(media_central))
    assert stopped.value.code == "invalid_credential"
    with hall.app_context():
        status = hall_status(get_store(hall))
    # Not the photo's fault: it is not set aside as refused but stays waiting for a round that can send it.
    assert (status["files_waiting_up"], status["files_refused"]) == (1, [])
    close(hall)


def test_a_relayed_list_is_checked_against_the_receivers_form_and_never_arrives_held(media_central):
    from server.forms_registry import published_definition

    photo, card = jpeg(color="teal"), jpeg(color="gold")
    visit = {"id": "0f8c6a53-5f0e-4a5e-9a43-3c2f4d6b7e11", "village": VILLAGE, "device_id": "phone-ani",
             "officer": "ani", "received_at": "2026-12-08T01:00:00Z",
             "answers": {"head_name": "Siti", "foto_rumah": "rumah.jpg", "tanda_tangan": "ttd.png"},
             "flags": [{"code": "attachments_missing", "paths": []}, {"code": "no_geotag"}]}
    sent = [{**entry("foto_rumah", photo, "rumah.jpg", "image/jpeg"), "held": True, "kind": "video"},  # the sender's
            entry("head_name", card, "kk.jpg", "image/jpeg"),  # not a media question: left out
            "not an entry"]
    with media_central.app_context():
        store = get_store(media_central)
        definition = published_definition(store, "verifikasi_foto", "1")
        with store.transaction() as tx:
            doc, attachments = relay_files.relayed_files(tx, definition, dict(visit), sent)
            unknown_form = relay_files.relayed_files(tx, None, dict(visit), sent)
    assert [(e["path"], e["held"], e["kind"]) for e in doc["attachments"]] == [("foto_rumah", False, "image")]
    assert [f["code"] for f in doc["flags"]] == ["no_geotag", "attachments_missing", "attachments_unlisted"]
    assert next(f for f in doc["flags"] if f["code"] == "attachments_missing")["paths"] == ["foto_rumah"]
    assert doc["unlisted_files"][0]["path"] == "tanda_tangan"  # answered, never listed: flagged as here
    assert [(a["id"], a["held"], a["device_id"]) for a in attachments] == [
        (f"{visit['id']}/foto_rumah", False, "phone-ani"), (f"{visit['id']}/tanda_tangan", False, "phone-ani")]
    assert unknown_form == (visit, [])  # no form here to check against: the visit keeps what it came with
