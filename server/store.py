"""What the application keeps, by collection, and how a request reaches the store."""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app

from . import pull_views
from .storage import CollectionSpec, Query, Store, StoreMisconfigured, StoreUnavailable, open_store

log = logging.getLogger("kunjung.store")

# Every collection the server uses, with the fields it is queried by, its indexes, and every
# shape of read the server makes with the index that serves it (one registry for both backends:
# each backend builds these indexes, and the test suite refuses a read no Query declares).
# Adding a field here adds its index at the next start-up on every backend.
#
# A Query's filter fields lead its index; the index then gives the order when they are matched
# by value or In (a range on them, such as a kecamatan prefix, leaves the bounded matches to be
# sorted). "residual" fields are checked on the documents the index finds: optional filters of
# listings whose page the index already bounds. "scan" in a reason marks a read that visits the
# whole collection on purpose (a count of everything, a small collection, a test's check).
def _counted(why: str = "counts of everything (health checks, tests): a scan") -> Query:
    return Query(order=None, why=why)


_VISIT_FILTERS = ("officer", "form_id", "review_state", "flagged")

COLLECTIONS: list[CollectionSpec] = [
    CollectionSpec("server_state", fields=(), queries=(_counted(),)),
    # accounts and security (server/auth.py, server/users.py)
    CollectionSpec("users", fields=("role", "disabled"), indexes=(("role", "id"),), retired=(("role",),),
                   queries=(Query(why="the user list; every user, for figures"), _counted(),
                            Query(("role",), "id", ("role", "id"), why="officer figures"))),
    CollectionSpec("devices", fields=("username", "device_id", "revoked", "last_sync_at"),
                   indexes=(("username", "id"),), retired=(("username",), ("device_id",), ("last_sync_at",)),
                   queries=(Query(("username",), "id", ("username", "id"), why="a user's devices"),
                            Query(("username",), "username", ("username", "id"), why="device figures"),
                            Query((), "username", ("username", "id"), why="device figures, every user"),
                            _counted())),
    # ODK Collect's app credentials (server/app_credentials.py), by the SHA-256 of the token: read by id only.
    CollectionSpec("app_credentials", fields=(), queries=(_counted(),)),
    # files of a submission Collect split over several posts, until its last part (server/collect.py)
    CollectionSpec("collect_parts", fields=(), queries=(_counted(),)),
    # offline entity updates held for the earlier one of their branch, and the branch steps taken in (same)
    CollectionSpec("collect_held", fields=("held_at",), indexes=(("held_at", "id"),),
                   queries=(Query(("held_at",), "id", ("held_at", "id"), why="held longer than the backlog's age"),
                            _counted())),
    CollectionSpec("collect_branches", fields=(), queries=(_counted(),)),
    # One document per login: every access and refresh token of that login names it.
    CollectionSpec("logins", fields=("username", "revoked"), retired=(("username",),), queries=(_counted(),)),
    CollectionSpec("rate_limits", fields=("expires_at",), indexes=(("expires_at", "id"),), retired=(("expires_at",),),
                   queries=(Query(("expires_at",), "id", ("expires_at", "id"), why="removing expired windows"),
                            Query(why="tests: every window, a scan"), _counted())),
    # ``household`` and ``person`` (a NIK's keyed hash) let the log answer "who read this family's data"
    # (server/audit.py); pull pages name their households in details, scanned by action.
    CollectionSpec("audit", fields=("at", "actor", "action", "target", "household", "person"),
                   indexes=(("at", "id"), ("action", "at", "id"), ("actor", "at", "id"), ("household", "at", "id"),
                            ("person", "at", "id")),
                   retired=(("at",), ("actor", "at"), ("action", "at")),
                   queries=(Query((), "at", ("at", "id"), why="the audit log, newest first; pruning, oldest first"),
                            Query(("action",), "at", ("action", "at", "id"), why="the audit log of one action"),
                            Query(("actor",), "at", ("actor", "at", "id"), residual=("action",),
                                  why="the audit log of one user"),
                            Query(("household",), "at", ("household", "at", "id"), residual=("action", "actor"),
                                  why="the audit log of one household"),
                            Query(("person",), "at", ("person", "at", "id"), residual=("action", "actor"),
                                  why="the audit log of one person"),
                            Query(("action",), "at", ("action", "at", "id"), residual=("actor",),
                                  why="pull pages that may have carried a household"),
                            Query(("at",), None, ("at", "id"), why="pruning: how many entries are too old"),
                            Query(("action",), None, ("action", "at", "id"), why="tests: how often an action"),
                            Query((), "id", residual=("action",), why="tests: one action's entries, a scan"),
                            _counted())),
    # villages and their boundaries (server/villages.py); the id is the Kemendagri code.
    # boundary_hash lets the boundary cache check itself with a count instead of a read.
    CollectionSpec("villages", fields=("kecamatan", "regency", "province", "has_boundary", "boundary_hash"),
                   retired=(("kecamatan",), ("regency",)),
                   queries=(Query(why="villages in a scope (an id condition), by code"),
                            Query(("id",), None, ("id",), residual=("boundary_hash",),
                                  why="the boundary cache checking itself"),
                            _counted())),
    # sync (server/sync_service.py): every accepted event, and the records folded from them
    CollectionSpec("events", fields=("household_id", "visit_id", "village", "type", "device_id", "officer", "hlc"),
                   indexes=(("household_id", "seq"), ("hlc", "id"), ("village", "seq")),
                   retired=(("device_id",), ("officer",), ("hlc",)),
                   tracked=True,
                   queries=(Query(("household_id",), "seq", ("household_id", "seq"),
                                  why="a household's history and its rebuild"),
                            # server/relay/feed.py: a hall's feed of its villages' events, and what waits
                            Query(("village", "seq"), "seq", ("village", "seq"), why="relay feed, in a scope"),
                            Query(("village", "seq"), None, ("village", "seq"), why="relay: events waiting"),
                            Query(("village",), None, ("village", "seq"), why="relay: a hall dropping a lost village"),
                            Query(("seq",), "seq", ("seq",), why="relay: a hall's own events to send up"),
                            Query((), "hlc", ("hlc", "id"), why="start-up: the largest stored HLC"),
                            Query((), None, residual=("type",), why="tests: events of a type, a scan"),
                            Query((), "id", why="every event by id: rebuilds and checks read them all"),
                            _counted())),
    # Each household keeps the JSON its pull sends, whole and masked (server/pull_views.py).
    CollectionSpec("households", fields=("village", "open_conflicts"),
                   indexes=(("village", "seq"), ("village", "id")), tracked=True, retired=(("open_conflicts",),),
                   views=pull_views.VIEWS, encode_views=pull_views.encode_pull_views,
                   views_version=pull_views.VERSION,
                   queries=(Query(("village", "seq"), "seq", ("village", "seq"), why="pull, in a scope"),
                            Query(("seq",), "seq", ("seq",), why="pull, everything (admins)"),
                            Query(("village",), "id", ("village", "id"), why="household listing"),
                            Query((), "id", why="household listing (admins), rebuild"),
                            Query(("village",), "village", ("village", "id"), why="exports and coverage"),
                            Query((), "village", ("village", "id"), why="exports and coverage (admins)"),
                            Query(("village",), None, ("village", "id"), why="households of a village"),
                            _counted())),
    CollectionSpec("visits", fields=("village", "household_id", "form_id", "form_version", "officer", "device_id",
                                     "review_state", "reviewed", "flagged", "received_at", "ended_at",
                                     "restamp_hidden"),
                   indexes=(("officer", "reviewed", "seq"), ("village", "reviewed", "seq"), ("reviewed", "seq"),
                            # exports and figures stream one form version at a time in seq order
                            # (server/reporting.py); this index serves that filter and order together
                            ("form_id", "form_version", "seq"),
                            ("village", "id"), ("flagged", "id"),
                            # the hidden re-stamps counted apart from everything (server/visits.py)
                            ("restamp_hidden", "id")),
                   tracked=True, geo=("location",),
                   retired=(("village", "seq"), ("household_id",), ("form_id", "received_at"), ("review_state",),
                            ("flagged",), ("received_at",)),
                   queries=(Query(("officer", "reviewed", "seq"), "seq", ("officer", "reviewed", "seq"),
                                  why="an officer's pull of reviews"),
                            Query(("village", "reviewed", "seq"), "seq", ("village", "reviewed", "seq"),
                                  why="a supervisor's pull of reviews"),
                            Query(("reviewed", "seq"), "seq", ("reviewed", "seq"), why="an admin's pull of reviews"),
                            Query(("form_id", "form_version"), "seq", ("form_id", "form_version", "seq"),
                                  residual=("officer", "review_state", "village"), why="exports and figures"),
                            Query(("village",), "id", ("village", "id"), residual=_VISIT_FILTERS,
                                  why="visit listing and review queue in a scope"),
                            Query(("village",), None, ("village", "id"), residual=(*_VISIT_FILTERS, "restamp_hidden"),
                                  why="review queue totals in a scope, less the hidden re-stamps (server/visits.py)"),
                            Query(("flagged",), "id", ("flagged", "id"), residual=_VISIT_FILTERS[:3],
                                  why="review queue (admins)"),
                            Query(("flagged",), None, ("flagged", "id"),
                                  residual=(*_VISIT_FILTERS[:3], "restamp_hidden"),
                                  why="review queue totals (admins), less the hidden re-stamps"),
                            Query((), "id", residual=_VISIT_FILTERS[:3],
                                  why="visit listing (admins), filters checked on each visit until the page fills"),
                            Query((), None, residual=_VISIT_FILTERS[:3],
                                  why="visit totals (admins, no flag filter): every visit, filters checked, a scan"),
                            Query(("restamp_hidden",), None, ("restamp_hidden", "id"), residual=_VISIT_FILTERS[:3],
                                  why="visit totals (admins, no flag filter), less the hidden re-stamps"),
                            _counted())),
    CollectionSpec("conflicts", fields=("household_id", "village", "field", "open"),
                   indexes=(("household_id", "id"), ("village", "id"), ("open", "id")),
                   retired=(("household_id", "open"), ("village", "open")),
                   queries=(Query(("household_id",), "id", ("household_id", "id"), residual=("open",),
                                  why="a household's open conflicts, when it is written"),
                            Query(("village",), "id", ("village", "id"), residual=("open",),
                                  why="conflict listing and review queue in a scope"),
                            Query(("village",), None, ("village", "id"), residual=("open",),
                                  why="review queue totals in a scope"),
                            Query(("open",), "id", ("open", "id"), why="conflict listing (admins)"),
                            Query(("open",), None, ("open", "id"), why="review queue totals (admins)"),
                            _counted())),
    # village-hall credentials on the central server (server/relay/halls.py): one document per hall
    CollectionSpec("relay_halls", queries=(Query(why="the hall list (a small collection)"), _counted())),
    # at a hall (server/relay/files.py): one document per file of a relayed visit still to go up to, or
    # come down from, upstream, and where its transfer stands
    CollectionSpec("relay_files", fields=("direction", "state"), indexes=(("direction", "state", "id"),),
                   queries=(Query(("direction", "state"), "id", ("direction", "state", "id"),
                                  why="a round: the files still to go up or come down"),
                            Query(("direction", "state"), None, ("direction", "state", "id"),
                                  why="status: how many files wait"),
                            _counted())),
    # form definitions (server/forms_registry.py): one tracked document per form, so that publishing,
    # archiving and assignment reach devices through the pull; versions are immutable once published.
    # Both collections hold one document per form or version: reading them whole is cheap.
    CollectionSpec("forms", fields=("archived", "published"), tracked=True,
                   queries=(Query(("seq",), "seq", ("seq",), why="pull of forms"),
                            Query((), "id", residual=("archived", "published"), why="form lists (a small collection)"),
                            _counted())),
    CollectionSpec("form_versions", fields=("form_id", "state", "hash"), indexes=(("form_id", "id"),),
                   retired=(("form_id",),),
                   queries=(Query(("form_id",), "id", ("form_id", "id"), residual=("state",),
                                  why="a form's versions"),
                            Query((), "id", residual=("state",), why="published versions (a small collection)"),
                            _counted())),
    # files of visits (server/blobs/): one document per (visit, question path) naming the blob that
    # answers it and whether it has arrived; and the resumable uploads under way (tus)
    CollectionSpec("attachments", fields=("visit_id", "device_id", "held", "sha256", "thumbnail_sha256"),
                   indexes=(("visit_id", "id"), ("device_id", "held", "id"), ("sha256", "id"),
                            ("thumbnail_sha256", "id")),
                   queries=(Query(("visit_id",), "id", ("visit_id", "id"), why="a visit's files"),
                            Query(("visit_id",), None, ("visit_id", "id"),
                                  why="relay: a hall dropping the files of a village it lost"),
                            Query(("device_id", "held"), "id", ("device_id", "held", "id"),
                                  why="pull: the device's files the server still lacks"),
                            Query(("sha256",), "id", ("sha256", "id"), why="clean-up: is a blob named"),
                            Query(("thumbnail_sha256",), "id", ("thumbnail_sha256", "id"),
                                  why="clean-up: is a thumbnail named"),
                            _counted())),
    CollectionSpec("uploads", fields=("created_at",), indexes=(("created_at", "id"),),
                   queries=(Query((), "created_at", ("created_at", "id"), why="clean-up: uploads left unfinished"),
                            _counted())),
    # files that travel with a form version (server/forms_registry.py): one document per file of a
    # version (id "<form_id>@<version>/<name>"); its bytes are a blob (server/blobs) named by sha256.
    # form_file_chunks held the bytes before (id "<sha256>:<n>", read by id only): start-up moves them.
    CollectionSpec("form_files", fields=("form_id", "version", "sha256"),
                   indexes=(("form_id", "version", "id"), ("sha256", "id")),
                   queries=(Query(("form_id", "version"), "id", ("form_id", "version", "id"),
                                  why="a version's files, by name"),
                            Query(("sha256",), "id", ("sha256", "id"), why="clean-up: is a blob named"),
                            Query(why="start-up: files still in form_file_chunks, a scan of a small collection"),
                            _counted())),
    # gc-attachments marks a chunk no form file names (orphan_since) and removes it after its grace period
    CollectionSpec("form_file_chunks", fields=(), queries=(
        Query(why="clean-up: chunks no form file names, a scan of a collection only older servers wrote"),
        _counted())),
    # the XForm of each published version as Collect was first given it (server/forms_registry.py), by id only
    CollectionSpec("form_xforms", fields=(), queries=(_counted(),)),
    # every export of visits or household history (server/exports.py): exports carry personal data
    CollectionSpec("exports", fields=("at", "actor", "format"), indexes=(("at", "id"), ("actor", "at", "id")),
                   retired=(("at",), ("actor", "at")),
                   queries=(Query((), "at", ("at", "id"), why="the export log, newest first"),
                            Query(("actor",), "at", ("actor", "at", "id"), why="one admin's exports"),
                            Query(why="tests: every export record"), _counted())),
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
        url = app.config["DATABASE_URL"]
        options = dict(app.config.get("STORE_OPTIONS", {}))
        if url.startswith(("mongodb://", "mongodb+srv://")):
            options.setdefault("allow_standalone", bool(app.config.get("MONGO_ALLOW_STANDALONE")))
        store = open_store(url, COLLECTIONS, **options)
    holder = _Holder(store)
    app.extensions[EXTENSION] = holder
    return store


def prepare_store(app: Flask) -> None:
    """Create the schema and run start-up hooks now, tolerating a store that is down (but not
    one that cannot serve kunjung, such as a MongoDB without transactions: that stops start-up)."""
    try:
        app.extensions[EXTENSION].ensure()
    except StoreMisconfigured:
        raise
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
