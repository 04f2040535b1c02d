"""Compact memory: what a record forgets, why no future answer changes, and how small a busy household stays."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reference import ref_fold, ref_stamp
from sync_builders import HOUSEHOLD, event, server_event, stamp_of
from workloads import visits

from sync import Record, canonical_json, fold


def document_size(record: Record) -> int:
    return len(canonical_json(record.to_document()).encode("utf-8"))


def heads_of(record: Record, path: str) -> list[tuple[str, Any]]:
    return [(write.stamp, write.value) for write in record.fields[path].heads]


def folded_as_the_server_does(events: list[dict[str, Any]], *, with_log: bool = True) -> Record:
    log: dict[str, dict[str, Any]] = {}
    record = Record(HOUSEHOLD)
    for made in events:
        record = Record.from_document(json.loads(json.dumps(record.to_document())))
        record.apply_event(made, recall=log.get if with_log else None)
        log[ref_stamp(made)] = made
    return record


def test_a_phones_superseded_visits_are_forgotten_and_their_resends_still_lose() -> None:
    visits_by_siti = [event(ms, "hp-siti", seq=ms, writes={"head_name": f"Siti {ms}", "address": "RT 01"})
                      for ms in range(1, 31)]
    record = folded_as_the_server_does(visits_by_siti)
    doc = record.to_document()
    assert [entry[2] for entry in doc["events"]] == [visits_by_siti[-1]["id"]]
    assert doc["fields"]["head_name"] == {"heads": [[0, "Siti 30"]]}
    for old in visits_by_siti[:-1]:
        assert record.apply_event(old) == set()
    assert heads_of(record, "head_name") == [(stamp_of(visits_by_siti[-1]), "Siti 30")]


def test_a_late_base_naming_a_long_superseded_write_needs_the_event_log_only_to_stay_small() -> None:
    # Budi's phone edited twice; Siti's phone, offline, still names Budi's first edit.
    first = event(1, "hp-budi", seq=1, writes={"status": "present"})
    second = event(2, "hp-budi", seq=2, writes={"status": "moved"})
    stale = event(5, "hp-siti", seq=1, writes={"status": "moved"}, base={"status": [stamp_of(first)]})
    events = [first, second, stale]
    with_log = folded_as_the_server_does(events)
    blind = folded_as_the_server_does(events, with_log=False)
    assert with_log.fields["status"].named == set()
    assert blind.fields["status"].named == {stamp_of(first)}  # harmless: its chain hides it anyway
    for record in (with_log, blind):
        assert heads_of(record, "status") == [(stamp_of(second), "moved"), (stamp_of(stale), "moved")]
        assert record.apply_event(first) == set()
        assert heads_of(record, "status") == [(stamp_of(second), "moved"), (stamp_of(stale), "moved")]
    assert with_log.to_document() == fold(events).to_document()


def test_a_named_re_stamped_write_that_arrives_late_above_its_phones_latest_still_loses() -> None:
    # Budi's edit with a fast clock got in; his next edit, re-stamped with an older clock, reached
    # another node, where Siti's phone saw it and wrote over it. Here it arrives last.
    accepted = event(200, "hp-budi", seq=5, writes={"status": "present"})
    restamped = event(150, "hp-budi", seq=6, writes={"status": "moved"})
    over_it = event(300, "hp-siti", seq=1, writes={"status": "deceased"}, base={"status": [stamp_of(restamped)]})
    for with_log in (True, False):
        record = folded_as_the_server_does([accepted, over_it], with_log=with_log)
        assert record.fields["status"].named == {stamp_of(restamped)}
        record.apply_event(restamped)
        assert heads_of(record, "status") == [(stamp_of(over_it), "deceased")]
        assert record.fields["status"].named == set()
    expected = ref_fold([accepted, over_it, restamped])["fields"]["status"]["heads"]
    assert [stamp for stamp, _value, _officer in expected] == [stamp_of(over_it)]


def test_a_phones_latest_write_stays_known_after_another_base_supersedes_it() -> None:
    by_siti = event(1, "hp-siti", seq=9, writes={"status": "present"})
    by_budi = event(2, "hp-budi", writes={"status": "moved"}, base={"status": [stamp_of(by_siti)]})
    record = folded_as_the_server_does([by_siti, by_budi])
    assert record.fields["status"].floor == {stamp_of(by_siti)}
    assert record.apply_event(by_siti) == set()
    assert heads_of(record, "status") == [(stamp_of(by_budi), "moved")]
    older = event(0, "hp-siti", seq=8, writes={"status": "absent"})
    assert record.apply_event(older) == set()  # below the phone's latest: superseded on arrival
    newer = event(3, "hp-siti", seq=10, writes={"status": "present"})
    assert record.apply_event(newer) == {"status"}
    assert heads_of(record, "status") == [(stamp_of(by_budi), "moved"), (stamp_of(newer), "present")]
    assert record.fields["status"].floor == set()  # the phone has a head again: nothing else to keep


def test_server_made_writes_a_base_superseded_are_remembered() -> None:
    imported = server_event(1, writes={"head_name": "SITI"})
    edit = event(5, "hp-siti", writes={"head_name": "Siti Aminah"}, base={"head_name": [stamp_of(imported)]})
    record = folded_as_the_server_does([imported, edit])
    assert record.fields["head_name"].named == {stamp_of(imported)}
    assert record.apply_event(imported) == set()
    assert heads_of(record, "head_name") == [(stamp_of(edit), "Siti Aminah")]


def test_knowing_a_stamp_falls_back_to_the_event_log() -> None:
    first = event(1, "hp-siti", writes={"status": "present"})
    second = event(2, "hp-siti", writes={"status": "moved"})
    record = fold([first, second])
    log = {stamp_of(first): first, stamp_of(second): second}
    state = record.fields["status"]
    assert state.knows(stamp_of(second))
    assert not state.knows(stamp_of(first))  # forgotten: its phone's later write covers it
    assert state.knows(stamp_of(first), log.get)
    assert not state.knows("0000000000001-0000/ghost/event-1", log.get)


@pytest.mark.slow
def test_a_household_visited_10000_times_by_50_devices_stays_under_64_kb() -> None:
    sizes = {}
    record = Record(HOUSEHOLD)
    count = 0
    server_writes = 0
    for made, record in visits(10_000, 50, fresh_view=0.9, change=0.03, resolve_every=100):
        server_writes += made.get("origin") == "server"
        if made.get("origin") != "server":
            count += 1
            if count in (1_000, 5_000, 10_000):
                sizes[count] = document_size(record)
    doc = record.to_document()
    assert len(doc["fields"]) == 65
    assert len(doc["devices"]) <= 51
    assert server_writes > 0  # conflicts happened, and a supervisor resolved them
    assert max(sizes.values()) < 64 * 1024, sizes
    # What is left to grow is one stamp per superseded resolution, not anything per visit.
    named = sum(len(canonical_json(field.get("named", []))) for field in doc["fields"].values())
    assert sizes[10_000] - named < 32 * 1024, (sizes, named)
    reloaded = Record.from_document(json.loads(canonical_json(doc)))
    assert reloaded == record
    assert reloaded.to_pull() == record.to_pull()
