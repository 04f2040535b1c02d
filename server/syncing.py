"""Wiring sync to the app: one push and one pull service per app, over its store, forms, boundaries and keys."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from .cursors import CursorCodec
from .forms_registry import household_fields_for, published_definition
from .pull import PullService
from .push import PushService
from .security.keys import keyring
from .store import get_store
from .villages import boundary_index

PUSH_EXTENSION = "kunjung.push"
PULL_EXTENSION = "kunjung.pull"
CURSORS_EXTENSION = "kunjung.cursors"


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined]


def cursor_codec() -> CursorCodec:
    """The app's signer of opaque cursors (pull cursors and list pages)."""
    app = _app()
    codec = app.extensions.get(CURSORS_EXTENSION)
    if codec is None:
        codec = app.extensions.setdefault(CURSORS_EXTENSION, CursorCodec(keyring(app)))
    return codec


def push_service() -> PushService:
    app = _app()
    service = app.extensions.get(PUSH_EXTENSION)
    if service is None:
        store = get_store()

        def definitions(form_id: str, version: str) -> Any:
            return published_definition(store, form_id, version)

        def household_fields(village: str) -> Any:
            return household_fields_for(store, village)

        service = app.extensions.setdefault(
            PUSH_EXTENSION, PushService(store, definitions=definitions, boundaries=boundary_index(app),
                                        household_fields=household_fields))
    return service


def pull_service() -> PullService:
    app = _app()
    service = app.extensions.get(PULL_EXTENSION)
    if service is None:
        service = app.extensions.setdefault(PULL_EXTENSION, PullService(get_store(), cursor_codec()))
    return service
