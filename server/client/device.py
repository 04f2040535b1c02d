"""A device's side of sync: its clock and event counter, its events, push with verdicts, pull into a replica."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from forms import household_writes
from sync import HybridClock, Record, Write, is_hlc, make_stamp

from .replica import Interner, PulledHousehold, Replica, kept_json
from .session import ClientError, Session

PUSH_PATH = "/api/v1/sync/push"
PULL_PATH = "/api/v1/sync/pull"
ZERO_HLC = "0000000000000-0000"
# A verdict's server_time closer than this to the device's clock is taken as a correction already made.
CLOCK_SETTLED_MS = 60_000
MAX_PULL_PAGES = 100_000
STATE_VERSION = 1

PENDING, ACKED, SKEWED, REJECTED = "pending", "acked", "skewed", "rejected"


@dataclass(eq=False, slots=True)
class Outgoing:
    """One event this device made: as it last sent it, and every verdict the server gave it.

    ``state`` is ``pending`` (to send), ``acked`` (applied or duplicate: the server holds it), ``skewed``
    (refused for clock skew; :meth:`DeviceClient.restamp_skewed` makes it pending again under a new HLC
    and a new id naming the first, same ``device_seq``) or ``rejected`` (refused for good; ``result``
    says why). ``unknown`` is set once it was sent without an answer coming back: the server may hold
    it, so ``duplicate`` is expected.
    ``confirmed`` is set when a pull made after the ack brought its household back: the pulled copy
    then carries the write (or what superseded it). Bodies are kept encoded: a phone holds many.
    """

    id: str
    kind: str
    device_id: str
    household_id: str
    village: str
    device_seq: int
    hlc: str
    at: str
    encoded: bytes
    encoded_writes: bytes
    encoded_base: bytes
    state: str = PENDING
    verdicts: list[str] = field(default_factory=list)
    unknown: bool = False
    acked_gen: int = -1
    confirmed: bool = False
    restamps: int = 0
    result: dict[str, Any] | None = None
    tag: Any = None

    @property
    def body(self) -> dict[str, Any]:
        """The event as it is sent (a new dict each time)."""
        return orjson.loads(self.encoded)

    @property
    def writes(self) -> dict[str, Any]:
        """Field path -> value: what the event writes to its household."""
        return orjson.loads(self.encoded_writes)

    @property
    def base(self) -> dict[str, list[str]]:
        """Field path -> the stamps the device held for it when it wrote."""
        return orjson.loads(self.encoded_base)

    @property
    def stamp(self) -> str:
        return make_stamp(self.hlc, self.device_id, self.id)


@dataclass
class PushReport:
    """What one :meth:`DeviceClient.push` did."""

    requests: int = 0
    applied: int = 0
    duplicate: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    restamped: int = 0
    unsent: int = 0


@dataclass
class PullReport:
    """What one :meth:`DeviceClient.pull` did."""

    pages: int = 0
    households: int = 0
    left_scope: list[str] = field(default_factory=list)
    fresh_starts: int = 0
    other: Counter[str] = field(default_factory=Counter)


def iso_ms(ms: int, tz: dt.tzinfo = dt.UTC) -> str:
    """ISO-8601 with milliseconds of Unix milliseconds, in ``tz``."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz)
    text = moment.isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def parse_iso_ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class DeviceClient:
    """One device (a phone, or a relay speaking for one) syncing with a kunjung server over a :class:`Session`.

    It keeps a hybrid logical clock (``sync.HybridClock``) that observes the ``server_hlc`` of every
    reply, a ``device_seq`` counter giving each event it makes its place in the device's own order, the
    events it made (:class:`Outgoing`), the households it pulled (:class:`Replica`) and the pull cursor.

    Every event carries its ``device_seq``; the counter, the clock, the cursor, the events and the replica
    are what a phone keeps between runs of the app (:meth:`save`, :meth:`load`): a counter that started
    again from 1 would put the device's new writes before its old ones.

    ``wall_ms`` reads the device's clock (injected for tests and simulated phones). ``interner`` shares
    pulled households, and ``definitions`` the fetched form definitions (published versions never change),
    between many devices in one process. One device is driven by one thread at a time.
    """

    def __init__(self, session: Session, *, wall_ms: Callable[[], int] | None = None,
                 batch_size: int = 50, pull_limit: int = 500,
                 max_push_passes: int = 4, interner: Interner | None = None, tz: dt.tzinfo = dt.UTC,
                 new_id: Callable[[], str] | None = None, device_seq_start: int = 1,
                 definitions: MutableMapping[tuple[str, str], Any] | None = None) -> None:
        if not session.device_id:
            raise ValueError("a device client needs a session with a device_id")
        self.session = session
        self.device_id = session.device_id
        self.batch_size = batch_size
        self.pull_limit = pull_limit
        self.max_push_passes = max_push_passes
        self.tz = tz
        self.offset_ms = 0
        self._wall = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self.clock = HybridClock(self.wall_ms)
        self.server_hlc = ZERO_HLC
        self.next_seq = device_seq_start
        self.new_id = new_id or (lambda: str(uuid.uuid4()))
        self.events: list[Outgoing] = []
        self._by_household: dict[str, list[Outgoing]] = defaultdict(list)
        self.interner = interner
        self.replica = Replica(interner)
        self.cursor: str | None = None
        # A fresh pull after invalid_cursor fills a new replica that replaces the held one only once the
        # pull has ended: a link lost half-way leaves the old copy, and the next pull goes on filling it.
        self._fresh: Replica | None = None
        self._fresh_cursor: str | None = None
        self._fresh_confirms: list[Outgoing] = []
        self.pull_gen = 0
        self.reviews: dict[str, dict[str, Any]] = {}
        self.forms_changed: dict[str, dict[str, Any]] = {}
        self.stats: Counter[str] = Counter()
        self.anomalies: list[str] = []
        self._definitions = definitions if definitions is not None else {}
        self._fetched: set[tuple[str, str]] = set()
        self.attachments_missing: list[dict[str, Any]] = []

    # -- what a phone keeps between runs of the app -------------------------------------------
    def save(self) -> bytes:
        """The device's state as JSON: its counter, clock, cursor, events and replica (what :meth:`load`
        takes). A fresh pull under way is not kept: after a restart the cursor is refused again and the
        fresh pull starts over."""
        state = {
            "version": STATE_VERSION, "device_id": self.device_id, "next_seq": self.next_seq,
            "hlc": self.clock.last, "offset_ms": self.offset_ms, "server_hlc": self.server_hlc,
            "cursor": self.cursor, "pull_gen": self.pull_gen,
            "replica": [held.to_change() for _, held in self.replica.items()],
            "events": [_saved_event(event) for event in self.events],
            "reviews": self.reviews, "forms_changed": self.forms_changed,
        }
        return orjson.dumps(state)

    @classmethod
    def load(cls, session: Session, saved: bytes, **options: Any) -> DeviceClient:
        """A device as :meth:`save` left it, on ``session`` (whose device id must be the saved one);
        ``options`` are those of the constructor."""
        state = orjson.loads(saved)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"saved device state of version {state.get('version')!r}, not {STATE_VERSION}")
        if state["device_id"] != session.device_id:
            raise ValueError(f"saved state of device {state['device_id']}, not of {session.device_id}")
        device = cls(session, device_seq_start=state["next_seq"], **options)
        device.offset_ms = state["offset_ms"]
        device.clock = HybridClock(device.wall_ms, last=state["hlc"])
        device.server_hlc = state["server_hlc"]
        device.cursor, device.pull_gen = state["cursor"], state["pull_gen"]
        for change in state["replica"]:
            device.replica.take(change)
        for saved_event in state["events"]:
            event = _loaded_event(device.device_id, saved_event)
            device.events.append(event)
            device._by_household[event.household_id].append(event)
        device.reviews, device.forms_changed = state["reviews"], state["forms_changed"]
        return device

    # -- clock ------------------------------------------------------------------------------
    def wall_ms(self) -> int:
        """The device's clock, corrected by what ``clock_skew`` verdicts said about it."""
        return self._wall() + self.offset_ms

    def now_iso(self) -> str:
        return iso_ms(self.wall_ms(), self.tz)

    def observe(self, server_hlc: Any) -> None:
        """Take in the server's HLC from a reply, so later writes order after what the server had."""
        if is_hlc(server_hlc):
            self.clock.observe(server_hlc)
            self.server_hlc = max(self.server_hlc, server_hlc)

    def _correct_clock(self, server_time: Any) -> None:
        """Set the device's clock offset from the server's time, and restart the HLC above what the server
        showed: the old HLC ran ahead and never goes back, so it is replaced."""
        try:
            drift = parse_iso_ms(server_time) - self.wall_ms()
        except (TypeError, ValueError):
            return
        if abs(drift) < CLOCK_SETTLED_MS:
            return  # an earlier verdict of the same batch corrected it already
        self.offset_ms += drift
        self.clock = HybridClock(self.wall_ms, last=self.server_hlc)
        self.stats["clock_corrections"] += 1

    # -- account and forms ------------------------------------------------------------------
    def login(self) -> dict[str, Any]:
        """Log in with this device's id; returns the user (username, role, villages)."""
        return self.session.login()

    def logout(self) -> None:
        self.session.logout()

    def me(self) -> dict[str, Any]:
        """Who the server says this login is now (villages may have changed since login)."""
        return self.session.call("GET", "/api/v1/auth/me")

    def forms(self) -> list[dict[str, Any]]:
        """The published forms assigned to this officer."""
        return self.session.call("GET", "/api/v1/forms")

    def definition(self, form_id: str, version: str) -> dict[str, Any]:
        """A published form version's definition, fetched once by this device and kept (published versions
        never change); devices sharing a ``definitions`` cache keep one copy between them."""
        key = (form_id, version)
        if key not in self._fetched:
            fetched = self.session.call("GET", f"/api/v1/forms/{form_id}/versions/{version}",
                                        label="GET /api/v1/forms/<id>/versions/<version>")
            self._definitions.setdefault(key, fetched)
            self._fetched.add(key)
        return self._definitions[key]

    # -- what the device holds --------------------------------------------------------------
    def unconfirmed(self, household_id: str) -> list[Outgoing]:
        """This device's writes to the household that no pull has brought back yet."""
        return [event for event in self._by_household.get(household_id, ())
                if event.state != REJECTED and not event.confirmed]

    def own_events(self, household_id: str) -> Sequence[Outgoing]:
        return self._by_household.get(household_id, ())

    def held(self) -> set[str]:
        """The households on this device: those pulled, and its own new ones no pull has brought back."""
        return set(self.replica) | {hid for hid in self._by_household if self.unconfirmed(hid)}

    def village_of(self, household_id: str) -> str:
        pulled = self.replica.get(household_id)
        if pulled is not None:
            return pulled.village
        return self._by_household[household_id][0].village

    def record(self, household_id: str) -> Record:
        """The household as this device holds it: the pulled copy with its own unconfirmed writes folded in."""
        return merge_record(household_id, self.replica.get(household_id), self.unconfirmed(household_id),
                            self.session.username)

    @staticmethod
    def base_for(record: Record, paths: Iterable[str]) -> dict[str, list[str]]:
        """For each path, every stamp the device holds for it: what a new write there supersedes."""
        base = {}
        for path in paths:
            held = record.fields.get(path)
            if held is not None and held.heads:
                base[path] = sorted(head.stamp for head in held.heads)
        return base

    # -- making events ----------------------------------------------------------------------
    def visit(self, *, definition: Any, form_id: str, form_version: str, village: str, household_id: str,
              answers: Mapping[str, Any], geotag: Mapping[str, Any] | None = None, started_at: str | None = None,
              ended_at: str | None = None, supersedes: str | None = None, record: Record | None = None,
              tag: Any = None, attachments: Sequence[Mapping[str, Any]] = ()) -> Outgoing:
        """Record a visit (a form submission about a household); it waits for :meth:`push`.

        ``definition`` is the parsed form (``forms.validate_definition``): its ``save_to`` fields give the
        household writes, whose ``base`` comes from what the device holds (``record``, when the caller
        already built it from :meth:`record`). ``attachments`` name its files (``LocalFile.entry()`` of
        ``server.client.attachments``), which are uploaded apart once the visit is applied.
        """
        writes = household_writes(definition, answers)
        base = self.base_for(record if record is not None else self.record(household_id), writes)
        ended = ended_at or self.now_iso()
        body: dict[str, Any] = {
            "id": self.new_id(), "type": "visit", "device_id": self.device_id, "hlc": self.clock.now(),
            "form_id": form_id, "form_version": form_version, "village": village, "household_id": household_id,
            "started_at": started_at or ended, "ended_at": ended, "answers": dict(answers),
        }
        if geotag is not None:
            body["geotag"] = dict(geotag)
        if supersedes:
            body["supersedes"] = supersedes
        if attachments:
            body["attachments"] = [dict(entry) for entry in attachments]
        return self._add(body, "visit", writes, base, ended, tag)

    def edit(self, *, household_id: str, village: str, writes: Mapping[str, Any], at: str | None = None,
             record: Record | None = None, tag: Any = None) -> Outgoing:
        """Record a household edit (field path -> value); it waits for :meth:`push`."""
        base = self.base_for(record if record is not None else self.record(household_id), writes)
        when = at or self.now_iso()
        body: dict[str, Any] = {"id": self.new_id(), "type": "household_edit", "device_id": self.device_id,
                                "hlc": self.clock.now(), "household_id": household_id, "village": village,
                                "set": dict(writes), "at": when}
        return self._add(body, "household_edit", dict(writes), base, when, tag)

    def _add(self, body: dict[str, Any], kind: str, writes: Mapping[str, Any], base: dict[str, list[str]], at: str,
             tag: Any) -> Outgoing:
        seq = self.next_seq
        self.next_seq += 1
        if base:
            body["base"] = base
        body["device_seq"] = seq
        event = Outgoing(body["id"], kind, self.device_id, body["household_id"], body["village"], seq, body["hlc"], at,
                         kept_json(body), kept_json(writes), kept_json(base), tag=tag)
        self.events.append(event)
        self._by_household[event.household_id].append(event)
        self.stats["created"] += 1
        self.stats[f"created_{kind}"] += 1
        return event

    def pending(self) -> list[Outgoing]:
        """The events waiting to be sent, in the device's order."""
        return [event for event in self.events if event.state == PENDING]

    # -- push -------------------------------------------------------------------------------
    def push(self, plan: Callable[[list[Outgoing]], Iterable[list[Outgoing]]] | None = None) -> PushReport:
        """Send every pending event, in batches, until each has a final verdict or ``max_push_passes`` ran.

        ``plan(pending)`` may choose the batches (their sizes, order, and events sent again); by default
        they are the pending events in order, ``batch_size`` at a time. After each pass the events refused
        for clock skew are re-stamped and sent in the next. Transport errors and 429/5xx answers are tried
        again with backoff (:class:`Session`); :class:`~server.client.Unreachable` leaves the rest pending.
        """
        report = PushReport()
        before = self.stats.copy()
        for _ in range(self.max_push_passes):
            pending = self.pending()
            if not pending:
                break
            batches = plan(pending) if plan else [pending[i:i + self.batch_size]
                                                  for i in range(0, len(pending), self.batch_size)]
            for batch in batches:
                self.send(batch)
            report.restamped += self.restamp_skewed()
        delta = self.stats - before
        report.requests = delta["push_requests"]
        report.applied, report.duplicate = delta["applied"], delta["duplicate"]
        report.rejected = Counter({key.removeprefix("rejected_"): count for key, count in delta.items()
                                   if key.startswith("rejected_")})
        report.unsent = len(self.pending()) + sum(1 for event in self.events if event.state == SKEWED)
        return report

    def send(self, batch: Sequence[Outgoing]) -> list[dict[str, Any]]:
        """One push of ``batch`` (tried again on transport errors and 429/5xx); records each event's verdict
        and returns the results. A batch the server finds too large is split in two."""
        if not batch:
            return []
        parts = [b'{"device_id":', orjson.dumps(self.device_id), b',"hlc":', orjson.dumps(self.clock.now()),
                 b',"events":[', b",".join(event.encoded for event in batch), b"]}"]
        body, headers = self.session.wrap(b"".join(parts))

        def failed(reply: Any, error: Any) -> None:
            self.stats["push_failures"] += 1
            for event in batch:
                event.unknown = True

        self.stats["events_sent"] += len(batch)
        try:
            reply = self.session.request("POST", PUSH_PATH, body=body, headers=headers, on_failure=failed)
        except ClientError as error:
            if error.status == 413 and error.code == "batch_too_large" and len(batch) > 1:
                half = len(batch) // 2
                return self.send(batch[:half]) + self.send(batch[half:])
            raise
        self.stats["push_requests"] += 1
        data = reply.json()
        self._take(batch, data)
        return data.get("results") or []

    def _take(self, batch: Sequence[Outgoing], data: Mapping[str, Any]) -> None:
        results = data.get("results") or []
        if len(results) != len(batch):
            self.anomalies.append(f"push of {len(batch)} events answered {len(results)} results")
        self.observe(data.get("server_hlc"))
        for event, result in zip(batch, results, strict=False):
            if result.get("id") != event.id:
                self.anomalies.append(f"result for {result.get('id')} answered in the place of {event.id}")
                continue
            status = result.get("status")
            was_acked = event.state == ACKED
            if status == "applied":
                event.verdicts.append("applied")
                self.stats["applied"] += 1
                if was_acked:
                    self.anomalies.append(f"{event.id} applied again after it was acknowledged")
                self._ack(event)
            elif status == "duplicate":
                event.verdicts.append("duplicate")
                self.stats["duplicate"] += 1
                if not was_acked and not event.unknown:
                    self.anomalies.append(f"{event.id} answered duplicate though never applied")
                self._ack(event)
            else:
                code = result.get("code") or "?"
                event.verdicts.append(f"rejected:{code}")
                self.stats[f"rejected_{code}"] += 1
                if was_acked:
                    self.anomalies.append(f"{event.id} rejected ({code}) after it was acknowledged")
                elif code == "clock_skew":
                    event.state = SKEWED
                    self._correct_clock(result.get("server_time"))
                else:
                    event.state, event.result = REJECTED, dict(result)

    def _ack(self, event: Outgoing) -> None:
        if event.state != ACKED:
            event.state = ACKED
            event.acked_gen = self.pull_gen

    def restamp_skewed(self) -> int:
        """Give every event refused for clock skew a new HLC and a new id naming the first one
        (``restamp_of``; same ``device_seq``), in device order, so that two nodes never hold two bodies
        under one id (docs/relay.md); point the bases and ``supersedes`` of unsent events at the new
        stamps and ids. Returns how many were re-stamped."""
        skewed = sorted((event for event in self.events if event.state == SKEWED), key=lambda e: e.device_seq)
        if not skewed:
            return 0
        renamed: dict[str, str] = {}
        new_ids: dict[str, str] = {}
        for event in skewed:
            old = event.stamp
            body = event.body
            # A node may hold the refused body (another node's bound allowed it); the chain always
            # names the first id, so that a node holding several keeps one.
            body["restamp_of"] = body.get("restamp_of") or event.id
            new_ids[event.id] = body["id"] = event.id = self.new_id()
            body["hlc"] = event.hlc = self.clock.now()
            event.encoded = kept_json(body)
            renamed[old] = event.stamp
            event.state, event.unknown = PENDING, False
            event.restamps += 1
            self.stats["restamped"] += 1
        for event in self.events:
            if event.state == ACKED:
                continue
            base = event.base
            body = event.body
            supersedes = body.get("supersedes")
            if supersedes in new_ids:
                body["supersedes"] = new_ids[supersedes]
            elif not any(stamp in renamed for stamps in base.values() for stamp in stamps):
                continue
            base = {path: sorted(renamed.get(s, s) for s in stamps) for path, stamps in base.items()}
            body["base"] = base
            event.encoded, event.encoded_base = kept_json(body), kept_json(base)
        return len(skewed)

    # -- pull -------------------------------------------------------------------------------
    def pull(self, *, max_fresh_starts: int = 2) -> PullReport:
        """Pull pages until the server has nothing more; each pulled household replaces the copy held.

        On 400 ``invalid_cursor`` (a cursor signed by a retired key, another node's, from before a
        restore) the device starts a fresh pull without a cursor into a new replica, and when that pull
        has ended the new replica **replaces** the held one: households missing from it are no longer the
        device's (docs/protocol.md "Cursors"). Its own events are kept; acknowledged ones come back with
        their households. If the fresh pull is cut short, the old copy stays and the next pull goes on.
        """
        report = PullReport()
        for _ in range(MAX_PULL_PAGES):
            if not self._pull_page(report, max_fresh_starts):
                return report
        raise ClientError(f"GET {PULL_PATH}", None, f"did not end in {MAX_PULL_PAGES} pages")

    def _pull_page(self, report: PullReport, max_fresh_starts: int) -> bool:
        """One page of a pull, taken in; whether there is more. A page of its own so that nothing of it is
        held while the next is awaited (a thousand simulated phones waiting each held a decoded page)."""
        self.pull_gen += 1
        generation = self.pull_gen
        cursor = self._fresh_cursor if self._fresh is not None else self.cursor
        query: dict[str, Any] = {"limit": self.pull_limit}
        if cursor:
            query["since"] = cursor
        reply = self.session.request("GET", PULL_PATH, query=query, expect=(200, 400),
                                     on_failure=lambda reply, error: self._count("pull_failures"))
        if reply.status == 400:
            if reply.code != "invalid_cursor" or report.fresh_starts >= max_fresh_starts:
                raise ClientError(f"GET {PULL_PATH}", reply)
            report.fresh_starts += 1
            self.stats["fresh_pulls"] += 1
            self._fresh, self._fresh_cursor, self._fresh_confirms = Replica(self.interner), None, []
            return True
        data = reply.json()
        self.stats["pull_pages"] += 1
        report.pages += 1
        self.observe(data.get("server_hlc"))
        # The files of this device's visits the server still lacks (the whole list, on every page).
        self.attachments_missing = list(data.get("attachments_missing") or ())
        into = self._fresh if self._fresh is not None else self.replica
        for change in data["changes"]:
            self._pulled(change, generation, report, into)
        if self._fresh is None:
            self.cursor = data["next"]
        else:
            self._fresh_cursor = data["next"]
        if data["has_more"]:
            return True
        if self._fresh is not None:
            self._replace_copy()
        return False

    def _replace_copy(self) -> None:
        assert self._fresh is not None
        self.replica, self.cursor = self._fresh, self._fresh_cursor
        for event in self._fresh_confirms:
            event.confirmed = True
        self._fresh, self._fresh_cursor, self._fresh_confirms = None, None, []
        self.stats["copies_replaced"] += 1

    def _count(self, key: str) -> None:
        self.stats[key] += 1

    def _pulled(self, change: Mapping[str, Any], generation: int, report: PullReport, into: Replica) -> None:
        self.stats["pull_changes"] += 1
        kind = change.get("type")
        if kind == "household":
            report.households += 1
            into.take(change)
            # A household pulled after an ack carries that write (or what superseded it): the copy owns it now.
            for event in self._by_household.get(change["id"], ()):
                if event.state == ACKED and not event.confirmed and event.acked_gen < generation:
                    if into is self.replica:
                        event.confirmed = True
                    else:
                        self._fresh_confirms.append(event)
        elif kind == "left_scope":
            self.stats["left_scope"] += 1
            report.left_scope.append(change["village"])
            into.drop_area(change["village"])
        elif kind == "visit":
            self.reviews[change["id"]] = dict(change)
            report.other["visit"] += 1
        else:
            key = str(change.get("form_id") or change.get("id") or kind)
            self.forms_changed[f"{kind}:{key}"] = dict(change)
            report.other[str(kind)] += 1

    def sync(self) -> tuple[PushReport, PullReport]:
        """Push everything pending, then pull everything new."""
        return self.push(), self.pull()


