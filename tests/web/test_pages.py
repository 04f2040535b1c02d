"""The web pages through the Flask test client: sign-in, sessions, CSRF, headers, escaping, scope and every page."""

from __future__ import annotations

import io
import re

import pytest
from web_seed import ADMIN_PASSWORD, HOSTILE, PASSWORD, VILLAGES_CSV, seed, xlsform_bytes

from server.store import get_store
from server.web.views import localtime

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def world(app):
    return seed(app)


def token(page) -> str:
    found = CSRF.search(page.get_data(as_text=True))
    assert found, "the page has no CSRF token"
    return found.group(1)


def sign_in(client, username, password=PASSWORD):
    form = client.get("/web/login")
    reply = client.post("/web/login", data={"username": username, "password": password, "csrf_token": token(form)})
    assert reply.status_code == 302, reply.get_data(as_text=True)
    return reply


def post(client, path, data, page=None):
    """A form post carrying the CSRF token of the page it came from (the dashboard by default)."""
    page = page or client.get("/web/")
    return client.post(path, data={**data, "csrf_token": token(page)})


def cookie(client, name):
    found = client.get_cookie(name)
    return found.value if found else None


# -- sign-in and sessions -----------------------------------------------------------------------
def test_signing_in_sets_an_httponly_samesite_cookie_and_audits(app, client, world):
    reply = sign_in(client, "sari")
    header = next(h for h in reply.headers.getlist("Set-Cookie") if h.startswith("kunjung_web="))
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Secure" not in header
    assert reply.headers["Location"].endswith("/web/")
    assert client.get("/web/").status_code == 200
    with app.app_context():
        actions = [e["action"] for e in get_store().find("audit", {"action": "login_succeeded"}, order_by="-at")]
    assert actions


def test_the_cookie_is_secure_over_https(app, world):
    client = app.test_client()
    form = client.get("/web/login", base_url="https://localhost")
    reply = client.post("/web/login", base_url="https://localhost",
                        data={"username": "sari", "password": PASSWORD, "csrf_token": token(form)})
    header = next(h for h in reply.headers.getlist("Set-Cookie") if h.startswith("kunjung_web="))
    assert "Secure" in header


def test_a_wrong_password_is_refused_audited_and_rate_limited(app_factory):
    app = app_factory(LOGIN_RATE_LIMIT=2)
    seed(app)
    client = app.test_client()
    statuses = []
    for _ in range(4):
        form = client.get("/web/login")
        statuses.append(client.post("/web/login", data={"username": "sari", "password": "wrong password!",
                                                        "csrf_token": token(form)}).status_code)
    assert statuses[:2] == [401, 401]
    assert 429 in statuses[2:]
    with app.app_context():
        assert get_store().count("audit", {"action": "login_failed"}) >= 2
    assert cookie(client, "kunjung_web") is None


def test_pages_need_a_session(client, world):
    reply = client.get("/web/queue")
    assert reply.status_code == 302
    assert "/web/login" in reply.headers["Location"]
    assert client.get("/web/map/visits.json").status_code == 302
    assert client.get("/").headers["Location"].endswith("/web/")


def test_logging_out_ends_the_session_even_for_a_copied_cookie(client, world):
    sign_in(client, "sari")
    copied = cookie(client, "kunjung_web")
    assert post(client, "/web/logout", {}).status_code == 302
    client.set_cookie("kunjung_web", copied)
    assert client.get("/web/").status_code == 302


def test_disabling_a_user_ends_their_web_session_at_once(app, world):
    sari, admin = app.test_client(), app.test_client()
    sign_in(sari, "sari")
    sign_in(admin, "admin", ADMIN_PASSWORD)
    assert sari.get("/web/").status_code == 200
    reply = post(admin, "/web/users/sari", {"action": "disable"}, admin.get("/web/users"))
    assert reply.status_code == 302
    assert sari.get("/web/").status_code == 302
    form = sari.get("/web/login")
    assert sari.post("/web/login", data={"username": "sari", "password": PASSWORD,
                                          "csrf_token": token(form)}).status_code == 403


