"""Village-hall relay: hall credentials (admins), and the hall's hello, set-up and event exchange (docs/relay.md)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import current_app, g, request

from ..audit import client_address
from ..clock import node_device_id, wall_ms
from ..cursors import MAX_CURSOR_LENGTH
from ..errors import ApiError
from ..i18n import gettext, translate_known
from ..relay.accept import accept_relayed
from ..relay.feed import feed_page, waiting_down, waiting_for
from ..relay.halls import (
    HALLS,
    bind_node,
    create_hall,
    hall_of_token,
    hall_scope,
    list_halls,
    note_contact,
    note_contact_in,
    public_hall,
    revoke_hall,
)
from ..relay.node import MERGE_RULE, NODE_HEADER, RelayError, hall_status, setup_bundle
from ..security.guard import auth_required, current_user
from ..store import get_store
from ..syncing import cursor_codec
from .base import Blueprint

blp = Blueprint("relay", __name__, url_prefix="/api/v1/relay",
                description="Village-hall nodes: credentials, and events exchanged with a hall")


def hall_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A hall credential (``Authorization: Bearer khall.…``) that is not revoked (401), and for every
    call but hello the node it was bound to (403). Place it directly under ``@blp.route``."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthenticated",
                           gettext("Send the hall credential: Authorization: Bearer khall.<…>."))
        hall = hall_of_token(get_store(), token.strip())
        if request.endpoint != "relay.hello":
            node = request.headers.get(NODE_HEADER)
            if hall.get("node_id") is None or node != hall["node_id"]:
                raise ApiError(403, "hall_node_mismatch",
                               gettext("Say hello first; the %(header)s header names the hall's node.",
                                       header=NODE_HEADER))
        g.kunjung_hall = hall
        return view(*args, **kwargs)

    apidoc = copy.deepcopy(getattr(view, "_apidoc", {}))
    apidoc.setdefault("manual_doc", {})["security"] = [{"bearer": []}]
    guarded._apidoc = apidoc  # type: ignore[attr-defined]
    return guarded


def current_hall() -> dict[str, Any]:
    return g.kunjung_hall


class HallCreateSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    villages = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=64)), required=True,
                              validate=ma.validate.Length(min=1, max=200))


class HallSchema(ma.Schema):
    name = ma.fields.String(required=True)
    villages = ma.fields.List(ma.fields.String())
    node_id = ma.fields.String(allow_none=True)
    revoked = ma.fields.Boolean()
    created_at = ma.fields.String(allow_none=True)
    last_contact_at = ma.fields.String(allow_none=True, metadata={"description": "when the hall last reached us"})
    last_clock_gap_ms = ma.fields.Integer(allow_none=True)
    received_events = ma.fields.Integer()
    feed_seq = ma.fields.Integer()
    waiting_down = ma.fields.Integer(metadata={"description": "events of its villages past its checkpoint"})


class HallCreatedSchema(ma.Schema):
    hall = ma.fields.Nested(HallSchema, required=True)
    credential = ma.fields.String(required=True, metadata={"description": "shown once; not kept by the server"})


class HallListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(HallSchema), required=True)
    next = ma.fields.String(allow_none=True)


class HelloSchema(ma.Schema):
    node_id = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[A-Za-z0-9._:-]{1,128}\Z"))
    merge_rule = ma.fields.Integer(required=True)
    time_ms = ma.fields.Integer(required=True)


class HelloReplySchema(ma.Schema):
    hall = ma.fields.String()
    villages = ma.fields.List(ma.fields.String())
    node_id = ma.fields.String(metadata={"description": "this server's node id"})
    merge_rule = ma.fields.Integer(metadata={"description": "the merge rule this server folds under"})
    time_ms = ma.fields.Integer(metadata={"description": "this server's wall clock, Unix milliseconds"})
    skew_bound_ms = ma.fields.Integer()
    waiting_down = ma.fields.Integer(metadata={"description": "events of the hall's villages it does not hold yet"})


class FeedQuerySchema(ma.Schema):
    since = ma.fields.String(metadata={"maxLength": MAX_CURSOR_LENGTH,
                                       "description": "the `next` of the previous page; omit it the first time"})
    limit = ma.fields.Integer(load_default=500, validate=ma.validate.Range(min=1, max=1000))


class FeedReplySchema(ma.Schema):
    items = ma.fields.List(ma.fields.Dict(), required=True, metadata={
        "description": "`{event, visit?}`: the stored event with its device, officer, receiving node and flags"})
    next = ma.fields.String(required=True)
    has_more = ma.fields.Boolean(required=True)
    left_scope = ma.fields.List(ma.fields.String(), metadata={"description": "villages the hall no longer has"})
    server_hlc = ma.fields.String(required=True)


class UploadSchema(ma.Schema):
    node_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    items = ma.fields.List(ma.fields.Raw(allow_none=True), required=True, metadata={
        "description": "`{event, visit?}` as the feed carries them; each is judged on its own"})


class UploadReplySchema(ma.Schema):
    results = ma.fields.List(ma.fields.Dict(), required=True, metadata={
        "description": "one per item, in order: `{id, status: applied|duplicate|rejected, code?, message?, "
                       "errors?}`; codes `invalid`, `out_of_scope`, `id_reused`, `missing_visit`, `stale_base`"})
    server_hlc = ma.fields.String(required=True)


class SetupSchema(ma.Schema):
    villages = ma.fields.List(ma.fields.Dict(), required=True, metadata={"description": "with boundaries"})
    forms = ma.fields.List(ma.fields.Dict(), required=True)
    form_versions = ma.fields.List(ma.fields.Dict(), required=True, metadata={"description": "published ones"})
    form_xforms = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "the XForm (`{id, xml, md5}`) each published version was given, which the hall serves "
                       "ODK Collect as it is, so a phone sees one md5 at the hall and upstream"})
    users = ma.fields.List(ma.fields.Dict(), required=True, metadata={
        "description": "officers and supervisors of the hall's villages, with only those villages and their "
                       "password hashes, so that they sign in at the hall offline"})
    devices = ma.fields.List(ma.fields.Dict(), required=True, metadata={"description": "revoked devices"})
    app_credentials = ma.fields.List(ma.fields.Dict(), required=True, metadata={
        "description": "ODK Collect's working app credentials of those users, by the SHA-256 of the token "
                       "(`{id, username, device_id, created_at}`); one no longer sent is dropped at the hall"})
    known_users = ma.fields.List(ma.fields.String(), required=True,
                                 metadata={"description": "users sent before: those not sent now are disabled"})


class HallStatusSchema(ma.Schema):
    hall = ma.fields.String(allow_none=True)
    upstream = ma.fields.String(allow_none=True)
    villages = ma.fields.List(ma.fields.String())
    last_contact_at = ma.fields.String(allow_none=True)
    last_attempt_at = ma.fields.String(allow_none=True)
    last_error = ma.fields.Dict(allow_none=True)
    clock_gap_ms = ma.fields.Integer(allow_none=True)
    clock_refusal = ma.fields.String(allow_none=True, metadata={"description": "why phone pushes are refused now"})
    waiting_up = ma.fields.Integer()
    waiting_down = ma.fields.Integer(allow_none=True)
    last_round = ma.fields.Dict(allow_none=True)
    refused = ma.fields.List(ma.fields.Dict(), metadata={"description": "events upstream refused, with reasons"})
    left_scope = ma.fields.List(ma.fields.String())


def _with_waiting(hall: dict[str, Any]) -> dict[str, Any]:
    return {**public_hall(hall), "waiting_down": waiting_down(get_store(), hall["villages"],
                                                              int(hall.get("feed_seq") or 0))}


# -- admins on the central server ------------------------------------------------------------------
@blp.route("/halls", methods=["POST"])
@auth_required("admin")
@blp.arguments(HallCreateSchema)
@blp.response(201, HallCreatedSchema)
def create(body):
    """Make a hall credential for some villages; the credential is in this answer only."""
    hall, token = create_hall(get_store(), body["name"].strip().lower(), body["villages"],
                              actor=current_user()["id"], address=client_address())
    return {"hall": _with_waiting(hall), "credential": token}


@blp.route("/halls", methods=["GET"])
@auth_required("admin")
@blp.response(200, HallListSchema)
def halls():
    """Every hall, with its last contact and what waits for it."""
    return {"items": [_with_waiting(hall) for hall in list_halls(get_store())], "next": None}


@blp.route("/halls/<name>/revoke", methods=["POST"])
@auth_required("admin")
@blp.response(200, HallSchema)
def revoke(name):
    """Cut a hall off (a stolen laptop): its credential stops working at once."""
    return _with_waiting(revoke_hall(get_store(), name, actor=current_user()["id"], address=client_address()))


@blp.route("/status", methods=["GET"])
@auth_required("admin", "supervisor")
@blp.response(200, HallStatusSchema)
def status():
    """On a hall node: when it last reached upstream, what waits, what upstream refused and why."""
    try:
        status = hall_status(get_store())
    except RelayError as error:
        raise ApiError(404, error.code, error.message) from None
    # Stored in English; said here in the reader's language.
    if status["clock_refusal"]:
        status["clock_refusal"] = translate_known(status["clock_refusal"])
    if status["last_error"]:
        status["last_error"] = {**status["last_error"], "message": translate_known(status["last_error"]["message"])}
    return status


# -- a hall, with its credential ---------------------------------------------------------------------
@blp.route("/hello", methods=["POST"])
@hall_required
@blp.arguments(HelloSchema)
@blp.response(200, HelloReplySchema)
def hello(body):
    """The start of a round: binds the credential to the hall's node, compares clocks and merge rules."""
    store = get_store()
    hall = bind_node(store, current_hall(), body["node_id"])
    now = wall_ms()
    note_contact(store, hall["id"], last_clock_gap_ms=now - body["time_ms"], last_merge_rule=body["merge_rule"])
    waiting = waiting_for(store, hall["villages"], int(hall.get("feed_seq") or 0), hall["node_id"])
    return {"hall": hall["id"], "villages": hall["villages"], "node_id": node_device_id(store),
            "merge_rule": MERGE_RULE, "time_ms": now, "waiting_down": waiting,
            "skew_bound_ms": current_app.config["CLOCK_SKEW_SECONDS"] * 1000}


