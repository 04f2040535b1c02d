"""The merge rule, one field scenario at a time."""

from __future__ import annotations

import json
from itertools import permutations
from typing import Any

import pytest
from sync_builders import (
    HOUSEHOLD,
    MEMBER_ANI,
    MEMBER_BUDI,
    OTHER_VILLAGE,
    VILLAGE,
    event,
    member,
    server_event,
    stamp_of,
)

from sync import ID_REUSED, INVALID, STALE_BASE, EventError, FieldState, Record, Write, fold


def heads_of(record: Record, path: str) -> list[tuple[str, Any]]:
    return [(write.stamp, write.value) for write in record.fields[path].heads]


def document_text(record: Record) -> str:
    return json.dumps(record.to_document(), sort_keys=True)


def test_first_event_creates_the_household_in_its_village() -> None:
    create = event(1, writes={"head_name": "Siti Aminah", "address": "RT 01/RW 02"})
    record = Record(HOUSEHOLD)
    assert record.apply_event(create) == {"head_name", "address"}
    assert record.village == VILLAGE
    assert record.created == stamp_of(create)
    assert record.values() == {"address": "RT 01/RW 02", "head_name": "Siti Aminah"}
    assert not record.conflicts()


def test_visit_without_household_fields_still_creates_the_household() -> None:
    record = fold([event(1)])
    assert record.village == VILLAGE
    assert record.fields == {}


def test_officer_correcting_own_entry_replaces_the_value() -> None:
    create = event(1, writes={"head_name": "Siti"})
    fix = event(2, writes={"head_name": "Siti Aminah"}, base={"head_name": [stamp_of(create)]})
    record = fold([create, fix])
    assert heads_of(record, "head_name") == [(stamp_of(fix), "Siti Aminah")]
    # The phone's own earlier write is below its latest: recognised by the device order, forgotten.
    assert record.fields["head_name"].superseded == set()
    assert not record.fields["head_name"].in_conflict


def test_two_officers_edit_same_field_offline_keeps_conflict() -> None:
    create = event(1, writes={"head_name": "Siti"})
    by_siti = event(5, "dev-a", officer="siti", writes={"head_name": "Siti Aminah"},
                    base={"head_name": [stamp_of(create)]}, at="2025-11-22T09:00:00+07:00")
    by_budi = event(7, "dev-b", officer="budi", writes={"head_name": "Siti Aminah Binti Umar"},
                    base={"head_name": [stamp_of(create)]})
    record = fold([create, by_siti, by_budi])
    state = record.fields["head_name"]
    assert state.in_conflict
    assert state.value == "Siti Aminah Binti Umar"  # the greatest stamp shows, the other is kept
    assert state.stamp == stamp_of(by_budi)
    (conflict,) = record.conflicts()
    assert conflict["field"] == "head_name"
    assert conflict["household_id"] == HOUSEHOLD
    assert conflict["village"] == VILLAGE
    assert conflict["heads"] == [
        {"value": "Siti Aminah", "stamp": stamp_of(by_siti), "officer": "siti", "device_id": "dev-a",
         "event_id": by_siti["id"], "at": "2025-11-22T09:00:00+07:00"},
        {"value": "Siti Aminah Binti Umar", "stamp": stamp_of(by_budi), "officer": "budi",
         "device_id": "dev-b", "event_id": by_budi["id"], "at": "2025-11-22T05:40:00.007Z"},
    ]


def test_two_officers_enter_the_same_value_offline_is_not_a_conflict() -> None:
    create = event(1, writes={"dependants": 3, "assets": {"house": "own", "land_m2": 120}})
    by_siti = event(5, "dev-a", writes={"dependants": 4, "assets": {"land_m2": 120, "house": "rent"}},
                    base={"dependants": [stamp_of(create)], "assets": [stamp_of(create)]})
    by_budi = event(7, "dev-b", writes={"dependants": 4.0, "assets": {"house": "rent", "land_m2": 120.0}},
                    base={"dependants": [stamp_of(create)], "assets": [stamp_of(create)]})
    record = fold([create, by_siti, by_budi])
    for path in ("dependants", "assets"):
        assert len(record.fields[path].heads) == 2
        assert not record.fields[path].in_conflict
    assert record.conflicts() == []
    pulled = record.to_pull()["fields"]["dependants"]
    assert "heads" not in pulled
    assert pulled["head_stamps"] == [stamp_of(by_siti), stamp_of(by_budi)]


