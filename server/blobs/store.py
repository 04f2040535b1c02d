"""The blob interface: content-addressed files (attachments of visits, their thumbnails); docstrings are the spec.

A blob is named by the SHA-256 of its bytes (64 lowercase hex digits) and never changes: the same
bytes stored twice are one blob. Two backends implement the interface, chosen with the event store:
:class:`server.blobs.disk.DiskBlobStore` (files in a folder beside the SQLite file) and
:class:`server.blobs.gridfs.GridFSBlobStore` (GridFS's layout of files and chunks in MongoDB). One
contract suite (``tests/blobs/``) runs against both.

Storing a blob never grants anyone access to it: which visit may name which blob is kept with the
visit's attachments (``server/blobs/attachments.py``), never inferred from a blob existing.

The same backend keeps the *partials* of uploads under way (``server/blobs/uploads.py``): bytes
appended at an offset, durable before each append returns, readable by every app host that reaches
the backend, so the next PATCH of a tus upload may reach any of them. A partial becomes a blob with
:meth:`BlobStore.commit_partial` once its caller has checked the whole of it.
"""

from __future__ import annotations

import abc
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

SHA256 = re.compile(r"[0-9a-f]{64}")
PARTIAL_ID = re.compile(r"[0-9a-f]{32}")
CHUNK = 256 * 1024


class BlobError(Exception):
    """Base of every error a blob backend raises."""


class BlobNotFound(BlobError):
    """No blob has this digest."""


class BlobMismatch(BlobError):
    """The bytes given to :meth:`BlobStore.put` do not have the digest they were given with; nothing
    was stored."""


def check_digest(sha256: str) -> str:
    """``sha256`` if it is 64 lowercase hex digits, else ValueError (digests become file names and ids)."""
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
        raise ValueError("a blob digest is 64 lowercase hex digits")
    return sha256


class PartialNotFound(BlobError):
    """No partial has this id (never made, committed, or deleted)."""


class PartialBusy(BlobError):
    """Another writer is appending to this partial right now."""


class PartialOffsetMismatch(BlobError):
    """The partial does not stand at the offset the append was for; ``size`` is where it stands."""

    def __init__(self, size: int):
        super().__init__(f"the partial stands at {size}")
        self.size = size


class DiscardAppend(BlobError):
    """Raised by the pieces given to :meth:`BlobStore.append_partial` to drop every byte that call
    appended; the backend re-raises it (the caller's subclass) once the partial is back where it stood."""


def check_partial_id(partial_id: str) -> str:
    """``partial_id`` if it is 32 lowercase hex digits (an upload id), else ValueError."""
    if not isinstance(partial_id, str) or not PARTIAL_ID.fullmatch(partial_id):
        raise ValueError("a partial id is 32 lowercase hex digits")
    return partial_id


@dataclass(frozen=True)
class PartialInfo:
    partial_id: str
    size: int
    touched_at: float  # seconds since the epoch, when it was made or last appended to


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int
    stored_at: float  # seconds since the epoch, when the blob was first stored


