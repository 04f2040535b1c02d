"""Erasure tombstones: covered writes keep their stamps and bases, never their values, whenever they arrive."""

from __future__ import annotations

import json
from itertools import permutations
from typing import Any

import pytest
from sync_builders import MEMBER_ANI, MEMBER_BUDI, event, member, server_event, stamp_of

from sync import ID_REUSED, EventError, Record, fold

ANI_NAME = member(MEMBER_ANI, "name")
ANI_NIK = member(MEMBER_ANI, "nik")
SECRET_NIK = "3204051201990001"


def document_text(record: Record) -> str:
    return json.dumps(record.to_document(), sort_keys=True, ensure_ascii=False)


def visit_with_ani() -> dict[str, Any]:
    return event(1, "hp-siti", seq=1, writes={"head_name": "Siti", ANI_NAME: "Ani", ANI_NIK: SECRET_NIK,
                                              member(MEMBER_BUDI, "name"): "Budi"})


def test_an_erased_members_late_write_arrives_without_its_value() -> None:
    create = visit_with_ani()
    erasure = server_event(20, erase=[f"members/{MEMBER_ANI}/*"])
    # A phone that was offline all along still holds Ani and sends a correction later.
    late = event(9, "hp-budi", officer="budi", writes={ANI_NAME: "Ani Lestari", ANI_NIK: SECRET_NIK},
                 base={ANI_NAME: [stamp_of(create)]})
    record = fold([create, erasure])
    assert record.apply_event(late) == {ANI_NAME, ANI_NIK}
    state = record.fields[ANI_NAME]
    assert state.erased
    assert state.value is None
    assert [(write.stamp, write.value, write.erased) for write in state.heads] == [(stamp_of(late), None, True)]
    assert record.get(ANI_NAME, "gone") == "gone"
    assert MEMBER_ANI not in record.members()
    assert record.members()[MEMBER_BUDI] == {"name": "Budi"}
    pulled = record.to_pull()
    assert pulled["erased"] == [f"members/{MEMBER_ANI}/*"]
    assert pulled["fields"][ANI_NAME] == {"value": None, "stamp": stamp_of(late), "erased": True}
    assert pulled["fields"]["head_name"] == {"value": "Siti", "stamp": stamp_of(create)}
    text = document_text(record)
    assert "Ani" not in text
    assert SECRET_NIK not in text
    assert record.conflicts() == []
    for order in permutations([create, erasure, late]):
        assert fold(order) == record
        assert document_text(fold(order)) == text


def test_erased_writes_keep_their_stamps_so_bases_still_supersede() -> None:
    create = visit_with_ani()
    erasure = server_event(20, erase=[ANI_NIK])
    by_siti = event(5, "hp-siti", seq=2, writes={ANI_NIK: "3204051201990002"}, base={ANI_NIK: [stamp_of(create)]})
    by_budi = event(7, "hp-budi", officer="budi", writes={ANI_NIK: "3204051201990003"},
                    base={ANI_NIK: [stamp_of(create)]})
    record = fold([create, by_siti, by_budi, erasure])
    state = record.fields[ANI_NIK]
    # Two phones disagreed, but every head is erased now: equal erased heads are not a conflict.
    assert [write.stamp for write in state.heads] == [stamp_of(by_siti), stamp_of(by_budi)]
    assert not state.in_conflict
    assert record.conflicts() == []
    assert record.to_pull()["fields"][ANI_NIK]["head_stamps"] == [stamp_of(by_siti), stamp_of(by_budi)]
    later = event(30, "hp-rina", officer="rina", writes={ANI_NIK: "3204051201990004"},
                  base={ANI_NIK: [stamp_of(by_siti), stamp_of(by_budi)]})
    record.apply_event(later)
    assert [write.stamp for write in record.fields[ANI_NIK].heads] == [stamp_of(later)]
    assert record.get(ANI_NAME) == "Ani"  # an exact path erases that path only
    assert "320405120199000" not in document_text(record)


def test_erasing_the_whole_household_covers_fields_written_after_it() -> None:
    create = visit_with_ani()
    erasure = server_event(20, erase=["*"])
    later = event(40, "hp-siti", seq=2, writes={"address": "RT 04", member(MEMBER_BUDI, "status"): "moved"})
    for order in permutations([create, erasure, later]):
        record = fold(order)
        assert record.values() == {}
        assert record.members() == {}
        assert record.to_pull()["erased"] == ["*"]
        assert all(state.erased for state in record.fields.values())
        assert "RT 04" not in document_text(record)


def test_an_erasure_received_twice_changes_nothing_and_history_shows_it() -> None:
    erasure = server_event(20, erase=[f"members/{MEMBER_ANI}/*"], officer="admin")
    erasure["at"] = "2025-12-01T10:00:00+07:00"
    record = fold([visit_with_ani(), erasure])
    before = document_text(record)
    assert record.apply_event(erasure) == set()
    assert document_text(record) == before
    assert record.erasures() == [{"stamp": stamp_of(erasure), "event_id": erasure["id"], "officer": "admin",
                                  "at": "2025-12-01T10:00:00+07:00", "erase": [f"members/{MEMBER_ANI}/*"]}]
    assert Record.from_document(json.loads(before)) == record


def test_an_erasure_id_reused_with_other_paths_is_refused() -> None:
    erasure = server_event(20, erase=[ANI_NIK])
    record = fold([visit_with_ani(), erasure])
    with pytest.raises(EventError) as raised:
        record.apply_event(erasure | {"erase": ["*"]})
    assert raised.value.code == ID_REUSED
    assert "erase" in raised.value.errors


def test_an_erased_head_resent_with_its_value_is_a_duplicate_not_a_reused_id() -> None:
    create = visit_with_ani()
    record = fold([create, server_event(20, erase=[ANI_NIK])])
    before = document_text(record)
    assert record.apply_event(create) == set()
    assert document_text(record) == before
