"""Finding a person or a family card in what kunjung holds: keyed hashes of numbers, searches, the access export."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Flask

from forms.identifiers import check_kk, check_nik
from sync import pull_of_document
from sync.paths import split_path

from ..areas import scoped_areas, village_where
from ..errors import ApiError
from ..i18n import _
from ..security.keys import keyring
from ..security.scope import Scope
from ..storage import Store

HASH_PURPOSE = "audit"
# What a member's answer shows of the family they belong to: where it lives and its card.
FAMILY_FIELDS = ("no_kk", "address", "rt", "rw")


def number_hash(number: str, app: Flask | None = None) -> str:
    """The keyed hash (HMAC-SHA256 under the audit key) of a NIK or No. KK: what the audit log keeps
    instead of the number, so the log can be searched by person without holding the number."""
    _kid, key = keyring(app).signing_key(HASH_PURPOSE)
    return hmac.new(key, number.encode("ascii"), hashlib.sha256).hexdigest()


def checked_number(value: Any, kind: str) -> str:
    """A NIK (``kind`` "nik") or No. KK ("no_kk") as 16 digits; 422 naming the field otherwise."""
    text = "".join(str(value or "").split())
    problems = check_nik(text) if kind == "nik" else check_kk(text)
    if problems:
        raise ApiError(422, "invalid", _("The number is not valid."), {kind: problems})
    return text


def mentions(value: Any, number: str) -> bool:
    """Whether any string inside ``value`` (answers, say) is ``number``."""
    if isinstance(value, str):
        return value == number
    if isinstance(value, Mapping):
        return any(mentions(item, number) for item in value.values())
    if isinstance(value, list):
        return any(mentions(item, number) for item in value)
    return False


def roles_in(fields: Mapping[str, Any], nik: str | None, no_kk: str | None) -> list[dict[str, Any]]:
    """How a household's fields name the number: as its head, as a member (with the member's id),
    or as its family card."""
    found = []
    for path, state in fields.items():
        value = state.get("value") if isinstance(state, Mapping) else None
        if not isinstance(value, str):
            continue
        member_id, name = split_path(path)
        if nik is not None and value == nik and (name == "head_nik" or (member_id and name == "nik")):
            found.append({"as": "member", "member_id": member_id} if member_id else {"as": "head"})
        if no_kk is not None and value == no_kk and name == "no_kk" and member_id is None:
            found.append({"as": "family_card"})
    return found


Found = tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]


def households_naming(store: Store, scope: Scope, *, nik: str | None = None,
                      no_kk: str | None = None) -> Iterator[Found]:
    """(stored household, its pull view, how it names the number) for every household in scope that
    holds the NIK or No. KK. Numbers are kept inside each household's record, so this reads them all:
    a data-subject request is rare, and an index of numbers would be one more copy of them."""
    where = village_where(scoped_areas(scope, None))
    for doc in store.iterate("households", where, order_by="id"):
        view = pull_of_document(doc["record"])
        found = roles_in(view["fields"], nik, no_kk)
        if found:
            yield doc, view, found


def visits_mentioning(store: Store, scope: Scope, number: str) -> Iterator[dict[str, Any]]:
    """Every visit in scope whose answers hold ``number`` anywhere."""
    where = village_where(scoped_areas(scope, None))
    for visit in store.iterate("visits", where, order_by="id"):
        if mentions(visit.get("answers"), number):
            yield visit


def person_fields(view: Mapping[str, Any], roles: list[dict[str, Any]]) -> dict[str, Any]:
    """The values a household holds about the person: the household's own fields when they head it
    (the family's too), and their roster row when they are a member."""
    out: dict[str, Any] = {}
    members = {role["member_id"] for role in roles if role["as"] == "member"}
    head = any(role["as"] in ("head", "family_card") for role in roles)
    for path, state in view["fields"].items():
        member_id, name = split_path(path)
        if member_id in members or (member_id is None and (head or name in FAMILY_FIELDS)):
            out[path] = state.get("value")
    return out


def person_export(store: Store, scope: Scope, nik: str) -> dict[str, Any]:
    """Everything kunjung holds about one person (a data-subject access request): the households
    where they are head or member, with the values held about them there, and every visit whose
    answers mention their NIK, with those answers."""
    households = []
    for doc, view, roles in households_naming(store, scope, nik=nik):
        households.append({"household_id": doc["id"], "village": doc["village"], "roles": roles,
                           "values": person_fields(view, roles), "erased": view.get("erased", [])})
    visits = [{"visit_id": visit["id"], "household_id": visit["household_id"], "village": visit["village"],
               "form_id": visit["form_id"], "form_version": visit["form_version"], "officer": visit["officer"],
               "ended_at": visit.get("ended_at"), "received_at": visit.get("received_at"),
               "review_state": visit.get("review_state"), "answers": visit.get("answers") or {}}
              for visit in visits_mentioning(store, scope, nik)]
    return {"nik": nik, "households": households, "visits": visits}
