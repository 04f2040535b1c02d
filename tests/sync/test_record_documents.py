"""Record documents for storage, pull records for devices, and conflict listings."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sync_builders import HOUSEHOLD, MEMBER_ANI, VILLAGE, event, member, stamp_of

from sync import Record, conflict_id, fold


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


def test_document_keeps_heads_metadata_and_superseded_stamps() -> None:
    record, (create, by_siti, _by_budi) = conflicted_household()
    doc = record.to_document()
    assert doc["format"] == 1
    assert (doc["id"], doc["village"], doc["created"]) == (HOUSEHOLD, VILLAGE, stamp_of(create))
    head_name = doc["fields"]["head_name"]
    assert head_name["superseded"] == [stamp_of(create)]
    assert head_name["heads"][0] == {
        "value": "Siti A.", "stamp": stamp_of(by_siti), "base": [stamp_of(create)], "officer": "siti",
        "at": "2025-11-22T09:00:00+07:00"}
    assert "at" not in head_name["heads"][1]


def test_store_keys_next_to_the_document_are_ignored() -> None:
    record, _events = conflicted_household()
    stored = record.to_document() | {"seq": 42, "_id": "abc"}
    assert Record.from_document(stored) == record


def test_write_arriving_after_its_superseder_stays_out_after_a_reload() -> None:
    first = event(1, writes={"status": "active"})
    second = event(2, writes={"status": "moved"}, base={"status": [stamp_of(first)]})
    third = event(3, writes={"status": "deceased"}, base={"status": [stamp_of(second)]})
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


def _first_head(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["fields"][HEAD_NAME]["heads"][0]


@pytest.mark.parametrize(("change", "message"), [
    (lambda doc: doc.update(format=2), "format"),
    (lambda doc: doc.pop("created"), "created"),
    (lambda doc: doc.update(fields=[]), "fields"),
    (lambda doc: doc.update(id="bad/id"), "record id"),
    (lambda doc: doc.update(created=None), "together"),
    (lambda doc: doc["fields"].update({"Bad Path": {"heads": [], "superseded": []}}), "field path"),
    (lambda doc: doc["fields"][HEAD_NAME].pop("superseded"), "missing"),
    (lambda doc: doc["fields"][HEAD_NAME].update(heads="none"), "lists"),
    (lambda doc: _first_head(doc).update(stamp="garbage"), "malformed stamp"),
    (lambda doc: _first_head(doc).update(extra=1), "unknown"),
    (lambda doc: _first_head(doc).update(base="x"), "base"),
    (lambda doc: _first_head(doc).update(value=float("nan")), "JSON"),
    (lambda doc: _first_head(doc).update(officer=None), "officer"),
    (lambda doc: doc["fields"][HEAD_NAME]["superseded"].append(_first_head(doc)["stamp"]), "cannot be a head"),
    (lambda doc: doc["fields"][HEAD_NAME]["heads"].append(_first_head(doc)), "cannot be a head"),
])
def test_corrupt_documents_are_refused(change: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Record.from_document(_corrupt(change))


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
