"""Forms through HTTP: drafts, XLSForm upload, publishing, assignment, archiving, the device pull, seeding."""

from __future__ import annotations

import copy
import io
import json
import threading
import zipfile
from collections.abc import Iterator

import openpyxl
import pytest
from http_helpers import login, make_user

from forms import Definition, definition_hash
from server import forms_registry
from server.security.scope import Scope
from server.storage import open_store
from server.store import COLLECTIONS, get_store

FORMS = "/api/v1/forms"


# -- builders ----------------------------------------------------------------------------------------
def definition(form_id="survei_rumah", version="1", *, age_type="integer", extra_fields=()):
    """A small valid definition: a text, a number and a select_one."""
    return {
        "settings": {"form_id": form_id, "version": version, "title": {"id": f"Survei {form_id}", "en": form_id},
                     "default_language": "id"},
        "fields": [
            {"type": "text", "name": "nama", "label": {"id": "Nama", "en": "Name"}, "required": True},
            {"type": age_type, "name": "umur", "label": {"id": "Umur", "en": "Age"}},
            {"type": "select_one", "name": "setuju", "list": "yatidak", "label": {"id": "Setuju?", "en": "Agree?"}},
            *extra_fields,
        ],
        "choices": {"yatidak": [{"name": "1", "label": {"id": "Ya", "en": "Yes"}},
                                {"name": "2", "label": {"id": "Tidak", "en": "No"}}]},
    }


def workbook(survey, choices=None, settings=None) -> bytes:
    """An .xlsx built in memory; each sheet is a list of rows, the first being the header."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in (("survey", survey), ("choices", choices), ("settings", settings)):
        if rows is None:
            continue
        sheet = book.create_sheet(name)
        for number, row in enumerate(rows, start=1):
            for column, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(row=number, column=column, value=value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def xlsform(version="1", *, duplicate=False, label="Nama kepala keluarga") -> bytes:
    survey = [["type", "name", "label::Indonesian (id)", "label::English (en)"],
              ["text", "kepala", label, "Head of household"],
              ["select_one yatidak", "bantuan", "Menerima bantuan?", "Receives aid?"],
              ["integer", "bantuan" if duplicate else "jumlah", "Jumlah anggota", "Members"]]
    choices = [["list_name", "name", "label::Indonesian (id)", "label::English (en)"],
               ["yatidak", "1", "Ya", "Yes"], ["yatidak", "2", "Tidak", "No"]]
    settings = [["form_id", "version", "form_title"], ["pendataan_xls", version, "Pendataan"]]
    return workbook(survey, choices, settings)


_SHEET_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?>\n<worksheet xmlns="http://schemas.openxmlformats.org/'
               b'spreadsheetml/2006/main"><sheetData>')
_PACKAGE = {
    "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?>\n<Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/'
    'workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    'spreadsheetml.worksheet+xml"/></Types>',
    "_rels/.rels": '<?xml version="1.0" encoding="UTF-8"?>\n<Relationships xmlns="http://schemas.openxmlformats.org/'
    'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
    '2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml": '<?xml version="1.0" encoding="UTF-8"?>\n<workbook xmlns="http://schemas.openxmlformats.org/'
    'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="survey" sheetId="1" r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels": '<?xml version="1.0" encoding="UTF-8"?>\n<Relationships xmlns="http://schemas.'
    'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
}


def _cell(text: str) -> bytes:
    return f'<c t="inlineStr"><is><t>{text}</t></is></c>'.encode()


def raw_xlsx(rows: Iterator[bytes], **replaced: str) -> bytes:
    """An .xlsx written part by part, its survey sheet streamed from `rows` (each a <row> element):
    small on disk however many rows it holds. `replaced` swaps a part's XML (keys with '/' as '__')."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, xml in _PACKAGE.items():
            archive.writestr(name, replaced.get(name.replace("/", "__").replace(".", "_"), xml))
        with archive.open("xl/worksheets/sheet1.xml", "w") as sheet:
            sheet.write(_SHEET_HEAD)
            sheet.write(b"<row>" + _cell("type") + _cell("name") + _cell("label") + b"</row>")
            for row in rows:
                sheet.write(row)
            sheet.write(b"</sheetData></worksheet>")
    return out.getvalue()


def inflating_xlsx(rows: int = 1_000_000) -> bytes:
    """The zip bomb of the security review: a million identical rows in some 150 KB."""
    return raw_xlsx(b"<row>" + _cell("text") + b"</row>" for _ in range(rows))


def long_xlsx(rows: int) -> bytes:
    """A sheet of many distinct, well-formed questions: it compresses like a real one."""
    return raw_xlsx(b"<row>" + _cell("text") + _cell(f"q{n}") + _cell(f"Pertanyaan {n}") + b"</row>"
                    for n in range(rows))