def test_a_forged_or_tampered_cookie_is_no_session(client, world):
    sign_in(client, "sari")
    import base64

    encoded, _, signature = cookie(client, "kunjung_web").partition("~")
    claims = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).replace(b'"sari"', b'"admin"')
    assert b'"admin"' in claims
    client.set_cookie("kunjung_web", base64.urlsafe_b64encode(claims).decode().rstrip("=") + "~" + signature)
    assert client.get("/web/").status_code == 302
    client.set_cookie("kunjung_web", "garbage~abc.def")
    assert client.get("/web/").status_code == 302


# -- CSRF and headers ---------------------------------------------------------------------------
def test_a_post_without_or_with_a_foreign_csrf_token_is_refused(app, client, world):
    sign_in(client, "sari")
    path = f"/web/visits/{world['plain']}/review"
    assert client.post(path, data={"state": "approved"}).status_code == 403
    other = app.test_client()
    sign_in(other, "sari")
    foreign = token(other.get("/web/"))
    assert client.post(path, data={"state": "approved", "csrf_token": foreign}).status_code == 403
    assert client.post(path, data={"state": "approved", "csrf_token": token(client.get("/web/"))},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    with app.app_context():
        assert get_store().get("visits", world["plain"])["review_state"] == "pending"


def test_behind_an_https_proxy_posts_from_the_public_origin_work(app_factory):
    app = app_factory(TRUSTED_PROXIES=1)
    seed(app)
    client = app.test_client()
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "kunjung.desa.example",
               "X-Forwarded-For": "10.0.0.5"}
    form = client.get("/web/login", headers=proxied)
    reply = client.post("/web/login", headers={**proxied, "Origin": "https://kunjung.desa.example"},
                        data={"username": "sari", "password": PASSWORD, "csrf_token": token(form)})
    assert reply.status_code == 302
    header = next(h for h in reply.headers.getlist("Set-Cookie") if h.startswith("kunjung_web="))
    assert "Secure" in header
    page = client.get("/web/", headers=proxied)
    foreign = client.post("/web/logout", headers={**proxied, "Origin": "https://evil.example"},
                          data={"csrf_token": token(page)})
    assert foreign.status_code == 403
    own = client.post("/web/logout", headers={**proxied, "Origin": "https://kunjung.desa.example"},
                      data={"csrf_token": token(page)})
    assert own.status_code == 302


def test_sign_in_itself_needs_its_csrf_token(client, world):
    assert client.post("/web/login", data={"username": "sari", "password": PASSWORD}).status_code == 403


def test_security_headers_and_no_inline_script_or_style(client, world):
    sign_in(client, "sari")
    for path in ("/web/login", "/web/", "/web/queue", f"/web/visits/{world['hostile']}", "/web/map"):
        reply = client.get(path)
        csp = reply.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp
        assert "'unsafe-eval'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert "style-src 'self'" in csp
        assert reply.headers["X-Frame-Options"] == "DENY"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        body = reply.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body), path
        assert not re.search(r"\sstyle=", body), path
        assert not re.search(r"\son[a-z]+=", body), path
        assert "http://" not in body.replace("http://localhost", "")
        assert "https://" not in body


def test_an_answer_holding_markup_is_shown_as_text(client, world):
    sign_in(client, "sari")
    body = client.get(f"/web/visits/{world['hostile']}").get_data(as_text=True)
    assert HOSTILE not in body
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in body
    assert HOSTILE not in client.get(f"/web/households/{world['hostile_household']}").get_data(as_text=True)


