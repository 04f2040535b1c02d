"""Property tests: the compact engine, fed the same events in any order, equals the reference fold.

Histories mix phones that send device_seq, phones that do not and phones that do both; clocks
that jump and re-stamps (a later edit with an older HLC); a server node that resolves conflicts,
imports values and erases; partial syncs, so bases name writes that arrive later. Every prefix of
every delivery order is checked against the reference fold of that prefix, and the compact state
reloaded from its document at random points must answer the rest exactly as the full history does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from reference import ref_fold, ref_heads, ref_known_stamps, ref_stamp
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
ERASURES = ("*", f"members/{MEMBER_ANI}/*", f"members/{MEMBER_BUDI}/*", "address", member(MEMBER_ANI, "name"))
# Few values, several JSON-equal pairs (1 and 1.0, key order) and lookalikes (true, "1").
VALUES = st.sampled_from([
    "Siti", "Budi", "moved", 1, 1.0, True, "1", None, {"rt": 1, "rw": 2}, {"rw": 2, "rt": 1.0}, [1, "a"],
])
# Ids of different lengths, so ties on the HLC are broken by string order of real-looking ids.
PHONES = (("hp-1", "siti"), ("hp-10", "budi"), ("tab-a", "rina"))
SERVER = ("server-1", "supervisor")
MODES = ("seq", "seq", "clock", "mixed")

CONVERGENCE = settings(max_examples=300, deadline=None, print_blob=True,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Wall:
    """A node's wall clock, moved by the history (also backwards)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@dataclass
class Node:
    """A phone or the server: its clock, its counter and the events its replica holds."""

    device_id: str
    officer: str
    village: str
    wall: Wall
    clock: HybridClock
    mode: str  # "seq", "clock", "mixed" or "server"
    seq: int = 0
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
    """Every event some node made, in the order they were made (each passes the stale_base check)."""
    nodes = []
    for device_id, officer in PHONES[: draw(st.integers(1, len(PHONES)))]:
        wall = Wall(EPOCH_MS + draw(st.integers(0, 40)))
        village = draw(st.sampled_from([VILLAGE, OTHER_VILLAGE]))
        nodes.append(Node(device_id, officer, village, wall, HybridClock(wall), draw(st.sampled_from(MODES))))
    server_wall = Wall(EPOCH_MS + draw(st.integers(0, 40)))
    server = Node(*SERVER, VILLAGE, server_wall, HybridClock(server_wall), "server")
    nodes.append(server)
    events: list[dict[str, Any]] = []

    def emit(node: Node, writes: dict[str, Any], base: dict[str, list[str]], *, hlc: str | None = None,
             seq: int | None = None, erase: list[str] | None = None) -> None:
        hlc = hlc or node.clock.now()
        made: dict[str, Any] = {"id": f"ev-{len(events):03d}", "device_id": node.device_id, "hlc": hlc,
                                "officer": node.officer, "household_id": HOUSEHOLD, "village": node.village,
                                "set": writes}
        # A client names only what is older than its clock: after a clock fix its own later-clocked
        # writes drop out of its base, and its device order has to carry the edit.
        fresh = {path: kept for path, stamps in base.items() if (kept := [s for s in stamps if s < hlc])}
        if fresh:
            made["base"] = fresh
        if node.mode == "server":
            made["origin"] = "server"
        elif seq is not None:
            made["device_seq"] = seq
        elif node.mode == "seq" or (node.mode == "mixed" and draw(st.booleans())):
            node.seq += draw(st.integers(1, 3))
            made["device_seq"] = node.seq
        if erase:
            made["erase"] = erase
        if draw(st.booleans()):
            made["at"] = f"2025-11-22T0{len(events) % 10}:00:00+07:00"
        node.known[ref_stamp(made)] = made
        events.append(made)

    for _ in range(draw(st.integers(1, 22))):
        node = draw(st.sampled_from(nodes))
        step = draw(st.sampled_from(["write", "write", "write", "resolve", "sync", "partial_sync", "tick",
                                     "clock_fix", "visit", "erase", "twin"]))
        if step == "write":
            paths = draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True))
            writes = {path: draw(VALUES) for path in paths}
            emit(node, writes, {path: stamps for path in paths if (stamps := draw_base(draw, node, path))})
        elif step == "resolve":
            folded = ref_fold(node.known.values())
            conflicted = sorted(path for path, state in folded["fields"].items() if state["conflict"])
            if conflicted:
                path = draw(st.sampled_from(conflicted))
                heads = folded["fields"][path]["heads"]
                value = draw(st.one_of(st.sampled_from([value for _s, value, _o in heads]), VALUES))
                emit(node, {path: value}, {path: [stamp for stamp, _v, _o in heads]})
        elif step in ("sync", "partial_sync"):
            other = draw(st.sampled_from(nodes))
            offered = list(other.known.values())
            if step == "partial_sync" and offered:
                offered = draw(st.lists(st.sampled_from(offered), unique_by=ref_stamp))
            node.receive(offered)
            if step == "sync":
                other.receive(list(node.known.values()))
        elif step == "tick":
            node.wall.ms += draw(st.integers(-5_000, 5_000))
        elif step == "clock_fix":
            # The server refused a fast clock; the phone takes the right time and re-stamps: its HLC
            # starts again lower, its device_seq carries on.
            node.wall.ms -= draw(st.integers(0, 5_000))
            node.clock = HybridClock(node.wall)
        elif step == "erase" and node.mode == "server":
            emit(node, {}, {}, erase=draw(st.lists(st.sampled_from(ERASURES), min_size=1, max_size=2, unique=True)))
        elif step == "twin" and node.mode == "seq":
            # A client that sent two events with one counter and one clock: a tie in its device order.
            node.seq += 1
            hlc = node.clock.now()
            path = draw(st.sampled_from(PATHS))
            emit(node, {path: draw(VALUES)}, {}, hlc=hlc, seq=node.seq)
            emit(node, {path: draw(VALUES)}, {}, hlc=hlc, seq=node.seq)
        else:
            emit(node, {}, {})  # a visit with no household fields still names the household
    if not any(event.get("set") for event in events):
        emit(nodes[0], {"head_name": "Siti"}, {})
    return events


