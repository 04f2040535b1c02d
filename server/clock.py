"""The server node's identity and hybrid logical clock, kept in the store.

The clock's last HLC is stored and advanced inside the unit of work that uses it, so a
restart or a second worker never stamps below an HLC already issued or received
(DESIGN.md §3). At start-up it is raised above the largest HLC among stored events.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sync import HybridClock, format_hlc

CLOCK_ID = "clock"
NODE_ID = "node"


def wall_ms() -> int:
    return int(time.time() * 1000)


def node_device_id(store: Any) -> str:
    """This node's own device id (for its stamps: resolutions, reviews, imports), made once."""
    node = store.get("server_state", NODE_ID)
    if node is None:
        store.insert("server_state", {"id": NODE_ID, "device_id": f"server-{uuid.uuid4().hex[:12]}"})
        node = store.get("server_state", NODE_ID)
    return node["device_id"]


class StoredClock:
    """A HybridClock loaded from and saved to ``server_state`` within one unit of work."""

    def __init__(self, tx: Any, wall: Any = wall_ms):
        self.tx = tx
        doc = tx.get("server_state", CLOCK_ID)
        self.clock = HybridClock(wall, doc["last"] if doc else format_hlc(0, 0))
        self._start = self.clock.last

    def now(self) -> str:
        return self.clock.now()

    def observe(self, remote_hlc: str) -> str:
        return self.clock.observe(remote_hlc)

    @property
    def last(self) -> str:
        return self.clock.last

    def save(self) -> None:
        if self.clock.last != self._start:
            self.tx.put("server_state", {"id": CLOCK_ID, "last": self.clock.last})
            self._start = self.clock.last


def start_node(store: Any) -> None:
    """At start-up: make sure the node has its id, and its clock is above every stored event's HLC."""
    node_device_id(store)
    newest = store.find("events", order_by="-hlc", limit=1)
    raise_clock_above(store, newest[0]["hlc"] if newest else None)


def raise_clock_above(store: Any, hlc: str | None) -> None:
    """Start-up: make the stored clock at least ``hlc`` (the largest stored event HLC)."""
    if not hlc:
        return
    with store.transaction() as tx:
        doc = tx.get("server_state", CLOCK_ID)
        if doc is None or doc["last"] < hlc:
            tx.put("server_state", {"id": CLOCK_ID, "last": hlc})
