"""What the simulator checks after a run: every phone's events, its replica, and the server, against the oracle."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.client import ACKED, REJECTED, Outgoing, PulledHousehold

from .oracle import Accepted, canon, oracle_fold

if TYPE_CHECKING:
    from .device import SimDevice

KEPT_EXAMPLES = 200  # a run where everything fails must not keep a million sentences


@dataclass
class Check:
    """One property of the run: how many things it looked at, and what it found wrong. Safe between threads."""

    name: str
    compares: str
    checked: int = 0
    failures: int = 0
    examples: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ok(self) -> bool:
        return self.failures == 0

    def fail(self, message: str) -> None:
        with self._lock:
            self.failures += 1
            if len(self.examples) < KEPT_EXAMPLES:
                self.examples.append(message)

    def count(self, n: int = 1) -> None:
        with self._lock:
            self.checked += n

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "compares": self.compares, "checked": self.checked,
                "failures": self.failures, "examples": self.examples[:20]}


def new_checks() -> dict[str, Check]:
    checks = [
        Check("no_lost_events", "every event a device made ends applied exactly once (its verdicts on the device) "
              "and is in the server's household history; so is every supervisor resolution"),
        Check("no_duplicated_events", "each accepted event is listed once in its household's history (with the "
              "HLC, device, writes and base the device sent) and each visit once in /visits"),
        Check("replicas_match_server", "after a final full pull, each device holds exactly the households of the "
              "villages it has now (after lent villages were taken back), and its replica (pulled records merged "
              "with its own writes by sync.Record) of each equals the supervisor's fresh pull"),
        Check("server_matches_oracle", "the server's pulled state of every household (values, stamps, conflict "
              "heads, equal heads) equals the oracle's fold of the accepted events, and GET /households/<id> "
              "shows the same fields"),
        Check("conflicts_match_oracle", "the open conflicts of GET /api/v1/conflicts (field, village, every head's "
              "value, stamp, officer, device, event and time) equal the oracle's"),
        Check("geotag_flags", "visits placed outside their village carry an outside_village flag with a positive "
              "distance; visits placed inside carry none"),
        Check("run_completed", "every device finished every round, and the server answered no 5xx"),
    ]
    return {check.name: check for check in checks}


@dataclass(frozen=True)
class Resolution:
    """A supervisor's resolution of one conflict: the value chosen over the heads it saw."""

    id: str
    household_id: str
    field: str
    value: Any
    heads: list[str]
    conflict_id: str


def accepted_event(device: SimDevice, event: Outgoing) -> Accepted:
    """An acknowledged event of a phone as the oracle folds it (decoded now: phones keep them encoded)."""
    return Accepted(event.id, event.kind, event.household_id, event.village, event.hlc, device.device_id,
                    device.username, event.at, event.writes, event.base,
                    event.device_seq)


@dataclass
class HouseholdVerdict:
    """What :func:`check_household` keeps of one household once its history is dropped."""

    accepted: int = 0
    resolutions: int = 0
    oracle_conflicts: int = 0
    lost: int = 0  # events (and resolutions) a device or the supervisor made that the server does not hold
    duplicated: int = 0  # events the household's history lists more than once
    resolutions_seen: list[Accepted] = field(default_factory=list)


