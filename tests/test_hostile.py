"""Hostile input: each answered with the one error shape and the right status, and nothing stored that should not be."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import hmac
import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from http_helpers import login, make_user
from mongo_stand_in import StandIn
from sync_helpers import OTHER_VILLAGE, VILLAGE, Device

from forms.library import library_form
from server import create_app
from server.security.keys import derive_key, key_id
from server.storage import open_store
from server.store import COLLECTIONS, get_store, raw_store

VERVAL_VERSION = library_form("verval_keluarga")["settings"]["version"]

BACKENDS = ["sqlite", "mongo-stand-in[mongomock-ng]"]
COUNTED = ("events", "visits", "households", "conflicts", "users", "villages", "forms", "form_versions")
PUSH = "/api/v1/sync/push"
SECRET = "kunjung-hostile-secret-that-is-long-enough-0123456789"


def make_app(path: Path, **overrides: Any) -> Any:
    """An app on ``path``/kunjung.db with cheap password hashing, as tests/conftest.py makes them; made here
    because ``import conftest`` finds whichever conftest module was collected first."""
    return create_app({"DATABASE_URL": f"sqlite:///{path}/kunjung.db", "SECRET_KEY": SECRET,
                       "SECRET_KEY_FILE": str(path / "secret_key"), "LOAD_LIBRARY_FORMS": False, "TESTING": True,
                       "PASSWORD_HASH_MEMORY_KIB": 1024, "PASSWORD_HASH_TIME_COST": 1, **overrides})


@dataclass
class Target:
    """An app on one backend, an officer's phone and an admin, and what the store held before the attack."""

    backend: str
    app: Any
    client: Any
    phone: Device
    admin: dict[str, str]

    def counts(self) -> dict[str, int]:
        with self.app.app_context():
            store = get_store()
            return {name: store.count(name) for name in COUNTED}

    def push_raw(self, body: bytes, **headers: str) -> Any:
        return self.client.post(PUSH, data=body, headers={**self.phone.headers, "Content-Type": "application/json",
                                                          **headers})

    def push(self, events: list[Any]) -> Any:
        return self.push_raw(json.dumps({"device_id": self.phone.device_id, "events": events}).encode())


@pytest.fixture(scope="module", params=BACKENDS)
def target(request, tmp_path_factory):
    overrides: dict[str, Any] = {"LOAD_LIBRARY_FORMS": True, "LOGIN_RATE_LIMIT": 1000}
    if request.param != "sqlite":
        overrides["STORE"] = open_store("mongodb://stand-in/kunjung", COLLECTIONS, client=StandIn())
    app = make_app(tmp_path_factory.mktemp("hostile"), **overrides)
    make_user(app, "admin", "admin")
    make_user(app, "ani", "officer", [VILLAGE])
    make_user(app, "budi", "officer", [OTHER_VILLAGE])
    client = app.test_client()
    # Something to leak: a household in another village, which ani must never see.
    budi = Device(client, "budi")
    assert budi.push([budi.edit(str(uuid.uuid4()), {"head_name": "Rahasia"}, village=OTHER_VILLAGE)]
                     )["results"][0]["status"] == "applied"
    yield Target(request.param, app, client, Device(client, "ani"), login(client, "admin"))
    raw_store(app).close()


