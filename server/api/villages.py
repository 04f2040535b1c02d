"""Villages in the caller's scope, one village with its boundary, and the admin's boundary import."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from ..audit import client_address
from ..errors import ApiError
from ..i18n import _
from ..security.guard import auth_required, current_scope, current_user
from ..store import get_store
from ..villages import GeoJsonError, features_of, get_village, import_villages, list_villages, village_detail
from .base import Blueprint
from .paging import PageQuery, id_position, page, page_schema

blp = Blueprint("villages", __name__, url_prefix="/api/v1/villages",
                description="Villages (desa/kelurahan) and their boundaries")

_CODE_EXAMPLE = "32.04.05.2001"


class VillageSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Kemendagri code", "example": _CODE_EXAMPLE})
    name = ma.fields.String(required=True, metadata={"example": "Cileunyi Kulon"})
    district = ma.fields.String(allow_none=True, metadata={"description": "kecamatan name, when known"})
    regency = ma.fields.String(allow_none=True, metadata={"description": "kabupaten/kota name, when known"})
    province = ma.fields.String(allow_none=True, metadata={"description": "province name, when known"})
    has_boundary = ma.fields.Boolean(required=True)


class VillageDetailSchema(VillageSchema):
    boundary = ma.fields.Dict(allow_none=True, metadata={
        "description": "GeoJSON Polygon or MultiPolygon in WGS 84 longitude/latitude, or null"})
    bbox = ma.fields.List(ma.fields.Float(), allow_none=True,
                          metadata={"description": "[west, south, east, north] of the boundary"})


class ImportOptionsSchema(ma.Schema):
    code_field = ma.fields.String(load_default="code", validate=ma.validate.Length(min=1, max=64),
                                  metadata={"description": "feature property holding the Kemendagri code"})
    name_field = ma.fields.String(load_default="name", validate=ma.validate.Length(min=1, max=64),
                                  metadata={"description": "feature property holding the village name"})


class GeoJsonSchema(ma.Schema):
    """A FeatureCollection, or one Feature. Each feature is checked on its own and answered in
    the report, so only the outer shape is checked here."""

    class Meta:
        unknown = ma.INCLUDE  # GeoJSON allows foreign members ("name", "bbox", ...)

    type = ma.fields.String(required=True, validate=ma.validate.OneOf(["FeatureCollection", "Feature"]))
    features = ma.fields.List(ma.fields.Raw(), metadata={"description": "FeatureCollection: the features"})
    properties = ma.fields.Dict(allow_none=True, metadata={
        "description": "Feature: code, name and optionally district, regency, province"})
    geometry = ma.fields.Raw(allow_none=True, metadata={"description": "Feature: Polygon or MultiPolygon"})


class FeatureResultSchema(ma.Schema):
    index = ma.fields.Integer(required=True, metadata={"description": "position in features (0-based)"})
    code = ma.fields.String(allow_none=True)
    status = ma.fields.String(required=True, metadata={"enum": ["imported", "updated", "unchanged", "refused"]})
    repaired = ma.fields.Boolean(required=True)
    reasons = ma.fields.List(ma.fields.String(), metadata={"description": "why it was refused"})
    repairs = ma.fields.List(ma.fields.String(), metadata={"description": "what was mended in its geometry"})
    warnings = ma.fields.List(ma.fields.String())


class ImportReportSchema(ma.Schema):
    imported = ma.fields.Integer(required=True)
    updated = ma.fields.Integer(required=True)
    unchanged = ma.fields.Integer(required=True)
    repaired = ma.fields.Integer(required=True)
    refused = ma.fields.Integer(required=True)
    results = ma.fields.List(ma.fields.Nested(FeatureResultSchema), required=True)


@blp.route("")
class Villages(MethodView):
    @auth_required()
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, page_schema(VillageSchema))
    def get(self, query):
        """The villages in the caller's scope, by code, a page at a time (without boundaries: ask for one village)."""
        found = list_villages(get_store(), current_scope(), after=id_position(query, "villages"),
                              limit=query["limit"] + 1)
        return page(found, query["limit"], "villages", key=lambda village: village["code"])

    @auth_required("admin")
    @blp.arguments(ImportOptionsSchema, location="query")
    @blp.arguments(GeoJsonSchema)
    @blp.response(200, ImportReportSchema)
    def post(self, options, document):
        """Import village boundaries: a GeoJSON FeatureCollection or one Feature.

        Each feature is answered on its own (imported, updated, unchanged or refused with
        reasons); bad features never stop good ones, and sending the same data again changes
        nothing. Invalid polygons are repaired and said to be.
        """
        try:
            features = features_of(document)
        except GeoJsonError as exc:
            raise ApiError(422, "invalid", exc.message, {exc.field: [exc.message]}) from None
        report = import_villages(get_store(), features, code_field=options["code_field"],
                                 name_field=options["name_field"], actor=current_user()["id"],
                                 address=client_address())
        return report.as_dict()


@blp.route("/<code>")
class Village(MethodView):
    @auth_required()
    @blp.response(200, VillageDetailSchema)
    @blp.alt_response(404, description="No such village in the caller's scope")
    def get(self, code):
        """One village with its boundary as GeoJSON."""
        doc = get_village(get_store(), current_scope(), code)
        if doc is None:
            raise ApiError(404, "not_found", _("No such village."))
        return village_detail(doc)