def draw_base(draw: st.DrawFn, node: Node, path: str) -> list[str]:
    """What the node names as the base of its write: usually what its replica shows."""
    heads = [stamp for stamp, _value in ref_heads(node.known.values(), path)]
    mode = draw(st.sampled_from(["heads", "heads", "winner", "none", "any_known"]))
    if mode == "heads":
        return heads
    if mode == "winner":
        return heads[-1:]
    known = ref_known_stamps(node.known.values(), path)
    if mode == "any_known" and known:
        return draw(st.lists(st.sampled_from(known), unique=True))
    return []


def deliveries(draw: st.DrawFn, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events in some order, with some delivered twice (a resent batch)."""
    duplicates = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    return draw(st.permutations(events + duplicates))


def reloaded(record: Record) -> Record:
    """The record after a trip through the store (JSON text)."""
    return Record.from_document(json.loads(json.dumps(record.to_document())))


def engine_view(record: Record) -> dict[str, Any]:
    """The engine's record in the reference fold's shape."""
    fields = {}
    for path, state in record.fields.items():
        if state.heads:
            fields[path] = {"value": state.value, "stamp": state.stamp, "conflict": state.in_conflict,
                            "erased": state.erased,
                            "heads": [(write.stamp, write.value, write.officer) for write in state.heads]}
    return {"id": record.id if record.created else None, "village": record.village, "erased": list(record.erased),
            "fields": fields}


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
    assert pulled.get("erased", []) == expected["erased"]
    assert set(pulled["fields"]) == set(expected["fields"])
    for path, state in expected["fields"].items():
        assert as_json(pulled["fields"][path]["value"]) == as_json(state["value"])
        assert pulled["fields"][path]["stamp"] == state["stamp"]
        assert ("heads" in pulled["fields"][path]) == state["conflict"]
        assert pulled["fields"][path].get("erased", False) == state["erased"]
    values = {path: state["value"] for path, state in expected["fields"].items() if not state["erased"]}
    assert as_json(record.values()) == as_json(values)


def note_what_the_history_exercises(events: list[dict[str, Any]]) -> None:
    """Hypothesis statistics: evidence that histories reach the interesting cases."""
    expected = ref_fold(events)
    states = list(expected["fields"].values())
    note(f"fields in conflict: {min(sum(state['conflict'] for state in states), 2)}")
    if any(len(state["heads"]) > 1 and not state["conflict"] for state in states):
        note("several equal-valued heads")
    if any(state["erased"] for state in states):
        note("an erased field")
    if any(event.get("origin") == "server" and event.get("set") for event in events):
        note("a server-made write")
    by_device: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if "device_seq" in event:
            by_device.setdefault(event["device_id"], []).append(event)
    if any(a["device_seq"] < b["device_seq"] and a["hlc"] > b["hlc"] for made in by_device.values()
           for a in made for b in made):
        note("a re-stamped edit with an older clock")
    if any(a["device_seq"] == b["device_seq"] and a["id"] != b["id"] for made in by_device.values()
           for a in made for b in made):
        note("a tie in a device's order")
    if any(("device_seq" in a) != ("device_seq" in b) and a["device_id"] == b["device_id"] and a.get("set")
           and b.get("set") for a in events for b in events):
        note("one phone with and without device_seq")


@CONVERGENCE
@given(histories(), st.data())
def test_the_compact_engine_equals_the_reference_whatever_the_order_duplicates_or_restarts(
    events: list[dict[str, Any]], data: st.DataObject,
) -> None:
    from_scratch = fold(events)
    assert_matches_reference(from_scratch, events)
    note_what_the_history_exercises(events)
    expected_document = as_json(from_scratch.to_document())
    assert reloaded(from_scratch) == from_scratch

    # A server: folds one event at a time, its event log answers for stamps the record forgot,
    # and it is restarted (reloaded from its store) at random points.
    order = deliveries(data.draw, events)
    restarts = set(data.draw(st.lists(st.integers(0, len(order)), max_size=3), label="restarts"))
    log: dict[str, dict[str, Any]] = {}
    record = Record(HOUSEHOLD)
    for step, delivered in enumerate(order):
        if step in restarts:
            record = reloaded(record)
        record.apply_event(delivered, recall=log.get)
        log[ref_stamp(delivered)] = delivered
        received = list(log.values())
        assert_matches_reference(record, received)
        # The document is a function of the set received so far, not of the order.
        assert as_json(record.to_document()) == as_json(fold(received).to_document())
    assert as_json(record.to_document()) == expected_document
    assert record == from_scratch
    assert record.conflicts() == from_scratch.conflicts()
    assert record.to_pull() == from_scratch.to_pull()

    # Without the event log every answer is still exact; only the document may keep more stamps.
    blind = Record(HOUSEHOLD)
    for step, delivered in enumerate(deliveries(data.draw, events)):
        if step in restarts:
            blind = reloaded(blind)
        blind.apply_event(delivered)
    assert_matches_reference(blind, events)
    assert_matches_reference(reloaded(blind), events)


@CONVERGENCE
@given(histories(), st.data())
def test_a_reloaded_prefix_answers_every_continuation_as_the_full_history_does(
    events: list[dict[str, Any]], data: st.DataObject,
) -> None:
    order = deliveries(data.draw, events)
    cut = data.draw(st.integers(0, len(order)), label="prefix length")
    log = {ref_stamp(made): made for made in order[:cut]}
    prefix = reloaded(fold(order[:cut], HOUSEHOLD))
    continuation = data.draw(st.lists(st.sampled_from(events)), label="continuation")
    for made in continuation:
        prefix.apply_event(made, recall=log.get)
        log[ref_stamp(made)] = made
    received = order[:cut] + continuation
    assert_matches_reference(prefix, received)
    assert as_json(prefix.to_document()) == as_json(fold(received, HOUSEHOLD).to_document())


@settings(max_examples=50, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories())
def test_every_simulated_event_passes_the_stale_base_check_and_is_reported_changed_once(
    events: list[dict[str, Any]],
) -> None:
    record = Record(HOUSEHOLD)
    for event in events:
        changed = record.apply_event(event)
        assert changed <= set(event.get("set") or {}) | set(record.fields)
        assert record.apply_event(event) == set()