# -- scope ----------------------------------------------------------------------------------------
def test_a_supervisor_sees_only_their_area(client, world):
    sign_in(client, "joko")  # kecamatan 32.04.06: none of the seeded visits
    assert client.get(f"/web/visits/{world['plain']}").status_code == 404
    assert client.get(f"/web/households/{world['plain_household']}").status_code == 404
    assert client.get("/web/map/visits.json").get_json()["points"] == []
    assert world["plain"] not in client.get("/web/queue").get_data(as_text=True)
    assert "Rahmat" not in client.get("/web/conflicts").get_data(as_text=True)
    reply = post(client, f"/web/visits/{world['plain']}/review", {"state": "approved"})
    assert reply.status_code == 404


def test_an_officer_is_told_to_use_their_phone(client, world):
    sign_in(client, "ani")
    for path in ("/web/", "/web/queue", f"/web/visits/{world['plain']}", "/web/map/visits.json", "/web/users"):
        reply = client.get(path)
        assert reply.status_code == 403
        assert "phone" in reply.get_data(as_text=True).lower() or "ponsel" in reply.get_data(as_text=True).lower()


def test_admin_pages_are_refused_to_supervisors(client, world):
    sign_in(client, "sari")
    for path in ("/web/forms", "/web/registers", "/web/audit"):
        assert client.get(path).status_code == 403
    assert post(client, "/web/users", {"username": "x1", "role": "admin", "password": "a" * 20}).status_code == 403
    assert post(client, "/web/users/ani", {"action": "disable"}).status_code == 403
    assert post(client, "/web/users/ani/devices/hp-ani-01/revoke", {}).status_code == 403


def test_a_supervisor_sees_their_officers_and_may_set_up_only_their_phones(client, world):
    sign_in(client, "sari")
    page = client.get("/web/users")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="user-ani"' in body
    assert 'id="user-citra"' in body
    assert 'id="user-budi"' not in body  # another kecamatan
    assert 'id="user-admin"' not in body
    assert 'id="new-user"' not in body
    assert "/revoke" not in body
    assert post(client, "/web/users/ani/collect", {"device": "hp-ani-09"}, page).status_code == 201
    assert post(client, "/web/users/budi/collect", {"device": "hp-budi-09"}, page).status_code in (403, 404)


# -- every page -----------------------------------------------------------------------------------
SUPERVISOR_PAGES = ["/web/", "/web/queue", "/web/queue?kind=visit&review=any", "/web/conflicts", "/web/households",
                    "/web/households?q=siti", "/web/map", "/web/map/villages.json", "/web/map/visits.json",
                    "/web/exports"]
ADMIN_PAGES = ["/web/forms", "/web/forms/verval_web", "/web/users", "/web/registers", "/web/audit",
               "/web/audit?action=login_failed"]


@pytest.mark.parametrize("path", SUPERVISOR_PAGES + ADMIN_PAGES)
def test_every_page_answers_an_admin(client, world, path):
    sign_in(client, "admin", ADMIN_PASSWORD)
    assert client.get(path).status_code == 200


def test_the_dashboard_counts_per_village(client, world):
    sign_in(client, "sari")
    body = client.get("/web/").get_data(as_text=True)
    row = re.search(r"Cileunyi Kulon.*?</tr>", body, re.S).group(0)
    cells = re.findall(r'<td class="num">(?:<a [^>]*>)?(\d+)', row)
    assert cells[0] == "3"  # visits
    assert cells[4] == "1"  # flagged (outside its village)
    assert cells[5] == "3"  # pending review


def test_the_queue_filters_and_answers_htmx_with_rows_only(client, world):
    sign_in(client, "sari")
    full = client.get("/web/queue?kind=visit").get_data(as_text=True)
    assert world["outside"] in full
    assert "<html" in full
    assert world["plain"] not in full  # not flagged
    rows = client.get("/web/queue?kind=visit&flag=outside_village", headers={"HX-Request": "true"})
    assert "<html" not in rows.get_data(as_text=True)
    assert world["outside"] in rows.get_data(as_text=True)
    assert "Rahmat" not in client.get("/web/queue?kind=visit").get_data(as_text=True)


