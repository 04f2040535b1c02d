"""The relay figure of ``./scripts/bench``: a hall's round carrying N events upstream, beside a direct push of them.

Both sides run in this process through Flask's test client on embedded stores of their own, so the
ratio compares the server work of the two paths (the intake of relayed events, the hall's feed of
its own events, the checkpoints) and not two different transports. The goal (issue 18): a relay
round of 10,000 events at least 0.5x as fast as a direct push of the same events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from server import create_app
from server.client.transport import FlaskTransport
from server.relay.halls import create_hall
from server.relay.node import hall_node, init_hall
from server.security.passwords import passwords
from server.store import get_store, raw_store
from server.users import create_user

VILLAGE = "32.04.05.2001"
PASSWORD = "bench-relay-" + uuid.uuid4().hex
BATCH = 500
FORM = {"settings": {"form_id": "bench_rumah_tangga", "version": "1", "default_language": "id",
                     "title": {"id": "Rumah tangga", "en": "Household"}},
        "fields": [{"type": "text", "name": name, "label": {"id": name, "en": name}, "save_to": name}
                   for name in ("head_name", "address", "notes")], "choices": {}}


def _app(workdir: Path, name: str) -> Any:
    return create_app({"DATABASE_URL": f"sqlite:///{workdir}/{name}.db", "SECRET_KEY": uuid.uuid4().hex * 2,
                       "SECRET_KEY_FILE": str(workdir / f"{name}.secret"), "LOAD_LIBRARY_FORMS": False,
                       "PASSWORD_HASH_MEMORY_KIB": 1024, "PASSWORD_HASH_TIME_COST": 1, "RELAY_BACKGROUND": False,
                       "LOG_LEVEL": "WARNING"})


def _central(workdir: Path, name: str) -> Any:
    app = _app(workdir, name)
    with app.app_context():
        store = get_store(app)
        for user, role in (("admin", "admin"), ("petugas", "officer")):
            create_user(store, passwords(app), user, PASSWORD, role, [] if role == "admin" else [VILLAGE],
                        actor="bench")
    client = app.test_client()
    token = _login(client, "admin")
    for method, path, body in (("POST", "/api/v1/forms", FORM), ("POST", "/api/v1/forms/bench_rumah_tangga/versions/1/"
                                                                       "publish", None),
                               ("PUT", "/api/v1/forms/bench_rumah_tangga/assignment", {"all": True})):
        reply = client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {token}"})
        if reply.status_code not in (200, 201):
            raise RuntimeError(f"{method} {path} answered {reply.status_code}: {reply.get_data()[:300]!r}")
    return app


def _login(client: Any, username: str, device_id: str | None = None) -> str:
    body = {"username": username, "password": PASSWORD, **({"device_id": device_id} if device_id else {})}
    reply = client.post("/api/v1/auth/login", json=body)
    if reply.status_code != 200:
        raise RuntimeError(f"login answered {reply.status_code}")
    return reply.get_json()["access_token"]


def _batches(count: int, device_id: str) -> list[bytes]:
    now = int(time.time() * 1000) - count  # every HLC in the past: no clock_skew
    households = [str(uuid.uuid4()) for _ in range(max(1, count // 4))]
    events = [{"id": str(uuid.uuid4()), "type": "household_edit", "device_id": device_id,
               "hlc": f"{now + n:013d}-0000", "device_seq": n + 1, "household_id": households[n % len(households)],
               "village": VILLAGE, "set": {"head_name": f"Kepala {n}", "address": f"RT 0{n % 9} RW 01",
                                           "notes": f"kunjungan {n}"}} for n in range(count)]
    return [orjson.dumps({"device_id": device_id, "events": events[i:i + BATCH]}) for i in range(0, count, BATCH)]


def _push_all(app: Any, bodies: list[bytes], device_id: str) -> float:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {_login(client, 'petugas', device_id)}", "Content-Type": "application/json"}
    began = time.perf_counter()
    for body in bodies:
        reply = client.post("/api/v1/sync/push", data=body, headers=headers)
        results = reply.get_json()["results"]
        if reply.status_code != 200 or {r["status"] for r in results} != {"applied"}:
            raise RuntimeError(f"push not applied: {reply.get_data()[:300]!r}")
    return time.perf_counter() - began


def relay_figure(workdir: Path | None = None, *, quick: bool = False) -> dict[str, Any]:
    """``{"events", "direct_s", "relay_s", "value" (events/s by relay), "baseline" (events/s direct), "ratio"}``."""
    count = 1_000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="kunjung-bench-relay-", dir=workdir) as tmp:
        base = Path(tmp)
        device = "phone-bench-relay"
        bodies = _batches(count, device)
        direct = _central(base, "direct")
        central = _central(base, "central")
        hall = _app(base, "hall")
        try:
            direct_s = _push_all(direct, bodies, device)
            with central.app_context():
                _, token = create_hall(get_store(central), "balai-bench", [VILLAGE], actor="bench")
            link = FlaskTransport(central)
            bound = 300_000
            with hall.app_context():
                init_hall(get_store(hall), "http://central.bench", token, skew_bound_ms=bound, transport=link)
            _push_all(hall, bodies, device)  # the day at the hall (not timed)
            with hall.app_context():
                node = hall_node(get_store(hall), skew_bound_ms=bound, transport=link)
                began = time.perf_counter()
                report = node.round()
                relay_s = time.perf_counter() - began
            if report.sent_applied != count or report.refused_up:
                raise RuntimeError(f"relay round took {report.sent_applied} of {count} events")
            with central.app_context(), direct.app_context():
                same = get_store(central).count("events") == get_store(direct).count("events") == count
            if not same:
                raise RuntimeError("the relayed store does not hold what the direct push stored")
        finally:
            for application in (direct, central, hall):
                raw_store(application).close()
    return {"events": count, "direct_s": round(direct_s, 3), "relay_s": round(relay_s, 3),
            "value": round(count / relay_s, 1), "baseline": round(count / direct_s, 1),
            "ratio": round(direct_s / relay_s, 3)}


# -- files per round: visits with a photo each, hall to central ------------------------------------------
# A round carries the visits and then their photos (tus, in pieces, server/relay/files.py); the
# baseline is the same visits pushed and their photos uploaded by the phone straight to central.
PHOTOS = 50
PHOTO_FORM = {"settings": {"form_id": "bench_foto", "version": "1", "default_language": "id",
                           "title": {"id": "Foto rumah", "en": "House photo"}},
              "fields": [{"type": "text", "name": "head_name", "label": {"id": "Nama", "en": "Name"},
                          "save_to": "head_name"},
                         {"type": "image", "name": "foto_rumah", "label": {"id": "Foto", "en": "Photo"}}],
              "choices": {}}


def _photos(count: int) -> list[bytes]:
    """House-front photos of about 170 KB each (noise, so that JPEG cannot make them small)."""
    import io

    from PIL import Image

    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3)).save(buffer, "JPEG", quality=95)
        out.append(buffer.getvalue())
    return out


def _photo_visits(app: Any, photos: list[bytes], device_id: str) -> None:
    """Push one visit per photo to ``app`` and upload each photo with tus, as a phone does."""
    import base64
    import hashlib

    client = app.test_client()
    headers = {"Authorization": f"Bearer {_login(client, 'petugas', device_id)}"}
    now = int(time.time() * 1000) - len(photos)
    visits = [{"id": str(uuid.uuid4()), "type": "visit", "device_id": device_id, "hlc": f"{now + n:013d}-0000",
               "form_id": "bench_foto", "form_version": "1", "village": VILLAGE, "household_id": str(uuid.uuid4()),
               "answers": {"head_name": f"Kepala {n}", "foto_rumah": "rumah.jpg"},
               "geotag": {"lat": -6.93, "lon": 107.675, "accuracy_m": 6, "captured_at": "2026-11-22T03:00:00Z"},
               "attachments": [{"path": "foto_rumah", "sha256": hashlib.sha256(photo).hexdigest(), "size": len(photo),
                                "media_type": "image/jpeg", "filename": "rumah.jpg"}]}
              for n, photo in enumerate(photos)]
    reply = client.post("/api/v1/sync/push", json={"device_id": device_id, "events": visits}, headers=headers)
    if reply.status_code != 200 or {r["status"] for r in reply.get_json()["results"]} != {"applied"}:
        raise RuntimeError(f"photo visits not applied: {reply.get_data()[:300]!r}")
    tus = {**headers, "Tus-Resumable": "1.0.0"}
    for visit, photo in zip(visits, photos, strict=True):
        meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in (
            ("sha256", visit["attachments"][0]["sha256"]), ("filename", "rumah.jpg"), ("event_id", visit["id"]),
            ("path", "foto_rumah")))
        made = client.post("/api/v1/uploads",
                           headers={**tus, "Upload-Length": str(len(photo)), "Upload-Metadata": meta})
        location = made.headers.get("Location")
        for offset in range(0, len(photo), 256 * 1024):
            piece = photo[offset:offset + 256 * 1024]
            done = client.patch(location, data=piece, headers={**tus, "Upload-Offset": str(offset),
                                                               "Content-Type": "application/offset+octet-stream"})
            if done.status_code != 204:
                raise RuntimeError(f"upload answered {done.status_code}: {done.get_data()[:300]!r}")


def relay_files_figure(workdir: Path | None = None, *, quick: bool = False) -> dict[str, Any]:
    """``{"files", "bytes", "relay_s", "relay_cpu_s", "direct_s", "direct_cpu_s", "value" (files/s by relay),
    "baseline" (files/s pushed and uploaded directly), "ratio"}``: one round carrying visits with a photo each."""
    count = 10 if quick else PHOTOS
    photos = _photos(count)
    with tempfile.TemporaryDirectory(prefix="kunjung-bench-relay-files-", dir=workdir) as tmp:
        base = Path(tmp)
        device = "phone-bench-photos"
        direct, central, hall = _central(base, "direct"), _central(base, "central"), _app(base, "hall")
        try:
            for app in (direct, central):
                client = app.test_client()
                admin = {"Authorization": f"Bearer {_login(client, 'admin')}"}
                for method, path, body in (("POST", "/api/v1/forms", PHOTO_FORM),
                                           ("POST", "/api/v1/forms/bench_foto/versions/1/publish", None),
                                           ("PUT", "/api/v1/forms/bench_foto/assignment", {"all": True})):
                    if client.open(path, method=method, json=body, headers=admin).status_code not in (200, 201):
                        raise RuntimeError(f"{method} {path} failed")
            began, cpu = time.perf_counter(), time.process_time()
            _photo_visits(direct, photos, device)
            direct_s, direct_cpu = time.perf_counter() - began, time.process_time() - cpu
            with central.app_context():
                _, token = create_hall(get_store(central), "balai-bench", [VILLAGE], actor="bench")
            link, bound = FlaskTransport(central), 300_000
            with hall.app_context():
                init_hall(get_store(hall), "http://central.bench", token, skew_bound_ms=bound, transport=link)
            _photo_visits(hall, photos, device)  # the day at the hall (not timed)
            with hall.app_context():
                node = hall_node(get_store(hall), skew_bound_ms=bound, transport=link)
                began, cpu = time.perf_counter(), time.process_time()
                report = node.round()
                relay_s, relay_cpu = time.perf_counter() - began, time.process_time() - cpu
            if (report.sent_applied, report.files_sent, report.files_refused) != (count, count, 0):
                raise RuntimeError(f"the round took {report.sent_applied} visits and {report.files_sent} of "
                                   f"{count} photos")
            import hashlib

            from server.blobs import blob_store

            with central.app_context():
                blobs = blob_store(central)
                held = sum(1 for photo in photos if blobs.read(hashlib.sha256(photo).hexdigest()) == photo)
            if held != count:
                raise RuntimeError(f"central holds {held} of {count} photos byte-exact")
        finally:
            for application in (direct, central, hall):
                raw_store(application).close()
    return {"files": count, "bytes": sum(len(p) for p in photos), "relay_s": round(relay_s, 3),
            "relay_cpu_s": round(relay_cpu, 3), "direct_s": round(direct_s, 3), "direct_cpu_s": round(direct_cpu, 3),
            "value": round(count / relay_s, 1), "baseline": round(count / direct_s, 1),
            "ratio": round(direct_s / relay_s, 3)}


# -- a hall with its officers syncing at once after a day offline -------------------------------------
# The goal (issue 18): 30 officers syncing with one hall laptop at once, each with a day's work: 0 lost,
# p99 < 2 s. The hall is a real server process (gunicorn, as ./scripts/serve runs it) on its own store,
# set up from a central server in this process; the phones are DeviceClients on threads over HTTP.
ROOT = Path(__file__).resolve().parents[1]
OFFICERS = 30
DAY_OF_EDITS = 40  # a day's household edits per officer (visits write the same way into the fold)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _group_cpu_s(group: int) -> float | None:
    """CPU seconds (user + system) used so far by the processes of one process group (the hall's
    gunicorn master and workers), from /proc; None where there is no /proc."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a process that ended meanwhile
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _hall_process(base: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUNJUNG_")}
    env.update({"KUNJUNG_DATABASE_URL": f"sqlite:///{base}/hall.db",
                "KUNJUNG_SECRET_KEY_FILE": str(base / "hall.secret"), "KUNJUNG_LOAD_LIBRARY_FORMS": "false",
                "KUNJUNG_LOG_LEVEL": "WARNING", "KUNJUNG_RELAY_BACKGROUND": "false"})
    log = open(base / "hall.log", "wb")  # noqa: SIM115 - the process holds it until it stops
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers",
                             "2", "--worker-class", "gthread", "--threads", "8", "server.wsgi:app"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def hall_rush_figure(workdir: Path | None = None, *, quick: bool = False) -> dict[str, Any]:
    """``{"officers", "events", "lost", "requests", "p50_ms", "p99_ms", "max_ms", "wall_s", "hall_cpu_s",
    "load_average"}`` of the rush at the hall."""
    import socket
    import threading

    from server.client import TRANSPORT_ERRORS, ClientError, DeviceClient, HttpTransport, Session, Unreachable

    officers, edits = (10, 10) if quick else (OFFICERS, DAY_OF_EDITS)
    with tempfile.TemporaryDirectory(prefix="kunjung-bench-hall-", dir=workdir) as tmp:
        base = Path(tmp)
        central = _central(base, "central")
        with central.app_context():
            store = get_store(central)
            for n in range(officers):
                create_user(store, passwords(central), f"petugas{n:02d}", PASSWORD, "officer", [VILLAGE],
                            actor="bench")
            _, token = create_hall(store, "balai-bench", [VILLAGE], actor="bench")
        hall = create_app({"DATABASE_URL": f"sqlite:///{base}/hall.db", "SECRET_KEY_FILE": str(base / "hall.secret"),
                           "LOAD_LIBRARY_FORMS": False, "RELAY_BACKGROUND": False, "LOG_LEVEL": "WARNING"})
        with hall.app_context():
            init_hall(get_store(hall), "http://central.bench", token, skew_bound_ms=300_000,
                      transport=FlaskTransport(central))
        raw_store(hall).close()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        process = _hall_process(base, port)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError((base / "hall.log").read_text(errors="replace")[-2000:])
                try:
                    if HttpTransport(url, timeout=2.0).send("GET", "/health/ready").status == 200:
                        break
                except TRANSPORT_ERRORS:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the hall server did not become ready")
                time.sleep(0.2)
            latencies: list[float] = []
            lock = threading.Lock()

            def observe(_label: str, seconds: float, _status: int | None) -> None:
                with lock:
                    latencies.append(seconds)

            phones = []
            for n in range(officers):
                session = Session(HttpTransport(url, timeout=60.0), f"petugas{n:02d}", PASSWORD,
                                  device_id=f"hp-{n:02d}", observe=observe)
                session.login()
                phone = DeviceClient(session)
                households = [str(uuid.uuid4()) for _ in range(max(1, edits // 4))]
                for k in range(edits):  # the day's work, made offline
                    phone.edit(household_id=households[k % len(households)], village=VILLAGE,
                               writes={"head_name": f"Kepala {n}-{k}", "notes": f"kunjungan {k}"})
                phones.append(phone)
            latencies.clear()  # the logins were made before the rush
            start = threading.Barrier(officers)
            failures: list[str] = []

            def rush(phone: DeviceClient) -> None:
                start.wait()
                try:
                    phone.push()
                    phone.pull()
                except (ClientError, Unreachable) as exc:  # a phone that failed is reported, not hidden
                    with lock:
                        failures.append(f"{phone.device_id}: {exc}")

            threads = [threading.Thread(target=rush, args=(phone,)) for phone in phones]
            cpu_before = _group_cpu_s(process.pid)
            began = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall_s = time.perf_counter() - began
            cpu_after = _group_cpu_s(process.pid)
            made = [event.id for phone in phones for event in phone.events]
            unacked = sum(1 for phone in phones for event in phone.events if event.state != "acked")
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
            raw_store(central).close()
        held = create_app({"DATABASE_URL": f"sqlite:///{base}/hall.db", "SECRET_KEY_FILE": str(base / "hall.secret"),
                           "LOAD_LIBRARY_FORMS": False, "RELAY_BACKGROUND": False, "LOG_LEVEL": "WARNING"})
        with held.app_context():
            store = get_store(held)
            missing = sum(1 for event_id in made if store.get("events", event_id) is None)
        raw_store(held).close()
    if failures:
        raise RuntimeError("phones failed: " + "; ".join(failures[:5]))
    cpu_s = None if cpu_before is None or cpu_after is None else round(cpu_after - cpu_before, 2)
    return {"officers": officers, "events": len(made), "lost": max(missing, unacked), "requests": len(latencies),
            "p50_ms": round(_percentile(latencies, 0.5) * 1000, 1),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1), "wall_s": round(wall_s, 2),
            # the hall server's own CPU during the rush (master and workers): what the phones cost it
            "hall_cpu_s": cpu_s, "load_average": [round(x, 2) for x in os.getloadavg()]}


if __name__ == "__main__":  # pragma: no cover - ./scripts/bench --only relay is the usual way
    import json
    import sys

    quick = "--quick" in sys.argv
    if "--hall-rush" in sys.argv:
        print(json.dumps(hall_rush_figure(quick=quick), indent=2))
    elif "--files" in sys.argv:
        print(json.dumps(relay_files_figure(quick=quick), indent=2))
    else:
        print(json.dumps(relay_figure(quick=quick), indent=2))
