"""Form definitions over HTTP: the admin's drafts, publishing, assignment and archiving, and the pull to devices."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

import marshmallow as ma
from flask import Response, current_app, request
from flask.views import MethodView

from sync.values import canonical_json

from .. import forms_registry as registry
from .. import jsonio
from ..audit import client_address
from ..errors import ApiError
from ..i18n import _, lazy_gettext
from ..security.guard import auth_required, current_scope, current_user
from ..store import get_store
from .base import Blueprint, ErrorSchema

blp = Blueprint("forms", __name__, url_prefix="/api/v1",
                description="Form definitions: drafts, publishing, assignment, archiving, and the pull to devices")

# Devices revalidate with If-None-Match every time; a private cache may keep the body meanwhile.
REVALIDATE = "private, no-cache"
UPLOAD_HELP = lazy_gettext("Send a JSON definition (application/json) or an XLSForm .xlsx/.xls "
                           "(multipart/form-data, field 'file', and the form's files as fields 'files').")


class TranslatedField(ma.fields.Dict):
    """Text by language code: {"id": "...", "en": "..."}."""

    def __init__(self, **kwargs: Any):
        super().__init__(keys=ma.fields.String(), values=ma.fields.String(), **kwargs)


class FormAssignmentSchema(ma.Schema):
    all = ma.fields.Boolean(load_default=False,
                            metadata={"description": "assigned to every village (then villages is empty)"})
    villages = ma.fields.List(ma.fields.String(), load_default=list,
                              metadata={"description": "village codes (32.04.05.2001) or kecamatan codes (32.04.05)"})


class FormAssignmentResultSchema(FormAssignmentSchema):
    form_id = ma.fields.String(required=True)


class FormFileSchema(ma.Schema):
    """A file a form version needs beside its definition."""

    name = ma.fields.String(required=True, metadata={"description": "the file name the definition uses"})
    purpose = ma.fields.String(required=True, metadata={
        "description": "choices (select_one_from_file), lookup (pulldata()/search()) or media (label media)"})
    media_type = ma.fields.String(required=True)
    present = ma.fields.Boolean(required=True, metadata={"description": "whether it is uploaded"})
    url = ma.fields.String(required=True, metadata={"description": "where it is downloaded"})
    size = ma.fields.Integer(metadata={"description": "bytes, once uploaded"})
    md5 = ma.fields.String(metadata={"description": "hex md5 of the bytes, once uploaded; the download's ETag"})
    uploaded_at = ma.fields.String(allow_none=True)


class FormVersionSchema(ma.Schema):
    form_id = ma.fields.String(required=True)
    version = ma.fields.String(required=True)
    state = ma.fields.String(required=True, metadata={"description": "draft or published"})
    hash = ma.fields.String(required=True, metadata={"description": "sha256 of the definition's canonical JSON"})
    url = ma.fields.String(required=True, metadata={"description": "where the definition is read"})
    warnings = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()), metadata={
        "description": "advice keyed by path (or sheet!row), and by 'assignment' when a published form is assigned "
                       "to no village; only when there is some"})
    assigned = ma.fields.Boolean(metadata={
        "description": "answers of publish: whether the form is assigned to any village (officers see it only then)"})
    created_at = ma.fields.String(allow_none=True)
    created_by = ma.fields.String(allow_none=True)
    updated_at = ma.fields.String(allow_none=True)
    published_at = ma.fields.String(allow_none=True)
    published_by = ma.fields.String(allow_none=True)
    files = ma.fields.List(ma.fields.Nested(FormFileSchema), metadata={
        "description": "answers of create and replace: the files the version needs, and which are uploaded"})


class FormSchema(ma.Schema):
    """A form as listed. Devices get the first five fields; admins' ``all=true`` adds the rest."""

    form_id = ma.fields.String(required=True)
    version = ma.fields.String(allow_none=True, metadata={"description": "the latest published version"})
    title = TranslatedField(required=True)
    hash = ma.fields.String(allow_none=True, metadata={"description": "the latest published version's hash"})
    url = ma.fields.String(allow_none=True, metadata={"description": "path of the latest published definition"})
    archived = ma.fields.Boolean(metadata={"description": "admins only"})
    assignment = ma.fields.Nested(FormAssignmentSchema, metadata={"description": "admins only"})
    created_at = ma.fields.String(allow_none=True, metadata={"description": "admins only"})
    updated_at = ma.fields.String(allow_none=True, metadata={"description": "admins only"})
    versions = ma.fields.List(ma.fields.Nested(FormVersionSchema), metadata={"description": "admins only: drafts too"})