def doctype_xlsx() -> bytes:
    workbook_xml = _PACKAGE["xl/workbook.xml"].replace(
        "<workbook ", '<!DOCTYPE workbook [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>\n<workbook ', 1)
    return raw_xlsx(iter([b"<row>" + _cell("text") + _cell("nama") + _cell("Nama") + b"</row>"]),
                    xl__workbook_xml=workbook_xml)


def upload(client, headers, content: bytes, filename="pendataan.xlsx", url=FORMS, method="post"):
    return getattr(client, method)(url, headers=headers, content_type="multipart/form-data",
                                   data={"file": (io.BytesIO(content), filename)})


def create(client, admin, data):
    response = client.post(FORMS, headers=admin, json=data)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def publish(client, admin, form_id, version="1"):
    response = client.post(f"{FORMS}/{form_id}/versions/{version}/publish", headers=admin)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assign(client, admin, form_id, **body):
    response = client.put(f"{FORMS}/{form_id}/assignment", headers=admin, json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def published_form(client, admin, form_id, version="1", **assignment):
    create(client, admin, definition(form_id, version))
    publish(client, admin, form_id, version)
    if assignment:
        assign(client, admin, form_id, **assignment)


def listed(client, headers, **params):
    response = client.get(FORMS, headers=headers, query_string=params)
    assert response.status_code == 200, response.get_json()
    return {item["form_id"]: item for item in response.get_json()}


@pytest.fixture
def admin(client, users):
    return login(client, "admin")


# -- drafts and publishing ---------------------------------------------------------------------------
def test_admin_creates_edits_and_publishes_a_draft(app, client, admin):
    data = definition()
    created = create(client, admin, data)
    assert created["form_id"] == "survei_rumah"
    assert created["version"] == "1"
    assert created["state"] == "draft"
    assert created["hash"] == definition_hash(data)
    assert created["url"] == f"{FORMS}/survei_rumah/versions/1"

    edited = copy.deepcopy(data)
    edited["fields"][0]["label"]["id"] = "Nama lengkap"
    replaced = client.put(created["url"], headers=admin, json=edited)
    assert replaced.status_code == 200, replaced.get_json()
    assert replaced.get_json()["state"] == "draft"
    assert replaced.get_json()["hash"] == definition_hash(edited) != created["hash"]
    assert client.get(created["url"], headers=admin).get_json() == edited

    published = publish(client, admin, "survei_rumah")
    assert published["state"] == "published"
    assert published["hash"] == definition_hash(edited)
    assert published["published_by"] == "admin"

    again = client.put(created["url"], headers=admin, json=data)
    assert again.status_code == 409
    assert again.get_json()["code"] == "published_immutable"
    reposted = client.post(FORMS, headers=admin, json=edited)
    assert reposted.status_code == 409
    assert reposted.get_json()["code"] == "published_immutable"
    # publishing twice is a harmless retry
    assert publish(client, admin, "survei_rumah")["published_at"] == published["published_at"]
    assert client.get(created["url"], headers=admin).get_json() == edited

    audit = client.get("/api/v1/audit", headers=admin, query_string={"action": "form_published"}).get_json()
    assert [(a["target"], a["actor"]) for a in audit] == [("survei_rumah@1", "admin")]


def test_publishing_a_form_assigned_to_nobody_says_officers_will_not_see_it(client, admin):
    create(client, admin, definition())
    published = publish(client, admin, "survei_rumah")
    assert published["assigned"] is False
    assert any("officers will not see it" in m for m in published["warnings"]["assignment"])
    assign(client, admin, "survei_rumah", villages=["32.04.05"])
    retried = publish(client, admin, "survei_rumah")
    assert retried["assigned"] is True
    assert "warnings" not in retried
    create(client, admin, definition(version="2"))
    second = publish(client, admin, "survei_rumah", "2")
    assert (second["assigned"], second.get("warnings")) == (True, None)


def test_second_post_of_a_draft_version_points_to_put(client, admin):
    create(client, admin, definition())
    response = client.post(FORMS, headers=admin, json=definition())
    assert response.status_code == 409
    assert response.get_json()["code"] == "version_exists"


def test_put_must_keep_form_id_and_version_and_needs_a_draft(client, admin):
    create(client, admin, definition())
    url = f"{FORMS}/survei_rumah/versions/1"
    response = client.put(url, headers=admin, json=definition("lain", "2"))
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"settings.form_id", "settings.version"}
    assert client.put(f"{FORMS}/survei_rumah/versions/9", headers=admin, json=definition()).status_code == 404
    assert client.post(f"{FORMS}/survei_rumah/versions/9/publish", headers=admin).status_code == 404


