"""Supervision: visits and reviews, conflicts and resolutions, households with their register import and history."""

from __future__ import annotations

import marshmallow as ma
from flask import Response, request

from forms.identifiers import AreaCode
from sync.stamps import is_id, is_stamp

from .. import jsonio
from ..audit import audit, client_address
from ..conflicts import list_conflicts, resolve_conflict
from ..errors import ApiError, flatten_messages
from ..exports import HISTORY_COLUMNS, close_record, csv_text, history_rows, open_record
from ..household_import import RegisterError, import_households, read_rows, read_upload
from ..households import get_household, history_of, list_households, scoped_household
from ..privacy.masking import (
    exports_whole,
    mask_conflict,
    mask_history_entry,
    mask_household,
    mask_visit,
    sees_whole,
)
from ..security.guard import auth_required, current_scope, current_user
from ..store import get_store
from ..visits import ANY_FLAG, REVIEW_STATES, get_visit, list_visits, review_visit
from .base import Blueprint, ErrorSchema
from .paging import PageQuery, id_position, page, page_schema

blp = Blueprint("supervision", __name__, url_prefix="/api/v1",
                description="Visits, reviews, conflicts, households, household registers and household history")
AREA_HELP = {"description": "a village, or any area above it (kecamatan 32.04.05, regency, province); "
                            "within your scope"}


def event_id(value: str) -> None:
    """An event id as sync.stamps.is_id has it (a regex with ``$`` would let "id\n" through)."""
    if not is_id(value):
        raise ma.ValidationError("not an id: 1-128 characters of A-Z a-z 0-9 . _ : -, starting alphanumeric")


def head_stamp(value: str) -> None:
    """A write's stamp as a conflict lists it: ``<hlc>/<device_id>/<event_id>``."""
    if not is_stamp(value):
        raise ma.ValidationError("not a stamp: <hlc>/<device_id>/<event_id>, as the conflict lists its heads")


# -- query and body schemas ---------------------------------------------------------------------
class VisitQuery(PageQuery):
    village = AreaCode(metadata=AREA_HELP)
    form_id = ma.fields.String(validate=ma.validate.Length(max=64))
    officer = ma.fields.String(validate=ma.validate.Length(max=64))
    review = ma.fields.String(validate=ma.validate.OneOf(("pending", *REVIEW_STATES)))
    flag = ma.fields.String(validate=ma.validate.Length(max=64),
                            metadata={"description": f"only visits carrying this flag code, or '{ANY_FLAG}'"})


class VillageQuery(PageQuery):
    village = AreaCode(metadata=AREA_HELP)


class ReviewSchema(ma.Schema):
    id = ma.fields.String(required=True, validate=event_id, metadata={"description": "client-made event id"})
    state = ma.fields.String(required=True, validate=ma.validate.OneOf(REVIEW_STATES))
    comment = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=2000))


class ResolveSchema(ma.Schema):
    id = ma.fields.String(required=True, validate=event_id, metadata={"description": "client-made event id"})
    value = ma.fields.Raw(required=True, allow_none=True)
    heads = ma.fields.List(ma.fields.String(validate=[ma.validate.Length(max=300), head_stamp]), required=True,
                           validate=ma.validate.Length(min=1, max=100))


class ImportQuery(ma.Schema):
    village_field = ma.fields.String(validate=ma.validate.Length(min=1, max=64),
                                     metadata={"description": "the column holding the village code, when it is "
                                                              "not named kode desa / village_code"})


class HistoryQuery(ma.Schema):
    format = ma.fields.String(load_default="json", validate=ma.validate.OneOf(("json", "csv")))


# -- response schemas ---------------------------------------------------------------------------
class VisitAttachmentSchema(ma.Schema):
    path = ma.fields.String()
    sha256 = ma.fields.String()
    size = ma.fields.Integer()
    media_type = ma.fields.String()
    filename = ma.fields.String()
    kind = ma.fields.String(metadata={"enum": ["image", "audio", "video", "file"]})
    held = ma.fields.Boolean(metadata={"description": "the server holds the file: GET "
                                                      "/api/v1/visits/<id>/attachments/<path>"})


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
    attachments = ma.fields.List(ma.fields.Nested(VisitAttachmentSchema))


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


class FieldChangeSchema(ma.Schema):
    field = ma.fields.String()
    before = ma.fields.Raw(allow_none=True)
    after = ma.fields.Raw(allow_none=True)
    changed = ma.fields.Boolean()
    in_conflict = ma.fields.Boolean()


class HistoryEntrySchema(ma.Schema):
    step = ma.fields.Integer()
    event_id = ma.fields.String()
    type = ma.fields.String(metadata={"enum": ["visit", "household_edit", "resolution", "import", "erasure"]})
    officer = ma.fields.String()
    device_id = ma.fields.String()
    at = ma.fields.String(allow_none=True)
    received_at = ma.fields.String(allow_none=True)
    hlc = ma.fields.String()
    writes = ma.fields.Dict(metadata={"description": "field path -> the value this event wrote"})
    base = ma.fields.Dict(metadata={"description": "field path -> the stamps the event superseded"})
    flags = ma.fields.List(ma.fields.Dict())
    changes = ma.fields.List(ma.fields.Nested(FieldChangeSchema),
                             metadata={"description": "each written field's value before and after the event"})
    erase = ma.fields.List(ma.fields.String(), metadata={
        "description": "an erasure only: what it covers (*, members/<uuid>/*, field paths)"})
    note = ma.fields.String(metadata={"description": "an erasure only: \"erased on <time> by <user>\""})