def test_editing_after_equal_entries_names_both_heads_and_stays_clean() -> None:
    create = event(1, writes={"dependants": 3})
    by_siti = event(5, "dev-a", writes={"dependants": 4}, base={"dependants": [stamp_of(create)]})
    by_budi = event(7, "dev-b", writes={"dependants": 4}, base={"dependants": [stamp_of(create)]})
    record = fold([create, by_siti, by_budi])
    later = event(20, "dev-c", writes={"dependants": 5},
                  base={"dependants": record.to_pull()["fields"]["dependants"]["head_stamps"]})
    record.apply_event(later)
    assert heads_of(record, "dependants") == [(stamp_of(later), 5)]


def test_true_and_one_are_different_answers_and_conflict() -> None:
    by_siti = event(5, "dev-a", writes={"has_toilet": True})
    by_budi = event(7, "dev-b", writes={"has_toilet": 1})
    assert fold([by_siti, by_budi]).fields["has_toilet"].in_conflict


def test_winner_is_the_greatest_stamp_not_the_last_arrival() -> None:
    early = event(5, "dev-b", writes={"head_name": "Budi"})
    late_clock = event(9, "dev-a", writes={"head_name": "Ani"})
    for order in permutations([early, late_clock]):
        assert fold(order).get("head_name") == "Ani"


def test_same_millisecond_writes_are_ordered_by_counter_then_device_then_event() -> None:
    # One phone's two events at the very same HLC are a tie in its device order: both stay heads.
    writes = [
        event(5, "dev-c", counter=0, event_id="e-9", writes={"status": "b0"}),
        event(5, "dev-a", counter=1, event_id="e-1", writes={"status": "a1"}),
        event(5, "dev-b", counter=1, event_id="e-2", writes={"status": "b1"}),
        event(5, "dev-b", counter=1, event_id="e-3", writes={"status": "b1-later-id"}),
    ]
    for order in permutations(writes):
        record = fold(order)
        assert record.get("status") == "b1-later-id"
        assert [value for _stamp, value in heads_of(record, "status")] == ["b0", "a1", "b1", "b1-later-id"]


def test_ties_on_the_clock_follow_stamp_string_order_even_for_prefix_device_ids() -> None:
    # "hp-1/..." sorts after "hp-1-b/..." because '/' > '-': the stamp string is the order.
    short_id = event(5, "hp-1", writes={"status": "from hp-1"})
    long_id = event(5, "hp-1-b", writes={"status": "from hp-1-b"})
    assert stamp_of(long_id) < stamp_of(short_id)
    for order in permutations([short_id, long_id]):
        assert fold(order).get("status") == "from hp-1"


def test_resolution_naming_all_heads_ends_the_conflict() -> None:
    by_siti = event(5, "dev-a", writes={"head_name": "Siti"})
    by_budi = event(7, "dev-b", writes={"head_name": "Siti A."})
    record = fold([by_siti, by_budi])
    (conflict,) = record.conflicts()
    resolution = server_event(30, writes={"head_name": "Siti Aminah"},
                              base={"head_name": [head["stamp"] for head in conflict["heads"]]})
    assert record.apply_event(resolution) == {"head_name"}
    assert record.conflicts() == []
    assert record.get("head_name") == "Siti Aminah"


def test_resolution_racing_new_offline_write_stays_in_conflict() -> None:
    create = event(1, writes={"head_name": "Siti"})
    by_siti = event(5, "dev-a", writes={"head_name": "Siti A."}, base={"head_name": [stamp_of(create)]})
    by_budi = event(7, "dev-b", writes={"head_name": "Siti B."}, base={"head_name": [stamp_of(create)]})
    seen = fold([create, by_siti, by_budi])
    (before,) = seen.conflicts()
    resolution = server_event(30, writes={"head_name": "Siti Aminah"},
                              base={"head_name": [stamp_of(by_siti), stamp_of(by_budi)]})
    # Budi's phone, still offline, edits again from the value it had.
    offline = event(25, "dev-b", writes={"head_name": "Siti Budiarti"},
                    base={"head_name": [stamp_of(by_budi)]})
    for order in permutations([create, by_siti, by_budi, resolution, offline]):
        record = fold(order)
        assert heads_of(record, "head_name") == [(stamp_of(offline), "Siti Budiarti"),
                                                 (stamp_of(resolution), "Siti Aminah")]
        (after,) = record.conflicts()
        assert after["id"] != before["id"]