def test_the_visit_page_shows_answers_under_their_labels_in_the_chosen_language(client, world):
    sign_in(client, "sari")
    body = client.get(f"/web/visits/{world['plain']}").get_data(as_text=True)
    assert "Jenis atap" in body
    assert "Genteng" in body
    assert 'lang="id"' in body
    post(client, "/web/language", {"language": "en", "back": f"/web/visits/{world['plain']}"})
    body = client.get(f"/web/visits/{world['plain']}").get_data(as_text=True)
    assert "Roof" in body
    assert "Clay tiles" in body
    assert 'lang="en"' in body
    assert "10:00 WIB" in body  # 03:00Z in Kabupaten Bandung


def test_reviewing_a_visit_from_its_page(app, client, world):
    sign_in(client, "sari")
    page = client.get(f"/web/visits/{world['outside']}")
    reply = post(client, f"/web/visits/{world['outside']}/review",
                 {"state": "needs_revision", "comment": "Titik GPS di luar desa"}, page)
    assert reply.status_code == 302
    with app.app_context():
        stored = get_store().get("visits", world["outside"])
    assert stored["review_state"] == "needs_revision"
    assert stored["review"]["comment"] == "Titik GPS di luar desa"
    assert "Titik GPS di luar desa" in client.get(reply.headers["Location"]).get_data(as_text=True)
    assert post(client, f"/web/visits/{world['outside']}/review", {"state": "bogus"}).status_code == 422


def _open_conflict(app):
    with app.app_context():
        return get_store().find("conflicts", {"open": True}, order_by="id")


def test_resolving_a_conflict_by_choosing_a_value(app, client, world):
    sign_in(client, "sari")
    page = client.get("/web/conflicts")
    assert "Rahmat Hidayat" in page.get_data(as_text=True)
    assert "Rachmat Hidajat" in page.get_data(as_text=True)
    conflict = _open_conflict(app)[0]
    chosen = next(h for h in conflict["heads"] if h["value"] == "Rachmat Hidajat")
    reply = post(client, f"/web/conflicts/{conflict['id']}/resolve", {"choice": chosen["stamp"]}, page)
    assert reply.status_code == 302
    assert _open_conflict(app) == []
    with app.app_context():
        doc = get_store().get("households", world["disputed_household"])
    from server.households import household_view
    assert household_view(doc)["fields"]["head_name"]["value"] == "Rachmat Hidajat"


def test_resolving_a_conflict_with_a_typed_value(app, client, world):
    sign_in(client, "sari")
    conflict = _open_conflict(app)[0]
    reply = post(client, f"/web/conflicts/{conflict['id']}/resolve", {"choice": "typed", "typed": "Rahmat H."})
    assert reply.status_code == 302
    with app.app_context():
        from server.households import household_view
        doc = get_store().get("households", world["disputed_household"])
    assert household_view(doc)["fields"]["head_name"]["value"] == "Rahmat H."
    assert post(client, f"/web/conflicts/{conflict['id']}/resolve", {"choice": "nope"}).status_code == 422


def test_households_search_by_name_and_history(client, world):
    sign_in(client, "sari")
    found = client.get("/web/households?q=aminah").get_data(as_text=True)
    assert "Siti Aminah" in found
    assert "Dedi" not in found
    history = client.get(f"/web/households/{world['plain_household']}").get_data(as_text=True)
    assert "Siti Aminah" in history
    assert "ani" in history


def test_map_data_is_paged_and_points_carry_state_and_flags(app, client, world, monkeypatch):
    from server.web import views

    monkeypatch.setattr(views, "MAP_PAGE", 2)
    sign_in(client, "sari")
    first = client.get("/web/map/visits.json").get_json()
    assert len(first["points"]) == 2
    assert first["next"]
    second = client.get(f"/web/map/visits.json?after={first['next']}").get_json()
    points = first["points"] + second["points"]
    assert second["next"] is None
    assert len(points) == 3
    outside = next(p for p in points if p[0] == world["outside"])
    assert outside[3] == "pending"
    assert outside[4] == ["outside_village"]
    villages = client.get("/web/map/villages.json").get_json()
    assert {f["properties"]["code"] for f in villages["features"]} == {"32.04.05.2001", "32.04.05.2002",
                                                                        "32.04.05.2003"}


