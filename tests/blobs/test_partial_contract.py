"""The partials of uploads under way in the blob interface (server/blobs/store.py), on disk and in GridFS's database."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import uuid
from collections.abc import Iterator

import pymongo
import pytest
from mongo_stand_in import StandIn

from server.blobs.disk import DiskBlobStore
from server.blobs.gridfs import CHUNK_SIZE, PARTIAL_CHUNK, GridFSBlobStore
from server.blobs.store import (
    BlobStore,
    DiscardAppend,
    PartialBusy,
    PartialNotFound,
    PartialOffsetMismatch,
)

REAL_MONGO = os.environ.get("KUNJUNG_TEST_MONGO_URI")
BACKENDS = ["disk", "gridfs-stand-in[mongomock-ng]", *(["gridfs-real"] if REAL_MONGO else [])]


@pytest.fixture(params=BACKENDS)
def two_hosts(request, tmp_path) -> Iterator[tuple[BlobStore, BlobStore]]:
    """Two app hosts' views of one blob backend: the same folder, or the same database."""
    if request.param == "disk":
        yield DiskBlobStore(tmp_path / "blobs"), DiskBlobStore(tmp_path / "blobs")
    elif request.param == "gridfs-real":
        client = pymongo.MongoClient(REAL_MONGO)
        name = f"kunjung_partials_{uuid.uuid4().hex[:8]}"
        yield GridFSBlobStore(client[name]), GridFSBlobStore(client[name])
        client.drop_database(name)
    else:
        database = StandIn().get_database("kunjung")
        yield GridFSBlobStore(database), GridFSBlobStore(database)


@pytest.fixture
def blobs(two_hosts) -> BlobStore:
    return two_hosts[0]


def new_id() -> str:
    return uuid.uuid4().hex


def cut_after(data: bytes, at: int, step: int = 10_000) -> Iterator[bytes]:
    """A request body whose link drops after ``at`` bytes."""
    for start in range(0, at, step):
        yield data[start:min(start + step, at)]
    raise ConnectionResetError("the phone lost its signal")


