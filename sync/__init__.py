"""The merge engine: hybrid logical clocks, stamps, events, folding events into records, conflicts."""

from sync.events import ID_REUSED, INVALID, STALE_BASE, Event, EventError, check_base, parse_event
from sync.hlc import (
    HybridClock,
    format_hlc,
    hlc_ms,
    hlc_to_iso,
    is_hlc,
    is_too_far_ahead,
    parse_hlc,
    skew_ms,
)
from sync.merge import FieldState, Record, Write, conflict_id, fold, writes_of
from sync.paths import is_field_name, is_member_id, member_path, split_path
from sync.stamps import Stamp, is_id, is_stamp, make_stamp, parse_stamp, stamp_hlc
from sync.values import canonical_json, check_json_value, json_key, same_json

__all__ = [
    "ID_REUSED",
    "INVALID",
    "STALE_BASE",
    "Event",
    "EventError",
    "FieldState",
    "HybridClock",
    "Record",
    "Stamp",
    "Write",
    "canonical_json",
    "check_base",
    "check_json_value",
    "conflict_id",
    "fold",
    "format_hlc",
    "hlc_ms",
    "hlc_to_iso",
    "is_field_name",
    "is_hlc",
    "is_id",
    "is_member_id",
    "is_stamp",
    "is_too_far_ahead",
    "json_key",
    "make_stamp",
    "member_path",
    "parse_event",
    "parse_hlc",
    "parse_stamp",
    "same_json",
    "skew_ms",
    "split_path",
    "stamp_hlc",
    "writes_of",
]
