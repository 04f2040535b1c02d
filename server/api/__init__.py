"""The HTTP resources; every blueprint is registered from the one list below."""

from __future__ import annotations

from . import auth, health, users

BLUEPRINTS = [
    health.blp,
    auth.blp,
    users.blp,
]
