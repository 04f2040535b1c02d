"""Events the server makes itself (resolutions, reviews, register imports): one builder, one clock, one hash."""

# A server-made event is an ordinary write in the merge (design.md §2): it is stamped with the
# node's own device id and its stored hybrid logical clock, names exactly the stamps it saw as its
# base, and is stored in ``events`` like a pushed one, with the request that made it as its body.

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync import parse_stamp

from .clock import StoredClock, node_device_id
from .eventlog import body_hash, event_document
from .storage import Store, Writer
from .timeutil import iso, now_utc

SERVER_ORIGIN = "server"
DEVICE_ORIGIN = "device"


@dataclass(frozen=True)
class ServerEvent:
    """What a server-made event folds (``engine``) and what is stored of it (``document``)."""

    engine: dict[str, Any]
    document: dict[str, Any]

    @property
    def id(self) -> str:
        return self.engine["id"]

    @property
    def hlc(self) -> str:
        return self.engine["hlc"]


class ServerStamper:
    """Makes the server's events within one unit of work, from the node clock kept in the store.

    Call :meth:`save` before the unit of work ends, so that no later stamp is below these.
    """

    def __init__(self, tx: Writer, store: Store, clock: StoredClock | None = None) -> None:
        self.tx = tx
        self.clock = clock or StoredClock(tx)
        self.device_id = node_device_id(store)

    def event(self, event_type: str, *, event_id: str, actor: str, record_id: str, village: str,
              writes: Mapping[str, Any], base: Mapping[str, Iterable[str]], body: Any,
              household_id: str | None = None, visit_id: str | None = None,
              at: str | None = None) -> ServerEvent:
        """The one builder of a server-made event.

        ``record_id`` is the record it folds into (a household, or a visit for a review);
        ``household_id`` the household it is filed under when that differs (a review's).
        Its HLC is above every stamp its base names, so it is never ``stale_base``. ``at`` (when
        it was made; now by default) is given when the written values must name it too.
        """
        named = {path: sorted(set(stamps)) for path, stamps in base.items()}
        for stamps in named.values():
            for stamp in stamps:
                self.clock.observe(parse_stamp(stamp).hlc)
        at = at or iso(now_utc())
        engine = {"id": event_id, "device_id": self.device_id, "hlc": self.clock.now(), "officer": actor,
                  "household_id": record_id, "village": village, "set": dict(writes),
                  "base": {path: stamps for path, stamps in named.items() if stamps}, "at": at,
                  "origin": SERVER_ORIGIN}
        document = event_document(event_type, engine, household_id=household_id or record_id, body=body,
                                  digest=body_hash(body), received_at=at, visit_id=visit_id)
        return ServerEvent(engine, document)

    def save(self) -> None:
        self.clock.save()


def issue_hlc(tx: Writer) -> str:
    """A fresh HLC from the node clock, persisted in ``tx``, so that no later server stamp is below
    it: what a sync reply tells a device the server's time is (its own HLC then orders after it)."""
    clock = StoredClock(tx)
    hlc = clock.now()
    clock.save()
    return hlc
