"""Helpers for tests of files of visits: a form with media questions, sample files, tus requests."""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
import wave
import zipfile
from typing import Any

from http_helpers import login
from PIL import Image

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def label(text: str) -> dict[str, str]:
    return {"id": text, "en": text}


MEDIA_FORM = {
    "settings": {"form_id": "verifikasi_foto", "version": "1", "title": label("Verifikasi dengan foto"),
                 "default_language": "id"},
    "fields": [
        {"type": "text", "name": "head_name", "label": label("Nama kepala keluarga"), "save_to": "head_name"},
        {"type": "image", "name": "foto_rumah", "label": label("Foto rumah tampak depan"),
         "parameters": {"max-pixels": 1024}},
        {"type": "image", "name": "tanda_tangan", "label": label("Tanda tangan"), "appearance": "signature"},
        {"type": "audio", "name": "catatan_suara", "label": label("Catatan suara")},
        {"type": "file", "name": "dokumen", "label": label("Dokumen"), "accept": [".pdf", "application/pdf"]},
        {"type": "repeat", "name": "anggota", "label": label("Anggota"),
         "fields": [{"type": "text", "name": "nama", "label": label("Nama")},
                    {"type": "image", "name": "foto_ktp", "label": label("Foto KTP")}]},
    ],
    "choices": {},
}


def publish_media_form(client: Any) -> None:
    """Publish MEDIA_FORM to every village (as the ``users`` fixture's admin)."""
    admin = login(client, "admin")
    response = client.post("/api/v1/forms", json=MEDIA_FORM, headers=admin)
    assert response.status_code == 201, response.get_json()
    assert client.post("/api/v1/forms/verifikasi_foto/versions/1/publish", headers=admin).status_code == 200
    assert client.put("/api/v1/forms/verifikasi_foto/assignment", json={"all": True},
                      headers=admin).status_code == 200


def jpeg(width: int = 800, height: int = 600, color: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG", quality=85)
    return out.getvalue()


def png(width: int = 400, height: int = 150) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 255).save(out, "PNG")
    return out.getvalue()


def wav(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(bytes(int(8000 * seconds) * 2))
    return out.getvalue()


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "bukan foto")
    return out.getvalue()


def pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(path: str, data: bytes, filename: str, media_type: str) -> dict[str, Any]:
    return {"path": path, "sha256": sha(data), "size": len(data), "media_type": media_type, "filename": filename}


def media_visit(device: Any, household_id: str | None = None, *, answers: dict[str, Any],
                attachments: list[dict[str, Any]], village: str = "32.04.05.2001") -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
            "form_id": "verifikasi_foto", "form_version": "1", "village": village,
            "household_id": household_id or str(uuid.uuid4()), "answers": answers, "attachments": attachments,
            "geotag": {"lat": -6.93, "lon": 107.675, "accuracy_m": 6, "captured_at": "2026-11-22T03:00:00Z"}}


def metadata(**values: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


def create_upload(client: Any, headers: dict[str, str], visit_id: str, path: str, data: bytes, *,
                  digest: str | None = None, filename: str = "f.bin", length: int | None = None) -> Any:
    return client.post("/api/v1/uploads", headers={
        **headers, **TUS, "Upload-Length": str(len(data) if length is None else length),
        "Upload-Metadata": metadata(sha256=digest or sha(data), filename=filename, event_id=visit_id, path=path)})


def patch(client: Any, headers: dict[str, str], location: str, offset: int, data: bytes, *,
          declared: int | None = None) -> Any:
    """PATCH ``data`` at ``offset``; with ``declared`` a longer Content-Length, as a body cut in transit."""
    options: dict[str, Any] = {"headers": {**headers, **TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS}}
    if declared is None:
        options["data"] = data
    else:
        options["input_stream"] = io.BytesIO(data)
        options["headers"]["Content-Length"] = str(declared)
    return client.patch(location, **options)


def upload(client: Any, headers: dict[str, str], visit_id: str, path: str, data: bytes, **create: Any) -> Any:
    """Create an upload and send the whole file in one PATCH; the last reply."""
    created = create_upload(client, headers, visit_id, path, data, **create)
    assert created.status_code == 201, created.get_json()
    return patch(client, headers, created.headers["Location"], int(created.headers["Upload-Offset"]), data)
