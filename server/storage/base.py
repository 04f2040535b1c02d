"""The storage interface every backend implements; its docstrings are the specification.

kunjung stores JSON documents in named collections. Each document has a string ``id``
unique in its collection. A collection declares, once, which top-level scalar fields are
indexed (and so may be queried) and whether it is *tracked*: every write to a tracked
collection is given a number from one store-wide **change sequence** (``seq``), and the
sequence is commit-ordered: a reader that has seen ``seq = n`` has seen, or will never
be shown, nothing below ``n``. That promise is what lets a device pull "everything
since my cursor" without ever skipping a change while others push (DESIGN.md §4).

The domain code above this layer is written once against :class:`Store`; the contract
suite in ``tests/storage`` runs the same tests against every backend.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

Document = dict[str, Any]
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class StorageError(Exception):
    """Base of every error a backend raises; the HTTP layer translates these in one place."""


class StoreUnavailable(StorageError):
    """The store does not answer (file unreadable, server down, timeout). Retry later."""


class WriteConflict(StorageError):
    """A conditional write found the document changed since it was read. Retry the unit of work."""


class UniqueViolation(StorageError):
    """A write would break a unique index other than ``id``."""

    def __init__(self, collection: str, fields: tuple[str, ...]):
        super().__init__(f"{collection}: another document already has this {', '.join(fields)}")
        self.collection = collection
        self.fields = fields


class SchemaError(StorageError):
    """A query or document names an unknown collection or a field that is not indexed."""


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection is: its indexed fields, indexes, unique indexes and tracking.

    ``fields`` are the top-level document keys that may appear in queries and indexes.
    Their values must be scalars (str, int, float, bool or None). ``indexes`` and
    ``unique`` are tuples of those fields; ``tracked`` collections get a ``seq``.
    ``geo`` names top-level keys holding a GeoJSON geometry (or nothing): MongoDB gives
    them a 2dsphere index for QGIS-style spatial queries; SQLite keeps them in the body.
    """

    name: str
    fields: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    tracked: bool = False
    geo: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (self.name, *self.fields, *self.geo):
            if not _IDENTIFIER.match(name):
                raise SchemaError(f"{name!r} is not a valid collection or field name")
        for index in (*self.indexes, *self.unique):
            unknown = set(index) - set(self.fields) - {"seq", "id"}
            if unknown:
                raise SchemaError(f"{self.name}: index names undeclared fields {sorted(unknown)}")


# Query conditions. A plain value means equality; these classes say more. They are
# classes, not "$in"-style dicts, so that user data can never be read as an operator.
@dataclass(frozen=True)
class In:
    """The field's value is one of ``values``."""

    values: tuple[Any, ...]

    def __init__(self, values: Iterable[Any]):
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Range:
    """``gte <= value < lt`` (either bound may be None); ``gt`` excludes its bound."""

    gte: Any = None
    lt: Any = None
    gt: Any = None
    lte: Any = None


def prefix_range(prefix: str) -> Range:
    """Strings starting with ``prefix``, as a range an index can serve."""
    return Range(gte=prefix, lt=prefix + "\U0010ffff")


@dataclass(frozen=True)
class AnyOf:
    """Any of several conditions on one field holds (e.g. an exact village or a kecamatan prefix)."""

    options: tuple[Any, ...]

    def __init__(self, options: Iterable[Any]):
        object.__setattr__(self, "options", tuple(options))


Where = Mapping[str, Any]


@dataclass
class StoreHooks:
    """Test seams. ``after_allocate(seq)`` runs after a sequence number is taken and before
    the write carrying it commits, so a test can pull through that gap."""

    after_allocate: Callable[[int], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Writer(abc.ABC):
    """One unit of work: every write in it commits together or not at all (on backends
    with transactions) and reads in it see its own writes."""

    @abc.abstractmethod
    def get(self, collection: str, id: str) -> Document | None:
        """The document with this id, or None."""

    @abc.abstractmethod
    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             limit: int | None = None) -> list[Document]:
        """Documents matching ``where`` (see :meth:`Store.find`)."""

    @abc.abstractmethod
    def insert(self, collection: str, doc: Document) -> bool:
        """Insert ``doc`` unless a document with its id exists.

        Returns True when inserted, False when the id was already there; the stored
        document is then left exactly as it was (idempotent insert). Tracked
        collections give the new document a ``seq``.
        """

    @abc.abstractmethod
    def put(self, collection: str, doc: Document, *, expect_seq: int | object | None = ...) -> Document:
        """Insert or replace the document with ``doc["id"]``; returns what was stored.

        In a tracked collection the stored document gets a new ``seq`` above every
        other. With ``expect_seq`` the write happens only if the stored document's
        ``seq`` still equals it (None: only if absent); otherwise :class:`WriteConflict`.
        """

    @abc.abstractmethod
    def delete(self, collection: str, id: str) -> bool:
        """Remove the document; True when it existed. Tracked collections never delete
        (a removal is a status change that must sync), so this is for untracked ones."""

    @abc.abstractmethod
    def increment(self, collection: str, id: str, field: str, by: int = 1,
                  defaults: Document | None = None) -> Document:
        """Atomically add ``by`` to an integer field, creating the document from
        ``defaults`` first if absent; returns the document after the increment."""


