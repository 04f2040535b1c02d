"""The event shape the merge engine folds: validation, and the stale_base check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sync.hlc import is_hlc
from sync.order import DEVICE, ORIGINS, SERVER, DeviceOrder, device_order
from sync.paths import check_path, split_erase_pattern
from sync.stamps import is_id, make_stamp, parse_stamp
from sync.values import JsonValue, check_json_value

INVALID = "invalid"
MAX_DEVICE_SEQ = 2**63 - 1
STALE_BASE = "stale_base"
ID_REUSED = "id_reused"


class EventError(ValueError):
    """Why an event cannot be folded, in the shape of the HTTP error body.

    ``code`` is stable (``invalid``, ``stale_base`` or ``id_reused``); ``errors`` maps a path into the
    event (``hlc``, ``device_seq``, ``origin``, ``set.<field path>``, ``base.<field path>``,
    ``erase.<index>``) to messages.
    """

    def __init__(self, code: str, message: str, errors: Mapping[str, list[str]]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = {key: list(messages) for key, messages in sorted(errors.items())}

    @property
    def paths(self) -> tuple[str, ...]:
        """The field paths named by ``set.<path>`` and ``base.<path>`` error keys."""
        found = {key.split(".", 1)[1] for key in self.errors if key.startswith(("set.", "base."))}
        return tuple(sorted(found))

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", "errors"}`` for a push result."""
        return {"code": self.code, "message": self.message, "errors": self.errors}


@dataclass(frozen=True)
class Event:
    """A validated event: field writes to one record, all stamped ``hlc/device_id/id``.

    ``base`` holds only paths that ``set`` writes, each as a sorted tuple of distinct stamps.
    ``origin`` is ``device`` for an event a device pushed (its writes take part in the chain
    rule, ordered by ``device_seq`` when it has one, else by HLC) and ``server`` for a write a
    server made (a resolution, review, register import or erasure), which supersedes exactly
    its base. ``erase`` (server-made only, with nothing in ``set``) lists what an erasure
    covers: ``*``, ``members/<uuid>/*`` or exact field paths.
    """

    id: str
    device_id: str
    hlc: str
    officer: str
    household_id: str
    village: str
    set: Mapping[str, JsonValue] = field(default_factory=dict)
    base: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    at: str | None = None
    device_seq: int | None = None
    origin: str = DEVICE
    erase: tuple[str, ...] = ()

    @cached_property
    def stamp(self) -> str:
        """The stamp of every write this event makes."""
        return make_stamp(self.hlc, self.device_id, self.id)

    @property
    def order(self) -> DeviceOrder | None:
        """The device order of this event's writes (None when server-made)."""
        return device_order(self.origin, self.device_id, self.device_seq, self.hlc)


def _check_text_field(errors: dict[str, list[str]], data: Mapping[str, Any], key: str) -> None:
    value = data.get(key)
    if not isinstance(value, str) or not value or not value.isprintable():
        errors.setdefault(key, []).append("must be a non-empty printable string")


def _check_id_field(errors: dict[str, list[str]], data: Mapping[str, Any], key: str) -> None:
    if not is_id(data.get(key)):
        errors.setdefault(key, []).append(
            "must be 1-128 characters of A-Z a-z 0-9 . _ : -, starting alphanumeric"
        )


def _check_at(errors: dict[str, list[str]], at: object) -> None:
    if at is None:
        return
    try:
        if not isinstance(at, str):
            raise TypeError
        datetime.fromisoformat(at)
    except (TypeError, ValueError):
        errors.setdefault("at", []).append("must be an ISO-8601 date-time string")


def _parse_set(errors: dict[str, list[str]], writes: object) -> dict[str, JsonValue]:
    if not isinstance(writes, Mapping):
        errors.setdefault("set", []).append("must be an object mapping field paths to values")
        return {}
    parsed: dict[str, JsonValue] = {}
    for path, value in writes.items():
        try:
            # An event's roster paths are mostly new ones (a visit to a new household): not cached.
            check_path(path, remember=False)
            check_json_value(value)
        except ValueError as error:
            errors.setdefault(f"set.{path}", []).append(str(error))
        else:
            parsed[path] = value
    return parsed


def _parse_base(errors: dict[str, list[str]], base: object) -> dict[str, tuple[str, ...]]:
    if base is None:
        return {}
    if not isinstance(base, Mapping):
        errors.setdefault("base", []).append("must be an object mapping field paths to lists of stamps")
        return {}
    parsed: dict[str, tuple[str, ...]] = {}
    for path, stamps in base.items():
        key = f"base.{path}"
        try:
            check_path(path)
            if not isinstance(stamps, list | tuple):
                raise ValueError("must be a list of stamps")
            for stamp in stamps:
                parse_stamp(stamp)
        except ValueError as error:
            errors.setdefault(key, []).append(str(error))
        else:
            parsed[path] = tuple(sorted(set(stamps)))
    return parsed


