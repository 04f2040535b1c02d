"""A pull read straight off a stored household document is the pull of the record it stores."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from sync_builders import HOUSEHOLD, MEMBER_ANI, event, member, server_event, stamp_of
from test_convergence import CONVERGENCE, histories

from sync import DocumentFormatError, Record, fold, pull_of_document


def stored(record: Record) -> dict[str, Any]:
    """The document as a store gives it back (JSON text, read again)."""
    return json.loads(json.dumps(record.to_document()))


@CONVERGENCE
@given(histories())
def test_the_pull_of_a_stored_household_is_its_records_pull_whatever_its_history(
        events: list[dict[str, Any]]) -> None:
    record = fold(events)
    doc = stored(record)
    pulled = pull_of_document(doc)
    assert pulled == Record.from_document(doc).to_pull()
    assert json.dumps(pulled) == json.dumps(record.to_pull())  # the same keys in the same order


def test_two_officers_disagreeing_then_an_erased_member_pull_as_the_record_does() -> None:
    create = event(1, writes={"head_name": "Siti", member(MEMBER_ANI, "name"): "Ani", "dependants": 3})
    by_siti = event(5, "dev-a", writes={"head_name": "Siti A.", member(MEMBER_ANI, "name"): "Ani S."},
                    base={"head_name": [stamp_of(create)]})
    by_budi = event(7, "dev-b", officer="budi", writes={"head_name": "Siti B.", member(MEMBER_ANI, "name"): "Ani B.",
                                                        "dependants": 3.0},
                    base={"head_name": [stamp_of(create)]})
    erase = server_event(9, erase=[f"members/{MEMBER_ANI}/*"])
    for events in ([create, by_siti, by_budi], [create, by_siti, by_budi, erase]):
        record = fold(events)
        pulled = pull_of_document(stored(record))
        assert pulled == record.to_pull()
        assert "heads" in pulled["fields"]["head_name"]
    assert pulled["erased"] == [f"members/{MEMBER_ANI}/*"]
    assert pulled["fields"][member(MEMBER_ANI, "name")]["erased"] is True


def test_a_document_of_another_format_still_asks_for_a_rebuild() -> None:
    with pytest.raises(DocumentFormatError):
        pull_of_document({"format": 1, "id": HOUSEHOLD})
