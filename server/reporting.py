"""Coverage and work figures for supervisors: villages, officers, devices, the review queue, village time zones,
and the DTSEN proposals of each village for its meeting."""

# Every figure is computed by streaming the store (``Store.iterate``, a batch at a time), so
# memory grows with the number of villages, officers and households, never with visits.
# Where a real deployment would push an aggregation into the store instead (a MongoDB
# ``$group`` or an SQL ``GROUP BY``), a comment says so; the storage interface has no
# aggregation yet, and these loops are what such a method would replace.
#
# Visits are streamed one published form version at a time, in ``seq`` order: the
# (form_id, form_version, seq) index then serves both the filter and the order, so each batch
# continues where the last stopped. Filtering by a kecamatan prefix and ordering by anything
# else makes SQLite sort every matching row for every batch.

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from .areas import area_condition, scoped_areas, user_in_areas, village_where
from .security.scope import Scope
from .storage import In, Store
from .timeutil import iso, now_utc
from .visits import count_visits, find_visits, shown

# -- time zones ---------------------------------------------------------------------------------
# Indonesia keeps three time zones, set by Keputusan Presiden No. 41 Tahun 1987 (in force since
# 1 January 1988): WIB (UTC+7), WITA (UTC+8) and WIT (UTC+9). Provinces created since then keep
# the zone of the land they were split from. Keyed by the province part of the Kemendagri code
# (the first two digits); this table is the one place to correct if a zone is ever moved.
#   WIB  UTC+7: 11–36 (Sumatra, Riau Islands, Bangka Belitung, Java, Banten) and 61–62 (West and
#               Central Kalimantan)
#   WITA UTC+8: 51–53 (Bali, NTB, NTT), 63–65 (South, East, North Kalimantan), 71–76 (Sulawesi)
#   WIT  UTC+9: 81–82 (Maluku, North Maluku), 91–97 (the Papua provinces)
PROVINCE_ZONES: tuple[tuple[int, int, int], ...] = (
    (11, 36, 7),
    (51, 53, 8),
    (61, 62, 7),
    (63, 65, 8),
    (71, 76, 8),
    (81, 82, 9),
    (91, 97, 9),
)
ZONE_NAMES = {7: "WIB", 8: "WITA", 9: "WIT"}
# A code outside the table (a province not yet created, a typing error) is counted in WIB, the
# zone of most villages, rather than refused: a figure a few hours off beats no figure.
DEFAULT_OFFSET_HOURS = 7


def utc_offset_hours(code: str | None) -> int:
    """The UTC offset, in hours, of the village (or any area) with this Kemendagri code."""
    try:
        province = int(str(code)[:2])
    except ValueError:
        return DEFAULT_OFFSET_HOURS
    for low, high, hours in PROVINCE_ZONES:
        if low <= province <= high:
            return hours
    return DEFAULT_OFFSET_HOURS


@functools.lru_cache(maxsize=16)
def _zone(hours: int) -> timezone:
    return timezone(timedelta(hours=hours), ZONE_NAMES[hours])


def zone_of(code: str | None) -> timezone:
    return _zone(utc_offset_hours(code))


def zone_name(code: str | None) -> str:
    return ZONE_NAMES[utc_offset_hours(code)]


def parse_moment(text: Any, zone: timezone) -> datetime | None:
    """An ISO-8601 date-time as an aware datetime; one without an offset is read in ``zone``."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A phone that sends no offset sends its own wall time, which is the village's.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def visit_moment(visit: Mapping[str, Any]) -> datetime | None:
    """When the visit happened: its end, else its start, else when the server received it."""
    zone = zone_of(visit.get("village"))
    for key in ("ended_at", "started_at", "received_at"):
        moment = parse_moment(visit.get(key), zone)
        if moment is not None:
            return moment
    return None


def visit_date(visit: Mapping[str, Any]) -> date | None:
    """The visit's day in its village's own time zone."""
    moment = visit_moment(visit)
    return None if moment is None else moment.astimezone(zone_of(visit.get("village"))).date()


def local_today(code: str | None, now: datetime) -> date:
    return now.astimezone(zone_of(code)).date()


def published_versions(store: Store, form_id: str | None = None) -> list[tuple[str, str]]:
    """Every published (form_id, version), oldest first; visits exist only for these."""
    where: dict[str, Any] = {"state": "published"}
    if form_id:
        where["form_id"] = form_id
    found = [(doc.get("published_at") or "", doc["form_id"], doc["version"])
             for doc in store.iterate("form_versions", where)]
    return [(form, version) for _, form, version in sorted(found)]


def stream_visits(store: Store, areas: list[str] | None, *, form_id: str | None = None,
                  where: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Visits in ``areas`` matching the indexed ``where``, one form version after another."""
    if areas is not None and not areas:
        return
    for form, version in published_versions(store, form_id):
        condition = {"form_id": form, "form_version": version, **(where or {}), **village_where(areas)}
        yield from (visit for visit in store.iterate("visits", condition, order_by="seq") if shown(visit))


