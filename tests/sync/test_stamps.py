"""Stamps, field paths and JSON values: the names and contents of field writes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sync_builders import MEMBER_ANI, hlc

from sync import (
    Stamp,
    canonical_json,
    check_json_value,
    format_hlc,
    is_field_name,
    is_member_id,
    is_stamp,
    make_stamp,
    member_path,
    parse_stamp,
    same_json,
    split_path,
    stamp_hlc,
)
from sync.hlc import MAX_COUNTER

DEVICE = "5f0c2d7e-8a41-4b6c-9d2e-3f4a5b6c7d8e"
EVENT = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"


def test_stamp_round_trips_through_its_parts() -> None:
    stamp = make_stamp(hlc(0, 3), DEVICE, EVENT)
    assert stamp == f"1763790000000-0003/{DEVICE}/{EVENT}"
    assert parse_stamp(stamp) == Stamp(hlc(0, 3), DEVICE, EVENT)
    assert stamp_hlc(stamp) == hlc(0, 3)
    assert is_stamp(stamp)


@pytest.mark.parametrize("text", [
    f"{hlc(0)}/{DEVICE}",
    f"{hlc(0)}/{DEVICE}/{EVENT}/extra",
    f"{hlc(0)}//{EVENT}",
    f"{hlc(0)}/{DEVICE}/",
    f"1763790000000-3/{DEVICE}/{EVENT}",
    f"{hlc(0)}/dev ice/{EVENT}",
    f"{hlc(0)}/{DEVICE}/{EVENT}\n",
    f"{hlc(0)}/-dev/{EVENT}",
    f"{hlc(0)}/dev$1/{EVENT}",
    f"{hlc(0)}/{'d' * 129}/{EVENT}",
    "",
])
def test_parse_stamp_rejects_malformed_stamps(text: str) -> None:
    with pytest.raises(ValueError, match="malformed stamp"):
        parse_stamp(text)
    assert not is_stamp(text)


@pytest.mark.parametrize(("hlc_text", "device", "event_id"), [
    ("1763790000000-3", DEVICE, EVENT),
    (hlc(0), "has/slash", EVENT),
    (hlc(0), DEVICE, ""),
    (hlc(0), "", EVENT),
])
def test_make_stamp_refuses_parts_that_would_not_parse(hlc_text: str, device: str, event_id: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        make_stamp(hlc_text, device, event_id)


def test_parse_stamp_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="not a string"):
        parse_stamp(None)


@given(
    st.tuples(st.integers(0, 10**6), st.integers(0, MAX_COUNTER)),
    st.tuples(st.integers(0, 10**6), st.integers(0, MAX_COUNTER)),
    st.uuids().map(str),
    st.uuids().map(str),
)
def test_stamps_order_by_hlc_first_then_device(
    left: tuple[int, int], right: tuple[int, int], left_device: str, right_device: str,
) -> None:
    left_stamp = make_stamp(format_hlc(*left), left_device, EVENT)
    right_stamp = make_stamp(format_hlc(*right), right_device, EVENT)
    expected = (left, left_device) < (right, right_device)
    assert (left_stamp < right_stamp) == expected


@pytest.mark.parametrize("path", [
    "head_name", "a", "kk_number_2", "x" * 64, f"members/{MEMBER_ANI}/status", f"members/{MEMBER_ANI}/name",
])
def test_valid_field_paths(path: str) -> None:
    member_id, name = split_path(path)
    assert name == path.rsplit("/", 1)[-1]
    assert member_id == (MEMBER_ANI if path.startswith("members/") else None)


@pytest.mark.parametrize("path", [
    "", "Head_name", "head.name", "$set", "head\x00name", "x" * 65, "1st_child", "_private", "head name",
    "members", f"members/{MEMBER_ANI}", f"members/{MEMBER_ANI.upper()}/name", "members/not-a-uuid/name",
    f"members/{MEMBER_ANI}/Name", f"members/{MEMBER_ANI}/name/extra", f"people/{MEMBER_ANI}/name",
    "head_name/", 7,
])
def test_malformed_field_paths_are_refused(path: object) -> None:
    with pytest.raises(ValueError, match="field path"):
        split_path(path)


def test_member_path_and_predicates() -> None:
    assert member_path(MEMBER_ANI, "status") == f"members/{MEMBER_ANI}/status"
    assert is_field_name("status")
    assert not is_field_name("Status")
    assert is_member_id(MEMBER_ANI)
    assert not is_member_id(MEMBER_ANI.upper())
    with pytest.raises(ValueError, match="field path"):
        member_path("nope", "status")


@pytest.mark.parametrize("value", [
    None, True, 0, -3, 2.5, "Siti Aminah", [], {}, {"a": [1, {"b": None}]}, "\u00e9\u4e2d",
])
def test_json_values_are_accepted(value: object) -> None:
    check_json_value(value)


@pytest.mark.parametrize("value", [
    math.nan, math.inf, -math.inf, (1, 2), {1, 2}, {1: "a"}, b"bytes", object(), "\ud800", {"\udc00": 1},
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
])
def test_non_json_values_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="value"):
        check_json_value(value)


@pytest.mark.parametrize(("left", "right"), [
    (1, 1.0),
    (0, -0.0),
    ({"a": 1, "b": [2, 3]}, {"b": [2, 3.0], "a": 1}),
    ("Budi", "Budi"),
    (None, None),
])
def test_json_equal_values(left: object, right: object) -> None:
    assert same_json(left, right)


@pytest.mark.parametrize(("left", "right"), [
    (True, 1),
    (False, 0),
    (None, False),
    ("1", 1),
    ([1, 2], [2, 1]),
    ({"a": 1}, {"a": 1, "b": None}),
    ("Budi", "budi"),
    (0.1, 0.1000000000000001),
])
def test_json_distinct_values(left: object, right: object) -> None:
    assert not same_json(left, right)


def test_canonical_json_sorts_keys_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
