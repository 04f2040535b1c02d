"""A reference fold written straight from the merge rule in DESIGN.md §2, sharing no code with sync/."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def ref_stamp(event: dict[str, Any]) -> str:
    """The stamp "<hlc>/<device_id>/<event_id>" of an event's writes."""
    return event["hlc"] + "/" + event["device_id"] + "/" + event["id"]


def ref_normal(value: Any) -> Any:
    """A comparable form in which JSON-equal values are equal: 1 and 1.0 alike, true and 1 not."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        number = int(value) if isinstance(value, float) and value.is_integer() else value
        return ("number", number)
    if isinstance(value, list):
        return ("list", tuple(ref_normal(item) for item in value))
    return ("dict", tuple(sorted((key, ref_normal(item)) for key, item in value.items())))


def ref_writes(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every received write once (a duplicate event is the same event)."""
    unique = {ref_stamp(event): event for event in events}
    writes = []
    for stamp, event in unique.items():
        base = event.get("base") or {}
        for path, value in event["set"].items():
            writes.append({
                "path": path, "value": value, "stamp": stamp, "base": list(base.get(path, [])),
                "officer": event["officer"],
            })
    return writes


def ref_fold(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``{"id", "village", "fields": {path: {"value", "stamp", "heads", "conflict"}}}`` by the rule text.

    Deliberately naive: it looks at the whole set of received events at once.
    heads: writes whose stamp no received write of that field names in its base;
    value: the greatest head's; conflict: two or more distinct head values.
    """
    events = list(events)
    writes = ref_writes(events)
    fields: dict[str, Any] = {}
    for path in sorted({write["path"] for write in writes}):
        mine = [write for write in writes if write["path"] == path]
        named = {stamp for write in mine for stamp in write["base"]}
        heads = sorted((write for write in mine if write["stamp"] not in named), key=lambda w: w["stamp"])
        if not heads:
            continue
        fields[path] = {
            "value": heads[-1]["value"],
            "stamp": heads[-1]["stamp"],
            "heads": [(write["stamp"], write["value"], write["officer"]) for write in heads],
            "conflict": len({ref_normal(write["value"]) for write in heads}) >= 2,
        }
    if not events:
        return {"id": None, "village": None, "fields": fields}
    first = min(events, key=ref_stamp)
    return {"id": first["household_id"], "village": first["village"], "fields": fields}


def ref_heads(events: Iterable[dict[str, Any]], path: str) -> list[tuple[str, Any]]:
    """(stamp, value) of the heads of one field, by ascending stamp."""
    field = ref_fold(events)["fields"].get(path)
    return [] if field is None else [(stamp, value) for stamp, value, _officer in field["heads"]]


def ref_known_stamps(events: Iterable[dict[str, Any]], path: str) -> list[str]:
    """Every stamp of a write to ``path`` among ``events``, ascending."""
    return sorted({write["stamp"] for write in ref_writes(events) if write["path"] == path})


def ref_named(events: Iterable[dict[str, Any]], path: str) -> set[str]:
    """Every stamp that some received write to ``path`` names in its base."""
    return {stamp for write in ref_writes(events) if write["path"] == path for stamp in write["base"]}
