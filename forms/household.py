"""The household's fields: which fields a household_edit may write, and which values each takes.

A household field exists because something writes it: a published form's `save_to` (a
top-level field, or a roster field `members/<uuid>/<field>` saved from the roster's rows),
kunjung's own `status` marks (a household or a member moved, deceased, duplicate), or the
household register import (`REGISTER_FIELDS`). `household_field_catalog(definitions)` gathers
them from a set of definitions; `HouseholdFields.check(path, value)` judges one write.

Some register fields are the register's alone (`read_only`): the DTSEN welfare decile (`desil`)
is BPS's ranking, which devices show but no household edit may change; a village operator who
disputes it files a proposal (the `usulan_dtsen` form) for the village meeting instead.

A field declared by several forms (or versions) takes a value any of its declarations takes,
so a household edit made against an older version of a form is still accepted. Visits are
judged more leniently (forms/answers.py flags what a household edit refuses): field work
cannot be collected twice, but a household edit is a correction typed on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from forms.definition import ROSTER, Definition
from forms.fieldtypes import INVALID, IdentifierCheck, field_type
from sync.paths import split_path

__all__ = [
    "DECILE",
    "DECILE_MAX",
    "DECILE_MIN",
    "HOUSEHOLD_STATUSES",
    "MEMBER_STATUSES",
    "READ_ONLY",
    "REGISTER_FIELDS",
    "REGISTER_TEXT_LENGTH",
    "STATUS",
    "UNKNOWN_FIELD",
    "Declaration",
    "HouseholdField",
    "HouseholdFields",
    "household_field_catalog",
]

#: kunjung's own mark on a household or a member: nothing is deleted by sync, "removed" is a status.
STATUS = "status"
HOUSEHOLD_STATUSES = ("active", "moved", "duplicate")
MEMBER_STATUSES = ("active", "moved", "deceased", "duplicate")

UNKNOWN_FIELD = "unknown household field"

#: The longest text the register import keeps for a name or an address.
REGISTER_TEXT_LENGTH = 500

#: The household field of DTSEN's welfare decile: 1 is the poorest tenth of households nationally,
#: 10 the richest. BPS ranks households; aid programmes target by decile (docs/domain.md).
DECILE = "desil"
DECILE_MIN, DECILE_MAX = 1, 10

READ_ONLY = "is set by the household register import only; propose a correction (usulan) instead"


@dataclass(frozen=True)
class Declaration:
    """One thing that writes a household field: its field type, and what narrows its values.

    `source` says who declares it ("verval_keluarga@2026.1 head_name", "status", "register").
    `read_only`: only the register import writes it; a household edit may not, even to clear it.
    """

    source: str
    type: str
    choices: frozenset[str] | None = None
    identifiers: tuple[IdentifierCheck, ...] = ()
    max_length: int | None = None
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    read_only: bool = False

    def problems(self, value: Any) -> list[str]:
        """Why `value` cannot be this field's; an empty list when it can."""
        found: list[str] = []
        ftype = field_type(self.type)
        assert ftype.check is not None, self.type

        def note(path: str, message: str) -> None:
            found.append(f"{path}: {message}" if path else message)

        normalised = ftype.check(value, "", note)
        if normalised is INVALID:
            return found
        if isinstance(normalised, list) and not isinstance(value, list):
            return ["must be a list of choice names, as a visit stores it"]
        if self.choices is not None:
            chosen = normalised if isinstance(normalised, list) else [normalised]
            found.extend(f"{name!r} is not a choice of this field" for name in chosen if name not in self.choices)
        if self.max_length is not None and isinstance(value, str) and len(value) > self.max_length:
            found.append(f"is longer than {self.max_length} characters")
        if isinstance(normalised, int | float) and (
                (self.minimum is not None and normalised < self.minimum)
                or (self.maximum is not None and normalised > self.maximum)):
            found.append(f"must be from {self.minimum} to {self.maximum}")
        if self.pattern == "rt_rw" and not (isinstance(value, str) and len(value) == 3 and value.isascii()
                                            and value.isdigit() and value != "000"):
            found.append("must be a number from 001 to 999, three digits")
        for identifier in self.identifiers:
            found.extend(identifier.check(value))
        return found


def _identifier(token: str) -> tuple[IdentifierCheck, ...]:
    return tuple(check for check in field_type("text").identifiers if check.token == token)


