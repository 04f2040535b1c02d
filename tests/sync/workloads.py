"""A long-lived household: many phones revisiting it from views of various ages, as the server sees it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync import Record, format_hlc, make_stamp

HOUSEHOLD_ID = "5f0c7a1e-3b2d-4e6f-8a9b-0c1d2e3f4a5b"
VILLAGE_CODE = "32.04.05.2001"
HOUSEHOLD_FIELDS = (
    "head_name", "head_nik", "no_kk", "address", "rt", "rw", "phone", "house_ownership", "floor_type",
    "wall_type", "roof_type", "water_source", "toilet", "lighting", "cooking_fuel", "assets", "status",
)
MEMBER_FIELDS = ("name", "nik", "relation", "sex", "birth_date", "marital_status", "education", "occupation",
                 "disability", "chronic_illness", "health_insurance", "status")
START_MS = 1_763_790_000_000


@dataclass
class Phone:
    device_id: str
    officer: str
    seq: int = 0
    last_ms: int = 0
    counter: int = 0
    # What the phone last pulled, then its own writes over it: path -> (head stamps, value).
    view: dict[str, tuple[list[str], Any]] = field(default_factory=dict)

    def hlc(self, now_ms: int) -> str:
        if now_ms > self.last_ms:
            self.last_ms, self.counter = now_ms, 0
        else:
            self.counter += 1
        return format_hlc(self.last_ms, self.counter)

    def pull(self, record: Record) -> None:
        for path, state in record.to_pull()["fields"].items():
            stamps = [head["stamp"] for head in state["heads"]] if "heads" in state else (
                state.get("head_stamps") or [state["stamp"]])
            self.view[path] = (stamps, state["value"])


def household_paths(rng: random.Random) -> list[str]:
    members = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(4)]
    return list(HOUSEHOLD_FIELDS) + [f"members/{m}/{name}" for m in members for name in MEMBER_FIELDS]


def visits(count: int = 10_000, devices: int = 50, *, seed: int = 13, fresh_view: float = 0.6,
           change: float = 0.08, resolve_every: int = 100) -> Iterator[tuple[dict[str, Any], Record]]:
    """Yield (event, the server's record after it) for ``count`` visits by ``devices`` phones.

    Each visit writes every household and roster field (65 with 4 members): the value the phone
    shows, changed now and then, with the stamps the phone holds as base. Before a visit a phone
    pulls with probability ``fresh_view``; otherwise it works from what it had, so bases often name
    writes that other phones have long superseded. A supervisor resolves the open conflicts every
    ``resolve_every`` visits (server-made writes naming the heads). The record is folded as the
    server folds it, with its event log answering for forgotten stamps.
    """
    rng = random.Random(seed)
    paths = household_paths(rng)
    phones = [Phone(str(uuid.UUID(int=rng.getrandbits(128), version=4)), f"petugas{index:02d}")
              for index in range(devices)]
    log: dict[str, dict[str, Any]] = {}
    record = Record(HOUSEHOLD_ID)
    now = START_MS
    for number in range(count):
        now += rng.randint(60_000, 3_600_000)
        phone = rng.choice(phones)
        if rng.random() < fresh_view:
            phone.pull(record)
        phone.seq += 1
        hlc = phone.hlc(now)
        writes: dict[str, Any] = {}
        base: dict[str, list[str]] = {}
        for path in paths:
            stamps, value = phone.view.get(path, ([], None))
            if value is None or rng.random() < change:
                value = f"{path.rsplit('/', 1)[-1]} {rng.randint(1, 40)}"
            writes[path] = value
            if stamps:
                base[path] = stamps
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        made = {"id": event_id, "device_id": phone.device_id, "hlc": hlc, "device_seq": phone.seq,
                "officer": phone.officer, "household_id": HOUSEHOLD_ID, "village": VILLAGE_CODE,
                "set": writes, "base": base, "at": datetime.fromtimestamp(now / 1000, UTC).isoformat()}
        stamp = make_stamp(hlc, phone.device_id, event_id)
        phone.view = {path: ([stamp], value) for path, value in writes.items()}
        record.apply_event(made, recall=log.get)
        log[stamp] = made
        yield made, record
        if resolve_every and (number + 1) % resolve_every == 0:
            for resolution in resolutions(record, now + 1, number):
                record.apply_event(resolution, recall=log.get)
                log[make_stamp(resolution["hlc"], resolution["device_id"], resolution["id"])] = resolution
                yield resolution, record


def resolutions(record: Record, now_ms: int, number: int) -> list[dict[str, Any]]:
    """The supervisor keeps the newest value of every open conflict."""
    made = []
    for index, conflict in enumerate(record.conflicts()):
        heads = conflict["heads"]
        made.append({"id": f"resolution-{number}-{index}", "device_id": "central-1", "origin": "server",
                     "hlc": format_hlc(now_ms, index), "officer": "supervisor", "household_id": record.id,
                     "village": VILLAGE_CODE, "set": {conflict["field"]: heads[-1]["value"]},
                     "base": {conflict["field"]: [head["stamp"] for head in heads]}})
    return made
