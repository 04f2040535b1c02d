"""Taking in events another node received: the scope of the sender, idempotence by id, the fold; no judging again."""

# A relayed event arrives as the first node stored it: its body, the engine's shape, its device,
# officer, receiving node and that node's verdicts (flags such as ``outside_village``; having
# passed the clock-skew bound). Those depend on the receiver's clock and configuration, so they
# are kept as they are and never judged again here (docs/design.md §3). What this node does check
# is its own business: that the sender may write the event's village (the hall's credential, or
# for a hall taking events from upstream, its own villages), that the household lives in that
# village, that an id already held with another body is refused, and that the engine can fold it.
#
# The whole batch, and the checkpoint that says it was taken, is one unit of work: a round cut
# at any point is either all taken, and resent as duplicates, or not taken at all.

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forms.identifiers import Area
from sync import EventError, Record, parse_event
from sync.stamps import is_id

from ..blobs.attachments import ATTACHMENTS, release_superseded
from ..clock import StoredClock
from ..eventlog import EVENTS, body_hash, event_recall, folds_into_household, same_body
from ..geo import check_geotag
from ..households import HOUSEHOLDS, write_household
from ..jsonio import storage_problems
from ..security.scope import Scope
from ..storage import Store, Writer
from ..visits import VISITS, fold_review, review_fields, settle_restamps, shown_twin
from .files import FILE_KEYS, relayed_files

RELAYED_TYPES = ("visit", "household_edit", "resolution", "import", "review")
# What of a stored event travels; ``seq`` and ``relayed_from`` are the holder's own bookkeeping.
EVENT_KEYS = {"id", "type", "household_id", "village", "device_id", "officer", "hlc", "received_at",
              "received_by", "body_hash", "body", "engine", "flags", "visit_id", "restamp_of"}
REQUIRED_KEYS = EVENT_KEYS - {"visit_id", "restamp_of", "received_by"}
# What of a stored visit travels: what it was when received. Its review is the fold of review
# events, which travel on their own; superseded_by is set by the later visit where it lands.
VISIT_KEYS = ("id", "village", "household_id", "form_id", "form_version", "officer", "device_id", "hlc",
              "started_at", "ended_at", "received_at", "geotag", "answers", "supersedes", "location", "flags",
              "flagged", "flag_codes", "attachments", "unlisted_files")
LOCAL_KEYS = ("seq", "relayed_from")
MAX_TEXT = 10_000
OUT_OF_SCOPE = "The event's village is not one of the villages this credential covers."