def test_a_tile_url_is_allowed_only_when_configured(app_factory):
    app = app_factory(WEB_TILE_URL="https://tiles.example.org/{z}/{x}/{y}.png")
    seed(app)
    client = app.test_client()
    sign_in(client, "sari")
    reply = client.get("/web/map")
    assert "img-src 'self' data: https://tiles.example.org" in reply.headers["Content-Security-Policy"]
    assert 'data-tiles="https://tiles.example.org/{z}/{x}/{y}.png"' in reply.get_data(as_text=True)


def test_forms_upload_shows_every_error_by_sheet_and_row_then_publishes_and_assigns(app, client, world):
    sign_in(client, "admin", ADMIN_PASSWORD)
    page = client.get("/web/forms")
    broken = client.post("/web/forms/upload", data={"csrf_token": token(page),
                                                    "file": (io.BytesIO(xlsform_bytes(broken=True)), "b.xlsx")})
    assert broken.status_code == 422
    body = broken.get_data(as_text=True)
    assert re.search(r"<code>survey</code></td><td>3</td><td>[^<]*tidak_ada", body)
    assert re.search(r"<code>survey</code></td><td>4</td><td>nama [^<]*kepala[^<]* ganda", body)  # in Indonesian
    good = client.post("/web/forms/upload", data={"csrf_token": token(page),
                                                  "file": (io.BytesIO(xlsform_bytes()), "g.xlsx")})
    assert good.status_code == 302
    assert "/web/forms/pendataan_web" in good.headers["Location"]
    form_page = client.get(good.headers["Location"])
    assert post(client, "/web/forms/pendataan_web/versions/2/publish", {}, form_page).status_code == 302
    reply = client.post("/web/forms/pendataan_web/assignment", data={
        "csrf_token": token(form_page), "villages": ["32.04.05.2001"], "more_villages": "32.04.05.2002"})
    assert reply.status_code == 302
    with app.app_context():
        stored = get_store().get("forms", "pendataan_web")
    assert stored["latest_version"] == "2"
    assert sorted(stored["assignment"]["villages"]) == ["32.04.05.2001", "32.04.05.2002"]
    assert post(client, "/web/forms/pendataan_web/archive", {}, form_page).status_code == 302
    with app.app_context():
        assert get_store().get("forms", "pendataan_web")["archived"] is True


def test_creating_an_officer_and_resetting_a_password(app, client, world):
    sign_in(client, "admin", ADMIN_PASSWORD)
    page = client.get("/web/users")
    bad = post(client, "/web/users", {"username": "dewi", "role": "officer", "villages": "32.04.05.2001",
                                      "password": "short"}, page)
    assert bad.status_code == 422
    assert "password" in bad.get_data(as_text=True)
    made = post(client, "/web/users", {"username": "dewi", "role": "officer", "villages": "32.04.05.2001",
                                       "password": "kata-sandi-dewi-panjang"}, page)
    assert made.status_code == 302
    with app.app_context():
        assert get_store().get("users", "dewi")["villages"] == ["32.04.05.2001"]
    reset = post(client, "/web/users/dewi", {"action": "password", "password": "kata-sandi-baru-dewi"}, page)
    assert reset.status_code == 302
    reply = app.test_client().post("/api/v1/auth/login", json={"username": "dewi",
                                                                "password": "kata-sandi-baru-dewi"})
    assert reply.status_code == 200


def test_revoking_a_device(app, client, world):
    sign_in(client, "admin", ADMIN_PASSWORD)
    page = client.get("/web/users")
    assert "hp-ani-01" in page.get_data(as_text=True)
    assert post(client, "/web/users/ani/devices/hp-ani-01/revoke", {}, page).status_code == 302
    with app.app_context():
        from server.devices import get_device
        assert get_device(get_store(), "ani", "hp-ani-01")["revoked"]


