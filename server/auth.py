"""Who is calling and what they may touch: passwords, tokens, revocation, rate limits, scope.

Identity (user and device) always comes from the token, never from a request body. Every
request re-reads the user, the token's login family and the device from the store, so
disabling a user, resetting a password, logging out or revoking a lost phone takes effect
at once, on every gunicorn worker.
"""

from __future__ import annotations

import copy
import functools
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    verify_jwt_in_request,
)

from .errors import ApiError, error_response
from .storage import AnyOf, prefix_range
from .store import get_store

ROLES = ("admin", "supervisor", "officer")
MIN_PASSWORD_LENGTH = 10
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
VILLAGE_CODE = re.compile(r"^[1-9]\d\.\d{2}\.\d{2}\.[123]\d{3}$")
KECAMATAN_CODE = re.compile(r"^[1-9]\d\.\d{2}\.\d{2}$")

def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- passwords ---------------------------------------------------------------------------------
class Passwords:
    """argon2id hashing; parameters come from config so tests can use cheap ones."""

    def __init__(self, memory_kib: int = 65536, time_cost: int = 3, parallelism: int = 2):
        self.hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism)
        # Verifying against this when the user does not exist makes both failures cost the same.
        self.dummy = self.hasher.hash(uuid.uuid4().hex)

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self.dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


def password_problems(password: Any) -> list[str]:
    if not isinstance(password, str):
        return ["must be a string"]
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        problems.append("must be at most 1024 characters")
    return problems


def area_problems(role: str, areas: Any) -> list[str]:
    """Officers are assigned villages; supervisors villages or whole kecamatan; admins need none."""
    if not isinstance(areas, list) or not all(isinstance(a, str) for a in areas):
        return ["must be a list of Kemendagri codes"]
    problems = []
    for code in areas:
        if VILLAGE_CODE.match(code):
            continue
        if role == "supervisor" and KECAMATAN_CODE.match(code):
            continue
        allowed = "a village code (32.04.05.2001)" + (" or a kecamatan code (32.04.05)"
                                                       if role == "supervisor" else "")
        problems.append(f"{code!r} is not {allowed}")
    return problems


# -- scope ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """The villages a caller may read and write. Every endpoint asks this, never the body."""

    role: str
    areas: tuple[str, ...]

    @property
    def is_all(self) -> bool:
        return self.role == "admin"

    def covers(self, village_code: str | None) -> bool:
        if self.is_all:
            return True
        if not isinstance(village_code, str):
            return False
        return any(village_code == area or village_code.startswith(area + ".") for area in self.areas)

    def where(self, field: str = "village") -> dict[str, Any]:
        """A storage condition selecting documents whose ``field`` is in scope."""
        if self.is_all:
            return {}
        options = [area if VILLAGE_CODE.match(area) else prefix_range(area + ".") for area in self.areas]
        return {field: AnyOf(options)}

    def fingerprint(self) -> str:
        """Changes whenever the scope does; pull cursors carry it to notice reassignment."""
        return "*" if self.is_all else ",".join(sorted(self.areas))


def scope_of(user: dict[str, Any]) -> Scope:
    return Scope(user["role"], tuple(user.get("villages") or ()))


def current_user() -> dict[str, Any]:
    user = getattr(g, "kunjung_user", None)
    if user is None:
        raise ApiError(401, "unauthenticated", "Log in first.")
    return user


def current_scope() -> Scope:
    return scope_of(current_user())


def current_device() -> str | None:
    return getattr(g, "kunjung_device", None)


def require_in_scope(village_code: str | None, what: str = "record") -> None:
    """404 rather than 403 for a record outside the caller's scope, so existence does not leak."""
    if not current_scope().covers(village_code):
        raise ApiError(404, "not_found", f"No such {what}.")


# -- tokens -----------------------------------------------------------------------------------
def issue_tokens(user: dict[str, Any], device_id: str | None, login_id: str) -> dict[str, str]:
    claims = {"login": login_id, "device": device_id, "role": user["role"], "ver": user.get("token_version", 0)}
    return {
        "access_token": create_access_token(identity=user["id"], additional_claims=claims),
        "refresh_token": create_refresh_token(identity=user["id"], additional_claims=claims),
    }


