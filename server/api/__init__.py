"""The HTTP resources; every blueprint is registered from the one list below."""

from __future__ import annotations

from . import health

BLUEPRINTS = [
    health.blp,
]