def test_a_register_upload_reports_per_row(client, world):
    from pathlib import Path

    sign_in(client, "admin", ADMIN_PASSWORD)
    page = client.get("/web/registers")
    register = (Path(__file__).parents[1] / "fixtures" / "registers" / "desa_contoh_bad_rows.csv").read_bytes()
    reply = client.post("/web/registers", data={"csrf_token": token(page),
                                                "file": (io.BytesIO(register), "desa.csv")})
    assert reply.status_code == 200
    body = reply.get_data(as_text=True)
    assert 'id="register-report"' in body
    assert re.search(r"<td>\d+</td>", body)


def test_an_export_downloads_and_is_recorded(app, client, world):
    sign_in(client, "sari")
    page = client.get("/web/exports")
    reply = post(client, "/web/exports/download", {"format": "geojson", "form_id": "verval_web", "labels": "en"}, page)
    assert reply.status_code == 200
    assert reply.mimetype == "application/geo+json"
    assert len(reply.get_json()["features"]) == 3
    with app.app_context():
        records = get_store().find("exports", {}, order_by="-at")
    assert records[0]["actor"] == "sari"
    assert records[0]["rows"] == 3
    zipped = post(client, "/web/exports/download", {"format": "csv_zip"}, page)
    assert zipped.status_code == 200
    assert zipped.data[:2] == b"PK"
    assert post(client, "/web/exports/download", {"format": "csv_zip", "village": "32.04.06.2003"},
                page).status_code == 404
    admin = client.application.test_client()
    sign_in(admin, "admin", ADMIN_PASSWORD)
    log = admin.get("/web/audit").get_data(as_text=True)
    exported = re.search(r'<table id="exports".*?</table>', log, re.S).group(0)
    assert "sari" in exported
    assert "geojson" in exported


def test_the_audit_log_lists_sign_ins(client, world):
    sign_in(client, "admin", ADMIN_PASSWORD)
    body = client.get("/web/audit?action=login_succeeded").get_data(as_text=True)
    assert "login_succeeded" in body
    assert "admin" in body


def test_times_show_in_the_villages_time_zone():
    assert localtime("2026-11-22T03:00:00Z", "32.04.05.2001") == "2026-11-22 10:00 WIB"
    assert localtime("2026-11-22T03:00:00Z", "73.71.01.1001") == "2026-11-22 11:00 WITA"
    assert localtime("2026-11-22T03:00:00Z", "91.01.01.2001") == "2026-11-22 12:00 WIT"
    assert localtime(None) == "—"


HOSTILE_QUERIES = ["village=../../etc", "village=32.04.05.2001%00", "after=%ff%fe", "after=" + "x" * 5000,
                   "review=%3Cscript%3E", "kind=$where", "flag[$ne]=1", "q=" + "%E2%80%AE" * 300,
                   "stale_days=-1", "stale_days=abc", "before=not-a-time", "action=" + "a" * 500]


@pytest.mark.parametrize("path", ["/web/", "/web/queue", "/web/conflicts", "/web/households", "/web/map",
                                  "/web/map/visits.json", "/web/audit", "/web/exports"])
def test_hostile_query_strings_never_break_a_page(client, world, path):
    sign_in(client, "admin", ADMIN_PASSWORD)
    for query in HOSTILE_QUERIES:
        reply = client.get(f"{path}?{query}")
        assert reply.status_code in (200, 400, 404, 422), (path, query, reply.status_code)
        assert "<script>" not in reply.get_data(as_text=True).replace("<script src=", "")


def test_unknown_or_absurd_ids_answer_404_pages(client, world):
    sign_in(client, "admin", ADMIN_PASSWORD)
    for path in ("/web/visits/nope", "/web/visits/" + "a" * 3000, "/web/households/%00", "/web/forms/nope",
                 "/web/forms/verval_web/versions/9/edit", "/web/forms/nope/versions/1/xlsform"):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert reply.mimetype == "text/html"


