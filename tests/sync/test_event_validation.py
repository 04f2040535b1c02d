"""The event shape the engine folds: what is valid, what is refused, and the stale_base check."""

from __future__ import annotations

from typing import Any

import pytest
from sync_builders import HOUSEHOLD, MEMBER_ANI, VILLAGE, event, hlc, member, stamp_of

from sync import INVALID, STALE_BASE, Event, EventError, check_base, parse_event, writes_of


def test_household_edit_parses_into_an_event() -> None:
    edit = event(10, writes={"head_name": "Siti", member(MEMBER_ANI, "status"): "moved"},
                 at="2025-11-22T12:40:00+07:00")
    parsed = parse_event(edit)
    assert parsed == Event(
        id="ev-dev-a-10-0", device_id="dev-a", hlc=hlc(10), officer="siti", household_id=HOUSEHOLD,
        village=VILLAGE, set={"head_name": "Siti", member(MEMBER_ANI, "status"): "moved"}, base={},
        at="2025-11-22T12:40:00+07:00",
    )
    assert parsed.stamp == stamp_of(edit)
    assert parse_event(parsed) is parsed


def test_device_seq_origin_and_erase_are_parsed() -> None:
    counted = parse_event(event(10, seq=42, writes={"head_name": "Siti"}))
    assert (counted.device_seq, counted.origin, counted.erase) == (42, "device", ())
    assert counted.order is not None
    assert counted.order.rank == (42, hlc(10))
    erasure = parse_event(event(11, "server-1", origin="server",
                                erase=[member(MEMBER_ANI, "name"), "*", f"members/{MEMBER_ANI}/*", "*"]))
    assert erasure.origin == "server"
    assert erasure.order is None
    assert erasure.erase == ("*", f"members/{MEMBER_ANI}/*", member(MEMBER_ANI, "name"))
    assert writes_of(erasure) == ()
    (write,) = writes_of(event(12, seq=3, writes={"head_name": "Siti"}))
    assert (write.device_seq, write.origin) == (3, "device")


def test_visit_keys_the_engine_does_not_fold_are_ignored() -> None:
    visit = event(10, writes={"head_name": "Siti"}) | {
        "type": "visit", "form_id": "dtsen_verval", "geotag": {"lat": -6.9, "lon": 107.6}}
    assert parse_event(visit).set == {"head_name": "Siti"}


def test_visit_without_household_fields_is_a_valid_event() -> None:
    visit = event(10)
    del visit["set"]
    assert parse_event(visit).set == {}


def test_base_of_an_unwritten_field_is_checked_then_dropped() -> None:
    first = event(1, writes={"head_name": "Siti"})
    visit = event(10, writes={"head_name": "Siti A."},
                  base={"head_name": [stamp_of(first), stamp_of(first)], "address": [stamp_of(first)]})
    parsed = parse_event(visit)
    assert parsed.base == {"head_name": (stamp_of(first),)}
    (write,) = writes_of(visit)
    assert write.base == frozenset({stamp_of(first)})


