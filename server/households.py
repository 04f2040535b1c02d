"""Households: storing a folded record with its conflict index, folding it again from its events, and reading it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sync import Record, fold

from .areas import scoped_areas, village_where
from .errors import ApiError
from .eventlog import EVENTS, folds_into_household, household_events
from .i18n import _
from .pull_views import household_pull
from .security.scope import Scope
from .storage import Store, Writer
from .timeutil import iso, now_utc

HOUSEHOLDS = "households"
CONFLICTS = "conflicts"


def write_household(tx: Writer, record: Record, previous: Mapping[str, Any], seq: int | None) -> None:
    """Store a household and bring its entries in the conflict index up to date."""
    write_households(tx, [(record, previous, seq)])


def write_households(tx: Writer, changed: Sequence[tuple[Record, Mapping[str, Any], int | None]]) -> None:
    """:func:`write_household` of each ``(record, previous document, its seq or None)``, in a few
    batched writes (a push changes hundreds of households at once). The households are written
    conditionally on their seq: one changed meanwhile refuses them all (WriteConflict)."""
    if not changed:
        return
    updated_at = iso(now_utc())
    docs, seqs, found = [], [], []
    for record, previous, seq in changed:
        conflicts = record.conflicts()
        doc = {"id": record.id, "village": record.village, "open_conflicts": len(conflicts),
               "updated_at": updated_at, "record": record.to_document()}
        for key in ("source", "imported"):
            if key in previous:
                doc[key] = previous[key]
        docs.append(doc)
        seqs.append(seq)
        # Only a household that had open conflicts can have one to close.
        found.append((record.id, conflicts, previous.get("open_conflicts", 0) > 0))
    tx.put_many(HOUSEHOLDS, docs, expect_seqs=seqs)
    if not any(conflicts or had_open for _, conflicts, had_open in found):
        return
    known = tx.get_many(CONFLICTS, [c["id"] for _, conflicts, _ in found for c in conflicts])
    writes = []
    for household_id, conflicts, had_open in found:
        current = {c["id"] for c in conflicts}
        for old in tx.find(CONFLICTS, {"household_id": household_id, "open": True}) if had_open else ():
            if old["id"] not in current:
                writes.append({**old, "open": False, "closed_at": updated_at})
        for conflict in conflicts:
            stored = known.get(conflict["id"])
            if stored is None or not stored["open"]:
                writes.append({**conflict, "open": True, "opened_at": updated_at})
    tx.put_many(CONFLICTS, writes)


def rebuild_household(reader: Store | Writer, household_id: str) -> Record:
    """Fold a household again from its stored events (the engine shapes kept with each), in a unit of
    work or out of one."""
    events = reader.find(EVENTS, {"household_id": household_id}, order_by="seq")
    return fold([doc["engine"] for doc in events if folds_into_household(doc["type"])], household_id, check=False)


def household_change(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The pull change of a stored household (``server.pull_views.household_pull``). Pulls do not
    call this: they send the encoded views the store keeps beside each household. The change shares
    values with ``doc``, which callers read fresh from the store."""
    return household_pull(doc)


def household_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A household as supervisors read it: the pull change and its count of open conflicts."""
    return {**household_change(doc), "open_conflicts": doc["open_conflicts"]}


def household_history(store: Store, household_id: str) -> Iterator[dict[str, Any]]:
    """Every event that changed the household, oldest first: who, when, what it wrote (``writes``,
    ``base``, ``flags``) and each written field's value before and after it was folded in (a write
    can lose to a newer one, or open a conflict). The one shape of a household's history."""
    record = Record(household_id)
    # An erasure rewrites the events it scrubs (a new seq each): arrival time keeps their order.
    events = sorted(household_events(store, household_id), key=lambda e: e.get("received_at") or "")
    for step, event in enumerate(events, start=1):
        engine = event["engine"]
        writes = engine.get("set") or {}
        paths = sorted(writes)
        before = {path: record.get(path) for path in paths}
        record.apply_event(engine, check=False)
        changes = []
        for path in paths:
            state = record.fields.get(path)
            after = record.get(path)
            changes.append({"field": path, "before": before[path], "after": after,
                            "changed": before[path] != after, "in_conflict": bool(state and state.in_conflict)})
        yield {"step": step, "event_id": event["id"], "type": event["type"], "officer": event["officer"],
               "device_id": event["device_id"], "at": engine.get("at") or event.get("received_at"),
               "received_at": event.get("received_at"), "hlc": event["hlc"], "writes": dict(writes),
               "base": dict(engine.get("base") or {}), "flags": list(event.get("flags") or []),
               "changes": changes, **_erasure_note(engine)}


def _erasure_note(engine: Mapping[str, Any]) -> dict[str, Any]:
    """What a history entry of an erasure adds: the patterns and "erased on … by …"."""
    if not engine.get("erase"):
        return {}
    return {"erase": list(engine["erase"]),
            "note": f"erased on {engine.get('at')} by {engine.get('officer')}"}


# -- reads ------------------------------------------------------------------------------------
def list_households(store: Store, scope: Scope, *, area: str | None, after: str | None,
                    limit: int) -> list[dict[str, Any]]:
    """Households in scope (and in ``area``), by id, after the id ``after``."""
    where = village_where(scoped_areas(scope, area))
    return [household_view(doc) for doc in store.find(HOUSEHOLDS, where, after=after, limit=limit)]


def scoped_household(store: Store, scope: Scope, household_id: str) -> dict[str, Any]:
    """The stored household; 404 alike for an unknown one and one outside the caller's scope."""
    doc = store.get(HOUSEHOLDS, household_id)
    if doc is None or not scope.covers(doc["village"]):
        raise ApiError(404, "not_found", _("No such household."))
    return doc


def get_household(store: Store, scope: Scope, household_id: str) -> dict[str, Any]:
    """One household with its fields and its history."""
    doc = scoped_household(store, scope, household_id)
    return {**household_view(doc), "history": list(household_history(store, household_id))}


def history_of(store: Store, scope: Scope, household_id: str) -> dict[str, Any]:
    """``{household_id, village, history}`` of a household in scope."""
    doc = scoped_household(store, scope, household_id)
    return {"household_id": household_id, "village": doc["village"],
            "history": list(household_history(store, household_id))}
