"""Files of visits over HTTP: named by the visit, uploaded with tus, checked at the last byte, read back."""

from __future__ import annotations

import random

import pytest
from http_helpers import login, make_user
from media_helpers import (
    OCTETS,
    TUS,
    create_upload,
    entry,
    jpeg,
    media_visit,
    patch,
    png,
    publish_media_form,
    sha,
    upload,
    wav,
    zip_bytes,
)
from sync_helpers import Device

from server.blobs import blob_store
from server.store import get_store

ROW = "7b1c0d2e-1111-4a51-9b1e-6f0d2c7a9e11"


@pytest.fixture
def media_app(backend_app):
    for name, role, villages in (("admin", "admin", []), ("supervisor", "supervisor", ["32.04.05"]),
                                 ("ani", "officer", ["32.04.05.2001"]), ("budi", "officer", ["32.04.06.2001"]),
                                 ("citra", "officer", ["32.04.05.2001"])):
        make_user(backend_app, name, role, villages)
    publish_media_form(backend_app.test_client())
    return backend_app


def stored(app) -> tuple[list[str], list[str]]:
    """The blobs the server holds and the partials of uploads under way in its blob backend."""
    with app.app_context():
        return (sorted(b.sha256 for b in blob_store().list()),
                sorted(p.partial_id for p in blob_store().partials()))


