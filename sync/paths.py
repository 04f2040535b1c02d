"""Field paths: household fields by name, roster fields as members/<member-uuid>/<field>; erasure patterns."""

from __future__ import annotations

import re
from functools import lru_cache

MEMBERS = "members"
ERASE_ALL = "*"

# snake_case from a letter, so no '$', '.', NUL or upper case can reach a store key.
FIELD_NAME_PATTERN = r"[a-z][a-z0-9_]{0,63}"
MEMBER_ID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

_FIELD_NAME = re.compile(FIELD_NAME_PATTERN)
_MEMBER_ID = re.compile(MEMBER_ID_PATTERN)


def is_field_name(name: object) -> bool:
    """Whether ``name`` is a valid household (or member) field name."""
    return isinstance(name, str) and _FIELD_NAME.fullmatch(name) is not None


def is_member_id(member_id: object) -> bool:
    """Whether ``member_id`` is a lower-case canonical UUID, as roster paths require."""
    return isinstance(member_id, str) and _MEMBER_ID.fullmatch(member_id) is not None


# One pattern for both shapes; "members" alone is the roster, not a field (refused in _split).
_PATH = re.compile(f"(?:{MEMBERS}/({MEMBER_ID_PATTERN})/)?({FIELD_NAME_PATTERN})")


def split_path(path: object, *, remember: bool = True) -> tuple[str | None, str]:
    """(member uuid or None, field name) of a path; ValueError when the path is malformed.

    ``remember=False`` for roster paths seen once (a pushed visit's members are new): a cache
    miss costs more than the check, and would evict the paths readers meet over and over."""
    if not isinstance(path, str):
        raise ValueError(f"field path {path!r} is not a string")
    if remember or "/" not in path:
        return _split_text(path)
    return _split(path)


def _split(path: str) -> tuple[str | None, str]:
    match = _PATH.fullmatch(path)
    if match is None or path == MEMBERS:
        raise ValueError(
            f"malformed field path {path!r}: expected a snake_case name of at most 64 characters "
            "or members/<lower-case member uuid>/<snake_case name>"
        )
    return match.group(1), match.group(2)


# Folding a household checks the same few hundred paths over and over.
_split_text = lru_cache(maxsize=65536)(_split)


def check_path(path: object, *, remember: bool = True) -> str:
    """``path`` when it is a valid field path; ValueError otherwise (``remember``: see split_path)."""
    split_path(path, remember=remember)
    return str(path)


def member_path(member_id: str, field: str) -> str:
    """The path of a roster field of one member."""
    path = f"{MEMBERS}/{member_id}/{field}"
    check_path(path)
    return path


def split_erase_pattern(pattern: object) -> tuple[str, str | None]:
    """(kind, subject) of an erasure pattern; ValueError when malformed.

    ``("record", None)`` for ``*`` (every path of the record, written or not), ``("member", uuid)``
    for ``members/<uuid>/*`` (every field of that member), ``("path", path)`` for one exact path.
    """
    if pattern == ERASE_ALL:
        return "record", None
    if isinstance(pattern, str):
        parts = pattern.split("/")
        if len(parts) == 3 and parts[0] == MEMBERS and parts[2] == ERASE_ALL:
            if not is_member_id(parts[1]):
                raise ValueError(f"malformed erasure {pattern!r}: members/<lower-case member uuid>/*")
            return "member", parts[1]
    try:
        return "path", check_path(pattern)
    except ValueError:
        raise ValueError(
            f"malformed erasure {pattern!r}: expected '*', members/<member uuid>/* or a field path"
        ) from None


def erase_pattern_covers(pattern: str, path: str) -> bool:
    """Whether the erasure ``pattern`` covers the field ``path`` (both well-formed)."""
    kind, subject = split_erase_pattern(pattern)
    if kind == "record":
        return True
    if kind == "member":
        return split_path(path)[0] == subject
    return path == subject
