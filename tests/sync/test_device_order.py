"""The chain rule: a phone's write supersedes its own earlier writes to the field; server writes only their base."""

from __future__ import annotations

from itertools import permutations
from typing import Any

from sync_builders import HOUSEHOLD, MEMBER_ANI, event, member, server_event, stamp_of

from sync import DEVICE, SERVER, Chain, Record, device_order, fold


def heads_of(record: Record, path: str) -> list[tuple[str, Any]]:
    return [(write.stamp, write.value) for write in record.fields[path].heads]


def every_order(events: list[dict[str, Any]]) -> list[Record]:
    return [fold(order) for order in permutations(events)]


def test_three_visits_by_one_phone_without_base_do_not_conflict() -> None:
    visits = [event(ms, "hp-siti", writes={"head_name": name, "dependants": ms})
              for ms, name in ((10, "Siti"), (20, "Siti Aminah"), (30, "Siti Aminah Binti Umar"))]
    for record in every_order(visits):
        assert record.conflicts() == []
        assert heads_of(record, "head_name") == [(stamp_of(visits[2]), "Siti Aminah Binti Umar")]
        assert record.get("dependants") == 30


def test_three_visits_by_one_phone_with_device_seq_do_not_conflict() -> None:
    visits = [event(ms, "hp-siti", seq=seq, writes={"head_name": name})
              for ms, seq, name in ((10, 4, "Siti"), (20, 5, "Siti A."), (30, 9, "Siti Aminah"))]
    for record in every_order(visits):
        assert heads_of(record, "head_name") == [(stamp_of(visits[2]), "Siti Aminah")]


def test_a_re_stamped_edit_with_an_older_clock_still_wins_over_the_phones_earlier_edit() -> None:
    # The phone's clock ran fast: its first edit got in (within the bound), the second was refused
    # for clock_skew, and after the clock was fixed it was re-stamped with an HLC below the first.
    accepted = event(900, "hp-siti", seq=41, writes={"head_name": "Siti", "address": "RT 01"})
    restamped = event(850, "hp-siti", seq=42, writes={"head_name": "Siti Aminah"})
    assert restamped["hlc"] < accepted["hlc"]
    for record in every_order([accepted, restamped]):
        assert heads_of(record, "head_name") == [(stamp_of(restamped), "Siti Aminah")]
        assert record.get("address") == "RT 01"
        assert record.conflicts() == []


def test_without_device_seq_a_phone_is_ordered_by_its_clock() -> None:
    later_clock = event(900, "hp-lama", writes={"head_name": "Siti"})
    earlier_clock = event(850, "hp-lama", writes={"head_name": "Siti Aminah"})
    for record in every_order([later_clock, earlier_clock]):
        assert heads_of(record, "head_name") == [(stamp_of(later_clock), "Siti")]


def test_two_phones_editing_offline_still_conflict() -> None:
    create = event(1, "hp-siti", seq=1, writes={"head_name": "Siti"})
    by_siti = event(5, "hp-siti", seq=2, writes={"head_name": "Siti A."}, base={"head_name": [stamp_of(create)]})
    by_budi = event(7, "hp-budi", seq=1, officer="budi", writes={"head_name": "Siti B."},
                    base={"head_name": [stamp_of(create)]})
    without_base = event(8, "hp-rina", officer="rina", writes={"head_name": "Siti R."})
    for record in every_order([create, by_siti, by_budi, without_base]):
        (conflict,) = record.conflicts()
        assert [head["value"] for head in conflict["heads"]] == ["Siti A.", "Siti B.", "Siti R."]


def test_a_resolution_does_not_silence_a_head_it_did_not_name() -> None:
    by_siti = event(5, "hp-siti", writes={"head_name": "Siti A."})
    by_budi = event(7, "hp-budi", officer="budi", writes={"head_name": "Siti B."})
    by_rina = event(9, "hp-rina", officer="rina", writes={"head_name": "Siti R."})  # not yet seen
    resolution = server_event(30, writes={"head_name": "Siti Aminah"},
                              base={"head_name": [stamp_of(by_siti), stamp_of(by_budi)]})
    for record in every_order([by_siti, by_budi, by_rina, resolution]):
        assert heads_of(record, "head_name") == [(stamp_of(by_rina), "Siti R."),
                                                 (stamp_of(resolution), "Siti Aminah")]
        assert record.fields["head_name"].in_conflict


