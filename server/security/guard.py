"""The request guard: which user, login and device a request's token names, and what they may touch.

Identity (user and device) always comes from the token, never from a request body. Every
request re-reads the user, the token's login and the device from the store, so disabling a
user, resetting a password, logging out or revoking a lost phone takes effect at once, on
every gunicorn worker. This is part of the HTTP layer: it reads the app's store.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from flask import g
from flask_jwt_extended import JWTManager, verify_jwt_in_request
from jwt.exceptions import InvalidTokenError

from ..devices import get_device
from ..errors import ApiError
from ..i18n import _
from ..storage import Store
from ..store import get_store
from .scope import Scope, scope_of


def token_holder(store: Store, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The user and login a well-signed token belongs to, or None when it no longer works.

    Raises InvalidTokenError for a token that is not one of ours: wrong claim types, or a
    ``login`` claim that belongs to another user or another device than the token names.
    """
    if not all(isinstance(data.get(k), str) for k in ("sub", "login")):
        raise InvalidTokenError("it is not a token of this server")
    device_id = data.get("device")
    if device_id is not None and not isinstance(device_id, str):
        raise InvalidTokenError("it is not a token of this server")
    user = store.get("users", data["sub"])
    if user is None or user.get("disabled"):
        return None
    if data.get("ver") != user.get("token_version", 0):
        return None  # password reset or role change since the token was issued
    login = store.get("logins", data["login"])
    if login is None:
        return None
    if login.get("username") != data["sub"] or login.get("device_id") != device_id:
        raise InvalidTokenError("its login belongs to another user or device")
    if login["revoked"]:
        return None
    if device_id:
        device = get_device(store, user["id"], device_id)
        if device is None or device.get("revoked"):
            return None
    return user, login


def install_guard(jwt: JWTManager) -> None:
    """Check every token against the store as it is now."""

    @jwt.token_in_blocklist_loader
    def _refused(header: dict[str, Any], data: dict[str, Any]) -> bool:
        holder = token_holder(get_store(), data)
        if holder is None:
            return True
        g.kunjung_user, login = holder
        g.kunjung_device = data.get("device")
        g.kunjung_login = login["id"]
        return False

    @jwt.user_lookup_loader
    def _user(header: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return g.kunjung_user


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
                raise ApiError(403, "forbidden", _("This needs the role %(roles)s.", roles=" or ".join(roles)))
            if device and not g.kunjung_device:
                raise ApiError(403, "device_required", _("Log in with a device_id to send data."))
            return view(*args, **kwargs)

        # flask-smorest documents what the view's _apidoc says; add the bearer requirement.
        apidoc = copy.deepcopy(getattr(view, "_apidoc", {}))
        apidoc.setdefault("manual_doc", {})["security"] = [{"bearer": []}]
        guarded._apidoc = apidoc  # type: ignore[attr-defined]
        return guarded

    return decorator


def current_user() -> dict[str, Any]:
    user = getattr(g, "kunjung_user", None)
    if user is None:
        raise ApiError(401, "unauthenticated", _("Log in first."))
    return user


def current_scope() -> Scope:
    return scope_of(current_user())


def current_device() -> str | None:
    return getattr(g, "kunjung_device", None)


def current_login() -> str | None:
    return getattr(g, "kunjung_login", None)


def require_in_scope(village_code: str | None, what: str = "record") -> None:
    """404 rather than 403 for a record outside the caller's scope, so existence does not leak."""
    if not current_scope().covers(village_code):
        raise ApiError(404, "not_found", _("No such %(what)s.", what=what))
