"""Device sync: pushing batches of events and pulling changes (CONTRACT.md "Sync")."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app

from ..errors import ApiError
from ..security.guard import auth_required, current_device, current_scope, current_user
from ..sync_service import Caller, PushSettings
from ..syncing import form_changes, server_hlc, sync_service
from .base import Blueprint

blp = Blueprint("sync", __name__, url_prefix="/api/v1/sync", description="Offline sync: push and pull")


class PushSchema(ma.Schema):
    device_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    hlc = ma.fields.String(metadata={"description": "the device clock now"})
    # Events are checked one by one by the service, so that each gets its own verdict.
    events = ma.fields.List(ma.fields.Raw(allow_none=True), required=True)


class FlagSchema(ma.Schema):
    code = ma.fields.String(required=True)
    path = ma.fields.String()
    message = ma.fields.String()
    distance_m = ma.fields.Float()


class PushResultSchema(ma.Schema):
    id = ma.fields.String(allow_none=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["applied", "duplicate", "rejected"]))
    code = ma.fields.String()
    message = ma.fields.String()
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))
    server_time = ma.fields.String()
    flags = ma.fields.List(ma.fields.Nested(FlagSchema))


class PushReplySchema(ma.Schema):
    results = ma.fields.List(ma.fields.Nested(PushResultSchema), required=True)
    server_hlc = ma.fields.String(required=True)


class PullQuerySchema(ma.Schema):
    since = ma.fields.String(validate=ma.validate.Length(max=4096))
    limit = ma.fields.Integer(load_default=500, validate=ma.validate.Range(min=1, max=1000))


class PullReplySchema(ma.Schema):
    changes = ma.fields.List(ma.fields.Dict(), required=True)
    next = ma.fields.String(required=True)
    has_more = ma.fields.Boolean(required=True)
    server_hlc = ma.fields.String(required=True)


@blp.route("/push", methods=["POST"])
@auth_required(device=True)
@blp.arguments(PushSchema)
@blp.response(200, PushReplySchema)
@blp.alt_response(413, description="batch_too_large: more events than the server takes in one push")
def push(body):
    """Send a batch of events; each is answered applied, duplicate or rejected, in order."""
    limit = current_app.config["MAX_BATCH_EVENTS"]
    if len(body["events"]) > limit:
        raise ApiError(413, "batch_too_large", f"A push may carry at most {limit} events; split the batch.",
                       {"events": [f"{len(body['events'])} events; the limit is {limit}"]})
    device = current_device()
    if body["device_id"] != device:
        raise ApiError(422, "invalid", "device_id must be the device you logged in with.",
                       {"device_id": [f"must be {device}"]})
    user = current_user()
    caller = Caller(user["id"], user["role"], device, current_scope())
    settings = PushSettings(skew_bound_ms=current_app.config["CLOCK_SKEW_SECONDS"] * 1000)
    results, hlc = sync_service().push(caller, body.get("hlc"), body["events"], settings)
    return {"results": results, "server_hlc": hlc}


@blp.route("/pull")
@auth_required()
@blp.arguments(PullQuerySchema, location="query")
@blp.response(200, PullReplySchema)
def pull(query):
    """Changes in your scope since a cursor, a page at a time; omit `since` for a first sync."""
    service = sync_service()
    reply = service.pull(current_user(), current_scope(), query.get("since"), query["limit"], form_changes())
    service.note_pull(current_user()["id"], current_device())
    return {**reply, "server_hlc": server_hlc()}
