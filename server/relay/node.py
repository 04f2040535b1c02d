"""The hall's side of the relay: its link to upstream, one exchange round, its status, and the background runner."""

# A hall is a kunjung server whose store holds a ``server_state/relay`` document: the upstream
# URL and credential, and the checkpoints of the exchange (``up_seq``: the hall's own change
# sequence up to which upstream has answered for every event; ``feed_cursor``: the signed cursor
# of the upstream feed). A round is hello (clocks and merge rule), set-up (villages, users,
# devices, forms), up, then down. Each step saves its checkpoint together with what it took, so
# a round cut at any point resumes from where it was and sends nothing twice into a fold.

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import orjson

from forms.identifiers import Area
from sync import DOCUMENT_FORMAT

from ..client.transport import TRANSPORT_ERRORS, HttpTransport, Transport
from ..clock import node_device_id, wall_ms
from ..eventlog import EVENTS
from ..households import HOUSEHOLDS
from ..i18n import N_
from ..security.scope import Scope
from ..storage import In, Store, Writer
from ..timeutil import iso, now_utc
from ..visits import VISITS
from .accept import accept_relayed, wire_event, wire_visit
from .feed import count_own_since, own_events_since
from .files import (
    DOWN,
    REFUSED,
    RELAY_FILES,
    UP,
    WAITING,
    FileTransfers,
    HallFiles,
    files_waiting,
    queue_files,
    visits_taken,
)

log = logging.getLogger("kunjung.relay")
STATE = "server_state"
RELAY_ID = "relay"
LEASE_ID = "relay_lease"
UPSTREAM = "upstream"
MAX_REFUSED = 200
UP_BATCH = 500
DOWN_PAGE = 500
MERGE_RULE = DOCUMENT_FORMAT
#: form_xforms: the hall serves Collect the very XForm (and md5) upstream gave the version, not one of its own
UPSTREAM_COLLECTIONS = ("villages", "forms", "form_versions", "form_xforms")
NODE_HEADER = "X-Kunjung-Node"
CLOCK_AHEAD = N_("The hall's clock is %(seconds)s s ahead of the central server's (the bound is %(bound)s s); "
                 "set the laptop's clock.")
DROP_BATCH = 500
KEEPING = N_("Village %(village)s is no longer one of this hall's villages; its data stays here until what was "
             "made here for it has reached the central server (%(count)s events, %(files)s files).")
CLOCK_BEHIND = N_("The hall's clock is %(seconds)s s behind the central server's (the bound is %(bound)s s); "
                  "set the laptop's clock.")


class RelayError(Exception):
    """A round could not go on; ``code`` is stable, the message says why (for status and the log)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def relay_state(store: Store) -> dict[str, Any] | None:
    """The hall's link to upstream, or None when this node is not a hall."""
    return store.get(STATE, RELAY_ID)


def is_hall(store: Store) -> bool:
    return relay_state(store) is not None


def push_refusal(store: Store) -> str | None:
    """Why the hall refuses phone pushes now (its clock is too far from upstream's), or None."""
    state = relay_state(store)
    return None if state is None else state.get("clock_refusal")


def _update_state(tx: Writer, **fields: Any) -> dict[str, Any]:
    state = tx.get(STATE, RELAY_ID) or {"id": RELAY_ID}
    state.update(fields)
    tx.put(STATE, state)
    return state


