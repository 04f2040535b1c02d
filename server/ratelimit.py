"""Login attempts (a window per client address and per known device, a growing wait per username),
and guesses of ODK Collect's app-credential tokens (a window per client address).

Every attempt is counted before its password is checked, with the store's atomic increment,
so attempts racing each other are all counted and no more than the allowance is checked.
The per-username limit slows guessing down instead of locking the account: after the free
failures each further try must wait twice as long as the last, and a device that has logged
in as that user before is judged by its own window, so an attacker who knows a username
cannot keep its owner out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .i18n import gettext
from .storage import Range, Store

COLLECTION = "rate_limits"
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 3600.0
# A username's run of failures is forgotten a day after it began (or at once on a success).
STREAK_SECONDS = 86400.0
ADDRESS_FACTOR = 5  # a village hall shares one address among many officers
CLEANUP_BATCH = 50


def wall_seconds() -> float:
    return time.time()


@dataclass(frozen=True)
class LoginLimits:
    per_user: int  # free failures per username; attempts per known device in a window
    per_address: int  # attempts per client address in a window
    window: int  # seconds

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LoginLimits:
        limit = int(config["LOGIN_RATE_LIMIT"])
        return cls(per_user=limit, per_address=limit * ADDRESS_FACTOR,
                   window=int(config["LOGIN_RATE_WINDOW_SECONDS"]))


@dataclass(frozen=True)
class Admission:
    """What one admitted attempt counted, to give back once its password proved right."""

    address_key: str
    device_key: str | None
    user_key: str | None


def backoff_opens(failures_past_free: int) -> float:
    """Seconds after a run of failures began before try number ``free + n`` may be checked."""
    total, step = 0.0, BACKOFF_FIRST_SECONDS
    for _ in range(failures_past_free):
        total += min(step, BACKOFF_MAX_SECONDS)
        step *= 2
    return total


def _refuse(wait: float, message: str) -> ApiError:
    retry = max(1, math.ceil(wait))
    return ApiError(429, "rate_limited",
                    gettext("%(message)s; try again in %(seconds)s seconds.", message=message, seconds=retry),
                    headers={"Retry-After": str(retry)})


def admit_login(store: Store, limits: LoginLimits, *, username: str, address: str, known_device: str | None,
                now: float | None = None) -> Admission:
    """Count this attempt and let it through, or raise 429 with Retry-After.

    ``known_device`` is the device record id when the attempt names a device that has logged
    in as ``username`` before; it is then judged by its own window instead of the username's wait.
    """
    now = wall_seconds() if now is None else now
    slot = int(now // limits.window)
    window_end = (slot + 1) * limits.window
    expires = window_end + limits.window
    address_key = f"login:address:{address}@{slot}"
    counted = store.increment(COLLECTION, address_key, "count", defaults={"expires_at": expires})
    if counted["count"] > limits.per_address:
        raise _refuse(window_end - now, gettext("Too many logins from this address"))
    if known_device is not None:
        device_key = f"login:device:{known_device}@{slot}"
        counted = store.increment(COLLECTION, device_key, "count", defaults={"expires_at": expires})
        if counted["count"] > limits.per_user:
            raise _refuse(window_end - now, gettext("Too many failed logins from this device"))
        return Admission(address_key, device_key, None)
    user_key = f"login:user:{username}"
    run = store.increment(COLLECTION, user_key, "count",
                          defaults={"started_at": now, "expires_at": now + STREAK_SECONDS})
    past_free = run["count"] - limits.per_user
    if past_free > 0:
        opens = float(run.get("started_at", now)) + backoff_opens(past_free)
        if now < opens:
            # A refused try does not lengthen the wait: only tries whose password was checked do.
            store.increment(COLLECTION, user_key, "count", by=-1)
            raise _refuse(opens - now, gettext("Too many failed logins for this user"))
    return Admission(address_key, None, user_key)


def login_succeeded(store: Store, admission: Admission) -> None:
    """The password was right: the attempt does not count against the windows, and the username's run ends."""
    with store.transaction() as tx:
        tx.increment(COLLECTION, admission.address_key, "count", by=-1)
        if admission.device_key:
            tx.increment(COLLECTION, admission.device_key, "count", by=-1)
        if admission.user_key:
            tx.delete(COLLECTION, admission.user_key)


def _token_window(limits: LoginLimits, address: str, now: float) -> tuple[str, float, float]:
    slot = int(now // limits.window)
    window_end = (slot + 1) * limits.window
    return f"collect-token:address:{address}@{slot}", window_end, window_end + limits.window


def admit_token(store: Store, limits: LoginLimits, *, address: str, now: float | None = None) -> None:
    """Raise 429 with Retry-After while the address has used up its failed app-credential tokens in
    the window (as many as its failed logins). Only failures are counted, so a working phone's request
    costs one read, never a write; requests racing past this check can overshoot the allowance by as
    many as run at once, which the tokens' 256 bits make harmless."""
    now = wall_seconds() if now is None else now
    key, window_end, _expires = _token_window(limits, address, now)
    counted = store.get(COLLECTION, key)
    if counted is not None and counted.get("count", 0) >= limits.per_address:
        raise _refuse(window_end - now, gettext("Too many unknown app credentials from this address"))


def token_failed(store: Store, limits: LoginLimits, *, address: str, now: float | None = None) -> None:
    """Count a token that named no working credential against the address's window."""
    now = wall_seconds() if now is None else now
    key, _window_end, expires = _token_window(limits, address, now)
    store.increment(COLLECTION, key, "count", defaults={"expires_at": expires})
    forget_expired(store, now)


def forget_expired(store: Store, now: float | None = None) -> None:
    """Old windows and runs are dead weight: clear a few on each failure so the collection stays small."""
    now = wall_seconds() if now is None else now
    with store.transaction() as tx:
        for stale in tx.find(COLLECTION, {"expires_at": Range(lt=now)}, limit=CLEANUP_BATCH):
            tx.delete(COLLECTION, stale["id"])
