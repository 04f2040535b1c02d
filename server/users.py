"""Accounts: creating users, changing their role, villages, password or status."""

from __future__ import annotations

import re
from typing import Any

from forms.identifiers import Area

from .audit import record_audit
from .errors import ApiError
from .i18n import _
from .security.passwords import Passwords, password_problems
from .storage import Store
from .timeutil import iso, now_utc

ROLES = ("admin", "supervisor", "officer")
# \Z, not $: "$" also matches before a trailing newline.
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}\Z")
# The levels of area each role may be assigned: officers villages; supervisors villages or whole kecamatan.
AREA_LEVELS = {"officer": ("village",), "admin": ("village",), "supervisor": ("village", "kecamatan")}
MAX_AREAS = 1000


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a user (never the password hash)."""
    shown = {"username": user["id"], "role": user["role"], "villages": list(user.get("villages") or []),
             "disabled": bool(user.get("disabled")), "created_at": user.get("created_at"),
             "updated_at": user.get("updated_at"), "see_identifiers": user.get("see_identifiers")}
    if user.get("language"):
        shown["language"] = user["language"]
    return shown


def is_username(text: Any) -> bool:
    return isinstance(text, str) and USERNAME.match(text) is not None


def area_problems(role: str, areas: Any) -> list[str]:
    """Why ``areas`` may not be assigned to a user of ``role`` (an empty list when they may)."""
    if not isinstance(areas, list) or not all(isinstance(a, str) for a in areas):
        return ["must be a list of Kemendagri codes"]
    if len(areas) > MAX_AREAS:
        return [_("at most %(count)s areas", count=MAX_AREAS)]
    problems = []
    for code in areas:
        try:
            Area.parse(code, levels=AREA_LEVELS[role])
        except ValueError as error:
            problems.append(str(error))
    return problems


def _check(username: str | None, role: str | None, villages: Any, password: Any) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if username is not None and not is_username(username):
        errors["username"] = [
            _("use 2-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")]
    if role is not None and role not in ROLES:
        errors["role"] = [_("must be one of %(choices)s", choices=", ".join(ROLES))]
    if villages is not None and role in ROLES:
        problems = area_problems(role, villages)
        if problems:
            errors["villages"] = problems
    if password is not None:
        problems = password_problems(password, role)
        if problems:
            errors["password"] = problems
    return errors


def create_user(store: Store, hasher: Passwords, username: str, password: str, role: str,
                villages: list[str] | None, *, actor: str | None, address: str | None = None,
                language: str | None = None) -> dict[str, Any]:
    villages = villages or []
    errors = _check(username, role, villages, password)
    if errors:
        raise ApiError(422, "invalid", _("The user is not valid."), errors)
    villages = sorted(set(villages))
    at = iso(now_utc())
    user = {"id": username, "role": role, "villages": villages, "disabled": False,
            "password_hash": hasher.hash(password), "token_version": 0, "created_at": at, "updated_at": at}
    if language:
        user["language"] = language  # messages in this language when a request names none (server/i18n.py)
    with store.transaction() as tx:
        if not tx.insert("users", user):
            raise ApiError(409, "user_exists", _("A user named %(username)r exists already.", username=username))
        record_audit(tx, "user_created", actor=actor, target=username,
                     details={"role": role, "villages": villages}, address=address)
    return user


def get_user(store: Store, username: str) -> dict[str, Any]:
    user = store.get("users", username) if is_username(username) else None
    if user is None:
        raise ApiError(404, "not_found", _("No user named %(username)r.", username=username[:64]))
    return user


def list_users(store: Store) -> list[dict[str, Any]]:
    return store.find("users", order_by="id", limit=10000)


def update_user(store: Store, hasher: Passwords, username: str, changes: dict[str, Any], *, actor: str | None,
                address: str | None = None) -> dict[str, Any]:
    """Apply any of role, villages, disabled, password, see_identifiers, language. A password reset, a role
    change or disabling ends every login of the user at once (their tokens carry the old version)."""
    before = get_user(store, username)
    # argon2 is slow by design: hash before taking the write lock.
    new_hash = None
    if "password" in changes and not password_problems(changes["password"], changes.get("role", before["role"])):
        new_hash = hasher.hash(changes["password"])
    with store.transaction() as tx:
        user = tx.get("users", username)
        if user is None:
            raise ApiError(404, "not_found", _("No user named %(username)r.", username=username))
        role = changes.get("role", user["role"])
        given = changes["villages"] if "villages" in changes else user.get("villages", [])
        errors = _check(None, role, given if ("villages" in changes or "role" in changes) else None,
                        changes.get("password"))
        if errors:
            raise ApiError(422, "invalid", _("The change is not valid."), errors)
        villages = sorted(set(given))
        updated = {**user, "role": role, "villages": villages, "updated_at": iso(now_utc())}
        if "language" in changes:
            updated["language"] = changes["language"]
        ends_logins = False
        if "password" in changes:
            updated["password_hash"] = new_hash or hasher.hash(changes["password"])
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
        if "see_identifiers" in changes and changes["see_identifiers"] != user.get("see_identifiers"):
            # Whole NIK and No. KK in lists, pulls and exports (server/privacy/masking.py); None: the role's default.
            updated["see_identifiers"] = changes["see_identifiers"]
            record_audit(tx, "identifiers_grant_changed", actor=actor, target=username, address=address,
                         details={"from": user.get("see_identifiers"), "to": changes["see_identifiers"]})
        if ends_logins:
            updated["token_version"] = int(user.get("token_version", 0)) + 1
        tx.put("users", updated)
    return updated


def set_language(store: Store, username: str, language: str | None) -> dict[str, Any]:
    """A user's own choice of message language (``id``, ``en``, or None to follow each request)."""
    with store.transaction() as tx:
        user = tx.get("users", username)
        if user is None:
            raise ApiError(404, "not_found", _("No user named %(username)r.", username=username))
        updated = {**user, "language": language, "updated_at": iso(now_utc())}
        tx.put("users", updated)
    return updated
