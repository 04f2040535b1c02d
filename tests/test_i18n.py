"""The message catalogue is complete, and the API, pages and CLI pick the language docs/protocol.md promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Response, g

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
    catalogued = {m.id if isinstance(m.id, str) else m.id[0] for path in catalogue_files()
                  if path.parent.parent.name == "id" for m in read(path) if m.id}
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
    for msgid, msgstr in table.items():
        pieces = PLACEHOLDER.split(msgid)
        if len(pieces) == 1:
            continue
        regex = "".join(re.escape(p) if n % 2 == 0 else f"(?P<{p}>.+?)" for n, p in enumerate(pieces))
        found = re.fullmatch(regex, english, re.DOTALL)
        if found:
            return msgstr % found.groupdict()
    raise AssertionError(f"not in the catalogue: {english!r}")


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
