"""Device sync: pushing batches of events and pulling changes (docs/protocol.md "Sync")."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import orjson
from flask import current_app, jsonify

from forms.identifiers import AreaCode

from ..audit import record_pull
from ..blobs.attachments import missing_for_device
from ..cursors import MAX_CURSOR_LENGTH
from ..devices import note_pull
from ..errors import ApiError
from ..i18n import _
from ..privacy.masking import sees_whole
from ..pull_views import MASKED, WHOLE
from ..push import MAX_DEVICE_SEQ, Caller, PushSettings
from ..security.guard import auth_required, current_device, current_scope, current_user
from ..server_events import issue_hlc
from ..store import get_store
from ..syncing import pull_service, push_service
from .base import Blueprint, compiled_dump
from .uploads import MissingSchema

STAMPS = {"description": "field path -> the stamps the writer had for that field (design.md §2)",
          "example": {"head_name": ["1763790000000-0003/phone-1/3f0c…"]}}


# -- the event shapes, for the OpenAPI document. A push is not parsed with them: each event is
# judged by the push service on its own, so that one bad event gets its own verdict and never
# sinks the batch (server/push.py is where their rules live).
class GeotagSchema(ma.Schema):
    lat = ma.fields.Float(required=True, metadata={"minimum": -90, "maximum": 90})
    lon = ma.fields.Float(required=True, metadata={"minimum": -180, "maximum": 180})
    accuracy_m = ma.fields.Float(required=True, metadata={"minimum": 0})
    altitude_m = ma.fields.Float(allow_none=True)
    captured_at = ma.fields.String(required=True, metadata={"format": "date-time",
                                                            "description": "ISO-8601 with a UTC offset"})


class _EventSchema(ma.Schema):
    id = ma.fields.String(required=True, metadata={"description": "a UUID the device made; the event's identity"})
    device_id = ma.fields.String(required=True, metadata={"description": "the device of the token"})
    hlc = ma.fields.String(required=True, metadata={"example": "1763790000000-0003",
                                                    "description": "the device's HLC when it made the event"})
    device_seq = ma.fields.Integer(metadata={
        "minimum": 1, "maximum": MAX_DEVICE_SEQ,
        "description": "the device's own counter of its events, kept when an event is re-stamped"})
    household_id = ma.fields.String(required=True, metadata={"description": "a known household, or a new UUID"})
    village = AreaCode(required=True, levels=("village",))
    base = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()), metadata=STAMPS)
    restamp_of = ma.fields.String(metadata={"description": "after clock_skew: the id of the event this one "
                                                           "re-stamps under a new id (same device_seq)"})


class AttachmentSchema(ma.Schema):
    path = ma.fields.String(required=True, metadata={"description": "the question path: `photo`, or "
                                                                    "`repeat/<row _id>/photo` in a repeat"})
    sha256 = ma.fields.String(required=True, metadata={"pattern": "^[0-9a-f]{64}$"})
    size = ma.fields.Integer(required=True, metadata={"minimum": 1})
    media_type = ma.fields.String(required=True, metadata={"example": "image/jpeg"})
    filename = ma.fields.String(required=True, metadata={"maxLength": 255})


class VisitEventSchema(_EventSchema):
    """A form submission: its answers, geotag and times; its `save_to` fields write the household."""

    type = ma.fields.String(required=True, metadata={"enum": ["visit"]})
    form_id = ma.fields.String(required=True)
    form_version = ma.fields.String(required=True)
    answers = ma.fields.Dict(required=True, metadata={"description": "field name -> answer; repeats as lists of "
                                                                      "rows, each with its `_id`"})
    geotag = ma.fields.Nested(GeotagSchema, metadata={"description": "absent: the visit is flagged no_geotag"})
    started_at = ma.fields.String(metadata={"format": "date-time"})
    ended_at = ma.fields.String(metadata={"format": "date-time"})
    supersedes = ma.fields.String(metadata={"description": "the visit this one revises"})
    attachments = ma.fields.List(ma.fields.Nested(AttachmentSchema), metadata={
        "description": "the files answering its photo, audio, video and file questions; uploaded separately "
                       "(POST /api/v1/uploads, tus)"})


class HouseholdEditEventSchema(_EventSchema):
    """Household fields written directly: `head_name`, `members/<member-uuid>/status`, …"""

    type = ma.fields.String(required=True, metadata={"enum": ["household_edit"]})
    set = ma.fields.Dict(required=True, metadata={"description": "field path -> value"})
    at = ma.fields.String(metadata={"format": "date-time"})


EVENT_SCHEMAS = {"VisitEvent": VisitEventSchema, "HouseholdEditEvent": HouseholdEditEventSchema}


class SyncBlueprint(Blueprint):
    """Adds the event shapes to the OpenAPI components, where the push's `events` refer to them."""

    def register_views_in_doc(self, api, app, spec, *, name, parameters):  # type: ignore[no-untyped-def]
        for schema_name, schema in EVENT_SCHEMAS.items():
            if schema_name not in spec.components.schemas:
                spec.components.schema(schema_name, schema=schema)
        return super().register_views_in_doc(api, app, spec, name=name, parameters=parameters)


blp = SyncBlueprint("sync", __name__, url_prefix="/api/v1/sync", description="Offline sync: push and pull")


