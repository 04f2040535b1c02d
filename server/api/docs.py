"""Serves the Swagger UI files for /api/docs from the installed bundle, so the docs work offline."""

from __future__ import annotations

from flask import Flask, abort, send_from_directory


def register_docs_assets(app: Flask) -> None:
    import swagger_ui_bundle

    root = swagger_ui_bundle.swagger_ui_path

    @app.route("/api/docs/assets/<path:filename>")
    def docs_assets(filename: str):
        if not filename.endswith((".js", ".css", ".png", ".map")):
            abort(404)
        return send_from_directory(root, filename, max_age=86400)
