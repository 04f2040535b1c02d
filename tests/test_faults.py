"""Faults a server meets on a bad day: killed mid-push, store unreachable, client gone mid-upload, two servers."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from http_helpers import PASSWORD, make_user

from forms.library import library_form
from server import create_app
from server.storage import open_store
from server.store import COLLECTIONS, get_store, raw_store
from server.villages import import_villages, read_geojson_file
from sync import Record

ROOT = Path(__file__).resolve().parent.parent
VILLAGE = "32.04.05.2001"  # Cileunyi Kulon in server/data/sample_villages.geojson
FORM_ID = "verval_keluarga"
FORM_VERSION = library_form(FORM_ID)["settings"]["version"]

pytestmark = pytest.mark.slow
SECRET = "kunjung-faults-secret-that-is-long-enough-0123456789"


def make_app(path: Path, **overrides: Any) -> Any:
    """An app on ``path``/kunjung.db with cheap password hashing, as tests/conftest.py makes them; made here
    because ``import conftest`` finds whichever conftest module was collected first."""
    return create_app({"DATABASE_URL": f"sqlite:///{path}/kunjung.db", "SECRET_KEY": SECRET,
                       "SECRET_KEY_FILE": str(path / "secret_key"), "LOAD_LIBRARY_FORMS": False, "TESTING": True,
                       "PASSWORD_HASH_MEMORY_KIB": 1024, "PASSWORD_HASH_TIME_COST": 1, **overrides})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """gunicorn as ./scripts/serve runs it (gthread workers), on the test's store, on 127.0.0.1 only."""

    def __init__(self, tmp_path: Path, workers: int = 2):
        self.tmp_path = tmp_path
        self.workers = workers
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"

    def start(self) -> Gunicorn:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUNJUNG_")}
        env.update({"KUNJUNG_DATABASE_URL": f"sqlite:///{self.tmp_path}/kunjung.db",
                    "KUNJUNG_SECRET_KEY": SECRET, "KUNJUNG_SECRET_KEY_FILE": str(self.tmp_path / "secret_key"),
                    "KUNJUNG_LOAD_LIBRARY_FORMS": "false"})
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
             "--worker-class", "gthread", "--threads", "4", "--graceful-timeout", "5", "--access-logfile", "-",
             "server.wsgi:app"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.process.returncode}: {self.output()}")
            try:
                if self.call("GET", "/health/ready")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"gunicorn did not become ready: {self.output()}")

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once: nothing gets to clean up."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, path: str, body: bytes | None = None, token: str | None = None,
             timeout: float = 60) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, json.loads(data) if data else {}

    def login(self, username: str, device_id: str) -> str:
        status, body = self.call("POST", "/api/v1/auth/login", json.dumps(
            {"username": username, "password": PASSWORD, "device_id": device_id}).encode())
        assert status == 200, body
        return body["access_token"]


@pytest.fixture
def prepared(tmp_path):
    """A store with the shipped forms, the sample villages, and officers for the village; no app left open."""
    app = make_app(tmp_path, LOAD_LIBRARY_FORMS=True)
    try:
        with app.app_context():
            report = import_villages(get_store(), read_geojson_file(ROOT / "server/data/sample_villages.geojson"))
            assert report.counts["imported"] == 6
        for name in ("ani", "citra", "dewi", "eka"):
            make_user(app, name, "officer", [VILLAGE])
        make_user(app, "admin", "admin")
    finally:
        raw_store(app).close()
    return tmp_path


@pytest.fixture
def servers():
    started: list[Gunicorn] = []
    yield started
    for server in started:
        server.stop()


def _store(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path}/kunjung.db", COLLECTIONS)
    store.ensure_schema()
    return store


