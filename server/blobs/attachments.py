"""Attachments of visits: the list an event names, which of its files the server holds, downloads, thumbnails, clean-up.

A visit event names each file by question path, SHA-256, size, media type and file name. The
bytes come separately (``server/blobs/uploads.py``, tus). One ``attachments`` document per
(visit, path) says which blob answers it and whether it has arrived (``held``). Only the device
that made the visit may upload its files, so knowing another visit's hash reads nothing: a blob
is reachable only through an attachment document of a visit the reader may see.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forms import media_answers, media_question
from forms.fieldtypes import check_file_name

from ..audit import record_audit
from ..errors import ApiError
from ..i18n import N_, gettext
from ..security.scope import Scope
from ..storage import Range, Store, Writer
from ..timeutil import iso, now_utc
from .media import KINDS
from .store import SHA256, BlobNotFound, BlobStore

ATTACHMENTS = "attachments"
UPLOADS = "uploads"
FORM_FILES = "form_files"  # server/forms_registry.py: a version's files are blobs too
VISITS = "visits"
MISSING = "attachments_missing"
UNLISTED = "attachments_unlisted"
MAX_ATTACHMENTS = 50
ATTACHMENT_KEYS = frozenset({"path", "sha256", "size", "media_type", "filename"})
THUMBNAIL_PIXELS = 320


@dataclass(frozen=True)
class MediaLimits:
    """The largest file a question of each kind takes, in bytes (413 above it)."""

    image: int = 20 * 1024 * 1024
    audio: int = 100 * 1024 * 1024
    video: int = 1024 * 1024 * 1024
    file: int = 50 * 1024 * 1024

    def of(self, kind: str) -> int:
        return int(getattr(self, kind))

    @property
    def largest(self) -> int:
        return max(self.of(kind) for kind in KINDS)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MediaLimits:
        return cls(**{kind: config.get(f"MAX_{kind.upper()}_BYTES", getattr(cls, kind)) for kind in KINDS})


# -- the list an event names ----------------------------------------------------------------------
def _answer_at(answers: Mapping[str, Any], segments: list[str]) -> tuple[Any, str | None]:
    """The answer a path names in a visit's answers (repeat rows by their ``_id``), or why there is none."""
    container: Any = answers
    while len(segments) > 1:
        repeat, row_id, segments = segments[0], segments[1], segments[2:]
        rows = container.get(repeat) if isinstance(container, Mapping) else None
        row = next((r for r in rows or () if isinstance(r, Mapping) and r.get("_id") == row_id), None) \
            if isinstance(rows, list) else None
        if row is None:
            return None, f"the answers have no row {row_id} of {repeat}"
        container = row
    value = container.get(segments[0]) if isinstance(container, Mapping) else None
    if value in (None, "", [], {}):
        return None, "the question has no answer in this visit"
    return value, None


