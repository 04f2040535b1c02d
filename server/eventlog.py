"""Stored events: the hash of an event body, the shape events are stored in, which events fold into a household."""

# Every accepted event, pushed or server-made, is stored once in ``events`` with the body it
# arrived with (or, for a server-made one, the request that made it) and the engine's shape of
# it. A resend is recognised by the hash of its body; the fold is rebuilt from the engine shapes.

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from sync import Event, Recall
from sync.stamps import parse_stamp
from sync.values import canonical_bytes

from .storage import Store, Writer

EVENTS = "events"
# The event types that write household fields. A review is stored with the household id of its
# visit, so that the household's history can find it, but it folds into the visit, not the household.
# An erasure (server/privacy/erasure.py) writes nothing but covers fields: it folds in too.
HOUSEHOLD_EVENT_TYPES = ("visit", "household_edit", "resolution", "import", "erasure")


def body_hash(body: Any) -> str:
    """sha256 of the body's canonical JSON (``sync.values.canonical_json``, spelt by orjson where
    that is the same text: ``sync.values.canonical_bytes``)."""
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def same_body(stored: Mapping[str, Any], digest: str) -> bool:
    """Whether a stored event has the body whose hash is ``digest``.

    Events stored before the hash was spelt with ``canonical_json`` carry a hash of another
    spelling of the same body (orjson writes 1e-05 as 0.00001): their stored body is hashed anew,
    so a device resending such an event is still answered ``duplicate``.
    """
    if stored.get("body_hash") == digest:
        return True
    return "body" in stored and body_hash(stored["body"]) == digest


def folds_into_household(event_type: str) -> bool:
    """Whether events of this type write household fields: the one answer to that question."""
    return event_type in HOUSEHOLD_EVENT_TYPES


def household_events(store: Store, household_id: str) -> Iterator[dict[str, Any]]:
    """The stored events that fold into the household, in the order they were received."""
    for doc in store.iterate(EVENTS, {"household_id": household_id}, order_by="seq"):
        if folds_into_household(doc["type"]):
            yield doc


def event_recall(reader: Store | Writer, household_id: str,
                 pending: Mapping[str, Event | Mapping[str, Any]] | None = None) -> Recall:
    """What this node's event log knows of a stamp of ``household_id`` (the engine's ``Recall``).

    A household document remembers only the writes the merge still needs (docs/merge-rule.md,
    "Compact memory"); a base naming a write it has forgotten is answered from the log.
    ``pending`` holds the engine shapes of a push's events not yet written, by event id.
    """
    def recall(stamp: str) -> Event | Mapping[str, Any] | None:
        event_id = parse_stamp(stamp).event_id
        if pending is not None and event_id in pending:
            return pending[event_id]
        doc = reader.get(EVENTS, event_id)
        if doc is None or doc.get("household_id") != household_id or not folds_into_household(doc["type"]):
            return None
        return doc.get("engine")

    return recall


def event_document(event_type: str, engine: Mapping[str, Any], *, household_id: str, body: Any, digest: str,
                   received_at: str, flags: list[dict[str, Any]] | None = None,
                   visit_id: str | None = None) -> dict[str, Any]:
    """An event as ``events`` stores it: who, when, the body as received, its hash and the engine's shape."""
    doc = {"id": engine["id"], "type": event_type, "household_id": household_id, "village": engine["village"],
           "device_id": engine["device_id"], "officer": engine["officer"], "hlc": engine["hlc"],
           "received_at": received_at, "body_hash": digest, "body": body, "engine": dict(engine),
           "flags": list(flags or [])}
    if visit_id is not None:
        doc["visit_id"] = visit_id
    return doc
