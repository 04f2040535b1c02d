"""Personal data: search by NIK or No. KK, seeing one household's numbers whole, access and erasure requests."""

# Numbers travel in request bodies, never in URLs, so that they stay out of access logs.

from __future__ import annotations

import marshmallow as ma

from ..audit import audit, audit_entries, client_address, time_bounds
from ..errors import ApiError
from ..households import household_view, scoped_household
from ..i18n import _
from ..privacy.erasure import erase_household, erase_person, require_central
from ..privacy.masking import is_identifier_path, mask_household, sees_whole
from ..privacy.people import checked_number, households_naming, number_hash, person_export
from ..security.guard import auth_required, current_scope, current_user
from ..store import get_store
from .base import Blueprint

blp = Blueprint("privacy", __name__, url_prefix="/api/v1",
                description="Personal data: searches by number, seeing numbers whole, access and erasure "
                            "requests (every one recorded in the audit log)")


class SearchSchema(ma.Schema):
    nik = ma.fields.String(validate=ma.validate.Length(max=64))
    no_kk = ma.fields.String(validate=ma.validate.Length(max=64))

    @ma.validates_schema
    def one_number(self, data, **_kwargs):
        if ("nik" in data) == ("no_kk" in data):
            raise ma.ValidationError(_("give either nik or no_kk"), "nik")


class PersonSchema(ma.Schema):
    nik = ma.fields.String(required=True, validate=ma.validate.Length(max=64))


class PersonEraseSchema(PersonSchema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))


class EraseSchema(ma.Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500),
                              metadata={"description": "why (the request it answers); kept in the audit log"})


class PersonAuditSchema(PersonSchema):
    start = ma.fields.String(data_key="from", validate=ma.validate.Length(max=40))
    end = ma.fields.String(data_key="to", validate=ma.validate.Length(max=40))
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))


class FoundSchema(ma.Schema):
    household_id = ma.fields.String()
    village = ma.fields.String()
    roles = ma.fields.List(ma.fields.Dict(), metadata={"description": "head, member (member_id) or family_card"})
    household = ma.fields.Dict(metadata={"description": "the household as lists show it (masked unless granted)"})


class SearchResultSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(FoundSchema))


class RevealSchema(ma.Schema):
    household_id = ma.fields.String()
    village = ma.fields.String()
    identifiers = ma.fields.Dict(metadata={"description": "field path -> the NIK or No. KK, whole"})


class ErasureSchema(ma.Schema):
    at = ma.fields.String()
    by = ma.fields.String()
    reason = ma.fields.String()
    households = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "per household: what was erased (patterns), the tombstone event, how many events, "
                       "visits and attachments were scrubbed; never the values"})


class PersonExportSchema(ma.Schema):
    nik = ma.fields.String()
    households = ma.fields.List(ma.fields.Dict())
    visits = ma.fields.List(ma.fields.Dict())


@blp.route("/households/search", methods=["POST"])
@auth_required()
@blp.arguments(SearchSchema)
@blp.response(200, SearchResultSchema)
def search(body):
    """Households in your scope that hold a NIK (as head or member) or a No. KK. The audit log keeps
    the number's keyed hash, not the number."""
    kind = "nik" if "nik" in body else "no_kk"
    number = checked_number(body[kind], kind)
    store, user = get_store(), current_user()
    whole = sees_whole(user)
    items = []
    for doc, _view, roles in households_naming(store, current_scope(), **{kind: number}):
        view = household_view(doc)
        items.append({"household_id": doc["id"], "village": doc["village"], "roles": roles,
                      "household": view if whole else mask_household(view)})
    audit(store, "household_searched", actor=user["id"], person=number_hash(number),
          details={"by": kind, "found": [item["household_id"] for item in items]})
    return {"items": items}


@blp.route("/households/<household_id>/reveal", methods=["POST"])
@auth_required()
@blp.response(200, RevealSchema)
def reveal(household_id):
    """See one household's NIK and No. KK whole: an explicit action, recorded in the audit log."""
    store, user = get_store(), current_user()
    doc = scoped_household(store, current_scope(), household_id)
    fields = household_view(doc)["fields"]
    identifiers = {path: state.get("value") for path, state in fields.items()
                   if is_identifier_path(path) and state.get("value") is not None}
    audit(store, "identifiers_revealed", actor=user["id"], target=household_id, household=household_id,
          details={"fields": sorted(identifiers)})
    return {"household_id": household_id, "village": doc["village"], "identifiers": identifiers}


@blp.route("/households/<household_id>/erase", methods=["POST"])
@auth_required("admin")
@blp.arguments(EraseSchema)
@blp.response(200, ErasureSchema)
def erase_one_household(body, household_id):
    """Erase a household's personal values everywhere kunjung keeps them; a tombstone syncs to devices."""
    require_central()
    return erase_household(get_store(), household_id, actor=current_user()["id"], reason=body["reason"],
                           address=client_address())


@blp.route("/people/erase", methods=["POST"])
@auth_required("admin")
@blp.arguments(PersonEraseSchema)
@blp.response(200, ErasureSchema)
def erase_one_person(body):
    """Erase one person (by NIK): their roster row or head's fields in every household, and the answers of
    every visit that mentions the NIK."""
    require_central()
    nik = checked_number(body["nik"], "nik")
    return erase_person(get_store(), nik, actor=current_user()["id"], reason=body["reason"],
                        address=client_address())


@blp.route("/people/export", methods=["POST"])
@auth_required("admin")
@blp.arguments(PersonSchema)
@blp.response(200, PersonExportSchema)
def export_person(body):
    """Everything kunjung holds about one person, for a data-subject access request (recorded)."""
    nik = checked_number(body["nik"], "nik")
    store = get_store()
    found = person_export(store, current_scope(), nik)
    audit(store, "person_exported", actor=current_user()["id"], person=number_hash(nik),
          details={"households": [h["household_id"] for h in found["households"]],
                   "visits": [v["visit_id"] for v in found["visits"]]})
    return found


@blp.route("/audit/person", methods=["POST"])
@auth_required("admin")
@blp.arguments(PersonAuditSchema)
@blp.response(200, ma.Schema.from_dict({"items": ma.fields.List(ma.fields.Dict())}))
def audit_of_person(body):
    """Audit entries about one person (searched, exported, erased by their NIK), newest first."""
    nik = checked_number(body["nik"], "nik")
    start, end = time_bounds(body.get("start"), body.get("end"))
    if start and end and start > end:
        raise ApiError(422, "invalid", _("from is after to."), {"from": [_("after to")]})
    return {"items": audit_entries(get_store(), person=number_hash(nik), start=start, end=end,
                                   limit=body["limit"])}
