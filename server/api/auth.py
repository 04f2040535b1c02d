"""Login, token refresh and logout (CONTRACT.md "Auth")."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app, g
from flask_jwt_extended import get_jwt, verify_jwt_in_request

from ..auth import (
    DEVICE_ID,
    audit,
    auth_required,
    check_rate,
    client_address,
    count_failure,
    current_user,
    end_login,
    passwords,
    rotate_refresh,
    start_login,
)
from ..errors import ApiError
from ..store import get_store
from ..users import public_user
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
@blp.alt_response(429, description="rate_limited, with Retry-After")
def login(data):
    """Exchange a username and password for an access and a refresh token."""
    config = current_app.config
    username = data["username"].strip().lower()
    address = client_address()
    keys = [(f"user:{username}", config["LOGIN_RATE_LIMIT"]),
            (f"addr:{address}", config["LOGIN_RATE_LIMIT"] * 5)]  # a village hall shares one address
    check_rate(keys, config["LOGIN_RATE_WINDOW_SECONDS"])
    user = get_store().get("users", username)
    if not passwords().verify(user["password_hash"] if user else None, data["password"]):
        count_failure([key for key, _ in keys], config["LOGIN_RATE_WINDOW_SECONDS"])
        audit("login_failed", actor=username, address=address)
        raise ApiError(401, "invalid_credentials", "The username or password is wrong.")
    if user.get("disabled"):
        audit("login_refused_disabled", actor=username, address=address)
        raise ApiError(403, "account_disabled", "This account is disabled; ask your admin.")
    tokens = start_login(user, data.get("device_id"), address, data.get("app_version"))
    audit("login_succeeded", actor=username, address=address, details={"device_id": data.get("device_id")})
    return {**tokens, "user": public_user(user)}


@blp.route("/refresh", methods=["POST"])
@blp.response(200, TokensSchema)
@blp.doc(security=[{"bearer": []}], description="Send the refresh token as the bearer token.")
def refresh():
    """Exchange a refresh token for a new pair; the used one is spent."""
    verify_jwt_in_request(refresh=True)
    return rotate_refresh(get_jwt())


@blp.route("/logout", methods=["POST"])
@auth_required()
@blp.response(204)
def logout():
    """End this login: its access and refresh tokens stop working."""
    end_login(g.kunjung_login, "logout")
    audit("logout", actor=current_user()["id"])


@blp.route("/me")
@auth_required()
@blp.response(200, MeSchema)
def me():
    """Who the token belongs to, their role, villages and device."""
    return {**public_user(current_user()), "device_id": g.kunjung_device}