def check_household(checks: Mapping[str, Check], household_id: str, events: list[tuple[SimDevice, Outgoing]],
                    resolutions: Iterable[Resolution], supervisor: str, history_body: Mapping[str, Any] | None,
                    pulled: PulledHousehold | None, listed: Mapping[str, Mapping[str, Any]], *,
                    own_writes_supersede: bool) -> HouseholdVerdict:
    """Every check about one household, from its phones' events, its history, its pull and its listed conflicts."""
    verdict = HouseholdVerdict()
    history = list(history_body.get("history", [])) if history_body else []
    listed_ids = {entry["event_id"] for entry in history}
    lost, duplicated = checks["no_lost_events"], checks["no_duplicated_events"]
    accepted: list[Accepted] = []
    for device, event in events:
        lost.count()
        where = f"{device.device_id} {event.kind} {event.id}"
        if event.state != ACKED:
            lost.fail(f"{where} ended {event.state}: {event.verdicts}")
            if event.id not in listed_ids:
                verdict.lost += 1
            continue
        accepted.append(accepted_event(device, event))
        applied = event.verdicts.count("applied")
        if applied > 1:
            lost.fail(f"{where} was answered applied {applied} times")
        if applied == 0 and not event.unknown:
            lost.fail(f"{where} was never answered applied and no reply of it was lost")
        if event.restamps and not any(v == "rejected:clock_skew" for v in event.verdicts):
            lost.fail(f"{where} was re-stamped without a clock_skew verdict")
        if event.id not in listed_ids:
            lost.fail(f"{where} is missing from the history of household {household_id}")
            verdict.lost += 1
    verdict.accepted = len(accepted)
    for resolution in resolutions:
        lost.count()
        entry = next((e for e in history if e["event_id"] == resolution.id and e["type"] == "resolution"), None)
        if entry is None:
            lost.fail(f"resolution {resolution.id} of conflict {resolution.conflict_id} is missing from the "
                      f"history of household {household_id}")
            verdict.lost += 1
            continue
        # value and heads as sent; HLC and node as the server stamped them
        found = Accepted(resolution.id, "resolution", household_id, history_body["village"], entry["hlc"],
                         entry["device_id"], supervisor, entry["received_at"], {resolution.field: resolution.value},
                         {resolution.field: resolution.heads})
        accepted.append(found)
        verdict.resolutions_seen.append(found)
    verdict.resolutions = len(verdict.resolutions_seen)
    if history_body is not None:
        verdict.duplicated = _check_history(duplicated, household_id, history,
                                            {event.id: event for event in accepted})
    if not accepted:
        if pulled is not None:
            checks["server_matches_oracle"].fail(f"household {household_id} is on the server, but no event of "
                                                 "it was accepted")
        return verdict
    oracle = oracle_fold(accepted, own_writes_supersede=own_writes_supersede)
    verdict.oracle_conflicts = len(oracle["conflicts"])
    _check_state(checks["server_matches_oracle"], household_id, oracle, pulled, history_body)
    _check_conflicts(checks["conflicts_match_oracle"], household_id, oracle, listed, history_body)
    return verdict


def _check_history(check: Check, household_id: str, history: list[Mapping[str, Any]],
                   mine: Mapping[str, Accepted]) -> int:
    """Checks the history against the accepted events; returns how many events it lists more than once."""
    check.count()
    counts = Counter(entry["event_id"] for entry in history)
    doubled = 0
    for event_id, count in counts.items():
        if count > 1:
            check.fail(f"household {household_id} lists event {event_id} {count} times")
            doubled += 1
    for entry in history:
        event = mine.get(entry["event_id"])
        if event is None:
            check.fail(f"household {household_id} lists event {entry['event_id']} that nobody in this run had "
                       "accepted")
            continue
        if entry["hlc"] != event.hlc or entry["device_id"] != event.device_id or entry["officer"] != event.officer:
            check.fail(f"event {event.id}: history says {entry['hlc']}/{entry['device_id']}/{entry['officer']}, "
                       f"the device sent {event.hlc}/{event.device_id}/{event.officer}")
        if canon(entry["writes"]) != canon(event.writes):
            paths = sorted(set(entry["writes"]) ^ set(event.writes)) or sorted(
                p for p in event.writes if canon(entry["writes"].get(p)) != canon(event.writes[p]))
            check.fail(f"event {event.id}: the server's writes differ from the form's save_to at {paths[:5]}")
        if canon({p: sorted(s) for p, s in (entry.get("base") or {}).items() if s}) != canon(
                {p: sorted(s) for p, s in event.base.items() if s}):
            check.fail(f"event {event.id}: the server's base differs from the device's")
    return doubled


def _differing(left: Mapping[str, Any], right: Mapping[str, Any]) -> list[str]:
    return sorted(p for p in set(left) | set(right) if canon(left.get(p)) != canon(right.get(p)))


