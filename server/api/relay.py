"""Village-hall relay: hall credentials (admins), and the hall's hello, set-up and event exchange (docs/relay.md)."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

import marshmallow as ma
from flask import Response, current_app, g, request, stream_with_context

from sync.stamps import is_id

from ..audit import client_address
from ..blobs import blob_store
from ..blobs.attachments import ATTACHMENTS, VISITS, attachment_id, record_download
from ..blobs.uploads import TUS_VERSION, Uploader
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
    hall_file_scope,
    hall_of_token,
    hall_scope,
    late_work,
    list_halls,
    note_contact,
    note_contact_in,
    note_holding,
    note_told,
    public_hall,
    revoke_hall,
    set_hall_villages,
)
from ..relay.node import MERGE_RULE, NODE_HEADER, RelayError, hall_status, setup_bundle
from ..security.guard import auth_required, current_user
from ..store import get_store
from ..syncing import cursor_codec
from .base import Blueprint
from .uploads import tus_append, tus_create, tus_status

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
    left_villages = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "villages it lost and still holds: `{village, left_at, told_at}`; its work for them taken "
                       "before it was told still goes up"})


class HallVillagesSchema(ma.Schema):
    villages = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=64)), required=True,
                              validate=ma.validate.Length(min=1, max=200))


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
    holding = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=64)), load_default=list,
                             validate=ma.validate.Length(max=1000),
                             metadata={"description": "villages it lost and has not dropped yet"})


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
    left_scope = ma.fields.List(ma.fields.String(), metadata={
        "description": "villages the hall lost and still holds"})
    keeping = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "lost villages kept because work made here for them has not reached upstream: "
                       "`{village, waiting_up, refused_up, message}`"})
    dropped = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "lost villages dropped from this laptop: `{village, at, households, visits, events, ...}`"})
    files_waiting_up = ma.fields.Integer(metadata={
        "description": "files of visits received here that upstream does not hold yet"})
    files_waiting_down = ma.fields.Integer(metadata={"description": "files of visits from upstream not held here yet"})
    files_refused = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "files the other side refused: `{visit_id, path, direction, code, message, at}`"})


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


@blp.route("/halls/<name>/villages", methods=["PUT"])
@auth_required("admin")
@blp.arguments(HallVillagesSchema)
@blp.response(200, HallSchema)
def villages(body, name):
    """Give a hall other villages: it takes a gained one's history and drops a lost one on its next
    rounds, once its work for it has gone up."""
    return _with_waiting(set_hall_villages(get_store(), name, body["villages"], actor=current_user()["id"],
                                           address=client_address()))


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
    status["keeping"] = [{**entry, "message": translate_known(entry["message"])} for entry in status["keeping"]]
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
    if hall.get("left_villages"):
        store.unit_of_work(lambda tx: note_holding(tx, hall["id"], body["holding"]))
        hall = store.get(HALLS, hall["id"]) or hall
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
    if any(entry.get("told_at") is None for entry in hall.get("left_villages") or ()):
        get_store().unit_of_work(lambda tx: note_told(tx, hall["id"]))
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

    late = late_work(hall, current_app.config["CLOCK_SKEW_SECONDS"] * 1000) if hall.get("left_villages") else None
    results, hlc = accept_relayed(store, body["items"], hall_scope(hall), source=hall["id"], checkpoint=checkpoint,
                                  late=late)
    return {"results": results, "server_hlc": hlc}


# -- files of the visits a hall relays (server/relay/files.py) -------------------------------------------
RANGE = re.compile(r"bytes=(\d{1,16})-(\d{0,16})\Z")


def _hall_uploader() -> Uploader:
    hall = current_hall()
    return Uploader(f"hall:{hall['id']}", None, hall_file_scope(hall), hall=hall["id"])


def _tus(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    return response


@blp.route("/uploads", methods=["POST"])
@hall_required
@blp.doc(parameters=[{"in": "header", "name": "Tus-Resumable", "required": True,
                      "schema": {"type": "string", "enum": [TUS_VERSION]}},
                     {"in": "header", "name": "Upload-Length", "required": True, "schema": {"type": "integer"}},
                     {"in": "header", "name": "Upload-Metadata", "required": True, "schema": {"type": "string"},
                      "description": "as for /api/v1/uploads: sha256, filename, event_id (the visit) and path"}],
         responses={201: {"description": "created; Location is the upload's URL, Upload-Offset where it stands"}})
@blp.alt_response(403, description="not_your_visit: only the hall that received the visit sends its files")
@blp.alt_response(404, description="the visit is unknown here or outside the hall's villages")
def file_upload():
    """Start a resumable upload (tus creation) of one file of a visit this hall received and sent up."""
    return _tus(tus_create(_hall_uploader(), "/api/v1/relay/uploads"))


@blp.route("/uploads/<upload_id>", methods=["HEAD"])
@hall_required
@blp.doc(responses={200: {"description": "Upload-Offset and Upload-Length, no body"}})
def file_upload_status(upload_id: str):
    """Where one of the hall's uploads stands (resume from its Upload-Offset)."""
    return _tus(tus_status(_hall_uploader(), upload_id))