class FormListQuerySchema(ma.Schema):
    all = ma.fields.Boolean(load_default=False, metadata={
        "description": "admins only: every form, drafts and archived ones too, with its versions"})


class FormDefinitionSchema(ma.Schema):
    """A form definition (docs/protocol.md, "Forms"; the language is forms/definition.py)."""

    class Meta:
        unknown = ma.INCLUDE

    settings = ma.fields.Dict(required=True, metadata={
        "description": '{"form_id", "version", "title": {"id", "en"}, "default_language"}'})
    fields_ = ma.fields.List(ma.fields.Dict(), required=True, data_key="fields", metadata={
        "description": 'questions: {"type", "name", "label", "hint"?, "required"?, "relevant"?, "constraint"?, '
                       '"calculation"?, "default"?, "list"?, "choice_filter"?, "appearance"?, "parameters"?, '
                       '"save_to"?, "fields"?} (field types: forms/fieldtypes.py)'})
    choices = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.Dict()),
                             metadata={"description": 'choice lists: {"<list>": [{"name", "label"}]}'})


class FormUploadSchema(ma.Schema):
    file = ma.fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "an XLSForm workbook (.xlsx or .xls), or a .json definition"})
    files = ma.fields.List(ma.fields.Raw(metadata={"type": "string", "format": "binary"}), metadata={
        "description": "the form's files (choice CSV/XML/GeoJSON, pulldata CSV, label media), each under its "
                       "file name as the definition names it"})


class FormFileUploadSchema(ma.Schema):
    file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


FILE_BODY = {"requestBody": {"required": True, "description": "the file's bytes (any media type), or multipart "
                                                              "with the field 'file'", "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": FormFileUploadSchema},
}}}


DEFINITION_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": FormDefinitionSchema},
    "multipart/form-data": {"schema": FormUploadSchema},
}}}
EXISTS = {"schema": ErrorSchema, "description": "That version exists: version_exists (a draft; PUT it) or "
                                                  "published_immutable"}
IMMUTABLE = {"schema": ErrorSchema, "description": "The version is published: published_immutable"}
NOT_JSON_OR_UPLOAD = {"schema": ErrorSchema, "description": "Neither application/json nor multipart/form-data"}
INCOMPATIBLE = {"schema": ErrorSchema, "description": "incompatible_version: a field's type differs from a "
                                                      "published version's; errors keyed by path or sheet!row. "
                                                      "form_files_missing: files the draft needs are not "
                                                      "uploaded; errors keyed by file name"}
BAD_DEFINITION = {"schema": ErrorSchema, "description": "invalid_form_file: a file sent with it, keyed by name; "
                                                        "invalid_definition: problems keyed by a path into the "
                                                        "definition, or by sheet!row for an XLSForm; or "
                                                        "incompatible_version"}
NOT_MODIFIED = {"description": "Not modified: the If-None-Match tag is current (no body)",
                "headers": {"ETag": {"schema": {"type": "string"}}}}


def attached_files(uploads: Any) -> dict[str, bytes]:
    """The form's files of a multipart upload (fields 'files'), by file name; 422 when a name comes twice.
    The web page's upload reads them here too, so both take the same files the same way."""
    files: dict[str, bytes] = {}
    for attached in uploads.getlist("files"):
        name, content = attached.filename or "", attached.read()
        if not name and not content:
            continue  # a browser sends a nameless empty part for a file field left empty
        if name in files:
            raise ApiError(422, "invalid_form_file", _("A file was sent twice."), {name: [_("sent twice")]})
        files[name] = content
    return files


def _submission() -> registry.Submission:
    """The definition in the body; 415 for anything but JSON or multipart, 400 for malformed JSON."""
    mimetype = request.mimetype
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            return registry.from_json(jsonio.loads(request.get_data(cache=True)))
        except jsonio.BadJSON as exc:
            raise ApiError(400, "malformed_json", str(exc)) from None
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise ApiError(422, "invalid", UPLOAD_HELP, {"file": [_("Missing data for required field.")]})
        return registry.from_upload(upload.read(), upload.filename).with_files(attached_files(request.files))
    raise ApiError(415, "unsupported_media_type", UPLOAD_HELP)