class Phone:
    """What a device keeps: its id, its clock and the events it has not yet seen acknowledged."""

    def __init__(self, device_id: str):
        self.device_id = device_id
        self.counter = 0

    def hlc(self) -> str:
        self.counter += 1
        return f"{int(time.time() * 1000) - 60_000:013d}-{self.counter % 10_000:04d}"

    def visit(self, n: int, members: int = 4) -> dict:
        rows = [{"_id": str(uuid.uuid4()), "member_name": f"Anggota {k}", "sex": "1" if k % 2 else "2"}
                for k in range(members)]
        return {"id": str(uuid.uuid4()), "type": "visit", "device_id": self.device_id, "hlc": self.hlc(),
                "form_id": FORM_ID, "form_version": FORM_VERSION, "village": VILLAGE,
                "household_id": str(uuid.uuid4()),
                "geotag": {"lat": -6.93, "lon": 107.675, "accuracy_m": 7, "captured_at": "2026-11-22T03:00:00Z"},
                "started_at": "2026-11-22T02:40:00Z", "ended_at": "2026-11-22T03:00:00Z",
                "answers": {"head_name": f"Kepala {n}", "address": f"RT 00{n % 9} RW 002", "members": rows,
                            "floor_area": 30 + n % 40, "notes": "x" * (n % 200)}}

    def edit(self, household_id: str, writes: dict) -> dict:
        return {"id": str(uuid.uuid4()), "type": "household_edit", "device_id": self.device_id,
                "hlc": self.hlc(), "household_id": household_id, "village": VILLAGE, "set": writes}

    def body(self, events: list[dict]) -> bytes:
        return json.dumps({"device_id": self.device_id, "hlc": self.hlc(), "events": events}).encode()


def _counts(tmp_path: Path) -> dict[str, int]:
    store = _store(tmp_path)
    try:
        return {name: store.count(name) for name in ("events", "visits", "households")}
    finally:
        store.close()


def _stored_event_ids(tmp_path: Path) -> list[str]:
    conn = sqlite3.connect(tmp_path / "kunjung.db")
    try:
        return [row[0] for row in conn.execute("SELECT id FROM c_events")]
    finally:
        conn.close()


# -- SIGKILL in the middle of a large push ---------------------------------------------------------------------

