"""Visits: the reads supervisors and officers make (filters, flags, scope) and the supervisor's review."""

from __future__ import annotations

from collections.abc import Mapping
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


def find_visits(store: Store, where: Mapping[str, Any], *, flag: str | None = None, after: str | None = None,
                limit: int) -> list[dict[str, Any]]:
    """Visits matching the indexed ``where`` and carrying ``flag`` (a flag code, ``any``, or None for
    no flag filter), by id, after the id ``after``."""
    if flag is None:
        return store.find(VISITS, where, after=after, limit=limit)
    where = {**where, "flagged": True}
    if flag == ANY_FLAG:
        return store.find(VISITS, where, after=after, limit=limit)
    found: list[dict[str, Any]] = []
    while len(found) < limit:
        page = store.find(VISITS, where, after=after, limit=FLAG_SCAN)
        found.extend(v for v in page if flag in (v.get("flag_codes") or ()))
        if len(page) < FLAG_SCAN:
            break
        after = page[-1]["id"]
    return found[:limit]


def count_visits(store: Store, where: Mapping[str, Any], *, flag: str | None = None) -> int:
    """How many visits :func:`find_visits` would find without a limit."""
    if flag is None:
        return store.count(VISITS, where)
    where = {**where, "flagged": True}
    if flag == ANY_FLAG:
        return store.count(VISITS, where)
    return sum(1 for v in store.iterate(VISITS, where) if flag in (v.get("flag_codes") or ()))


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
        review = record.get("review")
        visit = tx.put(VISITS, {**visit, "review": {**review, "in_conflict": record.fields["review"].in_conflict},
                                "review_state": review["state"], "reviewed": True,
                                "review_record": record.to_document()})
        stamper.save()
        return visit

    return store.unit_of_work(unit)
