"""The message catalogue is complete, and the API, pages and CLI pick the language docs/protocol.md promises."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Response, g
from http_helpers import login
from sync_helpers import OTHER_VILLAGE, VILLAGE, Device

from server import i18n

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]")


def catalogue_files():
    return sorted(i18n.TRANSLATIONS.glob("*/LC_MESSAGES/*.po"))


def read(path):
    with path.open("rb") as handle:
        return read_po(handle)


def marked_in_code() -> set[str]:
    """Every string the code marks, found the way scripts/messages finds them (babel.cfg)."""
    method_map = []
    with (ROOT / "babel.cfg").open() as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("[") and ":" in line:
                method, pattern = line[1:-1].split(":", 1)
                method_map.append((pattern.strip(), method.strip()))
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "N_": None, "_l": None}
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, keywords=keywords):
        found.update(message if isinstance(message, tuple) else (message,))
    return {m for m in found if m}


def test_there_is_an_indonesian_catalogue():
    assert (i18n.TRANSLATIONS / "id" / "LC_MESSAGES" / "messages.po").is_file()
    assert set(i18n.languages_with_catalogue()) == {"id"}


@pytest.mark.parametrize("path", catalogue_files(), ids=lambda p: str(p.relative_to(i18n.TRANSLATIONS)))
def test_every_catalogued_message_is_translated(path):
    untranslated, fuzzy, wrong_placeholders = [], [], []
    for message in read(path):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings):
            untranslated.append(ids[0])
        elif message.fuzzy:
            fuzzy.append(ids[0])
        elif any(set(PLACEHOLDER.findall(s)) != set(PLACEHOLDER.findall(ids[0])) for s in strings):
            wrong_placeholders.append(ids[0])
    assert not untranslated, f"no translation in {path.name}: {untranslated}"
    assert not fuzzy, f"fuzzy (review, then drop the flag) in {path.name}: {fuzzy}"
    assert not wrong_placeholders, f"placeholders differ from the English in {path.name}: {wrong_placeholders}"


def test_every_marked_message_is_in_the_catalogue():
    # a plural entry holds both of its English forms
    catalogued = {form for path in catalogue_files() if path.parent.parent.name == "id" for m in read(path) if m.id
                  for form in ((m.id,) if isinstance(m.id, str) else m.id)}
    missing = sorted(marked_in_code() - catalogued)
    assert not missing, f"run scripts/messages and translate: {missing}"


def test_no_fstring_inside_a_marker():
    """A value goes in as a named placeholder; an f-string would make a new msgid for every value."""
    offenders = []
    for folder in ("server", "forms", "sync"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for match in re.finditer(r"\b(?:_|gettext|lazy_gettext|N_)\(\s*f[\"']", text):
                offenders.append(f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}")
    assert not offenders


# --- choosing the language -------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    (None, "en"),
    ("id", "id"),
    ("id-ID,id;q=0.9,en-US;q=0.8,en;q=0.7", "id"),
    ("in-ID", "id"),  # older Android
    ("en-US,en;q=0.9", "en"),
    ("en;q=0.5,id;q=0.9", "id"),
    ("fr-FR", "en"),
    ("*", "en"),
])
def test_api_language_from_accept_language(app, header, expected):
    headers = {"Accept-Language": header} if header else {}
    with app.test_request_context("/api/v1/whatever", headers=headers):
        assert i18n.current_language() == expected


def test_user_setting_counts_when_the_request_names_no_language(app):
    with app.test_request_context("/api/v1/whatever"):
        g.kunjung_user = {"username": "ani", "language": "id"}
        assert i18n.current_language() == "id"
    with app.test_request_context("/api/v1/whatever", headers={"Accept-Language": "fr, *"}):
        g.kunjung_user = {"username": "ani", "language": "id"}
        assert i18n.current_language() == "id"
    with app.test_request_context("/api/v1/whatever", headers={"Accept-Language": "en"}):
        g.kunjung_user = {"username": "ani", "language": "id"}
        assert i18n.current_language() == "en"


def test_pages_are_indonesian_unless_switched(app):
    with app.test_request_context("/", headers={"Accept-Language": "en-US"}):
        assert i18n.use_page_language() == "id"
        assert i18n.current_language() == "id"
        assert i18n.gettext("Request failed.") == "Permintaan gagal."
    with app.test_request_context("/?lang=en"):
        assert i18n.use_page_language() == "en"
        response = i18n.remember_page_language(Response("x"))
        assert f"{i18n.LANGUAGE_COOKIE}=en" in response.headers["Set-Cookie"]
    with app.test_request_context("/", headers={"Cookie": f"{i18n.LANGUAGE_COOKIE}=en"}):
        assert i18n.use_page_language() == "en"
    with app.test_request_context("/?lang=xx", headers={"Cookie": f"{i18n.LANGUAGE_COOKIE}=en"}):
        assert i18n.use_page_language() == "en"
        assert "Set-Cookie" not in i18n.remember_page_language(Response("x")).headers


def test_jinja_reads_the_same_catalogue(app):
    with app.test_request_context("/", headers={"Accept-Language": "id"}):
        rendered = app.jinja_env.from_string("{{ _('Request failed.') }}").render()
    assert rendered == "Permintaan gagal."


@pytest.mark.parametrize(("variables", "expected"), [
    ({}, "en"),
    ({"LANG": "id_ID.UTF-8"}, "id"),
    ({"LANG": "C.UTF-8"}, "en"),
    ({"LANG": "id_ID.UTF-8", "KUNJUNG_LANG": "en"}, "en"),
    ({"LANGUAGE": "id:en", "LANG": "en_US.UTF-8"}, "id"),
])
def test_command_line_language_from_the_environment(monkeypatch, variables, expected):
    for name in ("KUNJUNG_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert i18n.current_language() == expected


def test_forced_language_wins_and_ends(app):
    with app.test_request_context("/api/v1/x", headers={"Accept-Language": "en"}):
        with i18n.force_language("id"):
            assert i18n._("Request failed.") == "Permintaan gagal."
        assert i18n._("Request failed.") == "Request failed."


def test_placeholders_are_filled_after_translation(app):
    with app.test_request_context("/", headers={"Accept-Language": "id"}):
        assert i18n._("Use one of: %(methods)s.", methods="GET, POST") == "Gunakan salah satu dari: GET, POST."
        # a sentence a library formatted already is found by its template
        assert i18n.translate_known("Must be one of: admin, officer.") == "Harus salah satu dari: admin, officer."
        assert i18n.translate_known("something kunjung never said") == "something kunjung never said"


def indonesian_catalogue() -> dict[str, str]:
    return {m.id: m.string for path in catalogue_files() if path.parent.parent.name == "id"
            for m in read(path) if m.id and isinstance(m.id, str)}


def translated(english: str) -> str:
    """The catalogue's Indonesian for an English sentence, its placeholders filled from the English."""
    table = indonesian_catalogue()
    if english in table:
        return table[english]
    matches = []
    for msgid, msgstr in table.items():
        pieces = PLACEHOLDER.split(msgid)
        if len(pieces) == 1:
            continue
        names = pieces[1::2]
        regex = "".join(re.escape(p) if n % 2 == 0 else
                        (f"(?P={p})" if p in names[:n // 2] else f"(?P<{p}>.+?)") for n, p in enumerate(pieces))
        found = re.fullmatch(regex, english, re.DOTALL)
        if found:
            literal = sum(len(p) for p in pieces[::2])
            matches.append((literal, msgstr, {k: table.get(v, v) for k, v in found.groupdict().items()}))
    assert matches, f"not in the catalogue: {english!r}"
    _, msgstr, values = max(matches, key=lambda m: m[0])  # the most specific sentence
    return re.sub(r"%\((\w+)\)r", r"%(\1)s", msgstr) % values  # a %r value was found already quoted


# --- real answers ------------------------------------------------------------------------------------------

def test_error_answers_in_both_languages(client):
    """The same refusal, asked in English, in nothing, and in Indonesian: same code, other words."""
    cases = [
        ("get", "/api/v1/no-such-thing", None),
        ("post", "/api/v1/auth/login", {"username": "x"}),
        ("delete", "/health/live", None),
    ]
    for method, path, body in cases:
        plain = getattr(client, method)(path, json=body)
        english = getattr(client, method)(path, json=body, headers={"Accept-Language": "en"})
        indonesian = getattr(client, method)(path, json=body, headers={"Accept-Language": "id-ID,id;q=0.9"})
        assert plain.status_code == english.status_code == indonesian.status_code >= 400
        p, e, i = plain.get_json(), english.get_json(), indonesian.get_json()
        assert p["code"] == e["code"] == i["code"]
        assert p["message"] == e["message"]
        assert i["message"] != e["message"], (path, i["message"])
        assert set(i["errors"]) == set(e["errors"])
        assert i["message"] == translated(e["message"])


def test_engine_sentences_still_occur_in_the_engines():
    """The engines' English is catalogued in server/i18n.py; an entry whose sentence is gone is stale."""
    source = "\n".join(path.read_text(encoding="utf-8") for folder in ("sync", "forms")
                       for path in (ROOT / folder).rglob("*.py"))
    stale = []
    for entry in (*i18n.ENGINE_MESSAGES, *i18n.ENGINE_TEMPLATES):
        pieces = [p for n, p in enumerate(PLACEHOLDER.split(entry)) if n % 2 == 0 and p.strip()]
        longest = max(pieces, key=len).strip(" :;,.")
        spellings = {longest, longest.replace("{", "{{").replace("}", "}}")}  # as inside an f-string
        if not any(spelling in source for spelling in spellings):
            stale.append(entry)
    assert not stale


def test_engine_sentences_are_said_in_indonesian(app):
    with app.test_request_context("/", headers={"Accept-Language": "id"}):
        assert i18n.translate_known("NIK must be exactly 16 digits") == "NIK harus tepat 16 digit"
        assert (i18n.translate_known("must be a whole number, not a string")
                == "harus berupa bilangan bulat, bukan teks")
        assert i18n.translate_errors({"answers.age": ["must be a number, not a list"], "x": ["kunjung?"]}) == {
            "answers.age": ["harus berupa angka, bukan daftar"], "x": ["kunjung?"]}


# --- sync: per-event verdicts and a form's own constraint messages ----------------------------------------

FORM = {
    "settings": {"form_id": "cek_bahasa", "version": "1", "title": {"id": "Cek bahasa", "en": "Language check"},
                 "default_language": "id"},
    "fields": [
        {"type": "integer", "name": "floor_area", "label": {"id": "Luas lantai", "en": "Floor area"},
         "constraint": ". > 0",
         "constraint_message": {"id": "Luas lantai tidak wajar", "en": "Implausible floor area"}},
        {"type": "integer", "name": "rooms", "label": {"id": "Jumlah kamar"},
         "constraint": ". > 0", "constraint_message": {"id": "Jumlah kamar tidak wajar"}},
        {"type": "text", "name": "head_name", "label": {"id": "Nama kepala keluarga"}, "required": True},
    ],
    "choices": {},
}


@pytest.fixture
def officer(app, client, users):
    admin = login(client, "admin")
    assert client.post("/api/v1/forms", json=FORM, headers=admin).status_code == 201
    assert client.post("/api/v1/forms/cek_bahasa/versions/1/publish", headers=admin).status_code == 200
    assert client.put("/api/v1/forms/cek_bahasa/assignment", json={"all": True}, headers=admin).status_code == 200
    return Device(client, "ani")


def visit(device, answers, **extra):
    event = {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
             "form_id": "cek_bahasa", "form_version": "1", "village": VILLAGE, "household_id": str(uuid.uuid4()),
             "answers": answers}
    event.update(extra)
    return event


def push(device, events, language=None):
    headers = dict(device.headers, **({"Accept-Language": language} if language else {}))
    response = device.client.post("/api/v1/sync/push", headers=headers,
                                  json={"device_id": device.device_id, "events": events})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def test_push_verdicts_in_the_asked_language_with_the_same_codes(officer):
    bad = [
        visit(officer, {"floor_area": "lots"}),  # a value the form cannot store
        visit(officer, {}, hlc="not-a-clock"),  # an envelope problem
        visit(officer, {}, form_version="9"),  # no such version
        visit(officer, {}, village=OTHER_VILLAGE),  # out of scope
    ]
    english = push(officer, bad)
    indonesian = push(officer, bad, "id")
    assert [r["code"] for r in english] == [r["code"] for r in indonesian] == [
        "invalid", "invalid", "invalid", "out_of_scope"]
    for e, i in zip(english, indonesian, strict=True):
        assert i["message"] == translated(e["message"]) != e["message"]
        assert set(i["errors"]) == set(e["errors"])
        for path, messages in e["errors"].items():
            assert i["errors"][path] == [translated(m) for m in messages], path


def test_a_failed_constraint_says_the_forms_own_message_in_the_asked_language(officer, client):
    answers = {"floor_area": -3, "rooms": 0}
    by_code = {}
    for language in (None, "id", "en"):
        [result] = push(officer, [visit(officer, answers)], language)
        assert result["status"] == "applied"
        by_code[language] = {(f["code"], f.get("path", "")): f["message"] for f in result["flags"]}
    # English asked (or nothing, the API's default): the form's English where it has one, else its own default
    assert "Implausible floor area" in by_code["en"][("constraint_failed", "floor_area")]
    assert by_code[None] == by_code["en"]
    assert "Jumlah kamar tidak wajar" in by_code["en"][("constraint_failed", "rooms")]
    assert by_code["en"][("required_missing", "head_name")] == "a required question was not answered"
    # Indonesian asked: the form's Indonesian, kunjung's words in Indonesian too
    assert by_code["id"][("constraint_failed", "floor_area")] == (
        "jawaban tidak memenuhi batasan formulir: Luas lantai tidak wajar")
    assert by_code["id"][("constraint_failed", "rooms")] == (
        "jawaban tidak memenuhi batasan formulir: Jumlah kamar tidak wajar")
    assert by_code["id"][("required_missing", "head_name")] == "pertanyaan wajib belum dijawab"
    # the stored visit, read later by a supervisor, is said in the reader's language
    supervisor = login(client, "supervisor")
    visits = client.get("/api/v1/visits", headers=dict(supervisor, **{"Accept-Language": "id"})).get_json()["items"]
    assert visits
    one = client.get(f"/api/v1/visits/{visits[0]['id']}", headers=dict(supervisor, **{"Accept-Language": "id"}))
    messages = {f["code"]: f["message"] for f in one.get_json()["flags"]}
    assert messages["required_missing"] == "pertanyaan wajib belum dijawab"
    english = client.get(f"/api/v1/visits/{visits[0]['id']}", headers=supervisor).get_json()
    assert {f["code"]: f["message"] for f in english["flags"]}["required_missing"] == (
        "a required question was not answered")


# --- a user's own language ----------------------------------------------------------------------------------

def test_a_users_language_setting_counts_when_the_request_names_none(client, users):
    admin = login(client, "admin")
    assert client.post("/api/v1/users", headers=admin, json={
        "username": "dewi", "password": "correct horse battery", "role": "officer",
        "villages": [VILLAGE], "language": "id"}).get_json()["language"] == "id"
    assert client.post("/api/v1/users", headers=admin, json={
        "username": "eko", "password": "correct horse battery", "role": "officer", "language": "jv"},
    ).get_json()["errors"] == {"language": ["Must be one of: id, en."]}
    dewi = login(client, "dewi")
    assert client.get("/api/v1/auth/me", headers=dewi).get_json()["language"] == "id"
    missing = "/api/v1/visits/no-such-visit"
    assert client.get(missing, headers=dewi).get_json()["message"] == "Kunjungan tidak ditemukan."
    asked = client.get(missing, headers=dict(dewi, **{"Accept-Language": "en"}))
    assert asked.get_json()["message"] == "No such visit."  # the request's own language wins
    assert asked.get_json()["code"] == "not_found"
    # the user changes it for themselves; null hands the choice back to each request
    changed = client.patch("/api/v1/auth/me", headers=dewi, json={"language": "en"})
    assert changed.status_code == 200
    assert changed.get_json()["language"] == "en"
    assert client.get(missing, headers=dewi).get_json()["message"] == "No such visit."
    assert "language" not in client.patch("/api/v1/auth/me", headers=dewi, json={"language": None}).get_json()
    assert client.get(missing, headers=dewi).get_json()["message"] == "No such visit."
    refused = client.patch("/api/v1/auth/me", headers=dict(dewi, **{"Accept-Language": "id"}),
                           json={"language": "fr"})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {
        "language": ["Harus salah satu dari: id, en."]}
    # an admin sets it too
    assert client.patch("/api/v1/users/dewi", headers=admin, json={"language": "id"}).get_json()["language"] == "id"
    assert client.get(missing, headers=dewi).get_json()["message"] == "Kunjungan tidak ditemukan."


def test_the_login_refusal_and_token_errors_in_indonesian(client, users):
    wrong = client.post("/api/v1/auth/login", json={"username": "ani", "password": "wrong password!"},
                        headers={"Accept-Language": "id"})
    assert wrong.status_code == 401
    assert wrong.get_json()["code"] == "invalid_credentials"
    assert wrong.get_json()["message"] == "Nama pengguna atau kata sandi salah."
    bad_token = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer x.y.z", "Accept-Language": "id"})
    assert bad_token.get_json()["code"] == "invalid_token"
    assert bad_token.get_json()["message"].startswith("Token tidak valid")
    no_token = client.get("/api/v1/auth/me", headers={"Accept-Language": "id"})
    assert no_token.get_json() | {"request_id": None} == {
        "code": "unauthenticated", "message": "Kirim token akses: Authorization: Bearer <token>.", "errors": {},
        "request_id": None}


# --- the command line ------------------------------------------------------------------------------------------

def test_command_line_errors_follow_the_shells_language(env, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from server.cli import cli

    for name in ("KUNJUNG_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    target = tmp_path / "copy.db"
    target.write_text("x")
    runner = CliRunner()
    for lang, expected in (("en_US.UTF-8", "exists already; give --force to replace it"),
                           ("id_ID.UTF-8", "sudah ada; tambahkan --force untuk menggantinya")):
        monkeypatch.setenv("LANG", lang)
        result = runner.invoke(cli, ["backup", str(target)])
        assert result.exit_code == 1
        assert expected in result.output
        bad = runner.invoke(cli, ["create-user", "Bad Name!", "--role", "officer", "--password-stdin"],
                            input="correct horse battery\n")
        assert bad.exit_code == 1
        if lang.startswith("id"):
            assert "Data pengguna tidak valid." in bad.output
            assert "gunakan 2-64 huruf kecil" in bad.output
        else:
            assert "The user is not valid." in bad.output


def test_a_malformed_body_is_refused_in_indonesian(client, users):
    admin = login(client, "admin")
    response = client.post("/api/v1/users", data=b'{"username": ', content_type="application/json",
                           headers=dict(admin, **{"Accept-Language": "id"}))
    assert response.status_code == 400
    assert response.get_json()["code"] == "malformed_json"
    assert response.get_json()["message"].startswith("isi permintaan bukan JSON yang valid")


@pytest.mark.parametrize(("body", "english", "indonesian"), [
    (b'{"username": ', "a value is missing", "nilai tidak ada"),
    (b'{"username" "siti"}', "a colon is missing", "titik dua tidak ada"),
    (b'["siti" "budi"]', "a comma is missing", "koma tidak ada"),
    (b'{username: "siti"}', "a name in double quotes is expected", "nama dalam tanda petik ganda"),
    (b'{"username": "siti', "a string is not closed", "teks tidak ditutup"),
    (b'{"username": "\\q"}', "a string holds an invalid escape", "escape yang tidak valid"),
    (b'{"username": "siti"} {}', "more follows the end of the JSON value", "masih ada isi setelah"),
])
def test_the_parser_says_what_is_wrong_with_a_body_in_the_readers_language(client, users, body, english,
                                                                           indonesian):
    admin = login(client, "admin")
    for language, expected in (("en", english), ("id", indonesian)):
        response = client.post("/api/v1/users", data=body, content_type="application/json",
                               headers=dict(admin, **{"Accept-Language": language}))
        assert response.status_code == 400
        message = response.get_json()["message"]
        assert expected in message, (language, message)
        # Python's own English words never reach the officer.
        assert "Expecting" not in message
        assert "delimiter" not in message
        assert "Extra data" not in message


def test_a_refused_form_definition_in_indonesian(client, users):
    admin = dict(login(client, "admin"), **{"Accept-Language": "id"})
    broken = {"settings": {"form_id": "rusak", "version": "1", "title": {"id": "Rusak"}, "default_language": "id"},
              "fields": [{"type": "select_one", "name": "pilih", "label": {"id": "Pilih"}, "list": "tidak_ada"},
                         {"type": "integer", "name": "umur", "label": {"id": "Umur"}, "relevant": "${hilang} > 1"}],
              "choices": {}}
    response = client.post("/api/v1/forms", json=broken, headers=admin)
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "invalid_definition"
    assert body["message"] == "Definisi formulir bermasalah; setiap masalah ditandai dengan path."
    said = [m for messages in body["errors"].values() for m in messages]
    assert "daftar pilihan 'tidak_ada' tidak dikenal" in said
    assert "merujuk ke ${hilang}, yang bukan isian formulir ini" in said


def test_signed_in_refusals_in_both_languages(client, users):
    """A walk over refusals a signed-in user meets: each in English by default and in Indonesian when asked."""
    admin, officer = login(client, "admin"), login(client, "ani")
    cases = [
        (officer, "get", "/api/v1/users", None),  # 403: needs the admin role
        (officer, "get", "/api/v1/households/no-such-household", None),  # 404
        (officer, "get", "/api/v1/villages/32.04.05.2001", None),  # 404: no such village
        (admin, "post", "/api/v1/users", {"username": "ani", "password": "correct horse battery",
                                          "role": "officer"}),  # 409: exists
        (admin, "post", "/api/v1/users", {"username": "X y", "password": "short", "role": "officer"}),  # 422
        (admin, "patch", "/api/v1/users/admin", {"disabled": True}),  # 409: not themselves
        (admin, "get", "/api/v1/forms/no_such_form", None),  # 404
        (officer, "post", "/api/v1/sync/push", {"device_id": "x", "events": []}),  # 403: device_required
        (admin, "put", "/api/v1/forms/nope/assignment", {"all": True, "villages": ["32.04.05.2001"]}),  # 422
        (officer, "get", "/api/v1/sync/pull?since=forged.cursor", None),  # 400: invalid_cursor
        (admin, "get", "/api/v1/users/nobody", None),  # 404: no such user
    ]
    for headers, method, path, body in cases:
        english = getattr(client, method)(path, json=body, headers=headers)
        indonesian = getattr(client, method)(path, json=body, headers=dict(headers, **{"Accept-Language": "id"}))
        assert english.status_code == indonesian.status_code >= 400, (path, english.get_json())
        e, i = english.get_json(), indonesian.get_json()
        assert e["code"] == i["code"], path
        assert i["message"] == translated(e["message"]) != e["message"], path
        assert set(i["errors"]) == set(e["errors"]), path
        for field, messages in e["errors"].items():
            assert i["errors"][field] == [translated(m) for m in messages], (path, field)


def test_the_body_guard_answers_in_the_asked_language_before_the_app(client, app):
    """Refusals made before Flask sees the request (server/middleware.py) read Accept-Language themselves."""
    limit = app.config["MAX_BODY_BYTES"]
    for environ, code in (({"HTTP_CONTENT_ENCODING": "br"}, "unsupported_media_type"),
                          ({"CONTENT_LENGTH": str(limit + 1)}, "too_large"),
                          ({"HTTP_CONTENT_ENCODING": "gzip"}, "bad_request")):
        english = client.post("/api/v1/auth/login", data=b"not gzip", environ_overrides=environ)
        indonesian = client.post("/api/v1/auth/login", data=b"not gzip", environ_overrides=environ,
                                 headers={"Accept-Language": "id"})
        assert english.get_json()["code"] == indonesian.get_json()["code"] == code
        assert indonesian.get_json()["message"] == translated(english.get_json()["message"])
        assert indonesian.get_json()["message"] != english.get_json()["message"]


def _both(client, method, path, body, headers):
    english = getattr(client, method)(path, json=body, headers=headers)
    indonesian = getattr(client, method)(path, json=body, headers=dict(headers, **{"Accept-Language": "id"}))
    return english, indonesian


def test_newly_catalogued_refusals_in_indonesian_with_the_same_code(app, client, users):
    """Refusals of the privacy, Collect-credential, form-file and OpenRosa paths: Indonesian when asked."""
    admin = login(client, "admin")
    assert client.post("/api/v1/forms", json=FORM, headers=admin).status_code == 201
    cases = [
        ("post", "/api/v1/users/ani/collect-credentials", {"device": "not a name!"}, "invalid"),
        ("post", "/api/v1/users/admin/collect-credentials", {"device": "hp-1"}, "invalid"),  # not a collector
        ("post", "/api/v1/users/nobody/collect-credentials", {"device": "hp-1"}, "not_found"),
        ("post", "/api/v1/households/search", {}, "invalid"),  # give either nik or no_kk
        ("post", "/api/v1/audit/person", {"nik": "3204051201900001", "start": "yesterday"}, "invalid"),
        ("post", "/api/v1/households/nope/erase", {}, "invalid"),  # no reason
        ("get", "/api/v1/forms/cek_bahasa/versions/1/files/nope.csv", None, "not_found"),
        # a server that is not the central one (a village hall, a copy) refuses before any lookup
        ("post", "/api/v1/households/nope/erase", {"reason": "permintaan warga"}, "not_central"),
        ("post", "/api/v1/relay/halls/no-such-hall/revoke", None, "not_found"),  # a relay refusal
    ]
    for method, path, body, code in cases:
        app.config["CENTRAL"] = code != "not_central"
        english, indonesian = _both(client, method, path, body, admin)
        assert english.status_code == indonesian.status_code >= 400, (path, english.get_json())
        e, i = english.get_json(), indonesian.get_json()
        assert e["code"] == i["code"] == code, (path, e)
        assert i["message"] == translated(e["message"]) != e["message"], path
        assert set(i["errors"]) == set(e["errors"]), path
        for field, messages in e["errors"].items():
            assert i["errors"][field] == [translated(m) for m in messages], (path, field)


def test_openrosa_refusals_in_the_asked_language(client, users):
    """Collect's refusals are XML messages: Indonesian when asked, and the answer says which language."""
    headers = {"X-OpenRosa-Version": "1.0"}
    english = client.get("/key/" + "x" * 43 + "/formList", headers=headers)
    indonesian = client.get("/key/" + "x" * 43 + "/formList", headers=dict(headers, **{"Accept-Language": "id"}))
    assert english.status_code == indonesian.status_code == 401
    assert english.headers["Content-Language"] == "en"
    assert indonesian.headers["Content-Language"] == "id"
    said = re.search(r"<message[^>]*>(.*)</message>", english.get_data(as_text=True)).group(1)
    assert said.startswith("This app credential does not work")
    assert translated(said) in indonesian.get_data(as_text=True)
    assert "Kredensial aplikasi" in indonesian.get_data(as_text=True)


def test_upload_and_hall_refusals_in_indonesian(client, users):
    """A tus upload refusal and a hall credential refusal, said in Indonesian with the same code."""
    officer = login(client, "ani", device_id="hp-ani")
    tus = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    cases = [("patch", "/api/v1/uploads/" + "0" * 32, dict(officer, **tus), "not_found"),
             ("get", "/api/v1/relay/events", {}, "unauthenticated")]
    for method, path, headers, code in cases:
        english = getattr(client, method)(path, data=b"x", headers=headers)
        indonesian = getattr(client, method)(path, data=b"x", headers=dict(headers, **{"Accept-Language": "id"}))
        assert english.status_code == indonesian.status_code >= 400, (path, english.get_json())
        e, i = english.get_json(), indonesian.get_json()
        assert e["code"] == i["code"] == code, (path, e)
        assert i["message"] == translated(e["message"]) != e["message"], path


# --- every sentence forms/ writes has its Indonesian ----------------------------------------------------------

FORMS_SOURCES = ["definition", "xlsform", "answers", "attachments", "fieldtypes", "identifiers", "household", "xform"]
# Text in forms/ that is not a sentence to a person, each with why: a walk that finds a new one fails until it is
# catalogued (forms/messages.py) or named here.
NOT_SAID_TO_PEOPLE = [
    (r"^X\d+(\.|\[|_|!|::| \(|@|/)", "a path, key or label built from parts (fields[3].name, sheet!row)"),
    (r"^(choices|label|members)[.:/]", "a path or column name"),
    (r"^Definition\(", "a debugging repr"),
    (r"^(\$\{|instance\(|regex\(|selected\(|count\(|if\()|/root/item",
     "an XPath or form expression written into an XForm"),
    (r"^(select|add|get|q) .* ?(prompt|time|id|number|from|using|external|apply|file)", "an XLSForm type alias"),
    (r"^(select_one_from_file|X\d+_from_file) ", "an XLSForm type written into a generated sheet"),
    (r"^\^|\(\?P<", "a regular expression"),
    (r"^(Jumlah|Rumah tangga) |^(Number of new family|Household visited)",
     "a bilingual label kunjung writes into the form itself, in both languages"),
    (r"^(the device|the column of the choice file|metres: |the image is|the answer is a N|the recording|"
     r"number of days in)", "a form parameter's description, kept beside the code and shown nowhere"),
    (r"^Kemendagri code \(X1\)$", "the subject of a catalogued identifier sentence (stays as written)"),
    (r"^in repeat 'X1'$", "a placement said inside a catalogued field-type sentence"),
    (r"^generated_note_name_", "a generated field name"),
]


def _forms_sentences():
    """Every f-string, string sum ("…: " + ", ".join(…)) and multi-word string in forms/ (docstrings aside), each
    value as a token X1, X2…: the same expression twice gives the same token; a value quoted with !r arrives quoted."""
    import ast

    def pieces_of(node, tokens, out):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            pieces_of(node.left, tokens, out)
            pieces_of(node.right, tokens, out)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.value, True))
        elif isinstance(node, ast.JoinedStr):
            for value in node.values:
                if isinstance(value, ast.Constant):
                    out.append((value.value, True))
                else:
                    token = tokens.setdefault(ast.unparse(value.value), f"X{len(tokens) + 1}")
                    out.append((f"'{token}'" if value.conversion == ord("r") else token, False))
        else:
            out.append((tokens.setdefault(ast.unparse(node), f"X{len(tokens) + 1}"), False))

    def is_text(node):
        return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))

    for name in FORMS_SOURCES:
        path = ROOT / "forms" / f"{name}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings, inner = set(), set()
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                    body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
            if isinstance(node, ast.JoinedStr):
                inner.update(id(value) for value in node.values)
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and (
                    is_text(node.left) or is_text(node.right)):
                inner.update(id(part) for part in (node.left, node.right))
        for node in ast.walk(tree):
            if id(node) in inner or id(node) in docstrings:
                continue
            summed = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and (
                is_text(node.left) or is_text(node.right))
            if not (summed or is_text(node)):
                continue
            tokens: dict[str, str] = {}
            pieces: list[tuple[str, bool]] = []
            pieces_of(node, tokens, pieces)
            literal = "".join(text for text, is_literal in pieces if is_literal)
            if len(re.findall(r"[a-zA-Z]{2,}", literal)) < (3 if not tokens and " " in literal else 2) or (
                    not tokens and " " not in literal):
                continue
            yield f"{path.name}:{node.lineno}", "".join(text for text, _literal in pieces), sorted(tokens.values())


def test_every_sentence_of_forms_is_said_in_indonesian_with_its_values():
    """Walks forms/: each sentence it can write is found whole or by one template whose placeholders take
    exactly its values (a looser template that swallows words would leave English inside the Indonesian)."""
    english = i18n.catalogue("id")
    missing = []
    with i18n.force_language("id"):
        patterns = i18n._template_patterns("id")
        for where, sample, holes in _forms_sentences():
            if any(re.search(pattern, sample) for pattern, _why in NOT_SAID_TO_PEOPLE):
                continue
            said = i18n.translate_known(sample)
            whole = english.gettext(sample) != sample
            found = None if whole else next((m for m in (p.match(sample) for p, _t in patterns) if m), None)
            # a template's placeholder may hold the code's values, a catalogued phrase, or a code name ("note");
            # words of the sentence itself in a placeholder would stay English
            filled = whole or (found is not None and all(
                not re.search(r"[a-zA-Z]{2,}", re.sub(r"X\d+", "", value)) or english.gettext(value) != value
                or re.fullmatch(r"'?[\w.]+'?", value) for value in found.groupdict().values()))
            if not filled or said == sample or not all(hole in said for hole in holes):
                missing.append((where, sample))
    assert not missing, "catalogue these in forms/messages.py (or say in NOT_SAID_TO_PEOPLE why not):\n" + "\n".join(
        f"{where}: {sample}" for where, sample in missing)


def test_forms_messages_are_all_still_said():
    """forms/messages.py holds only sentences forms/ still writes (found by the walk above, or as a literal)."""
    from forms.messages import FORM_MESSAGES

    source = "\n".join((ROOT / "forms" / f"{name}.py").read_text(encoding="utf-8") for name in FORMS_SOURCES)
    samples = [sample for _where, sample, _holes in _forms_sentences()]
    stale = []
    for entry in FORM_MESSAGES:
        pieces = PLACEHOLDER.split(entry)
        pattern = "".join(re.escape(p) if n % 2 == 0 else ".+?" for n, p in enumerate(pieces))
        # a phrase may be said inside a longer sentence ("type '…' is not supported: <why>")
        if not any(re.search(pattern, sample, re.DOTALL) for sample in samples) and not any(
                f"{quote}{entry}{quote}" in source for quote in "'\""):
            stale.append(entry)
    assert not stale


def test_forms_refusals_reach_the_api_in_indonesian(client, users):
    """One of forms/messages.py's sentences through HTTP: a definition whose field type has no such parameter."""
    admin = login(client, "admin")
    broken = {"settings": {"form_id": "param", "version": "1", "title": {"id": "Param"}, "default_language": "id"},
              "fields": [{"type": "integer", "name": "umur", "label": {"id": "Umur"}, "parameters": {"warna": 1}}],
              "choices": {}}
    english = client.post("/api/v1/forms", json=broken, headers=admin).get_json()
    indonesian = client.post("/api/v1/forms", json=broken, headers=dict(admin, **{"Accept-Language": "id"})).get_json()
    assert english["errors"]["fields[0].parameters.warna"][0].startswith("type integer has no parameter 'warna'")
    assert indonesian["errors"]["fields[0].parameters.warna"] == [
        translated(m) for m in english["errors"]["fields[0].parameters.warna"]]
    assert indonesian["errors"]["fields[0].parameters.warna"][0].startswith("jenis integer tidak memiliki parameter")


def test_the_body_guard_chooses_the_language_as_the_app_would(client, app):
    """Before the app: a page's request by ?lang= and the cookie (else Indonesian), the API by Accept-Language
    (else English); nobody is signed in yet, so a user's own setting cannot count."""
    from server.web import blp as pages

    assert pages.url_prefix == i18n.PAGES_PREFIX
    too_large = {"CONTENT_LENGTH": str(app.config["MAX_BODY_BYTES"] + 1)}

    def said(path, **extra):
        response = client.post(path, data=b"x", environ_overrides=too_large, **extra)
        assert response.status_code == 413
        assert response.get_json()["code"] == "too_large"
        return response.get_json()["message"]

    english = said("/api/v1/auth/login")
    indonesian = translated(english)
    assert indonesian != english
    assert said("/web/login") == indonesian  # a page: Indonesian unless switched
    assert said("/web/login", headers={"Accept-Language": "en"}) == indonesian  # pages ignore the header
    assert said("/web/login?lang=en") == english
    client.set_cookie(i18n.LANGUAGE_COOKIE, "en")
    assert said("/web/login") == english
    assert said("/web/login?lang=id") == indonesian
    assert said("/api/v1/auth/login", headers={"Accept-Language": "id"}) == indonesian
    assert said("/api/v1/auth/login") == english  # the page cookie is not the API's choice
