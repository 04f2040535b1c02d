"""Logins and their tokens: JWTs signed with the "tokens" key (its id in the header), issued at
login, rotated on refresh, ended at logout.

A token never carries the server's secret itself: it is signed with the key derived for
tokens (:mod:`server.security.keys`), and verification picks the key by the header's ``kid``,
so a retired secret keeps verifying the tokens it signed for the refresh-token lifetime.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from flask import Flask
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token
from jwt.exceptions import InvalidTokenError, MissingRequiredClaimError

from ..audit import audit, record_audit
from ..devices import device_key, get_device, is_known_device, record_device
from ..errors import ApiError, error_response
from ..i18n import _
from ..ratelimit import LoginLimits, admit_login, forget_expired, login_succeeded
from ..storage import Store
from ..timeutil import iso, now_utc
from .keys import keyring
from .passwords import Passwords

PURPOSE = "tokens"


# -- signing and verifying ----------------------------------------------------------------------------
def _unauthorized(message: str, code: str = "unauthenticated") -> Any:
    return error_response(401, code, message, headers={"WWW-Authenticate": "Bearer"})


def install_tokens(app: Flask) -> JWTManager:
    """flask-jwt-extended on ``app``, signing with the app's "tokens" key and answering in the one error shape."""
    app.config["JWT_ALGORITHM"] = "HS256"
    app.config["JWT_DECODE_ALGORITHMS"] = ["HS256"]
    app.config["JWT_TOKEN_LOCATION"] = ["headers"]
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(minutes=app.config["ACCESS_TOKEN_MINUTES"])
    app.config["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(days=app.config["REFRESH_TOKEN_DAYS"])
    app.config["JWT_ERROR_MESSAGE_KEY"] = "message"
    jwt = JWTManager(app)

    @jwt.encode_key_loader
    def _signing_key(identity: Any) -> bytes:
        return keyring().signing_key(PURPOSE)[1]

    @jwt.additional_headers_loader
    def _key_id(identity: Any) -> dict[str, str]:
        return {"kid": keyring().signing_key(PURPOSE)[0]}

    @jwt.decode_key_loader
    def _verifying_key(header: dict[str, Any], claims: dict[str, Any]) -> bytes:
        # A token without an expiry would never stop working; ours always have one.
        if "exp" not in claims:
            raise MissingRequiredClaimError("exp")
        key = keyring().verifying_keys(PURPOSE, time.time()).get(str(header.get("kid")))
        if key is None:
            raise InvalidTokenError("it was not signed by a key this server accepts")
        return key

    jwt.unauthorized_loader(lambda reason: _unauthorized(_("Send an access token: Authorization: Bearer <token>.")))
    jwt.invalid_token_loader(lambda reason: _unauthorized(_("The token is not valid: %(reason)s.", reason=reason),
                                                          "invalid_token"))
    jwt.expired_token_loader(lambda h, d: _unauthorized(_("The token has expired; refresh it."), "token_expired"))
    jwt.revoked_token_loader(lambda h, d: _unauthorized(_("The token was revoked; log in again."), "token_revoked"))
    jwt.user_lookup_error_loader(lambda h, d: _unauthorized(_("The user no longer exists."), "token_revoked"))
    return jwt


def issue_tokens(user: dict[str, Any], device_id: str | None, login_id: str) -> dict[str, str]:
    """An access and a refresh token of one login, bound to its user and device."""
    claims = {"login": login_id, "device": device_id, "role": user["role"], "ver": user.get("token_version", 0)}
    return {
        "access_token": create_access_token(identity=user["id"], additional_claims=claims),
        "refresh_token": create_refresh_token(identity=user["id"], additional_claims=claims),
    }


# -- logins -------------------------------------------------------------------------------------------
def log_in(store: Store, hasher: Passwords, limits: LoginLimits, *, username: str, password: str,
           device_id: str | None, address: str, app_version: str | None = None
           ) -> tuple[dict[str, Any], dict[str, str]]:
    """Check a username and password (counted against the limits first) and start a login.

    Returns the user and the first token pair; raises 429 (rate limited), 401 (wrong
    credentials, the same for an unknown user), 403 ``account_disabled`` or 403 ``device_revoked``.
    """
    user = store.get("users", username)
    device = get_device(store, username, device_id) if user is not None and device_id else None
    known = device_key(username, device_id) if device_id and is_known_device(device) else None
    admission = admit_login(store, limits, username=username, address=address, known_device=known)
    if user is None or not hasher.verify(user["password_hash"], password):
        if user is None:
            hasher.verify(None, password)  # an unknown user costs a hash, as a wrong password does
        audit(store, "login_failed", actor=username, address=address, details={"device_id": device_id})
        forget_expired(store)
        raise ApiError(401, "invalid_credentials", _("The username or password is wrong."))
    login_succeeded(store, admission)
    if user.get("disabled"):
        audit(store, "login_refused_disabled", actor=username, address=address)
        raise ApiError(403, "account_disabled", _("This account is disabled; ask your admin."))
    if device is not None and device.get("revoked"):
        audit(store, "login_refused_device_revoked", actor=username, target=device["id"], address=address)
        raise ApiError(403, "device_revoked", _("This device was revoked; ask your admin, or use another device."))
    tokens = start_login(store, user, device_id, address, app_version)
    audit(store, "login_succeeded", actor=username, address=address, details={"device_id": device_id})
    return user, tokens


def start_login(store: Store, user: dict[str, Any], device_id: str | None, address: str | None,
                app_version: str | None = None) -> dict[str, str]:
    """Record a new login (and the device) and issue its first token pair."""
    login_id = uuid.uuid4().hex
    tokens = issue_tokens(user, device_id, login_id)
    refresh = decode_token(tokens["refresh_token"])
    at = iso(now_utc())
    with store.transaction() as tx:
        tx.put("logins", {"id": login_id, "username": user["id"], "device_id": device_id, "revoked": False,
                          "current_refresh": refresh["jti"], "created_at": at, "address": address})
        if device_id:
            record_device(tx, user["id"], device_id, address, app_version, at)
    return tokens


def rotate_refresh(store: Store, jwt_data: dict[str, Any], address: str | None = None) -> dict[str, str]:
    """Exchange a refresh token for a new pair. Reusing a spent one revokes the whole login."""
    with store.transaction() as tx:
        login = tx.get("logins", jwt_data.get("login") or "")
        if login is None or login["revoked"]:
            raise ApiError(401, "token_revoked", _("This login has ended; log in again."))
        if login["current_refresh"] != jwt_data["jti"]:
            # A spent refresh token came back: someone holds a copy. End the login for everyone.
            tx.put("logins", {**login, "revoked": True, "revoked_reason": "refresh_reuse",
                              "revoked_at": iso(now_utc())})
            record_audit(tx, "token_reuse_detected", actor=login["username"], target=login["id"], address=address)
            revoked = True
        else:
            user = tx.get("users", login["username"])
            tokens = issue_tokens(user, login.get("device_id"), login["id"])
            tx.put("logins", {**login, "current_refresh": decode_token(tokens["refresh_token"])["jti"]})
            revoked = False
    if revoked:
        raise ApiError(401, "token_revoked", _("This refresh token was already used; the login is revoked."))
    return tokens


def end_login(store: Store, login_id: str, reason: str) -> None:
    """End a login: every token it issued stops working."""
    with store.transaction() as tx:
        login = tx.get("logins", login_id)
        if login and not login["revoked"]:
            tx.put("logins", {**login, "revoked": True, "revoked_reason": reason, "revoked_at": iso(now_utc())})