class HouseholdSchema(ma.Schema):
    type = ma.fields.String()
    id = ma.fields.String()
    village = ma.fields.String()
    fields = ma.fields.Dict()
    open_conflicts = ma.fields.Integer()


class HouseholdDetailSchema(HouseholdSchema):
    history = ma.fields.List(ma.fields.Nested(HistoryEntrySchema))


class HistorySchema(ma.Schema):
    household_id = ma.fields.String()
    village = ma.fields.String()
    history = ma.fields.List(ma.fields.Nested(HistoryEntrySchema))


class RowProblemSchema(ma.Schema):
    row = ma.fields.Integer(metadata={"description": "as the spreadsheet numbers it (header = 1); "
                                                     "JSON rows count from 1"})
    no_kk = ma.fields.String(allow_none=True)
    reasons = ma.fields.List(ma.fields.String())


class RowWarningSchema(ma.Schema):
    row = ma.fields.Integer()
    no_kk = ma.fields.String(allow_none=True)
    warnings = ma.fields.List(ma.fields.String())


class RegisterReportSchema(ma.Schema):
    source = ma.fields.String()
    rows = ma.fields.Integer()
    created = ma.fields.Integer()
    updated = ma.fields.Integer()
    unchanged = ma.fields.Integer()
    rejected = ma.fields.Integer()
    conflicts = ma.fields.Integer(metadata={"description": "households where the register changed a value an "
                                                           "officer had changed too: now a conflict to resolve"})
    problems = ma.fields.List(ma.fields.Nested(RowProblemSchema), metadata={"description": "rows refused, and why"})
    warnings = ma.fields.List(ma.fields.Nested(RowWarningSchema),
                              metadata={"description": "rows loaded that a person should look at"})
    ignored_columns = ma.fields.List(ma.fields.String())


class RegisterUploadSchema(ma.Schema):
    file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary",
                                                  "description": "the register, .csv or .xlsx"})


class RegisterRowsSchema(ma.Schema):
    rows = ma.fields.List(ma.fields.Dict(), required=True, metadata={
        "description": "one object per household, keys named like register columns (no_kk, nik, nama, alamat, "
                       "rt, rw, kode_desa, lat, lon, desil)"})
    village_field = ma.fields.String()


# -- visits ---------------------------------------------------------------------------------------
@blp.route("/visits")
@auth_required()
@blp.arguments(VisitQuery, location="query")
@blp.response(200, page_schema(VisitSchema))
def visits(query):
    """Visits in your scope by id, filtered, a page at a time; officers see their own."""
    found = list_visits(get_store(), current_user(), current_scope(), area=query.get("village"),
                        form_id=query.get("form_id"), officer=query.get("officer"), review=query.get("review"),
                        flag=query.get("flag"), after=id_position(query, "visits"), limit=query["limit"] + 1)
    if not sees_whole(current_user()):
        found = [mask_visit(visit) for visit in found]
    return page(found, query["limit"], "visits")


@blp.route("/visits/<visit_id>")
@auth_required()
@blp.response(200, VisitSchema)
def visit(visit_id):
    """One visit with its answers, flags and review (opening it is recorded in the audit log)."""
    store, user = get_store(), current_user()
    found = get_visit(store, user, current_scope(), visit_id)
    audit(store, "visit_read", actor=user["id"], target=visit_id, household=found["household_id"])
    return found if sees_whole(user) else mask_visit(found)


@blp.route("/visits/<visit_id>/review", methods=["POST"])
@auth_required("supervisor", "admin")
@blp.arguments(ReviewSchema)
@blp.response(200, VisitSchema)
def review(body, visit_id):
    """Approve a visit, send it back for revision, or reject it; it reaches the officer on their next pull."""
    return review_visit(get_store(), current_user()["id"], current_scope(), visit_id, body["id"], body["state"],
                        body.get("comment"))


# -- conflicts ------------------------------------------------------------------------------------
@blp.route("/conflicts")
@auth_required()
@blp.arguments(VillageQuery, location="query")
@blp.response(200, page_schema(ConflictSchema))
def conflicts(query):
    """Open conflicts in your scope: fields whose heads hold different values, with every head."""
    found = list_conflicts(get_store(), current_scope(), area=query.get("village"),
                           after=id_position(query, "conflicts"), limit=query["limit"] + 1)
    if not sees_whole(current_user()):
        found = [mask_conflict(conflict) for conflict in found]
    return page(found, query["limit"], "conflicts")


@blp.route("/conflicts/<conflict_id>/resolve", methods=["POST"])
@auth_required("supervisor", "admin")
@blp.arguments(ResolveSchema)
@blp.response(200, FieldStateSchema)
def resolve(body, conflict_id):
    """Write the chosen value over exactly the heads named; a head that arrived since stays in conflict."""
    return resolve_conflict(get_store(), current_user()["id"], current_scope(), conflict_id, body["id"],
                            body["value"], body["heads"])


