"""User administration, devices and the security audit log (admins only)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from ..auth import ROLES, auth_required, client_address, current_user
from ..errors import ApiError
from ..storage import Range
from ..store import get_store
from ..users import create_user, list_devices, public_user, revoke_device, update_user
from .base import Blueprint

blp = Blueprint("users", __name__, url_prefix="/api/v1", description="Users, devices and audit (admin)")


class UserSchema(ma.Schema):
    username = ma.fields.String(required=True)
    role = ma.fields.String(required=True)
    villages = ma.fields.List(ma.fields.String(), required=True)
    disabled = ma.fields.Boolean()
    created_at = ma.fields.String(allow_none=True)
    updated_at = ma.fields.String(allow_none=True)


class UserCreateSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    password = ma.fields.String(required=True, load_only=True)
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))
    villages = ma.fields.List(ma.fields.String(), load_default=list)


class UserPatchSchema(ma.Schema):
    role = ma.fields.String(validate=ma.validate.OneOf(ROLES))
    villages = ma.fields.List(ma.fields.String())
    disabled = ma.fields.Boolean()
    password = ma.fields.String(load_only=True)


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
    action = ma.fields.String()
    before = ma.fields.String(metadata={"description": "only events before this ISO time (paging)"})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))


class AuditSchema(ma.Schema):
    id = ma.fields.String()
    at = ma.fields.String()
    actor = ma.fields.String(allow_none=True)
    action = ma.fields.String()
    target = ma.fields.String(allow_none=True)
    address = ma.fields.String(allow_none=True)
    details = ma.fields.Dict()


@blp.route("/users")
class Users(MethodView):
    @auth_required("admin")
    @blp.response(200, UserSchema(many=True))
    def get(self):
        """All users."""
        return [public_user(u) for u in get_store().find("users", order_by="id", limit=10000)]

    @auth_required("admin")
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, data):
        """Create a user with a role and villages (a supervisor's entry may be a kecamatan)."""
        user = create_user(data["username"].strip().lower(), data["password"], data["role"], data["villages"],
                           actor=current_user()["id"], address=client_address())
        return public_user(user)


@blp.route("/users/<username>")
class User(MethodView):
    @auth_required("admin")
    @blp.response(200, UserSchema)
    def get(self, username):
        """One user."""
        user = get_store().get("users", username)
        if user is None:
            raise ApiError(404, "not_found", f"No user named {username!r}.")
        return public_user(user)

    @auth_required("admin")
    @blp.arguments(UserPatchSchema)
    @blp.response(200, UserSchema)
    def patch(self, data, username):
        """Assign villages, change the role, disable or enable, or reset the password."""
        if username == current_user()["id"] and (data.get("disabled") or data.get("role", "admin") != "admin"):
            raise ApiError(409, "conflict", "Admins cannot disable or demote themselves.")
        return public_user(update_user(username, data, actor=current_user()["id"], address=client_address()))


@blp.route("/users/<username>/devices")
@auth_required("admin")
@blp.response(200, DeviceSchema(many=True))
def devices(username):
    """The devices a user has logged in from."""
    return list_devices(username)


@blp.route("/users/<username>/devices/<device_id>/revoke", methods=["POST"])
@auth_required("admin")
@blp.response(200, DeviceSchema)
def revoke(username, device_id):
    """Revoke a lost phone: every token issued to it stops working at once."""
    return revoke_device(username, device_id, actor=current_user()["id"], address=client_address())


@blp.route("/audit")
@auth_required("admin")
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditSchema(many=True))
def audit_log(query):
    """Security events, newest first: logins, logouts, revocations, role and village changes."""
    where = {}
    if "action" in query:
        where["action"] = query["action"]
    if "before" in query:
        where["at"] = Range(lt=query["before"])
    return get_store().find("audit", where, order_by="-at", limit=query["limit"])