def test_offline_update_arrives_before_the_create() -> None:
    create = event(1, "dev-a", writes={"head_name": "Siti", "address": "RT 01"})
    update = event(9, "dev-b", village=OTHER_VILLAGE, writes={"head_name": "Siti Aminah"},
                   base={"head_name": [stamp_of(create)]})
    record = Record(HOUSEHOLD)
    assert record.apply_event(update) == {"head_name"}
    assert record.village == OTHER_VILLAGE
    assert record.apply_event(create) == {"address"}
    assert record.village == VILLAGE
    assert record.created == stamp_of(create)
    assert record.values() == {"address": "RT 01", "head_name": "Siti Aminah"}
    assert record == fold([create, update])


def test_write_arriving_after_its_superseder_never_becomes_a_head() -> None:
    first = event(1, writes={"status": "active"})
    second = event(2, writes={"status": "moved"}, base={"status": [stamp_of(first)]})
    third = event(3, writes={"status": "active"}, base={"status": [stamp_of(second)]})
    record = fold([first, third, second])
    assert heads_of(record, "status") == [(stamp_of(third), "active")]
    assert record == fold([first, second, third])


def test_late_superseded_write_still_supersedes_its_own_base() -> None:
    first = event(1, writes={"status": "active"})
    second = event(2, "dev-b", writes={"status": "moved"}, base={"status": [stamp_of(first)]})
    third = event(3, "dev-c", writes={"status": "deceased"}, base={"status": [stamp_of(second)]})
    record = fold([first, third])
    assert record.fields["status"].in_conflict  # without second, first still stands
    record.apply_event(second)
    assert heads_of(record, "status") == [(stamp_of(third), "deceased")]


def test_duplicate_event_changes_nothing() -> None:
    create = event(1, writes={"head_name": "Siti", member(MEMBER_ANI, "name"): "Ani"})
    record = fold([create])
    before = document_text(record)
    assert record.apply_event(create) == set()
    assert record.apply_event(json.loads(json.dumps(create))) == set()
    assert document_text(record) == before


def test_reused_event_id_with_other_value_is_refused_and_changes_nothing() -> None:
    create = event(1, writes={"head_name": "Siti", "address": "RT 01"})
    record = fold([create])
    before = document_text(record)
    reused = create | {"set": {"head_name": "Budi", "address": "RT 01"}}
    with pytest.raises(EventError) as raised:
        record.apply_event(reused)
    assert raised.value.code == ID_REUSED
    assert raised.value.paths == ("head_name",)
    moved = create | {"village": OTHER_VILLAGE}
    with pytest.raises(EventError) as raised:
        record.apply_event(moved)
    assert raised.value.code == ID_REUSED
    assert document_text(record) == before


def test_stale_base_event_is_refused_and_changes_nothing() -> None:
    create = event(10, writes={"head_name": "Siti"})
    slow_phone = event(4, "dev-b", writes={"head_name": "Budi", "address": "RT 02"},
                       base={"head_name": [stamp_of(create)]})
    record = fold([create])
    before = document_text(record)
    with pytest.raises(EventError) as raised:
        record.apply_event(slow_phone)
    assert raised.value.code == STALE_BASE
    assert raised.value.paths == ("head_name",)
    assert document_text(record) == before


def test_an_unchecked_fold_takes_a_stale_event_as_it_is() -> None:
    create = event(10, writes={"head_name": "Siti"})
    self_named = event(10, "dev-b", writes={"head_name": "Budi"}, event_id="loop")
    self_named["base"] = {"head_name": [stamp_of(self_named), stamp_of(create)]}
    record = fold([create, self_named], check=False)
    assert record.fields["head_name"].heads == ()
    assert record.get("head_name", "unset") == "unset"
    assert record.fields["head_name"].value is None
    assert record.to_pull()["fields"] == {}
    assert record.conflicts() == []
    with pytest.raises(EventError):
        fold([create, self_named])