def _revalidated(payload: Any, tag: str) -> Response:
    """The payload with a strong ETag, or 304 when the client's If-None-Match already names it."""
    headers = {"ETag": f'"{tag}"', "Cache-Control": REVALIDATE, "Vary": "Authorization"}
    if request.if_none_match.contains_weak(tag):
        return Response(status=304, headers=headers)
    response = current_app.json.response(payload)
    response.headers.update(headers)
    return response


def _actor() -> str:
    return current_user()["id"]


@blp.route("/forms")
class Forms(MethodView):
    @auth_required()
    @blp.arguments(FormListQuerySchema, location="query")
    @blp.response(200, FormSchema(many=True), headers={"ETag": {"schema": {"type": "string"}}})
    @blp.alt_response(304, **NOT_MODIFIED)
    def get(self, query):
        """Published, non-archived forms assigned to the caller's villages (admins: every one).

        Each item is the form's latest published version; fetch its definition at ``url``. The ETag
        covers the whole list: send it back as If-None-Match to get 304 while nothing changed.
        Admins may add ``all=true`` for every form, drafts and archived ones included, with versions."""
        scope = current_scope()
        if query["all"]:
            if not scope.is_all:
                raise ApiError(403, "forbidden", _("Only admins list drafts and archived forms (all=true)."))
            items = registry.all_forms(get_store())
        else:
            items = registry.forms_for(get_store(), scope)
        payload = FormSchema(many=True).dump(items)
        return _revalidated(payload, hashlib.sha256(canonical_json(payload).encode()).hexdigest())

    @auth_required("admin")
    @blp.doc(**DEFINITION_BODY)
    @blp.response(201, FormVersionSchema)
    @blp.alt_response(409, **EXISTS)
    @blp.alt_response(415, **NOT_JSON_OR_UPLOAD)
    @blp.alt_response(422, **BAD_DEFINITION)
    def post(self):
        """Create a draft version from a JSON definition or an XLSForm upload.

        The form id and version come from the definition's settings (an XLSForm's settings sheet).
        A new form starts unassigned; assign it with PUT /forms/<form_id>/assignment."""
        submission = _submission()
        return registry.create_draft(get_store(), submission, actor=_actor(), address=client_address()), 201


@blp.route("/forms/<form_id>")
@auth_required("admin")
@blp.response(200, FormSchema)
def form(form_id):
    """One form with its assignment and every version, drafts included (admins)."""
    return registry.one_form(get_store(), form_id)


@blp.route("/forms/<form_id>/versions/<version>")
class FormVersion(MethodView):
    @auth_required()
    @blp.response(200, FormDefinitionSchema, headers={"ETag": {"schema": {"type": "string"}}})
    @blp.alt_response(304, **NOT_MODIFIED)
    def get(self, form_id, version):
        """The definition of a version; its ETag is the definition's hash (If-None-Match → 304).

        Officers and supervisors read published versions of forms assigned to their villages; admins
        read drafts too. Anything else is 404."""
        doc = registry.readable_version(get_store(), form_id, version, current_scope())
        return _revalidated(doc["definition"], doc["hash"])

    @auth_required("admin")
    @blp.doc(**DEFINITION_BODY)
    @blp.response(200, FormVersionSchema)
    @blp.alt_response(409, **IMMUTABLE)
    @blp.alt_response(415, **NOT_JSON_OR_UPLOAD)
    @blp.alt_response(422, **BAD_DEFINITION)
    def put(self, form_id, version):
        """Replace a draft. Its settings must keep this form id and version; published versions never change."""
        registry.require_draft(get_store(), form_id, version)
        submission = _submission()
        return registry.replace_draft(get_store(), form_id, version, submission, actor=_actor(),
                                      address=client_address())


@blp.route("/forms/<form_id>/versions/<version>/publish", methods=["POST"])
@auth_required("admin")
@blp.response(200, FormVersionSchema)
@blp.alt_response(422, **INCOMPATIBLE)
def publish(form_id, version):
    """Publish a draft: immutable from now on, identified by its hash, and pulled by assigned devices.

    Publishing a published version again changes nothing. ``assigned`` says whether any village
    has the form; when none has, ``warnings.assignment`` says that officers will not see it."""
    return registry.publish(get_store(), form_id, version, actor=_actor(), address=client_address())


