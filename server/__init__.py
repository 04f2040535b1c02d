"""The kunjung server: the Flask application factory."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from . import config as config_module
from .api import BLUEPRINTS, openrosa
from .api.base import Api
from .api.docs import register_docs_assets
from .blobs import check_upload_sharing, upload_body_limit
from .clock import start_node
from .errors import register_error_handlers, shape_refusals, wsgi_refusal
from .forms_registry import move_form_files_on_start, seed_library_on_first_start
from .i18n import install_i18n
from .jsonio import FastJSONProvider
from .middleware import RequestBodyGuard
from .relay import install_relay
from .security.guard import install_guard
from .security.keys import install_keyring
from .security.passwords import install_passwords
from .security.tokens import install_tokens
from .store import init_store, on_store_ready, prepare_store
from .upgrade import upgrade_on_start
from .web import register_web

__all__ = ["create_app"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
log = logging.getLogger("kunjung")


class _RequestIdFilter(logging.Filter):
    """Puts the current request's id on every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(g, "request_id", "-") if has_request_context() else "-"
        return True


def _configure_logging(level: str) -> None:
    root = logging.getLogger("kunjung")
    if any(isinstance(f, _RequestIdFilter) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application. ``test_config`` overrides settings (and may pass a ready ``STORE``)."""
    app = Flask(__name__, instance_relative_config=False)
    app.json = FastJSONProvider(app)
    settings = config_module.from_environment()
    settings.update(test_config or {})
    app.config.update(config_module.resolve_locations(settings))
    secret, retired = config_module.load_secrets(app.config)
    app.config["SECRET_KEY"] = secret
    install_keyring(app, retired)
    # Werkzeug's own limit covers bodies sent without Content-Length (chunked).
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_DECOMPRESSED_BYTES"]
    app.config.update(
        API_TITLE="kunjung",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/api/docs/assets/",
        JSON_SORT_KEYS=False,
    )
    _configure_logging(app.config["LOG_LEVEL"])

    check_upload_sharing(app.config)  # several app hosts need one volume for uploads under way
    if app.config.get("STORE") is None:
        config_module.protect_store_files(app.config["DATABASE_URL"])
    init_store(app, app.config.get("STORE"))
    on_store_ready(app, start_node)  # the node's id, and its clock above every stored HLC
    on_store_ready(app, upgrade_on_start)  # records of an older merge engine, folded again
    move_form_files_on_start(app)  # form files an older server kept in their own chunks, into the blob store
    seed_library_on_first_start(app)  # the shipped forms, once the schema is in place
    install_passwords(app)
    install_guard(install_tokens(app))
    _register_request_hooks(app)
    install_i18n(app)
    install_relay(app)  # a hall refuses pushes while its clock is off
    register_error_handlers(app)
    _register_api(app)
    register_web(app)  # the pages for supervisors and admins (server/web/)
    prepare_store(app)
    app.wsgi_app = RequestBodyGuard(app.wsgi_app, app.config["MAX_BODY_BYTES"],  # type: ignore[method-assign]
                                    app.config["MAX_DECOMPRESSED_BYTES"], larger=upload_body_limit(app),
                                    shape=wsgi_refusal)
    return app


def _register_request_hooks(app: Flask) -> None:
    @app.before_request
    def _request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else request.environ.get(
            "kunjung.request_id", uuid.uuid4().hex)

    @app.after_request
    def _stamp(response: Response) -> Response:
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def _register_api(app: Flask) -> None:
    api = Api(app, spec_kwargs={"info": {"description": "Offline-first household visits for Indonesian villages."}})
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    register_docs_assets(app)
    # ODK Collect's OpenRosa API answers XML, so it is a plain blueprint outside the OpenAPI document.
    app.register_blueprint(openrosa.blp)
    shape_refusals(openrosa.PATH_PREFIX, openrosa.refusal)  # even refusals made before its views run
    app.extensions["kunjung.api"] = api
