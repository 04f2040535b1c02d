"""A device's copy of the households it pulled, and the record it merges from that copy and its own writes."""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from forms.identifiers import Area
from sync import Record, Write
from sync.values import canonical_bytes


def kept_json(value: Any) -> bytes:
    """``value`` as JSON bytes to keep for long: a copy of exactly its size.

    The bytes ``orjson.dumps`` returns keep the whole buffer it wrote into (64 KiB for a 12 KB
    household, 4 KiB for a 100-byte base); a thousand simulated phones holding events and copies
    would carry several times their data.
    """
    return bytes(memoryview(orjson.dumps(value)))


def field_stamps(state: Mapping[str, Any]) -> list[str]:
    """Every stamp a pulled field shows: its heads while in conflict, its equal heads, or its one stamp.

    These are what a new write to the field must name in its ``base``: naming fewer would leave a
    head standing beside the new value, a conflict nobody made.
    """
    if "heads" in state:
        return sorted(head["stamp"] for head in state["heads"])
    return sorted(state.get("head_stamps") or [state["stamp"]])


def head_officers(fields: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The officer of each stamp a pulled household shows, as its conflict heads name them.

    A record holds one entry per stamp, so a stamp must carry the same officer in every field;
    a pull names officers only in conflict heads, so the other fields borrow them from there.
    """
    officers: dict[str, str] = {}
    for state in fields.values():
        for head in state.get("heads", ()):
            officers.setdefault(head["stamp"], head.get("officer") or "")
    return officers


def pulled_writes(path: str, state: Mapping[str, Any], officers: Mapping[str, str] | None = None) -> list[Write]:
    """The head writes a pulled field shows, as :class:`sync.Write` objects (``officers`` by stamp)."""
    officers = officers or {}
    if "heads" in state:
        return [Write(path, head["value"], head["stamp"],
                      officer=officers.get(head["stamp"], head.get("officer") or "")) for head in state["heads"]]
    return [Write(path, state["value"], stamp, officer=officers.get(stamp, "")) for stamp in field_stamps(state)]


def sorted_change(change: Mapping[str, Any]) -> bytes:
    """A pulled household's id, village and fields as JSON with sorted keys (equal states, equal bytes), kept
    at its own size as :func:`kept_json` explains."""
    kept = {"id": change["id"], "village": change["village"], "fields": change["fields"]}
    return bytes(memoryview(canonical_bytes(kept)))


def state_digest(encoded: bytes) -> bytes:
    """The key of a pulled state in :class:`Interner`."""
    return hashlib.blake2b(encoded, digest_size=16).digest()


class PulledHousehold:
    """One household exactly as a pull gave it: ``id``, ``village``, and its ``fields`` (decoded on each use).

    The change is kept encoded, a third of its size as Python objects, and replicas that
    pulled the same state may share one object (see :class:`Interner`); nothing may change it.
    """

    __slots__ = ("__weakref__", "digest", "encoded", "id", "village")

    def __init__(self, change: Mapping[str, Any], encoded: bytes | None = None) -> None:
        self.id: str = change["id"]
        self.village: str = change["village"]
        self.encoded = encoded if encoded is not None else sorted_change(change)
        # Equal states have one digest whatever their key order (the keys are sorted): replicas that pulled
        # them share one copy.
        self.digest = state_digest(self.encoded)

    @property
    def fields(self) -> dict[str, Any]:
        """Field path -> the pulled state (``value``, ``stamp``, and ``heads`` or ``head_stamps``); a new dict."""
        return orjson.loads(self.encoded)["fields"]

    def record(self) -> Record:
        """A new :class:`sync.Record` of the pulled heads."""
        record = Record(self.id)
        fields = self.fields
        officers = head_officers(fields)
        for path, state in fields.items():
            for write in pulled_writes(path, state, officers):
                record.apply(write)
        return record

    def to_change(self) -> dict[str, Any]:
        """The pull change this copy was made from."""
        return {"type": "household", **orjson.loads(self.encoded)}


class Interner:
    """Shares one :class:`PulledHousehold` between every replica that pulled the same state.

    Many simulated phones of one village hold the same households; sharing keeps their memory to one
    copy per distinct state. Entries go when no replica holds them any more. Safe between threads.
    """

    def __init__(self) -> None:
        self._known: weakref.WeakValueDictionary[bytes, PulledHousehold] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def household(self, change: Mapping[str, Any]) -> PulledHousehold:
        # Most pulled states are held already: looked up without the lock (a dict read under the GIL), so
        # a thousand phones pulling one village do not queue on it; only a new state is made and added.
        encoded = sorted_change(change)
        held = self._known.get(state_digest(encoded))
        if held is not None:
            return held
        made = PulledHousehold(change, encoded)
        with self._lock:
            return self._known.setdefault(made.digest, made)

    def __len__(self) -> int:
        return len(self._known)


class Replica:
    """The households a device holds, as the pull last gave each one.

    A pulled household replaces the copy held before; ``left_scope`` drops a village's households; a
    fresh pull (after the server refused the cursor) starts from :meth:`clear`.
    """

    def __init__(self, interner: Interner | None = None) -> None:
        self._interner = interner
        self._households: dict[str, PulledHousehold] = {}

    def take(self, change: Mapping[str, Any]) -> PulledHousehold:
        """Keep a pulled household change in place of the copy held before."""
        held = self._interner.household(change) if self._interner is not None else PulledHousehold(change)
        self._households[held.id] = held
        return held

    def drop_area(self, code: str) -> list[str]:
        """Forget the households of a village (or of every village inside an area); returns their ids."""
        area = Area(code)
        gone = [hid for hid, held in self._households.items() if area.contains(held.village)]
        for hid in gone:
            del self._households[hid]
        return gone

    def clear(self) -> None:
        self._households.clear()

    def get(self, household_id: str) -> PulledHousehold | None:
        return self._households.get(household_id)

    def __contains__(self, household_id: object) -> bool:
        return household_id in self._households

    def __iter__(self) -> Iterator[str]:
        return iter(self._households)

    def __len__(self) -> int:
        return len(self._households)

    def items(self) -> Iterable[tuple[str, PulledHousehold]]:
        return self._households.items()