@blp.route("/forms/<form_id>/archive", methods=["POST"])
@auth_required("admin")
@blp.response(200, FormSchema)
def archive(form_id):
    """Hide a form from devices. Its versions stay valid for visits that arrive later."""
    return registry.set_archived(get_store(), form_id, True, actor=_actor(), address=client_address())


@blp.route("/forms/<form_id>/unarchive", methods=["POST"])
@auth_required("admin")
@blp.response(200, FormSchema)
def unarchive(form_id):
    """Show an archived form to its assigned devices again."""
    return registry.set_archived(get_store(), form_id, False, actor=_actor(), address=client_address())


@blp.route("/forms/<form_id>/assignment", methods=["PUT"])
@auth_required("admin")
@blp.arguments(FormAssignmentSchema)
@blp.response(200, FormAssignmentResultSchema)
def assignment(data, form_id):
    """Assign the form to villages and kecamatan (``{"villages": [...]}``) or to all (``{"all": true}``).

    Replaces the previous assignment; devices learn of it on their next pull."""
    return registry.set_assignment(get_store(), form_id, all_villages=data["all"], villages=data["villages"],
                                   actor=_actor(), address=client_address())


FILE_ERRORS = {"schema": ErrorSchema, "description": "invalid_form_file: the form does not use the file, or it does "
                                                    "not read as what it is for; errors keyed by file name"}


@blp.route("/forms/<form_id>/versions/<version>/files")
@auth_required()
@blp.response(200, FormFileSchema(many=True))
def files(form_id, version):
    """The files a version needs beside its definition (choice files, pulldata tables, label media).

    A device downloads each at ``url`` and keeps it by ``md5``; admins see a draft's files too, with
    ``present`` false for those not yet uploaded. Readable by whoever reads the version."""
    return registry.version_files(get_store(), form_id, version, current_scope())


@blp.route("/forms/<form_id>/versions/<version>/files/<name>")
class FormFile(MethodView):
    @auth_required()
    @blp.response(200, {"type": "string", "format": "binary"}, content_type="application/octet-stream",
                  description="the file's bytes, with its media type", headers={"ETag": {"schema": {"type": "string"}}})
    @blp.alt_response(304, **NOT_MODIFIED)
    def get(self, form_id, version, name):
        """One file's bytes; its ETag is its md5, so If-None-Match answers 304 while it is the same."""
        store = get_store()
        doc = registry.readable_file(store, form_id, version, name, current_scope())
        headers = {"ETag": f'"{doc["md5"]}"', "Cache-Control": REVALIDATE, "Vary": "Authorization",
                   "X-Content-Type-Options": "nosniff"}
        if request.if_none_match.contains_weak(doc["md5"]):
            return Response(status=304, headers=headers)
        # Served as a download: a label picture or a CSV is never rendered as a page of this site.
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(doc['name'])}"
        headers["Content-Length"] = str(doc["size"])
        return Response(registry.file_chunks(store, doc), mimetype=doc["media_type"], headers=headers)

    @auth_required("admin")
    @blp.doc(**FILE_BODY)
    @blp.response(200, FormFileSchema)
    @blp.alt_response(409, **IMMUTABLE)
    @blp.alt_response(422, **FILE_ERRORS)
    def put(self, form_id, version, name):
        """Upload (or replace) one file of a draft, named as the definition names it."""
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("file")
            if upload is None:
                raise ApiError(422, "invalid", _("Send the file's bytes, or multipart with the field 'file'."),
                               {"file": [_("Missing data for required field.")]})
            content = upload.read()
        else:
            content = request.get_data(cache=False)
        return registry.upload_file(get_store(), form_id, version, name, content, actor=_actor(),
                                    address=client_address())

    @auth_required("admin")
    @blp.response(204)
    @blp.alt_response(409, **IMMUTABLE)
    def delete(self, form_id, version, name):
        """Remove a file from a draft."""
        registry.delete_file(get_store(), form_id, version, name, actor=_actor(), address=client_address())
        return ""
