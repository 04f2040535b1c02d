"""The blob interface's contract (server/blobs/store.py): files on disk, and GridFS's layout in the MongoDB stand-in."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterator

import pymongo
import pytest
from mongo_stand_in import StandIn

from server.blobs.disk import DiskBlobStore
from server.blobs.gridfs import CHUNK_SIZE, GridFSBlobStore
from server.blobs.store import BlobMismatch, BlobNotFound, BlobStore

REAL_MONGO = os.environ.get("KUNJUNG_TEST_MONGO_URI")
BACKENDS = ["disk", "gridfs-stand-in[mongomock-ng]", *(["gridfs-real"] if REAL_MONGO else [])]


@pytest.fixture(params=BACKENDS)
def blobs(request, tmp_path) -> Iterator[BlobStore]:
    if request.param == "disk":
        yield DiskBlobStore(tmp_path / "blobs")
    elif request.param == "gridfs-real":
        client = pymongo.MongoClient(REAL_MONGO)
        name = f"kunjung_blobs_{uuid.uuid4().hex[:8]}"
        yield GridFSBlobStore(client[name])
        client.drop_database(name)
    else:
        yield GridFSBlobStore(StandIn().get_database("kunjung"))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes per read, as a socket does."""

    def __init__(self, data: bytes, step: int = 7777):
        self.data, self.at, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        piece = self.data[self.at:self.at + min(self.step, size if size >= 0 else self.step)]
        self.at += len(piece)
        return piece


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17])
def test_what_is_put_reads_back_byte_exact(blobs, size):
    data = os.urandom(size)
    info = blobs.put(Trickle(data), digest(data))
    assert (info.sha256, info.size) == (digest(data), size)
    assert blobs.read(digest(data)) == data
    assert all(len(piece) <= 1024 * 1024 for piece in blobs.chunks(digest(data)))
    assert blobs.info(digest(data)).size == size


def test_chunks_from_an_offset(blobs):
    data = os.urandom(2 * CHUNK_SIZE + 99)
    blobs.put_bytes(data)
    for start in (0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 5, len(data) - 1, len(data)):
        assert b"".join(blobs.chunks(digest(data), start=start)) == data[start:]


def test_a_wrong_digest_stores_nothing(blobs):
    data = os.urandom(CHUNK_SIZE + 10)
    claimed = digest(b"something else")
    with pytest.raises(BlobMismatch):
        blobs.put(io.BytesIO(data), claimed)
    assert not blobs.exists(claimed)
    assert not blobs.exists(digest(data))
    assert list(blobs.list()) == []


def test_the_same_bytes_are_stored_once(blobs):
    data = b"foto rumah tampak depan"
    first = blobs.put_bytes(data)
    second = blobs.put_bytes(data)
    assert first.stored_at == second.stored_at
    assert [b.sha256 for b in blobs.list()] == [digest(data)]


def test_a_second_put_is_still_checked(blobs):
    data = b"kartu keluarga"
    blobs.put_bytes(data)
    with pytest.raises(BlobMismatch):
        blobs.put(io.BytesIO(b"other bytes"), digest(data))
    assert blobs.read(digest(data)) == data


def test_unknown_and_deleted_blobs(blobs):
    unknown = digest(b"never stored")
    assert blobs.info(unknown) is None
    assert not blobs.exists(unknown)
    with pytest.raises(BlobNotFound):
        blobs.chunks(unknown)
    data = os.urandom(CHUNK_SIZE * 2)
    blobs.put_bytes(data)
    assert blobs.delete(digest(data)) is True
    assert blobs.delete(digest(data)) is False
    assert not blobs.exists(digest(data))
    with pytest.raises(BlobNotFound):
        blobs.read(digest(data))
    assert list(blobs.list()) == []


def test_digests_are_checked_before_they_name_anything(blobs):
    for bad in ("../../etc/passwd", "A" * 64, "", "0" * 63, {"$gt": ""}):
        with pytest.raises(ValueError, match="64 lowercase hex"):
            blobs.info(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="64 lowercase hex"):
            blobs.put(io.BytesIO(b"x"), bad)  # type: ignore[arg-type]


def test_list_names_every_blob_with_its_size(blobs):
    datas = [b"a", b"bb", os.urandom(CHUNK_SIZE + 3)]
    for data in datas:
        blobs.put_bytes(data)
    assert {b.sha256: b.size for b in blobs.list()} == {digest(d): len(d) for d in datas}


def test_copy_to_makes_a_disk_store_holding_every_blob(blobs, tmp_path):
    datas = [os.urandom(n) for n in (5, CHUNK_SIZE + 1)]
    for data in datas:
        blobs.put_bytes(data)
    assert blobs.copy_to(str(tmp_path / "backup")) == 2
    assert blobs.copy_to(str(tmp_path / "backup")) == 0  # only new blobs on a second run
    copy = DiskBlobStore(tmp_path / "backup")
    assert sorted(copy.read(digest(d)) for d in datas) == sorted(datas)


def test_writers_of_the_same_bytes_at_once_agree(blobs):
    data = os.urandom(3 * CHUNK_SIZE)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            blobs.put(Trickle(data, 50_000), digest(data))
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert blobs.read(digest(data)) == data
    assert len(list(blobs.list())) == 1


def test_disk_blobs_are_written_whole_and_private(tmp_path):
    store = DiskBlobStore(tmp_path / "blobs")
    data = os.urandom(1000)
    store.put_bytes(data)
    path = store.path(digest(data))
    assert path.parent.parent.parent == tmp_path / "blobs"
    assert path.stat().st_mode & 0o077 == 0
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []  # no temporary file left behind


def test_gridfs_layout_is_what_gridfs_tools_read():
    stand_in = StandIn()
    store = GridFSBlobStore(stand_in.get_database("kunjung"))
    data = os.urandom(CHUNK_SIZE + 1)
    store.put_bytes(data)
    mock = stand_in.mock["kunjung"]
    files = mock["attachments.files"].find_one({"_id": digest(data)})
    assert (files["length"], files["chunkSize"]) == (len(data), CHUNK_SIZE)
    assert "uploadDate" in files
    chunks = list(mock["attachments.chunks"].find({"files_id": digest(data)}).sort("n"))
    assert [c["n"] for c in chunks] == [0, 1]
    assert b"".join(c["data"] for c in chunks) == data


def test_gridfs_half_written_blob_is_invisible_and_overwritten():
    stand_in = StandIn()
    store = GridFSBlobStore(stand_in.get_database("kunjung"))
    data = os.urandom(2 * CHUNK_SIZE)
    # a writer that died after its first chunk: chunks without a files document
    stand_in.mock["kunjung"]["attachments.chunks"].insert_one(
        {"_id": f"{digest(data)}:0", "files_id": digest(data), "n": 0, "data": b"garbage"})
    assert not store.exists(digest(data))
    store.put_bytes(data)
    assert store.read(digest(data)) == data
