"""Areas in queries: a caller's scope narrowed to an area, an area as a store condition, and scope intersections."""

# Every "is this code inside that area" question is answered by forms.identifiers.Area; this
# module turns its answers into store conditions and scope arithmetic for the services.

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from forms.identifiers import Area, outermost

from .errors import ApiError
from .i18n import _
from .security.scope import Scope
from .storage import AnyOf, prefix_range


def parse_areas(codes: Iterable[Any]) -> list[Area]:
    """The well-formed area codes among ``codes`` (a stored list that an older kunjung wrote, say)."""
    found = []
    for code in codes:
        try:
            found.append(Area(code))
        except ValueError:
            continue
    return found


def scope_areas(scope: Scope) -> list[Area] | None:
    """The caller's areas, outermost only; None for an admin, who sees everything."""
    return None if scope.is_all else list(outermost(parse_areas(scope.codes)))


def scoped_areas(scope: Scope, area: str | None) -> list[str] | None:
    """The areas both in scope and inside ``area`` (None: no limit at all, an admin without a filter).

    An area the caller asks for but may not see answers 404, as a record out of scope does.
    """
    wanted = Area(area) if area is not None else None
    mine = scope_areas(scope)
    if mine is None:
        return [wanted.code] if wanted else None
    if wanted is None:
        return [a.code for a in mine]
    found = intersect([wanted], mine)
    if not found:
        raise ApiError(404, "not_found", _("No such village."))
    return [a.code for a in found]


def intersect(areas: Iterable[Area], others: Iterable[Area]) -> list[Area]:
    """The villages in both sets of areas, as areas: the inner one wherever one contains the other."""
    others = list(others)
    found = set()
    for area in areas:
        for other in others:
            if other.contains(area):
                found.add(area)
            elif area.contains(other):
                found.add(other)
    return list(outermost(found))


def within_scope(codes: Iterable[str], scope: Scope) -> list[str]:
    """The part of ``codes`` (area codes, or ``*`` for everything) that lies in ``scope`` now.

    A cursor names areas; whatever it names, a caller is shown only this."""
    codes = list(codes)
    mine = scope_areas(scope)
    if mine is None:
        return ["*"] if "*" in codes else [a.code for a in outermost(parse_areas(codes))]
    if "*" in codes:
        return [a.code for a in mine]
    return [a.code for a in intersect(parse_areas(codes), mine)]


def area_condition(area: str) -> Any:
    """A store condition for codes inside ``area``: the code itself for a village, else its prefix."""
    parsed = Area(area)
    return parsed.code if parsed.is_village else prefix_range(parsed.prefix)


def village_where(areas: list[str] | None, field_name: str = "village") -> dict[str, Any]:
    """A store condition for documents whose ``field_name`` lies in ``areas`` (None: any)."""
    if areas is None:
        return {}
    return {field_name: AnyOf(area_condition(a) for a in areas)}


def in_areas(code: str | None, areas: list[str] | None) -> bool:
    if areas is None:
        return True
    return any(Area(a).contains(code) for a in areas)


def user_in_areas(user: Mapping[str, Any], areas: list[str] | None) -> bool:
    """Whether a user's assigned villages (or kecamatan) touch ``areas``."""
    if areas is None:
        return True
    theirs = parse_areas(user.get("villages") or ())
    return any(mine.overlaps(Area(area)) for mine in theirs for area in areas)
