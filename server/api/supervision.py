"""Supervision: visits and their reviews, conflicts and their resolution, households and their history."""

from __future__ import annotations

import marshmallow as ma

from ..errors import ApiError
from ..security.guard import auth_required, current_scope, current_user, require_in_scope
from ..store import get_store
from ..sync_service import REVIEW_STATES
from ..syncing import sync_service
from .base import Blueprint

blp = Blueprint("supervision", __name__, url_prefix="/api/v1", description="Visits, reviews, conflicts, households")

ID = ma.validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", error="not an id")
VILLAGE = ma.validate.Regexp(r"^[1-9]\d(\.\d{2}(\.\d{2}(\.[123]\d{3})?)?)?$", error="not a Kemendagri code")


class PageQuery(ma.Schema):
    after = ma.fields.String(validate=ma.validate.Length(max=128),
                             metadata={"description": "last id of the previous page"})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))


class VisitQuery(PageQuery):
    village = ma.fields.String(validate=VILLAGE)
    form_id = ma.fields.String(validate=ma.validate.Length(max=64))
    officer = ma.fields.String(validate=ma.validate.Length(max=64))
    review = ma.fields.String(validate=ma.validate.OneOf(("pending", *REVIEW_STATES)))
    flag = ma.fields.String(validate=ma.validate.Length(max=64),
                            metadata={"description": "only visits carrying this flag code, or 'any'"})


class VillageQuery(PageQuery):
    village = ma.fields.String(validate=VILLAGE)


class ReviewSchema(ma.Schema):
    id = ma.fields.String(required=True, validate=ID, metadata={"description": "client-made event id"})
    state = ma.fields.String(required=True, validate=ma.validate.OneOf(REVIEW_STATES))
    comment = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=2000))


class ResolveSchema(ma.Schema):
    id = ma.fields.String(required=True, validate=ID, metadata={"description": "client-made event id"})
    value = ma.fields.Raw(required=True, allow_none=True)
    heads = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=300)), required=True,
                           validate=ma.validate.Length(min=1, max=100))


class VisitSchema(ma.Schema):
    id = ma.fields.String()
    village = ma.fields.String()
    household_id = ma.fields.String()
    form_id = ma.fields.String()
    form_version = ma.fields.String()
    officer = ma.fields.String()
    device_id = ma.fields.String()
    hlc = ma.fields.String()
    started_at = ma.fields.String(allow_none=True)
    ended_at = ma.fields.String(allow_none=True)
    received_at = ma.fields.String()
    geotag = ma.fields.Dict(allow_none=True)
    answers = ma.fields.Dict()
    flags = ma.fields.List(ma.fields.Dict())
    supersedes = ma.fields.String(allow_none=True)
    superseded_by = ma.fields.String(allow_none=True)
    review_state = ma.fields.String()
    review = ma.fields.Dict(allow_none=True)


class ConflictSchema(ma.Schema):
    id = ma.fields.String()
    household_id = ma.fields.String()
    village = ma.fields.String()
    field = ma.fields.String()
    heads = ma.fields.List(ma.fields.Dict())


class FieldStateSchema(ma.Schema):
    household_id = ma.fields.String()
    field = ma.fields.String()
    value = ma.fields.Raw(allow_none=True)
    stamp = ma.fields.String(allow_none=True)
    heads = ma.fields.List(ma.fields.Dict())
    head_stamps = ma.fields.List(ma.fields.String())
    in_conflict = ma.fields.Boolean()
    conflict_id = ma.fields.String()


class HouseholdSchema(ma.Schema):
    type = ma.fields.String()
    id = ma.fields.String()
    village = ma.fields.String()
    fields = ma.fields.Dict()
    open_conflicts = ma.fields.Integer()
    history = ma.fields.List(ma.fields.Dict())


def _filtered(where: dict, village: str | None) -> dict:
    scope = current_scope()
    if village:
        require_in_scope(village, "village")
        where["village"] = village
    else:
        where.update(scope.where("village"))
    return where


