"""Keeping personal data no longer than needed: raw bodies (and photos) of reviewed visits, the audit log."""

# A visit's answers stay: they are the record the village works from. What goes after the
# configured time is the raw event body as the phone sent it (kept for disputes about what was
# received) and, once kunjung keeps them, the visit's photos. The body's hash stays, so a late
# resend is still answered ``duplicate``.

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..audit import prune_audit, record_audit
from ..eventlog import EVENTS
from ..storage import Store, Writer
from ..timeutil import iso, now_utc
from .erasure import ATTACHMENTS, delete_blobs

BATCH = 200


@dataclass
class RetentionPlan:
    """What a retention run removes (or, dry, would remove)."""

    body_cutoff: str
    audit_cutoff: str
    bodies: list[str] = field(default_factory=list)  # visit ids whose raw body (or files) go
    attachments: int = 0
    audit_entries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"body_cutoff": self.body_cutoff, "audit_cutoff": self.audit_cutoff, "bodies": len(self.bodies),
                "visits": list(self.bodies), "attachments": self.attachments, "audit_entries": self.audit_entries}


def retain_attachments(tx: Writer, visit_ids: list[str], at: str, blobs: list[str]) -> int:
    """Remove the files (and thumbnails) of visits past their keeping time: their attachment records
    go and the visit's list marks each ``removed_at``, so exports and reads no longer offer them and
    no device is asked for them again; the blobs are added to ``blobs`` for deletion after the unit
    of work commits. How many files went."""
    removed = 0
    for visit_id in visit_ids:
        docs = tx.find(ATTACHMENTS, {"visit_id": visit_id})
        for doc in docs:
            blobs.extend(h for h in (doc["sha256"], doc.get("thumbnail_sha256")) if h)
            tx.delete(ATTACHMENTS, doc["id"])
            removed += 1
        visit = tx.get("visits", visit_id)
        if docs and visit is not None:
            entries = [{**entry, "held": False, "removed_at": at} for entry in visit.get("attachments") or ()]
            tx.put("visits", {**visit, "attachments": entries})
    return removed


def held_files(store: Store, visit_ids: list[str]) -> int:
    """How many files of these visits the server holds."""
    return sum(1 for visit_id in visit_ids for doc in store.find(ATTACHMENTS, {"visit_id": visit_id})
               if doc.get("held"))


def _reviewed_at(visit: dict[str, Any]) -> str | None:
    review = visit.get("review") or {}
    return review.get("at") or visit.get("received_at")


def plan_retention(store: Store, *, body_days: int, audit_days: int) -> RetentionPlan:
    """What is past its keeping time now: bodies of visits reviewed more than ``body_days`` ago,
    audit entries older than ``audit_days``."""
    now = now_utc()
    plan = RetentionPlan(body_cutoff=iso(now - timedelta(days=body_days)),
                         audit_cutoff=iso(now - timedelta(days=audit_days)))
    for visit in store.iterate("visits", {"reviewed": True}, order_by="seq"):
        at = _reviewed_at(visit)
        if at is None or at >= plan.body_cutoff:
            continue
        event = store.get(EVENTS, visit["id"])
        if (event is not None and "body" in event) or any(
                entry.get("held") for entry in visit.get("attachments") or ()):
            plan.bodies.append(visit["id"])
    plan.attachments = held_files(store, plan.bodies)
    plan.audit_entries = prune_audit(store, plan.audit_cutoff, dry_run=True)
    return plan


def apply_retention(store: Store, plan: RetentionPlan, *, actor: str | None = None) -> RetentionPlan:
    """Remove what ``plan`` lists; the counts of what was removed."""
    at = iso(now_utc())
    done = RetentionPlan(plan.body_cutoff, plan.audit_cutoff)
    for start in range(0, len(plan.bodies), BATCH):
        chunk = plan.bodies[start:start + BATCH]

        blobs: list[str] = []

        def unit(tx: Writer, chunk: list[str] = chunk, blobs: list[str] = blobs) -> tuple[list[str], int]:
            blobs.clear()
            removed = []
            for visit_id in chunk:
                event = tx.get(EVENTS, visit_id)
                if event is not None and "body" in event:
                    kept = {key: value for key, value in event.items() if key != "body"}
                    tx.put(EVENTS, {**kept, "body_removed_at": at})
                    removed.append(visit_id)
            return removed, retain_attachments(tx, chunk, at, blobs)

        removed, files = store.unit_of_work(unit)
        done.bodies.extend(removed)
        done.attachments += files
        delete_blobs(store, blobs)
    done.audit_entries = prune_audit(store, plan.audit_cutoff)

    def note(tx: Writer) -> None:
        record_audit(tx, "retention_applied", actor=actor, details={
            "bodies": len(done.bodies), "attachments": done.attachments, "audit_entries": done.audit_entries,
            "body_cutoff": plan.body_cutoff, "audit_cutoff": plan.audit_cutoff})

    store.unit_of_work(note)
    return done