@blp.route("/uploads/<upload_id>", methods=["PATCH"])
@hall_required
@blp.doc(responses={204: {"description": "appended; the last byte runs a device upload's checks"}})
@blp.alt_response(409, description="offset_mismatch: ask with HEAD")
def file_upload_append(upload_id: str):
    """Append bytes at the upload's offset; a cut keeps what arrived."""
    return _tus(tus_append(_hall_uploader(), upload_id))


def _limited(chunks: Iterator[bytes], count: int) -> Iterator[bytes]:
    for chunk in chunks:
        if count <= 0:
            return
        piece = chunk[:count]
        count -= len(piece)
        yield piece


@blp.route("/files/<visit_id>/<path:path>", methods=["GET"])
@hall_required
@blp.doc(parameters=[{"in": "header", "name": "Range", "schema": {"type": "string"},
                      "description": "`bytes=<first>-[<last>]`: one range, to resume a cut download"}],
         responses={200: {"description": "the whole file"}, 206: {"description": "the range asked for"}})
@blp.alt_response(404, description="not_found (no such visit in the hall's villages, no such file), or "
                                   "not_arrived (this server does not hold the file yet)")
@blp.alt_response(416, description="range_not_satisfiable")
def file_download(visit_id: str, path: str):
    """A file of a visit of the hall's villages, for the hall's supervisors; its first byte is audited."""
    store, hall = get_store(), current_hall()
    visit = store.get(VISITS, visit_id) if is_id(visit_id) else None
    doc = store.get(ATTACHMENTS, attachment_id(visit_id, path)) if visit is not None else None
    if visit is None or not hall_scope(hall).covers(visit["village"]) or doc is None or doc.get("unlisted"):
        raise ApiError(404, "not_found", gettext("This visit has no such file."))
    if not doc.get("held"):
        raise ApiError(404, "not_arrived", gettext("The file has not reached the server yet."))
    size, first, last = doc["size"], 0, doc["size"] - 1
    asked = request.headers.get("Range")
    if asked is not None:
        match = RANGE.match(asked.strip())
        if match is None or int(match.group(1)) >= size or (match.group(2) and int(match.group(2)) < int(
                match.group(1))):
            raise ApiError(416, "range_not_satisfiable", gettext("Ask for one range of bytes within the file."),
                           {"Range": [gettext("the file has %(size)s bytes", size=size)]},
                           headers={"Content-Range": f"bytes */{size}"})
        first = int(match.group(1))
        last = min(last, int(match.group(2))) if match.group(2) else last
    if first == 0:  # a download starts here; the ranges after it resume the same one
        record_download(store, f"hall:{hall['id']}", doc, "relay")
    chunks = _limited(blob_store().chunks(doc["sha256"], start=first), last - first + 1)
    headers = {"Content-Length": str(last - first + 1), "ETag": f'"{doc["sha256"]}"', "Accept-Ranges": "bytes",
               "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    if asked is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(stream_with_context(chunks), status=206 if asked is not None else 200,
                    mimetype=doc.get("stored_type") or doc["media_type"], headers=headers)
