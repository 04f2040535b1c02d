"""The merge rule: folding field writes into records, conflicts, erasures, and compact record documents.

The rule and the argument for what a record may forget are in docs/merge-rule.md.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sync.events import (
    ID_REUSED,
    INVALID,
    MAX_DEVICE_SEQ,
    Event,
    EventError,
    check_base,
    parse_event,
    stale_base_error,
)
from sync.hlc import hlc_to_iso, is_hlc
from sync.order import CLOCK_LANE, DEVICE, ORIGINS, SEQ_LANE, Chain, DeviceOrder, device_order
from sync.paths import ERASE_ALL, MEMBERS, check_path, split_erase_pattern, split_path
from sync.stamps import check_id, make_stamp, parse_stamp
from sync.values import JsonValue, canonical_json, check_json_value, json_key

__all__ = [
    "DOCUMENT_FORMAT",
    "DocumentFormatError",
    "FieldState",
    "Recall",
    "Record",
    "Write",
    "check_base",
    "conflict_id",
    "fold",
    "pull_of_document",
    "writes_of",
]

DOCUMENT_FORMAT = 2
CONFLICT_ID_LENGTH = 16

# What a node knows of a stamp from its own event log: the event, if it holds one by that stamp.
Recall = Callable[[str], "Event | Mapping[str, Any] | None"]
# (stamp, path) -> the device order of that stamp's write to path, when the event log has one.
_Lookup = Callable[[str, str], DeviceOrder | None]


class DocumentFormatError(ValueError):
    """A record document in a format this engine does not read.

    Format 1 (before compact memory) kept every superseded stamp; it cannot be converted, because
    it lacks the device order of the writes. Rebuild such a record by folding its stored events.
    """

    def __init__(self, found: object) -> None:
        self.format = found
        super().__init__(
            f"record document format {found!r} is not {DOCUMENT_FORMAT}; rebuild the record from its events"
        )


class _Entry:
    """One event as the record remembers it: shared by every field the event wrote."""

    __slots__ = ("at", "device_id", "device_seq", "hlc", "id", "officer", "order", "origin", "stamp")

    def __init__(self, hlc: str, device_id: str, event_id: str, device_seq: int | None, officer: str,
                 at: str | None, origin: str, stamp: str | None = None) -> None:
        self.hlc = hlc
        self.device_id = device_id
        self.id = event_id
        self.device_seq = device_seq
        self.officer = officer
        self.at = at
        self.origin = origin
        self.stamp = stamp if stamp is not None else f"{hlc}/{device_id}/{event_id}"
        self.order = device_order(origin, device_id, device_seq, hlc)

    @classmethod
    def of_event(cls, event: Event) -> _Entry:
        return cls(event.hlc, event.device_id, event.id, event.device_seq, event.officer, event.at, event.origin,
                   event.stamp)

    def meta(self) -> tuple[Any, ...]:
        return (self.device_seq, self.officer, self.at, self.origin)


def _differences(known: _Entry, other: _Entry) -> list[str]:
    return [name for name in ("device_seq", "officer", "at", "origin") if getattr(known, name) != getattr(other, name)]


@dataclass(frozen=True, eq=False)
class Write:
    """One field write: ``value`` at ``path``, named by ``stamp``, superseding ``base``.

    ``device_seq`` and ``origin`` place it in its device's order (see :mod:`sync.order`).
    A head of an erased field is a Write with ``erased`` set and no value. Heads read from a
    record carry no ``base``: a base has done all its work when its write is folded in.
    """

    path: str
    value: JsonValue
    stamp: str
    base: frozenset[str] = field(default_factory=frozenset)
    officer: str = ""
    at: str | None = None
    device_seq: int | None = None
    origin: str = DEVICE
    erased: bool = False

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
        if self.origin not in ORIGINS:
            raise ValueError(f"origin {self.origin!r} is not one of {', '.join(ORIGINS)}")
        if self.device_seq is not None and (
                not isinstance(self.device_seq, int) or isinstance(self.device_seq, bool)
                or not 1 <= self.device_seq <= MAX_DEVICE_SEQ or self.origin != DEVICE):
            raise ValueError(f"device_seq {self.device_seq!r} is not a counter of a device write")
        if not isinstance(self.erased, bool) or (self.erased and self.value is not None):
            raise ValueError("an erased write has no value")

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

    @property
    def order(self) -> DeviceOrder | None:
        """Where the write stands in its device's order (None when server-made)."""
        return device_order(self.origin, self.device_id, self.device_seq, self.hlc)

    def _identity(self) -> tuple[Any, ...]:
        return (self.path, self.stamp, json_key(self.value), self.base, self.officer, self.at, self.device_seq,
                self.origin, self.erased)

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
        view = {
            "value": copy.deepcopy(self.value),
            "stamp": self.stamp,
            "officer": self.officer,
            "device_id": stamp.device_id,
            "event_id": stamp.event_id,
            "at": self.at if self.at is not None else hlc_to_iso(stamp.hlc),
        }
        if self.erased:
            view["erased"] = True
        return view