def _check_state(check: Check, household_id: str, oracle: Mapping[str, Any], pulled: PulledHousehold | None,
                 history_body: Mapping[str, Any] | None) -> None:
    check.count()
    if pulled is None:
        check.fail(f"household {household_id} is not in the server's pull")
        return
    if pulled.village != oracle["village"]:
        check.fail(f"household {household_id}: village {pulled.village}, oracle {oracle['village']}")
    fields = pulled.fields
    pulled_canon = canon(fields)
    if pulled_canon != canon(oracle["fields"]):
        check.fail(f"household {household_id} differs from the oracle at {_differing(fields, oracle['fields'])[:5]}")
    if history_body is not None and canon(history_body["fields"]) != pulled_canon:
        check.fail(f"household {household_id}: GET /households/<id> and the pull disagree")


def _check_conflicts(check: Check, household_id: str, oracle: Mapping[str, Any],
                     listed: Mapping[str, Mapping[str, Any]], history_body: Mapping[str, Any] | None) -> None:
    expected = oracle["conflicts"]
    check.count(len(expected))
    for path in sorted(set(expected) - set(listed)):
        check.fail(f"the oracle has a conflict at {(household_id, path)} that the server does not list")
    for path in sorted(set(listed) - set(expected)):
        check.fail(f"the server lists a conflict at {(household_id, path)} that the oracle does not have")
    for path in sorted(set(listed) & set(expected)):
        conflict = listed[path]
        heads = [{k: head.get(k) for k in ("value", "stamp", "officer", "device_id", "event_id", "at")}
                 for head in conflict["heads"]]
        if canon(heads) != canon(expected[path]):
            check.fail(f"conflict {conflict['id']} at {(household_id, path)} has other heads than the oracle's")
        if conflict["village"] != oracle["village"]:
            check.fail(f"conflict {conflict['id']} at {(household_id, path)} names village {conflict['village']}")
    if history_body and history_body.get("open_conflicts") != len(expected):
        check.fail(f"household {household_id} counts {history_body.get('open_conflicts')} open conflicts, the "
                   f"oracle {len(expected)}")


def index_conflicts(check: Check, conflicts: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The listed conflicts by household and field; two for one field, or one id twice, is a failure."""
    listed: dict[str, dict[str, Any]] = {}
    ids: set[str] = set()
    for conflict in conflicts:
        by_field = listed.setdefault(conflict["household_id"], {})
        if conflict["field"] in by_field:
            check.fail(f"two open conflicts for {(conflict['household_id'], conflict['field'])}: "
                       f"{by_field[conflict['field']]['id']} and {conflict['id']}")
        by_field[conflict["field"]] = dict(conflict)
        if conflict["id"] in ids:
            check.fail(f"conflict id {conflict['id']} is listed twice")
        ids.add(conflict["id"])
    return listed


def check_replicas(check: Check, devices: Iterable[SimDevice], snapshot: Mapping[str, PulledHousehold]) -> None:
    """Each phone holds exactly its villages' households, each equal to the supervisor's fresh pull."""
    by_village: dict[str, set[str]] = {}
    for household_id, held in snapshot.items():
        by_village.setdefault(held.village, set()).add(household_id)
    server_canon: dict[str, Any] = {}
    for device in devices:
        client = device.client
        pending = [event.id for event in client.events if event.state != REJECTED and not event.confirmed]
        if pending:
            check.fail(f"{device.device_id} still holds {len(pending)} writes no pull confirmed, e.g. {pending[:3]}")
        expected = set().union(*(by_village.get(village, set()) for village in device.villages))
        held = client.held()
        for household_id in sorted(expected - held):
            check.fail(f"{device.device_id} never pulled household {household_id}")
        for household_id in sorted(held - expected):
            check.fail(f"{device.device_id} holds household {household_id} the server does not show")
        for household_id in sorted(held & expected):
            check.count()
            server = snapshot[household_id]
            copy = client.replica.get(household_id)
            if copy is not None and not client.unconfirmed(household_id):
                if copy.digest == server.digest:
                    continue  # the same state pulled twice: equal without unpacking it
                replica = copy.fields
            else:
                replica = client.record(household_id).to_pull()["fields"]
            if household_id not in server_canon:
                server_canon[household_id] = canon(server.fields)
            if canon(replica) != server_canon[household_id]:
                check.fail(f"{device.device_id} household {household_id} differs at "
                           f"{_differing(replica, server.fields)[:5]}")
            if client.village_of(household_id) != server.village:
                check.fail(f"{device.device_id} household {household_id} is in another village")
