"""What every resource module shares: the Api and Blueprint classes, strict JSON, the error schema, compiled dumps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Request
from marshmallow.decorators import POST_DUMP, PRE_DUMP
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


# -- answers dumped by their schema, compiled -------------------------------------------------------

Dump = Callable[[Any], Any]


def compiled_dump(schema: ma.Schema) -> Dump:
    """``schema.dump`` of a dict, compiled once into plain functions: the same output for the field kinds
    below, without marshmallow's per-value machinery (a push answers 500 results, each with its flags).
    The schema stays the one description of the answer (and of the API document); TypeError at compile
    time for anything this does not reproduce exactly, so that a schema changed beyond it is noticed."""
    if (schema._hooks[PRE_DUMP] or schema._hooks[POST_DUMP] or schema.many
            or type(schema).get_attribute is not ma.Schema.get_attribute):
        raise TypeError(f"{type(schema).__name__}: dump hooks, many and own accessors are not compiled")
    parts = []
    for name, field in schema.dump_fields.items():
        attribute = field.attribute or name
        # A key missing from the dict makes marshmallow try getattr, which finds dict's own methods.
        if "." in attribute or hasattr(dict, attribute) or field.dump_default is not ma.missing:
            raise TypeError(f"{type(schema).__name__}.{name}: not compiled")
        parts.append((attribute, field.data_key or name, _compiled_value(field)))

    def dump(obj: Any) -> dict[str, Any]:
        result = {}
        for attribute, key, value_of in parts:
            if attribute in obj:
                value = obj[attribute]
                result[key] = None if value is None else value_of(value)
        return result

    return dump


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _compiled_value(field: ma.fields.Field) -> Dump:
    """What ``field._serialize`` makes of a value that is not None."""
    kind = type(field)
    if kind is ma.fields.String:
        return lambda value: value if value.__class__ is str else _text(value)
    if kind in (ma.fields.Float, ma.fields.Integer) and not field.as_string:
        return field.num_type
    if kind is ma.fields.Raw:
        return lambda value: value
    if kind is ma.fields.List:
        inner = _compiled_value(field.inner)
        return lambda value: [None if item is None else inner(item) for item in value]
    if kind is ma.fields.Nested and not field.many and field.only is None and not field.exclude:
        return compiled_dump(field.schema)
    if kind is ma.fields.Dict and field.key_field is not None and field.value_field is not None:
        key_of, value_of = _compiled_value(field.key_field), _compiled_value(field.value_field)
        return lambda value: {None if key is None else key_of(key): None if item is None else value_of(item)
                              for key, item in value.items()}
    raise TypeError(f"{kind.__name__}: not compiled")
