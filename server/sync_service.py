"""Sync on the server: taking in pushed events, answering pulls, and stamping server-made writes.

Each pushed event gets its own verdict: applied, duplicate (same id and same body),
or rejected with a stable code. The merge itself is ``sync.Record`` (the one rule, in
``sync/``); this module checks what only the server can (identity, scope, clock skew,
forms, geotags), stores events and folded records, and keeps the conflict index.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from forms.identifiers import Area
from sync import (
    EventError,
    Record,
    hlc_ms,
    is_hlc,
    is_too_far_ahead,
    parse_event,
    parse_stamp,
)
from sync.events import stale_base_error
from sync.stamps import is_id

from .clock import StoredClock, node_device_id, wall_ms
from .devices import device_key
from .errors import ApiError
from .jsonio import canonical, storage_problems
from .security.scope import Scope
from .storage import WriteConflict
from .timeutil import iso, now_utc

EVENT_TYPES = ("visit", "household_edit")
REVIEW_STATES = ("approved", "needs_revision", "rejected")
MAX_ATTEMPTS = 3
MAX_TEXT = 10_000
PULL_TOUCH_INTERVAL = timedelta(minutes=1)
COMMON_KEYS = {"id", "type", "device_id", "hlc", "household_id", "village", "base"}
TYPE_KEYS = {
    "visit": {"form_id", "form_version", "answers", "geotag", "started_at", "ended_at", "supersedes"},
    "household_edit": {"set", "at"},
}
VERSION = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
FORM_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass
class Caller:
    """Who pushes: the user and device come from the token, never from the body."""

    username: str
    role: str
    device_id: str
    scope: Scope


@dataclass
class PushSettings:
    skew_bound_ms: int
    wall_ms: Any = wall_ms


@dataclass
class _Batch:
    """What one push has loaded and changed, written back once at the end."""

    tx: Any
    clock: StoredClock
    households: dict[str, tuple[Record, int | None, dict[str, Any]]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    seen: dict[str, str] = field(default_factory=dict)  # event id -> body hash, within this batch
    # Events and visits are written after the households they change: on a store without
    # transactions, a batch cut short then leaves households that a retry re-applies
    # idempotently, never an event stored without its effect.
    later: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def insert_later(self, collection: str, doc: dict[str, Any]) -> None:
        self.later.append(("insert", collection, doc))

    def put_later(self, collection: str, doc: dict[str, Any]) -> None:
        self.later.append(("put", collection, doc))

    def flush(self) -> None:
        for op, collection, doc in self.later:
            if op == "insert":
                self.tx.insert(collection, doc)
            else:
                self.tx.put(collection, doc)


@dataclass
class _Prepared:
    """An event after the checks that need no store: a verdict already, or what to fold."""

    raw: Any
    digest: str | None  # None when the event is refused before its identity counts
    verdict: dict[str, Any] | None
    engine_event: dict[str, Any] | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)
    visit: dict[str, Any] | None = None
    parsed: Any = None  # the engine's Event, parsed once


def body_hash(event: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(event).encode("utf-8")).hexdigest()


def _result(event_id: Any, status: str, **extra: Any) -> dict[str, Any]:
    result = {"id": event_id if isinstance(event_id, str) else None, "status": status}
    result.update({k: v for k, v in extra.items() if v is not None})
    return result


def _rejected(event_id: Any, code: str, message: str, errors: Mapping[str, list[str]] | None = None,
              **extra: Any) -> dict[str, Any]:
    return _result(event_id, "rejected", code=code, message=message, errors=dict(errors or {}), **extra)


def _iso_problem(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        return "must be an ISO-8601 date-time string"
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "must be an ISO-8601 date-time string"
    return None


def envelope_errors(raw: Any) -> dict[str, list[str]]:
    """Problems with an event's envelope (answers and writes are checked later, by their owners)."""
    if not isinstance(raw, Mapping):
        return {"": ["an event must be a JSON object"]}
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    # A visit's answers are bounded by the form checks; the same bound holds for any text.
    unsafe = storage_problems(raw, max_text=MAX_TEXT)
    if unsafe:
        return unsafe
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        add("type", f"must be one of {', '.join(EVENT_TYPES)}")
        return errors
    for key in sorted(set(raw) - COMMON_KEYS - TYPE_KEYS[kind]):
        add(str(key)[:64], "unknown key")
    for key in ("id", "device_id", "household_id"):
        if not is_id(raw.get(key)):
            add(key, "must be an id: 1-128 characters of A-Z a-z 0-9 . _ : -")
    if not is_hlc(raw.get("hlc")):
        add("hlc", "must be an HLC string like 1763790000000-0003")
    if not Area.is_code(raw.get("village"), levels=("village",)):
        add("village", "must be a Kemendagri village code like 32.04.05.2001")
    if "base" in raw and not isinstance(raw["base"], Mapping):
        add("base", "must be an object mapping field paths to lists of stamps")
    if kind == "visit":
        if not isinstance(raw.get("form_id"), str) or not FORM_ID.match(raw["form_id"]):
            add("form_id", "must be a form id")
        if not isinstance(raw.get("form_version"), str) or not VERSION.match(raw["form_version"]):
            add("form_version", "must be a form version")
        if not isinstance(raw.get("answers"), Mapping):
            add("answers", "must be an object")
        for key in ("started_at", "ended_at"):
            problem = _iso_problem(raw.get(key))
            if problem:
                add(key, problem)
        if "supersedes" in raw and not is_id(raw["supersedes"]):
            add("supersedes", "must be the id of an earlier visit")
    else:
        if not isinstance(raw.get("set"), Mapping) or not raw.get("set"):
            add("set", "must be a non-empty object mapping field paths to values")
        problem = _iso_problem(raw.get("at"))
        if problem:
            add("at", problem)
    return errors