def _broken(change: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    built = event(10, writes={"head_name": "Siti"}) | change
    if drop:
        del built[drop]
    return built


@pytest.mark.parametrize(("broken", "error_key"), [
    (_broken({}, drop="id"), "id"),
    (_broken({"id": "has/slash"}), "id"),
    (_broken({"device_id": ""}), "device_id"),
    (_broken({}, drop="household_id"), "household_id"),
    (_broken({"village": None}), "village"),
    (_broken({"officer": ""}), "officer"),
    (_broken({"officer": "siti\nadmin"}), "officer"),
    (_broken({"hlc": "1763790000000-3"}), "hlc"),
    (_broken({"hlc": 1763790000000}), "hlc"),
    (_broken({"at": "yesterday"}), "at"),
    (_broken({"at": 1763790000}), "at"),
    (_broken({"set": ["head_name"]}), "set"),
    (_broken({"set": {"head.name": "x"}}), "set.head.name"),
    (_broken({"set": {"$where": "x"}}), "set.$where"),
    (_broken({"set": {"head_name": float("nan")}}), "set.head_name"),
    (_broken({"set": {f"members/{MEMBER_ANI}": "x"}}), f"set.members/{MEMBER_ANI}"),
    (_broken({"base": ["stamp"]}), "base"),
    (_broken({"base": {"head_name": "not-a-list"}}), "base.head_name"),
    (_broken({"base": {"head_name": ["garbage"]}}), "base.head_name"),
    (_broken({"base": {"Bad": []}}), "base.Bad"),
    (_broken({"device_seq": 0}), "device_seq"),
    (_broken({"device_seq": -3}), "device_seq"),
    (_broken({"device_seq": True}), "device_seq"),
    (_broken({"device_seq": "7"}), "device_seq"),
    (_broken({"device_seq": 7.0}), "device_seq"),
    (_broken({"device_seq": 2**63}), "device_seq"),
    (_broken({"device_seq": 7, "origin": "server"}), "device_seq"),
    (_broken({"origin": "phone"}), "origin"),
    (_broken({"origin": ["device"]}), "origin"),
    (_broken({"erase": ["head_name"], "set": {}}), "erase"),
    (_broken({"erase": ["head_name"], "origin": "server"}), "set"),
    (_broken({"erase": "*", "origin": "server", "set": {}}), "erase"),
    (_broken({"erase": ["members/*"], "origin": "server", "set": {}}), "erase.0"),
    (_broken({"erase": ["*", f"members/{MEMBER_ANI.upper()}/*"], "origin": "server", "set": {}}), "erase.1"),
    (_broken({"erase": ["head.name"], "origin": "server", "set": {}}), "erase.0"),
])
def test_malformed_events_are_invalid_with_the_offending_key(broken: dict[str, Any], error_key: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_event(broken)
    assert raised.value.code == INVALID
    assert error_key in raised.value.errors
    assert check_base(broken) is not None
    assert check_base(broken).code == INVALID  # type: ignore[union-attr]


def test_every_problem_is_reported_at_once() -> None:
    broken = _broken({"hlc": "soon", "officer": "", "set": {"Bad": 1, "ok_field": 1}})
    with pytest.raises(EventError) as raised:
        parse_event(broken)
    assert set(raised.value.errors) == {"hlc", "officer", "set.Bad"}
    assert raised.value.paths == ("Bad",)


def test_non_object_event_is_invalid() -> None:
    with pytest.raises(EventError) as raised:
        parse_event(["not", "an", "event"])  # type: ignore[arg-type]
    assert raised.value.code == INVALID


def test_base_older_than_the_event_passes_check() -> None:
    first = event(1, writes={"head_name": "Siti"})
    edit = event(2, "dev-b", writes={"head_name": "Siti A."}, base={"head_name": [stamp_of(first)]})
    assert check_base(edit) is None


def test_base_at_the_same_hlc_is_stale() -> None:
    other = event(5, "dev-b", writes={"head_name": "Budi"})
    edit = event(5, "dev-a", writes={"head_name": "Siti"}, base={"head_name": [stamp_of(other)]})
    error = check_base(edit)
    assert error is not None
    assert error.code == STALE_BASE
    assert error.paths == ("head_name",)
    assert error.to_dict()["errors"] == {
        "base.head_name": [f"{stamp_of(other)} is not older than the event's HLC {hlc(5)}"]}


def test_only_the_fields_with_a_newer_base_are_named_stale() -> None:
    older = event(1, writes={"head_name": "Siti", "address": "RT 01"})
    newer = event(9, "dev-b", writes={"address": "RT 02"})
    edit = event(5, writes={"head_name": "Siti A.", "address": "RT 03"},
                 base={"head_name": [stamp_of(older)], "address": [stamp_of(older), stamp_of(newer)]})
    error = check_base(edit)
    assert error is not None
    assert error.paths == ("address",)
    assert list(error.errors) == ["base.address"]
