"""The embedded store's blobs: one file per blob under a folder, at a path made from its digest; partials beside."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .store import (
    CHUNK,
    SHA256,
    BlobInfo,
    BlobMismatch,
    BlobNotFound,
    BlobStore,
    DiscardAppend,
    PartialBusy,
    PartialInfo,
    PartialNotFound,
    PartialOffsetMismatch,
    check_digest,
    check_partial_id,
)

_FAN_OUT = re.compile(r"[0-9a-f]{2}")


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the folder holding it is written out.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskBlobStore(BlobStore):
    """``<root>/ab/cd/abcd…`` (two levels of fan-out keep folders small). A blob is written to a
    temporary file in ``<root>/tmp``, fsynced, renamed into place and its folder fsynced, so a
    reader or a crash never meets half a blob. Folders are made mode 0700: attachments are
    personal data.

    Partials are ``<root>/partials/<id>.part``, appended under an exclusive ``flock`` (so the
    folder, shared by several app hosts, must honour POSIX locks) and fsynced before an append
    returns; committing one is a rename into its blob's place, on the same file system."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.partials_dir = self.root / "partials"
        self.partials_dir.mkdir(exist_ok=True, mode=0o700)

    def path(self, sha256: str) -> Path:
        check_digest(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, source: BinaryIO, sha256: str) -> BlobInfo:
        final = self.path(sha256)
        digest = hashlib.sha256()
        fd, temp = tempfile.mkstemp(dir=self.tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                while piece := source.read(CHUNK):
                    digest.update(piece)
                    out.write(piece)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise BlobMismatch(f"the bytes have digest {digest.hexdigest()}, not {sha256}")
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.chmod(temp, 0o600)
                os.replace(temp, final)
                _fsync_dir(final.parent)
        finally:
            if os.path.exists(temp):
                os.remove(temp)
        info = self.info(sha256)
        assert info is not None
        return info

    def info(self, sha256: str) -> BlobInfo | None:
        try:
            stat = self.path(sha256).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(sha256, stat.st_size, stat.st_mtime)

    def chunks(self, sha256: str, *, start: int = 0) -> Iterator[bytes]:
        try:
            handle = open(self.path(sha256), "rb")  # noqa: SIM115 (closed by the generator)
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        return self._stream(handle, start)

    @staticmethod
    def _stream(handle: BinaryIO, start: int) -> Iterator[bytes]:
        with handle:
            handle.seek(start)
            while piece := handle.read(CHUNK):
                yield piece

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def list(self) -> Iterator[BlobInfo]:
        for first in sorted(self.root.iterdir()):
            if not _FAN_OUT.fullmatch(first.name) or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for blob in sorted(second.iterdir()):
                    if SHA256.fullmatch(blob.name):
                        stat = blob.stat()
                        yield BlobInfo(blob.name, stat.st_size, stat.st_mtime)

    # -- partials -----------------------------------------------------------------------------------
    def _partial(self, partial_id: str) -> Path:
        return self.partials_dir / f"{check_partial_id(partial_id)}.part"

    def create_partial(self, partial_id: str) -> None:
        path = self._partial(partial_id)
        if not path.exists():
            path.touch(mode=0o600)
            _fsync_dir(self.partials_dir)

    def partial_info(self, partial_id: str) -> PartialInfo | None:
        try:
            stat = self._partial(partial_id).stat()
        except FileNotFoundError:
            return None
        return PartialInfo(partial_id, stat.st_size, stat.st_mtime)

    @contextlib.contextmanager
    def _locked(self, partial_id: str) -> Iterator[BinaryIO]:
        """The partial open for writing under its exclusive lock (the file it still is: one committed
        or deleted between the open and the lock is not found)."""
        path = self._partial(partial_id)
        try:
            handle = open(path, "r+b", buffering=0)  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            raise PartialNotFound(partial_id) from None
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    raise PartialBusy(partial_id) from None
                raise
            try:
                try:
                    same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    raise PartialNotFound(partial_id)
                yield handle  # type: ignore[misc]
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def append_partial(self, partial_id: str, offset: int, pieces: Iterable[bytes]) -> int:
        with self._locked(partial_id) as out:
            size = os.fstat(out.fileno()).st_size
            if size != offset:
                raise PartialOffsetMismatch(size)
            out.seek(offset)
            written = 0
            try:
                for piece in pieces:
                    view = memoryview(piece)
                    while view:
                        done = out.write(view)
                        view = view[done:]
                    written += len(piece)
            except DiscardAppend:
                out.truncate(offset)
                written = 0
                raise
            finally:
                os.fsync(out.fileno())  # an acknowledged offset, or what arrived before a cut, survives a crash
            return offset + written

    def partial_chunks(self, partial_id: str) -> Iterator[bytes]:
        try:
            handle = open(self._partial(partial_id), "rb")  # noqa: SIM115 (closed by the generator)
        except FileNotFoundError:
            raise PartialNotFound(partial_id) from None
        return self._stream(handle, 0)

    def commit_partial(self, partial_id: str, sha256: str) -> BlobInfo:
        final = self.path(sha256)
        with self._locked(partial_id):
            path = self._partial(partial_id)
            if final.exists():
                os.remove(path)
            else:
                final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.replace(path, final)  # made 0600 and fsynced by its appends
                _fsync_dir(final.parent)
            _fsync_dir(self.partials_dir)
        info = self.info(sha256)
        assert info is not None
        return info

    def delete_partial(self, partial_id: str) -> bool:
        try:
            self._partial(partial_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def partials(self) -> Iterator[PartialInfo]:
        for path in sorted(self.partials_dir.glob("*.part")):
            with contextlib.suppress(FileNotFoundError, ValueError):
                stat = path.stat()
                yield PartialInfo(check_partial_id(path.stem), stat.st_size, stat.st_mtime)
