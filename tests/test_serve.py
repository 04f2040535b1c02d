"""End to end through ./scripts/serve: gunicorn answers, a user made with the CLI logs in, data and
tokens survive a restart."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Server:
    def __init__(self, env):
        self.env = env
        self.url = f"http://127.0.0.1:{env['KUNJUNG_PORT']}"
        self.process = None

    def start(self):
        self.log = open(Path(self.env["KUNJUNG_SECRET_KEY_FILE"]).parent / "serve.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen([str(ROOT / "scripts" / "serve")], cwd=ROOT, env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited with {self.process.returncode}: {self.output()}")
            try:
                if _request(self.url + "/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        pytest.fail(f"serve did not become ready: {self.output()}")

    def output(self):
        return (Path(self.env["KUNJUNG_SECRET_KEY_FILE"]).parent / "serve.log").read_text(errors="replace")

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        self.log.close()


@pytest.fixture
def serve_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUNJUNG_")}
    env.update({
        "KUNJUNG_DATABASE_URL": f"sqlite:///{tmp_path}/kunjung.db",
        "KUNJUNG_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        "KUNJUNG_PORT": str(_free_port()),
        "KUNJUNG_WORKERS": "2",
        "KUNJUNG_LOAD_LIBRARY_FORMS": "false",
    })
    return env


def test_serve_answers_and_keeps_data_across_a_restart(serve_env):
    server = Server(serve_env)
    server.start()
    try:
        assert "kunjung is serving at http://127.0.0.1:" in server.output()
        made = subprocess.run([str(ROOT / ".venv" / "bin" / "kunjung"), "create-user", "admin", "--role", "admin",
                               "--password-stdin"], input="a long admin password\n", text=True,
                              env=serve_env, capture_output=True, check=False)
        assert made.returncode == 0, made.stderr
        status, body = _request(server.url + "/api/v1/auth/login",
                                {"username": "admin", "password": "a long admin password"})
        assert status == 200
        token = body["access_token"]
        assert _request(server.url + "/api/v1/users", token=token)[0] == 200
        villages = subprocess.run([str(ROOT / ".venv" / "bin" / "kunjung"), "import-villages",
                                   str(ROOT / "server" / "data" / "sample_villages.geojson")],
                                  text=True, env=serve_env, capture_output=True, check=False)
        assert villages.returncode == 0, villages.stdout + villages.stderr
        status, listed = _request(server.url + "/api/v1/villages", token=token)
        assert status == 200
        listed = listed["items"]
        assert len(listed) == 6
        assert all(v["has_boundary"] for v in listed)
        # every access-log line names the request id the answer carried
        time.sleep(0.5)
        assert re.search(r'"GET /api/v1/villages HTTP/1.1" 200 .* request_id=[0-9a-f]{32}', server.output())
    finally:
        server.stop()

    server = Server(serve_env)
    server.start()
    try:
        status, users = _request(server.url + "/api/v1/users", token=token)
        assert status == 200, users
        assert [u["username"] for u in users] == ["admin"]
        status, error = _request(server.url + "/no/such/path")
        assert status == 404
        assert error["code"] == "not_found"
    finally:
        server.stop()