class PushSchema(ma.Schema):
    device_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    hlc = ma.fields.String(metadata={"description": "the device clock now"})
    # Events are checked one by one by the service, so that each gets its own verdict.
    events = ma.fields.List(ma.fields.Raw(allow_none=True, metadata={
        "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in EVENT_SCHEMAS],
        "description": "by `type`; each event is judged on its own and answered in `results`"}), required=True)


class FlagSchema(ma.Schema):
    code = ma.fields.String(required=True)
    path = ma.fields.String()
    message = ma.fields.String()
    distance_m = ma.fields.Float()
    paths = ma.fields.List(ma.fields.String(), metadata={"description": "attachments_missing: the files not "
                                                                        "received yet, by question path"})


class PushResultSchema(ma.Schema):
    id = ma.fields.String(allow_none=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["applied", "duplicate", "rejected"]))
    code = ma.fields.String(metadata={"enum": ["clock_skew", "stale_base", "out_of_scope", "invalid", "id_reused"]})
    message = ma.fields.String()
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))
    server_time = ma.fields.String()
    flags = ma.fields.List(ma.fields.Nested(FlagSchema))


class PushReplySchema(ma.Schema):
    results = ma.fields.List(ma.fields.Nested(PushResultSchema), required=True)
    server_hlc = ma.fields.String(required=True, metadata={"description": "the server's HLC now"})


# The reply as PushReplySchema dumps it, compiled: marshmallow took 4% of a push's CPU for 500 results.
dump_push_reply = compiled_dump(PushReplySchema())


class PullQuerySchema(ma.Schema):
    # Not bounded here: a cursor too long to be one is answered invalid_cursor like any other.
    since = ma.fields.String(metadata={
        "description": "the `next` of the previous pull; omit it for a first sync, and after `invalid_cursor`",
        "maxLength": MAX_CURSOR_LENGTH})
    limit = ma.fields.Integer(load_default=500, validate=ma.validate.Range(min=1, max=1000))


class ChangeField(ma.fields.Dict):
    """A change: a dict, or a household change already encoded (its stored view, server/pull_views.py),
    which the JSON encoder writes out as it is."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        if isinstance(value, orjson.Fragment):
            return value
        return super()._serialize(value, attr, obj, **kwargs)


class PullReplySchema(ma.Schema):
    changes = ma.fields.List(ChangeField(), required=True)
    attachments_missing = ma.fields.List(ma.fields.Nested(MissingSchema), metadata={
        "description": "files of this device's applied visits the server does not hold yet; a device keeps a "
                       "local file until it is no longer listed (docs/protocol.md, Files of visits)"})
    next = ma.fields.String(required=True)
    has_more = ma.fields.Boolean(required=True)
    server_hlc = ma.fields.String(required=True, metadata={"description": "the server's HLC now"})


@blp.route("/push", methods=["POST"])
@auth_required(device=True)
@blp.arguments(PushSchema)
@blp.response(200, PushReplySchema)
@blp.alt_response(413, description="batch_too_large: more events than the server takes in one push")
def push(body):
    """Send a batch of events; each is answered applied, duplicate or rejected, in order."""
    limit = current_app.config["MAX_BATCH_EVENTS"]
    if len(body["events"]) > limit:
        raise ApiError(413, "batch_too_large",
                       _("A push may carry at most %(limit)s events; split the batch.", limit=limit),
                       {"events": [_("%(count)s events; the limit is %(limit)s", count=len(body["events"]),
                                     limit=limit)]})
    device = current_device()
    if body["device_id"] != device:
        raise ApiError(422, "invalid", _("device_id must be the device you logged in with."),
                       {"device_id": [_("must be %(device)s", device=device)]})
    user = current_user()
    caller = Caller(user["id"], user["role"], device, current_scope())
    settings = PushSettings(skew_bound_ms=current_app.config["CLOCK_SKEW_SECONDS"] * 1000)
    results, hlc = push_service().push(caller, body.get("hlc"), body["events"], settings)
    # A Response is sent as it is: the schema above documents it, dump_push_reply is its dump.
    return jsonify(dump_push_reply({"results": results, "server_hlc": hlc}))


@blp.route("/pull")
@auth_required()
@blp.arguments(PullQuerySchema, location="query")
@blp.response(200, PullReplySchema)
@blp.alt_response(400, description="invalid_cursor: start a fresh pull without `since` and replace your copy")
def pull(query):
    """Changes in your scope since a cursor, a page at a time; omit `since` for a first sync."""
    user = current_user()
    # Identifiers masked unless the user sees them whole: the store keeps both views of each household.
    view = WHOLE if sees_whole(user) else MASKED
    reply = pull_service().pull(user, current_scope(), query.get("since"), query["limit"], view)
    device = current_device()
    carried = reply.pop("carried")
    missing = missing_for_device(get_store(), user["id"], device) if device else []

    def close_page(tx):  # type: ignore[no-untyped-def]
        # One write transaction a page, not three: with many phones pulling at once each of them
        # queues behind the pushes for SQLite's single writer (docs/scaling.md §6).
        note_pull(tx, user["id"], device)
        record_pull(tx, actor=user["id"], device_id=device, carried=carried)  # pages with households or visits
        return issue_hlc(tx)

    return {**reply, "attachments_missing": missing, "server_hlc": get_store().unit_of_work(close_page)}