def merge_record(household_id: str, pulled: PulledHousehold | None, own: Iterable[Outgoing],
                 officer: str) -> Record:
    """A replica's record: the pulled copy, then the device's own unconfirmed writes folded over it by ``sync``."""
    record = pulled.record() if pulled is not None else Record(household_id)
    # A stamp the pulled copy shows already keeps the officer and time it shows there: the record
    # holds one entry per stamp (a pull carries no event times, and officers only in conflicts).
    shown = {head.stamp: head for state in record.fields.values() for head in state.heads}
    for event in own:
        stamp = event.stamp
        base = event.base
        known = shown.get(stamp)
        who, at = (known.officer, known.at) if known is not None else (officer, event.at)
        for path, value in event.writes.items():
            held = record.fields.get(path)
            if held is not None and any(head.stamp == stamp for head in held.heads):
                continue
            record.apply(Write(path, value, stamp, frozenset(base.get(path, ())), who, at))
    return record

def _saved_event(event: Outgoing) -> dict[str, Any]:
    return {"id": event.id, "kind": event.kind, "household_id": event.household_id, "village": event.village,
            "device_seq": event.device_seq, "hlc": event.hlc, "at": event.at, "body": event.body,
            "writes": event.writes, "base": event.base, "state": event.state, "verdicts": event.verdicts,
            "unknown": event.unknown, "acked_gen": event.acked_gen, "confirmed": event.confirmed,
            "restamps": event.restamps, "result": event.result}


def _loaded_event(device_id: str, saved: Mapping[str, Any]) -> Outgoing:
    return Outgoing(saved["id"], saved["kind"], device_id, saved["household_id"], saved["village"],
                    saved["device_seq"], saved["hlc"], saved["at"], kept_json(saved["body"]),
                    kept_json(saved["writes"]), kept_json(saved["base"]), state=saved["state"],
                    verdicts=list(saved["verdicts"]), unknown=saved["unknown"], acked_gen=saved["acked_gen"],
                    confirmed=saved["confirmed"], restamps=saved["restamps"], result=saved["result"])
