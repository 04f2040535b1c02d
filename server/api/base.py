"""What every resource module shares: the Api and Blueprint classes, strict JSON parsing, the error schema."""

from __future__ import annotations

from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Request
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import HTTPException

from .. import jsonio
from ..errors import ApiError, http_exception_response
from ..i18n import _


class ErrorSchema(ma.Schema):
    """The one error shape of docs/design.md §7."""

    code = ma.fields.String(required=True, metadata={"description": "stable snake_case code"})
    message = ma.fields.String(required=True)
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))
    request_id = ma.fields.String(allow_none=True)


class StrictJsonParser(FlaskParser):
    """webargs parser that answers 415 for a non-JSON body and 400 for malformed JSON,
    and refuses NaN, Infinity, invalid UTF-8 and deep nesting (jsonio)."""

    def _raw_load_json(self, req: Request) -> Any:
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        if not is_json_request(req):
            raise ApiError(415, "unsupported_media_type", _("Send the body as application/json."))
        try:
            return jsonio.loads(data)
        except jsonio.BadJSON as exc:
            raise ApiError(400, "malformed_json", str(exc)) from None


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictJsonParser()


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        return http_exception_response(error)