class BlobStore(abc.ABC):
    """Content-addressed, write-once files. Safe to use from several threads and processes."""

    @abc.abstractmethod
    def put(self, source: BinaryIO, sha256: str) -> BlobInfo:
        """Store what ``source`` holds from its position to its end under ``sha256``.

        The bytes are hashed as they are read; if their digest is not ``sha256`` nothing is stored
        and :class:`BlobMismatch` is raised. A blob that is stored already is kept as it is (its
        ``stored_at`` does not change); the source is still read and checked. The blob is visible
        to readers only once complete and durable (a crash leaves it absent, never partial).
        Memory stays flat whatever the size."""

    def put_bytes(self, data: bytes) -> BlobInfo:
        """Store ``data`` under its own digest."""
        return self.put(io.BytesIO(data), hashlib.sha256(data).hexdigest())

    @abc.abstractmethod
    def info(self, sha256: str) -> BlobInfo | None:
        """The stored blob's size and time, or None."""

    def exists(self, sha256: str) -> bool:
        return self.info(sha256) is not None

    @abc.abstractmethod
    def chunks(self, sha256: str, *, start: int = 0) -> Iterator[bytes]:
        """The blob's bytes from ``start`` on, in pieces of at most a few hundred KB (memory stays flat).
        Raises :class:`BlobNotFound` (before yielding anything) for an unknown digest."""

    def read(self, sha256: str) -> bytes:
        """The whole blob in memory (small blobs only: thumbnails, tests)."""
        return b"".join(self.chunks(sha256))

    @abc.abstractmethod
    def delete(self, sha256: str) -> bool:
        """Remove the blob; True if it existed. Erasure and garbage collection call this; the caller
        decides that nothing names the blob any more."""

    @abc.abstractmethod
    def list(self) -> Iterator[BlobInfo]:
        """Every stored blob, in no particular order, streamed."""

    # -- partials of uploads under way -----------------------------------------------------------
    @abc.abstractmethod
    def create_partial(self, partial_id: str) -> None:
        """Make an empty partial (nothing happens if it exists)."""

    @abc.abstractmethod
    def partial_info(self, partial_id: str) -> PartialInfo | None:
        """The partial's size (the offset the next append is at) and last touch, or None."""

    @abc.abstractmethod
    def append_partial(self, partial_id: str, offset: int, pieces: Iterable[bytes]) -> int:
        """Append ``pieces`` at ``offset`` and return the partial's new size.

        Raises :class:`PartialNotFound`, :class:`PartialOffsetMismatch` when the partial is not
        ``offset`` long, and :class:`PartialBusy` while another writer (in any process, on any
        host) appends to it. Bytes appended are durable before this returns. When iterating
        ``pieces`` raises (a client cut off mid-body), what came before is kept, durable, and the
        error propagates; when it raises :class:`DiscardAppend`, nothing of this call is kept.
        Memory stays at a chunk whatever the body's size."""

    @abc.abstractmethod
    def partial_chunks(self, partial_id: str) -> Iterator[bytes]:
        """The partial's bytes from its start, in pieces of at most a megabyte.
        Raises :class:`PartialNotFound` (before yielding anything)."""

    def partial_sha256(self, partial_id: str) -> str:
        """The SHA-256 (hex) of the partial's bytes as they are now, read from the backend.
        Raises :class:`PartialNotFound`."""
        digest = hashlib.sha256()
        for piece in self.partial_chunks(partial_id):
            digest.update(piece)
        return digest.hexdigest()

    @abc.abstractmethod
    def commit_partial(self, partial_id: str, sha256: str) -> BlobInfo:
        """Make the partial the blob ``sha256`` (kept as it is if stored already) and remove the
        partial. The caller has checked the bytes' digest: a backend that can make the partial a
        blob without reading it (a rename) does so; one that copies checks as it copies and raises
        :class:`BlobMismatch` (nothing stored, the partial kept). :class:`PartialNotFound` if gone."""

    @abc.abstractmethod
    def delete_partial(self, partial_id: str) -> bool:
        """Remove the partial; True if it existed."""

    @abc.abstractmethod
    def partials(self) -> Iterator[PartialInfo]:
        """Every partial, in no particular order (the clean-up sweeps abandoned ones)."""

    def copy_to(self, destination: str) -> int:
        """Copy every blob into the folder ``destination`` in the disk backend's layout (a backup that
        :class:`~server.blobs.disk.DiskBlobStore` opens as a store); returns how many were copied.
        Blobs already there are skipped, so a second backup into the same folder copies only new ones."""
        from .disk import DiskBlobStore

        target = DiskBlobStore(destination)
        copied = 0
        for blob in self.list():
            if target.exists(blob.sha256):
                continue
            target.put(ChunkReader(self.chunks(blob.sha256)), blob.sha256)
            copied += 1
        return copied


class ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte pieces."""

    def __init__(self, pieces: Iterator[bytes]):
        self.pieces = pieces
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        while not self.pending:
            try:
                self.pending = next(self.pieces)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size
