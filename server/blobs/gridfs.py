"""The MongoDB store's blobs: GridFS's layout (a files collection and a chunks collection) in the store's database.

Written on plain collections with GridFS's field names (``<bucket>.files``: ``_id``, ``length``,
``chunkSize``, ``uploadDate``, ``filename``; ``<bucket>.chunks``: ``files_id``, ``n``, ``data``),
so ``mongofiles --prefix attachments`` and pymongo's ``GridFSBucket(db, "attachments")`` read
what kunjung writes. The driver's ``gridfs`` module is not used because it insists on a real
``pymongo.database.Database`` (the test stand-in is not one) and gives chunks random ids: here a
chunk's id is ``<digest>:<n>``, so two processes storing the same bytes at once write the same
documents and neither fails. The files document is written last: a blob without one (a writer
that died half-way) is invisible, and the next ``put`` of those bytes overwrites its chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from pymongo import ASCENDING

from .store import BlobInfo, BlobMismatch, BlobNotFound, BlobStore, check_digest

CHUNK_SIZE = 255 * 1024  # GridFS's default, which keeps a chunk and its document under 256 KB


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


class GridFSBlobStore(BlobStore):
    def __init__(self, database: Any, bucket: str = "attachments"):
        self.files = database[f"{bucket}.files"]
        self.chunks_of = database[f"{bucket}.chunks"]
        self.chunks_of.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)

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

