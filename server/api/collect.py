"""App credentials for ODK Collect (admins and supervisors): a token shown once and Collect's set-up QR code."""

from __future__ import annotations

import base64

import marshmallow as ma
from flask import current_app, request

from ..app_credentials import collect_settings, issue_credential, qr_images, settings_payload
from ..audit import client_address
from ..security.guard import auth_required, current_scope, current_user
from ..store import get_store
from .base import Blueprint

blp = Blueprint("collect", __name__, url_prefix="/api/v1", description="ODK Collect set-up (app credentials)")


class CredentialRequestSchema(ma.Schema):
    device = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128),
                              metadata={"description": "the phone's device name, e.g. hp-ani-02"})


class CredentialSchema(ma.Schema):
    username = ma.fields.String()
    device_id = ma.fields.String()
    token = ma.fields.String(metadata={"description": "shown only now; kunjung keeps its hash"})
    server_url = ma.fields.String(metadata={"description": "the URL Collect uses, with the token in it"})
    settings = ma.fields.Dict(metadata={"description": "Collect's settings JSON"})
    qr_text = ma.fields.String(metadata={"description": "the QR code's text: the settings, zlib-deflated, base64"})
    qr_png = ma.fields.String(metadata={"description": "the QR code as a PNG, base64"})
    qr_svg = ma.fields.String(metadata={"description": "the QR code as SVG"})


def public_url() -> str:
    return current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")


@blp.route("/users/<username>/collect-credentials", methods=["POST"])
@auth_required("admin", "supervisor")
@blp.arguments(CredentialRequestSchema)
@blp.response(201, CredentialSchema)
def make_credential(data, username):
    """A new ODK Collect credential for the user's phone (replacing that phone's earlier one), with the
    QR code Collect scans to set itself up. Revoking the device stops it."""
    device = data["device"].strip()
    token = issue_credential(get_store(), username, device, actor=current_user()["id"],
                             actor_scope=current_scope(), address=client_address())
    settings = collect_settings(public_url(), token, username, device)
    text = settings_payload(settings)
    png, svg = qr_images(text)
    return {"username": username, "device_id": device, "token": token,
            "server_url": settings["general"]["server_url"], "settings": settings, "qr_text": text,
            "qr_png": base64.b64encode(png).decode(), "qr_svg": svg}
