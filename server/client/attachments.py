"""A device's files of visits: named in the visit event, uploaded resumably (tus), deleted once the server holds them.

A phone keeps each file until the server holds it: it pushes the visit (whose ``attachments`` name the
files by question path, SHA-256, size, media type and name), uploads each file with tus (``POST`` then
``PATCH`` chunks; after a cut, ``HEAD`` gives the offset to go on from), and deletes its copy only when
the pull's ``attachments_missing`` no longer lists it (docs/protocol.md, "Files of visits").
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .session import ClientError, Session

UPLOADS_PATH = "/api/v1/uploads"
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = 256 * 1024
MAX_RESUMES = 50


@dataclass
class LocalFile:
    """A file a visit names, as the device keeps it until the server holds it."""

    visit_id: str
    path: str  # the question path
    file: str  # where the device keeps it
    sha256: str
    size: int
    media_type: str
    filename: str
    location: str | None = None  # the upload's URL once created
    uploaded: bool = False
    deleted: bool = False

    def entry(self) -> dict[str, Any]:
        """The visit event's ``attachments`` entry for this file."""
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "media_type": self.media_type,
                "filename": self.filename}


def describe(visit_id: str, question_path: str, file: str, *, media_type: str | None = None,
             filename: str | None = None) -> LocalFile:
    """A local file hashed and measured, ready to be named by a visit (streamed: memory stays flat)."""
    digest = hashlib.sha256()
    size = 0
    with open(file, "rb") as source:
        while piece := source.read(1024 * 1024):
            digest.update(piece)
            size += len(piece)
    name = filename or os.path.basename(file)
    guessed = media_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return LocalFile(visit_id, question_path, file, digest.hexdigest(), size, guessed, name)


def _metadata(values: Mapping[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


@dataclass
class Outbox:
    """The files of a device's visits not yet known to be held by the server."""

    session: Session
    chunk_size: int = CHUNK
    files: list[LocalFile] = field(default_factory=list)
    refused: list[tuple[LocalFile, str]] = field(default_factory=list)  # (file, the server's error code)

    def add(self, local: LocalFile) -> LocalFile:
        self.files.append(local)
        return local

    def upload_all(self, applied: Iterable[str]) -> int:
        """Upload every waiting file of the visits in ``applied`` (the server must know a visit before its
        files); returns how many completed. A file the server refuses is set aside in ``refused``."""
        applied = set(applied)
        done = 0
        for local in self.files:
            if local.uploaded or local.deleted or local.visit_id not in applied:
                continue
            try:
                self.upload(local)
            except ClientError as error:
                code = error.reply.code if error.reply is not None else None
                if error.reply is None or error.reply.status < 500:
                    self.refused.append((local, code or str(error.reply.status if error.reply else "")))
                    local.uploaded = True  # not sent again: the server said why
                    continue
                raise
            done += 1
        return done

    def upload(self, local: LocalFile) -> None:
        """Send one file, going on from wherever the server's copy stops."""
        offset = self._offset(local)
        for _ in range(MAX_RESUMES):
            if offset >= local.size:
                local.uploaded = True
                return
            with open(local.file, "rb") as source:
                source.seek(offset)
                piece = source.read(self.chunk_size)
            reply = self.session.request(
                "PATCH", local.location or "", label="PATCH upload", body=piece, expect=(204, 404, 409),
                headers={**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
            if reply.status == 204:
                offset = int(reply.headers.get("upload-offset", offset + len(piece)))
                continue
            if reply.status == 404:
                local.location = None  # finished or discarded meanwhile, or lost: ask afresh
            offset = self._offset(local)
        raise ClientError("PATCH upload", None, f"{local.path} did not complete in {MAX_RESUMES} resumes")

    def _offset(self, local: LocalFile) -> int:
        if local.location is not None:
            reply = self.session.request("HEAD", local.location, label="HEAD upload", headers=TUS,
                                         expect=(200, 404))
            if reply.status == 200:
                return int(reply.headers["upload-offset"])
        reply = self.session.request("POST", UPLOADS_PATH, label="POST upload", expect=(201,), headers={
            **TUS, "Upload-Length": str(local.size),
            "Upload-Metadata": _metadata({"sha256": local.sha256, "filename": local.filename,
                                          "event_id": local.visit_id, "path": local.path})})
        local.location = reply.headers["location"]
        return int(reply.headers.get("upload-offset", "0"))

    def forget_held(self, missing: Iterable[Mapping[str, Any]], applied: Iterable[str]) -> list[LocalFile]:
        """Delete the local copies the server holds: uploaded files of applied visits that the pull's
        ``attachments_missing`` no longer lists. Returns what was deleted."""
        lacking = {(m["visit_id"], m["path"]) for m in missing}
        applied = set(applied)
        gone = []
        for local in self.files:
            if local.deleted or not local.uploaded or local.visit_id not in applied:
                continue
            if (local.visit_id, local.path) in lacking or any(local is f for f, _ in self.refused):
                continue
            if os.path.exists(local.file):
                os.remove(local.file)
            local.deleted = True
            gone.append(local)
        return gone
