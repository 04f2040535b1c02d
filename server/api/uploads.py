"""Files of visits over HTTP: resumable uploads (tus 1.0 core + creation), downloads and thumbnails."""

from __future__ import annotations

import re

import marshmallow as ma
from flask import Flask, Response, current_app, request, stream_with_context

from ..blobs import blob_store
from ..blobs.attachments import MediaLimits, missing_for_device, readable_attachment, record_download, thumbnail
from ..blobs.uploads import (
    TUS_EXTENSIONS,
    TUS_VERSION,
    UPLOAD_ID,
    Uploader,
    UploadService,
    parse_length,
    parse_metadata,
)
from ..errors import ApiError
from ..i18n import gettext
from ..security.guard import auth_required, current_device, current_scope, current_user
from ..store import get_store
from .base import Blueprint

blp = Blueprint("uploads", __name__, url_prefix="/api/v1", description="Files of visits: tus uploads, downloads")
SERVICE = "kunjung.uploads"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")

_TUS_HEADERS = [{"in": "header", "name": "Tus-Resumable", "required": True,
                 "schema": {"type": "string", "enum": [TUS_VERSION]}}]
_OFFSET = {"in": "header", "name": "Upload-Offset", "required": True,
           "schema": {"type": "integer", "minimum": 0}, "description": "where these bytes go: the upload's offset"}


def _service() -> UploadService:
    return upload_service_for(current_app._get_current_object())  # type: ignore[attr-defined]


def upload_service_for(app: Flask) -> UploadService:
    """The app's upload service (the CLI's clean-up uses it too)."""
    service = app.extensions.get(SERVICE)
    if service is None:
        service = app.extensions.setdefault(SERVICE, UploadService(
            get_store(app), blob_store(app), MediaLimits.from_config(app.config)))
    return service  # type: ignore[no-any-return]


def _uploader() -> Uploader:
    return Uploader(current_user()["id"], current_device(), current_scope())


def tus_version_required() -> None:
    sent = request.headers.get("Tus-Resumable")
    if sent != TUS_VERSION:
        raise ApiError(412, "tus_version",
                       gettext("This server speaks tus %(version)s; send Tus-Resumable: %(version)s.",
                               version=TUS_VERSION),
                       headers={"Tus-Version": TUS_VERSION})


@blp.after_request
def _resumable(response: Response) -> Response:
    if request.path.startswith("/api/v1/uploads"):
        response.headers["Tus-Resumable"] = TUS_VERSION
    return response


@blp.route("/uploads", methods=["OPTIONS"])
@blp.doc(responses={204: {"description": "what this server's tus speaks: Tus-Version, Tus-Extension, Tus-Max-Size"}})
def options():
    """tus discovery: the versions, extensions and largest upload this server takes (no token needed)."""
    limits = MediaLimits.from_config(current_app.config)
    return Response(status=204, headers={"Tus-Version": TUS_VERSION, "Tus-Extension": TUS_EXTENSIONS,
                                         "Tus-Max-Size": str(limits.largest)})


@blp.route("/uploads", methods=["POST"])
@auth_required(device=True)
@blp.doc(parameters=[*_TUS_HEADERS,
                     {"in": "header", "name": "Upload-Length", "required": True,
                      "schema": {"type": "integer", "minimum": 1}, "description": "the file's size in bytes"},
                     {"in": "header", "name": "Upload-Metadata", "required": True, "schema": {"type": "string"},
                      "description": "comma-separated `key base64(value)` pairs: sha256, filename, event_id (the "
                                     "visit, pushed first) and path (the question path the visit names)"}],
         responses={201: {"description": "created; Location is the upload's URL, Upload-Offset where it stands"}})
@blp.alt_response(403, description="not_your_visit: only the device that made the visit uploads its files")
@blp.alt_response(404, description="the visit is unknown or outside your scope")
@blp.alt_response(412, description="tus_version: Tus-Resumable is not 1.0.0")
@blp.alt_response(413, description="file_too_large: over the limit of the question's kind")
@blp.alt_response(422, description="unknown_attachment or attachment_mismatch: the visit names another file")
def create():
    """Start a resumable upload of one file a pushed visit names (tus creation)."""
    return tus_create(_uploader(), "/api/v1/uploads")


@blp.route("/uploads/<upload_id>", methods=["HEAD"])
@auth_required(device=True)
@blp.doc(parameters=_TUS_HEADERS, responses={200: {"description": "Upload-Offset and Upload-Length, no body"}})
@blp.alt_response(404, description="no such upload of yours (finished, refused or never made)")
def status(upload_id: str):
    """Where an upload stands: its Upload-Offset (resume a PATCH from there)."""
    return tus_status(_uploader(), upload_id)


@blp.route("/uploads/<upload_id>", methods=["PATCH"])
@auth_required(device=True)
@blp.doc(parameters=[*_TUS_HEADERS, _OFFSET],
         requestBody={"required": True, "content": {"application/offset+octet-stream": {
             "schema": {"type": "string", "format": "binary"}}}},
         responses={204: {"description": "appended; Upload-Offset is the new offset. The last byte runs the "
                                         "checks and stores the file"}})
@blp.alt_response(409, description="offset_mismatch: Upload-Offset is not the upload's offset (ask with HEAD)")
@blp.alt_response(415, description="unsupported_media_type (not application/offset+octet-stream), or "
                                   "wrong_media_type: the bytes are not what the question takes")
