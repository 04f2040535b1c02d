"""Least data per role: which values are identifiers (NIK, No. KK), who sees them whole, and their masks."""

# A masked identifier travels as {"masked": "<first six digits>"}: the region code only, since the
# birth date and serial would complete a NIK. A marker is an object, never a string, so a client
# cannot mistake it for data, and a push carrying one is refused (``marker_errors``).

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sync.paths import split_path

MARKER = "masked"
SHOWN_DIGITS = 6
# Household and roster fields that hold a NIK or a No. KK (forms/household.py, the library forms).
IDENTIFIER_FIELDS = frozenset({"no_kk", "head_nik", "nik"})
TEXT_MASK = "*" * 10


def is_identifier_number(value: Any) -> bool:
    """A string of exactly 16 ASCII digits: how a NIK or No. KK is written."""
    return isinstance(value, str) and len(value) == 16 and value.isascii() and value.isdigit()


def is_identifier_name(name: str) -> bool:
    """Whether an answer or field name declares a NIK or No. KK (``nik``, ``head_nik``, ``no_kk``...)."""
    return name in IDENTIFIER_FIELDS or name.endswith(("_nik", "_kk"))


def is_identifier_path(path: str) -> bool:
    """Whether a household field path holds a NIK or No. KK."""
    try:
        return split_path(path)[1] in IDENTIFIER_FIELDS
    except ValueError:
        return False


def sees_whole(user: Mapping[str, Any]) -> bool:
    """Whether the user sees identifiers whole: the admin's grant when one is set, else the role's
    default: officers verify numbers against the card in their own villages, admins answer requests
    about them; supervisors see masks."""
    granted = user.get("see_identifiers")
    if granted is not None:
        return bool(granted)
    return user.get("role") in ("officer", "admin")


def exports_whole(user: Mapping[str, Any]) -> bool:
    """Exports leave the server: whole numbers only with an explicit grant, whatever the role."""
    return user.get("see_identifiers") is True


def marker(value: Any) -> Any:
    """The mask of one identifier value; None and non-text values stay as they are."""
    if not isinstance(value, str):
        return value
    return {MARKER: value[:SHOWN_DIGITS]}


def text_mask(value: Any) -> Any:
    """The mask of one identifier in a spreadsheet cell: the region digits, then asterisks."""
    if not isinstance(value, str):
        return value
    return value[:SHOWN_DIGITS] + TEXT_MASK


def is_marker(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {MARKER}


def mask_answers(value: Any, *, text: bool = False, name: str = "") -> Any:
    """Answers (any JSON) with every identifier masked: a value named like one, or a 16-digit string."""
    if isinstance(value, Mapping):
        return {key: mask_answers(item, text=text, name=str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_answers(item, text=text, name=name) for item in value]
    if isinstance(value, str) and (is_identifier_number(value) or (name and is_identifier_name(name))):
        return text_mask(value) if text else marker(value)
    return value


def _mask_state(state: Mapping[str, Any]) -> dict[str, Any]:
    masked = {**state, "value": marker(state.get("value"))}
    if "heads" in state:
        masked["heads"] = [{**head, "value": marker(head.get("value"))} for head in state["heads"]]
    return masked


def mask_household(view: Mapping[str, Any]) -> dict[str, Any]:
    """A household (a pull change or a supervisor's view) with its identifier fields masked; a copy."""
    fields = view.get("fields")
    if not isinstance(fields, Mapping) or not any(is_identifier_path(path) for path in fields):
        return dict(view)
    return {**view, "fields": {path: _mask_state(state) if is_identifier_path(path) else state
                               for path, state in fields.items()}}


def mask_visit(visit: Mapping[str, Any], *, text: bool = False) -> dict[str, Any]:
    """A visit with identifiers in its answers masked; a copy."""
    return {**visit, "answers": mask_answers(visit.get("answers") or {}, text=text)}


def mask_history_entry(entry: Mapping[str, Any], *, text: bool = False) -> dict[str, Any]:
    """One household history entry with identifier values masked (as text, for a CSV cell, when ``text``)."""
    mask = text_mask if text else marker
    writes = {path: mask(value) if is_identifier_path(path) else value
              for path, value in (entry.get("writes") or {}).items()}
    changes = [{**change, "before": mask(change["before"]), "after": mask(change["after"])}
               if is_identifier_path(change["field"]) else change for change in entry.get("changes") or ()]
    return {**entry, "writes": writes, "changes": changes}


def mask_conflict(conflict: Mapping[str, Any]) -> dict[str, Any]:
    """A conflict (or a review-queue item of one) with its heads' values masked when the field is an identifier."""
    if not is_identifier_path(conflict.get("field", "")):
        return dict(conflict)
    return {**conflict, "heads": [{**head, "value": marker(head.get("value"))} for head in conflict.get("heads", ())]}


def marker_paths(value: Any, path: str = "") -> Iterator[str]:
    """Paths inside ``value`` that hold a mask marker."""
    if is_marker(value):
        yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from marker_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from marker_paths(item, f"{path}.{index}" if path else str(index))


def _may_hold_marker(value: Any) -> bool:
    """Whether ``value`` might hold a mask marker: False only when a flat walk of its dicts and lists meets
    no one-key dict keyed ``masked`` (every pushed event is checked and nearly none holds one; only such
    an event, or one of other containers, is walked again for the paths)."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = item.__class__
        if kind is dict:
            if MARKER in item and len(item) == 1:
                return True
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is not str and kind is not int and kind is not float and kind is not bool and item is not None:
            return True
    return False


def marker_errors(event: Mapping[str, Any]) -> dict[str, list[str]]:
    """Why a pushed event cannot be stored because it writes a mask back as data; empty when it does not."""
    errors: dict[str, list[str]] = {}
    if not _may_hold_marker([event.get("set"), event.get("answers")]):
        return errors
    for key in ("set", "answers"):
        for path in marker_paths(event.get(key), key):
            errors.setdefault(path, []).append(
                "is a masked value: a mask cannot be written back; send the number itself or leave the field out")
    return errors
