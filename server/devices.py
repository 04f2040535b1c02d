"""Devices: one record per user and phone, made at login, revoked by an admin; when each last synced."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sync import hlc_ms, is_hlc

from .audit import record_audit
from .errors import ApiError
from .i18n import _
from .storage import Store, Writer
from .timeutil import iso, now_utc

# -- device records and revocation -----------------------------------------------------------------
# A device id as a phone makes it; \Z, not $: "$" also matches before a trailing newline.
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
DEVICES = "devices"


def device_key(username: str, device_id: str) -> str:
    """The id of a user's device record: a phone shared by two officers is two records."""
    return f"{username}/{device_id}"


def record_device(tx: Writer, username: str, device_id: str, address: str | None, app_version: str | None,
                  at: str) -> dict[str, Any]:
    """Note a successful login from the device (the record is made by the first one)."""
    key = device_key(username, device_id)
    device = tx.get(DEVICES, key) or {"id": key, "username": username, "device_id": device_id,
                                         "first_seen_at": at, "revoked": False, "last_sync_at": None}
    device.update({"last_login_at": at, "last_address": address})
    if app_version:
        device["app_version"] = app_version[:64]
    return tx.put(DEVICES, device)


def get_device(store: Store, username: str, device_id: str) -> dict[str, Any] | None:
    return store.get(DEVICES, device_key(username, device_id))


def is_known_device(device: dict[str, Any] | None) -> bool:
    """A device the user has logged in from before and that is not revoked."""
    return device is not None and not device.get("revoked") and bool(device.get("last_login_at"))


def list_devices(store: Store, username: str | None = None) -> list[dict[str, Any]]:
    where = {"username": username} if username else None
    return store.find(DEVICES, where, order_by="id", limit=1000)


def revoke_device(store: Store, username: str, device_id: str, *, actor: str | None,
                  address: str | None = None) -> dict[str, Any]:
    """Revoke a lost phone: every token of its logins stops working, and it may not log in again."""
    key = device_key(username, device_id)
    with store.transaction() as tx:
        device = tx.get(DEVICES, key)
        if device is None:
            raise ApiError(404, "not_found", _("No such device for this user."))
        if not device.get("revoked"):
            device = tx.put(DEVICES, {**device, "revoked": True, "revoked_at": iso(now_utc()),
                                        "revoked_by": actor})
            record_audit(tx, "device_revoked", actor=actor, target=key, address=address)
    return device

# -- end of device records and revocation -----------------------------------------------------------


# -- push and pull bookkeeping ------------------------------------------------------------------
# The last sync of each device, and the clock skew its pushes showed, for the supervisor's
# report of phones that have gone quiet or run fast.
PULL_TOUCH_INTERVAL = timedelta(minutes=1)


def note_push(tx: Writer, username: str, device_id: str, events: list[Any], results: list[dict[str, Any]],
              now_ms: int, received_at: str) -> None:
    """After a push, within its unit of work: the device synced, and how far ahead its clock ran."""
    key = device_key(username, device_id)
    device = tx.get(DEVICES, key)
    if device is None:
        return
    skews = [hlc_ms(raw["hlc"]) - now_ms for raw, result in zip(events, results, strict=True)
             if isinstance(raw, Mapping) and is_hlc(raw.get("hlc")) and result.get("code") == "clock_skew"]
    update = {**device, "last_sync_at": received_at}
    if skews:
        update["skew_ms"] = max(skews)
        update["skew_seen_at"] = received_at
        update["skew_cleared_at"] = None
    elif device.get("skew_ms") is not None and not device.get("skew_cleared_at") and any(
            result["status"] == "applied" for result in results):
        # The finding stays for the supervisor; this says the clock has been right since.
        update["skew_cleared_at"] = received_at
    tx.put(DEVICES, update)


def note_pull(tx: Writer, username: str, device_id: str | None) -> None:
    """A pull is a sync too: keep the device's last_sync_at within a minute, without a write on
    every page of a first sync. In ``tx``, the unit of work that closes the pull page."""
    if not device_id:
        return
    key = device_key(username, device_id)
    device = tx.get(DEVICES, key)
    now = now_utc()
    if device is None or (device.get("last_sync_at") or "") > iso(now - PULL_TOUCH_INTERVAL):
        return
    tx.put(DEVICES, {**device, "last_sync_at": iso(now)})
