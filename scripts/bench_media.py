"""The files-of-visits figures of ``./scripts/bench``: tus upload speed against writing to disk, worker memory during
a large upload and an export of media, and many devices uploading photos at once (none lost or corrupted)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import random
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

CHUNK = 256 * 1024
FORM_ID = "bench_foto"
FORM = {
    "settings": {"form_id": FORM_ID, "version": "1", "title": {"id": "Foto (bench)", "en": "Photos (bench)"},
                 "default_language": "id"},
    "fields": [
        {"type": "image", "name": "foto", "label": {"id": "Foto", "en": "Photo"}, "parameters": {"max-pixels": 2048}},
        {"type": "video", "name": "video", "label": {"id": "Video", "en": "Video"}},
        {"type": "file", "name": "berkas", "label": {"id": "Berkas", "en": "File"}},
    ],
    "choices": {},
}
TUS = {"Tus-Resumable": "1.0.0"}


def _metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def photo(seed: int, width: int = 1280, height: int = 960) -> bytes:
    """A JPEG of noise (so that it does not compress away), different for every seed."""
    rng = random.Random(seed)
    small = Image.frombytes("RGB", (width // 8, height // 8), rng.randbytes(width // 8 * height // 8 * 3))
    out = io.BytesIO()
    small.resize((width, height)).save(out, "JPEG", quality=90)
    return out.getvalue()


def video(size: int) -> bytes:
    """An MP4-looking file of ``size`` bytes (its type is sniffed from the ftyp box)."""
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    return head + os.urandom(size - len(head))


def document(size: int) -> bytes:
    head = b"%PDF-1.7\n"
    return head + os.urandom(size - len(head))


class Phone:
    """One officer's device: a session, and a visit naming one file, uploaded in chunks."""

    def __init__(self, server: Any, username: str, device_id: str):
        self.session = server.session(username, device_id)
        self.device_id = device_id
        self.counter = 0

    def push_visit(self, question: str, data: bytes, filename: str, media_type: str) -> str:
        self.counter += 1
        visit_id = str(uuid.uuid4())
        hlc = f"{int(time.time() * 1000):013d}-{self.counter:04d}"
        event = {"id": visit_id, "type": "visit", "device_id": self.device_id, "hlc": hlc, "form_id": FORM_ID,
                 "form_version": "1", "village": "32.04.05.2001", "household_id": str(uuid.uuid4()),
                 "answers": {question: filename},
                 "attachments": [{"path": question, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                  "media_type": media_type, "filename": filename}]}
        reply = self.session.call("POST", "/api/v1/sync/push", payload={"device_id": self.device_id, "hlc": hlc,
                                                                          "events": [event]})
        if reply["results"][0]["status"] != "applied":
            raise RuntimeError(f"bench visit not applied: {reply['results'][0]}")
        return visit_id

    def upload(self, visit_id: str, question: str, data: bytes, filename: str, chunk: int = CHUNK) -> None:
        created = self.session.request("POST", "/api/v1/uploads", expect=(201,), headers={
            **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": _metadata(
                sha256=hashlib.sha256(data).hexdigest(), filename=filename, event_id=visit_id, path=question)})
        location, offset = created.headers["location"], int(created.headers["upload-offset"])
        view = memoryview(data)
        while offset < len(data):
            reply = self.session.request("PATCH", location, body=bytes(view[offset:offset + chunk]), expect=(204,),
                                         headers={**TUS, "Upload-Offset": str(offset),
                                                  "Content-Type": "application/offset+octet-stream"})
            offset = int(reply.headers["upload-offset"])


def _disk_baseline(workdir: Path, data: bytes, chunk: int) -> tuple[float, float]:
    """MB/s writing ``data`` to a file in ``chunk`` pieces: fsynced after each piece, the same durability
    as the upload (a tus offset acknowledged must survive a crash, so each PATCH fsyncs before it
    answers); and buffered, fsynced once at the end (what a server that may lose acknowledged bytes
    would do), reported beside it so that neither ratio hides the other."""
    rates = []
    for each in (True, False):
        path = workdir / f"baseline-{each}.bin"
        began = time.perf_counter()
        with open(path, "wb") as out:
            for at in range(0, len(data), chunk):
                out.write(data[at:at + chunk])
                if each:
                    out.flush()
                    os.fsync(out.fileno())
            out.flush()
            os.fsync(out.fileno())
        rates.append(len(data) / (time.perf_counter() - began) / 1e6)
        path.unlink()
    return rates[0], rates[1]


