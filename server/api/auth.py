"""Login, token refresh and logout (docs/protocol.md, "Auth")."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask_jwt_extended import get_jwt, verify_jwt_in_request

from ..audit import audit, client_address
from ..devices import DEVICE_ID
from ..i18n import LANGUAGES
from ..ratelimit import LoginLimits
from ..security.guard import auth_required, current_device, current_login, current_user
from ..security.passwords import passwords
from ..security.tokens import end_login, log_in, rotate_refresh
from ..store import get_store
from ..users import public_user, set_language
from .base import Blueprint

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Log in, refresh, log out")


class LoginSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))
    device_id = ma.fields.String(validate=ma.validate.Regexp(DEVICE_ID, error="not a device id"))
    app_version = ma.fields.String(validate=ma.validate.Length(max=64))


class SessionUserSchema(ma.Schema):
    username = ma.fields.String(required=True)
    role = ma.fields.String(required=True)
    villages = ma.fields.List(ma.fields.String(), required=True)
    language = ma.fields.String(allow_none=True, metadata={"description": "id or en; null: the request decides"})


class TokensSchema(ma.Schema):
    access_token = ma.fields.String(required=True)
    refresh_token = ma.fields.String(required=True)


class LoginResultSchema(TokensSchema):
    user = ma.fields.Nested(SessionUserSchema, required=True)


class MeSchema(SessionUserSchema):
    device_id = ma.fields.String(allow_none=True)


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginSchema)
@blp.response(200, LoginResultSchema)
@blp.alt_response(401, description="invalid_credentials (the same for an unknown user and a wrong password)")
@blp.alt_response(403, description="account_disabled, or device_revoked for a device an admin revoked")
@blp.alt_response(429, description="rate_limited, with Retry-After (it grows after repeated failures)")
def login(data):
    """Exchange a username and password for an access and a refresh token."""
    user, tokens = log_in(get_store(), passwords(), LoginLimits.from_config(current_app.config),
                          username=data["username"].strip().lower(), password=data["password"],
                          device_id=data.get("device_id"), address=client_address(),
                          app_version=data.get("app_version"))
    return {**tokens, "user": public_user(user)}


@blp.route("/refresh", methods=["POST"])
@blp.response(200, TokensSchema)
@blp.doc(security=[{"bearer": []}], description="Send the refresh token as the bearer token.")
def refresh():
    """Exchange a refresh token for a new pair; the used one is spent."""
    verify_jwt_in_request(refresh=True)
    return rotate_refresh(get_store(), get_jwt(), client_address())


@blp.route("/logout", methods=["POST"])
@auth_required()
@blp.response(204)
def logout():
    """End this login: its access and refresh tokens stop working."""
    store = get_store()
    end_login(store, current_login(), "logout")
    audit(store, "logout", actor=current_user()["id"], address=client_address())


@blp.route("/me")
@auth_required()
@blp.response(200, MeSchema)
def me():
    """Who the token belongs to, their role, villages and device."""
    return {**public_user(current_user()), "device_id": current_device()}


class LanguageSchema(ma.Schema):
    language = ma.fields.String(required=True, allow_none=True, validate=ma.validate.OneOf(LANGUAGES),
                                metadata={"description": "id or en; null lets each request decide"})


@blp.route("/me", methods=["PATCH"])
@auth_required()
@blp.arguments(LanguageSchema)
@blp.response(200, MeSchema)
def set_my_language(data):
    """Choose the language of your messages when a request does not name one (Accept-Language wins)."""
    user = set_language(get_store(), current_user()["id"], data["language"])
    return {**public_user(user), "device_id": current_device()}
