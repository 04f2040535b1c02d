"""Hall credentials on the central server: a village hall's scope (its villages) and identity (its node id)."""

# A credential is ``khall.<name>.<secret>``: the name finds the hall's document, the secret is
# compared by its sha256 (it is 256 random bits, so a plain hash is enough; no salt or slow hash
# is needed the way a password needs one). It is shown once, when made. The first hall node that
# says hello with it binds it to that node's id; a copy used from another laptop is refused, so
# a credential is both a scope and an identity.

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from forms.identifiers import Area

from ..audit import record_audit
from ..clock import StoredClock
from ..errors import ApiError
from ..i18n import gettext
from ..security.scope import Scope
from ..storage import Store, Writer
from ..timeutil import iso, now_utc

HALLS = "relay_halls"
PREFIX = "khall"
# \Z, not $: "$" also matches before a trailing newline.
HALL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}\Z")
MAX_VILLAGES = 200
# What a hall's scope looks like to the rest of the server: an officer of its villages.
HALL_ROLE = "officer"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hall_scope(hall: dict[str, Any]) -> Scope:
    return Scope(HALL_ROLE, tuple(hall["villages"]))


def hall_file_scope(hall: dict[str, Any]) -> Scope:
    """Where a hall may send files: its villages, and those it lost but still holds. A file goes up
    only for a visit this hall relayed here (server/blobs/uploads.py), so a lost village's late
    photos follow the events :func:`late_work` took, and the hall can then drop the village."""
    held = [entry["village"] for entry in hall.get("left_villages") or ()]
    return Scope(HALL_ROLE, tuple(sorted({*hall["villages"], *held})))


