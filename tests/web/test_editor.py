"""The in-page form editor: a draft from a published version, errors at their question, the difference to the
published version, a preview, saving, and the definition as an XLSForm that reads back the same."""

from __future__ import annotations

import html
import re

import pytest
from web_seed import ADMIN_PASSWORD, FORM, seed

from server import forms_registry as registry
from server.store import get_store
from server.web.editor import definition_rows, difference, next_version, row_errors, xlsx_bytes

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FIELD = re.compile(r'name="((?:survey|choices|settings)-[^"]+)" value="([^"]*)"')


@pytest.fixture
def admin(app, client):
    seed(app)
    form = client.get("/web/login")
    client.post("/web/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                    "csrf_token": CSRF.search(form.get_data(as_text=True)).group(1)})
    return client


def editor_form(page) -> dict[str, str]:
    body = page.get_data(as_text=True)
    values = {name: html.unescape(value) for name, value in FIELD.findall(body)}
    values.update({"csrf_token": CSRF.search(body).group(1), "base": "1", "settings-default_language": "id"})
    values.update(re.findall(r'name="((?:survey|choices)-count)" value="(\d+)"', body))
    return values


def test_a_draft_starts_from_the_published_version_with_the_next_version_name(admin):
    page = admin.get("/web/forms/verval_web/versions/1/edit")
    assert page.status_code == 200
    values = editor_form(page)
    assert values["settings-version"] == "2"
    assert values["survey-1-type"] == "select_one roof"
    assert values["survey-1-label_en"] == "Roof"
    checked = admin.post("/web/forms/verval_web/editor", data={**values, "action": "check"})
    body = checked.get_data(as_text=True)
    assert checked.status_code == 200
    assert 'id="editor-checked"' in body
    assert re.search(r'id="editor-changes">\s*<li>', body)
    assert "Genteng" in body  # the preview lists the choices


def test_an_error_shows_at_its_question_and_nothing_is_saved(app, admin):
    values = editor_form(admin.get("/web/forms/verval_web/versions/1/edit"))
    values["survey-2-constraint"] = ". > 0 and"
    reply = admin.post("/web/forms/verval_web/editor", data={**values, "action": "save"})
    assert reply.status_code == 422
    body = reply.get_data(as_text=True)
    question = re.search(r'<fieldset class="question has-error" id="q-(\d+)">.*?</fieldset>', body, re.S)
    assert question.group(1) == "2"
    assert "cannot parse expression" in question.group(0)
    with app.app_context():
        assert get_store().get("form_versions", "verval_web@2") is None


def test_adding_moving_and_removing_questions(admin):
    values = editor_form(admin.get("/web/forms/verval_web/versions/1/edit"))
    added = editor_form(admin.post("/web/forms/verval_web/editor", data={**values, "action": "add-survey:0"}))
    assert added["survey-count"] == "5"
    assert added["survey-1-type"] == "text"
    assert added["survey-1-name"] == ""
    moved = editor_form(admin.post("/web/forms/verval_web/editor", data={**values, "action": "down-survey:0"}))
    assert [moved["survey-0-name"], moved["survey-1-name"]] == ["roof", "head_name"]
    removed = editor_form(admin.post("/web/forms/verval_web/editor", data={**values, "action": "remove-survey:3"}))
    assert removed["survey-count"] == "3"
    assert "survey-3-name" not in removed


def test_saving_a_changed_label_makes_a_draft_and_the_difference_names_it(app, admin):
    values = editor_form(admin.get("/web/forms/verval_web/versions/1/edit"))
    values["survey-1-label_id"] = "Atap rumah"
    checked = admin.post("/web/forms/verval_web/editor", data={**values, "action": "check"}).get_data(as_text=True)
    changes = re.search(r'id="editor-changes">(.*?)</ul>\s*<h3>', checked, re.S).group(1)
    assert "roof" in changes
    assert "Atap rumah" in changes
    saved = admin.post("/web/forms/verval_web/editor", data={**values, "action": "save"})
    assert saved.status_code == 302
    with app.app_context():
        draft = get_store().get("form_versions", "verval_web@2")
    assert draft["state"] == "draft"
    assert draft["definition"]["fields"][1]["label"]["id"] == "Atap rumah"
    # saving again replaces the draft rather than refusing a second version 2
    values["survey-1-label_en"] = "House roof"
    assert admin.post("/web/forms/verval_web/editor", data={**values, "action": "save"}).status_code == 302


def test_the_xlsform_download_reads_back_as_the_same_definition(app, admin):
    reply = admin.get("/web/forms/verval_web/versions/1/xlsform")
    assert reply.status_code == 200
    assert reply.headers["Content-Disposition"].endswith('verval_web-1.xlsx"')
    again = registry.validate(registry.from_upload(reply.data, "verval_web-1.xlsx")).data
    assert again["fields"] == FORM["fields"]
    assert again["choices"] == FORM["choices"]
    assert again["settings"]["title"] == FORM["settings"]["title"]


def test_groups_repeats_and_a_leading_equals_sign_survive_the_round_trip():
    definition = {
        "settings": {"form_id": "g", "version": "1", "title": {"id": "G"}, "default_language": "id"},
        "fields": [{"type": "group", "name": "rumah", "label": {"id": "Rumah"}, "fields": [
            {"type": "text", "name": "catatan", "label": {"id": "= bukan rumus"}}]},
            {"type": "repeat", "name": "anggota", "label": {"id": "Anggota"}, "fields": [
                {"type": "integer", "name": "umur", "label": {"id": "Umur"}, "required": True,
                 "constraint": ". >= 0"}]}],
        "choices": {}}
    again = registry.validate(registry.from_upload(xlsx_bytes(definition_rows(definition)), "g.xlsx")).data
    assert again["fields"] == definition["fields"]


def test_difference_and_versions_and_row_errors():
    before = {"settings": {"title": {"id": "A"}}, "fields": [{"type": "text", "name": "a"},
                                                              {"type": "text", "name": "b"}], "choices": {}}
    after = {"settings": {"title": {"id": "A"}}, "fields": [{"type": "text", "name": "a", "required": True},
                                                             {"type": "integer", "name": "c"}],
             "choices": {"yatidak": [{"name": "1", "label": {"id": "Ya"}}]}}
    changes = {(c["what"], c["name"], c["change"]) for c in difference(before, after)}
    assert changes == {("question", "a", "changed"), ("question", "c", "added"), ("question", "b", "removed"),
                       ("choices", "yatidak", "added")}
    assert difference(None, after) == []
    assert next_version("2026.1") == "2026.2"
    assert next_version("1") == "2"
    assert next_version("beta") == "beta.1"
    assert row_errors({"survey!4": ["x"], "choices!2": ["y"], "settings": ["z"]}) == {
        "survey": {2: ["x"]}, "choices": {0: ["y"]}, "other": ["settings: z"]}


def live_check(admin, values: dict[str, str]) -> str:
    reply = admin.post("/web/forms/verval_web/editor/check", data=values, headers={"HX-Request": "true"})
    assert reply.status_code == 200
    return reply.get_data(as_text=True)


def question_errors(body: str, index: int) -> str:
    return re.search(rf'<ul class="errors live" id="q-errors-{index}" hx-swap-oob="true">(.*?)</ul>', body,
                     re.S).group(1)


def test_the_live_check_puts_a_broken_relevance_at_its_question_and_clears_it_when_fixed(admin):
    values = editor_form(admin.get("/web/forms/verval_web/versions/1/edit"))
    values["survey-3-relevant"] = "${members} >"
    body = live_check(admin, values)
    assert "cannot parse" in question_errors(body, 3)
    assert question_errors(body, 1).strip() == ""
    assert 'data-verdict="unknown"' in body  # no verdict on a form that does not read
    values["survey-3-relevant"] = "${members} > 2"
    body = live_check(admin, values)
    assert question_errors(body, 3).strip() == ""
    assert 'data-verdict="compatible"' in body
    assert re.search(r'<code>note</code>.*?<code>relevant</code>: — → \$\{members\} &gt; 2', body, re.S)
    # nothing was saved by checking
    assert admin.get("/web/forms/verval_web/versions/2/edit").status_code == 404


def test_the_live_check_gives_the_type_guards_verdict_on_a_changed_type(admin):
    values = editor_form(admin.get("/web/forms/verval_web/versions/1/edit"))
    values["survey-2-type"] = "text"
    values["survey-2-constraint"] = ""
    body = live_check(admin, values)
    assert 'data-verdict="incompatible"' in body
    assert "was integer" in question_errors(body, 2)
    # saving is refused by the same guard
    reply = admin.post("/web/forms/verval_web/editor", data={**values, "action": "save"})
    assert reply.status_code == 422
    assert "was integer" in reply.get_data(as_text=True)


def test_the_live_check_is_for_admins_with_a_csrf_token(app, client, admin):
    values = editor_form(admin.get("/web/forms/verval_web/versions/1/edit"))
    del values["csrf_token"]
    assert admin.post("/web/forms/verval_web/editor/check", data=values).status_code == 403


def test_the_live_check_answers_a_mangled_post_with_the_page_not_a_500(admin):
    values = editor_form(admin.get("/web/forms/verval_web/versions/1/edit"))
    body = live_check(admin, {**values, "survey-count": "lots", "choices-count": "-1"})
    assert 'id="editor-live-status" class="error"' in body  # a form without questions does not read
    assert "q-errors-0" not in body