def _parse_origin(errors: dict[str, list[str]], data: Mapping[str, Any]) -> str:
    origin = data.get("origin", DEVICE)
    if origin not in ORIGINS:
        errors.setdefault("origin", []).append(f"must be one of {', '.join(ORIGINS)}")
        return DEVICE
    return origin


def _parse_device_seq(errors: dict[str, list[str]], data: Mapping[str, Any], origin: str) -> int | None:
    seq = data.get("device_seq")
    if seq is None:
        return None
    # bool is an int subclass; true is never a counter.
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_DEVICE_SEQ:
        errors.setdefault("device_seq", []).append(f"must be an integer from 1 to {MAX_DEVICE_SEQ}")
        return None
    if origin != DEVICE:
        errors.setdefault("device_seq", []).append("only events a device pushed carry a device_seq")
    return seq


def _parse_erase(errors: dict[str, list[str]], data: Mapping[str, Any], origin: str) -> tuple[str, ...]:
    patterns = data.get("erase")
    if patterns is None:
        return ()
    if not isinstance(patterns, list | tuple):
        errors.setdefault("erase", []).append("must be a list of field paths, members/<uuid>/* or *")
        return ()
    parsed = set()
    for index, pattern in enumerate(patterns):
        try:
            split_erase_pattern(pattern)
        except ValueError as error:
            errors.setdefault(f"erase.{index}", []).append(str(error))
        else:
            parsed.add(pattern)
    if patterns and origin != SERVER:
        errors.setdefault("erase", []).append("only a server-made event (origin server) erases")
    if patterns and data.get("set"):
        errors.setdefault("set", []).append("an erasure writes nothing")
    return tuple(sorted(parsed))


def parse_event(data: Mapping[str, Any] | Event) -> Event:
    """The validated :class:`Event` of an event dict; EventError ``invalid`` listing every problem.

    Keys other than the engine's are ignored (the server keeps the full event itself).
    A ``base`` entry for a path the event does not write is checked, then dropped: it
    names nothing this event supersedes.
    """
    if isinstance(data, Event):
        return data
    if not isinstance(data, Mapping):
        raise EventError(INVALID, "an event must be a JSON object", {"": ["must be an object"]})
    errors: dict[str, list[str]] = {}
    for key in ("id", "device_id", "household_id", "village"):
        _check_id_field(errors, data, key)
    _check_text_field(errors, data, "officer")
    if not is_hlc(data.get("hlc")):
        errors.setdefault("hlc", []).append("must be an HLC string: 13 digits, '-', 4 digits")
    _check_at(errors, data.get("at"))
    origin = _parse_origin(errors, data)
    device_seq = _parse_device_seq(errors, data, origin)
    erase = _parse_erase(errors, data, origin)
    writes = _parse_set(errors, data.get("set", {}))
    base = _parse_base(errors, data.get("base"))
    if errors:
        raise EventError(INVALID, "the event is not valid", errors)
    return Event(
        id=data["id"],
        device_id=data["device_id"],
        hlc=data["hlc"],
        officer=data["officer"],
        household_id=data["household_id"],
        village=data["village"],
        set=dict(writes),
        base={path: stamps for path, stamps in base.items() if path in writes and stamps},
        at=data.get("at"),
        device_seq=device_seq,
        origin=origin,
        erase=erase,
    )


def stale_base_error(event: Event) -> EventError | None:
    """The ``stale_base`` error of a valid event, or None when every base stamp is older."""
    errors: dict[str, list[str]] = {}
    for path, stamps in event.base.items():
        for stamp in stamps:
            if parse_stamp(stamp).hlc >= event.hlc:
                errors.setdefault(f"base.{path}", []).append(
                    f"{stamp} is not older than the event's HLC {event.hlc}"
                )
    if not errors:
        return None
    return EventError(
        STALE_BASE,
        "the event's HLC is not above every stamp its base names; re-stamp it with a newer clock",
        errors,
    )


def check_base(data: Mapping[str, Any] | Event) -> EventError | None:
    """None when the event may be folded; else its ``invalid`` or ``stale_base`` error.

    An event whose HLC is not strictly above every base stamp would let an older
    value win, so it is refused rather than folded.
    """
    try:
        event = parse_event(data)
    except EventError as error:
        return error
    return stale_base_error(event)