def public_hall(hall: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a hall (never the secret's hash)."""
    return {"name": hall["id"], "villages": list(hall["villages"]), "node_id": hall.get("node_id"),
            "revoked": bool(hall.get("revoked")), "created_at": hall.get("created_at"),
            "last_contact_at": hall.get("last_contact_at"), "last_clock_gap_ms": hall.get("last_clock_gap_ms"),
            "received_events": int(hall.get("received_events") or 0), "feed_seq": int(hall.get("feed_seq") or 0),
            "left_villages": [dict(entry) for entry in hall.get("left_villages") or ()]}


def village_problems(villages: Any) -> list[str]:
    if not isinstance(villages, list) or not villages or not all(isinstance(v, str) for v in villages):
        return ["name at least one village code"]
    if len(villages) > MAX_VILLAGES:
        return [f"at most {MAX_VILLAGES} villages"]
    return [f"{v!r} is not a village code like 32.04.05.2001" for v in villages
            if not Area.is_code(v, levels=("village",))]


def create_hall(store: Store, name: str, villages: list[str], *, actor: str | None,
                address: str | None = None) -> tuple[dict[str, Any], str]:
    """Make a hall credential; returns the hall and its token, which is not kept and cannot be shown again."""
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not HALL_NAME.match(name):
        errors["name"] = ["use 2-64 lower-case letters, digits, '.', '_' or '-'"]
    problems = village_problems(villages)
    if problems:
        errors["villages"] = problems
    if errors:
        raise ApiError(422, "invalid", gettext("The hall credential is not valid."), errors)
    secret = secrets.token_urlsafe(32)
    at = iso(now_utc())
    hall = {"id": name, "villages": sorted(set(villages)), "secret_hash": _digest(secret), "node_id": None,
            "revoked": False, "created_at": at, "created_by": actor, "last_contact_at": None, "feed_seq": 0,
            "received_events": 0}
    with store.transaction() as tx:
        if not tx.insert(HALLS, hall):
            raise ApiError(409, "hall_exists", gettext(
                "A hall named %(name)r exists already; revoke it or pick another name.", name=name))
        record_audit(tx, "relay_hall_created", actor=actor, target=name, address=address,
                     details={"villages": hall["villages"]})
    return hall, f"{PREFIX}.{name}.{secret}"


def revoke_hall(store: Store, name: str, *, actor: str | None, address: str | None = None) -> dict[str, Any]:
    """Cut a hall off: its credential stops working on its next contact, and cannot be made to work again."""
    with store.transaction() as tx:
        hall = tx.get(HALLS, name)
        if hall is None:
            raise ApiError(404, "not_found", gettext("No such hall."))
        if not hall.get("revoked"):
            hall = tx.put(HALLS, {**hall, "revoked": True, "revoked_at": iso(now_utc()), "revoked_by": actor})
            record_audit(tx, "relay_hall_revoked", actor=actor, target=name, address=address)
    return hall


def set_hall_villages(store: Store, name: str, villages: list[str], *, actor: str | None,
                      address: str | None = None) -> dict[str, Any]:
    """Give a hall other villages. One it loses is kept in ``left_villages`` until the hall says it
    dropped it: until then the work the hall took for it before it learned still goes up (see
    :func:`late_work`), so nothing collected at the hall is refused for the change."""
    problems = village_problems(villages)
    if problems:
        raise ApiError(422, "invalid", gettext("The hall credential is not valid."), {"villages": problems})
    wanted = sorted(set(villages))

    def unit(tx: Writer) -> dict[str, Any]:
        hall = tx.get(HALLS, name)
        if hall is None:
            raise ApiError(404, "not_found", gettext("No such hall."))
        at = iso(now_utc())
        lost = sorted(set(hall["villages"]) - set(wanted))
        gained = sorted(set(wanted) - set(hall["villages"]))
        left = [entry for entry in hall.get("left_villages") or () if entry["village"] not in wanted]
        held = {entry["village"] for entry in left}
        left += [{"village": code, "left_at": at, "told_at": None} for code in lost if code not in held]
        hall = tx.put(HALLS, {**hall, "villages": wanted, "left_villages": sorted(left, key=lambda e: e["village"])})
        record_audit(tx, "relay_hall_villages", actor=actor, target=name, address=address,
                     details={"villages": wanted, "lost": lost, "gained": gained})
        return hall

    return store.unit_of_work(unit)


def note_told(tx: Writer, name: str) -> None:
    """The hall has just been sent its set-up: it knows now which villages it lost."""
    hall = tx.get(HALLS, name)
    left = (hall or {}).get("left_villages") or []
    if any(entry.get("told_at") is None for entry in left):
        at = iso(now_utc())
        tx.put(HALLS, {**hall, "left_villages": [{**entry, "told_at": entry.get("told_at") or at}
                                                  for entry in left]})


def note_holding(tx: Writer, name: str, holding: list[str]) -> None:
    """At hello the hall names the lost villages it still holds: one it was told of and no longer
    names is dropped there, and its late work is refused from now on."""
    hall = tx.get(HALLS, name)
    left = (hall or {}).get("left_villages") or []
    kept = [entry for entry in left if entry.get("told_at") is None or entry["village"] in holding]
    if len(kept) != len(left):
        tx.put(HALLS, {**hall, "left_villages": kept})


def late_work(hall: dict[str, Any], skew_bound_ms: int) -> Callable[[Mapping[str, Any]], bool]:
    """Whether the hall may still send an event of a village it lost: one it received itself
    before it was told of the loss (its clock is within the skew bound of ours, or it sends
    nothing up), while it still holds that village."""
    told = {entry["village"]: entry.get("told_at") for entry in hall.get("left_villages") or ()}
    slack = timedelta(milliseconds=skew_bound_ms)

    def allowed(event: Mapping[str, Any]) -> bool:
        if event.get("village") not in told or event.get("received_by") != hall.get("node_id"):
            return False
        at = told[event["village"]]
        received = event.get("received_at")
        if at is None:
            return True
        return isinstance(received, str) and received <= iso(datetime.fromisoformat(at) + slack)

    return allowed


def list_halls(store: Store) -> list[dict[str, Any]]:
    return store.find(HALLS, order_by="id", limit=1000)


def hall_of_token(store: Store, token: Any) -> dict[str, Any]:
    """The hall a credential belongs to; 401 for anything else, the same answer whatever was wrong."""
    refused = ApiError(401, "invalid_credential", gettext("The hall credential is not valid, or was revoked."))
    if not isinstance(token, str) or len(token) > 256 or not token.isascii():
        raise refused
    prefix, _, rest = token.partition(".")
    name, _, secret = rest.partition(".")
    if prefix != PREFIX or not HALL_NAME.match(name) or not secret:
        raise refused
    hall = store.get(HALLS, name)
    if hall is None:
        _digest(secret)  # as much work for an unknown hall as for a known one
        raise refused
    if not hmac.compare_digest(hall["secret_hash"], _digest(secret)) or hall.get("revoked"):
        raise refused
    return hall


def bind_node(store: Store, hall: dict[str, Any], node_id: str) -> dict[str, Any]:
    """The first hello binds the credential to the hall's node; another node with it is refused."""
    if hall.get("node_id") == node_id:
        return hall
    if hall.get("node_id") is not None:
        raise ApiError(403, "hall_node_mismatch",
                       gettext("This credential belongs to another hall laptop; ask the admin for a new one."))
    with store.transaction() as tx:
        current = tx.get(HALLS, hall["id"])
        if current.get("node_id") not in (None, node_id):
            raise ApiError(403, "hall_node_mismatch",
                           gettext("This credential belongs to another hall laptop; ask the admin for a new one."))
        current = tx.put(HALLS, {**current, "node_id": node_id, "bound_at": iso(now_utc())})
        record_audit(tx, "relay_hall_bound", actor=hall["id"], target=node_id)
    return current


def note_contact_in(tx: Writer, name: str, **fields: Any) -> None:
    """The hall reached us, within a unit of work: when, and whatever the exchange moved (its
    checkpoint here, how many of its events were applied)."""
    hall = tx.get(HALLS, name)
    if hall is None:
        return
    update = {**hall, "last_contact_at": iso(now_utc())}
    for key, value in fields.items():
        if key == "received_events":
            update[key] = int(hall.get(key) or 0) + int(value)
        elif key == "feed_seq":
            update[key] = max(int(hall.get(key) or 0), int(value))
        else:
            update[key] = value
    tx.put(HALLS, update)


def note_contact(store: Store, name: str, **fields: Any) -> str:
    """:func:`note_contact_in` in a unit of work of its own; returns the node's HLC now, for the reply
    (one commit for both: a hall's round is many small requests)."""

    def unit(tx: Writer) -> str:
        note_contact_in(tx, name, **fields)
        clock = StoredClock(tx)
        hlc = clock.now()
        clock.save()
        return hlc

    return store.unit_of_work(unit)
