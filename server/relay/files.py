"""Files of relayed visits: their attachment lists where a visit lands, and the hall's resumable transfers of them."""

# A visit travels with its ``attachments`` list (question path, SHA-256, size, media type, name);
# where it lands, the list is checked again against the receiver's own form definition and gives
# the receiver's own attachment documents, none held: holding a file is a fact about one node's
# blob store, so the sender's ``held`` never travels, and the visit is flagged
# ``attachments_missing`` for what this node lacks until the bytes arrive.
#
# The bytes follow their events. Up: once upstream has answered for a visit the hall received,
# each of its files is queued (``relay_files``, in the same unit of work as the checkpoint) and
# sent with tus to ``/api/v1/relay/uploads`` under the hall's credential, in pieces; the upload's
# URL is saved before the first byte, so a round cut at any byte asks upstream for the offset
# (HEAD) and goes on from there. Upstream applies a device upload's rules: the SHA-256, type,
# size and pixels at the last byte, the same content-addressed store, and only the hall whose
# node received the visit (within its credential's villages) may send its files.
# Down: a visit that came from upstream queues its files the same way, and the hall asks
# ``/api/v1/relay/files/<visit>/<path>`` for them in byte ranges, appending to a partial of the
# blob store (as a phone's upload does) that survives a cut; the whole file is checked against its
# SHA-256 before it is stored. A partial left idle past gc-attachments' grace period is swept like
# an abandoned upload's, and the next round fetches that file from its first byte.

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..blobs.attachments import (
    ATTACHMENT_KEYS,
    ATTACHMENTS,
    MISSING,
    UNLISTED,
    attachment_documents,
    check_attachments,
    files_sent_before,
    hold_arrived,
    missing_flag,
    unlisted_files,
    unlisted_flag,
)
from ..blobs.store import BlobMismatch, BlobStore
from ..i18n import N_
from ..storage import Store, Writer
from ..timeutil import iso, now_utc

if TYPE_CHECKING:
    from flask import Flask

    from .node import RoundReport, Upstream

RELAY_FILES = "relay_files"
UP, DOWN = "up", "down"
WAITING, REFUSED = "waiting", "refused"
# Bytes per PATCH going up and per range coming down: a cut loses at most one piece in flight,
# and a piece is what one request holds in memory.
PIECE = 1024 * 1024
BATCH = 200
MAX_REFUSED_FILES = 200
FILE_KEYS = ("attachments", "unlisted_files")
UPLOADS_PATH = "/api/v1/relay/uploads"
FILES_PATH = "/api/v1/relay/files"


# -- where a relayed visit lands --------------------------------------------------------------------
def relayed_files(tx: Writer, definition: Any, doc: dict[str, Any], sent: Any) -> tuple[dict[str, Any],
                                                                                        list[dict[str, Any]]]:
    """The visit ``doc`` (as it is about to be stored here) with its attachment list checked against this
    node's ``definition`` and its file flags made afresh for what this node holds; and the attachment
    documents to write with it. Entries that do not check out are left out (the visit itself folds
    whatever its files are); without a definition the visit keeps the flags it came with."""
    from ..privacy.erasure import erased_files, without_erased_files  # it imports the relay

    if definition is None:
        return doc, []
    entries = [{key: entry[key] for key in ATTACHMENT_KEYS if key in entry}
               for entry in (sent if isinstance(sent, list) else []) if isinstance(entry, Mapping)]
    _, listed = check_attachments(definition, doc.get("answers") or {}, entries)
    unlisted = unlisted_files(definition, doc.get("answers") or {}, listed)
    flags = [flag for flag in doc.get("flags") or () if flag.get("code") not in (MISSING, UNLISTED)]
    if listed:
        flags.append(missing_flag([entry["path"] for entry in listed]))
    if unlisted:
        flags.append(unlisted_flag([entry["path"] for entry in unlisted]))
    doc = {key: value for key, value in doc.items() if key not in FILE_KEYS}
    if listed:
        doc["attachments"] = listed
    if unlisted:
        doc["unlisted_files"] = unlisted
    if listed:
        doc, flags = files_sent_before(tx, doc, flags)
        erased = erased_files(tx)
        if erased:
            doc, flags = without_erased_files(doc, flags, erased)
    doc.update(flags=flags, flagged=bool(flags), flag_codes=sorted({f["code"] for f in flags}))
    return doc, attachment_documents(doc)


def queue_files(tx: Writer, visit_ids: Iterable[str], direction: str) -> int:
    """Queue the files of these visits that this node holds (up) or lacks (down) for the next transfers."""
    queued = 0
    for visit_id in visit_ids:
        for attachment in tx.find(ATTACHMENTS, {"visit_id": visit_id}):
            if attachment.get("unlisted") or not attachment.get("sha256"):
                continue
            if direction == DOWN and attachment.get("held"):
                continue  # this node holds the bytes already (the same device sent them for another visit)
            queued += int(tx.insert(RELAY_FILES, {
                "id": attachment["id"], "direction": direction, "state": WAITING, "visit_id": visit_id,
                "path": attachment["path"], "sha256": attachment["sha256"], "size": attachment["size"],
                "filename": attachment.get("filename"), "location": None, "queued_at": iso(now_utc())}))
    return queued


