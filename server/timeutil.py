"""Wall time for records and the audit log: the present in UTC, and its one ISO-8601 spelling."""

from __future__ import annotations

from datetime import UTC, datetime


def now_utc() -> datetime:
    """The present, timezone-aware, in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``moment`` as ISO-8601 in UTC with milliseconds and a ``Z``: string order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
