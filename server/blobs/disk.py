"""The embedded store's blobs: one file per blob under a folder, at a path made from its digest."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .store import CHUNK, SHA256, BlobInfo, BlobMismatch, BlobNotFound, BlobStore, check_digest


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
    personal data."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)

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

    def adopt(self, path: str | os.PathLike[str], sha256: str) -> BlobInfo:
        """Move a file already written and fsynced on the same file system into the store (an
        upload's partial file, checked by its caller). The file is gone afterwards either way."""
        final = self.path(sha256)
        if final.exists():
            os.remove(path)
        else:
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(path, 0o600)
            os.replace(path, final)
            _fsync_dir(final.parent)
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
            if first.name == "tmp" or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for blob in sorted(second.iterdir()):
                    if SHA256.fullmatch(blob.name):
                        stat = blob.stat()
                        yield BlobInfo(blob.name, stat.st_size, stat.st_mtime)
