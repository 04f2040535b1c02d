"""Taking in pushed events: the envelope, the checks only the server can make, the fold, one verdict per event.

Each pushed event gets its own verdict: applied, duplicate (same id and same body), or
rejected with a stable code. The merge itself is ``sync.Record`` (the one rule, in ``sync/``);
this module checks what only the server can (identity, scope, clock skew, forms, geotags) and
stores events and folded records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forms import household_writes, validate_answers
from forms.household import HouseholdFields
from forms.identifiers import Area
from sync import EventError, Record, hlc_ms, is_hlc, is_too_far_ahead, parse_event
from sync.events import stale_base_error
from sync.stamps import is_id

from .blobs.attachments import (
    attachment_documents,
    check_attachments,
    files_sent_before,
    missing_flag,
    release_superseded,
    unlisted_files,
    unlisted_flag,
)
from .clock import StoredClock, wall_ms
from .collector import collector_paused
from .devices import note_push
from .eventlog import body_hash, event_document, event_recall, same_body
from .geo import BoundaryIndex, check_geotag
from .households import write_households
from .i18n import N_, gettext, lazy_gettext, translate_errors, translate_flags, translate_known
from .jsonio import storage_problems
from .privacy.erasure import (
    engine_dict,
    erased_files,
    erased_numbers,
    late_write,
    scrubbed_event,
    scrubbed_visit,
    without_erased_files,
)
from .privacy.masking import marker_errors
from .security.scope import Scope
from .server_events import DEVICE_ORIGIN
from .storage import Store, Writer
from .timeutil import iso
from .visits import settle_restamps

EVENT_TYPES = ("visit", "household_edit")
MAX_TEXT = 10_000
# A device's own counter of its events (design.md §2): JSON numbers above 2^53 lose integers.
MAX_DEVICE_SEQ = 2**53 - 1
# ``restamp_of``: after ``clock_skew`` a device re-stamps an event under a new id naming the old
# one, so that two nodes never hold two bodies under one id (docs/relay.md, "Re-stamped events").
COMMON_KEYS = {"id", "type", "device_id", "hlc", "household_id", "village", "base", "device_seq", "restamp_of"}
TYPE_KEYS = {
    "visit": {"form_id", "form_version", "answers", "geotag", "started_at", "ended_at", "supersedes", "attachments"},
    "household_edit": {"set", "at"},
}
VERSION = re.compile(r"[A-Za-z0-9._-]{1,32}")
FORM_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
OUT_OF_SCOPE = lazy_gettext("You may not send data for this household's village.")


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
    wall_ms: Callable[[], int] = wall_ms
    #: Review flags the receiver adds to events it judged itself (by event id): ODK Collect's offline
    #: entity bookkeeping, which only server/collect.py reads.
    extra_flags: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _Batch:
    """What one push has loaded and changed, written back once at the end."""

    tx: Writer
    clock: StoredClock
    received_at: str
    households: dict[str, tuple[Record, int | None, dict[str, Any]]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    seen: dict[str, str] = field(default_factory=dict)  # event id -> body hash, within this batch
    applied: dict[str, Any] = field(default_factory=dict)  # event id -> engine Event, not yet written
    # What the batch's events name, read in one query per collection before any is judged.
    stored_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored_households: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored_visits: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Events and visits are written after the households they change: on a store without
    # transactions, a batch cut short then leaves households that a retry re-applies
    # idempotently, never an event stored without its effect.
    later: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    erased: frozenset[str] = frozenset()  # keyed hashes of erased NIKs (server/privacy/erasure.py)
    erased_files: frozenset[str] = frozenset()  # SHA-256 of erased files

    def load(self, items: list[_Prepared]) -> None:
        """Read every stored event, household and superseded visit the batch's events name."""
        named = [item.raw for item in items if item.digest is not None]
        self.stored_events = self.tx.get_many("events", [raw["id"] for raw in named])
        judged = [raw for raw in named if raw["id"] not in self.stored_events]
        self.stored_households = self.tx.get_many("households", [raw["household_id"] for raw in judged])
        self.stored_visits = self.tx.get_many("visits", [raw["supersedes"] for raw in judged
                                                         if raw.get("supersedes")])

    def insert_later(self, collection: str, doc: dict[str, Any]) -> None:
        self.later.append(("insert", collection, doc))

    def put_later(self, collection: str, doc: dict[str, Any]) -> None:
        self.later.append(("put", collection, doc))

    def flush(self) -> None:
        """The writes noted for later, one batch per kind (each in the order noted), the events last.

        Each event's writes alternate (its event, its visit, ...): one batch per kind makes a few
        statements per push instead of several per visit. The events go last, after the visits and
        attachments they make, so that a batch cut short on a store without transactions leaves no
        event stored without its effect: a retry finds the event new and writes its visit again
        (an insert of a stored id is skipped, a put writes the same document)."""
        kinds: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for op, collection, doc in self.later:
            kinds.setdefault((op, collection), []).append(doc)
        # sorted() is stable: the kinds keep the order they were first noted in, the events moved last
        for (op, collection), docs in sorted(kinds.items(), key=lambda kind: kind[0][1] == "events"):
            if op == "insert":
                self.tx.insert_many(collection, docs)
            else:
                self.tx.put_many(collection, docs)


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


