"""The forms commands: import-form (JSON and XLSForm, draft or published, assigned) and load-library."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_forms_http import definition, doctype_xlsx, inflating_xlsx, long_xlsx, xlsform

from forms import definition_hash
from server.cli import cli
from server.storage import open_store
from server.store import COLLECTIONS


@pytest.fixture
def store(env):
    opened = open_store(env["KUNJUNG_DATABASE_URL"], COLLECTIONS)
    opened.ensure_schema()
    yield opened
    opened.close()


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def write_json(tmp_path, data, name="survei.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_import_json_makes_a_draft_and_prints_id_version_and_hash(env, store, tmp_path):
    data = definition()
    result = run("import-form", write_json(tmp_path, data))
    assert result.exit_code == 0, result.output
    assert "survei_rumah" in result.stdout
    assert "version 1" in result.stdout
    assert definition_hash(data) in result.stdout
    assert "(draft)" in result.stdout
    version = store.get("form_versions", "survei_rumah@1")
    assert version["state"] == "draft"
    assert version["definition"] == data
    assert store.get("forms", "survei_rumah")["published"] is False

    # importing again replaces the draft; --publish then publishes it
    data["fields"][0]["label"]["id"] = "Nama lengkap"
    again = run("import-form", write_json(tmp_path, data), "--publish")
    assert again.exit_code == 0, again.output
    assert "draft replaced, published" in again.stdout
    assert "(published)" in again.stdout
    assert store.get("form_versions", "survei_rumah@1")["hash"] == definition_hash(data)
    assert store.get("forms", "survei_rumah")["latest_version"] == "1"
    # the same file once more changes nothing; a different one for a published version is refused
    same = run("import-form", write_json(tmp_path, data))
    assert same.exit_code == 0, same.output
    assert "already published" in same.stdout
    data["fields"][0]["label"]["id"] = "Nama lain"
    refused = run("import-form", write_json(tmp_path, data))
    assert refused.exit_code == 1
    assert "published" in refused.stderr


def test_import_xlsform_published_and_assigned(env, store, tmp_path):
    path = tmp_path / "pendataan.xlsx"
    path.write_bytes(xlsform())
    result = run("import-form", path, "--publish", "--village", "32.04.05.2001", "--village", "32.04.06")
    assert result.exit_code == 0, result.output
    assert "pendataan_xls" in result.stdout
    assert "(published)" in result.stdout
    assert "assigned to 32.04.05.2001, 32.04.06" in result.stdout
    form = store.get("forms", "pendataan_xls")
    assert form["published"] is True
    assert form["assignment"] == {"all": False, "villages": ["32.04.05.2001", "32.04.06"]}
    assert store.count("audit", {"action": "form_published"}) == 1
    assert store.get("audit", store.find("audit", {"action": "form_assigned"})[0]["id"])["actor"] == "cli"


def test_assign_all(env, store, tmp_path):
    result = run("import-form", write_json(tmp_path, definition()), "--publish", "--assign-all")
    assert result.exit_code == 0, result.output
    assert "assigned to all villages" in result.stdout
    assert store.get("forms", "survei_rumah")["assignment"] == {"all": True, "villages": []}
    both = run("import-form", write_json(tmp_path, definition()), "--assign-all", "--village", "32.04.05")
    assert both.exit_code != 0


def test_publishing_without_an_assignment_warns_that_officers_will_not_see_the_form(env, store, tmp_path):
    result = run("import-form", write_json(tmp_path, definition()), "--publish")
    assert result.exit_code == 0, result.output
    assert "assigned to no village" in result.stderr
    assert "--assign-all or --village" in result.stderr
    assigned = run("import-form", write_json(tmp_path, definition(version="2")), "--publish", "--village", "32.04.05")
    assert assigned.exit_code == 0, assigned.output
    assert "assigned to no village" not in assigned.stderr
    draft = run("import-form", write_json(tmp_path, definition(version="3")))
    assert "assigned to no village" not in draft.stderr


def test_invalid_json_definition_prints_every_path_and_exits_1(env, store, tmp_path):
    data = definition()
    del data["fields"][2]["list"]
    data["fields"][0]["type"] = "photo"
    result = run("import-form", write_json(tmp_path, data))
    assert result.exit_code == 1
    assert "fields[2].list:" in result.stderr
    assert "fields[0].type:" in result.stderr
    assert store.count("form_versions") == 0


def test_xlsform_errors_name_sheet_and_row(env, store, tmp_path):
    path = tmp_path / "pendataan.xlsx"
    path.write_bytes(xlsform(duplicate=True))
    result = run("import-form", path)
    assert result.exit_code == 1
    assert "survey!4:" in result.stderr
    assert store.count("form_versions") == 0


def test_incompatible_new_version_and_bad_villages_and_bad_files_exit_1(env, store, tmp_path):
    assert run("import-form", write_json(tmp_path, definition()), "--publish").exit_code == 0
    changed = run("import-form", write_json(tmp_path, definition(version="2", age_type="text")))
    assert changed.exit_code == 1
    assert "fields[1].type:" in changed.stderr
    villages = run("import-form", write_json(tmp_path, definition(version="3")), "--village", "32.04")
    assert villages.exit_code == 1
    assert "32.04" in villages.stderr
    assert store.get("form_versions", "survei_rumah@3") is None  # nothing written before the check
    text = tmp_path / "notes.txt"
    text.write_text("hello", encoding="utf-8")
    assert run("import-form", text).exit_code == 1
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    result = run("import-form", broken)
    assert result.exit_code == 1
    assert "file:" in result.stderr


@pytest.mark.parametrize(("build", "words"), [(inflating_xlsx, "inflates"), (lambda: long_xlsx(25_000), "20,000 rows"),
                                             (doctype_xlsx, "DOCTYPE")])
def test_a_hostile_xlsform_is_refused_in_a_few_lines(env, store, tmp_path, build, words):
    path = tmp_path / "hostile.xlsx"
    path.write_bytes(build())
    result = run("import-form", path, "--publish")
    assert result.exit_code == 1
    assert words in result.stderr
    assert len(result.stderr.splitlines()) <= 3
    assert store.count("form_versions") == 0


def test_load_library_publishes_then_skips(env, store):
    first = run("load-library")
    assert first.exit_code == 0, first.output
    assert first.stdout.count("published ") == 3
    assert "verval_keluarga" in first.stdout
    assert store.count("forms") == 3
    assert all(f["assignment"] == {"all": True, "villages": []} for f in store.find("forms"))
    second = run("load-library")
    assert second.exit_code == 0, second.output
    assert second.stdout.count("skipped ") == 3
    assert "already published" in second.stdout
    assert store.count("form_versions") == 3


def test_first_start_with_the_setting_on_seeds_the_library(env, monkeypatch, store):
    monkeypatch.setenv("KUNJUNG_LOAD_LIBRARY_FORMS", "true")
    assert run("init").exit_code == 0
    assert store.count("forms") == 3
    result = run("load-library")
    assert result.stdout.count("skipped ") == 3
