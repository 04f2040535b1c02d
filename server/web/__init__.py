"""The web pages for supervisors and admins: the blueprint, its sign-in check, CSRF, headers and language."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, Flask, current_app, g, redirect, request, url_for
from werkzeug.wrappers import Response

from ..i18n import remember_page_language, use_page_language
from ..store import get_store
from . import session as web_session

blp = Blueprint("web", __name__, url_prefix="/web", template_folder="templates", static_folder="static",
                static_url_path="/static")

# Paths reachable without signing in.
PUBLIC_ENDPOINTS = {"web.login", "web.static", "web.language"}


def content_security_policy() -> str:
    """Only this origin: no inline script or style, no frames; tiles from the configured host alone."""
    images = "'self' data:"
    tiles = current_app.config.get("WEB_TILE_URL") or ""
    if tiles.startswith(("https://", "http://")):
        host = "/".join(tiles.split("/")[:3])
        images += f" {host}"
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src " + images +
            "; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


@blp.before_request
def _signed_in() -> Response | None:
    g.web_user = None
    g.web_login = None
    use_page_language()
    if request.endpoint == "web.static":
        return None
    holder = web_session.session_user(get_store())
    if holder is not None:
        g.web_user, g.web_login = holder
    unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
    if unsafe and not (web_session.same_origin() and web_session.csrf_ok()):
        from .views import refused

        return refused(403, "csrf")
    if g.web_user is None and request.endpoint not in PUBLIC_ENDPOINTS:
        return redirect(url_for("web.login", next=request.full_path if request.method == "GET" else None))
    return None


@blp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", content_security_policy())  # a file sets its own
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint == "web.static":
        response.headers["Cache-Control"] = "public, max-age=3600"
    web_session.keep_pre_nonce(response)
    return remember_page_language(response)


def register_web(app: Flask) -> None:
    """Mount the pages at /web (and send / there)."""
    from . import views  # noqa: F401  (the routes)

    app.config.setdefault("WEB_TILE_URL", os.environ.get("KUNJUNG_WEB_TILE_URL", ""))
    app.config.setdefault("WEB_STALE_DAYS", int(os.environ.get("KUNJUNG_WEB_STALE_DAYS", "3")))
    app.register_blueprint(blp)

    @app.get("/")
    def _root() -> Any:
        return redirect(url_for("web.dashboard"))
