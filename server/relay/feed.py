"""The event feed: raw events of some villages since a signed cursor, in pages, gap-free like the pull."""

# The feed reads ``events`` (a tracked collection) in ``seq`` order up to the store's visible
# sequence, the bound below which every allocated number is committed or dead (server/pull.py,
# Store.visible_seq): so a writer that took a number and has not committed holds the feed back
# instead of being skipped. A cursor never moves backwards. A village the hall gains is sent
# from the start of its history up to where the main stream is (a backfill job, as the pull
# does for a newly assigned area); one it loses is named in ``left_scope``.

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from forms.identifiers import Area

from ..cursors import CursorCodec, InvalidCursor, store_identity
from ..eventlog import EVENTS
from ..storage import In, Range, Store
from ..visits import VISITS
from .accept import wire_event, wire_visit

KIND = "relay-feed"
VERSION = 1
MAX_SEQ = 2**53
MAX_JOBS = 16
MAX_VILLAGES = 1000


def _seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


def _villages(value: Any) -> bool:
    return (isinstance(value, list) and len(value) <= MAX_VILLAGES
            and all(Area.is_code(code, levels=("village",)) for code in value))


def _check(state: Mapping[str, Any]) -> None:
    if set(state) != {"v", "st", "ep", "h", "s", "a", "b"} or state["v"] != VERSION:
        raise InvalidCursor()
    if not _seq(state["s"]) or not _villages(state["a"]) or not isinstance(state["b"], list) \
            or len(state["b"]) > MAX_JOBS:
        raise InvalidCursor()
    for job in state["b"]:
        if not isinstance(job, dict) or set(job) != {"villages", "s", "upto"} or not _villages(job["villages"]) \
                or not job["villages"] or not (_seq(job["s"]) and _seq(job["upto"])) \
                or not job["s"] <= job["upto"] <= state["s"]:
            raise InvalidCursor()


def feed_page(store: Store, codec: CursorCodec, *, peer: str, villages: list[str], skip_node: str | None,
              node_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
    """One page of the feed for ``peer`` (a hall's name) over ``villages``.

    ``{"items": [{"event", "visit"?}], "next", "has_more", "left_scope", "seq"}``; events first
    received by ``skip_node`` (the peer itself) are left out: it holds them already. ``seq`` is
    the main stream's position after this page (the peer's checkpoint as this node sees it).
    """
    identity = store_identity(store)
    villages = sorted(set(villages))
    state: dict[str, Any] = {"s": 0, "a": villages, "b": []}
    if cursor:
        state = codec.open(KIND, cursor)
        _check(state)
        if state["st"] != identity.store_id or state["ep"] != identity.epoch:
            raise InvalidCursor("since", "from another server, or from before a restore")
        if state["h"] != peer:
            raise InvalidCursor("since", "given to another hall")
    since = state["s"]
    current = set(villages)
    jobs = [{**job, "villages": sorted(set(job["villages"]) & current)} for job in state["b"]]
    jobs = [job for job in jobs if job["villages"]]
    left = sorted(set(state["a"]) - current)
    added = sorted(current - set(state["a"]))
    if added and since > 0:
        jobs.append({"villages": added, "s": 0, "upto": since})
    if len(jobs) > MAX_JOBS:
        # Villages changed faster than the hall synced: one job over all of them (resending is harmless).
        jobs = [{"villages": sorted({v for job in jobs for v in job["villages"]}),
                 "s": min(job["s"] for job in jobs), "upto": max(job["upto"] for job in jobs)}]
    bound = store.visible_seq()
    items: list[dict[str, Any]] = []
    has_more = False
    while jobs and len(items) < limit:
        job = jobs[0]
        found, last, more = _read(store, job["villages"], job["s"], job["upto"], limit - len(items),
                                  skip_node, node_id)
        items.extend(found)
        if more:
            job["s"] = last
            has_more = True
            break
        jobs.pop(0)
    if not has_more and len(items) < limit:
        found, last, more = _read(store, villages, since, bound, limit - len(items), skip_node, node_id)
        items.extend(found)
        since = last if more else max(since, bound)
        has_more = more
    next_cursor = codec.seal(KIND, {"v": VERSION, "st": identity.store_id, "ep": identity.epoch, "h": peer,
                                    "s": since, "a": villages, "b": jobs})
    return {"items": items, "next": next_cursor, "has_more": has_more or bool(jobs), "left_scope": left,
            "seq": since}


def _read(store: Store, villages: list[str], since: int, upto: int, limit: int, skip_node: str | None,
          node_id: str) -> tuple[list[dict[str, Any]], int, bool]:
    """Items of ``villages`` with ``since < seq <= upto``: (items, the last seq read, more beyond it)."""
    if not villages or upto <= since:
        return [], since, False
    docs = store.changes(EVENTS, since, where={"village": In(villages)}, limit=limit, upto=upto)
    items = [item for item in (_item(store, doc, node_id) for doc in docs)
             if skip_node is None or item["event"]["received_by"] != skip_node]
    if len(docs) < limit:
        return items, upto, False
    return items, docs[-1]["seq"], True


def _item(store: Store, doc: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {"event": wire_event(doc, node_id)}
    if doc["type"] == "visit":
        visit = store.get(VISITS, doc["id"])
        if visit is not None:
            item["visit"] = wire_visit(visit)
    return item


def waiting_down(store: Store, villages: list[str], since: int) -> int:
    """How many events of ``villages`` lie past the peer's checkpoint (some may be its own, sent back out)."""
    if not villages:
        return 0
    return store.count(EVENTS, {"village": In(sorted(set(villages))), "seq": Range(gt=since)})


def waiting_for(store: Store, villages: list[str], since: int, skip_node: str | None, page: int = 1000) -> int:
    """How many events of ``villages`` past ``since`` the peer does not hold yet (its own left out);
    read in pages, as a hall's backlog is a few villages' work."""
    if not villages:
        return 0
    bound = store.visible_seq()
    total = 0
    while True:
        docs = store.changes(EVENTS, since, where={"village": In(sorted(set(villages)))}, limit=page, upto=bound)
        total += sum(1 for doc in docs if skip_node is None or doc.get("received_by") != skip_node)
        if len(docs) < page:
            return total
        since = docs[-1]["seq"]


def own_events_since(store: Store, since: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
    """This node's events to send upstream: those not from upstream, with ``since < seq``, in seq order.

    Returns (stored events, the seq to checkpoint once they are taken, more beyond it)."""
    bound = store.visible_seq()
    docs = store.changes(EVENTS, since, limit=limit, upto=bound)
    mine = [doc for doc in docs if doc.get("relayed_from") != "upstream"]
    if len(docs) < limit:
        return mine, max(since, bound), False
    return mine, docs[-1]["seq"], True


def count_own_since(store: Store, since: int, visits: list[str] | None = None) -> int:
    """How many of this node's events wait to go upstream (read in pages: a hall holds a few villages);
    the ids of the visits among them go into ``visits`` when given (their files wait behind them)."""
    total = 0
    for docs in _pages(store, since):
        mine = [doc for doc in docs if doc.get("relayed_from") != "upstream"]
        total += len(mine)
        if visits is not None:
            visits.extend(doc["id"] for doc in mine if doc.get("type") == "visit")
    return total


def _pages(store: Store, since: int, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    bound = store.visible_seq()
    while True:
        docs = store.changes(EVENTS, since, limit=size, upto=bound)
        yield docs
        if len(docs) < size:
            return
        since = docs[-1]["seq"]
