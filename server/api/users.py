"""User administration, devices and the security audit log (admins only)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from ..audit import audit_entries, client_address, time_bounds
from ..devices import DEVICE_ID, list_devices, revoke_device
from ..errors import ApiError
from ..i18n import LANGUAGES, _
from ..security.guard import auth_required, current_user
from ..security.passwords import passwords
from ..store import get_store
from ..users import ROLES, create_user, get_user, list_users, public_user, update_user
from .base import Blueprint

blp = Blueprint("users", __name__, url_prefix="/api/v1", description="Users, devices and audit (admin)")


SEE_IDENTIFIERS = ("whether the user sees NIK and No. KK whole in lists, pulls and exports (true), masked to their "
                   "first six digits (false), or as the role has it (null: officers whole, others masked; exports "
                   "masked unless true)")


class UserSchema(ma.Schema):
    username = ma.fields.String(required=True)
    role = ma.fields.String(required=True)
    villages = ma.fields.List(ma.fields.String(), required=True)
    disabled = ma.fields.Boolean()
    language = ma.fields.String(allow_none=True, metadata={"description": "id or en; null: the request decides"})
    created_at = ma.fields.String(allow_none=True)
    updated_at = ma.fields.String(allow_none=True)
    see_identifiers = ma.fields.Boolean(allow_none=True, metadata={"description": SEE_IDENTIFIERS})


class UserCreateSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(max=4096))
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))
    villages = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=64)), load_default=list)
    language = ma.fields.String(validate=ma.validate.OneOf(LANGUAGES), allow_none=True, load_default=None)


class UserPatchSchema(ma.Schema):
    role = ma.fields.String(validate=ma.validate.OneOf(ROLES))
    villages = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=64)))
    disabled = ma.fields.Boolean()
    password = ma.fields.String(load_only=True, validate=ma.validate.Length(max=4096))
    see_identifiers = ma.fields.Boolean(allow_none=True, metadata={"description": SEE_IDENTIFIERS})
    language = ma.fields.String(validate=ma.validate.OneOf(LANGUAGES), allow_none=True)


class DeviceSchema(ma.Schema):
    device_id = ma.fields.String(required=True)
    username = ma.fields.String(required=True)
    first_seen_at = ma.fields.String(allow_none=True)
    last_login_at = ma.fields.String(allow_none=True)
    last_sync_at = ma.fields.String(allow_none=True)
    app_version = ma.fields.String(allow_none=True)
    revoked = ma.fields.Boolean()
    skew_ms = ma.fields.Integer(metadata={"description": "how far ahead of server time its clock was last seen"})
    skew_seen_at = ma.fields.String(allow_none=True)
    skew_cleared_at = ma.fields.String(allow_none=True,
                                       metadata={"description": "when its events came within the bound again"})


class AuditQuerySchema(ma.Schema):
    action = ma.fields.String(validate=ma.validate.Length(max=64))
    actor = ma.fields.String(validate=ma.validate.Length(max=64), metadata={"description": "only this user's"})
    household = ma.fields.String(validate=ma.validate.Length(max=128), metadata={
        "description": "only entries about this household, pull pages that carried it included"})
    start = ma.fields.String(data_key="from", validate=ma.validate.Length(max=40),
                             metadata={"description": "first day (YYYY-MM-DD, UTC) or instant, inclusive"})
    end = ma.fields.String(data_key="to", validate=ma.validate.Length(max=40),
                           metadata={"description": "last day (YYYY-MM-DD, UTC) or instant, inclusive"})
    before = ma.fields.String(validate=ma.validate.Length(max=64),
                              metadata={"description": "only events before this ISO time (paging)"})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))


class AuditSchema(ma.Schema):
    id = ma.fields.String()
    at = ma.fields.String()
    actor = ma.fields.String(allow_none=True)
    action = ma.fields.String()
    target = ma.fields.String(allow_none=True)
    address = ma.fields.String(allow_none=True)
    details = ma.fields.Dict()
    household = ma.fields.String(allow_none=True)
    person = ma.fields.String(allow_none=True, metadata={
        "description": "the keyed hash of the NIK (or No. KK) the entry concerns, never the number"})


@blp.route("/users")
class Users(MethodView):
    @auth_required("admin")
    @blp.response(200, UserSchema(many=True))
    def get(self):
        """All users."""
        return [public_user(u) for u in list_users(get_store())]

    @auth_required("admin")
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, data):
        """Create a user with a role and villages (a supervisor's entry may be a kecamatan)."""
        user = create_user(get_store(), passwords(), data["username"].strip().lower(), data["password"],
                           data["role"], data["villages"], actor=current_user()["id"], address=client_address(),
                           language=data["language"])
        return public_user(user)


@blp.route("/users/<username>")
class User(MethodView):
    @auth_required("admin")
    @blp.response(200, UserSchema)
    def get(self, username):
        """One user."""
        return public_user(get_user(get_store(), username))

    @auth_required("admin")
    @blp.arguments(UserPatchSchema)
    @blp.response(200, UserSchema)
    def patch(self, data, username):
        """Assign villages, change the role, disable or enable, or reset the password."""
        if username == current_user()["id"] and (data.get("disabled") or data.get("role", "admin") != "admin"):
            raise ApiError(409, "conflict", _("Admins cannot disable or demote themselves."))
        return public_user(update_user(get_store(), passwords(), username, data, actor=current_user()["id"],
                                       address=client_address()))


@blp.route("/users/<username>/devices")
@auth_required("admin")
@blp.response(200, DeviceSchema(many=True))
def devices(username):
    """The devices a user has logged in from."""
    return list_devices(get_store(), get_user(get_store(), username)["id"])


@blp.route("/users/<username>/devices/<device_id>/revoke", methods=["POST"])
@auth_required("admin")
@blp.response(200, DeviceSchema)
def revoke(username, device_id):
    """Revoke a lost phone: every token issued to it stops working at once, and it cannot log in again."""
    if not DEVICE_ID.match(device_id):
        raise ApiError(404, "not_found", _("No such device for this user."))
    return revoke_device(get_store(), get_user(get_store(), username)["id"], device_id,
                         actor=current_user()["id"], address=client_address())


@blp.route("/audit")
@auth_required("admin")
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditSchema(many=True))
def audit_log(query):
    """Audit entries, newest first: logins, role and village changes, reads of personal data (households,
    visits, histories, searches, pull pages), exports, erasures. Search by person: POST /api/v1/audit/person."""
    start, end = time_bounds(query.get("start"), query.get("end"))
    return audit_entries(get_store(), action=query.get("action"), actor=query.get("actor"),
                         household=query.get("household"), start=start, end=end, before=query.get("before"),
                         limit=query["limit"])