def photo_visit(device, photo: bytes, **answers):
    return media_visit(device, answers={"head_name": "Siti Aminah", "foto_rumah": "rumah.jpg", **answers},
                       attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")])


def test_options_advertises_tus(media_app):
    response = media_app.test_client().options("/api/v1/uploads")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "creation" in response.headers["Tus-Extension"].split(",")
    assert int(response.headers["Tus-Max-Size"]) >= 1024 * 1024 * 1024


def test_a_visit_is_applied_flagged_and_cleared_when_its_file_arrives(media_app):
    client = media_app.test_client()
    ani = Device(client, "ani")
    photo = jpeg()
    visit = photo_visit(ani, photo)
    result = ani.push([visit])["results"][0]
    assert result["status"] == "applied"
    assert {"code": "attachments_missing", "paths": ["foto_rumah"]}.items() <= \
        next(f for f in result["flags"] if f["code"] == "attachments_missing").items()
    pulled = client.get("/api/v1/sync/pull", headers=ani.headers).get_json()
    assert pulled["attachments_missing"] == [{"visit_id": visit["id"], "path": "foto_rumah", "sha256": sha(photo),
                                              "size": len(photo)}]
    supervisor = login(client, "supervisor")
    assert client.get(f"/api/v1/visits/{visit['id']}/attachments/foto_rumah",
                      headers=supervisor).get_json()["code"] == "not_arrived"

    done = upload(client, ani.headers, visit["id"], "foto_rumah", photo, filename="rumah.jpg")
    assert done.status_code == 204, done.get_json()
    assert done.headers["Upload-Offset"] == str(len(photo))

    assert client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"] == []
    shown = client.get(f"/api/v1/visits/{visit['id']}", headers=supervisor).get_json()
    assert "attachments_missing" not in [f["code"] for f in shown["flags"]]
    assert [(a["path"], a["held"], a["kind"]) for a in shown["attachments"]] == [("foto_rumah", True, "image")]
    got = client.get(f"/api/v1/visits/{visit['id']}/attachments/foto_rumah", headers=supervisor)
    assert got.status_code == 200
    assert got.get_data() == photo
    assert got.headers["Content-Type"] == "image/jpeg"
    assert stored(media_app) == ([sha(photo)], [])


def test_an_upload_cut_at_random_offsets_completes_byte_exact(media_app):
    client = media_app.test_client()
    ani = Device(client, "ani")
    sound = wav(3.0)
    visit = media_visit(ani, answers={"catatan_suara": "suara.wav"},
                        attachments=[entry("catatan_suara", sound, "suara.wav", "audio/wav")])
    assert ani.push([visit])["results"][0]["status"] == "applied"
    created = create_upload(client, ani.headers, visit["id"], "catatan_suara", sound)
    location = created.headers["Location"]
    draw = random.Random(15)
    offset = 0
    cuts = 0
    while offset < len(sound):
        chunk = sound[offset:offset + draw.randint(1, 20_000)]
        cut = draw.randint(0, len(chunk))  # the link drops after this many bytes of the chunk
        patch(client, ani.headers, location, offset, chunk[:cut], declared=len(chunk))
        cuts += 1
        head = client.head(location, headers={**ani.headers, **TUS})
        if head.status_code == 404:  # the last byte arrived: the upload is finished
            break
        assert head.headers["Upload-Length"] == str(len(sound))
        assert int(head.headers["Upload-Offset"]) == offset + cut
        offset += cut
    assert cuts > 5
    supervisor = login(client, "supervisor")
    got = client.get(f"/api/v1/visits/{visit['id']}/attachments/catatan_suara", headers=supervisor)
    assert got.get_data() == sound
    assert stored(media_app) == ([sha(sound)], [])


def test_offsets_content_types_and_versions_are_checked(media_app):
    client = media_app.test_client()
    ani = Device(client, "ani")
    photo = jpeg()
    visit = photo_visit(ani, photo)
    ani.push([visit])
    location = create_upload(client, ani.headers, visit["id"], "foto_rumah", photo).headers["Location"]
    assert patch(client, ani.headers, location, 0, photo[:100]).status_code == 204
    wrong = patch(client, ani.headers, location, 0, photo[:100])
    assert wrong.status_code == 409
    assert wrong.get_json()["code"] == "offset_mismatch"
    assert wrong.headers["Tus-Resumable"] == "1.0.0"
    as_json = client.patch(location, data=photo[100:], headers={**ani.headers, **TUS, "Upload-Offset": "100",
                                                               "Content-Type": "application/json"})
    assert as_json.status_code == 415
    old = client.patch(location, data=photo[100:], headers={**ani.headers, "Tus-Resumable": "0.2.2",
                                                           "Upload-Offset": "100", "Content-Type": OCTETS})
    assert old.status_code == 412
    too_long = patch(client, ani.headers, location, 100, photo[100:] + b"extra")
    assert too_long.status_code == 400
    assert client.head(location, headers={**ani.headers, **TUS}).headers["Upload-Offset"] == "100"
    for bad in ("sha256 !!!,filename eA==", "a", "sha256 eA==,sha256 eA=="):
        response = client.post("/api/v1/uploads", headers={**ani.headers, **TUS, "Upload-Length": "10",
                                                           "Upload-Metadata": bad})
        assert response.status_code == 400, bad
        assert set(response.get_json()) == {"code", "message", "errors", "request_id"}
    assert client.post("/api/v1/uploads", headers={**ani.headers, **TUS, "Upload-Length": "-1"}).status_code == 400


def refused(app, client, headers, visit_id, path, data, **create):
    """Upload ``data`` whole and return the final reply (expected to refuse it)."""
    created = create_upload(client, headers, visit_id, path, data, **create)
    if created.status_code != 201:
        return created
    return patch(client, headers, created.headers["Location"], 0, data)


def test_every_bad_file_is_refused_with_nothing_stored(media_app, app_factory):
    client = media_app.test_client()
    ani = Device(client, "ani")
    photo = jpeg()
    big = jpeg(2000, 1500)
    zipped = zip_bytes()
    visit = media_visit(ani, answers={"foto_rumah": "rumah.jpg", "tanda_tangan": "ttd.png", "dokumen": "kk.pdf",
                                      "anggota": [{"_id": ROW, "nama": "Budi", "foto_ktp": "ktp.jpg"}]},
                        attachments=[entry("foto_rumah", big, "rumah.jpg", "image/jpeg"),
                                     entry("tanda_tangan", zipped, "ttd.png", "image/png"),
                                     entry("dokumen", zipped, "kk.pdf", "application/pdf"),
                                     entry(f"anggota/{ROW}/foto_ktp", photo, "ktp.jpg", "image/jpeg")])
    assert ani.push([visit])["results"][0]["status"] == "applied"
    vid = visit["id"]

    # an image beyond the question's max-pixels (1024 on the longer side)
    response = refused(media_app, client, ani.headers, vid, "foto_rumah", big)
    assert (response.status_code, response.get_json()["code"]) == (422, "too_many_pixels")
    # a .png signature that is a zip; a .pdf document that is a zip
    response = refused(media_app, client, ani.headers, vid, "tanda_tangan", zipped)
    assert (response.status_code, response.get_json()["code"]) == (415, "wrong_media_type")
    response = refused(media_app, client, ani.headers, vid, "dokumen", zipped)
    assert (response.status_code, response.get_json()["code"]) == (415, "wrong_media_type")
    # bytes other than the ones the visit names (the metadata names the right hash)
    other = bytearray(photo)
    other[-10] ^= 0xFF
    response = refused(media_app, client, ani.headers, vid, f"anggota/{ROW}/foto_ktp", bytes(other),
                       digest=sha(photo))
    assert (response.status_code, response.get_json()["code"]) == (422, "checksum_mismatch")
    # a hash or a length other than the visit's, a path the visit does not name
    response = create_upload(client, ani.headers, vid, "foto_rumah", photo)
    assert (response.status_code, response.get_json()["code"]) == (422, "attachment_mismatch")
    response = create_upload(client, ani.headers, vid, "catatan_suara", photo)
    assert (response.status_code, response.get_json()["code"]) == (422, "unknown_attachment")
    assert stored(media_app) == ([], [])
    with media_app.app_context():
        assert get_store().count("uploads") == 0
        assert not get_store().get("attachments", f"{vid}/foto_rumah")["held"]

    # the right files are then taken
    assert upload(client, ani.headers, vid, f"anggota/{ROW}/foto_ktp", photo).status_code == 204
    assert stored(media_app)[0] == [sha(photo)]


def test_the_size_limit_is_per_kind_and_configurable(backend_app):
    make_user(backend_app, "admin", "admin")
    make_user(backend_app, "ani", "officer", ["32.04.05.2001"])
    backend_app.config["MAX_IMAGE_BYTES"] = 1000
    client = backend_app.test_client()
    publish_media_form(client)
    ani = Device(client, "ani")
    photo = jpeg()
    visit = photo_visit(ani, photo)
    assert ani.push([visit])["results"][0]["status"] == "applied"
    response = create_upload(client, ani.headers, visit["id"], "foto_rumah", photo)
    assert response.status_code == 413
    assert response.get_json()["code"] == "file_too_large"
    assert stored(backend_app) == ([], [])


def test_uploads_for_visits_outside_the_callers_reach_are_refused(media_app):
    client = media_app.test_client()
    ani, budi, citra = Device(client, "ani"), Device(client, "budi"), Device(client, "citra")
    photo = jpeg()
    visit = photo_visit(ani, photo)
    ani.push([visit])
    # budi's village is another: the visit does not exist for him
    response = create_upload(client, budi.headers, visit["id"], "foto_rumah", photo)
    assert (response.status_code, response.get_json()["code"]) == (404, "not_found")
    # citra works in the same village, but only the device that made a visit uploads its files
    response = create_upload(client, citra.headers, visit["id"], "foto_rumah", photo)
    assert (response.status_code, response.get_json()["code"]) == (403, "not_your_visit")
    # a login without a device cannot upload; another device cannot touch ani's upload
    location = create_upload(client, ani.headers, visit["id"], "foto_rumah", photo).headers["Location"]
    assert client.head(location, headers={**citra.headers, **TUS}).status_code == 404
    assert patch(client, citra.headers, location, 0, photo).status_code == 404
    assert create_upload(client, login(client, "ani"), visit["id"], "foto_rumah", photo).status_code == 403
    assert stored(media_app)[0] == []
    # budi cannot read it, nor can a supervisor of another kecamatan
    assert upload(client, ani.headers, visit["id"], "foto_rumah", photo).status_code == 204
    assert client.get(f"/api/v1/visits/{visit['id']}/attachments/foto_rumah",
                      headers=budi.headers).status_code == 404


def test_knowing_a_hash_grants_nothing(media_app):
    """Stored once, but a visit names a file only once its own device uploaded those bytes for it."""
    client = media_app.test_client()
    ani, citra = Device(client, "ani"), Device(client, "citra")
    photo = jpeg()
    first = photo_visit(ani, photo)
    ani.push([first])
    assert upload(client, ani.headers, first["id"], "foto_rumah", photo).status_code == 204
    copycat = photo_visit(citra, photo)
    assert citra.push([copycat])["results"][0]["status"] == "applied"
    # the server holds the bytes, yet citra's visit lacks them until citra sends them herself
    assert client.get("/api/v1/sync/pull", headers=citra.headers).get_json()["attachments_missing"][0]["visit_id"] \
        == copycat["id"]
    supervisor = login(client, "supervisor")
    assert client.get(f"/api/v1/visits/{copycat['id']}/attachments/foto_rumah",
                      headers=supervisor).status_code == 404
    assert client.get(f"/api/v1/visits/{first['id']}/attachments/foto_rumah",
                      headers=citra.headers).status_code == 404  # an officer reads her own visits only
    assert upload(client, citra.headers, copycat["id"], "foto_rumah", photo).status_code == 204
    assert stored(media_app)[0] == [sha(photo)]  # stored once
    assert client.get(f"/api/v1/visits/{copycat['id']}/attachments/foto_rumah",
                      headers=citra.headers).get_data() == photo


def test_a_bad_attachments_list_rejects_the_event(media_app):
    client = media_app.test_client()
    ani = Device(client, "ani")
    photo = jpeg()
    good = entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")
    cases = {
        "attachments.0.path": [{**good, "path": "head_name"}],
        "attachments.1.path": [good, good],
        "attachments.0.sha256": [{**good, "sha256": "ABC"}],
        "attachments.0.size": [{**good, "size": -1}],
        "attachments.0.filename": [{**good, "filename": "../etc/passwd"}],
        "attachments.0.extra": [{**good, "extra": 1}],
        "attachments": "not a list",
    }
    for key, attachments in cases.items():
        visit = media_visit(ani, answers={"foto_rumah": "rumah.jpg"}, attachments=attachments)
        result = ani.push([visit])["results"][0]
        assert result["status"] == "rejected", key
        assert result["code"] == "invalid"
        assert key in result["errors"], (key, result["errors"])
    unanswered = media_visit(ani, answers={}, attachments=[good])
    assert "attachments.0.path" in ani.push([unanswered])["results"][0]["errors"]
    with media_app.app_context():
        assert get_store().count("attachments") == 0


def test_downloads_and_thumbnails_are_audited_and_thumbnails_made_once(media_app):
    client = media_app.test_client()
    ani = Device(client, "ani")
    photo = jpeg(1000, 700)
    visit = photo_visit(ani, photo)
    ani.push([visit])
    upload(client, ani.headers, visit["id"], "foto_rumah", photo)
    supervisor = login(client, "supervisor")
    first = client.get(f"/api/v1/visits/{visit['id']}/thumbnails/foto_rumah", headers=supervisor)
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "image/jpeg"
    blobs_after_first = stored(media_app)[0]
    second = client.get(f"/api/v1/visits/{visit['id']}/thumbnails/foto_rumah", headers=supervisor)
    assert second.get_data() == first.get_data()
    assert stored(media_app)[0] == blobs_after_first
    assert len(blobs_after_first) == 2
    client.get(f"/api/v1/visits/{visit['id']}/attachments/foto_rumah", headers=supervisor)
    audit = client.get("/api/v1/audit", query_string={"action": "attachment_downloaded"},
                       headers=login(client, "admin")).get_json()
    entries = audit["items"] if isinstance(audit, dict) else audit
    assert [(e["actor"], e["target"], e["details"]["what"]) for e in entries] == [
        ("supervisor", visit["id"], "file"), ("supervisor", visit["id"], "thumbnail"),
        ("supervisor", visit["id"], "thumbnail")]
    assert client.get(f"/api/v1/visits/{visit['id']}/attachments/..%2F..%2Fetc", headers=supervisor).status_code \
        == 404


def test_erasing_a_visits_files_keeps_bytes_another_visit_holds(media_app):
    from server.blobs.attachments import forget_visit_files

    client = media_app.test_client()
    ani, citra = Device(client, "ani"), Device(client, "citra")
    shared, own = jpeg(), jpeg(color="red")
    first = media_visit(ani, answers={"foto_rumah": "a.jpg", "tanda_tangan": "b.jpg"},
                        attachments=[entry("foto_rumah", shared, "a.jpg", "image/jpeg"),
                                     entry("tanda_tangan", own, "b.jpg", "image/jpeg")])
    ani.push([first])
    for path, data in (("foto_rumah", shared), ("tanda_tangan", own)):
        assert upload(client, ani.headers, first["id"], path, data).status_code == 204
    other = photo_visit(citra, shared)
    citra.push([other])
    assert upload(client, citra.headers, other["id"], "foto_rumah", shared).status_code == 204
    supervisor = login(client, "supervisor")
    assert client.get(f"/api/v1/visits/{first['id']}/thumbnails/foto_rumah", headers=supervisor).status_code == 200
    with media_app.app_context():
        removed = forget_visit_files(get_store(), blob_store(), first["id"])
    assert sha(own) in removed
    assert sha(shared) not in removed  # citra's visit still holds those bytes
    assert client.get(f"/api/v1/visits/{first['id']}/attachments/tanda_tangan",
                      headers=supervisor).status_code == 404
    assert client.get(f"/api/v1/visits/{other['id']}/attachments/foto_rumah",
                      headers=supervisor).get_data() == shared
    assert sha(own) not in stored(media_app)[0]


def test_an_upload_resumes_after_the_server_restarts(app_factory):
    first = app_factory()
    for name, role, villages in (("admin", "admin", []), ("ani", "officer", ["32.04.05.2001"])):
        make_user(first, name, role, villages)
    client = first.test_client()
    publish_media_form(client)
    ani = Device(client, "ani")
    photo = jpeg(900, 600)
    visit = photo_visit(ani, photo)
    ani.push([visit])
    location = create_upload(client, ani.headers, visit["id"], "foto_rumah", photo).headers["Location"]
    patch(client, ani.headers, location, 0, photo[:5000], declared=len(photo))

    again = app_factory().test_client()  # a new process on the same store and folders
    head = again.head(location, headers={**ani.headers, **TUS})
    assert head.headers["Upload-Offset"] == "5000"
    assert patch(again, ani.headers, location, 5000, photo[5000:]).status_code == 204
    assert again.get(f"/api/v1/visits/{visit['id']}/attachments/foto_rumah", headers=ani.headers).get_data() == photo


def test_a_file_the_answers_name_but_the_list_does_not_is_flagged_and_the_device_told(media_app):
    client = media_app.test_client()
    ani = Device(client, "ani")
    photo = jpeg()
    visit = media_visit(ani, answers={"head_name": "Siti Aminah", "foto_rumah": "rumah.jpg",
                                      "tanda_tangan": "ttd.png"},
                        attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")])
    result = ani.push([visit])["results"][0]
    assert result["status"] == "applied"
    flags = {flag["code"]: flag for flag in result["flags"]}
    assert flags["attachments_unlisted"]["paths"] == ["tanda_tangan"]
    assert flags["attachments_missing"]["paths"] == ["foto_rumah"]
    assert "did not list" in flags["attachments_unlisted"]["message"]
    pulled = client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"]
    assert sorted(pulled, key=lambda item: item["path"]) == [
        {"visit_id": visit["id"], "path": "foto_rumah", "sha256": sha(photo), "size": len(photo)},
        {"visit_id": visit["id"], "path": "tanda_tangan", "sha256": None, "size": None, "unlisted": True}]
    assert client.get("/api/v1/uploads/missing", headers=ani.headers).get_json()["items"] == pulled
    refused = create_upload(client, ani.headers, visit["id"], "tanda_tangan", png())
    assert refused.status_code == 422
    assert refused.get_json()["code"] == "unlisted_attachment"

    assert upload(client, ani.headers, visit["id"], "foto_rumah", photo).status_code == 204
    shown = client.get(f"/api/v1/visits/{visit['id']}", headers=login(client, "supervisor")).get_json()
    codes = [flag["code"] for flag in shown["flags"]]
    assert "attachments_unlisted" in codes
    assert "attachments_missing" not in codes
    assert client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"] == [
        {"visit_id": visit["id"], "path": "tanda_tangan", "sha256": None, "size": None, "unlisted": True}]
    # in Indonesian, for a supervisor of the field team
    said = client.get(f"/api/v1/visits/{visit['id']}",
                      headers={**login(client, "supervisor"), "Accept-Language": "id"}).get_json()
    message = next(flag["message"] for flag in said["flags"] if flag["code"] == "attachments_unlisted")
    assert "did not list" not in message
    assert "1" in message


def test_a_superseding_visit_of_the_same_device_does_not_send_its_files_again(media_app):
    client = media_app.test_client()
    ani, citra, budi = Device(client, "ani"), Device(client, "citra"), Device(client, "budi")
    photo, sound = jpeg(), wav()
    first = photo_visit(ani, photo)
    ani.push([first])
    assert upload(client, ani.headers, first["id"], "foto_rumah", photo).status_code == 204
    second = {**media_visit(ani, first["household_id"],
                            answers={"head_name": "Siti Aminah", "foto_rumah": "rumah.jpg",
                                     "catatan_suara": "suara.wav"},
                            attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg"),
                                         entry("catatan_suara", sound, "suara.wav", "audio/wav")]),
              "supersedes": first["id"]}
    result = ani.push([second])["results"][0]
    assert result["status"] == "applied", result
    assert next(f for f in result["flags"] if f["code"] == "attachments_missing")["paths"] == ["catatan_suara"]
    assert client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"] == [
        {"visit_id": second["id"], "path": "catatan_suara", "sha256": sha(sound), "size": len(sound)}]
    supervisor = login(client, "supervisor")
    assert client.get(f"/api/v1/visits/{second['id']}/attachments/foto_rumah",
                      headers=supervisor).get_data() == photo

    # another device of the same village, naming the same bytes, reads nothing until it sends them
    copycat = photo_visit(citra, photo)
    assert "attachments_missing" in [f["code"] for f in citra.push([copycat])["results"][0]["flags"]]
    assert client.get(f"/api/v1/visits/{copycat['id']}/attachments/foto_rumah",
                      headers=supervisor).status_code == 404
    created = create_upload(client, citra.headers, copycat["id"], "foto_rumah", photo)
    assert created.status_code == 201
    assert created.headers["Upload-Offset"] == "0"
    # nor does a device of another village, whose supervisor-free officer sees only her own visits
    far = photo_visit(budi, photo)
    far["village"] = "32.04.06.2001"
    budi.push([far])
    assert client.get(f"/api/v1/visits/{second['id']}/attachments/foto_rumah",
                      headers=budi.headers).status_code == 404
    assert client.get(f"/api/v1/visits/{far['id']}/attachments/foto_rumah",
                      headers=budi.headers).get_json()["code"] == "not_arrived"

    # bytes sent for an earlier visit after the later one was pushed count for the later one at creation
    third = {**media_visit(ani, first["household_id"], answers={"head_name": "Siti Aminah",
                                                                 "catatan_suara": "suara.wav"},
                           attachments=[entry("catatan_suara", sound, "suara.wav", "audio/wav")]),
             "supersedes": second["id"]}
    ani.push([third])
    assert upload(client, ani.headers, second["id"], "catatan_suara", sound).status_code == 204
    again = create_upload(client, ani.headers, third["id"], "catatan_suara", sound)
    assert again.status_code == 201
    assert again.headers["Upload-Offset"] == str(len(sound))
    assert client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"] == []
    assert client.get(f"/api/v1/visits/{third['id']}/attachments/catatan_suara",
                      headers=supervisor).get_data() == sound


