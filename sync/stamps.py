"""Stamps: the "<hlc>/<device_id>/<event_id>" names of field writes, and their order."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from sync.hlc import parse_hlc

# '/' separates the parts, so ids may not hold it; the rest keeps stamps URL- and log-safe.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class Stamp(NamedTuple):
    """The parts of a stamp. Order stamps by their string, never by this tuple."""

    hlc: str
    device_id: str
    event_id: str


def is_id(text: object) -> bool:
    """Whether ``text`` may be a device id or event id inside a stamp."""
    return isinstance(text, str) and _ID.fullmatch(text) is not None


def check_id(name: str, text: object) -> str:
    """``text`` when it is a valid stamp id; ValueError naming ``name`` otherwise."""
    if not isinstance(text, str) or _ID.fullmatch(text) is None:
        raise ValueError(
            f"malformed {name} {text!r}: 1-128 characters of A-Z a-z 0-9 . _ : -, starting alphanumeric"
        )
    return text


def make_stamp(hlc: str, device_id: str, event_id: str) -> str:
    """The stamp string of a write made at ``hlc`` by ``device_id`` in event ``event_id``."""
    parse_hlc(hlc)
    check_id("device_id", device_id)
    check_id("event_id", event_id)
    return f"{hlc}/{device_id}/{event_id}"


def parse_stamp(text: object) -> Stamp:
    """The parts of a stamp string; ValueError on anything but exactly hlc/device_id/event_id."""
    if not isinstance(text, str):
        raise ValueError(f"malformed stamp {text!r}: not a string")
    return _parse_text(text)


# Every write of an event shares its stamp, and stored heads are parsed again on each load.
@lru_cache(maxsize=65536)
def _parse_text(text: str) -> Stamp:
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError(f"malformed stamp {text!r}: expected <hlc>/<device_id>/<event_id>")
    hlc, device_id, event_id = parts
    try:
        parse_hlc(hlc)
        check_id("device_id", device_id)
        check_id("event_id", event_id)
    except ValueError as error:
        raise ValueError(f"malformed stamp {text!r}: {error}") from None
    return Stamp(hlc, device_id, event_id)


def is_stamp(text: object) -> bool:
    """Whether ``text`` is a well-formed stamp."""
    try:
        parse_stamp(text)
    except ValueError:
        return False
    return True


def stamp_hlc(stamp: str) -> str:
    """The HLC part of a well-formed stamp."""
    return parse_stamp(stamp).hlc
