"""Opening a store by URL; the interface itself is in :mod:`server.storage.base`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import (
    AnyOf,
    CollectionSpec,
    CommitOutcomeUnknown,
    Document,
    In,
    Query,
    Range,
    RetryPolicy,
    SchemaError,
    StorageError,
    Store,
    StoreMisconfigured,
    StoreUnavailable,
    UniqueViolation,
    Where,
    WriteConflict,
    Writer,
    prefix_range,
)

__all__ = [
    "AnyOf",
    "CollectionSpec",
    "CommitOutcomeUnknown",
    "Document",
    "In",
    "Query",
    "Range",
    "RetryPolicy",
    "SchemaError",
    "StorageError",
    "Store",
    "StoreMisconfigured",
    "StoreUnavailable",
    "UniqueViolation",
    "Where",
    "WriteConflict",
    "Writer",
    "open_store",
    "prefix_range",
]


def open_store(url: str, collections: Iterable[CollectionSpec], **options: Any) -> Store:
    """The backend named by the URL's scheme: ``sqlite:///path`` or ``mongodb://…``."""
    specs = list(collections)
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url, specs, **options)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from .mongo import MongoStore

        return MongoStore(url, specs, **options)
    raise StorageError(f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:/// or mongodb://")
