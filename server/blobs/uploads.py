"""Resumable uploads of visits' files (tus 1.0 core and creation): the upload's life from creation to the last byte.

An upload is created for one attachment a pushed visit names, by the device that made the visit.
Its bytes go to a partial in the blob backend as they arrive (a file under the blob folder, or
chunk documents beside GridFS's) and are durable before each answer, so its offset (the partial's
size) survives a cut at any byte and a server restart, and any app host can take the next PATCH.
When the last byte arrives every check runs before anything is stored: the SHA-256, the type
sniffed from the bytes against the question's kind, the size limit, an image's pixels. A file
that fails any of them is discarded with its upload; one that passes becomes a blob (stored
once, whatever device sent the same bytes) and its attachment is marked held.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import struct
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from ..errors import ApiError
from ..eventlog import EVENTS
from ..i18n import gettext
from ..privacy.erasure import erased_files
from ..security.scope import Scope
from ..storage import Store, Writer
from ..timeutil import iso, now_utc
from .attachments import ATTACHMENTS, UPLOADS, VISITS, MediaLimits, attachment_id, hold_arrived, sent_by
from .media import SNIFF_BYTES, fits, sniff
from .store import CHUNK, BlobStore, DiscardAppend, PartialBusy, PartialNotFound, PartialOffsetMismatch

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation"
METADATA_KEYS = ("sha256", "filename", "event_id", "path")
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
MAX_METADATA = 4096


@dataclass
class Uploader:
    """Who uploads: from the token, never from the request. A village hall relaying the files of the
    visits it received (``hall``, its name; server/relay/files.py) stands in for those visits' devices."""

    username: str
    device_id: str | None
    scope: Scope
    hall: str | None = None

    def made(self, reader: Store, visit: Mapping[str, Any]) -> bool:
        """Whether this caller may upload the visit's files: the device (and officer) that made it, or
        the hall whose node received it and relayed it here."""
        if self.hall is not None:
            event = reader.get(EVENTS, visit["id"])
            return event is not None and event.get("relayed_from") == self.hall
        return visit["device_id"] == self.device_id and visit["officer"] == self.username

    def owns(self, upload: Mapping[str, Any]) -> bool:
        if self.hall is not None:
            return upload.get("hall") == self.hall
        return upload.get("hall") is None and upload["device_id"] == self.device_id \
            and upload["officer"] == self.username


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64(value)`` pairs; 400 for anything else."""
    if not header:
        return {}
    if len(header) > MAX_METADATA:
        raise ApiError(400, "bad_metadata",
                       gettext("Upload-Metadata is longer than %(limit)s characters.", limit=MAX_METADATA))
    out: dict[str, str] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if not parts[0] or not _KEY.fullmatch(parts[0]) or len(parts) > 2 or parts[0] in out:
            raise ApiError(400, "bad_metadata",
                           gettext("Upload-Metadata must be comma-separated `key base64value` pairs."),
                           {"Upload-Metadata": [gettext("bad pair %(pair)r", pair=pair.strip()[:40])]})
        try:
            value = base64.b64decode(parts[1], validate=True).decode("utf-8") if len(parts) == 2 else ""
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(400, "bad_metadata", gettext("An Upload-Metadata value is not base64 of UTF-8 text."),
                           {"Upload-Metadata": [gettext("%(key)s is not base64", key=parts[0])]}) from None
        out[parts[0]] = value
    return out


def encode_metadata(values: Mapping[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


def parse_length(value: str | None, header: str) -> int:
    if value is None or not value.isdigit() or len(value) > 16:
        raise ApiError(400, "bad_header", gettext("%(header)s must be a non-negative whole number.", header=header),
                       {header: [gettext("required, digits only")]})
    return int(value)


class UploadService:
    """tus uploads over one store and blob store (which keeps the partials too)."""

    def __init__(self, store: Store, blobs: BlobStore, limits: MediaLimits):
        self.store = store
        self.blobs = blobs
        self.limits = limits
        self.digests = RunningDigests()

    # -- creation ------------------------------------------------------------------------------
    def create(self, caller: Uploader, length: int, metadata: Mapping[str, str]) -> tuple[dict[str, Any], int]:
        """A new upload for the attachment the metadata names; the upload and its offset (the whole
        length when the server already holds this device's file for that visit)."""
        missing = [key for key in METADATA_KEYS if not metadata.get(key)]
        if missing:
            raise ApiError(400, "bad_metadata",
                           gettext("Upload-Metadata must carry sha256, filename, event_id and path."),
                           {f"Upload-Metadata.{key}": [gettext("is required")] for key in missing})
        if caller.device_id is None and caller.hall is None:
            raise ApiError(403, "device_required", gettext("Uploads come from the device that made the visit; log in "
                                                           "with a device_id."))
        visit = self.store.get(VISITS, metadata["event_id"])
        if visit is None or not caller.scope.covers(visit["village"]):
            raise ApiError(404, "not_found", gettext("No such visit; push the visit before its files."))
        if not caller.made(self.store, visit):
            raise ApiError(403, "not_your_visit", gettext("Only the device that made a visit uploads its files."))
        if metadata["sha256"] in erased_files(self.store):
            raise ApiError(422, "erased_file", gettext("This file was erased; it cannot be uploaded again."),
                           {"Upload-Metadata.sha256": [gettext("names an erased file")]})
        attachment = self.store.get(ATTACHMENTS, attachment_id(visit["id"], metadata["path"]))
        if attachment is None:
            raise ApiError(422, "unknown_attachment", gettext("The visit names no file at this path."),
                           {"Upload-Metadata.path": [gettext("not in the visit's attachments")]})
        if attachment.get("unlisted"):
            raise ApiError(422, "unlisted_attachment",
                           gettext("The visit's answers name this file but its attachments list does not; send a "
                                   "new version of the visit that lists it."),
                           {"Upload-Metadata.path": [gettext("not in the visit's attachments")]})
        if metadata["sha256"] != attachment["sha256"]:
            raise ApiError(422, "attachment_mismatch", gettext("The visit names another file at this path."),
                           {"Upload-Metadata.sha256": [gettext("differs from the sha256 the visit names")]})
        limit = self.limits.of(attachment["kind"])
        if length > limit:
            raise ApiError(413, "file_too_large",
                           gettext("A %(kind)s file may be at most %(limit)s bytes.", kind=attachment["kind"],
                                   limit=limit),
                           {"Upload-Length": [gettext("%(length)s bytes; the limit is %(limit)s",
                                                  length=length, limit=limit)]})
        if length != attachment["size"]:
            raise ApiError(422, "attachment_mismatch", gettext("Upload-Length differs from the size the visit names."),
                           {"Upload-Length": [gettext("the visit names %(size)s bytes", size=attachment["size"])]})
        upload = {"id": uuid.uuid4().hex, "attachment_id": attachment["id"], "visit_id": visit["id"],
                  "path": attachment["path"], "sha256": attachment["sha256"], "length": length,
                  "filename": metadata["filename"][:255], "device_id": visit["device_id"],
                  "officer": visit["officer"], "created_at": iso(now_utc()), "metadata": dict(metadata)}
        if caller.hall is not None:
            upload["hall"] = caller.hall
        if attachment.get("held"):
            return upload, length  # this device sent these bytes for this visit before: nothing to send
        # The visit's own device sent them for another visit (one this visit supersedes, say); through
        # a hall too, which relays what that device uploaded to it.
        earlier = sent_by(self.store, attachment["sha256"], visit["device_id"], visit["officer"])
        if earlier is not None and self.blobs.exists(attachment["sha256"]):
            self.store.unit_of_work(lambda tx: hold_arrived(
                tx, attachment["id"], earlier.get("stored_type") or attachment["media_type"]))
            return upload, length
        self.blobs.create_partial(upload["id"])
        self.store.insert(UPLOADS, upload)
        return upload, 0

    # -- state and appending ----------------------------------------------------------------------
    def get(self, caller: Uploader, upload_id: str) -> tuple[dict[str, Any], int]:
        """The caller's upload and its offset; 404 alike for an unknown one and another device's."""
        upload = self.store.get(UPLOADS, upload_id) if UPLOAD_ID.fullmatch(upload_id) else None
        if upload is None or not caller.owns(upload):
            raise _no_upload()
        partial = self.blobs.partial_info(upload_id)
        if partial is None:
            attachment = self.store.get(ATTACHMENTS, upload["attachment_id"])
            offset = upload["length"] if attachment and attachment.get("held") else 0
            if offset == 0:
                self.blobs.create_partial(upload_id)  # lost with a crash mid-finish, or swept: send it again
        else:
            offset = partial.size
            if offset >= upload["length"]:
                # Every byte arrived but the server stopped before storing the file: store it now, or a
                # client seeing the whole length would never send another byte.
                self.finish(upload)
        return upload, offset

    def append(self, caller: Uploader, upload_id: str, offset: int, body: BinaryIO) -> int:
        """Append the request body at ``offset`` (409 unless it is the upload's offset); returns the new
        offset. The bytes that arrived stay even when the body is cut short. The last byte runs the
        checks and stores the file (or discards the upload and raises)."""
        upload, current = self.get(caller, upload_id)
        if offset != current:
            raise _offset_mismatch(current)
        if current >= upload["length"]:
            return current
        remaining = upload["length"] - current
        digest = self.digests.take(upload_id, current)
        sent = 0

        def pieces() -> Iterator[bytes]:
            nonlocal sent
            while True:
                piece = body.read(min(CHUNK, remaining - sent + 1))
                if not piece:
                    return
                if sent + len(piece) > remaining:
                    raise _TooManyBytes(remaining)
                if digest is not None:
                    digest.update(piece)
                sent += len(piece)
                yield piece

        try:
            new_offset = self.blobs.append_partial(upload_id, current, pieces())
        except _TooManyBytes as error:
            raise ApiError(400, "too_many_bytes", gettext("The body is longer than what the upload still lacks."),
                           {"Upload-Length": [gettext("%(remaining)s bytes remain",
                                                      remaining=error.remaining)]}) from None
        except PartialNotFound:  # discarded meanwhile (refused, or cleaned up)
            raise _no_upload() from None
        except PartialOffsetMismatch as error:  # another request appended meanwhile
            raise _offset_mismatch(error.size) from None
        except PartialBusy:
            raise ApiError(409, "upload_busy", gettext("Another request is appending to this upload.")) from None
        except BaseException:
            # a cut body: what arrived is kept; the running digest counts only if it matches the partial
            kept = self.blobs.partial_info(upload_id)
            if digest is not None and kept is not None and kept.size == current + sent:
                self.digests.keep(upload_id, kept.size, digest)
            raise
        if digest is not None and new_offset == current + sent:
            self.digests.keep(upload_id, new_offset, digest)
        if new_offset == upload["length"]:
            self.finish(upload)
        return new_offset

    # -- the last byte ---------------------------------------------------------------------------------
    def finish(self, upload: Mapping[str, Any]) -> None:
        """Check the complete file and store it, or discard it and raise the one error shape."""
        attachment = self.store.get(ATTACHMENTS, upload["attachment_id"])
        try:
            if attachment is None:
                raise ApiError(404, "not_found", gettext("The visit no longer names this file."))
            stored_type = self._check(upload, attachment)
            self.blobs.commit_partial(upload["id"], upload["sha256"])  # on disk a rename, not a copy
        except PartialBusy:
            # another request of this upload is finishing it: this one stores nothing, and discards nothing
            raise ApiError(409, "upload_busy", gettext("Another request is appending to this upload.")) from None
        except Exception:
            self.discard(upload)
            raise

        def unit(tx: Writer) -> None:
            hold_arrived(tx, upload["attachment_id"], stored_type)
            tx.delete(UPLOADS, upload["id"])

        self.store.unit_of_work(unit)

    def _check(self, upload: Mapping[str, Any], attachment: Mapping[str, Any]) -> str:
        digest = self.digests.take(upload["id"], upload["length"])
        head, size = self._head_and_size(upload["id"])
        # Without a running digest its bytes came through other processes (or hosts) too: read them again.
        sha256 = digest.hexdigest() if digest is not None else self.blobs.partial_sha256(upload["id"])
        if sha256 != upload["sha256"]:
            raise ApiError(422, "checksum_mismatch",
                           gettext("The bytes received do not have the sha256 the visit names; "
                                   "the upload is discarded, start a new one."),
                           {"Upload-Metadata.sha256": [gettext("the bytes have sha256 %(sha256)s",
                                                           sha256=sha256)]})
        kind = attachment["kind"]
        media_type = sniff(head)
        if not fits(kind, media_type, attachment["filename"], attachment.get("accept_types") or (),
                    attachment.get("accept_extensions") or ()):
            raise ApiError(415, "wrong_media_type",
                           gettext("The file's bytes are %(media_type)s, which a %(kind)s question does not take.",
                                   media_type=media_type, kind=kind),
                           {"path": [gettext("%(media_type)s is not %(kind)s", media_type=media_type, kind=kind)]})
        if size > self.limits.of(kind):
            raise ApiError(413, "file_too_large", gettext("A %(kind)s file may be at most %(limit)s bytes.",
                                                          kind=kind, limit=self.limits.of(kind)))
        if kind == "image":
            with self._spooled(upload["id"]) as image:
                _check_image(image, attachment.get("max_pixels"))
        return media_type

    def _head_and_size(self, upload_id: str) -> tuple[bytes, int]:
        """The partial's first bytes (for sniffing) and its size; a missing partial is 404."""
        info = self.blobs.partial_info(upload_id)
        if info is None:
            raise _no_upload()
        head = b""
        for piece in self.blobs.partial_chunks(upload_id):
            head += piece[:SNIFF_BYTES - len(head)]
            if len(head) >= SNIFF_BYTES:
                break
        return head, info.size

    @contextlib.contextmanager
    def _spooled(self, upload_id: str) -> Iterator[IO[bytes]]:
        """The partial as a seekable file for Pillow: in memory up to a megabyte, on disk beyond."""
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as copy:
            for piece in self.blobs.partial_chunks(upload_id):
                copy.write(piece)
            copy.seek(0)
            yield copy  # type: ignore[misc]

    def discard(self, upload: Mapping[str, Any]) -> None:
        """Forget an upload and its partial."""
        self.blobs.delete_partial(upload["id"])
        self.store.delete(UPLOADS, upload["id"])


class RunningDigests:
    """The SHA-256 of each upload's bytes so far, as this process appended them: the last PATCH then
    checks the file without reading it again. An upload some of whose bytes another process (or a
    server before a restart) appended has no entry here, and is read again in full."""

    def __init__(self, most: int = 4096):
        self.most = most
        self.lock = threading.Lock()
        self.running: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> Any:
        """The digest of the upload's first ``offset`` bytes (a fresh one at 0), or None when unknown."""
        with self.lock:
            found = self.running.pop(upload_id, None)
        if found is not None and found[0] == offset:
            return found[1]
        return hashlib.sha256() if offset == 0 else None

    def keep(self, upload_id: str, offset: int, digest: Any) -> None:
        with self.lock:
            self.running[upload_id] = (offset, digest)
            while len(self.running) > self.most:  # abandoned uploads: forgotten, read again if they resume
                self.running.popitem(last=False)


class _TooManyBytes(DiscardAppend):
    """A PATCH body longer than what its upload lacks: nothing of it is kept."""

    def __init__(self, remaining: int):
        super().__init__(f"{remaining} bytes remain")
        self.remaining = remaining


def _no_upload() -> ApiError:
    return ApiError(404, "not_found", gettext("No such upload (it may have finished or been refused)."))


def _offset_mismatch(offset: int) -> ApiError:
    return ApiError(409, "offset_mismatch", gettext("Upload-Offset is not where the upload stands; ask with HEAD."),
                    {"Upload-Offset": [gettext("the upload stands at %(offset)s", offset=offset)]})


def _check_image(source: IO[bytes], max_pixels: int | None) -> None:
    """The image decodes, and its longer side is within the question's ``max-pixels``."""
    from PIL import Image

    try:
        with Image.open(source) as image:
            width, height = image.size
            image.verify()
    except Image.DecompressionBombError:
        raise ApiError(422, "too_many_pixels", gettext("The image has more pixels than the server decodes.")) from None
    except (OSError, SyntaxError, ValueError, struct.error):  # what Pillow raises for a broken file
        raise ApiError(422, "unreadable_image", gettext("The image cannot be decoded.")) from None
    if max_pixels and max(width, height) > max_pixels:
        raise ApiError(422, "too_many_pixels",
                       gettext("The image is %(width)sx%(height)s; this question takes at most "
                               "%(max_pixels)s pixels on the longer side (max-pixels).",
                               width=width, height=height, max_pixels=max_pixels),
                       {"path": [gettext("longer side %(side)s > %(max_pixels)s",
                                     side=max(width, height), max_pixels=max_pixels)]})
