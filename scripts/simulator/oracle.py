"""The simulator's oracle: a fold written straight from the merge rule's text (docs/design.md §2), sharing no code
with ``sync/``, so that a bug there cannot hide itself."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


def canon(value: Any) -> Any:
    """A comparable form in which JSON-equal values are equal (1 == 1.0, true != 1, key order ignored)."""
    if value is None or isinstance(value, bool | str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", Fraction(value))
    if isinstance(value, list | tuple):
        return ("list", tuple(canon(item) for item in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((key, canon(item)) for key, item in value.items())))
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class Accepted:
    """An event the server accepted, as the oracle folds it.

    ``device_seq`` is the device's own order of its events, when it sent one (without it the device's
    order is its HLC order). A ``resolution`` is server-made: it supersedes exactly its base.
    """

    id: str
    kind: str
    household_id: str
    village: str
    hlc: str
    device_id: str
    officer: str
    at: str
    writes: dict[str, Any]
    base: dict[str, list[str]]
    device_seq: int | None = None

    @property
    def stamp(self) -> str:
        return f"{self.hlc}/{self.device_id}/{self.id}"


def _device_order(event: Accepted) -> tuple[int, str]:
    return (event.device_seq if event.device_seq is not None else 0, event.hlc)


def oracle_fold(events: Iterable[Accepted], *, own_writes_supersede: bool = False) -> dict[str, Any]:
    """``{"village", "fields": {path: pulled shape}, "conflicts": {path: heads}}`` by the rule text.

    A write supersedes the writes its base names; heads are the writes no write supersedes; the value is
    the greatest head's; a field is in conflict when its heads hold two or more distinct values.
    With ``own_writes_supersede`` a device's write also supersedes every earlier write of the same device
    to the same field, "earlier" in the device's own order (``device_seq``, else HLC); server-made writes
    (resolutions) supersede exactly their base.
    """
    unique = {event.id: event for event in events}
    by_path: dict[str, list[tuple[str, Any, Accepted]]] = defaultdict(list)
    named: dict[str, set[str]] = defaultdict(set)
    for event in unique.values():
        for path, value in event.writes.items():
            by_path[path].append((event.stamp, value, event))
            named[path].update(event.base.get(path, ()))
    if own_writes_supersede:
        for path, writes in by_path.items():
            pushed = [event for _, _, event in writes if event.kind != "resolution"]
            latest: dict[str, Accepted] = {}
            for event in pushed:
                held = latest.get(event.device_id)
                if held is None or _device_order(event) > _device_order(held):
                    latest[event.device_id] = event
            named[path].update(event.stamp for event in pushed if latest[event.device_id] is not event)
    fields: dict[str, Any] = {}
    conflicts: dict[str, list[dict[str, Any]]] = {}
    for path, writes in sorted(by_path.items()):
        heads = sorted((write for write in writes if write[0] not in named[path]), key=lambda write: write[0])
        if not heads:
            continue
        top = heads[-1]
        entry: dict[str, Any] = {"value": top[1], "stamp": top[0]}
        if len({canon(value) for _, value, _ in heads}) > 1:
            entry["heads"] = [{"value": value, "stamp": stamp, "officer": event.officer}
                              for stamp, value, event in heads]
            conflicts[path] = [{"value": value, "stamp": stamp, "officer": event.officer,
                                "device_id": event.device_id, "event_id": event.id, "at": event.at}
                               for stamp, value, event in heads]
        elif len(heads) > 1:
            entry["head_stamps"] = [stamp for stamp, _, _ in heads]
        fields[path] = entry
    creator = min(unique.values(), key=lambda event: event.stamp)
    return {"village": creator.village, "fields": fields, "conflicts": conflicts}