_SCALARS = (str, int, float, bool, type(None))


_SCALAR_TYPES = frozenset(_SCALARS)
_NO_FLOOR: Mapping[Chain, list[_Entry]] = MappingProxyType({})
_NO_NAMED: frozenset[str] = frozenset()


def _own(value: JsonValue) -> JsonValue:
    """A copy the caller cannot change under us; scalars are immutable already."""
    kind = value.__class__
    if kind in _SCALAR_TYPES:
        return value
    # A select_multiple answer is a list of strings: a shallow copy is already independent.
    if kind is list and all(item.__class__ in _SCALAR_TYPES for item in value):
        return list(value)
    return value if isinstance(value, _SCALARS) else copy.deepcopy(value)


def _checked_write(path: str, value: JsonValue, stamp: str, base: frozenset[str], officer: str, at: str | None,
                   device_seq: int | None = None, origin: str = DEVICE, erased: bool = False) -> Write:
    """A Write from parts already checked: folding a visit makes dozens of writes, and checking
    each part again was most of the cost of a push."""
    write = object.__new__(Write)
    for name, part in (("path", path), ("value", _own(value)), ("stamp", stamp), ("base", base),
                       ("officer", officer), ("at", at), ("device_seq", device_seq), ("origin", origin),
                       ("erased", erased)):
        object.__setattr__(write, name, part)
    return write


def writes_of(event: Mapping[str, Any] | Event) -> tuple[Write, ...]:
    """The field writes an event makes, in path order (EventError when it is invalid)."""
    parsed = parse_event(event)
    stamp = parsed.stamp
    return tuple(
        _checked_write(path, parsed.set[path], stamp, frozenset(parsed.base.get(path, ())), parsed.officer,
                       parsed.at, parsed.device_seq, parsed.origin)
        for path in sorted(parsed.set)
    )