class Upstream:
    """The upstream server's relay endpoints, over a transport, with the hall's credential."""

    def __init__(self, transport: Transport, credential: str, node_id: str):
        self.transport = transport
        self.headers = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json",
                        NODE_HEADER: node_id}

    def raw(self, method: str, path: str, *, body: bytes | None = None,
            headers: Mapping[str, str] | None = None) -> Any:
        """One request that is not JSON (a file's bytes), its reply as it came; only the link failing raises."""
        sent = {**{k: v for k, v in self.headers.items() if k != "Content-Type"}, **(headers or {})}
        try:
            return self.transport.send(method, path, body=body, headers=sent)
        except TRANSPORT_ERRORS as exc:
            raise RelayError("unreachable", N_("upstream did not answer: %(error)s") % {"error": exc}) from exc

    def call(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        try:
            reply = self.transport.send(method, f"/api/v1/relay/{path}", query=query, body=data,
                                        headers=self.headers)
        except TRANSPORT_ERRORS as exc:
            raise RelayError("unreachable", N_("upstream did not answer: %(error)s") % {"error": exc}) from exc
        if reply.status != 200:
            try:
                shape = reply.json() or {}
            except ValueError:
                shape = {}
            code = shape.get("code") if isinstance(shape, dict) else None
            message = shape.get("message") if isinstance(shape, dict) else None
            raise RelayError(code or f"http_{reply.status}", message or N_(
                "upstream answered %(status)s") % {"status": reply.status})
        try:
            answer = reply.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise RelayError("bad_reply", N_("upstream's answer to %(method)s %(path)s is not a JSON object")
                             % {"method": method, "path": path})
        return answer


@dataclass
class RoundReport:
    sent: int = 0
    sent_applied: int = 0
    refused_up: int = 0
    received: int = 0
    received_applied: int = 0
    refused_down: int = 0
    clock_gap_ms: int = 0
    files_sent: int = 0
    files_received: int = 0
    files_refused: int = 0
    dropped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "dropped": list(self.dropped)}


