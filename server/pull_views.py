"""The stored pull views of a household: the JSON bytes a pull sends for it, whole and masked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from sync import DOCUMENT_FORMAT, pull_of_document

from .privacy.masking import mask_household

# The views of a stored household, in the order the encoder makes them: the change as a user who
# sees identifiers whole receives it, and as everyone else does (server/privacy/masking.py).
WHOLE = "pull"
MASKED = "pull_masked"
VIEWS = (WHOLE, MASKED)
# Raise this whenever the bytes below would change for a stored household (the change's shape,
# pull_of_document, the masks): start-up then encodes every stored household again.
VERSION = 1


def household_pull(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The pull change of a stored household, read off its record document (``sync.pull_of_document``;
    building the record was ten times the cost of reading the row). The change shares values with
    ``doc``."""
    return pull_of_document(doc["record"])


def encode_pull_views(doc: Mapping[str, Any]) -> tuple[bytes, bytes] | None:
    """The bytes of each view (``VIEWS``) of a stored household, exactly what a pull would encode from
    the document; None for a record of an older format (``server/upgrade.py`` folds it again at
    start-up, and writing it back stores its views)."""
    record = doc.get("record")
    if not isinstance(record, Mapping) or record.get("format") != DOCUMENT_FORMAT:
        return None
    change = household_pull(doc)
    return orjson.dumps(change), orjson.dumps(mask_household(change))
