"""Two real kunjung servers (two processes, two stores) on loopback: a hall that works a week offline,
simulated phones (server/client), and the hall's link cut in the middle of a round."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from http_helpers import PASSWORD
from media_helpers import MEDIA_FORM
from PIL import Image
from sync_helpers import HOUSEHOLD_FORM, VILLAGE

from server.client import DeviceClient, HttpTransport, Session
from server.client.attachments import Outbox, describe

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CuttableLink:
    """A TCP proxy standing for the hall's internet: ``down`` refuses every connection, and
    ``cut_after(n)`` lets ``n`` more bytes go upstream and then drops every connection mid-stream."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.budget: int | None = None
        self.cuts = 0
        self.outbound = 0  # bytes that went upstream, all connections together
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, count: int) -> None:
        with self.lock:
            self.budget = count

    def _drop_all(self) -> None:
        for sock in self.open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        try:
            while True:
                data = source.recv(4096)
                if not data:
                    break
                if outbound:
                    with self.lock:
                        self.outbound += len(data)
                        if self.budget is not None:
                            if len(data) >= self.budget:
                                sink.sendall(data[:self.budget])
                                self.budget, self.down = None, True
                                self.cuts += 1
                                self._drop_all()
                                return
                            self.budget -= len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            self._drop_all()


