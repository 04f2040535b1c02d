"""The server's keys: one secret, a key per purpose derived from it, retired secrets that still verify.

Tokens, pull cursors, web sessions and the audit log's keyed hashes never share a key: each
purpose gets its own, derived from the secret with HKDF-SHA256 (RFC 5869), so a key that
leaks from one use (a cursor MAC, say) says nothing about another. Every signature names the
id of the key that made it, so the secret can rotate: a retired secret still verifies for a
grace period (the refresh-token lifetime), then stops.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from flask import Flask, current_app

PURPOSES = ("tokens", "cursors", "sessions", "audit", "relay", "credentials")
KEY_BYTES = 32
KID_LENGTH = 8


def derive_key(secret: str, purpose: str) -> bytes:
    """The key for ``purpose`` derived from ``secret`` (HKDF-SHA256, empty salt)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    prk = hmac.new(b"\x00" * hashlib.sha256().digest_size, secret.encode("utf-8"), hashlib.sha256).digest()
    info = f"kunjung/{purpose}".encode()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:KEY_BYTES]


def key_id(key: bytes) -> str:
    """A short public name of a derived key; it reveals nothing of the key."""
    return hmac.new(key, b"kunjung key id", hashlib.sha256).hexdigest()[:KID_LENGTH]


@dataclass(frozen=True)
class RetiredSecret:
    """A former secret and when it was retired (Unix seconds)."""

    secret: str
    retired_at: float


class KeyRing:
    """The current secret and the retired ones still inside their grace period."""

    def __init__(self, current: str, retired: Iterable[RetiredSecret] = (), *, grace_seconds: float) -> None:
        if not current:
            raise ValueError("the key ring needs a current secret")
        self.current = current
        self.retired = tuple(retired)
        self.grace_seconds = grace_seconds

    def signing_key(self, purpose: str) -> tuple[str, bytes]:
        """(key id, key) to sign with now."""
        key = derive_key(self.current, purpose)
        return key_id(key), key

    def verifying_keys(self, purpose: str, now: float) -> dict[str, bytes]:
        """Key id → key for every secret that still verifies at ``now``: the current one first."""
        keys: dict[str, bytes] = {}
        for secret in (self.current, *(r.secret for r in self.retired if now - r.retired_at <= self.grace_seconds)):
            key = derive_key(secret, purpose)
            keys.setdefault(key_id(key), key)
        return keys

    def sign(self, purpose: str, payload: bytes) -> str:
        """``"<kid>.<hex mac>"`` of ``payload`` under the current key of ``purpose``."""
        kid, key = self.signing_key(purpose)
        return f"{kid}.{hmac.new(key, payload, hashlib.sha256).hexdigest()}"

    def verify(self, purpose: str, payload: bytes, signature: str, now: float) -> bool:
        """Whether ``signature`` is a MAC of ``payload`` by a key of ``purpose`` that still verifies."""
        kid, _, mac = signature.partition(".")
        key = self.verifying_keys(purpose, now).get(kid)
        if key is None or not mac:
            return False
        return hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).hexdigest())


EXTENSION = "kunjung.keys"


def install_keyring(app: Flask, retired: Iterable[RetiredSecret] = ()) -> KeyRing:
    """The app's key ring from its secret; retired secrets verify for the refresh-token lifetime."""
    ring = KeyRing(app.config["SECRET_KEY"], retired, grace_seconds=app.config["REFRESH_TOKEN_DAYS"] * 86400)
    app.extensions[EXTENSION] = ring
    return ring


def keyring(app: Flask | None = None) -> KeyRing:
    """The key ring of ``app`` (the current app by default)."""
    return (app or current_app).extensions[EXTENSION]