def counted(visit: Mapping[str, Any]) -> bool:
    """A revision replaces the visit it supersedes, so figures count each visit once, as revised."""
    return not visit.get("superseded_by")


# -- per village ------------------------------------------------------------------------------------
@dataclass
class _Village:
    code: str
    name: str | None = None
    known: int = 0
    visits: int = 0
    visited: set[str] = field(default_factory=set)
    recent: set[str] = field(default_factory=set)
    by_form_day: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        hours = utc_offset_hours(self.code)
        return {
            "village": self.code, "name": self.name, "time_zone": ZONE_NAMES[hours], "utc_offset": f"+{hours:02d}:00",
            "households_known": self.known, "households_visited": len(self.visited),
            "households_not_visited": max(self.known - len(self.visited), 0),
            "households_visited_recently": len(self.recent), "visits": self.visits,
            "visits_by_form_day": [{"form_id": form_id, "date": day.isoformat(), "visits": n}
                                   for (form_id, day), n in sorted(self.by_form_day.items())],
        }


def village_coverage(store: Store, scope: Scope, *, area: str | None = None, days: int = 7,
                     now: datetime | None = None) -> dict[str, Any]:
    """Per village: households known, visited at least once, visited in the last ``days`` days
    (today included, in the village's own time zone), and visits per form per local day."""
    now = now or now_utc()
    areas = scoped_areas(scope, area)
    villages: dict[str, _Village] = {}

    def village(code: str) -> _Village:
        if code not in villages:
            villages[code] = _Village(code)
        return villages[code]

    # Villages with a boundary are listed even with nothing in them: "what is missing" starts there.
    for doc in store.iterate("villages", village_where(areas, "id")):
        village(doc["id"]).name = doc.get("name")
    # At scale: a store-side count grouped by village ($group / GROUP BY) instead of reading
    # every household document.
    for where in _area_queries(areas):
        for doc in store.iterate("households", where, order_by="village"):
            village(doc["village"]).known += 1
    # At scale: $group by (village, form_id, local day) and a distinct count of household_id.
    # The sets below hold household ids, so they grow with households, not with visits.
    for visit in stream_visits(store, areas):
        if not counted(visit):
            continue
        entry = village(visit["village"])
        entry.visits += 1
        entry.visited.add(visit["household_id"])
        day = visit_date(visit)
        if day is None:
            continue
        entry.by_form_day[(visit["form_id"], day)] += 1
        if day > local_today(visit["village"], now) - timedelta(days=days):
            entry.recent.add(visit["household_id"])
    rows = [villages[code].as_dict() for code in sorted(villages)]
    totals = {key: sum(row[key] for row in rows) for key in (
        "households_known", "households_visited", "households_not_visited", "households_visited_recently", "visits")}
    return {"as_of": iso(now), "recent_days": days, "villages": rows, "totals": totals}


def _area_queries(areas: list[str] | None) -> list[dict[str, Any]]:
    """One condition per area: an OR of prefixes keeps SQLite from walking the village index."""
    if areas is None:
        return [{}]
    return [{"village": area_condition(area)} for area in areas]


# -- per officer ------------------------------------------------------------------------------------
def _device_view(device: Mapping[str, Any]) -> dict[str, Any]:
    return {"device_id": device["device_id"], "first_seen_at": device.get("first_seen_at"),
            "last_login_at": device.get("last_login_at"), "last_sync_at": device.get("last_sync_at"),
            "revoked": bool(device.get("revoked")), "app_version": device.get("app_version"),
            "skew_ms": device.get("skew_ms"), "skew_seen_at": device.get("skew_seen_at"),
            "skew_cleared_at": device.get("skew_cleared_at")}


