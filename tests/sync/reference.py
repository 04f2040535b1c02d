"""A reference fold written straight from the rule text in docs/merge-rule.md, sharing no code with sync/.

Deliberately naive: it looks at the whole set of received events at once and compares every
pair of writes. Events are plain dicts in the engine's shape.
"""

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


ERASED = ("erased",)  # the one "value" every erased write has, so erased heads never conflict


def ref_unique(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every received event once (a duplicate is the same event)."""
    return list({ref_stamp(event): event for event in events}.values())


def ref_writes(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every received write once."""
    writes = []
    for event in ref_unique(events):
        base = event.get("base") or {}
        for path, value in (event.get("set") or {}).items():
            writes.append({
                "path": path, "value": value, "stamp": ref_stamp(event), "base": set(base.get(path, [])),
                "device": event["device_id"], "hlc": event["hlc"], "seq": event.get("device_seq"),
                "origin": event.get("origin", "device"), "officer": event["officer"],
            })
    return writes


def earlier_on_the_same_device(v: dict[str, Any], w: dict[str, Any]) -> bool:
    """The device order: v came before w on one device. Only writes a device pushed have it; one
    device's writes with a device_seq and those without are not ordered against each other."""
    if v["origin"] != "device" or w["origin"] != "device" or v["device"] != w["device"]:
        return False
    if v["seq"] is not None and w["seq"] is not None:
        return (v["seq"], v["hlc"]) < (w["seq"], w["hlc"])
    if v["seq"] is None and w["seq"] is None:
        return v["hlc"] < w["hlc"]
    return False


def supersedes(w: dict[str, Any], v: dict[str, Any]) -> bool:
    """w supersedes v (same field): w's base names v, or v came earlier on w's device."""
    return v["stamp"] in w["base"] or earlier_on_the_same_device(v, w)


def ref_covers(pattern: str, path: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        return path.startswith(pattern[:-1])
    return pattern == path


def ref_erased_patterns(events: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({pattern for event in ref_unique(events) for pattern in event.get("erase") or []})


def ref_fold(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``{"id", "village", "erased", "fields": {path: {"value", "stamp", "heads", "conflict", "erased"}}}``.

    heads: received writes no received write supersedes (by base or by the device order);
    value: the greatest head's (none when an erasure covers the path); conflict: two or more
    distinct head values, an erased value being one value.
    """
    events = list(events)
    writes = ref_writes(events)
    patterns = ref_erased_patterns(events)
    fields: dict[str, Any] = {}
    for path in sorted({write["path"] for write in writes}):
        mine = [write for write in writes if write["path"] == path]
        heads = sorted((v for v in mine if not any(supersedes(w, v) for w in mine)), key=lambda w: w["stamp"])
        if not heads:
            continue
        erased = any(ref_covers(pattern, path) for pattern in patterns)
        fields[path] = {
            "value": None if erased else heads[-1]["value"],
            "stamp": heads[-1]["stamp"],
            "heads": [(w["stamp"], None if erased else w["value"], w["officer"]) for w in heads],
            "conflict": len({ERASED if erased else ref_normal(w["value"]) for w in heads}) >= 2,
            "erased": erased,
        }
    unique = ref_unique(events)
    if not unique:
        return {"id": None, "village": None, "erased": patterns, "fields": fields}
    first = min(unique, key=ref_stamp)
    return {"id": first["household_id"], "village": first["village"], "erased": patterns, "fields": fields}


def ref_heads(events: Iterable[dict[str, Any]], path: str) -> list[tuple[str, Any]]:
    """(stamp, value) of the heads of one field, by ascending stamp."""
    field = ref_fold(events)["fields"].get(path)
    return [] if field is None else [(stamp, value) for stamp, value, _officer in field["heads"]]


def ref_known_stamps(events: Iterable[dict[str, Any]], path: str) -> list[str]:
    """Every stamp of a write to ``path`` among ``events``, ascending."""
    return sorted({write["stamp"] for write in ref_writes(events) if write["path"] == path})