def test_a_server_killed_mid_push_keeps_every_event_exactly_once_after_the_retry(prepared, servers):
    phone = Phone("phone-ani")
    first = [phone.visit(n) for n in range(200)]
    timed = [phone.visit(n) for n in range(200, 400)]
    large = [phone.visit(n) for n in range(400, 1400)]  # the most one push may carry
    server = Gunicorn(prepared, workers=1).start()
    servers.append(server)
    token = server.login("ani", phone.device_id)
    for batch in (first, timed):
        began = time.perf_counter()
        status, reply = server.call("POST", "/api/v1/sync/push", phone.body(batch), token)
        assert status == 200
        assert {r["status"] for r in reply["results"]} == {"applied"}
    # A fifth of the large push's expected time: the kill lands inside it, however fast the server is.
    kill_after = time.perf_counter() - began
    first = first + timed
    sent, outcome = threading.Event(), {}

    def push_large() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.request("POST", "/api/v1/sync/push", body=phone.body(large),
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            sent.set()
            outcome["status"] = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            outcome["error"] = exc
        finally:
            sent.set()
            conn.close()

    pusher = threading.Thread(target=push_large)
    pusher.start()
    wal = prepared / "kunjung.db-wal"
    written = wal.stat().st_mtime_ns
    assert sent.wait(30)
    # Kill the moment the push's unit of work first writes to the WAL (a transaction half on disk),
    # or, failing that, four fifths of the way through its expected time.
    deadline = time.perf_counter() + 4 * kill_after
    while time.perf_counter() < deadline and wal.stat().st_mtime_ns == written:
        time.sleep(0.002)
    server.kill()
    pusher.join(30)
    assert "status" not in outcome, "the push finished before the kill; the test did not hit the middle"
    assert isinstance(outcome["error"], (ConnectionError, http.client.RemoteDisconnected))
    after_kill = _counts(prepared)
    # One unit of work per push: either none of the batch is stored or all of it, never part.
    assert after_kill["events"] in (400, 1400), after_kill
    assert after_kill["visits"] == after_kill["events"] == after_kill["households"]

    server = Gunicorn(prepared, workers=1).start()
    servers.append(server)
    # The device saw no answer, so it still holds the batch and sends it again, then (having lost
    # its acknowledgements too) the first one as well.
    status, retried = server.call("POST", "/api/v1/sync/push", phone.body(large), token)
    assert status == 200, retried
    expected = "duplicate" if after_kill["events"] == 1400 else "applied"
    assert [r["status"] for r in retried["results"]] == [expected] * len(large)
    status, again = server.call("POST", "/api/v1/sync/push", phone.body(first), token)
    assert [r["status"] for r in again["results"]] == ["duplicate"] * len(first)

    ids = _stored_event_ids(prepared)
    assert len(ids) == len(set(ids))
    assert set(ids) == {event["id"] for event in first + large}
    assert _counts(prepared) == {"events": 1400, "visits": 1400, "households": 1400}


# -- the store unreachable -------------------------------------------------------------------------------------

def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0
    body = response.get_json()
    assert body["code"] == "unavailable"
    assert set(body) >= {"code", "message", "errors", "request_id"}


def test_a_locked_store_answers_503_with_retry_after_and_the_device_resends_later(tmp_path):
    app = make_app(tmp_path, LOAD_LIBRARY_FORMS=True, STORE_OPTIONS={"timeout": 0.2})
    try:
        make_user(app, "ani", "officer", [VILLAGE])
        client = app.test_client()
        phone = Phone("phone-ani")
        token = client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD,
                                                        "device_id": phone.device_id}).get_json()["access_token"]
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        events = [phone.visit(n) for n in range(20)]
        blocker = sqlite3.connect(tmp_path / "kunjung.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock (a backup, a stuck writer)
        try:
            body = phone.body(events)
            for _ in range(2):  # the device tries again; the store is still busy
                _assert_unavailable(client.post("/api/v1/sync/push", data=body, headers=auth))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert _counts(tmp_path)["events"] == 0
        reply = client.post("/api/v1/sync/push", data=phone.body(events), headers=auth).get_json()
        assert [r["status"] for r in reply["results"]] == ["applied"] * len(events)
        assert _counts(tmp_path) == {"events": 20, "visits": 20, "households": 20}
    finally:
        raw_store(app).close()


def test_an_unreachable_store_answers_503_until_it_returns_and_nothing_is_lost(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    seeded = make_app(data, LOAD_LIBRARY_FORMS=True)
    try:
        make_user(seeded, "ani", "officer", [VILLAGE])
        phone = Phone("phone-ani")
        token = seeded.test_client().post("/api/v1/auth/login", json={
            "username": "ani", "password": PASSWORD, "device_id": phone.device_id}).get_json()["access_token"]
    finally:
        raw_store(seeded).close()
    # The store's directory is reached through a link that points nowhere: an unmounted disk.
    link = tmp_path / "mounted"
    link.symlink_to(tmp_path / "not-mounted")
    app = make_app(tmp_path, DATABASE_URL=f"sqlite:///{link}/kunjung.db")
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        events = [phone.visit(n) for n in range(10)]
        _assert_unavailable(client.get("/health/ready"))
        _assert_unavailable(client.post("/api/v1/sync/push", data=phone.body(events), headers=auth))
        _assert_unavailable(client.post("/api/v1/auth/login", json={"username": "ani", "password": PASSWORD}))
        assert client.get("/health/live").status_code == 200
        assert not (tmp_path / "not-mounted").exists()

        replacement = tmp_path / "mounted.new"
        replacement.symlink_to(data)
        os.replace(replacement, link)  # the disk is back
        assert client.get("/health/ready").status_code == 200
        reply = client.post("/api/v1/sync/push", data=phone.body(events), headers=auth).get_json()
        assert [r["status"] for r in reply["results"]] == ["applied"] * len(events)
    finally:
        raw_store(app).close()
    assert _counts(data) == {"events": 10, "visits": 10, "households": 10}


# -- a client gone mid-upload ----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_client_that_disconnects_mid_upload_leaves_nothing_half_applied(prepared, servers, encoding):
    phone = Phone("phone-ani")
    server = Gunicorn(prepared, workers=1).start()
    servers.append(server)
    token = server.login("ani", phone.device_id)
    events = [phone.visit(n) for n in range(300)]
    body = phone.body(events)
    if encoding == "gzip":
        body = gzip.compress(body)
    for cut in (len(body) // 2, len(body) - 1):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head = (f"POST /api/v1/sync/push HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Encoding: {encoding}\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            sock.sendall(head + body[:cut])
            sock.shutdown(socket.SHUT_WR)  # and the phone walks out of coverage
    # The server has finished with both requests once its access log shows them answered.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and server.output().count('"POST /api/v1/sync/push HTTP/1.1"') < 2:
        time.sleep(0.05)
    answered = [line for line in server.output().splitlines() if '"POST /api/v1/sync/push HTTP/1.1"' in line]
    assert len(answered) == 2, server.output()
    assert all(' 400 ' in line for line in answered), answered
    assert server.call("GET", "/health/ready")[0] == 200
    assert _counts(prepared) == {"events": 0, "visits": 0, "households": 0}
    status, reply = server.call("POST", "/api/v1/sync/push", phone.body(events), token)
    assert status == 200
    assert [r["status"] for r in reply["results"]] == ["applied"] * len(events)
    assert _counts(prepared) == {"events": 300, "visits": 300, "households": 300}
    assert "Traceback" not in server.output()


# -- two server processes on one SQLite file ---------------------------------------------------------------------

def test_two_servers_on_one_sqlite_file_pushing_at_once_lose_nothing(prepared, servers):
    one, two = Gunicorn(prepared).start(), Gunicorn(prepared).start()
    servers.extend([one, two])
    names = ["ani", "citra", "dewi", "eka"]
    phones = [Phone(f"phone-{name}") for name in names]
    tokens = {(p.device_id, s.port): s.login(name, p.device_id) for name, p in zip(names, phones, strict=True)
              for s in (one, two)}
    shared = [str(uuid.uuid4()) for _ in range(30)]  # households every phone edits, through both servers
    batches = {p.device_id: [[p.visit(n) for n in range(k * 50, k * 50 + 50)]
                             + [p.edit(h, {"address": f"{p.device_id} batch {k}"}) for h in shared[k * 10:k * 10 + 10]]
                             for k in range(3)] for p in phones}
    replies: dict[tuple[str, int, int], list[str]] = {}
    failures: list[str] = []

    def send(phone: Phone, server: Gunicorn, k: int) -> None:
        try:
            status, reply = server.call("POST", "/api/v1/sync/push", phone.body(batches[phone.device_id][k]),
                                        tokens[(phone.device_id, server.port)])
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{phone.device_id} -> {server.port}: {exc!r}")
            return
        if status != 200:
            failures.append(f"{phone.device_id} -> {server.port}: {status} {reply}")
            return
        replies[(phone.device_id, server.port, k)] = [r["status"] for r in reply["results"]]

    # Every batch goes to both servers at the same moment (a phone retrying through a second address).
    threads = [threading.Thread(target=send, args=(phone, server, k))
               for k in range(3) for phone in phones for server in (one, two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    for phone in phones:
        for k in range(3):
            pair = zip(replies[(phone.device_id, one.port, k)], replies[(phone.device_id, two.port, k)], strict=True)
            assert all(sorted(p) == ["applied", "duplicate"] for p in pair), (phone.device_id, k)

    sent = [event for batches_of in batches.values() for batch in batches_of for event in batch]
    ids = _stored_event_ids(prepared)
    assert len(ids) == len(set(ids)) == len(sent)
    assert set(ids) == {event["id"] for event in sent}
    store = _store(prepared)
    try:
        assert store.count("visits") == 4 * 150
        assert store.count("households") == 4 * 150 + len(shared)
        # A lost update would leave a shared household with fewer heads than phones that wrote it.
        for household_id in shared:
            record = Record.from_document(store.get("households", household_id)["record"])
            heads = record.fields["address"].heads
            assert sorted(w.stamp.split("/")[1] for w in heads) == sorted(p.device_id for p in phones)
        seqs = [doc["seq"] for doc in store.iterate("households")]
        assert len(seqs) == len(set(seqs))
    finally:
        store.close()
