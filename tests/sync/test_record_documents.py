"""Record documents for storage, pull records for devices, and conflict listings."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sync_builders import HOUSEHOLD, MEMBER_ANI, VILLAGE, event, hlc, member, server_event, stamp_of

from sync import DocumentFormatError, Record, conflict_id, fold


def conflicted_household() -> tuple[Record, list[dict[str, Any]]]:
    create = event(1, writes={"head_name": "Siti", member(MEMBER_ANI, "name"): "Ani", "dependants": 3})
    by_siti = event(5, "dev-a", writes={"head_name": "Siti A.", "dependants": 4},
                    base={"head_name": [stamp_of(create)], "dependants": [stamp_of(create)]},
                    at="2025-11-22T09:00:00+07:00")
    by_budi = event(7, "dev-b", officer="budi", writes={"head_name": "Siti B.", "dependants": 4.0},
                    base={"head_name": [stamp_of(create)], "dependants": [stamp_of(create)]})
    events = [create, by_siti, by_budi]
    return fold(events), events


def test_document_round_trip_is_lossless_and_json() -> None:
    record, _events = conflicted_household()
    doc = record.to_document()
    stored = json.loads(json.dumps(doc))
    reloaded = Record.from_document(stored)
    assert reloaded == record
    assert reloaded.to_document() == doc
    assert reloaded.conflicts() == record.conflicts()
    assert reloaded.to_pull() == record.to_pull()


def test_document_shares_one_entry_per_event_and_forgets_superseded_writes() -> None:
    record, (create, by_siti, by_budi) = conflicted_household()
    assert record.to_document() == {
        "format": 2,
        "id": HOUSEHOLD,
        "village": VILLAGE,
        "created": stamp_of(create),
        "devices": ["dev-a", "dev-b"],
        "events": [
            [hlc(1), 0, create["id"], None, "siti", None, "device"],
            [hlc(5), 0, by_siti["id"], None, "siti", "2025-11-22T09:00:00+07:00", "device"],
            [hlc(7), 1, by_budi["id"], None, "budi", None, "device"],
        ],
        "floors": [],
        "fields": {
            # the create is below dev-a's later write in both fields: forgotten
            "dependants": {"heads": [[1, 4], [2, 4.0]]},
            "head_name": {"heads": [[1, "Siti A."], [2, "Siti B."]]},
            member(MEMBER_ANI, "name"): {"heads": [[0, "Ani"]]},
        },
    }


def test_document_keeps_a_devices_latest_write_and_stamps_not_received_yet() -> None:
    by_siti = event(1, "dev-a", seq=3, writes={"status": "present"})
    by_budi = event(5, "dev-b", officer="budi", writes={"status": "moved"},
                    base={"status": [stamp_of(by_siti), "0000000000009-0000/dev-c/not-here-yet"]})
    resolution = server_event(9, writes={"status": "moved"}, base={"status": [stamp_of(by_budi)]})
    doc = fold([by_siti, by_budi, resolution]).to_document()
    assert doc["devices"] == ["dev-a", "dev-b", "server-1"]
    assert [entry[2] for entry in doc["events"]] == [by_siti["id"], by_budi["id"], resolution["id"]]
    assert doc["events"][0][3] == 3
    assert doc["events"][2][6] == "server"
    assert doc["fields"]["status"] == {
        "heads": [[2, "moved"]],
        "floor": 0,
        "named": ["0000000000009-0000/dev-c/not-here-yet"],
    }
    assert doc["floors"] == [[0, 1]]  # dev-a's and dev-b's latest writes here, though no longer heads


def test_a_format_1_document_asks_for_a_rebuild() -> None:
    old = {"format": 1, "id": HOUSEHOLD, "village": VILLAGE, "created": None, "fields": {}}
    with pytest.raises(DocumentFormatError, match="rebuild the record from its events") as raised:
        Record.from_document(old)
    assert raised.value.format == 1
    assert isinstance(raised.value, ValueError)
    with pytest.raises(DocumentFormatError):
        Record.from_document({"id": HOUSEHOLD})


def test_store_keys_next_to_the_document_are_ignored() -> None:
    record, _events = conflicted_household()
    stored = record.to_document() | {"seq": 42, "_id": "abc"}
    assert Record.from_document(stored) == record


def test_write_arriving_after_its_superseder_stays_out_after_a_reload() -> None:
    # Three phones, so only the bases (kept as named stamps across the reload) supersede.
    first = event(1, "dev-a", writes={"status": "active"})
    second = event(2, "dev-b", writes={"status": "moved"}, base={"status": [stamp_of(first)]})
    third = event(3, "dev-c", writes={"status": "deceased"}, base={"status": [stamp_of(second)]})
    record = Record.from_document(json.loads(json.dumps(fold([third]).to_document())))
    record.apply_event(first)
    record = Record.from_document(json.loads(json.dumps(record.to_document())))
    assert record.apply_event(second) == {"status"}
    assert record == fold([first, second, third])
    assert record.get("status") == "deceased"


def _corrupt(change: Any) -> dict[str, Any]:
    record, _events = conflicted_household()
    doc = json.loads(json.dumps(record.to_document()))
    change(doc)
    return doc


HEAD_NAME = "head_name"


def _first_head(doc: dict[str, Any]) -> list[Any]:
    return doc["fields"][HEAD_NAME]["heads"][0]


@pytest.mark.parametrize(("change", "message"), [
    (lambda doc: doc.pop("created"), "created"),
    (lambda doc: doc.pop("events"), "events"),
    (lambda doc: doc.update(fields=[]), "fields"),
    (lambda doc: doc.update(id="bad/id"), "record id"),
    (lambda doc: doc.update(created=None), "together"),
    (lambda doc: doc.update(devices=["dev-a", "dev-a"]), "twice"),
    (lambda doc: doc.update(devices="dev-a"), "not a list"),
    (lambda doc: doc["events"].append(doc["events"][0]), "twice"),
    (lambda doc: doc["events"][0].__setitem__(0, "soon"), "HLC"),
    (lambda doc: doc["events"][0].__setitem__(1, 7), "device"),
    (lambda doc: doc["events"][0].__setitem__(2, "bad/id"), "event_id"),
    (lambda doc: doc["events"][0].__setitem__(4, None), "officer"),
    (lambda doc: doc["events"][0].__setitem__(6, "phone"), "origin"),
    (lambda doc: doc["events"][0].__setitem__(3, 0), "device_seq"),
    (lambda doc: doc["events"][0].pop(), "is not"),
    (lambda doc: doc["fields"].update({"Bad Path": {"heads": []}}), "field path"),
    (lambda doc: doc["fields"][HEAD_NAME].pop("heads"), "expected heads"),
    (lambda doc: doc["fields"][HEAD_NAME].update(extra=[]), "expected heads"),
    (lambda doc: doc["fields"][HEAD_NAME].update(heads="none"), "not a list"),
    (lambda doc: _first_head(doc).__setitem__(0, 99), "does not list"),
    (lambda doc: _first_head(doc).__setitem__(0, True), "does not list"),
    (lambda doc: _first_head(doc).append("x"), "a head is"),
    (lambda doc: _first_head(doc).__setitem__(1, float("nan")), "JSON"),
    (lambda doc: doc["fields"][HEAD_NAME]["heads"].append(_first_head(doc)), "twice"),
    (lambda doc: doc["fields"][HEAD_NAME].update(floor=[0]), "floor"),
    (lambda doc: doc["fields"][HEAD_NAME].update(floor=0), "floor"),
    (lambda doc: doc.update(floors=[[_first_head(doc)[0]]]) or doc["fields"][HEAD_NAME].update(floor=0), "floor"),
    (lambda doc: doc.update(floors=[[0]]) or doc["fields"][HEAD_NAME].update(floor=0), "below its device's latest"),
    (lambda doc: doc.update(floors=[[9]]) or doc["fields"][HEAD_NAME].update(floor=0), "does not list"),
    (lambda doc: doc.pop("floors"), "floors"),
    (lambda doc: doc["fields"][HEAD_NAME].update(named=["garbage"]), "malformed stamp"),
    (lambda doc: doc["fields"][HEAD_NAME].update(named=[stamp_of(event(5, "dev-a"))]), "named"),
    (lambda doc: doc.update(erasures=[[0, ["*"]]]), "not server-made"),
    (lambda doc: doc.update(erasures=[[0]]), "erasure"),
])
def test_corrupt_documents_are_refused(change: Any, message: str) -> None:
    doc = _corrupt(change)
    with pytest.raises(ValueError, match=message) as raised:
        Record.from_document(doc)
    assert not isinstance(raised.value, DocumentFormatError)


def test_non_object_document_is_refused() -> None:
    with pytest.raises(ValueError, match="not an object"):
        Record.from_document(["not", "a", "document"])  # type: ignore[arg-type]


def test_pull_record_has_the_contract_shape() -> None:
    record, (create, by_siti, by_budi) = conflicted_household()
    assert record.to_pull() == {
        "type": "household",
        "id": HOUSEHOLD,
        "village": VILLAGE,
        "fields": {
            "dependants": {"value": 4.0, "stamp": stamp_of(by_budi),
                           "head_stamps": [stamp_of(by_siti), stamp_of(by_budi)]},
            "head_name": {"value": "Siti B.", "stamp": stamp_of(by_budi), "heads": [
                {"value": "Siti A.", "stamp": stamp_of(by_siti), "officer": "siti"},
                {"value": "Siti B.", "stamp": stamp_of(by_budi), "officer": "budi"},
            ]},
            member(MEMBER_ANI, "name"): {"value": "Ani", "stamp": stamp_of(create)},
        },
    }


def test_conflict_id_is_short_hex_derived_from_household_field_and_heads() -> None:
    record, (_create, by_siti, by_budi) = conflicted_household()
    (conflict,) = record.conflicts()
    assert re.fullmatch(r"[0-9a-f]{16}", conflict["id"])
    heads = [stamp_of(by_siti), stamp_of(by_budi)]
    assert conflict["id"] == conflict_id(HOUSEHOLD, "head_name", heads)
    assert conflict_id(HOUSEHOLD, "head_name", reversed(heads)) == conflict["id"]
    assert conflict_id("another-household", "head_name", heads) != conflict["id"]
    assert conflict_id(HOUSEHOLD, "address", heads) != conflict["id"]
    assert conflict_id(HOUSEHOLD, "head_name", heads[:1]) != conflict["id"]


def test_a_new_head_gives_the_conflict_a_new_id() -> None:
    record, _events = conflicted_household()
    (before,) = record.conflicts()
    record.apply_event(event(9, "dev-c", officer="rina", writes={"head_name": "Siti C."}))
    (after,) = record.conflicts()
    assert after["id"] != before["id"]
    assert [head["officer"] for head in after["heads"]] == ["siti", "budi", "rina"]


def test_conflict_ids_agree_whatever_the_arrival_order() -> None:
    record, events = conflicted_household()
    assert fold(reversed(events)).conflicts() == record.conflicts()
