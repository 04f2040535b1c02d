"""Accounts and tokens through HTTP: login, roles, revocation, rotation, forged tokens, rate limits, audit."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from http_helpers import PASSWORD, login, make_user

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
    from server.store import get_store

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
    from flask_jwt_extended import create_access_token

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
    import jwt as pyjwt

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
    from server.cli import cli

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
