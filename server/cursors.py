"""Opaque cursors the server signs, and the identity of the store a pull cursor belongs to."""

# A cursor is ``<payload>.<key id>.<mac>``: the payload is the canonical JSON of its state in
# URL-safe base64, the MAC is HMAC-SHA256 under the key ring's "cursors" key (server.security.keys),
# so a device can neither read meaning into a cursor nor make one. The MAC is checked before the
# payload is parsed; retired keys still verify for the refresh-token lifetime, so a rotation does
# not restart every device's sync. What a cursor's state means, and every check of its shape,
# belongs to the code that made it (server/pull.py, server/api/paging.py).

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sync import canonical_json

from .errors import ApiError
from .i18n import N_, gettext
from .security.keys import KeyRing
from .storage import Store

PURPOSE = "cursors"
MAX_CURSOR_LENGTH = 8192
IDENTITY_ID = "identity"
SERVER_STATE = "server_state"


class InvalidCursor(ApiError):
    """400 ``invalid_cursor``: forged, foreign, from before a restore, or not one this server gave."""

    def __init__(self, parameter: str = "since", reason: str = N_("not a valid cursor")):
        super().__init__(400, "invalid_cursor",
                         gettext("The cursor is not one this server gave; start again without it."),
                         {parameter: [reason]})


class CursorCodec:
    """Seals cursor states of a ``kind`` into signed strings and opens them again."""

    def __init__(self, ring: KeyRing, clock: Callable[[], float] = time.time) -> None:
        self.ring = ring
        self.clock = clock

    def seal(self, kind: str, state: Mapping[str, Any]) -> str:
        payload = canonical_json({"k": kind, **state}).encode("utf-8")
        text = base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")
        return f"{text}.{self.ring.sign(PURPOSE, payload)}"

    def open(self, kind: str, cursor: Any, parameter: str = "since") -> dict[str, Any]:
        """The state sealed in ``cursor``; :class:`InvalidCursor` unless this server sealed it for ``kind``."""
        if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
            raise InvalidCursor(parameter)
        text, _, signature = cursor.partition(".")
        try:
            payload = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, binascii.Error):
            raise InvalidCursor(parameter) from None
        if not signature or not self.ring.verify(PURPOSE, payload, signature, self.clock()):
            raise InvalidCursor(parameter, N_("not signed by this server"))
        try:
            state = json.loads(payload.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise InvalidCursor(parameter) from None
        if not isinstance(state, dict) or state.pop("k", None) != kind:
            raise InvalidCursor(parameter, N_("a cursor of another list"))
        return state


@dataclass(frozen=True)
class StoreIdentity:
    """Which store a cursor's positions belong to: an id made once per store, and an epoch that a
    restore renews (positions from before a restore name a history the store no longer has)."""

    store_id: str
    epoch: str


def store_identity(store: Store) -> StoreIdentity:
    doc = store.get(SERVER_STATE, IDENTITY_ID)
    if doc is None:
        store.insert(SERVER_STATE, {"id": IDENTITY_ID, "store_id": uuid.uuid4().hex, "epoch": uuid.uuid4().hex})
        doc = store.get(SERVER_STATE, IDENTITY_ID)
    return StoreIdentity(doc["store_id"], doc["epoch"])


def renew_store_epoch(store: Store) -> StoreIdentity:
    """After ``kunjung restore``: every cursor given out before names positions of another history.

    The epoch is a new random value, not a counter, so restoring the same backup twice still
    refuses the cursors given out between the two restores."""
    with store.transaction() as tx:
        doc = tx.get(SERVER_STATE, IDENTITY_ID)
        identity = {"id": IDENTITY_ID, "store_id": doc["store_id"] if doc else uuid.uuid4().hex,
                    "epoch": uuid.uuid4().hex}
        tx.put(SERVER_STATE, identity)
    return StoreIdentity(identity["store_id"], identity["epoch"])
