"""Files of visits: the blob interface and its backends, attachments, resumable uploads; wired to the app here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from .store import BlobError, BlobInfo, BlobMismatch, BlobNotFound, BlobStore

__all__ = ["BlobError", "BlobInfo", "BlobMismatch", "BlobNotFound", "BlobStore", "blob_store", "blobs_beside",
           "check_upload_sharing", "open_blob_store", "restore_blobs", "upload_body_limit"]

EXTENSION = "kunjung.blobs"
UPLOADS_PREFIX = "/api/v1/uploads/"
RELAY_UPLOADS_PREFIX = "/api/v1/relay/uploads/"  # a hall sending up its phones' files (server/relay/files.py)


def _sqlite_file(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return Path(path) if path and path != ":memory:" else None
    return None


def blob_directory(config: dict[str, Any]) -> Path | None:
    """Where the disk backend keeps blobs, or None for GridFS (a MongoDB store without BLOB_DIR)."""
    if config.get("BLOB_DIR"):
        return Path(config["BLOB_DIR"])
    db = _sqlite_file(config.get("DATABASE_URL") or "")
    return db.with_name(db.name + "-blobs") if db is not None else None


def check_upload_sharing(config: dict[str, Any]) -> None:
    """Refuse to start several app hosts whose blobs (and so the partials of uploads under way) would
    each be on their own disk: a PATCH reaching another host than the POST would find no upload, and
    a resumed one would restart. GridFS is reached by every host; a blob folder must be one volume."""
    from ..config import ConfigError
    from ..i18n import gettext

    hosts = int(config.get("APP_HOSTS") or 1)
    if hosts > 1 and blob_directory(config) is not None and not config.get("BLOB_DIR_SHARED"):
        raise ConfigError(gettext(
            "KUNJUNG_APP_HOSTS is %(hosts)s, but files and uploads under way are kept in a folder on the local "
            "disk: store them in MongoDB (GridFS: leave KUNJUNG_BLOB_DIR unset), or set KUNJUNG_BLOB_DIR to a "
            "volume every app host mounts and KUNJUNG_BLOB_DIR_SHARED=true (docs/scaling.md, Uploads on "
            "several hosts)", hosts=hosts))


def open_blob_store(config: dict[str, Any], store: Any) -> BlobStore:
    """The blob backend that goes with the event store: files on disk beside SQLite, GridFS in MongoDB."""
    directory = blob_directory(config)
    if directory is not None:
        from .disk import DiskBlobStore

        return DiskBlobStore(directory)
    from .gridfs import GridFSBlobStore

    return GridFSBlobStore(store.db)


def blob_store(app: Flask | None = None, store: Any = None) -> BlobStore:
    """The app's blob store, opened on first use (with ``store``, the event store's start-up hooks
    open it on the store they are given, which is not ready for others yet)."""
    from ..store import get_store

    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    blobs = app.extensions.get(EXTENSION)
    if blobs is None:
        store = store if store is not None else get_store(app)
        blobs = app.extensions.setdefault(EXTENSION, open_blob_store(app.config, store))
    return blobs  # type: ignore[no-any-return]


def blobs_beside(backup: str) -> str:
    """The folder of attachment files that goes with a backup of the store at ``backup``."""
    return f"{backup}-blobs"


def restore_blobs(source: BlobStore, target: BlobStore) -> int:
    """Copy into ``target`` every blob of ``source`` it lacks; returns how many."""
    from .store import ChunkReader

    restored = 0
    for blob in source.list():
        if not target.exists(blob.sha256):
            target.put(ChunkReader(source.chunks(blob.sha256)), blob.sha256)
            restored += 1
    return restored


def upload_body_limit(app: Flask) -> Callable[[dict[str, Any]], int | None]:
    """The body limit of an upload's PATCH (its handler reads no more than the upload still lacks), for
    the request body guard; None for every other request, which keeps the general limit."""
    def limit(environ: dict[str, Any]) -> int | None:
        if environ.get("REQUEST_METHOD") == "PATCH" and str(environ.get("PATH_INFO", "")).startswith(
                (UPLOADS_PREFIX, RELAY_UPLOADS_PREFIX)):
            from .attachments import MediaLimits

            return MediaLimits.from_config(app.config).largest
        return None

    return limit
