"""Coverage and work figures, and the review queue."""

from __future__ import annotations

import marshmallow as ma

from forms.identifiers import AreaCode

from ..cursors import InvalidCursor
from ..privacy.masking import mask_conflict, sees_whole
from ..reporting import QUEUE_KINDS, device_figures, officer_figures, review_queue, village_coverage
from ..security.guard import auth_required, current_scope, current_user
from ..store import get_store
from ..visits import REVIEW_STATES
from .base import Blueprint
from .paging import PageQuery, cursor, position

blp = Blueprint("reports", __name__, url_prefix="/api/v1", description="Coverage and work figures, the review queue")

AREA_HELP = {"description": "a village, or any area above it (kecamatan 32.04.05, regency, province); "
                            "within your scope"}


QUEUE = "review-queue"


# -- query schemas -----------------------------------------------------------------------------
class CoverageQuery(ma.Schema):
    village = AreaCode(metadata=AREA_HELP)
    days = ma.fields.Integer(load_default=7, validate=ma.validate.Range(min=1, max=366),
                             metadata={"description": "what counts as recent: the last N days, today included, "
                                                      "in each village's own time zone"})


class OfficerQuery(CoverageQuery):
    officer = ma.fields.String(validate=ma.validate.Length(max=64))


class DeviceQuery(ma.Schema):
    village = AreaCode(metadata=AREA_HELP)
    stale_days = ma.fields.Integer(load_default=3, validate=ma.validate.Range(min=1, max=366),
                                   metadata={"description": "list devices that have not synced for this many days"})


class QueueQuery(PageQuery):
    kind = ma.fields.String(validate=ma.validate.OneOf(("conflict", "visit")),
                            metadata={"description": "only conflicts or only flagged visits (default both, "
                                                     "conflicts first)"})
    village = AreaCode(metadata=AREA_HELP)
    flag = ma.fields.String(validate=ma.validate.Length(max=64),
                            metadata={"description": "only visits carrying this flag code (outside_village, "
                                                     "constraint_failed, unknown_choice, ...)"})
    officer = ma.fields.String(validate=ma.validate.Length(max=64))
    form_id = ma.fields.String(validate=ma.validate.Length(max=64))
    review = ma.fields.String(load_default="pending", validate=ma.validate.OneOf(("pending", *REVIEW_STATES, "any")),
                              metadata={"description": "review state of the visits listed (default pending)"})
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))


# -- response schemas (for the OpenAPI document) -----------------------------------------------
class FormDaySchema(ma.Schema):
    form_id = ma.fields.String()
    date = ma.fields.String(metadata={"description": "the village's local day, YYYY-MM-DD"})
    visits = ma.fields.Integer()


class VillageCoverageSchema(ma.Schema):
    village = ma.fields.String()
    name = ma.fields.String(allow_none=True)
    time_zone = ma.fields.String(metadata={"description": "WIB, WITA or WIT, by province"})
    utc_offset = ma.fields.String(metadata={"example": "+07:00"})
    households_known = ma.fields.Integer()
    households_visited = ma.fields.Integer(metadata={"description": "visited at least once"})
    households_not_visited = ma.fields.Integer()
    households_visited_recently = ma.fields.Integer(metadata={"description": "visited in the last `days` days"})
    visits = ma.fields.Integer(metadata={"description": "visits, a revised visit counted once"})
    visits_by_form_day = ma.fields.List(ma.fields.Nested(FormDaySchema))


class CoverageSchema(ma.Schema):
    as_of = ma.fields.String()
    recent_days = ma.fields.Integer()
    villages = ma.fields.List(ma.fields.Nested(VillageCoverageSchema))
    totals = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())


class DeviceStatusSchema(ma.Schema):
    username = ma.fields.String()
    device_id = ma.fields.String()
    first_seen_at = ma.fields.String(allow_none=True)
    last_login_at = ma.fields.String(allow_none=True)
    last_sync_at = ma.fields.String(allow_none=True)
    revoked = ma.fields.Boolean()
    app_version = ma.fields.String(allow_none=True)
    skew_ms = ma.fields.Integer(allow_none=True, metadata={"description": "how far ahead the clock was"})
    skew_seen_at = ma.fields.String(allow_none=True)
    skew_cleared_at = ma.fields.String(allow_none=True, metadata={"description": "clock right again since"})
    days_since_sync = ma.fields.Integer(allow_none=True)
    days_since_skew = ma.fields.Integer(allow_none=True)