def officer_figures(store: Store, scope: Scope, *, area: str | None = None, officer: str | None = None,
                    days: int = 7, now: datetime | None = None) -> dict[str, Any]:
    """Per officer: visits, visits in the last ``days`` days, flagged visits and flags by code,
    the villages visited, last sync and devices. Lists every officer assigned in the area and
    anyone else with visits in it."""
    now = now or now_utc()
    areas = scoped_areas(scope, area)
    figures: dict[str, dict[str, Any]] = {}

    def entry(username: str) -> dict[str, Any]:
        if username not in figures:
            figures[username] = {"officer": username, "role": None, "assigned": [], "visits": 0, "visits_recent": 0,
                                 "flagged_visits": 0, "flags": Counter(), "villages_visited": set()}
        return figures[username]

    for user in store.iterate("users", {"role": "officer"}):
        if (officer is None or user["id"] == officer) and user_in_areas(user, areas):
            entry(user["id"])
    # At scale: $group by officer over the visits in scope.
    where = {"officer": officer} if officer else {}
    for visit in stream_visits(store, areas, where=where):
        if not counted(visit):
            continue
        found = entry(visit["officer"])
        found["visits"] += 1
        found["villages_visited"].add(visit["village"])
        day = visit_date(visit)
        if day is not None and day > local_today(visit["village"], now) - timedelta(days=days):
            found["visits_recent"] += 1
        if visit.get("flagged"):
            found["flagged_visits"] += 1
            found["flags"].update(set(visit.get("flag_codes") or ()))
    officers = []
    for username in sorted(figures):
        found = figures[username]
        user = store.get("users", username) or {}
        devices = [_device_view(d) for d in store.iterate("devices", {"username": username})]
        syncs = [d["last_sync_at"] for d in devices if d["last_sync_at"]]
        officers.append({**found, "role": user.get("role"), "assigned": list(user.get("villages") or []),
                         "flags": dict(sorted(found["flags"].items())),
                         "villages_visited": sorted(found["villages_visited"]),
                         "last_sync_at": max(syncs) if syncs else None, "devices": devices})
    return {"as_of": iso(now), "recent_days": days, "officers": officers}


# -- devices -----------------------------------------------------------------------------------------
def device_figures(store: Store, scope: Scope, *, area: str | None = None, stale_days: int = 3,
                   now: datetime | None = None) -> dict[str, Any]:
    """Devices that have not synced for ``stale_days`` days (never-synced ones count from their
    first login; revoked phones are left out) and devices whose clocks were found skewed."""
    now = now or now_utc()
    areas = scoped_areas(scope, area)
    where: dict[str, Any] = {}
    if areas is not None:
        # Users are few (hundreds per kabupaten): reading them all is cheaper than an index.
        usernames = [u["id"] for u in store.iterate("users") if user_in_areas(u, areas)]
        where["username"] = In(usernames)
    cutoff = iso(now - timedelta(days=stale_days))
    not_synced, skewed = [], []
    for device in store.iterate("devices", where, order_by="username"):
        view = {"username": device["username"], **_device_view(device)}
        since = device.get("last_sync_at") or device.get("first_seen_at")
        if not device.get("revoked") and since and since < cutoff:
            moment = parse_moment(since, UTC)
            not_synced.append({**view, "days_since_sync": (now - moment).days if moment else None})
        if device.get("skew_ms") is not None:
            # skew_ms is kept from the last push that had events refused for clock skew; a later push
            # without any does not clear it, so the age of the finding is given with it.
            seen = parse_moment(device.get("skew_seen_at"), UTC)
            skewed.append({**view, "days_since_skew": (now - seen).days if seen else None})
    skewed.sort(key=lambda d: d.get("skew_seen_at") or "", reverse=True)
    return {"as_of": iso(now), "stale_days": stale_days, "not_synced": not_synced, "clock_skewed": skewed}


# -- the review queue ----------------------------------------------------------------------------------
QUEUE_KINDS = ("conflict", "visit")


def _conflict_item(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "conflict", "id": doc["id"], "village": doc["village"], "household_id": doc["household_id"],
            "field": doc["field"], "heads": doc.get("heads", []), "opened_at": doc.get("opened_at")}


