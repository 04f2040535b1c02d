"""The one JSON error shape (docs/design.md §7), and the one place exceptions become HTTP answers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from sync import DocumentFormatError

from .i18n import _, force_language, language_before_app, translate_errors, translate_known
from .storage import SchemaError, StorageError, StoreUnavailable, UniqueViolation, WriteConflict

log = logging.getLogger("kunjung.errors")

# Stable codes for werkzeug's own errors; clients switch on "code", not on the message.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    428: "precondition_required",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error with a status, a stable ``code``, a sentence for people and per-field errors."""

    def __init__(self, status: int, code: str, message: str, errors: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or {}
        self.headers = headers or {}
        self.extra = extra


def error_body(code: str, message: str, errors: dict[str, list[str]] | None = None,
               request_id: str | None = None, **extra: Any) -> dict[str, Any]:
    # Sentences the engines or libraries wrote in English are said in the answer's language here.
    return {"code": code, "message": translate_known(str(message)), "errors": translate_errors(errors),
            "request_id": request_id, **extra}


#: Renders a refusal (status, message, errors, headers) for clients that read another shape than this JSON one.
RefusalRenderer = Callable[[int, str, dict[str, list[str]] | None, dict[str, str]], Response]
_SHAPES: dict[str, RefusalRenderer] = {}


def shape_refusals(prefix: str, render: RefusalRenderer) -> None:
    """Answer every refusal under the path ``prefix`` with ``render`` (ODK Collect's /key/ reads only XML)."""
    _SHAPES[prefix] = render


def refusal_shape(path: str) -> RefusalRenderer | None:
    """The one place that decides an error's shape by path: the renderer registered for it, or None for JSON."""
    for prefix, render in _SHAPES.items():
        if path.startswith(prefix):
            return render
    return None


def wsgi_refusal(environ: dict[str, Any], status: int, message: str) -> Response | None:
    """For the body guard (server/middleware.py), before Flask has a request: the shaped answer, or None."""
    render = refusal_shape(environ.get("PATH_INFO", ""))
    if render is None:
        return None
    with force_language(language_before_app(environ)):
        return render(status, translate_known(message), None, {})


def error_response(status: int, code: str, message: str, errors: dict[str, list[str]] | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> Response:
    render = refusal_shape(request.path) if has_request_context() else None
    if render is not None:
        return render(status, message, errors, headers or {})
    body = error_body(code, message, errors, getattr(g, "request_id", None), **extra)
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as ``{"field.path": [...]}``; list indexes become ``[i]``."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix or "_schema"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for sub, items in flatten_messages(value, path).items():
                out.setdefault(sub, []).extend(items)
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "_schema"] = [translate_known(m) for m in messages]
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            for sub, items in flatten_messages(value, f"{prefix}[{index}]").items():
                out.setdefault(sub, []).extend(items)
    else:
        out[prefix or "_schema"] = [translate_known(str(messages))]
    return out


def http_exception_response(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if status == 422 and messages is not None:
        # webargs wraps by location ("json", "query"); the location is not part of the field path.
        if isinstance(messages, dict) and len(messages) == 1 and next(iter(messages)) in (
                "json", "query", "form", "files", "headers", "view_args"):
            messages = next(iter(messages.values()))
        return error_response(422, "invalid", _("The request has invalid fields."),
                              flatten_messages(messages))
    message = translate_known(error.description) if error.description else _("Request failed.")
    headers = {}
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
        message = _("Use one of: %(methods)s.", methods=", ".join(error.valid_methods))
    if status == 413:
        limit = current_app.config.get("MAX_BODY_BYTES")
        message = _("The request body is larger than the limit of %(limit)s bytes.", limit=limit)
    return error_response(status, HTTP_CODES.get(status, "error"), message, headers=headers)


def storage_error_response(error: StorageError) -> Response:
    if isinstance(error, StoreUnavailable):
        log.warning("store unavailable: %s", error)
        return error_response(503, "unavailable", _("The data store is not answering; try again shortly."),
                              headers={"Retry-After": "5"})
    if isinstance(error, WriteConflict | UniqueViolation):
        return error_response(409, "conflict", str(error))
    if isinstance(error, SchemaError):
        log.exception("storage schema error")
    return unhandled_response(error)


def unhandled_response(error: BaseException) -> Response:
    log.error("unhandled error", exc_info=error)
    return error_response(500, "internal_error",
                          _("Something went wrong on the server. Quote the request id when reporting it."))


def register_error_handlers(app: Flask) -> None:
    """Every non-2xx answer goes through here, so all of them share one shape."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.code, error.message, error.errors, error.headers, **error.extra)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return http_exception_response(error)

    @app.errorhandler(StorageError)
    def _storage_error(error: StorageError) -> Response:
        return storage_error_response(error)

    @app.errorhandler(DocumentFormatError)
    def _old_record(error: DocumentFormatError) -> Response:
        # Start-up folds every older record again (server/upgrade.py); one met later was restored
        # under a running server, and a restart upgrades it.
        log.error("record stored in an older format: %s", error)
        return error_response(503, "unavailable", _("Part of the store is in an older format; restart the server "
                              "to upgrade it."), headers={"Retry-After": "30"})

    @app.errorhandler(Exception)
    def _unhandled(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return http_exception_response(error)
        return unhandled_response(error)