class OfficerSchema(ma.Schema):
    officer = ma.fields.String()
    role = ma.fields.String(allow_none=True)
    assigned = ma.fields.List(ma.fields.String())
    visits = ma.fields.Integer()
    visits_recent = ma.fields.Integer()
    flagged_visits = ma.fields.Integer()
    flags = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(),
                           metadata={"description": "visits carrying each flag code"})
    villages_visited = ma.fields.List(ma.fields.String())
    last_sync_at = ma.fields.String(allow_none=True)
    devices = ma.fields.List(ma.fields.Nested(DeviceStatusSchema))


class OfficersSchema(ma.Schema):
    as_of = ma.fields.String()
    recent_days = ma.fields.Integer()
    officers = ma.fields.List(ma.fields.Nested(OfficerSchema))


class DevicesSchema(ma.Schema):
    as_of = ma.fields.String()
    stale_days = ma.fields.Integer()
    not_synced = ma.fields.List(ma.fields.Nested(DeviceStatusSchema))
    clock_skewed = ma.fields.List(ma.fields.Nested(DeviceStatusSchema))


class QueueItemSchema(ma.Schema):
    kind = ma.fields.String(metadata={"enum": ["conflict", "visit"]})
    id = ma.fields.String()
    village = ma.fields.String()
    household_id = ma.fields.String()
    field = ma.fields.String(metadata={"description": "conflict: the field in conflict"})
    heads = ma.fields.List(ma.fields.Dict(), metadata={"description": "conflict: every head"})
    opened_at = ma.fields.String(allow_none=True)
    form_id = ma.fields.String()
    form_version = ma.fields.String()
    officer = ma.fields.String()
    ended_at = ma.fields.String(allow_none=True)
    received_at = ma.fields.String()
    review_state = ma.fields.String()
    superseded_by = ma.fields.String(allow_none=True)
    flag_codes = ma.fields.List(ma.fields.String())
    flags = ma.fields.List(ma.fields.Dict())


class QueueSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(QueueItemSchema))
    next = ma.fields.String(required=True, allow_none=True, metadata={
        "description": "pass as `after` for the next page; null on the last page"})
    totals = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())


# -- figures -------------------------------------------------------------------------------------
@blp.route("/reports/coverage")
@auth_required("supervisor", "admin")
@blp.arguments(CoverageQuery, location="query")
@blp.response(200, CoverageSchema)
def coverage(query):
    """Per village in your scope: households known, visited, visited recently, and visits per form per local day."""
    return village_coverage(get_store(), current_scope(), area=query.get("village"), days=query["days"])


@blp.route("/reports/officers")
@auth_required("supervisor", "admin")
@blp.arguments(OfficerQuery, location="query")
@blp.response(200, OfficersSchema)
def officers(query):
    """Per officer in your scope: visits, recent visits, flags, last sync and devices."""
    return officer_figures(get_store(), current_scope(), area=query.get("village"), officer=query.get("officer"),
                           days=query["days"])


@blp.route("/reports/devices")
@auth_required("supervisor", "admin")
@blp.arguments(DeviceQuery, location="query")
@blp.response(200, DevicesSchema)
def devices(query):
    """Devices of users in your scope that have not synced lately, and devices whose clocks were found skewed."""
    return device_figures(get_store(), current_scope(), area=query.get("village"), stale_days=query["stale_days"])


@blp.route("/reports/review-queue")
@auth_required("supervisor", "admin")
@blp.arguments(QueueQuery, location="query")
@blp.response(200, QueueSchema)
def queue(query):
    """What needs a supervisor: open conflicts, then flagged visits, filtered and a page at a time."""
    at = position(query, QUEUE)
    if at is not None and not (isinstance(at, list) and len(at) == 2 and at[0] in QUEUE_KINDS
                               and isinstance(at[1], str)):
        raise InvalidCursor("after")
    found = review_queue(get_store(), current_scope(), kind=query.get("kind"), area=query.get("village"),
                         flag=query.get("flag"), officer=query.get("officer"), form_id=query.get("form_id"),
                         review=query["review"], after=tuple(at) if at else None, limit=query["limit"])
    if not sees_whole(current_user()):
        found = {**found, "items": [mask_conflict(item) if item["kind"] == "conflict" else item
                                    for item in found["items"]]}
    return {**found, "next": cursor(QUEUE, list(found["next"])) if found["next"] else None}