def _visit_item(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "visit", "id": doc["id"], "village": doc["village"], "household_id": doc["household_id"],
            "form_id": doc["form_id"], "form_version": doc["form_version"], "officer": doc["officer"],
            "ended_at": doc.get("ended_at"), "received_at": doc.get("received_at"),
            "review_state": doc.get("review_state"), "superseded_by": doc.get("superseded_by"),
            "flag_codes": doc.get("flag_codes") or [], "flags": doc.get("flags") or []}


def review_queue(store: Store, scope: Scope, *, kind: str | None = None, area: str | None = None,
                 flag: str | None = None, officer: str | None = None, form_id: str | None = None,
                 review: str = "pending", after: tuple[str, str] | None = None, limit: int = 50) -> dict[str, Any]:
    """Open conflicts, then flagged visits, by id, a page at a time.

    ``after`` is the ``next`` of the previous page: ``(kind, id)`` of its last item. Visits are
    those carrying any flag (or the ``flag`` code) in the review state ``review`` (``any`` for
    every state)."""
    areas = scoped_areas(scope, area)
    stage, last = after if after else ("conflict", None)
    kinds = [kind] if kind else list(QUEUE_KINDS)
    conflict_where = {"open": True, **village_where(areas)}
    visit_where: dict[str, Any] = village_where(areas)
    visit_flag = flag or "any"
    if review != "any":
        visit_where["review_state"] = review
    if officer:
        visit_where["officer"] = officer
    if form_id:
        visit_where["form_id"] = form_id
    items: list[dict[str, Any]] = []
    more = False
    if "conflict" in kinds and stage == "conflict":
        page = store.find("conflicts", conflict_where, after=last, limit=limit + 1)
        items.extend(_conflict_item(doc) for doc in page[:limit])
        more = len(page) > limit
        last = None
    if "visit" in kinds and not more and len(items) < limit:
        page = find_visits(store, visit_where, flag=visit_flag, after=last if stage == "visit" else None,
                           limit=limit - len(items) + 1)
        room = limit - len(items)
        items.extend(_visit_item(doc) for doc in page[:room])
        more = len(page) > room
    next_position = (items[-1]["kind"], items[-1]["id"]) if more and items else None
    totals = {}
    if "conflict" in kinds:
        totals["conflicts"] = store.count("conflicts", conflict_where)
    if "visit" in kinds:
        totals["visits"] = count_visits(store, visit_where, flag=visit_flag)
    return {"items": items, "next": next_position, "totals": totals}


# -- DTSEN proposals for the village meeting ------------------------------------------------------------
# A village operator's proposals (the shipped form usulan_dtsen: a new household, a correction or an
# objection) are agreed village by village in the musyawarah desa, so they are listed village by
# village. Two passes keep memory to one village's proposals: the proposals in scope are streamed
# once through the form index to learn which villages have any, then each village's visits are read
# through the (village, id) index and sorted for the meeting.
PROPOSAL_FORM = "usulan_dtsen"
PROPOSAL_KINDS = ("baru", "perbaikan", "sanggahan")


def proposal_villages(store: Store, areas: list[str] | None, where: Mapping[str, Any],
                      keep: Callable[[Mapping[str, Any]], bool]) -> list[str]:
    """The villages in ``areas`` with a proposal matching the indexed ``where`` and ``keep``, by code."""
    found: set[str] = set()
    for visit in stream_visits(store, areas, form_id=PROPOSAL_FORM, where=where):
        if counted(visit) and keep(visit):
            found.add(visit["village"])
    return sorted(found)


def _meeting_order(visit: Mapping[str, Any]) -> tuple[Any, ...]:
    answers = visit.get("answers") or {}
    kind = answers.get("proposal_type")
    return (PROPOSAL_KINDS.index(kind) if kind in PROPOSAL_KINDS else len(PROPOSAL_KINDS),
            str(answers.get("rt") or ""), str(answers.get("rw") or ""),
            str(answers.get("head_name") or "").casefold(), visit["id"])


def village_proposals(store: Store, village: str, where: Mapping[str, Any],
                      keep: Callable[[Mapping[str, Any]], bool]) -> list[dict[str, Any]]:
    """One village's proposals as the meeting goes through them: new households, corrections, then
    objections, each by RT, RW and name. A revised proposal is listed once, as revised."""
    found = [visit for visit in store.iterate("visits", {"village": village, "form_id": PROPOSAL_FORM, **where})
             if counted(visit) and keep(visit)]
    return sorted(found, key=_meeting_order)
