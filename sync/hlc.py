"""Hybrid logical clocks (Kulkarni et al. 2014) and their sortable string form."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

MAX_MS = 10**13 - 1
MAX_COUNTER = 9999
ZERO_HLC = "0000000000000-0000"

_HLC = re.compile(r"[0-9]{13}-[0-9]{4}")


def _check_int(name: str, value: object, high: int) -> int:
    # bool is an int subclass; a True counter is always a caller's bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be between 0 and {high}, got {value}")
    return value


def format_hlc(ms: int, counter: int) -> str:
    """The HLC string for (ms, counter); fixed widths make string order equal clock order."""
    _check_int("ms", ms, MAX_MS)
    _check_int("counter", counter, MAX_COUNTER)
    return f"{ms:013d}-{counter:04d}"


def parse_hlc(text: object) -> tuple[int, int]:
    """(ms, counter) of an HLC string; ValueError unless it is exactly 13 digits, '-', 4 digits."""
    # fullmatch with [0-9] rather than \d: \d accepts non-ASCII digits, $ accepts a trailing newline.
    if not isinstance(text, str) or not _HLC.fullmatch(text):
        raise ValueError(f"malformed HLC {text!r}: expected 13 digits, '-', 4 digits")
    return int(text[:13]), int(text[14:])


def is_hlc(text: object) -> bool:
    """Whether ``text`` is a well-formed HLC string."""
    return isinstance(text, str) and _HLC.fullmatch(text) is not None


def hlc_ms(text: str) -> int:
    """The physical milliseconds of an HLC string."""
    return parse_hlc(text)[0]


def hlc_to_iso(text: str) -> str:
    """The physical time of an HLC as ISO-8601 UTC with milliseconds, e.g. for a write's ``at``."""
    moment = datetime.fromtimestamp(hlc_ms(text) / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def skew_ms(event_hlc: str, wall_ms: int) -> int:
    """How many milliseconds ``event_hlc`` is ahead of ``wall_ms`` (negative when behind)."""
    return hlc_ms(event_hlc) - wall_ms


def is_too_far_ahead(event_hlc: str, wall_ms: int, bound_ms: int) -> bool:
    """Whether ``event_hlc`` is more than ``bound_ms`` ahead of the receiver's wall clock."""
    return skew_ms(event_hlc, wall_ms) > bound_ms


def _tick(ms: int, counter: int) -> tuple[int, int]:
    # A saturated counter borrows from the milliseconds, so the clock still only moves up.
    if counter < MAX_COUNTER:
        return ms, counter + 1
    if ms >= MAX_MS:
        raise OverflowError("HLC milliseconds exhausted")
    return ms + 1, 0


class HybridClock:
    """One node's hybrid logical clock: never goes backwards, stays close to wall time.

    ``wall_ms`` reads the physical clock in Unix milliseconds; it is injected so that
    tests (and a server seeding from its store) control it. ``last`` starts the clock
    at or above an HLC already issued or seen, so a restarted node never stamps below it.
    """

    def __init__(self, wall_ms: Callable[[], int], last: str | None = None) -> None:
        self._wall_ms = wall_ms
        self._ms, self._counter = parse_hlc(last) if last is not None else (0, 0)

    @property
    def last(self) -> str:
        """The greatest HLC this clock has issued or observed."""
        return format_hlc(self._ms, self._counter)

    def _read_wall(self) -> int:
        return _check_int("wall clock", self._wall_ms(), MAX_MS)

    def now(self) -> str:
        """A fresh HLC for a local or send event, above every HLC issued or observed."""
        wall = self._read_wall()
        if wall > self._ms:
            self._ms, self._counter = wall, 0
        else:
            self._ms, self._counter = _tick(self._ms, self._counter)
        return self.last

    def observe(self, remote_hlc: str) -> str:
        """Take in an HLC received from another node; returns the receive event's HLC.

        The result is above both the remote HLC and everything this clock issued. Reject
        remote HLCs that are too far ahead (:func:`is_too_far_ahead`) before observing
        them: a clock that observes a far-future HLC stays there.
        """
        remote_ms, remote_counter = parse_hlc(remote_hlc)
        wall = self._read_wall()
        top = max(self._ms, remote_ms, wall)
        if top == self._ms == remote_ms:
            self._ms, self._counter = _tick(top, max(self._counter, remote_counter))
        elif top == self._ms:
            self._ms, self._counter = _tick(top, self._counter)
        elif top == remote_ms:
            self._ms, self._counter = _tick(top, remote_counter)
        else:
            self._ms, self._counter = top, 0
        return self.last