def _result(event_id: Any, status: str, **extra: Any) -> dict[str, Any]:
    result = {"id": event_id if isinstance(event_id, str) else None, "status": status}
    result.update({k: v for k, v in extra.items() if v is not None})
    return result


def _rejected(event_id: Any, code: str, message: str, errors: Mapping[str, list[str]] | None = None,
              **extra: Any) -> dict[str, Any]:
    return _result(event_id, "rejected", code=code, message=translate_known(message), errors=translate_errors(errors),
                   **extra)


def _out_of_scope(event_id: str) -> dict[str, Any]:
    # One answer whether the household or the event id lies outside the caller's villages, and
    # naming neither's village: the answer must not tell what exists elsewhere.
    return _rejected(event_id, "out_of_scope", OUT_OF_SCOPE,
                     {"village": [gettext("the household or event lies outside the villages assigned to you")]})


def _iso_problem(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        return gettext("must be an ISO-8601 date-time string")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return gettext("must be an ISO-8601 date-time string")
    return None


def envelope_errors(raw: Any) -> dict[str, list[str]]:
    """Problems with an event's envelope (answers and writes are checked later, by their owners)."""
    if not isinstance(raw, Mapping):
        return {"": [gettext("an event must be a JSON object")]}
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    # A visit's answers are bounded by the form checks; the same bound holds for any text.
    unsafe = storage_problems(raw, max_text=MAX_TEXT)
    if unsafe:
        return unsafe
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        add("type", gettext("must be one of %(choices)s", choices=", ".join(EVENT_TYPES)))
        return errors
    for key in sorted(set(raw) - COMMON_KEYS - TYPE_KEYS[kind]):
        add(str(key)[:64], gettext("unknown key"))
    for key in ("id", "device_id", "household_id"):
        if not is_id(raw.get(key)):
            add(key, gettext("must be an id: 1-128 characters of A-Z a-z 0-9 . _ : -"))
    if not is_hlc(raw.get("hlc")):
        add("hlc", gettext("must be an HLC string like 1763790000000-0003"))
    if not Area.is_code(raw.get("village"), levels=("village",)):
        add("village", gettext("must be a Kemendagri village code like 32.04.05.2001"))
    if "base" in raw and not isinstance(raw["base"], Mapping):
        add("base", gettext("must be an object mapping field paths to lists of stamps"))
    if "restamp_of" in raw and (not is_id(raw["restamp_of"]) or raw["restamp_of"] == raw.get("id")):
        add("restamp_of", gettext("must be the id of the event this one re-stamps, not its own"))
    if "device_seq" in raw:
        seq = raw["device_seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_DEVICE_SEQ:
            add("device_seq", gettext("must be an integer from 1 to %(max)s", max=MAX_DEVICE_SEQ))
    if kind == "visit":
        if not isinstance(raw.get("form_id"), str) or not FORM_ID.fullmatch(raw["form_id"]):
            add("form_id", gettext("must be a form id"))
        if not isinstance(raw.get("form_version"), str) or not VERSION.fullmatch(raw["form_version"]):
            add("form_version", gettext("must be a form version"))
        if not isinstance(raw.get("answers"), Mapping):
            add("answers", gettext("must be an object"))
        for key in ("started_at", "ended_at"):
            problem = _iso_problem(raw.get(key))
            if problem:
                add(key, problem)
        if "supersedes" in raw and not is_id(raw["supersedes"]):
            add("supersedes", gettext("must be the id of an earlier visit"))
    else:
        if not isinstance(raw.get("set"), Mapping) or not raw.get("set"):
            add("set", gettext("must be a non-empty object mapping field paths to values"))
        problem = _iso_problem(raw.get("at"))
        if problem:
            add("at", problem)
    return errors


def engine_event(raw: Mapping[str, Any], officer: str, writes: Mapping[str, Any], at: str | None
                 ) -> dict[str, Any]:
    """The engine's shape of a pushed event: its writes, the base of those, and the device's order."""
    base = raw.get("base") or {}
    event = {"id": raw["id"], "device_id": raw["device_id"], "hlc": raw["hlc"], "officer": officer,
             "household_id": raw["household_id"], "village": raw["village"], "set": dict(writes),
             "base": {path: base[path] for path in writes if path in base}, "at": at, "origin": DEVICE_ORIGIN}
    if "device_seq" in raw:
        event["device_seq"] = raw["device_seq"]
    return event


class PushService:
    """The server's side of a push, over one store. Stateless apart from the caches it is given."""

    def __init__(self, store: Store, *, definitions: Callable[[str, str], Any], boundaries: BoundaryIndex,
                 household_fields: Callable[[str], HouseholdFields]):
        self.store = store
        self.definitions = definitions  # (form_id, version) -> forms.Definition | None
        self.boundaries = boundaries
        self.household_fields = household_fields  # village -> the fields a household edit may write

    def push(self, caller: Caller, device_hlc: str | None, events: list[Any],
             settings: PushSettings) -> tuple[list[dict[str, Any]], str]:
        """Take in a batch; one result per event, in order, and the server's HLC after it."""
        with collector_paused():
            return self._push(caller, device_hlc, events, settings)

    def _push(self, caller: Caller, device_hlc: str | None, events: list[Any],
              settings: PushSettings) -> tuple[list[dict[str, Any]], str]:
        now = settings.wall_ms()
        received_at = iso(datetime.fromtimestamp(now / 1000, UTC))
        # Judging answers and geotags needs no store; only the unit of work below holds the
        # write lock, so several workers check batches in parallel.
        memo: dict[tuple[str, str], Any] = {}
        prepared = [self._prepare(caller, raw, now, received_at, settings, memo) for raw in events]

        def unit(tx: Writer) -> tuple[list[dict[str, Any]], str]:
            batch = _Batch(tx, StoredClock(tx, settings.wall_ms), received_at, erased=erased_numbers(tx),
                           erased_files=erased_files(tx))
            if device_hlc and is_hlc(device_hlc) and not is_too_far_ahead(device_hlc, now, settings.skew_bound_ms):
                batch.clock.observe(device_hlc)
            batch.load(prepared)
            results = [self._take(batch, caller, item) for item in prepared]
            write_households(tx, [(record, previous, seq) for record, seq, previous in
                                  (batch.households[household_id] for household_id in sorted(batch.dirty))])
            batch.flush()
            note_push(tx, caller.username, caller.device_id, events, results, now, received_at)
            # The reply carries the server's time now, above everything this push stored.
            hlc = batch.clock.now()
            batch.clock.save()
            return results, hlc

        return self.store.unit_of_work(unit)

    def _prepare(self, caller: Caller, raw: Any, now: int, received_at: str,
                 settings: PushSettings, definitions: dict[tuple[str, str], Any]) -> _Prepared:
        """Every check that does not depend on what is stored."""
        event_id = raw.get("id") if isinstance(raw, Mapping) else None
        errors = envelope_errors(raw)
        if errors:
            return _Prepared(raw, None, _rejected(event_id, "invalid", gettext("The event is not valid."), errors))
        masked = marker_errors(raw)
        if masked:
            return _Prepared(raw, None, _rejected(
                event_id, "invalid", gettext("The event writes a masked value back; masks are not data."), masked))
        if raw["device_id"] != caller.device_id:
            return _Prepared(raw, None, _rejected(
                event_id, "invalid", gettext("An event's device_id must be the device you logged in with."),
                {"device_id": [gettext("must be %(device)s", device=caller.device_id)]}))
        digest = body_hash(raw)
        if is_too_far_ahead(raw["hlc"], now, settings.skew_bound_ms):
            return _Prepared(raw, digest, _rejected(
                event_id, "clock_skew",
                gettext("The event's clock is ahead of the server's; correct the clock, re-stamp and resend."),
                {"hlc": [gettext("is %(ms)s ms ahead of server time", ms=hlc_ms(raw["hlc"]) - now)]},
                server_time=iso(datetime.fromtimestamp(now / 1000, UTC))))
        if raw["type"] == "visit":
            outcome = self._visit(caller, raw, received_at, definitions)
        else:
            outcome = self._edit(caller, raw, definitions)
        if isinstance(outcome, dict):
            return _Prepared(raw, digest, outcome)
        engine, flags, visit = outcome
        flags = [*flags, *settings.extra_flags.get(event_id, ())] if settings.extra_flags else flags
        try:
            parsed = parse_event(engine)
        except EventError as problem:
            return _Prepared(raw, digest, _rejected(event_id, problem.code, problem.message, problem.errors))
        problem = stale_base_error(parsed)
        if problem is not None:
            return _Prepared(raw, digest, _rejected(event_id, problem.code, problem.message, problem.errors))
        return _Prepared(raw, digest, None, engine, flags, visit, parsed)

    def _known(self, batch: _Batch, caller: Caller, item: _Prepared) -> dict[str, Any] | None:
        """The answer to an event whose id was received before (in this batch or stored), else None.

        A resend answers as it did the first time, whatever the checks would say today: the
        device's own event is ``duplicate`` even if its village has since left its scope. Another
        device's event outside the caller's scope is ``out_of_scope``, never ``id_reused``, which
        would tell that it exists."""
        event_id = item.raw["id"]
        if event_id in batch.seen:
            same = batch.seen[event_id] == item.digest
        else:
            stored = batch.stored_events.get(event_id)
            if stored is None:
                return None
            mine = stored["device_id"] == caller.device_id and stored["officer"] == caller.username
            if not mine and not caller.scope.covers(stored["village"]):
                return _out_of_scope(event_id)
            same = same_body(stored, item.digest)  # type: ignore[arg-type]
        if same:
            return _result(event_id, "duplicate")
        return _rejected(event_id, "id_reused", gettext("Another event was received with this id; make a new id."),
                         {"id": [gettext("already used for an event with different content")]})

    def _take(self, batch: _Batch, caller: Caller, item: _Prepared) -> dict[str, Any]:
        """The checks against what is stored, then the fold; within the batch's unit of work."""
        raw = item.raw
        if item.digest is None:
            return item.verdict  # type: ignore[return-value]
        event_id = raw["id"]
        known = self._known(batch, caller, item)
        if known is not None:
            return known
        if item.verdict is not None:
            return item.verdict
        household_id = raw["household_id"]
        record, _, _ = self._household(batch, household_id)
        village = record.village if record.created else raw["village"]
        if not caller.scope.covers(village):
            return _out_of_scope(event_id)
        if record.created and raw["village"] != record.village:
            return _rejected(event_id, "invalid", gettext("The household belongs to another village."),
                             {"village": [gettext("household %(household)s is in %(village)s", household=household_id,
                                                  village=record.village)]})
        flags, visit = list(item.flags), item.visit
        supersedes = raw.get("supersedes")
        if supersedes:
            earlier = batch.stored_visits.get(supersedes)
            if earlier is None or earlier["household_id"] != household_id:
                return _rejected(event_id, "invalid",
                                 gettext("supersedes must name an earlier visit of this household."),
                                 {"supersedes": [gettext("no such visit of this household")]})
            if earlier.get("review_state") != "needs_revision":
                flags.append({"code": "supersedes_unrequested",
                              "message": N_("Replaces a visit that no supervisor sent back for revision.")})
            earlier, released = release_superseded(batch.tx, earlier)
            batch.put_later("visits", {**earlier, "superseded_by": event_id})
            for attachment in released:  # its files that never arrived are no longer asked for
                batch.put_later("attachments", attachment)
        # A write arriving after an erasure loses the values the erasure covers, its body and answers.
        parsed, erased = late_write(record, item.parsed, raw, batch.erased)
        try:
            record.apply_event(parsed, recall=event_recall(batch.tx, household_id, batch.applied))
        except EventError as error:
            return _rejected(event_id, error.code, error.message, error.errors)
        batch.applied[event_id] = parsed
        batch.dirty.add(household_id)
        batch.clock.observe(raw["hlc"])
        batch.seen[event_id] = item.digest
        if visit is not None and visit.get("attachments"):
            visit, flags = files_sent_before(batch.tx, visit, flags)
        stored = event_document(
            raw["type"], engine_dict(parsed) if erased else item.engine_event or {}, household_id=household_id,
            body=dict(raw), digest=item.digest, received_at=batch.received_at, flags=flags)
        if erased:
            stored = scrubbed_event(stored, lambda _path, _value: False, batch.received_at)
            visit = scrubbed_visit(visit, batch.received_at, "erasure") if visit is not None else None
            flags = [{"code": flag.get("code")} for flag in flags if flag.get("code") != "attachments_missing"]
        if visit is not None and batch.erased_files:
            visit, flags = without_erased_files(visit, flags, batch.erased_files)
        batch.insert_later("events", stored)
        if visit is not None:
            visit = {**visit, "flags": flags, "flagged": bool(flags), "flag_codes": sorted({f["code"] for f in flags})}
            if raw.get("restamp_of"):  # another node may hold the visit under its first id
                visit["restamp_of"] = raw["restamp_of"]
                pending = [doc for op, collection, doc in batch.later if op == "insert" and collection == "visits"
                           and doc.get("household_id") == household_id]  # its twin may be in this batch
                for sibling in settle_restamps(batch.tx, household_id, raw["restamp_of"], visit, pending):
                    batch.put_later("visits", sibling)
            batch.insert_later("visits", visit)
            for attachment in attachment_documents(visit):  # the files it names, held once uploaded
                batch.insert_later("attachments", attachment)
        return _result(event_id, "applied", flags=translate_flags(flags) or None)

    def _household(self, batch: _Batch, household_id: str) -> tuple[Record, int | None, dict[str, Any]]:
        if household_id not in batch.households:
            doc = batch.stored_households.get(household_id)
            if doc is None:
                batch.households[household_id] = (Record(household_id), None, {})
            else:
                batch.households[household_id] = (Record.from_document(doc["record"]), doc["seq"], doc)
        return batch.households[household_id]

    def _edit(self, caller: Caller, raw: Mapping[str, Any], memo: dict[Any, Any]) -> Any:
        for path in raw.get("base") or {}:
            if path not in raw["set"]:
                return _rejected(raw["id"], "invalid", gettext("base names a field the event does not write."),
                                 {f"base.{path}": [gettext("not written by this event")]})
        key = ("household_fields", raw["village"])
        if key not in memo:  # a batch is mostly one village: gather its fields once
            memo[key] = self.household_fields(raw["village"])
        problems = memo[key].check_writes(raw["set"])
        if problems:
            return _rejected(raw["id"], "invalid", gettext("The edit writes fields or values households do not have."),
                             {f"set.{path}": messages for path, messages in problems.items()})
        return engine_event(raw, caller.username, raw["set"], raw.get("at")), [], None

    def _visit(self, caller: Caller, raw: Mapping[str, Any], received_at: str,
               definitions: dict[tuple[str, str], Any]) -> Any:
        event_id = raw["id"]
        key = (raw["form_id"], raw["form_version"])
        if key not in definitions:  # a batch is mostly one form: look it up once
            definitions[key] = self.definitions(*key)
        definition = definitions[key]
        if definition is None:
            return _rejected(event_id, "invalid", gettext("Unknown form or form version."),
                             {"form_version": [gettext("%(form)s version %(version)s is not published",
                                                       form=raw["form_id"], version=raw["form_version"])]})
        report = validate_answers(definition, raw["answers"])
        if report.errors:
            return _rejected(event_id, "invalid", gettext("The answers cannot be stored."),
                             {("answers." + path if path else "answers"): messages
                              for path, messages in report.errors.items()})
        flags = list(report.flags)
        problems, attachments = (check_attachments(definition, report.answers, raw["attachments"])
                                 if "attachments" in raw else ({}, []))
        if problems:
            return _rejected(event_id, "invalid", "The attachments cannot be stored.", problems)
        if attachments:  # its files come separately (tus); the flag clears when the last arrives
            flags.append(missing_flag([entry["path"] for entry in attachments]))
        unlisted = unlisted_files(definition, report.answers, attachments)
        if unlisted:
            flags.append(unlisted_flag([entry["path"] for entry in unlisted]))
        geotag = raw.get("geotag")
        if geotag is None:
            flags.append({"code": "no_geotag", "message": N_("The visit has no GPS fix.")})
        else:
            geotag_errors = check_geotag(geotag)
            if geotag_errors:
                return _rejected(event_id, "invalid", gettext("The geotag is not valid."), geotag_errors)
            found = self.boundaries.locate(raw["village"], float(geotag["lat"]), float(geotag["lon"]))
            if found:
                flags.append(found)
        writes = household_writes(definition, report)
        engine = engine_event(raw, caller.username, writes, raw.get("ended_at"))
        visit = {
            "id": event_id, "village": raw["village"], "household_id": raw["household_id"],
            "form_id": raw["form_id"], "form_version": raw["form_version"], "officer": caller.username,
            "device_id": raw["device_id"], "hlc": raw["hlc"], "started_at": raw.get("started_at"),
            "ended_at": raw.get("ended_at"), "received_at": received_at, "geotag": geotag,
            "answers": report.answers, "supersedes": raw.get("supersedes"), "superseded_by": None,
            "review_state": "pending", "reviewed": False, "review": None, "review_record": None,
        }
        if attachments:
            visit["attachments"] = attachments
        if unlisted:
            visit["unlisted_files"] = unlisted
        if geotag:
            # GeoJSON, so that MongoDB's 2dsphere index serves spatial queries on visits
            visit["location"] = {"type": "Point", "coordinates": [geotag["lon"], geotag["lat"]]}
        return engine, flags, visit
