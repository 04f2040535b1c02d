"""The forms kunjung ships: loads the JSON definitions in this package (see NOTES.md for their sources)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["LIBRARY_FILES", "library_form", "library_forms"]

# Order is the order an officer sees them in on a fresh install: the register first.
LIBRARY_FILES = (
    "household_verification.json",
    "puskesos_pengaduan.json",
    "kunjungan_pendampingan.json",
    "usulan_dtsen.json",
)


def library_forms() -> list[dict[str, Any]]:
    """Every shipped definition, freshly parsed, so callers may change their copies."""
    package = resources.files(__name__)
    return [json.loads(package.joinpath(name).read_text(encoding="utf-8")) for name in LIBRARY_FILES]


def library_form(form_id: str) -> dict[str, Any]:
    """The shipped definition with this form_id; KeyError when there is none."""
    for form in library_forms():
        if form["settings"]["form_id"] == form_id:
            return form
    raise KeyError(form_id)
