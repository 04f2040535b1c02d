"""Erasure of a household or a person: the tombstone event, scrubbing what the store keeps, late writes."""

# An erasure is a server-made event carrying ``erase`` patterns (docs/merge-rule.md, "Erasure"):
# it syncs to devices like any change, so they drop what they hold, and every covered field keeps
# its stamps and bases but no value, so nodes still converge. Beside the record, kunjung keeps
# values in the stored events (their bodies as received and the engine's shape of them), in the
# visits' answers and in the conflict index: those are scrubbed here. An erased event keeps its id
# and its body's hash, so a device resending it is still answered ``duplicate``.

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import current_app

from sync import EventError, Record, parse_event
from sync.paths import ERASE_ALL, erase_pattern_covers

from ..audit import record_audit
from ..errors import ApiError
from ..eventlog import EVENTS
from ..households import HOUSEHOLDS, write_household
from ..i18n import _
from ..relay.node import is_hall
from ..security.scope import Scope
from ..server_events import ServerStamper
from ..storage import Store, Writer
from ..store import get_store
from ..timeutil import iso, now_utc
from .people import households_naming, mentions, number_hash, visits_mentioning

ERASURE = "erasure"
ERASED_NUMBERS = "erased_numbers"  # server_state: keyed hashes of erased NIKs, for writes that arrive later
EVERYTHING = Scope("admin")


def require_central() -> None:
    """Only the central server erases: a hall's copy would erase what the centre still holds and
    sends back. A village hall (``kunjung relay init``) never is; another server is central unless
    KUNJUNG_CENTRAL says otherwise."""
    if not current_app.config.get("CENTRAL", True) or is_hall(get_store()):
        raise ApiError(409, "not_central", _("Only the central server erases personal data."))


def _reason(reason: Any) -> str:
    text = " ".join(str(reason or "").split())
    if not text or len(text) > 500:
        raise ApiError(422, "invalid", _("Give the reason for the erasure."),
                       {"reason": [_("1-500 characters")]})
    return text


def covers(patterns: Iterable[str], path: str) -> bool:
    return any(erase_pattern_covers(pattern, path) for pattern in patterns)


def scrubbed_engine(engine: Mapping[str, Any], drop: Callable[[str, Any], bool]) -> dict[str, Any]:
    """The engine's shape of an event with the values of writes ``drop`` names replaced by null:
    the stamps and bases stay, so the fold keeps converging."""
    writes = engine.get("set") or {}
    return {**engine, "set": {path: None if drop(path, value) else value for path, value in writes.items()}}


def scrubbed_event(doc: Mapping[str, Any], drop: Callable[[str, Any], bool], at: str) -> dict[str, Any]:
    """A stored event without its body, without the dropped values and with flags reduced to their codes."""
    kept = {key: value for key, value in doc.items() if key != "body"}
    kept["engine"] = scrubbed_engine(doc.get("engine") or {}, drop)
    kept["flags"] = [{"code": flag.get("code")} for flag in doc.get("flags") or () if isinstance(flag, Mapping)]
    kept["erased_at"] = at
    return kept


def scrubbed_visit(visit: Mapping[str, Any], at: str, by: str) -> dict[str, Any]:
    """A visit without its answers, place, files and flag texts; who erased it and when."""
    kept = {key: value for key, value in visit.items() if key not in ("location", "attachments")}
    # Its files go with it, so no flag says they are missing.
    flags = [{"code": f.get("code")} for f in visit.get("flags") or () if f.get("code") != "attachments_missing"]
    kept.update(answers={}, geotag=None, flags=flags, flagged=bool(flags),
                flag_codes=sorted({f["code"] for f in flags}), erased={"at": at, "by": by})
    return kept


ATTACHMENTS = "attachments"
ERASED_FILES = "erased_files"  # server_state: SHA-256 of erased files, refused on upload and never missing