def visits_taken(items: list[Any], results: list[Mapping[str, Any]], *, statuses: tuple[str, ...]
                 ) -> list[str]:
    """The ids of the visit items whose verdict is one of ``statuses``."""
    return [result["id"] for item, result in zip(items, results, strict=False)
            if result.get("status") in statuses and isinstance(item, Mapping)
            and isinstance(item.get("event"), Mapping) and item["event"].get("type") == "visit"]


def files_waiting(store: Store, pending_visits: Iterable[str] = ()) -> dict[str, Any]:
    """What a hall's status shows of files: how many wait to go up (queued, and those of the visits in
    ``pending_visits``, which wait for their events to go up first), how many to come down, and the
    refused ones."""
    behind = sum(1 for visit_id in pending_visits for doc in store.find(ATTACHMENTS, {"visit_id": visit_id})
                 if doc.get("sha256") and not doc.get("unlisted"))
    refused = store.find(RELAY_FILES, {"direction": UP, "state": REFUSED}, limit=MAX_REFUSED_FILES) + store.find(
        RELAY_FILES, {"direction": DOWN, "state": REFUSED}, limit=MAX_REFUSED_FILES)
    return {"files_waiting_up": store.count(RELAY_FILES, {"direction": UP, "state": WAITING}) + behind,
            "files_waiting_down": store.count(RELAY_FILES, {"direction": DOWN, "state": WAITING}),
            "files_refused": [{key: doc.get(key) for key in ("visit_id", "path", "direction", "code", "message", "at")}
                              for doc in refused]}


# -- the hall's transfers ---------------------------------------------------------------------------
@dataclass
class HallFiles:
    """Where a hall keeps files: its blob store, whose partials also hold files coming down part-way
    (so a cut download resumes from the blob backend, as a phone's upload does)."""

    blobs: BlobStore

    @classmethod
    def for_app(cls, app: Flask) -> HallFiles:
        from ..blobs import blob_store

        return cls(blob_store(app))

    @staticmethod
    def partial_id(doc: Mapping[str, Any]) -> str:
        # A partial id is 32 hex digits; tagged so it can never be an upload's id.
        return hashlib.sha256(f"relay-down:{doc['id']}".encode()).hexdigest()[:32]