class SyncService:
    """The server's side of sync, over one store. Stateless apart from caches it is given."""

    def __init__(self, store: Any, *, definitions: Any, boundaries: Any):
        self.store = store
        self.definitions = definitions  # (form_id, version) -> forms.Definition | None
        self.boundaries = boundaries  # BoundaryIndex

    # -- push ------------------------------------------------------------------------------------
    def push(self, caller: Caller, device_hlc: str | None, events: list[Any],
             settings: PushSettings) -> tuple[list[dict[str, Any]], str]:
        """Take in a batch; one result per event, in order, and the server's HLC after it."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._push_once(caller, device_hlc, events, settings)
            except WriteConflict:
                # Another worker changed one of these households meanwhile (MongoDB only:
                # SQLite has one writer). Everything is re-read and re-judged.
                if attempt == MAX_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _push_once(self, caller: Caller, device_hlc: str | None, events: list[Any],
                   settings: PushSettings) -> tuple[list[dict[str, Any]], str]:
        now = settings.wall_ms()
        received_at = iso(datetime.fromtimestamp(now / 1000, UTC))
        # Judging answers and geotags needs no lock; only what follows holds the write lock,
        # so several workers check batches in parallel.
        memo: dict[tuple[str, str], Any] = {}
        prepared = [self._prepare(caller, raw, now, received_at, settings, memo) for raw in events]
        with self.store.transaction() as tx:
            batch = _Batch(tx, StoredClock(tx, settings.wall_ms))
            if device_hlc and is_hlc(device_hlc) and not is_too_far_ahead(device_hlc, now,
                                                                            settings.skew_bound_ms):
                batch.clock.observe(device_hlc)
            results = [self._take(batch, caller, item) for item in prepared]
            self._write_households(batch)
            batch.flush()
            self._note_device(tx, caller, events, results, now, received_at)
            batch.clock.save()
            return results, batch.clock.last

    def _prepare(self, caller: Caller, raw: Any, now: int, received_at: str,
                 settings: PushSettings, definitions: dict[tuple[str, str], Any]) -> _Prepared:
        """Every check that does not depend on what is stored."""
        event_id = raw.get("id") if isinstance(raw, Mapping) else None
        errors = envelope_errors(raw)
        if errors:
            return _Prepared(raw, None, _rejected(event_id, "invalid", "The event is not valid.", errors))
        if raw["device_id"] != caller.device_id:
            return _Prepared(raw, None, _rejected(
                event_id, "invalid", "An event's device_id must be the device you logged in with.",
                {"device_id": [f"must be {caller.device_id}"]}))
        digest = body_hash(raw)
        if is_too_far_ahead(raw["hlc"], now, settings.skew_bound_ms):
            return _Prepared(raw, digest, _rejected(
                event_id, "clock_skew",
                "The event's clock is ahead of the server's; correct the clock, re-stamp and resend.",
                {"hlc": [f"is {hlc_ms(raw['hlc']) - now} ms ahead of server time"]},
                server_time=iso(datetime.fromtimestamp(now / 1000, UTC))))
        if raw["type"] == "visit":
            outcome = self._visit(caller, raw, received_at, definitions)
        else:
            outcome = self._edit(caller, raw)
        if isinstance(outcome, dict):
            return _Prepared(raw, digest, outcome)
        engine_event, flags, visit = outcome
        try:
            parsed = parse_event(engine_event)
        except EventError as problem:
            return _Prepared(raw, digest, _rejected(event_id, problem.code, problem.message, problem.errors))
        problem = stale_base_error(parsed)
        if problem is not None:
            return _Prepared(raw, digest, _rejected(event_id, problem.code, problem.message, problem.errors))
        return _Prepared(raw, digest, None, engine_event, flags, visit, parsed)

    def _take(self, batch: _Batch, caller: Caller, item: _Prepared) -> dict[str, Any]:
        """The checks against what is stored, then the fold; within the batch's unit of work."""
        raw = item.raw
        if item.digest is None:
            return item.verdict  # type: ignore[return-value]
        event_id = raw["id"]
        stored = batch.seen.get(event_id) or self._stored_hash(batch.tx, event_id)
        if stored is not None:
            # A resend answers as it did the first time, whatever the checks would say today.
            if stored == item.digest:
                return _result(event_id, "duplicate")
            return _rejected(event_id, "id_reused", "Another event was received with this id; make a new id.",
                             {"id": ["already used for an event with different content"]})
        if item.verdict is not None:
            return item.verdict
        household_id = raw["household_id"]
        record, _, _ = self._household(batch, household_id)
        village = record.village if record.created else raw["village"]
        if not caller.scope.covers(village):
            return _rejected(event_id, "out_of_scope", "You may not send data for this household's village.",
                             {"village": [f"{village} is not assigned to you"]})
        if record.created and raw["village"] != record.village:
            return _rejected(event_id, "invalid", "The household belongs to another village.",
                             {"village": [f"household {household_id} is in {record.village}"]})
        flags, visit = list(item.flags), item.visit
        supersedes = raw.get("supersedes")
        if supersedes:
            earlier = batch.tx.get("visits", supersedes)
            if earlier is None or earlier["household_id"] != household_id:
                return _rejected(event_id, "invalid", "supersedes must name an earlier visit of this household.",
                                 {"supersedes": ["no such visit of this household"]})
            if earlier.get("review_state") != "needs_revision":
                flags.append({"code": "supersedes_unrequested",
                              "message": "Replaces a visit that no supervisor sent back for revision."})
            batch.put_later("visits", {**earlier, "superseded_by": event_id})
        try:
            record.apply_event(item.parsed)
        except EventError as error:
            return _rejected(event_id, error.code, error.message, error.errors)
        batch.dirty.add(household_id)
        batch.clock.observe(raw["hlc"])
        batch.seen[event_id] = item.digest
        batch.insert_later("events", {
            "id": event_id, "type": raw["type"], "household_id": household_id, "village": record.village,
            "device_id": raw["device_id"], "officer": caller.username, "hlc": raw["hlc"],
            "received_at": visit["received_at"] if visit else iso(now_utc()), "body_hash": item.digest,
            "body": dict(raw), "engine": item.engine_event, "flags": flags})
        if visit is not None:
            batch.insert_later("visits", {**visit, "flags": flags, "flagged": bool(flags),
                                          "flag_codes": sorted({f["code"] for f in flags})})
        return _result(event_id, "applied", flags=flags or None)

    def _stored_hash(self, tx: Any, event_id: str) -> str | None:
        found = tx.get("events", event_id)
        return None if found is None else found["body_hash"]

    def _household(self, batch: _Batch, household_id: str) -> tuple[Record, int | None, dict[str, Any]]:
        if household_id not in batch.households:
            doc = batch.tx.get("households", household_id)
            if doc is None:
                batch.households[household_id] = (Record(household_id), None, {})
            else:
                batch.households[household_id] = (Record.from_document(doc["record"]), doc["seq"], doc)
        return batch.households[household_id]

    @staticmethod
    def _engine_event(raw: Mapping[str, Any], officer: str, writes: Mapping[str, Any], at: str | None
                      ) -> dict[str, Any]:
        base = raw.get("base") or {}
        return {"id": raw["id"], "device_id": raw["device_id"], "hlc": raw["hlc"], "officer": officer,
                "household_id": raw["household_id"], "village": raw["village"], "set": dict(writes),
                "base": {path: base[path] for path in writes if path in base}, "at": at}

    def _edit(self, caller: Caller, raw: Mapping[str, Any]) -> Any:
        for path in raw.get("base") or {}:
            if path not in raw["set"]:
                return _rejected(raw["id"], "invalid", "base names a field the event does not write.",
                                 {f"base.{path}": ["not written by this event"]})
        return self._engine_event(raw, caller.username, raw["set"], raw.get("at")), [], None

    def _visit(self, caller: Caller, raw: Mapping[str, Any], received_at: str,
               definitions: dict[tuple[str, str], Any]) -> Any:
        from forms import household_writes, validate_answers

        event_id = raw["id"]
        key = (raw["form_id"], raw["form_version"])
        if key not in definitions:  # a batch is mostly one form: look it up once
            definitions[key] = self.definitions(*key)
        definition = definitions[key]
        if definition is None:
            return _rejected(event_id, "invalid", "Unknown form or form version.",
                             {"form_version": [f"{raw['form_id']} version {raw['form_version']} is not published"]})
        report = validate_answers(definition, raw["answers"])
        if report.errors:
            return _rejected(event_id, "invalid", "The answers cannot be stored.",
                             {("answers." + path if path else "answers"): messages
                              for path, messages in report.errors.items()})
        flags = list(report.flags)
        geotag = raw.get("geotag")
        if geotag is None:
            flags.append({"code": "no_geotag", "message": "The visit has no GPS fix."})
        else:
            from .geo import check_geotag

            geotag_errors = check_geotag(geotag)
            if geotag_errors:
                return _rejected(event_id, "invalid", "The geotag is not valid.", geotag_errors)
            found = self.boundaries.locate(raw["village"], float(geotag["lat"]), float(geotag["lon"]))
            if found:
                flags.append(found)
        writes = household_writes(definition, report.answers)
        engine_event = self._engine_event(raw, caller.username, writes, raw.get("ended_at"))
        visit = {
            "id": event_id, "village": raw["village"], "household_id": raw["household_id"],
            "form_id": raw["form_id"], "form_version": raw["form_version"], "officer": caller.username,
            "device_id": raw["device_id"], "hlc": raw["hlc"], "started_at": raw.get("started_at"),
            "ended_at": raw.get("ended_at"), "received_at": received_at, "geotag": geotag,
            "answers": report.answers, "supersedes": raw.get("supersedes"), "superseded_by": None,
            "review_state": "pending", "reviewed": False, "review": None, "review_record": None,
        }
        if geotag:
            # GeoJSON, so that MongoDB's 2dsphere index serves spatial queries on visits
            visit["location"] = {"type": "Point", "coordinates": [geotag["lon"], geotag["lat"]]}
        return engine_event, flags, visit

    def _write_households(self, batch: _Batch) -> None:
        for household_id in sorted(batch.dirty):
            record, seq, previous = batch.households[household_id]
            write_household(batch.tx, record, previous, seq)

    @staticmethod
    def _note_device(tx: Any, caller: Caller, events: list[Any], results: list[dict[str, Any]], now: int,
                     received_at: str) -> None:
        key = device_key(caller.username, caller.device_id)
        device = tx.get("devices", key)
        if device is None:
            return
        skews = [hlc_ms(raw["hlc"]) - now for raw, result in zip(events, results, strict=True)
                 if isinstance(raw, Mapping) and is_hlc(raw.get("hlc")) and result.get("code") == "clock_skew"]
        update = {**device, "last_sync_at": received_at}
        if skews:
            update["skew_ms"] = max(skews)
            update["skew_seen_at"] = received_at
            update["skew_cleared_at"] = None
        elif device.get("skew_ms") is not None and not device.get("skew_cleared_at") and any(
                result["status"] == "applied" for result in results):
            # The finding stays for the supervisor; this says the clock has been right since.
            update["skew_cleared_at"] = received_at
        tx.put("devices", update)

    def note_pull(self, username: str, device_id: str | None) -> None:
        """A pull is a sync too: keep the device's last_sync_at within a minute, without a
        write on every page of a first sync."""
        if not device_id:
            return
        key = device_key(username, device_id)
        device = self.store.get("devices", key)
        now = now_utc()
        if device is None or (device.get("last_sync_at") or "") > iso(now - PULL_TOUCH_INTERVAL):
            return
        with self.store.transaction() as tx:
            current = tx.get("devices", key)
            if current is not None:
                tx.put("devices", {**current, "last_sync_at": iso(now)})

    # -- server-made writes: resolutions and reviews ------------------------------------------------
    def resolve_conflict(self, actor: str, scope: Scope, conflict_id: str, event_id: str, value: Any,
                         heads: list[str]) -> dict[str, Any]:
        """Write ``value`` over exactly the ``heads`` named; idempotent by ``event_id``."""
        conflict = self.store.get("conflicts", conflict_id)
        if conflict is None or not scope.covers(conflict["village"]):
            raise ApiError(404, "not_found", "No such conflict.")
        path = conflict["field"]
        unsafe = storage_problems(value, "value", max_text=MAX_TEXT)
        if unsafe:
            raise ApiError(422, "invalid", "The value cannot be stored.", unsafe)
        payload = {"conflict": conflict_id, "value": value, "heads": sorted(set(heads))}
        digest = body_hash(payload)
        with self.store.transaction() as tx:
            existing = tx.get("events", event_id)
            doc = tx.get("households", conflict["household_id"])
            record = Record.from_document(doc["record"])
            if existing is not None:
                if existing["body_hash"] != digest:
                    raise ApiError(409, "id_reused", "Another event was received with this id.")
                return field_state(record, path)
            known = _known_stamps(record, path)
            unknown = [s for s in payload["heads"] if s not in known]
            if unknown or not payload["heads"]:
                raise ApiError(422, "invalid", "A resolution names the heads it saw.",
                               {"heads": [f"{s} is not a write of {path}" for s in unknown] or ["must not be empty"]})
            clock = StoredClock(tx)
            for stamp in payload["heads"]:
                clock.observe(parse_stamp(stamp).hlc)
            engine_event = {"id": event_id, "device_id": node_device_id(self.store), "hlc": clock.now(),
                            "officer": actor, "household_id": record.id, "village": record.village,
                            "set": {path: value}, "base": {path: payload["heads"]}, "at": iso(now_utc())}
            try:
                record.apply_event(engine_event)
            except EventError as error:
                raise ApiError(422, "invalid", error.message, error.errors) from None
            tx.insert("events", {
                "id": event_id, "type": "resolution", "household_id": record.id, "village": record.village,
                "device_id": engine_event["device_id"], "officer": actor, "hlc": engine_event["hlc"],
                "received_at": engine_event["at"], "body_hash": digest, "body": payload, "engine": engine_event,
                "flags": []})
            write_household(tx, record, doc, doc["seq"])
            clock.save()
        return field_state(record, path)

    def review_visit(self, actor: str, scope: Scope, visit_id: str, event_id: str, state: str,
                     comment: str | None) -> dict[str, Any]:
        """Record a supervisor's review; idempotent by ``event_id``. Reviews fold by the merge rule
        too, so two supervisors reviewing at once both stay visible as a conflict."""
        payload = {"visit": visit_id, "state": state, "comment": comment}
        digest = body_hash(payload)
        with self.store.transaction() as tx:
            visit = tx.get("visits", visit_id)
            if visit is None or not scope.covers(visit["village"]):
                raise ApiError(404, "not_found", "No such visit.")
            existing = tx.get("events", event_id)
            if existing is not None:
                if existing["body_hash"] != digest:
                    raise ApiError(409, "id_reused", "Another event was received with this id.")
                return visit
            record = Record.from_document(visit["review_record"]) if visit.get("review_record") else Record(visit_id)
            current = record.fields.get("review")
            clock = StoredClock(tx)
            base = [w.stamp for w in current.heads] if current else []
            for stamp in base:
                clock.observe(parse_stamp(stamp).hlc)
            at = iso(now_utc())
            engine_event = {"id": event_id, "device_id": node_device_id(self.store), "hlc": clock.now(),
                            "officer": actor, "household_id": visit_id, "village": visit["village"],
                            "set": {"review": {"state": state, "comment": comment, "by": actor, "at": at}},
                            "base": {"review": base} if base else {}, "at": at}
            record.apply_event(engine_event)
            review = record.get("review")
            state_now = record.fields["review"]
            tx.insert("events", {
                "id": event_id, "type": "review", "household_id": visit["household_id"], "visit_id": visit_id,
                "village": visit["village"], "device_id": engine_event["device_id"], "officer": actor,
                "hlc": engine_event["hlc"], "received_at": at, "body_hash": digest, "body": payload,
                "engine": engine_event, "flags": []})
            visit = tx.put("visits", {**visit, "review": {**review, "in_conflict": state_now.in_conflict},
                                      "review_state": review["state"], "reviewed": True,
                                      "review_record": record.to_document()})
            clock.save()
        return visit

    # -- pull --------------------------------------------------------------------------------------
    def pull(self, user: Mapping[str, Any], scope: Scope, cursor: str | None, limit: int,
             form_changes: Any) -> dict[str, Any]:
        """Changes in scope since ``cursor``, oldest first, never past the commit-ordered bound."""
        state = decode_cursor(cursor)
        bound = self.store.visible_seq()
        changes: list[tuple[int, dict[str, Any]]] = []
        areas = list(scope.codes) if not scope.is_all else ["*"]
        previous = state.get("a")
        backfill = list(state.get("b") or [])
        if previous is not None and previous != areas:
            if previous != ["*"] and areas != ["*"]:
                gone = [a for a in previous if not any(a == n or a.startswith(n + ".") for n in areas)]
                added = [a for a in areas if not any(a == p or a.startswith(p + ".") for p in previous)]
            else:
                gone = [] if areas == ["*"] else [a for a in previous if a == "*"]
                added = areas if previous != ["*"] else []
            changes.extend((0, {"type": "left_scope", "village": area}) for area in gone if area != "*")
            if added:
                backfill.append({"areas": added, "s": 0, "upto": state.get("s", 0)})
        since = state.get("s", 0)
        remaining = limit - len(changes)
        has_more = False
        while backfill and remaining > 0:
            job = backfill[0]
            # A newly assigned village brings its history, forms included, up to where the
            # main stream already was; the main stream carries on from there.
            page, more = self._collect(user, Scope(scope.role, tuple(job["areas"])), job["s"], job["upto"],
                                       remaining, form_changes, include_forms=True)
            changes.extend(page)
            remaining -= len(page)
            if more:
                job["s"] = page[-1][0]
                has_more = True
                break
            backfill.pop(0)
        if remaining > 0 and not has_more:
            page, more = self._collect(user, scope, since, bound, remaining, form_changes, include_forms=True)
            changes.extend(page)
            since = page[-1][0] if more else bound
            has_more = more
        next_cursor = encode_cursor({"s": since, "a": areas, "b": backfill})
        return {"changes": [change for _, change in changes], "next": next_cursor, "has_more": has_more or
                bool(backfill)}

    def _collect(self, user: Mapping[str, Any], scope: Scope, since: int, upto: int, limit: int,
                 form_changes: Any, *, include_forms: bool) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        found: list[tuple[int, dict[str, Any]]] = []
        for doc in self.store.changes("households", since, where=scope.where("village"), limit=limit + 1,
                                      upto=upto):
            found.append((doc["seq"], household_change(doc)))
        visit_where: dict[str, Any] = {"reviewed": True}
        if user["role"] == "officer":
            visit_where["officer"] = user["id"]
        else:
            visit_where.update(scope.where("village"))
        for doc in self.store.changes("visits", since, where=visit_where, limit=limit + 1, upto=upto):
            found.append((doc["seq"], {"type": "visit", "id": doc["id"], "household_id": doc["household_id"],
                                       "review": {k: doc["review"].get(k) for k in ("state", "comment", "by", "at")}
                                       }))
        if include_forms:
            found.extend((seq, change) for seq, change in form_changes(since, upto, scope))
        found.sort(key=lambda item: item[0])
        return found[:limit], len(found) > limit


