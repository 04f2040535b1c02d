"""Property tests: replicas fed the same events in any order, any topology, agree with the reference fold."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from reference import ref_fold, ref_heads, ref_known_stamps, ref_named, ref_stamp
from sync_builders import EPOCH_MS, HOUSEHOLD, MEMBER_ANI, MEMBER_BUDI, OTHER_VILLAGE, VILLAGE, member

from sync import HybridClock, Record, fold

PATHS = (
    "head_name",
    "address",
    "status",
    member(MEMBER_ANI, "name"),
    member(MEMBER_ANI, "status"),
    member(MEMBER_BUDI, "status"),
)
# Few values, several JSON-equal pairs (1 and 1.0, key order) and lookalikes (true, "1").
VALUES = st.sampled_from([
    "Siti", "Budi", "moved", 1, 1.0, True, "1", None, {"rt": 1, "rw": 2}, {"rw": 2, "rt": 1.0}, [1, "a"],
])
# Ids of different lengths, so ties on the HLC are broken by string order of real-looking ids.
PHONES = (("hp-1", "siti"), ("hp-10", "budi"), ("tab-a", "rina"), ("server-1", "supervisor"))

CONVERGENCE = settings(max_examples=200, deadline=None, print_blob=True,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Wall:
    """A phone's wall clock, moved by the history (also backwards)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@dataclass