def test_event_about_another_household_is_refused() -> None:
    record = Record(HOUSEHOLD)
    other = event(1, household="another-household", writes={"head_name": "x"})
    with pytest.raises(EventError) as raised:
        record.apply_event(other)
    assert raised.value.code == INVALID
    assert record.created is None


def test_roster_members_merge_per_member_uuid() -> None:
    create = event(1, writes={"head_name": "Siti", member(MEMBER_ANI, "name"): "Ani"})
    ani_born = event(5, "dev-a", writes={member(MEMBER_ANI, "birth_year"): 2011})
    budi_added = event(6, "dev-b", writes={member(MEMBER_BUDI, "name"): "Budi",
                                           member(MEMBER_BUDI, "relation"): "child"})
    record = fold([create, ani_born, budi_added])
    assert record.members() == {
        MEMBER_ANI: {"birth_year": 2011, "name": "Ani"},
        MEMBER_BUDI: {"name": "Budi", "relation": "child"},
    }
    assert record.conflicts() == []


def test_member_row_missing_from_a_visit_changes_nothing() -> None:
    create = event(1, writes={member(MEMBER_ANI, "name"): "Ani", member(MEMBER_BUDI, "name"): "Budi"})
    visit = event(5, "dev-b", writes={member(MEMBER_ANI, "name"): "Ani Lestari"},
                  base={member(MEMBER_ANI, "name"): [stamp_of(create)]})
    record = fold([create, visit])
    assert record.members() == {MEMBER_ANI: {"name": "Ani Lestari"}, MEMBER_BUDI: {"name": "Budi"}}


def test_member_leaves_only_by_a_status_write() -> None:
    create = event(1, writes={member(MEMBER_BUDI, "name"): "Budi", member(MEMBER_BUDI, "status"): "present"})
    moved = event(5, "dev-b", writes={member(MEMBER_BUDI, "status"): "moved"},
                  base={member(MEMBER_BUDI, "status"): [stamp_of(create)]})
    record = fold([create, moved])
    assert record.members()[MEMBER_BUDI] == {"name": "Budi", "status": "moved"}


def test_same_field_of_two_members_never_conflicts() -> None:
    by_siti = event(5, "dev-a", writes={member(MEMBER_ANI, "status"): "moved"})
    by_budi = event(7, "dev-b", writes={member(MEMBER_BUDI, "status"): "deceased"})
    assert fold([by_siti, by_budi]).conflicts() == []


def test_apply_event_reports_only_fields_whose_heads_changed() -> None:
    create = event(1, writes={"head_name": "Siti", "address": "RT 01"})
    record = fold([create])
    edit = event(2, writes={"head_name": "Siti A.", "address": "RT 01"},
                 base={"head_name": [stamp_of(create)], "address": [stamp_of(create)]})
    assert record.apply_event(edit) == {"head_name", "address"}
    assert record.apply_event(edit) == set()


def test_values_are_copied_so_the_senders_dict_cannot_change_the_record() -> None:
    answers = {"assets": {"house": "own"}}
    record = fold([event(1, writes=answers)])
    answers["assets"]["house"] = "rent"
    pulled = record.to_pull()
    pulled["fields"]["assets"]["value"]["house"] = "stolen"
    assert record.get("assets") == {"house": "own"}


def test_fold_of_nothing_needs_the_record_id() -> None:
    assert fold([], HOUSEHOLD) == Record(HOUSEHOLD)
    with pytest.raises(ValueError, match="record_id"):
        fold([])


def test_field_state_refuses_writes_of_another_field() -> None:
    state = FieldState("head_name")
    with pytest.raises(ValueError, match="applied to field"):
        state.apply(Write("address", "RT 01", stamp_of(event(1))))


def test_write_exposes_the_parts_of_its_stamp() -> None:
    write = Write("head_name", "Siti", stamp_of(event(3, "dev-b")), officer="budi")
    assert (write.hlc, write.device_id, write.event_id) == (event(3)["hlc"], "dev-b", "ev-dev-b-3-0")
    assert write == Write("head_name", "Siti", stamp_of(event(3, "dev-b")), officer="budi")
    assert write != Write("head_name", "Siti", stamp_of(event(3, "dev-b")), officer="siti")