def erase_attachments(tx: Writer, visit_ids: Iterable[str], blobs: list[str]) -> int:
    """Drop the files of these visits: their attachment records go (so no file is reported missing
    or readable), their hashes are remembered (so an upload of the same bytes is refused), and
    the blobs and thumbnails they name are added to ``blobs``, for :func:`delete_blobs` after the
    unit of work commits. How many files went."""
    erased = 0
    hashes: set[str] = set()
    for visit_id in sorted(set(visit_ids)):
        for doc in tx.find(ATTACHMENTS, {"visit_id": visit_id}):
            hashes.add(doc["sha256"])
            blobs.extend(h for h in (doc["sha256"], doc.get("thumbnail_sha256")) if h)
            tx.delete(ATTACHMENTS, doc["id"])
            erased += 1
    if hashes:
        held = tx.get("server_state", ERASED_FILES) or {"id": ERASED_FILES, "hashes": []}
        tx.put("server_state", {**held, "hashes": sorted({*held["hashes"], *hashes})})
    return erased


def delete_blobs(store: Store, hashes: Iterable[str]) -> int:
    """Remove the blobs no attachment names any more (the same bytes may answer another visit, which
    keeps them); how many went. Runs after the erasure committed: a blob is never gone while a
    record still names it."""
    from ..blobs import blob_store
    from ..blobs.attachments import named

    blobs = blob_store()
    removed = 0
    for sha256 in sorted(set(hashes)):
        if not named(store, sha256) and blobs.delete(sha256):
            removed += 1
    return removed


def erased_files(reader: Store | Writer) -> frozenset[str]:
    """SHA-256 of every erased file."""
    held = reader.get("server_state", ERASED_FILES)
    return frozenset(held["hashes"]) if held else frozenset()