def test_sign_in_redirects_only_within_the_pages(client, world):
    form = client.get("/web/login")
    for target in ("https://evil.example/", "//evil.example/web/", "/api/v1/users"):
        reply = client.post("/web/login", data={"username": "sari", "password": PASSWORD, "next": target,
                                                "csrf_token": token(form)})
        assert reply.headers["Location"].endswith("/web/"), target
        post(client, "/web/logout", {})
        form = client.get("/web/login")


def test_households_are_found_by_nik_and_no_kk_after_a_register_upload(client, world):
    from pathlib import Path

    sign_in(client, "admin", ADMIN_PASSWORD)
    page = client.get("/web/registers")
    register = (Path(__file__).parents[1] / "fixtures" / "registers" / "desa_contoh.csv").read_bytes()
    reply = client.post("/web/registers", data={"csrf_token": token(page),
                                                "file": (io.BytesIO(register), "desa_contoh.csv")})
    assert reply.status_code == 200
    by_nik = client.get("/web/households?q=3204054107900001").get_data(as_text=True)
    assert "Siti Aminah" in by_nik
    assert "Budi Santoso" not in by_nik
    by_kk = client.get("/web/households?q=3204050101200002").get_data(as_text=True)
    assert "Budi Santoso" in by_kk


def upload(client, page, *files, name="f.xlsx", version="3"):
    return client.post("/web/forms/upload", content_type="multipart/form-data", data={
        "csrf_token": token(page), "file": (io.BytesIO(xlsform_bytes(version=version, from_file=True)), name),
        "files": [(io.BytesIO(content), filename) for filename, content in files]})


def test_a_form_uploads_with_its_choice_csv_in_one_form_and_publishes(app, client, world):
    sign_in(client, "admin", ADMIN_PASSWORD)
    reply = upload(client, client.get("/web/forms"), ("desa.csv", VILLAGES_CSV))
    assert reply.status_code == 302, reply.get_data(as_text=True)
    form_page = client.get(reply.headers["Location"])
    body = form_page.get_data(as_text=True)
    assert 'id="missing-files-3"' not in body
    assert re.search(r'id="files-3"><li><code>desa.csv</code>[^<]*', body)
    assert post(client, "/web/forms/pendataan_web/versions/3/publish", {}, form_page).status_code == 302
    with app.app_context():
        assert get_store().get("forms", "pendataan_web")["latest_version"] == "3"


def test_a_draft_uploaded_without_its_file_says_which_is_missing_and_does_not_publish(client, world):
    sign_in(client, "admin", ADMIN_PASSWORD)
    reply = upload(client, client.get("/web/forms"))
    assert reply.status_code == 302
    form_page = client.get(reply.headers["Location"])
    missing = re.search(r'id="missing-files-3">(.*?)</p>', form_page.get_data(as_text=True), re.S)
    assert "desa.csv" in missing.group(1)
    refused = post(client, "/web/forms/pendataan_web/versions/3/publish", {}, form_page)
    assert refused.status_code == 422
    assert "desa.csv" in refused.get_data(as_text=True)


def test_a_bad_file_with_the_form_is_shown_by_its_name_and_nothing_is_saved(app, client, world):
    sign_in(client, "admin", ADMIN_PASSWORD)
    reply = upload(client, client.get("/web/forms"), ("desa.csv", b"kode;nama\n1;x\n"), ("lain.csv", b"name\n"))
    assert reply.status_code == 422
    body = reply.get_data(as_text=True)
    assert re.search(r"<code>desa.csv</code></td><td></td><td>", body)
    assert re.search(r"<code>lain.csv</code></td><td></td><td>[^<]*desa.csv", body)
    with app.app_context():
        assert get_store().get("forms", "pendataan_web") is None
