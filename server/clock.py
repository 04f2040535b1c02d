"""The server node's identity and hybrid logical clock, kept in the store.

The clock's last HLC lives in ``server_state/clock`` and only grows: every unit of work that
stamps or receives HLCs raises it with :meth:`Writer.advance` (a monotone ``$max``) before it
commits, so a restart or a second worker never stamps below an HLC already issued or received
(docs/design.md §3), and a crash can never leave a stored event above the stored clock (on MongoDB
the raise is durable before the commit; on SQLite it commits with the events). The raise is
not part of the unit's transaction on MongoDB, so two pushes never conflict on the clock; on
SQLite the unit's write lock serialises them anyway. Two workers may issue the same HLC at once:
stamps stay distinct by their device and event ids.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sync import HybridClock, format_hlc

CLOCK_ID = "clock"
NODE_ID = "node"
STATE = "server_state"
ZERO = format_hlc(0, 0)


def wall_ms() -> int:
    return int(time.time() * 1000)


def node_device_id(store: Any) -> str:
    """This node's own device id (for its stamps: resolutions, reviews, imports), made once."""
    node = store.get(STATE, NODE_ID)
    if node is None:
        store.insert(STATE, {"id": NODE_ID, "device_id": f"server-{uuid.uuid4().hex[:12]}"})
        node = store.get(STATE, NODE_ID)
    return node["device_id"]


def stored_hlc(store: Any) -> str:
    """The stored clock: the largest HLC this server has issued or received."""
    doc = store.get(STATE, CLOCK_ID)
    return doc["last"] if doc else ZERO


class StoredClock:
    """A HybridClock started from the stored clock and saved back to it by ``save()``.

    ``tx`` is the unit of work whose stamps it makes; the stored clock is read as it is now
    (not as the unit's snapshot saw it) and raised, never overwritten, by ``save()``.
    """

    def __init__(self, tx: Any, wall: Any = wall_ms):
        self.tx = tx
        # Advancing to zero reads the clock as it is now, also on MongoDB, where a read in the
        # transaction would see its snapshot, older than another worker's advance since.
        last = tx.advance(STATE, CLOCK_ID, "last", ZERO)
        self.clock = HybridClock(wall, last)
        self._saved = self.clock.last

    def now(self) -> str:
        return self.clock.now()

    def observe(self, remote_hlc: str) -> str:
        return self.clock.observe(remote_hlc)

    @property
    def last(self) -> str:
        return self.clock.last

    def save(self) -> None:
        """Raise the stored clock to ``last``; call it before the unit of work ends."""
        if self.clock.last != self._saved:
            self.tx.advance(STATE, CLOCK_ID, "last", self.clock.last)
            self._saved = self.clock.last


def start_node(store: Any) -> None:
    """At start-up: make sure the node has its id, and the stored clock is at least the largest
    stored event HLC.

    The stored clock has been raised with every stored HLC, so this changes nothing unless the
    store was restored from a copy taken piece by piece (a ``mongodump`` of a running store may
    copy the clock before the events). The largest HLC is one entry of the ``(hlc, id)`` index,
    not a scan.
    """
    node_device_id(store)
    newest = store.find("events", order_by="-hlc", limit=1)
    if newest and stored_hlc(store) < newest[0]["hlc"]:
        store.advance(STATE, CLOCK_ID, "last", newest[0]["hlc"])
