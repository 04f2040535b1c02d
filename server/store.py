"""What the application keeps, by collection, and how a request reaches the store."""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app

from .storage import CollectionSpec, Store, StoreUnavailable, open_store

log = logging.getLogger("kunjung.store")

# Every collection the server uses, with the fields it is queried by. Adding a field
# here adds its index at the next start-up on every backend.
COLLECTIONS: list[CollectionSpec] = [
    CollectionSpec("server_state", fields=()),
    # accounts and security (server/auth.py, server/users.py)
    CollectionSpec("users", fields=("role", "disabled"), indexes=(("role",),)),
    CollectionSpec("devices", fields=("username", "device_id", "revoked", "last_sync_at"),
                   indexes=(("username",), ("device_id",), ("last_sync_at",))),
    # One document per login: every access and refresh token of that login names it.
    CollectionSpec("logins", fields=("username", "revoked"), indexes=(("username",),)),
    CollectionSpec("rate_limits", fields=("expires_at",), indexes=(("expires_at",),)),
    CollectionSpec("audit", fields=("at", "actor", "action", "target"),
                   indexes=(("at",), ("actor", "at"), ("action", "at"))),
    # villages and their boundaries (server/villages.py); the id is the Kemendagri code.
    # boundary_hash lets the boundary cache check itself with a count instead of a read.
    CollectionSpec("villages", fields=("kecamatan", "regency", "province", "has_boundary", "boundary_hash"),
                   indexes=(("kecamatan",), ("regency",))),
    # sync (server/sync_service.py): every accepted event, and the records folded from them
    CollectionSpec("events", fields=("household_id", "visit_id", "village", "type", "device_id", "officer", "hlc"),
                   indexes=(("household_id", "seq"), ("village", "seq"), ("device_id",), ("officer",), ("hlc",)),
                   tracked=True),
    CollectionSpec("households", fields=("village", "open_conflicts"),
                   indexes=(("village", "seq"), ("village", "id"), ("open_conflicts",)), tracked=True),
    CollectionSpec("visits", fields=("village", "household_id", "form_id", "form_version", "officer", "device_id",
                                     "review_state", "reviewed", "flagged", "received_at", "ended_at"),
                   indexes=(("village", "seq"), ("officer", "reviewed", "seq"), ("village", "reviewed", "seq"),
                            ("household_id",), ("form_id", "received_at"), ("review_state",), ("flagged",),
                            ("received_at",),
                            # exports and figures stream one form version at a time in seq order
                            # (server/reporting.py); this index serves that filter and order together
                            ("form_id", "form_version", "seq")),
                   tracked=True, geo=("location",)),
    CollectionSpec("conflicts", fields=("household_id", "village", "field", "open"),
                   indexes=(("household_id", "open"), ("village", "open"))),
    # form definitions (server/forms_registry.py): one tracked document per form, so that publishing,
    # archiving and assignment reach devices through the pull; versions are immutable once published.
    CollectionSpec("forms", fields=("archived", "published"), tracked=True),
    CollectionSpec("form_versions", fields=("form_id", "state", "hash"), indexes=(("form_id",),)),
    # every export of visits or household history (server/exports.py): exports carry personal data
    CollectionSpec("exports", fields=("at", "actor", "format"), indexes=(("at",), ("actor", "at"))),
]

EXTENSION = "kunjung.store"


class _Holder:
    """The app's store, and whether its schema is known to be in place yet."""

    def __init__(self, store: Store):
        self.store = store
        self.ready = False
        self.lock = threading.Lock()
        self.on_ready: list = []

    def ensure(self) -> Store:
        if not self.ready:
            with self.lock:
                if not self.ready:
                    self.store.ensure_schema()
                    for hook in self.on_ready:
                        hook(self.store)
                    self.ready = True
        return self.store


def init_store(app: Flask, store: Store | None = None) -> Store:
    """Open the configured store (or adopt ``store``) and attach it to ``app``.

    The schema is created now if the store answers; if it does not, the server still
    starts, and the first request that needs the store tries again (503 meanwhile).
    """
    if store is None:
        store = open_store(app.config["DATABASE_URL"], COLLECTIONS, **app.config.get("STORE_OPTIONS", {}))
    holder = _Holder(store)
    app.extensions[EXTENSION] = holder
    return store


def prepare_store(app: Flask) -> None:
    """Create the schema and run start-up hooks now, tolerating a store that is down."""
    try:
        app.extensions[EXTENSION].ensure()
    except StoreUnavailable as exc:
        log.warning("store not reachable at start-up (%s); will retry on each request", exc)


def on_store_ready(app: Flask, hook) -> None:
    """Run ``hook(store)`` once the schema is in place (seeding the form library, say)."""
    app.extensions[EXTENSION].on_ready.append(hook)


def get_store(app: Flask | None = None) -> Store:
    """The store, with its schema in place; raises StoreUnavailable (503) while it is down."""
    return (app or current_app).extensions[EXTENSION].ensure()


def raw_store(app: Flask) -> Store:
    """The store object without touching it (for closing it)."""
    return app.extensions[EXTENSION].store
