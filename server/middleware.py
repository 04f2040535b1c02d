"""WSGI layer in front of Flask: the body-size limit and gzip request bodies.

It runs before routing and authentication so that an oversized body is answered 413
without being read (CONTRACT.md, "Order of checks"), and so that a gzip body is
decompressed against a bound rather than trusted.
"""

from __future__ import annotations

import io
import json
import uuid
import zlib
from collections.abc import Callable, Iterable
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _json_error(start_response: StartResponse, status: str, code: str, message: str,
                request_id: str) -> Iterable[bytes]:
    body = json.dumps({"code": code, "message": message, "errors": {}, "request_id": request_id}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("X-Request-ID", request_id), ("Connection", "close")])
    return [body]


class RequestBodyGuard:
    """Refuse bodies over ``max_body`` bytes and inflate gzip bodies up to ``max_inflated`` bytes."""

    def __init__(self, app: Callable[..., Any], max_body: int, max_inflated: int):
        self.app = app
        self.max_body = max_body
        self.max_inflated = max_inflated

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request_id = uuid.uuid4().hex
        environ.setdefault("kunjung.request_id", request_id)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _json_error(start_response, "400 Bad Request", "bad_request",
                               "Content-Length is not a number.", request_id)
        if length > self.max_body:
            return _json_error(start_response, "413 Request Entity Too Large", "too_large",
                               f"The request body is larger than the limit of {self.max_body} bytes.",
                               request_id)
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding in ("", "identity"):
            return self.app(environ, start_response)
        if encoding != "gzip":
            return _json_error(start_response, "415 Unsupported Media Type", "unsupported_media_type",
                               "Only gzip request bodies are accepted (Content-Encoding: gzip).", request_id)
        compressed = self._read(environ, length)
        if compressed is None:
            return _json_error(start_response, "413 Request Entity Too Large", "too_large",
                               f"The request body is larger than the limit of {self.max_body} bytes.",
                               request_id)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(compressed, self.max_inflated + 1)
        except zlib.error:
            return _json_error(start_response, "400 Bad Request", "bad_request",
                               "The body is not valid gzip.", request_id)
        if len(body) > self.max_inflated or inflater.unconsumed_tail:
            return _json_error(start_response, "413 Request Entity Too Large", "too_large",
                               f"The body inflates past the limit of {self.max_inflated} bytes.", request_id)
        if not inflater.eof:
            return _json_error(start_response, "400 Bad Request", "bad_request",
                               "The gzip body is truncated.", request_id)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_CONTENT_ENCODING", None)
        return self.app(environ, start_response)

    def _read(self, environ: Environ, length: int) -> bytes | None:
        stream = environ["wsgi.input"]
        if length:
            return stream.read(length)
        # Chunked upload without a length: read one byte past the limit to detect excess.
        data = stream.read(self.max_body + 1)
        return None if len(data) > self.max_body else data
