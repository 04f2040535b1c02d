"""Liveness and readiness probes for process managers and load balancers."""

from __future__ import annotations

import marshmallow as ma

from ..store import get_store
from .base import Blueprint

blp = Blueprint("health", __name__, url_prefix="/health", description="Liveness and readiness")


class StatusSchema(ma.Schema):
    status = ma.fields.String(required=True)


@blp.route("/live")
@blp.response(200, StatusSchema)
def live():
    """The process is up."""
    return {"status": "ok"}


@blp.route("/ready")
@blp.response(200, StatusSchema)
@blp.alt_response(503, description="The store does not answer (error shape, with Retry-After)")
def ready():
    """The process is up and its store answers."""
    get_store().ping()  # StoreUnavailable becomes 503 in server.errors
    return {"status": "ok"}