class FieldState:
    """What one field must remember of the writes it received (docs/merge-rule.md).

    - heads: the received writes that no received write supersedes, with their values;
    - floor: per chain (device and lane), the received writes at the chain's greatest rank that
      are not heads (so the chain's top is known when the device has no head here);
    - named: stamps some base names that are not received device-made writes of this field
      (writes yet to arrive, and server-made writes, which have no chain to recognise them by).

    Everything else a superseded write was is forgotten: no future write's fate depends on it.
    The value is the greatest head's; the field is in conflict when its heads hold two or more
    JSON-distinct values. An erased field keeps its heads' stamps but none of their values.
    """

    __slots__ = ("_erased", "_floor", "_heads", "_named", "_tops", "path")

    def __init__(self, path: str, *, erased: bool = False, checked: bool = False) -> None:
        # ``checked``: the path comes from a parsed event, whose paths are checked already.
        self.path = path if checked else check_path(path)
        self._heads: dict[str, tuple[_Entry, JsonValue]] = {}
        # Most fields never have a floor or a named stamp: they share read-only empties until their
        # first one (_add_floor, _add_named), so a visit's dozens of fields make fewer objects.
        self._floor: dict[Chain, list[_Entry]] = _NO_FLOOR  # type: ignore[assignment]
        self._tops: dict[Chain, tuple[int, str]] = {}
        self._named: set[str] = _NO_NAMED  # type: ignore[assignment]
        self._erased = erased

    # -- reading -----------------------------------------------------------------------------------
    def _write(self, entry: _Entry, value: JsonValue) -> Write:
        return _checked_write(self.path, value, entry.stamp, frozenset(), entry.officer, entry.at, entry.device_seq,
                              entry.origin, self._erased)

    @property
    def heads(self) -> tuple[Write, ...]:
        """The writes nothing received supersedes, by ascending stamp."""
        return tuple(self._write(*self._heads[stamp]) for stamp in sorted(self._heads))

    @property
    def winner(self) -> Write | None:
        """The greatest head, whose value is the field's value (None only for a field with no head)."""
        return self._write(*self._heads[max(self._heads)]) if self._heads else None

    @property
    def value(self) -> JsonValue:
        """The value of the greatest head (None when erased or without a head)."""
        if not self._heads:
            return None
        return copy.deepcopy(self._heads[max(self._heads)][1])

    @property
    def stamp(self) -> str | None:
        """The stamp of the greatest head."""
        return max(self._heads) if self._heads else None

    @property
    def erased(self) -> bool:
        """Whether an erasure covers this field: its writes keep their stamps, never their values."""
        return self._erased

    @property
    def in_conflict(self) -> bool:
        """Whether the heads hold two or more JSON-distinct values (never for an erased field)."""
        if self._erased or len(self._heads) < 2:
            return False
        values = iter(self._heads.values())
        first = json_key(next(values)[1])
        return any(json_key(value) != first for _entry, value in values)

    @property
    def floor(self) -> frozenset[str]:
        """Stamps of the writes at each chain's top that are not heads."""
        return frozenset(entry.stamp for entries in self._floor.values() for entry in entries)

    @property
    def named(self) -> frozenset[str]:
        """Stamps named by a base that are not received device-made writes of this field."""
        return frozenset(self._named)

    @property
    def superseded(self) -> frozenset[str]:
        """The superseded stamps this state still remembers (floor and named), not every one ever superseded."""
        return self.floor | self._named

    def knows(self, stamp: str, recall: Recall | None = None) -> bool:
        """Whether ``stamp`` is a write of this field, a head or superseded, as far as this node knows.

        The compact state forgets most superseded writes; ``recall`` (the node's event log)
        answers for those.
        """
        if stamp in self._heads or stamp in self._named or self._in_floor(stamp):
            return True
        if recall is None:
            return False
        found = _recalled(recall, stamp)
        return found is not None and self.path in found.set

    def clash(self, write: Write) -> bool:
        """Whether ``write`` reuses the stamp of a head with other content (a reused event id)."""
        return self._clash_value(write.stamp, write.value) or self._clash_meta(write.stamp, _entry_of(write))

    def _clash_value(self, stamp: str, value: JsonValue) -> bool:
        held = self._heads.get(stamp)
        return held is not None and not self._erased and json_key(held[1]) != json_key(value)

    def _clash_meta(self, stamp: str, entry: _Entry) -> bool:
        held = self._heads.get(stamp)
        return held is not None and held[0].meta() != entry.meta()

    def _in_floor(self, stamp: str) -> bool:
        device_id = parse_stamp(stamp).device_id
        for lane in (SEQ_LANE, CLOCK_LANE):
            entries = self._floor.get(Chain(device_id, lane))
            if entries is not None and any(entry.stamp == stamp for entry in entries):
                return True
        return False

    # -- folding -----------------------------------------------------------------------------------
    def _add_floor(self, chain: Chain, entry: _Entry) -> None:
        if not self._floor:
            self._floor = {}
        self._floor.setdefault(chain, []).append(entry)

    def _add_named(self, stamp: str) -> None:
        if not self._named:
            self._named = set()
        self._named.add(stamp)

    def apply(self, write: Write, recall: Recall | None = None) -> bool:
        """Take in one write; True when the heads changed. Applying it again changes nothing."""
        if write.path != self.path:
            raise ValueError(f"write to {write.path} applied to field {self.path}")
        if write.erased:
            raise ValueError(f"{self.path}: an erased write has no value to apply")
        if self.clash(write):
            raise ValueError(f"{self.path}: stamp {write.stamp} reused with different content")
        return self._take(_entry_of(write), write.value, write.base, _lookup_of(recall))

    def _take(self, entry: _Entry, value: JsonValue, base: Iterable[str], lookup: _Lookup | None) -> bool:
        """The chain rule and the base rule for one incoming write (see docs/merge-rule.md)."""
        stamp = entry.stamp
        heads = self._heads
        if not heads and not base and not self._tops and not self._named:
            # A field's first write (a visit to a new household writes dozens): nothing to supersede
            # and nothing that supersedes it, so it is the head and tops its chain.
            order = entry.order
            if order is not None:
                self._tops[order.chain] = order.rank
            heads[stamp] = (entry, None if self._erased else _own(value))
            return True
        if stamp in heads:
            return False
        order = entry.order
        if order is not None:
            floor = self._floor.get(order.chain)
            if floor is not None and any(held.stamp == stamp for held in floor):
                return False
        changed = False
        superseded = stamp in base
        if stamp in self._named:
            superseded = True
            if order is not None:
                self._named.discard(stamp)  # received now: its chain position recognises it from here on
        unknown = []
        for named_stamp in base:
            if named_stamp == stamp:
                continue
            held_head = heads.pop(named_stamp, None)
            if held_head is not None:
                changed = True
                held_order = held_head[0].order
                if held_order is None:
                    self._add_named(named_stamp)
                else:
                    self._add_floor(held_order.chain, held_head[0])
            elif named_stamp not in self._named and not self._in_floor(named_stamp):
                unknown.append(named_stamp)
        if order is not None:
            chain, rank = order
            top = self._tops.get(chain)
            if top is None or rank > top:
                if top is not None:
                    # The device had seen its own earlier writes: they all go, and are forgotten.
                    beaten = [held for held, (other, _value) in heads.items()
                              if other.order is not None and other.order.chain == chain]
                    for held in beaten:
                        del heads[held]
                    changed = changed or bool(beaten)
                    if self._floor:
                        self._floor.pop(chain, None)
                self._tops[chain] = rank
            elif rank < top:
                superseded = True
        for named_stamp in unknown:
            # Yet to arrive, or received long ago and forgotten: only the event log can tell.
            if not self._forgotten(named_stamp, lookup):
                self._add_named(named_stamp)
        if superseded:
            if order is None:
                self._add_named(stamp)
            elif self._tops[order.chain] == order.rank:
                self._add_floor(order.chain, entry)
            return changed
        heads[stamp] = (entry, None if self._erased else _own(value))
        return True

    def _forgotten(self, stamp: str, lookup: _Lookup | None) -> bool:
        """Whether a named stamp is a device write below its chain's top: received and forgotten, or
        bound to be superseded by its chain when it arrives. Only the event log can say."""
        if lookup is None:
            return False
        order = lookup(stamp, self.path)
        if order is None:
            return False
        top = self._tops.get(order.chain)
        return top is not None and order.rank < top

    def _erase(self) -> bool:
        """Drop every value; True when some head lost one."""
        self._erased = True
        self._heads = {stamp: (entry, None) for stamp, (entry, _value) in self._heads.items()}
        return bool(self._heads)

    # -- copies, equality, pulls -------------------------------------------------------------------
    def copy(self) -> FieldState:
        """An independent copy (entries are immutable and shared)."""
        twin = FieldState(self.path, erased=self._erased)
        twin._heads = dict(self._heads)
        twin._floor = {chain: list(entries) for chain, entries in self._floor.items()}
        twin._tops = dict(self._tops)
        twin._named = set(self._named)
        return twin

    def _identity(self) -> tuple[Any, ...]:
        return (
            self.path,
            self._erased,
            {stamp: (entry.meta(), json_key(value)) for stamp, (entry, value) in self._heads.items()},
            self.floor,
            frozenset(self._named),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldState):
            return NotImplemented
        return self._identity() == other._identity()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FieldState({self.path!r}, heads={len(self._heads)}, floor={len(self.floor)}, named={len(self._named)})"

    def to_pull(self) -> dict[str, Any]:
        """``{"value", "stamp"}``, plus ``heads`` while in conflict, ``erased`` when erased.

        When equal values left several heads, ``head_stamps`` lists them all: a device
        must name them all in its next write's base, or its edit would leave the other
        equal head standing and turn into a conflict nobody made.
        """
        pulled: dict[str, Any] = {"value": self.value, "stamp": self.stamp}
        if self._erased:
            pulled["erased"] = True
        if self.in_conflict:
            pulled["heads"] = [
                {"value": copy.deepcopy(value), "stamp": stamp, "officer": entry.officer}
                for stamp, (entry, value) in sorted(self._heads.items())
            ]
        elif len(self._heads) > 1:
            pulled["head_stamps"] = sorted(self._heads)
        return pulled