def start_login(user: dict[str, Any], device_id: str | None, address: str | None,
                app_version: str | None = None) -> dict[str, str]:
    """Record a new login (and the device) and issue its first token pair."""
    store = get_store()
    login_id = uuid.uuid4().hex
    tokens = issue_tokens(user, device_id, login_id)
    refresh = _decode(tokens["refresh_token"])
    at = iso(now_utc())
    with store.transaction() as tx:
        tx.put("logins", {"id": login_id, "username": user["id"], "device_id": device_id, "revoked": False,
                          "current_refresh": refresh["jti"], "created_at": at, "address": address})
        if device_id:
            record_device(tx, user["id"], device_id, address, app_version, at)
    return tokens


def rotate_refresh(jwt_data: dict[str, Any]) -> dict[str, str]:
    """Exchange a refresh token for a new pair. Reusing a spent one revokes the whole login."""
    store = get_store()
    with store.transaction() as tx:
        login = tx.get("logins", jwt_data.get("login") or "")
        if login is None or login["revoked"]:
            raise ApiError(401, "token_revoked", "This login has ended; log in again.")
        if login["current_refresh"] != jwt_data["jti"]:
            # A spent refresh token came back: someone holds a copy. End the login for everyone.
            tx.put("logins", {**login, "revoked": True, "revoked_reason": "refresh_reuse",
                              "revoked_at": iso(now_utc())})
            record_audit(tx, "token_reuse_detected", actor=login["username"], target=login["id"])
            revoked = True
        else:
            user = tx.get("users", login["username"])
            tokens = issue_tokens(user, login.get("device_id"), login["id"])
            tx.put("logins", {**login, "current_refresh": _decode(tokens["refresh_token"])["jti"]})
            revoked = False
    if revoked:
        raise ApiError(401, "token_revoked", "This refresh token was already used; the login is revoked.")
    return tokens


def end_login(login_id: str, reason: str) -> None:
    store = get_store()
    with store.transaction() as tx:
        login = tx.get("logins", login_id)
        if login and not login["revoked"]:
            tx.put("logins", {**login, "revoked": True, "revoked_reason": reason, "revoked_at": iso(now_utc())})


def _decode(token: str) -> dict[str, Any]:
    from flask_jwt_extended import decode_token

    return decode_token(token)


def device_key(username: str, device_id: str) -> str:
    """The id of a user's device record: a phone shared by two officers is two records."""
    return f"{username}/{device_id}"


def record_device(tx: Any, username: str, device_id: str, address: str | None, app_version: str | None,
                  at: str) -> dict[str, Any]:
    key = device_key(username, device_id)
    device = tx.get("devices", key) or {"id": key, "username": username, "device_id": device_id,
                                         "first_seen_at": at, "revoked": False, "last_sync_at": None}
    device.update({"last_login_at": at, "last_address": address})
    if app_version:
        device["app_version"] = app_version[:64]
    return tx.put("devices", device)