def test_server_made_writes_supersede_exactly_their_base_and_no_chain_hides_them() -> None:
    imported = server_event(3, writes={"head_name": "SITI (DTSEN)"})
    resolution = server_event(9, writes={"head_name": "Siti Aminah"})  # made without naming the import
    for record in every_order([imported, resolution]):
        assert [value for _stamp, value in heads_of(record, "head_name")] == ["SITI (DTSEN)", "Siti Aminah"]
        assert record.fields["head_name"].in_conflict
    # A phone's chain never reaches a server-made write, even one with the phone's own device id.
    phone = event(2, "server-1", writes={"address": "RT 01"})
    server = server_event(5, writes={"address": "RT 02"})
    later_phone = event(8, "server-1", writes={"address": "RT 03"})
    for record in every_order([phone, server, later_phone]):
        assert [value for _stamp, value in heads_of(record, "address")] == ["RT 02", "RT 03"]


def test_one_phone_with_and_without_device_seq_keeps_both_heads() -> None:
    # A counter says nothing about a clock: the two kinds of event of one phone are not ordered
    # against each other, so neither hides the other.
    old_client = event(50, "hp-siti", writes={"status": "present"})
    new_client = event(10, "hp-siti", seq=1, writes={"status": "moved"})
    for record in every_order([old_client, new_client]):
        assert [value for _stamp, value in heads_of(record, "status")] == ["moved", "present"]
        assert record.fields["status"].in_conflict
    # Naming the other one in a base supersedes it as usual.
    named = event(60, "hp-siti", seq=2, writes={"status": "moved"}, base={"status": [stamp_of(old_client)]})
    assert heads_of(fold([old_client, new_client, named]), "status") == [(stamp_of(named), "moved")]


def test_two_events_at_the_same_place_in_a_phones_order_both_stay_heads() -> None:
    first = event(10, "hp-siti", seq=7, event_id="twin-a", writes={"status": "present"})
    second = event(10, "hp-siti", seq=7, event_id="twin-b", writes={"status": "moved"})
    later = event(20, "hp-siti", seq=8, writes={"status": "deceased"})
    for record in every_order([first, second]):
        assert [value for _stamp, value in heads_of(record, "status")] == ["present", "moved"]
        assert record.fields["status"].in_conflict
    for record in every_order([first, second, later]):
        assert heads_of(record, "status") == [(stamp_of(later), "deceased")]


def test_an_old_phone_write_arriving_after_its_newer_one_still_supersedes_its_base() -> None:
    by_budi = event(1, "hp-budi", writes={"head_name": "Siti"})
    old = event(5, "hp-siti", seq=3, writes={"head_name": "Siti A."}, base={"head_name": [stamp_of(by_budi)]})
    new = event(9, "hp-siti", seq=4, writes={"head_name": "Siti Aminah"})
    record = fold([by_budi, new])
    assert record.fields["head_name"].in_conflict  # budi's value stands until the old edit arrives
    assert record.apply_event(old) == {"head_name"}
    assert heads_of(record, "head_name") == [(stamp_of(new), "Siti Aminah")]
    assert record == fold([old, new, by_budi])


def test_a_collect_submission_naming_writes_not_received_yet_supersedes_them_when_they_arrive() -> None:
    # ODK Collect: no device_seq, an HLC the receiving node gave it, and a base copied from the
    # entity list, naming a write that reached another node first.
    elsewhere = event(4, "hp-budi", officer="budi", writes={member(MEMBER_ANI, "name"): "Ani"})
    submission = event(12, "collect-7", officer="siti", writes={member(MEMBER_ANI, "name"): "Ani Lestari"},
                       base={member(MEMBER_ANI, "name"): [stamp_of(elsewhere)]})
    record = fold([submission])
    assert record.fields[member(MEMBER_ANI, "name")].named == {stamp_of(elsewhere)}
    record.apply_event(elsewhere)
    assert heads_of(record, member(MEMBER_ANI, "name")) == [(stamp_of(submission), "Ani Lestari")]
    assert record.fields[member(MEMBER_ANI, "name")].named == set()
    assert record == fold([elsewhere, submission])


def test_the_device_order_is_one_function() -> None:
    assert device_order(SERVER, "server-1", None, "0000000000001-0000") is None
    clock = device_order(DEVICE, "hp", None, "0000000000001-0000")
    counted = device_order(DEVICE, "hp", 3, "0000000000001-0000")
    assert clock is not None
    assert counted is not None
    assert clock.chain == Chain("hp", "clock")
    assert counted.chain == Chain("hp", "seq")
    assert device_order(DEVICE, "hp", 4, "0000000000000-0000").rank > counted.rank  # the counter decides
    assert device_order(DEVICE, "hp", 3, "0000000000002-0000").rank > counted.rank  # then the clock


def test_writes_to_other_records_and_fields_are_not_chained() -> None:
    first = event(1, "hp-siti", writes={"head_name": "Siti"})
    other_field = event(2, "hp-siti", writes={"address": "RT 01"})
    record = fold([first, other_field])
    assert record.get("head_name") == "Siti"
    assert record.get("address") == "RT 01"
    assert record.id == HOUSEHOLD
