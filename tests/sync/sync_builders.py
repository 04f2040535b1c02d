"""Builders of events for the sync tests: fixed villages, households and members, readable clocks."""

from __future__ import annotations

from typing import Any

from sync import format_hlc, make_stamp

EPOCH_MS = 1_763_790_000_000
VILLAGE = "32.04.05.2001"
OTHER_VILLAGE = "32.04.06.2003"
HOUSEHOLD = "7d4f0a52-5a2b-4c1e-9a53-2f1c0e4d9b10"
MEMBER_ANI = "0b6c7d1e-2f30-4a41-8b52-c3d4e5f60718"
MEMBER_BUDI = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


def hlc(ms: int, counter: int = 0) -> str:
    """An HLC ``ms`` milliseconds after a fixed epoch, so tests read as small numbers."""
    return format_hlc(EPOCH_MS + ms, counter)


def event(ms: int, device: str = "dev-a", *, counter: int = 0, event_id: str | None = None,
          writes: dict[str, Any] | None = None, base: dict[str, list[str]] | None = None,
          officer: str = "siti", household: str = HOUSEHOLD, village: str = VILLAGE,
          at: str | None = None, seq: int | None = None, origin: str | None = None,
          erase: list[str] | None = None) -> dict[str, Any]:
    """An event in the engine's shape; its id defaults to one derived from device and clock."""
    built: dict[str, Any] = {
        "id": event_id or f"ev-{device}-{ms}-{counter}",
        "device_id": device,
        "hlc": hlc(ms, counter),
        "officer": officer,
        "household_id": household,
        "village": village,
        "set": writes or {},
    }
    if base is not None:
        built["base"] = base
    if at is not None:
        built["at"] = at
    if seq is not None:
        built["device_seq"] = seq
    if origin is not None:
        built["origin"] = origin
    if erase is not None:
        built["erase"] = erase
    return built


def server_event(ms: int, *, writes: dict[str, Any] | None = None, base: dict[str, list[str]] | None = None,
                 erase: list[str] | None = None, event_id: str | None = None,
                 officer: str = "supervisor") -> dict[str, Any]:
    """A server-made event (resolution, import or erasure) of the node ``server-1``."""
    return event(ms, "server-1", event_id=event_id, writes=writes, base=base, officer=officer, origin="server",
                 erase=erase)


def stamp_of(built: dict[str, Any]) -> str:
    """The stamp of every write ``built`` makes."""
    return make_stamp(built["hlc"], built["device_id"], built["id"])


def member(member_id: str, field: str) -> str:
    """A roster field path."""
    return f"members/{member_id}/{field}"