def test_patches_through_two_processes_are_checked_whole_and_a_changed_byte_still_refused(app_factory):
    """Each process hashes the bytes it appends; when the bytes came through another one too, the last
    PATCH reads the file again, so the check never trusts a digest that missed some bytes."""
    one = app_factory()
    for name, role, villages in (("admin", "admin", []), ("ani", "officer", ["32.04.05.2001"])):
        make_user(one, name, role, villages)
    client = one.test_client()
    publish_media_form(client)
    other = app_factory().test_client()
    ani = Device(client, "ani")
    photo, another = jpeg(900, 600), jpeg(900, 600, color="red")
    good, bad = photo_visit(ani, photo), photo_visit(ani, another)
    ani.push([good, bad])
    half = len(photo) // 2

    location = create_upload(client, ani.headers, good["id"], "foto_rumah", photo).headers["Location"]
    assert patch(client, ani.headers, location, 0, photo[:half]).status_code == 204
    assert patch(other, ani.headers, location, half, photo[half:-10]).status_code == 204
    assert patch(client, ani.headers, location, len(photo) - 10, photo[-10:]).status_code == 204
    assert client.get(f"/api/v1/visits/{good['id']}/attachments/foto_rumah", headers=ani.headers).get_data() == photo

    changed = another[:-20] + bytes(b ^ 0xFF for b in another[-20:-10]) + another[-10:]
    half = len(another) // 2
    location = create_upload(client, ani.headers, bad["id"], "foto_rumah", another).headers["Location"]
    assert patch(client, ani.headers, location, 0, changed[:half]).status_code == 204
    refused = patch(client, ani.headers, location, half, changed[half:])
    assert refused.status_code == 422
    assert refused.get_json()["code"] == "checksum_mismatch"