def without_erased_files(visit: dict[str, Any], flags: list[dict[str, Any]],
                         erased: frozenset[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A late visit naming an erased file: the file is dropped from its list (so it is never asked
    for, nor reported missing) and its missing-files flag names only the others."""
    from ..blobs.attachments import MISSING, missing_flag

    entries = visit.get("attachments") or []
    kept = [entry for entry in entries if entry.get("sha256") not in erased]
    if len(kept) == len(entries):
        return visit, flags
    flags = [flag for flag in flags if flag.get("code") != MISSING]
    if kept:
        flags.append(missing_flag([entry["path"] for entry in kept]))
    return {**visit, "attachments": kept}, flags


def _tombstone(tx: Writer, stamper: ServerStamper, doc: Mapping[str, Any], patterns: list[str], actor: str,
               reason: str, at: str) -> tuple[Record, str]:
    record = Record.from_document(doc["record"])
    made = stamper.event(ERASURE, event_id=str(uuid.uuid4()), actor=actor, record_id=doc["id"],
                         village=doc["village"], writes={}, base={}, body={"erase": patterns, "reason": reason}, at=at)
    made.engine["erase"] = list(patterns)
    made.document["engine"]["erase"] = list(patterns)
    record.apply_event(made.engine)
    tx.insert(EVENTS, made.document)
    return record, made.id


def _erase_in_household(tx: Writer, stamper: ServerStamper, doc: Mapping[str, Any], patterns: list[str], *,
                        actor: str, reason: str, at: str, blobs: list[str], number: str | None = None,
                        visit_ids: set[str] | None = None) -> dict[str, Any]:
    """Scrub one household's events, visits and conflicts of what ``patterns`` cover, then store its
    tombstone. ``number`` (a person's NIK) also wipes events and visits whose answers mention it."""
    household_id = doc["id"]
    whole = ERASE_ALL in patterns

    def drop(path: str, value: Any) -> bool:
        return covers(patterns, path) or (number is not None and mentions(value, number))

    scrubbed_visits = set(visit_ids or ())
    events = 0
    # The tombstone is stored last, so that the household's history lists it after what it erased.
    for event in tx.find(EVENTS, {"household_id": household_id}, order_by="seq"):
        engine = event.get("engine") or {}
        writes = engine.get("set") or {}
        touched = whole or any(drop(path, value) for path, value in writes.items()) or (
            number is not None and mentions(event.get("body"), number))
        if not touched or event.get("type") == ERASURE:
            continue
        if event["type"] == "review":
            # A review folds into its visit, whose state must survive a rebuild: only its body goes.
            if whole:
                tx.put(EVENTS, scrubbed_event(event, lambda _path, _value: False, at))
                events += 1
            continue
        tx.put(EVENTS, scrubbed_event(event, drop, at))
        events += 1
        if event["type"] == "visit":
            scrubbed_visits.add(event["id"])
    visits = 0
    for visit_id in sorted(scrubbed_visits):
        visit = tx.get("visits", visit_id)
        if visit is not None and not visit.get("erased"):
            tx.put("visits", scrubbed_visit(visit, at, actor))
            visits += 1
    for conflict in tx.find("conflicts", {"household_id": household_id}):
        if covers(patterns, conflict["field"]):
            tx.delete("conflicts", conflict["id"])
    record, tombstone = _tombstone(tx, stamper, doc, patterns, actor, reason, at)
    previous = dict(doc)
    imported = previous.get("imported")
    if isinstance(imported, Mapping):
        values = imported.get("values") or {}
        previous["imported"] = {**imported, "values": {name: value for name, value in values.items()
                                                       if not drop(name, value)}}
    write_household(tx, record, previous, doc["seq"])
    attachments = erase_attachments(tx, scrubbed_visits, blobs)
    return {"household_id": household_id, "village": doc["village"], "erase": list(patterns),
            "tombstone": tombstone, "events": events, "visits": visits, "attachments": attachments}


def erase_household(store: Store, household_id: str, *, actor: str, reason: str,
                    address: str | None = None) -> dict[str, Any]:
    """Erase every personal value of one household, everywhere kunjung keeps it; a summary without values."""
    reason = _reason(reason)

    def unit(tx: Writer) -> dict[str, Any]:
        doc = tx.get(HOUSEHOLDS, household_id)
        if doc is None:
            raise ApiError(404, "not_found", _("No such household."))
        at = iso(now_utc())
        stamper = ServerStamper(tx, store)
        blobs.clear()
        summary = _erase_in_household(tx, stamper, doc, [ERASE_ALL], actor=actor, reason=reason, at=at,
                                      blobs=blobs)
        stamper.save()
        record_audit(tx, "household_erased", actor=actor, target=household_id, household=household_id,
                     address=address, details={"reason": reason, **_counts(summary)})
        return {"at": at, "by": actor, "reason": reason, "households": [summary]}

    blobs: list[str] = []
    done = store.unit_of_work(unit)
    delete_blobs(store, blobs)
    return done


def _counts(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {key: summary[key] for key in ("erase", "tombstone", "events", "visits", "attachments")}


def erase_person(store: Store, nik: str, *, actor: str, reason: str, address: str | None = None) -> dict[str, Any]:
    """Erase one person: their roster row (or, for a head, the head's fields) in every household that
    names their NIK, and the answers of every visit that mentions it; a summary without values."""
    reason = _reason(reason)
    person = number_hash(nik)
    # Finding the person reads every household and visit; the unit of work then reads each again.
    targets = [(doc["id"], _person_patterns(roles))
               for doc, _view, roles in households_naming(store, EVERYTHING, nik=nik)]
    mentioned: dict[str, set[str]] = {}
    for visit in visits_mentioning(store, EVERYTHING, nik):
        mentioned.setdefault(visit["household_id"], set()).add(visit["id"])

    def unit(tx: Writer) -> dict[str, Any]:
        at = iso(now_utc())
        stamper = ServerStamper(tx, store)
        blobs.clear()
        summaries = []
        households = dict(targets)
        for household_id in sorted(set(households) | set(mentioned)):
            doc = tx.get(HOUSEHOLDS, household_id)
            patterns = households.get(household_id)
            if doc is None:
                continue
            if patterns:
                summaries.append(_erase_in_household(tx, stamper, doc, patterns, actor=actor, reason=reason,
                                                     at=at, blobs=blobs, number=nik,
                                                     visit_ids=mentioned.get(household_id)))
            else:
                summaries.append(_wipe_visits(tx, doc, mentioned[household_id], nik, at, actor, blobs))
        _remember(tx, person)
        stamper.save()
        record_audit(tx, "person_erased", actor=actor, person=person, address=address,
                     details={"reason": reason, "households": [
                         {"household_id": s["household_id"], **_counts(s)} for s in summaries]})
        return {"at": at, "by": actor, "reason": reason, "households": summaries}

    blobs: list[str] = []
    done = store.unit_of_work(unit)
    delete_blobs(store, blobs)
    return done


def _wipe_visits(tx: Writer, doc: Mapping[str, Any], visit_ids: set[str], nik: str, at: str,
                 actor: str, blobs: list[str]) -> dict[str, Any]:
    """A household that only mentions the person in a visit's answers (a complaint about a neighbour):
    those visits lose their answers and their events their bodies; the household keeps its values,
    except any write of the NIK itself."""
    def drop(_path: str, value: Any) -> bool:
        return mentions(value, nik)

    visits = events = 0
    for visit_id in sorted(visit_ids):
        visit = tx.get("visits", visit_id)
        if visit is not None and not visit.get("erased"):
            tx.put("visits", scrubbed_visit(visit, at, actor))
            visits += 1
        event = tx.get(EVENTS, visit_id)
        if event is not None and "body" in event:
            tx.put(EVENTS, scrubbed_event(event, drop, at))
            events += 1
    attachments = erase_attachments(tx, visit_ids, blobs)
    return {"household_id": doc["id"], "village": doc["village"], "erase": [], "tombstone": None,
            "events": events, "visits": visits, "attachments": attachments}


def _person_patterns(roles: list[dict[str, Any]]) -> list[str]:
    patterns = set()
    for role in roles:
        if role["as"] == "member":
            patterns.add(f"members/{role['member_id']}/*")
        elif role["as"] == "head":
            patterns.update(("head_nik", "head_name"))
    return sorted(patterns)


def _remember(tx: Writer, person: str) -> None:
    held = tx.get("server_state", ERASED_NUMBERS) or {"id": ERASED_NUMBERS, "hashes": []}
    if person not in held["hashes"]:
        tx.put("server_state", {**held, "hashes": sorted({*held["hashes"], person})})


def erased_numbers(reader: Store | Writer) -> frozenset[str]:
    """Keyed hashes of the NIKs erased so far (read once per push)."""
    held = reader.get("server_state", ERASED_NUMBERS)
    return frozenset(held["hashes"]) if held else frozenset()


def _numbers_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        if len(value) == 16 and value.isascii() and value.isdigit():
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _numbers_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers_in(item)


def late_write(record: Record, parsed: Any, raw: Mapping[str, Any], erased: frozenset[str]) -> tuple[Any, bool]:
    """(the event to fold, whether its body and answers must go) for a pushed event arriving after an
    erasure: a write to a covered path, any write to an erased household, or answers holding an
    erased NIK. The covered values are then never stored; the stamps still fold, so nodes converge."""
    patterns = record.erased
    if not patterns and not erased:
        return parsed, False
    hashed = {number for number in _numbers_in(raw) if number_hash(number) in erased} if erased else set()
    whole = ERASE_ALL in patterns
    writes = parsed.set

    def drop(path: str, value: Any) -> bool:
        return record.covers(path) or any(mentions(value, number) for number in hashed)

    if not (whole or hashed or any(record.covers(path) for path in writes)):
        return parsed, False
    engine = {"id": parsed.id, "device_id": parsed.device_id, "hlc": parsed.hlc, "officer": parsed.officer,
              "household_id": parsed.household_id, "village": parsed.village, "at": parsed.at,
              "origin": parsed.origin, "base": {path: list(stamps) for path, stamps in parsed.base.items()},
              "set": {path: None if drop(path, value) else value for path, value in writes.items()}}
    if parsed.device_seq is not None:
        engine["device_seq"] = parsed.device_seq
    try:
        return parse_event(engine), True
    except EventError:  # the scrubbed shape of a valid event is valid; keep the original if not
        return parsed, True


def engine_dict(parsed: Any) -> dict[str, Any]:
    """The stored engine shape of a parsed event."""
    engine = {"id": parsed.id, "device_id": parsed.device_id, "hlc": parsed.hlc, "officer": parsed.officer,
              "household_id": parsed.household_id, "village": parsed.village, "set": dict(parsed.set),
              "base": {path: list(stamps) for path, stamps in parsed.base.items()}, "at": parsed.at,
              "origin": parsed.origin}
    if parsed.device_seq is not None:
        engine["device_seq"] = parsed.device_seq
    return engine