def check_attachments(definition: Any, answers: Mapping[str, Any], attachments: Any
                      ) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """The problems of an event's ``attachments`` (keyed ``attachments.<i>.<key>``), and the list as stored.

    Each entry names a media question of the form by path (``photo_rumah``, or ``anggota/<row _id>/foto``
    inside a repeat) that the visit answers, a SHA-256 (64 lowercase hex digits), the size in bytes
    (a positive integer), a media type and a file name. A path is named once. Sizes and types are
    checked against the limits when the bytes arrive, not here: a visit is never refused for a file."""
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    if not isinstance(attachments, list):
        add("attachments", "must be a list of {path, sha256, size, media_type, filename}")
        return errors, []
    if len(attachments) > MAX_ATTACHMENTS:
        add("attachments", f"at most {MAX_ATTACHMENTS} files per visit")
        return errors, []
    seen: set[str] = set()
    stored: list[dict[str, Any]] = []
    for i, entry in enumerate(attachments):
        at = f"attachments.{i}"
        if not isinstance(entry, Mapping):
            add(at, "must be an object")
            continue
        for key in sorted(set(entry) - ATTACHMENT_KEYS):
            add(f"{at}.{str(key)[:64]}", "unknown key")
        for key in sorted(ATTACHMENT_KEYS - set(entry)):
            add(f"{at}.{key}", "is required")
        path, sha256, size = entry.get("path"), entry.get("sha256"), entry.get("size")
        media_type, filename = entry.get("media_type"), entry.get("filename")
        question = None
        if not isinstance(path, str) or not 0 < len(path) <= 512 or "\x00" in path:
            add(f"{at}.path", "must be a question path")
        elif path in seen:
            add(f"{at}.path", "names a question another entry names")
        else:
            seen.add(path)
            question = media_question(definition, path)
            if question is None:
                add(f"{at}.path", "is not a photo, audio, video or file question of this form")
            else:
                _, problem = _answer_at(answers, path.split("/"))
                if problem:
                    add(f"{at}.path", problem)
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            add(f"{at}.sha256", "must be 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= 2**53:
            add(f"{at}.size", "must be the file's size in bytes, a positive integer")
        if not isinstance(media_type, str) or not 0 < len(media_type) <= 128:
            add(f"{at}.media_type", "must be a media type like image/jpeg")
        name_problem = check_file_name(filename)
        if name_problem:
            add(f"{at}.filename", name_problem)
        if question is not None and not any(key.startswith(at) for key in errors):
            stored.append({"path": path, "sha256": sha256, "size": size, "media_type": media_type,
                           "filename": filename, "kind": question.kind, "max_pixels": question.max_pixels,
                           "accept_types": list(question.media_types),
                           "accept_extensions": list(question.extensions), "held": False})
    return errors, stored


def unlisted_files(definition: Any, answers: Mapping[str, Any], listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The files the answers name that the event's ``attachments`` list does not: the server can never
    receive them (an upload is for a listed file), so the visit is flagged and the device told."""
    named = {entry["path"] for entry in listed}
    return [{"path": path, "filename": filename, "kind": question.kind}
            for path, question, filename in media_answers(definition, answers) if path not in named]


def attachment_id(visit_id: str, path: str) -> str:
    return f"{visit_id}/{path}"


def missing_flag(paths: list[str]) -> dict[str, Any]:
    return {"code": MISSING, "paths": sorted(paths),
            "message": f"{len(paths)} file(s) of this visit have not reached the server yet."}


def unlisted_flag(paths: list[str]) -> dict[str, Any]:
    return {"code": UNLISTED, "paths": sorted(paths),
            "message": N_("The answers name %(count)s file(s) the device did not list with the visit; they cannot "
                          "reach the server until the device sends a new version of the visit that lists them.")
            % {"count": len(paths)}}


def attachment_documents(visit: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``attachments`` documents a visit's list makes, written with the visit; and one for each file
    its answers name that the list does not (``unlisted``, never held: no upload can be for it)."""
    docs = [{"id": attachment_id(visit["id"], entry["path"]), "visit_id": visit["id"], "village": visit["village"],
             "device_id": visit["device_id"], "officer": visit["officer"], "held": False, "held_at": None,
             "stored_type": None, "thumbnail_sha256": None, "received_at": visit["received_at"], **entry}
            for entry in visit.get("attachments") or ()]
    for doc in docs:
        if doc["held"]:  # bytes this device sent before (files_sent_before)
            doc["held_at"] = visit["received_at"]
    docs.extend({"id": attachment_id(visit["id"], entry["path"]), "visit_id": visit["id"], "village": visit["village"],
                 "device_id": visit["device_id"], "officer": visit["officer"], "held": False, "held_at": None,
                 "stored_type": None, "thumbnail_sha256": None, "received_at": visit["received_at"], "sha256": None,
                 "size": None, "media_type": None, "unlisted": True, **entry}
                for entry in visit.get("unlisted_files") or ())
    return docs


def sent_by(reader: Store | Writer, sha256: str, device_id: str, officer: str) -> dict[str, Any] | None:
    """An attachment of any visit whose bytes this device, logged in as this officer, uploaded; or None."""
    return next((doc for doc in reader.find(ATTACHMENTS, {"sha256": sha256})
                 if doc.get("held") and doc["device_id"] == device_id and doc["officer"] == officer), None)


def files_sent_before(reader: Store | Writer, visit: dict[str, Any],
                      flags: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The visit and its flags with every listed file this same device (and officer) already uploaded
    for another visit counted as held: a superseding visit need not send its photos again. Access
    follows (device, sha256): bytes another device sent, or a file not yet arrived, count for nothing."""
    entries = visit.get("attachments") or []
    reused = False
    for entry in entries:
        earlier = sent_by(reader, entry["sha256"], visit["device_id"], visit["officer"])
        if earlier is not None:
            entry.update(held=True, stored_type=earlier.get("stored_type"))
            reused = True
    if not reused:
        return visit, flags
    missing = [entry["path"] for entry in entries if not entry.get("held")]
    flags = [flag for flag in flags if flag.get("code") != MISSING] + ([missing_flag(missing)] if missing else [])
    return visit, flags


def release_superseded(reader: Store | Writer, visit: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A visit being superseded, no longer waiting for the files of it that never arrived, and their
    ``attachments`` documents marked so (``held: None``, ``superseded: True``), for its superseder's
    writer to store: the device is no longer asked for them (pull, ``/uploads/missing``) and the visit
    loses its ``attachments_missing`` flag. The new version names what it still needs. An upload of
    one already under way may still finish (bytes over a bad link are not thrown away): the old
    version then holds it, and it counts for a later visit naming the same bytes (files sent before)."""
    entries = visit.get("attachments") or []
    waiting = [entry["path"] for entry in entries if not entry.get("held")]
    waiting += [entry["path"] for entry in visit.get("unlisted_files") or ()]
    if not waiting:
        return visit, []
    found = reader.get_many(ATTACHMENTS, [attachment_id(visit["id"], path) for path in waiting])
    released = [{**doc, "held": None, "superseded": True} for doc in found.values() if not doc.get("held")]
    entries = [{**entry, "superseded": True} if not entry.get("held") else entry for entry in entries]
    flags = [flag for flag in visit.get("flags") or () if flag.get("code") != MISSING]
    return _with_flags({**visit, "attachments": entries}, flags), released


def _with_flags(visit: dict[str, Any], flags: list[dict[str, Any]]) -> dict[str, Any]:
    return {**visit, "flags": flags, "flagged": bool(flags), "flag_codes": sorted({f["code"] for f in flags})}


def hold_arrived(tx: Writer, attachment_id: str, stored_type: str) -> None:
    """The bytes of attachment ``attachment_id`` are stored now: mark it held (see :func:`mark_held`),
    unless it is gone or another request marked it first."""
    current = tx.get(ATTACHMENTS, attachment_id)
    if current is not None and not current.get("held"):
        mark_held(tx, current, stored_type)


def mark_held(tx: Writer, attachment: Mapping[str, Any], stored_type: str) -> dict[str, Any]:
    """Record that an attachment's bytes are stored; clears the visit's ``attachments_missing`` flag
    once every file of it is held (or names the ones still missing). Returns the attachment."""
    held = tx.put(ATTACHMENTS, {**attachment, "held": True, "held_at": iso(now_utc()), "stored_type": stored_type})
    visit = tx.get(VISITS, attachment["visit_id"])
    if visit is not None:
        entries = [{**e, "held": True} if e["path"] == attachment["path"] else e
                   for e in visit.get("attachments") or ()]
        missing = [e["path"] for e in entries if not e.get("held") and not e.get("superseded")]
        flags = [f for f in visit.get("flags") or () if f.get("code") != MISSING]
        if missing:
            flags.append(missing_flag(missing))
        tx.put(VISITS, _with_flags({**visit, "attachments": entries}, flags))
    return held


def missing_for_device(store: Store, officer: str, device_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """The files of this device's visits that the server does not hold yet (a device keeps a local
    file until it is no longer listed here after its visit was applied)."""
    found = store.find(ATTACHMENTS, {"device_id": device_id, "held": False}, limit=limit)
    return [{"visit_id": doc["visit_id"], "path": doc["path"], "sha256": doc["sha256"], "size": doc["size"],
             **({"unlisted": True} if doc.get("unlisted") else {})}
            for doc in found if doc["officer"] == officer]


# -- reading ------------------------------------------------------------------------------------------
def readable_attachment(store: Store, user: Mapping[str, Any], scope: Scope, visit_id: str,
                        path: str) -> dict[str, Any]:
    """The held attachment at ``path`` of a visit the caller may see; 404 alike for an unknown visit, one
    out of scope, an unknown path and a file not arrived yet."""
    from ..visits import get_visit

    get_visit(store, user, scope, visit_id)  # 404 unless the caller may see the visit
    doc = store.get(ATTACHMENTS, attachment_id(visit_id, path))
    if doc is None or doc["visit_id"] != visit_id:
        raise ApiError(404, "not_found", gettext("This visit has no such file."))
    if not doc.get("held"):
        raise ApiError(404, "not_arrived", gettext("The file has not reached the server yet."))
    return doc


def record_download(store: Store, actor: str, doc: Mapping[str, Any], what: str) -> None:
    """Every read of a visit's file is in the audit log: attachments are personal data."""
    store.unit_of_work(lambda tx: record_audit(tx, "attachment_downloaded", actor=actor, target=doc["visit_id"],
                                               details={"path": doc["path"], "sha256": doc["sha256"],
                                                        "what": what}))


def thumbnail(store: Store, blobs: BlobStore, doc: Mapping[str, Any]) -> str:
    """The digest of the image attachment's thumbnail (JPEG, at most 320 px a side), made the first
    time it is asked for and kept in the blob store."""
    if doc.get("kind") != "image":
        raise ApiError(404, "no_thumbnail", gettext("Only photos, signatures and drawings have thumbnails."))
    made = doc.get("thumbnail_sha256")
    if made and blobs.exists(made):
        return str(made)
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(blobs.read(doc["sha256"]))) as image:
            image = ImageOps.exif_transpose(image)
            image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            if image.mode in ("RGBA", "LA", "P", "PA"):  # a signature on a transparent background: on white
                image = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
    except BlobNotFound:
        raise ApiError(404, "not_found", gettext("This visit has no such file.")) from None
    info = blobs.put_bytes(out.getvalue())

    def unit(tx: Writer) -> None:
        current = tx.get(ATTACHMENTS, doc["id"])
        if current is not None:
            tx.put(ATTACHMENTS, {**current, "thumbnail_sha256": info.sha256})

    store.unit_of_work(unit)
    return info.sha256


# -- cleaning up ------------------------------------------------------------------------------------------
@dataclass
class Collected:
    """What ``kunjung gc-attachments`` removed (or would remove, on a dry run)."""

    blobs: list[str] = field(default_factory=list)
    bytes: int = 0
    uploads: list[str] = field(default_factory=list)
    kept_young: int = 0
    partials: list[str] = field(default_factory=list)  # partials no upload names (a crash between the two)
    form_file_chunks: list[str] = field(default_factory=list)


def named(store: Store, sha256: str) -> bool:
    """Whether any attachment names the blob, as its file or its thumbnail, or any form version has
    it as one of its files (choice lists, lookups, label media live in the same blob store)."""
    return bool(store.find(ATTACHMENTS, {"sha256": sha256}, limit=1)
                or store.find(ATTACHMENTS, {"thumbnail_sha256": sha256}, limit=1)
                or store.find(FORM_FILES, {"sha256": sha256}, limit=1))


def collect_garbage(store: Store, blobs: BlobStore, *, grace_seconds: float, dry_run: bool = False,
                    discard_upload: Callable[[Mapping[str, Any]], None] | None = None,
                    clock: Callable[[], float] = time.time) -> Collected:
    """Remove blobs no attachment names that were stored more than ``grace_seconds`` ago (younger ones
    may belong to an upload whose visit is being written); uploads abandoned that long (created
    before and their partial not appended to since: one resuming over days is kept); partials no
    upload names that long (a crash between writing the two); and the legacy form file chunks no
    form file names (:func:`server.forms_registry.sweep_legacy_chunks`)."""
    from ..forms_registry import sweep_legacy_chunks

    result = Collected()
    cutoff = clock() - grace_seconds
    for blob in blobs.list():
        if named(store, blob.sha256):
            continue
        if blob.stored_at > cutoff:
            result.kept_young += 1
            continue
        result.blobs.append(blob.sha256)
        result.bytes += blob.size
        if not dry_run:
            blobs.delete(blob.sha256)
    stale_before = iso(datetime.fromtimestamp(cutoff, UTC))
    for upload in store.find(UPLOADS, {"created_at": Range(lt=stale_before)}, order_by="created_at"):
        partial = blobs.partial_info(upload["id"])
        if partial is not None and partial.touched_at > cutoff:
            continue  # still being sent, a PATCH at a time over a bad link
        result.uploads.append(upload["id"])
        if not dry_run and discard_upload is not None:
            discard_upload(upload)
    for partial in blobs.partials():
        if partial.touched_at > cutoff or store.get(UPLOADS, partial.partial_id) is not None:
            continue
        result.partials.append(partial.partial_id)
        if not dry_run:
            blobs.delete_partial(partial.partial_id)
    result.form_file_chunks = sweep_legacy_chunks(store, grace_seconds=grace_seconds, dry_run=dry_run, clock=clock)
    return result


def forget_visit_files(store: Store, blobs: BlobStore, visit_id: str) -> list[str]:
    """Erase a visit's files: its attachment documents go, then every blob (file or thumbnail) they named
    that no other attachment names. Returns the digests removed from the blob store. For erasure of
    personal data; a visit's other records are the caller's to erase."""
    docs = store.find(ATTACHMENTS, {"visit_id": visit_id})
    for doc in docs:
        store.delete(ATTACHMENTS, doc["id"])
    removed = []
    for digest in sorted({d for doc in docs for d in (doc.get("sha256"), doc.get("thumbnail_sha256")) if d}):
        if not named(store, digest) and blobs.delete(digest):
            removed.append(digest)
    return removed