class _Peak:
    """The largest RSS of some processes while a block runs (VmHWM after clear_refs, else sampled)."""

    def __init__(self, status_kib: Any, pids: list[int]):
        self.status_kib, self.pids = status_kib, pids

    def __enter__(self) -> _Peak:
        self.before = {pid: self.status_kib(pid, "VmRSS") for pid in self.pids}
        self.reset = True
        for pid in self.pids:
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                self.reset = False
        self.sampled = dict(self.before)
        self.stop = threading.Event()

        def sample() -> None:
            while not self.stop.wait(0.02):
                for pid in self.pids:
                    with contextlib.suppress(OSError, RuntimeError):
                        self.sampled[pid] = max(self.sampled[pid], self.status_kib(pid, "VmRSS"))

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        peaks = {pid: max(self.sampled[pid], self.status_kib(pid, "VmHWM") if self.reset else 0) for pid in self.pids}
        growth = {pid: peaks[pid] - self.before[pid] for pid in self.pids}
        worst = max(self.pids, key=lambda pid: growth[pid])
        self.result = {"rss_before_mb": round(self.before[worst] / 1024, 1),
                       "peak_mb": round(peaks[worst] / 1024, 1), "growth_mb": round(growth[worst] / 1024, 1)}


def media_figures(workdir: Path, quick: bool) -> list[Any]:
    """The four figures of files of visits, against a gunicorn of their own."""
    from scripts import bench as core

    mb = 1024 * 1024
    upload_size, video_size, devices = (5 * mb, 40 * mb, 10) if quick else (20 * mb, 200 * mb, 50)
    db = workdir / "media.db"
    officers = [(f"petugas-foto-{n:02d}", "officer", ["32.04.05.2001"]) for n in range(devices)]
    core.make_store(db, core.PASSWORD, [("admin-media", "admin", []), ("petugas-media", "officer",
                                                                        ["32.04.05.2001"]),
                                        ("pengawas-media", "supervisor", ["32.04.05"]), *officers],
                    cheap_hashes=True)
    figures = []
    with core.Server(workdir, db, core.PASSWORD) as server:
        admin = server.session("admin-media")
        admin.call("POST", "/api/v1/forms", payload=FORM, expect=(201,))
        admin.call("POST", f"/api/v1/forms/{FORM_ID}/versions/1/publish")
        admin.call("PUT", f"/api/v1/forms/{FORM_ID}/assignment", payload={"all": True})
        phone = Phone(server, "petugas-media", "phone-media")

        # 1. one file in 256 KB chunks against writing the same bytes to disk. On a shared 2-core box
        # the disk's fsync time swings by 2x within a minute, so the upload and the baseline are
        # measured in turns, several times, and the medians compared (one run, same moments).
        data = document(upload_size)
        phone.upload(phone.push_visit("berkas", data[:CHUNK], "warm.pdf", "application/pdf"), "berkas",
                     data[:CHUNK], "warm.pdf")  # both workers' code paths warm
        rates, synced_rates, plain_rates, cpu_per_mb = [], [], [], []
        for turn in range(1 if quick else 5):
            varied = data[:-8] + turn.to_bytes(8, "big")  # another file each turn: nothing is deduplicated
            visit = phone.push_visit("berkas", varied, f"dokumen-{turn}.pdf", "application/pdf")
            cpu_before = server.cpu_seconds()
            began = time.perf_counter()
            phone.upload(visit, "berkas", varied, f"dokumen-{turn}.pdf")
            rates.append(upload_size / (time.perf_counter() - began) / 1e6)
            cpu_per_mb.append((server.cpu_seconds() - cpu_before) * 1000 / (upload_size / mb))
            synced, plain = _disk_baseline(workdir, varied, CHUNK)
            synced_rates.append(synced)
            plain_rates.append(plain)
        rate, synced, plain = (statistics.median(values) for values in (rates, synced_rates, plain_rates))
        figures.append(core.Figure(
            "media_upload", f"upload of {upload_size // mb} MB in 256 KB tus chunks", round(rate, 1), "MB/s",
            round(synced, 1), "the same 256 KB writes to disk, fsync at each acknowledged offset "
            f"(buffered, one fsync: {plain:.1f} MB/s, ratio {rate / plain:.3f}); medians of {len(rates)} turns",
            round(rate / synced, 3),
            {"bytes": upload_size, "chunk": CHUNK, "disk_fsync_each_mb_s": round(synced, 1),
             "disk_fsync_once_mb_s": round(plain, 1), "ratio_to_fsync_once": round(rate / plain, 3),
             "turns_mb_s": [round(value, 1) for value in rates],
             "turns_disk_fsync_each_mb_s": [round(value, 1) for value in synced_rates],
             "worker_cpu_ms_per_mb": round(statistics.median(cpu_per_mb), 2)}))

        # 2. worker memory while a large video arrives in one PATCH
        movie = video(video_size)
        visit = phone.push_visit("video", movie, "kunjungan.mp4", "video/mp4")
        with _Peak(core._status_kib, server.worker_pids()) as peak:
            phone.upload(visit, "video", movie, "kunjungan.mp4", chunk=video_size)
        memory = peak.result
        figures.append(core.Figure(
            "media_upload_memory", f"worker memory, {video_size // mb} MB video upload", memory["growth_mb"],
            "MB growth (peak)", memory["rss_before_mb"], "MB RSS before the upload",
            round(memory["growth_mb"] / memory["rss_before_mb"], 3), {**memory, "bytes": video_size}))
        del movie

        # 3. many devices uploading photos at once: every stored file equals the sent one
        phones = [Phone(server, username, f"phone-foto-{n:02d}") for n, (username, _, _) in enumerate(officers)]
        photos = [photo(n) for n in range(devices)]
        visits = [p.push_visit("foto", photos[n], f"rumah-{n}.jpg", "image/jpeg") for n, p in enumerate(phones)]
        errors: list[str] = []

        def send(n: int) -> None:
            try:
                phones[n].upload(visits[n], "foto", photos[n], f"rumah-{n}.jpg", chunk=64 * 1024)
            except Exception as exc:  # noqa: BLE001 (counted as lost)
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

        alone_began = time.perf_counter()
        extra = phones[0].push_visit("foto", photos[0], "sendiri.jpg", "image/jpeg")
        phones[0].upload(extra, "foto", photos[0], "sendiri.jpg", chunk=64 * 1024)
        alone = time.perf_counter() - alone_began
        threads = [threading.Thread(target=send, args=(n,)) for n in range(devices)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        crowd = time.perf_counter() - began
        supervisor = server.session("pengawas-media")
        lost = corrupted = 0
        for n, visit_id in enumerate(visits):
            reply = supervisor.request("GET", f"/api/v1/visits/{visit_id}/attachments/foto", expect=(200, 404))
            if reply.status != 200:
                lost += 1
            elif hashlib.sha256(reply.body).hexdigest() != hashlib.sha256(photos[n]).hexdigest():
                corrupted += 1
        rate = devices / crowd
        figures.append(core.Figure(
            "media_concurrent_photos", f"{devices} devices uploading photos at once", round(rate, 2), "photos/s",
            round(1 / alone, 2), "1 device alone, photos/s", round(rate / (1 / alone), 3),
            {"devices": devices, "lost": lost, "corrupted": corrupted, "errors": errors[:5],
             "photo_bytes_mean": round(sum(map(len, photos)) / devices), "seconds": round(crowd, 2)}))

        # 4. worker memory while the CSV zip of every visit and its files streams out
        with _Peak(core._status_kib, server.worker_pids()) as peak:
            reply = supervisor.request("GET", "/api/v1/exports/visits.csv.zip")
        memory = peak.result
        figures.append(core.Figure(
            "media_export_memory", f"worker memory, export of {len(reply.body) // mb} MB with media",
            memory["growth_mb"], "MB growth (peak)", memory["rss_before_mb"], "MB RSS before the export",
            round(memory["growth_mb"] / memory["rss_before_mb"], 3), {**memory, "export_bytes": len(reply.body)}))
    return figures


def media_goals(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed goals of issue 15, each with what was reached."""
    out = []
    upload = figures.get("media_upload")
    if upload:
        out.append({"goal": f"upload in 256 KB chunks vs disk ({upload.details['bytes'] // 2**20} MB)",
                    "target": ">= 0.5 of 256 KB disk writes with an fsync at each acknowledged offset",
                    "reached": f"{upload.ratio:.2f} of fsync-per-chunk disk writes "
                               f"({upload.details['ratio_to_fsync_once']:.2f} of buffered writes)",
                    "met": upload.ratio >= 0.5})
    memory = figures.get("media_upload_memory")
    if memory:
        out.append({"goal": f"worker memory during a video upload ({memory.details['bytes'] // 2**20} MB)",
                    "target": "< 50 MB growth", "reached": f"{memory.value:.1f} MB", "met": memory.value < 50})
    crowd = figures.get("media_concurrent_photos")
    if crowd:
        lost, corrupted = crowd.details["lost"], crowd.details["corrupted"]
        out.append({"goal": f"lost / corrupted photos ({crowd.details['devices']} devices)", "target": "0 / 0",
                    "reached": f"{lost} / {corrupted}", "met": lost == 0 and corrupted == 0})
    export = figures.get("media_export_memory")
    if export:
        out.append({"goal": "worker memory, CSV zip export with media", "target": "< 50 MB growth",
                    "reached": f"{export.value:.1f} MB", "met": export.value < 50})
    return out