# -- rate limiting ----------------------------------------------------------------------------
def check_rate(keys: list[tuple[str, int]], window: int) -> None:
    """429 with Retry-After when any key has used up its allowance in the current window."""
    store = get_store()
    now = time.time()
    slot = int(now // window)
    for key, limit in keys:
        doc = store.get("rate_limits", f"{key}@{slot}")
        if doc and doc["count"] >= limit:
            retry = int((slot + 1) * window - now) + 1
            raise ApiError(429, "rate_limited", f"Too many failed logins; try again in {retry} seconds.",
                           headers={"Retry-After": str(retry)})


def count_failure(keys: list[str], window: int) -> None:
    store = get_store()
    now = time.time()
    slot = int(now // window)
    expires = (slot + 2) * window
    with store.transaction() as tx:
        for key in keys:
            tx.increment("rate_limits", f"{key}@{slot}", "count", defaults={"expires_at": expires})
        # Old windows are dead weight; clear a few on each failure so the table stays small.
        for stale in tx.find("rate_limits", {"expires_at": _before(now)}, limit=50):
            tx.delete("rate_limits", stale["id"])


def _before(moment: float) -> Any:
    from .storage import Range

    return Range(lt=moment)


def client_address() -> str:
    """The caller's address; X-Forwarded-For is believed only through configured proxies."""
    proxies = current_app.config.get("TRUSTED_PROXIES", 0)
    if proxies:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.remote_addr or "unknown"


# -- audit ------------------------------------------------------------------------------------
def record_audit(tx: Any, action: str, *, actor: str | None, target: str | None = None,
                 details: dict[str, Any] | None = None, address: str | None = None) -> None:
    """A security event: who, what, to whom, when and from where."""
    if address is None:
        try:
            address = client_address()
        except RuntimeError:  # outside a request (CLI)
            address = "cli"
    tx.insert("audit", {"id": uuid.uuid4().hex, "at": iso(now_utc()), "actor": actor, "action": action,
                        "target": target, "address": address, "details": details or {}})


def audit(action: str, **kwargs: Any) -> None:
    with get_store().transaction() as tx:
        record_audit(tx, action, **kwargs)


# -- the request guard ------------------------------------------------------------------------
def auth_required(*roles: str, device: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Require a valid access token (401), one of ``roles`` (403 ``forbidden``), and with
    ``device=True`` a token from a login that named its device (403 ``device_required``).

    Place it directly under ``@blp.route`` so it runs before the body is parsed.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request()
            user = g.kunjung_user
            if roles and user["role"] not in roles:
                raise ApiError(403, "forbidden", f"This needs the role {' or '.join(roles)}.")
            if device and not g.kunjung_device:
                raise ApiError(403, "device_required", "Log in with a device_id to send data.")
            return view(*args, **kwargs)

        # flask-smorest documents what the view's _apidoc says; add the bearer requirement.
        apidoc = copy.deepcopy(getattr(view, "_apidoc", {}))
        apidoc.setdefault("manual_doc", {})["security"] = [{"bearer": []}]
        guarded._apidoc = apidoc  # type: ignore[attr-defined]
        return guarded

    return decorator


def _unauthorized(message: str, code: str = "unauthenticated") -> Any:
    return error_response(401, code, message, headers={"WWW-Authenticate": "Bearer"})


def init_auth(app: Flask) -> None:
    app.config.setdefault("JWT_SECRET_KEY", app.config["SECRET_KEY"])
    app.config["JWT_ALGORITHM"] = "HS256"
    app.config["JWT_DECODE_ALGORITHMS"] = ["HS256"]
    app.config["JWT_TOKEN_LOCATION"] = ["headers"]
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(minutes=app.config["ACCESS_TOKEN_MINUTES"])
    app.config["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(days=app.config["REFRESH_TOKEN_DAYS"])
    app.config["JWT_ERROR_MESSAGE_KEY"] = "message"
    memory = app.config.get("PASSWORD_HASH_MEMORY_KIB", 65536)
    app.extensions["kunjung.passwords"] = Passwords(memory_kib=memory,
                                                    time_cost=app.config.get("PASSWORD_HASH_TIME_COST", 3))
    jwt = JWTManager(app)

    @jwt.token_in_blocklist_loader
    def _revoked(header: dict[str, Any], data: dict[str, Any]) -> bool:
        store = get_store()
        if not all(isinstance(data.get(k), str) for k in ("sub", "login")):
            return True  # well signed but not a token of ours
        if data.get("device") is not None and not isinstance(data["device"], str):
            return True
        user = store.get("users", data["sub"])
        if user is None or user.get("disabled"):
            return True
        if data.get("ver") != user.get("token_version", 0):
            return True  # password reset or role change since the token was issued
        login = store.get("logins", data.get("login") or "")
        if login is None or login["revoked"]:
            return True
        device_id = data.get("device")
        if device_id:
            device = store.get("devices", device_key(user["id"], device_id))
            if device is None or device.get("revoked"):
                return True
        g.kunjung_user = user
        g.kunjung_device = device_id
        g.kunjung_login = login["id"]
        return False

    @jwt.user_lookup_loader
    def _user(header: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return g.kunjung_user

    jwt.unauthorized_loader(lambda reason: _unauthorized("Send an access token: Authorization: Bearer <token>."))
    jwt.invalid_token_loader(lambda reason: _unauthorized(f"The token is not valid: {reason}.", "invalid_token"))
    jwt.expired_token_loader(lambda h, d: _unauthorized("The token has expired; refresh it.", "token_expired"))
    jwt.revoked_token_loader(lambda h, d: _unauthorized("The token was revoked; log in again.", "token_revoked"))
    jwt.user_lookup_error_loader(lambda h, d: _unauthorized("The user no longer exists.", "token_revoked"))


def passwords() -> Passwords:
    return current_app.extensions["kunjung.passwords"]


def current_claims() -> dict[str, Any]:
    return get_jwt()
