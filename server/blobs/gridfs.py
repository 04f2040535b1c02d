"""The MongoDB store's blobs: GridFS's layout (a files collection and a chunks collection) in the store's database.

Written on plain collections with GridFS's field names (``<bucket>.files``: ``_id``, ``length``,
``chunkSize``, ``uploadDate``, ``filename``; ``<bucket>.chunks``: ``files_id``, ``n``, ``data``),
so ``mongofiles --prefix attachments`` and pymongo's ``GridFSBucket(db, "attachments")`` read
what kunjung writes. The driver's ``gridfs`` module is not used because it insists on a real
``pymongo.database.Database`` (the test stand-in is not one) and gives chunks random ids: here a
chunk's id is ``<digest>:<n>``, so two processes storing the same bytes at once write the same
documents and neither fails. The files document is written last: a blob without one (a writer
that died half-way) is invisible, and the next ``put`` of those bytes overwrites its chunks.

Partials of uploads under way are documents too, so every app host reaches them: a head in
``<bucket>.partials`` (``_id`` the upload id, ``size``, ``n`` chunks, ``touched_at``, and the
writer's ``lock`` with its expiry) and chunks in ``<bucket>.partial_chunks`` (``_id``
``<upload id>:<n>``, at most ``PARTIAL_CHUNK`` bytes each: a usual 256 KB PATCH is one document).
An append first takes the head's lock with one conditional update (the head at the offset it is
for, not locked or the lock expired); each chunk is written before the head counts it, so a
writer that dies leaves at most a chunk the head does not count, overwritten by the next append.
Committing copies the chunks into a blob, checked as it goes.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from pymongo import ASCENDING, ReturnDocument

from .store import (
    BlobInfo,
    BlobMismatch,
    BlobNotFound,
    BlobStore,
    ChunkReader,
    DiscardAppend,
    PartialBusy,
    PartialInfo,
    PartialNotFound,
    PartialOffsetMismatch,
    check_digest,
    check_partial_id,
)

CHUNK_SIZE = 255 * 1024  # GridFS's default, which keeps a chunk and its document under 256 KB
#: The largest piece of a partial (its own layout, not GridFS's: far below BSON's 16 MB document limit).
PARTIAL_CHUNK = 1024 * 1024
#: How long an append's lock holds without a chunk written (a worker that died frees its upload then).
LOCK_SECONDS = 120.0


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


class GridFSBlobStore(BlobStore):
    def __init__(self, database: Any, bucket: str = "attachments"):
        self.files = database[f"{bucket}.files"]
        self.chunks_of = database[f"{bucket}.chunks"]
        self.chunks_of.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
        self.partial_heads = database[f"{bucket}.partials"]
        self.partial_chunks_of = database[f"{bucket}.partial_chunks"]
        self.partial_chunks_of.create_index([("partial_id", ASCENDING), ("n", ASCENDING)], unique=True)

    def put(self, source: BinaryIO, sha256: str) -> BlobInfo:
        check_digest(sha256)
        existing = self.info(sha256)
        digest = hashlib.sha256()
        n = length = 0
        while True:
            piece = source.read(CHUNK_SIZE)
            # A stream may return less than asked before its end: fill the chunk, as GridFS's chunks
            # are all full but the last.
            while piece and len(piece) < CHUNK_SIZE:
                more = source.read(CHUNK_SIZE - len(piece))
                if not more:
                    break
                piece += more
            if not piece:
                break
            digest.update(piece)
            length += len(piece)
            if existing is None:
                self.chunks_of.replace_one({"_id": f"{sha256}:{n}"},
                                           {"_id": f"{sha256}:{n}", "files_id": sha256, "n": n, "data": piece},
                                           upsert=True)
            n += 1
        if digest.hexdigest() != sha256:
            if existing is None:
                self.chunks_of.delete_many({"files_id": sha256})
            raise BlobMismatch(f"the bytes have digest {digest.hexdigest()}, not {sha256}")
        if existing is not None:
            return existing
        self.chunks_of.delete_many({"files_id": sha256, "n": {"$gte": n}})  # left by an earlier, longer try
        moment = datetime.now(UTC)
        now = moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # BSON dates hold milliseconds
        self.files.replace_one({"_id": sha256}, {"_id": sha256, "length": length, "chunkSize": CHUNK_SIZE,
                                                 "uploadDate": now, "filename": sha256,
                                                 "metadata": {"sha256": sha256}}, upsert=True)
        return BlobInfo(sha256, length, now.timestamp())

    def info(self, sha256: str) -> BlobInfo | None:
        check_digest(sha256)
        doc = self.files.find_one({"_id": sha256})
        if doc is None:
            return None
        return BlobInfo(sha256, int(doc["length"]), _seconds(doc["uploadDate"]))

    def chunks(self, sha256: str, *, start: int = 0) -> Iterator[bytes]:
        info = self.info(sha256)
        if info is None:
            raise BlobNotFound(sha256)
        return self._stream(sha256, info.size, start)

    def _stream(self, sha256: str, size: int, start: int) -> Iterator[bytes]:
        # One chunk at a time by its id: memory stays at one chunk however large the blob.
        n, offset = divmod(start, CHUNK_SIZE)
        sent = n * CHUNK_SIZE
        while sent < size:
            doc = self.chunks_of.find_one({"_id": f"{sha256}:{n}"})
            if doc is None:
                raise BlobNotFound(f"{sha256}: chunk {n} is missing")
            data = bytes(doc["data"])
            yield data[offset:]
            sent += len(data)
            n, offset = n + 1, 0

    def delete(self, sha256: str) -> bool:
        check_digest(sha256)
        found = self.files.delete_one({"_id": sha256}).deleted_count > 0
        self.chunks_of.delete_many({"files_id": sha256})
        return found

    def list(self) -> Iterator[BlobInfo]:
        for doc in self.files.find({}, {"length": 1, "uploadDate": 1}):
            yield BlobInfo(doc["_id"], int(doc["length"]), _seconds(doc["uploadDate"]))

    # -- partials -----------------------------------------------------------------------------------
    def create_partial(self, partial_id: str) -> None:
        check_partial_id(partial_id)
        self.partial_heads.update_one({"_id": partial_id}, {"$setOnInsert": {
            "size": 0, "n": 0, "touched_at": time.time(), "lock": None, "lock_until": 0.0}}, upsert=True)

    def partial_info(self, partial_id: str) -> PartialInfo | None:
        head = self.partial_heads.find_one({"_id": check_partial_id(partial_id)})
        return None if head is None else PartialInfo(partial_id, int(head["size"]), float(head["touched_at"]))

    def _lock(self, partial_id: str, offset: int | None) -> tuple[str, dict[str, Any]]:
        """Take the partial's lock (at ``offset``, unless None); the lock's token and the head."""
        token, now = uuid.uuid4().hex, time.time()
        condition: dict[str, Any] = {"_id": check_partial_id(partial_id),
                                     "$or": [{"lock": None}, {"lock_until": {"$lt": now}}]}
        if offset is not None:
            condition["size"] = offset
        head = self.partial_heads.find_one_and_update(
            condition, {"$set": {"lock": token, "lock_until": now + LOCK_SECONDS}},
            return_document=ReturnDocument.AFTER)
        if head is not None:
            return token, head
        current = self.partial_heads.find_one({"_id": partial_id})
        if current is None:
            raise PartialNotFound(partial_id)
        if offset is not None and int(current["size"]) != offset:
            raise PartialOffsetMismatch(int(current["size"]))
        raise PartialBusy(partial_id)

    def _unlock(self, partial_id: str, token: str, **fields: Any) -> None:
        self.partial_heads.update_one({"_id": partial_id, "lock": token},
                                      {"$set": {**fields, "lock": None, "lock_until": 0.0}})

    def append_partial(self, partial_id: str, offset: int, pieces: Iterable[bytes]) -> int:
        token, head = self._lock(partial_id, offset)
        first = n = int(head["n"])
        size = offset
        pending = bytearray()

        def write(data: bytes, *, release: bool = False) -> None:
            nonlocal n, size
            self.partial_chunks_of.replace_one(
                {"_id": f"{partial_id}:{n}"}, {"_id": f"{partial_id}:{n}", "partial_id": partial_id, "n": n,
                                               "data": data}, upsert=True)
            now = time.time()
            # the last chunk of an append also frees the lock: one majority write fewer per PATCH
            lock = {"lock": None, "lock_until": 0.0} if release else {"lock_until": now + LOCK_SECONDS}
            counted = self.partial_heads.update_one(
                {"_id": partial_id, "lock": token},
                {"$set": {"size": size + len(data), "n": n + 1, "touched_at": now, **lock}})
            if counted.matched_count == 0:  # the lock expired and another writer took it
                raise PartialBusy(partial_id)
            n, size = n + 1, size + len(data)

        try:
            for piece in pieces:
                pending += piece
                while len(pending) >= PARTIAL_CHUNK:
                    write(bytes(pending[:PARTIAL_CHUNK]))
                    del pending[:PARTIAL_CHUNK]
        except DiscardAppend:
            self.partial_chunks_of.delete_many({"partial_id": partial_id, "n": {"$gte": first}})
            self._unlock(partial_id, token, size=offset, n=first)
            raise
        except BaseException:
            try:
                if pending:
                    write(bytes(pending))  # what arrived before the cut stays
            finally:
                self._unlock(partial_id, token)
            raise
        if pending:
            write(bytes(pending), release=True)
        else:
            self._unlock(partial_id, token)
        return size

    def _partial_stream(self, partial_id: str, count: int) -> Iterator[bytes]:
        for n in range(count):
            doc = self.partial_chunks_of.find_one({"_id": f"{partial_id}:{n}"})
            if doc is None:
                raise PartialNotFound(f"{partial_id}: chunk {n} is missing")
            yield bytes(doc["data"])

    def partial_chunks(self, partial_id: str) -> Iterator[bytes]:
        head = self.partial_heads.find_one({"_id": check_partial_id(partial_id)})
        if head is None:
            raise PartialNotFound(partial_id)
        return self._partial_stream(partial_id, int(head["n"]))

    def commit_partial(self, partial_id: str, sha256: str) -> BlobInfo:
        check_digest(sha256)
        token, head = self._lock(partial_id, None)
        try:
            info = self.put(ChunkReader(self._partial_stream(partial_id, int(head["n"]))), sha256)
        except BaseException:
            self._unlock(partial_id, token)
            raise
        self.delete_partial(partial_id)
        return info

    def delete_partial(self, partial_id: str) -> bool:
        # chunks first: a crash between leaves a head the clean-up finds, never chunks no head names
        self.partial_chunks_of.delete_many({"partial_id": check_partial_id(partial_id)})
        return self.partial_heads.delete_one({"_id": partial_id}).deleted_count > 0

    def partials(self) -> Iterator[PartialInfo]:
        for head in self.partial_heads.find({}, {"size": 1, "touched_at": 1}):
            yield PartialInfo(head["_id"], int(head["size"]), float(head["touched_at"]))