def test_a_new_version_cannot_change_a_fields_type(client, admin):
    published_form(client, admin, "survei_rumah", "1")
    changed = client.post(FORMS, headers=admin, json=definition(version="2", age_type="text"))
    assert changed.status_code == 422
    body = changed.get_json()
    assert body["code"] == "incompatible_version"
    assert list(body["errors"]) == ["fields[1].type"]
    assert "integer" in body["errors"]["fields[1].type"][0]
    # adding a field is fine, and the new version becomes the one devices get
    extra = {"type": "date", "name": "tanggal", "label": {"id": "Tanggal"}}
    assert create(client, admin, definition(version="2", extra_fields=[extra]))["state"] == "draft"
    publish(client, admin, "survei_rumah", "2")
    form = listed(client, admin)["survei_rumah"]
    assert form["version"] == "2"
    assert form["url"] == f"{FORMS}/survei_rumah/versions/2"
    # a draft saved before another version was published is checked again when it is published
    create(client, admin, definition(version="3", extra_fields=[{"type": "integer", "name": "catatan",
                                                                 "label": {"id": "Catatan"}}]))
    create(client, admin, definition(version="4", extra_fields=[{"type": "text", "name": "catatan",
                                                                 "label": {"id": "Catatan"}}]))
    publish(client, admin, "survei_rumah", "3")
    refused = client.post(f"{FORMS}/survei_rumah/versions/4/publish", headers=admin)
    assert refused.status_code == 422
    assert list(refused.get_json()["errors"]) == ["fields[3].type"]
    assert listed(client, admin)["survei_rumah"]["version"] == "3"


@pytest.mark.parametrize(("mutate", "path"), [
    (lambda d: d["fields"][2].pop("list"), "fields[2].list"),
    (lambda d: d["fields"][1].update(type="number"), "fields[1].type"),
    (lambda d: d["fields"].append({"type": "text", "name": "nama", "label": {"id": "Lagi"}}), "fields[3].name"),
    (lambda d: d["fields"][0].update(relevant="${tidak_ada} = 1"), "fields[0].relevant"),
    (lambda d: d.pop("settings"), "settings"),
    (lambda d: d["settings"].update(version=".."), "settings.version"),
    (lambda d: d["settings"].update(version="1" * 33), "settings.version"),
])
def test_invalid_definitions_are_422_with_paths(client, admin, mutate, path):
    data = definition()
    mutate(data)
    response = client.post(FORMS, headers=admin, json=data)
    assert response.status_code == 422
    assert response.get_json()["code"] == "invalid_definition"
    assert path in response.get_json()["errors"]
    assert listed(client, admin, all="true") == {}


def test_a_definition_with_operator_or_dotted_keys_is_refused_with_the_path(client, admin):
    data = definition()
    data["fields"][1]["$where"] = "sleep(1000)"
    data["choices"]["yatidak"][0]["label"]["en.US"] = "Yes"
    response = client.post(FORMS, headers=admin, json=data)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"fields[1]", "choices.yatidak[0].label"}
    assert client.get(FORMS, headers=admin, query_string={"all": True}).get_json() == []


def test_not_an_object_is_422(client, admin):
    response = client.post(FORMS, headers=admin, json=["not", "a", "form"])
    assert response.status_code == 422


def test_roles_and_the_order_of_checks(client, users):
    assert client.post(FORMS, json=definition()).status_code == 401
    assert client.get(FORMS).status_code == 401
    officer = login(client, "ani")
    assert client.post(FORMS, headers=officer, json=definition()).status_code == 403
    assert client.post(FORMS, headers=officer, data="{bad", content_type="application/json").status_code == 403
    assert client.get(FORMS, headers=officer, query_string={"all": "true"}).status_code == 403
    supervisor = login(client, "supervisor")
    for path in ("/survei_rumah/archive", "/survei_rumah/versions/1/publish"):
        assert client.post(FORMS + path, headers=supervisor).status_code == 403
    assert client.put(f"{FORMS}/survei_rumah/assignment", headers=supervisor, json={"all": True}).status_code == 403
    admin = login(client, "admin")
    assert client.post(FORMS, headers=admin, data="x", content_type="text/plain").status_code == 415
    assert client.post(FORMS, headers=admin, data="{bad", content_type="application/json").status_code == 400
    assert client.post(FORMS, headers=admin, data=b"", content_type="application/json").status_code == 400
    # an unknown draft is 404 before the body is even read
    assert client.put(f"{FORMS}/nope/versions/1", headers=admin, data="x", content_type="text/plain").status_code == 404


