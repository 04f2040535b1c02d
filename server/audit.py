"""The security audit log: who did what, to whom, when and from which address."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app, has_request_context, request

from .storage import Range, Store, Writer
from .timeutil import iso, now_utc


def client_address() -> str:
    """The caller's address; X-Forwarded-For is believed only through configured proxies."""
    proxies = current_app.config.get("TRUSTED_PROXIES", 0)
    if proxies:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.remote_addr or "unknown"


def record_audit(tx: Writer, action: str, *, actor: str | None, target: str | None = None,
                 details: dict[str, Any] | None = None, address: str | None = None) -> None:
    """A security event in the unit of work ``tx``; without ``address``, the request's (``cli`` outside one)."""
    if address is None:
        address = client_address() if has_request_context() else "cli"
    tx.insert("audit", {"id": uuid.uuid4().hex, "at": iso(now_utc()), "actor": actor, "action": action,
                        "target": target, "address": address, "details": details or {}})


def audit(store: Store, action: str, **kwargs: Any) -> None:
    """A security event in a unit of work of its own."""
    with store.transaction() as tx:
        record_audit(tx, action, **kwargs)


def audit_entries(store: Store, *, action: str | None = None, before: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
    """Security events, newest first, optionally of one action and before an ISO time (paging)."""
    where: dict[str, Any] = {}
    if action is not None:
        where["action"] = action
    if before is not None:
        where["at"] = Range(lt=before)
    return store.find("audit", where, order_by="-at", limit=limit)
