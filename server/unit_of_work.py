"""Running a unit of work against the store, again from the start when another writer got there first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .storage import WriteConflict

T = TypeVar("T")
MAX_ATTEMPTS = 3


def run_unit_of_work(store: Any, fn: Callable[[Any], T], *, attempts: int = MAX_ATTEMPTS) -> T:
    """``fn(tx)`` inside one transaction; on :class:`WriteConflict` (another worker changed a document
    ``fn`` read, MongoDB only: SQLite has one writer) everything is read and judged again.

    ``fn`` must do all its reads through ``tx`` and keep no state between attempts.
    """
    for attempt in range(1, attempts + 1):
        try:
            with store.transaction() as tx:
                return fn(tx)
        except WriteConflict:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")