# -- households -----------------------------------------------------------------------------------
@blp.route("/households")
@auth_required()
@blp.arguments(VillageQuery, location="query")
@blp.response(200, page_schema(HouseholdSchema))
def households(query):
    """Households in your scope with their current fields, by id, a page at a time."""
    found = list_households(get_store(), current_scope(), area=query.get("village"),
                            after=id_position(query, "households"), limit=query["limit"] + 1)
    if not sees_whole(current_user()):
        found = [mask_household(household) for household in found]
    return page(found, query["limit"], "households")


@blp.route("/households/<household_id>")
@auth_required()
@blp.response(200, HouseholdDetailSchema)
def household(household_id):
    """One household with its fields and its history (as `/history` gives it); opening it is recorded."""
    store, user = get_store(), current_user()
    found = get_household(store, current_scope(), household_id)
    audit(store, "household_read", actor=user["id"], target=household_id, household=household_id)
    if sees_whole(user):
        return found
    return {**mask_household(found), "history": [mask_history_entry(entry) for entry in found["history"]]}


@blp.route("/households/<household_id>/history")
@auth_required()
@blp.arguments(HistoryQuery, location="query")
@blp.response(200, HistorySchema, description="JSON, or with format=csv one CSV row per field an event wrote")
@blp.doc(responses={"200": {
    "description": "JSON, or with format=csv one CSV row per field an event wrote",
    "content": {"application/json": {"schema": HistorySchema}, "text/csv": {"schema": {"type": "string"}}}}})
def history(query, household_id):
    """Every change of a household: the event, officer, device, time, and each field's value before and after."""
    store, user = get_store(), current_user()
    if query["format"] == "csv":
        # The CSV leaves the server: it is an export, recorded as one, masked unless granted.
        doc = scoped_household(store, current_scope(), household_id)
        masked = not exports_whole(user)
        record = open_record(store, actor=user["id"], role=user["role"], export_format="household_history_csv",
                             filters={"household_id": household_id, **({"masked": True} if masked else {})},
                             address=client_address())
        rows = list(history_rows(store, doc, masked=masked))
        body = b"".join(csv_text(iter(rows), HISTORY_COLUMNS))
        close_record(store, record, "completed", len(rows))
        audit(store, "household_history_exported", actor=user["id"], target=household_id, household=household_id,
              details={"export_id": record["id"]})
        return Response(body, mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="household-{household_id}-history.csv"',
            "X-Export-Id": record["id"]})
    found = history_of(store, current_scope(), household_id)
    audit(store, "household_history_read", actor=user["id"], target=household_id, household=household_id)
    if sees_whole(user):
        return found
    return {**found, "history": [mask_history_entry(entry) for entry in found["history"]]}


def _register(village_field: str | None):
    """The register in the request: a multipart upload (field ``file``) or JSON ``{"rows": [...]}``."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise ApiError(422, "invalid", "Upload the register as the field 'file'.",
                           {"file": ["Missing data for required field."]})
        return read_upload(upload.read(), upload.filename, village_field)
    if mimetype == "application/json":
        try:
            body = jsonio.loads(request.get_data(cache=True))
        except jsonio.BadJSON as exc:
            raise ApiError(400, "malformed_json", str(exc)) from None
        problems = RegisterRowsSchema().validate(body if isinstance(body, dict) else {})
        if problems or not isinstance(body, dict):
            raise ApiError(422, "invalid", "Send {\"rows\": [{...}, ...]}.",
                           flatten_messages(problems) or {"_schema": ["not an object"]})
        return read_rows(body["rows"], village_field or body.get("village_field"))
    raise ApiError(415, "unsupported_media_type", "Send the register as multipart/form-data or application/json.")


@blp.route("/households/import", methods=["POST"])
@auth_required("admin")
@blp.arguments(ImportQuery, location="query")
@blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": RegisterUploadSchema},
                                                    "application/json": {"schema": RegisterRowsSchema}}})
@blp.response(200, RegisterReportSchema)
@blp.alt_response(415, schema=ErrorSchema, description="Neither multipart/form-data nor application/json")
@blp.alt_response(422, schema=ErrorSchema, description="The file cannot be read or lacks required columns")
def import_register(query):
    """Load a household register (No. KK, NIK and name of the head, address, RT/RW, village code, lat/lon, DTSEN desil).

    Each household gets the id uuid5(village code/No. KK) and reaches devices on their next pull.
    Bad rows, and rows of villages never imported, are reported with their row number and why;
    good rows load; a row far outside its village's boundary loads with a warning. Importing the
    same register again changes nothing; a value an officer corrected is kept, and a value both
    the register and an officer changed becomes a conflict."""
    try:
        register = _register(query.get("village_field"))
        report = import_households(get_store(), register, actor=current_user()["id"], address=client_address())
    except RegisterError as exc:
        raise ApiError(422, "invalid_register", exc.message, exc.errors) from None
    return report.as_dict()
