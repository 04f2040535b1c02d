"""HTTP basics: health, the one error shape for every failure, body limits, request ids, API docs."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import marshmallow as ma
import pytest
from http_helpers import TEST_SECRET, login

from server import api as api_package
from server.api.base import Blueprint
from server.middleware import BodyTooLarge, BoundedInput
from server.store import get_store


def assert_error_shape(response, status, code=None):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) >= {"code", "message", "errors", "request_id"}
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    if code:
        assert body["code"] == code
    return body


@pytest.fixture
def echo_app(app_factory):
    """An app with one extra JSON endpoint, to exercise the request parser and the 500 handler."""
    blp = Blueprint("echo", __name__, url_prefix="/test")

    class EchoSchema(ma.Schema):
        name = ma.fields.String(required=True)
        count = ma.fields.Integer()

    @blp.route("/echo", methods=["POST"])
    @blp.arguments(EchoSchema)
    @blp.response(200, EchoSchema)
    def echo(data):
        return data

    @blp.route("/boom")
    def boom():
        raise RuntimeError("secret internals /etc/passwd")

    api_package.BLUEPRINTS.append(blp)
    try:
        app = app_factory(MAX_BODY_BYTES=2048, MAX_DECOMPRESSED_BYTES=8192)
    finally:
        api_package.BLUEPRINTS.remove(blp)
    return app


def test_live_and_ready(client):
    assert client.get("/health/live").get_json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok"}


def test_ready_answers_503_when_the_store_is_gone(app, client):
    get_store(app).close()
    response = client.get("/health/ready")
    body = assert_error_shape(response, 503, "unavailable")
    assert response.headers["Retry-After"]
    assert "store" in body["message"]


def test_server_starts_without_its_store_and_reports_not_ready(app_factory, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    app = app_factory(DATABASE_URL=f"sqlite:///{blocker}/kunjung.db")
    client = app.test_client()
    assert client.get("/health/live").status_code == 200
    assert_error_shape(client.get("/health/ready"), 503, "unavailable")


def test_unknown_path_is_json_404(client):
    assert_error_shape(client.get("/no/such/place"), 404, "not_found")
    assert_error_shape(client.get("/api/v1/nothing"), 404, "not_found")


def test_wrong_method_is_json_405_with_allow(client):
    response = client.delete("/health/live")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_body_over_the_limit_is_413_before_anything_else(echo_app):
    client = echo_app.test_client()
    response = client.post("/test/echo", data=b"x" * 4096, content_type="text/plain")
    body = assert_error_shape(response, 413, "too_large")
    assert "2048" in body["message"]


def test_gzip_body_is_inflated(echo_app):
    client = echo_app.test_client()
    payload = gzip.compress(json.dumps({"name": "Siti", "count": 3}).encode())
    response = client.post("/test/echo", data=payload, content_type="application/json",
                           headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.get_json() == {"name": "Siti", "count": 3}


def test_gzip_bomb_is_413(echo_app):
    client = echo_app.test_client()
    bomb = gzip.compress(b"[" + b"0," * 50_000 + b"0]")
    assert len(bomb) < 2048
    body = assert_error_shape(client.post("/test/echo", data=bomb, content_type="application/json",
                                          headers={"Content-Encoding": "gzip"}), 413, "too_large")
    assert "8192" in body["message"]


@pytest.mark.parametrize(("data", "headers", "status", "code"), [
    (b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "bad_request"),
    (b"{}", {"Content-Encoding": "br"}, 415, "unsupported_media_type"),
])
def test_bad_content_encoding(echo_app, data, headers, status, code):
    response = echo_app.test_client().post("/test/echo", data=data, content_type="application/json",
                                           headers=headers)
    assert_error_shape(response, status, code)


@pytest.mark.parametrize(("data", "content_type", "status", "code"), [
    (b'{"name": "Siti"', "application/json", 400, "malformed_json"),
    (b'{"name": "Siti", "count": NaN}', "application/json", 400, "malformed_json"),
    (b'{"name": "\xff\xfe"}', "application/json", 400, "malformed_json"),
    (b'{"name": "\\ud800"}', "application/json", 400, "malformed_json"),
    (b"[" * 200 + b"]" * 200, "application/json", 400, "malformed_json"),
    (b"name=Siti", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b'{"name": "Siti"}', "text/plain", 415, "unsupported_media_type"),
    (b'{"count": "three"}', "application/json", 422, "invalid"),
    (b'["a list"]', "application/json", 422, "invalid"),
])
def test_bad_json_bodies(echo_app, data, content_type, status, code):
    response = echo_app.test_client().post("/test/echo", data=data, content_type=content_type)
    body = assert_error_shape(response, status, code)
    if status == 422 and data.startswith(b"{"):
        assert set(body["errors"]) == {"name", "count"}


def test_unhandled_error_is_500_with_request_id_and_no_details(echo_app, caplog):
    response = echo_app.test_client().get("/test/boom", headers={"X-Request-ID": "field-phone-0001"})
    body = assert_error_shape(response, 500, "internal_error")
    assert body["request_id"] == "field-phone-0001"
    assert "passwd" not in response.get_data(as_text=True)
    assert any("secret internals" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_every_response_has_a_request_id(client):
    ids = {client.get("/health/live").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert client.get("/health/live", headers={"X-Request-ID": "abc12345"}).headers["X-Request-ID"] == "abc12345"
    # an id that could forge log lines is replaced, not echoed
    forged = client.get("/health/live", headers={"X-Request-ID": "x INFO fake <script>"})
    assert forged.headers["X-Request-ID"] != "x INFO fake <script>"


def test_openapi_document_and_browsable_docs(client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/health/ready" in spec["paths"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert b"/api/docs/assets/swagger-ui-bundle.js" in docs.data
    asset = client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert asset.mimetype in ("text/javascript", "application/javascript")
    assert_error_shape(client.get("/api/docs/assets/../../setup.cfg"), 404)


# -- bodies without Content-Length (chunked) are counted as they are read ------------------------------------
def _chunked(client, data, **headers):
    """POST ``data`` as a server hands a chunked body to the app: no Content-Length, the stream ends itself."""
    return client.post("/test/echo", input_stream=io.BytesIO(data), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked", **headers},
                       environ_overrides={"wsgi.input_terminated": True})


def test_a_chunked_body_over_the_limit_is_413(echo_app):
    client = echo_app.test_client()
    body = json.dumps({"name": "x" * 4000}).encode()
    response = _chunked(client, body)
    message = assert_error_shape(response, 413, "too_large")["message"]
    assert "2048" in message
    assert response.headers["Connection"] == "close"
    small = _chunked(client, json.dumps({"name": "Siti"}).encode())
    assert small.status_code == 200
    assert small.get_json() == {"name": "Siti"}


def test_a_chunked_gzip_body_is_judged_by_its_sent_and_its_inflated_size(echo_app):
    client = echo_app.test_client()
    ok = _chunked(client, gzip.compress(json.dumps({"name": "Siti", "count": 3}).encode()),
                  **{"Content-Encoding": "gzip"})
    assert ok.status_code == 200
    sent = gzip.compress(os.urandom(3000))  # random bytes do not compress: over 2048 as sent
    assert_error_shape(_chunked(client, sent, **{"Content-Encoding": "gzip"}), 413, "too_large")
    bomb = gzip.compress(b"[" + b"0," * 50_000 + b"0]")
    body = assert_error_shape(_chunked(client, bomb, **{"Content-Encoding": "gzip"}), 413, "too_large")
    assert "8192" in body["message"]


def test_an_endless_body_is_never_read_past_the_limit():
    class Endless(io.RawIOBase):
        given = 0

        def read(self, size=-1):
            size = 1 << 20 if size is None or size < 0 else size
            self.given += size
            return b"x" * size

    stream = Endless()
    bounded = BoundedInput(stream, 10_000)
    with pytest.raises(BodyTooLarge):
        bounded.read()
    assert stream.given <= 10_001


# -- numbers Python will not read -------------------------------------------------------------------------------
def test_a_five_thousand_digit_number_is_malformed_json_even_before_login(client):
    body = b'{"username": "ani", "password": ' + b"9" * 5000 + b"}"
    response = client.post("/api/v1/auth/login", data=body, content_type="application/json")
    assert "4,300 digits" in assert_error_shape(response, 400, "malformed_json")["message"]


def test_a_five_thousand_digit_number_in_a_push_is_malformed_json(client, users):
    headers = login(client, "ani", device_id="phone-ani-0001")
    body = (b'{"device_id": "phone-ani-0001", "hlc": "1763790000000-0000", "events": [{"id": "e1", "answers": '
            b'{"members_met": ' + b"1" * 5000 + b"}}]}")
    response = client.post("/api/v1/sync/push", data=body, content_type="application/json", headers=headers)
    assert_error_shape(response, 400, "malformed_json")


# -- the same through a real gunicorn, started with the options scripts/serve uses -------------------------------
ROOT = Path(__file__).resolve().parent.parent


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUNJUNG_")}
    env.update({"KUNJUNG_DATABASE_URL": f"sqlite:///{tmp_path}/kunjung.db", "KUNJUNG_SECRET_KEY": TEST_SECRET,
                "KUNJUNG_LOAD_LIBRARY_FORMS": "false", "KUNJUNG_PORT": str(port), "KUNJUNG_WORKERS": "1",
                "KUNJUNG_MAX_BODY_BYTES": "65536"})
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:server.gunicorn_conf"], cwd=ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()


def _send_chunked(port, path, pieces):
    """A chunked POST over a plain socket; returns (status, JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for piece in pieces:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, json.loads(answer.read())


def test_a_chunked_upload_over_the_limit_is_413_through_gunicorn(gunicorn):
    opening = b'{"username": "ani", "password": "'
    pieces = [opening] + [b"x" * 16384] * 8 + [b'"}']  # 128 KiB against a limit of 64 KiB
    status, body = _send_chunked(gunicorn, "/api/v1/auth/login", pieces)
    assert status == 413
    assert body["code"] == "too_large"
    assert "65536" in body["message"]
    status, body = _send_chunked(gunicorn, "/api/v1/auth/login",
                                 [opening, b'correct horse battery", "device_id": "phone-1"}'])
    assert (status, body["code"]) == (401, "invalid_credentials")
