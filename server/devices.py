"""Device records: one per user and phone, made at login, revoked by an admin."""

from __future__ import annotations

import re
from typing import Any

from .audit import record_audit
from .errors import ApiError
from .storage import Store, Writer
from .timeutil import iso, now_utc

# -- device records and revocation -----------------------------------------------------------------
# A device id as a phone makes it; \Z, not $: "$" also matches before a trailing newline.
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")


def device_key(username: str, device_id: str) -> str:
    """The id of a user's device record: a phone shared by two officers is two records."""
    return f"{username}/{device_id}"


def record_device(tx: Writer, username: str, device_id: str, address: str | None, app_version: str | None,
                  at: str) -> dict[str, Any]:
    """Note a successful login from the device (the record is made by the first one)."""
    key = device_key(username, device_id)
    device = tx.get("devices", key) or {"id": key, "username": username, "device_id": device_id,
                                         "first_seen_at": at, "revoked": False, "last_sync_at": None}
    device.update({"last_login_at": at, "last_address": address})
    if app_version:
        device["app_version"] = app_version[:64]
    return tx.put("devices", device)


def get_device(store: Store, username: str, device_id: str) -> dict[str, Any] | None:
    return store.get("devices", device_key(username, device_id))


def is_known_device(device: dict[str, Any] | None) -> bool:
    """A device the user has logged in from before and that is not revoked."""
    return device is not None and not device.get("revoked") and bool(device.get("last_login_at"))


def list_devices(store: Store, username: str | None = None) -> list[dict[str, Any]]:
    where = {"username": username} if username else None
    return store.find("devices", where, order_by="id", limit=1000)


def revoke_device(store: Store, username: str, device_id: str, *, actor: str | None,
                  address: str | None = None) -> dict[str, Any]:
    """Revoke a lost phone: every token of its logins stops working, and it may not log in again."""
    key = device_key(username, device_id)
    with store.transaction() as tx:
        device = tx.get("devices", key)
        if device is None:
            raise ApiError(404, "not_found", "No such device for this user.")
        if not device.get("revoked"):
            device = tx.put("devices", {**device, "revoked": True, "revoked_at": iso(now_utc()),
                                        "revoked_by": actor})
            record_audit(tx, "device_revoked", actor=actor, target=key, address=address)
    return device

# -- end of device records and revocation -----------------------------------------------------------
