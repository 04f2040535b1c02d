"""Exports of visits (CSV in a ZIP, XLSX, GeoJSON), household history and the village meeting's DTSEN proposals,
streamed; and the log of exports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import marshmallow as ma
from flask import Response, request, stream_with_context

from forms.identifiers import AreaCode

from ..audit import client_address
from ..blobs import blob_store
from ..exports import (
    LABEL_MODES,
    MediaExport,
    Tally,
    VisitFilter,
    csv_zip,
    filename_stamp,
    geojson,
    households_history_csv,
    list_records,
    open_record,
    parse_bound,
    proposal_filter,
    proposals_csv,
    proposals_xlsx,
    recorded,
    xlsx,
)
from ..privacy.masking import exports_whole
from ..reporting import PROPOSAL_KINDS, scoped_areas
from ..security.guard import auth_required, current_scope, current_user
from ..store import get_store
from ..visits import REVIEW_STATES
from .base import Blueprint

blp = Blueprint("exports", __name__, url_prefix="/api/v1/exports",
                description="Exports of visits, household history and the village meeting's DTSEN proposals "
                            "(personal data: every export is recorded)")

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class HistoryExportQuery(ma.Schema):
    village = AreaCode(metadata={"description": "a village or any area above it, in scope"})


class _PeriodQuery(HistoryExportQuery):
    start = ma.fields.String(data_key="from", validate=ma.validate.Length(max=40), metadata={
        "description": "first day (YYYY-MM-DD, in each village's own time zone) or instant (with offset), inclusive"})
    end = ma.fields.String(data_key="to", validate=ma.validate.Length(max=40),
                           metadata={"description": "last day or instant, inclusive"})


class VisitExportQuery(_PeriodQuery):
    form_id = ma.fields.String(validate=ma.validate.Length(max=64))
    officer = ma.fields.String(validate=ma.validate.Length(max=64))
    review = ma.fields.String(validate=ma.validate.OneOf(("pending", *REVIEW_STATES)))
    labels = ma.fields.String(load_default="codes", validate=ma.validate.OneOf(LABEL_MODES), metadata={
        "description": "choices and column headers as codes and field names, or as labels in Indonesian (id) "
                       "or English (en)"})


class ProposalExportQuery(_PeriodQuery):
    review = ma.fields.String(validate=ma.validate.OneOf(("pending", *REVIEW_STATES)),
                              metadata={"description": "only proposals in this review state"})
    kind = ma.fields.String(validate=ma.validate.OneOf(PROPOSAL_KINDS), metadata={
        "description": "only new households (baru), corrections (perbaikan) or objections (sanggahan)"})
    labels = ma.fields.String(load_default="id", validate=ma.validate.OneOf(LABEL_MODES), metadata={
        "description": "headers and choices in Indonesian (id, the meeting's language), English (en), or as "
                       "codes and field names"})


class ExportListQuery(ma.Schema):
    actor = ma.fields.String(validate=ma.validate.Length(max=64))
    after = ma.fields.String(validate=ma.validate.Length(max=64),
                             metadata={"description": "id of the last export of the previous page"})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))


class ExportRecordSchema(ma.Schema):
    id = ma.fields.String()
    at = ma.fields.String()
    actor = ma.fields.String()
    role = ma.fields.String()
    format = ma.fields.String(metadata={"enum": ["csv_zip", "xlsx", "geojson", "history_csv", "proposals_csv",
                                                 "proposals_xlsx", "household_history_csv"]})
    filters = ma.fields.Dict()
    address = ma.fields.String(allow_none=True)
    status = ma.fields.String(metadata={"enum": ["started", "completed", "aborted", "failed"]})
    rows = ma.fields.Integer(metadata={"description": "visits (history rows, proposals) exported"})
    repeat_rows = ma.fields.Integer(metadata={"description": "rows of repeats (member rosters) exported"})
    finished_at = ma.fields.String(allow_none=True)


def _filters(query: dict[str, Any]) -> VisitFilter:
    return VisitFilter(form_id=query.get("form_id"), area=query.get("village"), officer=query.get("officer"),
                       review=query.get("review"),
                       start=parse_bound(query["start"], "from") if query.get("start") else None,
                       end=parse_bound(query["end"], "to") if query.get("end") else None, labels=query["labels"],
                       masked=not exports_whole(current_user()))


def _stream(export_format: str, filters: dict[str, Any], make: Callable[[Tally], Iterator[bytes]], mimetype: str,
            filename: str) -> Response:
    """Record the export, then stream it; the record is completed with the row count at the end."""
    store = get_store()
    user = current_user()
    record = open_record(store, actor=user["id"], role=user["role"], export_format=export_format, filters=filters,
                         address=client_address())
    tally = Tally()
    body = stream_with_context(recorded(store, record, make(tally), tally))
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "X-Export-Id": record["id"]})


def _visits(query: dict[str, Any], export_format: str, writer: Callable[..., Iterator[bytes]], mimetype: str,
            suffix: str) -> Response:
    filters = _filters(query)
    # Scope is settled before streaming starts, while a 404 can still be answered.
    areas = scoped_areas(current_scope(), filters.area)
    store = get_store()
    media = MediaExport(blob_store(), request.host_url)  # the files of visits, and the links to them
    return _stream(export_format, filters.as_dict(), lambda tally: writer(store, areas, filters, tally, media=media),
                   mimetype, f"kunjung-visits-{filename_stamp()}.{suffix}")


STREAMED = "Streamed; the export is recorded in GET /api/v1/exports."


def _body(content_type: str) -> dict[str, Any]:
    return {"responses": {"200": {"description": STREAMED,
                                  "content": {content_type: {"schema": {"type": "string", "format": "binary"}}}}}}


@blp.route("/visits.csv.zip")
@auth_required("supervisor", "admin")
@blp.arguments(VisitExportQuery, location="query")
@blp.response(200, description=STREAMED)
@blp.doc(**_body("application/zip"))
def visits_csv(query):
    """Visits in your scope as CSV files in a ZIP: one per form version, one per repeat joined by visit_id/row_id,
    and each file of a visit as media/<visit id>/<name> (its answer's cell holds that relative path)."""
    return _visits(query, "csv_zip", csv_zip, "application/zip", "csv.zip")


@blp.route("/visits.xlsx")
@auth_required("supervisor", "admin")
@blp.arguments(VisitExportQuery, location="query")
@blp.response(200, description=STREAMED)
@blp.doc(**_body(XLSX_TYPE))
def visits_xlsx(query):
    """Visits in your scope as one workbook: an index sheet, a sheet per form version and one per repeat; a photo's
    or recording's cell links to the file on this server."""
    return _visits(query, "xlsx", partial(xlsx, actor=current_user()["id"]), XLSX_TYPE, "xlsx")


@blp.route("/visits.geojson")
@auth_required("supervisor", "admin")
@blp.arguments(VisitExportQuery, location="query")
@blp.response(200, description=STREAMED)
@blp.doc(responses={"200": {"description": STREAMED, "content": {"application/geo+json": {"schema": {
    "type": "object", "required": ["type", "features"], "description": "a FeatureCollection of Point features",
    "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                   "features": {"type": "array", "items": {"type": "object"}}}}}}}})
def visits_geojson(query):
    """Visits in your scope as GeoJSON points (for QGIS) with their answers and flags as properties; a file's
    property is its URL on this server."""
    return _visits(query, "geojson", geojson, "application/geo+json", "geojson")


@blp.route("/households-history.csv")
@auth_required("supervisor", "admin")
@blp.arguments(HistoryExportQuery, location="query")
@blp.response(200, description=STREAMED)
@blp.doc(**_body("text/csv"))
def households_history(query):
    """The history of every household in your scope: one row per field each event wrote, before and after."""
    areas = scoped_areas(current_scope(), query.get("village"))
    store = get_store()
    filters: dict[str, Any] = {"village": query["village"]} if query.get("village") else {}
    masked = not exports_whole(current_user())
    if masked:
        filters["masked"] = True
    return _stream("history_csv", filters, lambda tally: households_history_csv(store, areas, tally, masked=masked),
                   "text/csv", f"kunjung-household-history-{filename_stamp()}.csv")


def _proposals(query: dict[str, Any], export_format: str, writer: Callable[..., Iterator[bytes]], mimetype: str,
               suffix: str) -> Response:
    filters = proposal_filter(area=query.get("village"), review=query.get("review"), kind=query.get("kind"),
                              start=parse_bound(query["start"], "from") if query.get("start") else None,
                              end=parse_bound(query["end"], "to") if query.get("end") else None,
                              labels=query["labels"], masked=not exports_whole(current_user()))
    areas = scoped_areas(current_scope(), filters.visits.area)
    store = get_store()
    return _stream(export_format, filters.as_dict(), lambda tally: writer(store, areas, filters, tally),
                   mimetype, f"kunjung-usulan-dtsen-{filename_stamp()}.{suffix}")


@blp.route("/proposals.csv")
@auth_required("supervisor", "admin")
@blp.arguments(ProposalExportQuery, location="query")
@blp.response(200, description=STREAMED)
@blp.doc(**_body("text/csv"))
def proposals_list_csv(query):
    """The DTSEN proposals (usulan_dtsen) in your scope for the village meeting, village by village, by name and
    address, with the household's decile and the review state; one CSV."""
    return _proposals(query, "proposals_csv", proposals_csv, "text/csv", "csv")


@blp.route("/proposals.xlsx")
@auth_required("supervisor", "admin")
@blp.arguments(ProposalExportQuery, location="query")
@blp.response(200, description=STREAMED)
@blp.doc(**_body(XLSX_TYPE))
def proposals_list_xlsx(query):
    """The same list as a workbook: an index sheet, then one sheet per village."""
    return _proposals(query, "proposals_xlsx", partial(proposals_xlsx, actor=current_user()["id"]), XLSX_TYPE,
                      "xlsx")


@blp.route("")
@auth_required("admin")
@blp.arguments(ExportListQuery, location="query")
@blp.response(200, ExportRecordSchema(many=True))
def exports(query):
    """Every export: who, when, which filters, which format and how many rows; newest first."""
    return list_records(get_store(), actor=query.get("actor"), after=query.get("after"), limit=query["limit"])
