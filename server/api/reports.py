"""Coverage and work figures and the review queue; the household register import and household history."""

from __future__ import annotations

import marshmallow as ma
from flask import Response, request

from .. import jsonio
from ..audit import client_address
from ..errors import ApiError, flatten_messages
from ..exports import HISTORY_COLUMNS, csv_text, history_rows, household_history
from ..household_import import RegisterError, import_households, read_rows, read_upload
from ..reporting import device_figures, officer_figures, review_queue, village_coverage
from ..security.guard import auth_required, current_scope, current_user, require_in_scope
from ..store import get_store
from ..sync_service import REVIEW_STATES
from .base import Blueprint, ErrorSchema

blp = Blueprint("reports", __name__, url_prefix="/api/v1",
                description="Coverage and work figures, the review queue, household registers and household history")

AREA = ma.validate.Regexp(r"^[1-9]\d(\.\d{2}(\.\d{2}(\.[123]\d{3})?)?)?$",
                          error="not a Kemendagri code (32, 32.04, 32.04.05 or 32.04.05.2001)")
AREA_HELP = {"description": "a village, or any area above it (kecamatan 32.04.05, regency, province); "
                            "within your scope"}


# -- query schemas -----------------------------------------------------------------------------
class CoverageQuery(ma.Schema):
    village = ma.fields.String(validate=AREA, metadata=AREA_HELP)
    days = ma.fields.Integer(load_default=7, validate=ma.validate.Range(min=1, max=366),
                             metadata={"description": "what counts as recent: the last N days, today included, "
                                                      "in each village's own time zone"})


class OfficerQuery(CoverageQuery):
    officer = ma.fields.String(validate=ma.validate.Length(max=64))


class DeviceQuery(ma.Schema):
    village = ma.fields.String(validate=AREA, metadata=AREA_HELP)
    stale_days = ma.fields.Integer(load_default=3, validate=ma.validate.Range(min=1, max=366),
                                   metadata={"description": "list devices that have not synced for this many days"})


class QueueQuery(ma.Schema):
    kind = ma.fields.String(validate=ma.validate.OneOf(("conflict", "visit")),
                            metadata={"description": "only conflicts or only flagged visits (default both, "
                                                     "conflicts first)"})
    village = ma.fields.String(validate=AREA, metadata=AREA_HELP)
    flag = ma.fields.String(validate=ma.validate.Length(max=64),
                            metadata={"description": "only visits carrying this flag code (outside_village, "
                                                     "constraint_failed, unknown_choice, ...)"})
    officer = ma.fields.String(validate=ma.validate.Length(max=64))
    form_id = ma.fields.String(validate=ma.validate.Length(max=64))
    review = ma.fields.String(load_default="pending", validate=ma.validate.OneOf(("pending", *REVIEW_STATES, "any")),
                              metadata={"description": "review state of the visits listed (default pending)"})
    after = ma.fields.String(validate=ma.validate.Length(max=200),
                             metadata={"description": "the next of the previous page"})
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))


class ImportQuery(ma.Schema):
    village_field = ma.fields.String(validate=ma.validate.Length(min=1, max=64),
                                     metadata={"description": "the column holding the village code, when it is "
                                                              "not named kode desa / village_code"})


class HistoryQuery(ma.Schema):
    format = ma.fields.String(load_default="json", validate=ma.validate.OneOf(("json", "csv")))


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
    next = ma.fields.String(allow_none=True, metadata={"description": "pass as after for the next page"})
    totals = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())


class RowProblemSchema(ma.Schema):
    row = ma.fields.Integer(metadata={"description": "as the spreadsheet numbers it (header = 1); "
                                                     "JSON rows count from 1"})
    no_kk = ma.fields.String(allow_none=True)
    reasons = ma.fields.List(ma.fields.String())


class RegisterReportSchema(ma.Schema):
    source = ma.fields.String()
    rows = ma.fields.Integer()
    created = ma.fields.Integer()
    updated = ma.fields.Integer()
    unchanged = ma.fields.Integer()
    rejected = ma.fields.Integer()
    conflicts = ma.fields.Integer(metadata={"description": "households where the register changed a value an "
                                                           "officer had changed too: now a conflict to resolve"})
    problems = ma.fields.List(ma.fields.Nested(RowProblemSchema))
    ignored_columns = ma.fields.List(ma.fields.String())


class RegisterUploadSchema(ma.Schema):
    file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary",
                                                  "description": "the register, .csv or .xlsx"})


class RegisterRowsSchema(ma.Schema):
    rows = ma.fields.List(ma.fields.Dict(), required=True, metadata={
        "description": "one object per household, keys named like register columns (no_kk, nik, nama, alamat, "
                       "rt, rw, kode_desa, lat, lon)"})
    village_field = ma.fields.String()


class FieldChangeSchema(ma.Schema):
    field = ma.fields.String()
    before = ma.fields.Raw(allow_none=True)
    after = ma.fields.Raw(allow_none=True)
    changed = ma.fields.Boolean()
    in_conflict = ma.fields.Boolean()


class HistoryEntrySchema(ma.Schema):
    step = ma.fields.Integer()
    event_id = ma.fields.String()
    type = ma.fields.String(metadata={"enum": ["visit", "household_edit", "resolution", "import"]})
    officer = ma.fields.String()
    device_id = ma.fields.String()
    at = ma.fields.String(allow_none=True)
    received_at = ma.fields.String(allow_none=True)
    hlc = ma.fields.String()
    changes = ma.fields.List(ma.fields.Nested(FieldChangeSchema))


class HistorySchema(ma.Schema):
    household_id = ma.fields.String()
    village = ma.fields.String()
    history = ma.fields.List(ma.fields.Nested(HistoryEntrySchema))


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
    return review_queue(get_store(), current_scope(), kind=query.get("kind"), area=query.get("village"),
                        flag=query.get("flag"), officer=query.get("officer"), form_id=query.get("form_id"),
                        review=query["review"], after=query.get("after"), limit=query["limit"])


# -- household registers and history ---------------------------------------------------------------
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
    """Load a household register (No. KK, NIK and name of the head, address, RT/RW, village code, lat/lon).

    Each household gets the id uuid5(village code/No. KK) and reaches devices on their next pull.
    Bad rows are reported with their row number and why; good rows load. Importing the same
    register again changes nothing; a value an officer corrected is kept, and a value both the
    register and an officer changed becomes a conflict."""
    try:
        register = _register(query.get("village_field"))
        report = import_households(get_store(), register, actor=current_user()["id"], address=client_address())
    except RegisterError as exc:
        raise ApiError(422, "invalid_register", exc.message, exc.errors) from None
    return report.as_dict()


@blp.route("/households/<household_id>/history")
@auth_required()
@blp.arguments(HistoryQuery, location="query")
@blp.response(200, HistorySchema, description="JSON, or with format=csv one CSV row per field an event wrote")
@blp.doc(responses={"200": {
    "description": "JSON, or with format=csv one CSV row per field an event wrote",
    "content": {"application/json": {"schema": HistorySchema}, "text/csv": {"schema": {"type": "string"}}}}})
def history(query, household_id):
    """Every change of a household: the event, officer, device, time, and each field's value before and after."""
    store = get_store()
    doc = store.get("households", household_id)
    if doc is None:
        raise ApiError(404, "not_found", "No such household.")
    require_in_scope(doc["village"], "household")
    if query["format"] == "csv":
        body = b"".join(csv_text(history_rows(store, doc), HISTORY_COLUMNS))
        return Response(body, mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="household-{household_id}-history.csv"'})
    return {"household_id": household_id, "village": doc["village"],
            "history": list(household_history(store, household_id))}
