"""Devices: what a user's phones did (here: the push and pull bookkeeping; device records join this module)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sync import hlc_ms, is_hlc

from .auth import device_key, iso, now_utc

DEVICES = "devices"


# -- push and pull bookkeeping ------------------------------------------------------------------
# The last sync of each device, and the clock skew its pushes showed, for the supervisor's
# report of phones that have gone quiet or run fast.
PULL_TOUCH_INTERVAL = timedelta(minutes=1)


def note_push(tx: Any, username: str, device_id: str, events: list[Any], results: list[dict[str, Any]],
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


def note_pull(store: Any, username: str, device_id: str | None) -> None:
    """A pull is a sync too: keep the device's last_sync_at within a minute, without a write on
    every page of a first sync."""
    if not device_id:
        return
    key = device_key(username, device_id)
    device = store.get(DEVICES, key)
    now = now_utc()
    if device is None or (device.get("last_sync_at") or "") > iso(now - PULL_TOUCH_INTERVAL):
        return
    with store.transaction() as tx:
        current = tx.get(DEVICES, key)
        if current is not None:
            tx.put(DEVICES, {**current, "last_sync_at": iso(now)})