# -- XLSForm upload ----------------------------------------------------------------------------------
def test_xlsform_upload_makes_a_draft_and_replaces_it(client, admin):
    created = upload(client, admin, xlsform())
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert (body["form_id"], body["version"], body["state"]) == ("pendataan_xls", "1", "draft")
    stored = client.get(body["url"], headers=admin).get_json()
    assert [f["name"] for f in stored["fields"]] == ["kepala", "bantuan", "jumlah"]
    assert stored["fields"][0]["label"] == {"id": "Nama kepala keluarga", "en": "Head of household"}
    assert body["hash"] == definition_hash(stored)

    replaced = upload(client, admin, xlsform(label="Nama KK"), url=body["url"], method="put")
    assert replaced.status_code == 200, replaced.get_json()
    assert client.get(body["url"], headers=admin).get_json()["fields"][0]["label"]["id"] == "Nama KK"
    publish(client, admin, "pendataan_xls")
    assert upload(client, admin, xlsform(), url=body["url"], method="put").status_code == 409


def test_xlsform_with_a_duplicate_name_is_422_naming_sheet_and_row(client, admin):
    response = upload(client, admin, xlsform(duplicate=True))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == ["survey!4"]
    assert "bantuan" in errors["survey!4"][0]


def test_xlsform_validator_errors_are_keyed_by_row(client, admin):
    survey = [["type", "name", "label", "relevant"],
              ["text", "nama", "Nama", None],
              ["integer", "umur", "Umur", None],
              ["text", "catatan", "Catatan", "${tidak_ada} > 1"]]
    response = upload(client, admin, workbook(survey, settings=[["form_id", "version"], ["rowtest", "1"]]))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == ["survey!4"]
    assert errors["survey!4"][0].startswith("relevant:")


def test_incompatible_xlsform_version_is_keyed_by_row(client, admin):
    assert upload(client, admin, xlsform("1")).status_code == 201
    publish(client, admin, "pendataan_xls", "1")
    survey = [["type", "name", "label"], ["text", "kepala", "Kepala"], ["text", "jumlah", "Jumlah"]]
    response = upload(client, admin, workbook(survey, settings=[["form_id", "version"], ["pendataan_xls", "2"]]))
    assert response.status_code == 422
    assert response.get_json()["code"] == "incompatible_version"
    assert list(response.get_json()["errors"]) == ["survey!3"]


def test_upload_that_is_not_a_workbook_or_lacks_the_file(client, admin):
    response = upload(client, admin, b"just some text", filename="form.xlsx")
    assert response.status_code == 422
    assert "file" in response.get_json()["errors"]
    missing = client.post(FORMS, headers=admin, content_type="multipart/form-data", data={"other": "x"})
    assert missing.status_code == 422
    assert "file" in missing.get_json()["errors"]


def _small_refusal(response, words):
    assert response.status_code == 422, response.get_data()[:300]
    body = response.get_json()
    assert body["code"] == "invalid_definition"
    assert len(response.get_data()) < 4096
    assert any(words in message for messages in body["errors"].values() for message in messages), body
    return body


def test_an_xlsform_that_inflates_to_a_million_rows_is_refused_before_it_is_unpacked(client, admin, monkeypatch):
    bomb = inflating_xlsx()
    assert len(bomb) < 400_000

    def unpacked(*args, **kwargs):
        raise AssertionError("the workbook was opened")

    monkeypatch.setattr("forms.xlsform.openpyxl.load_workbook", unpacked)
    _small_refusal(upload(client, admin, bomb), "inflates")
    assert client.get(FORMS, headers=admin, query_string={"all": True}).get_json() == []


def test_an_xlsform_with_more_rows_than_a_form_has_is_refused_while_reading(client, admin):
    body = _small_refusal(upload(client, admin, long_xlsx(25_000)), "more than 20,000 rows")
    assert list(body["errors"]) == ["survey!20002"]


def test_an_xlsx_whose_workbook_declares_a_doctype_is_422_not_500(client, admin):
    _small_refusal(upload(client, admin, doctype_xlsx()), "DOCTYPE")


def test_an_xlsform_with_thousands_of_problems_reports_the_first_few_hundred(client, admin):
    survey = [["type", "name", "label"], *(["barcode", f"q{n}", f"Pertanyaan {n}"] for n in range(1000))]
    response = upload(client, admin, workbook(survey))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert sum(len(messages) for messages in errors.values()) == 201
    assert errors["…"] == ["… and 800 more"]
    assert errors["survey!2"] == ["type 'barcode' is not supported: barcode scanning is not supported"]


def test_json_definition_may_be_uploaded_as_a_file(client, admin):
    response = upload(client, admin, json.dumps(definition()).encode(), filename="survei.json")
    assert response.status_code == 201
    assert response.get_json()["hash"] == definition_hash(definition())