@blp.route("/setup", methods=["GET"])
@hall_required
@blp.response(200, SetupSchema)
def setup():
    """Villages with boundaries, forms, and the users and revoked devices of the hall's villages."""
    hall = current_hall()
    bundle = setup_bundle(get_store(), hall["villages"], hall.get("sent_users"))
    if sorted(u["id"] for u in bundle["users"]) != hall.get("sent_users"):
        store = get_store()
        store.unit_of_work(lambda tx: tx.put(HALLS, {**(tx.get(HALLS, hall["id"]) or hall),
                                                     "sent_users": sorted(u["id"] for u in bundle["users"])}))
    return bundle


@blp.route("/events", methods=["GET"])
@hall_required
@blp.arguments(FeedQuerySchema, location="query")
@blp.response(200, FeedReplySchema)
@blp.alt_response(400, description="invalid_cursor: start the feed again without `since`")
def feed(query):
    """Events of the hall's villages made anywhere else, since a cursor, a page at a time."""
    store = get_store()
    hall = current_hall()
    page = feed_page(store, cursor_codec(), peer=hall["id"], villages=hall["villages"], skip_node=hall["node_id"],
                     node_id=node_device_id(store), cursor=query.get("since"), limit=query["limit"])
    hlc = note_contact(store, hall["id"], feed_seq=page.pop("seq"))
    return {**page, "server_hlc": hlc}


@blp.route("/events", methods=["POST"])
@hall_required
@blp.arguments(UploadSchema)
@blp.response(200, UploadReplySchema)
@blp.alt_response(413, description="batch_too_large")
def upload(body):
    """Events the hall received: kept with their device, officer, receiving node and verdicts."""
    hall = current_hall()
    if body["node_id"] != hall["node_id"]:
        raise ApiError(422, "invalid", gettext("node_id must be the hall's node."),
                       {"node_id": [gettext("must be %(node)s", node=hall["node_id"])]})
    limit = current_app.config["MAX_BATCH_EVENTS"]
    if len(body["items"]) > limit:
        raise ApiError(413, "batch_too_large", gettext("At most %(limit)s events at once; split the batch.",
                                                        limit=limit),
                       {"items": [gettext("%(count)s events; the limit is %(limit)s", count=len(body["items"]),
                                          limit=limit)]})
    store = get_store()

    def checkpoint(tx, results):  # type: ignore[no-untyped-def]
        note_contact_in(tx, hall["id"], received_events=sum(1 for r in results if r["status"] == "applied"))

    results, hlc = accept_relayed(store, body["items"], hall_scope(hall), source=hall["id"], checkpoint=checkpoint)
    return {"results": results, "server_hlc": hlc}