def test_a_file_sent_in_pieces_through_two_hosts_reads_back_byte_exact(two_hosts):
    one, other = two_hosts
    data = os.urandom(2 * PARTIAL_CHUNK + 1234)
    upload = new_id()
    one.create_partial(upload)
    assert one.partial_info(upload).size == 0
    draw, offset = random.Random(15), 0
    while offset < len(data):
        host = draw.choice((one, other))  # the load balancer sends each PATCH anywhere
        piece = data[offset:offset + draw.randint(1, PARTIAL_CHUNK + 5000)]
        offset = host.append_partial(upload, offset, [piece[:len(piece) // 2], piece[len(piece) // 2:]])
        assert other.partial_info(upload).size == offset
    assert b"".join(other.partial_chunks(upload)) == data
    assert all(len(piece) <= 1024 * 1024 for piece in one.partial_chunks(upload))
    digest = hashlib.sha256(data).hexdigest()
    info = other.commit_partial(upload, digest)
    assert (info.sha256, info.size) == (digest, len(data))
    assert one.read(digest) == data
    assert one.partial_info(upload) is None
    assert list(one.partials()) == []
    with pytest.raises(PartialNotFound):
        one.append_partial(upload, len(data), [b"more"])


@pytest.mark.parametrize("cut", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, PARTIAL_CHUNK, PARTIAL_CHUNK + 1,
                                 2 * PARTIAL_CHUNK + 77])
def test_a_body_cut_at_any_byte_keeps_what_arrived_and_resumes_there(two_hosts, cut):
    one, other = two_hosts
    data = os.urandom(3 * PARTIAL_CHUNK)
    upload = new_id()
    one.create_partial(upload)
    with pytest.raises(ConnectionResetError):
        one.append_partial(upload, 0, cut_after(data, cut))
    assert other.partial_info(upload).size == cut
    assert other.append_partial(upload, cut, [data[cut:]]) == len(data)
    assert b"".join(one.partial_chunks(upload)) == data


def test_an_append_at_another_offset_is_refused_and_changes_nothing(blobs):
    upload = new_id()
    blobs.create_partial(upload)
    blobs.append_partial(upload, 0, [b"rumah"])
    for wrong in (0, 4, 6):
        with pytest.raises(PartialOffsetMismatch) as refused:
            blobs.append_partial(upload, wrong, [b"X"])
        assert refused.value.size == 5
    assert b"".join(blobs.partial_chunks(upload)) == b"rumah"
    blobs.create_partial(upload)  # made already: kept as it is
    assert blobs.partial_info(upload).size == 5


def test_a_discarded_append_keeps_nothing_of_itself_but_the_bytes_before_it(blobs):
    class TooLong(DiscardAppend):
        pass

    upload = new_id()
    blobs.create_partial(upload)
    blobs.append_partial(upload, 0, [b"a" * 1000])

    def too_long() -> Iterator[bytes]:
        yield os.urandom(PARTIAL_CHUNK + 10)
        yield b"more"
        raise TooLong("longer than the upload")

    with pytest.raises(TooLong):
        blobs.append_partial(upload, 1000, too_long())
    assert blobs.partial_info(upload).size == 1000
    assert blobs.append_partial(upload, 1000, [b"b"]) == 1001
    assert b"".join(blobs.partial_chunks(upload)) == b"a" * 1000 + b"b"


def test_a_second_writer_is_refused_while_the_first_appends(two_hosts):
    one, other = two_hosts
    upload = new_id()
    one.create_partial(upload)
    started, release = threading.Event(), threading.Event()

    def slow() -> Iterator[bytes]:
        yield b"x" * 100
        started.set()
        release.wait(10)
        yield b"y" * 100

    outcome: list[object] = []
    writer = threading.Thread(target=lambda: outcome.append(one.append_partial(upload, 0, slow())))
    writer.start()
    assert started.wait(10)
    try:
        for host in (one, other):
            with pytest.raises(PartialBusy):
                host.append_partial(upload, 0, [b"z"])
    finally:
        release.set()
        writer.join()
    assert outcome == [200]
    assert b"".join(other.partial_chunks(upload)) == b"x" * 100 + b"y" * 100


def test_partials_are_listed_apart_from_blobs_and_deleted(blobs, tmp_path):
    kept, dropped = new_id(), new_id()
    for upload in (kept, dropped):
        blobs.create_partial(upload)
        blobs.append_partial(upload, 0, [b"half a photo"])
    assert {p.partial_id: p.size for p in blobs.partials()} == {kept: 12, dropped: 12}
    assert list(blobs.list()) == []
    assert blobs.copy_to(str(tmp_path / "backup")) == 0
    assert blobs.delete_partial(dropped) is True
    assert blobs.delete_partial(dropped) is False
    assert [p.partial_id for p in blobs.partials()] == [kept]
    with pytest.raises(PartialNotFound):
        blobs.partial_chunks(dropped)
    with pytest.raises(PartialNotFound):
        blobs.commit_partial(dropped, hashlib.sha256(b"half a photo").hexdigest())


def test_committing_bytes_stored_already_keeps_the_blob_and_drops_the_partial(blobs):
    data = b"foto kartu keluarga"
    first = blobs.put_bytes(data)
    upload = new_id()
    blobs.create_partial(upload)
    blobs.append_partial(upload, 0, [data])
    again = blobs.commit_partial(upload, first.sha256)
    assert again.stored_at == first.stored_at
    assert blobs.partial_info(upload) is None
    assert [b.sha256 for b in blobs.list()] == [first.sha256]


def test_partial_ids_are_checked_before_they_name_anything(blobs):
    for bad in ("../../etc/passwd", "A" * 32, "", "0" * 31, {"$gt": ""}):
        with pytest.raises(ValueError, match="32 lowercase hex"):
            blobs.create_partial(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="32 lowercase hex"):
            blobs.partial_info(bad)  # type: ignore[arg-type]


def test_gridfs_a_writer_that_died_frees_its_upload_when_its_lock_expires():
    database = StandIn().get_database("kunjung")
    store = GridFSBlobStore(database)
    upload = new_id()
    store.create_partial(upload)
    store.append_partial(upload, 0, [b"a" * 10])
    # a worker took the lock and was killed before it wrote a chunk
    store.partial_heads.update_one({"_id": upload}, {"$set": {"lock": "dead", "lock_until": 2**40}})
    with pytest.raises(PartialBusy):
        store.append_partial(upload, 10, [b"b"])
    store.partial_heads.update_one({"_id": upload}, {"$set": {"lock_until": 1.0}})
    assert store.append_partial(upload, 10, [b"b"]) == 11
    assert b"".join(store.partial_chunks(upload)) == b"a" * 10 + b"b"


def test_gridfs_a_chunk_the_head_does_not_count_is_overwritten():
    database = StandIn().get_database("kunjung")
    store = GridFSBlobStore(database)
    upload = new_id()
    store.create_partial(upload)
    store.append_partial(upload, 0, [b"counted"])
    # a writer died between writing chunk 1 and counting it in the head
    store.partial_chunks_of.insert_one({"_id": f"{upload}:1", "partial_id": upload, "n": 1, "data": b"lost"})
    assert store.partial_info(upload).size == 7
    store.append_partial(upload, 7, [b" again"])
    assert b"".join(store.partial_chunks(upload)) == b"counted again"
