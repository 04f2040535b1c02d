"""Accounts and tokens through HTTP: login, roles, revocation, rotation, forged tokens, rate limits, audit."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from click.testing import CliRunner
from flask_jwt_extended import create_access_token
from http_helpers import PASSWORD, TEST_SECRET, login, make_user

from server import ratelimit
from server.cli import cli
from server.config import rotate_secret
from server.security.keys import derive_key, key_id
from server.store import get_store

PHONE = "phone-ani-0001"


def _tokens(client, username, password=PASSWORD, device_id=None):
    body = {"username": username, "password": password}
    if device_id:
        body["device_id"] = device_id
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- login ---------------------------------------------------------------------------------------
def test_login_returns_tokens_and_the_user(client, users):
    body = _tokens(client, "ani", device_id=PHONE)
    assert body["user"] == {"username": "ani", "role": "officer", "villages": ["32.04.05.2001"]}
    me = client.get("/api/v1/auth/me", headers=_bearer(body["access_token"])).get_json()
    assert me["username"] == "ani"
    assert me["device_id"] == PHONE


def test_unknown_user_and_wrong_password_get_the_same_answer(client, users):
    wrong = client.post("/api/v1/auth/login", json={"username": "ani", "password": "not the password"})
    unknown = client.post("/api/v1/auth/login", json={"username": "nobody", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["code"] == unknown.get_json()["code"] == "invalid_credentials"
    assert wrong.get_json()["message"] == unknown.get_json()["message"]


def test_login_with_missing_fields_is_422(client, users):
    response = client.post("/api/v1/auth/login", json={"username": "ani"})
    assert response.status_code == 422
    assert "password" in response.get_json()["errors"]


def test_passwords_are_stored_hashed(app, users):
    with app.app_context():
        stored = get_store().get("users", "ani")
    assert PASSWORD not in json.dumps(stored)
    assert stored["password_hash"].startswith("$argon2id$")


# -- roles -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("username", "status"), [("admin", 200), ("supervisor", 403), ("ani", 403)])
def test_only_admins_manage_users(client, users, username, status):
    response = client.get("/api/v1/users", headers=login(client, username))
    assert response.status_code == status
    if status == 403:
        assert response.get_json()["code"] == "forbidden"


def test_no_token_is_401(client, users):
    response = client.get("/api/v1/users")
    assert response.status_code == 401
    assert response.get_json()["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_checks_come_in_contract_order(client, users):
    # unauthenticated beats malformed, wrong media type beats JSON errors, JSON beats schema
    assert client.post("/api/v1/users", data="{bad", content_type="application/json").status_code == 401
    officer = login(client, "ani")
    assert client.post("/api/v1/users", data="{bad", content_type="application/json",
                       headers=officer).status_code == 403
    admin = login(client, "admin")
    assert client.post("/api/v1/users", data="x", content_type="text/plain", headers=admin).status_code == 415
    assert client.post("/api/v1/users", data="{bad", content_type="application/json",
                       headers=admin).status_code == 400
    assert client.post("/api/v1/users", json={"username": "x"}, headers=admin).status_code == 422


# -- users ----------------------------------------------------------------------------------------
def test_admin_creates_assigns_and_lists_users(client, users):
    admin = login(client, "admin")
    created = client.post("/api/v1/users", headers=admin, json={
        "username": "citra", "password": "a long password", "role": "officer", "villages": ["32.04.05.2002"]})
    assert created.status_code == 201
    assert created.get_json()["villages"] == ["32.04.05.2002"]
    assert "password" not in created.get_json()
    again = client.post("/api/v1/users", headers=admin, json={
        "username": "citra", "password": "a long password", "role": "officer"})
    assert again.status_code == 409
    patched = client.patch("/api/v1/users/citra", headers=admin, json={"villages": ["32.04.05.2002", "32.04.05.2003"]})
    assert patched.get_json()["villages"] == ["32.04.05.2002", "32.04.05.2003"]
    names = [u["username"] for u in client.get("/api/v1/users", headers=admin).get_json()]
    assert names == sorted(["admin", "ani", "budi", "citra", "supervisor"])
    assert client.get("/api/v1/users/nobody", headers=admin).status_code == 404


@pytest.mark.parametrize(("role", "villages", "field"), [
    ("officer", ["32.04.05"], "villages"),  # officers get villages, not kecamatan
    ("officer", ["3204052001"], "villages"),  # BPS-style code without dots
    ("supervisor", ["32.04"], "villages"),
    ("officer", ["32.04.05.2001"], "password"),
    ("chief", [], "role"),
])
def test_bad_user_is_refused_with_field_errors(client, users, role, villages, field):
    password = "short" if field == "password" else "a long password"
    response = client.post("/api/v1/users", headers=login(client, "admin"), json={
        "username": "dewi", "password": password, "role": role, "villages": villages})
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_supervisor_may_be_assigned_a_kecamatan(client, users):
    response = client.post("/api/v1/users", headers=login(client, "admin"), json={
        "username": "eko", "password": "a long password", "role": "supervisor", "villages": ["32.04.06"]})
    assert response.status_code == 201


# -- revocation -------------------------------------------------------------------------------------
def test_logout_revokes_access_and_refresh(client, users):
    tokens = _tokens(client, "ani", device_id=PHONE)
    assert client.post("/api/v1/auth/logout", headers=_bearer(tokens["access_token"])).status_code == 204
    after = client.get("/api/v1/auth/me", headers=_bearer(tokens["access_token"]))
    assert after.status_code == 401
    assert after.get_json()["code"] == "token_revoked"
    assert client.post("/api/v1/auth/refresh", headers=_bearer(tokens["refresh_token"])).status_code == 401


def test_disabled_users_existing_token_is_refused_at_once(client, users):
    tokens = _tokens(client, "ani")
    admin = login(client, "admin")
    assert client.patch("/api/v1/users/ani", headers=admin, json={"disabled": True}).status_code == 200
    assert client.get("/api/v1/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401
    assert client.post("/api/v1/auth/refresh", headers=_bearer(tokens["refresh_token"])).status_code == 401
    refused = client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD})
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "account_disabled"
    client.patch("/api/v1/users/ani", headers=admin, json={"disabled": False})
    assert _tokens(client, "ani")["access_token"]


def test_password_reset_ends_every_login(client, users):
    tokens = _tokens(client, "ani")
    admin = login(client, "admin")
    reset = client.patch("/api/v1/users/ani", headers=admin, json={"password": "a brand new password"})
    assert reset.status_code == 200
    assert client.get("/api/v1/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401
    assert client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD}).status_code == 401
    assert _tokens(client, "ani", "a brand new password")


def test_revoked_device_tokens_stop_working(client, users):
    tokens = _tokens(client, "ani", device_id=PHONE)
    other = _tokens(client, "ani", device_id="phone-ani-0002")
    admin = login(client, "admin")
    devices = client.get("/api/v1/users/ani/devices", headers=admin).get_json()
    assert {d["device_id"] for d in devices} == {PHONE, "phone-ani-0002"}
    assert devices[0]["first_seen_at"]
    revoked = client.post(f"/api/v1/users/ani/devices/{PHONE}/revoke", headers=admin)
    assert revoked.status_code == 200
    assert revoked.get_json()["revoked"] is True
    assert client.get("/api/v1/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401
    assert client.get("/api/v1/auth/me", headers=_bearer(other["access_token"])).status_code == 200
    assert client.post("/api/v1/users/ani/devices/unknown/revoke", headers=admin).status_code == 404


# -- refresh rotation --------------------------------------------------------------------------------
def test_refresh_rotates_and_reuse_revokes_the_whole_login(client, users):
    first = _tokens(client, "ani", device_id=PHONE)
    second = client.post("/api/v1/auth/refresh", headers=_bearer(first["refresh_token"]))
    assert second.status_code == 200
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/v1/auth/me", headers=_bearer(second["access_token"])).status_code == 200
    # a stolen copy of the first refresh token comes back
    reused = client.post("/api/v1/auth/refresh", headers=_bearer(first["refresh_token"]))
    assert reused.status_code == 401
    assert reused.get_json()["code"] == "token_revoked"
    # ...and now nothing of that login works, not even the legitimate newest pair
    assert client.post("/api/v1/auth/refresh", headers=_bearer(second["refresh_token"])).status_code == 401
    assert client.get("/api/v1/auth/me", headers=_bearer(second["access_token"])).status_code == 401
    # other logins are untouched
    assert _tokens(client, "ani", device_id=PHONE)


def test_refresh_token_is_not_an_access_token_and_vice_versa(client, users):
    tokens = _tokens(client, "ani")
    as_access = client.get("/api/v1/auth/me", headers=_bearer(tokens["refresh_token"]))
    assert as_access.status_code == 401
    assert as_access.get_json()["code"] == "invalid_token"
    assert client.post("/api/v1/auth/refresh", headers=_bearer(tokens["access_token"])).status_code == 401


# -- forged and expired tokens --------------------------------------------------------------------------
def test_expired_token_is_401(app, client, users):
    tokens = _tokens(client, "ani")
    claims = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    with app.app_context():
        expired = create_access_token("ani", expires_delta=timedelta(seconds=-5),
                                      additional_claims={k: claims[k] for k in ("login", "device", "role", "ver")})
    response = client.get("/api/v1/auth/me", headers=_bearer(expired))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_expired"


def test_alg_none_token_is_401(client, users):
    tokens = _tokens(client, "admin")
    payload = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    forged = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."
    response = client.get("/api/v1/users", headers=_bearer(forged))
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_token"


def test_token_signed_with_another_key_is_401(client, users):
    tokens = _tokens(client, "ani")
    payload = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    payload["role"] = "admin"
    forged = pyjwt.encode({**payload, "sub": "admin"}, "another-secret-key-of-sufficient-length!!", algorithm="HS256")
    assert client.get("/api/v1/users", headers=_bearer(forged)).status_code == 401
    assert client.get("/api/v1/users", headers=_bearer("not.a.token")).status_code == 401
    assert client.get("/api/v1/users", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}).status_code == 401


# -- rate limiting --------------------------------------------------------------------------------------
def test_login_is_rate_limited_per_username(app_factory):
    app = app_factory(LOGIN_RATE_LIMIT=3)
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    client = app.test_client()
    for _ in range(3):
        assert client.post("/api/v1/auth/login", json={"username": "ani", "password": "wrong guess"}).status_code == 401
    limited = client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD})
    assert limited.status_code == 429
    assert limited.get_json()["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 301


def test_login_is_rate_limited_per_address_across_usernames(app_factory):
    app = app_factory(LOGIN_RATE_LIMIT=2)  # the address allowance is five times the username one
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    client = app.test_client()
    for i in range(10):
        client.post("/api/v1/auth/login", json={"username": f"guess{i}", "password": "wrong guess"})
    assert client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD}).status_code == 429
    # another address is not affected
    elsewhere = client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD},
                            environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert elsewhere.status_code == 200


def test_forwarded_address_is_believed_only_behind_a_trusted_proxy(app_factory):
    untrusted = app_factory(LOGIN_RATE_LIMIT=1)
    make_user(untrusted, "ani", "officer", ["32.04.05.2001"])
    client = untrusted.test_client()
    for i in range(5):  # spoofing a new X-Forwarded-For each time does not escape the address limit
        client.post("/api/v1/auth/login", json={"username": f"g{i}", "password": "wrong guess"},
                    headers={"X-Forwarded-For": f"203.0.113.{i}"})
    assert client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD},
                       headers={"X-Forwarded-For": "203.0.113.99"}).status_code == 429

    trusted = app_factory(LOGIN_RATE_LIMIT=1, TRUSTED_PROXIES=1, DATABASE_URL=None or
                          untrusted.config["DATABASE_URL"].replace("kunjung.db", "proxied.db"))
    make_user(trusted, "ani", "officer", ["32.04.05.2001"])
    make_user(trusted, "admin", "admin")
    client = trusted.test_client()
    for i in range(5):
        client.post("/api/v1/auth/login", json={"username": f"g{i}", "password": "wrong guess"},
                    headers={"X-Forwarded-For": "203.0.113.7"})
    assert client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD},
                       headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    admin = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD},
                        headers={"X-Forwarded-For": "198.51.100.2"}).get_json()["access_token"]
    log = client.get("/api/v1/audit?action=login_failed", headers=_bearer(admin)).get_json()
    assert {entry["address"] for entry in log} == {"203.0.113.7"}


# -- audit ----------------------------------------------------------------------------------------------
def test_security_events_are_audited(client, users):
    client.post("/api/v1/auth/login", json={"username": "ani", "password": "wrong guess"})
    tokens = _tokens(client, "ani", device_id=PHONE)
    admin = login(client, "admin")
    client.patch("/api/v1/users/ani", headers=admin, json={"villages": ["32.04.05.2002"]})
    client.patch("/api/v1/users/budi", headers=admin, json={"role": "supervisor"})
    client.post(f"/api/v1/users/ani/devices/{PHONE}/revoke", headers=admin)
    client.post("/api/v1/auth/logout", headers=_bearer(tokens["access_token"]))
    log = client.get("/api/v1/audit", headers=admin).get_json()
    actions = [entry["action"] for entry in log]
    for expected in ("login_failed", "login_succeeded", "villages_changed", "role_changed", "device_revoked"):
        assert expected in actions
    change = next(e for e in log if e["action"] == "villages_changed")
    assert change["actor"] == "admin"
    assert change["target"] == "ani"
    assert change["details"] == {"from": ["32.04.05.2001"], "to": ["32.04.05.2002"]}
    assert change["address"] == "127.0.0.1"
    assert change["at"].endswith("Z")
    assert log == sorted(log, key=lambda e: e["at"], reverse=True)


# -- CLI -----------------------------------------------------------------------------------------------
def test_create_user_from_the_cli_reads_the_password_from_stdin(tmp_path, monkeypatch, app_factory):
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("KUNJUNG_SECRET_KEY_FILE", str(tmp_path / "secret_key"))
    result = CliRunner().invoke(cli, ["create-user", "Admin", "--role", "admin", "--password-stdin"],
                                input="a very secret phrase\n")
    assert result.exit_code == 0, result.output
    assert "a very secret phrase" not in result.output
    short = CliRunner().invoke(cli, ["create-user", "kurang", "--role", "admin", "--password-stdin"], input="short\n")
    assert short.exit_code != 0
    assert "at least 12 characters for an admin" in short.output
    prompted = CliRunner().invoke(cli, ["create-user", "sari", "--role", "officer", "--village", "32.04.05.2001"],
                                  input="another secret one\nanother secret one\n")
    assert prompted.exit_code == 0, prompted.output
    assert "another secret one" not in prompted.output
    app = app_factory(DATABASE_URL=f"sqlite:///{tmp_path}/cli.db")
    client = app.test_client()
    assert _tokens(client, "admin", "a very secret phrase")["user"]["role"] == "admin"
    assert _tokens(client, "sari", "another secret one")["user"]["villages"] == ["32.04.05.2001"]


# -- keys per purpose and rotation ------------------------------------------------------------------------
def _header(token):
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _payload(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_tokens_are_signed_with_the_tokens_key_and_name_it(client, users):
    tokens = _tokens(client, "ani", device_id=PHONE)
    assert _header(tokens["access_token"])["kid"] == key_id(derive_key(TEST_SECRET, "tokens"))
    assert _header(tokens["refresh_token"])["kid"] == key_id(derive_key(TEST_SECRET, "tokens"))


def test_a_token_signed_with_the_raw_secret_is_refused(client, users):
    claims = _payload(_tokens(client, "ani", device_id=PHONE)["access_token"])
    for headers in ({}, {"kid": _header(_tokens(client, "ani")["access_token"])["kid"]}):
        forged = pyjwt.encode(claims, TEST_SECRET, algorithm="HS256", headers=headers)
        response = client.get("/api/v1/auth/me", headers=_bearer(forged))
        assert response.status_code == 401
        assert response.get_json()["code"] == "invalid_token"


def _key_file_app(app_factory, tmp_path, **overrides):
    """An app whose secret lives in the key file, as a server without KUNJUNG_SECRET_KEY has it."""
    return app_factory(SECRET_KEY=None, SECRET_KEY_FILE=str(tmp_path / "secret_key"), **overrides)


def test_a_token_signed_before_the_key_was_rotated_still_works(app_factory, tmp_path, monkeypatch):
    before = _key_file_app(app_factory, tmp_path)
    make_user(before, "ani", "officer", ["32.04.05.2001"])
    old = _tokens(before.test_client(), "ani", device_id=PHONE)
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", before.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY_FILE", str(tmp_path / "secret_key"))
    rotated = CliRunner().invoke(cli, ["rotate-key"])
    assert rotated.exit_code == 0, rotated.output
    assert "Restart the server" in rotated.output
    after = _key_file_app(app_factory, tmp_path)  # the restarted server
    client = after.test_client()
    assert client.get("/api/v1/auth/me", headers=_bearer(old["access_token"])).status_code == 200
    refreshed = client.post("/api/v1/auth/refresh", headers=_bearer(old["refresh_token"]))
    assert refreshed.status_code == 200
    new_kid = _header(refreshed.get_json()["access_token"])["kid"]
    assert new_kid != _header(old["access_token"])["kid"]
    assert client.get("/api/v1/auth/me", headers=_bearer(refreshed.get_json()["access_token"])).status_code == 200


def test_a_key_retired_longer_than_the_refresh_lifetime_verifies_nothing(app_factory, tmp_path):

    before = _key_file_app(app_factory, tmp_path, REFRESH_TOKEN_DAYS=30)
    make_user(before, "ani", "officer", ["32.04.05.2001"])
    old = _tokens(before.test_client(), "ani", device_id=PHONE)
    settings = {"SECRET_KEY": None, "SECRET_KEY_FILE": str(tmp_path / "secret_key"), "REFRESH_TOKEN_DAYS": 30}
    rotate_secret(settings, now=time.time() - 31 * 86400)  # retired 31 days ago
    after = _key_file_app(app_factory, tmp_path, REFRESH_TOKEN_DAYS=30)
    response = after.test_client().get("/api/v1/auth/me", headers=_bearer(old["access_token"]))
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_token"
    # retired 29 days ago: still inside the grace period
    rotate_secret(settings, now=time.time() - 29 * 86400)
    again = _key_file_app(app_factory, tmp_path, REFRESH_TOKEN_DAYS=30).test_client()
    newer = _tokens(after.test_client(), "ani", device_id=PHONE)  # signed by the secret just retired
    assert again.get("/api/v1/auth/me", headers=_bearer(newer["access_token"])).status_code == 200


def test_rotate_key_refuses_while_the_secret_comes_from_the_environment(env, monkeypatch):
    monkeypatch.setenv("KUNJUNG_SECRET_KEY", TEST_SECRET)
    result = CliRunner().invoke(cli, ["rotate-key"])
    assert result.exit_code != 0
    assert "KUNJUNG_SECRET_KEY" in result.output


# -- token claims bound to the login --------------------------------------------------------------------
def test_a_token_without_an_expiry_is_refused(app, client, users):
    claims = _payload(_tokens(client, "ani", device_id=PHONE)["access_token"])
    with app.app_context():
        forever = create_access_token("ani", expires_delta=False,
                                      additional_claims={k: claims[k] for k in ("login", "device", "role", "ver")})
    assert "exp" not in _payload(forever)
    response = client.get("/api/v1/auth/me", headers=_bearer(forever))
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_token"


@pytest.mark.parametrize(("change", "value"), [("sub", "budi"), ("device", "phone-budi-0009"), ("device", None)])
def test_a_token_whose_login_belongs_to_another_user_or_device_is_refused(app, client, users, change, value):
    login(client, "budi", device_id="phone-budi-0009")
    claims = _payload(_tokens(client, "ani", device_id=PHONE)["access_token"])
    bound = {k: claims[k] for k in ("login", "device", "role", "ver")}
    identity = claims["sub"]
    if change == "sub":
        identity = value
    else:
        bound["device"] = value
    with app.app_context():
        forged = create_access_token(identity, additional_claims=bound)
    response = client.get("/api/v1/auth/me", headers=_bearer(forged))
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_token"


def test_logging_in_with_a_revoked_device_is_403_and_makes_no_login(app, client, users):
    _tokens(client, "ani", device_id=PHONE)
    admin = login(client, "admin")
    assert client.post(f"/api/v1/users/ani/devices/{PHONE}/revoke", headers=admin).status_code == 200
    with app.app_context():
        logins = get_store().count("logins")
    response = client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD, "device_id": PHONE})
    assert response.status_code == 403
    assert response.get_json()["code"] == "device_revoked"
    assert "access_token" not in response.get_json()
    with app.app_context():
        assert get_store().count("logins") == logins
    assert client.post("/api/v1/auth/login", json={"username": "ani", "password": "wrong guess",
                                                   "device_id": PHONE}).status_code == 401
    assert _tokens(client, "ani", device_id="phone-ani-0002")  # another phone still may


# -- the login limits, raced and abused -------------------------------------------------------------------
def test_forty_concurrent_wrong_passwords_are_all_counted_and_only_the_allowance_is_checked(app_factory):

    app = app_factory(LOGIN_RATE_LIMIT=10)
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    statuses, start = [], threading.Barrier(40)

    def attempt():
        client = app.test_client()
        start.wait()
        statuses.append(client.post("/api/v1/auth/login", json={"username": "ani", "password": "wrong guess"})
                        .status_code)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [401] * 10 + [429] * 30
    with app.app_context():
        store = get_store()
        assert store.count("audit", {"action": "login_failed"}) == 10  # passwords actually checked
        [address] = [d for d in store.find("rate_limits") if d["id"].startswith("login:address:")]
        assert address["count"] == 40


def test_failures_for_a_username_slow_it_down_more_each_time(app_factory, monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(ratelimit, "wall_seconds", lambda: now[0])
    app = app_factory(LOGIN_RATE_LIMIT=3, LOGIN_RATE_WINDOW_SECONDS=3600)
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    client = app.test_client()

    def wrong(**extra):
        return client.post("/api/v1/auth/login", json={"username": "ani", "password": "wrong guess"}, **extra)

    assert [wrong().status_code for _ in range(3)] == [401, 401, 401]
    waits = []
    for _ in range(4):
        refused = wrong()
        assert refused.status_code == 429
        assert refused.get_json()["code"] == "rate_limited"
        waits.append(int(refused.headers["Retry-After"]))
        assert wrong().headers["Retry-After"] == str(waits[-1])  # a refused try does not add to the wait
        now[0] += waits[-1]
        assert wrong().status_code == 401  # checked once the wait is over
    assert waits == sorted(waits)
    assert waits[-1] > waits[0]
    now[0] += 10_000
    assert client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD}).status_code == 200
    assert wrong().status_code == 401  # a success ends the run


@pytest.mark.parametrize("victim", ["ani", "admin"])
def test_an_attacker_cannot_lock_the_owner_out_of_a_known_device(app_factory, victim):
    app = app_factory(LOGIN_RATE_LIMIT=3)
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    make_user(app, "admin", "admin")
    client = app.test_client()
    phone = f"phone-{victim}-0001"
    home = {"REMOTE_ADDR": "198.51.100.20"}
    assert client.post("/api/v1/auth/login", json={"username": victim, "password": PASSWORD, "device_id": phone},
                       environ_base=home).status_code == 200
    attacker = {"REMOTE_ADDR": "203.0.113.66"}
    answers = [client.post("/api/v1/auth/login", json={"username": victim, "password": f"guess number {i}"},
                           environ_base=attacker).status_code for i in range(20)]
    assert answers.count(401) == 3
    assert set(answers[3:]) == {429}
    # from another address, a new device with the right password is slowed down too...
    assert client.post("/api/v1/auth/login", json={"username": victim, "password": PASSWORD,
                                                   "device_id": "phone-new-0001"},
                       environ_base=home).status_code == 429
    # ...but the owner's known device gets in
    known = client.post("/api/v1/auth/login", json={"username": victim, "password": PASSWORD, "device_id": phone},
                        environ_base=home)
    assert known.status_code == 200, known.get_json()


# -- password rules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "password", "expected"), [
    ("officer", "            ", "only spaces"),
    ("officer", "aaaaaaaaaaaa", "too regular"),
    ("officer", "abcabcabcabc", "too regular"),
    ("officer", "abcdefghijkl", "too regular"),
    ("officer", "password1234", "most common"),
    ("officer", "QWERTYUIOP12", "most common"),  # compared case-insensitively
    ("admin", "kucinghitam", "at least 12 characters"),
])
def test_weak_passwords_are_refused_over_http(client, users, role, password, expected):
    admin = login(client, "admin")
    created = client.post("/api/v1/users", headers=admin, json={
        "username": "dewi", "password": password, "role": role,
        "villages": ["32.04.05.2002"] if role == "officer" else []})
    assert created.status_code == 422
    assert any(expected in message for message in created.get_json()["errors"]["password"])
    patched = client.patch("/api/v1/users/ani", headers=admin, json={"password": password, "role": role})
    assert patched.status_code == 422
    assert "password" in patched.get_json()["errors"]


def test_an_officer_may_have_an_eleven_character_password_an_admin_may_not(client, users):
    admin = login(client, "admin")
    assert client.post("/api/v1/users", headers=admin, json={
        "username": "dewi", "password": "kucinghitam", "role": "officer", "villages": ["32.04.05.2002"]}
    ).status_code == 201


@pytest.mark.parametrize(("password", "expected"), [
    ("password1234", "most common"), ("zzzzzzzzzzzzzz", "too regular"), ("   ", "only spaces")])
def test_weak_passwords_are_refused_by_the_cli(env, password, expected):
    result = CliRunner().invoke(cli, ["create-user", "dewi", "--role", "officer", "--village", "32.04.05.2001",
                                      "--password-stdin"], input=password + "\n")
    assert result.exit_code != 0
    assert expected in result.output


# -- hostile input to the auth and user endpoints -------------------------------------------------------------
@pytest.mark.parametrize("body", [
    {"username": ["ani"], "password": PASSWORD},
    {"username": None, "password": PASSWORD},
    {"username": "ani\x00", "password": PASSWORD},
    {"username": "a" * 65, "password": PASSWORD},
    {"username": "ani", "password": {"$ne": ""}},
    {"username": "ani", "password": "p" * 5000},
    {"username": "ani", "password": PASSWORD, "device_id": "phone-1\n"},
    {"username": "ani", "password": PASSWORD, "device_id": "../../etc"},
    {"username": "ani", "password": PASSWORD, "device_id": 7},
    {"username": "ani", "password": PASSWORD, "app_version": "v" * 100},
    ["ani", PASSWORD],
    "ani",
])
def test_hostile_login_bodies_answer_in_the_error_shape(client, users, body):
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code in (401, 422), response.get_json()
    assert set(response.get_json()) >= {"code", "message", "errors", "request_id"}


@pytest.mark.parametrize("villages", [["32.04.05.2001\n"], ["٣٢.٠٤.٠٥.٢٠٠١"], ["32.04.05.2001", 5], "32.04.05.2001",
                                      ["32.04.05.2001 "], ["x" * 100]])
def test_area_codes_are_checked_strictly(client, users, villages):
    response = client.post("/api/v1/users", headers=login(client, "admin"), json={
        "username": "dewi", "password": "a long password", "role": "officer", "villages": villages})
    assert response.status_code == 422
    assert any(key.startswith("villages") for key in response.get_json()["errors"])


@pytest.mark.parametrize("path", [
    "/api/v1/users/%00", "/api/v1/users/" + "a" * 5000, "/api/v1/users/ani%0A", "/api/v1/users/..%2Fadmin/devices",
    "/api/v1/users/ani/devices/%0A/revoke", "/api/v1/users/ani/devices/" + "d" * 300 + "/revoke",
    "/api/v1/audit?limit=100000", "/api/v1/audit?limit=-1", "/api/v1/audit?before=" + "9" * 100,
    "/api/v1/audit?action=%00",
])
def test_hostile_paths_and_queries_for_users_answer_in_the_error_shape(client, users, path):
    admin = login(client, "admin")
    method = client.post if path.endswith("/revoke") else client.get
    response = method(path, headers=admin)
    assert response.status_code in (200, 404, 422), response.get_data(as_text=True)[:300]
    if response.status_code != 200:
        assert set(response.get_json()) >= {"code", "message", "errors", "request_id"}


def test_hostile_patches_answer_in_the_error_shape(client, users):
    admin = login(client, "admin")
    for body in ({"role": "root"}, {"disabled": "maybe"}, {"villages": {"$gt": ""}}, {"password": None},
                 {"villages": ["32.04.05"] * 2000}):
        response = client.patch("/api/v1/users/ani", headers=admin, json=body)
        assert response.status_code == 422, (body, response.get_json())