def wire_event(doc: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    """A stored event as it travels to another node; an event pushed here names this node as its receiver."""
    out = {key: value for key, value in doc.items() if key in EVENT_KEYS}
    out.setdefault("received_by", node_id)
    return out


def wire_visit(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {key: doc[key] for key in VISIT_KEYS if key in doc}


def _rejected(event_id: Any, code: str, message: str, errors: Mapping[str, list[str]] | None = None
              ) -> dict[str, Any]:
    return {"id": event_id if isinstance(event_id, str) else None, "status": "rejected", "code": code,
            "message": message, "errors": dict(errors or {})}


def item_errors(item: Any) -> dict[str, list[str]]:
    """Problems with the shape of one relayed item ``{"event": {...}, "visit": {...}?}``."""
    if not isinstance(item, Mapping) or not isinstance(item.get("event"), Mapping):
        return {"event": ["each item is an object with the stored event under 'event'"]}
    unsafe = storage_problems(item, max_text=MAX_TEXT)
    if unsafe:
        return unsafe
    event = item["event"]
    errors: dict[str, list[str]] = {}
    for key in sorted(set(event) - EVENT_KEYS):
        errors.setdefault(f"event.{str(key)[:64]}", []).append("unknown key")
    for key in sorted(REQUIRED_KEYS - set(event)):
        errors.setdefault(f"event.{key}", []).append("missing")
    if errors:
        return errors
    if event["type"] not in RELAYED_TYPES:
        errors["event.type"] = [f"must be one of {', '.join(RELAYED_TYPES)}"]
    for key in ("id", "household_id", "device_id"):
        if not is_id(event[key]):
            errors[f"event.{key}"] = ["must be an id"]
    for key in ("received_by", "restamp_of", "visit_id"):
        if event.get(key) is not None and not is_id(event[key]):
            errors[f"event.{key}"] = ["must be an id"]
    if not Area.is_code(event["village"], levels=("village",)):
        errors["event.village"] = ["must be a village code"]
    if not isinstance(event["engine"], Mapping) or not isinstance(event["flags"], list):
        errors["event.engine"] = ["must be the engine's shape of the event, with flags a list"]
    elif event["engine"].get("id") != event["id"] or event["engine"].get("village") != event["village"]:
        errors["event.engine"] = ["must be about the same event and village"]
    if not isinstance(event["officer"], str) or not isinstance(event["body_hash"], str):
        errors["event.officer"] = ["officer and body_hash are strings"]
    visit = item.get("visit")
    if event.get("type") == "visit":
        if not isinstance(visit, Mapping) or visit.get("id") != event["id"] \
                or visit.get("household_id") != event["household_id"] or visit.get("village") != event["village"]:
            errors["visit"] = ["a visit event travels with its visit, of the same id, household and village"]
    elif visit is not None:
        errors["visit"] = ["only a visit event carries a visit"]
    if isinstance(visit, Mapping) and visit.get("geotag") is not None:
        errors.update({f"visit.{path}": messages for path, messages in check_geotag(visit["geotag"]).items()})
    return errors


@dataclass
class _Intake:
    tx: Writer
    clock: StoredClock
    definition: Callable[[Any, Any], Any]  # a form version's definition here, or None
    households: dict[str, tuple[Record, int | None, dict[str, Any]]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    applied: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)

    def household(self, household_id: str) -> tuple[Record, int | None, dict[str, Any]]:
        if household_id not in self.households:
            doc = self.tx.get(HOUSEHOLDS, household_id)
            self.households[household_id] = ((Record(household_id), None, {}) if doc is None
                                             else (Record.from_document(doc["record"]), doc["seq"], doc))
        return self.households[household_id]


def accept_relayed(store: Store, items: list[Any], scope: Scope, *, source: str,
                   checkpoint: Callable[[Writer, list[dict[str, Any]]], None] | None = None,
                   late: Callable[[Mapping[str, Any]], bool] | None = None
                   ) -> tuple[list[dict[str, Any]], str]:
    """Take in events another node received; one verdict per item, in order, and this node's HLC after them.

    ``scope`` is what the sender may write, and ``late(event)`` says whether it may still send an
    event outside it (a hall's work for a village it lost, taken before it learned); ``source``
    names it in each stored event's ``relayed_from`` (this node's bookkeeping: an event from
    upstream is not sent back up).
    ``checkpoint(tx, results)`` runs in the same unit of work, so the sender's position and the
    events it covers commit together.
    """

    from ..forms_registry import published_definition

    definitions: dict[tuple[Any, Any], Any] = {}

    def definition(form_id: Any, version: Any) -> Any:
        # Read from the store, not the unit of work: published versions never change (and are cached).
        if (form_id, version) not in definitions:
            definitions[form_id, version] = published_definition(store, form_id, version)
        return definitions[form_id, version]

    def unit(tx: Writer) -> tuple[list[dict[str, Any]], str]:
        intake = _Intake(tx, StoredClock(tx), definition)
        results = [_take(intake, item, scope, source, late) for item in items]
        for household_id in sorted(intake.dirty):
            record, seq, previous = intake.households[household_id]
            write_household(tx, record, previous, seq)
        if checkpoint is not None:
            checkpoint(tx, results)
        hlc = intake.clock.now()
        intake.clock.save()
        return results, hlc

    return store.unit_of_work(unit)


def _take(intake: _Intake, item: Any, scope: Scope, source: str,
          late: Callable[[Mapping[str, Any]], bool] | None = None) -> dict[str, Any]:
    event_id = item.get("event", {}).get("id") if isinstance(item, Mapping) and isinstance(
        item.get("event"), Mapping) else None
    errors = item_errors(item)
    if errors:
        return _rejected(event_id, "invalid", "The relayed event is not valid.", errors)
    event = item["event"]
    if not scope.covers(event["village"]) and not (late is not None and late(event)):
        return _rejected(event_id, "out_of_scope", OUT_OF_SCOPE, {"village": ["not covered by the credential"]})
    tx = intake.tx
    # The hash is this node's own: a sender cannot make another body pass for a held one.
    digest = body_hash(event["body"])
    if event_id in intake.seen:
        same: bool | None = intake.seen[event_id] == digest
    else:
        stored = tx.get(EVENTS, event_id)
        same = None if stored is None else same_body(stored, digest)
    if same is not None:
        if same:
            return {"id": event_id, "status": "duplicate"}
        return _rejected(event_id, "id_reused", "Another event is held with this id.",
                         {"id": ["already used for an event with different content"]})
    event = {**event, "body_hash": digest}
    try:
        parsed = parse_event(event["engine"])
    except EventError as problem:
        return _rejected(event_id, problem.code, problem.message, problem.errors)
    kind = event["type"]
    outcome = _fold_household(intake, event, parsed) if folds_into_household(kind) else _fold_review(intake, event)
    if outcome is not None:
        return outcome
    if kind == "visit":
        visit = item["visit"]
        _store_visit(tx, visit, event, intake.definition(visit.get("form_id"), visit.get("form_version")))
    intake.clock.observe(event["hlc"])
    intake.seen[event_id] = digest
    tx.insert(EVENTS, {**{k: v for k, v in event.items() if k not in LOCAL_KEYS}, "relayed_from": source})
    return {"id": event_id, "status": "applied"}


def _fold_household(intake: _Intake, event: Mapping[str, Any], parsed: Any) -> dict[str, Any] | None:
    household_id = event["household_id"]
    if parsed.household_id != household_id:
        return _rejected(event["id"], "invalid", "The event's engine shape is about another household.",
                         {"event.engine": [f"must be about {household_id}"]})
    record, _, _ = intake.household(household_id)
    if record.created and record.village != event["village"]:
        return _rejected(event["id"], "invalid", "The household belongs to another village.",
                         {"village": [f"household {household_id} is in another village"]})
    try:
        record.apply_event(parsed, check=False, recall=event_recall(intake.tx, household_id, intake.applied))
    except EventError as error:
        return _rejected(event["id"], error.code, error.message, error.errors)
    intake.applied[event["id"]] = parsed
    intake.dirty.add(household_id)
    return None


def _fold_review(intake: _Intake, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """A review folds into its visit's review record, as ``server.visits.review_visit`` does."""
    visit_id = event.get("visit_id") or event["engine"].get("household_id")
    visit = intake.tx.get(VISITS, visit_id) if is_id(visit_id) else None
    if visit is None or visit["household_id"] != event["household_id"] or visit["village"] != event["village"]:
        return _rejected(event["id"], "missing_visit", "A review of a visit this node does not hold.",
                         {"visit_id": ["send the visit first"]})
    if event["engine"].get("household_id") != visit_id:
        return _rejected(event["id"], "invalid", "The review's engine shape is about another visit.",
                         {"event.engine": [f"must be about {visit_id}"]})
    # Made where this visit's re-stamp twin was the one shown, or here on the hidden one: it folds
    # into the visit this node shows for the pair.
    visit = shown_twin(intake.tx, visit)
    record = Record.from_document(visit["review_record"]) if visit.get("review_record") else Record(visit["id"])
    try:
        fold_review(record, event["engine"])
    except EventError as error:
        return _rejected(event["id"], error.code, error.message, error.errors)
    intake.tx.put(VISITS, {**visit, **review_fields(record)})
    return None


def _store_visit(tx: Writer, visit: Mapping[str, Any], event: Mapping[str, Any], definition: Any) -> None:
    flags = list(event.get("flags") or [])
    doc = {**{key: visit[key] for key in VISIT_KEYS if key in visit and key not in ("location", *FILE_KEYS)},
           "officer": event["officer"],
           "device_id": event["device_id"], "hlc": event["hlc"], "flags": flags, "flagged": bool(flags),
           "flag_codes": sorted({f.get("code") for f in flags if isinstance(f, Mapping) and f.get("code")}),
           "superseded_by": None, "review_state": "pending", "reviewed": False, "review": None,
           "review_record": None}
    geotag = doc.get("geotag")
    if geotag:
        # Made here from the checked geotag, never taken as sent: MongoDB's 2dsphere index reads it.
        doc["location"] = {"type": "Point", "coordinates": [geotag["lon"], geotag["lat"]]}
    # Relayed visits may complete a re-stamped pair in either order: the first id arriving after
    # its re-stamp, or the other way round; the node shows one of them (server/visits.py).
    body = event.get("body")
    named = event.get("restamp_of") or (body.get("restamp_of") if isinstance(body, Mapping) else None)
    if is_id(named):
        doc["restamp_of"] = named
    # Its files, as this node holds them: none yet, unless the same device sent these bytes before.
    doc, attachments = relayed_files(tx, definition, doc, visit.get("attachments"))
    for sibling in settle_restamps(tx, doc["household_id"], doc.get("restamp_of") or doc["id"], doc):
        tx.put(VISITS, sibling)
    tx.insert(VISITS, doc)
    for attachment in attachments:
        tx.insert(ATTACHMENTS, attachment)
    supersedes = visit.get("supersedes")
    if is_id(supersedes):
        earlier = tx.get(VISITS, supersedes)
        if earlier is not None and earlier["household_id"] == doc["household_id"]:
            earlier, released = release_superseded(tx, earlier)
            tx.put(VISITS, {**earlier, "superseded_by": doc["id"]})
            for attachment in released:  # its files that never arrived are no longer asked for
                tx.put(ATTACHMENTS, attachment)
