"""Visits: the reads supervisors and officers make (filters, flags, scope) and the supervisor's review."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sync import Record

from .areas import scoped_areas, village_where
from .errors import ApiError
from .eventlog import body_hash, same_body
from .i18n import _
from .security.scope import Scope
from .server_events import ServerStamper
from .storage import Store, Writer
from .timeutil import iso, now_utc

VISITS = "visits"
REVIEW_STATES = ("approved", "needs_revision", "rejected")
ANY_FLAG = "any"
# Flag codes are a list, which the store cannot index: visits carrying one code are found by
# reading the flagged visits (an indexed field) this many at a time.
FLAG_SCAN = 500


# A visit re-stamped after clock_skew under a new id (``restamp_of``) may reach a node under both ids;
# the node keeps the pair's events (the fold needs both) and shows one visit: the one whose write the
# device order keeps standing (same device and device_seq, so the greater stamp: HLC, then id). The
# others carry ``restamp_hidden`` and are left out of listings, the review queue, figures and exports.
HIDDEN = "restamp_hidden"


def shown(visit: Mapping[str, Any]) -> bool:
    return not visit.get(HIDDEN)


def _group_of(visit: Mapping[str, Any]) -> str:
    return visit.get("restamp_of") or visit["id"]


def restamp_group(tx: Writer, household_id: str, group: str, *, landing: Mapping[str, Any],
                  pending: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The held visits of one re-stamped visit (``group``: the first id), besides ``landing``; with
    those of ``pending`` (visits of the same unit of work not written yet) that belong to it."""
    unwritten = [visit for visit in pending if visit["id"] != landing["id"]
                 and (visit["id"] == group or visit.get("restamp_of") == group)]
    if unwritten:
        return unwritten + restamp_group(tx, household_id, group, landing=landing)
    ids = []
    for event in tx.find("events", {"household_id": household_id}, order_by="seq"):
        if event.get("type") != "visit" or event["id"] == landing["id"]:
            continue
        named = event.get("restamp_of") or (event.get("body") or {}).get("restamp_of")
        if event["id"] == group or named == group:
            ids.append(event["id"])
    return list(tx.get_many(VISITS, ids).values()) if ids else []


def shown_twin(tx: Writer, visit: dict[str, Any]) -> dict[str, Any]:
    """The visit shown for ``visit``: itself, or for a hidden re-stamp twin the one of its pair
    that shows (a review made on the hidden one belongs to the visit everyone sees)."""
    if shown(visit):
        return visit
    standing = [v for v in restamp_group(tx, visit["household_id"], _group_of(visit), landing=visit) if shown(v)]
    return standing[0] if standing else visit


def review_fields(record: Record) -> dict[str, Any]:
    """What a visit carries of its review record (the fold of its review events)."""
    if "review" not in record.fields:
        return {"review": None, "review_state": "pending", "reviewed": False, "review_record": None}
    review = record.get("review")
    return {"review": {**review, "in_conflict": record.fields["review"].in_conflict},
            "review_state": review["state"], "reviewed": True, "review_record": record.to_document()}


def fold_review(record: Record, engine: Mapping[str, Any]) -> None:
    """Fold one review event into the review record of the visit it applies to: the event may name
    the visit's re-stamp twin (a review made where the twin was the one shown)."""
    record.apply_event({**engine, "household_id": record.id}, check=False)


def _twins_review(tx: Writer, household_id: str, ids: set[str], target: str) -> Record:
    """The fold, under ``target``, of every review event of the visits ``ids`` (one re-stamped visit)."""
    record = Record(target)
    for event in tx.find("events", {"household_id": household_id}, order_by="seq"):
        if event.get("type") == "review" and (event.get("visit_id") or (event.get("engine") or {}).get(
                "household_id")) in ids:
            fold_review(record, event["engine"])
    return record