def assert_error(response: Any, status: int, code: str | tuple[str, ...]) -> dict[str, Any]:
    """The one error shape (docs/design.md §7), as JSON, with this status and code."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) >= {"code", "message", "errors", "request_id"}, body
    assert body["code"] in ((code,) if isinstance(code, str) else code), body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["errors"], dict)
    assert all(isinstance(k, str) and isinstance(v, list) and all(isinstance(m, str) for m in v)
               for k, v in body["errors"].items()), body["errors"]
    assert body["request_id"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


# -- whole requests refused -----------------------------------------------------------------------------------

def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def _gzip_bomb(inflated: int) -> bytes:
    """A gzip member of zeros that inflates to ``inflated`` bytes (about a thousandth of that sent)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        chunk = b"0" * (1 << 20)
        for _ in range(inflated // len(chunk)):
            gz.write(chunk)
    return out.getvalue()


def _envelope(events: str) -> Callable[[Target], bytes]:
    return lambda t: f'{{"device_id": "{t.phone.device_id}", "events": {events}}}'.encode()


WHOLE: list[tuple[str, Callable[[Target], bytes], dict[str, str], int, str]] = [
    ("nested-100-levels", _envelope(_nested(100).decode()), {}, 400, "malformed_json"),
    ("nested-100000-levels", lambda t: _nested(100_000), {}, 400, "malformed_json"),
    ("NaN", _envelope("[NaN]"), {}, 400, "malformed_json"),
    ("Infinity", _envelope('[{"geotag": {"lat": Infinity}}]'), {}, 400, "malformed_json"),
    ("-Infinity", _envelope("[-Infinity]"), {}, 400, "malformed_json"),
    ("invalid-utf8", lambda t: b'{"device_id": "\xff\xfe\xfd", "events": []}', {}, 400, "malformed_json"),
    ("overlong-utf8", lambda t: b'{"device_id": "\xc0\xaf", "events": []}', {}, 400, "malformed_json"),
    ("truncated-json", _envelope('[{"id": "x"'), {}, 400, "malformed_json"),
    ("text-plain", _envelope("[]"), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("gzip-bomb", lambda t: _gzip_bomb(80 << 20), {"Content-Encoding": "gzip"}, 413, "too_large"),
    ("gzip-not-gzip", _envelope("[]"), {"Content-Encoding": "gzip"}, 400, "bad_request"),
    ("gzip-truncated", lambda t: gzip.compress(_envelope("[]")(t))[:-12], {"Content-Encoding": "gzip"}, 400,
     "bad_request"),
    ("content-encoding-br", _envelope("[]"), {"Content-Encoding": "br"}, 415, "unsupported_media_type"),
    ("body-over-16MiB", lambda t: b" " * (16 * 1024 * 1024 + 1), {}, 413, "too_large"),
    ("10000-events", lambda t: json.dumps({"device_id": t.phone.device_id, "events": [
        t.phone.edit(str(uuid.uuid4()), {"head_name": f"Kepala {n}"}) for n in range(10_000)]}).encode(), {}, 413,
     "batch_too_large"),
    ("events-a-string", _envelope('"all of them"'), {}, 422, "invalid"),
    ("events-an-object", _envelope('{"$where": "1"}'), {}, 422, "invalid"),
    ("events-missing", lambda t: f'{{"device_id": "{t.phone.device_id}"}}'.encode(), {}, 422, "invalid"),
    ("device-id-a-number", lambda t: b'{"device_id": 5, "events": []}', {}, 422, "invalid"),
    ("device-id-an-operator", lambda t: b'{"device_id": {"$ne": null}, "events": []}', {}, 422, "invalid"),
    ("device-id-huge", lambda t: json.dumps({"device_id": "d" * 100_000, "events": []}).encode(), {}, 422,
     "invalid"),
    ("device-id-of-another-phone", lambda t: b'{"device_id": "phone-budi", "events": []}', {}, 422, "invalid"),
    ("hlc-an-object", lambda t: json.dumps({"device_id": t.phone.device_id, "hlc": {"$gt": ""},
                                            "events": []}).encode(), {}, 422, "invalid"),
    ("body-a-list", lambda t: b"[]", {}, 422, "invalid"),
    ("body-null", lambda t: b"null", {}, 422, "invalid"),
]


@pytest.mark.parametrize(("case", "body", "headers", "status", "code"), WHOLE, ids=[c[0] for c in WHOLE])
def test_a_hostile_push_body_is_refused_whole_and_stores_nothing(target, case, body, headers, status, code):
    before = target.counts()
    assert_error(target.push_raw(body(target), **headers), status, code)
    assert target.counts() == before


# -- events refused one by one --------------------------------------------------------------------------------

def _visit(t: Target) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": "visit", "device_id": t.phone.device_id, "hlc": t.phone.hlc(),
            "form_id": "verval_keluarga", "form_version": VERVAL_VERSION, "village": VILLAGE,
            "household_id": str(uuid.uuid4()),
            "geotag": {"lat": -6.93, "lon": 107.675, "accuracy_m": 6, "captured_at": "2026-11-22T03:00:00Z"},
            "started_at": "2026-11-22T02:40:00Z", "ended_at": "2026-11-22T03:00:00Z",
            "answers": {"head_name": "Siti", "members": [{"_id": str(uuid.uuid4()), "member_name": "Rahmat"}]}}


def _edit(t: Target) -> dict[str, Any]:
    return t.phone.edit(str(uuid.uuid4()), {"head_name": "Siti"})


def _deep(depth: int) -> Any:
    value: Any = "dasar"
    for _ in range(depth):
        value = {"lapis": value}
    return value


def _with(make: Callable[[Target], dict[str, Any]], path: str, value: Any) -> Callable[[Target], Any]:
    """An event from ``make`` with ``value`` put at the dotted ``path`` (a key of "" replaces the event)."""

    def build(t: Target) -> Any:
        if path == "":
            return copy.deepcopy(value)
        event = make(t)
        *parents, last = path.split(".")
        node = event
        for key in parents:
            node = node[key]
        node[last] = copy.deepcopy(value)
        return event

    return build


MEMBER = "5b0c8f0e-4f7a-4c3e-9d55-0f3b2a1c9e77"
EVENTS: list[tuple[str, Callable[[Target], Any]]] = [
    ("event-a-number", _with(_visit, "", 5)),
    ("event-a-string", _with(_visit, "", "DROP TABLE c_events")),
    ("event-null", _with(_visit, "", None)),
    ("event-a-list", _with(_visit, "", [])),
    ("id-a-number", _with(_visit, "id", 123)),
    ("id-an-operator", _with(_visit, "id", {"$gt": ""})),
    ("id-path-traversal", _with(_visit, "id", "../../etc/passwd")),
    ("id-too-long", _with(_visit, "id", "i" * 200)),
    ("type-unknown", _with(_visit, "type", "drop_table")),
    ("type-an-operator", _with(_visit, "type", {"$ne": None})),
    ("hlc-a-number", _with(_visit, "hlc", 1763790000000)),
    ("hlc-sql", _with(_visit, "hlc", "1763790000000-0001'; DROP TABLE c_events;--")),
    ("village-a-list", _with(_visit, "village", ["32.04.05.2001"])),
    ("village-an-operator", _with(_visit, "village", {"$ne": None})),
    ("village-sql", _with(_visit, "village", "32.04.05.2001' OR '1'='1")),
    ("household-null", _with(_visit, "household_id", None)),
    ("household-path-traversal", _with(_visit, "household_id", "../../../etc/passwd")),
    ("household-an-operator", _with(_visit, "household_id", {"$exists": True})),
    ("form-path-traversal", _with(_visit, "form_id", "../../etc/passwd")),
    ("form-version-an-operator", _with(_visit, "form_version", {"$gt": ""})),
    ("started-at-a-number", _with(_visit, "started_at", 1763790000)),
    ("ended-at-not-a-date", _with(_visit, "ended_at", "besok pagi")),
    ("unknown-dollar-key", _with(_visit, "$where", "this.officer == 'ani'")),
    ("answers-a-string", _with(_visit, "answers", "semua baik")),
    ("answers-a-list", _with(_visit, "answers", [])),
    ("answers-dollar-key", _with(_visit, "answers", {"$where": "1", "head_name": "Siti"})),
    ("answers-dotted-key", _with(_visit, "answers", {"head_name": "Siti", "members.0.nik": "1"})),
    ("answers-operator-value", _with(_visit, "answers.head_name", {"$ne": None})),
    ("answers-row-dollar-key", _with(_visit, "answers.members", [{"_id": MEMBER, "$set": {"member_name": "x"}}])),
    ("answers-row-a-string", _with(_visit, "answers.members", ["Rahmat"])),
    ("answers-huge-string", _with(_visit, "answers.head_name", "x" * 200_000)),
    ("answers-huge-key", _with(_visit, "answers", {"k" * 100_000: 1})),
    ("answers-nested-40-levels", _with(_visit, "answers.notes", _deep(40))),
    ("answers-integer-beyond-64-bits", _with(_visit, "answers.member_count", 2**70)),
    ("geotag-a-string", _with(_visit, "geotag", "di rumah")),
    ("geotag-lat-a-string", _with(_visit, "geotag.lat", "-6.93")),
    ("geotag-lat-out-of-range", _with(_visit, "geotag.lat", 91)),
    ("geotag-accuracy-negative", _with(_visit, "geotag.accuracy_m", -1)),
    ("geotag-operator", _with(_visit, "geotag", {"$near": [107.6, -6.9]})),
    ("set-a-list", _with(_edit, "set", [])),
    ("set-empty", _with(_edit, "set", {})),
    ("set-dollar-key", _with(_edit, "set", {"$set": {"head_name": "x"}})),
    ("set-dotted-key", _with(_edit, "set", {"head.name": "x"})),
    ("set-nul-key", _with(_edit, "set", {"head\x00name": "x"})),
    ("set-member-path-traversal", _with(_edit, "set", {"members/../../etc/passwd": "x"})),
    ("set-member-dollar-field", _with(_edit, "set", {f"members/{MEMBER}/$inc": 1})),
    ("set-operator-value", _with(_edit, "set", {"head_name": {"$gt": ""}})),
    ("set-integer-beyond-64-bits", _with(_edit, "set", {"member_count": 2**70})),
    ("set-nested-40-levels", _with(_edit, "set", {"notes": _deep(40)})),
    # A visit's answers are bounded at 10,000 characters; an edit must not be a way around it.
    ("set-huge-string", _with(_edit, "set", {"head_name": "x" * 200_000})),
    ("base-a-list", _with(_edit, "base", [])),
    ("base-dollar-stamp", _with(_edit, "base", {"head_name": ["$where"]})),
    ("base-dollar-key", _with(_edit, "base", {"$where": ["1763790000000-0001/phone/x"]})),
    ("device-of-another-phone", _with(_edit, "device_id", "phone-budi")),
    ("village-out-of-scope", _with(_edit, "village", OTHER_VILLAGE)),
]


@pytest.mark.parametrize(("case", "event"), EVENTS, ids=[c[0] for c in EVENTS])
def test_a_hostile_event_is_rejected_on_its_own_and_stores_nothing(target, case, event):
    before = target.counts()
    response = target.push([event(target)])
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    [result] = response.get_json()["results"]
    assert result["status"] == "rejected", result
    assert result["code"] in ("invalid", "out_of_scope"), result
    assert result["message"]
    assert result["errors"], result
    assert all(isinstance(v, list) and v for v in result["errors"].values())
    assert target.counts() == before


def test_one_good_event_among_all_the_hostile_ones_is_the_only_one_stored(target):
    before = target.counts()
    good = _visit(target)
    events = [event(target) for _, event in EVENTS[:20]] + [good] + [event(target) for _, event in EVENTS[20:]]
    results = target.push(events).get_json()["results"]
    assert [r["status"] for r in results].count("applied") == 1
    assert results[20]["id"] == good["id"]
    assert results[20]["status"] == "applied"
    after = target.counts()
    assert (after["events"], after["visits"], after["households"]) == (
        before["events"] + 1, before["visits"] + 1, before["households"] + 1)


# JSON that json.dumps will not write: numbers that overflow to infinity, lone UTF-16 surrogates.
RAW_EVENTS = [
    ("answers-number-overflows-to-infinity", '"floor_area": 1e999'),
    ("answers-lone-surrogate", '"head_name": "Siti \\ud800"'),
    ("answers-key-lone-surrogate", '"\\udfffhead": "Siti"'),
]


@pytest.mark.parametrize(("case", "answer"), RAW_EVENTS, ids=[c[0] for c in RAW_EVENTS])
def test_json_that_cannot_be_stored_is_refused_not_a_500(target, case, answer):
    before = target.counts()
    event = _visit(target)
    event["answers"] = {"members": []}
    text = json.dumps({"device_id": target.phone.device_id, "events": [event]})
    text = text.replace('"members": []', answer)
    response = target.push_raw(text.encode())
    # Refusing the body (400) or the event (200, rejected) are both right; a 500 is not.
    if response.status_code == 200:
        assert [r["status"] for r in response.get_json()["results"]] == ["rejected"]
    else:
        assert_error(response, 400, "malformed_json")
    assert target.counts() == before


def test_operator_like_text_is_stored_as_text_and_pulled_back_unchanged(target):
    household = str(uuid.uuid4())
    text = '{"$gt": ""}; $where: 1 == 1; \'; DROP TABLE c_households; --'
    reply = target.push([target.phone.edit(household, {"address": text, "head_name": "$set"}),
                         # an object where the register keeps text: refused, never read as an operator
                         target.phone.edit(household, {"address": {"$set": {"village": "32"}}})]).get_json()
    assert [r["status"] for r in reply["results"]] == ["applied", "rejected"]
    assert list(reply["results"][1]["errors"]) == ["set.address"]
    fields = target.client.get(f"/api/v1/households/{household}", headers=target.admin).get_json()["fields"]
    assert fields["address"]["value"] == text
    assert fields["head_name"]["value"] == "$set"


# -- tokens ---------------------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(t: Target) -> dict[str, Any]:
    token = t.phone.headers["Authorization"].removeprefix("Bearer ")
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing + "."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[header["alg"]]
    return f"{signing}.{_b64(hmac.new(key, signing.encode(), digest).digest())}"


TOKENS_KEY = derive_key(SECRET, "tokens")  # what the server signs tokens with (server/security/tokens.py)
TOKENS: list[tuple[str, Callable[[Target], str], str]] = [
    ("alg-none", lambda t: "Bearer " + _token({"alg": "none", "typ": "JWT"}, _claims(t), None), "invalid_token"),
    ("alg-None-capitalised", lambda t: "Bearer " + _token({"alg": "None", "typ": "JWT"}, _claims(t), None),
     "invalid_token"),
    ("alg-none-with-kid-traversal", lambda t: "Bearer " + _token(
        {"alg": "none", "typ": "JWT", "kid": "../../../../dev/null"}, _claims(t), None), "invalid_token"),
    ("alg-none-keeping-a-signature", lambda t: "Bearer " + _token(
        {"alg": "none", "typ": "JWT"}, {**_claims(t), "role": "admin"}, None)
     + t.phone.headers["Authorization"].rsplit(".", 1)[1], "invalid_token"),
    ("alg-HS512-with-the-real-key", lambda t: "Bearer " + _token(
        {"alg": "HS512", "typ": "JWT"}, _claims(t), SECRET.encode()), "invalid_token"),
    ("signed-with-another-key", lambda t: "Bearer " + _token(
        {"alg": "HS256", "typ": "JWT"}, {**_claims(t), "sub": "admin", "role": "admin"}, b"k" * 64),
     "invalid_token"),
    ("claims-changed-signature-kept", lambda t: "Bearer " + _token(
        {"alg": "HS256", "typ": "JWT"}, {**_claims(t), "sub": "admin"}, None)
     + t.phone.headers["Authorization"].rsplit(".", 1)[1], "invalid_token"),
    ("expired", lambda t: "Bearer " + _token({"alg": "HS256", "typ": "JWT", "kid": key_id(TOKENS_KEY)}, {
        **_claims(t), "exp": int(time.time()) - 60}, TOKENS_KEY), "token_expired"),
    ("not-a-jwt", lambda t: "Bearer " + "a" * 10_000, "invalid_token"),
    ("empty-bearer", lambda t: "Bearer ", ("invalid_token", "unauthenticated")),
    ("basic-auth", lambda t: "Basic " + base64.b64encode(b"admin:admin").decode(), "unauthenticated"),
]


@pytest.mark.parametrize(("case", "authorization", "code"), TOKENS, ids=[c[0] for c in TOKENS])
def test_a_forged_or_broken_token_is_refused_and_stores_nothing(target, case, authorization, code):
    before = target.counts()
    header = {"Authorization": authorization(target)}
    assert_error(target.client.get("/api/v1/auth/me", headers=header), 401, code)
    response = target.client.post(PUSH, headers=header, json={
        "device_id": target.phone.device_id, "events": [_visit(target)]})
    assert_error(response, 401, code)
    assert_error(target.client.get("/api/v1/users", headers=header), 401, code)
    assert target.counts() == before


def test_a_refresh_token_is_not_an_access_token_nor_the_reverse(target):
    tokens = target.client.post("/api/v1/auth/login", json={"username": "ani", "password": "correct horse battery",
                                                             "device_id": "phone-tokens"}).get_json()
    before = target.counts()
    refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    assert_error(target.client.post(PUSH, headers=refresh, json={"device_id": "phone-tokens", "events": []}),
                 401, "invalid_token")
    access = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert_error(target.client.post("/api/v1/auth/refresh", headers=access), 401, "invalid_token")
    assert target.counts() == before


# -- ids in paths, and SQL in query strings -------------------------------------------------------------------

TRAVERSALS = [
    "/api/v1/visits/..%2F..%2Fetc%2Fpasswd",
    "/api/v1/visits/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/v1/households/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/v1/households/..%2F..%2Fvar%2Fkunjung.db/history",
    "/api/v1/users/..%2Fadmin",
    "/api/v1/users/..%2F..%2Fetc%2Fpasswd/devices",
    "/api/v1/forms/..%2F..%2Fetc/versions/..%2Fpasswd",
    "/api/v1/villages/..%2F..%2Fsecret_key",
    "/api/docs/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/docs/assets/%2e%2e/%2e%2e/%2e%2e/server/config.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_in_ids_finds_nothing(target, path):
    response = target.client.get(path, headers=target.admin)
    assert_error(response, 404, "not_found")
    text = response.get_data(as_text=True)
    assert "root:" not in text
    assert "SECRET" not in text
    if path.startswith("/api/v1/"):
        before = target.counts()
        assert_error(target.client.post(f"{path}/review", headers=target.admin,
                                        json={"id": str(uuid.uuid4()), "state": "approved"}), 404, "not_found")
        assert target.counts() == before


SQL = "' OR '1'='1'; DROP TABLE c_households; --"
QUERIES: list[tuple[str, dict[str, str], int]] = [
    ("/api/v1/visits", {"village": SQL}, 422),
    ("/api/v1/visits", {"form_id": SQL, "officer": SQL}, 200),
    ("/api/v1/visits", {"review": SQL}, 422),
    ("/api/v1/visits", {"after": SQL}, 400),
    ("/api/v1/households", {"village": SQL}, 422),
    ("/api/v1/households", {"village[$ne]": "x", "village": VILLAGE}, 200),
    ("/api/v1/households", {"village": '{"$ne": null}'}, 422),
    ("/api/v1/conflicts", {"village": SQL}, 422),
    ("/api/v1/sync/pull", {"since": SQL}, 400),
    ("/api/v1/sync/pull", {"since": "eyJ2IjoxLCJzIjoiMSBPUiAxPTEiLCJhIjpbXX0"}, 400),  # {"s": "1 OR 1=1"}
    ("/api/v1/sync/pull", {"limit": "1; DROP TABLE c_events"}, 422),
    ("/api/v1/forms", {"all": SQL}, 422),
]


@pytest.mark.parametrize(("path", "query", "status"), QUERIES, ids=[f"{p} {sorted(q)}" for p, q, _ in QUERIES])
def test_sql_in_query_strings_is_data_never_code(target, path, query, status):
    before = target.counts()
    response = target.client.get(path, headers=target.phone.headers, query_string=query)
    if status == 200:
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        body = response.get_json()
        items = body.get("items", body.get("changes", []))
        # Whatever matched, ani sees only ani's village.
        assert all(item.get("village") in (None, VILLAGE) for item in items), items
    else:
        assert_error(response, status, ("invalid", "invalid_cursor", "bad_request"))
    assert target.counts() == before
    # The tables are all still there and answer.
    assert target.client.get("/api/v1/households", headers=target.admin).status_code == 200


# -- wrong types everywhere -----------------------------------------------------------------------------------

WRONG = [[True, True], {"$gt": ""}, 12345, "teks", None, [{"$where": "1"}]]
PATH_VALUES = {"username": "budi", "form_id": "verval_keluarga", "version": VERVAL_VERSION, "code": VILLAGE}


def _json_bodies(doc: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(method, path, property names) of every operation that takes a JSON body."""
    found = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is None:
                continue
            name = schema.get("$ref", "").rsplit("/", 1)[-1]
            properties = doc["components"]["schemas"].get(name, {}).get("properties", {})
            concrete = path
            for key, value in PATH_VALUES.items():
                concrete = concrete.replace("{" + key + "}", value)
            concrete = concrete.replace("{", "x-").replace("}", "")
            found.append((method.upper(), concrete, sorted(properties)))
    return found


def test_wrong_types_in_every_json_body_get_the_error_shape_and_store_nothing(target):
    doc = target.client.get("/api/openapi.json").get_json()
    operations = _json_bodies(doc)
    assert len(operations) >= 10  # the document lists the JSON bodies; an empty list would test nothing
    problems = []
    for method, path, properties in operations:
        bodies = [*WRONG, *({name: wrong} for name in properties for wrong in WRONG)]
        for body in bodies:
            before = target.counts()
            response = target.client.open(path, method=method, json=body, headers=target.admin)
            where = f"{method} {path} {json.dumps(body)[:80]}"
            if response.status_code >= 500:
                problems.append(f"{where}: {response.status_code}")
            elif response.status_code >= 400:
                try:
                    assert_error(response, response.status_code, response.get_json()["code"])
                except AssertionError as exc:
                    problems.append(f"{where}: not the error shape: {str(exc)[:300]}")
                if target.counts() != before:
                    problems.append(f"{where}: answered {response.status_code} but stored something")
    assert not problems, "\n".join(problems[:40])
