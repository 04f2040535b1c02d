"""Files of visits and ODK Collect's set-up code in the pages: a photo's thumbnail and download on the visit
page (scope-checked and audited like the API's), and the QR code for an officer's phone."""

from __future__ import annotations

import re

from http_helpers import PASSWORD, make_user
from media_helpers import entry, jpeg, media_visit, publish_media_form, upload
from sync_helpers import Device

from server.store import get_store

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(client, username):
    form = client.get("/web/login")
    reply = client.post("/web/login", data={"username": username, "password": PASSWORD,
                                            "csrf_token": CSRF.search(form.get_data(as_text=True)).group(1)})
    assert reply.status_code == 302


def test_a_visit_page_shows_its_photo_and_serves_it_audited(app):
    for name, role, villages in (("admin", "admin", []), ("supervisor", "supervisor", ["32.04.05"]),
                                 ("joko", "supervisor", ["32.04.06"]), ("ani", "officer", ["32.04.05.2001"])):
        make_user(app, name, role, villages)
    client = app.test_client()
    publish_media_form(client)
    ani = Device(client, "ani")
    photo = jpeg(900, 600)
    visit = media_visit(ani, answers={"head_name": "Siti Aminah", "foto_rumah": "rumah.jpg"},
                        attachments=[entry("foto_rumah", photo, "rumah.jpg", "image/jpeg")])
    ani.push([visit])
    web = app.test_client()
    sign_in(web, "supervisor")
    before = web.get(f"/web/visits/{visit['id']}").get_data(as_text=True)
    assert "foto_rumah" in before
    assert 'class="thumbnail"' not in before  # not arrived yet
    upload(client, ani.headers, visit["id"], "foto_rumah", photo)
    page = web.get(f"/web/visits/{visit['id']}").get_data(as_text=True)
    thumb = re.search(r'<img src="([^"]+)"[^>]*class="thumbnail"', page).group(1).replace("&amp;", "&")
    small = web.get(thumb)
    assert small.status_code == 200
    assert small.mimetype == "image/jpeg"
    assert len(small.data) < len(photo)
    full = web.get(f"/web/visits/{visit['id']}/files/foto_rumah")
    assert full.data == photo
    assert "sandbox" in full.headers["Content-Security-Policy"]
    assert full.headers["Content-Disposition"].startswith("attachment")
    with app.app_context():
        reads = get_store().find("audit", {"action": "attachment_downloaded"}, order_by="at")
    assert [(e["actor"], e["details"]["what"]) for e in reads] == [("supervisor", "thumbnail"),
                                                                     ("supervisor", "file")]
    other = app.test_client()
    sign_in(other, "joko")
    assert other.get(f"/web/visits/{visit['id']}/files/foto_rumah").status_code == 404
    assert web.get(f"/web/visits/{visit['id']}/files/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_an_admin_makes_an_odk_collect_qr_code_for_an_officer(app):
    make_user(app, "admin", "admin", [], password="correct horse battery staple")
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    web = app.test_client()
    form = web.get("/web/login")
    web.post("/web/login", data={"username": "admin", "password": "correct horse battery staple",
                                 "csrf_token": CSRF.search(form.get_data(as_text=True)).group(1)})
    users = web.get("/web/users")
    token = CSRF.search(users.get_data(as_text=True)).group(1)
    assert 'action="/web/users/ani/collect"' in users.get_data(as_text=True)
    made = web.post("/web/users/ani/collect", data={"csrf_token": token, "device": "hp-ani-02"})
    assert made.status_code == 201
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', made.get_data(as_text=True))
    bad = web.post("/web/users/ani/collect", data={"csrf_token": token, "device": "bad device!"})
    assert bad.status_code == 422
    # a second code for the same phone replaces the first: the page always shows a fresh one
    again = web.post("/web/users/ani/collect", data={"csrf_token": token, "device": "hp-ani-02"})
    assert again.status_code == 201
    assert again.get_data(as_text=True) != made.get_data(as_text=True)