class Node:
    """One kunjung server process with its own store, set up through the CLI."""

    def __init__(self, tmp: Path, name: str, **settings: str):
        self.dir = tmp / name
        self.dir.mkdir()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KUNJUNG_")}
        self.env.update({"KUNJUNG_DATABASE_URL": f"sqlite:///{self.dir}/kunjung.db",
                         "KUNJUNG_SECRET_KEY_FILE": str(self.dir / "secret_key"),
                         "KUNJUNG_LOAD_LIBRARY_FORMS": "false", "KUNJUNG_LOG_LEVEL": "WARNING", **settings})
        self.process: subprocess.Popen | None = None
        self.cli("init")

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        # python -m, not the kunjung script: the code of this checkout, as the servers run it (gunicorn's cwd).
        done = subprocess.run([str(BIN / "python"), "-m", "server.cli", *args], input=stdin, text=True,
                              env=self.env, cwd=ROOT, capture_output=True, timeout=120, check=False)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def user(self, name: str, role: str, *villages: str) -> None:
        args = ["create-user", name, "--role", role, "--password-stdin"]
        for village in villages:
            args += ["--village", village]
        self.cli(*args, stdin=PASSWORD + "\n")

    def start(self, *extra: str, context: ssl.SSLContext | None = None) -> None:
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--worker-class",
             "gthread", "--threads", "4", *extra, "server.wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, (self.dir / "server.log").read_text(errors="replace")
            try:
                with urllib.request.urlopen(self.url + "/health/ready", timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
            self.log.close()

    def status(self) -> dict:
        return json.loads(self.cli("relay", "status", "--json").stdout)

    def households(self, username: str) -> dict[str, dict]:
        session = Session(HttpTransport(self.url), username, PASSWORD)
        session.login()
        items, after = [], None
        while True:
            query = {"village": VILLAGE, "limit": 1000, **({"after": after} if after else {})}
            page = session.request("GET", "/api/v1/households", query=query).json()
            items += page["items"]
            after = page["next"]
            if after is None:
                return {item["id"]: item["fields"] for item in items}


def wait_for(condition, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_week_offline_arrives_upstream_after_one_reconnect_cut_mid_round(tmp_path):
    central = Node(tmp_path, "central")
    central.user("admin", "admin")
    central.user("ani", "officer", VILLAGE)
    central.user("dewi", "officer", VILLAGE)
    central.user("supervisor", "supervisor", "32.04.05")
    form = tmp_path / "form.json"
    form.write_text(json.dumps(HOUSEHOLD_FORM))
    central.cli("import-form", str(form), "--publish", "--assign-all")
    token = central.cli("relay", "credential", "--name", "balai", "--village", VILLAGE).stdout.strip().splitlines()[-1]
    central.start()
    link = CuttableLink(central.port)
    hall = Node(tmp_path, "hall", KUNJUNG_RELAY_INTERVAL_SECONDS="1")
    try:
        hall.cli("relay", "init", "--upstream", f"http://127.0.0.1:{link.port}", "--credential", token)
        hall.user("operator", "admin")  # the hall's own admin, to read its households
        link.down = True  # the hall's internet goes for the week
        hall.start()
        phones = [DeviceClient(Session(HttpTransport(hall.url), name, PASSWORD, device_id=f"phone-{name}"))
                  for name in ("ani", "dewi")]
        for phone in phones:
            phone.login()
        households = [str(uuid.uuid4()) for _ in range(12)]
        for day in range(7):
            for n, phone in enumerate(phones):
                for household in households[n::2]:
                    phone.edit(household_id=household, village=VILLAGE,
                               writes={"head_name": f"Kepala {household[:4]} hari {day}", "notes": phone.device_id})
                report = phone.push()
                assert not report.rejected, report.rejected
        made = sum(len(phone.events) for phone in phones)
        assert made == 7 * 12
        status = hall.status()
        assert status["waiting_up"] == made
        assert status["last_error"]["code"] == "unreachable"
        # The link comes back but drops again part-way through the first round's upload.
        link.cut_after(40_000)
        link.down = False
        wait_for(lambda: link.cuts == 1, "the link to drop mid-round")
        link.down = False
        admin = Session(HttpTransport(central.url), "admin", PASSWORD)
        admin.login()

        def hall_seen_centrally() -> dict:
            return admin.request("GET", "/api/v1/relay/halls").json()["items"][0]

        wait_for(lambda: hall_seen_centrally()["received_events"] == made, "the week to go up")
        assert hall.status()["waiting_up"] == 0
        at_central = central.households("supervisor")
        assert len(at_central) == len(households)
        assert at_central == hall.households("operator")
        # A phone that syncs with the central server directly; its edit reaches the hall's phones.
        direct = DeviceClient(Session(HttpTransport(central.url), "ani", PASSWORD, device_id="phone-ani-2"))
        direct.login()
        direct.pull()
        direct.edit(household_id=households[0], village=VILLAGE, writes={"notes": "dari pusat"})
        assert not direct.push().rejected

        def arrived() -> bool:
            phones[1].pull()
            return phones[1].record(households[0]).get("notes") == "dari pusat"

        wait_for(arrived, "the central edit to reach a phone at the hall")
        assert central.households("supervisor") == hall.households("operator")
        assert hall_seen_centrally()["last_contact_at"]
        assert hall_seen_centrally()["received_events"] == made
    finally:
        hall.stop()
        central.stop()
        link.close()


def _local_certificate_authority(where: Path) -> tuple[Path, Path, Path]:
    """A CA of the hall's own and a certificate it signed for 127.0.0.1 (as mkcert or openssl would make)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Balai Desa CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=balai.lan", "-keyout", "hall.key",
            "-out", "hall.csr")
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:balai.lan\n")
    openssl("x509", "-req", "-in", "hall.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.cnf", "-out", "hall.pem")
    return where / "ca.pem", where / "hall.pem", where / "hall.key"


@pytest.mark.slow
def test_phones_reach_the_hall_over_https_with_the_halls_own_certificate_authority(tmp_path):
    ca, certificate, key = _local_certificate_authority(tmp_path)
    hall = Node(tmp_path, "hall-tls", KUNJUNG_RELAY_BACKGROUND="false")
    hall.user("ani", "officer", VILLAGE)
    form = tmp_path / "form.json"
    form.write_text(json.dumps(HOUSEHOLD_FORM))
    hall.cli("import-form", str(form), "--publish", "--assign-all")
    hall.url = f"https://127.0.0.1:{hall.port}"
    trusting = ssl.create_default_context(cafile=str(ca))
    hall.start("--certfile", str(certificate), "--keyfile", str(key), context=trusting)
    try:
        phone = DeviceClient(Session(HttpTransport(hall.url, ssl_context=trusting), "ani", PASSWORD,
                                     device_id="phone-ani"))
        phone.login()
        phone.edit(household_id=str(uuid.uuid4()), village=VILLAGE, writes={"head_name": "Siti"})
        assert not phone.push().rejected
        # A phone that has not installed the hall's CA certificate is refused before it sends a password.
        with pytest.raises(ssl.SSLError):
            HttpTransport(hall.url, ssl_context=ssl.create_default_context()).send("GET", "/health/live")
    finally:
        hall.stop()


def _noisy_photo(where: Path) -> Path:
    """A house-front photo of about a megabyte (noise does not compress), on the phone's storage."""
    path = where / "rumah.jpg"
    Image.frombytes("RGB", (1000, 700), os.urandom(1000 * 700 * 3)).save(path, "JPEG", quality=95)
    return path


@pytest.mark.slow
def test_a_photo_taken_at_the_hall_while_central_is_down_arrives_byte_exact_through_a_cut_mid_file(tmp_path):
    """And a photo taken by a phone that syncs with central directly comes down to the hall."""
    central = Node(tmp_path, "central")
    central.user("admin", "admin")
    central.user("ani", "officer", VILLAGE)
    central.user("supervisor", "supervisor", "32.04.05")
    form = tmp_path / "media-form.json"
    form.write_text(json.dumps(MEDIA_FORM))
    central.cli("import-form", str(form), "--publish", "--assign-all")
    token = central.cli("relay", "credential", "--name", "balai", "--village", VILLAGE).stdout.strip().splitlines()[-1]
    central.start()
    link = CuttableLink(central.port)
    hall = Node(tmp_path, "hall", KUNJUNG_RELAY_INTERVAL_SECONDS="1")
    try:
        hall.cli("relay", "init", "--upstream", f"http://127.0.0.1:{link.port}", "--credential", token)
        link.down = True  # central is out of reach while the officer works
        hall.start()
        phone = Session(HttpTransport(hall.url), "ani", PASSWORD, device_id="phone-ani")
        phone.login()
        photo_file = _noisy_photo(tmp_path)
        photo = photo_file.read_bytes()
        visit_id = str(uuid.uuid4())
        local = describe(visit_id, "foto_rumah", str(photo_file), media_type="image/jpeg")
        visit = {"id": visit_id, "type": "visit", "device_id": "phone-ani",
                 "hlc": f"{int(time.time() * 1000):013d}-0001", "form_id": "verifikasi_foto", "form_version": "1",
                 "village": VILLAGE,
                 "household_id": str(uuid.uuid4()), "answers": {"head_name": "Siti", "foto_rumah": "rumah.jpg"},
                 "attachments": [local.entry()],
                 "geotag": {"lat": -6.93, "lon": 107.675, "accuracy_m": 6, "captured_at": "2026-11-22T03:00:00Z"}}
        pushed = phone.request("POST", "/api/v1/sync/push", payload={"device_id": "phone-ani", "events": [visit]})
        assert pushed.json()["results"][0]["status"] == "applied", pushed.json()
        outbox = Outbox(phone)
        outbox.add(local)
        assert outbox.upload_all([visit_id]) == 1  # the hall holds the photo; central does not
        status = hall.status()
        assert (status["waiting_up"], status["files_waiting_up"]) == (1, 1)
        # The link comes back and drops again in the middle of the photo's bytes.
        link.cut_after(20_000 + len(photo) // 2)
        link.down = False
        wait_for(lambda: link.cuts == 1, "the link to drop mid-file")
        after_cut = link.outbound
        link.down = False
        supervisor = Session(HttpTransport(central.url), "supervisor", PASSWORD)
        supervisor.login()

        def photo_at_central() -> bytes | None:
            reply = supervisor.request("GET", f"/api/v1/visits/{visit_id}/attachments/foto_rumah", expect=(200, 404))
            return reply.body if reply.status == 200 else None

        wait_for(lambda: photo_at_central() is not None, "the photo to reach central")
        assert photo_at_central() == photo  # byte-exact
        # What went up after the cut is the rest of the photo (and a few small requests), not all of it again.
        assert link.outbound - after_cut < len(photo) - 200_000
        shown = supervisor.request("GET", f"/api/v1/visits/{visit_id}").json()
        assert "attachments_missing" not in [flag["code"] for flag in shown["flags"]]
        wait_for(lambda: hall.status()["files_waiting_up"] == 0, "the hall to see the photo went up")
        assert hall.status()["files_refused"] == []
        # Down: a phone that syncs with central directly takes a photo; a supervisor at the hall sees it.
        direct = Session(HttpTransport(central.url), "ani", PASSWORD, device_id="phone-ani-2")
        direct.login()
        other_file = tmp_path / "depan.jpg"
        Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3)).save(other_file, "JPEG", quality=90)
        other_id = str(uuid.uuid4())
        other = describe(other_id, "foto_rumah", str(other_file), media_type="image/jpeg")
        made_centrally = {**visit, "id": other_id, "device_id": "phone-ani-2", "household_id": str(uuid.uuid4()),
                          "hlc": f"{int(time.time() * 1000):013d}-0002", "attachments": [other.entry()]}
        pushed = direct.request("POST", "/api/v1/sync/push", payload={"device_id": "phone-ani-2",
                                                                      "events": [made_centrally]})
        assert pushed.json()["results"][0]["status"] == "applied", pushed.json()
        outbox = Outbox(direct)
        outbox.add(other)
        assert outbox.upload_all([other_id]) == 1
        at_hall = Session(HttpTransport(hall.url), "supervisor", PASSWORD)
        at_hall.login()  # with the password central set: its hash came down

        def photo_at_hall() -> bytes | None:
            reply = at_hall.request("GET", f"/api/v1/visits/{other_id}/attachments/foto_rumah", expect=(200, 404))
            return reply.body if reply.status == 200 else None

        wait_for(lambda: photo_at_hall() is not None, "the central photo to reach the hall")
        assert photo_at_hall() == other_file.read_bytes()
        assert hall.status()["files_waiting_down"] == 0
    finally:
        hall.stop()
        central.stop()
        link.close()
