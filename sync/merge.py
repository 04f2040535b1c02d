"""The merge rule: folding field writes into records, conflicts, and record documents."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sync.events import ID_REUSED, INVALID, Event, EventError, check_base, parse_event, stale_base_error
from sync.hlc import hlc_to_iso
from sync.paths import check_path, split_path
from sync.stamps import check_id, parse_stamp
from sync.values import JsonValue, canonical_json, check_json_value, json_key

__all__ = [
    "DOCUMENT_FORMAT",
    "FieldState",
    "Record",
    "Write",
    "check_base",
    "conflict_id",
    "fold",
    "writes_of",
]

DOCUMENT_FORMAT = 1
CONFLICT_ID_LENGTH = 16


@dataclass(frozen=True, eq=False)
class Write:
    """One field write: ``value`` at ``path``, named by ``stamp``, superseding ``base``."""

    path: str
    value: JsonValue
    stamp: str
    base: frozenset[str] = field(default_factory=frozenset)
    officer: str = ""
    at: str | None = None

    def __post_init__(self) -> None:
        check_path(self.path)
        parse_stamp(self.stamp)
        check_json_value(self.value)
        # Stored values must not change when the caller later mutates its event dict.
        object.__setattr__(self, "value", _own(self.value))
        object.__setattr__(self, "base", frozenset(self.base))
        for stamp in self.base:
            parse_stamp(stamp)
        if not isinstance(self.officer, str):
            raise ValueError(f"officer {self.officer!r} is not a string")
        if self.at is not None and not isinstance(self.at, str):
            raise ValueError(f"at {self.at!r} is not a string")

    @property
    def hlc(self) -> str:
        """The HLC part of the stamp."""
        return parse_stamp(self.stamp).hlc

    @property
    def device_id(self) -> str:
        """The device that made the write (from the stamp)."""
        return parse_stamp(self.stamp).device_id

    @property
    def event_id(self) -> str:
        """The event that carried the write (from the stamp)."""
        return parse_stamp(self.stamp).event_id

    def _identity(self) -> tuple[Any, ...]:
        return (self.path, self.stamp, json_key(self.value), self.base, self.officer, self.at)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Write):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash((self.path, self.stamp))

    def head_view(self) -> dict[str, Any]:
        """The conflict listing of this write: value, stamp, officer, device, event and time.

        ``at`` falls back to the HLC's physical time when the event carried none.
        """
        stamp = parse_stamp(self.stamp)
        return {
            "value": copy.deepcopy(self.value),
            "stamp": self.stamp,
            "officer": self.officer,
            "device_id": stamp.device_id,
            "event_id": stamp.event_id,
            "at": self.at if self.at is not None else hlc_to_iso(stamp.hlc),
        }

    def to_document(self) -> dict[str, Any]:
        """JSON-compatible form; ``path`` is the key it is stored under."""
        doc: dict[str, Any] = {
            "value": copy.deepcopy(self.value),
            "stamp": self.stamp,
            "base": sorted(self.base),
            "officer": self.officer,
        }
        if self.at is not None:
            doc["at"] = self.at
        return doc

    @classmethod
    def from_document(cls, path: str, doc: Mapping[str, Any]) -> Write:
        """The write stored by :meth:`to_document` under ``path``; ValueError when malformed."""
        _check_keys(doc, required={"value", "stamp", "base", "officer"}, optional={"at"}, what="write")
        if not isinstance(doc["base"], list):
            raise ValueError(f"write {doc.get('stamp')!r}: base is not a list")
        return cls(path, doc["value"], doc["stamp"], frozenset(doc["base"]), doc["officer"], doc.get("at"))


def _check_keys(doc: object, required: set[str], optional: set[str], what: str) -> None:
    if not isinstance(doc, Mapping):
        raise ValueError(f"{what} document is not an object")
    missing = required - doc.keys()
    unknown = doc.keys() - required - optional
    if missing or unknown:
        raise ValueError(f"{what} document: missing {sorted(missing)}, unknown {sorted(unknown)}")


_SCALARS = (str, int, float, bool, type(None))


def _own(value: JsonValue) -> JsonValue:
    """A copy the caller cannot change under us; scalars are immutable already."""
    return value if isinstance(value, _SCALARS) else copy.deepcopy(value)


def _checked_write(path: str, value: JsonValue, stamp: str, base: frozenset[str], officer: str,
                   at: str | None) -> Write:
    """A Write from parts parse_event has already checked: folding a visit makes dozens of
    writes, and checking each part again was most of the cost of a push."""
    write = object.__new__(Write)
    for name, part in (("path", path), ("value", _own(value)), ("stamp", stamp), ("base", base),
                       ("officer", officer), ("at", at)):
        object.__setattr__(write, name, part)
    return write


def writes_of(event: Mapping[str, Any] | Event) -> tuple[Write, ...]:
    """The field writes an event makes, in path order (EventError when it is invalid)."""
    parsed = parse_event(event)
    stamp = parsed.stamp
    return tuple(
        _checked_write(path, parsed.set[path], stamp, frozenset(parsed.base.get(path, ())), parsed.officer,
                       parsed.at)
        for path in sorted(parsed.set)
    )


class FieldState:
    """One field's heads and every stamp some received write superseded.

    A write supersedes the writes its base names. The heads are the received writes
    that no received write supersedes; the value is the greatest head's; the field is
    in conflict when its heads hold two or more JSON-distinct values. All of it depends
    only on the set of writes received, so replicas fed the same events in any order agree.

    Superseded stamps are kept, not just dropped heads: a write that arrives after a
    write superseding it must not become a head.
    """

    def __init__(self, path: str, heads: Iterable[Write] = (), superseded: Iterable[str] = ()) -> None:
        self.path = check_path(path)
        self._heads: dict[str, Write] = {}
        self._superseded: set[str] = set()
        for stamp in superseded:
            parse_stamp(stamp)
            self._superseded.add(stamp)
        for write in heads:
            if write.path != path or write.stamp in self._superseded or write.stamp in self._heads:
                raise ValueError(f"{path}: {write.stamp} cannot be a head here")
            self._heads[write.stamp] = write

    @property
    def heads(self) -> tuple[Write, ...]:
        """The writes nothing received supersedes, by ascending stamp."""
        return tuple(self._heads[stamp] for stamp in sorted(self._heads))

    @property
    def superseded(self) -> frozenset[str]:
        """Every stamp named in the base of a received write."""
        return frozenset(self._superseded)

    @property
    def winner(self) -> Write | None:
        """The greatest head, whose value is the field's value (None only for a field with no head)."""
        return self._heads[max(self._heads)] if self._heads else None

    @property
    def value(self) -> JsonValue:
        """The value of the greatest head."""
        winner = self.winner
        return None if winner is None else copy.deepcopy(winner.value)

    @property
    def stamp(self) -> str | None:
        """The stamp of the greatest head."""
        winner = self.winner
        return None if winner is None else winner.stamp

    @property
    def in_conflict(self) -> bool:
        """Whether the heads hold two or more JSON-distinct values."""
        return len({json_key(write.value) for write in self._heads.values()}) > 1

    def clash(self, write: Write) -> bool:
        """Whether ``write`` reuses the stamp of a different head (a reused event id)."""
        held = self._heads.get(write.stamp)
        return held is not None and held != write

    def apply(self, write: Write) -> bool:
        """Take in one write; True when the heads changed. Applying it again changes nothing."""
        if write.path != self.path:
            raise ValueError(f"write to {write.path} applied to field {self.path}")
        if self.clash(write):
            raise ValueError(f"{self.path}: stamp {write.stamp} reused with different content")
        changed = False
        for stamp in write.base:
            self._superseded.add(stamp)
            changed = self._heads.pop(stamp, None) is not None or changed
        if write.stamp not in self._superseded and write.stamp not in self._heads:
            self._heads[write.stamp] = write
            changed = True
        return changed

    def merge(self, other: FieldState) -> bool:
        """Join another replica's state of this field into this one; True when the heads changed."""
        if other.path != self.path:
            raise ValueError(f"field {other.path} merged into field {self.path}")
        for write in other._heads.values():
            if self.clash(write):
                raise ValueError(f"{self.path}: stamp {write.stamp} reused with different content")
        before = set(self._heads)
        self._superseded |= other._superseded
        for stamp, write in other._heads.items():
            self._heads.setdefault(stamp, write)
        for stamp in self._superseded & self._heads.keys():
            del self._heads[stamp]
        return set(self._heads) != before

    def copy(self) -> FieldState:
        """An independent copy (writes are immutable and shared)."""
        return FieldState(self.path, self._heads.values(), self._superseded)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldState):
            return NotImplemented
        return (self.path, self.heads, self._superseded) == (other.path, other.heads, other._superseded)

    __hash__ = None  # type: ignore[assignment]

    def to_document(self) -> dict[str, Any]:
        """``{"heads": [write documents by stamp], "superseded": [sorted stamps]}``."""
        return {
            "heads": [write.to_document() for write in self.heads],
            "superseded": sorted(self._superseded),
        }

    @classmethod
    def from_document(cls, path: str, doc: Mapping[str, Any]) -> FieldState:
        """The state stored by :meth:`to_document` under ``path``; ValueError when malformed."""
        _check_keys(doc, required={"heads", "superseded"}, optional=set(), what=f"field {path}")
        if not isinstance(doc["heads"], list) or not isinstance(doc["superseded"], list):
            raise ValueError(f"field {path}: heads and superseded must be lists")
        heads = [Write.from_document(path, write) for write in doc["heads"]]
        return cls(path, heads, doc["superseded"])

    def to_pull(self) -> dict[str, Any]:
        """``{"value", "stamp"}``, plus ``heads`` while in conflict.

        When equal values left several heads, ``head_stamps`` lists them all: a device
        must name them all in its next write's base, or its edit would leave the other
        equal head standing and turn into a conflict nobody made.
        """
        pulled: dict[str, Any] = {"value": self.value, "stamp": self.stamp}
        if self.in_conflict:
            pulled["heads"] = [
                {"value": copy.deepcopy(write.value), "stamp": write.stamp, "officer": write.officer}
                for write in self.heads
            ]
        elif len(self._heads) > 1:
            pulled["head_stamps"] = sorted(self._heads)
        return pulled


