"""WSGI layer in front of Flask: the body-size limits, counted as the body is read, and gzip request bodies.

It runs before routing and authentication so that a body declared too large is answered 413
without being read (docs/protocol.md, "Order of checks"). A body without Content-Length
(chunked) cannot be judged up front: its bytes are counted as they are read, and reading past
the limit answers 413 at that moment. A gzip body is inflated here, its sent size counted
against ``max_body`` and its inflated size against ``max_inflated``.
"""

from __future__ import annotations

import io
import json
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge

from .i18n import translate_before_app

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
PIECE = 64 * 1024


class BodyTooLarge(RequestEntityTooLarge):
    """Raised by a bounded body stream when reading goes past the limit (Flask answers it 413)."""


#: Renders a refusal in another shape than JSON for the request's path (status, English message), or None.
RefusalShape = Callable[[Environ, int, str], Callable[[Environ, StartResponse], Iterable[bytes]] | None]


def _json_error(start_response: StartResponse, status: str, code: str, message: str,
                request_id: str, environ: Environ | None = None,
                shape: RefusalShape | None = None) -> Iterable[bytes]:
    shaped = shape(environ, int(status.split(" ", 1)[0]), message) if shape and environ is not None else None
    if shaped is not None:
        def closing(status_line: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() not in ("connection", "x-request-id")]
            return start_response(status_line, [*headers, ("X-Request-ID", request_id), ("Connection", "close")],
                                  *args)

        return shaped(environ, closing)
    if environ is not None:
        message = translate_before_app(message, environ)
    body = json.dumps({"code": code, "message": message, "errors": {}, "request_id": request_id}).encode()
    # Connection: close, because the rest of the body was not read.
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("X-Request-ID", request_id), ("Connection", "close")])
    return [body]


class BoundedInput:
    """A ``wsgi.input`` that counts what is read from it and raises BodyTooLarge past ``limit`` bytes.

    Reads are made in pieces of at most the remaining allowance plus one byte, so an endless
    body is never buffered beyond the limit.
    """

    def __init__(self, stream: Any, limit: int):
        self.stream = stream
        self.limit = limit
        self.count = 0
        self.overflowed = False

    def _take(self, data: bytes) -> bytes:
        self.count += len(data)
        if self.count > self.limit:
            self.overflowed = True
            raise BodyTooLarge(f"The request body is larger than the limit of {self.limit} bytes.")
        return data

    def _allowance(self, size: int | None) -> int:
        room = self.limit - self.count + 1
        return room if size is None or size < 0 else min(size, room)

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._take(self.stream.read(self._allowance(size)))
        parts = []
        while True:
            piece = self._take(self.stream.read(self._allowance(PIECE)))
            if not piece:
                return b"".join(parts)
            parts.append(piece)

    def readline(self, size: int | None = -1) -> bytes:
        return self._take(self.stream.readline(self._allowance(size)))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class RequestBodyGuard:
    """Refuse bodies over ``max_body`` bytes as sent and gzip bodies that inflate past ``max_inflated``."""

    def __init__(self, app: Callable[..., Any], max_body: int, max_inflated: int, *,
                 larger: Callable[[Environ], int | None] | None = None, shape: RefusalShape | None = None):
        self.app = app
        self.max_body = max_body
        # Requests that may be larger (an upload's PATCH, bounded by its own handler), by their environ.
        self.larger = larger
        self.max_inflated = max_inflated
        # Paths whose clients read another error shape (OpenRosa's XML), decided by server/errors.py.
        self.shape = shape

    def _too_large(self, start_response: StartResponse, request_id: str, limit: int | None = None,
                   environ: Environ | None = None) -> Iterable[bytes]:
        return _json_error(start_response, "413 Request Entity Too Large", "too_large",
                           f"The request body is larger than the limit of {limit or self.max_body} bytes.",
                           request_id, environ, shape=self.shape)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request_id = uuid.uuid4().hex
        environ.setdefault("kunjung.request_id", request_id)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return _json_error(start_response, "400 Bad Request", "bad_request",
                               "Content-Length is not a number.", request_id, environ, shape=self.shape)
        limit = (self.larger(environ) if self.larger is not None else None) or self.max_body
        if length > limit:
            return self._too_large(start_response, request_id, limit, environ)
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding in ("", "identity"):
            if length:
                return self.app(environ, start_response)  # the server gives no more than Content-Length
            bounded = BoundedInput(environ["wsgi.input"], limit)
            environ["wsgi.input"] = bounded

            def closing_start_response(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
                if bounded.overflowed and not any(k.lower() == "connection" for k, _ in headers):
                    headers = [*headers, ("Connection", "close")]  # the rest of the body was not read
                return start_response(status, headers, *args)

            return self.app(environ, closing_start_response)
        if encoding != "gzip":
            return _json_error(start_response, "415 Unsupported Media Type", "unsupported_media_type",
                               "Only gzip request bodies are accepted (Content-Encoding: gzip).", request_id,
                               environ, shape=self.shape)
        return self._inflate(environ, start_response, length, request_id)

    def _inflate(self, environ: Environ, start_response: StartResponse, length: int,
                 request_id: str) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        parts: list[bytes] = []
        sent = inflated = 0
        while not inflater.eof:
            want = PIECE if not length else min(PIECE, length - sent)
            piece = stream.read(want) if want > 0 else b""
            if not piece:
                break
            sent += len(piece)
            if sent > self.max_body:
                return self._too_large(start_response, request_id, environ=environ)
            data = piece
            while data and not inflater.eof:
                try:
                    out = inflater.decompress(data, self.max_inflated - inflated + 1)
                except zlib.error:
                    return _json_error(start_response, "400 Bad Request", "bad_request",
                                       "The body is not valid gzip.", request_id, environ, shape=self.shape)
                inflated += len(out)
                if inflated > self.max_inflated:
                    return _json_error(start_response, "413 Request Entity Too Large", "too_large",
                                       f"The body inflates past the limit of {self.max_inflated} bytes.",
                                       request_id, environ, shape=self.shape)
                parts.append(out)
                data = inflater.unconsumed_tail
        if not inflater.eof:
            return _json_error(start_response, "400 Bad Request", "bad_request",
                               "The gzip body is truncated.", request_id, environ, shape=self.shape)
        body = b"".join(parts)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_CONTENT_ENCODING", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)