@blp.route("/visits")
@auth_required()
@blp.arguments(VisitQuery, location="query")
@blp.response(200, VisitSchema(many=True))
def list_visits(query):
    """Visits in your scope, newest id last, filtered; officers see their own."""
    where: dict = {}
    if current_user()["role"] == "officer":
        where["officer"] = current_user()["id"]
    elif "officer" in query:
        where["officer"] = query["officer"]
    for key, field in (("form_id", "form_id"), ("review", "review_state")):
        if key in query:
            where[field] = query[key]
    if query.get("flag") == "any":
        where["flagged"] = True
    _filtered(where, query.get("village"))
    flag = query.get("flag")
    if flag and flag != "any":
        where["flagged"] = True
        # flag codes are a list; filter in memory over the flagged visits, a page at a time
        found, after = [], query.get("after")
        for visit in get_store().iterate("visits", where):
            if after and visit["id"] <= after:
                continue
            if flag in visit.get("flag_codes", []):
                found.append(visit)
                if len(found) >= query["limit"]:
                    break
        return found
    return get_store().find("visits", where, after=query.get("after"), limit=query["limit"])


@blp.route("/visits/<visit_id>")
@auth_required()
@blp.response(200, VisitSchema)
def get_visit(visit_id):
    """One visit with its answers, flags and review."""
    visit = get_store().get("visits", visit_id)
    if visit is None or (current_user()["role"] == "officer" and visit["officer"] != current_user()["id"]):
        raise ApiError(404, "not_found", "No such visit.")
    require_in_scope(visit["village"], "visit")
    return visit


@blp.route("/visits/<visit_id>/review", methods=["POST"])
@auth_required("supervisor", "admin")
@blp.arguments(ReviewSchema)
@blp.response(200, VisitSchema)
def review_visit(body, visit_id):
    """Approve a visit, send it back for revision, or reject it; it reaches the officer on their next pull."""
    return sync_service().review_visit(current_user()["id"], current_scope(), visit_id, body["id"], body["state"],
                                       body.get("comment"))


@blp.route("/conflicts")
@auth_required()
@blp.arguments(VillageQuery, location="query")
@blp.response(200, ConflictSchema(many=True))
def list_conflicts(query):
    """Open conflicts in your scope: fields whose heads hold different values, with every head."""
    where = _filtered({"open": True}, query.get("village"))
    return get_store().find("conflicts", where, after=query.get("after"), limit=query["limit"])


@blp.route("/conflicts/<conflict_id>/resolve", methods=["POST"])
@auth_required("supervisor", "admin")
@blp.arguments(ResolveSchema)
@blp.response(200, FieldStateSchema)
def resolve_conflict(body, conflict_id):
    """Write the chosen value over exactly the heads named; a head that arrived since stays in conflict."""
    return sync_service().resolve_conflict(current_user()["id"], current_scope(), conflict_id, body["id"],
                                           body["value"], body["heads"])


@blp.route("/households")
@auth_required()
@blp.arguments(VillageQuery, location="query")
@blp.response(200, HouseholdSchema(many=True))
def list_households(query):
    """Households in your scope with their current fields, by id."""
    from ..sync_service import household_change

    where = _filtered({}, query.get("village"))
    docs = get_store().find("households", where, after=query.get("after"), limit=query["limit"])
    return [{**household_change(doc), "open_conflicts": doc["open_conflicts"]} for doc in docs]


@blp.route("/households/<household_id>")
@auth_required()
@blp.response(200, HouseholdSchema)
def get_household(household_id):
    """One household with its fields and its event history."""
    from ..sync_service import household_change

    store = get_store()
    doc = store.get("households", household_id)
    if doc is None:
        raise ApiError(404, "not_found", "No such household.")
    require_in_scope(doc["village"], "household")
    history = [{"event_id": e["id"], "type": e["type"], "officer": e["officer"], "device_id": e["device_id"],
                "hlc": e["hlc"], "received_at": e["received_at"], "writes": e["engine"]["set"],
                "base": e["engine"].get("base", {}), "flags": e.get("flags", [])}
               for e in store.iterate("events", {"household_id": household_id}, order_by="seq")
               if e["type"] != "review"]
    return {**household_change(doc), "open_conflicts": doc["open_conflicts"], "history": history}
