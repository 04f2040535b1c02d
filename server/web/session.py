"""Web sign-in: the session cookie, its check against the store on every request, and CSRF tokens.

A web session is a row in ``logins`` (no device, ``kind: web``), so the API's rules hold for it
too: logging out or an admin disabling the user, resetting the password or changing the role
ends it at once, on every worker. The cookie carries the login id, the user and the user's
token version, signed with the "sessions" key (server/security/keys.py); it holds nothing secret.
CSRF tokens are MACs of the login id under the same key, so each session has its own.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
import urllib.parse
import uuid
from typing import Any

from flask import current_app, g, request
from werkzeug.wrappers import Response

from sync.values import canonical_json

from ..security.keys import keyring
from ..storage import Store
from ..timeutil import iso, now_utc

PURPOSE = "sessions"
COOKIE = "kunjung_web"
PRE_COOKIE = "kunjung_web_pre"  # before sign-in: the sign-in form's own CSRF nonce
SESSION_SECONDS = 12 * 3600  # a working day at the village hall; then sign in again
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: bytes) -> str:
    return keyring().sign(PURPOSE, payload)


def _verify(payload: bytes, signature: str) -> bool:
    return keyring().verify(PURPOSE, payload, signature, time.time())


def cookie_value(login_id: str, user: dict[str, Any], issued: float) -> str:
    payload = canonical_json({"l": login_id, "u": user["id"], "v": user.get("token_version", 0),
                              "t": int(issued)}).encode()
    return f"{_b64(payload)}~{_sign(payload)}"


def read_cookie(value: str | None) -> dict[str, Any] | None:
    """The claims of a well-signed, unexpired session cookie, or None."""
    if not value or len(value) > 2000 or "~" not in value:
        return None
    encoded, _, signature = value.partition("~")
    try:
        payload = _unb64(encoded)
    except ValueError:
        return None
    if not _verify(payload, signature):
        return None
    try:
        claims = json.loads(payload)
    except ValueError:
        return None
    if not (isinstance(claims, dict) and isinstance(claims.get("l"), str) and isinstance(claims.get("u"), str)
            and isinstance(claims.get("t"), int)):
        return None
    if time.time() - claims["t"] > SESSION_SECONDS:
        return None
    return claims


def start_web_login(store: Store, user: dict[str, Any], address: str) -> str:
    """A new web login row; returns its id."""
    login_id = uuid.uuid4().hex
    with store.transaction() as tx:
        tx.put("logins", {"id": login_id, "username": user["id"], "device_id": None, "revoked": False,
                          "kind": "web", "current_refresh": None, "created_at": iso(now_utc()),
                          "address": address})
    return login_id


def session_user(store: Store) -> tuple[dict[str, Any], str] | None:
    """The signed-in user and login of this request, checked against the store as it is now."""
    claims = read_cookie(request.cookies.get(COOKIE))
    if claims is None:
        return None
    user = store.get("users", claims["u"])
    if user is None or user.get("disabled") or user.get("token_version", 0) != claims.get("v"):
        return None
    login = store.get("logins", claims["l"])
    if login is None or login.get("revoked") or login.get("username") != user["id"]:
        return None
    return user, login["id"]


def secure_cookies() -> bool:
    """Secure cookies when the request came over HTTPS (directly or through a trusted proxy)."""
    if request.is_secure:
        return True
    return bool(current_app.config.get("TRUSTED_PROXIES")) and \
        request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https"


def set_session_cookie(response: Response, login_id: str, user: dict[str, Any]) -> None:
    response.set_cookie(COOKIE, cookie_value(login_id, user, time.time()), max_age=SESSION_SECONDS,
                        httponly=True, samesite="Lax", secure=secure_cookies(), path="/")
    response.delete_cookie(PRE_COOKIE, path="/")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=secure_cookies())


# -- CSRF ---------------------------------------------------------------------------------------
def _pre_nonce() -> str:
    """The sign-in form's nonce, kept in a cookie of its own until sign-in."""
    nonce = request.cookies.get(PRE_COOKIE, "")
    if not (16 <= len(nonce) <= 64 and nonce.isalnum()):
        nonce = getattr(g, "web_new_nonce", None) or secrets.token_hex(16)
        g.web_new_nonce = nonce
    return nonce


def csrf_token() -> str:
    """The token every form of this session carries."""
    login_id = getattr(g, "web_login", None)
    subject = f"csrf:{login_id}" if login_id else f"pre:{_pre_nonce()}"
    return _sign(subject.encode())


def csrf_ok() -> bool:
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    login_id = getattr(g, "web_login", None)
    if login_id:
        subject = f"csrf:{login_id}"
    else:
        nonce = request.cookies.get(PRE_COOKIE, "")
        if not nonce:
            return False
        subject = f"pre:{nonce}"
    return bool(given) and len(given) < 200 and _verify(subject.encode(), given)


def keep_pre_nonce(response: Response) -> None:
    """Send the sign-in nonce cookie when this request made one."""
    nonce = getattr(g, "web_new_nonce", None)
    if nonce:
        response.set_cookie(PRE_COOKIE, nonce, max_age=3600, httponly=True, samesite="Strict",
                            secure=secure_cookies(), path="/")


def same_origin() -> bool:
    """A state-changing request's Origin, when the browser sends one, must name this server's host (the
    scheme may differ: a proxy in front may end TLS). The CSRF token is the defence; this is a second one."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    hosts = {request.host}
    if current_app.config.get("TRUSTED_PROXIES"):
        hosts.add(request.headers.get("X-Forwarded-Host", "").split(",")[0].strip())
    netloc = urllib.parse.urlsplit(origin).netloc
    return any(hmac.compare_digest(netloc, host) for host in hosts if host)
