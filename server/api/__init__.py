"""The HTTP resources; every blueprint is registered from the one list below."""

from __future__ import annotations

from . import auth, collect, exports, forms, health, reports, supervision, sync, uploads, users, villages

BLUEPRINTS = [
    health.blp,
    auth.blp,
    users.blp,
    forms.blp,
    villages.blp,
    sync.blp,
    supervision.blp,
    reports.blp,
    exports.blp,
    collect.blp,
    uploads.blp,
]
