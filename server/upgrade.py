"""Bringing records stored by an older merge engine up to the current rule and document format.

Households and review records stored before merge rule 2 (document format 1) kept every
superseded stamp and were folded without the same-device rule (docs/merge-rule.md): three
visits by one phone without ``base`` stood as a conflict. Their stored form cannot be
converted, since it lacks each write's device order, so each is folded again from its events
(which keep everything), written back, and the conflicts the new rule closes are reported.

It runs once per store, at start-up, before the node serves, and is safe to run from several
workers at once: each record is upgraded in its own unit of work that first checks the stored
format again, so a second worker finds it done. ``server_state/record_format`` says when the
whole store is done, so later start-ups cost one read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sync import DOCUMENT_FORMAT, fold

from .audit import record_audit
from .eventlog import EVENTS
from .households import HOUSEHOLDS, rebuild_household, write_household
from .storage import Store, Writer

log = logging.getLogger("kunjung.upgrade")

STATE = "server_state"
MARKER = "record_format"
PROGRESS_EVERY = 1000
AUDIT_LISTED = 1000  # conflicts named one by one in the audit entry; the counts are always whole


@dataclass
class UpgradeReport:
    """What one upgrade did: records folded again, and the conflicts that opened or closed."""

    households: int = 0
    reviews: int = 0
    closed: list[dict[str, Any]] = field(default_factory=list)  # {"household_id", "field", "conflict_id"}
    opened: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.households} households and {self.reviews} visit reviews folded again under merge rule "
                f"{DOCUMENT_FORMAT}; {len(self.closed)} conflicts closed, {len(self.opened)} opened")


def _stale(record_doc: Any) -> bool:
    return isinstance(record_doc, dict) and record_doc.get("format") != DOCUMENT_FORMAT


def _upgrade_household(store: Store, household_id: str, report: UpgradeReport) -> None:
    def unit(tx: Writer) -> tuple[set[tuple[str, str]], set[tuple[str, str]]] | None:
        doc = tx.get(HOUSEHOLDS, household_id)
        if doc is None or not _stale(doc.get("record")):
            return None
        before = {(c["id"], c["field"]) for c in tx.find("conflicts", {"household_id": household_id, "open": True})}
        record = rebuild_household(tx, household_id)
        write_household(tx, record, doc, doc["seq"])
        after = {(c["id"], c["field"]) for c in record.conflicts()}
        return before - after, after - before

    changed = store.unit_of_work(unit)
    if changed is None:
        return
    report.households += 1
    closed, opened = changed
    report.closed += [{"household_id": household_id, "field": path, "conflict_id": cid} for cid, path in closed]
    report.opened += [{"household_id": household_id, "field": path, "conflict_id": cid} for cid, path in opened]


def _upgrade_review(store: Store, visit_id: str, report: UpgradeReport) -> None:
    def unit(tx: Writer) -> bool:
        visit = tx.get("visits", visit_id)
        if visit is None or not _stale(visit.get("review_record")):
            return False
        reviews = [event["engine"] for event in tx.find(EVENTS, {"household_id": visit["household_id"]},
                                                          order_by="seq")
                   if event["type"] == "review" and event.get("visit_id") == visit_id]
        record = fold(reviews, visit_id, check=False)
        tx.put("visits", {**visit, "review_record": record.to_document()})
        return True

    if store.unit_of_work(unit):
        report.reviews += 1


def upgrade_records(store: Store, progress: Callable[[str], None] | None = None) -> UpgradeReport | None:
    """Fold again every record stored in an older format; None when the store was up to date."""
    marker = store.get(STATE, MARKER)
    if marker is not None and marker.get("format") == DOCUMENT_FORMAT:
        return None
    report = UpgradeReport()
    total = store.count(HOUSEHOLDS)
    for checked, doc in enumerate(store.iterate(HOUSEHOLDS, order_by="id"), start=1):
        if _stale(doc.get("record")):
            _upgrade_household(store, doc["id"], report)
        if progress is not None and checked % PROGRESS_EVERY == 0:
            progress(f"... {checked:,} of {total:,} households checked")
    for visit in store.iterate("visits", order_by="id"):
        if _stale(visit.get("review_record")):
            _upgrade_review(store, visit["id"], report)

    def finish(tx: Writer) -> None:
        if report.households or report.reviews:
            record_audit(tx, "records_upgraded", actor=None, address="server", details={
                "format": DOCUMENT_FORMAT, "households": report.households, "reviews": report.reviews,
                "closed_count": len(report.closed), "opened_count": len(report.opened),
                "closed": report.closed[:AUDIT_LISTED], "opened": report.opened[:AUDIT_LISTED]})
        tx.put(STATE, {"id": MARKER, "format": DOCUMENT_FORMAT})

    store.unit_of_work(finish)
    return report


def upgrade_on_start(store: Store) -> None:
    """The start-up hook: upgrade, and say what changed in the log."""
    report = upgrade_records(store, progress=log.info)
    if report is not None and (report.households or report.reviews):
        log.warning("%s", report.summary())