# -- what devices see --------------------------------------------------------------------------------
def test_officers_see_only_published_forms_assigned_to_their_villages(client, users, admin):
    published_form(client, admin, "untuk_ani", villages=["32.04.05.2001"])
    published_form(client, admin, "untuk_kecamatan_budi", villages=["32.04.06"])
    published_form(client, admin, "untuk_semua", all=True)
    published_form(client, admin, "belum_ditugaskan")
    create(client, admin, definition("masih_draf"))
    assign(client, admin, "masih_draf", all=True)

    ani, budi, supervisor = (login(client, name) for name in ("ani", "budi", "supervisor"))
    assert set(listed(client, ani)) == {"untuk_ani", "untuk_semua"}
    assert set(listed(client, budi)) == {"untuk_kecamatan_budi", "untuk_semua"}
    assert set(listed(client, supervisor)) == {"untuk_ani", "untuk_semua"}
    assert set(listed(client, admin)) == {"untuk_ani", "untuk_kecamatan_budi", "untuk_semua", "belum_ditugaskan"}
    assert set(listed(client, admin, all="true")) == {"untuk_ani", "untuk_kecamatan_budi", "untuk_semua",
                                                      "belum_ditugaskan", "masih_draf"}

    item = listed(client, ani)["untuk_ani"]
    assert item == {"form_id": "untuk_ani", "version": "1", "title": {"id": "Survei untuk_ani", "en": "untuk_ani"},
                    "hash": definition_hash(definition("untuk_ani")), "url": f"{FORMS}/untuk_ani/versions/1"}
    assert client.get(item["url"], headers=ani).get_json() == definition("untuk_ani")
    for url in (f"{FORMS}/untuk_kecamatan_budi/versions/1", f"{FORMS}/masih_draf/versions/1",
                f"{FORMS}/untuk_ani/versions/7", f"{FORMS}/tidak_ada/versions/1"):
        response = client.get(url, headers=ani)
        assert response.status_code == 404, url
        assert response.get_json()["code"] == "not_found"

    # reassigning takes the form away from ani
    assign(client, admin, "untuk_ani", villages=["32.04.06.2001"])
    assert set(listed(client, ani)) == {"untuk_semua"}
    assert client.get(item["url"], headers=ani).status_code == 404


def test_admin_listing_shows_drafts_versions_and_assignment(client, admin):
    published_form(client, admin, "survei_rumah", villages=["32.04.05.2001", "32.04.06"])
    create(client, admin, definition(version="2"))
    item = listed(client, admin, all="true")["survei_rumah"]
    assert item["version"] == "1"
    assert item["archived"] is False
    assert item["assignment"] == {"all": False, "villages": ["32.04.05.2001", "32.04.06"]}
    assert [(v["version"], v["state"]) for v in item["versions"]] == [("1", "published"), ("2", "draft")]
    one = client.get(f"{FORMS}/survei_rumah", headers=admin)
    assert one.status_code == 200
    assert one.get_json()["versions"] == item["versions"]
    assert client.get(f"{FORMS}/tidak_ada", headers=admin).status_code == 404


def test_archived_forms_are_hidden_but_their_versions_stay_valid(app, client, users, admin):
    published_form(client, admin, "survei_rumah", all=True)
    ani = login(client, "ani")
    archived = client.post(f"{FORMS}/survei_rumah/archive", headers=admin)
    assert archived.status_code == 200
    assert archived.get_json()["archived"] is True
    assert listed(client, ani) == {}
    assert listed(client, admin) == {}
    assert listed(client, admin, all="true")["survei_rumah"]["archived"] is True
    # a device holding visits for it may still read the definition, and sync may still validate them
    assert client.get(f"{FORMS}/survei_rumah/versions/1", headers=ani).status_code == 200
    with app.app_context():
        assert forms_registry.published_definition(get_store(), "survei_rumah", "1") is not None
    assert client.post(f"{FORMS}/survei_rumah/unarchive", headers=admin).status_code == 200
    assert set(listed(client, ani)) == {"survei_rumah"}
    actions = [a["action"] for a in client.get("/api/v1/audit", headers=admin).get_json()]
    assert {"form_archived", "form_unarchived", "form_assigned"} <= set(actions)
    assert client.post(f"{FORMS}/tidak_ada/archive", headers=admin).status_code == 404