class Phone:
    """One device: its clock and the events its replica holds."""

    device_id: str
    officer: str
    village: str
    wall: Wall
    clock: HybridClock
    known: dict[str, dict[str, Any]] = field(default_factory=dict)

    def receive(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if ref_stamp(event) not in self.known:
                self.known[ref_stamp(event)] = event
                self.clock.observe(event["hlc"])


def as_json(value: Any) -> str:
    """Comparable text that tells true from 1 and 1 from 1.0, unlike ==."""
    return json.dumps(value, sort_keys=True)


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Every event some phone made, in the order they were made.

    Phones keep their own replica (the set of events they know), write offline from what
    that replica shows, resolve the conflicts they see, let their wall clocks jump (also
    backwards), and sync with each other, fully or in part, at random points.
    """
    phones = []
    for device_id, officer in PHONES[: draw(st.integers(2, len(PHONES)))]:
        wall = Wall(EPOCH_MS + draw(st.integers(0, 40)))
        village = draw(st.sampled_from([VILLAGE, OTHER_VILLAGE]))
        phones.append(Phone(device_id, officer, village, wall, HybridClock(wall)))
    events: list[dict[str, Any]] = []

    def emit(phone: Phone, writes: dict[str, Any], base: dict[str, list[str]]) -> None:
        made = {"id": f"ev-{len(events):03d}", "device_id": phone.device_id, "hlc": phone.clock.now(),
                 "officer": phone.officer, "household_id": HOUSEHOLD, "village": phone.village,
                 "set": writes, "base": base}
        if draw(st.booleans()):
            made["at"] = f"2025-11-22T0{len(events) % 10}:00:00+07:00"
        phone.known[ref_stamp(made)] = made
        events.append(made)

    for _ in range(draw(st.integers(1, 24))):
        phone = draw(st.sampled_from(phones))
        step = draw(st.sampled_from(["write", "write", "write", "resolve", "sync", "partial_sync", "tick",
                                     "visit"]))
        if step == "write":
            paths = draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True))
            writes = {path: draw(VALUES) for path in paths}
            base = {path: stamps for path in paths if (stamps := draw_base(draw, phone, path))}
            emit(phone, writes, base)
        elif step == "resolve":
            folded = ref_fold(phone.known.values())
            conflicted = sorted(path for path, state in folded["fields"].items() if state["conflict"])
            if conflicted:
                path = draw(st.sampled_from(conflicted))
                heads = folded["fields"][path]["heads"]
                value = draw(st.one_of(st.sampled_from([value for _s, value, _o in heads]), VALUES))
                emit(phone, {path: value}, {path: [stamp for stamp, _v, _o in heads]})
        elif step in ("sync", "partial_sync"):
            other = draw(st.sampled_from(phones))
            offered = list(other.known.values())
            if step == "partial_sync" and offered:
                offered = draw(st.lists(st.sampled_from(offered), unique_by=ref_stamp))
            phone.receive(offered)
            if step == "sync":
                other.receive(list(phone.known.values()))
        elif step == "tick":
            phone.wall.ms += draw(st.integers(-5_000, 5_000))
        else:
            emit(phone, {}, {})  # a visit with no household fields still names the household
    if not events:
        emit(phones[0], {"head_name": "Siti"}, {})
    return events


def draw_base(draw: st.DrawFn, phone: Phone, path: str) -> list[str]:
    """What the phone names as the base of its write: usually what its replica shows."""
    heads = [stamp for stamp, _value in ref_heads(phone.known.values(), path)]
    mode = draw(st.sampled_from(["heads", "heads", "winner", "none", "any_known"]))
    if mode == "heads":
        return heads
    if mode == "winner":
        return heads[-1:]
    known = ref_known_stamps(phone.known.values(), path)
    if mode == "any_known" and known:
        return draw(st.lists(st.sampled_from(known), unique=True))
    return []


def deliveries(draw: st.DrawFn, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events in some order, with some delivered twice (a resent batch)."""
    duplicates = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    return draw(st.permutations(events + duplicates))


def apply_all(record: Record, events: list[dict[str, Any]]) -> Record:
    for event in events:
        record.apply_event(event)
    return record


def reloaded(record: Record) -> Record:
    """The record after a trip through the store (JSON text)."""
    return Record.from_document(json.loads(json.dumps(record.to_document())))


def engine_view(record: Record) -> dict[str, Any]:
    """The engine's record in the reference fold's shape."""
    fields = {}
    for path, state in record.fields.items():
        if state.heads:
            fields[path] = {"value": state.value, "stamp": state.stamp, "conflict": state.in_conflict,
                            "heads": [(write.stamp, write.value, write.officer) for write in state.heads]}
    return {"id": record.id, "village": record.village, "fields": fields}


def assert_matches_reference(record: Record, events: list[dict[str, Any]]) -> None:
    expected = ref_fold(events)
    assert as_json(engine_view(record)) == as_json(expected)

    conflicts = {conflict["field"]: conflict for conflict in record.conflicts()}
    expected_conflicts = {path: state["heads"] for path, state in expected["fields"].items() if state["conflict"]}
    assert as_json({path: [(head["stamp"], head["value"], head["officer"]) for head in conflict["heads"]]
                    for path, conflict in conflicts.items()}) == as_json(expected_conflicts)
    assert all(conflict["village"] == expected["village"] for conflict in conflicts.values())

    pulled = record.to_pull()
    assert pulled["village"] == expected["village"]
    assert set(pulled["fields"]) == set(expected["fields"])
    for path, state in expected["fields"].items():
        assert as_json(pulled["fields"][path]["value"]) == as_json(state["value"])
        assert pulled["fields"][path]["stamp"] == state["stamp"]
        assert ("heads" in pulled["fields"][path]) == state["conflict"]


def note_what_the_history_exercises(record: Record, events: list[dict[str, Any]]) -> None:
    """Hypothesis statistics: evidence that histories reach the interesting cases."""
    states = list(record.fields.values())
    note(f"fields in conflict: {min(len(record.conflicts()), 2)}")
    if any(len(state.heads) > 1 and not state.in_conflict for state in states):
        note("several equal-valued heads")
    if any(len(stamps) > 1 for made in events for stamps in made["base"].values()):
        note("a write names several heads (resolution or merge)")
    if len({made["village"] for made in events}) > 1:
        note("events claim different villages")
    if any(len(state.superseded) > 0 for state in states):
        note("some write superseded")


def assert_no_head_lost(record: Record, events: list[dict[str, Any]]) -> None:
    for path in PATHS:
        written = set(ref_known_stamps(events, path))
        named = ref_named(events, path)
        state = record.fields.get(path)
        heads = {write.stamp for write in state.heads} if state else set()
        assert written <= heads | named
        assert (state.superseded if state else set()) == named


@CONVERGENCE
@given(histories(), st.data())
def test_replicas_converge_whatever_the_order_duplicates_or_topology(
    events: list[dict[str, Any]], data: st.DataObject,
) -> None:
    from_scratch = fold(events)
    assert_matches_reference(from_scratch, events)
    assert_no_head_lost(from_scratch, events)
    note_what_the_history_exercises(from_scratch, events)

    shuffled = apply_all(Record(HOUSEHOLD), deliveries(data.draw, events))

    # A laptop that is restarted (reloaded from its store) partway through.
    order = deliveries(data.draw, events)
    cut = data.draw(st.integers(0, len(order)), label="restart at")
    restarted = apply_all(reloaded(apply_all(Record(HOUSEHOLD), order[:cut])), order[cut:])

    # The village hall: A takes some events, B takes others, B merges A's state, then the rest.
    order = deliveries(data.draw, events)
    cut = data.draw(st.integers(0, len(order)), label="hall cut")
    hall_a = apply_all(Record(HOUSEHOLD), order[:cut])
    hall_b = apply_all(Record(HOUSEHOLD), data.draw(st.lists(st.sampled_from(events)), label="b first"))
    hall_b.merge(reloaded(hall_a))
    via_hall = apply_all(hall_b, order[cut:])

    expected_document = as_json(from_scratch.to_document())
    for replica in (shuffled, restarted, via_hall):
        assert replica == from_scratch
        assert as_json(replica.to_document()) == expected_document
        assert replica.conflicts() == from_scratch.conflicts()
        assert replica.to_pull() == from_scratch.to_pull()
        assert reloaded(replica) == replica


@settings(max_examples=100, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories(), st.data())
def test_replica_merge_is_a_join(events: list[dict[str, Any]], data: st.DataObject) -> None:
    def some_events(label: str) -> list[dict[str, Any]]:
        return data.draw(st.lists(st.sampled_from(events), unique_by=ref_stamp), label=label)

    parts = [some_events("a"), some_events("b"), some_events("c")]
    a, b, c = (fold(part, HOUSEHOLD) for part in parts)

    def join(*records: Record) -> Record:
        joined = records[0].copy()
        for record in records[1:]:
            joined.merge(record)
        return joined

    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, a) == a
    assert join(a, b).merge(b) == set()
    union = parts[0] + parts[1] + parts[2]
    assert join(a, b, c) == fold(union, HOUSEHOLD)
    if union:
        assert_matches_reference(join(a, b, c), union)
        assert_no_head_lost(join(a, b, c), union)


@settings(max_examples=50, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories())
def test_every_simulated_event_passes_the_stale_base_check_and_is_reported_changed_once(
    events: list[dict[str, Any]],
) -> None:
    record = Record(HOUSEHOLD)
    for event in events:
        changed = record.apply_event(event)
        assert changed <= set(event["set"])
        assert record.apply_event(event) == set()