class HallNode:
    """One hall's exchange with upstream, over this node's store."""

    def __init__(self, store: Store, upstream: Upstream, *, skew_bound_ms: int,
                 wall: Callable[[], int] = wall_ms, files: HallFiles | None = None):
        self.store = store
        self.upstream = upstream
        self.skew_bound_ms = skew_bound_ms
        self.wall = wall
        self.node_id = node_device_id(store)
        self.files = files if files is not None else _app_files()

    # -- the steps of a round --------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        before = relay_state(self.store) or {}
        sent = self.wall()
        answer = self.upstream.call("POST", "hello", {"node_id": self.node_id, "merge_rule": MERGE_RULE,
                                                      "time_ms": sent, "holding": before.get("left_held") or []})
        arrived = self.wall()
        if answer.get("merge_rule") != MERGE_RULE:
            raise RelayError("merge_rule_mismatch",
                             N_("upstream folds under merge rule %(theirs)s, this hall under %(ours)s; "
                                "upgrade the older one before they exchange events")
                             % {"theirs": answer.get("merge_rule"), "ours": MERGE_RULE})
        # Upstream read its clock about half-way through the exchange.
        gap = int(answer["time_ms"]) - (sent + arrived) // 2
        refusal = None
        if abs(gap) > self.skew_bound_ms:
            # Stored in English; whoever shows it says it in the reader's language (translate_known).
            template = CLOCK_AHEAD if gap < 0 else CLOCK_BEHIND
            refusal = template % {"seconds": abs(gap) // 1000, "bound": self.skew_bound_ms // 1000}
        villages = sorted(answer.get("villages") or [])

        def save(tx: Writer) -> None:
            current = tx.get(STATE, RELAY_ID) or {}
            # A village upstream no longer names is held here until it is dropped (drop_left).
            had = set(current.get("villages") or ()) if "villages" in current else set()
            held = (set(current.get("left_held") or ()) | had) - set(villages)
            _update_state(tx, clock_gap_ms=gap, clock_refusal=refusal, hall=answer.get("hall"), villages=villages,
                          upstream_node=answer.get("node_id"), merge_rule=MERGE_RULE,
                          waiting_down=answer.get("waiting_down"), left_held=sorted(held))

        self.store.unit_of_work(save)
        answer["clock_gap_ms"] = gap
        answer["clock_refusal"] = refusal
        return answer

    def setup(self) -> dict[str, int]:
        """Villages with boundaries, forms, users and devices of the hall's villages, from upstream."""
        bundle = self.upstream.call("GET", "setup")
        return self.store.unit_of_work(lambda tx: apply_setup(tx, bundle))

    def send_up(self, report: RoundReport) -> None:
        state = relay_state(self.store) or {}
        if state.get("clock_refusal"):
            raise RelayError("clock_skew", state["clock_refusal"])
        since = int(state.get("up_seq") or 0)
        while True:
            docs, upto, more = own_events_since(self.store, since, UP_BATCH)
            if docs:
                items = [self._item(doc) for doc in docs]
                answer = self.upstream.call("POST", "events", {"node_id": self.node_id, "items": items})
                results = answer.get("results") or []
                if len(results) != len(items):
                    raise RelayError("bad_reply", N_("upstream answered for another number of events"))
                report.sent += len(items)
                report.sent_applied += sum(1 for r in results if r.get("status") == "applied")
                villages = {item["event"]["id"]: item["event"]["village"] for item in items}
                refused = [{**r, "village": villages.get(r.get("id"))} for r in results
                           if r.get("status") == "rejected"]
                report.refused_up += len(refused)
            else:
                refused = []

            taken = visits_taken(items, results, statuses=("applied", "duplicate")) if docs else []

            def save(tx: Writer, upto: int = upto, refused: list[dict[str, Any]] = refused,
                     taken: list[str] = taken) -> None:
                current = tx.get(STATE, RELAY_ID) or {}
                _update_state(tx, up_seq=max(upto, int(current.get("up_seq") or 0)),
                              refused=_kept(current.get("refused"), refused, "up"))
                queue_files(tx, taken, UP)  # their files follow once upstream holds the visits

            self.store.unit_of_work(save)
            since = upto
            if not more:
                return

    def bring_down(self, report: RoundReport) -> None:
        while True:
            state = relay_state(self.store) or {}
            query: dict[str, Any] = {"limit": DOWN_PAGE}
            if state.get("feed_cursor"):
                query["since"] = state["feed_cursor"]
            try:
                page = self.upstream.call("GET", "events", query=query)
            except RelayError as error:
                if error.code != "invalid_cursor":
                    raise
                # A restored upstream: start its feed again; what is held answers duplicate.
                self.store.unit_of_work(lambda tx: _update_state(tx, feed_cursor=None))
                continue
            scope = Scope("officer", tuple(state.get("villages") or ()))
            items = page.get("items") or []

            def save(tx: Writer, results: list[dict[str, Any]], page: dict[str, Any] = page,
                     items: list[Any] = items) -> None:
                current = tx.get(STATE, RELAY_ID) or {}
                queue_files(tx, visits_taken(items, results, statuses=("applied",)), DOWN)
                refused = [r for r in results if r.get("status") == "rejected"]
                held = (set(current.get("left_held") or []) | set(page.get("left_scope") or [])) - set(
                    current.get("villages") or [])
                _update_state(tx, feed_cursor=page["next"], last_down_at=iso(now_utc()), left_held=sorted(held),
                              refused=_kept(current.get("refused"), refused, "down"))

            results, _ = accept_relayed(self.store, items, scope, source=UPSTREAM, checkpoint=save)
            report.received += len(items)
            report.received_applied += sum(1 for r in results if r["status"] == "applied")
            report.refused_down += sum(1 for r in results if r["status"] == "rejected")
            if not page.get("has_more"):
                # Upstream's feed is drained up to where it stood when this page was read.
                self.store.unit_of_work(lambda tx: _update_state(tx, waiting_down=0))
                return

    def drop_left(self) -> list[str]:
        """Drop each village the hall lost whose work made here has all gone up; keep (and say why
        in the status) one that still has some. Returns the villages dropped."""
        state = relay_state(self.store) or {}
        dropped, keeping = [], []
        for village in state.get("left_held") or []:
            waiting, refused = unsent_work(self.store, state, village)
            files = unsent_files(self.store, village)
            if waiting or refused or files:
                keeping.append({"village": village, "waiting_up": waiting, "refused_up": refused,
                                "files_waiting_up": files,
                                "message": KEEPING % {"village": village, "count": waiting + refused, "files": files}})
                continue
            counts = drop_village(self.store, village)
            dropped.append(village)
            log.info("relay: dropped village %s, which this hall no longer serves: %s", village, counts)

            def done(tx: Writer, village: str = village, counts: dict[str, int] = counts) -> None:
                current = tx.get(STATE, RELAY_ID) or {}
                entry = {"village": village, "at": iso(now_utc()), **counts}
                _update_state(tx, left_held=[v for v in current.get("left_held") or [] if v != village],
                              dropped=[*(current.get("dropped") or []), entry][-MAX_REFUSED:])

            self.store.unit_of_work(done)
        self.store.unit_of_work(lambda tx: _update_state(tx, keeping=keeping))
        return dropped

    def _item(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"event": wire_event(doc, self.node_id)}
        if doc["type"] == "visit":
            visit = self.store.get("visits", doc["id"])
            if visit is not None:
                item["visit"] = wire_visit(visit)
        return item

    # -- a whole round ---------------------------------------------------------------------------
    def round(self) -> RoundReport:
        """Hello, set-up, up, then down. Raises RelayError when upstream cannot be reached or refuses."""
        report = RoundReport()
        self.store.unit_of_work(lambda tx: _update_state(tx, last_attempt_at=iso(now_utc())))
        try:
            answer = self.hello()
            report.clock_gap_ms = answer["clock_gap_ms"]
            self.setup()
            transfers = FileTransfers(self.store, self.upstream, self.files, RelayError) if self.files else None
            if answer["clock_refusal"] is None:
                self.send_up(report)
                if transfers is not None:
                    transfers.send_up(report)
            self.bring_down(report)
            if transfers is not None:
                transfers.bring_down(report)
            report.dropped = self.drop_left()
        except RelayError as error:
            failure = {"code": error.code, "message": error.message, "at": iso(now_utc())}
            self.store.unit_of_work(lambda tx: _update_state(tx, last_error=failure))
            raise
        self.store.unit_of_work(lambda tx: _update_state(tx, last_contact_at=iso(now_utc()), last_error=None,
                                                         last_round=report.as_dict()))
        return report


def _app_files() -> HallFiles | None:
    """The app's blob store, when there is an app (the CLI and requests); the background runner passes
    its own."""
    from flask import current_app, has_app_context

    return HallFiles.for_app(current_app._get_current_object()) if has_app_context() else None  # type: ignore[attr-defined]


def _kept(previous: Any, refused: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """The refused events the status shows: the newest few hundred, with their reasons."""
    at = iso(now_utc())
    entries = list(previous or []) + [{"id": r.get("id"), "direction": direction, "code": r.get("code"),
                                       "message": r.get("message"), "errors": r.get("errors") or {}, "at": at,
                                       **({"village": r["village"]} if r.get("village") else {})}
                                      for r in refused]
    return entries[-MAX_REFUSED:]


# -- a village the hall lost ---------------------------------------------------------------------
def unsent_work(store: Store, state: Mapping[str, Any], village: str) -> tuple[int, int]:
    """What the hall made for ``village`` that has not reached upstream: events past its upload
    checkpoint, and events upstream refused as out of its scope (they are nowhere else)."""
    waiting = 0
    since = int(state.get("up_seq") or 0)
    bound = store.visible_seq()
    while True:
        docs = store.changes(EVENTS, since, where={"village": In([village])}, limit=DROP_BATCH, upto=bound)
        waiting += sum(1 for doc in docs if doc.get("relayed_from") != UPSTREAM)
        if len(docs) < DROP_BATCH:
            break
        since = docs[-1]["seq"]
    refused = sum(1 for entry in state.get("refused") or () if entry.get("direction") == "up"
                  and entry.get("village") == village and entry.get("code") == "out_of_scope")
    return waiting, refused


def unsent_files(store: Store, village: str) -> int:
    """Files of ``village``'s visits that the attachments' exchange still has to send up (waiting,
    or refused by upstream: their bytes are nowhere else)."""
    visits = {visit["id"] for visit in store.iterate(VISITS, {"village": village})}
    return sum(1 for state in (WAITING, REFUSED)
               for doc in store.iterate(RELAY_FILES, {"direction": UP, "state": state})
               if doc.get("visit_id") in visits)


def drop_village(store: Store, village: str) -> dict[str, int]:
    """Remove what the hall holds of ``village``: its visits' files, its conflicts, households,
    visits and events, and the officers who served only the hall's lost villages. In small units
    of work, the events last, so that a drop cut short is finished by the next round."""
    from ..blobs.attachments import ATTACHMENTS
    from ..privacy.erasure import delete_blobs

    counts = {"attachments": 0, "conflicts": 0, "households": 0, "visits": 0, "events": 0, "users": 0}
    blobs: list[str] = []
    after = None
    while True:
        page = store.find(VISITS, {"village": village}, after=after, limit=DROP_BATCH)
        ids = [visit["id"] for visit in page]

        def files(tx: Writer, ids: list[str] = ids) -> int:
            names = []
            for doc in tx.find(ATTACHMENTS, {"visit_id": In(ids)}):
                blobs.extend(h for h in (doc.get("sha256"), doc.get("thumbnail_sha256")) if h)
                names.append(doc["id"])
            for name in tx.get_many(RELAY_FILES, names):  # transfers of these files (none wait up)
                tx.delete(RELAY_FILES, name)
            return tx.remove(ATTACHMENTS, {"visit_id": In(ids)})

        if ids:
            counts["attachments"] += store.unit_of_work(files)
        if len(page) < DROP_BATCH:
            break
        after = ids[-1]
    for collection in ("conflicts", HOUSEHOLDS, VISITS, EVENTS):
        while True:
            removed = store.remove(collection, {"village": village}, limit=DROP_BATCH)
            counts[collection] += removed
            if removed < DROP_BATCH:
                break
    counts["users"] = store.unit_of_work(_drop_gone_users)
    if blobs:
        delete_blobs(store, blobs)
    return counts


def _drop_gone_users(tx: Writer) -> int:
    """Officers and supervisors from upstream who no longer serve any of the hall's villages (set-up
    disabled them), with their devices: their password hashes need not stay on the laptop."""
    gone = [user["id"] for user in tx.find("users", limit=None) if user.get("from_upstream")
            and user.get("disabled") and not user.get("villages")]
    for name in gone:
        for device in tx.find("devices", {"username": name}):
            tx.delete("devices", device["id"])
        tx.delete("users", name)
    return len(gone)


# -- set-up from upstream ------------------------------------------------------------------------
def _same(stored: Mapping[str, Any] | None, doc: Mapping[str, Any]) -> bool:
    if stored is None:
        return False
    return {k: v for k, v in stored.items() if k != "seq"} == {k: v for k, v in doc.items() if k != "seq"}


def apply_setup(tx: Writer, bundle: Mapping[str, Any]) -> dict[str, int]:
    """Store what upstream sent of the hall's villages; a document is written only when it changed
    (forms are tracked: rewriting one unchanged would send it to every phone again)."""
    written = {"villages": 0, "forms": 0, "form_versions": 0, "form_xforms": 0, "users": 0, "devices": 0,
               "app_credentials": 0}
    for collection in UPSTREAM_COLLECTIONS:
        for doc in bundle.get(collection) or []:
            doc = {k: v for k, v in doc.items() if k != "seq"}
            if not _same(tx.get(collection, doc["id"]), doc):
                tx.put(collection, doc)
                written[collection] += 1
    sent_users = {user["id"] for user in bundle.get("users") or []}
    for user in bundle.get("users") or []:
        stored = tx.get("users", user["id"])
        if stored is not None and not stored.get("from_upstream"):
            continue  # an account made at the hall itself is the hall's own
        doc = {**(stored or {}), **user, "from_upstream": True}
        if not _same(stored, doc):
            tx.put("users", doc)
            written["users"] += 1
    for name in bundle.get("known_users") or []:
        # An account of the hall's villages before: it no longer is, so it signs in here no more.
        stored = tx.get("users", name)
        if stored is not None and stored.get("from_upstream") and name not in sent_users and not stored.get(
                "disabled"):
            tx.put("users", {**stored, "disabled": True, "villages": []})
            written["users"] += 1
    for device in bundle.get("devices") or []:
        stored = tx.get("devices", device["id"])
        if device.get("revoked") and (stored is None or not stored.get("revoked")):
            tx.put("devices", {**(stored or device), "revoked": True,
                               "revoked_at": device.get("revoked_at"), "revoked_by": "upstream"})
            written["devices"] += 1
    written["app_credentials"] = _apply_credentials(tx, bundle.get("app_credentials") or [])
    _update_state(tx, known_users=sorted(sent_users), last_setup_at=iso(now_utc()))
    return written


def _apply_credentials(tx: Writer, sent: list[Mapping[str, Any]]) -> int:
    """ODK Collect's app credentials of the hall's villages, as upstream keeps them (the SHA-256 of the
    token only), with the device each belongs to; one upstream no longer sends (revoked, replaced, its
    user or device cut off) is dropped, so that the phone's token stops working here too."""
    from ..app_credentials import CREDENTIALS
    from ..devices import DEVICES, device_key

    written = 0
    current = {credential["id"] for credential in sent}
    for credential in sent:
        doc = {key: credential.get(key) for key in ("id", "username", "device_id", "created_at")}
        doc.update(revoked=False, from_upstream=True)
        if not _same(tx.get(CREDENTIALS, doc["id"]), doc):
            tx.put(CREDENTIALS, doc)
            written += 1
        key = device_key(doc["username"], doc["device_id"])
        device = tx.get(DEVICES, key) or {"id": key, "username": doc["username"], "device_id": doc["device_id"],
                                          "first_seen_at": doc["created_at"], "revoked": False,
                                          "last_sync_at": None}
        if device.get("app_credential") != doc["id"] and not device.get("revoked"):
            tx.put(DEVICES, {**device, "app_credential": doc["id"], "app_version": "ODK Collect"})
    state = tx.get(STATE, RELAY_ID) or {}
    for digest in set(state.get("known_credentials") or ()) - current:
        written += int(tx.delete(CREDENTIALS, digest))
    _update_state(tx, known_credentials=sorted(current))
    return written


def setup_bundle(store: Store, hall_villages: list[str], previous_users: list[str] | None = None
                 ) -> dict[str, Any]:
    """What a hall needs to serve its villages' officers offline (upstream's side of :meth:`HallNode.setup`).

    Users are those whose areas reach one of the hall's villages, each with only those villages:
    a token the hall issues can then reach nothing else. Password hashes travel so that officers
    sign in offline; so do revoked devices, so that a lost phone is refused at the hall too.
    """
    from ..app_credentials import COLLECTING_ROLES
    from ..forms_registry import FORMS, PUBLISHED, VERSIONS, XFORMS, assigned_to, published_definition, published_xform

    villages = sorted(set(hall_villages))
    scope = Scope("officer", tuple(villages))
    out: dict[str, Any] = {"villages": [doc for doc in (store.get("villages", v) for v in villages) if doc]}
    forms = [form for form in store.iterate(FORMS) if form.get("published") and (
        assigned_to(form.get("assignment"), scope) or assigned_to(form.get("assigned_ever"), scope))]
    out["forms"] = forms
    out["form_versions"] = [doc for form in forms for doc in store.find(VERSIONS, {"form_id": form["id"]})
                            if doc.get("state") == PUBLISHED]
    out["form_xforms"] = []
    for doc in out["form_versions"]:
        definition = published_definition(store, doc["form_id"], doc["version"])
        if definition is not None and published_xform(store, definition) is not None:  # stored if it was not
            out["form_xforms"].append(store.get(XFORMS, doc["id"]))
    users, devices, credentials = [], [], []
    for user in store.iterate("users"):
        if user["role"] == "admin":
            continue
        areas = [Area(code) for code in user.get("villages") or () if Area.is_code(code)]
        mine = [v for v in villages if any(area.contains(v) for area in areas)]
        if not mine:
            continue
        users.append({"id": user["id"], "role": user["role"], "villages": mine,
                      "disabled": bool(user.get("disabled")), "password_hash": user["password_hash"],
                      "token_version": user.get("token_version", 0), "created_at": user.get("created_at"),
                      "updated_at": user.get("updated_at")})
        held = store.find("devices", {"username": user["id"]})
        devices.extend({k: d.get(k) for k in ("id", "username", "device_id", "revoked", "revoked_at")}
                       for d in held if d.get("revoked"))
        if not user.get("disabled") and user["role"] in COLLECTING_ROLES:
            credentials.extend(_working_credentials(store, held))
    out["users"] = users
    out["devices"] = devices
    out["app_credentials"] = credentials
    out["known_users"] = sorted(set(previous_users or []))
    return out


def _working_credentials(store: Store, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The app credentials of these devices that work now, by their hash (the token never leaves)."""
    from ..app_credentials import CREDENTIALS

    out = []
    for device in devices:
        digest = device.get("app_credential")
        credential = store.get(CREDENTIALS, digest) if digest and not device.get("revoked") else None
        if credential is not None and not credential.get("revoked"):
            out.append({k: credential.get(k) for k in ("id", "username", "device_id", "created_at")})
    return out


# -- set-up of a hall ----------------------------------------------------------------------------
def transport_for(url: str) -> Transport:
    return HttpTransport(url, timeout=60.0, pool_size=2)


def init_hall(store: Store, upstream_url: str, credential: str, *, skew_bound_ms: int,
              transport: Transport | None = None) -> dict[str, Any]:
    """Make this node a hall of ``upstream_url``: check the credential, then take set-up and events."""
    state = relay_state(store)
    if state is not None and state.get("upstream") not in (None, upstream_url):
        raise RelayError("already_a_hall", N_("this node is a hall of %(upstream)s already")
                         % {"upstream": state["upstream"]})
    store.unit_of_work(lambda tx: _update_state(tx, upstream=upstream_url.rstrip("/"), credential=credential,
                                                up_seq=int((state or {}).get("up_seq") or 0),
                                                created_at=(state or {}).get("created_at") or iso(now_utc())))
    node = HallNode(store, Upstream(transport or transport_for(upstream_url), credential,
                                             node_device_id(store)),
                    skew_bound_ms=skew_bound_ms)
    report = node.round()
    return {"hall": (relay_state(store) or {}).get("hall"), "round": report.as_dict()}


def hall_node(store: Store, *, skew_bound_ms: int, transport: Transport | None = None,
              files: HallFiles | None = None) -> HallNode:
    state = relay_state(store)
    if state is None:
        raise RelayError("not_a_hall", N_("this node is not a hall; run kunjung relay init first"))
    return HallNode(store, Upstream(transport or transport_for(state["upstream"]), state["credential"],
                                         node_device_id(store)),
                    skew_bound_ms=skew_bound_ms, files=files)


def hall_status(store: Store) -> dict[str, Any]:
    """When the hall last reached upstream, what waits to go up, what upstream refused and why."""
    state = relay_state(store)
    if state is None:
        raise RelayError("not_a_hall", N_("this node is not a hall; run kunjung relay init first"))
    pending: list[str] = []
    waiting_up = count_own_since(store, int(state.get("up_seq") or 0), pending)
    return {"hall": state.get("hall"), "upstream": state.get("upstream"), "villages": state.get("villages") or [],
            "last_contact_at": state.get("last_contact_at"), "last_attempt_at": state.get("last_attempt_at"),
            "last_error": state.get("last_error"), "clock_gap_ms": state.get("clock_gap_ms"),
            "clock_refusal": state.get("clock_refusal"),
            "waiting_up": waiting_up,
            "waiting_down": state.get("waiting_down"), "last_round": state.get("last_round"),
            "refused": list(state.get("refused") or []), "left_scope": state.get("left_held") or [],
            "keeping": list(state.get("keeping") or []), "dropped": list(state.get("dropped") or []),
            **files_waiting(store, pending)}


# -- the background runner -----------------------------------------------------------------------
class Runner:
    """Runs rounds in a daemon thread: every ``interval`` seconds while the link is up, backing off
    (doubling, with jitter, up to ``max_backoff``) while it is down. Across gunicorn workers a lease
    in the store lets one run at a time."""

    def __init__(self, make_node: Callable[[], HallNode], store: Store, *, interval: float = 60.0,
                 first_backoff: float = 5.0, max_backoff: float = 900.0,
                 context: Callable[[], AbstractContextManager[Any]] = nullcontext):
        self.make_node = make_node
        # The app's context for each round, as a request or the CLI has: a round that drops a
        # village removes its files through the app's blob store.
        self.context = context
        self.store = store
        self.interval = interval
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="kunjung-relay", daemon=True)
        self.holder = f"{os.getpid()}-{id(self)}"

    def start(self) -> Runner:
        self.thread.start()
        return self

    def _lease(self, seconds: float) -> bool:
        now = time.time()

        def unit(tx: Writer) -> bool:
            lease = tx.get(STATE, LEASE_ID)
            if lease is not None and lease.get("holder") != self.holder and lease.get("until", 0) > now:
                return False
            tx.put(STATE, {"id": LEASE_ID, "holder": self.holder, "until": now + seconds})
            return True

        return self.store.unit_of_work(unit)

    def _loop(self) -> None:
        backoff = self.first_backoff
        while not self.stop.is_set():
            wait = self.interval
            try:
                if self._lease(self.interval + 300):
                    with self.context():
                        self.make_node().round()
                backoff = self.first_backoff
            except RelayError as error:
                log.warning("relay round failed (%s): %s; next try in %.0f s", error.code, error.message, backoff)
                wait = backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret
                backoff = min(self.max_backoff, backoff * 2)
            except Exception:  # the runner must outlive any one round
                log.exception("relay round failed")
                wait = backoff
                backoff = min(self.max_backoff, backoff * 2)
            self.stop.wait(wait)
