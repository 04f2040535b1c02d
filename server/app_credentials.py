"""App credentials: a per-device token for stock ODK Collect (kept hashed), and Collect's set-up QR code."""

# Collect cannot log in the way kunjung's own client does, so each phone gets a long
# random token that sits in its server URL (/key/<token>/…). Only its SHA-256 is stored,
# the token is shown once, and it belongs to one device record (server/devices.py): the
# device record names its current credential, so revoking the device, disabling the user
# or making a new credential for the same phone stops the old one at once.

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import zlib
from dataclasses import dataclass
from typing import Any

from .audit import record_audit
from .devices import DEVICE_ID, DEVICES, device_key
from .errors import ApiError
from .i18n import _
from .security.scope import Scope, scope_of
from .storage import Store
from .timeutil import iso, now_utc

CREDENTIALS = "app_credentials"
TOKEN_BYTES = 32
#: Roles that collect with Collect: an admin works from the web, never from a phone.
COLLECTING_ROLES = ("officer", "supervisor")
KEY_PREFIX = "/key/"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AppCaller:
    """Who a token URL belongs to: the user as stored now, and the device of the credential."""

    user: dict[str, Any]
    device_id: str

    @property
    def scope(self) -> Scope:
        return scope_of(self.user)


def credential_holder(store: Store, token: str) -> AppCaller | None:
    """The user and device of a working token, or None (unknown, revoked, replaced, user disabled)."""
    if not isinstance(token, str) or not 20 <= len(token) <= 128:
        return None
    digest = token_hash(token)
    credential = store.get(CREDENTIALS, digest)
    if credential is None or credential.get("revoked"):
        return None
    user = store.get("users", credential["username"])
    if user is None or user.get("disabled") or user.get("role") not in COLLECTING_ROLES:
        return None
    device = store.get(DEVICES, device_key(credential["username"], credential["device_id"]))
    if device is None or device.get("revoked") or device.get("app_credential") != digest:
        return None
    return AppCaller(user, credential["device_id"])


def issue_credential(store: Store, username: str, device_id: str, *, actor: str | None, actor_scope: Scope,
                     address: str | None = None) -> str:
    """Make a credential for the user's device (replacing the device's earlier one); the token, once."""
    if not isinstance(device_id, str) or not DEVICE_ID.match(device_id):
        raise ApiError(422, "invalid", _("The device name is not valid."),
                       {"device": [_("1-128 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit")]})
    token = secrets.token_urlsafe(TOKEN_BYTES)
    digest = token_hash(token)
    at = iso(now_utc())
    with store.transaction() as tx:
        user = tx.get("users", username)
        if user is None or (not actor_scope.is_all and not _supervises(actor_scope, user)):
            raise ApiError(404, "not_found", _("No such user."))
        if user.get("role") not in COLLECTING_ROLES:
            raise ApiError(422, "invalid", _("Only officers and supervisors collect with ODK Collect."),
                           {"username": [_("is a %(role)s", role=user.get("role"))]})
        if user.get("disabled"):
            raise ApiError(409, "user_disabled", _("The user is disabled."))
        key = device_key(username, device_id)
        device = tx.get(DEVICES, key)
        if device is not None and device.get("revoked"):
            raise ApiError(409, "device_revoked", _("This device was revoked; give the phone another device name."))
        device = device or {"id": key, "username": username, "device_id": device_id, "first_seen_at": at,
                            "revoked": False, "last_sync_at": None}
        previous = device.get("app_credential")
        if previous:
            old = tx.get(CREDENTIALS, previous)
            if old is not None:
                tx.put(CREDENTIALS, {**old, "revoked": True, "revoked_at": at, "replaced_by": digest})
        tx.put(DEVICES, {**device, "last_login_at": at, "app_credential": digest, "app_version": "ODK Collect"})
        tx.put(CREDENTIALS, {"id": digest, "username": username, "device_id": device_id, "created_at": at,
                             "created_by": actor, "revoked": False})
        record_audit(tx, "app_credential_issued", actor=actor, target=key, address=address)
    return token


def _supervises(scope: Scope, user: dict[str, Any]) -> bool:
    villages = user.get("villages") or []
    return bool(villages) and all(scope.covers(village) for village in villages)


# -- Collect's set-up QR code ---------------------------------------------------------------------
def collect_settings(public_url: str, token: str, username: str, device_id: str) -> dict[str, Any]:
    """The settings Collect reads from its QR code: the server (token in the URL), the project, and
    form updates that follow the server exactly, sending when online and deleting what was sent."""
    return {
        # keys and values as Collect's settings name them (ProjectKeys, ProtectedProjectKeys)
        "general": {
            "protocol": "odk_default",
            "server_url": f"{public_url.rstrip('/')}{KEY_PREFIX}{token}",
            "form_update_mode": "match_exactly",
            "periodic_form_updates_check": "every_fifteen_minutes",
            "autosend": "wifi_and_cellular",
            "delete_send": True,
            "metadata_username": username,
        },
        "admin": {"change_server": False, "change_form_metadata": False},
        "project": {"name": f"kunjung · {username}", "icon": "K", "color": "#1b5e20"},
        "kunjung": {"username": username, "device": device_id},
    }


def settings_payload(settings: dict[str, Any]) -> str:
    """The QR code's text as Collect decodes it: the JSON, zlib-deflated, in base64."""
    return base64.b64encode(zlib.compress(json.dumps(settings, separators=(",", ":")).encode("utf-8"))).decode()


def read_settings_payload(text: str) -> dict[str, Any]:
    """The settings a QR code's text carries (what Collect does when it scans one)."""
    return json.loads(zlib.decompress(base64.b64decode(text)).decode("utf-8"))


def qr_images(payload: str) -> tuple[bytes, str]:
    """The QR code as PNG bytes and SVG text."""
    import segno

    code = segno.make(payload, error="l", micro=False)
    png, svg = io.BytesIO(), io.BytesIO()
    code.save(png, kind="png", scale=6, border=4)
    code.save(svg, kind="svg", scale=6, border=4, xmldecl=False, title="ODK Collect")
    return png.getvalue(), svg.getvalue().decode("utf-8")