class Store(abc.ABC):
    """A document store with indexed fields and a commit-ordered change sequence.

    Backends are opened by URL (:func:`server.storage.open_store`), must be usable from
    several threads at once, and may be shared by several processes (gunicorn workers).
    """

    url: str
    hooks: StoreHooks

    def __init__(self, collections: Iterable[CollectionSpec]):
        self.collections = {spec.name: spec for spec in collections}
        self.hooks = StoreHooks()

    def spec(self, collection: str) -> CollectionSpec:
        try:
            return self.collections[collection]
        except KeyError:
            raise SchemaError(f"unknown collection {collection!r}") from None

    # -- life cycle -------------------------------------------------------------------
    @abc.abstractmethod
    def ensure_schema(self) -> None:
        """Create collections and indexes if missing and migrate the stored schema
        forward. Idempotent: safe at every start-up and from several processes."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Return if the store answers, else raise :class:`StoreUnavailable`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The store may not be used afterwards."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The schema version recorded in the store (0 for a store never migrated)."""

    # -- reads ------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, collection: str, id: str) -> Document | None:
        """The document with this id, or None."""

    @abc.abstractmethod
    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             after: Any = None, limit: int | None = None) -> list[Document]:
        """Documents whose indexed fields match ``where``, ordered by ``order_by``.

        ``where`` maps an indexed field (or ``id``) to a value (equality), :class:`In`,
        :class:`Range` or :class:`AnyOf`. ``order_by`` is ``id``, ``seq`` or an indexed
        field, prefixed with ``-`` for descending; ``after`` is keyset paging: only
        documents whose ``order_by`` value is past it. Ties are broken by ``id``.
        """

    @abc.abstractmethod
    def iterate(self, collection: str, where: Where | None = None, *, order_by: str = "id",
                batch: int = 500) -> Iterator[Document]:
        """Like :meth:`find` without a limit, but streamed in batches so that memory
        stays flat however many documents match."""

    @abc.abstractmethod
    def count(self, collection: str, where: Where | None = None) -> int:
        """How many documents match ``where``."""

    @abc.abstractmethod
    def changes(self, collection: str, since: int, *, where: Where | None = None,
                limit: int = 500, upto: int | None = None) -> list[Document]:
        """Documents of a tracked collection with ``since < seq <= upto``, in ``seq`` order.

        ``upto`` defaults to :meth:`visible_seq`. Reading only up to that bound is the
        commit-order promise: no document with a smaller ``seq`` can appear later.
        """

    @abc.abstractmethod
    def visible_seq(self) -> int:
        """The highest ``seq`` below which every allocated number is committed or dead."""

    # -- writes -----------------------------------------------------------------------
    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Writer]:
        """A unit of work (see :class:`Writer`). Leaving the block by an exception
        rolls back what the backend can roll back and re-raises."""

    def insert(self, collection: str, doc: Document) -> bool:
        """:meth:`Writer.insert` in a unit of work of its own."""
        with self.transaction() as tx:
            return tx.insert(collection, doc)

    def put(self, collection: str, doc: Document, **kwargs: Any) -> Document:
        """:meth:`Writer.put` in a unit of work of its own."""
        with self.transaction() as tx:
            return tx.put(collection, doc, **kwargs)

    def delete(self, collection: str, id: str) -> bool:
        """:meth:`Writer.delete` in a unit of work of its own."""
        with self.transaction() as tx:
            return tx.delete(collection, id)

    def increment(self, collection: str, id: str, field: str, by: int = 1,
                  defaults: Document | None = None) -> Document:
        """:meth:`Writer.increment` in a unit of work of its own."""
        with self.transaction() as tx:
            return tx.increment(collection, id, field, by, defaults)

    # -- care of the data -------------------------------------------------------------
    def backup(self, destination: str) -> None:
        """Write a consistent copy of the store to ``destination`` while it is in use."""
        raise StorageError(f"{type(self).__name__} has no built-in backup; see README")

    # -- helpers shared by backends ------------------------------------------------------
    def check_where(self, collection: str, where: Where | None) -> None:
        spec = self.spec(collection)
        allowed = {"id", "seq", *spec.fields}
        for key in where or {}:
            if key not in allowed:
                raise SchemaError(f"{collection}: {key!r} is not an indexed field")

    def check_order(self, collection: str, order_by: str) -> tuple[str, bool]:
        name = order_by.removeprefix("-")
        self.check_where(collection, {name: None})
        return name, order_by.startswith("-")

    def check_document(self, collection: str, doc: Document) -> None:
        spec = self.spec(collection)
        if not isinstance(doc.get("id"), str) or not doc["id"]:
            raise SchemaError(f"{collection}: a document needs a non-empty string id")
        for name in spec.fields:
            value = doc.get(name)
            if value is not None and not isinstance(value, str | int | float | bool):
                raise SchemaError(f"{collection}.{name} is indexed and must be a scalar")
