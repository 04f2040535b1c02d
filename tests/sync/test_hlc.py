"""Hybrid logical clocks: string form, strict parsing, monotonicity and skew."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import HybridClock, format_hlc, hlc_ms, hlc_to_iso, is_hlc, is_too_far_ahead, parse_hlc, skew_ms
from sync.hlc import MAX_COUNTER, MAX_MS

NOW = 1_763_790_000_000


class FakeWall:
    """A phone's wall clock that the test sets, including backwards."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_hlc_string_is_zero_padded_ms_and_counter() -> None:
    assert format_hlc(NOW, 3) == "1763790000000-0003"
    assert format_hlc(0, 0) == "0000000000000-0000"
    assert parse_hlc("1763790000000-0003") == (NOW, 3)
    assert hlc_ms("0000000001234-9999") == 1234


@pytest.mark.parametrize("text", [
    "176379000000-0003",        # 12 digits
    "17637900000000-0003",      # 14 digits
    "1763790000000-003",        # short counter
    "1763790000000-00003",      # long counter
    "-763790000000-0003",       # negative
    "+763790000000-0003",
    "1763790000000--003",
    "176379000000a-0003",       # non-digit
    "1763790000000_0003",       # wrong separator
    "1763790000000-0003\n",     # trailing newline ($ would allow it)
    " 1763790000000-0003",
    "1763790000000-0003x",
    "١٧٦٣٧٩٠٠٠٠٠٠٠-٠٠٠٣",     # Arabic-Indic digits satisfy \d but are not ASCII
    "１７６３７９００００００００-０００３",  # full-width digits
    "",
])
def test_parse_hlc_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="malformed HLC"):
        parse_hlc(text)
    assert not is_hlc(text)


@pytest.mark.parametrize("value", [None, 1763790000000, b"1763790000000-0003", ["1763790000000-0003"]])
def test_parse_hlc_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="malformed HLC"):
        parse_hlc(value)


@pytest.mark.parametrize(("ms", "counter", "error"), [
    (-1, 0, ValueError),
    (MAX_MS + 1, 0, ValueError),
    (0, -1, ValueError),
    (0, MAX_COUNTER + 1, ValueError),
    (1.0, 0, TypeError),
    (True, 0, TypeError),
    (0, False, TypeError),
])
def test_format_hlc_rejects_out_of_range_and_non_ints(ms: object, counter: object, error: type) -> None:
    with pytest.raises(error):
        format_hlc(ms, counter)  # type: ignore[arg-type]


@given(st.tuples(st.integers(0, MAX_MS), st.integers(0, MAX_COUNTER)),
       st.tuples(st.integers(0, MAX_MS), st.integers(0, MAX_COUNTER)))
def test_string_order_is_clock_order(left: tuple[int, int], right: tuple[int, int]) -> None:
    left_text, right_text = format_hlc(*left), format_hlc(*right)
    assert (left_text < right_text) == (left < right)
    assert (left_text == right_text) == (left == right)
    assert parse_hlc(left_text) == left


def test_clock_follows_wall_time_and_resets_counter() -> None:
    wall = FakeWall(NOW)
    clock = HybridClock(wall)
    assert clock.now() == format_hlc(NOW, 0)
    assert clock.now() == format_hlc(NOW, 1)
    wall.ms = NOW + 5
    assert clock.now() == format_hlc(NOW + 5, 0)
    assert clock.last == format_hlc(NOW + 5, 0)


def test_phone_clock_going_backwards_keeps_clock_monotonic() -> None:
    wall = FakeWall(NOW)
    clock = HybridClock(wall)
    first = clock.now()
    wall.ms = NOW - 3_600_000  # the officer set the phone back an hour
    second = clock.now()
    third = clock.now()
    assert first < second < third
    assert hlc_ms(third) == NOW


def test_observe_of_remote_far_ahead_orders_later_edits_after_it() -> None:
    wall = FakeWall(NOW)
    clock = HybridClock(wall)
    clock.now()
    remote = format_hlc(NOW + 86_400_000, 7)
    received = clock.observe(remote)
    assert received == format_hlc(NOW + 86_400_000, 8)
    edit = clock.now()
    assert remote < received < edit
    wall.ms = NOW + 86_400_000 + 1
    assert clock.now() == format_hlc(NOW + 86_400_001, 0)


def test_observe_of_remote_behind_keeps_own_clock() -> None:
    wall = FakeWall(NOW)
    clock = HybridClock(wall, last=format_hlc(NOW + 10, 4))
    assert clock.observe(format_hlc(NOW - 10, 9)) == format_hlc(NOW + 10, 5)


