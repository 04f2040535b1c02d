"""What a caller may read and write: the areas of their role, as Kemendagri areas."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forms.identifiers import Area, outermost

from ..storage import AnyOf, prefix_range


@dataclass(frozen=True)
class Scope:
    """The villages a caller may read and write. Every endpoint asks this, never the body.

    ``areas`` are the outermost of the areas given (strings are parsed), so no village is
    named twice; an admin's scope is everything whatever areas it names.
    """

    role: str
    areas: tuple[Area, ...] = field(default=())

    def __post_init__(self) -> None:
        parsed = (a if isinstance(a, Area) else Area(a) for a in self.areas)
        object.__setattr__(self, "areas", outermost(parsed))

    @property
    def is_all(self) -> bool:
        return self.role == "admin"

    @property
    def codes(self) -> tuple[str, ...]:
        """The areas' codes, sorted."""
        return tuple(area.code for area in self.areas)

    def covers(self, village_code: str | Area | None) -> bool:
        """Whether the village (or area) lies inside the scope; False for anything that is no code."""
        if self.is_all:
            return True
        return any(area.contains(village_code) for area in self.areas)

    def where(self, field_name: str = "village") -> dict[str, Any]:
        """A storage condition selecting documents whose ``field_name`` is in scope."""
        if self.is_all:
            return {}
        return {field_name: AnyOf(a.code if a.is_village else prefix_range(a.prefix) for a in self.areas)}


def scope_of(user: Mapping[str, Any]) -> Scope:
    """The scope a stored user has now."""
    return Scope(user["role"], tuple(_codes(user.get("villages"))))


def _codes(values: Iterable[Any] | None) -> Iterable[str]:
    # A stored area that no longer parses (written before codes were checked strictly) gives no access.
    return (v for v in values or () if Area.is_code(v))