def test_a_phone_behind_a_load_balancer_uploads_through_three_hosts_of_one_mongodb(tmp_path):
    """The partial lives in the database, not on a host: each PATCH may reach any host, and a cut one
    resumes on another; no shared volume is needed (KUNJUNG_APP_HOSTS above 1 starts)."""
    from http_helpers import make_mongo_stand_in_app
    from mongo_stand_in import StandIn

    from server.store import raw_store

    database = StandIn()
    hosts = [make_mongo_stand_in_app(tmp_path, stand_in=database, APP_HOSTS=3) for _ in range(3)]
    try:
        for name, role, villages in (("admin", "admin", []), ("ani", "officer", ["32.04.05.2001"])):
            make_user(hosts[0], name, role, villages)
        clients = [host.test_client() for host in hosts]
        publish_media_form(clients[0])
        ani = Device(clients[0], "ani")
        sound = wav(2.0)
        visit = media_visit(ani, answers={"catatan_suara": "suara.wav"},
                            attachments=[entry("catatan_suara", sound, "suara.wav", "audio/wav")])
        assert ani.push([visit])["results"][0]["status"] == "applied"
        location = create_upload(clients[1], ani.headers, visit["id"], "catatan_suara", sound).headers["Location"]
        draw, offset, turn = random.Random(5), 0, 0
        while offset < len(sound):
            client = clients[turn % 3]
            turn += 1
            chunk = sound[offset:offset + draw.randint(1000, 60_000)]
            cut = draw.randint(len(chunk) // 2, len(chunk))
            patch(client, ani.headers, location, offset, chunk[:cut], declared=len(chunk))
            if offset + cut == len(sound):
                break
            head = clients[turn % 3].head(location, headers={**ani.headers, **TUS})
            assert int(head.headers["Upload-Offset"]) == offset + cut
            offset += cut
        assert turn > 3
        got = clients[2].get(f"/api/v1/visits/{visit['id']}/attachments/catatan_suara", headers=ani.headers)
        assert got.get_data() == sound
        assert stored(hosts[0]) == ([sha(sound)], [])
    finally:
        for host in hosts:
            raw_store(host).close()


def test_a_revised_visit_stops_the_phone_being_asked_for_files_its_first_version_never_sent(media_app):
    """The officer took a photo and an audio note, sent the photo, then revised the visit (the supervisor
    sent it back) without the audio: the first version's audio is no longer asked for, nor flagged."""
    client = media_app.test_client()
    ani = Device(client, "ani")
    photo, sound, signature = jpeg(), wav(), png()
    first = media_visit(ani, answers={"head_name": "Siti Aminah", "foto_rumah": "rumah.jpg",
                                      "catatan_suara": "suara.wav", "tanda_tangan": "ttd.png"},
                        attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg"),
                                     entry("catatan_suara", sound, "suara.wav", "audio/wav")])
    assert ani.push([first])["results"][0]["status"] == "applied"
    assert upload(client, ani.headers, first["id"], "foto_rumah", photo).status_code == 204
    half = create_upload(client, ani.headers, first["id"], "catatan_suara", sound).headers["Location"]
    assert patch(client, ani.headers, half, 0, sound[:1000]).status_code == 204  # then the link dropped
    pulled = client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"]
    assert sorted(item["path"] for item in pulled) == ["catatan_suara", "tanda_tangan"]

    second = {**media_visit(ani, first["household_id"], answers={"head_name": "Siti Aminah",
                                                                  "foto_rumah": "rumah.jpg",
                                                                  "tanda_tangan": "ttd.png"},
                            attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg"),
                                         entry("tanda_tangan", signature, "ttd.png", "image/png")]),
              "supersedes": first["id"]}
    assert ani.push([second])["results"][0]["status"] == "applied"
    # only the new version's own missing file is asked for; the first version's are not
    expected = [{"visit_id": second["id"], "path": "tanda_tangan", "sha256": sha(signature), "size": len(signature)}]
    assert client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"] == expected
    assert client.get("/api/v1/uploads/missing", headers=ani.headers).get_json()["items"] == expected
    supervisor = login(client, "supervisor")
    old = client.get(f"/api/v1/visits/{first['id']}", headers=supervisor).get_json()
    assert old["superseded_by"] == second["id"]
    assert "attachments_missing" not in [flag["code"] for flag in old["flags"]]
    # what arrived stays with the first version; an upload of its audio under way may still finish
    # (the bytes already crossed a bad link), and the first version then holds it, unflagged
    assert client.get(f"/api/v1/visits/{first['id']}/attachments/foto_rumah", headers=supervisor).get_data() == photo
    assert patch(client, ani.headers, half, 1000, sound[1000:]).status_code == 204
    assert client.get(f"/api/v1/visits/{first['id']}/attachments/catatan_suara",
                      headers=supervisor).get_data() == sound
    old = client.get(f"/api/v1/visits/{first['id']}", headers=supervisor).get_json()
    assert "attachments_missing" not in [flag["code"] for flag in old["flags"]]
    assert client.get("/api/v1/sync/pull", headers=ani.headers).get_json()["attachments_missing"] == expected
    assert stored(media_app) == (sorted([sha(photo), sha(sound)]), [])
    # the officer's figures no longer count the first version as missing a file
    assert upload(client, ani.headers, second["id"], "tanda_tangan", signature).status_code == 204
    with media_app.app_context():
        codes = [get_store().get("visits", visit_id)["flag_codes"] for visit_id in (first["id"], second["id"])]
    assert ["attachments_missing" in each for each in codes] == [False, False]
    assert "attachments_unlisted" in codes[0]  # what the first version's device did stays on record