#: The household fields the household register import writes (server/household_import.py), by name.
REGISTER_FIELDS: dict[str, Declaration] = {
    "no_kk": Declaration("register", "text", identifiers=_identifier("kk")),
    "head_nik": Declaration("register", "text", identifiers=_identifier("nik")),
    "head_name": Declaration("register", "text", max_length=REGISTER_TEXT_LENGTH),
    "address": Declaration("register", "text", max_length=REGISTER_TEXT_LENGTH),
    "rt": Declaration("register", "text", pattern="rt_rw"),
    "rw": Declaration("register", "text", pattern="rt_rw"),
    "house_location": Declaration("register", "geopoint"),
    DECILE: Declaration("register", "integer", minimum=DECILE_MIN, maximum=DECILE_MAX, read_only=True),
}


@dataclass(frozen=True)
class HouseholdField:
    """A household field (`member` False) or a roster field of every member (`member` True)."""

    name: str
    member: bool
    declarations: tuple[Declaration, ...]

    @property
    def types(self) -> tuple[str, ...]:
        """The field types its declarations give it, without repeats."""
        return tuple(dict.fromkeys(declaration.type for declaration in self.declarations))

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(declaration.source for declaration in self.declarations)

    @property
    def read_only(self) -> bool:
        """Only the register import writes it: nothing else declares it writable."""
        return all(declaration.read_only for declaration in self.declarations)

    def check(self, value: Any) -> list[str]:
        """Why a household edit cannot write `value` to this field; empty when it can. None clears a field."""
        if self.read_only:
            return [READ_ONLY]
        if value is None:
            return []
        problems: list[str] = []
        for declaration in self.declarations:
            if declaration.read_only:
                continue
            found = declaration.problems(value)
            if not found:
                return []
            problems.extend(message for message in found if message not in problems)
        return problems


@dataclass(frozen=True)
class HouseholdFields:
    """The household fields a set of definitions (plus `status` and the register's fields) declares."""

    household: Mapping[str, HouseholdField]
    members: Mapping[str, HouseholdField]

    def field(self, path: Any) -> HouseholdField | None:
        """The field a path names (`head_name`, `members/<uuid>/name`), or None."""
        try:
            member_id, name = split_path(path)
        except ValueError:
            return None
        return (self.members if member_id is not None else self.household).get(name)

    def check(self, path: Any, value: Any) -> list[str]:
        """Why a household edit cannot write `value` at `path`; an empty list when it can."""
        known = self.field(path)
        if known is None:
            return [UNKNOWN_FIELD]
        return known.check(value)

    def check_writes(self, writes: Mapping[str, Any]) -> dict[str, list[str]]:
        """Every problem of a household edit's `set`, keyed by path; empty when all of it may be written."""
        problems: dict[str, list[str]] = {}
        for path, value in writes.items():
            found = self.check(path, value)
            if found:
                problems[str(path)] = found
        return problems

    def __contains__(self, path: object) -> bool:
        return self.field(path) is not None


def _declarations(definition: Definition) -> Iterable[tuple[str, bool, Declaration]]:
    """(field name, is a member field, declaration) for every save_to of one definition."""
    label = f"{definition.form_id}@{definition.version}"
    for ref in definition.iter_fields():
        target = ref.field.get("save_to")
        ftype = ref.ftype
        if not isinstance(target, str) or not ftype.saves_to_household or len(ref.repeats) > 1:
            continue
        tokens = str(ref.field.get("appearance") or "").split()
        choices = definition.choice_names(ref.field["list"]) if ftype.takes_list and "list" in ref.field else None
        yield target, ref.repeat is not None, Declaration(
            f"{label} {ref.name}", ref.type, choices=choices,
            identifiers=tuple(check for check in ftype.identifiers if check.token in tokens))


def household_field_catalog(definitions: Iterable[Definition]) -> HouseholdFields:
    """The household fields `definitions` declare through save_to, with `status` and the register's fields.

    Give every published version of the forms that reach the household's village: a field
    one version dropped is still a field of households visited with the older one.
    """
    household: dict[str, list[Declaration]] = {name: [declaration] for name, declaration in REGISTER_FIELDS.items()}
    members: dict[str, list[Declaration]] = {}
    household.setdefault(STATUS, []).append(
        Declaration("status", "select_one", choices=frozenset(HOUSEHOLD_STATUSES)))
    members.setdefault(STATUS, []).append(Declaration("status", "select_one", choices=frozenset(MEMBER_STATUSES)))
    for definition in definitions:
        for name, member, declaration in _declarations(definition):
            if name == ROSTER:  # pragma: no cover - the validator refuses a field saving to the roster itself
                continue
            bucket = (members if member else household).setdefault(name, [])
            if declaration not in bucket:
                bucket.append(declaration)
    return HouseholdFields(
        {name: HouseholdField(name, False, tuple(found)) for name, found in household.items()},
        {name: HouseholdField(name, True, tuple(found)) for name, found in members.items()},
    )
