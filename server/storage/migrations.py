"""Forward migrations of stored data, applied in order at start-up by every backend.

Collections, columns and indexes are created from the collection specs by the backend
itself; a migration here is for changing what is already stored. Each one runs once,
inside the start-up unit of work, and the store records the version it reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import SchemaError, Store, Writer


@dataclass(frozen=True)
class Migration:
    version: int
    migrate: Callable[[Store, Writer], None]
    description: str


def _initial(store: Store, writer: Writer) -> None:
    """Version 1 is the first layout: nothing stored before it needs changing."""


MIGRATIONS: list[Migration] = [
    Migration(1, _initial, "first layout"),
]


def pending_migrations(stored_version: int, migrations: list[Migration] | None = None) -> list[Migration]:
    """The migrations to run, in order, for a store at ``stored_version``.

    A store written by a newer kunjung is refused rather than half-understood.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    latest = migrations[-1].version
    if stored_version > latest:
        raise SchemaError(f"the store is at schema version {stored_version}, newer than this "
                          f"kunjung understands ({latest}); upgrade kunjung")
    return [m for m in migrations if m.version > stored_version]
