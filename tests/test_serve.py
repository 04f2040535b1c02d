"""End to end through ./scripts/serve: gunicorn answers, a user made with the CLI logs in, data and
tokens survive a restart."""

from __future__ import annotations

import contextlib
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


def _first_run_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^## A first run\n.*?^```sh\n(.*?)^```", readme, re.S | re.M)
    assert found, "README.md has no shell block under 'A first run'"
    return found.group(1)


def test_the_readme_first_run_block_works_pasted_as_it_is(serve_env):
    """The block a new user pastes: set up, CLI, serve in the background, log in, push a visit, pull."""
    port = serve_env["KUNJUNG_PORT"]
    env = {**serve_env, "KUNJUNG_LOAD_LIBRARY_FORMS": "true"}  # the block pushes a visit of a shipped form
    block = _first_run_block()
    assert "127.0.0.1:8000" in block
    log_path = Path(serve_env["KUNJUNG_SECRET_KEY_FILE"]).parent / "first-run.log"
    # A file, not a pipe: the server the block leaves running keeps its output open.
    with log_path.open("w") as log:
        shell = subprocess.Popen(["bash", "-c", block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")], cwd=ROOT,
                                 env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            shell.wait(timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the block did not finish: {log_path.read_text(errors='replace')}")
        finally:
            # the block leaves the server running in the background, as a user would
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGTERM)
    output = log_path.read_text(errors="replace")
    assert shell.returncode == 0, output
    answers = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    login, push, pull = answers
    assert login["user"] == {"username": "ani", "role": "officer", "villages": ["32.04.05.2001"]}
    assert push["results"] == [{"id": "0b8f5c2e-4a51-4d3a-9b1e-6f0d2c7a9e11", "status": "applied"}]
    households = [c for c in pull["changes"] if c["type"] == "household"]
    assert [h["fields"]["head_name"]["value"] for h in households] == ["Siti Aminah"]
    assert {c["form_id"] for c in pull["changes"] if c["type"] == "form"} >= {"kunjungan_pendampingan"}
    assert pull["has_more"] is False