@blp.alt_response(422, description="checksum_mismatch, too_many_pixels or unreadable_image: the upload is "
                                   "discarded")
def append(upload_id: str):
    """Append bytes at the upload's offset; a cut keeps what arrived, so HEAD then PATCH resumes."""
    return tus_append(_uploader(), upload_id)


# The tus requests themselves, a phone's (above) or a village hall's (server/api/relay.py) alike.
def tus_create(uploader: Uploader, base: str) -> Response:
    """A POST (tus creation): the new upload's Location under ``base`` and where it stands."""
    tus_version_required()
    if "Upload-Defer-Length" in request.headers:
        raise ApiError(400, "bad_header", gettext("Upload-Defer-Length is not supported: send Upload-Length."))
    length = parse_length(request.headers.get("Upload-Length"), "Upload-Length")
    upload, offset = _service().create(uploader, length, parse_metadata(request.headers.get("Upload-Metadata")))
    return Response(status=201, headers={"Location": f"{base}/{upload['id']}", "Upload-Offset": str(offset)})


def tus_status(uploader: Uploader, upload_id: str) -> Response:
    """A HEAD: the upload's offset and length."""
    tus_version_required()
    upload, offset = _service().get(uploader, upload_id)
    return Response(status=200, headers={"Upload-Offset": str(offset), "Upload-Length": str(upload["length"]),
                                         "Cache-Control": "no-store"})


def tus_append(uploader: Uploader, upload_id: str) -> Response:
    """A PATCH: its headers checked, its body appended at the upload's offset; the new offset."""
    tus_version_required()
    if request.mimetype != "application/offset+octet-stream":
        raise ApiError(415, "unsupported_media_type", gettext("Send the bytes as application/offset+octet-stream."))
    offset = parse_length(request.headers.get("Upload-Offset"), "Upload-Offset")
    if not UPLOAD_ID.fullmatch(upload_id):
        raise ApiError(404, "not_found", gettext("No such upload."))
    request.max_content_length = MediaLimits.from_config(current_app.config).largest
    new_offset = _service().append(uploader, upload_id, offset, request.stream)
    return Response(status=204, headers={"Upload-Offset": str(new_offset)})


class MissingSchema(ma.Schema):
    visit_id = ma.fields.String(required=True)
    path = ma.fields.String(required=True)
    sha256 = ma.fields.String(required=True, allow_none=True, metadata={"description": "null when unlisted"})
    size = ma.fields.Integer(required=True, allow_none=True, metadata={"description": "null when unlisted"})
    unlisted = ma.fields.Boolean(metadata={
        "description": "true: the visit's answers name this file but its attachments list does not, so it cannot "
                       "be uploaded; send a new version of the visit (supersedes) that lists it"})


class MissingReplySchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(MissingSchema), required=True)


@blp.route("/uploads/missing")
@auth_required(device=True)
@blp.response(200, MissingReplySchema)
def missing():
    """The files of your device's visits the server does not hold yet (as in the pull's `attachments_missing`)."""
    return {"items": missing_for_device(get_store(), current_user()["id"], current_device() or "")}


def _filename(doc: dict) -> str:
    name = _UNSAFE_NAME.sub("_", doc.get("filename") or "")[:120].strip(" .") or doc["sha256"][:16]
    return name


@blp.route("/visits/<visit_id>/attachments/<path:path>")
@auth_required()
@blp.doc(responses={200: {"description": "the file's bytes, streamed", "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
@blp.alt_response(404, description="no such visit in your scope, no such file, or not arrived yet")
def download(visit_id: str, path: str):
    """A visit's file, for anyone whose scope covers the visit; every download is in the audit log."""
    store, user = get_store(), current_user()
    doc = readable_attachment(store, user, current_scope(), visit_id, path)
    if request.if_none_match and request.if_none_match.contains(doc["sha256"]):
        return Response(status=304, headers={"ETag": f'"{doc["sha256"]}"'})
    chunks = blob_store().chunks(doc["sha256"])
    record_download(store, user["id"], doc, "file")
    return Response(stream_with_context(chunks), status=200, mimetype=doc.get("stored_type") or doc["media_type"],
                    headers={"Content-Length": str(doc["size"]), "ETag": f'"{doc["sha256"]}"',
                             "Content-Disposition": f'attachment; filename="{_filename(doc)}"',
                             "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


@blp.route("/visits/<visit_id>/thumbnails/<path:path>")
@auth_required()
@blp.doc(responses={200: {"description": "a JPEG at most 320 px a side", "content": {
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
@blp.alt_response(404, description="no such visit in your scope, no such photo, or not arrived yet")
def thumbnail_of(visit_id: str, path: str):
    """A small copy of a visit's photo, signature or drawing, made once; every view is in the audit log."""
    store, user = get_store(), current_user()
    doc = readable_attachment(store, user, current_scope(), visit_id, path)
    blobs = blob_store()
    digest = thumbnail(store, blobs, doc)
    record_download(store, user["id"], doc, "thumbnail")
    return Response(blobs.read(digest), status=200, mimetype="image/jpeg",
                    headers={"ETag": f'"{digest}"', "X-Content-Type-Options": "nosniff",
                             "Cache-Control": "private, no-store"})