def test_observe_of_remote_at_same_ms_takes_larger_counter() -> None:
    wall = FakeWall(NOW)
    clock = HybridClock(wall, last=format_hlc(NOW, 2))
    assert clock.observe(format_hlc(NOW, 6)) == format_hlc(NOW, 7)


def test_observe_when_wall_is_ahead_of_both_uses_wall_time() -> None:
    wall = FakeWall(NOW + 100)
    clock = HybridClock(wall, last=format_hlc(NOW, 2))
    assert clock.observe(format_hlc(NOW + 50, 6)) == format_hlc(NOW + 100, 0)


def test_counter_overflow_advances_milliseconds() -> None:
    wall = FakeWall(NOW)
    clock = HybridClock(wall, last=format_hlc(NOW, MAX_COUNTER - 1))
    assert clock.now() == format_hlc(NOW, MAX_COUNTER)
    assert clock.now() == format_hlc(NOW + 1, 0)
    assert clock.now() == format_hlc(NOW + 1, 1)


def test_observe_counter_overflow_advances_milliseconds() -> None:
    wall = FakeWall(NOW - 1000)
    clock = HybridClock(wall, last=format_hlc(NOW, 3))
    assert clock.observe(format_hlc(NOW, MAX_COUNTER)) == format_hlc(NOW + 1, 0)


def test_clock_at_the_end_of_time_refuses_to_wrap() -> None:
    clock = HybridClock(FakeWall(0), last=format_hlc(MAX_MS, MAX_COUNTER))
    with pytest.raises(OverflowError):
        clock.now()


def test_restarted_server_clock_starts_above_stored_hlc() -> None:
    stored = format_hlc(NOW + 60_000, 12)
    clock = HybridClock(FakeWall(NOW), last=stored)
    assert clock.last == stored
    assert clock.now() > stored


def test_fresh_clock_starts_at_zero() -> None:
    assert HybridClock(FakeWall(NOW)).last == "0000000000000-0000"


@pytest.mark.parametrize("reading", [-1, 1.5, "1763790000000", True])
def test_clock_refuses_a_broken_wall_clock(reading: object) -> None:
    clock = HybridClock(lambda: reading)  # type: ignore[arg-type, return-value]
    with pytest.raises((TypeError, ValueError)):
        clock.now()


def test_observe_refuses_malformed_remote_hlc() -> None:
    clock = HybridClock(FakeWall(NOW))
    with pytest.raises(ValueError, match="malformed HLC"):
        clock.observe("1763790000000-3")
    assert clock.last == "0000000000000-0000"


@settings(max_examples=100, deadline=None, print_blob=True)
@given(st.lists(st.tuples(
    st.integers(-10_000, 10_000),
    st.one_of(st.none(), st.tuples(st.integers(-20_000, 20_000), st.integers(0, MAX_COUNTER))),
), max_size=60))
def test_clock_is_strictly_monotonic_and_above_everything_observed(
    steps: list[tuple[int, tuple[int, int] | None]],
) -> None:
    wall = FakeWall(NOW)
    clock = HybridClock(wall)
    issued = [clock.now()]
    for jump, remote in steps:
        wall.ms = max(0, wall.ms + jump)
        if remote is None:
            issued.append(clock.now())
        else:
            remote_hlc = format_hlc(NOW + remote[0], remote[1])
            issued.append(clock.observe(remote_hlc))
            assert issued[-1] > remote_hlc
        assert issued[-1] > issued[-2]
        assert parse_hlc(issued[-1])[0] >= wall.ms


def test_skew_is_how_far_the_event_is_ahead_of_the_wall_clock() -> None:
    assert skew_ms(format_hlc(NOW + 300_000, 9), NOW) == 300_000
    assert skew_ms(format_hlc(NOW - 5, 0), NOW) == -5


def test_too_far_ahead_only_beyond_the_bound() -> None:
    bound = 300_000
    assert not is_too_far_ahead(format_hlc(NOW + bound, 9999), NOW, bound)
    assert is_too_far_ahead(format_hlc(NOW + bound + 1, 0), NOW, bound)
    assert not is_too_far_ahead(format_hlc(NOW - 3_600_000, 0), NOW, bound)


def test_hlc_to_iso_gives_utc_milliseconds() -> None:
    assert hlc_to_iso(format_hlc(NOW + 45, 3)) == "2025-11-22T05:40:00.045Z"