class FileTransfers:
    """One round's transfers of files between a hall and upstream."""

    def __init__(self, store: Store, upstream: Upstream, files: HallFiles,
                 error: Callable[[str, str], Exception]):
        self.store = store
        self.upstream = upstream
        self.files = files
        self.error = error  # makes the RelayError that stops the round

    def _waiting(self, direction: str) -> Iterable[dict[str, Any]]:
        after = None
        while True:
            docs = self.store.find(RELAY_FILES, {"direction": direction, "state": WAITING}, after=after, limit=BATCH)
            yield from docs
            if len(docs) < BATCH:
                return
            after = docs[-1]["id"]

    def _save(self, doc: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        updated = {**doc, **fields}
        self.store.put(RELAY_FILES, updated)
        return updated

    def _refuse(self, doc: Mapping[str, Any], code: str | None, message: str | None) -> None:
        self._save(doc, state=REFUSED, code=code, message=message, at=iso(now_utc()))

    def _done(self, doc: Mapping[str, Any]) -> None:
        self.store.delete(RELAY_FILES, doc["id"])

    def _shape(self, reply: Any) -> tuple[str | None, str | None]:
        try:
            shape = reply.json() or {}
        except ValueError:
            shape = {}
        if not isinstance(shape, dict):
            return None, None
        return shape.get("code"), shape.get("message")

    def _about_the_file(self, reply: Any) -> bool:
        """Whether a refusal is about this file (kept in the status, not asked again) rather than about the
        hall or the moment (a credential revoked mid-round, another node, too many requests, a server
        error): those stop the round, and the next one tries again."""
        if not 400 <= reply.status < 500 or reply.status in (401, 408, 429):
            return False
        return not (reply.status == 403 and self._shape(reply)[0] == "hall_node_mismatch")

    def _unexpected(self, reply: Any, what: str) -> Exception:
        code, message = self._shape(reply)
        return self.error(code or f"http_{reply.status}", message or N_("upstream answered %(status)s to %(what)s")
                          % {"status": reply.status, "what": what})

    # -- up -----------------------------------------------------------------------------------------
    def send_up(self, report: RoundReport) -> None:
        for doc in list(self._waiting(UP)):
            attachment = self.store.get(ATTACHMENTS, doc["id"])
            if attachment is None:
                self._done(doc)  # the visit's files were erased here meanwhile
                continue
            if not attachment.get("held"):
                continue  # the phone has not sent it to the hall yet: a later round takes it
            if self._upload(doc):
                report.files_sent += 1
            else:
                report.files_refused += 1

    def _upload(self, doc: dict[str, Any]) -> bool:
        """Send one file, going on from wherever upstream's copy stops; False when upstream refused it."""
        from ..blobs.uploads import TUS_VERSION, encode_metadata  # it imports the relay (through erasure)

        tus = {"Tus-Resumable": TUS_VERSION}
        offset = None
        for _ in range(50):
            if doc.get("location") and offset is None:
                reply = self.upstream.raw("HEAD", doc["location"], headers=tus)
                if reply.status == 200:
                    offset = int(reply.headers.get("upload-offset", "0"))
                elif reply.status == 404:
                    doc = self._save(doc, location=None)  # finished, refused or cleaned up there: ask afresh
                else:
                    raise self._unexpected(reply, "HEAD")
            if offset is None:
                reply = self.upstream.raw("POST", UPLOADS_PATH, headers={
                    **tus, "Upload-Length": str(doc["size"]),
                    "Upload-Metadata": encode_metadata({"sha256": doc["sha256"], "filename": doc["filename"] or "file",
                                                        "event_id": doc["visit_id"], "path": doc["path"]})})
                if reply.status != 201:
                    if self._about_the_file(reply):
                        self._refuse(doc, *self._shape(reply))
                        return False
                    raise self._unexpected(reply, "POST")
                # Saved before the first byte: a cut from here on resumes this upload.
                doc = self._save(doc, location=reply.headers["location"])
                offset = int(reply.headers.get("upload-offset", "0"))
            if offset >= doc["size"]:
                self._done(doc)
                return True
            piece = self._piece(doc["sha256"], offset)
            reply = self.upstream.raw("PATCH", doc["location"], body=piece, headers={
                **tus, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
            if reply.status == 204:
                offset = int(reply.headers.get("upload-offset", offset + len(piece)))
            elif reply.status in (404, 409):
                offset = None  # ask where it stands (404: gone there, so start again)
            elif self._about_the_file(reply):
                self._refuse(doc, *self._shape(reply))  # the checks at the last byte refused the file
                return False
            else:
                raise self._unexpected(reply, "PATCH")
        raise self.error("file_stuck", N_("a file of visit %(visit)s did not go up in 50 tries")
                         % {"visit": doc["visit_id"]})

    def _piece(self, sha256: str, offset: int) -> bytes:
        parts, size = [], 0
        for chunk in self.files.blobs.chunks(sha256, start=offset):
            parts.append(chunk)
            size += len(chunk)
            if size >= PIECE:
                break
        return b"".join(parts)[:PIECE]

    # -- down ---------------------------------------------------------------------------------------
    def bring_down(self, report: RoundReport) -> None:
        for doc in list(self._waiting(DOWN)):
            attachment = self.store.get(ATTACHMENTS, doc["id"])
            if attachment is None or attachment.get("held"):
                self._done(doc)
                continue
            outcome = self._download(doc, attachment)
            if outcome is True:
                report.files_received += 1
            elif outcome is False:
                report.files_refused += 1

    def _download(self, doc: dict[str, Any], attachment: Mapping[str, Any]) -> bool | None:
        """Fetch one file in ranges after what its partial holds; None when upstream lacks it too."""
        blobs, partial_id = self.files.blobs, HallFiles.partial_id(doc)
        stored_type = attachment.get("stored_type") or attachment["media_type"]
        url = f"{FILES_PATH}/{quote(doc['visit_id'])}/{quote(doc['path'], safe='/')}"
        while True:
            info = blobs.partial_info(partial_id)
            have = info.size if info is not None else 0
            if have >= doc["size"]:
                return self._store_down(doc, attachment, partial_id, stored_type)
            end = min(doc["size"], have + PIECE) - 1
            reply = self.upstream.raw("GET", url, headers={"Range": f"bytes={have}-{end}"})
            if reply.status == 404 and self._shape(reply)[0] == "not_arrived":
                return None  # the phone has not sent it upstream yet: a later round asks again
            if reply.status not in (200, 206):
                if self._about_the_file(reply):
                    self._refuse(doc, *self._shape(reply))
                    return False
                raise self._unexpected(reply, "GET")
            stored_type = reply.headers.get("content-type") or stored_type  # what upstream sniffed
            if reply.status == 200:  # the whole file, whatever was asked: start again from it
                blobs.delete_partial(partial_id)
                have = 0
            if have == 0:
                blobs.create_partial(partial_id)
            blobs.append_partial(partial_id, have, [reply.body])

    def _store_down(self, doc: Mapping[str, Any], attachment: Mapping[str, Any], partial_id: str,
                    stored_type: str) -> bool:
        blobs = self.files.blobs
        try:
            if blobs.partial_sha256(partial_id) != doc["sha256"]:
                raise BlobMismatch(doc["sha256"])
            blobs.commit_partial(partial_id, doc["sha256"])
        except BlobMismatch:
            blobs.delete_partial(partial_id)
            self._refuse(doc, "checksum_mismatch", N_("The bytes that came down do not have the file's sha256."))
            return False

        def unit(tx: Writer) -> None:
            hold_arrived(tx, attachment["id"], stored_type)
            tx.delete(RELAY_FILES, doc["id"])

        self.store.unit_of_work(unit)
        return True
