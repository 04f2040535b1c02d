"""Conflicts: the open ones in a caller's scope, and a supervisor's resolution of one."""

from __future__ import annotations

from typing import Any

from sync import EventError, Record
from sync.stamps import parse_stamp

from .areas import scoped_areas, village_where
from .errors import ApiError
from .eventlog import body_hash, event_recall, same_body
from .households import write_household
from .i18n import _
from .jsonio import storage_problems
from .security.scope import Scope
from .server_events import ServerStamper
from .storage import Store, Writer

CONFLICTS = "conflicts"
MAX_TEXT = 10_000  # as for a pushed value


def list_conflicts(store: Store, scope: Scope, *, area: str | None, after: str | None,
                   limit: int) -> list[dict[str, Any]]:
    """Open conflicts in scope (and in ``area``), by id."""
    where = {"open": True, **village_where(scoped_areas(scope, area))}
    return store.find(CONFLICTS, where, after=after, limit=limit)


def field_state(record: Record, path: str) -> dict[str, Any]:
    """A field after a resolution: value, stamp, heads while in conflict, and the conflict id."""
    state = record.fields.get(path)
    if state is None:
        return {"household_id": record.id, "field": path, "value": None, "stamp": None, "in_conflict": False}
    out = {"household_id": record.id, "field": path, **state.to_pull(), "in_conflict": state.in_conflict}
    if state.in_conflict:
        out["conflict_id"] = next(c["id"] for c in record.conflicts() if c["field"] == path)
    return out


def restamp_twins(state: Any, named: list[str], recall: Any) -> list[str]:
    """Heads of the field that re-stamp a write the resolution names (the same device and device_seq:
    the device order keeps one of the two standing, so the supervisor may have seen the other): a
    resolution made on the hidden twin supersedes the one that stands."""
    twins = []
    for stamp in named:
        engine = recall(stamp)
        seq = engine.get("device_seq") if isinstance(engine, dict) else None
        if seq is None:
            continue
        device = parse_stamp(stamp).device_id
        twins.extend(head.stamp for head in state.heads if head.stamp not in named and head.device_seq == seq
                     and parse_stamp(head.stamp).device_id == device)
    return twins


def resolve_conflict(store: Store, actor: str, scope: Scope, conflict_id: str, event_id: str, value: Any,
                     heads: list[str]) -> dict[str, Any]:
    """Write ``value`` over exactly the ``heads`` named; idempotent by ``event_id``."""
    conflict = store.get(CONFLICTS, conflict_id)
    if conflict is None or not scope.covers(conflict["village"]):
        raise ApiError(404, "not_found", _("No such conflict."))
    path = conflict["field"]
    unsafe = storage_problems(value, "value", max_text=MAX_TEXT)
    if unsafe:
        raise ApiError(422, "invalid", _("The value cannot be stored."), unsafe)
    body = {"conflict": conflict_id, "value": value, "heads": sorted(set(heads))}
    digest = body_hash(body)

    def unit(tx: Writer) -> dict[str, Any]:
        existing = tx.get("events", event_id)
        doc = tx.get("households", conflict["household_id"])
        record = Record.from_document(doc["record"])
        if existing is not None:
            if not same_body(existing, digest):
                raise ApiError(409, "id_reused", _("Another event was received with this id."))
            return field_state(record, path)
        # A head named may have been superseded since the supervisor looked (it is then left as it
        # is, and the resolution supersedes only what was seen), but it must be a write of this field.
        state = record.fields.get(path)
        recall = event_recall(tx, record.id)
        unknown = [s for s in body["heads"] if state is None or not state.knows(s, recall)]
        if unknown or not body["heads"]:
            raise ApiError(422, "invalid", _("A resolution names the heads it saw."),
                           {"heads": [_("%(stamp)s is not a write of %(path)s", stamp=s, path=path) for s in unknown]
                            or [_("must not be empty")]})
        stamper = ServerStamper(tx, store)
        base = sorted({*body["heads"], *restamp_twins(state, body["heads"], recall)})
        made = stamper.event("resolution", event_id=event_id, actor=actor, record_id=record.id,
                             village=record.village, writes={path: value}, base={path: base}, body=body)
        try:
            record.apply_event(made.engine, recall=recall)
        except EventError as error:
            raise ApiError(422, "invalid", error.message, error.errors) from None
        tx.insert("events", made.document)
        write_household(tx, record, doc, doc["seq"])
        stamper.save()
        return field_state(record, path)

    return store.unit_of_work(unit)
