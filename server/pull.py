"""Answering pulls: changes in scope since a signed cursor, backfill of newly assigned areas, and left_scope.

A pull never skips a committed change: it reads only up to the store's visible sequence
(``Store.visible_seq``) and never moves a cursor backwards. The cursor is signed
(server/cursors.py) and names the store and its epoch, but nothing in it is trusted for scope:
every area it names is intersected with the caller's scope as the store holds it now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from forms.identifiers import Area

from .areas import within_scope
from .collector import collector_paused
from .cursors import CursorCodec, InvalidCursor, store_identity
from .forms_registry import form_pull_changes
from .i18n import N_
from .pull_views import VIEWS, WHOLE
from .security.scope import Scope
from .storage import Store

KIND = "pull"
VERSION = 2
# Sequence numbers stay below 2^53 so that every JSON reader holds them exactly.
MAX_SEQ = 2**53
MAX_JOBS = 64
MAX_AREAS = 5000
ALL = "*"

Change = tuple[int, dict[str, Any]]


def _seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


def _codes(value: Any, *, star: bool) -> bool:
    return (isinstance(value, list) and len(value) <= MAX_AREAS
            and all((star and code == ALL) or Area.is_code(code) for code in value))


def check_state(state: Mapping[str, Any]) -> None:
    """InvalidCursor unless the (signed) state has exactly the shape this module writes."""
    if set(state) != {"v", "st", "ep", "u", "s", "a", "b"} or state["v"] != VERSION:
        raise InvalidCursor()
    if not _seq(state["s"]) or not _codes(state["a"], star=True):
        raise InvalidCursor()
    jobs = state["b"]
    if not isinstance(jobs, list) or len(jobs) > MAX_JOBS:
        raise InvalidCursor()
    for job in jobs:
        if not isinstance(job, dict) or set(job) != {"areas", "s", "upto"}:
            raise InvalidCursor()
        if not (_codes(job["areas"], star=True) and job["areas"] and _seq(job["s"]) and _seq(job["upto"])
                and job["s"] <= job["upto"] <= state["s"]):
            raise InvalidCursor()


def scope_change(previous: list[str], current: list[str]) -> tuple[list[str], list[str]]:
    """(areas the device must drop, areas whose history it must be sent) when the scope moved
    from ``previous`` to ``current`` (outermost codes, or ``*`` for everything)."""
    if ALL in current:
        return [], ([] if ALL in previous else [ALL])
    mine = [Area(code) for code in current]
    if ALL in previous:
        # The device holds everything; what it may keep is sent again after it drops the rest.
        return [], []
    before = [Area(code) for code in previous]
    gone = [p for p in before if not any(c.contains(p) for c in mine)]
    # An area inside a dropped one (a kecamatan narrowed to one of its villages) was dropped with it.
    added = [c for c in mine if not any(p.contains(c) for p in before) or any(g.contains(c) for g in gone)]
    return [g.code for g in gone], [a.code for a in added]


class PullService:
    """The server's side of a pull, over one store. Household changes leave as the JSON the store
    keeps beside each household (``Store.encoded_changes``, server/pull_views.py), wrapped as
    ``orjson.Fragment``: a page of households is never decoded and encoded again. The other changes
    are dicts; the answer is encoded by orjson, which embeds both."""

    def __init__(self, store: Store, codec: CursorCodec,
                 form_changes: Callable[[Any, int, int, Scope], list[Change]] = form_pull_changes):
        self.store = store
        self.codec = codec
        self.form_changes = form_changes

    def pull(self, user: Mapping[str, Any], scope: Scope, cursor: str | None, limit: int,
             view: str = WHOLE) -> dict[str, Any]:
        """Changes in scope since ``cursor``, oldest first, never past the commit-ordered bound; each
        household change as its stored ``view`` shows it (whole, or with identifiers masked).
        ``carried`` names the households and visits of the page (for the audit log); it is not part
        of the answer."""
        if view not in VIEWS:
            raise ValueError(f"no household view {view!r}")
        with collector_paused():
            return self._pull(user, scope, cursor, limit, view)

    def _pull(self, user: Mapping[str, Any], scope: Scope, cursor: str | None, limit: int,
              view: str) -> dict[str, Any]:
        identity = store_identity(self.store)
        state = self._open(cursor, user, identity.store_id, identity.epoch)
        bound = self.store.visible_seq()
        since = state.get("s", 0)
        current = [ALL] if scope.is_all else within_scope(scope.codes, scope)
        changes: list[tuple[int, Any, tuple[str, str] | None]] = []
        backfill: list[dict[str, Any]] = []
        for job in state.get("b", []):
            # Whatever a cursor names, only what lies in the caller's scope now is read.
            areas = within_scope(job["areas"], scope)
            if areas:
                backfill.append({**job, "areas": areas})
        previous = state.get("a")
        if previous is not None and previous != current:
            gone, added = scope_change(previous, current)
            changes.extend((0, {"type": "left_scope", "village": area}, None) for area in gone)
            if added:
                backfill.append({"areas": added, "s": 0, "upto": since})
        if len(backfill) > MAX_JOBS:
            # Scope changed faster than the device pulled: one job over all of it. Sending a
            # household again is harmless, the device replaces its copy.
            backfill = [{"areas": within_scope([a for job in backfill for a in job["areas"]], scope),
                         "s": min(job["s"] for job in backfill), "upto": max(job["upto"] for job in backfill)}]
        remaining = limit - len(changes)
        has_more = False
        while backfill and remaining > 0:
            job = backfill[0]
            # A newly assigned area brings its history, forms included, up to where the main
            # stream already was; the main stream carries on from there.
            page, more = self._collect(user, self._narrowed(scope, job["areas"]), job["s"], job["upto"], remaining,
                                       view)
            changes.extend(page)
            remaining -= len(page)
            if more:
                job["s"] = page[-1][0]
                has_more = True
                break
            backfill.pop(0)
        if remaining > 0 and not has_more:
            page, more = self._collect(user, scope, since, bound, remaining, view)
            changes.extend(page)
            # A cursor never moves backwards, even if the visible bound is behind it.
            since = page[-1][0] if more else max(since, bound)
            has_more = more
        next_cursor = self.codec.seal(KIND, {"v": VERSION, "st": identity.store_id, "ep": identity.epoch,
                                             "u": user["id"], "s": since, "a": current, "b": backfill})
        carried: dict[str, list[str]] = {"households": [], "visits": []}
        for _, _, about in changes:
            if about:
                carried[about[0]].append(about[1])
        return {"changes": [change for _, change, _ in changes], "next": next_cursor,
                "has_more": has_more or bool(backfill), "carried": carried}

    def _open(self, cursor: str | None, user: Mapping[str, Any], store_id: str, epoch: str) -> dict[str, Any]:
        """The state of the caller's cursor; a first sync has none. A cursor of another store, of
        this store before a restore, or of another user is refused: the device starts afresh."""
        if not cursor:
            return {}
        state = self.codec.open(KIND, cursor)
        check_state(state)
        if state["st"] != store_id or state["ep"] != epoch:
            raise InvalidCursor("since", N_("from another server, or from before a restore"))
        if state["u"] != user["id"]:
            raise InvalidCursor("since", N_("given to another user"))
        return state

    @staticmethod
    def _narrowed(scope: Scope, areas: list[str]) -> Scope:
        return scope if areas == [ALL] else Scope(scope.role, tuple(areas))

    def _collect(self, user: Mapping[str, Any], scope: Scope, since: int, upto: int, limit: int, view: str
                 ) -> tuple[list[tuple[int, Any, tuple[str, str] | None]], bool]:
        # Each change with what it carries: ("households" | "visits", id), None for a form.
        found: list[tuple[int, Any, tuple[str, str] | None]] = [
            (seq, orjson.Fragment(encoded), ("households", household_id))
            for seq, household_id, encoded in self.store.encoded_changes(
                "households", view, since, where=scope.where("village"), limit=limit + 1, upto=upto)]
        visit_where: dict[str, Any] = {"reviewed": True}
        if user["role"] == "officer":
            visit_where["officer"] = user["id"]
        else:
            visit_where.update(scope.where("village"))
        for doc in self.store.changes("visits", since, where=visit_where, limit=limit + 1, upto=upto):
            found.append((doc["seq"], {"type": "visit", "id": doc["id"], "household_id": doc["household_id"],
                                       "review": {k: doc["review"].get(k) for k in ("state", "comment", "by", "at")}
                                       }, ("visits", doc["id"])))
        found.extend((seq, change, None) for seq, change in self.form_changes(self.store, since, upto, scope))
        found.sort(key=lambda item: item[0])
        return found[:limit], len(found) > limit
