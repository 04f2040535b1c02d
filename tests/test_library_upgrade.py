"""A store that published an earlier shipped library gets the newer versions of its forms at start-up."""

from __future__ import annotations

from http_helpers import login, make_app, make_user

from forms.library import library_form, library_forms
from server import forms_registry
from server.store import get_store, raw_store

WITH_PHOTOS = ("verval_keluarga", "usulan_dtsen")


def library_before_photos() -> list[dict]:
    """The library as the release before: the forms that gained photo questions at 2026.1, without them."""
    forms = library_forms()
    for data in forms:
        if data["settings"]["form_id"] in WITH_PHOTOS:
            data["settings"]["version"] = "2026.1"
            data["fields"] = [field for field in data["fields"] if field["type"] != "image"]
    return forms


def test_the_forms_that_gained_photos_are_a_new_version():
    for form_id in WITH_PHOTOS:
        shipped = library_form(form_id)
        assert shipped["settings"]["version"] == "2026.2"
        assert any(field["type"] == "image" for field in shipped["fields"])
    assert library_form("puskesos_pengaduan")["settings"]["version"] == "2026.1"


def test_a_store_that_published_the_earlier_library_gets_the_new_versions_at_start_up(tmp_path):
    old = make_app(tmp_path)
    with old.app_context():
        outcomes = forms_registry.load_library(get_store(), definitions=library_before_photos())
    assert all(outcome.published for outcome in outcomes)
    make_user(old, "admin", "admin")
    make_user(old, "ani", "officer", ["32.04.05.2001"])
    raw_store(old).close()

    upgraded = make_app(tmp_path, LOAD_LIBRARY_FORMS=True)
    client = upgraded.test_client()
    admin = login(client, "admin")
    for form_id in WITH_PHOTOS:
        form = client.get(f"/api/v1/forms/{form_id}", headers=admin).get_json()
        versions = {entry["version"]: entry["state"] for entry in form["versions"]}
        assert versions == {"2026.1": "published", "2026.2": "published"}  # the old one kept
        assert form["version"] == "2026.2"
        assert form["assignment"]["all"] is True
        photo_fields = [f["name"] for f in client.get(f"/api/v1/forms/{form_id}/versions/2026.2",
                                                      headers=admin).get_json()["fields"] if f["type"] == "image"]
        assert "house_photo" in photo_fields
    unchanged = client.get("/api/v1/forms/puskesos_pengaduan", headers=admin).get_json()
    assert [entry["version"] for entry in unchanged["versions"]] == ["2026.1"]
    # a device sees the new version; visits made with the old one still find it
    officer = login(client, "ani")
    listed = {entry["form_id"]: entry["version"] for entry in client.get("/api/v1/forms", headers=officer).get_json()}
    assert listed["verval_keluarga"] == "2026.2"
    with upgraded.app_context():
        assert forms_registry.published_definition(get_store(), "verval_keluarga", "2026.1") is not None
    raw_store(upgraded).close()

    again = make_app(tmp_path, LOAD_LIBRARY_FORMS=True)  # nothing more to publish
    with again.app_context():
        assert forms_registry.library_upgrades(get_store()) == []
    raw_store(again).close()


def test_a_form_whose_latest_version_an_admin_published_is_left_alone(tmp_path):
    old = make_app(tmp_path)
    make_user(old, "admin", "admin")
    with old.app_context():
        forms_registry.load_library(get_store(), definitions=library_before_photos())
    client = old.test_client()
    admin = login(client, "admin")
    own = library_before_photos()[0]
    own["settings"]["version"] = "2026.1-desa"
    assert client.post("/api/v1/forms", json=own, headers=admin).status_code == 201
    assert client.post("/api/v1/forms/verval_keluarga/versions/2026.1-desa/publish", headers=admin).status_code == 200
    raw_store(old).close()

    upgraded = make_app(tmp_path, LOAD_LIBRARY_FORMS=True)
    client = upgraded.test_client()
    form = client.get("/api/v1/forms/verval_keluarga", headers=login(client, "admin")).get_json()
    assert form["version"] == "2026.1-desa"
    assert "2026.2" not in [entry["version"] for entry in form["versions"]]
    usulan = client.get("/api/v1/forms/usulan_dtsen", headers=login(client, "admin")).get_json()
    assert usulan["version"] == "2026.2"
    raw_store(upgraded).close()
