"""Accounts: creating users, changing their role, villages, password or status, and revoking devices."""

from __future__ import annotations

from typing import Any

from .auth import (
    ROLES,
    USERNAME,
    area_problems,
    device_key,
    iso,
    now_utc,
    password_problems,
    passwords,
    record_audit,
)
from .errors import ApiError
from .store import get_store


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a user (never the password hash)."""
    return {"username": user["id"], "role": user["role"], "villages": list(user.get("villages") or []),
            "disabled": bool(user.get("disabled")), "created_at": user.get("created_at"),
            "updated_at": user.get("updated_at")}


def _check(username: str | None, role: str | None, villages: Any, password: Any) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if username is not None and not USERNAME.match(username):
        errors["username"] = ["use 2-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"]
    if role is not None and role not in ROLES:
        errors["role"] = [f"must be one of {', '.join(ROLES)}"]
    if villages is not None and role in ROLES:
        problems = area_problems(role, villages)
        if problems:
            errors["villages"] = problems
    if password is not None:
        problems = password_problems(password)
        if problems:
            errors["password"] = problems
    return errors


def create_user(username: str, password: str, role: str, villages: list[str] | None, *, actor: str | None,
                address: str | None = None) -> dict[str, Any]:
    villages = sorted(set(villages or []))
    errors = _check(username, role, villages, password)
    if errors:
        raise ApiError(422, "invalid", "The user is not valid.", errors)
    at = iso(now_utc())
    user = {"id": username, "role": role, "villages": villages, "disabled": False,
            "password_hash": passwords().hash(password), "token_version": 0, "created_at": at, "updated_at": at}
    with get_store().transaction() as tx:
        if not tx.insert("users", user):
            raise ApiError(409, "user_exists", f"A user named {username!r} exists already.")
        record_audit(tx, "user_created", actor=actor, target=username,
                     details={"role": role, "villages": villages}, address=address)
    return user


def update_user(username: str, changes: dict[str, Any], *, actor: str | None,
                address: str | None = None) -> dict[str, Any]:
    """Apply any of role, villages, disabled, password. A password reset, a role change or
    disabling ends every login of the user at once (their tokens carry the old version)."""
    store = get_store()
    with store.transaction() as tx:
        user = tx.get("users", username)
        if user is None:
            raise ApiError(404, "not_found", f"No user named {username!r}.")
        role = changes.get("role", user["role"])
        villages = sorted(set(changes["villages"])) if "villages" in changes else user.get("villages", [])
        errors = _check(None, role, villages if ("villages" in changes or "role" in changes) else None,
                        changes.get("password"))
        if errors:
            raise ApiError(422, "invalid", "The change is not valid.", errors)
        updated = {**user, "role": role, "villages": villages, "updated_at": iso(now_utc())}
        ends_logins = False
        if "password" in changes:
            updated["password_hash"] = passwords().hash(changes["password"])
            ends_logins = True
            record_audit(tx, "password_reset", actor=actor, target=username, address=address)
        if role != user["role"]:
            ends_logins = True
            record_audit(tx, "role_changed", actor=actor, target=username,
                         details={"from": user["role"], "to": role}, address=address)
        if villages != user.get("villages", []):
            record_audit(tx, "villages_changed", actor=actor, target=username,
                         details={"from": user.get("villages", []), "to": villages}, address=address)
        if "disabled" in changes and bool(changes["disabled"]) != bool(user.get("disabled")):
            updated["disabled"] = bool(changes["disabled"])
            ends_logins = ends_logins or updated["disabled"]
            record_audit(tx, "user_disabled" if updated["disabled"] else "user_enabled", actor=actor,
                         target=username, address=address)
        if ends_logins:
            updated["token_version"] = int(user.get("token_version", 0)) + 1
        tx.put("users", updated)
    return updated


def list_devices(username: str | None = None) -> list[dict[str, Any]]:
    where = {"username": username} if username else None
    return get_store().find("devices", where, order_by="id", limit=1000)


def revoke_device(username: str, device_id: str, *, actor: str | None, address: str | None = None) -> dict:
    with get_store().transaction() as tx:
        device = tx.get("devices", device_key(username, device_id))
        if device is None:
            raise ApiError(404, "not_found", "No such device for this user.")
        if not device.get("revoked"):
            device = tx.put("devices", {**device, "revoked": True, "revoked_at": iso(now_utc()),
                                        "revoked_by": actor})
            record_audit(tx, "device_revoked", actor=actor, target=device_key(username, device_id), address=address)
    return device