def _entry_of(write: Write) -> _Entry:
    stamp = parse_stamp(write.stamp)
    return _Entry(stamp.hlc, stamp.device_id, stamp.event_id, write.device_seq, write.officer, write.at, write.origin,
                  write.stamp)


def _recalled(recall: Recall, stamp: str) -> Event | None:
    found = recall(stamp)
    if found is None:
        return None
    try:
        event = parse_event(found)
    except EventError:
        return None
    return event if event.stamp == stamp else None


def _lookup_of(recall: Recall | None, record_id: str | None = None) -> _Lookup | None:
    """The device order of named stamps from a node's event log, each event asked for once."""
    if recall is None:
        return None
    seen: dict[str, Event | None] = {}

    def lookup(stamp: str, path: str) -> DeviceOrder | None:
        if stamp not in seen:
            event = _recalled(recall, stamp)
            seen[stamp] = event if event is None or record_id is None or event.household_id == record_id else None
        event = seen[stamp]
        return event.order if event is not None and path in event.set else None

    return lookup


def conflict_id(record_id: str, path: str, head_stamps: Iterable[str]) -> str:
    """A short, stable id of one conflict: a new head makes a new id."""
    text = canonical_json([record_id, path, sorted(head_stamps)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:CONFLICT_ID_LENGTH]


class Record:
    """A household (or any record) folded from field writes and erasures.

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
        self._entries: dict[str, _Entry] = {}
        self._erasures: dict[str, tuple[_Entry, tuple[str, ...]]] = {}
        self._cover_all = False
        self._cover_members: set[str] = set()
        self._cover_paths: set[str] = set()

    # -- reading -----------------------------------------------------------------------------------
    @property
    def fields(self) -> Mapping[str, FieldState]:
        """Field path → state, read-only."""
        return MappingProxyType(self._fields)

    def get(self, path: str, default: JsonValue = None) -> JsonValue:
        """The value of a field, or ``default`` when nothing was written to it or it is erased."""
        state = self._fields.get(path)
        return default if state is None or not state._heads or state.erased else state.value

    def values(self) -> dict[str, JsonValue]:
        """Every field's value by path (erased fields have none)."""
        return {path: state.value for path, state in sorted(self._fields.items())
                if state._heads and not state.erased}

    def members(self) -> dict[str, dict[str, JsonValue]]:
        """The roster: member uuid → field name → value."""
        roster: dict[str, dict[str, JsonValue]] = {}
        for path, value in self.values().items():
            member_id, name = split_path(path)
            if member_id is not None:
                roster.setdefault(member_id, {})[name] = value
        return roster

    def covers(self, path: str) -> bool:
        """Whether an erasure received covers ``path`` (written yet or not)."""
        if self._cover_all or path in self._cover_paths:
            return True
        return bool(self._cover_members) and split_path(path)[0] in self._cover_members

    @property
    def erased(self) -> tuple[str, ...]:
        """Every erasure pattern received, sorted."""
        return tuple(sorted({pattern for _entry, patterns in self._erasures.values() for pattern in patterns}))

    def erasures(self) -> list[dict[str, Any]]:
        """The erasures received, by stamp: who erased what, and when."""
        return [
            {"stamp": stamp, "event_id": entry.id, "officer": entry.officer,
             "at": entry.at if entry.at is not None else hlc_to_iso(entry.hlc), "erase": list(patterns)}
            for stamp, (entry, patterns) in sorted(self._erasures.items())
        ]

    # -- folding -----------------------------------------------------------------------------------
    def _note_creator(self, stamp: str, village: str) -> None:
        if self.created is None or stamp < self.created:
            self.created, self.village = stamp, village

    def _state(self, path: str) -> FieldState:
        """The state of ``path``, a checked path (of a parsed event or a Write)."""
        state = self._fields.get(path)
        if state is None:
            state = self._fields[path] = FieldState(path, erased=self.covers(path), checked=True)
        return state

    def _intern(self, entry: _Entry) -> _Entry:
        return self._entries.setdefault(entry.stamp, entry)

    def apply(self, write: Write, *, recall: Recall | None = None) -> bool:
        """Take in one write; True when that field's heads changed. Does not touch ``village``."""
        if write.erased:
            raise ValueError(f"{write.path}: an erased write has no value to apply")
        entry = _entry_of(write)
        known = self._entries.get(entry.stamp)
        if known is not None and _differences(known, entry):
            raise ValueError(f"{write.path}: stamp {write.stamp} reused with different content")
        state = self._state(write.path)
        if state._clash_value(write.stamp, write.value):
            raise ValueError(f"{write.path}: stamp {write.stamp} reused with different content")
        return state._take(self._intern(entry), write.value, write.base, _lookup_of(recall, self.id))

    def apply_event(self, event: Mapping[str, Any] | Event, *, check: bool = True,
                    recall: Recall | None = None) -> set[str]:
        """Fold one event in; returns the paths whose heads changed (or lost their values). Idempotent.

        ``recall`` lets the record ask the node's event log for a stamp it has forgotten
        (docs/merge-rule.md, "Compact memory"): without it every answer is still exact, but a
        late base naming a long-superseded write leaves that stamp in the document.

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
        entry = _Entry.of_event(parsed)
        self._refuse_reuse(parsed, entry)
        entry = self._intern(entry)
        self._note_creator(entry.stamp, parsed.village)
        changed = self._erase(entry, parsed.erase) if parsed.erase else set()
        lookup = _lookup_of(recall, self.id)
        base = parsed.base
        fields = self._fields
        # What _state does, inlined: a visit to a new household makes dozens of fields, and a record
        # no erasure touched need not ask whether one covers each.
        covered = self._cover_all or bool(self._cover_paths) or bool(self._cover_members)
        for path, value in parsed.set.items():
            state = fields.get(path)
            if state is None:
                state = fields[path] = FieldState(path, erased=covered and self.covers(path), checked=True)
            if state._take(entry, value, base.get(path, ()), lookup):
                changed.add(path)
        return changed

    def _refuse_reuse(self, event: Event, entry: _Entry) -> None:
        errors: dict[str, list[str]] = {}
        message = [f"event {event.id} was received with other content"]
        if self.created == event.stamp and self.village != event.village:
            errors["village"] = [f"event {event.id} was received with village {self.village}"]
        known = self._entries.get(entry.stamp)
        if known is not None:
            for name in _differences(known, entry):
                errors[name] = message
        for path, value in event.set.items():
            state = self._fields.get(path)
            if state is not None and state._clash_value(entry.stamp, value):
                errors[f"set.{path}"] = message
        held = self._erasures.get(entry.stamp)
        if held is not None and held[1] != event.erase:
            errors["erase"] = message
        if errors:
            raise EventError(ID_REUSED, f"event {event.id} was received before with other content", errors)

    def _erase(self, entry: _Entry, patterns: tuple[str, ...]) -> set[str]:
        if entry.stamp in self._erasures:
            return set()
        self._erasures[entry.stamp] = (entry, patterns)
        for pattern in patterns:
            kind, subject = split_erase_pattern(pattern)
            if kind == "record":
                self._cover_all = True
            elif kind == "member":
                self._cover_members.add(subject)  # type: ignore[arg-type]
            else:
                self._cover_paths.add(subject)  # type: ignore[arg-type]
        return {path for path, state in self._fields.items()
                if not state.erased and self.covers(path) and state._erase()}

    def copy(self) -> Record:
        """An independent copy."""
        twin = Record(self.id, self.village, self.created)
        twin._fields = {path: state.copy() for path, state in self._fields.items()}
        twin._entries = dict(self._entries)
        twin._erasures = dict(self._erasures)
        twin._cover_all = self._cover_all
        twin._cover_members = set(self._cover_members)
        twin._cover_paths = set(self._cover_paths)
        return twin

    # -- views -------------------------------------------------------------------------------------
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
        """The pull change for this household (docs/protocol.md "Sync"); ``erased`` lists the
        erasure patterns received, so a device drops what it holds there, written here or not."""
        pulled = {
            "type": "household",
            "id": self.id,
            "village": self.village,
            "fields": {path: state.to_pull() for path, state in sorted(self._fields.items()) if state._heads},
        }
        if self._erasures:
            pulled["erased"] = list(self.erased)
        return pulled

    # -- documents ---------------------------------------------------------------------------------
    def to_document(self) -> dict[str, Any]:
        """The compact, canonical JSON-compatible form for storage (format 2, docs/merge-rule.md)."""
        used: dict[str, _Entry] = {}
        for state in self._fields.values():
            for entry, _value in state._heads.values():
                used[entry.stamp] = entry
            for entries in state._floor.values():
                for entry in entries:
                    used[entry.stamp] = entry
        for entry, _patterns in self._erasures.values():
            used[entry.stamp] = entry
        stamps = sorted(used)
        index = {stamp: position for position, stamp in enumerate(stamps)}
        devices = sorted({entry.device_id for entry in used.values()})
        device_index = {device_id: position for position, device_id in enumerate(devices)}
        events = []
        for stamp in stamps:
            entry = used[stamp]
            events.append([entry.hlc, device_index[entry.device_id], entry.id, entry.device_seq, entry.officer,
                           entry.at, entry.origin])
        fields: dict[str, Any] = {}
        # One visit leaves the same devices' latest writes under every field it wrote: such floors
        # are stored once and named by position.
        floors: dict[tuple[int, ...], int] = {}
        all_fields = self._fields
        scalar = _SCALAR_TYPES
        for path in sorted(all_fields):
            state = all_fields[path]
            held = state._heads
            heads: list[list[Any]]
            if len(held) == 1 and not state._erased:
                # Most fields have one head (a visit writes dozens of fresh ones): no sort, no loop.
                for stamp, (_entry, value) in held.items():
                    heads = [[index[stamp], value if value.__class__ in scalar else _own(value)]]
            else:
                order = sorted(held)
                if state._erased:
                    heads = [[index[stamp]] for stamp in order]
                else:
                    heads = [[index[stamp], _own(held[stamp][1])] for stamp in order]
            doc: dict[str, Any] = {"heads": heads}
            if state._floor:
                floor = tuple(sorted(index[entry.stamp] for entries in state._floor.values() for entry in entries))
                doc["floor"] = floors.setdefault(floor, len(floors))
            if state._named:
                doc["named"] = sorted(state._named)
            fields[path] = doc
        document: dict[str, Any] = {
            "format": DOCUMENT_FORMAT,
            "id": self.id,
            "village": self.village,
            "created": self.created,
            "devices": devices,
            "events": events,
            "floors": [list(floor) for floor in floors],
            "fields": fields,
        }
        if self._erasures:
            document["erasures"] = [[index[stamp], list(patterns)] for stamp, (_entry, patterns)
                                    in sorted(self._erasures.items())]
        return document

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Record:
        """The record stored by :meth:`to_document`; ValueError when malformed.

        DocumentFormatError (a ValueError) when the document is of another format, as every
        household stored before compact memory is: rebuild those from their events.
        Top-level keys other than ours are ignored, so a store may add its own (``seq``, ``_id``).
        """
        if not isinstance(doc, Mapping):
            raise ValueError("record document is not an object")
        if doc.get("format") != DOCUMENT_FORMAT:
            raise DocumentFormatError(doc.get("format"))
        for key in ("id", "village", "created", "devices", "events", "floors", "fields"):
            if key not in doc:
                raise ValueError(f"record document has no {key!r}")
        record = cls(doc["id"], doc["village"], doc["created"])
        entries = _load_entries(doc["devices"], doc["events"])
        for item in _list(doc.get("erasures", []), "erasures"):
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
                raise ValueError("record document erasure is not [event, [patterns]]")
            entry = _pick(entries, item[0])
            if entry.origin == DEVICE:
                raise ValueError(f"erasure {entry.stamp} is not server-made")
            patterns = tuple(sorted(set(item[1])))
            if not patterns or entry.stamp in record._erasures:
                raise ValueError(f"erasure {entry.stamp} is empty or listed twice")
            record._erase(entry, patterns)
        floors = [_list(floor, "floor") for floor in _list(doc["floors"], "floors")]
        fields = doc["fields"]
        if not isinstance(fields, Mapping):
            raise ValueError("record document fields is not an object")
        for path, state_doc in fields.items():
            record._fields[path] = _load_field(record, path, state_doc, entries, floors)
        for entry in entries:
            record._entries.setdefault(entry.stamp, entry)
        return record

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        mine = {stamp: patterns for stamp, (_entry, patterns) in self._erasures.items()}
        theirs = {stamp: patterns for stamp, (_entry, patterns) in other._erasures.items()}
        return (self.id, self.village, self.created, self._fields, mine) == (
            other.id, other.village, other.created, other._fields, theirs
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Record({self.id!r}, village={self.village!r}, fields={len(self._fields)})"


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"record document {what} is not a list")
    return value


def _pick(entries: list[_Entry], position: object) -> _Entry:
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < len(entries):
        raise ValueError(f"record document names event {position!r}, which it does not list")
    return entries[position]


def _load_entries(devices: object, events: object) -> list[_Entry]:
    device_ids = _list(devices, "devices")
    for device_id in device_ids:
        check_id("device_id", device_id)
    if len(set(device_ids)) != len(device_ids):
        raise ValueError("record document lists a device twice")
    entries = []
    for item in _list(events, "events"):
        if not isinstance(item, list) or len(item) != 7:
            raise ValueError("record document event is not [hlc, device, id, device_seq, officer, at, origin]")
        hlc, device, event_id, device_seq, officer, at, origin = item
        if not is_hlc(hlc):
            raise ValueError(f"record document event has a malformed HLC {hlc!r}")
        if not isinstance(device, int) or isinstance(device, bool) or not 0 <= device < len(device_ids):
            raise ValueError(f"record document event names device {device!r}, which it does not list")
        check_id("event_id", event_id)
        if not isinstance(officer, str) or (at is not None and not isinstance(at, str)):
            raise ValueError(f"record document event {event_id}: officer and at must be strings")
        if origin not in ORIGINS:
            raise ValueError(f"record document event {event_id}: origin {origin!r}")
        if device_seq is not None and (not isinstance(device_seq, int) or isinstance(device_seq, bool)
                                       or not 1 <= device_seq <= MAX_DEVICE_SEQ or origin != DEVICE):
            raise ValueError(f"record document event {event_id}: device_seq {device_seq!r}")
        entries.append(_Entry(hlc, device_ids[device], event_id, device_seq, officer, at, origin,
                              make_stamp(hlc, device_ids[device], event_id)))
    if len({entry.stamp for entry in entries}) != len(entries):
        raise ValueError("record document lists an event twice")
    return entries


def _load_field(record: Record, path: str, doc: object, entries: list[_Entry], floors: list[list[Any]]
                ) -> FieldState:
    state = FieldState(path, erased=record.covers(path))
    if not isinstance(doc, Mapping) or "heads" not in doc or not set(doc) <= {"heads", "floor", "named"}:
        raise ValueError(f"field {path} document: expected heads, and floor and named when not empty")
    for item in _list(doc["heads"], f"field {path} heads"):
        if not isinstance(item, list) or len(item) != (1 if state.erased else 2):
            raise ValueError(f"field {path}: a head is [event, value], or [event] when the field is erased")
        entry = _pick(entries, item[0])
        value = None if state.erased else item[1]
        check_json_value(value, f"field {path} value")
        if entry.stamp in state._heads:
            raise ValueError(f"field {path}: {entry.stamp} cannot be a head twice")
        state._heads[entry.stamp] = (entry, value)
    floor = doc.get("floor")
    if floor is not None and (not isinstance(floor, int) or isinstance(floor, bool) or not 0 <= floor < len(floors)):
        raise ValueError(f"field {path}: floor {floor!r} is not one the document lists")
    for position in floors[floor] if floor is not None else ():
        entry = _pick(entries, position)
        if entry.order is None or entry.stamp in state._heads or state._in_floor(entry.stamp):
            raise ValueError(f"field {path}: {entry.stamp} cannot be at the floor")
        state._add_floor(entry.order.chain, entry)
    for stamp in _list(doc.get("named", []), f"field {path} named"):
        parse_stamp(stamp)
        if stamp in state._heads or stamp in state._named or state._in_floor(stamp):
            raise ValueError(f"field {path}: {stamp} cannot be named here")
        state._add_named(stamp)
    for entry in [entry for entry, _value in state._heads.values()] + [
            entry for entries in state._floor.values() for entry in entries]:
        if entry.order is None:
            continue
        top = state._tops.setdefault(entry.order.chain, entry.order.rank)
        if top != entry.order.rank:
            raise ValueError(f"field {path}: {entry.stamp} is below its device's latest write, so not remembered")
    return state


def pull_of_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``Record.from_document(doc).to_pull()``, read straight off a stored document.

    A first sync sends thousands of stored households: building each record (and checking every
    part of its document) cost ten times reading its JSON. The pull needs only each field's heads,
    so this reads those, trusting the document to be one :meth:`Record.to_document` wrote (a
    document of another format still raises DocumentFormatError). The values returned are the
    document's own objects, not copies.
    """
    if not isinstance(doc, Mapping):
        raise ValueError("record document is not an object")
    if doc.get("format") != DOCUMENT_FORMAT:
        raise DocumentFormatError(doc.get("format"))
    devices = doc["devices"]
    events = doc["events"]
    if not doc.get("erasures"):
        fast = _pull_of_plain_document(doc, devices, events)
        if fast is not None:
            return fast
    stamps: dict[int, str] = {}
    officers: dict[int, str] = {}

    def stamp_of(position: int) -> str:
        stamp = stamps.get(position)
        if stamp is None:
            event = events[position]
            stamp = stamps[position] = f"{event[0]}/{devices[event[1]]}/{event[2]}"
            officers[position] = event[4]
        return stamp

    patterns: set[str] = set()
    for _position, erased in doc.get("erasures", ()):
        patterns.update(erased)
    cover_all = ERASE_ALL in patterns
    covered_members = {pattern.split("/")[1] for pattern in patterns
                       if pattern.startswith(MEMBERS + "/") and pattern.endswith("/" + ERASE_ALL)}
    fields: dict[str, Any] = {}
    for path in sorted(doc["fields"]):
        heads = doc["fields"][path]["heads"]
        if not heads:
            continue
        erased = cover_all or path in patterns or (
            bool(covered_members) and split_path(path)[0] in covered_members)
        if len(heads) == 1:
            position = heads[0][0]
            pulled: dict[str, Any] = {"value": None if erased else heads[0][1], "stamp": stamp_of(position)}
            if erased:
                pulled["erased"] = True
            fields[path] = pulled
            continue
        held = sorted((stamp_of(head[0]), head) for head in heads)
        top = held[-1]
        pulled = {"value": None if erased else top[1][1], "stamp": top[0]}
        if erased:
            pulled["erased"] = True
            pulled["head_stamps"] = [stamp for stamp, _head in held]
        else:
            first = json_key(held[0][1][1])
            if any(json_key(head[1]) != first for _stamp, head in held[1:]):
                pulled["heads"] = [{"value": head[1], "stamp": stamp, "officer": officers[head[0]]}
                                   for stamp, head in held]
            else:
                pulled["head_stamps"] = [stamp for stamp, _head in held]
        fields[path] = pulled
    view: dict[str, Any] = {"type": "household", "id": doc["id"], "village": doc["village"], "fields": fields}
    if doc.get("erasures"):
        view["erased"] = sorted(patterns)
    return view


def _pull_of_plain_document(doc: Mapping[str, Any], devices: list[str], events: list[Any]
                            ) -> dict[str, Any] | None:
    """:func:`pull_of_document` of a document with no erasures whose fields each have one head
    (nearly every household), in one pass; None for any other, which the general reading takes."""
    stamps = [f"{event[0]}/{devices[event[1]]}/{event[2]}" for event in events]
    stored = doc["fields"]
    paths = list(stored)
    if any(paths[i] > paths[i + 1] for i in range(len(paths) - 1)):
        paths.sort()  # to_document writes them sorted; a document from elsewhere may not be
    fields: dict[str, Any] = {}
    for path in paths:
        heads = stored[path]["heads"]
        if len(heads) != 1:
            if not heads:
                continue
            return None
        head = heads[0]
        fields[path] = {"value": head[1], "stamp": stamps[head[0]]}
    return {"type": "household", "id": doc["id"], "village": doc["village"], "fields": fields}


def fold(events: Iterable[Mapping[str, Any] | Event], record_id: str | None = None, *,
         check: bool = True) -> Record:
    """The record folded from scratch from ``events`` (all about one record).

    The events themselves answer the record's questions about stamps it has forgotten, so the
    document is the same whatever their order. ``record_id`` is needed only to fold an empty list.
    """
    parsed = [parse_event(event) for event in events]
    if record_id is None:
        if not parsed:
            raise ValueError("fold of no events needs a record_id")
        record_id = parsed[0].household_id
    by_stamp = {event.stamp: event for event in parsed}
    record = Record(record_id)
    for event in parsed:
        record.apply_event(event, check=check, recall=by_stamp.get)
    return record