def conflict_id(record_id: str, path: str, head_stamps: Iterable[str]) -> str:
    """A short, stable id of one conflict: a new head makes a new id."""
    text = canonical_json([record_id, path, sorted(head_stamps)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:CONFLICT_ID_LENGTH]


class Record:
    """A household (or any record) folded from field writes.

    ``village`` is the village of the creating event, the received event with the
    smallest stamp, so it too depends only on the set of events received.
    """

    def __init__(self, id: str, village: str | None = None, created: str | None = None) -> None:
        self.id = check_id("record id", id)
        if (village is None) != (created is None):
            raise ValueError("village and created are given together or not at all")
        if created is not None:
            parse_stamp(created)
            check_id("village", village)
        self.village = village
        self.created = created
        self._fields: dict[str, FieldState] = {}

    @property
    def fields(self) -> Mapping[str, FieldState]:
        """Field path → state, read-only."""
        return MappingProxyType(self._fields)

    def get(self, path: str, default: JsonValue = None) -> JsonValue:
        """The value of a field, or ``default`` when nothing was written to it."""
        state = self._fields.get(path)
        return default if state is None or state.winner is None else state.value

    def values(self) -> dict[str, JsonValue]:
        """Every field's value by path."""
        return {path: state.value for path, state in sorted(self._fields.items()) if state.winner}

    def members(self) -> dict[str, dict[str, JsonValue]]:
        """The roster: member uuid → field name → value."""
        roster: dict[str, dict[str, JsonValue]] = {}
        for path, value in self.values().items():
            member_id, name = split_path(path)
            if member_id is not None:
                roster.setdefault(member_id, {})[name] = value
        return roster

    def _note_creator(self, stamp: str, village: str) -> None:
        if self.created is None or stamp < self.created:
            self.created, self.village = stamp, village

    def apply(self, write: Write) -> bool:
        """Take in one write; True when that field's heads changed. Does not touch ``village``."""
        state = self._fields.get(write.path)
        if state is None:
            state = self._fields[write.path] = FieldState(write.path)
        return state.apply(write)

    def apply_event(self, event: Mapping[str, Any] | Event, *, check: bool = True) -> set[str]:
        """Fold one event in; returns the paths whose heads changed. Idempotent.

        Raises EventError: ``invalid`` for a malformed event or one about another
        record, ``stale_base`` (unless ``check`` is False), ``id_reused`` when its
        stamp is already held with different content. Nothing changes on error.
        """
        parsed = parse_event(event)
        if parsed.household_id != self.id:
            raise EventError(INVALID, f"event is about {parsed.household_id}, not {self.id}",
                             {"household_id": [f"must be {self.id}"]})
        if check and (stale := stale_base_error(parsed)) is not None:
            raise stale
        writes = writes_of(parsed)
        self._refuse_reuse(parsed, writes)
        self._note_creator(parsed.stamp, parsed.village)
        return {write.path for write in writes if self.apply(write)}

    def _refuse_reuse(self, event: Event, writes: Iterable[Write]) -> None:
        errors: dict[str, list[str]] = {}
        if self.created == event.stamp and self.village != event.village:
            errors["village"] = [f"event {event.id} was received with village {self.village}"]
        for write in writes:
            state = self._fields.get(write.path)
            if state is not None and state.clash(write):
                errors[f"set.{write.path}"] = [f"event {event.id} was received with other content"]
        if errors:
            raise EventError(ID_REUSED, f"event {event.id} was received before with other content", errors)

    def merge(self, other: Record) -> set[str]:
        """Join another replica of this record into this one; returns the paths whose heads changed.

        The join is the union of writes and superseded stamps: commutative,
        associative and idempotent, so replicas may merge in any topology.
        """
        if other.id != self.id:
            raise ValueError(f"record {other.id} merged into record {self.id}")
        if other.created is not None and other.created == self.created and other.village != self.village:
            raise ValueError(f"record {self.id}: creating event {self.created} seen with two villages")
        for path, state in other._fields.items():
            mine = self._fields.get(path)
            if mine is not None:
                for write in state.heads:
                    if mine.clash(write):
                        raise ValueError(f"{path}: stamp {write.stamp} reused with different content")
        if other.created is not None and other.village is not None:
            self._note_creator(other.created, other.village)
        changed = set()
        for path, state in other._fields.items():
            mine = self._fields.get(path)
            if mine is None:
                self._fields[path] = state.copy()
                changed.add(path)
            elif mine.merge(state):
                changed.add(path)
        return changed

    def copy(self) -> Record:
        """An independent copy."""
        twin = Record(self.id, self.village, self.created)
        twin._fields = {path: state.copy() for path, state in self._fields.items()}
        return twin

    def conflicts(self) -> list[dict[str, Any]]:
        """Every field in conflict, by path, with all its heads by ascending stamp."""
        found = []
        for path, state in sorted(self._fields.items()):
            if state.in_conflict:
                heads = state.heads
                found.append({
                    "id": conflict_id(self.id, path, (write.stamp for write in heads)),
                    "household_id": self.id,
                    "village": self.village,
                    "field": path,
                    "heads": [write.head_view() for write in heads],
                })
        return found

    def to_pull(self) -> dict[str, Any]:
        """The pull change for this household (CONTRACT.md "Sync")."""
        return {
            "type": "household",
            "id": self.id,
            "village": self.village,
            "fields": {
                path: state.to_pull() for path, state in sorted(self._fields.items()) if state.winner
            },
        }

    def to_document(self) -> dict[str, Any]:
        """Lossless JSON-compatible form for storage: heads with metadata and superseded stamps."""
        return {
            "format": DOCUMENT_FORMAT,
            "id": self.id,
            "village": self.village,
            "created": self.created,
            "fields": {path: state.to_document() for path, state in sorted(self._fields.items())},
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Record:
        """The record stored by :meth:`to_document`; ValueError when malformed.

        Top-level keys other than ours are ignored, so a store may add its own (``seq``, ``_id``).
        """
        if not isinstance(doc, Mapping):
            raise ValueError("record document is not an object")
        if doc.get("format") != DOCUMENT_FORMAT:
            raise ValueError(f"record document format {doc.get('format')!r} is not {DOCUMENT_FORMAT}")
        for key in ("id", "village", "created", "fields"):
            if key not in doc:
                raise ValueError(f"record document has no {key!r}")
        if not isinstance(doc["fields"], Mapping):
            raise ValueError("record document fields is not an object")
        record = cls(doc["id"], doc["village"], doc["created"])
        for path, state in doc["fields"].items():
            record._fields[path] = FieldState.from_document(path, state)
        return record

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self.id, self.village, self.created, self._fields) == (
            other.id, other.village, other.created, other._fields
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Record({self.id!r}, village={self.village!r}, fields={len(self._fields)})"


def fold(events: Iterable[Mapping[str, Any] | Event], record_id: str | None = None, *,
         check: bool = True) -> Record:
    """The record folded from scratch from ``events`` (all about one record).

    ``record_id`` is needed only to fold an empty list into an empty record.
    """
    parsed = [parse_event(event) for event in events]
    if record_id is None:
        if not parsed:
            raise ValueError("fold of no events needs a record_id")
        record_id = parsed[0].household_id
    record = Record(record_id)
    for event in parsed:
        record.apply_event(event, check=check)
    return record
