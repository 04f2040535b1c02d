"""Wiring the sync service to the app: one service per app, over its store, forms and boundaries."""

from __future__ import annotations

from typing import Any

from flask import current_app

from sync import format_hlc

from .clock import CLOCK_ID
from .store import get_store

EXTENSION = "kunjung.sync"


def sync_service() -> Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    service = app.extensions.get(EXTENSION)
    if service is None:
        from .sync_service import SyncService
        from .villages import boundary_index

        store = get_store()

        def definitions(form_id: str, version: str) -> Any:
            from . import forms_registry

            return forms_registry.published_definition(store, form_id, version)

        service = SyncService(store, definitions=definitions, boundaries=boundary_index(app))
        app.extensions[EXTENSION] = service
    return service


def form_changes() -> Any:
    """``(since, upto, scope) -> [(seq, change)]`` for forms a pull must bring."""
    from . import forms_registry

    store = get_store()

    def changes(since: int, upto: int, scope: Any) -> list[tuple[int, dict[str, Any]]]:
        found = forms_registry.forms_changed_since(store, since, scope, upto=upto)
        return [(change["seq"], change) for change in found]

    return changes


def server_hlc() -> str:
    doc = get_store().get("server_state", CLOCK_ID)
    return doc["last"] if doc else format_hlc(0, 0)