def _known_stamps(record: Record, path: str) -> set[str]:
    state = record.fields.get(path)
    if state is None:
        return set()
    return {w.stamp for w in state.heads} | set(state.superseded)


def field_state(record: Record, path: str) -> dict[str, Any]:
    """A field after a resolution: value, stamp, heads while in conflict, and the conflict id."""
    state = record.fields.get(path)
    if state is None:
        return {"household_id": record.id, "field": path, "value": None, "stamp": None, "in_conflict": False}
    out = {"household_id": record.id, "field": path, **state.to_pull(), "in_conflict": state.in_conflict}
    if state.in_conflict:
        out["conflict_id"] = next(c["id"] for c in record.conflicts() if c["field"] == path)
    return out


def household_change(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The pull change of a stored household. (Keeping this view in the document was measured:
    it made every household half as large again and a first sync no faster.)"""
    return Record.from_document(doc["record"]).to_pull()


def write_household(tx: Any, record: Record, previous: Mapping[str, Any], seq: int | None) -> None:
    """Store a household and bring its entries in the conflict index up to date."""
    conflicts = record.conflicts()
    doc = {"id": record.id, "village": record.village, "open_conflicts": len(conflicts),
           "updated_at": iso(now_utc()), "record": record.to_document()}
    for key in ("source", "imported"):
        if key in previous:
            doc[key] = previous[key]
    tx.put("households", doc, expect_seq=seq)
    current = {c["id"] for c in conflicts}
    # Only a household that had open conflicts can have one to close.
    had_open = previous.get("open_conflicts", 0) > 0
    for old in tx.find("conflicts", {"household_id": record.id, "open": True}) if had_open else ():
        if old["id"] not in current:
            tx.put("conflicts", {**old, "open": False, "closed_at": doc["updated_at"]})
    for conflict in conflicts:
        known = tx.get("conflicts", conflict["id"])
        if known is None or not known["open"]:
            tx.put("conflicts", {**conflict, "open": True, "opened_at": doc["updated_at"]})


# -- cursors --------------------------------------------------------------------------------------
def encode_cursor(state: Mapping[str, Any]) -> str:
    raw = json.dumps({"v": 1, **state}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    """The cursor's state; a first sync has none. A malformed cursor is a 400, not a restart."""
    if not cursor:
        return {}
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(state, dict) or state.get("v") != 1 or not isinstance(state.get("s"), int):
            raise ValueError
        if not isinstance(state.get("a"), list) or not all(isinstance(a, str) for a in state["a"]):
            raise ValueError
        for job in state.get("b") or []:
            if not (isinstance(job, dict) and isinstance(job.get("s"), int) and isinstance(job.get("upto"), int)
                    and isinstance(job.get("areas"), list)):
                raise ValueError
        return state
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "The cursor is not one this server gave; omit it for a first sync.",
                       {"since": ["not a valid cursor"]}) from None


def rebuild_household(store: Any, household_id: str) -> Record:
    """Fold a household again from its stored events (the engine shapes kept with each)."""
    # Reviews fold into visits, not households; every other event type writes household fields.
    events = [doc["engine"] for doc in store.iterate("events", {"household_id": household_id}, order_by="seq")
              if doc["type"] != "review"]
    record = Record(household_id)
    for event in events:
        record.apply_event(event, check=False)
    return record

