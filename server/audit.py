"""The audit log: who did what, to whom, when and from which address; reads of personal data too."""

# Besides security events (logins, role changes), every read of personal data is recorded: opening
# a household or a visit, its history, a search by NIK or No. KK, a device's pull page, an export.
# An entry never holds a NIK or No. KK: ``person`` is the number's keyed hash
# (server/privacy/people.py), so the log can be searched by person without keeping the number.

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app, has_request_context, request

from .errors import ApiError
from .i18n import _
from .storage import Range, Store, Writer
from .timeutil import iso, now_utc

AUDIT = "audit"
# Pull pages list their households in ``details``, which no index can hold: the household filter
# reads this many pull entries at a time, newest first.
PULL_SCAN = 500
PRUNE_BATCH = 500


def client_address() -> str:
    """The caller's address; X-Forwarded-For is believed only through configured proxies."""
    proxies = current_app.config.get("TRUSTED_PROXIES", 0)
    if proxies:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.remote_addr or "unknown"


def audit_document(action: str, *, actor: str | None, target: str | None = None,
                   details: dict[str, Any] | None = None, address: str | None = None,
                   household: str | None = None, person: str | None = None) -> dict[str, Any]:
    """One entry; without ``address``, the request's (``cli`` outside one). ``household`` is the one
    household it concerns, ``person`` the keyed hash of the NIK it concerns."""
    if address is None:
        address = client_address() if has_request_context() else "cli"
    # The id leads with the clock in nanoseconds, so entries of one millisecond keep their order.
    return {"id": f"{time.time_ns():020d}{uuid.uuid4().hex[:12]}", "at": iso(now_utc()), "actor": actor,
            "action": action, "target": target, "address": address, "details": details or {},
            "household": household, "person": person}


def record_audit(tx: Writer, action: str, **kwargs: Any) -> None:
    """An entry in the unit of work ``tx`` (see :func:`audit_document` for the arguments)."""
    tx.insert(AUDIT, audit_document(action, **kwargs))


def audit(store: Store, action: str, **kwargs: Any) -> None:
    """An entry in a unit of work of its own (or the one open on this thread)."""
    store.insert(AUDIT, audit_document(action, **kwargs))


def record_pull(tx: Writer, *, actor: str, device_id: str | None, carried: Mapping[str, list[str]]) -> None:
    """One entry, in ``tx``, for a pull page that carried households or visits (``carried``: their ids,
    as ``PullService.pull`` reports them). A page of forms only reads no personal data and is not recorded."""
    households = sorted(set(carried.get("households", ())))
    visits = sorted(set(carried.get("visits", ())))
    if households or visits:
        record_audit(tx, "pull", actor=actor, target=device_id,
                     details={"device_id": device_id, "households": households, "visits": visits})


def _page_filter(where: dict[str, Any], start: str | None, end: str | None, before: str | None) -> None:
    bounds: dict[str, str] = {}
    if start is not None:
        bounds["gte"] = start
    upper = min(b for b in (end, before) if b is not None) if (end or before) else None
    if upper is not None:
        bounds["lt" if upper == before else "lte"] = upper
    if bounds:
        where["at"] = Range(**bounds)


def audit_entries(store: Store, *, action: str | None = None, actor: str | None = None,
                  household: str | None = None, person: str | None = None, start: str | None = None,
                  end: str | None = None, before: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Entries newest first, filtered by action, actor (a user), household, person (a NIK's keyed
    hash) and time (``start`` and ``end`` inclusive, ISO); ``before`` pages (an ISO time, exclusive).
    The household filter also finds the pull pages that carried the household."""
    where: dict[str, Any] = {}
    _page_filter(where, start, end, before)
    for name, value in (("action", action), ("actor", actor), ("person", person)):
        if value is not None:
            where[name] = value
    if household is None:
        return store.find(AUDIT, where, order_by="-at", limit=limit)
    named = store.find(AUDIT, {**where, "household": household}, order_by="-at", limit=limit)
    carried: list[dict[str, Any]] = []
    if action in (None, "pull") and person is None:
        scan = {key: value for key, value in where.items() if key != "action"}
        scan["action"] = "pull"
        position = None
        while len(carried) < limit:
            page = store.find(AUDIT, scan, order_by="-at", after=position, limit=PULL_SCAN)
            carried.extend(e for e in page if household in (e.get("details") or {}).get("households", ()))
            if len(page) < PULL_SCAN:
                break
            position = (page[-1]["at"], page[-1]["id"])
    merged = {entry["id"]: entry for entry in (*named, *carried)}
    return sorted(merged.values(), key=lambda e: (e["at"], e["id"]), reverse=True)[:limit]


def prune_audit(store: Store, cutoff: str, *, dry_run: bool = False) -> int:
    """Remove entries older than ``cutoff`` (ISO; now less the configured keeping time); how many
    were (or, dry, would be) removed."""
    if dry_run:
        return store.count(AUDIT, {"at": Range(lt=cutoff)})
    removed = 0
    while True:
        page = store.find(AUDIT, {"at": Range(lt=cutoff)}, order_by="at", limit=PRUNE_BATCH)
        if not page:
            return removed

        def unit(tx: Writer, page: list[dict[str, Any]] = page) -> None:
            for entry in page:
                tx.delete(AUDIT, entry["id"])

        store.unit_of_work(unit)
        removed += len(page)


def time_bounds(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    """``from``/``to`` of an audit query as ISO bounds: a day (YYYY-MM-DD, UTC) is the whole day;
    an instant with an offset is itself. 422 naming the parameter otherwise."""
    def parse(text: str, name: str, last: bool) -> str:
        try:
            if len(text) == 10:
                day = datetime.fromisoformat(text).replace(tzinfo=UTC)
                return iso(day + timedelta(days=1) - timedelta(milliseconds=1)) if last else iso(day)
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ApiError(422, "invalid", _("Give a day (YYYY-MM-DD) or a date-time with an offset."),
                           {name: [_("not a day or a date-time with an offset")]})
        return iso(moment)

    return (parse(start, "from", False) if start else None, parse(end, "to", True) if end else None)
