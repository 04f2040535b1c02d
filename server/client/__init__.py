"""kunjung's device client: an HTTP client of the JSON sync API for phones, the simulator, the bench and relays.

Layers, bottom up: a :class:`Transport` sends one request (:class:`HttpTransport` over the standard
library, :class:`FlaskTransport` into an app in this process); a :class:`Session` holds one login's token
pair and retries with backoff; a :class:`DeviceClient` keeps a device's clock, ``device_seq`` counter,
events and replica, and pushes and pulls.
"""

from .device import (
    ACKED,
    PENDING,
    REJECTED,
    SKEWED,
    DeviceClient,
    Outgoing,
    PullReport,
    PushReport,
    iso_ms,
    merge_record,
    parse_iso_ms,
)
from .replica import Interner, PulledHousehold, Replica, field_stamps, kept_json, pulled_writes
from .session import PAGE_LIMIT, RETRYABLE_STATUSES, ClientError, RetryPolicy, Session, Unreachable
from .transport import TRANSPORT_ERRORS, FlaskTransport, HttpTransport, Reply, Transport

__all__ = [
    "ACKED",
    "PAGE_LIMIT",
    "PENDING",
    "REJECTED",
    "RETRYABLE_STATUSES",
    "SKEWED",
    "TRANSPORT_ERRORS",
    "ClientError",
    "DeviceClient",
    "FlaskTransport",
    "HttpTransport",
    "Interner",
    "Outgoing",
    "PullReport",
    "PulledHousehold",
    "PushReport",
    "Replica",
    "Reply",
    "RetryPolicy",
    "Session",
    "Transport",
    "Unreachable",
    "field_stamps",
    "iso_ms",
    "kept_json",
    "merge_record",
    "parse_iso_ms",
    "pulled_writes",
]
