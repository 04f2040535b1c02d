"""Passwords: argon2id hashing and the rules a new password must meet."""

from __future__ import annotations

import itertools
import uuid
from functools import lru_cache
from importlib import resources
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app

from ..i18n import _

MIN_PASSWORD_LENGTH = 10
MIN_ADMIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MIN_DISTINCT_CHARACTERS = 4
# The most common passwords, lowercased (source and licence: COMMON-PASSWORDS-LICENSE.txt beside it).
COMMON_PASSWORDS_FILE = "common-passwords.txt"

EXTENSION = "kunjung.passwords"


class Passwords:
    """argon2id hashing; parameters come from config so tests can use cheap ones."""

    def __init__(self, memory_kib: int = 65536, time_cost: int = 3, parallelism: int = 2):
        self.hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism)
        # Verifying against this when the user does not exist makes both failures cost the same.
        self.dummy = self.hasher.hash(uuid.uuid4().hex)

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self.dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath(COMMON_PASSWORDS_FILE).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def _is_repetition(text: str) -> bool:
    """Whether ``text`` is one shorter piece said several times ("aaaa", "abcabcabc")."""
    return len(text) > 1 and (text + text).find(text, 1) < len(text)


def _is_straight_run(text: str) -> bool:
    """Whether each character is the one after (or before) the last: "abcdefghijkl", "9876543210"."""
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(text)}
    return len(steps) == 1 and steps <= {1, -1}


def minimum_length(role: str | None) -> int:
    return MIN_ADMIN_PASSWORD_LENGTH if role == "admin" else MIN_PASSWORD_LENGTH


def password_problems(password: Any, role: str | None = None) -> list[str]:
    """Why ``password`` may not be a password of a user with ``role`` (an empty list when it may)."""
    if not isinstance(password, str):
        return [_("must be a string")]
    if not password.strip():
        return [_("must not be empty or only spaces")]
    problems = []
    shortest = minimum_length(role)
    if len(password) < shortest:
        problems.append(_("must be at least %(count)s characters for an admin", count=shortest) if role == "admin"
                        else _("must be at least %(count)s characters", count=shortest))
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(_("must be at most %(count)s characters", count=MAX_PASSWORD_LENGTH))
        return problems
    folded = password.strip().lower()
    if _is_repetition(folded) or len(set(folded)) < MIN_DISTINCT_CHARACTERS or _is_straight_run(folded):
        problems.append(_("is too regular (one piece repeated, a run like 'abcdef', or too few different "
                          "characters); choose a phrase of several words"))
    elif folded in common_passwords():
        problems.append(_("is one of the most common passwords; choose a phrase of several words"))
    return problems


def install_passwords(app: Flask) -> Passwords:
    """The app's hasher, with the cost its configuration asks for."""
    hasher = Passwords(memory_kib=app.config.get("PASSWORD_HASH_MEMORY_KIB", 65536),
                       time_cost=app.config.get("PASSWORD_HASH_TIME_COST", 3))
    app.extensions[EXTENSION] = hasher
    return hasher


def passwords(app: Flask | None = None) -> Passwords:
    """The hasher of ``app`` (the current app by default)."""
    return (app or current_app).extensions[EXTENSION]