def test_etags_answer_304_and_change_with_the_list(client, users, admin):
    published_form(client, admin, "survei_rumah", all=True)
    ani = login(client, "ani")
    first = client.get(FORMS, headers=ani)
    tag = first.headers["ETag"]
    assert tag[0] == tag[-1] == '"'
    assert "no-cache" in first.headers["Cache-Control"]
    assert "no-store" not in first.headers["Cache-Control"]
    same = client.get(FORMS, headers={**ani, "If-None-Match": tag})
    assert same.status_code == 304
    assert same.data == b""
    assert same.headers["ETag"] == tag
    assert client.get(FORMS, headers={**ani, "If-None-Match": f'W/{tag}, "other"'}).status_code == 304

    published_form(client, admin, "survei_kedua", all=True)
    changed = client.get(FORMS, headers={**ani, "If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != tag
    assert len(changed.get_json()) == 2

    url = f"{FORMS}/survei_rumah/versions/1"
    form = client.get(url, headers=ani)
    assert form.headers["ETag"] == f'"{definition_hash(definition())}"'
    assert "no-cache" in form.headers["Cache-Control"]
    cached = client.get(url, headers={**ani, "If-None-Match": form.headers["ETag"]})
    assert cached.status_code == 304
    assert cached.data == b""
    assert client.get(url, headers={**ani, "If-None-Match": '"stale"'}).status_code == 200


def test_assignment_codes_are_checked(client, admin):
    published_form(client, admin, "survei_rumah")
    url = f"{FORMS}/survei_rumah/assignment"
    # a trailing newline and Arabic-Indic digits are no codes, though a `\d...$` pattern takes them
    for body in ({"villages": ["32.04"]}, {"villages": ["3204052001"]}, {"all": True, "villages": ["32.04.05"]},
                 {"villages": "32.04.05"}, {"villages": ["32.04.05.2001\n"]}, {"villages": ["٣٢.04.05"]},
                 {"villages": ["32.04.05.4001"]}):
        response = client.put(url, headers=admin, json=body)
        assert response.status_code == 422, body
        assert "villages" in response.get_json()["errors"]
    assert client.put(f"{FORMS}/tidak_ada/assignment", headers=admin, json={"all": True}).status_code == 404
    assert assign(client, admin, "survei_rumah", villages=["32.04.06", "32.04.05.2001", "32.04.06"]) == {
        "form_id": "survei_rumah", "all": False, "villages": ["32.04.05.2001", "32.04.06"]}
    assert assign(client, admin, "survei_rumah", all=True) == {"form_id": "survei_rumah", "all": True, "villages": []}


def test_openapi_documents_every_forms_endpoint(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert set(paths[FORMS]) == {"get", "post"}
    assert set(paths[FORMS]["post"]["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"get", "put"} <= set(paths[FORMS + "/{form_id}/versions/{version}"])
    for path in ("/{form_id}", "/{form_id}/versions/{version}/publish", "/{form_id}/archive",
                 "/{form_id}/unarchive", "/{form_id}/assignment"):
        assert FORMS + path in paths
    for operations in (paths[p] for p in paths if p.startswith(FORMS)):
        for method, operation in operations.items():
            if method not in ("get", "put", "post"):
                continue
            assert operation["security"] == [{"bearer": []}]
            assert any(status.startswith("2") and "content" in answer
                       for status, answer in operation["responses"].items())


# -- lookups for sync --------------------------------------------------------------------------------
def test_published_definition_is_cached_and_none_for_drafts(app, client, admin, monkeypatch):
    create(client, admin, definition())
    with app.app_context():
        store = get_store()
        assert forms_registry.published_definition(store, "survei_rumah", "1") is None
        assert forms_registry.published_definition(store, "tidak_ada", "1") is None
        assert forms_registry.published_definition(store, None, "1") is None
    publish(client, admin, "survei_rumah")
    with app.app_context():
        store = get_store()
        found = forms_registry.published_definition(store, "survei_rumah", "1")
        assert isinstance(found, Definition)
        assert (found.form_id, found.version, found.hash) == ("survei_rumah", "1", definition_hash(definition()))

        def refuse(data):
            raise AssertionError("a cached definition is not validated again")

        monkeypatch.setattr(forms_registry, "validate_definition", refuse)
        assert forms_registry.published_definition(store, "survei_rumah", "1") is found


def test_published_definition_is_safe_from_many_threads(app, client, admin):
    published_form(client, admin, "survei_rumah")
    forms_registry._cache.clear()
    found, errors = [], []
    with app.app_context():
        store = get_store()

        def look():
            try:
                found.append(forms_registry.published_definition(store, "survei_rumah", "1"))
            except Exception as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=look) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(found) == 8
    assert all(d is not None and d.hash == found[0].hash for d in found)


def test_forms_changed_since_reports_publish_archive_and_assignment_in_seq_order(app, client, admin):
    ani = Scope("officer", ("32.04.05.2001",))
    budi = Scope("officer", ("32.04.06.2001",))
    supervisor = Scope("supervisor", ("32.04.05",))
    everyone = Scope("admin", ())
    with app.app_context():
        start = get_store().visible_seq()
    create(client, admin, definition("survei_rumah"))
    assign(client, admin, "survei_rumah", villages=["32.04.05.2001"])
    with app.app_context():
        # a draft is nothing to devices, even assigned
        assert forms_registry.forms_changed_since(get_store(), start, ani) == []
    publish(client, admin, "survei_rumah")
    with app.app_context():
        store = get_store()
        [published] = forms_registry.forms_changed_since(store, start, ani)
        assert published == {"type": "form", "seq": store.visible_seq(), "form_id": "survei_rumah", "version": "1",
                             "title": {"id": "Survei survei_rumah", "en": "survei_rumah"},
                             "hash": definition_hash(definition("survei_rumah")),
                             "url": f"{FORMS}/survei_rumah/versions/1", "archived": False,
                             "assignment": {"all": False, "villages": ["32.04.05.2001"]}}
        assert forms_registry.forms_changed_since(store, start, budi) == []
    # a pull holds the latest state of each changed form, in the order of their last change
    published_form(client, admin, "survei_kedua", all=True)
    client.post(f"{FORMS}/survei_rumah/archive", headers=admin)
    with app.app_context():
        store = get_store()
        changes = forms_registry.forms_changed_since(store, start, ani)
        assert [(c["form_id"], c["archived"]) for c in changes] == [("survei_kedua", False), ("survei_rumah", True)]
        assert changes[0]["seq"] < changes[1]["seq"]
        assert changes[0]["assignment"] == {"all": True, "villages": []}
        assert [c["form_id"] for c in forms_registry.forms_changed_since(store, start, budi)] == ["survei_kedua"]
        assert len(forms_registry.forms_changed_since(store, start, supervisor)) == 2
        assert len(forms_registry.forms_changed_since(store, start, everyone)) == 2
        # a cursor past a change does not bring it again; upto and limit bound the read
        assert forms_registry.forms_changed_since(store, published["seq"], ani) == changes
        assert forms_registry.forms_changed_since(store, changes[0]["seq"], ani) == changes[1:]
        assert forms_registry.forms_changed_since(store, start, ani, upto=changes[0]["seq"]) == changes[:1]
        assert forms_registry.forms_changed_since(store, start, ani, limit=1) == changes[:1]
        pairs = forms_registry.form_pull_changes(store, start, store.visible_seq(), ani)
        assert pairs == [(c["seq"], {k: v for k, v in c.items() if k != "seq"}) for c in changes]
        cursor = store.visible_seq()

    # moving the form to budi's village: budi gets it, ani learns to drop it
    assign(client, admin, "survei_rumah", villages=["32.04.06.2001"])
    with app.app_context():
        store = get_store()
        assert forms_registry.forms_changed_since(store, cursor, ani) == [
            {"type": "assignment", "form_id": "survei_rumah", "all": False, "villages": [],
             "seq": store.visible_seq()}]
        [for_budi] = forms_registry.forms_changed_since(store, cursor, budi)
        assert for_budi["type"] == "form"
        assert for_budi["assignment"] == {"all": False, "villages": ["32.04.06.2001"]}
        # an assignment to all villages shows as all; a kecamatan entry shows to the villages in it
        assert forms_registry.assignment_in_scope({"all": False, "villages": ["32.04.05", "32.04.06.2001"]},
                                                  ani) == {"all": False, "villages": ["32.04.05"]}


# -- the shipped library -----------------------------------------------------------------------------
LIBRARY = {"verval_keluarga", "puskesos_pengaduan", "kunjungan_pendampingan"}


def test_a_new_install_publishes_the_library_to_every_village_once(app_factory):
    first = app_factory(LOAD_LIBRARY_FORMS=True)
    make_user(first, "ani", "officer", ["32.04.05.2001"])
    make_user(first, "admin", "admin")
    client = first.test_client()
    forms = listed(client, login(client, "ani"))
    assert set(forms) == LIBRARY
    for item in forms.values():
        definition_ = client.get(item["url"], headers=login(client, "ani"))
        assert definition_.status_code == 200
        assert definition_hash(definition_.get_json()) == item["hash"]
    admin = login(client, "admin")
    every = listed(client, admin, all="true")
    assert all(f["assignment"] == {"all": True, "villages": []} for f in every.values())
    audit = client.get("/api/v1/audit", headers=admin, query_string={"action": "form_published"}).get_json()
    assert {a["actor"] for a in audit} == {"system"}
    assert len(audit) == 3

    # a second process starting on the same store finds them and does nothing
    second = app_factory(LOAD_LIBRARY_FORMS=True)
    with second.app_context():
        store = get_store()
        assert store.count("forms") == 3
        assert store.count("form_versions") == 3
    assert set(listed(second.test_client(), login(second.test_client(), "ani"))) == LIBRARY


def test_the_library_is_not_loaded_when_the_setting_is_off_or_forms_exist(app_factory):
    off = app_factory()
    with off.app_context():
        assert get_store().count("forms") == 0
        forms_registry.load_library(get_store(), definitions=[definition("sendiri")])
    # the store has forms now, so a start with the setting on leaves it alone
    on = app_factory(LOAD_LIBRARY_FORMS=True)
    with on.app_context():
        assert [f["id"] for f in get_store().find("forms")] == ["sendiri"]


def test_two_workers_loading_at_once_publish_each_form_once(app_factory, tmp_path):
    app_factory()  # creates the schema
    url = f"sqlite:///{tmp_path}/kunjung.db"
    stores = [open_store(url, COLLECTIONS) for _ in range(2)]
    outcomes, errors = [], []
    barrier = threading.Barrier(2)

    def worker(store):
        barrier.wait()
        try:
            outcomes.extend(forms_registry.load_library(store))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(o.form_id for o in outcomes if o.published) == sorted(LIBRARY)
    assert {o.reason for o in outcomes if not o.published} == {"already published"}
    assert stores[0].count("forms") == 3
    assert stores[0].count("form_versions") == 3
    assert stores[0].count("audit", {"action": "form_published"}) == 3
    for store in stores:
        store.close()


def test_load_library_publishes_a_new_version_and_keeps_the_assignment(app, client, admin):
    with app.app_context():
        store = get_store()
        forms_registry.load_library(store, definitions=[definition("lib", "1")])
    assign(client, admin, "lib", villages=["32.04.05.2001"])
    newer = definition("lib", "2", extra_fields=[{"type": "text", "name": "baru", "label": {"id": "Baru"}}])
    broken = definition("lib", "3", age_type="text")
    with app.app_context():
        outcomes = forms_registry.load_library(get_store(), definitions=[definition("lib", "1"), newer, broken])
    assert [(o.version, o.published) for o in outcomes] == [("1", False), ("2", True), ("3", False)]
    assert outcomes[0].reason == "already published"
    assert outcomes[2].reason.startswith("incompatible")
    item = listed(client, admin, all="true")["lib"]
    assert item["version"] == "2"
    assert item["assignment"] == {"all": False, "villages": ["32.04.05.2001"]}


def test_the_form_life_cycle_holds_on_every_backend(backend_app):
    client = backend_app.test_client()
    make_user(backend_app, "admin", "admin")
    make_user(backend_app, "ani", "officer", ["32.04.05.2001"])
    admin, ani = login(client, "admin"), login(client, "ani")
    with backend_app.app_context():
        start = get_store().visible_seq()
    published_form(client, admin, "survei_rumah", villages=["32.04.05"])
    create(client, admin, definition("survei_rumah", "2"))
    assert set(listed(client, ani)) == {"survei_rumah"}
    assert listed(client, ani)["survei_rumah"]["version"] == "1"
    assert client.put(f"{FORMS}/survei_rumah/versions/1", headers=admin, json=definition()).status_code == 409
    client.post(f"{FORMS}/survei_rumah/archive", headers=admin)
    assert listed(client, ani) == {}
    with backend_app.app_context():
        store = get_store()
        [change] = forms_registry.forms_changed_since(store, start, Scope("officer", ("32.04.05.2001",)))
        assert (change["type"], change["archived"], change["version"]) == ("form", True, "1")
        assert forms_registry.published_definition(store, "survei_rumah", "1").version == "1"
        assert forms_registry.published_definition(store, "survei_rumah", "2") is None


def test_household_fields_of_a_village_come_from_the_forms_that_reach_it(app, client, admin):
    saving = definition("pendataan_kk", extra_fields=[
        {"type": "text", "name": "nik_kepala", "label": {"id": "NIK", "en": "NIK"}, "appearance": "nik",
         "save_to": "head_nik_checked"}])
    create(client, admin, saving)
    publish(client, admin, "pendataan_kk")
    assign(client, admin, "pendataan_kk", villages=["32.04.05"])
    other = definition("lain", extra_fields=[
        {"type": "integer", "name": "luas", "label": {"id": "Luas", "en": "Area"}, "save_to": "floor_area_other"}])
    create(client, admin, other)
    publish(client, admin, "lain")
    assign(client, admin, "lain", villages=["32.04.06.2001"])
    with app.app_context():
        store = get_store()
        here = forms_registry.household_fields_for(store, "32.04.05.2001")
        assert here.check("head_nik_checked", "not-a-nik") == ["NIK must be exactly 16 digits"]
        assert here.check("floor_area_other", 3) == ["unknown household field"]
        assert forms_registry.household_fields_for(store, "32.04.06.2001").check("floor_area_other", 3) == []
    # taken away, the form's fields stay known: households were visited with it
    assign(client, admin, "pendataan_kk", villages=[])
    with app.app_context():
        assert "head_nik_checked" in forms_registry.household_fields_for(get_store(), "32.04.05.2001")