def settle_restamps(tx: Writer, household_id: str, group: str, landing: dict[str, Any],
                    pending: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Mark which visit of a re-stamped pair shows: sets ``landing``'s mark and returns the held
    siblings whose mark changed (for the caller to write). A sibling among ``pending`` (the unit of
    work's visits not written yet, such as a push batch's) is marked in place instead. When
    ``landing`` is the one that shows now, it takes the reviews made on its twins: a review stays
    on the visit everyone sees."""
    unwritten = {id(visit) for visit in pending}
    siblings = restamp_group(tx, household_id, group, landing=landing, pending=pending)
    if not siblings:
        return []
    standing = max([*siblings, landing], key=lambda v: (v["hlc"], v["id"]))["id"]
    landing[HIDDEN] = landing["id"] != standing
    if not landing[HIDDEN]:
        ids = {landing["id"], *(visit["id"] for visit in siblings)}
        landing.update(review_fields(_twins_review(tx, household_id, ids, landing["id"])))
    for visit in siblings:
        if id(visit) in unwritten:
            visit[HIDDEN] = visit["id"] != standing
    return [{**visit, HIDDEN: visit["id"] != standing} for visit in siblings
            if id(visit) not in unwritten and bool(visit.get(HIDDEN)) != (visit["id"] != standing)]


def find_visits(store: Store, where: Mapping[str, Any], *, flag: str | None = None, after: str | None = None,
                limit: int) -> list[dict[str, Any]]:
    """Visits matching the indexed ``where`` and carrying ``flag`` (a flag code, ``any``, or None for
    no flag filter), by id, after the id ``after``; a re-stamped visit once (see ``HIDDEN``)."""
    if flag is not None:
        where = {**where, "flagged": True}
    found: list[dict[str, Any]] = []
    while len(found) < limit:
        # Pages are read past the hidden ones (few) until this page fills.
        wanted = limit - len(found) if flag in (None, ANY_FLAG) else FLAG_SCAN
        page = store.find(VISITS, where, after=after, limit=wanted)
        found.extend(v for v in page if shown(v) and (
            flag in (None, ANY_FLAG) or flag in (v.get("flag_codes") or ())))
        if len(page) < wanted:
            break
        after = page[-1]["id"]
    return found[:limit]


def count_visits(store: Store, where: Mapping[str, Any], *, flag: str | None = None) -> int:
    """How many visits :func:`find_visits` would find without a limit."""
    if flag is not None:
        where = {**where, "flagged": True}
    if flag in (None, ANY_FLAG):
        return store.count(VISITS, where) - store.count(VISITS, {**where, HIDDEN: True})
    return sum(1 for v in store.iterate(VISITS, where) if shown(v) and flag in (v.get("flag_codes") or ()))


def _own_visits(user: Mapping[str, Any]) -> dict[str, Any]:
    """Officers see the visits they made; supervisors and admins every visit in their scope."""
    return {"officer": user["id"]} if user["role"] == "officer" else {}


def list_visits(store: Store, user: Mapping[str, Any], scope: Scope, *, area: str | None = None,
                form_id: str | None = None, officer: str | None = None, review: str | None = None,
                flag: str | None = None, after: str | None = None, limit: int) -> list[dict[str, Any]]:
    """Visits in scope, filtered, by id."""
    where: dict[str, Any] = {}
    if officer is not None:
        where["officer"] = officer
    where.update(_own_visits(user))
    if form_id is not None:
        where["form_id"] = form_id
    if review is not None:
        where["review_state"] = review
    where.update(village_where(scoped_areas(scope, area)))
    return find_visits(store, where, flag=flag, after=after, limit=limit)


def get_visit(store: Store, user: Mapping[str, Any], scope: Scope, visit_id: str) -> dict[str, Any]:
    """One visit; 404 alike for an unknown one and one the caller may not see."""
    visit = store.get(VISITS, visit_id)
    if visit is None or not scope.covers(visit["village"]) or any(
            visit.get(key) != value for key, value in _own_visits(user).items()):
        raise ApiError(404, "not_found", _("No such visit."))
    return visit


def review_visit(store: Store, actor: str, scope: Scope, visit_id: str, event_id: str, state: str,
                 comment: str | None) -> dict[str, Any]:
    """Record a supervisor's review; idempotent by ``event_id``. Reviews fold by the merge rule
    too, so two supervisors reviewing at once both stay visible as a conflict."""
    body = {"visit": visit_id, "state": state, "comment": comment}
    digest = body_hash(body)

    def unit(tx: Writer) -> dict[str, Any]:
        visit = tx.get(VISITS, visit_id)
        if visit is None or not scope.covers(visit["village"]):
            raise ApiError(404, "not_found", _("No such visit."))
        existing = tx.get("events", event_id)
        # A hidden re-stamp twin is reviewed as the visit shown for it, the one in the queue.
        visit = shown_twin(tx, visit)
        if existing is not None:
            if not same_body(existing, digest):
                raise ApiError(409, "id_reused", _("Another event was received with this id."))
            return visit
        record = Record.from_document(visit["review_record"]) if visit.get("review_record") else Record(visit_id)
        current = record.fields.get("review")
        stamper = ServerStamper(tx, store)
        at = iso(now_utc())
        made = stamper.event("review", event_id=event_id, actor=actor, record_id=visit_id,
                             village=visit["village"],
                             writes={"review": {"state": state, "comment": comment, "by": actor, "at": at}},
                             base={"review": [w.stamp for w in current.heads] if current else []}, body=body,
                             household_id=visit["household_id"], visit_id=visit_id, at=at)
        record.apply_event(made.engine)
        tx.insert("events", made.document)
        visit = tx.put(VISITS, {**visit, **review_fields(record)})
        stamper.save()
        return visit

    return store.unit_of_work(unit)
